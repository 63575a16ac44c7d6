"""The whole-site bench (bench/bench_site.py) itself, in its smallest mode:
the bench site answers real pages under gunicorn, counts its misses, and the
harness reports a table whose numbers mean what they say. Real gunicorn,
real wrk, a real shared-memory region; nothing here asserts a speed."""

import http.client
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import bench_site  # noqa: E402

COLUMNS = ["backend", "workers", "req/s", "p50 ms", "p99 ms", "hit ratio", "workers' CPU µs/req",
           "workers' RSS Δ MB",
           "workers' private Δ MB", "store MB", "store used MB", "memory MB", "errors"]


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_tools_are_there():
    assert shutil.which("wrk"), "wrk is not installed (Debian: apt-get install wrk)"
    import gunicorn  # noqa: F401 (pip install -r requirements-dev.txt)


def test_site_serves_cached_pages_and_counts_misses(tmp_path):
    store = bench_site.Store("SharedMemoryCache", tmp_path, urls=50, seed=17)
    try:
        site = bench_site.Site(store, 2, tmp_path, seed=17).start()
        try:
            assert len(site.pids) == 2 and site.misses() == 0  # priming counts no miss
            status, headers, body = get(site.port, "/article/7/")
            assert status == 200  # and so no query: the site has no database (DATABASES = {})
            assert b'<article id="article-7">' in body and b"The Bench Gazette" in body
            size = bench_site.pages.page_size(17, 7)
            assert 0.8 * size < len(body) < 1.2 * size, (len(body), size)
            assert "max-age=3600" in headers["Cache-Control"]      # @cache_page
            assert headers["X-Frame-Options"] == "DENY"               # the middlewares ran
            assert "Set-Cookie" not in headers                         # nothing per user: cacheable
            assert site.misses() == 1
            for _ in range(4):  # either worker: the page comes from the shared region
                assert get(site.port, "/article/7/")[2] == body
            assert site.misses() == 1
            assert get(site.port, "/article/8/")[0] == 200
            assert site.misses() == 2
            assert get(site.port, "/article/x/")[0] == 404
        finally:
            site.stop()
        assert site.proc.returncode == 0
        assert store.used() > size  # the region holds the pages
    finally:
        store.close()
    assert store.bytes() == 0  # the region is gone


def test_smallest_run_reports_a_full_table(tmp_path):
    out = tmp_path / "result.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_site.py"), "--backends", "SharedMemoryCache",
         "--workers", "1", "--urls", "300", "--warmup", "300", "--requests", "300", "--rounds", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    [row] = data["results"]
    [first], [second] = data["rounds"]  # two rounds, each on a fresh store
    for one in (first, second):
        assert one["backend"] == "SharedMemoryCache" and one["workers"] == 1
        # the site answered, without errors, in both phases
        assert one["warmup_requests"] > 0 and one["requests"] > 0 and one["errors"] == 0
        assert one["rps"] > 0 and 0 < one["p50_ms"] <= one["p99_ms"]
        # the warm-up starts cold: it misses; after it, the hit ratio is higher
        assert one["warmup_misses"] > 0
        assert 0 <= one["warmup_hit_ratio"] < one["hit_ratio"] <= 1
        assert one["misses"] == round((1 - one["hit_ratio"]) * one["requests"])
        assert one["worker_user_us"] > 0 and one["wrk_us"] > 0
        # memory: the region holds pages (a shared store: its own bytes are counted)
        assert one["store_used"] > 0 and one["store_delta"] > 0
        assert one["memory"] == one["private_delta"] + one["store_delta"]
    # the table shows the rounds' medians (of two: their mean)
    assert row["rps"] == pytest.approx((first["rps"] + second["rps"]) / 2)
    assert row["hit_ratio"] == pytest.approx((first["hit_ratio"] + second["hit_ratio"]) / 2)
    # the markdown table: its header, one row per backend and worker count, every column filled
    lines = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS
    [cells] = [[c.strip() for c in line.strip("|").split("|")]
               for line in lines if line.startswith("| SharedMemoryCache |")]
    assert len(cells) == len(COLUMNS) and all(cells), cells
    assert float(cells[COLUMNS.index("hit ratio")]) == pytest.approx(row["hit_ratio"], abs=0.0005)
    # one backend: no target has its pair of backends
    assert data["targets"] == []


def test_compressing_variant_holds_the_same_pages_in_fewer_bytes(tmp_path):
    """SharedMemoryCache+zstd is the same store with COMPRESS_MIN_SIZE: the
    same hit ratio, fewer bytes used, and target rows of its own."""
    out = tmp_path / "result.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_site.py"), "--backends",
         "SharedMemoryCache,SharedMemoryCache+zstd,LocMemCache", "--workers", "1", "--urls", "200",
         "--warmup", "200", "--requests", "200", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    at = {row["backend"]: row for row in data["results"]}
    plain, zstd = at["SharedMemoryCache"], at["SharedMemoryCache+zstd"]
    assert zstd["hit_ratio"] == plain["hit_ratio"] and zstd["errors"] == 0
    assert 0 < zstd["store_used"] < plain["store_used"] * 0.6  # the pages compress ~3x
    names = [t["target"] for t in data["targets"]]
    assert "SharedMemoryCache+zstd memory ≤ 1/3 of LocMemCache's, 1 workers" in names
    assert "SharedMemoryCache memory ≤ 1/3 of LocMemCache's, 1 workers" in names


def test_bad_flags_are_refused_with_a_message():
    for argv, words in ((["--backends", "Nope"], "unknown backend 'Nope'"),
                        (["--workers", "0"], "at least 1"),
                        (["--workers", "two"], "comma-separated counts")):
        r = subprocess.run([sys.executable, str(BENCH / "bench_site.py"), *argv],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and words in r.stderr, (argv, r.stderr)


def test_fast_path_rows(tmp_path):
    """--fast-path: Django's cache middleware, PageHitMiddleware first and
    PageHitApplication in front of the handler each serve the filled store
    (every answer a hit: the page keys are the same for all three), and
    each form gets its two target rows."""
    out = tmp_path / "result.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_site.py"), "--backends", "SharedMemoryCache",
         "--workers", "1", "--urls", "100", "--warmup", "100", "--requests", "200", "--fast-path",
         "--fast-rounds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    fast = json.loads(out.read_text())["fast_path"]
    targets = json.loads(out.read_text())["targets"]
    assert [row["fast_path"] for row in fast["rows"]] == ["", "middleware", "wsgi", "floor"]
    for row in fast["rows"]:
        assert row["errors"] == 0 and row["requests"] > 0
        assert row["misses"] == 0 and row["hit_ratio"] == 1.0  # filled first, same port: all hits
        assert row["worker_user_us"] > 0 and row["wrk_us"] > 0
    for i, form in ((1, "middleware"), (2, "wsgi")):
        assert fast["ratio"][form] == fast["rows"][i]["rps"] / fast["rows"][0]["rps"]
    assert "+ PageHitMiddleware | 1 |" in r.stdout and "+ PageHitApplication | 1 |" in r.stdout
    assert "The floor (gunicorn answering one kept page" in r.stdout
    assert [t["target"].split(" ≥")[0].split(",")[0] for t in targets] == [
        "PageHitMiddleware req/s", "same", "PageHitApplication req/s", "same"]
