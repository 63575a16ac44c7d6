"""Settings of the small Django project the pytest suite runs against.

Every region name starts with REGIONCACHE_TEST_RUN (set by tests/conftest.py,
unique per pytest run, inherited by the processes the tests start), so runs
never share a segment and the session can remove what it made. Extra aliases
made by a test reach child processes through REGIONCACHE_TEST_CACHES (JSON).
"""

import json
import os
import tempfile
import uuid

RUN = os.environ.get("REGIONCACHE_TEST_RUN") or f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
TMP_DIR = os.environ.get("REGIONCACHE_TEST_TMP") or os.path.join(tempfile.gettempdir(), RUN)
os.makedirs(TMP_DIR, exist_ok=True)

SECRET_KEY = "regioncache-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True

INSTALLED_APPS = ["regioncache", "djangoproject"]  # djangoproject: one model (models.py)
MIDDLEWARE = []
ROOT_URLCONF = "djangoproject.urls"

# One model without migrations (a test creates its table): the database only has to open.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(TMP_DIR, "db.sqlite3"),
    }
}

CACHES = {
    "default": {
        "BACKEND": "regioncache.SharedMemoryCache",
        "LOCATION": f"{RUN}-default",
        "TIMEOUT": 300,
        "OPTIONS": {"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"},
    },
    "pages": {
        "BACKEND": "regioncache.backends.SharedMemoryCache",
        "LOCATION": f"{RUN}-pages",
        "TIMEOUT": 60,
        "OPTIONS": {"SIZE": "8MB", "MAX_ITEM_SIZE": "512K"},
    },
    "file-pages": {
        "BACKEND": "regioncache.FileCache",
        "LOCATION": os.path.join(TMP_DIR, "file-pages"),
        "TIMEOUT": 60,
        "OPTIONS": {"MAX_SIZE": "16MB"},
    },
}
CACHES.update(json.loads(os.environ.get("REGIONCACHE_TEST_CACHES") or "{}"))
