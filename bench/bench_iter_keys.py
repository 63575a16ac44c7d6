#!/usr/bin/env python3
"""iter_keys against keys() over a big shared-memory region (regioncache.redis_api).

    python bench/bench_iter_keys.py                 # 1,000,000 keys (about a minute)
    python bench/bench_iter_keys.py --keys 100000   # a smaller region

The region is filled with N keys "user:<i>" (small int values, no expiry).
Then, each in turns (the order flipped every other round):

- iter_keys("*", itersize=1000) consumed without keeping the keys,
- keys("*"), the list held until it is measured,
- a selective pattern, iter_keys("user:12345*"), which still scans the whole
  region in the store (its answer is 11 keys at 1,000,000),
- the floor: the store's listing itself (regioncache._listing.entry_pages)
  with the same glob and page size, as the keys alone (keys_only=True, what
  iter_keys asks for) and as the inspection's dicts,

timed (ns per key of the region, best round) and then run once more under
tracemalloc for the peak of Python allocations during the call, with the
process's anonymous RSS (RssAnon of /proc/self/status: the segment's pages
are shared memory and not counted there) read before, at every page, and
after. iter_keys's figures staying at a page's worth whatever N is means its
memory is O(itersize), not O(region); keys() holds the region's keys.
"""

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "django_backend"))

REGION = f"bench-iter-keys-{os.getpid()}"
ITERSIZE = 1000


def setup(n):
    import django
    from django.conf import settings

    # About 200 bytes of segment per small entry (index slot, header, block).
    size_mb = max(64, n * 400 // (1 << 20))
    settings.configure(CACHES={"big": {
        "BACKEND": "regioncache.SharedMemoryCache", "LOCATION": REGION, "TIMEOUT": None,
        "OPTIONS": {"SIZE": f"{size_mb}MB"},
    }})
    django.setup()
    from django.core.cache import caches

    return caches["big"]


def rss_anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


def fill(cache, n):
    batch = {}
    for i in range(n):
        batch[f"user:{i}"] = i
        if len(batch) == 10_000:
            assert cache.set_many(batch) == []
            batch = {}
    if batch:
        assert cache.set_many(batch) == []
    entries = cache.stats()["entries"]
    if entries != n:
        raise SystemExit(f"the region holds {entries} entries, not {n}: make SIZE larger")


def consume_iter(cache, pattern, samples=None):
    count = 0
    for _ in cache.iter_keys(pattern, itersize=ITERSIZE):
        count += 1
        if samples is not None and count % ITERSIZE == 0:
            samples.append(rss_anon_kb())
    return count, None


def raw_pages(cache, pattern, samples=None, keys_only=False):
    from regioncache._listing import entry_pages

    count = 0
    for page in entry_pages(cache, pattern, size=ITERSIZE, keys_only=keys_only):
        count += len(page)
        if samples is not None:
            samples.append(rss_anon_kb())
    return count, None


def build_list(cache, pattern, samples=None):
    keys = cache.keys(pattern)
    if samples is not None:
        samples.append(rss_anon_kb())
    return len(keys), keys


# name -> (function, pattern, keyword arguments)
CALLS = {
    "iter_keys('*')": (consume_iter, "*", {}),
    "keys('*')": (build_list, "*", {}),
    "iter_keys('user:12345*')": (consume_iter, "user:12345*", {}),
    "listing, keys only ('*')": (raw_pages, "*", {"keys_only": True}),
    "listing, dicts ('*')": (raw_pages, "*", {}),
}
VARIANTS = [(name, lambda c, f=f, p=p, kw=kw: f(c, p, **kw))
            for name, (f, p, kw) in CALLS.items()]


def timed(cache, rounds, n):
    best = {name: float("inf") for name, _ in VARIANTS}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for name, fn in order:
            gc.collect()
            t = time.perf_counter()
            _, held = fn(cache)
            elapsed = time.perf_counter() - t
            del held
            best[name] = min(best[name], elapsed)
    return {name: best[name] / n * 1e9 for name in best}


def memory(cache, name):
    """(tracemalloc peak MB, RssAnon growth MB at its highest, count)."""
    fn, pattern, kw = CALLS[name]
    gc.collect()
    samples = []
    before = rss_anon_kb()
    tracemalloc.start()
    count, held = fn(cache, pattern, samples, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    samples.append(rss_anon_kb())
    del held
    return peak / 2**20, (max(samples) - before) / 1024, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import regioncache

    cache = setup(args.keys)
    try:
        t = time.perf_counter()
        fill(cache, args.keys)
        print(f"region {REGION}: {args.keys:,} keys filled in {time.perf_counter() - t:.1f} s")
        # Memory first, keys() last: RssAnon is then not lowered by heap
        # that an earlier keys() grew and freed.
        names = sorted((name for name, _ in VARIANTS), key=lambda name: name.startswith("keys"))
        mem = {name: memory(cache, name) for name in names}
        ns = timed(cache, args.rounds, args.keys)
        print(f"\n{'call':<26} {'found':>9} {'ns/key':>8} {'vs keys()':>10} "
              f"{'tracemalloc peak':>17} {'RssAnon growth':>15}")
        peer = ns["keys('*')"]
        for name, _ in VARIANTS:
            peak, rss, count = mem[name]
            print(f"{name:<26} {count:>9,} {ns[name]:>8.0f} {ns[name] / peer:>9.2f}x "
                  f"{peak:>14.2f} MB {rss:>12.1f} MB")
        print(f"\nns/key: per key of the region, best of {args.rounds} rounds; itersize {ITERSIZE}")
    finally:
        regioncache.remove_shm_region(REGION)


if __name__ == "__main__":
    main()
