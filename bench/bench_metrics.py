#!/usr/bin/env python3
"""What the metrics cost, in one run:

  1. one scrape, per region and store: cache._counters() (the store's cheap
     path) and metrics.exposition([alias]) (the collector and the text
     format), beside cache._stats_full() (what the desktop app reads: on
     memcached a key dump), on regions holding --entries entries;
  2. the hot path, before and after the counters: get (hit), get (miss) and
     set on a shared-memory and a file region, timed in child processes
     that import either this tree's module or the one in --before (a
     django_backend directory built without the counters, e.g. main's
     before the change), taking turns, round after round; the table shows
     the medians of the rounds and the median (and quartiles) of each
     round's after / before, which a machine whose speed drifts between
     rounds moves less.

    PYTHONPATH=django_backend python bench/bench_metrics.py --before /path/to/old/django_backend [--quick]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent / "django_backend"

CHILD = r"""
import json, os, sys, time, uuid
import django
from django.conf import settings
kind, location, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = {"shm": "regioncache.SharedMemoryCache", "file": "regioncache.FileCache"}[kind]
options = {"SIZE": "16MB"} if kind == "shm" else {}
settings.configure(CACHES={"default": {"BACKEND": backend, "LOCATION": location,
                                       "TIMEOUT": None, "OPTIONS": options}})
django.setup()
from django.core.cache import cache
import regioncache
value = {"user": 42, "name": "x" * 40, "tags": ["a", "b"]}
cache.set("hot", value)
get, set_ = cache.get, cache.set
def loop_get(n):
    for _ in range(n): get("hot")
def loop_miss(n):
    for _ in range(n): get("absent")
def loop_set(n):
    for _ in range(n): set_("hot", value)
out = {"module": regioncache._native.__file__}
for name, fn in (("get", loop_get), ("get miss", loop_miss), ("set", loop_set)):
    fn(n // 10)
    best = None
    for _ in range(3):
        t = time.perf_counter(); fn(n); us = (time.perf_counter() - t) / n * 1e6
        best = us if best is None else min(best, us)
    out[name] = best
print(json.dumps(out))
"""


def hot_path(before, rounds, n, root):
    """{(kind, op): ([before µs per round], [after µs per round])}."""
    shm_name = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    results = {}
    try:
        for r in range(rounds):
            for kind, location in (("shm", shm_name), ("file", os.path.join(root, "hot"))):
                order = (("before", before), ("after", TREE)) if r % 2 == 0 else \
                        (("after", TREE), ("before", before))
                for label, path in order:
                    env = dict(os.environ, PYTHONPATH=str(path))
                    proc = subprocess.run([sys.executable, "-c", CHILD, kind, location, str(n)],
                                          env=env, capture_output=True, text=True, timeout=600)
                    if proc.returncode != 0:
                        raise SystemExit(f"hot-path child ({label}) failed:\n{proc.stderr}")
                    got = json.loads(proc.stdout)
                    if not got["module"].startswith(str(path)):
                        raise SystemExit(f"{label} loaded {got['module']}, not from {path}")
                    for op in ("get", "get miss", "set"):
                        pair = results.setdefault((kind, op), ([], []))
                        pair[0 if label == "before" else 1].append(got[op])
    finally:
        import regioncache

        try:
            regioncache.remove_shm_region(shm_name)
        except regioncache.RegionError:
            pass
    return results


def scrape_costs(root, entries, reps):
    import django
    from django.conf import settings

    sys.path.insert(0, str(HERE.parent / "tests"))
    from memcached_servers import start_servers

    servers = start_servers(1)
    shm_name = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    settings.configure(CACHES={
        "shm": {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": shm_name,
                "OPTIONS": {"SIZE": "64MB"}},
        "file": {"BACKEND": "regioncache.FileCache", "LOCATION": os.path.join(root, "scrape")},
        "memcached": {"BACKEND": "regioncache.MemcachedCache", "LOCATION": servers[0].location},
    })
    django.setup()
    from django.core.cache import caches

    import regioncache
    from regioncache import metrics

    rows = []
    try:
        for alias in ("shm", "file", "memcached"):
            cache = caches[alias]
            cache.set_many({f"k{i}": i for i in range(entries)})

            def timed(fn, n):
                fn()
                best = None
                for _ in range(3):
                    t = time.perf_counter()
                    for _ in range(n):
                        fn()
                    us = (time.perf_counter() - t) / n * 1e6
                    best = us if best is None else min(best, us)
                return best

            rows.append((alias, timed(cache._counters, reps),
                         timed(lambda: metrics.exposition([alias]), reps),
                         timed(cache._stats_full, max(1, reps // 10))))
    finally:
        servers.stop()
        try:
            regioncache.remove_shm_region(shm_name)
        except regioncache.RegionError:
            pass
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="a django_backend directory whose _native has no counters")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--entries", type=int, default=10000)
    args = ap.parse_args()
    rounds, n, reps = (2, 20000, 20) if args.quick else (15, 100000, 200)
    root = tempfile.mkdtemp(prefix="bench-metrics-")
    try:
        import django

        print(f"regioncache metrics: Python {platform.python_version()}, Django "
              f"{django.__version__}, {os.cpu_count()} CPUs, {args.entries} entries per region\n")
        print("One scrape of one region (best of 3 runs):\n")
        print("| store | _counters() µs | exposition([alias]) µs | _stats_full() µs (the app's) |")
        print("|---|---:|---:|---:|")
        for alias, counters, text, full in scrape_costs(root, args.entries, reps):
            print(f"| {alias} | {counters:.1f} | {text:.1f} | {full:.1f} |")
        if not args.before:
            print("\n(no --before: the hot path's before/after table needs a build without the counters)")
            return
        before = Path(args.before).resolve()
        print(f"\nHot path, {rounds} rounds taking turns, best of 3 x {n} calls in each child; "
              f"medians over the rounds (after / before: the median of each round's ratio, "
              f"and its quartiles):\n")
        print("| store | call | before µs | after µs | after / before | quartiles |")
        print("|---|---|---:|---:|---:|---:|")
        for (kind, op), (b, a) in hot_path(before, rounds, n, root).items():
            each = [x / y for x, y in zip(a, b)]
            q1, q2, q3 = statistics.quantiles(each, n=4)
            print(f"| {kind} | {op} | {statistics.median(b):.3f} | {statistics.median(a):.3f} | "
                  f"{statistics.median(each):.3f}× | {q1:.3f}×, {q3:.3f}× |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
