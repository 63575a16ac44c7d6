"""regioncache.spec.store_spec: one CACHES entry as the store it names, the
same for the backend that opens it, the system checks and `python -m
regioncache describe` (what the desktop app opens)."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

import regioncache
from regioncache.backends import FileCache, MemcachedCache, SharedMemoryCache
from regioncache.spec import store_spec

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def describe(regions):
    proc = subprocess.run(
        [sys.executable, "-m", "regioncache", "describe", "--settings", "djangoproject.settings",
         "--pythonpath", TESTS_DIR],
        env=regions.child_env(), capture_output=True, text=True, check=True,
    )
    return {r["alias"]: r for r in json.loads(proc.stdout)["regions"]}


@pytest.fixture
def four_kinds(regions):
    """An alias of each kind, registered but not opened (describe opens nothing)."""
    aliases = {}
    aliases["shm"] = regions.register(regions.conf(
        OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": 65536, "RAISE_ERRORS": True},
        KEY_PREFIX="shop", VERSION=3))
    aliases["file"] = regions.register(regions.conf(
        os.path.join(settings.TMP_DIR, "spec-file"),
        BACKEND="regioncache.FileCache", OPTIONS={"MAX_SIZE": "16MB", "FSYNC": False}))
    aliases["memcached"] = regions.register(regions.conf(
        "127.0.0.1:1, 127.0.0.1:2;", BACKEND="regioncache.MemcachedCache",
        OPTIONS={"SIGNING_KEY": "not printed"}, KEY_PREFIX="shop"))
    aliases["django"] = regions.register(regions.conf(
        "elsewhere", BACKEND="django.core.cache.backends.locmem.LocMemCache",
        OPTIONS={"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2.5}))
    return aliases


def test_describe_prints_each_kinds_full_store_spec(regions, four_kinds):
    described = describe(regions)
    for kind, alias in four_kinds.items():
        r = described[alias]
        assert r == store_spec(alias, settings.CACHES[alias]).as_json(), kind
        assert r["kind"] == kind
        assert r["backend"] == settings.CACHES[alias]["BACKEND"]
    shm = described[four_kinds["shm"]]
    assert shm["options"] == {"SIZE": "8MB", "MAX_ITEM_SIZE": "65536"}  # policy options left out
    assert shm["key_prefix"] == "shop" and shm["version"] == 3
    f = described[four_kinds["file"]]
    assert f["location"].endswith("spec-file") and f["options"] == {"MAX_SIZE": "16MB",
                                                                   "FSYNC": "false"}
    mc = described[four_kinds["memcached"]]
    # LOCATION split as the backend splits it; REGION_PREFIX with its default.
    assert mc["location"] == "127.0.0.1:1;127.0.0.1:2"
    assert mc["options"] == {"REGION_PREFIX": "shop:"}
    dj = described[four_kinds["django"]]
    assert dj["location"] == "elsewhere"
    assert dj["options"] == {"MAX_ENTRIES": "10", "CULL_FREQUENCY": "2.5"}


class _Recording:
    """A backend that notes what it hands its native _open (then opens it)."""

    opened = []

    def _open(self, kind, location, region, options, lazy=False):
        type(self).opened.append((kind, location, dict(options)))
        return super()._open(kind, location, region, options, lazy=lazy)


class RecordingShm(_Recording, SharedMemoryCache):
    pass


class RecordingFile(_Recording, FileCache):
    pass


class RecordingMemcached(_Recording, MemcachedCache):
    pass


@pytest.mark.parametrize("kind,cls", [("shm", RecordingShm), ("file", RecordingFile),
                                      ("memcached", RecordingMemcached)])
def test_the_app_is_given_the_store_the_backend_opens(regions, four_kinds, kind, cls):
    # The app opens a project's region with describe's kind, location and
    # options as they are (gui/region_spec.cc derives nothing): they must be
    # what the backend hands its store.
    alias = four_kinds[kind]
    conf = dict(settings.CACHES[alias])
    del conf["BACKEND"]
    location = conf.pop("LOCATION")
    _Recording.opened.clear()
    cache = cls(location, conf)
    assert len(_Recording.opened) == 1
    r = describe(regions)[alias]
    assert _Recording.opened[0] == (r["kind"], r["location"], r["options"])
    assert cache.store_kind in (None, r["kind"])


def test_store_spec_refuses_what_no_store_takes():
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['x'\]: OPTIONS\['SIZE'\] must be"):
        store_spec("x", {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": "x",
                         "OPTIONS": {"SIZE": [8]}})
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['x'\]: OPTIONS must be a dict"):
        store_spec("x", {"BACKEND": "regioncache.FileCache", "LOCATION": "/tmp/x",
                         "OPTIONS": "SIZE=8MB"})
    with pytest.raises(ImproperlyConfigured, match=r"CACHES\['x'\]: LOCATION must be"):
        store_spec("x", {"BACKEND": "regioncache.MemcachedCache", "LOCATION": 11211})
    # An explicit REGION_PREFIX is kept; None as KEY_PREFIX gives the bare ":".
    spec = store_spec("x", {"BACKEND": "regioncache.MemcachedCache", "LOCATION": ["a:1", " b:2 "],
                            "KEY_PREFIX": None, "OPTIONS": {"REGION_PREFIX": "mine:"}})
    assert spec.location == "a:1;b:2" and spec.servers == ["a:1", "b:2"]
    assert spec.options == {"REGION_PREFIX": "mine:"}
    assert store_spec("x", {"BACKEND": "regioncache.MemcachedCache", "LOCATION": "a:1",
                            "KEY_PREFIX": None}).options == {"REGION_PREFIX": ":"}
    assert regioncache.spec.backend_kind("no.such.Backend") == "django"
