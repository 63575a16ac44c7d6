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
        if i % 10 == 0:
            path = "/"
        elif i % 3 == 0:
            ext = "png" if i % 2 else "txt"
            path = f"/files/import-{user % 40}.{ext}"
        else:
            path = f"/users/{user}/"
        with urllib.request.urlopen(args.base + path, timeout=10) as r:
            r.read()
    dt = time.perf_counter() - t0
    print(f"{args.requests} requests in {dt:.2f} s")
    with urllib.request.urlopen(args.base + "/stats/", timeout=10) as r:
        stats = json.load(r)
    print(f"{'region':<10} {'store':<10} {'location':<34} {'entries':>8} {'used':>10} {'capacity':>10} {'hits':>6} {'misses':>7}")
    for alias, s in stats.items():
        if "error" in s:
            print(f"{alias:<10} {s['kind']:<10} {str(s['location']):<34} error: {s['error']}")
            continue
        print(
            f"{alias:<10} {s['kind']:<10} {str(s['location']):<34} {s['entries']:>8} "
            f"{s['bytes_used']:>10} {s['capacity']:>10} {s['hits']:>6} {s['misses']:>7}"
        )


if __name__ == "__main__":
    main()
