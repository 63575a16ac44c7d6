"""regioncache: cache regions for Django on native stores.

Each CACHES alias is a region on a native C++ store (shared memory, a
directory of files or memcached servers), behind Django's own cache API::

    CACHES = {
        "functions": {
            "BACKEND": "regioncache.SharedMemoryCache",
            "LOCATION": "functions",
            "OPTIONS": {"SIZE": "64MB"},
        },
    }
"""

# --- supported versions (pyproject.toml says the same to pip) ----------------
# Checked before the native module loads, so that an unsupported Python or
# Django gets this message and not an error from inside the package.
_PYTHONS = ((3, 11), (3, 12), (3, 13))
_DJANGOS = {(3, 11): ("4.2", "5.2"), (3, 12): ("4.2", "5.2", "6.1"), (3, 13): ("5.2", "6.1")}
_SUPPORTED = (
    "regioncache supports Python 3.11, 3.12 and 3.13 with Django 4.2 LTS or 5.2 LTS, "
    "and Python 3.12 and 3.13 with Django 6.1"
)


def _check_versions():
    import sys

    py = sys.version_info[:2]
    if py not in _PYTHONS:
        raise ImportError(f"{_SUPPORTED}; this is Python {py[0]}.{py[1]}")
    try:
        import django
    except ImportError:  # tools that only list regions need no Django
        return
    series = "%d.%d" % tuple(django.VERSION[:2])
    if series not in _DJANGOS[py]:
        raise ImportError(
            f"{_SUPPORTED}; this is Django {django.get_version()} on Python {py[0]}.{py[1]}"
        )


_check_versions()
# ---------------------------------------------------------------------------

from regioncache._native import ConfigError, RegionError, ValueTooLargeError
from regioncache._native import remove_shm_region, shm_regions, shm_segment_name
from regioncache import _log  # noqa: F401  (the stores' log lines go to logging)

__all__ = [
    "ConfigError",
    "FileCache",
    "LockError",
    "LockNotOwnedError",
    "MemcachedCache",
    "NO_VALUE",
    "RegionError",
    "SharedMemoryCache",
    "RecordPagesMiddleware",
    "ValueTooLargeError",
    "cache_page",
    "pages",
    "purge_url",
    "region",
    "remove_shm_region",
    "shm_regions",
    "shm_segment_name",
]

__version__ = "0.1.0"


class _NoValue:
    """regioncache.NO_VALUE: what f.get(...) of a @region function answers
    when no result is cached (None can be a cached result). Falsy."""

    __slots__ = ()

    def __repr__(self):
        return "regioncache.NO_VALUE"

    def __bool__(self):
        return False

    def __reduce__(self):
        return "NO_VALUE"


NO_VALUE = _NoValue()

# OPTIONS the Python backends handle themselves (README, "Failure policy and
# logging", "Signed values"); the native stores never see them, and
# `python -m regioncache describe` leaves them out (no secret in its JSON, and
# the desktop app opens the stores without them).
POLICY_OPTIONS = frozenset(
    {"RAISE_ERRORS", "SIGNING_KEY", "SIGNING_KEY_FALLBACKS", "SIGN_WITH_SECRET_KEY"}
)


def __getattr__(name):
    # The backends import Django; keep `import regioncache` light (the
    # desktop app's helper and tools that only list regions need no Django).
    if name == "SharedMemoryCache":
        from regioncache.backends import SharedMemoryCache

        return SharedMemoryCache
    if name == "FileCache":
        from regioncache.backends import FileCache

        return FileCache
    if name == "MemcachedCache":
        from regioncache.backends import MemcachedCache

        return MemcachedCache
    if name in ("RecordPagesMiddleware", "cache_page", "pages", "purge_url"):
        # Pages by URL (README); the module is cached_pages, so that the
        # name regioncache.pages stays the function.
        from regioncache import cached_pages

        return getattr(cached_pages, name)
    if name in ("LockError", "LockNotOwnedError"):
        from regioncache import locks

        return getattr(locks, name)
    if name == "region":
        from regioncache.decorators import region

        return region
    raise AttributeError(f"module 'regioncache' has no attribute {name!r}")
