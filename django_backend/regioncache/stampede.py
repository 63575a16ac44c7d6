"""Stampede protection: when a value is missing, one caller computes it.

The lock is an entry in the region itself, taken with the store's atomic
add (``cache.add(key + LOCK_SUFFIX, token, lock_timeout)``): under the shared
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

With ``stale`` (the decorator's option), a value past its fresh life is kept
``stale`` seconds longer: one caller recomputes it while the others get the
previous value at once, without waiting.
"""

import asyncio
import time
import uuid

LOCK_SUFFIX = ":regioncache-lock"
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_WAIT = 10.0

_MISSING = object()


class Envelope(tuple):
    """(fresh_until, value): a value stored with a soft expiry (stale mode)."""

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


def _release(cache, lock_key, token, version):
    # Remove the lock only if it is still ours: a lock that expired while
    # we computed may have been taken by another caller since.
    if cache.get(lock_key, None, version) == token:
        cache.delete(lock_key, version)


async def _arelease(cache, lock_key, token, version):
    if await cache.aget(lock_key, None, version) == token:
        await cache.adelete(lock_key, version)


def compute_once(cache, key, compute, timeout, version, store,
                 lock_timeout=DEFAULT_LOCK_TIMEOUT, wait=DEFAULT_WAIT):
    """The value of key, computed by compute() in at most one caller at a
    time (see the module's doc). store(value) writes a computed value."""
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    for delay in _delays():
        if cache.add(lock_key, token, lock_timeout, version):
            try:
                value = cache.get(key, _MISSING, version)
                if value is _MISSING:
                    value = compute()
                    store(value)
                return value
            finally:
                _release(cache, lock_key, token, version)
        value = cache.get(key, _MISSING, version)
        if value is not _MISSING:
            return value
        if time.monotonic() >= deadline:
            value = compute()
            store(value)
            return value
        time.sleep(delay)


async def acompute_once(cache, key, compute, timeout, version, store,
                        lock_timeout=DEFAULT_LOCK_TIMEOUT, wait=DEFAULT_WAIT):
    """compute_once for coroutines: compute and store are async."""
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    for delay in _delays():
        if await cache.aadd(lock_key, token, lock_timeout, version):
            try:
                value = await cache.aget(key, _MISSING, version)
                if value is _MISSING:
                    value = await compute()
                    await store(value)
                return value
            finally:
                await _arelease(cache, lock_key, token, version)
        value = await cache.aget(key, _MISSING, version)
        if value is not _MISSING:
            return value
        if time.monotonic() >= deadline:
            value = await compute()
            await store(value)
            return value
        await asyncio.sleep(delay)


def try_lock(cache, key, version, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    """Takes key's lock if free: returns a release() callable, or None."""
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    if cache.add(lock_key, token, lock_timeout, version):
        return lambda: _release(cache, lock_key, token, version)
    return None


async def atry_lock(cache, key, version, lock_timeout=DEFAULT_LOCK_TIMEOUT):
    lock_key = key + LOCK_SUFFIX
    token = uuid.uuid4().hex
    if await cache.aadd(lock_key, token, lock_timeout, version):
        return lambda: _arelease(cache, lock_key, token, version)
    return None
