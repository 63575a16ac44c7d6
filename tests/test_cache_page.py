"""@cache_page on a real view of the test project (tests/djangoproject), served
by django.test.Client, cached in the shared-memory region of CACHES['pages']."""

import ast

import pytest
from django.core.cache import caches
from django.test import Client

from djangoproject import views


def all_entries(cache, glob=""):
    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, glob=glob, limit=500)
        out.extend(page)
        if not cursor:
            return out


@pytest.fixture
def pages():
    c = caches["pages"]
    c.clear()
    views.CALLS.clear()
    yield c
    c.clear()


def test_cache_page_serves_from_the_region(pages):
    client = Client()
    first = client.get("/cached/")
    assert first.status_code == 200
    assert first.content == b"page index rendered 1 times"
    assert views.CALLS["cached"] == 1
    assert "max-age=60" in first["Cache-Control"]

    second = client.get("/cached/")
    assert second.status_code == 200
    assert second.content == first.content
    assert views.CALLS["cached"] == 1  # the view did not run

    keys = [e["key"] for e in all_entries(pages)]
    page_keys = [k for k in keys if "views.decorators.cache.cache_page" in k]
    header_keys = [k for k in keys if "views.decorators.cache.cache_header" in k]
    assert len(page_keys) == 1 and len(header_keys) == 1, keys
    (entry,) = all_entries(pages, glob="*cache_page*")
    assert entry["encoding"] == "pickle"
    assert entry["size"] > len(first.content)
    assert entry["expires"] is not None

    # another URL is another entry; the first stays cached
    assert client.get("/cached/other/").content == b"page other rendered 2 times"
    assert client.get("/cached/").content == b"page index rendered 1 times"
    assert views.CALLS["cached"] == 2
    assert len(all_entries(pages, glob="*cache_page*")) == 2

    # purging the region's page entries makes the view run again
    assert pages.purge("*views.decorators.cache.cache_page*") == 2
    assert client.get("/cached/").content == b"page index rendered 3 times"
    assert views.CALLS["cached"] == 3


def test_uncached_view_always_runs(pages):
    client = Client()
    assert client.get("/plain/").content == b"plain 1"
    assert client.get("/plain/").content == b"plain 2"
    assert all_entries(pages) == []


SERVE = """
from django.test import Client
from djangoproject import views
r = Client().get(sys.argv[1])
print(repr((r.status_code, r.content, views.CALLS["cached"])))
"""


def test_page_cached_by_one_process_is_served_to_another(pages, regions, child):
    client = Client()
    assert client.get("/cached/shared/").content == b"page shared rendered 1 times"
    proc = child(regions.child_env(), SERVE, "/cached/shared/")
    status, content, calls = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    assert (status, content, calls) == (200, b"page shared rendered 1 times", 0)
    # and the other way round: a page cached by a child is served here
    proc = child(regions.child_env(), SERVE, "/cached/from-child/")
    assert ast.literal_eval(proc.stdout.strip().splitlines()[-1]) == (
        200,
        b"page from-child rendered 1 times",
        1,
    )
    before = views.CALLS["cached"]
    assert client.get("/cached/from-child/").content == b"page from-child rendered 1 times"
    assert views.CALLS["cached"] == before
