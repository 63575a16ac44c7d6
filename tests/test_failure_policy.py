"""One failure policy for every region (README, "Failure policy and logging").

A read the store cannot serve is a miss, a write it cannot store returns
False, and each such failure is logged through logging.getLogger(
"regioncache.<alias>"), rate-limited; OPTIONS RAISE_ERRORS: True raises the
region's error instead. A stored value that cannot be decoded is a miss and a
log line too. Every failure here is real: a memcached server that is not
running, a file region whose directory was replaced by a file, bytes of a
shared-memory segment overwritten behind the store's back, garbage planted on
a memcached server with its own text protocol.
"""

import logging
import os
import pickle
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

import regioncache
from regioncache import _log, _native
from memcached_servers import free_port, start_servers


def records(caplog, alias):
    return [r for r in caplog.records if r.name == f"regioncache.{alias}"]


def messages(caplog, alias):
    return [r.getMessage() for r in records(caplog, alias)]


@pytest.fixture(autouse=True)
def _warnings_captured(caplog, monkeypatch):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_log, "MAX_LINES", 1000)  # the rate-limit test sets its own
    _log.reset()


# ---- every operation under one policy -------------------------------------------

OPERATIONS = [
    # name, call, what the default policy answers
    ("get", lambda c: c.get("k", "dflt"), "dflt"),
    ("set", lambda c: c.set("k", "v"), False),
    ("add", lambda c: c.add("k2", "v"), False),
    ("touch", lambda c: c.touch("k"), False),
    ("delete", lambda c: c.delete("k"), False),
    ("has_key", lambda c: c.has_key("k"), False),
    ("get_many", lambda c: c.get_many(["k", "k2"]), {}),
    ("set_many", lambda c: sorted(c.set_many({"a": 1, "b": "x"})), ["a", "b"]),
    ("delete_many", lambda c: c.delete_many(["a", "b"]), None),
    ("clear", lambda c: c.clear(), None),
]


def check_policy(caplog, swallowing, raising, store, causes):
    """Every operation on a failing region: the default answer and one log
    line naming region, store and cause; with RAISE_ERRORS a RegionError
    naming the region."""
    alias = swallowing.alias
    for name, call, expected in OPERATIONS:
        caplog.clear()
        assert call(swallowing) == expected, name
        _log.drain()
        lines = messages(caplog, alias)
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith(f"region {alias!r} ({store}): {name} failed"), lines[0]
        assert any(c in lines[0] for c in causes), lines[0]
        rec = records(caplog, alias)[0]
        assert rec.levelno == logging.WARNING and rec.region == alias and rec.store == store
    caplog.clear()
    with pytest.raises(ValueError) as e:  # Django's answer for a key that cannot be read
        swallowing.incr("k")
    assert "not found" in str(e.value)
    _log.drain()
    assert any("incr failed" in m and any(c in m for c in causes)
               for m in messages(caplog, alias))

    for name, call, _ in OPERATIONS + [("incr", lambda c: c.incr("k"), None)]:
        with pytest.raises(regioncache.RegionError) as e:
            call(raising)
        assert f"region '{raising.alias}'" in str(e.value), (name, str(e.value))
        assert not isinstance(e.value, regioncache.ConfigError)


def test_memcached_server_not_running(regions, caplog):
    port = free_port()  # nothing listens there
    conf = dict(BACKEND="regioncache.MemcachedCache", OPTIONS={
        "CONNECT_TIMEOUT": 0.2, "POLL_TIMEOUT": 0.2, "RETRY_TIMEOUT": 0})
    swallowing = regions.new(location=f"127.0.0.1:{port}", **conf)
    conf["OPTIONS"] = dict(conf["OPTIONS"], RAISE_ERRORS=True)
    raising = regions.new(location=f"127.0.0.1:{port}", **conf)
    assert raising.raise_errors and not swallowing.raise_errors
    check_policy(caplog, swallowing, raising, "memcached",
                 [f"127.0.0.1:{port}", "every memcached server has failed"])


def test_memcached_server_stopped_after_use(regions, caplog):
    servers = start_servers(1)
    try:
        c = regions.new(location=servers[0].location, BACKEND="regioncache.MemcachedCache",
                        OPTIONS={"CONNECT_TIMEOUT": 0.2, "POLL_TIMEOUT": 0.2})
        c.set("k", "v")
        assert c.get("k") == "v"
        servers[0].kill()
        assert c.get("k", "gone") == "gone"
        assert c.set("k", "w") is False
        _log.drain()
        lines = messages(caplog, c.alias)
        assert len(lines) == 2 and "get failed, a miss" in lines[0], lines
        assert servers[0].location in lines[0] and "set failed, returned False" in lines[1]
    finally:
        servers.stop()


def test_file_region_directory_replaced_by_a_file(regions, caplog, tmp_path):
    location = tmp_path / "region"
    swallowing = regions.new(location=str(location), BACKEND="regioncache.FileCache", OPTIONS={})
    raising = regions.new(location=str(location), BACKEND="regioncache.FileCache",
                          OPTIONS={"RAISE_ERRORS": True})
    swallowing.set("k", "v")
    assert raising.get("k") == "v"
    os.rename(location, tmp_path / "moved-away")
    location.write_text("a file where the region's directory was")
    check_policy(caplog, swallowing, raising, "file", ["Not a directory"])


def shm_segment_path(cache):
    return "/dev/shm/" + regioncache.shm_segment_name(cache.store_location).lstrip("/")


def overwrite_in_segment(cache, needle, replacement):
    """Overwrites the one occurrence of needle in the region's segment file
    (the same pages every process maps)."""
    path = shm_segment_path(cache)
    with open(path, "r+b") as f:
        data = f.read()
        at = data.find(needle)
        assert at >= 0 and data.find(needle, at + 1) < 0, "needle not found once"
        f.seek(at)
        f.write(replacement)


class Planted:
    """Unpickling it would create the file at `path`: proof of code run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_shm_value_bytes_damaged_are_misses(regions, caplog):
    # A value changed in the segment fails its checksum (native/shm/LAYOUT.md):
    # a miss and a log line, the entry removed, under both policies (damage
    # the store detects and repairs is not an error); the decoders never see
    # the bytes. Values a decoder cannot read: the memcached test below.
    c = regions.new()
    strict = regions.new(location=c.store_location,
                         OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB", "RAISE_ERRORS": True})
    c.set("text", "MARK-\u00e9-TEXT")
    c.set("obj", {"mark": "MARK-PICKLE"})
    c.set("other", {"mark": "OTHER-PICKLE"})
    c.set("n", 5)
    assert c.get("text") == "MARK-\u00e9-TEXT"
    overwrite_in_segment(c, "MARK-\u00e9-TEXT".encode(), b"MARK-\xff\xfe-TEXT")
    blob = pickle.dumps({"mark": "MARK-PICKLE"}, pickle.HIGHEST_PROTOCOL)
    overwrite_in_segment(c, blob, b"\xff" + blob[1:])
    blob = pickle.dumps({"mark": "OTHER-PICKLE"}, pickle.HIGHEST_PROTOCOL)
    overwrite_in_segment(c, blob, b"\xff" + blob[1:])
    assert c.get("text", "miss") == "miss"
    assert c.get_many(["obj", "n"]) == {"n": 5}
    assert strict.get("other", "miss") == "miss"
    _log.drain()
    lines = messages(caplog, c.alias) + messages(caplog, strict.alias)
    assert sum("failed its checksum" in m for m in lines) == 3, lines
    # removed: later reads miss without another line
    assert c.get("text") is None and c.get("obj") is None and strict.get("other") is None
    c.set("text", "fine")
    assert c.get("text") == "fine"


def test_pickle_that_fails_to_load_is_a_miss(regions, caplog):
    # a class that is gone by the time the value is read (a deploy moved it)
    c = regions.new()
    import types, sys

    mod = types.ModuleType("policy_gone_module")

    class Gone:
        pass

    Gone.__module__ = "policy_gone_module"
    Gone.__qualname__ = "Gone"
    mod.Gone = Gone
    sys.modules["policy_gone_module"] = mod
    try:
        c.set("obj", Gone())
    finally:
        del sys.modules["policy_gone_module"]
    assert c.get("obj", "miss") == "miss"
    _log.drain()
    assert any("ModuleNotFoundError" in m for m in messages(caplog, c.alias))


def test_memcached_garbage_values_are_misses(regions, caplog):
    servers = start_servers(1)
    try:
        c = regions.new(location=servers[0].location, BACKEND="regioncache.MemcachedCache",
                        OPTIONS={})
        strict = regions.new(location=servers[0].location, BACKEND="regioncache.MemcachedCache",
                             OPTIONS={"RAISE_ERRORS": True})
        servers[0].plant(":1:badutf8", 1, b"\xff\xfe not utf-8")
        servers[0].plant(":1:badpickle", 3, b"\x80\x05garbage")
        servers[0].plant(":1:badflags", 7, b"whatever")
        servers[0].plant(":1:badint", 2, b"12abc")
        servers[0].plant(":1:good", 1, b"fine")
        keys = ["badutf8", "badpickle", "badflags", "badint"]
        for k in keys:
            assert c.get(k, "miss") == "miss", k
        assert c.get_many(keys + ["good"]) == {"good": "fine"}
        _log.drain()
        lines = messages(caplog, c.alias)
        assert len(lines) == 8, lines
        for k, why in [("badutf8", "UnicodeDecodeError"), ("badpickle", "UnpicklingError"),
                       ("badflags", "unknown encoding"), ("badint", "not a decimal")]:
            assert any(f"':1:{k}' cannot be read" in m and why in m for m in lines), (k, lines)
        for k in keys:
            with pytest.raises(regioncache.RegionError) as e:
                strict.get(k)
            assert f"region '{strict.alias}'" in str(e.value) and f"':1:{k}'" in str(e.value)
        # RAISE_ERRORS: the region's error, caused by the decoder's
        with pytest.raises(regioncache.RegionError) as e:
            strict.get("badutf8")
        assert isinstance(e.value.__cause__, UnicodeDecodeError)
        with pytest.raises(regioncache.RegionError) as e:
            strict.get_many(["badpickle"])
        assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    finally:
        servers.stop()


# ---- caller mistakes still raise -----------------------------------------------------

def test_caller_mistakes_raise_under_the_default_policy(regions):
    c = regions.new(OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "64K"})
    with pytest.raises(regioncache.ValueTooLargeError):
        c.set("big", b"x" * 100_000)
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        c.set("lock", __import__("threading").Lock())
    c.set("s", "text")
    with pytest.raises(TypeError):
        c.incr("s")  # Django's answer for a value that is not a number
    with pytest.raises(ValueError):
        c.incr("missing")


def test_bad_policy_options(regions):
    for options, needle in [({"RAISE_ERRORS": "yes"}, "RAISE_ERRORS"),
                            ({"SIGNING_KEY": ""}, "SIGNING_KEY"),
                            ({"SIGNING_KEY": 5}, "SIGNING_KEY"),
                            ({"SIGNING_KEY_FALLBACKS": ["a"]}, "SIGNING_KEY_FALLBACKS"),
                            ({"SIGNING_KEY": "k", "SIGNING_KEY_FALLBACKS": "a"},
                             "SIGNING_KEY_FALLBACKS"),
                            ({"SIGN_WITH_SECRET_KEY": True, "SIGNING_KEY": "k"},
                             "SIGN_WITH_SECRET_KEY")]:
        alias = f"bad-{uuid.uuid4().hex[:6]}"
        with pytest.raises(ImproperlyConfigured) as e:
            regions.new(alias=alias, OPTIONS={"SIZE": "8MB", **options})
        assert f"CACHES[{alias!r}]" in str(e.value) and needle in str(e.value), str(e.value)


# ---- the log bridge ------------------------------------------------------------------

def test_log_lines_reach_the_alias_logger_rate_limited(caplog, monkeypatch):
    monkeypatch.setattr(_log, "MAX_LINES", 5)
    monkeypatch.setattr(_log, "INTERVAL", 0.5)
    region = f"rl-{uuid.uuid4().hex[:6]}"
    for i in range(50):
        _native._log_for_test(region, "shm", f"line {i}")
    _log.drain()
    lines = messages(caplog, region)
    assert lines == [f"region {region!r} (shm): line {i}" for i in range(5)]
    time.sleep(0.6)
    caplog.clear()
    _native._log_for_test(region, "shm", "after the window")
    _log.drain()
    assert messages(caplog, region) == [
        f"region {region!r} (shm): after the window (45 more suppressed)"]
    assert records(caplog, region)[0].suppressed == 45


def test_log_queue_is_bounded_and_counts_what_it_dropped(caplog):
    region = f"q-{uuid.uuid4().hex[:6]}"
    for i in range(1500):  # nothing drains in between: no cache call
        _native._log_for_test(region, "file", f"line {i}")
    _log.drain()
    assert len(messages(caplog, region)) == 1000  # MAX_LINES here; the queue kept 1024
    dropped = [r.getMessage() for r in caplog.records if r.name == "regioncache"]
    assert dropped == ["476 native log lines were dropped "
                       "(more than the queue holds between two cache calls)"]


def test_lines_from_native_threads_without_the_gil(caplog):
    # The sink runs on whatever thread a store logs from, without the GIL:
    # 4 native threads x 200 lines, all queued, emitted by the next drain.
    region = f"th-{uuid.uuid4().hex[:6]}"
    _native._log_for_test(region, "memcached", "from a thread", 4, 200)
    _log.drain()
    lines = messages(caplog, region)
    assert len(lines) == 800
    assert sorted(lines) == sorted(
        f"region {region!r} (memcached): from a thread {t}.{i}" for t in range(4) for i in range(200))


def test_lines_logged_are_emitted_by_the_next_cache_call(regions, caplog):
    c = regions.new()
    _native._log_for_test(c.alias, "shm", "from a store")
    assert messages(caplog, c.alias) == []  # queued, not emitted from the sink
    c.get("anything")  # any cache call hands the queue to logging
    assert messages(caplog, c.alias) == [f"region {c.alias!r} (shm): from a store"]


def test_get_or_set_on_a_failed_region_computes_at_once(regions, caplog, tmp_path):
    # No lock can be taken in a region that fails: get_or_set computes the
    # value itself instead of waiting for a lock holder that cannot exist.
    location = tmp_path / "region"
    c = regions.new(location=str(location), BACKEND="regioncache.FileCache", OPTIONS={})
    c.set("warm", 1)
    os.rename(location, tmp_path / "moved-away")
    location.write_text("not a directory")
    calls = []
    t0 = time.monotonic()
    assert c.get_or_set("k", lambda: calls.append(1) or "computed") == "computed"
    assert time.monotonic() - t0 < 2.0 and calls == [1]
    assert c.failures >= 2  # the get and the set


def test_region_that_cannot_be_opened_is_a_check_error_and_answers_misses(regions, caplog):
    # Under the default policy opening does not raise into the first view
    # that uses the region: the region answers as a failed one, says why in
    # open_error and the log, and `manage.py check` reports it (E001).
    from regioncache.checks import check_regions

    alias = regions.register(regions.conf(OPTIONS={"SIZE": "8MB", "CREATE": False}))
    msgs = [m for m in check_regions() if repr(alias) in m.msg]
    assert [m.id for m in msgs] == ["regioncache.E001"], msgs
    assert "no shared-memory segment" in msgs[0].msg
    from django.core.cache import caches

    c = caches[alias]
    assert c.get("k", "miss") == "miss" and c.add("k", 1) is False
    with pytest.raises(ValueError):
        c.incr("k")
    with pytest.raises(regioncache.RegionError):
        c.stats()  # inspection raises under either policy
    _log.drain()
    lines = messages(caplog, alias)
    assert any("cannot be opened" in m and "no shared-memory segment" in m for m in lines), lines
    assert any("get failed, a miss" in m for m in lines), lines
