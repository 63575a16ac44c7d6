"""MemcachedCache against servers that misbehave (issue 11, items 7 and 8):
every call ends within its deadline (POLL_TIMEOUT bounds a whole reply, not
each wait for a byte), a reply claiming more than MAX_ITEM_SIZE ends the
read at once, garbage is a miss naming nobody's bytes, and the connection
is usable again afterwards. Fake servers from fake_memcached.py and a
SIGSTOPped real memcached, all on 127.0.0.1."""

import resource
import time

import pytest
from django.core.cache import caches

from fake_memcached import FakeMemcached
from memcached_servers import start_servers

POLL = 0.2


@pytest.fixture
def make_cache(regions):
    """make(location, **OPTIONS) -> a MemcachedCache alias of this test (removed after)."""

    def make(location, **options):
        return regions.new(location=location, BACKEND="regioncache.MemcachedCache",
                           OPTIONS={"POLL_TIMEOUT": POLL, "CONNECT_TIMEOUT": POLL,
                                    "RETRY_TIMEOUT": 0.1, **options})

    return make


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


@pytest.fixture
def fake():
    f = FakeMemcached(delay=0.02).start()  # a byte every 20 ms: never a 200 ms silence
    yield f
    f.stop()


def recovers(cache, fake):
    """With the fault gone, the next calls work on a clean connection."""
    fake.faults.clear()
    time.sleep(0.15)  # RETRY_TIMEOUT
    cache.set("after", "fine")
    assert cache.get("after") == "fine"
    assert cache.get("k") == "v" * 200


@pytest.mark.parametrize("fault", ["trickle", "endless", "silent"])
def test_get_ends_within_the_deadline(fake, make_cache, fault):
    cache = make_cache(fake.location)
    cache.set("k", "v" * 200)  # its reply trickles for 4+ s at 20 ms a byte
    assert cache.get("k") == "v" * 200
    fake.faults["get"] = fault
    value, took = timed(lambda: cache.get("k", "miss"))
    assert value == "miss"
    assert took < 2 * POLL + 0.1, f"get took {took:.2f} s against a {fault} server"
    recovers(cache, fake)


def test_get_many_and_set_end_within_the_deadline(fake, make_cache):
    cache = make_cache(fake.location)
    cache.set("k", "v" * 200)
    fake.faults.update(get="trickle", set="trickle")
    value, took = timed(lambda: cache.get_many(["k", "j"]))
    assert value == {} and took < 2 * POLL + 0.1, took
    time.sleep(0.15)
    _, took = timed(lambda: cache.set("x", "y" * 100))
    assert took < 2 * POLL + 0.1, took
    recovers(cache, fake)


def test_a_2gb_claim_ends_the_read_at_once_without_allocating(make_cache):
    with FakeMemcached(delay=0.02) as fake:
        cache = make_cache(fake.location, POLL_TIMEOUT=5)  # so "at once" is not a timeout
        cache.set("k", "v" * 200)
        fake.faults["get"] = "huge"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        value, took = timed(lambda: cache.get("k", "miss"))
        assert value == "miss"
        assert took < 0.5, f"a 2 GB claim held get() {took:.2f} s"
        grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
        assert grown_kb < 100_000, f"{grown_kb} KB allocated for a claimed value"
        recovers(cache, fake)


def test_garbage_is_a_miss_and_the_connection_recovers(make_cache):
    with FakeMemcached() as fake:
        cache = make_cache(fake.location)
        cache.set("k", "v" * 200)
        fake.faults["get"] = "garbage"
        assert cache.get("k", "miss") == "miss"
        assert cache.get_many(["k"]) == {}
        fake.faults.update(set="garbage", add="garbage")
        cache.set("x", 1)  # no exception: a failed write is a quiet failure
        assert cache.add("y", 1) is False
        assert "y" not in fake.data or fake.data["y"] is None
        recovers(cache, fake)


def test_stopped_server_get_ends_within_the_deadline(make_cache):
    servers = start_servers(1)
    try:
        cache = make_cache(servers[0].location)
        cache.set("k", "v")
        servers[0].pause()
        value, took = timed(lambda: cache.get("k", "miss"))
        assert value == "miss" and took < 2 * POLL + 0.1, took
        servers[0].resume()
        time.sleep(0.15)
        assert cache.get("k") == "v"
    finally:
        servers.stop()


# --- the inspection path: stats(), list_entries(), the management command -------

import subprocess  # noqa: E402
import sys  # noqa: E402
from io import StringIO  # noqa: E402
from pathlib import Path  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402

import regioncache  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent


@pytest.mark.parametrize("fault", ["trickle", "endless", "garbage"])
def test_stats_reports_a_misbehaving_server_within_the_deadline(fake, make_cache, fault):
    cache = make_cache(fake.location)
    cache.set("k", "v")
    fake.faults["stats"] = fault
    stats, took = timed(cache.stats)
    assert took < 2 * POLL + 0.1, f"stats() took {took:.2f} s against a {fault} server"
    extra = dict(stats["extra"]) if isinstance(stats.get("extra"), list) else stats
    text = repr(extra)
    assert "servers_up" in text and fake.location in text


@pytest.mark.parametrize("fault", ["trickle", "endless", "garbage"])
def test_listing_a_misbehaving_server_is_an_error_naming_it(fake, make_cache, fault):
    cache = make_cache(fake.location)
    cache.set("k", "v")
    fake.faults["metadump"] = fault
    t0 = time.monotonic()
    with pytest.raises(regioncache.RegionError) as info:
        cache.list_entries()
    took = time.monotonic() - t0
    assert took < 1.0 + 2 * POLL, f"list_entries took {took:.2f} s against a {fault} server"
    msg = str(info.value)
    assert fake.location in msg and cache.alias in msg
    assert "\n" not in msg and msg.isprintable()


def test_mg_claiming_a_huge_value_is_an_error_not_a_read(make_cache):
    with FakeMemcached() as fake:
        cache = make_cache(fake.location)
        long_key = "x" * 300  # a mapped key: the listing reads its envelope with mg
        cache.set(long_key, "v")
        original = fake._apply

        def lying(cmd, parts, data):
            if cmd == "mg":
                return b"VA 2147483648 s5 f0\r\n"
            return original(cmd, parts, data)

        fake._apply = lying
        value, took = timed(lambda: pytest.raises(regioncache.RegionError, cache.list_entries))
        assert took < 0.5
        assert "MAX_ITEM_SIZE" in str(value.value) and fake.location in str(value.value)


@pytest.fixture
def fake_alias(regions):
    fakes = []

    def make(faults):
        f = FakeMemcached(faults=faults, delay=0.02).start()
        fakes.append(f)
        alias = regions.register({
            "BACKEND": "regioncache.MemcachedCache", "LOCATION": f.location, "KEY_PREFIX": "",
            "OPTIONS": {"POLL_TIMEOUT": POLL, "CONNECT_TIMEOUT": POLL},
        })
        caches[alias].set("k", "v")
        return alias, f

    yield make
    for f in fakes:
        f.stop()


@pytest.mark.parametrize("fault", ["silent", "trickle", "garbage"])
def test_command_keys_and_purge_fail_in_one_line(fake_alias, regions, fault):
    alias, fake = fake_alias({"metadump": fault})
    for args in (["keys", alias], ["purge", alias, "--pattern", "k*", "--yes"]):
        t0 = time.monotonic()
        with pytest.raises(CommandError) as info:
            call_command("cacheregions", *args, stdout=StringIO())
        assert time.monotonic() - t0 < 1.0 + 2 * POLL
        msg = str(info.value)
        assert alias in msg and fake.location in msg and "\n" not in msg
    # a real manage.py: non-zero exit, one line on stderr, no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "django", "cacheregions", "keys", alias],
        env={**regions.child_env(), "DJANGO_SETTINGS_MODULE": "djangoproject.settings"},
        capture_output=True, text=True, cwd=TESTS_DIR, timeout=30,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fake.location in lines[0], proc.stderr


# ---- the corruption campaign -------------------------------------------------------

def _mutate(rng, reply):
    """One random damage to a get reply: bytes flipped anywhere (header,
    value, terminator), cut short, bytes inserted or dropped, the length
    field changed, or the reply doubled."""
    b = bytearray(reply)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:
        del b[rng.randrange(1, len(b)):]
    elif kind == 2:
        at = rng.randrange(len(b))
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 3:
        at = rng.randrange(len(b))
        del b[at:at + rng.randint(1, 8)]
    elif kind == 4:
        head, _, rest = bytes(b).partition(b"\r\n")
        words = head.split(b" ")
        if len(words) == 4:
            words[3] = str(max(0, int(words[3]) + rng.choice([-5, -1, 1, 7, 1 << 20]))).encode()
        b = bytearray(b" ".join(words) + b"\r\n" + rest)
    else:
        b = b + b
    return bytes(b)


@pytest.mark.parametrize("signed", [True, False])
def test_mutated_replies_never_crash_hang_or_lie(make_cache, fake, signed):
    """1,000 gets (300 unsigned) whose replies the server damages at random.
    Every call answers within its deadline and never raises into the caller
    (the default failure policy). Signed (SIGNING_KEY): every answer is the
    value stored under that key or a miss, never another value. Unsigned,
    memcached keeps no checksum: a flipped byte inside a value can come back
    as a different value of the same type; counted, and the reason SIGNING_KEY
    exists for stores others can write (README, "Signed values"). Ints are
    never signed (see below)."""
    import random

    options = {"POLL_TIMEOUT": 0.05, "SERVER_FAILURE_LIMIT": 1_000_000, "RETRY_TIMEOUT": 0}
    if signed:
        options["SIGNING_KEY"] = "campaign"
    cache = make_cache(fake.location, **options)
    stored = {
        "s": "a short text value é",
        "b": b"\x00\x01 raw bytes \xff" * 20,
        "n": 123456789,
        "d": {"user": 42, "names": ["x", "y"], "nested": {"t": (1, 2.5)}},
        "long": "x" * 5000,
    }
    for k, v in stored.items():
        assert cache.set(k, v, None) is not False
    rng = random.Random(1107 + signed)
    fake.rewrite = lambda reply: _mutate(rng, reply)
    trials = 1000 if signed else 300
    wrong = slow = wrong_ints = 0
    names = list(stored)
    for i in range(trials):
        k = names[i % len(names)]
        t0 = time.monotonic()
        if i % 4 == 3:
            got = cache.get_many([k]).get(k, "MISS")
        else:
            got = cache.get(k, "MISS")
        took = time.monotonic() - t0
        slow += took > 1.0
        if got != "MISS" and got != stored[k]:
            if signed and k == "n":
                wrong_ints += 1
            else:
                wrong += 1
    fake.rewrite = None
    assert slow == 0, f"{slow} of {trials} calls took over 1 s"
    if signed:
        # Ints are stored unsigned so that incr stays one server-side command
        # (README, "Signed values"): a damaged reply can read back as another
        # int (a length field cut short: 123456789 as 1234). Every signed
        # type never does.
        assert wrong == 0, f"{wrong} of {trials} signed gets returned a value never stored there"
        print(f"signed campaign: {wrong_ints} damaged replies read back as another int")
    # Undamaged again: every value reads back.
    time.sleep(0.05)
    assert {k: cache.get(k) for k in stored} == stored
