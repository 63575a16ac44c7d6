"""django-redis's API on every region (regioncache.redis_api; README
"django-redis's API"): ttl, pttl, expire, pexpire, expire_at, pexpire_at,
persist, keys, iter_keys, delete_pattern and their async forms, on a
shared-memory, a file and a memcached region (a memcached server of the
test's own on a free port), through caches[alias] with real settings."""

import asyncio
import datetime
import inspect
import logging
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.utils import timezone

import regioncache
from regioncache import _log, stampede
from regioncache._listing import entry_pages
from regioncache.redis_api import redis_glob
from conftest import unique_name
from memcached_servers import free_port, start_servers

STORES = ["shm", "file", "memcached"]


@pytest.fixture
def make(request, regions, tmp_path):
    """make(**conf) -> a cache of the test's store kind; several calls with
    the same `share` name open the same store (segment, directory, server)."""
    kind = request.param
    servers = []
    shared = {}

    def new(share="main", **conf):
        options = conf.pop("OPTIONS", {})
        if kind == "shm":
            location = shared.setdefault(share, unique_name("redis-api"))
            return regions.new(location=location,
                               OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB", **options}, **conf)
        if kind == "file":
            location = shared.setdefault(share, str(tmp_path / f"region-{len(shared)}"))
            return regions.new(location=location, BACKEND="regioncache.FileCache",
                               OPTIONS=options, **conf)
        if share not in shared:
            servers.extend(start_servers(1))
            shared[share] = servers[-1].location
        return regions.new(location=shared[share], BACKEND="regioncache.MemcachedCache",
                           OPTIONS=options, **conf)

    new.kind = kind
    yield new
    for s in servers:
        s.kill()


stores = pytest.mark.parametrize("make", STORES, indirect=True)


def coarse(cache):
    """True where expiry is kept in whole seconds (memcached)."""
    return cache.store_kind == "memcached"


# ---- expiry -------------------------------------------------------------------


@stores
def test_ttl_and_pttl_of_missing_persistent_and_expiring_keys(make):
    cache = make()
    assert cache.ttl("missing") == 0 and cache.pttl("missing") == 0
    cache.set("forever", "v", None)
    assert cache.ttl("forever") is None and cache.pttl("forever") is None
    cache.set("later", "v", 100)
    assert cache.ttl("later") == 100
    assert 98_000 < cache.pttl("later") <= 100_000
    # Another version is another key.
    assert cache.ttl("later", version=2) == 0
    cache.set("later", "v2", 50, version=2)
    assert cache.ttl("later", version=2) == 50 and cache.ttl("later") == 100


@pytest.mark.parametrize("make", ["shm", "file"], indirect=True)
def test_ttl_rounds_the_milliseconds_left_as_redis_does(make):
    cache = make()
    cache.set("up", 1, 100.9)     # 100,900 ms left: 101 s, as redis's TTL answers
    cache.set("down", 1, 100.2)   # 100,200 ms left: 100 s
    assert cache.ttl("up") == 101 and cache.ttl("down") == 100
    cache.set("soon", 1, 0.2)     # under half a second: 0, while the key is there
    assert cache.ttl("soon") == 0


@stores
def test_expire_sets_replaces_and_removes_the_timeout(make):
    cache = make(TIMEOUT=500)
    assert cache.expire("missing", 10) is False and not cache.has_key("missing")
    cache.set("k", "v", None)
    assert cache.expire("k", 10) is True and cache.ttl("k") == 10
    assert cache.expire("k", datetime.timedelta(seconds=20)) is True and cache.ttl("k") == 20
    assert cache.expire("k", 30.0) is True and cache.ttl("k") == 30
    assert cache.expire("k", DEFAULT_TIMEOUT) is True and cache.ttl("k") == 500
    assert cache.expire("k", None) is True and cache.ttl("k") is None  # Django's touch(None)
    assert cache.get("k") == "v"
    # 0: the key expires now (redis deletes it); True as it was there.
    assert cache.expire("k", 0) is True
    assert cache.get("k") is None and cache.expire("k", 0) is False


def listed_expiry(cache, key):
    """The entry's expiry as the store's own listing shows it (epoch
    seconds or None): on memcached, what the server's metadump says."""
    made = cache.make_key(key)
    [entry] = [e for page in entry_pages(cache) for e in page if e["key"] == made]
    return entry["expires"]


@stores
def test_expire_changes_what_the_store_holds(make):
    # Read back through the store's listing, not _expiry.
    cache = make()
    cache.set("k", "v", None)
    assert listed_expiry(cache, "k") is None
    assert cache.expire("k", 100) is True
    assert abs(listed_expiry(cache, "k") - (time.time() + 100)) < 2
    assert cache.pexpire_at("k", int(time.time() * 1000) + 300_000) is True
    assert abs(listed_expiry(cache, "k") - (time.time() + 300)) < 2
    assert cache.expire("k", None) is True and listed_expiry(cache, "k") is None
    assert cache.get("k") == "v"
    assert cache.expire("missing", 100) is False and cache.pexpire("missing", 100) is False
    assert cache.expire_at("missing", time.time() + 100) is False
    assert cache.expire("k", 0) is True and not cache.has_key("k")
    cache.set("k", "v", None)
    assert cache.expire_at("k", time.time() - 1) is True and not cache.has_key("k")
    assert cache.expire_at("k", time.time() - 1) is False


@stores
def test_expire_with_default_timeout_of_a_region_that_never_expires(make):
    cache = make(TIMEOUT=None)
    cache.set("k", "v", 60)
    assert cache.expire("k", DEFAULT_TIMEOUT) is True and cache.ttl("k") is None


@stores
def test_pexpire_in_milliseconds(make):
    cache = make()
    cache.set("k", "v", None)
    assert cache.pexpire("k", 1500) is True
    if coarse(cache):
        # memcached keeps whole seconds: 1.5 s becomes 2 s, never less.
        assert 1_000 < cache.pttl("k") <= 2_000 and cache.ttl("k") == 2
    else:
        assert 1_000 < cache.pttl("k") <= 1_500
    assert cache.pexpire("k", datetime.timedelta(seconds=40)) is True and cache.ttl("k") == 40
    assert cache.pexpire("missing", 1000) is False
    assert cache.pexpire("k", 0) is True and not cache.has_key("k")


@stores
def test_expire_at_and_pexpire_at(make):
    cache = make()
    cache.set("k", "v", None)
    assert cache.expire_at("k", int(time.time()) + 101) is True
    assert cache.ttl("k") in (100, 101)
    aware = timezone.now() + datetime.timedelta(seconds=200)
    assert cache.expire_at("k", aware) is True and cache.ttl("k") in (199, 200)
    # A naive datetime is in the settings' TIME_ZONE, as redis-py reads it
    # (datetime.timestamp(): local time, which Django sets to TIME_ZONE).
    naive = timezone.make_naive(timezone.now() + datetime.timedelta(seconds=300))
    assert cache.expire_at("k", naive) is True and cache.ttl("k") in (299, 300)
    assert cache.pexpire_at("k", int(time.time() * 1000) + 50_000) is True
    assert 48_000 < cache.pttl("k") <= 50_000
    assert cache.expire_at("missing", int(time.time()) + 100) is False
    # A time past: the key expires now (redis deletes it); True as it was there.
    assert cache.expire_at("k", int(time.time()) - 10) is True and not cache.has_key("k")
    cache.set("k", "v", None)
    past = timezone.now() - datetime.timedelta(seconds=1)
    assert cache.pexpire_at("k", past) is True and not cache.has_key("k")
    assert cache.pexpire_at("k", past) is False


@stores
def test_persist_is_true_only_when_it_removed_an_expiry(make):
    cache = make()
    assert cache.persist("missing") is False
    cache.set("forever", "v", None)
    assert cache.persist("forever") is False
    cache.set("k", {"a": 1}, 100)
    assert cache.persist("k") is True
    assert cache.ttl("k") is None and cache.get("k") == {"a": 1}
    assert cache.persist("k") is False


@stores
def test_expiry_bad_input_names_the_argument(make):
    cache = make()
    cache.set("k", "v", 100)
    for call in (lambda: cache.expire("k", -1), lambda: cache.pexpire("k", -5),
                 lambda: cache.expire("k", datetime.timedelta(seconds=-1)),
                 lambda: cache.expire("k", float("nan"))):
        with pytest.raises(ValueError, match="timeout"):
            call()
    for bad in ("10", True, b"1", [1]):
        with pytest.raises(TypeError, match="timeout"):
            cache.expire("k", bad)
        with pytest.raises(TypeError, match="timeout"):
            cache.pexpire("k", bad)
    for bad in ("2030-01-01", datetime.date(2030, 1, 1), None, False):
        with pytest.raises(TypeError, match="when"):
            cache.expire_at("k", bad)
        with pytest.raises(TypeError, match="when"):
            cache.pexpire_at("k", bad)
    # Nothing happened to the key.
    assert cache.get("k") == "v"


# ---- keys by pattern ----------------------------------------------------------


def fill(cache, keys, version=None):
    cache.set_many({k: k for k in keys}, None, version=version)


@stores
def test_keys_and_iter_keys_answer_the_callers_keys(make):
    cache = make()
    fill(cache, ["user:1", "user:2", "users", "item:1"])
    fill(cache, ["user:3"], version=2)
    assert sorted(cache.keys("user:*")) == ["user:1", "user:2"]
    assert sorted(cache.keys("user*")) == ["user:1", "user:2", "users"]
    assert sorted(cache.keys("*")) == ["item:1", "user:1", "user:2", "users"]
    assert cache.keys("user:*", version=2) == ["user:3"]
    assert cache.keys("nothing*") == []
    it = cache.iter_keys("user:*")
    assert inspect.isgenerator(it)
    assert sorted(it) == ["user:1", "user:2"]
    assert list(cache.iter_keys("*", version=2)) == ["user:3"]


@stores
def test_incr_ignore_key_check_starts_a_missing_key_at_delta(make):
    cache = make()
    assert cache.incr("hits", 3, ignore_key_check=True) == 3
    assert cache.ttl("hits") is None  # made without an expiry, as redis's INCRBY makes it
    assert cache.incr("hits", ignore_key_check=True) == 4
    cache.set("ratio", 1.5, 100)
    assert cache.incr("ratio", 1, ignore_key_check=True) == 2.5  # Python's sum, as incr's
    with pytest.raises(ValueError):
        cache.incr("absent")  # without the flag: Django's ValueError
    with pytest.raises(TypeError):
        cache.decr("absent", 1, None, True)  # decr takes no ignore_key_check (nor django-redis's)
    # Threads racing to start one missing key: every increment counted once.
    def add_ones():
        for _ in range(50):
            cache.incr("raced", 1, ignore_key_check=True)

    threads = [threading.Thread(target=add_ones) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get("raced") == 200


@stores
def test_the_keys_only_listing_is_the_listing_s_keys(make):
    # What keys()/iter_keys()/delete_pattern() page through: the same keys,
    # pages and cursors as the inspection's listing, without the dicts.
    cache = make()
    fill(cache, [f"k{i:03}" for i in range(30)])
    fill(cache, ["other"])
    for glob in ("", ":1:k0*", ":1:nothing*"):
        full = [e["key"] for page in entry_pages(cache, glob, size=7) for e in page]
        keys = [k for page in entry_pages(cache, glob, size=7, keys_only=True) for k in page]
        assert keys == full and all(isinstance(k, str) for k in keys)
    assert len(full) == 0 and len(keys) == 0
    assert len([k for page in entry_pages(cache, ":1:k0*", size=7, keys_only=True)
                for k in page]) == 30


@stores
def test_redis_glob_syntax(make):
    cache = make()
    names = ["a1", "b1", "c1", "ab", "a*", "a?", "[x]", "a\\b", "^1", "!1", "-1", "]1"]
    fill(cache, names)

    def found(pattern):
        return sorted(cache.keys(pattern))

    assert found("?1") == sorted(["a1", "b1", "c1", "^1", "!1", "-1", "]1"])
    assert found("[ab]1") == ["a1", "b1"]
    assert found("[^a]1") == sorted(["b1", "c1", "^1", "!1", "-1", "]1"])
    assert found("[a-b]1") == ["a1", "b1"]
    assert found("[b-a]1") == ["a1", "b1"]            # reversed range, as redis reads it
    assert found("[!]1") == ["!1"]                     # '!' does not negate in redis
    assert found("[\\^]1") == ["^1"] and found("[\\-]1") == ["-1"]
    assert found("[\\]]1") == ["]1"]
    assert found("a\\*") == ["a*"] and found("a\\?") == ["a?"]
    assert found("\\[x\\]") == ["[x]"] and found("[[]x]") == ["[x]"]
    assert found("a\\\\b") == ["a\\b"]
    assert found("a[*]") == ["a*"]
    assert found("[]1") == []                          # an empty class matches nothing
    assert len(found("[^]1")) == 7                     # an empty negated one: any character
    assert found("**1") == found("*1")


def test_redis_glob_translation():
    assert redis_glob("a*b?") == "a*b?"
    assert redis_glob("[]") is None
    assert redis_glob("[^]") == "?"
    assert redis_glob("x\\") == "x\\\\"                # a trailing backslash is itself
    # A range ending at ']' (the store's class cannot say it): up to '\\', then ']'.
    assert redis_glob("[0-]]") == "[0-\\\\]]"
    assert redis_glob("[a-]]") == "[\\]-a]"          # reversed: from ']' to 'a'
    assert redis_glob("[!^]") == "[\\!\\^]"
    with pytest.raises(ValueError, match="pattern"):
        redis_glob("[a-é]")


class RedisServer:
    """A redis-server of the test's own on a free 127.0.0.1 port, spoken to
    in RESP over a socket (SET and KEYS are all this test needs)."""

    def __init__(self):
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian package redis-server)"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "no redis-server"
                time.sleep(0.02)
        self.reader = self.sock.makefile("rb")

    def call(self, *words):
        out = [b"*%d\r\n" % len(words)]
        for w in words:
            w = w.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(w), w))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self):
        line = self.reader.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        if kind == b"$":
            data = self.reader.read(int(rest) + 2)[:-2]
            return data.decode()
        assert kind in (b"+", b":"), line
        return rest.decode()

    def stop(self):
        self.sock.close()
        self.proc.kill()
        self.proc.wait(10)


def test_patterns_match_what_redis_keys_matches(regions):
    """3,000 random patterns over an alphabet of glob characters, against
    300 random keys under a KEY_PREFIX made of glob characters: keys()
    answers what redis's KEYS answers, pattern by pattern."""
    cache = regions.new(KEY_PREFIX="p*[x]?\\")
    server = RedisServer()
    try:
        rng = random.Random(15)
        alphabet = "ab-]^!\\[*?"
        names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                 for _ in range(300)}
        for name in names:
            server.call("SET", name, "1")
        fill(cache, names)
        for _ in range(3000):
            pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            assert sorted(cache.keys(pattern)) == sorted(server.call("KEYS", pattern)), pattern
    finally:
        server.stop()


@stores
def test_key_prefix_with_glob_characters_and_another_prefix_on_the_same_store(make):
    cache = make(KEY_PREFIX="p*[x]?")
    other = make(KEY_PREFIX="pA[x]Z")    # would match "p*[x]?" as a glob
    fill(cache, ["a", "b"])
    fill(other, ["a", "c"])
    assert sorted(cache.keys("*")) == ["a", "b"]
    assert sorted(other.keys("*")) == ["a", "c"]
    assert cache.delete_pattern("*") == 2
    assert sorted(other.keys("*")) == ["a", "c"] and other.get("a") == "a"


def suffixed_key(key, key_prefix, version):
    return f"{key_prefix}/v{version}/{key}/end"


def hashed_key(key, key_prefix, version):
    import hashlib

    return f"{key_prefix}:{version}:{hashlib.sha1(key.encode()).hexdigest()}"


@stores
def test_custom_key_function_is_searched_and_reversed(make):
    # memcached lists the keys that start with REGION_PREFIX, by default
    # "<KEY_PREFIX>:": this key function puts "<KEY_PREFIX>/" first.
    opts = {"REGION_PREFIX": "site/"} if make.kind == "memcached" else {}
    cache = make(KEY_PREFIX="site", KEY_FUNCTION=suffixed_key, OPTIONS=opts)
    fill(cache, ["a:1", "a:2", "b:1"])
    fill(cache, ["a:3"], version=3)
    assert sorted(cache.keys("a:*")) == ["a:1", "a:2"]
    assert sorted(cache.iter_keys("*:1")) == ["a:1", "b:1"]
    assert cache.keys("a:*", version=3) == ["a:3"]
    assert cache.delete_pattern("a:*") == 2
    assert cache.keys("*") == ["b:1"] and cache.get("a:3", version=3) == "a:3"


@stores
def test_a_hashing_key_function_cannot_be_searched(make):
    cache = make(KEY_FUNCTION=hashed_key)
    fill(cache, ["a"])
    for call in (lambda: cache.keys("*"), lambda: cache.iter_keys("*"),
                 lambda: cache.delete_pattern("*")):
        with pytest.raises(ValueError, match="KEY_FUNCTION .* cannot be searched"):
            call()
    assert cache.get("a") == "a"


@stores
def test_pages_of_itersize(make):
    cache = make()
    names = [f"k{i:03d}" for i in range(25)]
    fill(cache, names)
    fill(cache, ["other"])
    for itersize in (1, 5, 7, 25, 1000):
        assert sorted(cache.iter_keys("k*", itersize=itersize)) == names
    assert cache.delete_pattern("k*", itersize=7) == 25
    assert cache.keys("*") == ["other"]
    fill(cache, names)
    assert cache.delete_pattern("k*", itersize=5) == 25   # pages that end exactly at the end
    assert cache.keys("*") == ["other"]


@stores
def test_delete_pattern_counts_and_keeps_the_rest(make):
    cache = make()
    fill(cache, ["s:1", "s:2", "t:1"])
    fill(cache, ["s:9"], version=2)
    assert cache.delete_pattern("s:*") == 2
    assert cache.get("s:1") is None and cache.get("t:1") == "t:1"
    assert cache.get("s:9", version=2) == "s:9"
    assert cache.delete_pattern("s:*") == 0
    assert cache.delete_pattern("s:*", version=2) == 1 and cache.keys("*", version=2) == []


@stores
def test_delete_pattern_with_another_key_prefix(make):
    # On memcached a region lists only keys starting with its REGION_PREFIX
    # ("<KEY_PREFIX>:" by default): another prefix needs REGION_PREFIX "".
    opts = {"REGION_PREFIX": ""} if make.kind == "memcached" else {}
    cache = make(KEY_PREFIX="a", OPTIONS=opts)
    other = make(KEY_PREFIX="b")
    fill(cache, ["x", "y"])
    fill(other, ["x", "z"])
    assert cache.delete_pattern("*", prefix="b") == 2
    assert other.keys("*") == [] and sorted(cache.keys("*")) == ["x", "y"]


@stores
def test_expired_entries_are_never_listed(make):
    cache = make()
    fill(cache, ["live"])
    if coarse(cache):
        cache.set("gone", 1, 1)
        time.sleep(2.1)  # memcached expires in whole seconds, on its own clock
    else:
        cache.set("gone", 1, 0.001)
        time.sleep(0.05)
    assert cache.keys("*") == ["live"] and list(cache.iter_keys("*")) == ["live"]
    assert cache.delete_pattern("*") == 1


@stores
def test_stampede_locks_are_listed_as_the_callers_keys(make):
    cache = make()
    fill(cache, ["report"])
    release = stampede.try_lock(cache, "report", None)
    assert sorted(cache.keys("report*")) == ["report", "report" + stampede.LOCK_SUFFIX]
    release()
    assert cache.keys("report*") == ["report"]


@stores
def test_keys_bad_input_names_the_argument(make):
    cache = make()
    for call, name in ((lambda: cache.keys(b"*"), "search"),
                       (lambda: cache.iter_keys(None), "search"),
                       (lambda: cache.delete_pattern(1), "pattern"),
                       (lambda: cache.delete_pattern("*", prefix=2), "prefix")):
        with pytest.raises(TypeError, match=name):
            call()
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="itersize"):
            cache.iter_keys("*", itersize=bad)
        with pytest.raises(ValueError, match="itersize"):
            cache.delete_pattern("*", itersize=bad)


# ---- async forms ----------------------------------------------------------------


@stores
def test_async_forms(make):
    cache = make()

    async def run():
        await cache.aset("k", "v", None)
        fill(cache, ["p:1", "p:2", "p:3"])
        assert await cache.attl("k") is None and await cache.apttl("k") is None
        assert await cache.aexpire("k", 100) is True and await cache.attl("k") == 100
        assert await cache.apexpire("k", 50_000) is True and await cache.attl("k") == 50
        assert await cache.aexpire_at("k", int(time.time()) + 201) is True
        assert await cache.attl("k") in (200, 201)
        assert await cache.apexpire_at("k", int(time.time() * 1000) + 30_000) is True
        assert await cache.attl("k") in (29, 30)
        assert await cache.apersist("k") is True and await cache.attl("k") is None
        assert sorted(await cache.akeys("p:*")) == ["p:1", "p:2", "p:3"]
        it = cache.aiter_keys("p:*", itersize=2)
        assert inspect.isasyncgen(it)
        assert sorted([k async for k in it]) == ["p:1", "p:2", "p:3"]
        with pytest.raises(ValueError, match="itersize"):
            cache.aiter_keys("*", itersize=0)
        with pytest.raises(TypeError, match="search"):
            cache.aiter_keys(3)
        assert await cache.adelete_pattern("p:*", itersize=2) == 3
        assert await cache.akeys("*") == ["k"]

    asyncio.run(run())


# ---- a failing region -----------------------------------------------------------


def dead_memcached(regions, raise_errors):
    port = free_port()  # nothing listens there
    return regions.new(location=f"127.0.0.1:{port}", BACKEND="regioncache.MemcachedCache",
                       OPTIONS={"CONNECT_TIMEOUT": 0.2, "POLL_TIMEOUT": 0.2, "RETRY_TIMEOUT": 0,
                                "RAISE_ERRORS": raise_errors})


CALLS = [
    ("ttl", lambda c: c.ttl("k"), 0),
    ("pttl", lambda c: c.pttl("k"), 0),
    ("expire", lambda c: c.expire("k", 10), False),
    ("pexpire", lambda c: c.pexpire("k", 10), False),
    ("expire_at", lambda c: c.expire_at("k", time.time() + 10), False),
    ("persist", lambda c: c.persist("k"), False),
    ("keys", lambda c: c.keys("*"), []),
    ("iter_keys", lambda c: list(c.iter_keys("*")), []),
    ("delete_pattern", lambda c: c.delete_pattern("*"), 0),
]


@pytest.mark.parametrize("name,call,answer", CALLS, ids=[c[0] for c in CALLS])
def test_server_down_follows_the_failure_policy(regions, caplog, monkeypatch, name, call, answer):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_log, "MAX_LINES", 1000)
    _log.reset()
    swallowing = dead_memcached(regions, False)
    assert call(swallowing) == answer
    _log.drain()
    lines = [r.getMessage() for r in caplog.records if r.name == f"regioncache.{swallowing.alias}"]
    assert lines and all(f"region '{swallowing.alias}' (memcached)" in m for m in lines), lines
    raising = dead_memcached(regions, True)
    with pytest.raises(regioncache.RegionError, match=raising.alias):
        call(raising)


def test_server_down_async_and_generator(regions):
    swallowing = dead_memcached(regions, False)
    raising = dead_memcached(regions, True)

    async def run():
        assert await swallowing.attl("k") == 0
        assert await swallowing.akeys("*") == []
        assert [k async for k in swallowing.aiter_keys("*")] == []
        with pytest.raises(regioncache.RegionError):
            await raising.adelete_pattern("*")
        with pytest.raises(regioncache.RegionError):
            [k async for k in raising.aiter_keys("*")]

    asyncio.run(run())


def test_every_backend_answers_hasattr_checks():
    for cls in (regioncache.SharedMemoryCache, regioncache.FileCache, regioncache.MemcachedCache):
        for name in ("ttl", "pttl", "expire", "pexpire", "expire_at", "pexpire_at", "persist",
                     "keys", "iter_keys", "delete_pattern", "attl", "aexpire", "apersist",
                     "akeys", "aiter_keys", "adelete_pattern"):
            assert callable(getattr(cls, name)), (cls, name)


@stores
def test_keys_memcached_cannot_take_are_listed_as_given(make, recwarn):
    # memcached stores these under mapped names; the listing shows the
    # made key (from the entry's envelope), so the caller's key comes back.
    cache = make()
    long_key = "long:" + "x" * 300
    fill(cache, ["with space", long_key, "plain"])
    assert sorted(cache.keys("*")) == sorted(["with space", long_key, "plain"])
    assert cache.keys("with *") == ["with space"]
    assert cache.delete_pattern("long:*") == 1 and cache.get(long_key) is None
