#!/usr/bin/env python3
"""Django's own cache-middleware tests with PageHitMiddleware taking part.

The tests (CacheMiddlewareTest, CacheI18nTest, PrefixedCacheI18nTest,
CacheHEADTest, TestWithTemplateResponse, CacheUtils, PrefixedCacheUtils, from
tests/cache/tests.py of the installed Django's source distribution, fetched
by run.py) call Django's middleware classes directly, not through MIDDLEWARE.
So the fast path is put where they look: their FetchFromCacheMiddleware and
CacheMiddleware (the one @cache_page makes, in django.views.decorators.cache
too) become subclasses whose process_request asks PageHitMiddleware first,
for the middleware's own cache alias and key prefix, and Django's own
process_request as well. The fast path's answer is returned; where the two
disagree (one finds a page the other does not, or the pages differ in status,
headers or bytes) the test fails. The run prints how many answers the fast
path gave and how many misses both agreed on, so a run where it never
answered cannot pass unnoticed.

    python tests/django_suite/middleware_suite.py            # the tests' own CACHES (LocMemCache)
    python tests/django_suite/middleware_suite.py --store shm  # every alias on a shared-memory region
"""

import argparse
import os
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the sdist fetching of Django's cache suite)

CLASSES = ["CacheMiddlewareTest", "CacheI18nTest", "PrefixedCacheI18nTest", "CacheHEADTest",
           "TestWithTemplateResponse", "CacheUtils", "PrefixedCacheUtils"]
TALLY = {"fast hits": 0, "agreed misses": 0, "backends": set()}


def answer(response):
    return (response.status_code, sorted(response.items()), response.content)


def with_fast_path(base):
    """base (Django's FetchFromCacheMiddleware or CacheMiddleware) with
    PageHitMiddleware asked first and checked against base's own answer."""
    from regioncache.middleware import PageHitMiddleware

    class FastPath(base):
        def process_request(self, request):
            ours = PageHitMiddleware.for_pair(self.cache_alias, self.key_prefix).hit(request)
            theirs = super().process_request(request)
            if (ours is None) != (theirs is None):
                raise AssertionError(
                    f"PageHitMiddleware {'found' if ours is not None else 'missed'} the page of "
                    f"{request.method} {request.get_full_path()} where Django's "
                    f"{base.__name__} {'found' if theirs is not None else 'missed'} it")
            if ours is None:
                TALLY["agreed misses"] += 1
                return None
            if answer(ours) != answer(theirs):
                raise AssertionError(f"pages differ: {answer(ours)!r} != {answer(theirs)!r}")
            TALLY["fast hits"] += 1
            TALLY["backends"].add(type(self.cache).__name__)
            return ours

    FastPath.__name__ = FastPath.__qualname__ = f"FastPath{base.__name__}"
    return FastPath


def on_store(cls, store):
    """cls with every cache alias it overrides on one regioncache region."""
    from django.test import override_settings

    location = f"django-mw-suite-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    aliases = ("default", "other")
    conf = {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": location,
            "OPTIONS": {"SIZE": "8MB"}}
    caches = {a: dict(conf, KEY_PREFIX=f"{a}-") for a in aliases}
    return override_settings(CACHES=caches)(type(cls.__name__, (cls,), {"__module__": cls.__module__})), location


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["locmem", "shm"], default="locmem")
    parser.add_argument("--without", action="store_true",
                        help="Django's classes as they are: the baseline")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    args = parser.parse_args()

    version = run.django_version()
    tests_root = run.unpack_cache_tests(run.find_sdist(version), version)
    sys.path[:0] = [str(tests_root)]
    os.environ["DJANGO_SETTINGS_MODULE"] = "conformance_settings"
    import django

    django.setup()
    from django.conf import settings

    settings.LANGUAGE_CODE = "en"  # as Django's own runtests.py sets it
    import django.views.decorators.cache as decorators
    from cache import tests
    from django.middleware.cache import CacheMiddleware, FetchFromCacheMiddleware

    if not args.without:
        tests.FetchFromCacheMiddleware = with_fast_path(FetchFromCacheMiddleware)
        tests.CacheMiddleware = decorators.CacheMiddleware = with_fast_path(CacheMiddleware)

    import unittest

    suite = unittest.TestSuite()
    locations = []
    for name in CLASSES:
        cls = getattr(tests, name)
        if args.store == "shm":
            cls, location = on_store(cls, args.store)
            locations.append(location)
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(cls))
    from django.test.utils import setup_test_environment

    setup_test_environment()
    result = unittest.TextTestRunner(verbosity=args.verbosity).run(suite)
    print(f"PageHitMiddleware: {TALLY['fast hits']} pages answered by the fast path "
          f"(each equal to Django's) from {', '.join(sorted(TALLY['backends']))}, "
          f"{TALLY['agreed misses']} misses where Django missed too")
    import regioncache

    for location in locations:
        try:
            regioncache.remove_shm_region(location)
        except regioncache.RegionError:
            pass
    return 0 if result.wasSuccessful() and (args.without or TALLY["fast hits"]) else 1


if __name__ == "__main__":
    sys.exit(main())
