#!/usr/bin/env python3
"""MemcachedCache vs Django's PyLibMCCache and PyMemcacheCache, on the same
memcached server in one run, over loopback TCP and over a unix socket, with a
floor: the same operations from a plain C++ loop over libmemcached
(bench/memcached_floor.cc, built here with g++ as a shared library and run in
this process through ctypes).

    PYTHONPATH=django_backend python bench/bench_memcached.py [--iterations N] [--repeat R]

The contenders run in turns: for each operation, R rounds of one block of N
calls each (get_many: N/10), the order rotating every round, so a burst of
load from elsewhere on the machine falls on all of them alike. Prints a
Markdown table of the median microseconds per call over the rounds, with the
ratios and the issue's targets: get/set within 1.05x of the C floor and at
least 1.4x faster than PyMemcacheCache; get_many(100) at least 1.3x faster
than PyLibMCCache.
"""

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from memcached_servers import Server  # noqa: E402

OPS = ["get_100", "get_10240", "set_100", "set_10240", "get_many_100"]
LABELS = {
    "get_100": "get 100 B",
    "get_10240": "get 10 KB",
    "set_100": "set 100 B",
    "set_10240": "set 10 KB",
    "get_many_100": "get_many(100) x 100 B",
}
# Each contender's keys carry a tag of the same length, so every one sends
# keys of the same size and none reads another's differently encoded value.
TAGS = {"floor": "floor", "MemcachedCache": "ours_", "PyLibMCCache": "plibm",
        "PyMemcacheCache": "pymem"}
STR_FLAGS = 1  # regioncache's flags for a str value (codec.h kEncStr)
TIMEOUT = 300  # Django's default timeout, sent by the caches as exptime


def build_floor(workdir):
    lib = Path(workdir) / "memcached_floor.so"
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmemcached"], capture_output=True, text=True,
        check=True,
    ).stdout.split()
    subprocess.run(
        ["g++", "-O2", "-std=c++17", "-shared", "-fPIC", str(HERE / "memcached_floor.cc"),
         "-o", str(lib), *flags],
        check=True,
    )
    so = ctypes.CDLL(str(lib))
    so.floor_open.restype = ctypes.c_void_p
    so.floor_open.argtypes = [ctypes.c_char_p]
    so.floor_close.argtypes = [ctypes.c_void_p]
    so.floor_get.restype = ctypes.c_double
    so.floor_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    so.floor_set.restype = ctypes.c_double
    so.floor_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                             ctypes.c_size_t, ctypes.c_uint32, ctypes.c_int64, ctypes.c_int]
    so.floor_get_many.restype = ctypes.c_double
    so.floor_get_many.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                  ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t, ctypes.c_int]
    return so


def django_caches(location):
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(CACHES={})
        django.setup()
    from django.core.cache.backends.memcached import PyLibMCCache, PyMemcacheCache

    import regioncache

    pymc_loc = location if not location.startswith("/") else f"unix:{location}"
    return {
        "MemcachedCache": regioncache.MemcachedCache(location, {}),
        "PyLibMCCache": PyLibMCCache(location, {"OPTIONS": {"binary": False,
                                                            "behaviors": {"tcp_nodelay": True}}}),
        "PyMemcacheCache": PyMemcacheCache(pymc_loc, {}),
    }


def cache_runners(cache, tag):
    """{op: run(n) -> seconds per call} for a Django cache."""
    small, big = "s" * 100, "b" * 10240
    k100, k10k = f"{tag}:100", f"{tag}:10240"
    keys = [f"{tag}:many:{i}" for i in range(100)]
    cache.set(k100, small)
    cache.set(k10k, big)
    cache.set_many({k: small for k in keys})
    assert cache.get(k10k) == big
    assert len(cache.get_many(keys)) == 100

    def timed(body):
        def run(n):
            t0 = time.perf_counter()
            body(n)
            return (time.perf_counter() - t0) / n
        return run

    def gets(key):
        def body(n):
            g = cache.get
            for _ in range(n):
                g(key)
        return timed(body)

    def sets(key, value):
        def body(n):
            s = cache.set
            for _ in range(n):
                s(key, value)
        return timed(body)

    def many(n):
        gm = cache.get_many
        for _ in range(n):
            gm(keys)

    return {"get_100": gets(k100), "get_10240": gets(k10k), "set_100": sets(k100, small),
            "set_10240": sets(k10k, big), "get_many_100": timed(many)}


def floor_runners(so, location):
    """The same operations, as MemcachedCache puts them on the wire."""
    h = so.floor_open(location.encode())
    if not h:
        raise RuntimeError(f"floor: cannot open {location}")
    made = {size: f":1:floor:{size}".encode() for size in (100, 10240)}
    values = {100: b"s" * 100, 10240: b"b" * 10240}
    many = [f":1:floor:many:{i}".encode() for i in range(100)]
    for size in (100, 10240):
        if so.floor_set(h, made[size], len(made[size]), values[size], size, STR_FLAGS, TIMEOUT,
                        1) < 0:
            raise RuntimeError("floor: set failed")
    for k in many:
        so.floor_set(h, k, len(k), values[100], 100, STR_FLAGS, TIMEOUT, 1)
    kp = (ctypes.c_char_p * len(many))(*many)
    kl = (ctypes.c_size_t * len(many))(*[len(k) for k in many])

    def check(t):
        if t < 0:
            raise RuntimeError("floor: an operation failed or missed")
        return t

    def get(size):
        return lambda n: check(so.floor_get(h, made[size], len(made[size]), n))

    def set_(size):
        return lambda n: check(so.floor_set(h, made[size], len(made[size]), values[size], size,
                                            STR_FLAGS, TIMEOUT, n))

    runners = {"get_100": get(100), "get_10240": get(10240), "set_100": set_(100),
               "set_10240": set_(10240),
               "get_many_100": lambda n: check(so.floor_get_many(h, kp, kl, len(many), n))}
    return runners, lambda: so.floor_close(h)


def measure(runners, iterations, repeat):
    """{name: {op: median µs a call}}, the contenders taking turns."""
    samples = {name: {op: [] for op in OPS} for name in runners}
    names = list(runners)
    for op in OPS:
        n = max(1, iterations // 10) if op == "get_many_100" else iterations
        for name in names:  # warm-up block, not counted
            runners[name][op](max(1, n // 10))
        for r in range(repeat):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                samples[name][op].append(runners[name][op](n) * 1e6)
    return {name: {op: statistics.median(v) for op, v in ops.items()}
            for name, ops in samples.items()}


def verdict(ok):
    return "PASS" if ok else "MISS"


def table(transport, results):
    floor = results["floor"]
    ours = results["MemcachedCache"]
    lines = [
        f"#### {transport}",
        "",
        "| operation | C floor µs | MemcachedCache µs | PyLibMCCache µs | PyMemcacheCache µs "
        "| ours / floor | PyMemcache / ours | PyLibMC / ours | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for op in OPS:
        o, f = ours[op], floor[op]
        lib, pym = results["PyLibMCCache"][op], results["PyMemcacheCache"][op]
        if op == "get_many_100":
            target = f"≥1.3× PyLibMC: {verdict(lib / o >= 1.3)}"
        else:
            target = (f"≤1.05× floor: {verdict(o / f <= 1.05)}; "
                      f"≥1.4× PyMemcache: {verdict(pym / o >= 1.4)}")
        lines.append(
            f"| {LABELS[op]} | {f:.1f} | {o:.1f} | {lib:.1f} | {pym:.1f} | {o / f:.2f} "
            f"| {pym / o:.2f} | {lib / o:.2f} | {target} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=1000, help="calls in a block")
    ap.add_argument("--repeat", type=int, default=15, help="rounds (blocks per contender)")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="rc-bench-mc-")
    servers = []
    try:
        so = build_floor(workdir)
        tcp = Server().start()
        servers.append(tcp)
        unix = Server(socket_path=os.path.join(workdir, "mc.sock")).start()
        servers.append(unix)
        out = []
        for transport, server in (("loopback TCP", tcp), ("unix socket", unix)):
            floor_ops, close = floor_runners(so, server.location)
            runners = {"floor": floor_ops}
            try:
                for name, cache in django_caches(server.location).items():
                    runners[name] = cache_runners(cache, TAGS[name])
                out.append(table(transport, measure(runners, args.iterations, args.repeat)))
            finally:
                close()
        print(f"memcached 1.6 on 127.0.0.1; blocks of {args.iterations} calls (get_many: "
              f"{max(1, args.iterations // 10)}), the contenders in turns, median of "
              f"{args.repeat} blocks each\n")
        print("\n\n".join(out))
    finally:
        for s in servers:
            s.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
