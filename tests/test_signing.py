"""Signed values (OPTIONS SIGNING_KEY; README, "Signed values").

A region with a SIGNING_KEY appends an HMAC-SHA256 tag to every value it
stores (ints excepted: they stay plain decimal text for incr) and checks it
before decoding anything: a value planted by another writer, signed with
another key, or moved from another key is a miss and a log line, and a
pickle in it never runs. Proved on every store with a pickle whose loading
would create a file.
"""

import logging
import os
import pickle
import uuid

import pytest
from django.test import override_settings

import regioncache
from regioncache import _log
from memcached_servers import start_servers

KEY = "signing-key-for-tests-0123456789"


class Planted:
    """Loading this pickle creates the file at `path`: proof that it ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(autouse=True)
def _warnings_captured(caplog, monkeypatch):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(_log, "MAX_LINES", 1000)
    _log.reset()


@pytest.fixture(scope="module")
def mc():
    servers = start_servers(1)
    yield servers[0]
    servers.stop()


@pytest.fixture(params=["shm", "file", "memcached"])
def store(request, regions, tmp_path, mc):
    """make(**options) -> a cache on one region of this store kind; every
    call opens another alias on the same region."""
    kind = request.param
    if kind == "shm":
        location = f"{os.environ['REGIONCACHE_TEST_RUN']}-sig-{uuid.uuid4().hex[:8]}"
        base = {"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}
        backend = "regioncache.SharedMemoryCache"
    elif kind == "file":
        location = str(tmp_path / "region")
        base = {}
        backend = "regioncache.FileCache"
    else:
        location = mc.location
        base = {}
        backend = "regioncache.MemcachedCache"
    prefix = uuid.uuid4().hex[:8]  # memcached is shared by the tests of this module

    def make(**options):
        return regions.new(location=location, BACKEND=backend, KEY_PREFIX=prefix,
                           OPTIONS={**base, **options})

    make.kind = kind
    make.prefix = prefix
    return make


def messages(caplog, cache):
    _log.drain()
    return [r.getMessage() for r in caplog.records if r.name == f"regioncache.{cache.alias}"]


VALUES = {
    "dict": {"a": [1, 2.5, None], "s": "é"},
    "str": "héllo",
    "bytes": b"\x00\xff" * 50,
    "int": 42,
    "neg": -7,
    "big": 2**80,
    "float": 1.5,
    "10k": b"x" * 10_000,
    "200k-str": "y" * 200_000,  # compressed by the file (if asked) and memcached stores
    "1m-ish": b"z" * 900_000,
}


def test_signed_values_round_trip(store, caplog):
    c = store(SIGNING_KEY=KEY)
    assert c.signs_values
    for k, v in VALUES.items():
        c.set(k, v)
    for k, v in VALUES.items():
        got = c.get(k)
        assert got == v and type(got) is type(v), k
    assert c.get_many(list(VALUES)) == VALUES
    assert c.set_many({"m1": [1], "m2": "two"}) == []
    assert c.get_many(["m1", "m2"]) == {"m1": [1], "m2": "two"}
    assert c.add("added", {"x": 1}) is True and c.get("added") == {"x": 1}
    assert c.incr("int", 3) == 45  # ints stay plain text: the store's own incr
    assert c.incr("float", 1) == 2.5  # added in Python, written back signed
    assert c.get("float") == 2.5
    assert c.incr("big", 1) == 2**80 + 1
    long_key = "a long key with spaces " + "x" * 300  # memcached maps it to a safe one
    with pytest.warns(Warning):
        c.set(long_key, {"long": True})
    with pytest.warns(Warning):
        assert c.get(long_key) == {"long": True}
    assert c.get_or_set("gos", lambda: {"computed": True}) == {"computed": True}
    assert c.get("gos") == {"computed": True}
    assert messages(caplog, c) == []
    # the stored entry is the value plus 32 bytes of tag
    entries = {e["key"]: e for e in c.list_entries(limit=1000)[0]}
    raw_size = entries[f"{store.prefix}:1:bytes"]["size"]
    if store.kind != "memcached":  # memcached lists the wire size
        assert raw_size == 100 + 32


def test_pickle_planted_by_another_writer_never_runs(store, caplog, tmp_path):
    signed = store(SIGNING_KEY=KEY)
    strict = store(SIGNING_KEY=KEY, RAISE_ERRORS=True)
    other = store()  # the same region, without the key: "another writer"
    proof = tmp_path / "pickle-ran"
    other.set("k", Planted(str(proof)))
    assert not proof.exists()
    other.set("s", "planted text")
    assert signed.get("k", "miss") == "miss"
    assert signed.get("s", "miss") == "miss"
    assert signed.get_many(["k", "s"]) == {}
    with pytest.raises(ValueError):
        signed.incr("k")
    with pytest.raises(regioncache.RegionError) as e:
        strict.get("k")
    assert f"region '{strict.alias}'" in str(e.value) and "not signed" in str(e.value)
    assert not proof.exists(), "the planted pickle was loaded"
    lines = messages(caplog, signed)
    assert len(lines) == 5, lines
    assert all("not signed" in m and "(a miss)" in m for m in lines), lines
    # another key: a miss too
    stranger = store(SIGNING_KEY="someone else's key")
    stranger.set("k", Planted(str(proof)))
    assert signed.get("k", "miss") == "miss"
    assert not proof.exists()
    assert "signature does not match" in messages(caplog, signed)[-1]
    # and the key works once this site writes it
    signed.set("k", {"mine": 1})
    assert signed.get("k") == {"mine": 1}


def test_key_rotation_with_fallbacks(store, caplog):
    old = store(SIGNING_KEY="old key")
    old.set("k", {"v": 1})
    rotated = store(SIGNING_KEY="new key", SIGNING_KEY_FALLBACKS=["old key"])
    assert rotated.get("k") == {"v": 1}  # written with the old key: still read
    rotated.set("k2", {"v": 2})
    assert old.get("k2", "miss") == "miss"  # new values use the new key
    assert store(SIGNING_KEY="new key").get("k", "miss") == "miss"
    assert messages(caplog, rotated) == []


def test_sign_with_secret_key(store):
    with override_settings(SECRET_KEY="the-site-secret",
                           SECRET_KEY_FALLBACKS=["an-older-secret"]):
        c = store(SIGN_WITH_SECRET_KEY=True)
    c.set("k", [1, 2])
    assert store(SIGNING_KEY="the-site-secret").get("k") == [1, 2]
    assert store(SIGNING_KEY="an-older-secret").get("k", "miss") == "miss"
    store(SIGNING_KEY="an-older-secret").set("old", "x")
    assert c.get("old") == "x"


def test_reader_without_a_key_reads_signed_values(store):
    # Turning signing on is safe to roll out: processes without the key yet
    # still read what signing processes write (they check nothing, as before).
    store(SIGNING_KEY=KEY).set("k", {"v": 1})
    assert store().get("k") == {"v": 1}


def test_memcached_raw_plants_and_replays(regions, mc, caplog, tmp_path):
    prefix = uuid.uuid4().hex[:8]
    c = regions.new(location=mc.location, BACKEND="regioncache.MemcachedCache",
                    KEY_PREFIX=prefix, OPTIONS={"SIGNING_KEY": KEY})
    proof = tmp_path / "pickle-ran"
    blob = pickle.dumps(Planted(str(proof)))
    # anyone who reaches the port: a pickle with the pickle flag, no tag
    wire = f"{prefix}:1:planted".encode()
    assert mc.raw(b"set %s 3 0 %d\r\n%s\r\n" % (wire, len(blob), blob)) == b"STORED\r\n"
    # the same with the signed flag and a tag of zeros
    forged = blob + bytes(32)
    wire2 = f"{prefix}:1:forged".encode()
    assert mc.raw(b"set %s %d 0 %d\r\n%s\r\n" % (wire2, 3 | 512, len(forged), forged)) \
        == b"STORED\r\n"
    assert c.get("planted", "miss") == "miss"
    assert c.get("forged", "miss") == "miss"
    assert not proof.exists()
    # a value this site signed, copied under another key: the tag binds the key
    c.set("genuine", {"for": "genuine"})
    reply = mc.raw(b"get %s:1:genuine\r\n" % prefix.encode())
    header, rest = reply.split(b"\r\n", 1)
    _, _, flags, length = header.split()
    value = rest[: int(length)]
    wire3 = f"{prefix}:1:copied".encode()
    assert mc.raw(b"set %s %s 0 %d\r\n%s\r\n" % (wire3, flags, len(value), value)) \
        == b"STORED\r\n"
    assert c.get("copied", "miss") == "miss"
    assert c.get("genuine") == {"for": "genuine"}
    lines = messages(caplog, c)
    assert len(lines) == 3, lines
    assert "not signed" in lines[0] and "signature does not match" in lines[1]
    assert f"{prefix}:1:copied" in lines[2] and "signature does not match" in lines[2]


def test_describe_leaves_the_policy_options_out(regions):
    # `python -m regioncache describe` feeds the desktop app, which opens the
    # stores without Python: no signing secret in its JSON, no option the
    # native stores do not know.
    import json
    import subprocess
    import sys

    c = regions.new(OPTIONS={"SIZE": "8MB", "SIGNING_KEY": "a secret", "RAISE_ERRORS": True})
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "regioncache", "describe", "--settings", "djangoproject.settings",
         "--pythonpath", tests_dir],
        env=regions.child_env(), capture_output=True, text=True, check=True, timeout=60,
    )
    assert "a secret" not in proc.stdout
    described = {r["alias"]: r for r in json.loads(proc.stdout)["regions"]}
    assert described[c.alias]["options"] == {"SIZE": "8MB"}
