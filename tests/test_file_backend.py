"""regioncache.FileCache: a region in a directory of files (native/file/FORMAT.md),
tested on real files with real processes: writers killed with SIGKILL, files
damaged behind the store's back, a directory it may not write, concurrent
writers, the size bound, @cache_page on a real view, and OPTIONS checking."""

import asyncio
import hashlib
import os
import shutil
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

import regioncache
from djangoproject import views

HEADER = 64  # FORMAT.md: magic u32, version u16, header_size u16, flags u32, key_len u32, ...


@pytest.fixture
def file_regions(regions):
    """Makes FileCache aliases on fresh directories under the run's temp dir;
    conftest's Regions forgets the aliases afterwards (the directories go
    with the run's temp dir)."""

    class FileRegions:
        def new(self, alias=None, location=None, **options):
            location = location or os.path.join(
                os.environ["REGIONCACHE_TEST_TMP"], f"files-{uuid.uuid4().hex[:8]}")
            conf = {"BACKEND": "regioncache.FileCache", "LOCATION": location,
                    "OPTIONS": options}
            alias = regions.register(conf, alias)
            return caches[alias]

    return FileRegions()


def entry_files(cache):
    """{full key: path} for every entry file, read from the files themselves
    (each names its key; FORMAT.md)."""
    out = {}
    for shard in Path(cache.store_location).iterdir():
        if not shard.is_dir():
            continue
        for f in shard.iterdir():
            if len(f.name) != 32:
                continue
            raw = f.read_bytes()
            (key_len,) = struct.unpack_from("<I", raw, 12)
            out[raw[HEADER:HEADER + key_len].decode()] = f
    return out


def value_for(key, size):
    """A value that tells whether it is whole and whose it is."""
    body = hashlib.sha256(key.encode()).digest() * (size // 32 + 1)
    body = body[:size]
    return key.encode() + b"|" + hashlib.sha256(body).digest() + body


def check_value(key, value):
    head = key.encode() + b"|"
    assert value.startswith(head), f"value of another key under {key}: {value[:40]!r}"
    digest, body = value[len(head):len(head) + 32], value[len(head) + 32:]
    assert hashlib.sha256(body).digest() == digest, f"torn value under {key} ({len(value)} B)"


# --- the contract on files ----------------------------------------------------


def test_roundtrip_types_inspection_and_files(file_regions):
    c = file_regions.new()
    assert c.store_kind == "file"
    c.set("int", 42)
    c.set("str", "héllo")
    c.set("bytes", b"\x00\xff")
    c.set("obj", {"a": [1, 2]})
    c.set("short", "x", timeout=0.3)
    assert c.get("int") == 42 and c.get("str") == "héllo" and c.get("bytes") == b"\x00\xff"
    assert c.get("obj") == {"a": [1, 2]}
    assert c.add("int", 1) is False and c.incr("int", 5) == 47
    assert c.touch("str", 100) is True
    st = c.stats()
    assert st["kind"] == "file" and st["entries"] == 5 and st["format_version"] == "1"
    files = entry_files(c)
    assert set(files) == {":1:int", ":1:str", ":1:bytes", ":1:obj", ":1:short"}
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_bytes()[:4] == b"RGCF"
    assert os.stat(c.store_location).st_mode & 0o777 == 0o700
    entries, cursor = c.list_entries(glob=":1:s*")
    assert cursor == "" and {e["key"] for e in entries} == {":1:str", ":1:short"}
    assert {e["encoding"] for e in entries} == {"str"}
    time.sleep(0.4)
    assert c.get("short") is None  # lazy expiry: the read removes it
    assert ":1:short" not in entry_files(c)
    c.set("gone", 1, timeout=0.1)
    time.sleep(0.2)
    assert c.purge_expired() == 1
    assert c.purge(":1:b*") == 1
    assert c.get("bytes") is None
    c.clear()
    assert entry_files(c) == {} and c.stats()["entries"] == 0


def test_async_api(file_regions):
    c = file_regions.new()

    async def go():
        await c.aset("k", "v")
        assert await c.aget("k") == "v"
        assert await c.aadd("k", "w") is False
        await c.aset_many({"a": 1, "b": 2})
        assert await c.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert await c.aincr("a", 10) == 11
        assert await c.adelete("k") is True
        assert await c.aget_or_set("lazy", lambda: "made") == "made"
        await c.aclear()
        assert await c.ahas_key("a") is False

    asyncio.run(go())


def test_large_value_about_two_copies(file_regions, child):
    """A 1 GB value set and read back by a fresh process: the set writes from
    the caller's bytes, and the get reads the file straight into the bytes
    object it returns, so the peak RSS stays near one copy of the value."""
    c = file_regions.new(MAX_SIZE="3GB", MAX_ITEM_SIZE="1100MB")
    size = 1 << 30
    code = f"""
import resource, sys
from django.core.cache import caches
c = caches[sys.argv[1]]
size = {size}
v = bytearray(size)
v[::4096] = bytes(range(256)) * (size // 4096 // 256)
v = bytes(v)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c.set("big", v)
after_set = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
del v
got = c.get("big")
assert len(got) == size and got[4096 * 7] == 7 and got[4096 * 300] == 300 % 256
after_get = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after_set - base) // 1024, (after_get - base) // 1024)
"""
    env = _child_env_with(c)
    out = child(env, code, c.alias, timeout=300).stdout.split()
    set_growth_mb, get_growth_mb = int(out[0]), int(out[1])
    # Before the get one copy (the caller's) is resident and then freed; the
    # get's only copy is the bytes object it returns.
    assert set_growth_mb < 64, f"set copied the value: +{set_growth_mb} MB"
    assert get_growth_mb < 128, f"get peaked at +{get_growth_mb} MB over one copy"
    c.delete("big")


def _child_env_with(cache):
    import json

    env = dict(os.environ)
    env["REGIONCACHE_TEST_CACHES"] = json.dumps({cache.alias: settings.CACHES[cache.alias]})
    tests_dir = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join([tests_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# --- damage ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 100, 16383, 16384, 16385, 5 << 20])
def test_values_around_the_first_read_round_trip(file_regions, size):
    """get() reads a value into the bytes object it returns: in the first
    buffer when it fits (16 KB), else into one of the value's size. Every
    encoding comes back whole across that boundary."""
    c = file_regions.new(MAX_ITEM_SIZE="16MB")
    raw = value_for("b", size)[:size]
    values = {"bytes": raw, "str": raw.hex()[:size], "pickle": [raw, size], "int": size}
    for name, v in values.items():
        c.set(name, v)
    for name, v in values.items():
        got = c.get(name)
        assert type(got) is type(v) and got == v, name
    # A second read of the same keys, and a miss between, reuse nothing stale.
    assert c.get("absent") is None
    assert c.get("bytes") == raw


def test_file_holding_another_key_is_a_miss(file_regions, capfd):
    """An entry file that holds another key (copied over, or a hash
    collision) is a miss and is removed, whatever the other key's length."""
    c = file_regions.new()
    c.set("a", b"value of a" * 10)
    c.set("a-much-longer-key-than-a", b"value of the long key" * 10)
    c.set("b", b"x" * 30000)
    files = entry_files(c)
    shutil.copyfile(files[":1:a-much-longer-key-than-a"], files[":1:a"])
    shutil.copyfile(files[":1:b"], files[":1:a-much-longer-key-than-a"])
    assert c.get("a") is None
    assert c.get("a-much-longer-key-than-a") is None
    assert not files[":1:a"].exists() and not files[":1:a-much-longer-key-than-a"].exists()
    assert c.get("b") == b"x" * 30000
    # Reported through regioncache's log sink (logging, once the module wires
    # it), never printed by native code: nothing reaches stderr directly.
    assert "holds another key" not in capfd.readouterr().err
    assert int(c.stats()["corrupt_removed"]) == 2


@pytest.mark.parametrize("size", [1000, 20000])  # read whole by the first read, or not
def test_corrupted_and_truncated_files_are_misses_and_removed(file_regions, capfd, size):
    c = file_regions.new()
    for k in ("flip", "cut", "tiny", "junk"):
        c.set(k, value_for(k, size))
    files = entry_files(c)
    raw = bytearray(files[":1:flip"].read_bytes())
    raw[-5] ^= 0x01
    files[":1:flip"].write_bytes(bytes(raw))
    os.truncate(files[":1:cut"], size // 4)
    os.truncate(files[":1:tiny"], 10)
    files[":1:junk"].write_bytes(b"<html>not an entry</html>" * 10)
    for k in ("flip", "cut", "tiny", "junk"):
        assert c.get(k, "miss") == "miss"
        assert not files[f":1:{k}"].exists(), f"{k}: damaged file was not removed"
    # Counted, and reported through regioncache's log sink (logging, once
    # the module wires it), never printed by native code to stderr.
    err = capfd.readouterr().err
    assert "damaged entry file" not in err, err
    assert int(c.stats()["corrupt_removed"]) == 4
    c.set("flip", "again")  # the key works afterwards
    assert c.get("flip") == "again"


def test_unwritable_directory_is_a_clear_error(file_regions, tmp_path, child):
    plain = tmp_path / "plain-file"
    plain.write_text("not a directory")
    # RAISE_ERRORS: opening raises; the default failure policy (README,
    # "Failure policy and logging"): misses and False, the reason in
    # open_error and the log, opened again by a later call.
    with pytest.raises(regioncache.RegionError) as e:
        file_regions.new(alias="blocked", location=str(plain / "cache"), RAISE_ERRORS=True)
    msg = str(e.value)
    assert "region 'blocked'" in msg and str(plain) in msg and "Not a directory" in msg
    lenient = file_regions.new(location=str(plain / "cache"))
    assert str(plain) in lenient.open_error and "Not a directory" in lenient.open_error
    assert lenient.get("k", "miss") == "miss" and lenient.set("k", "v") is False
    # A directory this user may not write: as root permission bits do not
    # apply, so a child drops to the unprivileged user first.
    # (In /tmp itself: the unprivileged user must be able to reach it.)
    # The directory is the child's own (another user's is refused for that
    # reason first: tests/test_file_faults.py), with no write permission.
    locked = Path(tempfile.mkdtemp(prefix="regioncache-locked-", dir="/tmp"))
    os.chmod(locked, 0o555)
    if os.getuid() == 0:
        os.chown(locked, 65534, 65534)
    code = f"""
import os, sys, pickle
import regioncache
from regioncache.backends import FileCache
if os.getuid() == 0:
    os.setgid(65534); os.setuid(65534)
else:
    os.chmod({str(locked)!r}, 0o555)
try:
    FileCache({str(locked)!r}, {{"OPTIONS": {{"RAISE_ERRORS": True}}}})
except regioncache.RegionError as e:
    print("ERR", e)
else:
    print("OPENED")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_child_env_with(file_regions.new()), timeout=60)
    assert out.stdout.startswith("ERR"), out.stdout + out.stderr
    assert str(locked) in out.stdout and "not writable" in out.stdout
    assert "Permission denied" in out.stdout
    os.rmdir(locked)


def test_options_are_validated_naming_alias_and_option(file_regions):
    for options, needle in [
        ({"MAX_SIZE": "12XB"}, "MAX_SIZE"),
        ({"MAX_ENTRIES": -1}, "MAX_ENTRIES"),
        ({"COMPRESS_LEVEL": 40}, "COMPRESS_LEVEL"),
        ({"COMPRESS_MIN_SIZE": "lots"}, "COMPRESS_MIN_SIZE"),
        ({"MAX_SIZE": "1MB", "MAX_ITEM_SIZE": "2MB"}, "MAX_ITEM_SIZE"),
        ({"FSYNC": "maybe"}, "FSYNC"),
        ({"SIZE": "64MB"}, "SIZE"),
    ]:
        alias = f"bad-{uuid.uuid4().hex[:6]}"
        with pytest.raises(ImproperlyConfigured) as e:
            file_regions.new(alias=alias, **options)
        assert f"CACHES[{alias!r}]" in str(e.value) and needle in str(e.value), str(e.value)


# --- processes --------------------------------------------------------------------

KEYS = [f"k{i}" for i in range(40)]


def _writer_forever(cache, seed):
    rng = random.Random(seed)
    while True:
        k = rng.choice(KEYS)
        op = rng.randrange(10)
        if op == 0:
            cache.delete(k)
        elif op == 1:
            cache.touch(k, 600)
        else:
            cache.set(k, value_for(k, rng.choice((10, 3000, 60000, 400000))))


def test_kill_9_during_writes_leaves_whole_or_missing(file_regions):
    c = file_regions.new(MAX_SIZE="8MB")
    rng = random.Random(7)
    killed_mid_write = 0
    for round_ in range(50):
        pid = os.fork()
        if pid == 0:  # the writer: dies by SIGKILL only
            try:
                _writer_forever(c, round_)
            finally:
                os._exit(3)
        time.sleep(rng.uniform(0.01, 0.06))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"writer exited on its own: {status}"
        temps = [p for p in Path(c.store_location).glob("*/.tmp.*")]
        killed_mid_write += bool(temps)
        for k in KEYS:
            v = c.get(k)
            if v is not None:  # whole or missing
                check_value(k, v)
        c.set("after", round_)  # no lock left held
        assert c.get("after") == round_
    assert c.stats()["corrupt_removed"] == "0", "a kill left a visible partial entry"
    assert killed_mid_write > 0


def test_concurrent_writers_from_several_processes(file_regions):
    c = file_regions.new(MAX_SIZE="64MB")
    c.set("counter", 0)
    procs, n_incr = 4, 150
    pids = []
    for p in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                rng = random.Random(p)
                for i in range(n_incr):
                    c.incr("counter")
                    k = rng.choice(KEYS)
                    c.set(k, value_for(k, rng.choice((100, 5000, 70000))))
                    v = c.get(rng.choice(KEYS))
                    if v is not None:
                        check_value(v.split(b"|", 1)[0].decode(), v)
                    c.add(f"once-{i}", p)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert c.get("counter") == procs * n_incr
    for k in KEYS:
        v = c.get(k)
        if v is not None:
            check_value(k, v)
    # each once-i was added by exactly one process and never overwritten
    owners = [c.get(f"once-{i}") for i in range(n_incr)]
    assert all(o in range(procs) for o in owners)
    st = c.stats()
    assert st["corrupt_removed"] == "0"


def test_size_bound_holds(file_regions):
    c = file_regions.new(MAX_SIZE="1MB")
    for i in range(600):
        c.set(f"k{i}", value_for(f"k{i}", 5000))
        if i % 50 == 49:
            st = c.stats()
            on_disk = sum(p.stat().st_size for p in entry_files(c).values())
            assert st["bytes_used"] == on_disk <= 1 << 20 == st["capacity"]
    assert c.stats()["evictions"] > 300
    for i in range(590, 600):  # the newest are kept
        check_value(f"k{i}", c.get(f"k{i}"))
    # MAX_ENTRIES keeps Django's meaning: at the bound, 1/CULL_FREQUENCY goes.
    d = file_regions.new(MAX_ENTRIES=30)
    for i in range(49):
        d.set(f"cull{i}", i)
    assert sum(d.has_key(f"cull{i}") for i in range(49)) == 29


# --- Django integration -----------------------------------------------------------


def test_cache_page_serves_from_the_file_region():
    pages = caches["file-pages"]
    pages.clear()
    views.CALLS.clear()
    client = Client()
    assert client.get("/file-cached/a/").content == b"file page a rendered 1 times"
    assert client.get("/file-cached/a/").content == b"file page a rendered 1 times"
    assert client.get("/file-cached/b/").content == b"file page b rendered 2 times"
    keys = [k for k in entry_files(pages) if "views.decorators.cache.cache_page" in k]
    assert len(keys) == 2, keys
    assert pages.purge("*cache_page*") == 2
    assert client.get("/file-cached/a/").content == b"file page a rendered 3 times"
    pages.clear()
