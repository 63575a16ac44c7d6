"""Django's cache tests, bound to regioncache's backends.

Each backend gets a TestCase class that mixes Django's BaseCacheTests (and
the backend-specific tests of Django's suite that apply) with the CACHES
setting the suite expects: the aliases default, prefix, v2, custom_key,
custom_key2, cull and zero_cull, all on one store, as Django's tests of
locmem and memcached are set up.

A test that cannot apply to a backend is listed in EXCLUDED with the
reason; it is removed from the class (not skipped) and printed by run.py.
"""

import os
import uuid

from cache.tests import (  # Django's suite
    BaseCacheTests,
    BaseMemcachedTests,
    FileBasedCacheTests,
    caches_setting_for_tests,
)
from django.test import TestCase, override_settings

import regioncache

RUN = f"django-suite-{os.getpid()}-{uuid.uuid4().hex[:6]}"

# {class name: {test name: reason}}
EXCLUDED = {}

# {backend name: [TestCase classes]}
BACKENDS = {}


def setting_for(backend_path, location, **options):
    """caches_setting_for_tests(), with OPTIONS merged into each alias's own
    (the suite's helper would replace the cull aliases' MAX_ENTRIES)."""
    setting = caches_setting_for_tests(BACKEND=backend_path, LOCATION=location)
    for params in setting.values():
        params["OPTIONS"] = {**options, **params.get("OPTIONS", {})}
    return setting


def conformance(backend, excluded=None):
    """Registers a test class for a backend, removing the excluded tests."""

    def register(cls):
        for name, reason in (excluded or {}).items():
            if not hasattr(cls, name):
                raise AssertionError(f"{cls.__name__}: excluded test {name} is not in the suite")
            setattr(cls, name, None)  # the loader only collects callables
        EXCLUDED[cls.__name__] = dict(excluded or {})
        BACKENDS.setdefault(backend, []).append(cls)
        return cls

    return register


# --- shared memory ----------------------------------------------------------

SHM_LOCATION = f"{RUN}-shm"


@conformance("shm")
@override_settings(
    CACHES=setting_for("regioncache.SharedMemoryCache", SHM_LOCATION, SIZE="32MB")
)
class SharedMemoryCacheTests(BaseCacheTests, TestCase):
    # Written for memcached, true of every regioncache store: a value too
    # large for the region removes the key's old value (the default
    # MAX_ITEM_SIZE is memcached's 1 MB).
    test_deletes_key_on_failed_set = BaseMemcachedTests.test_memcached_deletes_key_on_failed_set

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        try:
            regioncache.remove_shm_region(SHM_LOCATION)
        except regioncache.RegionError:
            pass


SIGNED_SHM_LOCATION = f"{RUN}-shm-signed"


@conformance("shm-signed")
@override_settings(
    CACHES=setting_for(
        "regioncache.SharedMemoryCache", SIGNED_SHM_LOCATION, SIZE="32MB",
        SIGNING_KEY="conformance-signing-key",
    )
)
class SignedSharedMemoryCacheTests(BaseCacheTests, TestCase):
    """The same contract with every value signed (OPTIONS SIGNING_KEY): a
    second configuration, the default one above stays unsigned."""

    test_deletes_key_on_failed_set = BaseMemcachedTests.test_memcached_deletes_key_on_failed_set

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        try:
            regioncache.remove_shm_region(SIGNED_SHM_LOCATION)
        except regioncache.RegionError:
            pass


# --- a directory of files -------------------------------------------------------

@conformance(
    "file",
    excluded={
        "test_get_ignores_enoent": "uses FileBasedCache._key_to_file (md5 file names); "
        "FileCache names files by XXH3-128 in shards, and a vanished file is a miss "
        "(tests/test_file_backend.py removes files behind its back)",
        "test_get_does_not_ignore_non_filenotfound_exceptions": "mocks builtins.open; "
        "FileCache reads in C++, where an I/O error other than a missing file is a miss and a "
        "log line (README, Failure policy and logging), or RegionError with RAISE_ERRORS",
        "test_empty_cache_file_considered_expired": "uses FileBasedCache._key_to_file and "
        "_is_expired; an empty or truncated FileCache file is a miss and is removed "
        "(tests/test_file_backend.py, tests/cpp/file_store_test.cc)",
        "test_has_key_race_handling": "mocks builtins.open to fake a file vanishing between "
        "Python calls; FileCache opens each file once, in C++",
    },
)
@override_settings(CACHES=setting_for("regioncache.FileCache", "unset"))
class FileCacheTests(FileBasedCacheTests):
    """Django's FileBasedCacheTests (BaseCacheTests plus the file-specific
    tests), every alias on one directory made per test, as for FileBasedCache."""

    # FileBasedCacheTests.test_touch patches the filebased module's clock;
    # FileCache keeps time in C++, so BaseCacheTests' real-time version runs.
    test_touch = BaseCacheTests.test_touch


# --- memcached ----------------------------------------------------------------

def _start_memcached():
    """A real memcached for one configuration of the suite (a missing binary
    fails the run)."""
    import atexit
    import sys
    from pathlib import Path

    tests_dir = str(Path(__file__).resolve().parent.parent)
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    from memcached_servers import start_servers

    servers = start_servers(1)
    atexit.register(servers.stop)
    return servers[0].location


MEMCACHED_LOCATION = _start_memcached()
# The signed configuration gets a server of its own: clear() removes only the
# keys of the alias that calls it (REGION_PREFIX), so what one configuration's
# "prefix" alias left would be seen by the other's test_prefix when a run
# takes both (as .ci/matrix does).
MEMCACHED_SIGNED_LOCATION = _start_memcached()


MEMCACHED_EXCLUDED = {
    "test_cull": "memcached evicts by LRU itself: no MAX_ENTRIES (as Django's memcached backends)",
    "test_zero_cull": "memcached evicts by LRU itself: no CULL_FREQUENCY",
    "test_cull_delete_when_store_empty": "memcached evicts by LRU itself: no _max_entries",
    "test_close": "mocks the python-memcached client's disconnect_all; libmemcached "
    "connections are pooled by the store and kept across requests",
    "test_invalid_with_version_key_length": "expects the InvalidCacheKey of Django's "
    "memcached backends; MemcachedCache maps keys over 250 bytes to safe ones and warns "
    "(CacheKeyWarning), checked by BaseCacheTests.test_invalid_key_length",
    "test_set_many_returns_failing_keys": "mocks the client's set_multi; failing keys are "
    "tested against the real server in tests/test_memcached_backend.py",
}


@conformance("memcached", excluded=MEMCACHED_EXCLUDED)
@override_settings(
    CACHES={
        alias: params
        for alias, params in setting_for(
            "regioncache.MemcachedCache", MEMCACHED_LOCATION
        ).items()
        if alias not in ("cull", "zero_cull")
    }
)
class MemcachedCacheTests(BaseMemcachedTests, TestCase):
    base_params = {"BACKEND": "regioncache.MemcachedCache", "LOCATION": MEMCACHED_LOCATION}
    # Keys memcached cannot take are mapped to safe ones (issue 4), so, like
    # every backend but Django's memcached ones, MemcachedCache warns about
    # them (CacheKeyWarning) and works: BaseCacheTests' version of the
    # invalid-key check applies, not BaseMemcachedTests' InvalidCacheKey one.
    _perform_invalid_key_test = BaseCacheTests._perform_invalid_key_test
    should_disconnect_on_close = False


@conformance("memcached-signed", excluded=MEMCACHED_EXCLUDED)
@override_settings(
    CACHES={
        alias: params
        for alias, params in setting_for(
            "regioncache.MemcachedCache", MEMCACHED_SIGNED_LOCATION,
            SIGNING_KEY="conformance-signing-key",
        ).items()
        if alias not in ("cull", "zero_cull")
    }
)
class SignedMemcachedCacheTests(MemcachedCacheTests):
    """The memcached contract with every value signed (OPTIONS SIGNING_KEY):
    a second configuration, the default one above stays unsigned."""

    base_params = {"BACKEND": "regioncache.MemcachedCache", "LOCATION": MEMCACHED_SIGNED_LOCATION,
                   "OPTIONS": {"SIGNING_KEY": "conformance-signing-key"}}


def labels(backends):
    names = backends or list(BACKENDS)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; known: {sorted(BACKENDS)}")
    return [f"{__name__}.{cls.__name__}" for b in names for cls in BACKENDS[b]]


def print_excluded(selected=None):
    for cls_name, tests in EXCLUDED.items():
        if selected is not None and not any(label.endswith("." + cls_name) for label in selected):
            continue
        for test, reason in tests.items():
            print(f"excluded: {cls_name}.{test}: {reason}")
