#!/usr/bin/env python3
"""FileCache against Django's FileBasedCache and diskcache's DjangoCache, in one
run, on the same file system:

  - get and set of 100 B, 10 KB and 1 MB values (200 keys, overwritten,
    timed after one untimed overwrite of each key: the steady state), the
    contenders and the floor taking turns in rounds, median block each;
  - set of new keys into a region that is full at 1,000 and at 100,000
    entries (FileCache bounded by MAX_SIZE, FileBasedCache by MAX_ENTRIES,
    its only bound), time per set and the ratio of the two;
  - get of a 10 MB value from the page cache, in MB/s (each value dropped
    before the next get, as a view does; and, for comparison, with all 40
    values kept alive, which adds the kernel's faulting-in of fresh memory);
  - the floor: the same system calls from a plain C++ loop
    (bench/file_floor.cc, built here with g++): the textbook atomic write
    (create a temporary file, write, close, rename over the entry), the
    sequence FileCache's set makes (rewrite a spare, lock, exchange, unlock)
    and a get (open, pread, close).

Prints a markdown table with the ratios and PASS/MISS against the targets of
the file-region issue. Run from the repository (PYTHONPATH=django_backend) or
with regioncache installed:

    python bench/bench_file.py            # about 2-3 minutes
    python bench/bench_file.py --quick    # fewer iterations, under a minute
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [("100 B", 100), ("10 KB", 10 * 1024), ("1 MB", 1024 * 1024)]
NKEYS = 200


def configure(root):
    settings.configure(
        CACHES={
            "file": {
                "BACKEND": "regioncache.FileCache",
                "LOCATION": os.path.join(root, "filecache"),
                "TIMEOUT": None,
                "OPTIONS": {"MAX_SIZE": "2GB", "MAX_ITEM_SIZE": "64MB"},
            },
            "django": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": os.path.join(root, "django"),
                "TIMEOUT": None,
            },
            "diskcache": {
                "BACKEND": "diskcache.DjangoCache",
                "LOCATION": os.path.join(root, "diskcache"),
                "TIMEOUT": None,
            },
        },
    )
    django.setup()


def per_op(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n


def bench_get_set(cs, size, n, rounds, floor_run):
    """Set and get of `size`-byte values on every contender, in turns: each
    round times one block of sets and one of gets (4x as many) per contender,
    the order rotating, and the C floor's same block; returns the median
    block of each ({name: (set s, get s)}, {op: floor s}). The machine's
    speed drifts within minutes; turns keep that out of the ratios."""
    value = os.urandom(size)
    keys = [f"k{i}" for i in range(NKEYS)]
    for c in cs.values():
        c.clear()
        # Steady state: every key written, then overwritten once untimed
        # (FileCache's first overwrite in a shard still creates the file
        # that later overwrites of that shard rewrite in place).
        for _ in range(2):
            for k in keys:
                c.set(k, value)
    block = max(1, n // rounds)
    names = list(cs)
    sets = {name: [] for name in names}
    gets = {name: [] for name in names}
    floors = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            c = cs[name]
            t0 = time.perf_counter()
            for i in range(block):
                c.set(keys[i % NKEYS], value)
            t1 = time.perf_counter()
            for i in range(block * 4):
                c.get(keys[i % NKEYS])
            t2 = time.perf_counter()
            sets[name].append((t1 - t0) / block)
            gets[name].append((t2 - t1) / (block * 4))
        if floor_run:
            for op, s in floor_run(block).items():
                floors.setdefault(op, []).append(s)
    for c in cs.values():
        assert c.get(keys[0]) == value
        c.clear()
    med = statistics.median
    return ({name: (med(sets[name]), med(gets[name])) for name in names},
            {op: med(v) for op, v in floors.items()})


def bench_big_get(cache, reps):
    """MB/s of 10 MB gets: (each value dropped, all values kept alive)."""
    value = os.urandom(10 * 1024 * 1024)
    cache.set("big", value)
    assert cache.get("big") == value  # warm the page cache

    def dropped(n):
        for _ in range(n):
            cache.get("big")

    t_drop = per_op(dropped, reps)
    t_keep = per_op(lambda n: [cache.get("big") for _ in range(n)], reps)
    return len(value) / t_drop / 1e6, len(value) / t_keep / 1e6


def build_floor(workdir):
    exe = os.path.join(workdir, "file_floor")
    subprocess.run(["g++", "-O2", "-std=c++17", os.path.join(HERE, "file_floor.cc"), "-o", exe],
                   check=True)
    return exe


def run_floor(exe, workdir, size, n):
    d = tempfile.mkdtemp(prefix="floor-", dir=workdir)
    try:
        out = subprocess.run([exe, d, str(size), str(n)], check=True, capture_output=True,
                             text=True).stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {op: float(us) / 1e6 for op, us in (line.split() for line in out.splitlines())}


def full_filecache(root, entries, sets):
    """FileCache whose MAX_SIZE holds `entries` entry files of 100 B values,
    filled past the bound, then `sets` sets of new keys."""
    from regioncache.backends import FileCache

    value = os.urandom(100)
    probe = FileCache(os.path.join(root, f"probe-{entries}"), {})
    probe.set("k0000000", value)
    per_file = probe.stats()["bytes_used"]
    probe.clear()
    c = FileCache(os.path.join(root, f"full-{entries}"),
                  {"OPTIONS": {"MAX_SIZE": per_file * entries}})
    i = 0
    for i in range(entries + entries // 20):
        c.set(f"k{i:07d}", value)
    assert c.stats()["evictions"] > 0
    start = i + 1

    def run(n):
        for j in range(start, start + n):
            c.set(f"k{j:07d}", value)

    t = per_op(run, sets)
    st = c.stats()
    assert st["bytes_used"] <= st["capacity"]
    return t, st["entries"]


def full_django(root, entries, sets):
    """FileBasedCache with MAX_ENTRIES=entries and that many entry files.
    The files are made by copying one real entry file under the names the
    backend gives each key (its own set would take O(n^2) to fill: each set
    lists the whole directory)."""
    from django.core.cache.backends.filebased import FileBasedCache

    c = FileBasedCache(os.path.join(root, f"django-full-{entries}"),
                       {"OPTIONS": {"MAX_ENTRIES": entries}, "TIMEOUT": None})
    value = os.urandom(100)
    c.set("template", value)
    data = open(c._key_to_file("template"), "rb").read()
    os.remove(c._key_to_file("template"))
    for i in range(entries):
        with open(c._key_to_file(f"k{i:07d}"), "wb") as f:
            f.write(data)
    assert c.get("k0000000") == value

    def run(n):
        for j in range(n):
            c.set(f"n{j:07d}", value)

    return per_op(run, sets), len(c._list_cache_files())


def fmt_us(s):
    return f"{s * 1e6:,.1f} µs" if s < 0.01 else f"{s * 1e3:,.1f} ms"


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (under a minute)")
    ap.add_argument("--dir", default=None, help="where to make the caches (default: a temp dir)")
    args = ap.parse_args()
    q = args.quick
    root = tempfile.mkdtemp(prefix="regioncache-bench-file-", dir=args.dir)
    configure(root)
    from django.core.cache import caches

    names = ["file", "django", "diskcache"]
    results = {}
    try:
        print(f"# FileCache vs FileBasedCache vs diskcache ({'quick' if q else 'full'} run, "
              f"{root})\n", file=sys.stderr)
        exe = build_floor(root)
        floor = {}
        for label, size in SIZES:
            small = size < 1 << 20
            n = (300 if q else 2000) if small else (30 if q else 150)
            rounds = (3 if q else 11) if small else (3 if q else 5)
            floor_run = (lambda b, size=size: run_floor(exe, root, size, max(b, 50))) if small else None
            res, fl = bench_get_set({name: caches[name] for name in names}, size, n, rounds,
                                    floor_run)
            if small:
                floor[label] = fl
                print(f"  floor     {label:6} " + "  ".join(
                    f"{op} {fmt_us(t)}" for op, t in fl.items()), file=sys.stderr)
            for name in names:
                results[(name, label)] = res[name]
                print(f"  {name:9} {label:6} set {fmt_us(res[name][0])}  "
                      f"get {fmt_us(res[name][1])}", file=sys.stderr)
        big = {}
        for name in names:
            c = caches[name]
            big[name] = bench_big_get(c, 10 if q else 40)
            c.clear()
            print(f"  {name:9} 10 MB get {big[name][0]:,.0f} MB/s (kept: {big[name][1]:,.0f})",
                  file=sys.stderr)
        full = {}
        for entries in (1000, 100000):
            sets = 1000 if q else 4000
            full[("file", entries)] = full_filecache(root, entries, sets)
            dj_sets = max(5, (200 if entries == 1000 else 10) // (4 if q else 1))
            full[("django", entries)] = full_django(root, entries, dj_sets)
            print(f"  full at {entries:,}: FileCache {fmt_us(full[('file', entries)][0])}, "
                  f"FileBasedCache {fmt_us(full[('django', entries)][0])}", file=sys.stderr)
            for d in (f"full-{entries}", f"django-full-{entries}", f"probe-{entries}"):
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = ["| operation | FileCache | FileBasedCache | diskcache | vs FileBasedCache "
            "| vs diskcache | target |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for label, size in SIZES:
        small = size < 1 << 20
        (fs, fg), (ds, dg), (cs, cg) = (results[(n, label)] for n in names)
        tgt = (f"≥3× / ≥2×: {verdict(dg / fg >= 3 and cg / fg >= 2)}" if small else "—")
        rows.append(f"| get {label} | {fmt_us(fg)} | {fmt_us(dg)} | {fmt_us(cg)} | "
                    f"{dg / fg:.1f}× | {cg / fg:.1f}× | {tgt} |")
        tgt = f"≥20× / ≥2×: {verdict(ds / fs >= 20 and cs / fs >= 2)}"
        rows.append(f"| set {label} | {fmt_us(fs)} | {fmt_us(ds)} | {fmt_us(cs)} | "
                    f"{ds / fs:.1f}× | {cs / fs:.1f}× | {tgt} |")
    for i, what in ((0, "get 10 MB (MB/s)"), (1, "get 10 MB, 40 values kept (MB/s)")):
        f, d, c = big["file"][i], big["django"][i], big["diskcache"][i]
        rows.append(f"| {what} | {f:,.0f} | {d:,.0f} | {c:,.0f} | {f / d:.1f}× | {c and f / c:.1f}× "
                    f"| {'≥1 GB/s: ' + verdict(f >= 1000) if i == 0 else ''} |")
    for entries in (1000, 100000):
        (ft, fe), (dt, de) = full[("file", entries)], full[("django", entries)]
        rows.append(f"| set into a full region of {entries:,} | {fmt_us(ft)} ({fe:,} entries) | "
                    f"{fmt_us(dt)} ({de:,} entries) | — | {dt / ft:.0f}× | — | |")
    f1, f100 = full[("file", 1000)][0], full[("file", 100000)][0]
    d1, d100 = full[("django", 1000)][0], full[("django", 100000)][0]
    rows.append(f"| time per set, 100,000 / 1,000 | {f100 / f1:.2f} | {d100 / d1:.1f} | — | | | "
                f"≤2: {verdict(f100 / f1 <= 2)} |")
    rows += ["", "| floor (C loop, same run) | get | set: create + write + rename "
             "| set: rewrite spare + exchange | FileCache get / floor | FileCache set / floor |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, size in SIZES:
        if label not in floor:
            continue
        fl = floor[label]
        fs, fg = results[("file", label)]
        rows.append(f"| {label} | {fmt_us(fl['get'])} | {fmt_us(fl['set_rename'])} | "
                    f"{fmt_us(fl['set_exchange'])} | {fg / fl['get']:.1f}× | "
                    f"{fs / fl['set_exchange']:.1f}× |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
