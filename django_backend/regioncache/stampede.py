"""Stampede protection: when a value is missing, one caller computes it.

The lock is an entry in the region itself, taken with the store's atomic
add (``cache.add(key + LOCK_SUFFIX, ..., lock_timeout)``): under the shared
memory segment's mutex, with an exclusive create in the file store, with
memcached's ``add`` command. So it holds across every process (and, for
memcached, every host) that uses the region.

The caller that takes the lock checks the value once more, computes it,
stores it and releases the lock. The others poll for the value (5 ms,
doubling up to 100 ms) and return it once it is there. If the lock holder
dies, its lock expires after ``lock_timeout`` seconds and a waiter takes
over; a waiter that has waited ``wait`` seconds computes the value itself,
so a caller is never held up longer than that (a slow computation then runs
twice rather than stalling a request without bound).

Only a lock held by someone else means "wait". When add() does not take
the lock, the lock is read back to tell why:

- it carries this caller's token: the add was applied but its reply was
  lost (a timeout); the caller holds the lock;
- it is not there and the store answered both calls (the region's
  `failures` count did not move): its holder released it in between; the
  caller waits as for a held lock (it reads the value, then tries again);
- it is not there and the store failed, or it cannot be read, or add()
  raised (a region with RAISE_ERRORS): the store is failing, and waiting on
  it would only stall the request: the caller computes now, without the lock;
- it is held by another caller: wait, as above.

A lock carries its owner's token and is written in two steps: add() stores
``pending <time> <token>``, and the owner, once add() has said yes, confirms
it as ``held <token>``. An add whose reply timed out may still be applied by
the server later (its request was in the server's socket buffer): that lock
stays "pending" with nobody to confirm it, and a lock pending for more than
PENDING_GRACE seconds is treated as abandoned: the next caller removes it
and takes the lock, instead of waiting for it. The caller whose acquire
failed also removes the lock on its way out if it finds its own token there.

With ``stale`` (the decorator's option), a value past its fresh life is kept
``stale`` seconds longer: one caller recomputes it while the others get the
previous value at once, without waiting. With ``refresh="background"`` no
caller waits at all: a stale read hands the recomputation to this process's
Refresher (a few daemon threads) or, for a coroutine, to a task on the
running loop (spawn_task); whoever runs it takes the key's lock with
try_lock, so one worker across every process recomputes it.

compute_once's ``read()`` (default: ``cache.get(key)``) is how the lock
holder and the waiters look for the value; it may answer MISSING, or
COMPUTE_NOW when the value will never come (the holder computed a result it
chose not to store): the waiter computes for itself at once.
"""

import asyncio
import logging
import os
import queue
import threading
import time
import uuid

LOCK_SUFFIX = ":regioncache-lock"
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_WAIT = 10.0
# A lock still "pending" this long after its add was sent was applied late
# (its owner gave up on the reply) or its owner died between add and confirm.
PENDING_GRACE = 2.0
# Rounds of add-then-read in one acquire (an abandoned lock removed is tried
# again).
ACQUIRE_TRIES = 3

_MISSING = object()
MISSING = _MISSING       # what a read() answers for "no value yet"
COMPUTE_NOW = object()   # what a read() answers for "no value will come"

# What an acquire found.
HELD = "held"        # this caller holds the lock
BUSY = "busy"        # another caller holds it: wait
FAILED = "failed"    # the store could not take or show the lock: compute now


class Envelope(tuple):
    """(fresh_until, value): how @region stored a stale-mode value before
    generations (decorators.py). Kept so that such entries still load (as
    misses: they carry no generation token) instead of failing to unpickle."""

    __slots__ = ()

    def __new__(cls, fresh_until, value):
        return super().__new__(cls, (fresh_until, value))

    def __reduce__(self):
        return (Envelope, tuple(self))


def _delays():
    delay = 0.005
    while True:
        yield delay
        delay = min(delay * 2, 0.1)


def _pending(token):
    return f"pending {time.time():.6f} {token}"


def _parse(value):
    """(state, token, sent_at) of a stored lock value; state None if the
    value is not a lock this module wrote."""
    if not isinstance(value, str):
        return None, None, None
    parts = value.split(" ")
    if len(parts) == 3 and parts[0] == "pending":
        try:
            return "pending", parts[2], float(parts[1])
        except ValueError:
            return None, None, None
    if len(parts) == 2 and parts[0] == "held":
        return "held", parts[1], None
    return None, None, None


def _classify(value, token):
    """HELD (ours), BUSY (someone else's), FAILED (absent or unreadable) or
    'abandoned' for a lock read back after an add that did not take it."""
    if value is _MISSING:
        return FAILED
    state, owner, sent_at = _parse(value)
    if state is None:
        return BUSY  # a lock value of another version of this module: respect it
    if owner == token:
        return HELD
    if state == "pending" and time.time() - sent_at > PENDING_GRACE:
        return "abandoned"
    return BUSY


# ---- sync ---------------------------------------------------------------------

def _call(fn, *args, default=None):
    # A lock operation that raises (a RAISE_ERRORS region whose server fails)
    # is a failing store, not the caller's error.
    try:
        return fn(*args)
    except Exception:
        return default


def _answered(cache, failures_before, attempt):
    """After an add that did not take the lock and a read that found none:
    True if the store answered both (the lock was released in between, so
    try again), False if it failed (compute now). A region's `failures`
    counter tells; without one, one more try."""
    if failures_before is None:
        return attempt == 0
    return getattr(cache, "failures", None) == failures_before


def _acquire(cache, lock_key, token, lock_timeout, version):
    for attempt in range(ACQUIRE_TRIES):
        failures = getattr(cache, "failures", None)
        added = _call(cache.add, lock_key, _pending(token), lock_timeout, version)
        if added:
            _call(cache.set, lock_key, f"held {token}", lock_timeout, version)
            return HELD
        value = _call(cache.get, lock_key, _MISSING, version, default=_MISSING)
        state = _classify(value, token)
        if state == HELD:
            _call(cache.set, lock_key, f"held {token}", lock_timeout, version)
            return HELD
        if state == "abandoned":
            # Remove it if it is still the same lock, then try again.
            if _call(cache.get, lock_key, _MISSING, version, default=_MISSING) == value:
                _call(cache.delete, lock_key, version)
            continue
        if state == FAILED and added is False and _answered(cache, failures, attempt):
            # Released between our add and our read: its holder has just
            # stored the value, or the lock is free next round. Wait as for
            # a held lock (the caller reads the value before trying again).
            return BUSY
        return state
    return FAILED


def _release(cache, lock_key, token, version):
    # Remove the lock only if it is still ours: a lock that expired while
    # we computed may have been taken by another caller since. Also run
    # after a failed acquire: the server may have applied it meanwhile.
    value = _call(cache.get, lock_key, _MISSING, version, default=_MISSING)
    if _parse(value)[1] == token:
        _call(cache.delete, lock_key, version)


def _count_wait(cache):
    # A caller that found another's lock and waits: the region's
    # stampede_waits counter (stats(), regioncache.metrics).
    count = getattr(cache, "_count_stampede_wait", None)
    if count is not None:
        count()


def compute_once(cache, key, compute, version, store,
                 lock_timeout=DEFAULT_LOCK_TIMEOUT, wait=DEFAULT_WAIT, read=None):
    """The value of key, computed by compute() in at most one caller at a
    time (see the module's doc). store(value) writes a computed value;
    read() looks for it (MISSING, COMPUTE_NOW or the value)."""
    if read is None:
        def read():
            return cache.get(key, _MISSING, version)
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    waited = False
    for delay in _delays():
        state = _acquire(cache, lock_key, token, lock_timeout, version)
        if state == BUSY and not waited:
            waited = True
            _count_wait(cache)
        if state == HELD or state == FAILED:
            try:
                value = read() if state == HELD else _MISSING
                if value is _MISSING or value is COMPUTE_NOW:
                    value = compute()
                    store(value)
                return value
            finally:
                _release(cache, lock_key, token, version)
        value = read()
        if value is COMPUTE_NOW or (value is _MISSING and time.monotonic() >= deadline):
            value = compute()
            store(value)
            return value
        if value is not _MISSING:
            return value
        time.sleep(delay)


def try_lock(cache, key, version, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """Takes key's lock unless another caller holds it: returns a release()
    callable (also when the store could not take the lock: compute now), or
    None when another caller holds it."""
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    if _acquire(cache, lock_key, token, lock_timeout, version) == BUSY:
        return None
    return lambda: _release(cache, lock_key, token, version)


# ---- async --------------------------------------------------------------------

async def _acall(fn, *args, default=None):
    try:
        return await fn(*args)
    except Exception:
        return default


async def _aacquire(cache, lock_key, token, lock_timeout, version):
    for attempt in range(ACQUIRE_TRIES):
        failures = getattr(cache, "failures", None)
        added = await _acall(cache.aadd, lock_key, _pending(token), lock_timeout, version)
        if added:
            await _acall(cache.aset, lock_key, f"held {token}", lock_timeout, version)
            return HELD
        value = await _acall(cache.aget, lock_key, _MISSING, version, default=_MISSING)
        state = _classify(value, token)
        if state == HELD:
            await _acall(cache.aset, lock_key, f"held {token}", lock_timeout, version)
            return HELD
        if state == "abandoned":
            if await _acall(cache.aget, lock_key, _MISSING, version, default=_MISSING) == value:
                await _acall(cache.adelete, lock_key, version)
            continue
        if state == FAILED and added is False and _answered(cache, failures, attempt):
            return BUSY
        return state
    return FAILED


async def _arelease(cache, lock_key, token, version):
    value = await _acall(cache.aget, lock_key, _MISSING, version, default=_MISSING)
    if _parse(value)[1] == token:
        await _acall(cache.adelete, lock_key, version)


async def acompute_once(cache, key, compute, version, store,
                        lock_timeout=DEFAULT_LOCK_TIMEOUT, wait=DEFAULT_WAIT, read=None):
    """compute_once for coroutines: compute, store and read are async."""
    if read is None:
        async def read():
            return await cache.aget(key, _MISSING, version)
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    waited = False
    for delay in _delays():
        state = await _aacquire(cache, lock_key, token, lock_timeout, version)
        if state == BUSY and not waited:
            waited = True
            _count_wait(cache)
        if state == HELD or state == FAILED:
            try:
                value = await read() if state == HELD else _MISSING
                if value is _MISSING or value is COMPUTE_NOW:
                    value = await compute()
                    await store(value)
                return value
            finally:
                await _arelease(cache, lock_key, token, version)
        value = await read()
        if value is COMPUTE_NOW or (value is _MISSING and time.monotonic() >= deadline):
            value = await compute()
            await store(value)
            return value
        if value is not _MISSING:
            return value
        await asyncio.sleep(delay)


async def atry_lock(cache, key, version, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    if await _aacquire(cache, lock_key, token, lock_timeout, version) == BUSY:
        return None
    return lambda: _arelease(cache, lock_key, token, version)


# ---- background refresh -------------------------------------------------------

REFRESH_THREADS = 4    # daemon threads per process
REFRESH_QUEUE = 1000   # jobs waiting at most; beyond, a stale read hands none over

_log = logging.getLogger("regioncache")


class Refresher:
    """A small pool of daemon threads that run refresh jobs, one job per
    ident at a time in this process (a key already queued or running is not
    queued again). A full queue drops the job: the value stays stale and the
    next stale read offers it again. Threads start on first use and again in
    a forked child (a fork keeps the queue's lock, not the threads)."""

    def __init__(self, threads=REFRESH_THREADS, size=REFRESH_QUEUE):
        self._threads = threads
        self._size = size
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self):
        self._lock = threading.Lock()
        self._queue = queue.Queue(self._size)
        self._busy = set()
        self._started = 0

    def submit(self, ident, job):
        """Queues job() unless ident is queued or running here; True if queued."""
        with self._lock:
            if ident in self._busy:
                return False
            try:
                self._queue.put_nowait((ident, job))
            except queue.Full:
                return False
            self._busy.add(ident)
            if self._started < self._threads:
                self._started += 1
                threading.Thread(target=self._work, args=(self._queue,),
                                 name="regioncache-refresh", daemon=True).start()
        return True

    def _work(self, jobs):
        while True:
            ident, job = jobs.get()
            try:
                job()
            except BaseException:  # a job logs its own errors; never lose the thread
                _log.exception("regioncache: a background refresh job failed")
            finally:
                with self._lock:
                    self._busy.discard(ident)


refresher = Refresher()

_tasks = {}  # ident -> the running task (asyncio keeps only weak references)


def spawn_task(ident, make_coro):
    """Starts make_coro() as a task on the running loop unless ident's task
    is still running there; True if started."""
    loop = asyncio.get_running_loop()
    task = _tasks.get(ident)
    if task is not None and not task.done() and task.get_loop() is loop:
        return False
    task = loop.create_task(make_coro())
    _tasks[ident] = task
    task.add_done_callback(lambda t: _tasks.get(ident) is t and _tasks.pop(ident, None))
    return True
