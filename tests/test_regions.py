"""@regioncache.region and stampede protection (get_or_set with a callable
default), against real regions and real processes."""

import asyncio
import datetime
import decimal
import enum
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest
from django.core.cache import CacheKeyWarning

import regioncache
from regioncache import region
from regioncache.keys import KeyMaker


class Colour(enum.Enum):
    RED = 1


def keyed(fn):
    return KeyMaker(fn)


# --- keys ----------------------------------------------------------------------


def test_key_spells_name_and_arguments():
    def price(item, qty=1, *, currency="EUR"):
        pass

    k = keyed(price)
    name = f"{__name__}.test_key_spells_name_and_arguments.<locals>.price"
    assert k((7,), {}) == f"{name}(item=7,qty=1,currency='EUR')"
    # bound to the signature with defaults applied: one key per call meaning
    assert k((7,), {}) == k((), {"item": 7}) == k((7, 1), {"currency": "EUR"})
    assert k((7, 2), {}) != k((7,), {})


def test_key_of_supported_values_is_stable():
    def f(*args, **kwargs):
        pass

    k = keyed(f)
    values = (
        None, True, 3, 2.5, "s", b"b", (1, 2), [1, [2]], {"b": 1, "a": 2}, {3, 1, 2},
        frozenset({"x"}), datetime.date(2024, 1, 2), datetime.datetime(2024, 1, 2, 3, 4),
        decimal.Decimal("1.10"), uuid.UUID(int=5), Colour.RED,
    )
    first = k(values, {"z": 1, "a": 2})
    assert first == k(values, {"a": 2, "z": 1})  # keyword order does not matter
    # dicts and sets are spelled in sorted order, not insertion order
    assert k(({"a": 2, "b": 1},), {}) == k(({"b": 1, "a": 2},), {})


def test_key_is_the_same_in_another_process():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from regioncache.keys import KeyMaker\n"
        "def price(item, opts=None): pass\n"
        "price.__module__ = 'shop'; price.__qualname__ = 'price'\n"
        "print(KeyMaker(price)(('sku-1', {'b': [1, 2.5], 'a': None}), {}))"
    )
    pkg = os.path.dirname(os.path.dirname(regioncache.__file__))
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, pkg], capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1
    assert outs.pop().strip() == "shop.price(item='sku-1',opts={'a':None,'b':[1,2.5]})"


def test_unkeyable_argument_names_the_argument():
    def report(user, options):
        pass

    k = keyed(report)
    with pytest.raises(TypeError, match=r"argument options\['fh'\] cannot form a cache key"):
        k((1, {"fh": object()}), {})
    with pytest.raises(TypeError, match=r"argument user .*__cache_key__"):
        k((lambda: 1, {}), {})
    with pytest.raises(TypeError, match="report"):
        k((1, 2, 3), {})  # a call the signature does not take


def test_long_or_unsafe_keys_are_hashed(shm):
    def f(text):
        pass

    k = keyed(f)
    long_key = k(("x" * 500,), {})
    assert len(long_key) < 200 and "#" in long_key
    assert long_key == k(("x" * 500,), {})
    assert k(("x" * 501,), {}) != long_key
    spaced = k(("two words\n",), {})
    assert " " not in spaced and "\n" not in spaced
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        shm.set(long_key, 1)
        shm.set(spaced, 2)


def test_methods_leave_out_self_unless_it_has_a_cache_key():
    class Plain:
        def area(self, w, h):
            pass

    class Shop:
        def __init__(self, sid):
            self.sid = sid

        def __cache_key__(self):
            return self.sid

        def price(self, item):
            pass

    assert keyed(Plain.area)((Plain(), 2, 3), {}) == keyed(Plain.area)((Plain(), 2, 3), {})
    k = keyed(Shop.price)
    assert k((Shop("a"), 1), {}) != k((Shop("b"), 1), {})
    assert k((Shop("a"), 1), {}) == k((Shop("a"), 1), {})


# --- the decorator ------------------------------------------------------------


def counting(fn):
    calls = []

    def inner(*args, **kwargs):
        calls.append((args, kwargs))
        return fn(*args, **kwargs)

    inner = functools.wraps(fn)(inner)  # the signature the key binds to is fn's
    inner.calls = calls
    return inner


def generation_key(cached):
    return KeyMaker(cached.original).generation_key


def test_results_are_cached_per_arguments(shm):
    @counting
    def square(x):
        return {"x": x, "sq": x * x}

    cached = region(shm.alias)(square)
    assert cached(3) == {"x": 3, "sq": 9}
    assert cached(3) == {"x": 3, "sq": 9}
    assert cached(x=3) == {"x": 3, "sq": 9}
    assert cached(4)["sq"] == 16
    assert len(square.calls) == 2
    # stored in the region under the key it reports, with the function's
    # generation token (decorators.py)
    token = shm.get(generation_key(cached))
    assert shm.get(cached.key(3)) == (token, None, {"x": 3, "sq": 9})
    assert cached.region == shm.alias
    assert cached.uncached is square
    assert cached.__name__ == "square"


def test_none_results_are_cached(shm):
    @counting
    def nothing(x):
        return None

    cached = region(shm.alias)(nothing)
    assert cached(1) is None and cached(1) is None
    assert len(nothing.calls) == 1


def test_invalidate_and_refresh(shm):
    state = {"n": 0}

    def ticket(user):
        state["n"] += 1
        return state["n"]

    cached = region(shm.alias)(ticket)
    assert cached(1) == 1 and cached(1) == 1
    assert cached.invalidate(1) is True
    assert cached(1) == 2
    assert cached.refresh(1) == 3
    assert cached(1) == 3
    assert cached.invalidate(99) is False


def test_timeout_and_region_default(regions):
    c = regions.new(TIMEOUT=1)
    state = {"n": 0}

    def tick():
        state["n"] += 1
        return state["n"]

    by_default = region(c.alias)(tick)
    forever = region(c.alias, timeout=None, namespace="forever-tick")(tick)
    assert by_default() == 1
    assert forever() == 2
    entries = {e["key"]: e for e in c.list_entries()[0]}
    assert entries[c.make_key(forever.key())]["expires"] is None
    exp = entries[c.make_key(by_default.key())]["expires"]
    assert exp is not None and exp - time.time() <= 1.05
    time.sleep(1.1)
    assert by_default() == 3
    assert forever() == 2


def test_timeout_zero_calls_through(shm):
    @counting
    def f(x):
        return x

    cached = region(shm.alias, timeout=0)(f)
    assert cached(1) == 1 and cached(1) == 1
    assert len(f.calls) == 2
    assert not shm.has_key(cached.key(1))


def test_unknown_alias_is_djangos_error(shm):
    from django.core.cache import InvalidCacheBackendError

    cached = region("no-such-region")(lambda: 1)
    with pytest.raises(InvalidCacheBackendError):
        cached()
    with pytest.raises(TypeError, match="alias"):
        region(lambda: 1)


def test_methods(shm):
    class Catalog:
        def __init__(self, shop):
            self.shop = shop
            self.calls = 0

        def __cache_key__(self):
            return self.shop

        @region(shm.alias)
        def price(self, item):
            self.calls += 1
            return f"{self.shop}:{item}"

    a, b = Catalog("a"), Catalog("b")
    assert a.price(1) == "a:1" and a.price(1) == "a:1"
    assert b.price(1) == "b:1"
    assert a.calls == 1 and b.calls == 1
    assert Catalog.price.invalidate(a, 1) is True
    assert a.price(1) == "a:1" and a.calls == 2


def test_async_functions(shm):
    calls = []

    @region(shm.alias)
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0)
        return [x, x]

    async def main():
        assert await fetch(5) == [5, 5]
        assert await fetch(5) == [5, 5]
        assert await fetch.invalidate(5) is True
        assert await fetch(5) == [5, 5]
        assert await fetch.refresh(6) == [6, 6]
        assert await fetch(6) == [6, 6]
        # many at once in one loop: computed once
        results = await asyncio.gather(*(fetch(7) for _ in range(10)))
        assert results == [[7, 7]] * 10

    asyncio.run(main())
    assert calls == [5, 5, 6, 7]


def test_an_exception_is_not_cached_and_frees_the_lock(shm):
    state = {"fail": True, "calls": 0}

    @region(shm.alias, wait=5)
    def flaky():
        state["calls"] += 1
        if state["fail"]:
            raise RuntimeError("backend down")
        return "ok"

    with pytest.raises(RuntimeError):
        flaky()
    state["fail"] = False
    t0 = time.monotonic()
    assert flaky() == "ok"
    assert time.monotonic() - t0 < 1  # the lock was released, not left to expire
    assert state["calls"] == 2


# --- stampede protection across processes --------------------------------------

STAMPEDE_CHILD = """
import time
from regioncache import region
alias, counter_path, start_at, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

def slow():
    with open(counter_path, "a") as f:   # one line per real computation
        f.write("%d\\n" % os.getpid())
    time.sleep(0.5)
    return {"computed_by": os.getpid()}

while time.time() < start_at:
    time.sleep(0.001)
if mode == "decorator":
    value = region(alias, namespace="stampede.slow")(slow)()
else:
    value = caches[alias].get_or_set("cold-key", slow, 300)
print(value["computed_by"])
"""


@pytest.fixture(params=["shm", "file", "memcached"])
def any_region(request, regions, tmp_path):
    """A fresh region of each store kind (the lock is each store's own add)."""
    kind = request.param
    if kind == "shm":
        yield regions.new()
        return
    if kind == "file":
        yield regions.new(location=str(tmp_path / "files"), BACKEND="regioncache.FileCache",
                          OPTIONS={})
        return
    from memcached_servers import start_servers

    servers = start_servers(1)
    try:
        yield regions.new(location=servers[0].location, BACKEND="regioncache.MemcachedCache",
                          KEY_PREFIX=uuid.uuid4().hex[:8], OPTIONS={})
    finally:
        servers.stop()


@pytest.mark.parametrize("mode", ["decorator", "get_or_set"])
def test_twenty_processes_one_cold_key_compute_once(any_region, regions, child_preamble,
                                                    tmp_path, mode):
    c = any_region
    counter = tmp_path / "computed"
    start_at = time.time() + 3  # every child is up and waiting by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child_preamble + STAMPEDE_CHILD, c.alias, str(counter),
             repr(start_at), mode],
            env=regions.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(20)
    ]
    outs, errs = [], []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(out.strip())
        errs.append(err.strip())
    runs = counter.read_text().split()
    logged = "\n".join(e for e in errs if e)
    assert len(runs) == 1, f"computed {len(runs)} times; the children logged:\n{logged}"
    assert set(outs) == {runs[0]}  # every process got the one computed value


def test_threads_one_cold_key_compute_once(shm):
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return "v"

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(shm.get_or_set("k", slow, 60)))
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["v"] * 10
    assert len(calls) == 1


def test_a_killed_lock_holder_is_taken_over(regions, child_preamble, tmp_path):
    c = regions.new()
    started = tmp_path / "started"
    code = (
        "from regioncache import region\n"
        "import time\n"
        "def slow():\n"
        "    open(sys.argv[2], 'w').close()\n"
        "    time.sleep(60)\n"
        "region(sys.argv[1], namespace='victim', lock_timeout=1)(slow)()\n"
    )
    p = subprocess.Popen([sys.executable, "-c", child_preamble + code, c.alias, str(started)],
                         env=regions.child_env())
    try:
        deadline = time.time() + 30
        while not started.exists():
            assert time.time() < deadline and p.poll() is None
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()

    def fast():
        return "taken over"

    t0 = time.monotonic()
    assert region(c.alias, namespace="victim", lock_timeout=1)(fast)() == "taken over"
    # waited for the dead holder's lock to expire (1 s), not for `wait` (10 s)
    assert time.monotonic() - t0 < 5


def test_waiters_give_up_after_wait_and_compute(shm):
    release = threading.Event()
    calls = []

    def slow():
        calls.append("slow")
        release.wait(10)
        return "slow"

    holder = threading.Thread(target=lambda: region(shm.alias, namespace="w")(slow)())
    holder.start()
    while not calls:
        time.sleep(0.01)
    t0 = time.monotonic()
    assert region(shm.alias, namespace="w", wait=0.3)(lambda: "impatient")() == "impatient"
    assert 0.25 < time.monotonic() - t0 < 3
    release.set()
    holder.join()


def test_stale_values_are_served_while_one_caller_recomputes(shm):
    gate = threading.Event()
    state = {"n": 0}

    def version():
        state["n"] += 1
        if state["n"] > 1:
            gate.wait(10)
        return state["n"]

    cached = region(shm.alias, timeout=1, stale=30)(version)
    assert cached() == 1
    time.sleep(1.1)  # past its fresh life, inside its stale grace
    results = []
    recomputer = threading.Thread(target=lambda: results.append(cached()))
    recomputer.start()
    while state["n"] < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    assert [cached() for _ in range(5)] == [1] * 5  # the previous value, at once
    assert time.monotonic() - t0 < 0.5
    gate.set()
    recomputer.join()
    assert results == [2]
    assert cached() == 2
    with pytest.raises(ValueError, match="stale"):
        region(shm.alias, stale=-1)
