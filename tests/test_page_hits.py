"""regioncache's fast path for cached pages against Django's own answer.

Each case asks the same requests through the full stack twice, on a real
shared-memory region (and the file and memcached stores): once with
Django's cache middleware alone, once with the fast path, and compares
status, headers, cookies and bytes of every answer. The fast path comes in
two forms, and the cases taking `form` run each: "middleware"
(PageHitMiddleware first in MIDDLEWARE, through Django's test client) and
"wsgi" (regioncache.wsgi.PageHitApplication in front of Django's
WSGIHandler, both asked as a WSGI server asks them, against WSGIHandler
alone). A witness middleware last in MIDDLEWARE counts the requests that
went past the fast path, so each case also says who answered.
"""

import asyncio
import os
import time
from http.cookies import SimpleCookie

import pytest
from django.core.cache import caches
from django.core.checks import Tags, run_checks
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext
from django.views.decorators.cache import cache_page

import regioncache
from regioncache.wsgi import PageHitApplication

FAST = "regioncache.middleware.PageHitMiddleware"
USUAL = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
WITNESS = f"{__name__}.Witness"
SITE = ["django.middleware.cache.UpdateCacheMiddleware", *USUAL,
        "django.middleware.cache.FetchFromCacheMiddleware"]
PASSED = []  # requests that went past PageHitMiddleware
RENDERS = []  # views that ran
STATE = {"vary": "X-Alpha"}


class Witness:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        PASSED.append(request.path)
        return self.get_response(request)


def page(request, vary=None):
    RENDERS.append(request.get_full_path())
    response = HttpResponse(f"page of {request.get_full_path()} {gettext('Yes')} #{len(RENDERS)}")
    if vary:
        patch_vary_headers(response, vary)
    return response


def plain(request):
    return page(request)


def by_language(request):
    return page(request, ("Accept-Language",))


def by_cookie(request):
    return page(request, ("Cookie",))


def by_state(request):
    return page(request, (STATE["vary"],))


async def plain_async(request):
    return page(request)


def long(request):
    response = page(request)
    response.content += b" and more" * 100  # long enough for GZipMiddleware
    return response


urlpatterns = [
    path("view/", cache_page(60, cache="pages")(plain)),
    path("view/lang/", cache_page(60, cache="pages")(by_language)),
    path("view/cookie/", cache_page(60, cache="pages")(by_cookie)),
    path("view/other-prefix/", cache_page(60, cache="pages", key_prefix="other")(plain)),
    path("view/short/", cache_page(1, cache="pages")(plain)),
    path("view/long/", cache_page(60, cache="pages")(long)),
    path("view/recorded/", regioncache.cache_page(60, cache="pages")(plain)),
    path("view/async/", cache_page(60, cache="pages")(plain_async)),
    path("site/", plain),
    path("site/long/", long),
    path("site/state/", by_state),
    path("plain/", plain),
    path("view/word/<str:word>/", cache_page(60, cache="pages")(lambda request, word: page(request))),
]

BASE = dict(
    ROOT_URLCONF=__name__,
    CACHE_MIDDLEWARE_ALIAS="pages",
    CACHE_MIDDLEWARE_KEY_PREFIX="",
    CACHE_MIDDLEWARE_SECONDS=60,
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    REGIONCACHE_PAGE_HITS=[{"cache": "pages", "key_prefix": ""}],
)


@pytest.fixture(autouse=True)
def clean():
    caches["pages"].clear()
    PASSED.clear()
    RENDERS.clear()
    STATE["vary"] = "X-Alpha"
    yield
    caches["pages"].clear()


def answer(response):
    """What a client gets: status, headers, cookies, bytes (the values of
    Expires and Age are clock readings: only their presence is compared)."""
    headers = sorted((k, "<clock>" if k in ("Expires", "Age") else v)
                     for k, v in response.items())
    body = response.content
    if response.get("Content-Encoding") == "gzip":
        # GZipMiddleware adds random bytes against BREACH: compare what they hold
        import gzip

        body = gzip.decompress(body)
        headers = [(k, "<random>" if k == "Content-Length" else v) for k, v in headers]
    return (response.status_code, headers,
            sorted((k, _cookie(v)) for k, v in response.cookies.items()), body)


def _cookie(morsel):
    """A Set-Cookie without its random token and clock readings."""
    out = morsel.copy()
    if morsel.key == "csrftoken" and morsel.value:
        out.set(morsel.key, "<token>", "<token>")
    if out["expires"]:
        out["expires"] = "<clock>"
    return out.OutputString()


class WsgiClient(Client):
    """Django's test client asking a WSGI application as a WSGI server
    would: the environ the test client makes, start_response's status and
    headers, the body iterated and closed; HEAD, 1xx, 204 and 304 bodies
    dropped as servers drop them. Cookies carry over as in Client."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    def request(self, **request):
        environ = self._base_environ(**request)
        got = {}

        def start_response(status, headers, exc_info=None):
            got["status"], got["headers"] = status, headers

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        code, _, reason = got["status"].partition(" ")
        response = HttpResponse(status=int(code), reason=reason)
        del response.headers["Content-Type"]
        for name, value in got["headers"]:
            if name.lower() == "set-cookie":
                response.cookies.load(value)
            else:
                assert name not in response.headers, f"{name} sent twice"
                response.headers[name] = value
        if environ["REQUEST_METHOD"] == "HEAD" or response.status_code in (204, 304):
            body = b""
        response.content = body
        response.wsgi_status, response.wsgi_headers = got["status"], got["headers"]
        if response.cookies:
            self.cookies.update(response.cookies)
        return response


@pytest.fixture(params=["middleware", "wsgi"])
def form(request):
    return request.param


def both(middleware, script, form="middleware", **settings):
    """Run script(client) with Django's middleware alone and with the fast
    path in `form`, the region cleared before each; returns the two lists
    of answers and the fast run's witness and renders."""
    out = []
    for fast in (False, True):
        caches["pages"].clear()
        PASSED.clear()
        RENDERS.clear()
        if form == "middleware":
            mw = ([FAST] if fast else []) + middleware + [WITNESS]
            with override_settings(**{**BASE, **settings, "MIDDLEWARE": mw}):
                out.append([answer(r) for r in script(Client())])
            continue
        with override_settings(**{**BASE, **settings, "MIDDLEWARE": middleware + [WITNESS]}):
            app = WSGIHandler()
            if fast:
                app = PageHitApplication(app)
            answers = script(WsgiClient(app))
            out.append([answer(r) for r in answers])
            if fast:  # what the server was handed, byte for byte
                wire = [(r.wsgi_status, r.wsgi_headers) for r in answers]
        if fast:
            assert [(s, _unclocked(h)) for s, h in wire] == \
                [(s, _unclocked(h)) for s, h in django_wire]
        else:
            django_wire = [(r.wsgi_status, r.wsgi_headers) for r in answers]
    return out[0], out[1], list(PASSED), list(RENDERS)


def _unclocked(headers):
    """WSGI headers in the order sent, with clock readings, gzip's random
    length and CSRF tokens masked (as answer() masks them)."""
    out = []
    for name, value in headers:
        if name in ("Expires", "Age") or (name == "Content-Length" and any(
                n == "Content-Encoding" and v == "gzip" for n, v in headers)):
            value = "<masked>"
        elif name == "Set-Cookie":
            value = _cookie(next(iter(SimpleCookie(value).values())))
        out.append((name, value))
    return out


def same_answers(middleware, script, stored, form="middleware", **settings):
    """both(), asserting the two runs answered alike and that `stored`
    requests (the misses) went past the fast path, each rendering once."""
    django, fast, passed, renders = both(middleware, script, form, **settings)
    assert fast == django
    assert len(renders) == stored and len(passed) == stored, (renders, passed)
    return fast


def hits(client, url, n=3, **headers):
    return [client.get(url, headers=headers) for _ in range(n)]


@pytest.mark.parametrize("middleware,url", [(USUAL, "/view/"), (SITE, "/site/"),
                                            (USUAL, "/view/recorded/")])
def test_plain_hit_same_bytes_and_headers(middleware, url, form):
    django, fast, passed, renders = both(middleware, lambda c: hits(c, url), form=form)
    assert fast == django
    assert renders == [url]  # stored once
    assert passed == [url]  # the two hits never went past the fast path
    assert ("Content-Length", str(len(fast[1][3]))) in fast[1][1]
    assert ("X-Frame-Options", "DENY") in fast[1][1]  # a later middleware's header, replayed


@pytest.mark.parametrize("middleware,url", [(USUAL, "/view/"), (SITE, "/site/")])
def test_head_served_from_the_get_page_and_head_alone(middleware, url, form):
    def script(c):
        return [c.get(url), c.head(url), c.head(url + "?h=1"), c.head(url + "?h=1")]

    django, fast, passed, renders = both(middleware, script, form=form)
    assert fast == django
    # GET stored, HEAD served from it; a HEAD-only URL stored once, then served
    assert renders == [url, url + "?h=1"] and passed == [url, url]
    assert [a[0] for a in fast] == [200] * 4 and fast[1][3] == b""  # HEAD: no body


def test_vary_accept_language_with_i18n(form):
    mw = ["django.middleware.locale.LocaleMiddleware", *USUAL]

    def script(c):
        out = []
        for lang in ("fr", "de", "fr", "de", "en"):
            out += hits(c, "/view/lang/", 2, accept_language=lang)
        return out

    django, fast, passed, renders = both(
        mw, script, form=form, USE_I18N=True, LANGUAGE_CODE="en",
        LANGUAGES=[("en", "English"), ("fr", "French"), ("de", "German")])
    assert fast == django
    assert len(renders) == 3 and len(passed) == 3  # one render per language
    assert any(b"Oui" in a[3] for a in fast) and any(b"Ja" in a[3] for a in fast)
    assert all(("Content-Language", lang) in a[1] for a, lang in zip(fast[::2], "fr de fr de en".split()))


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/Lima"])
def test_use_tz_time_zone_in_the_key(tz, form):
    django, fast, passed, renders = both(USUAL, lambda c: hits(c, "/view/"), form=form,
                                         USE_TZ=True, TIME_ZONE=tz)
    assert fast == django and len(passed) == 1
    keys = [e["key"] for e in caches["pages"].list_entries(limit=100)[0]]
    assert any(k.endswith("." + tz) for k in keys if "cache_page" in k), keys


def test_learned_header_list_that_changed(form):
    def script(c):
        STATE["vary"] = "X-Alpha"
        out = hits(c, "/site/state/", 2, x_alpha="1", x_beta="1")
        # the page's Vary changes: its page goes, the header list is learned anew
        STATE["vary"] = "X-Beta"
        cache = caches["pages"]
        for e in cache.list_entries(glob="*cache_page*", limit=100)[0]:
            cache.delete_raw([e["key"]])
        out += hits(c, "/site/state/", 2, x_alpha="1", x_beta="1")
        out += hits(c, "/site/state/", 2, x_alpha="2", x_beta="1")  # Alpha no longer counts
        out += hits(c, "/site/state/", 2, x_alpha="1", x_beta="2")  # Beta does
        return out

    same_answers(SITE, script, 3, form)


def test_cookie_varying_pages(form):
    def script(c):
        out = []
        for cookie in ("a=1", "a=2", "a=1", "", "a=2"):
            out += hits(c, "/view/cookie/", 2, cookie=cookie)
        return out

    same_answers(USUAL, script, 3, form)


def test_query_strings_are_pages_of_their_own(form):
    def script(c):
        return [c.get(u) for u in ("/view/?a=1", "/view/?a=2", "/view/?a=1", "/view/?a=2")]

    django, fast, passed, renders = both(USUAL, script, form=form)
    assert fast == django and renders == ["/view/?a=1", "/view/?a=2"] and len(passed) == 2


def test_post_and_other_methods_go_to_django(form):
    def script(c):
        return [c.get("/view/"), c.post("/view/"), c.put("/view/"), c.options("/view/"),
                c.get("/view/")]

    django, fast, passed, renders = both(USUAL, script, form=form)
    assert fast == django
    assert passed == ["/view/"] * 4  # POST, PUT and OPTIONS passed, the last GET did not


def test_expired_page_is_rendered_again(form):
    def script(c):
        out = [c.get("/view/short/"), c.get("/view/short/")]
        time.sleep(1.1)  # the page's timeout is 1 s: now it has expired
        return out + [c.get("/view/short/"), c.get("/view/short/")]

    django, fast, passed, renders = both(USUAL, script, form=form)
    assert [a[0] for a in fast] == [200] * 4
    assert len(renders) == 2 and len(passed) == 2
    assert [a[3] for a in fast] == [a[3] for a in django]


def test_page_of_another_key_prefix_is_left_to_django():
    django, fast, passed, renders = both(USUAL, lambda c: hits(c, "/view/other-prefix/"))
    assert fast == django
    assert len(renders) == 1 and len(passed) == 3  # Django's decorator served the hits
    with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL, WITNESS],
                              "REGIONCACHE_PAGE_HITS": [{"cache": "pages", "key_prefix": "other"}]}):
        caches["pages"].clear()
        PASSED.clear()
        c = Client()
        assert c.get("/view/other-prefix/").status_code == 200
        assert c.get("/view/other-prefix/").status_code == 200
        assert PASSED == ["/view/other-prefix/"]  # configured: answered by the fast path


def test_outer_decorator_is_never_skipped():
    """A view whose outermost wrapper is not cache_page (login_required
    outside it, here a wrapper that always sends to a login page) is left to
    Django, which runs that wrapper first."""
    from functools import wraps

    from django.http import HttpResponseRedirect

    def refuse(view):
        @wraps(view)
        def wrapper(request):
            return HttpResponseRedirect("/login/")
        return wrapper

    guarded = refuse(cache_page(60, cache="pages")(plain))
    urlpatterns.append(path("view/guarded/", guarded))
    try:
        from django.urls import clear_url_caches

        clear_url_caches()
        with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL, WITNESS]}):
            c = Client()
            # the page is in the region (stored by a request that passed the wrapper)
            cache_page(60, cache="pages")(plain)(
                __import__("django.test", fromlist=["RequestFactory"]).RequestFactory().get(
                    "/view/guarded/"))
            assert [c.get("/view/guarded/").status_code for _ in range(2)] == [302, 302]
    finally:
        urlpatterns.pop()


def test_requests_django_would_answer_otherwise_go_to_it(form):
    import re

    settings = dict(SECURE_SSL_REDIRECT=True, DISALLOWED_USER_AGENTS=[re.compile(r"^BadBot")])

    def script(c):
        return [c.get("/site/", secure=True), c.get("/site/", secure=True),
                c.get("/site/"),  # Django redirects to https
                c.get("/site/", secure=True, headers={"user-agent": "BadBot/1"}),
                c.get("/site/", secure=True, headers={"cookie": "sessionid=short"}),
                c.get("/site/", secure=True, headers={"cookie": "csrftoken=bad!"}),
                c.get("/site/", secure=True, headers={"cookie": "csrftoken=" + "a" * 32})]

    django, fast, passed, renders = both(SITE, script, form=form, **settings)
    assert fast == django
    assert [a[0] for a in fast] == [200, 200, 301, 403, 200, 200, 200]
    # (the witness, after Django's FetchFromCacheMiddleware, sees the miss only;
    # the cookies below are what only Django's middlewares add)
    assert passed == ["/site/"]
    assert any(k == "sessionid" for k, _ in fast[4][2])  # Django deleted the short session cookie
    assert any(k == "csrftoken" for k, _ in fast[5][2])  # and replaced the bad CSRF cookie


def test_other_stores(tmp_path, form):
    from memcached_servers import start_servers

    servers = start_servers(1)
    try:
        for conf in ({"BACKEND": "regioncache.FileCache", "LOCATION": str(tmp_path / "p")},
                     {"BACKEND": "regioncache.MemcachedCache", "LOCATION": servers[0].location},
                     # pages stored as zstd frames: the header list and page read back whole
                     {"BACKEND": "regioncache.SharedMemoryCache",
                      "LOCATION": f"test-page-hits-zstd-{os.getpid()}",
                      "OPTIONS": {"COMPRESS_MIN_SIZE": 64, "SIZE": "8MB"}}):
            with override_settings(CACHES={**__import__("django.conf").conf.settings.CACHES,
                                           "pages": conf}):
                caches["pages"].clear()
                django, fast, passed, renders = both(SITE, lambda c: hits(c, "/site/"), form=form)
                assert fast == django and passed == ["/site/"], conf["BACKEND"]
                django, fast, passed, renders = both(USUAL, lambda c: hits(c, "/view/"), form=form)
                assert fast == django and passed == ["/view/"], conf["BACKEND"]
                django, fast, passed, renders = both(USUAL, lambda c: hits(c, "/view/long/"),
                                                     form=form)
                assert fast == django and passed == ["/view/long/"], conf["BACKEND"]
                if conf["BACKEND"] == "regioncache.SharedMemoryCache":
                    caches["pages"].clear()
                    regioncache.remove_shm_region(conf["LOCATION"])
    finally:
        servers.stop()


def test_a_region_that_is_down_is_a_miss_never_an_error():
    from harness import free_port

    down = {"BACKEND": "regioncache.MemcachedCache", "LOCATION": f"127.0.0.1:{free_port()}"}
    with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *SITE, WITNESS],
                              "CACHES": {**__import__("django.conf").conf.settings.CACHES,
                                         "pages": down}}):
        c = Client()
        answers = [c.get("/site/") for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert len(RENDERS) == 3 and len(PASSED) == 3


@pytest.mark.parametrize("kind", ["shm", "file"])
@pytest.mark.parametrize("middleware,url", [(USUAL, "/view/"), (SITE, "/site/")])
def test_counts_nothing_twice(kind, middleware, url, tmp_path):
    """The store's counters move as with Django alone: a hit counts the two
    gets Django's hit counts (the header list, the page), a miss the fast
    path leaves to Django counts Django's own miss only, for a new URL and
    for a page gone while its header list stays."""
    from django.conf import settings

    region = settings.CACHES["pages"] if kind == "shm" else {
        "BACKEND": "regioncache.FileCache", "LOCATION": str(tmp_path / "p")}
    moved = {}
    for fast in (False, True):
        mw = ([FAST] if fast else []) + middleware
        with override_settings(**{**BASE, "MIDDLEWARE": mw,
                                  "CACHES": {**settings.CACHES, "pages": region}}):
            cache = caches["pages"]
            cache.clear()
            c = Client()
            steps = []
            for step in ("miss", "hit", "page gone"):
                if step == "page gone":
                    cache.purge("*cache_page*")
                before = cache.stats()
                c.get(url)
                after = cache.stats()
                steps.append({k: after[k] - before[k] for k in ("hits", "misses")})
            moved[fast] = steps
    assert moved[True] == moved[False]
    assert moved[True][1] == {"hits": 2, "misses": 0}
    assert moved[True][0]["misses"] == 1 and moved[True][2]["misses"] == 1


def test_async_stack_serves_the_same_page():
    async def script():
        c = AsyncClient()
        return [await c.get(url) for url in ["/view/"] * 3 + ["/view/async/"] * 3]

    out = []
    for fast in (False, True):
        caches["pages"].clear()
        PASSED.clear()
        RENDERS.clear()
        with override_settings(**{**BASE, "MIDDLEWARE": ([FAST] if fast else []) + USUAL
                                  + [WITNESS]}):
            out.append([answer(r) for r in asyncio.run(script())])
    assert out[0] == out[1] and out[1][1][0] == 200
    # the hits were answered in the async stack, of a sync and of an async view
    assert PASSED == ["/view/", "/view/async/"]


def test_async_mode_is_taken():
    from regioncache.middleware import PageHitMiddleware

    async def inner(request):
        return None

    with override_settings(**BASE):
        mw = PageHitMiddleware(inner)
    assert mw.is_async and asyncio.iscoroutinefunction(mw)


def test_system_check_names_what_is_wrong():
    with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL],
                              "REGIONCACHE_PAGE_HITS": [{"cache": "nope"}, "x",
                                                        {"cache": "pages", "key_prefix": 3,
                                                         "junk": 1}]}):
        msgs = [m.msg for m in run_checks(tags=[Tags.caches]) if m.id.startswith("regioncache.E010")]
    assert any("REGIONCACHE_PAGE_HITS[0]: cache 'nope' is not an alias" in m for m in msgs)
    assert any("REGIONCACHE_PAGE_HITS[1] must be a dict" in m for m in msgs)
    assert any("unknown keys ['junk']" in m for m in msgs)
    assert any("key_prefix must be a str" in m for m in msgs)
    from django.core.exceptions import ImproperlyConfigured

    from regioncache.middleware import PageHitMiddleware

    with override_settings(**{**BASE, "REGIONCACHE_PAGE_HITS": [{"cache": "nope"}]}):
        with pytest.raises(ImproperlyConfigured, match=r"REGIONCACHE_PAGE_HITS\[0\]: cache 'nope'"):
            PageHitMiddleware(lambda r: None)
    with override_settings(**{**BASE, "MIDDLEWARE": [*USUAL[:1], FAST, WITNESS]}):
        ids = {m.id: m.msg for m in run_checks(tags=[Tags.caches])}
    assert "regioncache.W010" in ids and WITNESS in ids["regioncache.W011"]
    with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL, WITNESS],
                              "SESSION_SAVE_EVERY_REQUEST": True}):
        assert "regioncache.W012" in {m.id for m in run_checks(tags=[Tags.caches])}
        PASSED.clear()
        c = Client()
        assert [c.get("/view/").status_code for _ in range(2)] == [200, 200]
    # the middleware took itself out: both requests went on (the second a
    # hit of Django's decorator, which saves the session as Django says)
    assert PASSED == ["/view/", "/view/"] and len(RENDERS) == 1


# --- Django's own cache-middleware tests with the fast path taking part ------

@pytest.mark.parametrize("store", ["locmem", "shm"])
def test_djangos_middleware_tests_with_the_fast_path(store):
    """tests/django_suite/middleware_suite.py: Django's CacheMiddlewareTest,
    CacheI18nTest, CacheHEADTest, TestWithTemplateResponse, CacheUtils and
    the prefixed variants, with their FetchFromCacheMiddleware and
    CacheMiddleware asking PageHitMiddleware first, every answer checked
    against Django's own."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    runner = Path(__file__).resolve().parent / "django_suite" / "middleware_suite.py"
    proc = subprocess.run([sys.executable, str(runner), "--store", store, "-v", "2"],
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-20000:]
    assert "\nOK" in out, out[-20000:]
    ran = int(re.search(r"^Ran (\d+) tests", out, re.M).group(1))
    answered = int(re.search(r"PageHitMiddleware: (\d+) pages answered", out).group(1))
    assert ran >= 45 and answered >= 20, out[-3000:]


def test_active_language_and_time_zone_read_as_django_reads_them():
    """The key's suffix when no middleware picks them: the language and
    time zone active in the thread (or the coroutine's context), read as
    Django's get_language and get_current_timezone_name read them."""
    from django.utils import timezone, translation

    from regioncache import middleware

    def same():
        assert middleware._language() == translation.get_language()
        assert middleware._time_zone_name() == timezone.get_current_timezone_name()

    with override_settings(USE_I18N=True, LANGUAGES=[("en", "English"), ("fr", "French")]):
        same()
        with translation.override("fr"), timezone.override("Asia/Tokyo"):
            same()
            assert middleware._language() == "fr"

            async def in_a_task():
                same()
                translation.activate("en")
                timezone.activate("America/Lima")
                same()
            asyncio.run(in_a_task())
            same()
            import threading

            seen = []
            worker = threading.Thread(target=lambda: seen.append(
                (middleware._language(), translation.get_language(),
                 middleware._time_zone_name(), timezone.get_current_timezone_name())))
            worker.start()
            worker.join(10)
            # another thread sees its own (unset) values, as Django reads them
            assert seen and seen[0][0] == seen[0][1] and seen[0][2] == seen[0][3]
            assert seen[0][0] != "fr"
        translation.deactivate_all()
        same()
        translation.deactivate()
        same()

        def script(c):
            out = []
            for lang, zone in (("fr", "Asia/Tokyo"), ("en", "UTC"), ("fr", "Asia/Tokyo")):
                with translation.override(lang), timezone.override(zone):
                    out += hits(c, "/view/", 2)
            return out

        django, fast, passed, renders = both(USUAL, script, USE_I18N=True)
    assert fast == django and len(renders) == 2 and len(passed) == 2


@pytest.mark.parametrize("middleware,url,stored", [
    (["django.middleware.gzip.GZipMiddleware", "django.middleware.http.ConditionalGetMiddleware",
      *USUAL], "/view/long/", 1),
    # the site's pages are stored after GZipMiddleware: Vary: Accept-Encoding
    # makes the gzip request a page of its own
    (["django.middleware.cache.UpdateCacheMiddleware", "django.middleware.gzip.GZipMiddleware",
      "django.middleware.http.ConditionalGetMiddleware", *USUAL,
      "django.middleware.cache.FetchFromCacheMiddleware"], "/site/long/", 2),
])
def test_gzip_and_conditional_get_replayed(middleware, url, stored, form):
    """GZipMiddleware and ConditionalGetMiddleware act on a hit in Django's
    stack (compressing, an ETag, a 304 for a matching If-None-Match): the
    fast path runs their response phase, so the answers are Django's."""
    def script(c):
        first = c.get(url)
        out = [first, c.get(url), c.get(url, headers={"accept-encoding": "gzip"})]
        etag = out[1].get("ETag")
        assert etag
        out += [c.get(url, headers={"if-none-match": etag}),
                c.get(url, headers={"if-none-match": '"other"'})]
        return out

    django, fast, passed, renders = both(middleware, script, form=form)
    assert fast == django
    assert [a[0] for a in fast] == [200, 200, 200, 304, 200]
    assert ("Content-Encoding", "gzip") in fast[2][1]
    assert passed == [url] * stored and len(renders) == stored


# --- the WSGI form's own edges ----------------------------------------------

def test_wsgi_form_leaves_what_django_refuses_or_mounts_elsewhere_to_django(form):
    """A host outside ALLOWED_HOSTS (Django's 400), a lower-case method, a
    site mounted under a SCRIPT_NAME (the key's URL holds it), an empty
    PATH_INFO: the same answers as Django's, pages served where they are."""
    def script(c):
        return [*hits(c, "/view/", 2),
                c.get("/view/", headers={"host": "evil.example"}),
                c.generic("get", "/view/"),
                c.get("/view/", SCRIPT_NAME="/mount"), c.get("/view/", SCRIPT_NAME="/mount"),
                c.get("/view/", PATH_INFO=""),
                # non-ASCII paths: a miss reaches Django with the environ as it came
                *hits(c, "/view/word/caf\u00e9/", 2), *hits(c, "/view/word/\u65e5\u672c/", 2)]

    django, fast, passed, renders = both(USUAL, script, form=form,
                                         ALLOWED_HOSTS=["testserver"])
    assert fast == django
    assert [a[0] for a in fast] == [200, 200, 400, 200, 200, 200, 404, 200, 200, 200, 200]
    # stored: /view/, /mount/view/ and the two words; the bad host and the empty path went on
    assert renders == ["/view/", "/mount/view/", "/view/word/caf%C3%A9/",
                       "/view/word/%E6%97%A5%E6%9C%AC/"]
    # (the bad host stops at CommonMiddleware, before the witness)
    assert passed == ["/view/", "/mount/view/", "/", "/view/word/caf\u00e9/",
                      "/view/word/\u65e5\u672c/"]


def test_wsgi_form_sends_no_request_signals_on_a_hit():
    """A hit answered in front of the handler sends neither request_started
    nor request_finished (the README says what that skips); a miss goes to
    Django's handler, which sends both. The middleware form sends both for
    every request."""
    from django.core.signals import request_finished, request_started

    seen = []

    def started(sender, **kw):
        seen.append("started")

    def finished(sender, **kw):
        seen.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        with override_settings(**{**BASE, "MIDDLEWARE": USUAL}):
            c = WsgiClient(PageHitApplication(WSGIHandler()))
            assert [c.get("/view/").status_code for _ in range(3)] == [200] * 3
        wsgi = list(seen)
        seen.clear()
        caches["pages"].clear()
        with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL]}):
            c = WsgiClient(WSGIHandler())
            assert [c.get("/view/").status_code for _ in range(3)] == [200] * 3
        middleware = list(seen)
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert wsgi == ["started", "finished"]  # the miss only
    assert middleware == ["started", "finished"] * 3


def test_wsgi_form_steps_aside_and_says_why(caplog):
    """Settings under which every hit needs a later middleware: the
    application passes every request on and logs why; middlewares it would
    skip, and PageHitMiddleware listed as well, are logged at start."""
    import logging

    caplog.set_level(logging.WARNING, logger="regioncache.page_hits")
    with override_settings(**{**BASE, "MIDDLEWARE": [*USUAL, WITNESS],
                              "SESSION_SAVE_EVERY_REQUEST": True}):
        app = PageHitApplication(WSGIHandler())
        c = WsgiClient(app)
        PASSED.clear()
        assert [c.get("/view/").status_code for _ in range(2)] == [200, 200]
    assert app.pages is None and PASSED == ["/view/", "/view/"]
    assert "SESSION_SAVE_EVERY_REQUEST" in caplog.text
    caplog.clear()
    with override_settings(**{**BASE, "MIDDLEWARE": [FAST, *USUAL, WITNESS]}):
        PageHitApplication(WSGIHandler())
    assert f"{WITNESS} is skipped on a page hit" in caplog.text
    assert "is in MIDDLEWARE as well as PageHitApplication" in caplog.text
    # a malformed setting stops it at start, as it stops the middleware
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(**{**BASE, "MIDDLEWARE": USUAL,
                              "REGIONCACHE_PAGE_HITS": [{"cache": "nope"}]}):
        with pytest.raises(ImproperlyConfigured, match="cache 'nope' is not an alias"):
            PageHitApplication(WSGIHandler())
        # and the system check says so without the middleware listed
        assert any(m.id == "regioncache.E010" for m in run_checks(tags=[Tags.caches]))
