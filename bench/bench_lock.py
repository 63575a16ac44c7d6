#!/usr/bin/env python3
"""cache.lock(): acquire+release per second on each of regioncache's stores
and, in the same run, django-redis's lock on a redis-server this script
starts on a free 127.0.0.1 port (memcached too: tests/memcached_servers).

    PYTHONPATH=django_backend python bench/bench_lock.py [--iterations N] [--repeat R] [--seconds S]

Uncontended: one process, `with cache.lock(key): pass` N times per block, R
blocks per contender, the contenders taking turns (order rotating), so load
from elsewhere falls on all alike; the median block gives the rate.
Contended: 4 forked processes on one key for S seconds each contender, every
waiter polling with sleep=0.001 (the same for django-redis); the rate is the
acquire+release pairs completed by all four together.

Needs redis-server (Debian: apt-get install redis-server), django-redis and
redis (pip), memcached.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from memcached_servers import Server, free_port  # noqa: E402

NAMES = ["SharedMemoryCache", "FileCache", "MemcachedCache", "django-redis"]


class RedisServer:
    def __init__(self, workdir):
        exe = shutil.which("redis-server")
        if not exe:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def make_caches(specs):
    """Fresh cache objects (a forked child makes its own: no shared sockets)."""
    from django_redis.cache import RedisCache

    import regioncache

    return {
        "SharedMemoryCache": regioncache.SharedMemoryCache(specs["shm"],
                                                           {"OPTIONS": {"SIZE": "8MB"}}),
        "FileCache": regioncache.FileCache(specs["file"], {"OPTIONS": {"MAX_SIZE": "16MB"}}),
        "MemcachedCache": regioncache.MemcachedCache(specs["memcached"], {}),
        "django-redis": RedisCache(specs["redis"], {}),
    }


def uncontended(caches, iterations, repeat):
    samples = {name: [] for name in NAMES}
    for name in NAMES:  # warm-up
        lock = caches[name].lock("bench-lock")
        for _ in range(max(1, iterations // 10)):
            with lock:
                pass
    for r in range(repeat):
        order = NAMES[r % len(NAMES):] + NAMES[:r % len(NAMES)]
        for name in order:
            lock = caches[name].lock("bench-lock")
            t0 = time.perf_counter()
            for _ in range(iterations):
                with lock:
                    pass
            samples[name].append((time.perf_counter() - t0) / iterations)
    return {name: statistics.median(v) for name, v in samples.items()}


def contended(specs, name, seconds, workers=4):
    """(pairs per second completed by `workers` forked processes together,
    the pairs of each process: neither lock queues its waiters, so a
    process that just released often takes the lock again)."""
    reads = []
    pids = []
    start_r, start_w = os.pipe()
    for _ in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(start_w)
                cache = make_caches(specs)[name]
                lock = cache.lock("bench-contended", sleep=0.001)
                os.read(start_r, 1)  # all start together
                done = 0
                stop = time.monotonic() + seconds
                while time.monotonic() < stop:
                    with lock:
                        done += 1
                os.write(w, str(done).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        reads.append(r)
        pids.append(pid)
    os.close(start_r)
    time.sleep(1.0)  # let every child open its cache
    os.write(start_w, b"x" * workers)
    os.close(start_w)
    counts = []
    for r, pid in zip(reads, pids):
        data = b""
        while chunk := os.read(r, 64):
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise RuntimeError(f"{name}: a contended worker failed (status {status})")
        counts.append(int(data))
    return sum(counts) / seconds, sorted(counts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()

    import django
    from django.conf import settings

    settings.configure(CACHES={})
    django.setup()
    import regioncache

    work = tempfile.mkdtemp(prefix="bench-lock-")
    mc = Server().start()
    redis = RedisServer(work)
    shm_name = f"bench-lock-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    specs = {"shm": shm_name, "file": os.path.join(work, "file-region"),
             "memcached": mc.location, "redis": f"redis://127.0.0.1:{redis.port}/0"}
    try:
        caches = make_caches(specs)
        missing = []
        for name in NAMES[:3]:  # a store without compare-and-swap yet cannot release
            try:
                caches[name]._delete_if("bench-probe", "x")
            except regioncache.ConfigError:
                missing.append(name)
                NAMES.remove(name)
        rates = uncontended(caches, args.iterations, args.repeat)
        busy = {name: contended(specs, name, args.seconds) for name in NAMES}
        peer = rates["django-redis"]
        print(f"cache.lock(): `with lock: pass`, {args.iterations} x {args.repeat} blocks "
              f"uncontended; 4 processes x {args.seconds:g} s contended (sleep=0.001)\n")
        print("| store | µs per acquire+release | pairs/s | vs django-redis "
              "| contended pairs/s (4 processes) | vs django-redis "
              "| fewest / most pairs of one process |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for name in NAMES:
            rate, counts = busy[name]
            print(f"| {name} | {rates[name] * 1e6:.1f} | {1 / rates[name]:,.0f} "
                  f"| {peer / rates[name]:.2f}x | {rate:,.0f} "
                  f"| {rate / busy['django-redis'][0]:.2f}x | {counts[0]:,} / {counts[-1]:,} |")
        for name in missing:
            print(f"| {name} | not measured: its store has no compare-and-swap yet | | | | | |")
    finally:
        try:
            regioncache.remove_shm_region(shm_name)
        except regioncache.RegionError:
            pass
        mc.kill()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
