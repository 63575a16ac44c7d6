"""The inspection agent (`python -m regioncache agent`, docs/AGENT.md), driven
as a child process over pipes through tests/agent_client.py, against real
stores: shared memory, a directory of files, and a real memcached on a free
port. What the agent answers is checked against what Django's own
caches[alias] holds in this process."""

import base64
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import caches

import regioncache
from agent_client import AgentClient, agent_command
from memcached_servers import start_servers
from regioncache.spec import store_spec

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def memcached():
    """A real memcached on a free port, shared by the module's tests (each
    region on it has a KEY_PREFIX of its own)."""
    servers = start_servers(1)
    try:
        yield servers[0]
    finally:
        servers.stop()


KINDS = ["shm", "file", "memcached"]


@pytest.fixture
def site(regions, memcached):
    """A project with a region of each store kind and a LocMemCache alias:
    {"shm": alias, "file": alias, "memcached": alias, "django": alias}."""
    tag = uuid.uuid4().hex[:8]
    aliases = {
        "shm": regions.register(regions.conf(OPTIONS={"SIZE": "32MB", "MAX_ITEM_SIZE": "4MB"},
                                             KEY_PREFIX="shop"), f"shm-{tag}"),
        "file": regions.register(regions.conf(
            os.path.join(settings.TMP_DIR, f"agent-files-{tag}"), BACKEND="regioncache.FileCache",
            OPTIONS={"MAX_SIZE": "64MB", "MAX_ITEM_SIZE": "4MB"}), f"file-{tag}"),
        # Its own KEY_PREFIX: the server is shared by the module's tests.
        "memcached": regions.register(regions.conf(
            memcached.location, BACKEND="regioncache.MemcachedCache", KEY_PREFIX=f"mc{tag}"),
            f"mc-{tag}"),
        "django": regions.register(regions.conf(
            "agent-locmem", BACKEND="django.core.cache.backends.locmem.LocMemCache"), f"loc-{tag}"),
    }
    return aliases


def start(regions, read_only=False, **kw):
    argv = agent_command("djangoproject.settings", [TESTS_DIR], read_only=read_only, **kw)
    return AgentClient(argv, env=regions.child_env())


def req(fields):
    """A request line as the client would write it."""
    return json.dumps(fields).encode()


def fill(cache, n=0):
    """Values of every encoding, and n small ones; returns {key: value}."""
    values = {"text": "héllo wörld", "number": 1234, "raw": b"\x00\xffraw",
              "obj": {"a": [1, 2.5]}, 'odd"key\\é/☃': "a key JSON must escape"}
    values.update({f"bulk:{i}": f"v{i}" for i in range(n)})
    cache.set_many(values, timeout=3600)
    return values


def by_key(entries):
    return {e["key"]: e for e in entries}


# ---- the hello, regions ---------------------------------------------------------


def test_hello_names_the_agent_and_regions_are_describes_specs(regions, site):
    with start(regions) as a:
        h = a.hello
        assert h["hello"] == "regioncache-agent" and h["protocol"] == 1
        assert h["version"] == regioncache.__version__ and h["pid"] == a.proc.pid
        assert h["settings"] == "djangoproject.settings" and h["read_only"] is False
        assert h["limits"] == {"max_request_bytes": 1 << 20, "max_page": 20000,
                               "max_value_bytes": 64 << 20, "max_keys": 10000}
        assert "error" not in h
        again = a.ok("hello")
        assert {k: v for k, v in again.items() if k not in ("id", "ok")} == h
        served = a.ok("regions")["regions"]
    assert served == [store_spec(alias, conf).as_json() for alias, conf in settings.CACHES.items()]
    assert {r["alias"]: r["kind"] for r in served}[site["django"]] == "django"


# ---- every verb on every store ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_verb_against_what_django_holds(regions, site, kind):
    alias = site[kind]
    cache = caches[alias]
    values = fill(cache, n=25)
    full = {cache.make_key(k): k for k in values}
    with start(regions) as a:
        # stats: the store's own figures
        st = a.ok("stats", region=alias)["stats"]
        assert st["kind"] == kind and st["region"] == alias
        own = cache._stats_full()
        assert [name for name, _ in st["extra"]] == [name for name, _ in own["extra"]]
        if kind == "memcached":  # the server's items, of every prefix
            assert st["entries"] >= len(values)
        else:
            assert st["entries"] == len(values) and st["sets"] >= len(values)
        assert isinstance(st["servers"], list)
        if kind == "memcached":
            assert [s["address"] for s in st["servers"]] == [s["address"] for s in own["servers"]]
            assert all(s["up"] for s in st["servers"])
        # list: in pages of 7, the same entries the backend lists itself
        listed = by_key(a.list_all(alias, limit=7))
        assert set(listed) == set(full)
        mine, cursor = [], ""
        while True:
            page, cursor = cache.list_entries(cursor, limit=1000)
            mine += page
            if not cursor:
                break
        for e in mine:
            got = listed[e["key"]]
            assert got["size"] == e["size"] and got["encoding"] == e["encoding"]
            assert got["flags"] == e["flags"]
            assert got["expires_ms"] == round(e["expires"] * 1000) > 0
            assert got["stored_ms"] == (0 if e["stored"] is None else round(e["stored"] * 1000))
        assert listed[cache.make_key("text")]["encoding"] == "str"
        assert listed[cache.make_key("obj")]["encoding"] == "pickle"
        # a glob over full keys, and a scanned count
        page = a.ok("list", region=alias, glob=cache.make_key("bulk:1*"), limit=1000)
        assert {e["key"] for e in page["entries"]} == {cache.make_key(f"bulk:{i}") for i in
                                                        [1] + list(range(10, 20))}
        assert page["scanned"] >= len(page["entries"]) and page["next_cursor"] == ""
        # get: the stored bytes as they are, counting no hit
        hits = cache.stats()["hits"]
        for k, v in values.items():
            r = a.get_bytes(alias, cache.make_key(k))
            own = cache._peek_raw(cache.make_key(k))
            assert r["found"] and not r["truncated"] and r["size"] == own["size"] == len(r["data"])
            assert r["data"] == own["data"] and r["flags"] == own["flags"]
            # memcached answers a time left (in seconds): read twice, it may move
            assert abs(r["expires_ms"] - own["expires_ms"]) <= (1000 if kind == "memcached" else 0)
        assert a.get_bytes(alias, cache.make_key("text"))["data"] == "héllo wörld".encode()
        assert a.get_bytes(alias, cache.make_key("number"))["data"] == b"1234"
        assert pickle.loads(a.get_bytes(alias, cache.make_key("obj"))["data"]) == {"a": [1, 2.5]}
        if kind != "memcached":  # the server counts every read its own way
            assert cache.stats()["hits"] == hits
        missing = a.get_bytes(alias, cache.make_key("nothing here"))
        assert missing["found"] is False and set(missing) == {"id", "ok", "found"}
        # delete: Django misses what the agent deleted
        r = a.ok("delete", region=alias, keys=[cache.make_key("text")],
                 keys_b64=[base64.b64encode(cache.make_key("number").encode()).decode()])
        assert r["deleted"] == 2
        if kind != "memcached":  # memcached's store counts the deletes it sent
            assert a.ok("delete", region=alias, keys=[cache.make_key("gone")])["deleted"] == 0
        assert cache.get("text") is None and cache.get("number") is None
        assert cache.get("raw") == values["raw"]
        # purge by glob: with progress lines, then the count
        done = []
        rid = a.send("purge", region=alias, glob=cache.make_key("bulk:*"))
        r = a.reply(rid, progress=done.append)
        assert r == {"id": rid, "ok": True, "removed": 25}
        assert done == sorted(done)
        assert all(cache.get(f"bulk:{i}") is None for i in range(25))
        assert cache.get("obj") == {"a": [1, 2.5]}
        # purge_expired: nothing live goes
        assert a.ok("purge_expired", region=alias)["removed"] == 0
        assert cache.get("raw") == values["raw"]
        # clear: every entry of the region
        assert {k: v for k, v in a.ok("clear", region=alias).items() if k != "id"} == {"ok": True}
        assert cache.get("raw") is None and cache.get("obj") is None
        assert a.list_all(alias) == []


@pytest.mark.parametrize("kind", ["shm", "file"])
def test_purge_expired_removes_what_has_expired(regions, site, kind):
    alias = site[kind]
    cache = caches[alias]
    cache.set("stays", "x", timeout=3600)
    cache.set("goes", "y", timeout=3600)
    cache.touch("goes", timeout=0.001)  # a deadline a millisecond away
    full = cache.make_key("goes")
    deadline = time.monotonic() + 10
    while cache.list_entries(glob=full)[0] and time.monotonic() < deadline:
        time.sleep(0.001)
    with start(regions) as a:
        # past its deadline, still held: listed only with include_expired
        assert a.ok("list", region=alias, glob=full)["entries"] == []
        listed = a.ok("list", region=alias, glob=full, include_expired=True)["entries"]
        assert [e["key"] for e in listed] == [full]
        r = a.ok("purge_expired", region=alias)
        assert r["removed"] == 1
        assert a.ok("list", region=alias, glob=full, include_expired=True)["entries"] == []
    assert cache.get("stays") == "x"


# ---- keys that are not UTF-8 -----------------------------------------------------


def test_a_non_utf8_key_lists_as_key_b64_and_is_read_and_deleted_by_it(regions, site, memcached):
    alias = site["memcached"]
    cache = caches[alias]
    cache.set("plain", "p")
    raw_key = cache.make_key("caf").encode() + b"\xe9-\xff"
    memcached.plant(raw_key, 0, b"planted bytes")
    with start(regions) as a:
        listed = a.list_all(alias)
        odd = [e for e in listed if "key_b64" in e]
        assert [base64.b64decode(e["key_b64"]) for e in odd] == [raw_key]
        assert "key" not in odd[0] and odd[0]["size"] == len(b"planted bytes")
        assert {e["key"] for e in listed if "key" in e} == {cache.make_key("plain")}
        r = a.get_bytes(alias, raw_key)
        assert r["found"] and r["data"] == b"planted bytes" and r["encoding"] == "bytes"
        assert a.ok("delete", region=alias, keys_b64=[odd[0]["key_b64"]])["deleted"] == 1
        assert not memcached.has_key(raw_key.decode("latin-1"))
        assert a.get_bytes(alias, raw_key)["found"] is False
    assert cache.get("plain") == "p"


# ---- bad requests ----------------------------------------------------------------


def test_every_bad_request_is_answered_and_the_agent_goes_on(regions, site):
    alias = site["shm"]
    caches[alias].set("k", "v")
    big = req({"id": 99, "op": "get", "region": alias, "key": "x" * (5 << 20)})
    bad = [
        (b"{not json", None, "bad_json"),
        (b"[1, 2, 3]", None, "bad_json"),
        (b'"a string"', None, "bad_json"),
        (b"", None, "bad_json"),
        (b'{"id": 1, "op": "x\xff"}', None, "bad_json"),  # not UTF-8
        (b"[" * 200000 + b"]" * 200000, None, "bad_json"),  # nested past the parser's depth
        (big, None, "too_large"),
        (b'{"op": "hello"}', None, "bad_request"),  # no id
        (b'{"id": true, "op": "hello"}', None, "bad_request"),
        (b'{"id": 1.5, "op": "hello"}', None, "bad_request"),
        (req({"id": "x" * 65, "op": "hello"}), None, "bad_request"),
        (b'{"id": 7}', 7, "bad_request"),  # no op
        (b'{"id": 7, "op": 3}', 7, "bad_request"),
        (b'{"id": "s", "op": "frobnicate"}', "s", "unknown_op"),
        (b'{"id": 8, "op": "stats"}', 8, "bad_request"),  # no region
        (b'{"id": 8, "op": "stats", "region": 5}', 8, "bad_request"),
        (req({"id": 9, "op": "stats", "region": "no-such-alias"}), 9, "unknown_region"),
        (req({"id": 10, "op": "list", "region": site["django"]}), 10, "unsupported"),
        (req({"id": 11, "op": "list", "region": alias, "limit": 0}), 11, "bad_request"),
        (req({"id": 11, "op": "list", "region": alias, "limit": 20001}), 11,
         "bad_request"),
        (req({"id": 11, "op": "list", "region": alias, "limit": "10"}), 11,
         "bad_request"),
        (req({"id": 11, "op": "list", "region": alias, "include_expired": 1}), 11,
         "bad_request"),
        (req({"id": 11, "op": "list", "region": alias, "glob": ["*"]}), 11,
         "bad_request"),
        (b'{"id": 11, "op": "list", "region": "%s", "glob": "\\ud800"}' % alias.encode(), 11,
         "bad_request"),  # a lone surrogate
        (req({"id": 12, "op": "get", "region": alias}), 12, "bad_request"),
        (req({"id": 12, "op": "get", "region": alias, "key": "a", "key_b64": "YQ=="}),
         12, "bad_request"),
        (req({"id": 12, "op": "get", "region": alias, "key_b64": "not base64!"}), 12,
         "bad_request"),
        (json.dumps({"id": 12, "op": "get", "region": alias, "key": "k",
                     "max_bytes": (64 << 20) + 1}).encode(), 12, "bad_request"),
        (req({"id": 12, "op": "get", "region": alias, "key": "k", "max_bytes": -1}),
         12, "bad_request"),
        (req({"id": 13, "op": "delete", "region": alias}), 13, "bad_request"),
        (req({"id": 13, "op": "delete", "region": alias, "keys": "k"}), 13,
         "bad_request"),
        (req({"id": 13, "op": "delete", "region": alias, "keys": [1]}), 13,
         "bad_request"),
        (json.dumps({"id": 13, "op": "delete", "region": alias,
                     "keys": ["k"] * 10001}).encode(), 13, "bad_request"),
        (req({"id": 14, "op": "purge", "region": alias}), 14, "bad_request"),
        (req({"id": 14, "op": "purge", "region": alias, "glob": ""}), 14,
         "bad_request"),
        (req({"id": 14, "op": "purge", "region": alias, "glob": "*\0k"}), 14,
         "bad_request"),  # C text would end at the NUL: "*"
        (req({"id": 14, "op": "list", "region": alias, "cursor": "\0"}), 14,
         "bad_request"),
        (req({"id": 14, "op": "list", "region": alias, "cursor": "garbage"}), 14,
         "bad_request"),  # the store's own check
        (req({"id": 15, "op": "cancel"}), 15, "bad_request"),
        (req({"id": 15, "op": "cancel", "target": [1]}), 15, "bad_request"),
    ]
    with start(regions) as a:
        for line, rid, code in bad:
            a.send_line(line)
            r = a.read()
            assert r["id"] == rid and r["ok"] is False, (line[:80], r)
            assert r["error"]["code"] == code, (line[:80], r)
            assert r["error"]["message"]
            assert a.ok("hello")["protocol"] == 1  # the next request is answered
        # messages name the field, the region, the limit
        a.send_line(req({"id": 1, "op": "list", "region": alias, "limit": 0}))
        msg = a.read()["error"]["message"]
        assert f"region '{alias}'" in msg and "'limit'" in msg and "20000" in msg
        a.send_line(big)
        assert "1048576" in a.read()["error"]["message"]
        # the key was left alone by all of it
        assert caches[alias].get("k") == "v"
        assert a.get_bytes(alias, caches[alias].make_key("k"))["data"] == b"v"
    assert a.proc.returncode == 0
    assert "Traceback" not in a.stderr_text()


def test_random_requests_each_get_one_well_formed_reply_and_no_internal_error(regions, site):
    import random

    rng = random.Random(16)
    alias = site["shm"]
    fill(caches[alias], n=50)
    fields = ["region", "cursor", "glob", "limit", "include_expired", "key", "key_b64", "keys",
              "keys_b64", "max_bytes", "target"]
    samples = [alias, site["file"], site["django"], "nope", "", "*", ":1:*", "[", "\\", "Zm9v",
               "!!", 0, 1, -1, 5, 20000, 1 << 70, 2.5, True, False, None, [], [alias], ["YQ=="],
               [1, "a"], {}, {"a": 1}, "\u00e9", "x" * 300]
    codes = {"bad_request", "unknown_op", "unknown_region", "unsupported", "store", "cancelled"}
    ops = [*sorted(["hello", "regions", "stats", "list", "get", "delete", "purge",
                    "purge_expired", "clear", "cancel"]), "nope", ""]
    with start(regions) as a:
        for i in range(400):
            op, msg = rng.choice(ops), {}
            for name in rng.sample(fields, rng.randint(0, 4)):
                msg[name] = rng.choice(samples)
            if rng.random() < 0.7 and op not in ("hello", "regions", "cancel"):
                msg["region"] = rng.choice([alias, site["file"], site["memcached"]])
            r = a.reply(a.send(op, rid=i, **msg))
            assert set(r) >= {"id", "ok"} and r["id"] == i, (msg, r)
            if not r["ok"]:
                assert r["error"]["code"] in codes and r["error"]["message"], (msg, r)
        assert a.ok("hello")["protocol"] == 1
    assert "Traceback" not in a.stderr_text()


def test_a_smaller_request_limit_is_kept(regions, site):
    with start(regions, max_request_bytes=4096) as a:
        assert a.hello["limits"]["max_request_bytes"] == 4096
        a.send_line(req({"id": 1, "op": "hello", "pad": "x" * 4096}))
        assert a.read()["error"]["code"] == "too_large"
        a.send_line(req({"id": 2, "op": "hello", "pad": "x" * 3000}))
        assert a.read()["ok"] is True


# ---- read-only -------------------------------------------------------------------


def segment_digest(location):
    with open("/dev/shm" + regioncache.shm_segment_name(location), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_refuses_every_write_and_changes_nothing(regions, site, kind):
    alias = site[kind]
    cache = caches[alias]
    values = fill(cache, n=10)
    location = settings.CACHES[alias]["LOCATION"]
    before = segment_digest(location) if kind == "shm" else None
    full = cache.make_key("text")
    writes = [("delete", {"keys": [full]}), ("delete", {"keys_b64": ["YQ=="]}),
              ("purge", {"glob": "*"}), ("purge_expired", {}), ("clear", {})]
    with start(regions, read_only=True) as a:
        assert a.hello["read_only"] is True
        listed = {e["key"] for e in a.list_all(alias)}
        for op, fields in writes:
            r = a.call(op, region=alias, **fields)
            assert r["ok"] is False and r["error"]["code"] == "read_only", r
            assert "--read-only" in r["error"]["message"]
        # refused before the store is touched: even a malformed write, an unknown region
        assert a.call("purge", region="no-such-alias")["error"]["code"] == "read_only"
        assert a.call("clear")["error"]["code"] == "read_only"
        # reads still work
        assert a.get_bytes(alias, full)["data"] == "héllo wörld".encode()
        assert a.ok("stats", region=alias)["stats"]["kind"] == kind
        assert {e["key"] for e in a.list_all(alias)} == listed
        assert listed == {cache.make_key(k) for k in values}
    if kind == "shm":  # not a byte of the segment changed
        assert segment_digest(location) == before
    assert cache.get_many(list(values)) == values


# ---- cancel ----------------------------------------------------------------------


def test_cancel_stops_a_purge_of_a_big_region_and_a_waiting_request(regions):
    # 400,000 entries: their purge takes about 0.1 s, the cancel (sent when
    # the first progress line is read) reaches the agent well within it.
    total = 400_000
    cache = regions.new(OPTIONS={"SIZE": "256MB", "MAX_ITEM_SIZE": "1MB"})
    for start_at in range(0, total, 10_000):
        cache.set_many({f"k{i}": i for i in range(start_at, start_at + 10_000)}, timeout=None)
    assert cache.stats()["entries"] == total
    with start(regions) as a:
        pid = a.send("purge", region=cache.alias, glob="*")
        first = a.read()
        assert first == {"id": pid, "progress": {"done": first["progress"]["done"]}}
        waiting = a.send("stats", rid="later", region=cache.alias)
        a.send("cancel", rid="c1", target=waiting)
        a.send("cancel", rid="c2", target=pid)
        lines = []
        while not any(m.get("id") == waiting and "progress" not in m for m in lines):
            lines.append(a.read())
        answers = {m["id"]: m for m in lines if "progress" not in m}
        assert answers["c1"] == {"id": "c1", "ok": True, "cancelled": True}
        assert answers["c2"] == {"id": "c2", "ok": True, "cancelled": True}
        purge = answers[pid]
        assert purge["ok"] is False and purge["error"]["code"] == "cancelled", purge
        assert 0 <= purge["removed"] < total
        assert answers[waiting]["error"]["code"] == "cancelled"
        # a cancel of what is not running: false
        assert a.ok("cancel", target=pid)["cancelled"] is False
        # the agent goes on, and the region holds what the purge left
        assert a.ok("stats", region=cache.alias)["stats"]["entries"] == total - purge["removed"]
    assert cache.stats()["entries"] == total - purge["removed"]


def test_a_cancel_right_behind_its_purge_stops_it_running_or_waiting(regions):
    total = 100_000
    cache = regions.new(OPTIONS={"SIZE": "64MB", "MAX_ITEM_SIZE": "1MB"})
    for start_at in range(0, total, 10_000):
        cache.set_many({f"k{i}": i for i in range(start_at, start_at + 10_000)}, timeout=None)
    with start(regions) as a:
        # both lines in one write: the reader has the cancel a moment after the purge
        a.send_line(b'{"id": "p", "op": "purge", "region": "%s", "glob": "*"}\n'
                    b'{"id": "c", "op": "cancel", "target": "p"}' % cache.alias.encode())
        lines = [a.read()]
        while lines[-1].get("id") != "p" or "progress" in lines[-1]:
            lines.append(a.read())
        assert {"id": "c", "ok": True, "cancelled": True} in lines
        purge = lines[-1]
        assert purge["error"]["code"] == "cancelled" and 0 <= purge["removed"] < total
        assert a.ok("stats", region=cache.alias)["stats"]["entries"] == total - purge["removed"]


# ---- the end of the conversation -------------------------------------------------


def test_a_client_that_goes_away_mid_page_ends_the_agent_quietly(regions):
    cache = regions.new(OPTIONS={"SIZE": "32MB", "MAX_ITEM_SIZE": "1MB"})
    cache.set_many({f"key:{i:06d}": i for i in range(20_000)}, timeout=None)
    a = start(regions)
    try:
        a.send("list", region=cache.alias, limit=20000)
        # the page (about 3 MB) is far over a pipe's buffer: the agent is
        # writing it when the read end closes
        os.read(a.proc.stdout.fileno(), 4096)
        a.proc.stdout.close()
        assert a.wait(60) == 0  # by itself: its input is still open
        assert "Traceback" not in a.stderr_text() and "Error" not in a.stderr_text()
    finally:
        a.proc.kill()
        a.proc.wait()


def test_end_of_input_answers_what_was_sent_and_exits_0(regions, site):
    caches[site["shm"]].set("k", "v")
    with start(regions) as a:
        rid = a.send("list", region=site["shm"])
        a.close_input()
        r = a.reply(rid)
        assert [e["key"] for e in r["entries"]] == [caches[site["shm"]].make_key("k")]
        assert a.wait(30) == 0
    assert "Traceback" not in a.stderr_text()


# ---- settings, stores ------------------------------------------------------------


def test_unloadable_settings_answer_the_hello_with_the_error_and_exit_2(regions):
    for settings_module, words in [("no_such_settings_module", "No module named"),
                                   ("djangoproject.settings", "OPTIONS")]:
        env = regions.child_env()
        if words == "OPTIONS":  # settings that load, with a CACHES entry no store takes
            env["REGIONCACHE_TEST_CACHES"] = json.dumps({"broken": {
                "BACKEND": "regioncache.SharedMemoryCache", "LOCATION": "x", "OPTIONS": "SIZE=1"}})
        a = AgentClient(agent_command(settings_module, [TESTS_DIR]), env=env)
        try:
            h = a.hello
            assert h["hello"] == "regioncache-agent" and h["protocol"] == 1
            assert h["error"]["code"] == "settings"
            assert settings_module in h["error"]["message"] and words in h["error"]["message"]
            assert a.wait(30) == 2
        finally:
            a.close()


@pytest.mark.parametrize("kind", ["shm", "file"])
def test_a_store_that_cannot_open_is_answered_and_opened_by_a_later_request(regions, kind):
    if kind == "shm":
        alias = regions.register(regions.conf(OPTIONS={"SIZE": "8MB"}))
    else:
        alias = regions.register(regions.conf(
            os.path.join(settings.TMP_DIR, uuid.uuid4().hex, "files"),
            BACKEND="regioncache.FileCache"))
    location = settings.CACHES[alias]["LOCATION"]
    with start(regions) as a:
        r = a.call("stats", region=alias)
        assert r["error"]["code"] == "store"
        assert f"region '{alias}'" in r["error"]["message"] and location in r["error"]["message"]
        # the agent created nothing
        assert location not in regioncache.shm_regions() and not os.path.exists(location)
        caches[alias].set("now", "here")  # the site creates its region
        assert a.ok("stats", region=alias)["stats"]["entries"] == 1
        assert a.get_bytes(alias, caches[alias].make_key("now"))["data"] == b"here"


def test_a_memcached_server_down_is_answered_store_and_comes_back(regions):
    server = start_servers(1)[0]
    try:
        alias = regions.register(regions.conf(server.location,
                                              BACKEND="regioncache.MemcachedCache"))
        caches[alias].set("k", "v")
        with start(regions) as a:
            assert [e["key"] for e in a.list_all(alias)] == [":1:k"]
            server.kill()
            r = a.call("list", region=alias)
            assert r["error"]["code"] == "store"
            assert f"region '{alias}'" in r["error"]["message"]
            assert server.location in r["error"]["message"]
            st = a.ok("stats", region=alias)["stats"]
            assert [(s["address"], s["up"]) for s in st["servers"]] == [(server.location, False)]
            assert server.location in st["servers"][0]["error"]
            server.start()  # the same port, empty
            deadline = time.monotonic() + 30
            while a.call("list", region=alias).get("ok") is not True:
                assert time.monotonic() < deadline, "the agent never reached the server again"
                time.sleep(0.05)
            assert a.ok("list", region=alias)["entries"] == []
    finally:
        server.kill()


def test_end_of_input_during_a_purge_finishes_it_and_exits_0(regions):
    cache = regions.new(OPTIONS={"SIZE": "32MB", "MAX_ITEM_SIZE": "1MB"})
    cache.set_many({f"k{i}": i for i in range(50_000)}, timeout=None)
    with start(regions) as a:
        rid = a.send("purge", region=cache.alias, glob="*")
        a.close_input()
        assert a.reply(rid) == {"id": rid, "ok": True, "removed": 50_000}
        assert a.wait(60) == 0
    assert cache.stats()["entries"] == 0


def test_a_print_in_the_settings_cannot_break_the_protocol(regions, tmp_path):
    (tmp_path / "noisy_settings.py").write_text(
        "print('hello from the settings')\n"
        "import os\n"
        "os.write(1, b'and from fd 1\\n')\n"
        "from djangoproject.settings import *\n")
    a = AgentClient(agent_command("noisy_settings", [tmp_path, TESTS_DIR]), env=regions.child_env())
    with a:
        assert a.hello["hello"] == "regioncache-agent" and "error" not in a.hello
        assert a.ok("hello")["protocol"] == 1
    assert "hello from the settings" in a.stderr_text() and "and from fd 1" in a.stderr_text()


def test_the_agent_behind_a_shell_prefix_gets_its_words_quoted(regions, site, tmp_path):
    # The transport of docs/AGENT.md: a prefix that hands one command line to
    # a shell (ssh's, here sh -c), the agent's words quoted for it.
    odd = tmp_path / "a dir with 'quotes' and $HOME"
    odd.mkdir()
    (odd / "quoted_settings.py").write_text("from djangoproject.settings import *\n")
    caches[site["shm"]].set("k", "v")
    argv = agent_command("quoted_settings", [odd, TESTS_DIR], prefix=["sh", "-c"])
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    with AgentClient(argv, env=regions.child_env()) as a:
        assert a.hello["settings"] == "quoted_settings" and "error" not in a.hello
        assert a.get_bytes(site["shm"], caches[site["shm"]].make_key("k"))["data"] == b"v"


# ---- values: bounded, never unpickled --------------------------------------------


@pytest.mark.parametrize("kind", ["shm", "file"])
def test_get_of_a_huge_value_is_bounded(regions, site, kind):
    alias = site[kind]
    cache = caches[alias]
    value = os.urandom(3 << 20)  # incompressible: stored as it is
    cache.set("huge", value)
    full = cache.make_key("huge")
    with start(regions) as a:
        r = a.get_bytes(alias, full)  # the default bound, 1 MiB
        assert r["truncated"] is True and r["size"] == len(value) and r["data"] == value[:1 << 20]
        r = a.get_bytes(alias, full, max_bytes=0)
        assert r["truncated"] is True and r["size"] == len(value) and r["data"] == b""
        r = a.get_bytes(alias, full, max_bytes=64 << 20)
        assert r["truncated"] is False and r["data"] == value


def test_a_pickle_is_returned_as_bytes_and_never_loaded(regions, site, tmp_path):
    marker = tmp_path / "the pickle ran"

    class Bomb:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    alias = site["shm"]
    cache = caches[alias]
    cache.set("bomb", Bomb())
    full = cache.make_key("bomb")
    with start(regions) as a:
        listed = by_key(a.list_all(alias))
        assert listed[full]["encoding"] == "pickle"
        r = a.get_bytes(alias, full)
        assert r["encoding"] == "pickle" and b"mkdir" in r["data"]
        a.ok("stats", region=alias)
    assert not marker.exists()
    # what the agent handed back is the real thing: loading it runs the call
    pickle.loads(r["data"])
    assert marker.is_dir()


def test_the_agent_runs_from_the_command_line_help(regions):
    proc = subprocess.run([sys.executable, "-m", "regioncache", "agent", "--help"],
                          env=regions.child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--read-only" in proc.stdout and "--settings" in proc.stdout
