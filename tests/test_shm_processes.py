"""One region shared by real processes: children started with subprocess (the
same settings module, see conftest.child_env), multiprocessing with 'spawn'
and 'fork', concurrent writers and readers, exact counters, and writers killed
with SIGKILL in the middle of their work."""

import ast
import multiprocessing
import os
import random
import subprocess
import sys
import time

import pytest
from django.core.cache import caches

from harness import kill_nine_round

# Values that check themselves: whoever reads one can tell whether it is whole
# and which key it was written for. Shared by the test process and children.
CHECKED_VALUES = r'''
import hashlib, pickle, random

def _digest(key, nonce, body):
    return hashlib.sha256(key.encode() + b"|" + nonce.encode() + b"|" + body).digest()

def make_value(key, rng, size):
    """A bytes, str or pickled value for key, about size bytes long."""
    nonce = "%016x" % rng.getrandbits(64)
    body = rng.randbytes(size)
    kind = rng.randrange(3)
    if kind == 0:
        return b"RB|" + key.encode() + b"|" + nonce.encode() + b"|" + _digest(key, nonce, body) + body
    if kind == 1:
        text = body.hex()[:size]
        return "RS|%s|%s|%s|%s" % (key, nonce, _digest(key, nonce, text.encode()).hex(), text)
    return {"key": key, "nonce": nonce, "body": body, "sha": _digest(key, nonce, body)}

def check_value(key, value):
    """None if value is a whole value written for key, else what is wrong."""
    if isinstance(value, bytes):
        head = b"RB|" + key.encode() + b"|"
        if not value.startswith(head):
            return "bytes value of another key or torn head: %r" % value[:60]
        rest = value[len(head):]
        nonce, digest, body = rest[:16].decode("ascii", "replace"), rest[17:49], rest[49:]
        if rest[16:17] != b"|" or _digest(key, nonce, body) != digest:
            return "bytes value with a bad digest (%d bytes)" % len(value)
        return None
    if isinstance(value, str):
        parts = value.split("|", 4)
        if len(parts) != 5 or parts[0] != "RS" or parts[1] != key:
            return "str value of another key or torn head: %r" % value[:60]
        if _digest(key, parts[2], parts[4].encode()).hex() != parts[3]:
            return "str value with a bad digest (%d chars)" % len(value)
        return None
    if isinstance(value, dict):
        if value.get("key") != key:
            return "pickled value of another key: %r" % value.get("key")
        if _digest(key, value["nonce"], value["body"]) != value["sha"]:
            return "pickled value with a bad digest"
        return None
    return "unexpected type %s: %r" % (type(value).__name__, value)
'''
exec(CHECKED_VALUES)  # make_value / check_value for the test process


def all_entries(cache, include_expired=False):
    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, limit=500, include_expired=include_expired)
        out.extend(page)
        if not cursor:
            return out


def user_key(made_key):
    return made_key.split(":", 2)[2]


# ---------------------------------------------------------- two processes --

CHILD_OPS = """
import ast
alias = sys.argv[1]
ops = ast.literal_eval(sys.argv[2])
c = caches[alias]
out = []
for op, *args in ops:
    out.append(getattr(c, op)(*args))
print(repr(out))
"""


def child_ops(child, regions, alias, ops):
    proc = child(regions.child_env(), CHILD_OPS, alias, repr(ops))
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def test_two_processes_share_a_region(regions, child):
    c = regions.new()
    alias = c.alias
    c.set("from-parent", {"n": 1, "b": b"\x00\x01"})
    c.set("int", 2**70)
    c.set("counter", 10)
    got = child_ops(
        child,
        regions,
        alias,
        [
            ("get", "from-parent"),
            ("get", "int"),
            ("incr", "counter", 5),
            ("set", "from-child", "ünï"),
            ("set_many", {"m1": b"x" * 100_000, "m2": 3}),
            ("delete", "int"),
        ],
    )
    assert got == [{"n": 1, "b": b"\x00\x01"}, 2**70, 15, None, [], True]
    assert c.get("from-child") == "ünï"
    assert c.get_many(["m1", "m2"]) == {"m1": b"x" * 100_000, "m2": 3}
    assert c.get("int") is None
    assert c.get("counter") == 15
    # the child sees what the parent wrote after the child's own writes
    c.set("from-child", "overwritten")
    assert child_ops(child, regions, alias, [("get", "from-child"), ("has_key", "int")]) == [
        "overwritten",
        False,
    ]
    st = c.stats()
    assert st["entries"] == 5


def test_second_process_sees_clear_and_expiry(regions, child):
    c = regions.new()
    # 3 s: a child that starts Django on a loaded machine still reads it live.
    set_at = time.monotonic()
    c.set("k", "v", timeout=3)
    c.set("stay", "v")
    assert child_ops(child, regions, c.alias, [("get", "k")]) == ["v"]
    time.sleep(max(0.0, set_at + 3.2 - time.monotonic()))
    assert child_ops(child, regions, c.alias, [("get", "k"), ("get", "stay"), ("clear",)]) == [
        None,
        "v",
        None,
    ]
    assert c.get("stay") is None
    assert c.stats()["entries"] == 0


def _page(seed, size=17 * 1024):
    """A page-like str: repeated markup around varied numbers (compresses 3-5x)."""
    rng = random.Random(seed)
    rows, n = [], 0
    while n < size:
        row = f'<tr><td class="id">{rng.randrange(10**6)}</td><td><a href="/x/{rng.randrange(10**6)}/">' \
              f"item {rng.randrange(1000)}</a></td></tr>\n"
        rows.append(row)
        n += len(row)
    return "".join(rows)


def test_processes_with_and_without_compression_share_a_region(regions, child):
    # One segment, two aliases: this process compresses, the child does not
    # (and then the other way round). The flag is per entry.
    on = regions.new(OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB", "COMPRESS_MIN_SIZE": "1KB",
                              "COMPRESS_LEVEL": 3})
    location = on.stats()["location"]
    off = regions.register(regions.conf(location, OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}))
    page, other, third = _page(1), _page(2), _page(3)
    on.set("page", page)
    on.set("obj", {"page": page})
    on.set("n", 40)
    used = on.stats()["bytes_used"]
    assert used < 2 * len(page), used  # both large values went in compressed
    got = child_ops(child, regions, off, [
        ("get", "page"),
        ("get_many", ["obj", "n", "missing"]),
        ("incr", "n", 2),
        ("add", "page", "not stored"),
        ("set", "from-plain", other),
        ("touch", "page", 300),
        ("stats",),
    ])
    assert got[0] == page
    assert got[1] == {"obj": {"page": page}, "n": 40}
    assert got[2:6] == [42, False, None, True]
    assert got[6]["compress_min_size"] == "0" and got[6]["errors"] == 0
    assert on.get("from-plain") == other
    assert on.get("page") == page
    # and the other way round: a compressing child, this process reading plain
    on_alias = on.alias
    assert child_ops(child, regions, on_alias, [("set", "from-child", third)]) == [None]
    assert caches[off].get("from-child") == third
    sizes = {e["key"]: e["size"] for e in all_entries(caches[off])}
    assert sizes[":1:from-child"] == len(third.encode())
    assert sizes[":1:page"] == len(page.encode())
    assert on.stats()["errors"] == 0


def _spawned_worker(conf, alias, key, queue):
    import django
    from django.conf import settings

    django.setup()
    settings.CACHES[alias] = conf
    from django.core.cache import caches as child_caches

    c = child_caches[alias]
    queue.put(c.get(key))
    c.set(key + "-back", {"pid": os.getpid(), "seen": c.get(key)})
    c.close()


def _forked_worker(alias, key, queue):
    # Uses the cache object (and mapping) opened before the fork.
    c = caches[alias]
    queue.put(c.get(key))
    for i in range(100):
        c.set(f"{key}-{i}", i)
    c.incr(key + "-n", 7)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_multiprocessing(regions, method):
    c = regions.new()
    alias = c.alias
    conf = dict(regions.conf(location=c.stats()["location"], OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}))
    c.set("key", ["hello", 1])
    c.set("key-n", 1)
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    if method == "spawn":
        p = ctx.Process(target=_spawned_worker, args=(conf, alias, "key", queue))
    else:
        p = ctx.Process(target=_forked_worker, args=(alias, "key", queue))
    p.start()
    seen = queue.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0
    assert seen == ["hello", 1]
    if method == "spawn":
        back = c.get("key-back")
        assert back["seen"] == ["hello", 1] and back["pid"] == p.pid
    else:
        assert c.get_many([f"key-{i}" for i in range(100)]) == {f"key-{i}": i for i in range(100)}
        assert c.get("key-n") == 8
    # the parent's object still works after the child closed or exited
    c.set("after", 1)
    assert c.get("after") == 1


# --------------------------------------------------------------- hammering --

HAMMER = CHECKED_VALUES + r"""
import threading, time
alias, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
c = caches[alias]
BLOBS = ["blob%d" % i for i in range(25)]
COUNTERS = ["ctr%d" % i for i in range(25)]
SIZES = [0, 10, 200, 3000, 40000, 150000]
errors, ops = [], [0]
lock = threading.Lock()

def fail(msg):
    with lock:
        if len(errors) < 20:
            errors.append(msg)

def worker(tid):
    rng = random.Random(seed * 10 + tid)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = rng.random()
        if rng.random() < 0.5:
            key = rng.choice(BLOBS)
            if r < 0.35:
                c.set(key, make_value(key, rng, rng.choice(SIZES)))
            elif r < 0.8:
                v = c.get(key)
                if v is not None:
                    bad = check_value(key, v)
                    if bad:
                        fail("get %s: %s" % (key, bad))
            elif r < 0.9:
                c.delete(key)
            else:
                many = rng.sample(BLOBS, 4)
                for k, v in c.get_many(many).items():
                    bad = check_value(k, v)
                    if bad:
                        fail("get_many %s: %s" % (k, bad))
        else:
            key = rng.choice(COUNTERS)
            if r < 0.5:
                try:
                    v = c.incr(key, rng.randrange(1, 5))
                    if type(v) is not int or v < 0:
                        fail("incr %s returned %r" % (key, v))
                except ValueError:
                    c.add(key, 0)
            elif r < 0.8:
                v = c.get(key)
                if v is not None and (type(v) is not int or v < 0):
                    fail("get %s: %r" % (key, v))
            elif r < 0.9:
                c.set(key, rng.randrange(0, 1000))
            else:
                c.delete(key)
    with lock:
        ops[0] += n

threads = [threading.Thread(target=worker, args=(t,)) for t in range(2)]
print("ready", flush=True)
sys.stdin.readline()
for t in threads: t.start()
for t in threads: t.join()
print(repr({"ops": ops[0], "errors": errors}), flush=True)
"""


def start_children(env, code, argvs):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *map(str, argv)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for p in procs:  # every child has set up Django and opened the region
        line = p.stdout.readline()
        assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def finish_children(procs, timeout=90):
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"child exited {p.returncode}: {err}"
        results.append(ast.literal_eval(out.strip().splitlines()[-1]))
    return results


@pytest.mark.timeout(120)
def test_four_processes_two_threads_hammer_fifty_keys(regions, child_preamble):
    c = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    procs = start_children(regions.child_env(), child_preamble + HAMMER, [(c.alias, 3.0, seed) for seed in range(4)])
    # the test process reads along while the children write
    rng = random.Random(99)
    reads = bad = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        key = f"blob{rng.randrange(25)}"
        v = c.get(key)
        if v is not None:
            reads += 1
            assert check_value(key, v) is None, check_value(key, v)
    results = finish_children(procs)
    for r in results:
        assert r["errors"] == [], r["errors"]
        assert r["ops"] > 100
    total_ops = sum(r["ops"] for r in results)
    # afterwards every entry is whole and of the right kind
    for e in all_entries(c):
        key = user_key(e["key"])
        v = c.get(key)
        if key.startswith("blob"):
            assert v is not None and check_value(key, v) is None
        else:
            assert type(v) is int and v >= 0
    st = c.stats()
    assert st["bytes_used"] <= st["capacity"]
    print(f"hammer: {total_ops} ops in 4 processes x 2 threads, parent reads {reads}, stats {st}")


INCR = r"""
alias, n = sys.argv[1], int(sys.argv[2])
c = caches[alias]
print("ready", flush=True)
sys.stdin.readline()
last = None
for _ in range(n):
    last = c.incr("counter")
c.decr("down", 1)
print(repr({"last": last}), flush=True)
"""


@pytest.mark.timeout(120)
def test_incr_from_four_processes_is_exact(regions, child_preamble):
    c = regions.new()
    c.set("counter", 0)
    c.set("down", 0)
    procs = start_children(regions.child_env(), child_preamble + INCR, [(c.alias, 1000)] * 4)
    results = finish_children(procs)
    assert c.get("counter") == 4000
    assert c.get("down") == -4
    assert max(r["last"] for r in results) == 4000


# ------------------------------------------------------------------ kill -9 --

WRITER = CHECKED_VALUES + r"""
alias, seed = sys.argv[1], int(sys.argv[2])
c = caches[alias]
rng = random.Random(seed)
KEYS = ["w%d" % i for i in range(64)]
SIZES = [0, 1, 50, 700, 4000, 30000, 120000, 200000]
# Values made up front, so the loop spends its time inside the store (where
# a kill hurts) rather than in hashing.
POOL = {k: [make_value(k, rng, rng.choice(SIZES)) for _ in range(3)] for k in KEYS}
c.set("w-started", seed)
print("started", flush=True)
while True:
    r = rng.random()
    key = rng.choice(KEYS)
    if r < 0.6:
        c.set(key, rng.choice(POOL[key]))
    elif r < 0.7:
        c.set_many({k: rng.choice(POOL[k]) for k in rng.sample(KEYS, 3)})
    elif r < 0.8:
        c.delete(key)
    elif r < 0.9:
        c.add(key, rng.choice(POOL[key]))
    else:
        try:
            c.incr("n%d" % rng.randrange(4))
        except ValueError:
            c.set("n%d" % rng.randrange(4), 0)
"""


@pytest.mark.timeout(180)
def test_kill_9_writers(regions, child_preamble):
    c = regions.new(OPTIONS={"SIZE": "4MB", "MAX_ITEM_SIZE": "256K"})
    env = regions.child_env()
    rng = random.Random(2024)
    rounds = 50
    recovered_rounds = 0
    misses_after_list = 0
    checked = 0
    recoveries = int(c.stats()["recoveries"])
    for rnd in range(rounds):
        kill_nine_round([sys.executable, "-c", child_preamble + WRITER, c.alias, str(rnd)],
                        env, rng, 0.005, 0.050)

        # The survivor: every listed entry reads back whole.
        entries = all_entries(c)
        for e in entries:
            key = user_key(e["key"])
            v = c.get(key)
            if v is None:
                misses_after_list += 1
                continue
            checked += 1
            if key.startswith("w") and key != "w-started":
                assert check_value(key, v) is None, (rnd, key, check_value(key, v))
            elif key.startswith("survivor-"):
                assert v == {"round": int(key.split("-")[1])}, (rnd, key, v)
            else:
                assert type(v) is int, (rnd, key, v)
        st = c.stats()
        assert st["bytes_used"] <= st["capacity"], (rnd, st)
        assert st["entries"] == len(all_entries(c)), (rnd, st)
        # and the region is usable
        c.set(f"survivor-{rnd}", {"round": rnd})
        assert c.get(f"survivor-{rnd}") == {"round": rnd}
        c.set("probe-n", rnd)
        assert c.incr("probe-n") == rnd + 1
        now = int(st["recoveries"])
        if now > recoveries:
            recovered_rounds += 1
        recoveries = now
    print(
        f"kill -9: {rounds} rounds, {recovered_rounds} with a recovery, "
        f"{checked} values checked, {misses_after_list} listed entries missing on read"
    )
    # entries listed by a quiescent region must read back (no writer is alive)
    assert misses_after_list == 0
