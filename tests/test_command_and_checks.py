"""manage.py cacheregions, python -m regioncache describe, and the system
checks, on real regions (call_command in process, and real subprocesses for
exit codes and output)."""

import io
import json
import os
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from regioncache.checks import check_regions

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run(*args, **kw):
    out = io.StringIO()
    call_command("cacheregions", *args, stdout=out, **kw)
    return out.getvalue()


def fill(cache, n=30):
    cache.set_many({f"user:{i}": {"i": i} for i in range(n)}, 300)
    cache.set_many({f"page:{i}": "p" * 100 for i in range(n)}, None)


def test_overview_lists_every_region_with_stats(regions):
    c = regions.new()
    fill(c)
    c.get("user:1")
    c.get("absent")
    rows = {r["alias"]: r for r in json.loads(run("--json"))}
    row = rows[c.alias]
    assert row["kind"] == "shm" and row["location"] == c.store_location
    assert row["stats"]["entries"] == 60
    assert row["stats"]["hits"] >= 1 and row["stats"]["misses"] >= 1
    assert "default" in rows
    text = run()
    line = next(l for l in text.splitlines() if l.startswith(c.alias))
    assert "shm" in line and " 60 " in line


def test_keys_with_pattern_limit_size_and_expiry(regions):
    c = regions.new()
    fill(c)
    data = json.loads(run("keys", c.alias, "--pattern", ":1:user:*", "--limit", "1000", "--json"))
    keys = {e["key"]: e for e in data["entries"]}
    assert set(keys) == {f":1:user:{i}" for i in range(30)}
    e = keys[":1:user:3"]
    assert e["encoding"] == "pickle" and e["size"] > 0
    assert 290 < e["expires"] - time.time() <= 300
    assert data["more"] is False
    limited = json.loads(run("keys", c.alias, "--limit", "7", "--json"))
    assert len(limited["entries"]) == 7 and limited["more"] is True
    text = run("keys", c.alias, "--pattern", ":1:page:1")
    assert ":1:page:1\t100 B\tstr\texpires never" in text


def test_purge_pattern_expired_all(regions):
    c = regions.new()
    fill(c)
    c.set("short", 1, 1)
    assert json.loads(run("purge", c.alias, "--pattern", ":1:user:*", "--yes", "--json")) == {
        "alias": c.alias, "removed": 30,
    }
    assert c.get("user:1") is None and c.get("page:1") == "p" * 100
    time.sleep(1.1)
    assert "removed 1 expired entries" in run("purge", c.alias, "--expired")
    assert f"{c.alias}: cleared" in run("purge", c.alias, "--all", "--yes")
    assert c.get("page:1") is None


def test_purge_asks_for_confirmation(regions):
    c = regions.new()
    fill(c)
    with pytest.raises(CommandError, match="--yes"):
        run("purge", c.alias, "--all")  # stdin is not a terminal here
    assert c.get("page:1") == "p" * 100


def test_bad_alias_and_options_exit_non_zero(regions):
    with pytest.raises(CommandError, match="no cache alias 'nope'"):
        run("keys", "nope")
    conf = regions.conf(OPTIONS={"SIZE": "12XB"})
    alias = regions.register(conf)
    with pytest.raises(CommandError, match=rf"CACHES\['{alias}'\].*SIZE"):
        run("keys", alias)
    # a real manage.py: exit status and message on stderr
    proc = subprocess.run(
        [sys.executable, "-m", "django", "cacheregions", "keys", "nope"],
        env={**regions.child_env(), "DJANGO_SETTINGS_MODULE": "djangoproject.settings"},
        capture_output=True, text=True, cwd=TESTS_DIR,
    )
    assert proc.returncode != 0
    assert "no cache alias 'nope'" in proc.stderr


def test_describe_prints_the_regions_as_json(regions):
    c = regions.new(KEY_PREFIX="shop", VERSION=3)
    proc = subprocess.run(
        [sys.executable, "-m", "regioncache", "describe", "--settings", "djangoproject.settings",
         "--pythonpath", TESTS_DIR],
        env=regions.child_env(), capture_output=True, text=True, check=True,
    )
    described = {r["alias"]: r for r in json.loads(proc.stdout)["regions"]}
    r = described[c.alias]
    assert r["kind"] == "shm" and r["location"] == c.store_location
    assert r["key_prefix"] == "shop" and r["version"] == 3
    assert r["options"]["SIZE"] == "8MB"


# --- system checks ----------------------------------------------------------------


def ids(messages, alias=None):
    return sorted(m.id for m in messages if alias is None or repr(alias) in m.msg)


def test_good_settings_pass(regions):
    c = regions.new()
    assert ids(check_regions(), c.alias) == []


def test_bad_options_are_errors(regions):
    bad = regions.register(regions.conf(OPTIONS={"SIZE": "12XB"}))
    small = regions.register(regions.conf(OPTIONS={"SIZE": "1MB", "MAX_ITEM_SIZE": "1MB"}))
    unknown = regions.register(regions.conf(OPTIONS={"COLOUR": "blue"}))
    msgs = check_regions()
    for alias, words in ((bad, "SIZE"), (small, "too small"), (unknown, "COLOUR")):
        mine = [m for m in msgs if repr(alias) in m.msg]
        assert [m.id for m in mine] == ["regioncache.E001"], alias
        assert words in mine[0].msg


def test_two_aliases_on_one_store_with_the_same_keys_warn(regions):
    a = regions.new()
    b = regions.register(regions.conf(location=a.store_location, OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}))
    prefixed = regions.register(regions.conf(location=a.store_location, KEY_PREFIX="other",
                                             OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}))
    msgs = [m for m in check_regions() if m.id == "regioncache.W002"]
    assert len(msgs) == 1
    assert repr(a.alias) in msgs[0].msg and repr(b) in msgs[0].msg
    assert repr(prefixed) not in msgs[0].msg


def test_manage_py_check_runs_them(regions):
    a = regions.new()
    regions.register(regions.conf(location=a.store_location,
                                  OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"}))
    proc = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env={**regions.child_env(), "DJANGO_SETTINGS_MODULE": "djangoproject.settings"},
        capture_output=True, text=True, cwd=TESTS_DIR,
    )
    assert proc.returncode == 0, proc.stderr  # warnings do not fail the check
    assert "regioncache.W002" in proc.stderr and repr(a.alias) in proc.stderr


def test_manage_py_check_with_bad_options_fails_naming_them(regions):
    # Django's own cache checks open every cache first, so a bad OPTIONS stops
    # `check` with our ImproperlyConfigured (as for any Django backend).
    alias = regions.register(regions.conf(OPTIONS={"MAX_ENTRIES": "-3"}))
    proc = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env={**regions.child_env(), "DJANGO_SETTINGS_MODULE": "djangoproject.settings"},
        capture_output=True, text=True, cwd=TESTS_DIR,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert f"CACHES['{alias}']" in last and "MAX_ENTRIES" in last, last


def test_file_region_directory_problems_are_errors(regions, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    under_file = regions.register(regions.conf(location=str(plain / "cache"),
                                               BACKEND="regioncache.FileCache", OPTIONS={}))
    fine = regions.register(regions.conf(location=str(tmp_path / "new" / "cache"),
                                         BACKEND="regioncache.FileCache", OPTIONS={}))
    msgs = check_regions()
    mine = [m for m in msgs if repr(under_file) in m.msg]
    assert [m.id for m in mine] == ["regioncache.E002"]
    assert str(plain) in mine[0].msg
    assert ids(msgs, fine) == []


def test_unreachable_memcached_server_is_a_warning(regions):
    from memcached_servers import free_port, start_servers

    servers = start_servers(1)
    try:
        dead = f"127.0.0.1:{free_port()}"
        alias = regions.register(regions.conf(location=[servers[0].location, dead],
                                              BACKEND="regioncache.MemcachedCache", OPTIONS={}))
        mine = [m for m in check_regions() if repr(alias) in m.msg]
        assert [m.id for m in mine] == ["regioncache.W001"]
        assert dead in mine[0].msg and servers[0].location not in mine[0].msg
    finally:
        servers.stop()
