"""Parity with django-redis: ONE script of calls, run against django-redis's
RedisCache on a real redis-server (started here on a free 127.0.0.1 port)
and against SharedMemoryCache, FileCache and MemcachedCache. Each step's
result must be the same on all four, except where the README's
"Differences from django-redis" lists a difference: DIFFERENCES below, each
row quoting its README line (a test checks the README still says it).

The script is also checked against what django-redis is known to answer
(each step's `expect`), so a change of django-redis or of the script shows
up as such, not as a difference of ours. Results: ("ok", value) or
("raises", the exception's kind); ttl/pttl are compared within the stores'
resolution (TTL_SLACK_S), keys() and iter_keys() as sets.
"""

import inspect
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches

from harness import RedisServer
from memcached_servers import Server

README = Path(__file__).resolve().parent.parent / "README.md"
KEY_PREFIX = "parity"

# ttl in whole seconds: redis rounds, memcached keeps whole seconds, and the
# script runs for a moment between a set and its ttl.
TTL_SLACK_S = 2


@dataclass(frozen=True)
class Step:
    name: str
    call: object  # call(cache, ctx) -> result
    expect: object  # what django-redis answers: a value, or Raises(kind)
    compare: str = "eq"  # "eq", "set", "ttl_s", "ttl_ms"
    op: str = ""  # the call, for DIFFERENCES that hold for every call of it (set, ...)
    needs: tuple = ()  # methods beyond Django's that the step, or the state it reads, needs


@dataclass(frozen=True)
class Raises:
    kind: str


def raised_kind(exc):
    """The kind of an exception, the same for django-redis's (redis-py's)
    and ours: a lock error by name, else the builtin it is."""
    names = [c.__name__ for c in type(exc).__mro__]
    for kind in ("LockNotOwnedError", "LockError"):
        if kind in names:
            return kind
    for builtin in (KeyError, ValueError, TypeError, AttributeError):
        if isinstance(exc, builtin):
            return builtin.__name__
    return type(exc).__name__


def _held(ctx, name, **kw):
    lock = ctx[name] = ctx["cache"].lock(name.split("#")[0], **kw)
    return lock


def _with_lock(c):
    with c.lock("L4", timeout=5) as lk:
        inside = (lk.owned(), lk.locked())
    return inside + (lk.locked(),)


def _with_lock_held_elsewhere(c, ctx):
    ctx["L5"] = c.lock("L5", timeout=5)
    assert ctx["L5"].acquire(blocking=False)
    try:
        with c.lock("L5", timeout=5, blocking=False):
            return "entered"
    finally:
        ctx["L5"].release()


KEYS = ("keys",)
EXPIRY = ("ttl",)
LOCK = ("lock",)


def S(name, call, expect, compare="eq", op="", needs=()):
    return Step(name, call, expect, compare, op, needs)


SCRIPT = [
    # Django's calls, as django-redis answers them.
    S("set a=1", lambda c, x: c.set("a", 1), True, op="set"),
    S("get a", lambda c, x: c.get("a"), 1),
    S("get missing", lambda c, x: c.get("nope"), None),
    S("get missing with default", lambda c, x: c.get("nope", "dflt"), "dflt"),
    S("add existing", lambda c, x: c.add("a", 2), False),
    S("add new", lambda c, x: c.add("b", "bee"), True),
    S("get_many", lambda c, x: c.get_many(["a", "b", "nope"]), {"a": 1, "b": "bee"}),
    S("incr", lambda c, x: c.incr("a"), 2),
    S("incr by 10", lambda c, x: c.incr("a", 10), 12),
    S("decr by 3", lambda c, x: c.decr("a", 3), 9),
    S("incr missing", lambda c, x: c.incr("nope"), Raises("ValueError")),
    S("decr missing", lambda c, x: c.decr("nope"), Raises("ValueError")),
    S("set a str", lambda c, x: c.set("s", "abc"), True, op="set"),
    S("incr a str", lambda c, x: c.incr("s"), Raises("TypeError")),
    S("incr missing, ignore_key_check",
      lambda c, x: c.incr("counter", 5, ignore_key_check=True), 5),
    S("incr present, ignore_key_check",
      lambda c, x: c.incr("counter", 2, ignore_key_check=True), 7),
    S("ttl of a counter ignore_key_check made", lambda c, x: c.ttl("counter"), None, needs=EXPIRY),
    # Expiry.
    S("set t for 100 s", lambda c, x: c.set("t", "v", timeout=100), True, op="set"),
    S("ttl t", lambda c, x: c.ttl("t"), 100, "ttl_s", needs=EXPIRY),
    S("pttl t", lambda c, x: c.pttl("t"), 100_000, "ttl_ms", needs=EXPIRY),
    S("ttl missing", lambda c, x: c.ttl("nope"), 0, needs=EXPIRY),
    S("pttl missing", lambda c, x: c.pttl("nope"), 0, needs=EXPIRY),
    S("set forever", lambda c, x: c.set("forever", 1, timeout=None), True, op="set"),
    S("ttl forever", lambda c, x: c.ttl("forever"), None, needs=EXPIRY),
    S("pttl forever", lambda c, x: c.pttl("forever"), None, needs=EXPIRY),
    S("expire t 50", lambda c, x: c.expire("t", 50), True, needs=EXPIRY),
    S("ttl t after expire", lambda c, x: c.ttl("t"), 50, "ttl_s", needs=EXPIRY),
    S("pexpire t 20000", lambda c, x: c.pexpire("t", 20_000), True, needs=EXPIRY),
    S("pttl t after pexpire", lambda c, x: c.pttl("t"), 20_000, "ttl_ms", needs=EXPIRY),
    S("expire_at t now+30", lambda c, x: c.expire_at("t", int(time.time()) + 30), True,
      needs=EXPIRY),
    S("ttl t after expire_at", lambda c, x: c.ttl("t"), 30, "ttl_s", needs=EXPIRY),
    S("persist t", lambda c, x: c.persist("t"), True, needs=EXPIRY),
    S("ttl t after persist", lambda c, x: c.ttl("t"), None, needs=EXPIRY),
    S("persist a key without expiry", lambda c, x: c.persist("forever"), False, needs=EXPIRY),
    S("persist missing", lambda c, x: c.persist("nope"), False, needs=EXPIRY),
    S("expire missing", lambda c, x: c.expire("nope", 10), False, needs=EXPIRY),
    S("pexpire missing", lambda c, x: c.pexpire("nope", 10_000), False, needs=EXPIRY),
    S("expire_at missing", lambda c, x: c.expire_at("nope", int(time.time()) + 30), False,
      needs=EXPIRY),
    S("touch t 40", lambda c, x: c.touch("t", 40), True),
    S("ttl t after touch", lambda c, x: c.ttl("t"), 40, "ttl_s", needs=EXPIRY),
    S("touch missing", lambda c, x: c.touch("nope", 40), False),
    S("touch t forever", lambda c, x: c.touch("t", None), True),
    S("ttl t after touch forever", lambda c, x: c.ttl("t"), None, needs=EXPIRY),
    S("expire t 0", lambda c, x: c.expire("t", 0), True, needs=EXPIRY),
    S("has_key t after expire 0", lambda c, x: c.has_key("t"), False, needs=EXPIRY),
    S("set e", lambda c, x: c.set("e", 1), True, op="set"),
    S("expire e -1", lambda c, x: c.expire("e", -1), True, needs=EXPIRY),
    S("set z with timeout 0", lambda c, x: c.set("z", 1, timeout=0), False, op="set"),
    S("get z", lambda c, x: c.get("z"), None),
    # Keys by pattern, in the caller's key space (KEY_PREFIX and version applied).
    S("set user:1", lambda c, x: c.set("user:1", 1), True, op="set"),
    S("set user:2", lambda c, x: c.set("user:2", 2), True, op="set"),
    S("set other:1", lambda c, x: c.set("other:1", 3), True, op="set"),
    S("set user:3 version 2", lambda c, x: c.set("user:3", 3, version=2), True, op="set"),
    S("keys user:*", lambda c, x: c.keys("user:*"), {"user:1", "user:2"}, "set", needs=KEYS),
    S("keys user:* version 2", lambda c, x: c.keys("user:*", version=2), {"user:3"}, "set",
      needs=KEYS),
    S("keys *:1", lambda c, x: c.keys("*:1"), {"user:1", "other:1"}, "set", needs=KEYS),
    S("keys user:?", lambda c, x: c.keys("user:?"), {"user:1", "user:2"}, "set", needs=KEYS),
    S("keys user:[2-9]", lambda c, x: c.keys("user:[2-9]"), {"user:2"}, "set", needs=KEYS),
    S("keys matching nothing", lambda c, x: c.keys("nothing*"), set(), "set", needs=KEYS),
    S("iter_keys is a generator", lambda c, x: inspect.isgenerator(c.iter_keys("user:*")), True,
      needs=KEYS),
    S("iter_keys user:*, itersize 1", lambda c, x: c.iter_keys("user:*", itersize=1),
      {"user:1", "user:2"}, "set", needs=KEYS),
    S("delete_pattern user:*", lambda c, x: c.delete_pattern("user:*"), 2, needs=KEYS),
    S("keys user:* after delete_pattern", lambda c, x: c.keys("user:*"), set(), "set",
      needs=KEYS),
    S("version 2 untouched by delete_pattern", lambda c, x: c.keys("user:*", version=2),
      {"user:3"}, "set", needs=KEYS),
    S("delete_pattern user:* version 2", lambda c, x: c.delete_pattern("user:*", version=2), 1,
      needs=KEYS),
    S("delete_pattern matching nothing", lambda c, x: c.delete_pattern("nothing*"), 0,
      needs=KEYS),
    S("other:1 still there", lambda c, x: c.get("other:1"), 3),
    # has_key, delete, delete_many, set_many, versions.
    S("has_key a", lambda c, x: c.has_key("a"), True),
    S("has_key deleted by pattern", lambda c, x: c.has_key("user:1"), False, needs=KEYS),
    S("delete a", lambda c, x: c.delete("a"), True),
    S("delete a again", lambda c, x: c.delete("a"), False),
    S("delete_many", lambda c, x: c.delete_many(["b", "forever", "nope"]), 2, op="delete_many"),
    S("get_many after delete_many", lambda c, x: c.get_many(["b", "forever"]), {}),
    S("set_many", lambda c, x: c.set_many({"m1": 1, "m2": "two"}), None, op="set_many"),
    S("get_many after set_many", lambda c, x: c.get_many(["m1", "m2"]), {"m1": 1, "m2": "two"}),
    S("set v version 2", lambda c, x: c.set("v", "vee", version=2), True, op="set"),
    S("get v, default version", lambda c, x: c.get("v"), None),
    S("get v version 2", lambda c, x: c.get("v", version=2), "vee"),
    S("incr_version v", lambda c, x: c.incr_version("v", version=2), 3),
    S("get v version 3", lambda c, x: c.get("v", version=3), "vee"),
    S("get v version 2 after incr_version", lambda c, x: c.get("v", version=2), None),
    # Locks.
    S("lock L acquire, not blocking",
      lambda c, x: _held(x, "L#1", timeout=10).acquire(blocking=False), True, needs=LOCK),
    S("lock L locked", lambda c, x: x["L#1"].locked(), True, needs=LOCK),
    S("lock L owned", lambda c, x: x["L#1"].owned(), True, needs=LOCK),
    S("second lock L acquire, not blocking",
      lambda c, x: _held(x, "L#2", timeout=10).acquire(blocking=False), False, needs=LOCK),
    S("second lock L acquire, blocking_timeout 0.05",
      lambda c, x: x["L#2"].acquire(blocking_timeout=0.05), False, needs=LOCK),
    S("second lock L locked", lambda c, x: x["L#2"].locked(), True, needs=LOCK),
    S("second lock L owned", lambda c, x: x["L#2"].owned(), False, needs=LOCK),
    S("second lock L release, not owned", lambda c, x: x["L#2"].release(), Raises("LockError"),
      needs=LOCK),
    S("second lock L extend, not owned", lambda c, x: x["L#2"].extend(1), Raises("LockError"),
      needs=LOCK),
    S("lock L extend 5", lambda c, x: x["L#1"].extend(5), True, needs=LOCK),
    S("lock L release", lambda c, x: x["L#1"].release(), None, needs=LOCK),
    S("lock L locked after release", lambda c, x: x["L#1"].locked(), False, needs=LOCK),
    S("lock L release again", lambda c, x: x["L#1"].release(), Raises("LockError"), needs=LOCK),
    S("second lock L acquire once free", lambda c, x: x["L#2"].acquire(blocking=False), True,
      needs=LOCK),
    S("second lock L release", lambda c, x: x["L#2"].release(), None, needs=LOCK),
    S("lock without timeout acquire", lambda c, x: _held(x, "L3").acquire(), True, needs=LOCK),
    S("lock without timeout extend", lambda c, x: x["L3"].extend(1), Raises("LockError"),
      needs=LOCK),
    S("lock without timeout release", lambda c, x: x["L3"].release(), None, needs=LOCK),
    S("with lock: owned and locked inside, free after", lambda c, x: _with_lock(c),
      (True, True, False), needs=LOCK),
    S("with lock held elsewhere, not blocking", _with_lock_held_elsewhere, Raises("LockError"),
      needs=LOCK),
]

# The README's documented differences: by step op or step name, (the
# README's words, what ours answer, the stores it holds for).
ALL = ("shm", "file", "memcached")
DIFFERENCES = {
    "set": ("`set()` returns `None`, as Django's contract says; django-redis returns `True`.",
            None, ALL),
    "set_many": ("`set_many()` returns the list of keys it failed to store (`[]`), as Django's "
                 "contract says;", [], ALL),
    "delete_many": ("`delete_many()` returns `None`, as Django's contract says; django-redis "
                    "returns the number", None, ALL),
    "expire e -1": ("a negative timeout raises `ValueError` (redis deletes the key)",
                    Raises("ValueError"), ALL),
}
def where(name, kind):
    """Where a step's expected result comes from, for messages."""
    step = next(s for s in SCRIPT if s.name == name)
    doc = DIFFERENCES.get(name) or DIFFERENCES.get(step.op)
    return "the README's documented difference" if doc and kind in doc[2] else "django-redis"


def run_script(cache):
    """{step name: result} of the whole script on cache, from a cleared
    state; ("missing", method) where the backend lacks a method the step
    needs (a failure: every store has django-redis's calls)."""
    cache.clear()
    ctx = {"cache": cache}
    out = {}
    for step in SCRIPT:
        missing = [m for m in step.needs if not hasattr(cache, m)]
        if missing:
            out[step.name] = ("missing", missing[0])
            continue
        try:
            value = step.call(cache, ctx)
            if step.compare == "set" and not isinstance(value, (set, frozenset)):
                value = set(value)
            out[step.name] = ("ok", value)
        except Exception as e:  # noqa: BLE001 (every exception is a result here)
            out[step.name] = ("raises", raised_kind(e))
    return out


def as_result(expect):
    return ("raises", expect.kind) if isinstance(expect, Raises) else ("ok", expect)


def same(step, got, want):
    """Equal results: the same outcome, and for a value the same value of the
    same type (1 and True count as one: django-redis's delete answers 1/0),
    ttl/pttl within TTL_SLACK_S."""
    if got[0] != want[0] or got[0] != "ok":
        return got == want
    a, b = got[1], want[1]
    if step.compare in ("ttl_s", "ttl_ms") and a is not None and b is not None:
        slack = TTL_SLACK_S * (1000 if step.compare == "ttl_ms" else 1)
        return type(a) is int and abs(a - b) <= slack
    return a == b and (type(a) is type(b) or {type(a), type(b)} <= {bool, int})


def differences(results, reference, kind=None):
    """[(step, expected, got)] where results differ from reference, a
    documented difference of the store kind standing in for the reference
    where listed (none for kind None)."""
    out = []
    for step in SCRIPT:
        want = reference[step.name]
        doc = DIFFERENCES.get(step.name) or DIFFERENCES.get(step.op)
        if kind is not None and doc is not None and kind in doc[2]:
            want = as_result(doc[1])
        got = results[step.name]
        if got[0] == "missing" or not same(step, got, want):
            out.append((step.name, want, got))
    return out


def pipe_key(key, key_prefix, version):
    """A KEY_FUNCTION of a site's own (not Django's "prefix:version:key")."""
    return f"{key_prefix}|{version}|{key}"


def pipe_reverse(made):
    return made.split("|", 2)[2]


# The script runs under Django's key function and under a site's own: the
# patterns and the keys listed are the caller's in both. django-redis needs
# REVERSE_KEY_FUNCTION to list keys under a KEY_FUNCTION of its own.
KEY_CONFS = {
    "default_key_function": ({}, {}),
    "own_key_function": ({"KEY_FUNCTION": pipe_key},
                         {"KEY_FUNCTION": pipe_key, "REVERSE_KEY_FUNCTION": pipe_reverse}),
}


@pytest.fixture(params=sorted(KEY_CONFS))
def key_conf(request):
    return KEY_CONFS[request.param]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def memcached_server():
    server = Server().start()
    yield server
    server.kill()


@pytest.fixture
def django_redis_cache(regions, redis_server, key_conf):
    alias = regions.register({
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": redis_server.url,
        "KEY_PREFIX": KEY_PREFIX,
        "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        **key_conf[1],
    })
    return caches[alias]


def our_cache(regions, kind, memcached_server, key_conf):
    conf = {"KEY_PREFIX": KEY_PREFIX, **key_conf[0]}
    if kind == "shm":
        return regions.new(OPTIONS={"SIZE": "8MB", "RAISE_ERRORS": True}, **conf)
    if kind == "file":
        return regions.new(os.path.join(settings.TMP_DIR, f"parity-{len(regions.aliases)}"),
                           BACKEND="regioncache.FileCache", OPTIONS={"RAISE_ERRORS": True}, **conf)
    # Listing on memcached covers the keys that start with REGION_PREFIX: the
    # made keys' start under either key function.
    region_prefix = f"{KEY_PREFIX}|" if key_conf[0] else f"{KEY_PREFIX}:"
    return regions.new(memcached_server.location, BACKEND="regioncache.MemcachedCache",
                       OPTIONS={"RAISE_ERRORS": True, "REGION_PREFIX": region_prefix}, **conf)


def test_the_script_runs_whole_against_django_redis_as_expected(django_redis_cache):
    results = run_script(django_redis_cache)
    assert len(results) == len(SCRIPT) == len({s.name for s in SCRIPT})  # names are unique
    expected = {s.name: as_result(s.expect) for s in SCRIPT}
    assert differences(results, expected) == []


def test_every_documented_difference_is_in_the_readme():
    flat = " ".join(README.read_text().split())
    for key, (words, _, _) in DIFFERENCES.items():
        assert key in {s.op for s in SCRIPT} | {s.name for s in SCRIPT}, key
        assert " ".join(words.split()) in flat, words


@pytest.mark.parametrize("kind", ["shm", "file", "memcached"])
def test_each_store_answers_the_script_as_django_redis(regions, django_redis_cache, kind,
                                                       memcached_server, key_conf):
    reference = run_script(django_redis_cache)
    results = run_script(our_cache(regions, kind, memcached_server, key_conf))
    found = differences(results, reference, kind)
    assert found == [], "\n".join(
        f"{kind}: {name}: expected {want} ({where(name, kind)}), ours {got}"
        for name, want, got in found)


def test_a_missing_redis_server_fails_the_suite_rather_than_skipping_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no redis-server on it
    with pytest.raises(RuntimeError, match="redis-server is not installed"):
        RedisServer(tmp_path).start()
