"""A small site with two cache regions, as in the seed article: function
results shared by every worker ("functions") and rendered pages ("pages"),
both in shared memory for now."""

import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "demo-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "demo.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "regioncache"]
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True

# Region names carry a prefix so the demo never touches a real site's regions.
REGION_PREFIX = os.environ.get("DEMO_REGION_PREFIX", "demo")

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
    "pages": {
        "BACKEND": "regioncache.SharedMemoryCache",
        "LOCATION": f"{REGION_PREFIX}-pages",
        "TIMEOUT": 60,
        "OPTIONS": {"SIZE": "32MB"},
    },
}

LOGGING = {"version": 1, "disable_existing_loggers": False}
