"""_native.read_pickle and _native.read_page: the restricted pickle machine of
core, which reads a pickle into plain values without importing or calling
anything.

- generated nested plain values at every protocol (and their
  pickletools.optimize'd form) read equal to what pickle.loads gives;
- pickles of Django objects read as objects of their class with their state;
- malicious pickles read as objects and run nothing (the file a loads would
  create, as a control shows, never appears);
- pages that @cache_page stored in a real region through Django's test
  client, plain and gzipped, read as status, headers and body; damaged and
  truncated pages say what could be read and why the rest could not.
"""

import datetime
import decimal
import gzip
import math
import os
import pickle
import pickletools
import random
import uuid

import pytest
from django.core.cache import caches
from django.db import models
from django.http import HttpResponse
from django.test import Client, override_settings
from django.test.utils import isolate_apps
from django.urls import path
from django.views.decorators.cache import cache_page
from django.views.decorators.gzip import gzip_page

from regioncache import _native

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


# --- generated plain values ----------------------------------------------------------------

def _hashable(rng, depth):
    pick = rng.randrange(6 if depth < 3 else 4)
    if pick == 0:
        return rng.randrange(-2**70, 2**70)
    if pick == 1:
        return "".join(chr(rng.choice([0x41, 0x7A, 0xE9, 0x20AC, 0x1F600, 0x0A, 0x5C, 0x27, 0xD800]))
                       for _ in range(rng.randrange(8)))
    if pick == 2:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if pick == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if pick == 4:
        return tuple(_hashable(rng, depth + 1) for _ in range(rng.randrange(3)))
    return frozenset(_hashable(rng, depth + 1) for _ in range(rng.randrange(3)))


def _value(rng, depth=0):
    pick = rng.randrange(14 if depth < 4 else 8)
    simple = [None, True, False, 0, -1, 255, 65536, -2**31, 2**63, -2**63 - 1, 2**200, math.inf,
              -0.0, 1e-310, "", b"", bytearray()]
    if pick == 0:
        return rng.choice(simple)
    if pick < 6:
        return _hashable(rng, depth)
    if pick == 6:
        return bytearray(rng.randrange(256) for _ in range(rng.randrange(300)))
    if pick == 7:
        return "x" * rng.choice([0, 255, 256, 70000])
    n = rng.randrange(6)
    if pick == 8:
        return [_value(rng, depth + 1) for _ in range(n)]
    if pick == 9:
        return tuple(_value(rng, depth + 1) for _ in range(n))
    if pick == 10:
        return {_hashable(rng, depth + 1): _value(rng, depth + 1) for _ in range(n)}
    if pick == 11:
        return {_hashable(rng, depth + 1) for _ in range(n)}
    if pick == 12:
        return frozenset(_hashable(rng, depth + 1) for _ in range(n))
    shared = [_value(rng, depth + 1)]
    return [shared, shared, {"again": shared}]


def test_generated_values_read_as_pickle_loads_reads_them():
    rng = random.Random(14)
    compared = 0
    for _ in range(150):
        value = _value(rng)
        for protocol in PROTOCOLS:
            data = pickle.dumps(value, protocol)
            want = pickle.loads(data)
            for variant in (data, pickletools.optimize(data)):
                got = _native.read_pickle(variant)
                assert got == want, (protocol, value, variant)
                assert type(got) is type(want)
                compared += 1
    assert compared == 150 * len(PROTOCOLS) * 2


def test_shared_and_recursive_values_stay_shared():
    inner = [1, 2]
    loop = []
    loop.append(loop)
    for protocol in PROTOCOLS:
        got = _native.read_pickle(pickle.dumps([inner, inner, loop], protocol))
        assert got[0] is got[1] and got[0] == [1, 2]
        assert got[2][0] is got[2]


def test_big_and_special_numbers():
    for protocol in PROTOCOLS:
        for n in (2**64, -2**64 - 1, 10**400, -(10**400)):
            assert _native.read_pickle(pickle.dumps(n, protocol)) == n
        assert math.isnan(_native.read_pickle(pickle.dumps(math.nan, protocol)))


def test_unreadable_pickles_raise_value_error_with_opcode_and_offset():
    data = pickle.dumps({"a": [1, 2, 3]}, 4)
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="offset"):
            _native.read_pickle(data[:cut])
    with pytest.raises(ValueError, match=r"PERSID \(0x50\) at offset 2: a persistent id"):
        _native.read_pickle(b"\x80\x02P1\n.")
    with pytest.raises(ValueError, match=r"NEXT_BUFFER \(0x97\) at offset 2"):
        _native.read_pickle(b"\x80\x05\x97.")
    with pytest.raises(TypeError):
        _native.read_pickle("not bytes")
    # memoryview and bytearray are read without a copy of the caller's own
    assert _native.read_pickle(memoryview(pickle.dumps([1]))) == [1]
    assert _native.read_pickle(bytearray(pickle.dumps((2,)))) == (2,)


# --- Django objects --------------------------------------------------------------------------

def test_django_and_stdlib_objects_read_as_objects_with_their_state():
    with isolate_apps("regioncache"):
        class Article(models.Model):
            title = models.CharField(max_length=50)
            price = models.DecimalField(max_digits=6, decimal_places=2)

            class Meta:
                app_label = "regioncache"

        rows = [Article(id=1, title="One", price=decimal.Decimal("1.50")),
                Article(id=2, title="Two", price=decimal.Decimal("2.00"))]
        for protocol in PROTOCOLS:
            got = _native.read_pickle(pickle.dumps(rows, protocol))
            assert [a.kind for a in got] == ["object", "object"]
            first = got[0]
            assert first.cls == "django.db.models.base.model_unpickle"
            assert first.args == (("regioncache", "Article"),)
            assert first.state["title"] == "One" and first.state["id"] == 1
            price = first.state["price"]
            assert price.cls == "decimal.Decimal" and price.args == ("1.50",)
            assert first.state["_state"].cls == "django.db.models.base.ModelState"

    when = datetime.datetime(2026, 12, 2, 1, 44, tzinfo=datetime.timezone.utc)
    got = _native.read_pickle(pickle.dumps(when, 4))
    assert got.cls == "datetime.datetime"
    assert got.args[0] == when.__reduce__()[1][0]  # the packed date bytes
    assert got.args[1].cls == "datetime.timezone"

    resp = HttpResponse("<p>hi</p>", headers={"X-Demo": "yes"}, status=201)
    got = _native.read_pickle(pickle.dumps(resp, pickle.HIGHEST_PROTOCOL))
    assert got.cls == "django.http.response.HttpResponse"
    assert got.state["status_code"] == 201
    assert got.state["_container"] == [b"<p>hi</p>"]
    store = got.state["headers"].state["_store"]
    assert store["x-demo"] == ("X-Demo", "yes")

    u = uuid.UUID(int=14)
    got = _native.read_pickle(pickle.dumps({"id": u}, 2))
    assert got["id"].cls == "uuid.UUID" and got["id"].state == {"int": 14}


# --- malicious pickles -----------------------------------------------------------------------

class _Call:
    """Pickles as a call of func(*args): what an attacker would store."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _malicious(target):
    t = str(target)
    return {
        "os.system": _Call(os.system, f"touch {t}"),
        "builtins.open": _Call(open, t, "w"),
        "builtins.exec": _Call(exec, f"open({t!r}, 'w').close()"),
        "nested": {"ok": [1, 2], "payload": _Call(exec, f"open({t!r}, 'w').close()")},
    }


def test_malicious_pickles_are_read_and_nothing_runs(tmp_path):
    names = ["posix.system", "io.open", "builtins.exec", None]
    for protocol in PROTOCOLS:
        target = tmp_path / f"pwned-{protocol}"
        for (label, payload), cls in zip(_malicious(target).items(), names):
            data = pickle.dumps(payload, protocol)
            got = _native.read_pickle(data)
            obj = got["payload"] if label == "nested" else got
            assert obj.kind == "object"
            assert obj.cls == (cls or "builtins.exec")
            assert str(target) in repr(obj.args)
            with pytest.raises(ValueError, match="not a Django page"):
                _native.read_page(data)
            assert not target.exists(), (label, protocol)
    # The control: pickle.loads of the same bytes does create the file.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_malicious(control)["builtins.exec"], 4))
    assert control.exists()


# --- pages from a real region -------------------------------------------------------------------

BIG = "<html><body>" + "<p>Hello, gzip world</p>" * 40 + "</body></html>"


@cache_page(60, cache="pages")
def _plain_page(request):
    resp = HttpResponse("<html><body><h1>Caf\u00e9 42</h1></body></html>",
                        content_type="text/html; charset=utf-8")
    resp["X-Article"] = "42"
    return resp


@cache_page(60, cache="pages")
@gzip_page
def _gzip_page(request):
    return HttpResponse(BIG, content_type="text/html; charset=utf-8")


@cache_page(60, cache="pages")
def _latin1_page(request):
    return HttpResponse("Stra\u00dfe".encode("latin-1"), content_type="text/plain; charset=latin-1",
                        status=200)


urlpatterns = [
    path("articles/42/", _plain_page),
    path("big/", _gzip_page),
    path("latin/", _latin1_page),
]


@pytest.fixture
def stored_pages():
    """{url: the bytes the backend stored for its page}, made by real requests."""
    pages = caches["pages"]
    pages.clear()
    with override_settings(ROOT_URLCONF=__name__):
        client = Client()
        assert client.get("/articles/42/").status_code == 200
        gz = client.get("/big/", HTTP_ACCEPT_ENCODING="gzip")
        assert gz["Content-Encoding"] == "gzip"
        assert client.get("/latin/").status_code == 200
    out = {}
    cursor = ""
    while True:
        entries, cursor = pages.list_entries(cursor=cursor, glob="*cache_page*")
        for e in entries:
            assert e["encoding"] == "pickle"
            # The backend stores pickle.dumps(value, HIGHEST_PROTOCOL); the Python
            # API has no raw read, so the value is fetched and pickled the same way.
            value = pages.get(e["key"].split(":", 2)[2])
            data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            assert abs(len(data) - e["size"]) <= 64 or e["size"] < len(data)
            out[value.get("X-Article") or value.get("Content-Type")] = data
        if not cursor:
            break
    yield out
    pages.clear()


def test_pages_from_cache_page_read_as_status_headers_and_body(stored_pages):
    assert len(stored_pages) == 3, list(stored_pages)
    page = _native.read_page(stored_pages["42"])
    assert page["complete"] and page["error"] is None and page["problems"] == []
    assert page["class"] == "django.http.response.HttpResponse"
    assert (page["status"], page["reason"]) == (200, "OK")
    headers = dict(page["headers"])
    assert headers["X-Article"] == "42"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "max-age=60" in headers["Cache-Control"]
    assert page["charset"] == "utf-8"
    assert page["body"].decode(page["charset"]) == "<html><body><h1>Caf\u00e9 42</h1></body></html>"

    gz = _native.read_page(stored_pages["text/html; charset=utf-8"])
    assert gz["content_encoding"] == "gzip" and gz["body_unpacked"]
    assert gz["body"].decode() == BIG
    assert gzip.decompress(gz["stored_body"]) == gz["body"]
    assert "Accept-Encoding" in dict(gz["headers"])["Vary"]

    latin = _native.read_page(stored_pages["text/plain; charset=latin-1"])
    assert latin["charset"] == "latin-1"
    assert latin["body"].decode(latin["charset"]) == "Stra\u00dfe"


def test_damaged_and_truncated_pages_say_what_was_read_and_why(stored_pages):
    data = stored_pages["42"]
    body_at = data.index(b"<html><body><h1>")
    cut = _native.read_page(data[:body_at + 5])
    assert not cut["complete"]
    assert cut["status"] == 200
    assert dict(cut["headers"])["X-Article"] == "42"
    assert cut["body"] == b""
    assert cut["problems"] and "SHORT_BINBYTES" in cut["problems"][0]
    assert "offset" in cut["error"]

    # A gzip body cut short: the headers, and the part of the body that unpacks.
    gz = stored_pages["text/html; charset=utf-8"]
    stored = _native.read_page(gz)["stored_body"]
    damaged = gz.replace(stored, stored[:len(stored) // 2] + b"\0" * (len(stored) - len(stored) // 2))
    page = _native.read_page(damaged)
    assert page["status"] == 200 and not page["complete"]
    assert any("gzip body is damaged or cut short" in p for p in page["problems"]), page["problems"]

    # Every prefix and random damage: a dict or a ValueError, never a crash.
    rng = random.Random(2)
    for n in range(len(data)):
        try:
            assert not _native.read_page(data[:n])["complete"]
        except ValueError as e:
            assert "pickle" in str(e)
    for _ in range(2000):
        d = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            d[rng.randrange(len(d))] = rng.randrange(256)
        try:
            _native.read_page(bytes(d))
        except ValueError:
            pass
