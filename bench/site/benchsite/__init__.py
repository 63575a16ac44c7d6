"""The site bench/bench_site.py serves under gunicorn: article pages under
Django's @cache_page behind six usual middlewares (settings.py), configured
through BENCH_SITE_* environment variables that bench_site.py sets."""
