"""@region("<alias>"): a function's results cached in a region.

    from regioncache import region

    @region("functions", timeout=300)
    def profile_summary(user_id, lang="en"):
        ...

    profile_summary(42)                  # computed once, then from the region
    profile_summary.invalidate(42)       # forget that result
    profile_summary.invalidate_all()     # forget every result of the function
    profile_summary.refresh(42)          # compute again now and store it
    profile_summary.get(42)              # the cached result or regioncache.NO_VALUE
    profile_summary.set(v, 42)           # store v as the result of profile_summary(42)
    profile_summary.key(42)              # the key it is stored under
    profile_summary.original             # the undecorated function (also .uncached)

The key is the function's module and qualified name with its arguments
(bound to the signature, defaults applied: f(1) and f(x=1) share a key), see
keys.py. Methods leave out self/cls unless the instance has __cache_key__().
Async functions get an async wrapper that uses the cache's a* methods.

Generations. The function has one more entry in the region, its generation:
a random token, stored without expiry. Each result is stored as
(token, fresh_until, value) with the token it was computed under, and a
call reads its result and the generation with one get_many (one round trip
on memcached). A result whose token is not the current one is a miss.
invalidate_all() writes a new random token: O(1), and seen by every process
at its next call. If the generation entry is evicted or deleted, the next
call writes a new random token, so results of before never come back (a
counter restarting at 0 could meet its old values again; a random token
cannot). Every call reads the generation: skipping it until this process
has called invalidate_all() would miss another process's call.

A missing value is computed by one caller at a time across every process
of the region (stampede.py); the others wait for it. With stale=<seconds>,
a value past its timeout is kept that much longer and served to everyone
but the one caller that recomputes it (refresh="inline"), or to everyone
while one background worker recomputes it (refresh="background").

should_cache(result) -> False: the result is returned but not stored. A
caller that computed it under the stampede lock leaves (token,) in place
of the value for REFUSED_SECONDS, so the callers waiting for that value
compute their own at once instead of waiting for the lock in turn.
"""

import functools
import inspect
import logging
import secrets
import time

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from regioncache import NO_VALUE, stampede
from regioncache.keys import KeyMaker

MISSING = stampede.MISSING
# How long a refused result's mark stays: long enough for every waiter's
# next poll (100 ms apart at most).
REFUSED_SECONDS = 1
REFRESH_MODES = ("inline", "background")


def _token():
    return secrets.token_hex(8)


# What a record read with its generation token is (_state).
FRESH, STALE, REFUSED, MISS = "fresh", "stale", "refused", "miss"


def _state(token, record):
    """(FRESH, STALE, REFUSED or MISS, the value) of a record read with the
    generation token: a value of the current token, fresh or stale; a
    refused result's mark; anything else (none, another token's) is a miss."""
    if token is not None and type(record) is tuple and record and record[0] == token:
        if len(record) != 3:
            return REFUSED, None
        until = record[1]
        if until is None or time.time() < until:
            return FRESH, record[2]
        return STALE, record[2]
    return MISS, None


def _value(token, record):
    """The value a waiter for the record takes (fresh or stale), COMPUTE_NOW
    for a refused result's mark, or MISSING."""
    state, value = _state(token, record)
    if state is MISS:
        return MISSING
    return stampede.COMPUTE_NOW if state is REFUSED else value


class _Function:
    """One decorated function: its options, its keys and its records; the
    sync and async wrappers below share it."""

    def __init__(self, func, alias, timeout, stale, lock_timeout, wait, version, namespace,
                 ignore, should_cache, refresh):
        self.func = func
        self.alias = alias
        self.timeout = timeout
        self.stale = stale or 0
        self.lock_timeout = lock_timeout
        self.wait = wait
        self.version = version
        self.should_cache = should_cache
        self.background = refresh == "background"
        self.make_key = KeyMaker(func, namespace, ignore)
        self.gen_key = self.make_key.generation_key
        self.log = logging.getLogger(f"regioncache.{alias}")

    @property
    def cache(self):
        return caches[self.alias]

    def fresh_timeout(self, cache):
        return cache.default_timeout if self.timeout is DEFAULT_TIMEOUT else self.timeout

    def disabled(self, cache):
        # timeout 0 (or negative) stores nothing: call through, no locking.
        t = self.fresh_timeout(cache)
        return t is not None and t <= 0

    def record(self, cache, token, value):
        """(what to store, its timeout)."""
        t = self.fresh_timeout(cache)
        if not self.stale or t is None or t <= 0:
            return (token, None, value), t
        return (token, time.time() + t, value), t + self.stale

    def refused(self, value):
        return self.should_cache is not None and not self.should_cache(value)

    def keys(self, key):
        return (key, self.gen_key)

    def ident(self, key):
        return (self.alias, self.version, key)

    def failed_refresh(self, key):
        self.log.error(
            "background refresh of %s failed; its stale value is served until its stale "
            "window ends", key, exc_info=True,
        )

    # -- sync -------------------------------------------------------------------

    def read(self, cache, key):
        """(generation token or None, the key's record or MISSING)."""
        got = cache.get_many(self.keys(key), self.version)
        return got.get(self.gen_key), got.get(key, MISSING)

    def generation(self, cache):
        """The current token, written if there is none; None if the store
        cannot keep one (failing): the caller computes without caching."""
        token = _token()
        # add is best effort, as the stampede lock's (a server may garble
        # add alone); get and set answer as the region's policy says.
        if stampede._call(cache.add, self.gen_key, token, None, self.version):
            return token
        found = cache.get(self.gen_key, None, self.version)
        if found is not None:
            return found
        # add did not take and there is none: add itself fails (set may not).
        failures = getattr(cache, "failures", None)
        cache.set(self.gen_key, token, None, self.version)
        if failures is not None and cache.failures != failures:
            return None
        return token

    def store(self, cache, key, token, value, mark_refused):
        if self.refused(value):
            if mark_refused:
                cache.set(key, (token,), REFUSED_SECONDS, self.version)
            return
        stored, t = self.record(cache, token, value)
        cache.set(key, stored, t, self.version)

    def compute(self, cache, key, token, args, kwargs):
        """A miss: computed once across the region's processes."""
        if token is None:
            token = self.generation(cache)
            if token is None:
                return self.func(*args, **kwargs)
        current = [token]  # the newest token seen: what the result is stored under

        def read():
            tok, stored = self.read(cache, key)
            if tok is None:
                return MISSING
            current[0] = tok
            return _value(tok, stored)

        return stampede.compute_once(
            cache, key, lambda: self.func(*args, **kwargs), self.version,
            lambda v: self.store(cache, key, current[0], v, True),
            self.lock_timeout, self.wait, read,
        )

    def recompute_stale(self, cache, key, args, kwargs):
        """Recomputes a stale value under the key's lock; MISSING if another
        caller holds the lock (or the value is gone); the new value, or the
        fresh one another caller stored meanwhile."""
        release = stampede.try_lock(cache, key, self.version, self.lock_timeout)
        if release is None:
            return MISSING
        try:
            token, stored = self.read(cache, key)
            if token is None:
                return MISSING
            state, fresh = _state(token, stored)
            if state is FRESH:  # another process refreshed it just now
                return fresh
            value = self.func(*args, **kwargs)
            self.store(cache, key, token, value, False)
            return value
        finally:
            release()

    def not_fresh(self, cache, key, state, token, value, args, kwargs):
        """A call whose read found no fresh value (state: _state's)."""
        if state is STALE:
            return self.stale_value(cache, key, value, args, kwargs)
        if state is REFUSED:  # a refused result's mark: compute now, no lock
            value = self.func(*args, **kwargs)
            self.store(cache, key, token, value, False)
            return value
        return self.compute(cache, key, token, args, kwargs)

    def stale_value(self, cache, key, value, args, kwargs):
        if self.background:
            def job():
                try:
                    self.recompute_stale(self.cache, key, args, kwargs)
                except Exception:
                    self.failed_refresh(key)

            stampede.refresher.submit(self.ident(key), job)
            return value
        new = self.recompute_stale(cache, key, args, kwargs)
        return value if new is MISSING else new

    # -- async ------------------------------------------------------------------

    async def aread(self, cache, key):
        got = await cache.aget_many(self.keys(key), self.version)
        return got.get(self.gen_key), got.get(key, MISSING)

    async def ageneration(self, cache):
        token = _token()
        if await stampede._acall(cache.aadd, self.gen_key, token, None, self.version):
            return token
        found = await cache.aget(self.gen_key, None, self.version)
        if found is not None:
            return found
        failures = getattr(cache, "failures", None)
        await cache.aset(self.gen_key, token, None, self.version)
        if failures is not None and cache.failures != failures:
            return None
        return token

    async def astore(self, cache, key, token, value, mark_refused):
        if self.refused(value):
            if mark_refused:
                await cache.aset(key, (token,), REFUSED_SECONDS, self.version)
            return
        stored, t = self.record(cache, token, value)
        await cache.aset(key, stored, t, self.version)

    async def acompute(self, cache, key, token, args, kwargs):
        if token is None:
            token = await self.ageneration(cache)
            if token is None:
                return await self.func(*args, **kwargs)
        current = [token]

        async def read():
            tok, stored = await self.aread(cache, key)
            if tok is None:
                return MISSING
            current[0] = tok
            return _value(tok, stored)

        async def store(v):
            await self.astore(cache, key, current[0], v, True)

        return await stampede.acompute_once(
            cache, key, lambda: self.func(*args, **kwargs), self.version, store,
            self.lock_timeout, self.wait, read,
        )

    async def arecompute_stale(self, cache, key, args, kwargs):
        release = await stampede.atry_lock(cache, key, self.version, self.lock_timeout)
        if release is None:
            return MISSING
        try:
            token, stored = await self.aread(cache, key)
            if token is None:
                return MISSING
            state, fresh = _state(token, stored)
            if state is FRESH:  # another process refreshed it just now
                return fresh
            value = await self.func(*args, **kwargs)
            await self.astore(cache, key, token, value, False)
            return value
        finally:
            await release()

    async def anot_fresh(self, cache, key, state, token, value, args, kwargs):
        if state is STALE:
            return await self.astale_value(cache, key, value, args, kwargs)
        if state is REFUSED:
            value = await self.func(*args, **kwargs)
            await self.astore(cache, key, token, value, False)
            return value
        return await self.acompute(cache, key, token, args, kwargs)

    async def astale_value(self, cache, key, value, args, kwargs):
        if self.background:
            async def job():
                try:
                    await self.arecompute_stale(self.cache, key, args, kwargs)
                except Exception:
                    self.failed_refresh(key)

            stampede.spawn_task(self.ident(key), job)
            return value
        new = await self.arecompute_stale(cache, key, args, kwargs)
        return value if new is MISSING else new


def region(alias, timeout=DEFAULT_TIMEOUT, *, stale=None, refresh="inline", namespace=None,
           version=None, ignore=(), should_cache=None,
           lock_timeout=stampede.DEFAULT_LOCK_TIMEOUT, wait=stampede.DEFAULT_WAIT):
    """Caches the decorated function's results in the region CACHES[alias].

    timeout: seconds (None: never expire; default: the region's TIMEOUT).
    stale: seconds a value is kept past its timeout and served while one
    caller recomputes it; refresh="background": while one worker thread (a
    task, for a coroutine function) recomputes it, so no caller waits.
    namespace: the key's name part instead of module.qualname (keep keys
    when moving a function). ignore: argument names left out of the key.
    should_cache: callable(result) -> bool, False: return it, do not store
    it. lock_timeout, wait: see regioncache.stampede.
    """
    if not isinstance(alias, str):
        raise TypeError(
            "region() takes the CACHES alias of the region, as in @region('functions'); "
            f"got {alias!r}"
        )
    if stale is not None and stale < 0:
        raise ValueError(f"region({alias!r}): stale must be >= 0 seconds, not {stale!r}")
    if refresh not in REFRESH_MODES:
        raise ValueError(
            f"region({alias!r}): refresh must be 'inline' or 'background', not {refresh!r}"
        )
    if refresh == "background" and not stale:
        raise ValueError(
            f"region({alias!r}): refresh='background' serves a stale value while it "
            "recomputes: give stale=<seconds> too"
        )
    if should_cache is not None and not callable(should_cache):
        raise TypeError(
            f"region({alias!r}): should_cache must be a callable(result) -> bool, "
            f"not {should_cache!r}"
        )

    def decorate(func):
        fn = _Function(func, alias, timeout, stale, lock_timeout, wait, version, namespace,
                       ignore, should_cache, refresh)
        if inspect.iscoroutinefunction(func):
            wrapper = _async_wrapper(fn)
        else:
            wrapper = _sync_wrapper(fn)
        make_key = fn.make_key
        wrapper.key = lambda *a, **kw: make_key(a, kw)
        wrapper.region = alias
        wrapper.original = func
        wrapper.uncached = func
        return wrapper

    return decorate


def _sync_wrapper(fn):
    func, make_key, gen_key, version = fn.func, fn.make_key, fn.gen_key, fn.version

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        if fn.disabled(cache):
            return func(*args, **kwargs)
        # The hot path: one get_many, the token compared, the value returned.
        got = cache.get_many((key, gen_key), version)
        token = got.get(gen_key)
        state, value = _state(token, got.get(key))
        if state is FRESH:
            return value
        return fn.not_fresh(cache, key, state, token, value, args, kwargs)

    def invalidate(*args, **kwargs):
        return fn.cache.delete(make_key(args, kwargs), version)

    def invalidate_all():
        fn.cache.set(gen_key, _token(), None, version)

    def refresh(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        token = fn.generation(cache)
        value = func(*args, **kwargs)
        if token is not None:
            fn.store(cache, key, token, value, False)
        return value

    def get(*args, **kwargs):
        state, value = _state(*fn.read(fn.cache, make_key(args, kwargs)))
        return value if state is FRESH or state is STALE else NO_VALUE

    def set_(value, *args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        if fn.disabled(cache):
            return
        token = fn.generation(cache)
        if token is not None:
            stored, t = fn.record(cache, token, value)
            cache.set(key, stored, t, version)

    wrapper.invalidate = invalidate
    wrapper.invalidate_all = invalidate_all
    wrapper.refresh = refresh
    wrapper.get = get
    wrapper.set = set_
    return wrapper


def _async_wrapper(fn):
    func, make_key, gen_key, version = fn.func, fn.make_key, fn.gen_key, fn.version

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        if fn.disabled(cache):
            return await func(*args, **kwargs)
        got = await cache.aget_many((key, gen_key), version)
        token = got.get(gen_key)
        state, value = _state(token, got.get(key))
        if state is FRESH:
            return value
        return await fn.anot_fresh(cache, key, state, token, value, args, kwargs)

    async def invalidate(*args, **kwargs):
        return await fn.cache.adelete(make_key(args, kwargs), version)

    async def invalidate_all():
        await fn.cache.aset(gen_key, _token(), None, version)

    async def refresh(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        token = await fn.ageneration(cache)
        value = await func(*args, **kwargs)
        if token is not None:
            await fn.astore(cache, key, token, value, False)
        return value

    async def get(*args, **kwargs):
        state, value = _state(*await fn.aread(fn.cache, make_key(args, kwargs)))
        return value if state is FRESH or state is STALE else NO_VALUE

    async def set_(value, *args, **kwargs):
        key = make_key(args, kwargs)
        cache = fn.cache
        if fn.disabled(cache):
            return
        token = await fn.ageneration(cache)
        if token is not None:
            stored, t = fn.record(cache, token, value)
            await cache.aset(key, stored, t, version)

    wrapper.invalidate = invalidate
    wrapper.invalidate_all = invalidate_all
    wrapper.refresh = refresh
    wrapper.get = get
    wrapper.set = set_
    return wrapper
