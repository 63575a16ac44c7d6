"""The seed article's site: one alias per cache region, each on the store
that suits it.

- "functions": function results keyed by user, shared by every worker of
  the host: shared memory.
- "files": imported text and image files, kept for days: a directory.
- "pages": whole pages from @cache_page, shared across hosts: memcached
  (examples/run-demo starts one and sets DEMO_MEMCACHED; without it the
  region falls back to shared memory, and run-demo says so).
"""

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "demo.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "regioncache"]
MIDDLEWARE = []
# Pages of @cache_page(..., cache="pages") are answered in front of Django's
# handler (demo/wsgi.py) when the region holds them.
WSGI_APPLICATION = "demo.wsgi.application"
REGIONCACHE_PAGE_HITS = [{"cache": "pages", "key_prefix": ""}]
DATABASES = {}
USE_TZ = True

# Region names carry a prefix so the demo never touches a real site's regions.
REGION_PREFIX = os.environ.get("DEMO_REGION_PREFIX", "demo")
FILES_DIR = os.environ.get("DEMO_FILES_DIR", os.path.join("/tmp", f"regioncache-{REGION_PREFIX}-files"))
MEMCACHED = os.environ.get("DEMO_MEMCACHED", "")

CACHES = {
    "default": {
        "BACKEND": "regioncache.SharedMemoryCache",
        "LOCATION": f"{REGION_PREFIX}-default",
        "OPTIONS": {"SIZE": "8MB"},
    },
    "functions": {
        "BACKEND": "regioncache.SharedMemoryCache",
        "LOCATION": f"{REGION_PREFIX}-functions",
        "TIMEOUT": 120,
        "OPTIONS": {"SIZE": "16MB", "MAX_ITEM_SIZE": "256KB"},
    },
    "files": {
        "BACKEND": "regioncache.FileCache",
        "LOCATION": FILES_DIR,
        "TIMEOUT": 3 * 24 * 3600,  # days
        "OPTIONS": {"MAX_SIZE": "256MB"},
    },
}
if MEMCACHED:
    CACHES["pages"] = {
        "BACKEND": "regioncache.MemcachedCache",
        "LOCATION": MEMCACHED.split(";"),
        "TIMEOUT": 60,
        "KEY_PREFIX": f"{REGION_PREFIX}-pages",
    }
else:
    CACHES["pages"] = {
        "BACKEND": "regioncache.SharedMemoryCache",
        "LOCATION": f"{REGION_PREFIX}-pages",
        "TIMEOUT": 60,
        "OPTIONS": {"SIZE": "32MB"},
    }

# The metrics page (regioncache.views.metrics) is closed unless a token (or
# REGIONCACHE_METRICS_STAFF) opens it; a real site reads its token from the
# environment or a secret store, never from the repository.
REGIONCACHE_METRICS_TOKEN = os.environ.get("DEMO_METRICS_TOKEN", "demo-metrics-token-not-a-secret")

LOGGING = {"version": 1, "disable_existing_loggers": False}
