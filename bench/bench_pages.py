#!/usr/bin/env python3
"""What recording a page's URL costs (regioncache.RecordPagesMiddleware and
regioncache.cache_page against Django's own), through Django's handler.

    python bench/bench_pages.py            # full run (about half a minute)
    python bench/bench_pages.py --quick    # fewer rounds, for a smoke check

A small text view is cached in a shared-memory region four ways: Django's
@cache_page and regioncache.cache_page, Django's cache middleware pair and
the same pair with RecordPagesMiddleware in front. Each is requested through
django.core.handlers.wsgi.WSGIHandler, as a WSGI server calls it (URL
resolving, middleware, request and response objects, request_finished). A hit asks the same URL again; a miss asks
a URL never asked before (so Django renders and stores the page, and the
recording variants store its record). The variants run in turns, round by
round (the order flipped every other round); the times are the best round,
the ratios the median of each round's ratio to Django's own.
"""

import argparse
import os
import statistics
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


def handler_with(middleware):
    """Django's WSGI handler with this middleware (a handler loads
    MIDDLEWARE once, when made), and a get(path) through it that reads the
    whole response and closes it, as a WSGI server does."""
    import io

    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=middleware):
        handler = WSGIHandler()
    base = {
        "REQUEST_METHOD": "GET", "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "HTTP_HOST": "testserver", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def get(path):
        environ = dict(base, PATH_INFO=path)
        environ["wsgi.input"] = io.BytesIO()
        response = handler(environ, start_response)
        body = b"".join(response)
        response.close()
        if statuses.pop() != "200 OK" or not body:
            raise RuntimeError(f"GET {path}: no page")

    return get


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, per_round = (3, 300) if args.quick else (15, 1000)

    setup_django()
    urlpatterns.extend(build_urls())
    import django
    from django.core.cache import caches

    import regioncache

    django_mw = ["django.middleware.cache.UpdateCacheMiddleware",
                 "django.middleware.cache.FetchFromCacheMiddleware"]
    recording_mw = ["regioncache.RecordPagesMiddleware",
                    "django.middleware.cache.FetchFromCacheMiddleware"]
    plain = handler_with([])
    variants = {
        "@cache_page: Django's": (plain, "/django/{}/"),
        "@cache_page: regioncache.cache_page": (plain, "/recorded/{}/"),
        "middleware: Django's": (handler_with(django_mw), "/plain/{}/"),
        "middleware: RecordPagesMiddleware": (handler_with(recording_mw), "/plain/{}/"),
    }
    cache = caches["pages"]
    next_url = {name: 1 for name in variants}
    times = {(name, op): [] for name in variants for op in ("hit", "miss")}
    names = list(variants)
    try:
        for r in range(rounds):
            cache.clear()
            for name, (get, url) in variants.items():  # the hit pages, cached
                get(url.format(10**9))
            # in turns, the order flipped every other round
            for name in (names if r % 2 == 0 else names[::-1]):
                get, url = variants[name]
                hit = url.format(10**9)
                t = time.perf_counter()
                for _ in range(per_round):
                    get(hit)
                times[name, "hit"].append((time.perf_counter() - t) / per_round)
                # middleware variants share the URL space: offset each one
                base = next_url[name] + 10**6 * names.index(name)
                t = time.perf_counter()
                for i in range(per_round):
                    get(url.format(base + i))
                times[name, "miss"].append((time.perf_counter() - t) / per_round)
                next_url[name] += per_round
        assert regioncache.pages("pages"), "the recording variants recorded nothing"
    finally:
        regioncache.remove_shm_region(REGION)

    print(f"Pages through Django's WSGIHandler: Python {sys.version.split()[0]}, Django "
          f"{django.get_version()}, {os.cpu_count()} CPUs, best of {rounds} x {per_round} requests")
    print()
    print("| how | hit µs | miss µs | hit ratio | miss ratio |")
    print("|---|---:|---:|---:|---:|")
    for base, rec in ((names[0], names[1]), (names[2], names[3])):
        for name in (base, rec):
            h, m = min(times[name, "hit"]) * 1e6, min(times[name, "miss"]) * 1e6
            ratios = [
                statistics.median(a / b for a, b in zip(times[name, op], times[base, op]))
                for op in ("hit", "miss")
            ]
            print(f"| {name} | {h:.1f} | {m:.1f} | {ratios[0]:.3f}× | {ratios[1]:.3f}× |")

if __name__ == "__main__":
    main()
