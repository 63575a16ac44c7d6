#!/usr/bin/env python3
"""What a site feels: a whole site under gunicorn with 1, 2 and 4 workers,
driven by wrk over Zipf-distributed URLs of @cache_page pages, for each cache
backend in one run (issue 17).

    python bench/bench_site.py                      # every backend x 1, 2, 4 workers (about 11 minutes)
    python bench/bench_site.py --quick              # 1,000 URLs, five backends, 1 and 4 workers
    python bench/bench_site.py --backends SharedMemoryCache,LocMemCache --workers 4
    python bench/bench_site.py --fast-path          # + hits: Django's cache middleware vs PageHitMiddleware vs PageHitApplication
    python bench/bench_site.py --profile DIR        # cProfile in every worker: where the time goes

The site (bench/site/benchsite) renders article pages of 2-512 KB (log-normal
around 16 KB with a tail, seeded) from a template behind seven usual
middlewares, cached with Django's own @cache_page in the region "pages" whose
backend is the one under test. Django's decorator for every backend, ours
included: the bench compares stores, and regioncache.cache_page adds a URL
record on each miss (README, "Pages by URL") that the peers would not pay.

gunicorn runs sync workers: the views and every cache call here are
synchronous and CPU-bound, a sync worker serves one request at a time, so
N workers are N concurrent requests and N separate LocMemCache copies
(what the comparison is about), and it is gunicorn's own default (a
threaded or async worker would add a thread or event-loop layer around the
same calls). A sync worker closes the connection after each response, as
gunicorn's docs expect behind a proxy; wrk reconnects, so each request
includes a loopback TCP connect.

Per backend and worker count: a fresh store (a new shared-memory region or
directory; a new memcached or redis-server on a free 127.0.0.1 port), a
gunicorn on a free port, a warm-up phase then a measured phase, each one
wrk run of a fixed number of requests (bench/site.lua: Zipf exponent --zipf
over --urls paths, hottest first in a seeded shuffled order). Counts, not
seconds: after a warm-up of so many seconds a faster backend would have
seen more requests, so its cache would be warmer, and the hit ratio would
measure speed twice. The view appends one byte to a miss log each time it
runs (O_APPEND), so hit ratio = 1 - misses / requests of the phase.

Memory, after the measured phase minus before the warm-up (each worker
rendered one page first, gunicorn_conf.py): the sum of the workers'
VmRSS (what ps shows: shared-memory pages a worker touched count in it, once
per worker) and of their private RssAnon, and the store's own bytes (the
segment's resident pages, the directory's allocated blocks, the server's
RSS). "memory" in the table = workers' private growth + the store's growth:
what the cache takes across all workers, each byte counted once.
"""

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SITE = HERE / "site"
LUA = HERE / "site.lua"
sys.path.insert(0, str(ROOT / "django_backend"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(SITE))

from benchsite import pages  # noqa: E402
from harness import RedisServer, free_port  # noqa: E402
from memcached_servers import Server as MemcachedServer  # noqa: E402

BACKENDS = {
    "SharedMemoryCache": "regioncache.SharedMemoryCache",
    # the same store compressing pages (zstd level 1, values from 4 KB)
    "SharedMemoryCache+zstd": "regioncache.SharedMemoryCache",
    "FileCache": "regioncache.FileCache",
    "MemcachedCache": "regioncache.MemcachedCache",
    "LocMemCache": "django.core.cache.backends.locmem.LocMemCache",
    "FileBasedCache": "django.core.cache.backends.filebased.FileBasedCache",
    "PyLibMCCache": "django.core.cache.backends.memcached.PyLibMCCache",
    "PyMemcacheCache": "django.core.cache.backends.memcached.PyMemcacheCache",
    "RedisCache": "django.core.cache.backends.redis.RedisCache",
}
QUICK_BACKENDS = ["SharedMemoryCache", "LocMemCache", "MemcachedCache", "PyLibMCCache", "RedisCache"]
MEMCACHED = {"MemcachedCache", "PyLibMCCache", "PyMemcacheCache"}


def resident_bytes(path):
    """Allocated bytes of a file or of every file under a directory."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_blocks * 512
    return sum(f.stat().st_blocks * 512 for f in p.rglob("*") if f.is_file())


def proc_status(pid, field):
    """A kB field of /proc/PID/status, in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Store:
    """The store of one backend for one run: its CACHES entry, its own bytes,
    and a clean slate afterwards (the region removed, the directory deleted,
    the server killed)."""

    serial = 0

    def __init__(self, name, tmp, urls, seed):
        Store.serial += 1
        self.name = name
        self.kind = BACKENDS.get(name, name).rsplit(".", 1)[-1]  # the class: a variant's too
        self.tag = f"bench-site-{os.getpid()}-{Store.serial}"
        self.dir = Path(tmp) / self.tag
        self.server = None
        # room for every page with its headers and its header list: 1.52x the
        # pages' bytes on shared memory, measured (the buddy allocator's
        # powers of two), + the index; memcached's slabs round up too
        page_bytes = sum(pages.page_size(seed, n) for n in range(1, urls + 1))
        options = {}
        if self.kind == "SharedMemoryCache":
            location = self.tag
            options = {"SIZE": f"{(page_bytes * 17 // 10 >> 20) + 32}MB"}
            if name.endswith("+zstd"):
                options.update(COMPRESS_MIN_SIZE="4KB", COMPRESS_LEVEL=1)
        elif name in ("FileCache", "FileBasedCache"):
            location = str(self.dir)
            options = ({"MAX_SIZE": f"{(page_bytes * 2 >> 20) + 64}MB"} if name == "FileCache"
                       else {"MAX_ENTRIES": urls * 4})
        elif name == "LocMemCache":
            location, options = self.tag, {"MAX_ENTRIES": urls * 4}  # Django's default is 300
        elif name in MEMCACHED:
            self.server = MemcachedServer(memory_mb=(page_bytes * 3 >> 20) + 64).start()
            location = self.server.location
        elif name == "RedisCache":
            self.dir.mkdir()
            self.server = RedisServer(self.dir).start()
            location = self.server.url
        else:
            raise ValueError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
        self.conf = {"BACKEND": BACKENDS[name], "LOCATION": location, "OPTIONS": options,
                     "TIMEOUT": 3600}

    def used(self):
        """The bytes of the entries by the store's own count (None: no such count)."""
        if self.kind in ("SharedMemoryCache", "FileCache"):
            import regioncache

            cls = getattr(regioncache, self.kind)
            cache = cls(self.conf["LOCATION"], {"OPTIONS": dict(self.conf["OPTIONS"], CREATE=False)}
                        if self.kind == "SharedMemoryCache" else {"OPTIONS": self.conf["OPTIONS"]})
            try:
                return cache.stats().get("bytes_used", 0)
            except regioncache.RegionError:
                return 0  # never created: nothing stored
            finally:
                cache.close()
        if self.name == "FileBasedCache":
            return sum(f.stat().st_size for f in self.dir.rglob("*") if f.is_file()) if self.dir.exists() else 0
        if self.name in MEMCACHED:
            for line in self.server.command("stats").splitlines():
                if line.startswith("STAT bytes "):
                    return int(line.split()[2])
        if self.name == "RedisCache":
            import redis

            client = redis.Redis.from_url(self.server.url, socket_timeout=10)
            try:
                return int(client.info("memory")["used_memory_dataset"])
            finally:
                client.close()
        return None

    def bytes(self):
        """The store's own memory: None where the cache lives in the workers."""
        if self.kind == "SharedMemoryCache":
            import regioncache

            seg = "/dev/shm" + regioncache.shm_segment_name(self.tag)
            return resident_bytes(seg) if os.path.exists(seg) else 0
        if self.name in ("FileCache", "FileBasedCache"):
            return resident_bytes(self.dir) if self.dir.exists() else 0
        if self.server is not None:
            return proc_status(self.server.proc.pid, "VmRSS")
        return None

    def close(self):
        if self.kind == "SharedMemoryCache":
            import regioncache

            try:
                regioncache.remove_shm_region(self.tag)
            except regioncache.RegionError:
                pass  # never created: the site did not start
        if isinstance(self.server, MemcachedServer):
            self.server.kill()
        elif self.server is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Site:
    """The bench site under gunicorn with N sync workers on a free port."""

    def __init__(self, store, workers, tmp, seed, fast_path="", profile_dir=None, port=None):
        self.workers = workers
        self.port = port or free_port()
        self.run_dir = Path(tempfile.mkdtemp(prefix="site-", dir=tmp))
        self.ready = self.run_dir / "ready"
        self.ready.mkdir()
        self.miss_log = self.run_dir / "misses"
        self.miss_log.touch()
        self.log = self.run_dir / "gunicorn.log"
        self.env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT / "django_backend"), str(SITE)]),
            DJANGO_SETTINGS_MODULE="benchsite.settings",
            BENCH_SITE_CACHE=json.dumps(store.conf),
            BENCH_SITE_MISS_LOG=str(self.miss_log),
            BENCH_SITE_READY_DIR=str(self.ready),
            BENCH_SITE_SEED=str(seed),
            BENCH_SITE_FAST_PATH=fast_path or "0",
        )
        if profile_dir:
            self.env["BENCH_SITE_PROFILE"] = str(profile_dir)
        self.proc = None
        self.pids = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s=90):
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(SITE / "gunicorn_conf.py"),
               "--chdir", str(SITE), "-k", "sync", "-w", str(self.workers),
               "-b", f"127.0.0.1:{self.port}", "--backlog", "2048", "--timeout", "120",
               "--graceful-timeout", "20", "--log-level", "warning",
               "--error-logfile", str(self.log), "benchsite.wsgi:application"]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + deadline_s
        while len(self.pids) < self.workers:  # each worker writes its pid once primed
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn's {self.workers} workers were not ready within "
                                   f"{deadline_s} s:\n{self.log_tail()}")
            time.sleep(0.05)
            self.pids = [int(p.name) for p in self.ready.iterdir()]
        return self

    def log_tail(self):
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def memory(self):
        return {"rss": sum(proc_status(p, "VmRSS") for p in self.pids),
                "anon": sum(proc_status(p, "RssAnon") for p in self.pids)}

    def cpu(self):
        """(user, system) CPU seconds the workers have used so far."""
        user = system = 0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
        return user, system

    def misses(self):
        """View executions so far, once the count stops moving (a request
        wrk gave up on at the end of a phase may still be running)."""
        last, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:
            n = self.miss_log.stat().st_size
            if n == last:
                return n
            last = n
            time.sleep(0.2)
        return last

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: workers finish, profiles dumped
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def prefill(self, paths):
        """Every path asked once, as many at a time as there are workers."""
        def get(path):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(f"GET {path}: {r.status}")
            finally:
                conn.close()

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(get, paths))


def wrk(url, paths_file, count, connections, zipf, seed, deadline_s):
    """One wrk run of bench/site.lua until `count` responses (or the
    deadline); its BENCH_JSON line as a dict, with the CPU wrk used."""
    done = Path(paths_file).parent / f"done-{os.getpid()}-{time.monotonic_ns()}"
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{deadline_s}s", "--timeout", "10s",
           "-s", str(LUA), url, "--", str(paths_file), str(zipf), str(seed), str(count), str(done)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + deadline_s + 5
    while proc.poll() is None and not done.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # wrk's way to end a run early: it reports what it has
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate(timeout=30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            out = json.loads(line[len("BENCH_JSON "):])
            out["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            out["errors"] = sum(out[k] for k in ("connect_errors", "read_errors", "write_errors",
                                                 "status_errors", "timeouts"))
            # a run the deadline cut short: what it missed counts as errors
            out["errors"] += max(0, count - out["requests"])
            return out
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{stdout}\n{stderr}")


def hit_ratio(requests, misses):
    return max(0.0, 1 - misses / requests) if requests else float("nan")


def run_cell(name, workers, args, tmp, paths_file, fast_path="", store=None, prefill=None,
             port=None):
    """One backend with N workers: warm-up, then the measured phase. With
    store given (the fast-path rounds), that store is used and kept, and
    with it the port: Django's page keys hold the absolute URL."""
    own_store = store is None
    store = store or Store(name, tmp, args.urls, args.seed)
    profile_dir = None
    if args.profile:
        profile_dir = Path(tempfile.mkdtemp(prefix="prof-", dir=tmp))
    try:
        site = Site(store, workers, tmp, args.seed, fast_path, profile_dir, port).start()
        try:
            mem0, store0 = site.memory(), store.bytes()
            if prefill:
                site.prefill(prefill)
            m0 = site.misses()
            conns = max(2, workers * args.connections_per_worker)
            warm = wrk(site.url, paths_file, args.warmup, conns, args.zipf, args.seed, args.deadline)
            m1 = site.misses()
            cpu0 = site.cpu()
            run = wrk(site.url, paths_file, args.requests, conns, args.zipf, args.seed + 1000,
                      args.deadline)
            m2 = site.misses()
            cpu1 = site.cpu()
            mem1, store1 = site.memory(), store.bytes()
        finally:
            site.stop()
        used = store.used()
        if profile_dir:
            report_profile(profile_dir, f"{name}{FORMS[fast_path]}, {workers} workers"
                           f"{', hits' if port else ''}", Path(args.profile))
    finally:
        if own_store:
            store.close()
    store_delta = None if store0 is None else store1 - store0
    private = mem1["anon"] - mem0["anon"]
    return {
        "backend": name, "workers": workers, "fast_path": fast_path,
        "rps": run["requests"] / (run["duration_us"] / 1e6),
        "p50_ms": run["p50_us"] / 1000, "p99_ms": run["p99_us"] / 1000,
        "requests": run["requests"], "misses": m2 - m1, "errors": run["errors"] + warm["errors"],
        "warmup_requests": warm["requests"], "warmup_misses": m1 - m0,
        "warmup_hit_ratio": hit_ratio(warm["requests"], m1 - m0),
        "hit_ratio": hit_ratio(run["requests"], m2 - m1),
        "rss_delta": mem1["rss"] - mem0["rss"], "private_delta": private,
        "store_delta": store_delta, "store_used": used, "memory": private + (store_delta or 0),
        "memory_used": private + (used or 0),
        # CPU per request of the measured phase, µs: where a request's time goes
        "worker_user_us": (cpu1[0] - cpu0[0]) / max(run["requests"], 1) * 1e6,
        "worker_sys_us": (cpu1[1] - cpu0[1]) / max(run["requests"], 1) * 1e6,
        "wrk_us": run["cpu"] / max(run["requests"], 1) * 1e6,
    }


def report_profile(prof_dir, title, out_dir):
    """The workers' cProfile dumps of one run merged: the top functions by
    own time, into OUT/<title>.txt; the first lines printed."""
    import io
    import pstats

    files = sorted(str(p) for p in Path(prof_dir).glob("*.prof"))
    if not files:
        print(f"profile of {title}: no worker dumped its profile", file=sys.stderr)
        return
    out = io.StringIO()
    stats = pstats.Stats(*files, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = title.replace(" ", "-").replace(",", "")
    dest, n = out_dir / f"{stem}.txt", 1
    while dest.exists():  # a later round of the same run
        n += 1
        dest = out_dir / f"{stem}-{n}.txt"
    dest.write_text(out.getvalue())
    print(f"profile of {title} ({len(files)} workers): {dest}", file=sys.stderr)


def fast_path_available(tmp):
    """None when regioncache.middleware.PageHitMiddleware and
    regioncache.wsgi.PageHitApplication import in the site's settings,
    else why not."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "django_backend"), str(SITE)]),
               DJANGO_SETTINGS_MODULE="benchsite.settings")
    r = subprocess.run([sys.executable, "-c", "import django; django.setup(); "
                        "from regioncache.middleware import PageHitMiddleware; "
                        "from regioncache.wsgi import PageHitApplication"],
                       env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
    if r.returncode == 0:
        return None
    return (r.stderr.strip().splitlines() or ["?"])[-1]


def mb(n):
    return "" if n is None else f"{n / 2**20:.1f}"


def table(results, memory=True):
    """The markdown table of these runs (memory=False: CPU per request in
    place of the memory columns)."""
    head = "| backend | workers | req/s | p50 ms | p99 ms | hit ratio |"
    if memory:
        head += " workers' CPU µs/req |"
        head += (" workers' RSS Δ MB | workers' private Δ MB | store MB | store used MB |"
                 " memory MB |")
    else:
        head += " workers' user CPU µs/req | workers' system CPU µs/req | wrk CPU µs/req |"
    head += " errors |"
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for r in results:
        line = (f"| {r['backend']} | {r['workers']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['hit_ratio']:.3f} |")
        if memory:
            line += f" {r['worker_user_us'] + r['worker_sys_us']:.0f} |"
            line += (f" {mb(r['rss_delta'])} | {mb(r['private_delta'])} | {mb(r['store_delta'])} |"
                     f" {mb(r['store_used'])} | {mb(r['memory'])} |")
        else:
            line += f" {r['worker_user_us']:.0f} | {r['worker_sys_us']:.0f} | {r['wrk_us']:.0f} |"
        lines.append(line + f" {r['errors']} |")
    return "\n".join(lines)


GOALS = {"ge": lambda v, g: v >= g, "gt": lambda v, g: v > g, "le": lambda v, g: v <= g}


def targets(results, fast):
    """The issue's targets, as ratios of this run; rows whose backends did not run are left out."""
    top = max(r["workers"] for r in results)
    at = {r["backend"]: r for r in results if r["workers"] == top}
    rows = []

    def row(text, value, op, goal, shown):
        rows.append({"target": text, "value": value, "op": op, "goal": goal,
                     "pass": GOALS[op](value, goal), "shown": shown})

    def cpu(r):
        return r["worker_user_us"] + r["worker_sys_us"]

    def cpu_row(faster, slower, goal):
        # req/s of CPU-bound workers is the CPUs over the CPU a request takes:
        # the same comparison, less moved by other load on the machine
        v = cpu(slower) / cpu(faster) if cpu(faster) > 0 else float("nan")
        row("same, as workers' CPU per request (theirs / ours)", v, "ge", goal,
            f"{v:.2f}× ({cpu(faster):.0f} vs {cpu(slower):.0f} µs)")

    loc = at.get("LocMemCache")
    for name in ("SharedMemoryCache", "SharedMemoryCache+zstd"):
        shm = at.get(name)
        if not (shm and loc):
            continue
        v = shm["rps"] / loc["rps"]
        row(f"{name} req/s ≥ LocMemCache's, {top} workers", v, "ge", 1.0, f"{v:.2f}×")
        cpu_row(shm, loc, 1.0)
        row(f"{name} hit ratio > LocMemCache's, {top} workers",
            shm["hit_ratio"] - loc["hit_ratio"], "gt", 0.0,
            f"{shm['hit_ratio']:.3f} vs {loc['hit_ratio']:.3f}")
        v = shm["memory"] / loc["memory"] if loc["memory"] > 0 else float("nan")
        row(f"{name} memory ≤ 1/3 of LocMemCache's, {top} workers", v, "le", 1 / 3,
            f"{v:.2f}× ({mb(shm['memory'])} vs {mb(loc['memory'])} MB)")
        v = shm["memory_used"] / loc["memory"] if loc["memory"] > 0 else float("nan")
        row("same, counting the segment's used bytes, not its resident pages", v, "le", 1 / 3,
            f"{v:.2f}× ({mb(shm['memory_used'])} vs {mb(loc['memory'])} MB)")
    mc = at.get("MemcachedCache")
    for peer, goal in (("PyLibMCCache", 1.2), ("RedisCache", 1.5)):
        if mc and peer in at:
            v = mc["rps"] / at[peer]["rps"]
            row(f"MemcachedCache req/s ≥ {goal}× {peer}'s, {top} workers", v, "ge", goal, f"{v:.2f}×")
            cpu_row(mc, at[peer], goal)
    for form in ("middleware", "wsgi"):  # (the floor is a bound, not a product: no target)
        if not (fast and fast.get("ratio")):
            break
        v = fast["ratio"][form]
        row(f"{FORMS[form][3:]} req/s ≥ 3× Django's cache middleware on hits "
            f"({fast['backend']}, {fast['workers']} workers)", v, "ge", 3.0, f"{v:.2f}×")
        v = fast["cpu_ratio"][form]
        row("same, as workers' CPU per request (Django's / the fast path's)", v, "ge", 3.0, f"{v:.2f}×")
    return rows


def medians(rounds, args):
    """Each backend x workers once, every number the median over the rounds."""
    out = []
    for workers in args.workers:
        for name in args.backends:
            runs = [r for rnd in rounds for r in rnd if r["backend"] == name and r["workers"] == workers]
            row = dict(runs[0])
            for k, v in row.items():
                if k == "errors":
                    row[k] = max(r[k] for r in runs)
                elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "workers":
                    row[k] = statistics.median(r[k] for r in runs)
            if len(runs) == 1:
                row = runs[0]
            out.append(row)
    return out


def median_targets(per_round):
    """Each target's value the median of its rounds' values (each a ratio within one round)."""
    out = []
    for i, row in enumerate(per_round[0]):
        values = [rows[i] for rows in per_round]
        if len(values) == 1:
            out.append(row)
            continue
        v = statistics.median(t["value"] for t in values)
        out.append(dict(row, value=v, shown=f"median {v:.2f}; rounds: {', '.join(t['shown'] for t in values)}",
                        **{"pass": GOALS[row["op"]](v, row["goal"])}))
    return out


FORMS = {"": "", "middleware": " + PageHitMiddleware", "wsgi": " + PageHitApplication",
         "floor": " floor (one kept page, no lookup)"}


def run_fast_path(args, tmp, paths_file, paths):
    """Django's cache middleware (@cache_page), the same site with
    PageHitMiddleware first and with PageHitApplication in front of
    Django's handler, on one store filled beforehand (every URL asked
    once), in turns (each round in another order): each form's ratio to
    Django's is the median of the rounds' ratios."""
    why = fast_path_available(tmp)
    if why:
        print(f"--fast-path: regioncache.middleware.PageHitMiddleware is not there ({why}); "
              "the fast-path rows are skipped", file=sys.stderr)
        return {"skipped": why}
    name, workers = args.fast_path_backend, max(args.workers)
    store, port = Store(name, tmp, args.urls, args.seed), free_port()
    rows = []
    ratios = {form: [] for form in FORMS if form}
    cpu_ratios = {form: [] for form in FORMS if form}
    orders = [("", "middleware", "wsgi", "floor"), ("floor", "wsgi", "middleware", ""),
              ("middleware", "", "floor", "wsgi"), ("wsgi", "floor", "", "middleware")]
    try:
        for r in range(args.fast_rounds):
            cell = {}
            for form in orders[r % len(orders)]:
                cell[form] = run_cell(name, workers, args, tmp, paths_file, fast_path=form, store=store,
                                      prefill=paths if not rows else None, port=port)
                rows.append(cell[form])
            cpu = {f: c["worker_user_us"] + c["worker_sys_us"] for f, c in cell.items()}
            for form in ratios:
                ratios[form].append(cell[form]["rps"] / cell[""]["rps"])
                cpu_ratios[form].append(cpu[""] / cpu[form])
    finally:
        store.close()
    return {"backend": name, "workers": workers, "rows": rows, "ratios": ratios,
            "ratio": {f: statistics.median(v) for f, v in ratios.items()},
            "cpu_ratio": {f: statistics.median(v) for f, v in cpu_ratios.items()}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="1,000 URLs (and requests per phase), five backends, 1 and 4 workers")
    p.add_argument("--backends", help=f"comma-separated, of: {', '.join(BACKENDS)}")
    p.add_argument("--workers", help="comma-separated worker counts (default 1,2,4)")
    p.add_argument("--urls", type=int, help="distinct page URLs (default 10000)")
    p.add_argument("--warmup", type=int, help="requests of the warm-up (default: as many as URLs)")
    p.add_argument("--requests", type=int, help="requests measured (default: as many as URLs)")
    p.add_argument("--deadline", type=int, default=300, help="seconds a phase may take at most (default 300)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s (default 1.1)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--connections-per-worker", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1,
                   help="the whole grid this many times, every other round in reverse order; medians shown")
    p.add_argument("--fast-path", action="store_true",
                   help="also: Django's cache middleware vs regioncache.middleware.PageHitMiddleware on hits")
    p.add_argument("--fast-path-backend", default="SharedMemoryCache")
    p.add_argument("--fast-rounds", type=int, help="rounds of each, in turns (default 2; quick 1)")
    p.add_argument("--profile", metavar="DIR", help="cProfile every worker; merged top functions per run into DIR")
    p.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    args = p.parse_args(argv)
    q = args.quick
    args.backends = (args.backends.split(",") if args.backends
                     else (QUICK_BACKENDS if q else list(BACKENDS)))
    for b in args.backends:
        if b not in BACKENDS:
            p.error(f"unknown backend {b!r}: one of {', '.join(BACKENDS)}")
    if args.fast_path_backend not in BACKENDS:
        p.error(f"unknown --fast-path-backend {args.fast_path_backend!r}: one of {', '.join(BACKENDS)}")
    try:
        args.workers = [int(w) for w in args.workers.split(",")] if args.workers else ([1, 4] if q else [1, 2, 4])
    except ValueError:
        p.error(f"--workers takes comma-separated counts, not {args.workers!r}")
    if any(w < 1 for w in args.workers):
        p.error("--workers: every count must be at least 1")
    args.urls = args.urls or (1000 if q else 10_000)
    args.warmup = args.warmup or args.urls
    args.requests = args.requests or args.urls
    args.fast_rounds = args.fast_rounds or (1 if q else 2)
    if min(args.urls, args.warmup, args.requests, args.deadline, args.rounds, args.fast_rounds) < 1:
        p.error("--urls, --warmup, --requests, --deadline, --rounds and --fast-rounds must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    try:
        import gunicorn
    except ImportError:
        sys.exit("gunicorn is not installed (pip install -r requirements-dev.txt)")
    import django

    results, fast = [], None
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        # the URLs, hottest first: a seeded shuffle, so heat and page size are unrelated
        import random

        order = list(range(1, args.urls + 1))
        random.Random(args.seed).shuffle(order)
        paths = [f"/article/{n}/" for n in order]
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        # one worker count after the other, its backends back to back (the
        # ratios compare neighbours in time); every other round reversed
        for rnd in range(args.rounds):
            order = args.backends if rnd % 2 == 0 else args.backends[::-1]
            results.append([])
            for workers in args.workers:
                for name in order:
                    r = run_cell(name, workers, args, tmp, paths_file)
                    print(f"round {rnd + 1}: {name} x{workers}: {r['rps']:,.0f} req/s, hit ratio "
                          f"{r['hit_ratio']:.3f} (warm-up {r['warmup_hit_ratio']:.3f}), "
                          f"memory {mb(r['memory'])} MB", file=sys.stderr)
                    results[-1].append(r)
        if args.fast_path:
            fast = run_fast_path(args, tmp, paths_file, paths)

    print(f"Whole site: Python {sys.version.split()[0]}, Django {django.get_version()}, "
          f"gunicorn {gunicorn.__version__} sync workers, wrk -t1 -c{args.connections_per_worker}×workers, "
          f"{os.cpu_count()} CPUs; {args.urls:,} URLs, Zipf s={args.zipf}, seed {args.seed}; "
          f"{args.warmup:,} requests of warm-up, {args.requests:,} measured"
          + (f"; medians of {args.rounds} rounds" if args.rounds > 1 else ""))
    print()
    print(table(medians(results, args)))
    if fast and "rows" in fast:
        print()
        print(f"Hits, Django's cache middleware vs PageHitMiddleware first and PageHitApplication "
              f"in front of the handler ({fast['backend']}, {fast['workers']} workers, every URL "
              f"cached first; in turns, ratios the median of {len(fast['ratios']['wsgi'])} rounds):")
        print()
        print(table([dict(r, backend=r["backend"] + FORMS[r["fast_path"]])
                     for r in fast["rows"]], memory=False))
        print()
        print(f"The floor (gunicorn answering one kept page, no lookup, no Django) did "
              f"{fast['ratio']['floor']:.2f}× the req/s of Django's hit and took "
              f"{1 / fast['cpu_ratio']['floor']:.2f}× its workers' CPU per request: "
              f"no fast path behind gunicorn's sync workers can pass that.")
    elif fast:
        print()
        print(f"Fast path: skipped, regioncache's fast path is not there ({fast['skipped']})")
    rows = median_targets([targets(rnd, fast) for rnd in results])
    if rows:
        print()
        print("| target | measured | |")
        print("|---|---:|---|")
        for t in rows:
            print(f"| {t['target']} | {t['shown']} | {'PASS' if t['pass'] else 'MISS'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "results": medians(results, args), "rounds": results,
             "fast_path": fast, "targets": rows, "table": table(medians(results, args))},
            indent=1, default=str))


if __name__ == "__main__":
    main()
