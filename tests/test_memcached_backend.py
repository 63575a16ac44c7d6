"""MemcachedCache against real memcached servers started by the tests."""

import asyncio
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest
from django.conf import settings
from django.core.cache import CacheKeyWarning, caches
from django.core.exceptions import ImproperlyConfigured

import regioncache
from memcached_servers import start_servers


@pytest.fixture
def servers():
    s = start_servers(3)
    yield s
    s.stop()


@pytest.fixture
def make_cache():
    aliases = []

    def make(servers, alias=None, **conf):
        alias = alias or f"mc-{uuid.uuid4().hex[:8]}"
        location = conf.pop("LOCATION", None) or [s.location for s in servers]
        settings.CACHES[alias] = {
            "BACKEND": "regioncache.MemcachedCache",
            "LOCATION": location,
            **conf,
        }
        aliases.append(alias)
        return caches[alias]

    yield make
    for alias in aliases:
        conn = getattr(caches._connections, alias, None)
        if conn is not None:
            delattr(caches._connections, alias)
        settings.CACHES.pop(alias, None)


def test_values_round_trip(servers, make_cache):
    c = make_cache(servers)
    values = {
        "int": 42,
        "neg": -7,
        "big": 2**80,
        "str": "héllo",
        "bytes": b"\x00\xff" * 10,
        "obj": {"a": [1, 2.5, None]},
        "compressible": "x" * 200_000,
        "float": 1.5,
    }
    for k, v in values.items():
        c.set(k, v)
    for k, v in values.items():
        got = c.get(k)
        assert got == v and type(got) is type(v), k
    entries = {e["key"]: e for e in c.list_entries()[0]}
    assert entries[":1:int"]["encoding"] == "int"
    assert entries[":1:str"]["encoding"] == "str"
    assert entries[":1:obj"]["encoding"] == "pickle"
    # compressed on the server: far smaller than the 200 KB value
    assert entries[":1:compressible"]["size"] < 10_000


def test_django_contract_basics(servers, make_cache):
    c = make_cache(servers)
    assert c.get("nope", "dflt") == "dflt"
    assert c.add("k", "v") is True
    assert c.add("k", "w") is False
    assert c.get("k") == "v"
    assert c.touch("k", 100) is True
    assert c.touch("missing") is False
    assert c.has_key("k")
    assert c.delete("k") is True
    assert c.delete("k") is False
    c.set("n", 10)
    assert c.incr("n") == 11
    assert c.incr("n", 10) == 21
    assert c.decr("n", 5) == 16
    assert c.get("n") == 16
    c.set("n", 100)
    assert c.decr("n", 2) == 98  # memcached pads "98 "; read back as 98
    assert c.get("n") == 98
    with pytest.raises(ValueError):
        c.incr("missing")
    c.set("f", 1.5)
    assert c.incr("f") == 2.5  # not an integer to the server: added in Python
    assert c.get_or_set("gos", lambda: "made") == "made"
    assert c.get("gos") == "made"


def test_timeouts(servers, make_cache):
    c = make_cache(servers, TIMEOUT=None)
    c.set("forever", 1)
    c.set("zero", 1, timeout=0)  # Django: 0 means "do not cache"
    assert c.get("zero") is None
    c.set("short", 1, timeout=1)
    month = 60 * 60 * 24 * 31  # over 30 days: sent as an absolute time
    c.set("month", 1, timeout=month)
    assert c.get("month") == 1
    entries = {e["key"]: e for e in c.list_entries()[0]}
    assert entries[":1:forever"]["expires"] is None
    assert abs(entries[":1:month"]["expires"] - (time.time() + month)) < 5
    time.sleep(2.1)
    assert c.get("short") is None
    assert c.get("forever") == 1


def test_long_and_spaced_keys(servers, make_cache):
    c = make_cache(servers)
    long_key = "k" * 400
    spaced = "a key with spaces\tand\x01control"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c.set(long_key, "long")
        c.set(spaced, {"v": 1})
        c.set(spaced + "-n", 5)
    assert any(issubclass(x.category, CacheKeyWarning) for x in w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        assert c.get(long_key) == "long"
        assert c.get(spaced) == {"v": 1}
        assert c.incr(spaced + "-n", 3) == 8  # a plain integer: atomic on the server
        assert c.get_many([long_key, spaced]) == {long_key: "long", spaced: {"v": 1}}
        # another long key sharing the first 200 bytes is another entry
        other = "k" * 399 + "z"
        assert c.get(other) is None
        c.set(other, "other")
        assert c.get(long_key) == "long" and c.get(other) == "other"
        keys = {e["key"] for e in c.list_entries()[0]}
        assert ":1:" + long_key in keys  # the original key, from the value's envelope
        assert ":1:" + spaced in keys
        assert c.delete(long_key) is True
        assert c.get(long_key) is None


def test_many(servers, make_cache):
    c = make_cache(servers)
    data = {f"key{i}": i for i in range(2000)}
    assert c.set_many(data) == []
    got = c.get_many(list(data) + ["absent"])
    assert got == data
    c.delete_many([f"key{i}" for i in range(1000)])
    got = c.get_many(list(data))
    assert set(got) == {f"key{i}" for i in range(1000, 2000)}
    # a value too large for MAX_ITEM_SIZE is reported failed, not raised
    big = bytes(range(256)) * 8192  # 2 MB, incompressible enough
    import os

    big = os.urandom(2 * 1024 * 1024)
    assert c.set_many({"ok": 1, "huge": big}) == ["huge"]
    assert c.get("ok") == 1
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("huge", big)


def test_too_large_names_the_region_the_option_and_the_sizes(servers, make_cache):
    import os

    alias = f"big-{uuid.uuid4().hex[:6]}"
    c = make_cache(servers[:1], alias=alias, OPTIONS={"MAX_ITEM_SIZE": "64KB"})
    # over the limit as given, under it compressed: stored
    c.set("fits", "ab" * 500_000)
    assert c.get("fits") == "ab" * 500_000
    with pytest.raises(regioncache.ValueTooLargeError) as err:
        c.set("huge", os.urandom(100_000))
    text = str(err.value)
    assert f"region '{alias}'" in text and "MAX_ITEM_SIZE" in text and "65536" in text, text
    assert "as stored" in text and "nothing was stored" in text, text
    assert c.get("huge") is None


def test_keys_spread_evenly_over_three_servers(servers, make_cache):
    c = make_cache(servers)
    n = 30_000
    for start in range(0, n, 5000):
        assert c.set_many({f"spread:{i}": i for i in range(start, start + 5000)}) == []
    counts = [s.curr_items() for s in servers]
    assert sum(counts) == n
    for count in counts:
        assert abs(count - n / 3) <= 0.10 * n / 3, counts


def _owner(servers, key):
    owners = [s for s in servers if s.has_key(":1:" + key)]
    assert len(owners) == 1
    return owners[0]


def test_server_killed_under_load_then_back(servers, make_cache):
    c = make_cache(
        servers,
        OPTIONS={"RETRY_TIMEOUT": 0.5, "POLL_TIMEOUT": 0.5, "CONNECT_TIMEOUT": 0.5},
    )
    keys = [f"load:{i}" for i in range(300)]
    c.set_many({k: k for k in keys})
    victim = servers[1]
    on_victim = [k for k in keys if victim.has_key(":1:" + k)]
    elsewhere = [k for k in keys if k not in on_victim]
    assert on_victim and elsewhere
    errors = []
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            k = keys[i % len(keys)]
            try:
                c.get(k)
                c.set(k + ":w", i)
                c.get_many(keys[i % 250:i % 250 + 20])
            except Exception as e:  # any exception is a failure of the test
                errors.append(e)
            i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    victim.kill()
    time.sleep(1.0)
    # keys on the other servers are still served, without delay
    t0 = time.monotonic()
    assert all(c.get(k) == k for k in elsewhere)
    assert time.monotonic() - t0 < 2.0
    # the dead server's keys miss; writes meanwhile go to the next server
    assert all(c.get(k) is None for k in on_victim)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    victim.start()  # same port, empty
    time.sleep(0.8)  # past RETRY_TIMEOUT
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        c.set(on_victim[0], "back")
        if victim.has_key(":1:" + on_victim[0]):
            break
        time.sleep(0.1)
    assert victim.has_key(":1:" + on_victim[0]), "the restarted server is not used again"
    c.set_many({k: "again" for k in on_victim})
    assert all(victim.has_key(":1:" + k) for k in on_victim)
    assert all(c.get(k) == "again" for k in on_victim)


def test_dead_server_is_a_miss_within_the_timeouts(make_cache):
    from memcached_servers import free_port

    c = make_cache(
        [],
        LOCATION=f"127.0.0.1:{free_port()}",
        OPTIONS={"CONNECT_TIMEOUT": 0.3, "POLL_TIMEOUT": 0.3},
    )
    t0 = time.monotonic()
    assert c.get("k", "default") == "default"
    # the failure policy (README, "Failure policy and logging"): not stored is False
    assert c.set("k", 1) is False
    assert c.add("k", 1) is False
    assert c.touch("k") is False
    assert c.delete("k") is False
    assert c.get_many(["a", "b"]) == {}
    assert set(c.set_many({"a": 1, "b": 2})) == {"a", "b"}
    assert not c.has_key("k")
    assert time.monotonic() - t0 < 5


def test_slow_server_times_out(make_cache):
    # a listening socket nobody answers on: connects, then never replies
    import socket as so

    lsock = so.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    try:
        c = make_cache(
            [], LOCATION=f"127.0.0.1:{lsock.getsockname()[1]}",
            OPTIONS={"POLL_TIMEOUT": 0.3, "CONNECT_TIMEOUT": 0.3},
        )
        t0 = time.monotonic()
        assert c.get("k", "d") == "d"
        assert time.monotonic() - t0 < 2
    finally:
        lsock.close()


def _incr_child(location, key, n):
    code = f"""
import django
from django.conf import settings
settings.configure(CACHES={{"default": {{"BACKEND": "regioncache.MemcachedCache",
                                          "LOCATION": {location!r}}}}})
django.setup()
from django.core.cache import cache
for _ in range({n}):
    cache.incr({key!r})
for _ in range({n} // 2):
    cache.decr({key!r})
"""
    return subprocess.Popen([sys.executable, "-c", code])


def test_incr_decr_atomic_across_processes(servers, make_cache):
    c = make_cache(servers)
    c.set("counter", 1000)
    location = ";".join(s.location for s in servers)
    procs = [_incr_child(location, "counter", 400) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert c.get("counter") == 1000 + 4 * 400 - 4 * 200


def test_listing_purge_and_clear_stay_in_the_region(servers, make_cache):
    a = make_cache(servers, KEY_PREFIX="app")
    b = make_cache(servers, KEY_PREFIX="other")
    a.set_many({f"user:{i}": i for i in range(50)})
    a.set_many({f"page:{i}": i for i in range(30)})
    b.set_many({f"user:{i}": i for i in range(20)})
    # paged listing covers every entry of a exactly once
    seen, cursor = [], ""
    while True:
        page, cursor = a.list_entries(cursor=cursor, limit=7)
        seen += [e["key"] for e in page]
        if not cursor:
            break
    assert sorted(seen) == sorted([f"app:1:user:{i}" for i in range(50)] +
                                  [f"app:1:page:{i}" for i in range(30)])
    assert len(a.list_entries(glob="app:1:page:*")[0]) == 30
    st = a.stats()
    assert st["entries"] == 80, st
    assert a.purge("app:1:page:*") == 30
    assert a.get("page:3") is None and a.get("user:3") == 3
    a.clear()
    assert a.get("user:3") is None
    assert b.get_many([f"user:{i}" for i in range(20)]) == {f"user:{i}": i for i in range(20)}
    assert a.list_entries()[0] == []
    stats = b.stats()
    assert stats["kind"] == "memcached" and stats["servers"] == "3"
    assert stats["servers_up"] == "3"
    assert stats[f"{servers[0].location} version"]
    # delete_raw takes keys as listed
    keys = [e["key"] for e in b.list_entries(limit=5)[0]]
    assert b.delete_raw(keys) == 5
    assert len(b.list_entries()[0]) == 15


def test_flush_all_on_clear_only_when_asked(servers, make_cache):
    a = make_cache(servers, KEY_PREFIX="a", OPTIONS={"FLUSH_ALL_ON_CLEAR": True})
    b = make_cache(servers, KEY_PREFIX="b")
    a.set("x", 1)
    b.set("x", 2)
    a.clear()
    assert a.get("x") is None and b.get("x") is None


def test_unix_socket_and_binary_protocol(tmp_path, make_cache):
    s = start_servers(2, tmpdir=str(tmp_path), unix=True)
    try:
        c = make_cache(s)
        c.set("k", "v")
        assert c.get("k") == "v"
        assert c.list_entries()[0][0]["key"] == ":1:k"
        b = make_cache(s, OPTIONS={"BINARY_PROTOCOL": True})
        b.set("n", 5)
        assert b.incr("n", 2) == 7
        assert b.get_many(["n", "k"]) == {"n": 7, "k": "v"}
        assert b.add("n", 1) is False
    finally:
        s.stop()


def test_async_api(servers, make_cache):
    c = make_cache(servers)

    async def run():
        await c.aset("k", "v")
        assert await c.aget("k") == "v"
        assert await c.aincr("missing-ok", 1) if False else True
        await c.aset_many({"a": 1, "b": 2})
        assert await c.aget_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await c.adelete("a") is True
        return await c.ahas_key("b")

    assert asyncio.run(run()) is True


@pytest.mark.parametrize(
    "options, option",
    [
        ({"POLL_TIMEOUT": "soon"}, "POLL_TIMEOUT"),
        ({"SERVER_FAILURE_LIMIT": -1}, "SERVER_FAILURE_LIMIT"),
        ({"SERVER_FAILURE_LIMIT": 0}, "SERVER_FAILURE_LIMIT"),
        ({"BINARY_PROTOCOL": "maybe"}, "BINARY_PROTOCOL"),
        ({"NO_SUCH_OPTION": 1}, "NO_SUCH_OPTION"),
        ({"COMPRESS_LEVEL": 99}, "COMPRESS_LEVEL"),
        ({"TCP_NODELAY": [1]}, "TCP_NODELAY"),
    ],
)
def test_bad_options(servers, options, option):
    alias = f"bad-{uuid.uuid4().hex[:6]}"
    settings.CACHES[alias] = {
        "BACKEND": "regioncache.MemcachedCache",
        "LOCATION": servers[0].location,
        "OPTIONS": options,
    }
    try:
        with pytest.raises(ImproperlyConfigured) as e:
            caches[alias]
        assert alias in str(e.value) and option in str(e.value)
    finally:
        settings.CACHES.pop(alias)


@pytest.mark.parametrize("location", ["", "127.0.0.1:99999", "a:b:c", "unix:relative"])
def test_bad_location(location):
    alias = f"bad-{uuid.uuid4().hex[:6]}"
    settings.CACHES[alias] = {"BACKEND": "regioncache.MemcachedCache", "LOCATION": location}
    try:
        with pytest.raises(ImproperlyConfigured) as e:
            caches[alias]
        assert alias in str(e.value) and "LOCATION" in str(e.value)
    finally:
        settings.CACHES.pop(alias)


class _DelayProxy:
    """A TCP proxy in front of one memcached that holds every chunk of the
    server's replies for `delay` seconds and records, per connection, the
    first bytes the client sent and how many chunks it sent. A client that
    waits for each reply before its next request sends one chunk a request;
    a pipelining one sends a batch in one go."""

    def __init__(self, upstream_port, delay):
        import socket as so

        self.upstream_port = upstream_port
        self.delay = delay
        self.conns = []  # [first client bytes, client chunks]
        self.lsock = so.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket as so

        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            upstream = so.create_connection(("127.0.0.1", self.upstream_port))
            upstream.setsockopt(so.IPPROTO_TCP, so.TCP_NODELAY, 1)
            client.setsockopt(so.IPPROTO_TCP, so.TCP_NODELAY, 1)
            rec = [b"", 0]
            self.conns.append(rec)
            threading.Thread(target=self._pump, args=(client, upstream, rec, 0),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None, self.delay),
                             daemon=True).start()

    def _pump(self, src, dst, rec, delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if rec is not None:
                    if not rec[0]:
                        rec[0] = data[:16]
                    rec[1] += 1
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.lsock.close()


def test_listing_looks_up_a_page_in_one_round_trip(make_cache):
    srv = start_servers(1)
    proxy = _DelayProxy(srv[0].port, delay=0.02)
    try:
        c = make_cache([], LOCATION=f"127.0.0.1:{proxy.port}", KEY_PREFIX="rt",
                       OPTIONS={"POLL_TIMEOUT": 5})
        long_key = "long " + "x" * 300  # mapped: its listing needs the value's envelope
        c.set_many({f"k{i:04d}": i for i in range(1499)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheKeyWarning)
            c.set(long_key, "v")
        t0 = time.monotonic()
        page, cursor = c.list_entries(limit=1000)
        took = time.monotonic() - t0
        assert len(page) == 1000 and cursor
        # one "mg" a key, waiting for each reply, would take 1000 x 20 ms
        assert took < 5, took
        mg = [rec for rec in proxy.conns if rec[0].startswith(b"mg ")]
        assert len(mg) == 1
        assert mg[0][1] <= 5, mg[0][1]  # the 1000 requests went out in one batch
        rest, cursor2 = c.list_entries(cursor=cursor, limit=1000)
        assert cursor2 == ""
        keys = [e["key"] for e in page + rest]
        assert len(keys) == len(set(keys)) == 1500
        assert f"rt:1:{long_key}" in keys
        sizes = {e["key"]: e["size"] for e in page + rest}
        assert sizes["rt:1:k0005"] == 1
        # purge by glob fetches the mapped keys' envelopes in batches too
        assert c.purge("rt:1:long *") == 1
        assert c.get(long_key) is None and c.get("k0005") == 5
    finally:
        proxy.close()
        srv.stop()
