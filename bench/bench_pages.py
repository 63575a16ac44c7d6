#!/usr/bin/env python3
"""What recording a page's URL costs (regioncache.RecordPagesMiddleware and
regioncache.cache_page against Django's own), through Django's handler.

    python bench/bench_pages.py            # full run (about half a minute)
    python bench/bench_pages.py --quick    # fewer rounds, for a smoke check

A small text view is cached in a shared-memory region four ways: Django's
@cache_page and regioncache.cache_page, Django's cache middleware pair and
the same pair with RecordPagesMiddleware in front. Each is requested through
django.test.Client (Django's full handler: URL resolving, middleware,
request and response objects). A hit asks the same URL again; a miss asks
a URL never asked before (so Django renders and stores the page, and the
recording variants store its record). The variants run in turns, round by
round, and each figure is the best round; the ratios come from one run.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "django_backend"))

REGION = f"bench-pages-{os.getpid()}"


def setup_django():
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        MIDDLEWARE=[],
        CACHE_MIDDLEWARE_ALIAS="pages",
        CACHE_MIDDLEWARE_SECONDS=600,
        CACHES={
            "pages": {
                "BACKEND": "regioncache.SharedMemoryCache",
                "LOCATION": REGION,
                "OPTIONS": {"SIZE": "128MB"},
            }
        },
    )
    django.setup()


def build_urls():
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.cache import cache_page as django_cache_page

    import regioncache

    def page(request, n):
        return HttpResponse(f"page {n} " + "x" * 2000, content_type="text/html")

    return [
        path("django/<int:n>/", django_cache_page(600, cache="pages")(page)),
        path("recorded/<int:n>/", regioncache.cache_page(600, cache="pages")(page)),
        path("plain/<int:n>/", page),
    ]


urlpatterns = []


def client_with(middleware):
    """A test client whose handler loaded this middleware (a handler loads
    MIDDLEWARE once, at its first request)."""
    from django.test import Client, override_settings

    with override_settings(MIDDLEWARE=middleware):
        client = Client()
        client.get("/plain/0/")
    return client


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, per_round = (3, 300) if args.quick else (9, 1500)

    setup_django()
    urlpatterns.extend(build_urls())
    import django
    from django.core.cache import caches

    import regioncache

    django_mw = ["django.middleware.cache.UpdateCacheMiddleware",
                 "django.middleware.cache.FetchFromCacheMiddleware"]
    recording_mw = ["regioncache.RecordPagesMiddleware",
                    "django.middleware.cache.FetchFromCacheMiddleware"]
    plain = client_with([])
    variants = {
        "@cache_page: Django's": (plain, "/django/{}/"),
        "@cache_page: regioncache.cache_page": (plain, "/recorded/{}/"),
        "middleware: Django's": (client_with(django_mw), "/plain/{}/"),
        "middleware: RecordPagesMiddleware": (client_with(recording_mw), "/plain/{}/"),
    }
    cache = caches["pages"]
    next_url = {name: 1 for name in variants}
    best = {(name, op): float("inf") for name in variants for op in ("hit", "miss")}
    try:
        for name, (client, url) in variants.items():  # the hit pages, cached
            client.get(url.format(10**9))
        for _ in range(rounds):
            cache.clear()
            for name, (client, url) in variants.items():
                client.get(url.format(10**9))
            for name, (client, url) in variants.items():
                hit = url.format(10**9)
                t = time.perf_counter()
                for _ in range(per_round):
                    client.get(hit)
                best[name, "hit"] = min(best[name, "hit"], (time.perf_counter() - t) / per_round)
                # middleware variants share the URL space: offset each one
                base = next_url[name] + 10**6 * list(variants).index(name)
                t = time.perf_counter()
                for i in range(per_round):
                    client.get(url.format(base + i))
                best[name, "miss"] = min(best[name, "miss"], (time.perf_counter() - t) / per_round)
                next_url[name] += per_round
        assert regioncache.pages("pages"), "the recording variants recorded nothing"
    finally:
        regioncache.remove_shm_region(REGION)

    print(f"Pages through django.test.Client: Python {sys.version.split()[0]}, Django "
          f"{django.get_version()}, {os.cpu_count()} CPUs, best of {rounds} x {per_round} requests")
    print()
    print("| how | hit µs | miss µs | hit ratio | miss ratio |")
    print("|---|---:|---:|---:|---:|")
    names = list(variants)
    for base, rec in ((names[0], names[1]), (names[2], names[3])):
        for name in (base, rec):
            h, m = best[name, "hit"] * 1e6, best[name, "miss"] * 1e6
            hr = best[name, "hit"] / best[base, "hit"]
            mr = best[name, "miss"] / best[base, "miss"]
            print(f"| {name} | {h:.1f} | {m:.1f} | {hr:.3f}× | {mr:.3f}× |")


if __name__ == "__main__":
    main()
