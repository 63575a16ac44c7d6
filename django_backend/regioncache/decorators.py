"""@region("<alias>"): a function's results cached in a region.

    from regioncache import region

    @region("functions", timeout=300)
    def profile_summary(user_id, lang="en"):
        ...

    profile_summary(42)                  # computed once, then from the region
    profile_summary.invalidate(42)       # forget that result
    profile_summary.refresh(42)          # compute again now and store it
    profile_summary.key(42)              # the key it is stored under

The key is the function's module and qualified name with its arguments
(bound to the signature, defaults applied: f(1) and f(x=1) share a key), see
keys.py. Methods leave out self/cls unless the instance has __cache_key__().
Async functions get an async wrapper that uses the cache's a* methods.

A missing value is computed by one caller at a time across every process
of the region (stampede.py); the others wait for it. With stale=<seconds>,
a value past its timeout is kept that much longer and served to everyone
but the one caller that recomputes it.
"""

import functools
import inspect
import time

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from regioncache import stampede
from regioncache.keys import KeyMaker

_MISSING = object()


class _Policy:
    def __init__(self, alias, timeout, stale, lock_timeout, wait, version):
        if stale is not None and stale < 0:
            raise ValueError(f"region({alias!r}): stale must be >= 0 seconds, not {stale!r}")
        self.alias = alias
        self.timeout = timeout
        self.stale = stale or 0
        self.lock_timeout = lock_timeout
        self.wait = wait
        self.version = version

    @property
    def cache(self):
        return caches[self.alias]

    def fresh_timeout(self, cache):
        t = cache.default_timeout if self.timeout is DEFAULT_TIMEOUT else self.timeout
        return t

    def disabled(self, cache):
        # timeout 0 (or negative) stores nothing: call through, no locking.
        t = self.fresh_timeout(cache)
        return t is not None and t <= 0

    def wrap(self, cache, value):
        """(what to store, its timeout)."""
        t = self.fresh_timeout(cache)
        if not self.stale or t is None or t <= 0:
            return value, t
        return stampede.Envelope(time.time() + t, value), t + self.stale

    def unwrap(self, stored):
        """(value, is_fresh)."""
        if isinstance(stored, stampede.Envelope):
            fresh_until, value = stored
            return value, time.time() < fresh_until
        return stored, True


def region(alias, timeout=DEFAULT_TIMEOUT, *, stale=None, namespace=None, version=None,
           lock_timeout=stampede.DEFAULT_LOCK_TIMEOUT, wait=stampede.DEFAULT_WAIT):
    """Caches the decorated function's results in the region CACHES[alias].

    timeout: seconds (None: never expire; default: the region's TIMEOUT).
    stale: seconds a value is kept past its timeout and served while one
    caller recomputes it. namespace: the key's name part instead of
    module.qualname (keep keys when moving a function). lock_timeout, wait:
    see regioncache.stampede.
    """
    if not isinstance(alias, str):
        raise TypeError(
            "region() takes the CACHES alias of the region, as in @region('functions'); "
            f"got {alias!r}"
        )
    policy = _Policy(alias, timeout, stale, lock_timeout, wait, version)

    def decorate(func):
        make_key = KeyMaker(func, namespace)
        if inspect.iscoroutinefunction(func):
            wrapper = _async_wrapper(func, make_key, policy)
        else:
            wrapper = _sync_wrapper(func, make_key, policy)
        wrapper.key = lambda *a, **kw: make_key(a, kw)
        wrapper.region = alias
        wrapper.uncached = func
        return wrapper

    return decorate


def _sync_wrapper(func, make_key, p):
    def store_fn(cache, key):
        def store(value):
            stored, t = p.wrap(cache, value)
            cache.set(key, stored, t, p.version)

        return store

    def compute_and_store(cache, key, args, kwargs):
        value = func(*args, **kwargs)
        store_fn(cache, key)(value)
        return value

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = p.cache
        if p.disabled(cache):
            return func(*args, **kwargs)
        stored = cache.get(key, _MISSING, p.version)
        if stored is not _MISSING:
            value, fresh = p.unwrap(stored)
            if fresh:
                return value
            release = stampede.try_lock(cache, key, p.version, p.lock_timeout)
            if release is None:
                return value  # another caller is recomputing: serve the previous value
            try:
                return compute_and_store(cache, key, args, kwargs)
            finally:
                release()
        stored = stampede.compute_once(
            cache, key, lambda: func(*args, **kwargs), p.version,
            store_fn(cache, key), p.lock_timeout, p.wait,
        )
        return p.unwrap(stored)[0]

    def invalidate(*args, **kwargs):
        return p.cache.delete(make_key(args, kwargs), p.version)

    def refresh(*args, **kwargs):
        return compute_and_store(p.cache, make_key(args, kwargs), args, kwargs)

    wrapper.invalidate = invalidate
    wrapper.refresh = refresh
    return wrapper


def _async_wrapper(func, make_key, p):
    def store_fn(cache, key):
        async def store(value):
            stored, t = p.wrap(cache, value)
            await cache.aset(key, stored, t, p.version)

        return store

    async def compute_and_store(cache, key, args, kwargs):
        value = await func(*args, **kwargs)
        await store_fn(cache, key)(value)
        return value

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        key = make_key(args, kwargs)
        cache = p.cache
        if p.disabled(cache):
            return await func(*args, **kwargs)
        stored = await cache.aget(key, _MISSING, p.version)
        if stored is not _MISSING:
            value, fresh = p.unwrap(stored)
            if fresh:
                return value
            release = await stampede.atry_lock(cache, key, p.version, p.lock_timeout)
            if release is None:
                return value
            try:
                return await compute_and_store(cache, key, args, kwargs)
            finally:
                await release()
        stored = await stampede.acompute_once(
            cache, key, lambda: func(*args, **kwargs), p.version,
            store_fn(cache, key), p.lock_timeout, p.wait,
        )
        return p.unwrap(stored)[0]

    async def invalidate(*args, **kwargs):
        return await p.cache.adelete(make_key(args, kwargs), p.version)

    async def refresh(*args, **kwargs):
        return await compute_and_store(p.cache, make_key(args, kwargs), args, kwargs)

    wrapper.invalidate = invalidate
    wrapper.refresh = refresh
    return wrapper
