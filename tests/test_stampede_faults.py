"""Stampede protection against failing memcached servers (issue 11, items 5
and 6): a lock the store cannot take means "compute now", never "wait";
a lock request applied by the server after its caller gave up does not make
the next caller wait. Real memcached servers (stopped with SIGSTOP, or
killed) and the fake server of fake_memcached.py, all on 127.0.0.1."""

import asyncio
import contextlib
import time
import uuid

import pytest

import regioncache

from regioncache import region, stampede
from fake_memcached import FakeMemcached
from harness import free_port
from memcached_servers import start_servers

WAIT = 10.0  # the default `wait`: every bound below is far under it


@pytest.fixture
def make_cache(regions):
    """make(location, **OPTIONS) -> a MemcachedCache alias of this test (removed after)."""

    def make(location, **options):
        return regions.new(location=location, BACKEND="regioncache.MemcachedCache",
                           KEY_PREFIX=uuid.uuid4().hex[:6],
                           OPTIONS={"POLL_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2, **options})

    return make


@pytest.fixture
def server():
    s = start_servers(1)
    yield s[0]
    s.stop()


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


def all_paths(cache):
    """Every path that takes the stampede lock, each with a fresh key:
    (name, callable returning the computed value)."""
    n = uuid.uuid4().hex[:6]

    def sync_gos():
        return cache.get_or_set(f"gos-{n}", lambda: "computed", 300)

    def async_gos():
        return asyncio.run(cache.aget_or_set(f"agos-{n}", lambda: "computed", 300))

    def deco():
        return region(cache.alias, namespace=f"deco-{n}")(lambda: "computed")()

    def adeco():
        async def f():
            return "computed"
        return asyncio.run(region(cache.alias, namespace=f"adeco-{n}")(f)())

    return [("get_or_set", sync_gos), ("aget_or_set", async_gos),
            ("@region", deco), ("async @region", adeco)]


@contextlib.contextmanager
def broken_server(how, request):
    """A server that cannot answer, as `how` says: "down" (nothing listens on
    the port), "stopped" (a real server, SIGSTOP'ed once the cache has a
    connection open) or "garbling" (the fake, answering garbage). Yields
    (location, warm_up) where warm_up(cache) runs before the server breaks."""
    if how == "down":
        yield f"127.0.0.1:{free_port()}", None  # nothing listens there
    elif how == "stopped":
        server = request.getfixturevalue("server")

        def warm_up(cache):
            cache.set("warm", 1)
            assert cache.get("warm") == 1  # a connection is open when the server stops
            server.pause()

        try:
            yield server.location, warm_up
        finally:
            server.resume()
    else:
        with FakeMemcached(faults={"add": "garbage", "get": "garbage"}) as fake:
            yield fake.location, None


# How long a path may take against each broken server: a few POLL_TIMEOUTs
# (0.2 s) at most, never the 10 s wait.
@pytest.mark.parametrize("how, bound", [("down", 2.0), ("stopped", 2.5), ("garbling", 2.0)])
def test_broken_server_computes_now(request, make_cache, how, bound):
    with broken_server(how, request) as (location, warm_up):
        cache = make_cache(location)
        if warm_up:
            warm_up(cache)
        for name, call in all_paths(cache):
            value, took = timed(call)
            assert value == "computed", name
            assert took < bound, (f"{name} took {took:.2f} s with the server {how} "
                                  f"(wait is {WAIT} s)")


def test_a_held_lock_still_makes_callers_wait(server, make_cache):
    # The other side of the rule: a lock another caller holds means wait.
    cache = make_cache(server.location)
    release = stampede.try_lock(cache, "k", None)
    assert release is not None
    assert stampede.try_lock(cache, "k", None) is None  # held: not taken twice
    t0 = time.monotonic()
    assert stampede.compute_once(cache, "k", lambda: "mine", None,
                                 lambda v: cache.set("k", v), wait=0.5) == "mine"
    assert time.monotonic() - t0 >= 0.5  # waited its `wait` for the holder
    release()
    assert cache.get("k" + stampede.LOCK_SUFFIX) is None


def test_stale_mode_recomputes_when_the_lock_cannot_be_taken(make_cache):
    # get works (serves the stale value), add fails: the one caller recomputes
    # at once instead of serving stale forever or waiting.
    with FakeMemcached(faults={"add": "garbage"}) as fake:
        cache = make_cache(fake.location, SERVER_FAILURE_LIMIT=1000)
        calls = []

        @region(cache.alias, timeout=1, stale=60, namespace="stale-fn")
        def f():
            calls.append(1)
            return len(calls)

        assert f() == 1
        time.sleep(1.1)  # past its fresh life, inside its stale life
        value, took = timed(f)
        assert value == 2 and took < 1.0


def test_timed_out_acquire_applied_later_does_not_make_the_next_caller_wait(server, make_cache):
    # A's add times out with the server stopped; the server applies it when it
    # resumes (the request was in its socket buffer), leaving a lock nobody
    # holds and no value. B must not wait the 10 s `wait` for that lock.
    cache = make_cache(server.location, RETRY_TIMEOUT=0.3)
    cache.set("warm", 1)
    assert cache.get("warm") == 1
    server.pause()
    try:
        # The lock path itself (get_or_set computes at once when its get has
        # just failed, without trying the lock; here the get went through
        # before the server stopped, and the add is what times out).
        value, took = timed(lambda: stampede.compute_once(
            cache, "k", lambda: "from A", None, lambda v: cache.set("k", v, 300)))
        assert value == "from A" and took < 2.5
    finally:
        server.resume()
    lock_wire = cache.make_key("k") + stampede.LOCK_SUFFIX
    deadline = time.monotonic() + 5
    while not server.has_key(lock_wire):  # the late add lands
        assert time.monotonic() < deadline, "the server never applied the timed-out add"
        time.sleep(0.05)
    assert "pending" in server.command(f"get {lock_wire}")
    assert not server.has_key(cache.make_key("k"))  # A's set never reached it
    time.sleep(stampede.PENDING_GRACE + 0.1)
    value, took = timed(lambda: cache.get_or_set("k", lambda: "from B", 300))
    assert value == "from B"
    assert took < 1.0, f"the next caller waited {took:.2f} s for an abandoned lock"
    assert cache.get("k") == "from B"
    assert not server.has_key(lock_wire)  # B took the lock over and released it


def test_an_add_that_raises_means_compute_now(make_cache):
    # RAISE_ERRORS: the store's failures raise (README, "Failure policy and
    # logging"). Here only add fails (the server garbles its reply): get and
    # set work, and a lock whose add raises is held by nobody: compute now.
    with FakeMemcached(faults={"add": "garbage"}) as fake:
        cache = make_cache(fake.location, RAISE_ERRORS=True, SERVER_FAILURE_LIMIT=1000)
        with pytest.raises(regioncache.RegionError):
            cache.add("x", 1)
        for name, call in all_paths(cache):
            value, took = timed(call)
            assert value == "computed" and took < 2.0, (name, took)
