"""Settings for running Django's cache tests (tests/django_suite/run.py).

The suite's module is imported as the app "cache" (it has a model, Poll);
a throwaway SQLite database backs the tests that touch models.
"""

SECRET_KEY = "regioncache-conformance"
USE_TZ = False
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "cache",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# Each test class replaces CACHES with override_settings; this is only the
# start-up value the suite's module reads at import time.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
MIDDLEWARE = []
ROOT_URLCONF = None
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
