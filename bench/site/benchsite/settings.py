"""Settings of the bench site. bench/bench_site.py passes, in the
environment: BENCH_SITE_CACHE (the JSON CACHES entry of the "pages" region
under test), BENCH_SITE_MISS_LOG (a file the article view appends one byte
to each time it runs, that is on every cache miss), BENCH_SITE_FAST_PATH
("middleware": regioncache.middleware.PageHitMiddleware first; "wsgi":
regioncache.wsgi.PageHitApplication in front of the handler, see wsgi.py)
and BENCH_SITE_SEED.

No database: DATABASES is empty, so any query (none is meant to happen,
on a hit or a miss) fails loudly instead of costing unnoticed; sessions
live in signed cookies."""

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

DEBUG = False
SECRET_KEY = "bench-site-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"
USE_TZ = True
USE_I18N = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "benchsite",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if os.environ.get("BENCH_SITE_FAST_PATH") == "middleware":
    MIDDLEWARE.insert(0, "regioncache.middleware.PageHitMiddleware")

DATABASES = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [HERE / "templates"],
    "OPTIONS": {
        "context_processors": ["django.template.context_processors.request"],
        # Django's cached loader is on whenever DEBUG is off: said here too
        "loaders": [("django.template.loaders.cached.Loader",
                     ["django.template.loaders.filesystem.Loader"])],
    },
}]

PAGE_TIMEOUT = 3600
CACHE_MIDDLEWARE_ALIAS = "pages"
CACHE_MIDDLEWARE_SECONDS = PAGE_TIMEOUT
CACHE_MIDDLEWARE_KEY_PREFIX = ""
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    "pages": json.loads(os.environ.get("BENCH_SITE_CACHE") or
                        '{"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}'),
}

BENCH_MISS_LOG = os.environ.get("BENCH_SITE_MISS_LOG", "")
BENCH_SEED = int(os.environ.get("BENCH_SITE_SEED", "17"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
