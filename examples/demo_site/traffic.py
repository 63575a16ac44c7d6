"""Sends requests to the demo site and prints what each region holds."""

import argparse
import json
import random
import time
import urllib.request


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--users", type=int, default=150)
    args = p.parse_args()
    rng = random.Random(7)
    t0 = time.perf_counter()
    for i in range(args.requests):
        # Skewed popularity: a few users get most of the traffic.
        user = min(int(rng.paretovariate(1.2)), args.users)
        path = "/" if i % 10 == 0 else f"/users/{user}/"
        with urllib.request.urlopen(args.base + path, timeout=10) as r:
            r.read()
    dt = time.perf_counter() - t0
    print(f"{args.requests} requests in {dt:.2f} s")
    with urllib.request.urlopen(args.base + "/stats/", timeout=10) as r:
        stats = json.load(r)
    print(f"{'region':<10} {'segment':<28} {'entries':>8} {'used':>10} {'capacity':>10} {'hits':>6} {'misses':>7}")
    for alias, s in stats.items():
        print(
            f"{alias:<10} {s['segment']:<28} {s['entries']:>8} {s['bytes_used']:>10} "
            f"{s['capacity']:>10} {s['hits']:>6} {s['misses']:>7}"
        )


if __name__ == "__main__":
    main()
