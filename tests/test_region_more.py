"""@region's fuller API (issue 15, item 5): invalidate_all() through a
per-function generation token, should_cache=, ignore=, f.original,
f.get/f.set, and stale=... with refresh="background". On the shared-memory,
file and memcached stores, across real processes where it matters."""

import asyncio
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid

import pytest

import regioncache
from regioncache import NO_VALUE, region, stampede
from regioncache.keys import KeyMaker
from test_regions import any_region  # noqa: F401  (fixture: a region of each store kind)


def counted(result=None):
    """A function that counts its calls and returns result(n) (n from 1)."""
    calls = []

    def f(x):
        calls.append(x)
        return result(len(calls)) if result else (x, len(calls))

    f.calls = calls
    return f


def ns():
    return f"t{uuid.uuid4().hex[:8]}"


def run_children(regions, code, args_of, n):
    return [
        subprocess.Popen([sys.executable, "-c", CHILD_PREAMBLE + code, *map(str, args_of(i))],
                         env=regions.child_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]


CHILD_PREAMBLE = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings"
import django
django.setup()
from regioncache import region
"""


# --- invalidate_all --------------------------------------------------------------


def test_invalidate_all_forgets_every_result(any_region):
    c = any_region
    f = counted()
    g = counted()
    cached = region(c.alias, namespace=ns())(f)
    other = region(c.alias, namespace=ns())(g)
    assert [cached(1), cached(2), cached(1)] == [(1, 1), (2, 2), (1, 1)]
    assert other(1) == (1, 1)
    assert cached.invalidate_all() is None
    assert cached.get(1) is NO_VALUE and cached.get(2) is NO_VALUE
    assert [cached(1), cached(2), cached(2)] == [(1, 3), (2, 4), (2, 4)]
    assert other(1) == (1, 1)  # another function's results stay
    assert len(g.calls) == 1


def test_invalidate_all_is_seen_by_another_process(any_region, regions):
    c = any_region
    name = ns()
    f = counted()
    cached = region(c.alias, namespace=name)(f)
    assert cached(7) == (7, 1)
    code = (
        "f = region(sys.argv[1], namespace=sys.argv[2])(lambda x: 'from the child')\n"
        "print(repr(f(7)))\n"          # the parent's result: a hit
        "f.invalidate_all()\n"
        "print(repr(f.get(7)))\n"
    )
    (p,) = run_children(regions, code, lambda i: (c.alias, name), 1)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.split("\n")[:2] == ["(7, 1)", "regioncache.NO_VALUE"]
    assert cached.get(7) is NO_VALUE
    assert cached(7) == (7, 2)


def test_a_lost_generation_entry_never_brings_old_results_back(any_region):
    c = any_region
    f = counted()
    name = ns()
    cached = region(c.alias, namespace=name)(f)
    gen_key = KeyMaker(f, name).generation_key
    assert cached(1) == (1, 1)
    first = c.get(gen_key)
    cached.invalidate_all()
    assert cached(1) == (1, 2)
    second = c.get(gen_key)
    assert isinstance(first, str) and first != second
    # The generation entry evicted or deleted: results stored under either
    # old token are still in the region, and neither may come back.
    assert c.delete(gen_key) is True
    assert c.get(cached.key(1))[0] == second  # the record is there
    assert cached.get(1) is NO_VALUE
    assert cached(1) == (1, 3)
    assert c.get(gen_key) not in (None, first, second)
    c.delete(gen_key)
    cached.set("set by hand", 1)  # set writes a new generation too
    assert cached(1) == "set by hand"


def test_results_of_before_invalidate_all_are_not_stored_for_after(shm):
    # A computation that started before invalidate_all() stores its result
    # under the token it read: a miss once the new token is in place.
    started, go = threading.Event(), threading.Event()
    state = {"n": 0}

    def slow(x):
        state["n"] += 1
        if state["n"] == 1:
            started.set()
            go.wait(10)
        return state["n"]

    cached = region(shm.alias, namespace=ns())(slow)
    out = []
    t = threading.Thread(target=lambda: out.append(cached(1)))
    t.start()
    assert started.wait(10)
    cached.invalidate_all()
    go.set()
    t.join()
    assert out == [1]
    assert cached.get(1) is NO_VALUE
    assert cached(1) == 2


# --- should_cache ---------------------------------------------------------------


def test_should_cache_refused_results_are_returned_not_stored(any_region):
    c = any_region
    f = counted(lambda n: {"ok": n >= 3, "n": n})
    cached = region(c.alias, namespace=ns(), should_cache=lambda r: r["ok"])(f)
    assert cached(1) == {"ok": False, "n": 1}
    assert cached.get(1) is NO_VALUE
    assert cached(1) == {"ok": False, "n": 2}
    assert cached(1) == {"ok": True, "n": 3}
    assert cached(1) == {"ok": True, "n": 3}
    assert cached.get(1) == {"ok": True, "n": 3}
    assert cached.refresh(1) == {"ok": True, "n": 4}
    with pytest.raises(TypeError, match="should_cache"):
        region(c.alias, should_cache=True)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_waiters_for_a_refused_result_compute_at_once(shm, kind):
    # The lock holder's result is refused: the callers that were waiting for
    # it compute their own together, instead of taking the lock in turn.
    # Their computations meet at a barrier: taken one at a time, they never
    # would (the barrier breaks after 5 s and they raise; their `wait` of
    # 60 s is not what lets them compute).
    waiters = 4
    holder_in = threading.Event()
    barrier = threading.Barrier(waiters)
    calls = []

    def compute(x):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            holder_in.set()
            time.sleep(0.3)  # the waiters are polling by now
        else:
            barrier.wait(5)
        return None

    if kind == "sync":
        cached = region(shm.alias, namespace=ns(), wait=60,
                        should_cache=lambda r: r is not None)(compute)

        def call():
            return cached(1)
    else:
        async def acompute(x):
            return await asyncio.to_thread(compute, x)

        cached = region(shm.alias, namespace=ns(), wait=60,
                        should_cache=lambda r: r is not None)(acompute)

        def call():
            return asyncio.run(cached(1))

    results, errors = [], []

    def run():
        try:
            results.append(call())
        except Exception as e:  # a broken barrier: the waiters took turns
            errors.append(e)

    threads = [threading.Thread(target=run, name="holder")]
    threads[0].start()
    assert holder_in.wait(10)
    threads += [threading.Thread(target=run, name=f"w{i}") for i in range(waiters)]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [None] * (waiters + 1)
    assert len(calls) == waiters + 1
    got = cached.get(1)
    assert (got if kind == "sync" else asyncio.run(got)) is NO_VALUE


# --- ignore, original -----------------------------------------------------------


def test_ignore_leaves_arguments_out_of_the_key(any_region):
    c = any_region
    calls = []

    @region(c.alias, namespace=ns(), ignore=("request", "log"))
    def page(request, item, log=None):
        calls.append(request)
        return f"item {item}"

    assert page(object(), 1) == "item 1"
    assert page(object(), 1, log=logging.getLogger("x")) == "item 1"  # an unkeyable, left out
    assert len(calls) == 1
    assert page.key("any request", 1) == page.key(None, 1)
    assert "request" not in page.key(None, 1) and "item=1" in page.key(None, 1)

    @region(c.alias, namespace=ns(), ignore="trace")  # one name as a str
    def with_kwargs(x, **kw):
        return sorted(kw)

    assert with_kwargs.key(1, trace=object(), lang="en") == with_kwargs.key(1, lang="en")
    assert with_kwargs(1, trace=object(), lang="en") == ["lang", "trace"]


def test_ignore_names_are_checked_at_decoration(shm):
    def f(user, request=None):
        pass

    with pytest.raises(TypeError, match="'requets'"):
        region(shm.alias, ignore=("requets",))(f)
    with pytest.raises(TypeError, match="argument names"):
        region(shm.alias, ignore=(1,))(f)
    with pytest.raises(TypeError, match="ignore"):
        region(shm.alias, ignore=3)(f)


def test_original_is_the_undecorated_function(shm):
    def f(x):
        return x

    cached = region(shm.alias)(f)
    assert cached.original is f and cached.uncached is f


# --- get and set ----------------------------------------------------------------


def test_get_and_set(any_region):
    c = any_region
    f = counted()
    cached = region(c.alias, namespace=ns(), timeout=1)(f)
    assert cached.get(5) is NO_VALUE and not NO_VALUE and repr(NO_VALUE) == "regioncache.NO_VALUE"
    assert f.calls == []  # get never computes
    assert cached.set("given", 5) is None
    assert cached(5) == "given" and cached.get(x=5) == "given"
    assert f.calls == []
    cached.set(None, 6)  # None is a value, not "nothing"
    assert cached.get(6) is None and cached(6) is None
    time.sleep(1.1)  # the function's timeout applies to set values too
    assert cached.get(5) is NO_VALUE
    assert cached(5) == (5, 1)
    cached.set("again", 5)
    cached.invalidate_all()
    assert cached.get(5) is NO_VALUE


def test_set_follows_the_stale_rule(shm):
    f = counted()
    cached = region(shm.alias, namespace=ns(), timeout=1, stale=60)(f)
    cached.set("old", 1)
    time.sleep(1.1)
    assert cached.get(1) == "old"  # stale, still the region's value
    assert cached(1) == (1, 1)     # inline: this caller recomputes
    assert cached.get(1) == (1, 1)


# --- options --------------------------------------------------------------------


def test_refresh_option_is_checked(shm):
    with pytest.raises(ValueError, match="'inline' or 'background'"):
        region(shm.alias, stale=5, refresh="later")
    with pytest.raises(ValueError, match="stale"):
        region(shm.alias, refresh="background")
    region(shm.alias, stale=5, refresh="background")


# --- background refresh ---------------------------------------------------------

BACKGROUND_CHILD = """
import time
alias, name, counter, gate = sys.argv[1:5]

def compute():
    with open(counter, "a") as f:   # one line per real computation
        f.write("%d\\n" % os.getpid())
    while not os.path.exists(gate):   # held until every process has answered
        time.sleep(0.01)
    return "fresh from %d" % os.getpid()

f = region(alias, timeout=1, stale=300, refresh="background", namespace=name)(compute)
print(f(), flush=True)               # the stale value, while a worker recomputes
deadline = time.time() + 30
value = f()
while value == "stale" and time.time() < deadline:
    time.sleep(0.02)
    value = f()
print(value, flush=True)
"""


def test_background_refresh_once_across_processes_nobody_waits(any_region, regions,
                                                                 tmp_path):
    c = any_region
    name = ns()
    counter, gate = tmp_path / "computed", tmp_path / "gate"
    seed = region(c.alias, timeout=1, stale=300, refresh="background", namespace=name)(
        lambda: pytest.fail("the parent never computes"))
    seed.set("stale")
    time.sleep(1.1)  # past its fresh life, inside its stale window
    procs = run_children(regions, BACKGROUND_CHILD,
                         lambda i: (c.alias, name, counter, gate), 4)
    try:
        # Every process answers while the one computation is held at the
        # gate: none of them waited for it.
        firsts = [first_line(p, 30) for p in procs]
        assert firsts == ["stale"] * 4
    finally:
        gate.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(out.strip())
    runs = counter.read_text().split()
    assert len(runs) == 1, f"computed {len(runs)} times"
    assert outs == [f"fresh from {runs[0]}"] * 4
    assert seed() == f"fresh from {runs[0]}"


def first_line(proc, limit):
    """The first line proc prints, waited for at most `limit` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], limit)
    assert ready, f"no answer in {limit} s: the process waited for the computation"
    return proc.stdout.readline().strip()


def wait_for(pred, what, limit=30):
    deadline = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_background_refresh_errors_are_logged_and_stale_is_served(shm, caplog):
    state = {"fail": True, "calls": 0}

    @region(shm.alias, timeout=1, stale=60, refresh="background", namespace=ns())
    def report():
        state["calls"] += 1
        if state["fail"]:
            raise RuntimeError("database down")
        return "new"

    report.set("old")
    time.sleep(1.1)
    with caplog.at_level(logging.ERROR, logger=f"regioncache.{shm.alias}"):
        assert report() == "old"  # served at once; the error is the worker's
        wait_for(lambda: caplog.records, "the failed refresh was never logged")
    (rec,) = caplog.records
    assert rec.name == f"regioncache.{shm.alias}" and "background refresh" in rec.getMessage()
    assert "database down" in caplog.text
    assert state["calls"] == 1
    # Still served, and offered again by a later stale read (the first job
    # may not have ended yet when the next read comes: read until it is).
    wait_for(lambda: report() == "old" and state["calls"] >= 2,
             "the stale reads did not offer a refresh again")
    state["fail"] = False
    wait_for(lambda: report() == "new", "the refresh never landed")


def test_background_refresh_refused_result_keeps_the_stale_value(shm):
    calls = []

    @region(shm.alias, timeout=1, stale=60, refresh="background", namespace=ns(),
            should_cache=lambda r: r != "bad")
    def f():
        calls.append(1)
        return "bad"

    f.set("good")
    time.sleep(1.1)
    assert f() == "good"
    wait_for(lambda: calls, "no refresh ran")
    wait_for(lambda: not stampede.refresher._busy, "the refresh job did not end")
    assert f.get() == "good"


def test_async_background_refresh_is_a_task_on_the_loop(any_region, caplog):
    c = any_region
    state = {"calls": 0, "fail": False}

    @region(c.alias, timeout=1, stale=60, refresh="background", namespace=ns())
    async def fetch(x):
        state["calls"] += 1
        await state["gate"].wait()
        if state["fail"]:
            raise RuntimeError("upstream down")
        return f"new {x}"

    async def main():
        state["gate"] = asyncio.Event()
        await fetch.set("old", 1)
        await asyncio.sleep(1.1)
        # served at once, five times, while one task recomputes
        assert [await fetch(1) for _ in range(5)] == ["old"] * 5
        tasks = [t for t in stampede._tasks.values() if not t.done()]
        assert len(tasks) == 1 and tasks[0].get_loop() is asyncio.get_running_loop()
        state["gate"].set()
        await tasks[0]
        assert await fetch(1) == "new 1" and state["calls"] == 1
        # a failing recomputation is logged; the stale value stays
        state["fail"] = True
        await fetch.set("old again", 2)
        await asyncio.sleep(1.1)
        assert await fetch(2) == "old again"
        (task,) = [t for t in stampede._tasks.values() if not t.done()]
        await task
        assert await fetch.get(2) == "old again"

    with caplog.at_level(logging.ERROR, logger=f"regioncache.{c.alias}"):
        asyncio.run(main())
    assert "upstream down" in caplog.text


def test_refresher_runs_one_job_per_key_and_drops_beyond_its_queue():
    r = stampede.Refresher(threads=1, size=1)
    started, go, done = threading.Event(), threading.Event(), []

    def job(tag):
        def run():
            started.set()
            go.wait(10)
            done.append(tag)
        return run

    assert r.submit("a", job("a1")) is True
    assert started.wait(10)          # a1 runs
    assert r.submit("a", job("a2")) is False  # key a is busy here
    assert r.submit("b", job("b")) is True    # queued (size 1)
    assert r.submit("c", job("c")) is False   # the queue is full: dropped
    go.set()
    wait_for(lambda: len(done) == 2, "the jobs did not run")
    assert done == ["a1", "b"]
    assert all(t.daemon for t in threading.enumerate() if t.name == "regioncache-refresh")


# --- async forms ----------------------------------------------------------------


def test_async_invalidate_all_get_set_should_cache(any_region):
    c = any_region
    calls = []

    @region(c.alias, namespace=ns(), should_cache=lambda r: r >= 0, ignore=("request",))
    async def score(request, x):
        calls.append(x)
        return x

    async def main():
        assert await score.get(None, 1) is NO_VALUE
        assert await score("req", 1) == 1 and await score("other", 1) == 1
        assert calls == [1]
        await score.invalidate_all()
        assert await score.get(None, 1) is NO_VALUE
        assert await score(None, 1) == 1 and calls == [1, 1]
        assert await score(None, -1) == -1 and await score(None, -1) == -1
        assert calls == [1, 1, -1, -1]  # refused: never stored
        assert await score.get(None, -1) is NO_VALUE
        await score.set(99, None, 2)
        assert await score(None, 2) == 99 and await score.get(None, 2) == 99

    asyncio.run(main())
    assert score.original.__name__ == "score"


# --- a failing store ------------------------------------------------------------


def test_memcached_down_computes_and_the_new_calls_do_not_raise(regions):
    from harness import free_port

    c = regions.new(location=f"127.0.0.1:{free_port()}", BACKEND="regioncache.MemcachedCache",
                    OPTIONS={"POLL_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2})
    f = counted()
    cached = region(c.alias, namespace=ns(), should_cache=lambda r: True)(f)
    assert cached(1) == (1, 1) and cached(1) == (1, 2)  # nothing stored: computed each time
    assert cached.invalidate_all() is None
    assert cached.get(1) is NO_VALUE
    assert cached.set("x", 1) is None
    assert regioncache.NO_VALUE is NO_VALUE


# --- keys: the hot path's own binding --------------------------------------------


def test_key_binding_fast_path_is_signature_bind():
    # KeyMaker binds common signatures itself (keys.py); every call, and
    # every error, must be what inspect's Signature.bind gives.
    def plain(a, b=2, *, c=3, d):
        pass

    def method(self, x, y=None):
        pass

    def positional_only(a, /, b=1):
        pass

    def var(a, *rest, k=0, **kw):
        pass

    calls = [
        ((1,), {"d": 4}), ((1, 5), {"d": 4, "c": 9}), ((), {"a": 1, "d": 0, "b": "x"}),
        ((1, 2, 3), {"d": 4}), ((1,), {}), ((1,), {"a": 2, "d": 1}), ((1,), {"d": 1, "e": 2}),
        ((), {}), ((object(), 1), {}), ((1, 2), {"y": 3}),
    ]
    for fn in (plain, method, positional_only, var):
        fast = KeyMaker(fn)
        slow = KeyMaker(fn)
        slow.names = None  # always Signature.bind
        for args, kwargs in calls:
            try:
                want = ("ok", slow(args, kwargs))
            except TypeError as e:
                want = ("TypeError", str(e))
            try:
                got = ("ok", fast(args, kwargs))
            except TypeError as e:
                got = ("TypeError", str(e))
            assert got == want, (fn.__name__, args, kwargs)


def test_memcached_down_under_raise_errors_raises(regions):
    from harness import free_port

    c = regions.new(location=f"127.0.0.1:{free_port()}", BACKEND="regioncache.MemcachedCache",
                    OPTIONS={"POLL_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2, "RAISE_ERRORS": True})
    f = counted()
    cached = region(c.alias, namespace=ns())(f)
    for call in (lambda: cached(1), cached.invalidate_all, lambda: cached.get(1),
                 lambda: cached.set("x", 1)):
        with pytest.raises(regioncache.RegionError):
            call()
    assert f.calls == []  # the read raised before anything was computed


def test_refresher_works_again_in_a_forked_child(tmp_path):
    # A server that forks its workers after the parent used the pool (a
    # preloaded app): the child has the parent's memory, not its threads.
    from harness import run_forked

    r = stampede.Refresher(threads=1, size=4)
    go = threading.Event()
    assert r.submit("k", go.wait)  # busy in the parent while the child forks
    wait_for(lambda: r._queue.empty(), "the parent's job did not start")
    ran = tmp_path / "ran"

    def child():
        done = threading.Event()
        assert r.submit("k", lambda: (ran.write_text(str(os.getpid())), done.set()))
        assert done.wait(10)

    try:
        assert run_forked(child) == "exit 0"
    finally:
        go.set()
    assert ran.read_text().isdigit()
