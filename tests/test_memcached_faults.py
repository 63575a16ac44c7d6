"""MemcachedCache against servers that misbehave (issue 11, items 7 and 8):
every call ends within its deadline (POLL_TIMEOUT bounds a whole reply, not
each wait for a byte), a reply claiming more than MAX_ITEM_SIZE ends the
read at once, garbage is a miss naming nobody's bytes, and the connection
is usable again afterwards. Fake servers from fake_memcached.py and a
SIGSTOPped real memcached, all on 127.0.0.1."""

import resource
import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import caches

from fake_memcached import FakeMemcached
from memcached_servers import start_servers

POLL = 0.2


@pytest.fixture
def make_cache():
    aliases = []

    def make(location, **options):
        alias = f"mcx-{uuid.uuid4().hex[:8]}"
        settings.CACHES[alias] = {
            "BACKEND": "regioncache.MemcachedCache",
            "LOCATION": location,
            "OPTIONS": {"POLL_TIMEOUT": POLL, "CONNECT_TIMEOUT": POLL,
                        "RETRY_TIMEOUT": 0.1, **options},
        }
        aliases.append(alias)
        return caches[alias]

    yield make
    for alias in aliases:
        if getattr(caches._connections, alias, None) is not None:
            delattr(caches._connections, alias)
        settings.CACHES.pop(alias, None)


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


@pytest.fixture
def fake():
    f = FakeMemcached(delay=0.02).start()  # a byte every 20 ms: never a 200 ms silence
    yield f
    f.stop()


def recovers(cache, fake):
    """With the fault gone, the next calls work on a clean connection."""
    fake.faults.clear()
    time.sleep(0.15)  # RETRY_TIMEOUT
    cache.set("after", "fine")
    assert cache.get("after") == "fine"
    assert cache.get("k") == "v" * 200


@pytest.mark.parametrize("fault", ["trickle", "endless", "silent"])
def test_get_ends_within_the_deadline(fake, make_cache, fault):
    cache = make_cache(fake.location)
    cache.set("k", "v" * 200)  # its reply trickles for 4+ s at 20 ms a byte
    assert cache.get("k") == "v" * 200
    fake.faults["get"] = fault
    value, took = timed(lambda: cache.get("k", "miss"))
    assert value == "miss"
    assert took < 2 * POLL + 0.1, f"get took {took:.2f} s against a {fault} server"
    recovers(cache, fake)


def test_get_many_and_set_end_within_the_deadline(fake, make_cache):
    cache = make_cache(fake.location)
    cache.set("k", "v" * 200)
    fake.faults.update(get="trickle", set="trickle")
    value, took = timed(lambda: cache.get_many(["k", "j"]))
    assert value == {} and took < 2 * POLL + 0.1, took
    time.sleep(0.15)
    _, took = timed(lambda: cache.set("x", "y" * 100))
    assert took < 2 * POLL + 0.1, took
    recovers(cache, fake)


def test_a_2gb_claim_ends_the_read_at_once_without_allocating(make_cache):
    with FakeMemcached(delay=0.02) as fake:
        cache = make_cache(fake.location, POLL_TIMEOUT=5)  # so "at once" is not a timeout
        cache.set("k", "v" * 200)
        fake.faults["get"] = "huge"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        value, took = timed(lambda: cache.get("k", "miss"))
        assert value == "miss"
        assert took < 0.5, f"a 2 GB claim held get() {took:.2f} s"
        grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        assert grown_kb < 100_000, f"{grown_kb} KB allocated for a claimed value"
        recovers(cache, fake)


def test_garbage_is_a_miss_and_the_connection_recovers(make_cache):
    with FakeMemcached() as fake:
        cache = make_cache(fake.location)
        cache.set("k", "v" * 200)
        fake.faults["get"] = "garbage"
        assert cache.get("k", "miss") == "miss"
        assert cache.get_many(["k"]) == {}
        fake.faults["set"] = "garbage"
        cache.set("x", 1)  # no exception: a failed write is False/None
        assert cache.add("y", 1) is False or fake.faults.pop("add", None) is None
        recovers(cache, fake)


def test_stopped_server_get_ends_within_the_deadline(make_cache):
    servers = start_servers(1)
    try:
        cache = make_cache(servers[0].location)
        cache.set("k", "v")
        servers[0].pause()
        value, took = timed(lambda: cache.get("k", "miss"))
        assert value == "miss" and took < 2 * POLL + 0.1, took
        servers[0].resume()
        time.sleep(0.15)
        assert cache.get("k") == "v"
    finally:
        servers.stop()
