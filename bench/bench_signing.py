#!/usr/bin/env python3
"""What signing values costs (OPTIONS SIGNING_KEY), on shared memory.

    PYTHONPATH=django_backend python bench/bench_signing.py           # about a minute
    PYTHONPATH=django_backend python bench/bench_signing.py --quick   # a smoke run

Two SharedMemoryCache regions, one unsigned and one with a SIGNING_KEY, get
and set a pickled value of about 100 B and one of about 10 KB through the
Django cache API. The two take turns: in each round every contender times
one block of N calls, the order alternating between rounds, so both see the
same machine; the table gives each one's median block and the median of the
per-round ratios (signed / unsigned). On this noisy shared machine the ratio
is the figure to read.
"""

import argparse
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "regioncache" not in sys.modules and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT / "django_backend"))

VALUES = {
    "100 B pickle": {"data": "x" * 74},
    "10 KB pickle": {"data": "x" * 10_214},
}


def setup(tag):
    import django
    from django.conf import settings

    opts = {"SIZE": "64MB"}
    settings.configure(
        CACHES={
            "plain": {"BACKEND": "regioncache.SharedMemoryCache",
                      "LOCATION": f"bench-sign-{tag}-plain", "OPTIONS": opts},
            "signed": {"BACKEND": "regioncache.SharedMemoryCache",
                       "LOCATION": f"bench-sign-{tag}-signed",
                       "OPTIONS": {**opts, "SIGNING_KEY": "bench-signing-key-0123456789abcdef"}},
        },
    )
    django.setup()
    from django.core.cache import caches

    return caches


def block(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def ops(cache, value):
    keys = [f"k{i}" for i in range(16)]
    for k in keys:
        cache.set(k, value, None)
    get, set_ = cache.get, cache.set

    def do_get(n):
        for i in range(n):
            get(keys[i & 15])

    def do_set(n):
        for i in range(n):
            set_(keys[i & 15], value, None)

    return {"get": do_get, "set": do_set}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (5 if args.quick else 21)
    n = 2000 if args.quick else 20000

    import regioncache

    caches = setup(os.getpid())
    plain, signed = caches["plain"], caches["signed"]
    assert signed.signs_values and not plain.signs_values
    try:
        print(f"signing cost on SharedMemoryCache: Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, {rounds} rounds x {n} calls, in turns\n")
        print("| value | pickled size | operation | unsigned µs | signed µs | signed / unsigned |")
        print("|---|---:|---|---:|---:|---:|")
        for label, value in VALUES.items():
            size = len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
            fa, fb = ops(plain, value), ops(signed, value)
            for op in ("get", "set"):
                ta, tb, ratios = [], [], []
                for f in (fa[op], fb[op]):
                    f(n // 10)  # warm up
                for r in range(rounds):
                    if r % 2 == 0:
                        a = block(fa[op], n)
                        b = block(fb[op], n)
                    else:
                        b = block(fb[op], n)
                        a = block(fa[op], n)
                    ta.append(a)
                    tb.append(b)
                    ratios.append(b / a)
                print(f"| {label} | {size} B | {op} | {statistics.median(ta):.2f} | "
                      f"{statistics.median(tb):.2f} | {statistics.median(ratios):.2f}× |")
    finally:
        for c in (plain, signed):
            regioncache.remove_shm_region(c.store_location)


if __name__ == "__main__":
    main()
