#!/usr/bin/env python3
"""Cached-page hits through Django's handler: Django's own cache middleware
against regioncache.middleware.PageHitMiddleware, on each regioncache store.

    PYTHONPATH=django_backend python bench/bench_page_hits.py            # full run
    PYTHONPATH=django_backend python bench/bench_page_hits.py --quick    # smoke run
    PYTHONPATH=django_backend python bench/bench_page_hits.py --profile  # cProfile of Django's hit

A 10 KB page is cached by @cache_page (the view) or by the site's cache
middleware pair, then asked again and again through
django.core.handlers.wsgi.WSGIHandler with startproject's seven
middlewares, called in-process with a WSGI environ as a WSGI server calls it
(no HTTP server), the body read and the response closed. Six ways per
store, in turns round by round (order flipped every other round):

  django-view   @cache_page view, MIDDLEWARE = the seven
  fast-view     the same with PageHitMiddleware first
  django-site   UpdateCacheMiddleware, the seven, FetchFromCacheMiddleware
  fast-site     the same with PageHitMiddleware first
  wsgi-view     django-view's handler behind regioncache.wsgi.PageHitApplication
                (the fast path in front of Django's handler)
  wsgi-site     django-site's handler behind PageHitApplication
  floor         a middleware first that answers the same page unpickled from
                bytes it holds (no store, no key): what any fast path pays
  wsgi-floor    the same page unpickled and written by a WSGI callable in
                front of Django's handler (no WSGIHandler, no request
                object, no signals): the most a fast path placed before
                Django's handler could reach, a bound, not a product

Requests/s are of the best round; ratios are the median of each round's
ratio fast / Django (the machine's speed drifts; ratios come from one run).
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "django_backend"))
sys.path.insert(0, str(ROOT / "tests"))

RUN = f"bench-page-hits-{os.getpid()}"
USUAL = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
FAST = "regioncache.middleware.PageHitMiddleware"
PAGE = ("<!doctype html><title>page</title>" + "<p>" + "x" * 96 + "</p>\n" * 100)[:10240]


def setup_django(stores):
    import django
    from django.conf import settings

    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    caches.update(stores)
    apps = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
            "django.contrib.messages"]  # what startproject's middlewares stand on
    settings.configure(
        INSTALLED_APPS=apps, MIDDLEWARE=USUAL, CACHES=caches, CACHE_MIDDLEWARE_SECONDS=600,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        SECRET_KEY="bench", ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__, USE_TZ=True,
    )
    django.setup()


urlpatterns = []


def build_urls(aliases):
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.cache import cache_page

    def page(request):
        return HttpResponse(PAGE, content_type="text/html")

    for alias in aliases:
        urlpatterns.append(path(f"view/{alias}/", cache_page(600, cache=alias)(page)))
        urlpatterns.append(path(f"site/{alias}/", page))


def handler(middleware, **more):
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=middleware, **more):
        return WSGIHandler()


def app(wrapper, middleware, **more):
    """wrapper(Django's handler), both made under these settings."""
    from django.test import override_settings

    with override_settings(MIDDLEWARE=middleware, **more):
        return wrapper(handler(middleware))


def requester(h, path):
    """get(): one request of `path` through handler h, as a WSGI server
    makes it, body read and response closed."""
    environ = {
        "REQUEST_METHOD": "GET", "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "", "QUERY_STRING": "", "PATH_INFO": path,
        "HTTP_HOST": "testserver", "HTTP_ACCEPT_ENCODING": "identity",
        "HTTP_USER_AGENT": "bench", "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def get():
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO()
        response = h(env, start_response)
        body = b"".join(response)
        if hasattr(response, "close"):  # a WSGI iterable may have none (the PEP's rule)
            response.close()
        if statuses.pop() != "200 OK" or len(body) != len(PAGE):
            raise RuntimeError(f"GET {path}: no page")

    return get


def ways(alias):
    """{name: get()} of the six ways on one alias, and the floors."""
    from django.test import override_settings

    from regioncache.wsgi import PageHitApplication

    site_mw = (["django.middleware.cache.UpdateCacheMiddleware"] + USUAL
               + ["django.middleware.cache.FetchFromCacheMiddleware"])
    hits = [{"cache": alias, "key_prefix": ""}]
    with override_settings(CACHE_MIDDLEWARE_ALIAS=alias):
        out = {
            "django-view": requester(handler(USUAL), f"/view/{alias}/"),
            "fast-view": requester(handler([FAST] + USUAL, REGIONCACHE_PAGE_HITS=hits),
                                   f"/view/{alias}/"),
            "django-site": requester(handler(site_mw), f"/site/{alias}/"),
            "fast-site": requester(handler([FAST] + site_mw), f"/site/{alias}/"),
            "wsgi-view": requester(app(PageHitApplication, USUAL, REGIONCACHE_PAGE_HITS=hits),
                                   f"/view/{alias}/"),
            "wsgi-site": requester(app(PageHitApplication, site_mw), f"/site/{alias}/"),
            # no lookup at all: a stored page unpickled, first in MIDDLEWARE
            "floor": requester(handler([f"{__name__}.Floor"] + USUAL), f"/view/{alias}/"),
            "wsgi-floor": requester(wsgi_floor, f"/view/{alias}/"),
        }
    return out


class Floor:
    """What any middleware answering first pays at least: Django's handler
    around it and the page unpickled (the same bytes each time, no store)."""

    stored = None

    def __init__(self, get_response):
        if Floor.stored is None:
            import pickle

            from django.http import HttpResponse
            from django.utils.cache import patch_response_headers

            page = HttpResponse(PAGE, content_type="text/html")
            patch_response_headers(page, 600)
            Floor.stored = pickle.dumps(page, pickle.HIGHEST_PROTOCOL)

    def __call__(self, request):
        import pickle

        return pickle.loads(self.stored)


def wsgi_floor(environ, start_response):
    """Floor's page, answered in front of Django's handler: unpickled, its
    headers and body handed to the WSGI server as they are."""
    import pickle

    if Floor.stored is None:
        Floor(None)
    response = pickle.loads(Floor.stored)
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [response.content]


def timed(get, n):
    t = time.perf_counter()
    for _ in range(n):
        get()
    return n / (time.perf_counter() - t)


def profile(get, n):
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        get()
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", choices=["django-view", "fast-view", "django-site",
                                              "fast-site", "wsgi-view", "wsgi-site", "floor",
                                              "wsgi-floor"],
                        help="cProfile this way (shm)")
    parser.add_argument("--stores", default="shm,file,memcached")
    args = parser.parse_args()
    rounds, per_round = (3, 300) if args.quick else (11, 2000)

    import tempfile

    from memcached_servers import start_servers

    kinds = args.stores.split(",")
    tmp = tempfile.mkdtemp(prefix="bench-page-hits-")
    servers = start_servers(1) if "memcached" in kinds else None
    stores = {}
    if "shm" in kinds:
        stores["shm"] = {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": RUN,
                         "OPTIONS": {"SIZE": "32MB"}}
    if "file" in kinds:
        stores["file"] = {"BACKEND": "regioncache.FileCache", "LOCATION": f"{tmp}/pages"}
    if "memcached" in kinds:
        stores["memcached"] = {"BACKEND": "regioncache.MemcachedCache",
                               "LOCATION": servers[0].location}
    try:
        setup_django(stores)
        build_urls(stores)
        from django.core.cache import caches

        all_ways = {alias: ways(alias) for alias in stores}
        for alias in stores:
            for get in all_ways[alias].values():
                get()  # the first request stores the page
                get()
        if args.profile:
            profile(all_ways["shm" if "shm" in stores else kinds[0]][args.profile], 3000)
            return 0
        best = {(a, w): 0.0 for a in stores for w in all_ways[a]}
        ratios = {(a, kind): [] for a in stores
                  for kind in ("view", "site", "wsgi-view", "wsgi-site", "floor", "wsgi-floor")}
        for r in range(rounds):
            for alias in stores:
                names = list(all_ways[alias])
                if r % 2:
                    names.reverse()
                rate = {w: timed(all_ways[alias][w], per_round) for w in names}
                for w, v in rate.items():
                    best[(alias, w)] = max(best[(alias, w)], v)
                for kind in ("view", "site"):
                    ratios[(alias, kind)].append(rate[f"fast-{kind}"] / rate[f"django-{kind}"])
                    ratios[(alias, f"wsgi-{kind}")].append(
                        rate[f"wsgi-{kind}"] / rate[f"django-{kind}"])
                for kind in ("floor", "wsgi-floor"):
                    ratios[(alias, kind)].append(rate[kind] / rate["django-view"])
        import django

        print(f"Cached-page hits through WSGIHandler: Python {sys.version.split()[0]}, "
              f"Django {django.get_version()}, {os.cpu_count()} CPUs, best of {rounds} rounds "
              f"x {per_round} requests, 10 KB page, startproject's 7 middlewares\n")
        print("| store | cached by | Django's hit req/s | PageHitMiddleware req/s | / Django "
              "| PageHitApplication req/s | / Django |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for alias in stores:
            for kind, label in (("view", "@cache_page"), ("site", "site middleware")):
                print(f"| {alias} | {label} | {best[(alias, f'django-{kind}')]:,.0f} | "
                      f"{best[(alias, f'fast-{kind}')]:,.0f} | "
                      f"{statistics.median(ratios[(alias, kind)]):.2f}× | "
                      f"{best[(alias, f'wsgi-{kind}')]:,.0f} | "
                      f"{statistics.median(ratios[(alias, f'wsgi-{kind}')]):.2f}× |")
        floor = [r for a in stores for r in ratios[(a, "floor")]]
        print(f"\nfloor (a middleware first that unpickles a page, no store): "
              f"{max(best[(a, 'floor')] for a in stores):,.0f} req/s, "
              f"{statistics.median(floor):.2f}× Django's @cache_page hit")
        wfloor = [r for a in stores for r in ratios[(a, "wsgi-floor")]]
        print(f"wsgi-floor (the same, answered in front of Django's handler): "
              f"{max(best[(a, 'wsgi-floor')] for a in stores):,.0f} req/s, "
              f"{statistics.median(wfloor):.2f}× Django's @cache_page hit")
        for alias in stores:
            caches[alias].clear()
    finally:
        if servers:
            servers.stop()
        try:
            import regioncache

            regioncache.remove_shm_region(RUN)
        except Exception:
            pass
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
