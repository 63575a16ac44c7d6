#!/usr/bin/env python3
"""@region's hit path, before and after issue 15 (the generation token),
on the shared-memory, file and memcached stores, in one run.

    PYTHONPATH=django_backend python bench/bench_region.py [--base main] [--iterations N] [--repeat R]

"before" is decorators.py, keys.py and stampede.py as they are at --base
(git show), loaded as a package of their own beside this tree's; "after" is
this tree's. Both wrap the same function on the same region, each under its
own namespace, and are timed in turns: R rounds of N hits each, the order
rotating every round, so load from elsewhere falls on both alike. Prints
the median nanoseconds per call and the ratio after / before of each pair;
"before: read (get)" is also the floor of any cached call (the region's
own cache.get of a stored value of the same shape).

What "after" adds per hit: a get_many of two keys (the result and the
function's generation entry) in place of one get, a 3-tuple around the
value, and a token compared; the "read" rows time that alone. The whole
call also has this tree's faster key making (keys.py binds the common
signature itself).
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "django_backend"))
sys.path.insert(0, str(ROOT / "tests"))

from memcached_servers import Server  # noqa: E402

BEFORE = "regioncache_before"
MODULES = ("stampede", "keys", "decorators")
VALUE = {"user": 42, "name": "x" * 100, "groups": [1, 2, 3]}


def load_before(base):
    """decorators/keys/stampede of `base` as the package regioncache_before."""
    pkg = types.ModuleType(BEFORE)
    pkg.__path__ = []
    sys.modules[BEFORE] = pkg
    for name in MODULES:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{base}:django_backend/regioncache/{name}.py"],
            capture_output=True, text=True, check=True,
        ).stdout
        for m in MODULES:
            text = text.replace(f"from regioncache import {m}", f"from {BEFORE} import {m}")
            text = text.replace(f"regioncache.{m}", f"{BEFORE}.{m}")
        mod = types.ModuleType(f"{BEFORE}.{name}")
        mod.__file__ = f"<{base}:{name}.py>"
        sys.modules[mod.__name__] = mod
        setattr(pkg, name, mod)
        exec(compile(text, mod.__file__, "exec"), mod.__dict__)
    return pkg.decorators.region


def setup_django(caches_conf):
    import django
    from django.conf import settings

    settings.configure(CACHES=caches_conf)
    django.setup()


def runners(alias, before_region):
    from django.core.cache import caches

    from regioncache import region

    def user_profile(user_id, lang="en"):
        return VALUE

    before = before_region(alias, timeout=None, namespace="bench.before")(user_profile)
    after = region(alias, timeout=None, namespace="bench.after")(user_profile)
    cache = caches[alias]
    cache.set("floor", VALUE, None)
    assert before(42) is not None and after(42) == VALUE and cache.get("floor") == VALUE
    floor_get = cache.get

    def loop(call):
        def run(n):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                call()
            return (time.perf_counter_ns() - t0) / n
        return run

    abefore, aafter = (
        before_region(alias, timeout=None, namespace="bench.abefore")(_async_profile),
        region(alias, timeout=None, namespace="bench.aafter")(_async_profile),
    )

    def aloop(fn):
        async def body(n):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await fn(42)
            return (time.perf_counter_ns() - t0) / n
        return lambda n: asyncio.run(body(n))

    asyncio.run(abefore(42))
    asyncio.run(aafter(42))

    # The read alone, as each version does it on a hit: before, one get of
    # the value; after, one get_many of the record and the generation, and
    # the token compared (decorators.py's hot path, written out).
    key, gen_key = after.key(42), "bench.after(regioncache-generation)"
    get_many = cache.get_many

    def read_after():
        got = get_many((key, gen_key))
        token = got.get(gen_key)
        stored = got.get(key)
        if type(stored) is tuple and stored and stored[0] == token and len(stored) == 3:
            return stored[2]
        raise AssertionError("not a hit")

    return {
        "before: read (get)": loop(lambda: floor_get("floor")),
        "after: read (get_many + token)": loop(read_after),
        "before: f(42)": loop(lambda: before(42)),
        "after: f(42)": loop(lambda: after(42)),
        "before: await f(42)": aloop(abefore),
        "after: await f(42)": aloop(aafter),
    }


async def _async_profile(user_id, lang="en"):
    return VALUE


def measure(runs, iterations, repeat):
    names = list(runs)
    samples = {n: [] for n in names}
    for name in names:  # warm up
        runs[name](max(1, iterations // 10))
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            samples[name].append(runs[name](iterations))
    return {n: statistics.median(v) for n, v in samples.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="main")
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-region-")
    server = Server().start()
    shm_name = f"bench-region-{os.getpid()}"
    try:
        setup_django({
            "shm": {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": shm_name,
                    "OPTIONS": {"SIZE": "16MB"}},
            "file": {"BACKEND": "regioncache.FileCache", "LOCATION": os.path.join(tmp, "f")},
            "memcached": {"BACKEND": "regioncache.MemcachedCache",
                          "LOCATION": server.location},
        })
        before_region = load_before(args.base)
        print(f"@region hit, {args.base} (before) vs this tree (after): median ns per call "
              f"over {args.repeat} rounds of {args.iterations}, Python "
              f"{sys.version.split()[0]}\n")
        print("| store | call | ns | after / before |")
        print("|---|---|---:|---:|")
        for alias in ("shm", "file", "memcached"):
            iterations = args.iterations if alias != "memcached" else args.iterations // 10
            res = measure(runners(alias, before_region), iterations, args.repeat)
            names = list(res)
            for i, name in enumerate(names):
                ratio = f"{res[name] / res[names[i - 1]]:.2f}x" if i % 2 else ""
                print(f"| {alias} | {name} | {res[name]:,.0f} | {ratio} |")
    finally:
        server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        import regioncache

        try:
            regioncache.remove_shm_region(shm_name)
        except regioncache.RegionError:
            pass


if __name__ == "__main__":
    main()
