"""regioncache: cache regions for Django on native stores.

Each CACHES alias is a region on a native C++ store (shared memory today;
a directory of files and memcached next), behind Django's own cache API::

    CACHES = {
        "functions": {
            "BACKEND": "regioncache.SharedMemoryCache",
            "LOCATION": "functions",
            "OPTIONS": {"SIZE": "64MB"},
        },
    }
"""

from regioncache._native import ConfigError, RegionError, ValueTooLargeError
from regioncache._native import remove_shm_region, shm_regions, shm_segment_name
from regioncache import _log  # noqa: F401  (the stores' log lines go to logging)

__all__ = [
    "ConfigError",
    "FileCache",
    "MemcachedCache",
    "RegionError",
    "SharedMemoryCache",
    "ValueTooLargeError",
    "region",
    "remove_shm_region",
    "shm_regions",
    "shm_segment_name",
]

__version__ = "0.1.0"

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
    if name == "region":
        from regioncache.decorators import region

        return region
    raise AttributeError(f"module 'regioncache' has no attribute {name!r}")
