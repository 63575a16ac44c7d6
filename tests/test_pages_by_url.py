"""Pages by URL (regioncache.cached_pages): real views of the test project
served by django.test.Client, cached by Django's own @cache_page machinery
and cache middleware (through regioncache's recording subclasses), on a
shared-memory, a file and a memcached region; listed and purged by URL."""

import gzip
import io
import json
import re

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.signals import post_save
from django.test import Client, RequestFactory, override_settings
from django.utils.cache import _generate_cache_header_key

import regioncache
from conftest import forget_alias, unique_name
from djangoproject import views

ALIAS = "url-pages"
SITE = "http://testserver"
MIDDLEWARE = [
    "regioncache.RecordPagesMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]
CACHED_BY_MIDDLEWARE = override_settings(
    MIDDLEWARE=MIDDLEWARE, CACHE_MIDDLEWARE_ALIAS=ALIAS, CACHE_MIDDLEWARE_SECONDS=60
)
I18N = override_settings(MIDDLEWARE=["django.middleware.locale.LocaleMiddleware"])


def keys(cache, glob="*"):
    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, glob=glob, limit=500)
        out.extend(e["key"] for e in page)
        if not cursor:
            return sorted(out)


def page_keys(cache):
    return keys(cache, "*views.decorators.cache.cache_page.*")


def header_keys(cache):
    return keys(cache, "*views.decorators.cache.cache_header.*")


def record_keys(cache):
    return keys(cache, "*regioncache.page-url.*")


@pytest.fixture(scope="module")
def memcached():
    from memcached_servers import start_servers

    servers = start_servers(1)
    yield servers
    servers.stop()


@pytest.fixture(params=["shm", "file", "memcached"])
def region(request, tmp_path):
    if request.param == "shm":
        conf = {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": unique_name("urls"),
                "OPTIONS": {"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}}
    elif request.param == "file":
        conf = {"BACKEND": "regioncache.FileCache", "LOCATION": str(tmp_path / "pages")}
    else:
        servers = request.getfixturevalue("memcached")
        conf = {"BACKEND": "regioncache.MemcachedCache",
                "LOCATION": [s.location for s in servers]}
    settings.CACHES[ALIAS] = conf
    cache = caches[ALIAS]
    cache.clear()
    views.CALLS.clear()
    yield cache
    cache.clear()
    forget_alias(ALIAS)
    if request.param == "shm":
        regioncache.remove_shm_region(conf["LOCATION"])


def test_decorator_records_every_variant_with_djangos_keys(region):
    client = Client()
    with I18N:
        assert client.get("/recorded/a/").content == b"recorded a 1"
        assert client.get("/recorded/a/").content == b"recorded a 1"  # a hit
        assert client.get("/recorded/a/", HTTP_COOKIE="k=secret1").content == b"recorded a 2"
        assert client.get("/recorded/a/", HTTP_ACCEPT_LANGUAGE="fr").content == b"recorded a 3"
        assert client.head("/recorded/a/", HTTP_COOKIE="k=secret2").status_code == 200
    assert views.CALLS["recorded"] == 4

    listed = regioncache.pages(ALIAS)
    assert [(p["url"], p["method"]) for p in listed] == [
        (f"{SITE}/recorded/a/", "GET"), (f"{SITE}/recorded/a/", "HEAD")]
    get, head = listed
    # every page key Django made is recorded exactly once, and nothing else
    recorded = sorted(v["page_key"] for p in listed for v in p["variants"])
    assert recorded == page_keys(region)
    assert len(get["variants"]) == 3 and len(head["variants"]) == 1
    assert {v["language"] for v in get["variants"]} == {"en", "fr"}  # LocaleMiddleware's
    for v in get["variants"] + head["variants"]:
        assert v["page_key"].endswith(f".{v['language']}.{v['time_zone']}")
    # cookies by name only: a record shows no session id to who reads the region
    assert sorted(v["vary"].get("HTTP_COOKIE") for v in get["variants"]) == ["", "", "k=…"]
    assert head["variants"][0]["vary"] == {"HTTP_COOKIE": "k=…"}
    assert sorted(set(get["header_keys"] + head["header_keys"])) == header_keys(region)
    for p in listed:
        assert 0 < p["expires"] - __import__("time").time() <= 61

    # the record lives beside the page, with its expiry
    entries = {e["key"]: e for e in region.list_entries(limit=100)[0]}
    for name in record_keys(region):
        rec = json.loads(region.get(name[len(":1:"):]))
        assert abs(entries[name]["expires"] - entries[rec["page_key"]]["expires"]) < 2

    assert not any(b"secret" in region.get(n[len(":1:"):]).encode() for n in record_keys(region))
    # a hit writes nothing: the records are the ones the misses stored
    stored = {n: json.loads(region.get(n[len(":1:"):]))["stored"] for n in record_keys(region)}
    with I18N:
        assert Client().get("/recorded/a/").content == b"recorded a 1"
    assert views.CALLS["recorded"] == 4
    assert {n: json.loads(region.get(n[len(":1:"):]))["stored"]
            for n in record_keys(region)} == stored

    # a page gone (evicted, deleted) is not listed though its record stays
    region.delete_raw([head["variants"][0]["page_key"]])
    assert [p["method"] for p in regioncache.pages(ALIAS)] == ["GET"]


TEMPLATES = override_settings(TEMPLATES=[{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader",
                             {"page.html": "template page {{ n }}"})]},
}])


def test_a_template_response_is_recorded_after_rendering(region):
    client = Client()
    with TEMPLATES:
        assert client.get("/template/").content == b"template page 1"
        assert client.get("/template/").content == b"template page 1"
    (page,) = regioncache.pages(ALIAS)
    assert page["url"] == f"{SITE}/template/" and len(page["variants"]) == 1
    assert page["variants"][0]["page_key"] == page_keys(region)[0]


def test_cache_middleware_with_gzip_and_i18n_records_and_purges(region):
    client = Client()
    with CACHED_BY_MIDDLEWARE:
        first = client.get("/articles/1/", HTTP_ACCEPT_ENCODING="gzip")
        assert first["Content-Encoding"] == "gzip"
        text = gzip.decompress(first.content).decode()
        assert text.startswith("article 1 in en rendered 1 times")
        again = client.get("/articles/1/", HTTP_ACCEPT_ENCODING="gzip")
        assert again.content == first.content and views.CALLS["article"] == 1
        fr = client.get("/articles/1/", HTTP_ACCEPT_LANGUAGE="fr")
        assert fr.content.decode().startswith("article 1 in fr rendered 2 times")
        client.get("/articles/2/")
        client.head("/articles/2/")  # served from the GET page: no new variant
        assert views.CALLS["article"] == 3

        listed = regioncache.pages(ALIAS)
        assert [(p["url"], p["method"], len(p["variants"])) for p in listed] == [
            (f"{SITE}/articles/1/", "GET", 2), (f"{SITE}/articles/2/", "GET", 1)]
        variants = sorted((v["language"], v["vary"].get("HTTP_ACCEPT_ENCODING"))
                          for v in listed[0]["variants"])
        assert variants == [("en", "gzip"), ("fr", None)]  # GZip's Vary: Accept-Encoding

        # the page of article 1 goes, every variant and its header lists; 2 stays
        before = page_keys(region)
        n = regioncache.purge_url(f"{SITE}/articles/1/", cache=ALIAS)
        assert n == 2 + 2 + 2  # pages, header lists (en, fr), records
        assert [p["url"] for p in regioncache.pages(ALIAS)] == [f"{SITE}/articles/2/"]
        assert len(page_keys(region)) == len(before) - 2
        client.get("/articles/1/", HTTP_ACCEPT_ENCODING="gzip")
        client.get("/articles/2/")
        assert views.CALLS["article"] == 4


def test_purge_by_glob_leaves_the_other_pages(region):
    client = Client()
    for name in ("a", "b", "c"):
        client.get(f"/recorded/{name}/")
    client.get("/unrecorded/a/")
    with CACHED_BY_MIDDLEWARE:  # a new client: one loads its middleware once
        Client().get("/articles/7/")
    views.CALLS.clear()
    before = keys(region)
    md5s = [regioncache.cached_pages.url_md5(f"{SITE}/recorded/{n}/") for n in "abc"]

    assert regioncache.purge_url(f"{SITE}/recorded/[ab]/", cache=ALIAS) == 0  # '[' is literal
    assert regioncache.purge_url("/recorded/*", cache=ALIAS) == 0  # anchored: no host
    assert regioncache.purge_url(f"{SITE}/recorded/*", cache=ALIAS) == 9  # 3 x (page, header list, record)
    assert [p["url"] for p in regioncache.pages(ALIAS)] == [f"{SITE}/articles/7/"]
    # the unrecorded page, the article and their header lists are all there
    assert len(page_keys(region)) == 2 and len(header_keys(region)) == 2
    client.get("/recorded/a/")
    client.get("/unrecorded/a/")
    with CACHED_BY_MIDDLEWARE:  # a new client: one loads its middleware once
        Client().get("/articles/7/")
    assert views.CALLS == {"recorded": 1}
    gone = set(before) - set(keys(region))
    assert len(gone) == 6 and all(any(m in k for m in md5s[1:]) for k in gone)  # b and c


def test_purge_of_one_url_without_records_uses_djangos_md5(region):
    client = Client()
    with I18N:
        client.get("/unrecorded/x/")
        client.get("/unrecorded/x/", HTTP_ACCEPT_LANGUAGE="fr")
        client.head("/unrecorded/x/", HTTP_ACCEPT_LANGUAGE="de")
        client.get("/unrecorded/y/")
    assert record_keys(region) == [] and regioncache.pages(ALIAS) == []
    # the hash is Django's: it is in the header key Django makes for that URL
    md5 = regioncache.cached_pages.url_md5(f"{SITE}/unrecorded/x/")
    assert md5 in _generate_cache_header_key("", RequestFactory().get("/unrecorded/x/"))

    assert regioncache.purge_url(f"{SITE}/unrecorded/x/", cache=ALIAS) == 6  # 3 pages, 3 header lists
    assert [k for k in keys(region) if md5 in k] == []
    assert len(page_keys(region)) == 1  # /unrecorded/y/
    client.get("/unrecorded/x/")
    client.get("/unrecorded/y/")
    assert views.CALLS["unrecorded"] == 5


def test_a_url_that_matches_nothing_purges_nothing(region):
    Client().get("/recorded/a/")
    before = keys(region)
    assert regioncache.purge_url(f"{SITE}/nothing/here/", cache=ALIAS) == 0
    assert regioncache.purge_url(f"{SITE}/nothing/*", cache=ALIAS) == 0
    assert regioncache.purge_url(f"{SITE}/recorded/a", cache=ALIAS) == 0  # no slash: another URL
    assert keys(region) == before
    with pytest.raises(ValueError, match="not an absolute http"):
        regioncache.purge_url("/recorded/a/", cache=ALIAS)
    with pytest.raises(ValueError, match="'evil.example' is not in ALLOWED_HOSTS"):
        regioncache.purge_url("http://evil.example/recorded/a/", cache=ALIAS)
    assert keys(region) == before


def test_a_glob_touches_no_other_region_and_no_forged_record(region):
    other = caches["pages"]
    other.clear()
    client = Client()
    client.get("/recorded/a/")
    client.get("/cached/")  # Django's @cache_page on the region "pages"
    in_other = keys(other)
    assert in_other
    # a damaged record and one naming a key outside the page namespaces
    region.set("regioncache.page-url.0.0", "{not json")
    region.set("victim", "stays")
    forged = {"url": f"{SITE}/recorded/z/", "method": "GET", "page_key": ":1:victim",
              "header_key": ":1:victim", "expires": None}
    region.set("regioncache.page-url.1.1", json.dumps(forged))

    assert [p["url"] for p in regioncache.pages(ALIAS)] == [f"{SITE}/recorded/a/"]
    assert regioncache.purge_url("*", cache=ALIAS) == 3
    assert region.get("victim") == "stays"
    assert keys(other) == in_other
    other.clear()


def test_post_save_drops_the_models_page(region):
    from djangoproject.models import Article

    with connection.schema_editor() as editor:
        editor.create_model(Article)
    try:
        article = Article.objects.create(title="one")

        def drop_page(sender, instance, **kwargs):
            regioncache.purge_url(f"{SITE}/articles/{instance.pk}/", cache=ALIAS)

        post_save.connect(drop_page, sender=Article)
        client = Client()
        with CACHED_BY_MIDDLEWARE:
            client.get(f"/articles/{article.pk}/")
            client.get(f"/articles/{article.pk}/")
            assert views.CALLS["article"] == 1
            article.title = "two"
            article.save()
            assert regioncache.pages(ALIAS) == []
            client.get(f"/articles/{article.pk}/")
            assert views.CALLS["article"] == 2
    finally:
        post_save.disconnect(sender=Article)
        with connection.schema_editor() as editor:
            editor.delete_model(Article)


def run(*args):
    out = io.StringIO()
    call_command("cacheregions", *args, stdout=out)
    return out.getvalue()


def test_command_lists_and_purges_pages(region):
    client = Client()
    with I18N:
        client.get("/recorded/a/")
        client.get("/recorded/a/", HTTP_ACCEPT_LANGUAGE="fr")
        client.get("/recorded/b/")

    text = run("pages", ALIAS)
    assert re.search(rf"GET\s+2 variants\s+expires .*{SITE}/recorded/a/", text), text
    assert f"{SITE}/recorded/b/" in text and text.rstrip().endswith("2 pages")
    listed = json.loads(run("pages", ALIAS, "--url", f"{SITE}/recorded/a/", "--json"))
    assert listed["alias"] == ALIAS
    assert [p["url"] for p in listed["pages"]] == [f"{SITE}/recorded/a/"]
    assert len(listed["pages"][0]["variants"]) == 2

    with pytest.raises(CommandError, match="add --yes"):
        run("purge", ALIAS, "--url", f"{SITE}/recorded/*")
    assert "no cached page matches" in run("purge", ALIAS, "--url", f"{SITE}/nope/*", "--yes")
    assert run("purge", ALIAS, "--url", f"{SITE}/nope/", "--yes") == (
        f"{ALIAS}: no cached page matches {SITE}/nope/ (neither recorded nor under its MD5); "
        "nothing removed\n")
    assert run("pages", ALIAS, "--url", f"{SITE}/nope/*") == f"no recorded page matches {SITE}/nope/*\n"
    with pytest.raises(CommandError, match="not an absolute http"):
        run("purge", ALIAS, "--url", "recorded/a/", "--yes")
    out = run("purge", ALIAS, "--url", f"{SITE}/recorded/a/", "--yes")
    assert f"{ALIAS}: removed 6 keys of {SITE}/recorded/a/" in out  # 2 pages, 2 header lists, 2 records
    assert json.loads(run("purge", ALIAS, "--url", f"{SITE}/recorded/*", "--yes", "--json")) == {
        "alias": ALIAS, "removed": 3}
    assert json.loads(run("pages", ALIAS, "--json"))["pages"] == []
    # the other subcommands still work beside the new ones
    assert "entries" in run("keys", ALIAS)
    with pytest.raises(CommandError, match="one of the arguments"):
        run("purge", ALIAS)


def test_a_key_function_that_does_not_end_with_the_key_is_refused(regions):
    cache = regions.new(KEY_FUNCTION=lambda key, prefix, version: f"{key}@{prefix}:{version}")
    with pytest.raises(ValueError, match="KEY_FUNCTION that ends the full key with the key"):
        regioncache.pages(cache)


def test_url_glob_agrees_with_its_definition_and_never_backtracks():
    """'*' is any run of characters, everything else literal, anchored at
    both ends: the matcher gives what the regular expression of that
    definition gives, and a glob of many stars against a long URL (a URL is
    whatever a record in the region says) is answered in one pass instead of
    the regular expression's backtracking, which grows as the URL's length to
    the power of the stars."""
    import random

    from regioncache.cached_pages import url_glob

    rng = random.Random(7)
    for _ in range(5000):
        pattern = "".join(rng.choice("ab/*?[") for _ in range(rng.randint(0, 7)))
        url = "".join(rng.choice("ab/?[") for _ in range(rng.randint(0, 9)))
        rx = re.compile(".*".join(re.escape(p) for p in pattern.split("*")) + r"\Z")
        assert bool(url_glob(pattern)(url)) == bool(rx.match(url)), (pattern, url)
    long_url = "https://shop.example/" + "a" * 20000
    assert not url_glob("https://*" + "a*" * 30 + "b")(long_url)
    assert url_glob("https://*" + "a*" * 30)(long_url)
