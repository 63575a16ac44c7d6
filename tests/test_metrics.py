"""Metrics for Prometheus (README, "Metrics"): the counters every process of a
host shares, the collector, `cacheregions --prometheus` and the view, read
back with prometheus_client's own parser."""

import io
import logging
import os
import subprocess
import sys
import threading
import uuid

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.test import RequestFactory, override_settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import regioncache
from harness import free_port
from memcached_servers import start_servers
from regioncache import metrics, stampede, views

COUNTERS = ("hits", "misses", "sets", "evictions", "expirations", "errors", "stampede_waits")
GAUGES = ("entries", "bytes_used", "capacity")
TOKEN = "t0ken-" + uuid.uuid4().hex  # 38 characters


def parse(text):
    """{family name: {(region, store): {sample name: (value, labels)}}}."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    out = {}
    for fam in text_string_to_metric_families(text):
        rows = out.setdefault(fam.name, {"type": fam.type, "samples": {}})
        for s in fam.samples:
            rows["samples"][(s.labels["region"], s.labels["store"])] = (s.name, s.value, s.labels)
    return out


def figure(parsed, name, alias, kind):
    return parsed[f"regioncache_{name}"]["samples"][(alias, kind)][1]


def assert_families(parsed, alias, kind, up=1.0):
    """Every family, typed, with this region's sample labelled as it should."""
    for name in COUNTERS:
        fam = parsed[f"regioncache_{name}"]
        assert fam["type"] == "counter"
        sample, _, labels = fam["samples"][(alias, kind)]
        assert sample == f"regioncache_{name}_total"
        assert labels["scope"] in ("region", "process", "servers")
    for name in GAUGES:
        fam = parsed[f"regioncache_{name}"]
        assert fam["type"] == "gauge"
        assert set(fam["samples"][(alias, kind)][2]) == {"region", "store", "scope"}
    up_fam = parsed["regioncache_up"]
    assert up_fam["type"] == "gauge"
    assert up_fam["samples"][(alias, kind)][1] == up
    assert set(up_fam["samples"][(alias, kind)][2]) == {"region", "store"}


@pytest.fixture
def file_alias(regions):
    path = os.path.join(os.environ["REGIONCACHE_TEST_TMP"], f"metrics-{uuid.uuid4().hex[:8]}")
    return regions.register({"BACKEND": "regioncache.FileCache", "LOCATION": path,
                             "OPTIONS": {"MAX_SIZE": "16MB", "MAX_ITEM_SIZE": "64K"}})


@pytest.fixture
def shm_alias(regions):
    return regions.register(regions.conf(OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "64K"}))


WORKER = """
i = int(sys.argv[3])
for alias in sys.argv[1:3]:
    c = caches[alias]
    for j in range(10 + i):
        c.set(f"w{i}-{j}", j)
    for j in range(10 + i):
        assert c.get(f"w{i}-{j}") == j
    for j in range(5 + 2 * i):
        assert c.get(f"absent-{i}-{j}") is None
"""


def test_counters_of_four_processes_add_up_in_one_scrape(regions, shm_alias, file_alias,
                                                         child_preamble):
    env = regions.child_env()
    procs = [subprocess.Popen([sys.executable, "-c", child_preamble + WORKER, shm_alias,
                               file_alias, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    sets = sum(10 + i for i in range(4))
    misses = sum(5 + 2 * i for i in range(4))
    parsed = parse(metrics.exposition([shm_alias, file_alias]))
    for alias, kind in ((shm_alias, "shm"), (file_alias, "file")):
        assert_families(parsed, alias, kind)
        assert figure(parsed, "sets", alias, kind) == sets
        assert figure(parsed, "hits", alias, kind) == sets
        assert figure(parsed, "misses", alias, kind) == misses
        assert figure(parsed, "entries", alias, kind) == sets
        assert figure(parsed, "errors", alias, kind) == 0
        assert figure(parsed, "stampede_waits", alias, kind) == 0
        assert figure(parsed, "capacity", alias, kind) > figure(parsed, "bytes_used", alias, kind) > 0
        assert parsed["regioncache_hits"]["samples"][(alias, kind)][2]["scope"] == "region"
        # The same figures in stats(), with each one's scope.
        st = caches[alias].stats()
        assert (st["sets"], st["hits"], st["misses"]) == (sets, sets, misses)
        assert set(st["scope"]) == set(COUNTERS) | set(GAUGES)
        assert set(st["scope"].values()) == {"region"}
    # Only the aliases asked for; Django's own backends never.
    assert {a for a, _ in parsed["regioncache_up"]["samples"]} == {shm_alias, file_alias}


def _hold_and_wait(cache, key):
    """One caller computes key while a second waits for it; returns what
    each got."""
    started, release, got = threading.Event(), threading.Event(), {}

    def slow():
        started.set()
        assert release.wait(30)
        return "computed"

    def store(v):
        cache.set(key, v)

    def first():
        got["first"] = stampede.compute_once(cache, key, slow, None, store)

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(30)
    waiter_done = threading.Event()

    def second():
        got["second"] = stampede.compute_once(cache, key, lambda: "twice", None, store, wait=60)
        waiter_done.set()

    w = threading.Thread(target=second)
    w.start()
    # The second caller found the lock held (it is waiting, not computing).
    assert not waiter_done.wait(0.3)
    release.set()
    t.join(30)
    w.join(30)
    return got


@pytest.mark.parametrize("kind", ["shm", "file"])
def test_stampede_waits_and_errors_counted_as_caused(kind, regions, shm_alias, file_alias, child):
    alias = shm_alias if kind == "shm" else file_alias
    cache = caches[alias]
    assert _hold_and_wait(cache, "cold") == {"first": "computed", "second": "computed"}
    # Errors: a value too large (raised), then values that cannot be read,
    # answered as misses: written unsigned, read through a signing alias of
    # the same store.
    with pytest.raises(regioncache.ValueTooLargeError):
        cache.set("big", b"x" * (1 << 21))
    conf = dict(settings.CACHES[alias])
    conf["OPTIONS"] = {**conf["OPTIONS"], "SIGNING_KEY": "k" * 32}
    signed = caches[regions.register(conf)]
    cache.set("plain", "v")
    assert signed.get("plain", "default") == "default"
    assert signed.get("plain") is None
    assert signed.failures == 2
    # Seen from another process: the region's counters, not this one's.
    proc = child(regions.child_env(), "st = caches[sys.argv[1]].stats(); "
                 "print(st['stampede_waits'], st['errors'])", alias)
    assert proc.stdout.split() == ["1", "3"]
    parsed = parse(metrics.exposition([alias]))
    assert figure(parsed, "stampede_waits", alias, kind) == 1
    assert figure(parsed, "errors", alias, kind) == 3


def test_memcached_scrape_sends_no_key_dump_and_counts_per_process(regions):
    servers = start_servers(2)
    try:
        alias = regions.register({"BACKEND": "regioncache.MemcachedCache",
                                  "LOCATION": [s.location for s in servers]})
        cache = caches[alias]
        for i in range(20):
            cache.set(f"k{i}", i)
        assert _hold_and_wait(cache, "cold")["second"] == "computed"

        def crawls():  # metadumps the server ran (its own "stats")
            return [next(int(line.split()[2]) for line in s.command("stats").splitlines()
                         if line.startswith("STAT lru_crawler_starts ")) for s in servers]

        before = crawls()
        parsed = parse(metrics.exposition([alias]))
        assert crawls() == before  # the scrape: one "stats" per server, no metadump
        cache._stats_full()
        assert crawls() != before  # while the full stats do dump (the check can see one)
        assert_families(parsed, alias, "memcached")
        labels = {n: parsed[f"regioncache_{n}"]["samples"][(alias, "memcached")][2]["scope"]
                  for n in COUNTERS + GAUGES}
        assert labels == {**{n: "servers" for n in COUNTERS + GAUGES},
                          "errors": "process", "stampede_waits": "process"}
        assert figure(parsed, "entries", alias, "memcached") >= 21
        assert figure(parsed, "stampede_waits", alias, "memcached") == 1
        assert figure(parsed, "errors", alias, "memcached") == 0
        # One server down: its reads fail (errors), and the region is not up.
        servers[0].kill()
        for i in range(20):
            cache.get(f"k{i}")
        failed = cache.failures
        assert failed > 0
        parsed = parse(metrics.exposition([alias]))
        assert figure(parsed, "up", alias, "memcached") == 0
        assert figure(parsed, "errors", alias, "memcached") == failed
    finally:
        servers.stop()


def test_dead_store_is_up_0_and_logged_never_raised(regions, shm_alias, caplog):
    dead = regions.register({"BACKEND": "regioncache.MemcachedCache",
                             "LOCATION": f"127.0.0.1:{free_port()}"})
    broken = regions.register({"BACKEND": "regioncache.FileCache",
                               "LOCATION": "/proc/version/cannot-be-a-directory"})
    with caplog.at_level(logging.WARNING, logger="regioncache.metrics"):
        parsed = parse(metrics.exposition([dead, broken, shm_alias]))
    assert figure(parsed, "up", dead, "memcached") == 0
    assert figure(parsed, "up", broken, "file") == 0
    assert figure(parsed, "up", shm_alias, "shm") == 1
    text = caplog.text
    assert f"region '{dead}'" in text and f"region '{broken}'" in text


def test_collector_registers_without_scraping_and_skips_other_backends(regions, shm_alias):
    other = regions.register({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})
    registry = CollectorRegistry()
    collector = metrics.register(registry, aliases=[shm_alias, other])
    assert isinstance(collector, metrics.RegionCollector)
    caches[shm_alias].set("a", 1)
    parsed = parse(generate_latest(registry))
    assert_families(parsed, shm_alias, "shm")
    assert figure(parsed, "sets", shm_alias, "shm") == 1
    assert all(a != other for a, _ in parsed["regioncache_up"]["samples"])
    # Every regioncache alias of CACHES when none are named.
    every = parse(metrics.exposition())
    names = {a for a, _ in every["regioncache_up"]["samples"]}
    assert {"default", "pages", "file-pages", shm_alias} <= names and other not in names


def test_command_prints_the_text_format(regions, shm_alias, file_alias):
    caches[shm_alias].set("x", "y")
    out = io.StringIO()
    call_command("cacheregions", "--prometheus", stdout=out)
    parsed = parse(out.getvalue())
    assert_families(parsed, shm_alias, "shm")
    assert_families(parsed, file_alias, "file")
    assert figure(parsed, "sets", shm_alias, "shm") == 1


# ---- the view ------------------------------------------------------------------

def _get(**headers):
    return views.metrics(RequestFactory().get("/metrics", **headers))


def test_view_closed_when_no_setting(shm_alias):
    assert not hasattr(settings, "REGIONCACHE_METRICS_TOKEN")
    assert _get().status_code == 403
    assert _get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403


def test_view_token(shm_alias):
    with override_settings(REGIONCACHE_METRICS_TOKEN=TOKEN,
                           REGIONCACHE_METRICS_ALIASES=[shm_alias]):
        r = _get()
        assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Bearer")
        assert _get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 403
        assert _get(HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}").status_code == 403
        assert _get(HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403
        r = _get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert r.status_code == 200
        assert r["Content-Type"].startswith("text/plain; version=")
        parsed = parse(r.content)
        assert_families(parsed, shm_alias, "shm")
        assert {a for a, _ in parsed["regioncache_up"]["samples"]} == {shm_alias}
        post = views.metrics(RequestFactory().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
        assert post.status_code == 405


def test_a_site_wide_page_cache_never_keeps_the_metrics_for_anyone(shm_alias):
    # Under Django's CacheMiddleware (a site-wide page cache), an authorized
    # scrape's answer must not be stored and served to the next, anonymous
    # request: the view's answers are marked never to be cached.
    from django.middleware.cache import CacheMiddleware

    site = CacheMiddleware(views.metrics, page_timeout=600, cache_alias=shm_alias,
                           key_prefix="metrics-leak")
    with override_settings(REGIONCACHE_METRICS_TOKEN=TOKEN,
                           REGIONCACHE_METRICS_ALIASES=[shm_alias]):
        first = site(RequestFactory().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
        assert first.status_code == 200 and "no-store" in first["Cache-Control"]
        assert "private" in first["Cache-Control"]
        anonymous = site(RequestFactory().get("/metrics"))
        assert anonymous.status_code == 401, "the metrics leaked through the page cache"
        again = site(RequestFactory().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))
        assert again.status_code == 200


def test_view_staff_users(shm_alias):
    apps = [*settings.INSTALLED_APPS, "django.contrib.auth", "django.contrib.contenttypes"]
    with override_settings(INSTALLED_APPS=apps, REGIONCACHE_METRICS_STAFF=True,
                           REGIONCACHE_METRICS_ALIASES=[shm_alias]):
        from django.contrib.auth.models import AnonymousUser, User

        def as_user(user, **headers):
            request = RequestFactory().get("/metrics", **headers)
            request.user = user
            return views.metrics(request)

        assert as_user(AnonymousUser()).status_code == 401
        assert as_user(User(username="u", is_active=True)).status_code == 401
        assert as_user(User(username="s", is_staff=True, is_active=False)).status_code == 401
        r = as_user(User(username="s", is_staff=True, is_active=True))
        assert r.status_code == 200
        assert_families(parse(r.content), shm_alias, "shm")
        # Staff alone: a bearer token opens nothing.
        assert as_user(AnonymousUser(), HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401


def test_view_never_raises_with_a_store_down(regions, shm_alias):
    dead = regions.register({"BACKEND": "regioncache.MemcachedCache",
                             "LOCATION": f"127.0.0.1:{free_port()}"})
    with override_settings(REGIONCACHE_METRICS_TOKEN=TOKEN,
                           REGIONCACHE_METRICS_ALIASES=[dead, shm_alias]):
        r = _get(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert r.status_code == 200
    parsed = parse(r.content)
    assert figure(parsed, "up", dead, "memcached") == 0
    assert figure(parsed, "up", shm_alias, "shm") == 1


def test_system_check_of_the_view_settings():
    def ids(**conf):
        with override_settings(**conf):
            return sorted(m.id for m in views.check_metrics_settings())

    assert ids() == []
    assert ids(REGIONCACHE_METRICS_TOKEN=TOKEN, REGIONCACHE_METRICS_STAFF=True) == []
    assert ids(REGIONCACHE_METRICS_TOKEN="secret") == ["regioncache.W020"]
    assert ids(REGIONCACHE_METRICS_TOKEN=b"x" * 40) == ["regioncache.E020"]
    assert ids(REGIONCACHE_METRICS_STAFF="yes") == ["regioncache.E020"]
    assert ids(REGIONCACHE_METRICS_ALIASES=["nope"]) == ["regioncache.E020"]
    assert ids(REGIONCACHE_METRICS_ALIASES="default") == ["regioncache.E020"]
    # Registered with Django's checks (the app's ready()).
    from django.core import checks
    with override_settings(REGIONCACHE_METRICS_TOKEN="short"):
        found = checks.run_checks(tags=[checks.Tags.security])
    assert "regioncache.W020" in [m.id for m in found]


def test_missing_prometheus_client_names_the_extra(regions, shm_alias, child):
    code = ("import builtins; real = builtins.__import__\n"
            "def imp(name, *a, **k):\n"
            "    if name.startswith('prometheus_client'): raise ImportError('no ' + name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imp\n"
            "from regioncache import metrics\n"
            "try:\n    metrics.RegionCollector()\nexcept ImportError as e:\n    print(e)\n"
            "from django.core.management import call_command, CommandError\n"
            "try:\n    call_command('cacheregions', '--prometheus')\n"
            "except CommandError as e:\n    print(e)\n"
            "from django.test import override_settings\n"
            "from regioncache import views\n"
            "with override_settings(REGIONCACHE_METRICS_STAFF=True):\n"
            "    for m in views.check_metrics_settings(): print(m.id, m.msg, m.hint)\n")
    out = child(regions.child_env(), code).stdout.splitlines()
    assert len(out) == 3
    assert all("prometheus_client" in line for line in out)
    assert all("regioncache[metrics]" in line for line in out)
    assert out[2].startswith("regioncache.E020 ")
