import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
application = get_wsgi_application()

if os.environ.get("BENCH_SITE_FAST_PATH") == "wsgi":
    from regioncache.wsgi import PageHitApplication

    application = PageHitApplication(application)
