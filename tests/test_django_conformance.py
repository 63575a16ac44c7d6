"""Django's own cache test suite (tests/cache/tests.py of the pinned Django's
source distribution) against each regioncache backend, through
tests/django_suite/run.py in a process of its own (the suite needs its own
settings module and test database)."""

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "django_suite" / "run.py"


# shm-signed, memcached-signed: the same contract with OPTIONS SIGNING_KEY (a second
# configuration in conformance.py; the default ones stay unsigned).
@pytest.mark.parametrize("backend", ["shm", "file", "memcached", "shm-signed", "memcached-signed"])
def test_djangos_cache_suite(backend):
    proc = subprocess.run(
        [sys.executable, str(RUNNER), backend, "-v", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-20000:]
    assert "\nOK" in out, out[-20000:]
    # Every test the suite has ran: a count of 0 would also say OK.
    ran = [line for line in out.splitlines() if line.startswith("Ran ")]
    assert ran and int(ran[-1].split()[1]) >= 50, out[-5000:]


# --- methods that Django 6.x reads __func__ of (issue 12) -------------------------
#
# Django 6.x's BaseCache async defaults (aget_many, aset_many, adelete_many,
# ahas_key, aincr, aget_or_set, aincr_version, aclose, ...) read
# `self.<sync method>.__func__` to find a specialised sync method, and its
# suite reads it for every method it checks. The native methods must bind
# like Python functions: a bound method whose __func__ is the class's
# attribute. This checks every public method of every backend, on the
# pinned Django; the matrix (.ci/matrix) runs Django 6.1's own suite.

SYNC_METHODS = [
    "get", "set", "add", "touch", "delete", "has_key", "incr", "decr", "get_many", "set_many",
    "delete_many", "clear", "close", "get_or_set", "incr_version", "decr_version", "stats",
    "list_entries", "purge", "purge_expired", "delete_raw",
]


@pytest.fixture
def one_of_each(regions, tmp_path):
    from memcached_servers import start_servers

    servers = start_servers(1)
    try:
        yield {
            "shm": regions.new(),
            "file": regions.new(str(tmp_path / "files"), BACKEND="regioncache.FileCache",
                                OPTIONS={}),
            "memcached": regions.new(servers[0].location, BACKEND="regioncache.MemcachedCache",
                                     OPTIONS={}),
        }
    finally:
        servers.stop()


def test_every_method_binds_with_func(one_of_each):
    import asyncio
    import inspect

    from django.core.cache.backends.base import BaseCache

    for kind, cache in one_of_each.items():
        for name in SYNC_METHODS:
            bound = getattr(cache, name)
            assert bound.__func__ is inspect.getattr_static(type(cache), name), (kind, name)
            assert bound.__self__ is cache
            assert bound.__name__ == name and bound == getattr(cache, name)
            assert getattr(type(cache), name).__name__ == name
        # the class attribute is callable with the instance first, as a function is
        type(cache).set(cache, "f", 1)
        assert type(cache).get(cache, "f") == 1 and type(cache).get(cache, key="f") == 1
        # What Django 6.x's BaseCache does in aget_many & co: find the
        # specialised sync method through __func__, then call it.
        assert cache.get_many.__func__ is not BaseCache.get_many
        cache.set_many({"a": 1, "b": 2})
        assert asyncio.run(BaseCache.aget_many(cache, ["a", "b", "c"])) == {"a": 1, "b": 2}
        assert asyncio.run(cache.aget_many(["a", "b", "c"])) == {"a": 1, "b": 2}
        assert asyncio.run(cache.ahas_key("a")) is True
        assert asyncio.run(cache.aincr("a", 5)) == 6
        assert asyncio.run(cache.aget_or_set("z", 7)) == 7
        # the docstring of the C method, for help()
        assert type(cache).get.__doc__.startswith("get(key, default=None, version=None)")
        # a wrong self is a TypeError, not a crash
        with pytest.raises(TypeError):
            type(cache).get(object(), "a")
        with pytest.raises(TypeError):
            type(cache).get.__get__(object())
        # every calling convention through a bound method and the class
        stats, purge, close = cache.stats, cache.purge, cache.close
        assert stats()["kind"] == kind and purge("no-such-key*") == 0 and close() is None
        assert type(cache).stats(cache)["kind"] == kind
        entries, _ = cache.list_entries(limit=1000)
        assert len(entries) >= 3
