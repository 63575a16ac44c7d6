#!/usr/bin/env python3
"""What a compare-and-swap costs next to the write it replaces, on each store
that keeps a region on this host, in one run:

  - cache._swap(key, old, new) that succeeds (the value alternates between
    two 32-character tokens, as a lock's extend rewrites its token) against
    cache.set(key, new) of the same value;
  - cache.set + cache._delete_if(key, token) (a lock's acquire by set and
    its release) against cache.set + cache.delete;
  - cache._swap that fails (the key holds another token: a contended
    release) against cache.get of the key.

Each pair takes turns in rounds; the table shows the median round per
operation and the ratio swap / peer. Run from the repository:

    PYTHONPATH=django_backend python bench/bench_cas.py [--quick]
"""

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import django
from django.conf import settings

A, B, C = "a" * 32, "b" * 32, "c" * 32


def configure(root):
    settings.configure(
        CACHES={
            "shm": {
                "BACKEND": "regioncache.SharedMemoryCache",
                "LOCATION": f"bench-cas-{uuid.uuid4().hex[:8]}",
                "TIMEOUT": None,
                "OPTIONS": {"SIZE": "16MB"},
            },
            "file": {
                "BACKEND": "regioncache.FileCache",
                "LOCATION": os.path.join(root, "file"),
                "TIMEOUT": None,
            },
        }
    )
    django.setup()


def per_op_us(fn, n):
    t = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t) / n * 1e6


def pairs(cache):
    """(name, swap loop, peer loop, peer name): each loop runs n operations."""

    def swap(n):
        cache.set("k", A)
        for i in range(n // 2):
            cache._swap("k", A, B)
            cache._swap("k", B, A)

    def set_(n):
        for i in range(n // 2):
            cache.set("k", B)
            cache.set("k", A)

    def set_delete_if(n):
        for i in range(n):
            cache.set("k", A)
            cache._delete_if("k", A)

    def set_delete(n):
        for i in range(n):
            cache.set("k", A)
            cache.delete("k")

    def swap_fails(n):
        cache.set("k", C)
        for i in range(n):
            cache._swap("k", A, B)

    def get(n):
        cache.set("k", C)
        for i in range(n):
            cache.get("k")

    return [
        ("_swap (succeeds)", swap, set_, "set"),
        ("set + _delete_if", set_delete_if, set_delete, "set + delete"),
        ("_swap (fails)", swap_fails, get, "get"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, rounds = (2000, 3) if args.quick else (20000, 7)
    root = tempfile.mkdtemp(prefix="bench-cas-")
    try:
        configure(root)
        from django.core.cache import caches

        import regioncache

        print(f"compare-and-swap vs the peer write: Python {platform.python_version()}, "
              f"Django {django.get_version()}, {os.cpu_count()} CPUs, "
              f"median of {rounds} rounds x {n} ops")
        print()
        print("| store | operation | µs | peer | peer µs | ratio |")
        print("|---|---|---:|---|---:|---:|")
        for alias in ("shm", "file"):
            cache = caches[alias]
            for name, swap, peer, peer_name in pairs(cache):
                mine, theirs = [], []
                for r in range(rounds):
                    mine.append(per_op_us(swap, n))
                    theirs.append(per_op_us(peer, n))
                m, t = statistics.median(mine), statistics.median(theirs)
                print(f"| {alias} | {name} | {m:.2f} | {peer_name} | {t:.2f} | {m / t:.2f}× |")
        regioncache.remove_shm_region(settings.CACHES["shm"]["LOCATION"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
