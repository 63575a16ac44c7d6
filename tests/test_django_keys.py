"""_native.key_kind on keys made by the real Django: @cache_page through the
test client (GET and HEAD, Vary: Accept-Language and Cookie, i18n and time
zones on), {% cache %} fragments, cache and cached_db sessions, @region
functions (readable, hashed, namespaced, their stampede locks) and plain
keys, all stored in a real shared-memory region and read back from its
listing."""

import hashlib
import os
import sys

import pytest
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse
from django.template import Context, Engine
from django.test import Client, modify_settings, override_settings
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import cache_page
from django.views.decorators.vary import vary_on_cookie

from regioncache import _native, region, stampede

ALIAS = "pages"


@cache_page(60, cache=ALIAS)
def article(request, n):
    response = HttpResponse(f"article {n}")
    patch_vary_headers(response, ["Accept-Language"])
    return response


@cache_page(60, cache=ALIAS, key_prefix="shop.v2")
@vary_on_cookie
def basket(request):
    return HttpResponse("basket")


urlpatterns = [path("articles/<int:n>/", article), path("basket/", basket)]


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def all_keys(cache):
    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, limit=500)
        out.extend(e["key"] for e in page)
        if os.environ.get("REGIONCACHE_PRINT_KEYS"):
            print(*(e["key"] for e in page), sep="\n")
        if not cursor:
            return out


@pytest.fixture
def pages():
    c = caches[ALIAS]
    c.clear()
    yield c
    c.clear()


I18N = dict(ROOT_URLCONF=__name__, USE_I18N=True, USE_TZ=True, TIME_ZONE="Europe/Paris",
            LANGUAGE_CODE="en-us", LANGUAGES=[("en-us", "English"), ("fr", "French")],
            MIDDLEWARE=["django.middleware.locale.LocaleMiddleware"])


@override_settings(**I18N)
def test_cached_pages_and_their_header_lists(pages):
    client = Client()
    assert client.get("/articles/42/", HTTP_ACCEPT_LANGUAGE="fr").status_code == 200
    assert client.get("/articles/42/", HTTP_ACCEPT_LANGUAGE="en-us").status_code == 200
    # A HEAD is served from the GET entry when there is one; else it has its own.
    assert client.head("/articles/42/", HTTP_ACCEPT_LANGUAGE="fr").status_code == 200
    assert client.head("/articles/43/", HTTP_ACCEPT_LANGUAGE="fr").status_code == 200
    client.cookies["sessionid"] = "abc"
    assert client.get("/basket/").status_code == 200

    kinds = {}
    for key in all_keys(pages):
        k = _native.key_kind(key)
        kinds.setdefault(k["kind"], []).append(k)
        assert k["prefix"] == "" and k["version"] == 1, k
    assert sorted(kinds) == ["page", "page-headers"]

    article_url = md5("http://testserver/articles/42/")
    head_url = md5("http://testserver/articles/43/")
    basket_url = md5("http://testserver/basket/")
    page_parts = {(k["page_prefix"], k["method"], k["url_hash"], k["language"], k["time_zone"])
                  for k in kinds["page"]}
    assert page_parts == {
        ("", "GET", article_url, "fr", "Europe/Paris"),
        ("", "GET", article_url, "en-us", "Europe/Paris"),
        ("", "HEAD", head_url, "fr", "Europe/Paris"),
        ("shop.v2", "GET", basket_url, "en-us", "Europe/Paris"),
    }
    # The hash of the Vary headers' values: Django leaves Accept-Language out
    # with i18n on (the language is in the key), so the articles hash nothing;
    # the basket hashes its Cookie header.
    for k in kinds["page"]:
        assert (k["header_hash"] == md5("")) == (k["url_hash"] != basket_url), k
    headers = {(k["page_prefix"], k["url_hash"], k["language"], k["time_zone"])
               for k in kinds["page-headers"]}
    assert headers == {("", article_url, "fr", "Europe/Paris"),
                       ("", article_url, "en-us", "Europe/Paris"),
                       ("", head_url, "fr", "Europe/Paris"),
                       ("shop.v2", basket_url, "en-us", "Europe/Paris")}
    # The header list holds what Django varies on: the parts name its entry.
    for k in kinds["page-headers"]:
        full = f":1:{k['key']}"
        assert pages.get(k["key"]) is not None, full


@override_settings(ROOT_URLCONF=__name__, USE_I18N=False, USE_TZ=True, TIME_ZONE="UTC",
                   MIDDLEWARE=[])
def test_time_zone_alone_without_i18n(pages):
    assert Client().get("/articles/7/").status_code == 200
    kinds = {_native.key_kind(k)["kind"]: _native.key_kind(k) for k in all_keys(pages)}
    assert kinds["page"]["language"] == "" and kinds["page"]["time_zone"] == "UTC"
    assert kinds["page-headers"]["language"] == "" and kinds["page-headers"]["time_zone"] == "UTC"


@override_settings(ROOT_URLCONF=__name__, USE_I18N=False, USE_TZ=False, MIDDLEWARE=[])
def test_no_locale_at_all(pages):
    assert Client().get("/articles/8/").status_code == 200
    for key in all_keys(pages):
        k = _native.key_kind(key)
        assert k["kind"] in ("page", "page-headers")
        assert k["language"] == "" and k["time_zone"] == "", k
        assert k["url_hash"] == md5("http://testserver/articles/8/")


def test_template_fragments(pages):
    engine = Engine(libraries={"cache": "django.templatetags.cache"})
    template = engine.from_string(
        "{% load cache %}{% cache 60 side.bar user lang using='pages' %}side {{ user }}{% endcache %}"
        "{% cache 60 footer using='pages' %}foot{% endcache %}")
    assert template.render(Context({"user": 5, "lang": "fr"})) == "side 5foot"
    found = sorted((_native.key_kind(k)["name"], _native.key_kind(k)["vary_hash"])
                   for k in all_keys(pages))
    assert found == sorted([("side.bar", md5("5:fr:")), ("footer", md5(""))])
    assert {_native.key_kind(k)["kind"] for k in all_keys(pages)} == {"fragment"}


@override_settings(SESSION_CACHE_ALIAS=ALIAS)
def test_cache_and_cached_db_sessions(pages, db_sessions):
    from django.contrib.sessions.backends import cache as cache_engine
    from django.contrib.sessions.backends import cached_db

    plain = cache_engine.SessionStore()
    plain["cart"] = [1, 2]
    plain.save()
    backed = cached_db.SessionStore()
    backed["user"] = 3
    backed.save()
    got = {(k["kind"], k["engine"], k["session_key"]) for k in map(_native.key_kind, all_keys(pages))}
    assert got == {("session", "cache", plain.session_key),
                   ("session", "cached_db", backed.session_key)}


@pytest.fixture
def db_sessions():
    # django.contrib.sessions installed and its table made, for the test only.
    with modify_settings(INSTALLED_APPS={"append": "django.contrib.sessions"}):
        from django.contrib.sessions.models import Session

        with connection.schema_editor() as editor:
            editor.create_model(Session)
        yield
        with connection.schema_editor() as editor:
            editor.delete_model(Session)


@region(ALIAS)
def profile(user_id, full=False):
    return {"user": user_id, "full": full}


@region(ALIAS, namespace="catalogue")
def listing(words):
    return len(words)


class Shop:
    @region(ALIAS)
    def price(self, sku):
        return 9


def test_region_functions_and_their_locks(pages):
    profile(42)
    listing("x" * 300)  # too long to read: hashed
    Shop().price("A-1")
    release = stampede.try_lock(pages, profile.key(7), None, 30)
    assert release is not None
    kinds = [_native.key_kind(k) for k in all_keys(pages)]
    release()
    assert {k["kind"] for k in kinds} == {"function"}
    readable = {(k["name"], k["arguments"], k["lock"]) for k in kinds if "arguments" in k}
    gen = "regioncache-generation"  # each function's generation entry (decorators.py)
    assert readable == {(f"{__name__}.profile", "user_id=42,full=False", False),
                        (f"{__name__}.profile", "user_id=7,full=False", True),
                        (f"{__name__}.Shop.price", "sku='A-1'", False),
                        (f"{__name__}.profile", gen, False), ("catalogue", gen, False),
                        (f"{__name__}.Shop.price", gen, False)}
    (hashed,) = [k for k in kinds if "args_hash" in k]
    assert hashed["name"] == "catalogue" and not hashed["lock"]
    assert listing.key("x" * 300) == f"catalogue#{hashed['args_hash']}"
    # The key a function's .key() gives is the kind's key, whole.
    assert {k["key"] for k in kinds if not k["lock"] and k.get("arguments") != gen} == {
        profile.key(42), listing.key("x" * 300), Shop.price.key(Shop(), "A-1")}


@pytest.mark.filterwarnings("ignore::django.core.cache.CacheKeyWarning")
def test_plain_keys_and_other_heads(pages):
    for key in ["hello", "views.decorators.cache.cache_page.nothing", "template.cache.x.short",
                "django.contrib.sessions.cacheNOT-A-KEY", "a b(c)", "user:42"]:
        pages.set(key, 1)
    for full in all_keys(pages):
        k = _native.key_kind(full)
        assert k["kind"] == "plain", k
        assert f":1:{k['key']}" == full


def test_keys_of_other_key_functions_and_bad_input():
    assert _native.key_kind("no version here") == {"kind": "plain", "key": "no version here"}
    k = _native.key_kind("site:a:-3:template.cache.menu." + md5("x"))
    assert (k["prefix"], k["version"], k["kind"], k["name"]) == ("site:a", -3, "fragment", "menu")
    assert _native.key_kind(b"\xff\xfe:1:x")["kind"] == "plain"
    with pytest.raises(TypeError, match="key_kind"):
        _native.key_kind(42)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
