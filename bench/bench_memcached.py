#!/usr/bin/env python3
"""MemcachedCache vs Django's PyLibMCCache and PyMemcacheCache, on the same
memcached server in one run, over loopback TCP and over a unix socket, with a
floor: the same operations from a plain C++ loop over libmemcached
(bench/memcached_floor.cc, built here with g++).

    PYTHONPATH=django_backend python bench/bench_memcached.py [--iterations N]

Prints a Markdown table (microseconds per call, best of --repeat runs) with
the ratios and the issue's targets: get/set within 1.05x of the C floor and
at least 1.4x faster than PyMemcacheCache; get_many(100) at least 1.3x faster
than PyLibMCCache.
"""

import argparse
import os
import shutil
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


def build_floor(workdir):
    exe = Path(workdir) / "memcached_floor"
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libmemcached"], capture_output=True, text=True,
        check=True,
    ).stdout.split()
    subprocess.run(
        ["g++", "-O2", "-std=c++17", str(HERE / "memcached_floor.cc"), "-o", str(exe), *flags],
        check=True,
    )
    return exe


def run_floor(exe, location, iterations, repeat):
    best = {}
    for _ in range(repeat):
        out = subprocess.run([str(exe), location, str(iterations)], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            op, us = line.split()
            best[op] = min(best.get(op, float("inf")), float(us))
    return best


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


def time_cache(cache, iterations, repeat):
    res = {}
    small, big = "s" * 100, "b" * 10240
    cache.set("bench:100", small)
    cache.set("bench:10240", big)
    keys = [f"bench:many:{i}" for i in range(100)]
    cache.set_many({k: small for k in keys})
    assert cache.get("bench:10240") == big
    assert len(cache.get_many(keys)) == 100

    def best(fn, n):
        t = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(n)
            t = min(t, (time.perf_counter() - t0) / n * 1e6)
        return t

    def gets(key):
        def run(n):
            g = cache.get
            for _ in range(n):
                g(key)
        return run

    def sets(key, value):
        def run(n):
            s = cache.set
            for _ in range(n):
                s(key, value)
        return run

    def many(n):
        gm = cache.get_many
        for _ in range(n):
            gm(keys)

    res["get_100"] = best(gets("bench:100"), iterations)
    res["get_10240"] = best(gets("bench:10240"), iterations)
    res["set_100"] = best(sets("bench:100", small), iterations)
    res["set_10240"] = best(sets("bench:10240", big), iterations)
    res["get_many_100"] = best(many, max(1, iterations // 10))
    return res


def verdict(ok):
    return "PASS" if ok else "MISS"


def table(transport, floor, results):
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
    ap.add_argument("--iterations", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="rc-bench-mc-")
    servers = []
    try:
        exe = build_floor(workdir)
        tcp = Server().start()
        servers.append(tcp)
        unix = Server(socket_path=os.path.join(workdir, "mc.sock")).start()
        servers.append(unix)
        out = []
        for transport, server in (("loopback TCP", tcp), ("unix socket", unix)):
            floor = run_floor(exe, server.location, args.iterations, args.repeat)
            results = {}
            for name, cache in django_caches(server.location).items():
                results[name] = time_cache(cache, args.iterations, args.repeat)
            out.append(table(transport, floor, results))
        print(f"memcached 1.6 on 127.0.0.1, {args.iterations} calls a run (get_many: "
              f"{max(1, args.iterations // 10)}), best of {args.repeat} runs\n")
        print("\n\n".join(out))
    finally:
        for s in servers:
            s.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
