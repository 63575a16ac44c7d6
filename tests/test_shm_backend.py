"""The shared-memory backend through django.core.cache.caches, in one process:
Django's cache contract, timeouts, value types, key rules, configuration
errors, bounded memory and the inspection API."""

import asyncio
import decimal
import fnmatch
import pickle
import random
import threading
import time
import warnings
from collections import OrderedDict
from datetime import datetime, timezone

import pytest
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, CacheKeyWarning
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.safestring import SafeString, mark_safe

import regioncache

MB = 1024 * 1024


class Point:
    """A picklable user object (module level, so pickle finds it)."""

    def __init__(self, x, y, tags=()):
        self.x, self.y, self.tags = x, y, list(tags)

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y, self.tags) == (
            other.x,
            other.y,
            other.tags,
        )


def reversed_key(key, key_prefix, version):
    return f"rev|{key_prefix}|{version}|{key[::-1]}"


def all_entries(cache, glob="", include_expired=False, limit=1000):
    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(
            cursor=cursor, glob=glob, limit=limit, include_expired=include_expired
        )
        out.extend(page)
        if not cursor:
            return out


# ---------------------------------------------------------------- contract --


def test_get_set_default(shm):
    assert shm.get("missing") is None
    assert shm.get("missing", "dflt") == "dflt"
    assert shm.set("k", "v") is None
    assert shm.get("k") == "v"
    shm.set("k", "w")
    assert shm.get("k") == "w"
    # None is a value, not a miss
    shm.set("none", None)
    assert shm.get("none", "dflt") is None
    assert shm.has_key("none")


def test_add(shm):
    assert shm.add("k", 1) is True
    assert shm.add("k", 2) is False
    assert shm.get("k") == 1
    shm.set("gone", "x", timeout=0)
    assert shm.add("gone", "y") is True
    assert shm.get("gone") == "y"


def test_delete_and_has_key(shm):
    shm.set("k", "v")
    assert shm.has_key("k") is True
    assert shm.delete("k") is True
    assert shm.delete("k") is False
    assert shm.has_key("k") is False
    assert shm.get("k") is None


def test_touch(shm):
    assert shm.touch("nope") is False
    shm.set("k", "v", timeout=100)
    assert shm.touch("k", 1000) is True
    (e,) = all_entries(shm, glob="*:k")
    assert abs(e["expires"] - (time.time() + 1000)) < 5
    assert shm.touch("k", None) is True
    (e,) = all_entries(shm, glob="*:k")
    assert e["expires"] is None
    assert shm.touch("k", 0) is True  # expires at once, like Django's backends
    assert shm.get("k") is None


def test_many(shm):
    assert shm.set_many({"a": 1, "b": "two", "c": b"three"}) == []
    assert shm.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": "two", "c": b"three"}
    got = shm.get_many(iter(["c", "a"]))
    assert got == {"c": b"three", "a": 1}
    assert shm.get_many([]) == {}
    assert shm.delete_many(["a", "zz"]) is None
    assert shm.get_many(["a", "b", "c"]) == {"b": "two", "c": b"three"}
    shm.set_many({"x": 1, "y": 2}, timeout=0)
    assert shm.get_many(["x", "y"]) == {}


def test_incr_decr(shm):
    shm.set("n", 1)
    assert shm.incr("n") == 2
    assert shm.incr("n", 10) == 12
    assert shm.decr("n") == 11
    assert shm.decr("n", 20) == -9
    assert shm.incr("n", -1) == -10
    assert shm.get("n") == -10
    with pytest.raises(ValueError):
        shm.incr("missing")
    with pytest.raises(ValueError):
        shm.decr("missing")
    assert not shm.has_key("missing")
    # beyond 64 bits the value stays an exact Python int
    shm.set("big", 2**63 - 1)
    assert shm.incr("big") == 2**63
    assert shm.get("big") == 2**63
    assert shm.decr("big", 2**64) == 2**63 - 2**64


@pytest.mark.parametrize("value", ["abc", 1.5, b"b", [1]], ids=repr)
def test_incr_on_other_values_behaves_like_django(shm, value):
    ref = LocMemCache("regioncache-ref-incr", {})
    ref.set("v", value)
    shm.set("v", value)
    try:
        expected = ref.incr("v", 2)
    except Exception as e:  # noqa: BLE001 - compared with ours below
        with pytest.raises(type(e)):
            shm.incr("v", 2)
        assert shm.get("v") == value
    else:
        assert shm.incr("v", 2) == expected
        assert shm.get("v") == expected


def test_incr_keeps_expiry(shm):
    shm.set("n", 5, timeout=1000)
    shm.incr("n")
    (e,) = all_entries(shm, glob="*:n")
    assert abs(e["expires"] - (time.time() + 1000)) < 5


def test_get_or_set(shm):
    assert shm.get_or_set("k", "first") == "first"
    assert shm.get_or_set("k", "second") == "first"
    assert shm.get_or_set("c", lambda: 41 + 1) == 42
    assert shm.get("c") == 42
    calls = []
    assert shm.get_or_set("c", lambda: calls.append(1) or 0) == 42
    assert calls == []
    assert shm.get_or_set("null", None) is None
    assert shm.has_key("null")


def test_clear(shm):
    shm.set_many({f"k{i}": i for i in range(100)})
    assert shm.stats()["entries"] == 100
    shm.clear()
    assert shm.stats()["entries"] == 0
    assert shm.get("k1") is None
    shm.set("after", 1)
    assert shm.get("after") == 1


def test_versions(shm):
    shm.set("k", "v1", version=1)
    shm.set("k", "v2", version=2)
    assert shm.get("k") == "v1"
    assert shm.get("k", version=2) == "v2"
    assert shm.incr_version("k") == 2
    assert shm.get("k") is None
    assert shm.get("k", version=2) == "v1"  # version 2 was overwritten by the move
    assert shm.decr_version("k", version=2) == 1
    assert shm.get("k") == "v1"
    with pytest.raises(ValueError):
        shm.incr_version("missing")


def test_close_keeps_data(shm):
    shm.set("k", "v")
    shm.close()
    assert shm.get("k") == "v"


# --------------------------------------------------------------- timeouts --


def test_timeout_none_never_expires(shm):
    shm.set("k", "v", timeout=None)
    (e,) = all_entries(shm)
    assert e["expires"] is None
    assert shm.get("k") == "v"


@pytest.mark.parametrize("timeout", [0, -1, -100])
def test_timeout_zero_or_negative_deletes(shm, timeout):
    shm.set("k", "old")
    shm.set("k", "new", timeout=timeout)
    assert shm.get("k") is None
    assert not shm.has_key("k")
    assert shm.add("k2", "x", timeout=timeout) in (True, False)
    assert shm.get("k2") is None
    shm.set_many({"m": 1}, timeout=timeout)
    assert shm.get("m") is None


def test_default_timeout(regions):
    c = regions.new(TIMEOUT=1000)
    c.set("k", "v")
    c.set("d", "v", timeout=DEFAULT_TIMEOUT)
    for e in all_entries(c):
        assert abs(e["expires"] - (time.time() + 1000)) < 5, e
    never = regions.new(TIMEOUT=None)
    never.set("k", "v")
    assert all_entries(never)[0]["expires"] is None


def test_expiry_and_touch_extends(shm):
    shm.set("short", "v", timeout=1)
    shm.set("touched", "v", timeout=1)
    shm.set("long", "v", timeout=60)
    assert shm.get("short") == "v"
    assert shm.touch("touched", 30) is True
    time.sleep(1.2)
    assert shm.get("short") is None
    assert shm.has_key("short") is False
    assert shm.touch("short") is False
    assert shm.get("touched") == "v"
    assert shm.get("long") == "v"
    keys = {e["key"] for e in all_entries(shm)}
    assert ":1:short" not in keys
    assert {":1:touched", ":1:long"} <= keys


def test_float_timeout(shm):
    shm.set("k", "v", timeout=0.5)
    assert shm.get("k") == "v"
    time.sleep(0.7)
    assert shm.get("k") is None


# ------------------------------------------------------------ value types --

VALUES = [
    0,
    1,
    -1,
    2**31,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    2**200,
    -(3**150),
    True,
    False,
    "",
    "plain",
    "ünïcødé ✓ 𝄞",
    "x" * 100_000,
    b"",
    b"\x00\xff" * 1000,
    bytearray(b"abc"),
    1.5,
    float("inf"),
    -0.0,
    decimal.Decimal("1.10"),
    None,
    [1, "a", b"b"],
    (1, 2),
    {"a": 1, "nested": {"l": [1, 2, {"x": None}]}},
    {1, 2, 3},
    frozenset({"a"}),
    OrderedDict(b=1, a=2),
    datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    Point(1, 2, ["t"]),
    {"points": [Point(i, -i) for i in range(10)]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_exactly(shm, value):
    shm.set("k", value)
    got = shm.get("k")
    assert type(got) is type(value)
    assert got == value or (value != value and got != got)
    if isinstance(value, float):
        assert repr(got) == repr(value)  # -0.0 stays -0.0
    # set_many/get_many use the same codec
    shm.set_many({"m": value})
    got = shm.get_many(["m"])["m"]
    assert type(got) is type(value) and got == value


def test_value_encodings(shm):
    shm.set_many(
        {
            "int": 7,
            "bigint": 2**64,
            "bool": True,
            "str": "s",
            "bytes": b"b",
            "float": 1.0,
            "dict": {},
        }
    )
    enc = {e["key"].split(":", 2)[2]: e["encoding"] for e in all_entries(shm)}
    assert enc == {
        "int": "int",
        "bigint": "pickle",
        "bool": "pickle",
        "str": "str",
        "bytes": "bytes",
        "float": "pickle",
        "dict": "pickle",
    }


def test_safestring_keeps_its_type(shm):
    s = mark_safe("<b>safe</b>")
    shm.set("s", s)
    got = shm.get("s")
    assert type(got) is SafeString
    assert got == "<b>safe</b>"
    shm.set("plain", "<b>plain</b>")
    assert type(shm.get("plain")) is str


class StrSub(str):
    pass


class IntSub(int):
    pass


class BytesSub(bytes):
    pass


@pytest.mark.parametrize("value", [StrSub("s"), IntSub(3), BytesSub(b"b")], ids=repr)
def test_subclasses_of_native_types_keep_their_type(shm, value):
    shm.set("k", value)
    got = shm.get("k")
    assert type(got) is type(value) and got == value


UNPICKLABLE = [lambda: 1, threading.Lock(), (x for x in range(3))]


@pytest.mark.parametrize("value", UNPICKLABLE, ids=["lambda", "lock", "generator"])
def test_unpicklable_value_raises_and_stores_nothing(shm, value):
    with pytest.raises(Exception) as expected:
        pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    shm.set("k", "old")
    with pytest.raises(type(expected.value)):
        shm.set("k", value)
    assert shm.get("k") == "old"
    with pytest.raises(type(expected.value)):
        shm.add("new", value)
    assert not shm.has_key("new")
    with pytest.raises(type(expected.value)):
        shm.set("new", {"inner": value})
    assert not shm.has_key("new")
    assert shm.stats()["entries"] == 1


# -------------------------------------------------------------------- keys --


def test_key_prefix_and_version(regions):
    location = None
    a = regions.new(KEY_PREFIX="app", VERSION=3)
    location = a.stats()["location"]
    b = regions.new(location=location, KEY_PREFIX="other")
    a.set("k", "from a")
    b.set("k", "from b")
    assert a.get("k") == "from a"
    assert b.get("k") == "from b"
    assert a.get("k", version=1) is None
    assert a.get("k", version=3) == "from a"
    keys = sorted(e["key"] for e in all_entries(a))
    assert keys == ["app:3:k", "other:1:k"]
    assert a.incr_version("k") == 4
    assert sorted(e["key"] for e in all_entries(a)) == ["app:4:k", "other:1:k"]


def test_custom_key_function(regions):
    c = regions.new(KEY_FUNCTION=reversed_key, KEY_PREFIX="p", VERSION=2)
    c.set("abc", 1)
    c.set_many({"xyz": 2})
    assert c.get("abc") == 1
    assert c.get_many(["xyz", "abc"]) == {"xyz": 2, "abc": 1}
    assert sorted(e["key"] for e in all_entries(c)) == ["rev|p|2|cba", "rev|p|2|zyx"]
    assert c.incr("abc") == 2
    assert c.delete("xyz")
    assert [e["key"] for e in all_entries(c)] == ["rev|p|2|cba"]


def test_custom_key_function_dotted_path(regions):
    c = regions.new(KEY_FUNCTION="test_shm_backend.reversed_key")
    c.set("abc", 1)
    assert [e["key"] for e in all_entries(c)] == ["rev||1|cba"]


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fn()
    return [(x.category, str(x.message)) for x in w]


BAD_KEYS = [
    "has space",
    "tab\tkey",
    "ctl\x7fkey",
    "k" * 251,
    "ü" * 248,  # 251 characters with the ":1:" prefix (Django counts characters)
    "long " * 60,
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: f"{k[:8]!r}+{len(k)}")
def test_key_warnings_match_django(shm, key):
    ref = LocMemCache("regioncache-ref", {})
    for op in (
        lambda c: c.set(key, 1),
        lambda c: c.get(key),
        lambda c: c.add(key, 1),
        lambda c: c.delete(key),
        lambda c: c.has_key(key),
        lambda c: c.get_many([key]),
        lambda c: c.set_many({key: 1}),
        lambda c: c.touch(key),
    ):
        expected = _warnings_of(lambda: op(ref))
        got = _warnings_of(lambda: op(shm))
        assert expected, "Django itself warns for this key"
        assert got == expected
    assert all(cat is CacheKeyWarning for cat, _ in expected)
    # the key still works (a warning, not an error)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        shm.set(key, "v")
        assert shm.get(key) == "v"


def test_good_keys_do_not_warn(shm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shm.set("k" * 247, 1)  # ":1:" + 247 = 250 characters
        shm.set("ü" * 247, 1)  # 250 characters, 497 bytes: no warning
        shm.set("ünïcode-ok", 1)
        assert shm.get("ünïcode-ok") == 1


def test_non_str_keys(shm):
    shm.set(42, "int key")
    assert shm.get("42") == "int key"
    assert shm.get(42) == "int key"


# ------------------------------------------------------------------- async --


def test_async_api(shm):
    async def go():
        await shm.aset("k", "v")
        assert await shm.aget("k") == "v"
        assert await shm.aget("nope", "d") == "d"
        assert await shm.aadd("k", "w") is False
        assert await shm.aadd("a", 1) is True
        assert await shm.aincr("a", 5) == 6
        assert await shm.adecr("a") == 5
        assert await shm.ahas_key("a") is True
        await shm.aset_many({"x": 1, "y": 2})
        assert await shm.aget_many(["x", "y", "z"]) == {"x": 1, "y": 2}
        assert await shm.atouch("x", 100) is True
        await shm.adelete_many(["x", "y"])
        assert await shm.aget_or_set("g", lambda: "made") == "made"
        assert await shm.aincr_version("g") == 2
        assert await shm.aget("g", version=2) == "made"
        assert await shm.adelete("k") is True
        with pytest.raises(ValueError):
            await shm.aincr("missing")
        await shm.aclear()
        assert await shm.aget("a") is None

    asyncio.run(go())


# ----------------------------------------------------------- configuration --


def _open_alias(regions, options=None, **conf):
    alias = regions.register(regions.conf(OPTIONS=options or {}, **conf))
    return alias, (lambda: caches[alias])


@pytest.mark.parametrize(
    "options, option_name",
    [
        ({"SIZE": "12XB"}, "SIZE"),
        ({"SIZE": -1}, "SIZE"),
        ({"SIZE": "0"}, "SIZE"),
        ({"NOT_AN_OPTION": 1}, "NOT_AN_OPTION"),
        ({"MAX_ENTRIES": -5}, "MAX_ENTRIES"),
        ({"MAX_ENTRIES": "many"}, "MAX_ENTRIES"),
        ({"CULL_FREQUENCY": -1}, "CULL_FREQUENCY"),
        ({"MAX_ITEM_SIZE": "1.5.MB"}, "MAX_ITEM_SIZE"),
        ({"ON_MISMATCH": "ignore"}, "ON_MISMATCH"),
        ({"CREATE": "perhaps"}, "CREATE"),
        ({"SIZE": ["8MB"]}, "SIZE"),
    ],
)
def test_bad_options_name_alias_and_option(regions, options, option_name):
    alias, open_ = _open_alias(regions, options)
    with pytest.raises(ImproperlyConfigured) as err:
        open_()
    msg = str(err.value)
    assert f"CACHES[{alias!r}]" in msg
    assert option_name in msg


@pytest.mark.parametrize(
    "options",
    [{"SIZE": "12XB"}, {"SIZE": "0"}, {"SIZE": "2MB"}, {"SIZE": "4K", "MAX_ITEM_SIZE": "1K"}],
    ids=["unparsable", "zero", "smaller-than-two-items", "tiny"],
)
def test_rejected_options_leave_no_segment(regions, options):
    alias, open_ = _open_alias(regions, options)
    with pytest.raises(ImproperlyConfigured):
        open_()
    assert regions.locations[-1] not in regioncache.shm_regions()


@pytest.mark.parametrize("location", ["", "a/b", "has space", "x" * 201, "..", "ü"])
def test_bad_location(regions, location):
    alias = regions.register(
        {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": location, "OPTIONS": {}}
    )
    with pytest.raises(ImproperlyConfigured) as err:
        caches[alias]
    assert f"CACHES[{alias!r}]" in str(err.value)
    assert "LOCATION" in str(err.value) or repr(location) in str(err.value)


def test_small_region_works(regions):
    c = regions.new(OPTIONS={"SIZE": "64K", "MAX_ITEM_SIZE": "1K"})
    for i in range(500):
        c.set(f"k{i}", bytes([i % 256]) * 500)
        st = c.stats()
        assert st["bytes_used"] <= st["capacity"] <= 64 * 1024
    assert c.get("k499") == bytes([499 % 256]) * 500
    assert c.stats()["evictions"] > 0
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("big", b"x" * 1024)


def test_bad_options_direct_construction():
    location = f"direct-{time.time_ns()}"
    with pytest.raises(ImproperlyConfigured) as err:
        regioncache.SharedMemoryCache(location, {"OPTIONS": {"SIZE": "12XB"}})
    assert location in str(err.value) and "SIZE" in str(err.value)


def test_unknown_backend_path_is_djangos_error(regions):
    alias = regions.register(
        {"BACKEND": "regioncache.NoSuchCache", "LOCATION": "x", "OPTIONS": {}}
    )
    with pytest.raises(InvalidCacheBackendError):
        caches[alias]


def test_option_forms(regions):
    c = regions.new(OPTIONS={"SIZE": 6 * MB, "MAX_ITEM_SIZE": "128K", "CREATE": True})
    st = c.stats()
    assert st["capacity"] <= 6 * MB
    assert int(st["max_item_size"]) == 128 * 1024
    c2 = regions.new(OPTIONS={"SIZE": "1G", "MAX_ITEM_SIZE": "1m"})
    assert 512 * MB < c2.stats()["capacity"] <= 1024 * MB


def test_create_false_needs_existing_region(regions):
    # RAISE_ERRORS: opening raises. The default failure policy: the region
    # answers misses (README, "Failure policy and logging") until the segment
    # exists, and attaches to it then.
    alias, open_ = _open_alias(regions, {"CREATE": False, "SIZE": "8MB", "RAISE_ERRORS": True})
    with pytest.raises((ImproperlyConfigured, regioncache.RegionError)) as err:
        open_()
    assert f"CACHES[{alias!r}]" in str(err.value) or regions.locations[-1] in str(err.value)
    alias, open_ = _open_alias(regions, {"CREATE": False, "SIZE": "8MB"})
    waiting = open_()
    assert "no shared-memory segment" in waiting.open_error
    assert waiting.get("k", "miss") == "miss" and waiting.set("k", "x") is False
    creator = regions.new(location=regions.locations[-1], OPTIONS={"SIZE": "8MB"})
    creator.set("k", "v")
    time.sleep(1.1)  # a failed open is tried again at most once a second
    assert waiting.get("k") == "v" and waiting.open_error is None
    creator = regions.new(OPTIONS={"SIZE": "8MB"})
    creator.set("k", "v")
    location = creator.stats()["location"]
    attach = regions.new(location=location, OPTIONS={"SIZE": "8MB", "CREATE": False})
    assert attach.get("k") == "v"


def test_mismatch_message_names_the_region_to_drop(regions):
    first = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    location = first.stats()["location"]
    alias, open_ = _open_alias(regions, {"SIZE": "8MB"}, location=location)
    with pytest.raises((ImproperlyConfigured, regioncache.RegionError)) as err:
        open_()
    msg = str(err.value)
    # the remedies it suggests must act on this region's segment (LOCATION), not the alias
    assert "drop-shm" not in msg or f"drop-shm {location}" in msg, msg
    assert regioncache.shm_segment_name(location) in msg


def test_too_large_value(regions):
    c = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "64K"})
    alias = c.alias
    c.set_many({"a": b"a" * 1000, "b": "bee", "c": 3})
    before = {e["key"]: e["size"] for e in all_entries(c)}
    big = b"x" * (64 * 1024 + 1)
    with pytest.raises(regioncache.ValueTooLargeError) as err:
        c.set("big", big)
    assert isinstance(err.value, ValueError)
    msg = str(err.value)
    assert alias in msg
    assert str(len(big)) in msg
    assert str(64 * 1024) in msg
    assert not c.has_key("big")
    # a too-large set of an existing key removes its old value: the caller
    # wanted the new one, so the old one must not be served in its place
    # (Django's cached_db sessions rely on it, as with memcached)
    c.set("old", "stale")
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("old", big)
    assert c.get("old") is None
    with pytest.raises(regioncache.ValueTooLargeError):
        c.add("big", big)
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("big", "s" * (100 * 1024))
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("big", {"blob": big})  # pickled
    assert not c.has_key("big")
    c.set("big2", "stale")
    assert c.set_many({"ok": 1, "big": big, "big2": big}) in (["big", "big2"], ["big2", "big"])
    assert c.get("ok") == 1
    assert not c.has_key("big")
    assert not c.has_key("big2")
    after = {e["key"]: e["size"] for e in all_entries(c) if e["key"] != ":1:ok"}
    assert after == before
    assert c.get_many(["a", "b", "c"]) == {"a": b"a" * 1000, "b": "bee", "c": 3}
    # the key counts against the limit too
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("K" * 200, b"x" * (64 * 1024 - 100))
    # a value just under the limit fits
    c.set("fits", b"y" * (60 * 1024))
    assert c.get("fits") == b"y" * (60 * 1024)


def test_size_mismatch(regions):
    first = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    first.set("k", "v")
    location = first.stats()["location"]
    alias, open_ = _open_alias(regions, {"SIZE": "8MB", "MAX_ITEM_SIZE": "256K"}, location=location)
    with pytest.raises((ImproperlyConfigured, regioncache.RegionError)) as err:
        open_()
    msg = str(err.value)
    assert f"CACHES[{alias!r}]" in msg
    assert "SIZE" in msg and "ON_MISMATCH" in msg
    # the existing segment and its data are untouched
    assert first.get("k") == "v"
    again = regions.new(location=location, OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    assert again.get("k") == "v"
    # recreate: a new empty segment of the configured size
    new = regions.new(
        location=location, OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "256K", "ON_MISMATCH": "recreate"}
    )
    st = new.stats()
    assert 4 * MB < st["capacity"] <= 8 * MB
    assert int(st["segment_size"]) == 8 * MB
    assert new.get("k") is None
    new.set("k2", "v2")
    # a later opener with the new SIZE attaches to the recreated segment
    later = regions.new(location=location, OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "256K"})
    assert later.get("k2") == "v2"


# ---------------------------------------------------------- bounded memory --


@pytest.mark.timeout(120)
def test_memory_stays_bounded(regions):
    c = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    rng = random.Random(1234)
    written = 0
    n = 0
    recent = []
    sizes = [10, 100, 1000, 5000, 20_000, 60_000, 200_000]
    while written < 40 * MB:
        size = rng.choice(sizes) + rng.randrange(0, 100)
        key = f"v{n}"
        value = (key.encode() + b":") * (size // (len(key) + 1) + 1)
        c.set(key, value[:size])
        written += size
        n += 1
        recent = (recent + [(key, value[:size])])[-3:]
        st = c.stats()
        assert st["bytes_used"] <= st["capacity"] <= 4 * MB, (n, st)
        if n % 50 == 0:
            assert sum(e["size"] for e in all_entries(c)) <= st["capacity"]
    st = c.stats()
    assert st["evictions"] > 0
    assert st["sets"] == n
    for key, value in recent:
        assert c.get(key) == value
    entries = all_entries(c)
    assert len(entries) == st["entries"]
    assert len(entries) < n
    for e in entries:  # whatever survived is whole
        key = e["key"].split(":", 2)[2]
        v = c.get(key)
        assert v is not None and len(v) == e["size"]
        assert v.startswith(key.encode() + b":")


def test_max_entries_culls(regions):
    c = regions.new(OPTIONS={"SIZE": "8MB", "MAX_ENTRIES": 50, "CULL_FREQUENCY": 3})
    for i in range(300):
        c.set(f"k{i}", i)
        assert c.stats()["entries"] <= 50
    assert c.get("k299") == 299
    c0 = regions.new(OPTIONS={"SIZE": "8MB", "MAX_ENTRIES": 20, "CULL_FREQUENCY": 0})
    for i in range(60):
        c0.set(f"k{i}", i)
        assert c0.stats()["entries"] <= 20
    assert c0.get("k59") == 59


# ------------------------------------------------------------- inspection --


def test_list_entries_paging_and_glob(shm):
    now = time.time()
    users = {f"user:{i}": f"name-{i}" * (i + 1) for i in range(37)}
    shm.set_many(users, timeout=500)
    other = {f"item:{i}": bytes(i) for i in range(23)}
    shm.set_many(other, timeout=None)
    shm.set("ü-key", "ünï")
    seen = []
    cursor = ""
    pages = 0
    while True:
        page, cursor = shm.list_entries(cursor=cursor, limit=7)
        assert len(page) <= 7
        seen.extend(page)
        pages += 1
        if not cursor:
            break
        assert pages < 100
    keys = [e["key"] for e in seen]
    assert len(keys) == len(set(keys)) == 61
    assert set(keys) == {f":1:{k}" for k in list(users) + list(other) + ["ü-key"]}
    by_key = {e["key"]: e for e in seen}
    for k, v in users.items():
        e = by_key[f":1:{k}"]
        assert e["size"] == len(v.encode())
        assert e["encoding"] == "str"
        assert abs(e["expires"] - (now + 500)) < 5
        assert abs(e["stored"] - now) < 5
    for k, v in other.items():
        e = by_key[f":1:{k}"]
        assert e["size"] == len(v) and e["encoding"] == "bytes" and e["expires"] is None
    assert by_key[":1:ü-key"]["size"] == len("ünï".encode())

    user_keys = [e["key"] for e in all_entries(shm, glob=":1:user:*", limit=5)]
    assert sorted(user_keys) == sorted(f":1:{k}" for k in users)
    one = [e["key"] for e in all_entries(shm, glob="*:user:1?")]
    assert sorted(one) == sorted(f":1:user:1{d}" for d in range(10))
    assert all_entries(shm, glob="nothing*") == []
    assert fnmatch.filter(keys, ":1:item:[0-4]") and sorted(
        e["key"] for e in all_entries(shm, glob=":1:item:[0-4]")
    ) == sorted(fnmatch.filter(keys, ":1:item:[0-4]"))


def test_list_entries_expired(shm):
    shm.set("soon", 1, timeout=1)
    shm.set("later", 1, timeout=100)
    time.sleep(1.2)
    assert [e["key"] for e in all_entries(shm)] == [":1:later"]
    assert sorted(e["key"] for e in all_entries(shm, include_expired=True)) == [
        ":1:later",
        ":1:soon",
    ]
    assert shm.purge_expired() == 1
    assert [e["key"] for e in all_entries(shm, include_expired=True)] == [":1:later"]
    assert shm.purge_expired() == 0


def test_purge_glob(shm):
    shm.set_many({f"a:{i}": i for i in range(10)})
    shm.set_many({f"b:{i}": i for i in range(5)})
    assert shm.purge(":1:a:*") == 10
    assert shm.purge(":1:a:*") == 0
    assert sorted(e["key"] for e in all_entries(shm)) == sorted(f":1:b:{i}" for i in range(5))
    assert shm.purge("*") == 5
    assert shm.stats()["entries"] == 0


def test_stats_move(shm):
    st0 = shm.stats()
    assert st0["kind"] == "shm"
    assert st0["entries"] == 0 and st0["bytes_used"] == 0
    shm.set("k", "v")
    shm.get("k")
    shm.get("k")
    shm.get("nope")
    shm.get_many(["k", "nope", "nope2"])
    st = shm.stats()
    assert st["hits"] - st0["hits"] == 3
    assert st["misses"] - st0["misses"] == 3
    assert st["sets"] - st0["sets"] == 1
    assert st["entries"] == 1
    assert st["bytes_used"] > 0
    shm.set("exp", 1, timeout=1)
    time.sleep(1.1)
    assert shm.get("exp") is None
    assert shm.stats()["expirations"] >= 1


def test_region_functions(regions):
    c = regions.new()
    location = c.stats()["location"]
    assert location in regioncache.shm_regions()
    assert regioncache.shm_segment_name(location).endswith(location)
    c.close()
    regioncache.remove_shm_region(location)
    assert location not in regioncache.shm_regions()
    with pytest.raises(regioncache.RegionError) as err:
        regioncache.remove_shm_region(location)
    assert location in str(err.value)


def test_segment_file_mode(shm):
    import os
    import stat

    name = regioncache.shm_segment_name(shm.stats()["location"])
    st = os.stat("/dev/shm/" + name.lstrip("/"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.getuid()


# ------------------------------------------------------------ compression --


def html_page(seed, size=17 * 1024):
    """About 17 KB of a rendered list page: markup repeated around varied words."""
    rng = random.Random(seed)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    out = [f"<!DOCTYPE html><html><head><title>Page {seed}</title></head><body><table>"]
    n = len(out[0])
    while n < size - 30:
        row = (
            f'<tr class="row"><td class="id">{rng.randrange(100000)}</td>'
            f'<td class="name"><a href="/item/{rng.randrange(100000)}/">'
            f'{" ".join(rng.choice(words) for _ in range(3))}</a></td>'
            f'<td class="price">{rng.randrange(1000)}.{rng.randrange(100):02d}</td></tr>\n'
        )
        out.append(row)
        n += len(row)
    out.append("</table></body></html>")
    return "".join(out)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"COMPRESS_LEVEL": 0}, "option COMPRESS_LEVEL=0 is not a zstd level from 1 to 19"),
        ({"COMPRESS_LEVEL": 20}, "option COMPRESS_LEVEL=20 is not a zstd level from 1 to 19"),
        ({"COMPRESS_LEVEL": "fast"}, "COMPRESS_LEVEL"),
        ({"COMPRESS_LEVEL": -3}, "COMPRESS_LEVEL"),
        ({"COMPRESS_MIN_SIZE": "lots"}, "COMPRESS_MIN_SIZE"),
        ({"COMPRESS_MIN_SIZE": -1}, "COMPRESS_MIN_SIZE"),
    ],
    ids=["level-0", "level-20", "level-word", "level-negative", "min-word", "min-negative"],
)
def test_compress_options_are_validated(regions, options, words):
    alias, open_ = _open_alias(regions, options)
    with pytest.raises(ImproperlyConfigured) as err:
        open_()
    msg = str(err.value)
    assert f"CACHES[{alias!r}]" in msg, msg
    assert words in msg, msg
    assert regions.locations[-1] not in regioncache.shm_regions()


def test_compress_options_show_in_stats(regions):
    plain = regions.new()
    assert plain.stats()["compress_min_size"] == "0"
    assert plain.stats()["compress_level"] == "1"
    c = regions.new(OPTIONS={"SIZE": "8MB", "COMPRESS_MIN_SIZE": "4KB", "COMPRESS_LEVEL": 6})
    st = c.stats()
    assert st["compress_min_size"] == "4096" and st["compress_level"] == "6"
    extra = dict(c._stats_full()["extra"])
    assert extra["compress_min_size"] == "4096" and extra["compress_level"] == "6"


def test_compressed_values_through_the_django_api(regions):
    c = regions.new(OPTIONS={"SIZE": "8MB", "COMPRESS_MIN_SIZE": "1KB"})
    page, other = html_page(1), html_page(2)
    blob = page.encode() * 2
    obj = {"rows": [page[i : i + 100] for i in range(0, 5000, 100)], "n": 7}
    c.set("page", page)
    c.set("blob", blob)
    c.set("obj", obj)
    c.set("n", 10**15)
    assert c.get("page") == page
    assert c.get("blob") == blob
    assert c.get("obj") == obj
    assert c.get_many(["page", "missing", "blob", "obj", "n"]) == {
        "page": page, "blob": blob, "obj": obj, "n": 10**15,
    }
    # add, touch, incr and delete see values, never frames
    assert c.add("page", other) is False
    assert c.add("other", other) is True
    assert c.get("other") == other
    assert c.touch("page", 500) is True
    (e,) = all_entries(c, glob="*:page")
    assert abs(e["expires"] - (time.time() + 500)) < 5
    assert c.get("page") == page
    assert c.incr("n", 5) == 10**15 + 5  # ints are never compressed
    with pytest.raises(TypeError):
        c.incr("page")  # as Django's LocMemCache: the str value plus an int
    assert c.get("page") == page
    assert c.get_or_set("page", "unused") == page
    # listing shows the sizes the values were given with, and their encodings
    by_key = {e["key"]: e for e in all_entries(c)}
    assert by_key[":1:page"]["size"] == len(page.encode())
    assert by_key[":1:page"]["encoding"] == "str"
    assert by_key[":1:blob"]["size"] == len(blob) and by_key[":1:blob"]["encoding"] == "bytes"
    assert by_key[":1:obj"]["encoding"] == "pickle"
    # the page middleware's look at the stored bytes gets the value, decoded
    raw = c._peek_raw(c.make_key("page"))
    assert raw["data"] == page.encode() and raw["size"] == len(page.encode())
    assert raw["encoding"] == "str" and raw["truncated"] is False
    # stored compressed: the four large values take a fraction of their size
    st = c.stats()
    given = len(page.encode()) * 2 + len(blob) + len(pickle.dumps(obj))
    assert st["bytes_used"] < given / 2, (st["bytes_used"], given)
    assert st["errors"] == 0
    assert c.delete("page") is True
    assert c.get("page") is None


def test_compression_off_stores_values_as_given(regions):
    on = regions.new(OPTIONS={"SIZE": "8MB", "COMPRESS_MIN_SIZE": "1KB"})
    off = regions.new(OPTIONS={"SIZE": "8MB"})
    page = html_page(3)
    on.set("page", page)
    off.set("page", page)
    assert on.stats()["bytes_used"] * 3 <= off.stats()["bytes_used"]
    assert on.get("page") == off.get("page") == page


def test_compressed_value_over_max_item_size_is_refused(regions):
    # The limit is on the value given, however well it compresses.
    c = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "64K", "COMPRESS_MIN_SIZE": "1KB"})
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("big", b"z" * (64 * 1024))
    c.set("fits", b"z" * (60 * 1024))
    assert c.get("fits") == b"z" * (60 * 1024)
