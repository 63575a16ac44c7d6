"""cache._expiry, cache._swap and cache._delete_if on MemcachedCache, against
real memcached servers: the server's own expiry (whole seconds) and its
compare-and-swap (the meta protocol's CAS value), the building blocks of
ttl()/expire() and cache.lock() on memcached."""

import logging
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import caches

import regioncache
from memcached_servers import free_port, start_servers


@pytest.fixture(scope="module")
def server():
    s = start_servers(1)
    yield s[0]
    s.stop()


@pytest.fixture
def make_cache():
    aliases = []

    def make(location, **options):
        alias = f"cas-{uuid.uuid4().hex[:8]}"
        settings.CACHES[alias] = {
            "BACKEND": "regioncache.MemcachedCache",
            "LOCATION": location,
            "KEY_PREFIX": alias,
            "OPTIONS": options,
        }
        aliases.append(alias)
        return caches[alias]

    yield make
    for alias in aliases:
        if getattr(caches._connections, alias, None) is not None:
            delattr(caches._connections, alias)
        settings.CACHES.pop(alias, None)


def seconds_left(cache, key):
    exp = cache._expiry(key)
    assert exp > 0, exp
    return (exp - time.time() * 1000) / 1000


def test_expiry_is_the_servers(server, make_cache):
    c = make_cache(server.location)
    c.set("t", "v", 100)
    assert 98.9 <= seconds_left(c, "t") <= 100.1
    c.set("never", "v", None)
    assert c._expiry("never") == -1
    assert c._expiry("missing") == -2
    assert c.touch("never", 40)
    assert 38.9 <= seconds_left(c, "never") <= 40.1
    # Reading the expiry is not a use: the item stays unfetched on the server.
    made = c.make_key("t")
    assert server.command(f"mg {made} h u") == "HD h0\r\n"


@pytest.mark.filterwarnings("ignore::django.core.cache.CacheKeyWarning")
def test_swap_and_delete_if(server, make_cache):
    c = make_cache(server.location)
    c.set("k", {"a": 1})
    assert c._swap("k", {"a": 2}, "new") is False
    assert c.get("k") == {"a": 1}
    assert c._swap("k", {"a": 1}, "new", timeout=50) is True
    assert c.get("k") == "new"
    assert 48.9 <= seconds_left(c, "k") <= 50.1
    assert c._swap("missing", "x", "y") is False and c.get("missing") is None
    assert c._delete_if("k", "old") is False
    assert c._delete_if("k", "new") is True
    assert c.get("k") is None
    assert c._delete_if("k", "new") is False
    # timeout 0: the swap deletes.
    c.set("z", 5)
    assert c._swap("z", 5, 6, timeout=0) is True
    assert c.get("z") is None
    # A long, unsafe key (mapped) and a compressed value.
    key = "long key " + "x" * 300
    big = "x" * 200_000
    c.set(key, big)
    assert c._swap(key, big, "small") is True
    assert c.get(key) == "small"


def test_signed_region_compares_what_it_stored(server, make_cache):
    c = make_cache(server.location, SIGNING_KEY="s3cret-for-the-test")
    c.set("k", [1, 2])
    assert c._swap("k", [1, 2], [3]) is True
    assert c.get("k") == [3]
    assert c._delete_if("k", [3]) is True


def test_swap_over_a_unix_socket(tmp_path, make_cache):
    servers = start_servers(1, tmpdir=str(tmp_path), unix=True)
    try:
        c = make_cache(servers[0].location)
        c.set("k", "a")
        assert c._swap("k", "a", "b") is True
        assert c.get("k") == "b"
    finally:
        servers.stop()


def test_incr_of_a_float_keeps_the_expiry(server, make_cache):
    # incr of a value the server cannot add to is done in Python and written
    # back with the entry's expiry, which Peek now knows.
    c = make_cache(server.location)
    c.set("f", 1.5, 100)
    assert c.incr("f") == 2.5
    assert 98.9 <= seconds_left(c, "f") <= 100.1


def test_threads_counting_through_swap_lose_nothing(server, make_cache):
    c = make_cache(server.location)
    c.set("n", 0)
    errors = []

    def work():
        try:
            for _ in range(100):
                while True:
                    old = c.get("n")
                    if c._swap("n", old, old + 1):
                        break
        except Exception as e:  # any exception fails the test
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.get("n") == 400


def test_server_down_follows_the_failure_policy(make_cache, caplog):
    caplog.set_level(logging.WARNING)
    location = f"127.0.0.1:{free_port()}"
    opts = dict(CONNECT_TIMEOUT=0.2, POLL_TIMEOUT=0.2, RETRY_TIMEOUT=0)
    quiet = make_cache(location, **opts)
    t0 = time.monotonic()
    assert quiet._expiry("k") == -2
    assert quiet._swap("k", 1, 2) is False
    assert quiet._delete_if("k", 1) is False
    assert time.monotonic() - t0 < 3
    loud = make_cache(location, RAISE_ERRORS=True, **opts)
    for call in (lambda: loud._expiry("k"), lambda: loud._swap("k", 1, 2),
                 lambda: loud._delete_if("k", 1)):
        with pytest.raises(regioncache.RegionError) as e:
            call()
        # the server, or (its failures counted) every server, named
        assert location in str(e.value) or "every memcached server has failed" in str(e.value)
