#!/usr/bin/env python3
"""What MemcachedCache's meta-protocol calls cost next to a plain get, on
one memcached server in one run (loopback TCP).

    PYTHONPATH=django_backend python bench/bench_mc_cas.py [--iterations N] [--repeat R]

get and set go through libmemcached; has_key and _expiry through the store's
Peek ("mg <key> v f t u" on a pooled TextConn); _swap and _delete_if through
CompareAndSwap ("mg ... c", then "ms/md ... C<cas>": two round trips). The
operations run in turns (R rounds of a block of N calls each, the order
rotating every round), so load from elsewhere on the machine falls on all
alike. Prints a Markdown table of the median microseconds a call and its
ratio to get. Run it with another build's module on PYTHONPATH to compare
builds (has_key and _expiry read through libmemcached's get before Peek
spoke mg).
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from memcached_servers import Server  # noqa: E402


def make_cache(location):
    import django
    from django.conf import settings

    settings.configure(CACHES={"default": {
        "BACKEND": "regioncache.MemcachedCache", "LOCATION": location,
        "KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}"}})
    django.setup()
    from django.core.cache import caches
    return caches["default"]


def runners(cache):
    value = "v" * 100
    cache.set("hit", value)
    cache.set("swap", "a")
    cache.set("del", "x")

    def loop(call):
        def run(n):
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            return (time.perf_counter() - t0) / n
        return run

    get, has, exp = cache.get, cache.has_key, cache._expiry
    state = {"v": "a"}

    def swap():  # a then b then a...: every call succeeds
        old = state["v"]
        new = "b" if old == "a" else "a"
        assert cache._swap("swap", old, new)
        state["v"] = new

    def set_then_delete_if():  # two calls: a set, then a delete_if that succeeds
        cache.set("del", "x")
        assert cache._delete_if("del", "x")

    def set_then_delete():
        cache.set("del", "x")
        cache.delete("del")

    return {
        "get (hit, 100 B)": loop(lambda: get("hit")),
        "set (100 B)": loop(lambda: cache.set("hit", value)),
        "has_key (Peek)": loop(lambda: has("hit")),
        "_expiry (Peek)": loop(lambda: exp("hit")),
        "_swap (CompareAndSwap)": loop(swap),
        "set + delete": loop(set_then_delete),
        "set + _delete_if": loop(set_then_delete_if),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    server = Server()
    server.start()
    try:
        cache = make_cache(server.location)
        import regioncache
        ops = runners(cache)
        for name in list(ops):  # a build whose store cannot swap: left out
            try:
                ops[name](1)
            except Exception as e:
                print(f"{name}: not measured ({type(e).__name__}: {e})")
                del ops[name]
        names = list(ops)
        samples = {name: [] for name in names}
        for name in names:  # warm-up
            ops[name](max(1, args.iterations // 10))
        for r in range(args.repeat):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                samples[name].append(ops[name](args.iterations) * 1e6)
        med = {name: statistics.median(v) for name, v in samples.items()}
        print(f"regioncache from {Path(regioncache.__file__).parent}")
        print(f"{args.repeat} rounds of {args.iterations} calls, memcached {server.location}\n")
        print("| call | µs a call | × get |")
        print("|---|---:|---:|")
        base = med[names[0]]
        for name in names:
            print(f"| {name} | {med[name]:.1f} | {med[name] / base:.2f} |")
    finally:
        server.kill()


if __name__ == "__main__":
    main()
