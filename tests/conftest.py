"""Shared set-up of the pytest suite: real Django settings (tests/djangoproject),
real shared-memory regions, unique per run and per test, removed afterwards.

A test asks for `regions` and calls regions.new(**conf) to get a cache object
(through django.core.cache.caches) on a region of its own. Child processes get
the same settings module plus the test's aliases through child_env().
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

RUN = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
TMP_DIR = tempfile.mkdtemp(prefix=f"{RUN}-")
os.environ["REGIONCACHE_TEST_RUN"] = RUN
os.environ["REGIONCACHE_TEST_TMP"] = TMP_DIR
os.environ.pop("REGIONCACHE_TEST_CACHES", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings"

import django  # noqa: E402

django.setup()

import regioncache  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402


def unique_name(tag="r"):
    return f"{RUN}-{tag}-{uuid.uuid4().hex[:8]}"


def drop_region(name):
    try:
        regioncache.remove_shm_region(name)
    except regioncache.RegionError:
        pass  # already gone (a test removed it itself)


def forget_alias(alias):
    """Close and drop a CacheHandler connection and its settings entry."""
    conn = getattr(caches._connections, alias, None)
    if conn is not None:
        conn.close()
        delattr(caches._connections, alias)
    settings.CACHES.pop(alias, None)


class Regions:
    """Per-test factory of shm cache aliases; every region it made is removed."""

    def __init__(self):
        self.aliases = []
        self.locations = []

    def conf(self, location=None, **conf):
        options = conf.pop("OPTIONS", None) or {}
        out = {
            "BACKEND": conf.pop("BACKEND", "regioncache.SharedMemoryCache"),
            "LOCATION": location or unique_name(),
            "OPTIONS": options,
        }
        out.update(conf)
        return out

    def register(self, conf, alias=None):
        alias = alias or f"t-{uuid.uuid4().hex[:8]}"
        settings.CACHES[alias] = conf
        self.aliases.append(alias)
        # Only shared-memory regions are removed afterwards (file regions live
        # in the run's temp dir, memcached servers are stopped by their tests).
        shm = conf["BACKEND"].endswith("SharedMemoryCache")
        if shm and conf["LOCATION"] not in self.locations:
            self.locations.append(conf["LOCATION"])
        return alias

    def new(self, location=None, alias=None, **conf):
        """Register an alias with a fresh region and open it via caches[alias]."""
        conf.setdefault("OPTIONS", {"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"})
        alias = self.register(self.conf(location, **conf), alias)
        return caches[alias]

    def child_env(self):
        """Environment for a child process: same settings, same aliases."""
        env = dict(os.environ)
        extra = {}
        for alias in self.aliases:
            conf = settings.CACHES.get(alias)
            if conf is not None and not any(callable(v) for v in conf.values()):
                extra[alias] = conf
        env["REGIONCACHE_TEST_CACHES"] = json.dumps(extra)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        return env

    def cleanup(self):
        for alias in self.aliases:
            try:
                forget_alias(alias)
            except Exception:  # a connection that failed to open is not there
                settings.CACHES.pop(alias, None)
        for location in self.locations:
            drop_region(location)


@pytest.fixture
def regions():
    r = Regions()
    yield r
    r.cleanup()


@pytest.fixture
def shm(regions):
    """A fresh 8MB region behind a caches[alias] object."""
    return regions.new()


# Preamble of the Python code child processes run: the same settings module.
CHILD_PREAMBLE = """
import os, sys, json
os.environ["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings"
import django
django.setup()
from django.core.cache import caches
"""


def run_child(env, code, *args, timeout=60, check=True):
    """Run python -c CHILD_PREAMBLE+code, return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_PREAMBLE + code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"child exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def child():
    return run_child


@pytest.fixture
def child_preamble():
    # Test modules take the preamble from here rather than importing conftest:
    # a multiprocessing 'spawn' child imports the test module, and importing
    # conftest there would set up a second run.
    return CHILD_PREAMBLE


def pytest_sessionfinish(session, exitstatus):
    # Whatever a crashed or interrupted test left behind: every region of this run.
    try:
        for name in regioncache.shm_regions():
            if name.startswith(RUN):
                drop_region(name)
    finally:
        shutil.rmtree(TMP_DIR, ignore_errors=True)
