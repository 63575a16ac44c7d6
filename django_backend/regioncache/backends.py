"""Django cache backends on regioncache's native stores."""

import hashlib
import hmac
import inspect

from asgiref.sync import sync_to_async

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    CacheKeyWarning,
    default_key_func,
)
from django.core.exceptions import ImproperlyConfigured

from regioncache import _native, stampede
from regioncache.locks import Lock
from regioncache.redis_api import LISTINGS, READS, WRITES, RedisAPI
from regioncache.spec import store_spec

_MISSING = object()

_native._configure(
    default_timeout=DEFAULT_TIMEOUT,
    default_key_func=default_key_func,
    key_warning=CacheKeyWarning,
)


def _mac_key(secret):
    # The MAC key is derived from the secret, never the secret itself (as
    # Django's salted_hmac does), so the same SECRET_KEY signs nothing else
    # of Django's with it.
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, b"regioncache.values.v1", hashlib.sha256).digest()


def _policy(alias, options):
    """The failure-policy and signing OPTIONS (POLICY_OPTIONS; the store's
    own come from regioncache.spec): returns (raise_errors, signing keys or
    None)."""
    raise_errors = options.get("RAISE_ERRORS", False)
    if not isinstance(raise_errors, bool):
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}]: OPTIONS['RAISE_ERRORS'] must be True or False, "
            f"not {raise_errors!r}"
        )
    key = options.get("SIGNING_KEY")
    fallbacks = options.get("SIGNING_KEY_FALLBACKS", ())
    with_secret = options.get("SIGN_WITH_SECRET_KEY", False)
    if not isinstance(with_secret, bool):
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}]: OPTIONS['SIGN_WITH_SECRET_KEY'] must be True or False"
        )
    if with_secret:
        if key is not None or "SIGNING_KEY_FALLBACKS" in options:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}]: OPTIONS SIGN_WITH_SECRET_KEY uses SECRET_KEY and "
                f"SECRET_KEY_FALLBACKS; do not give SIGNING_KEY or SIGNING_KEY_FALLBACKS too"
            )
        from django.conf import settings

        key = settings.SECRET_KEY
        fallbacks = list(getattr(settings, "SECRET_KEY_FALLBACKS", ()))
        if not key:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}]: OPTIONS SIGN_WITH_SECRET_KEY needs a SECRET_KEY"
            )
    if key is None:
        if "SIGNING_KEY_FALLBACKS" in options:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}]: OPTIONS['SIGNING_KEY_FALLBACKS'] needs a SIGNING_KEY"
            )
        return raise_errors, None
    if not isinstance(fallbacks, (list, tuple)):
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}]: OPTIONS['SIGNING_KEY_FALLBACKS'] must be a list of keys"
        )
    keys = []
    for name, k in [("SIGNING_KEY", key)] + [("SIGNING_KEY_FALLBACKS", f) for f in fallbacks]:
        if not isinstance(k, (str, bytes)) or not k:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}]: OPTIONS[{name!r}] must be a non-empty str or bytes"
            )
        keys.append(_mac_key(k))
    return raise_errors, keys


def _find_alias(backend_cls, location, params):
    """The CACHES alias these params came from, for messages (else LOCATION)."""
    try:
        from django.conf import settings

        caches = settings.CACHES
    except Exception:  # settings not configured: a direct construction
        return location
    names = {f"{backend_cls.__module__}.{backend_cls.__qualname__}"}
    names.update(f"regioncache.{base.__name__}" for base in backend_cls.__mro__)
    found = [
        alias
        for alias, conf in caches.items()
        if conf.get("BACKEND") in names
        and conf.get("LOCATION", "") == location
        and conf.get("OPTIONS", {}) == params.get("OPTIONS", {})
    ]
    return found[0] if len(found) == 1 else location


class _RegionCache(RedisAPI, _native.Cache, BaseCache):
    """Common base: Django's BaseCache contract, done by the native type.

    get/set/add/touch/delete/get_many/set_many/delete_many/has_key/incr/decr
    /clear/close are the native methods; get_or_set, incr_version and
    decr_version are Django's own (they call the native ones); ttl, expire,
    keys, delete_pattern & co. are django-redis's (regioncache.redis_api).
    """

    store_kind = None

    def __init__(self, location, params):
        BaseCache.__init__(self, params)
        # The alias is looked up with LOCATION and OPTIONS as configured.
        alias = _find_alias(type(self), location, params)
        self.alias = alias
        self._spec = spec = store_spec(alias, {**params, "LOCATION": location},
                                       kind=self.store_kind)
        raise_errors, signing_keys = _policy(alias, params.get("OPTIONS") or {})
        try:
            # Under the default policy a store that cannot be opened now
            # (a directory not there yet, say) answers as a failed region
            # and is opened again by a later call; bad OPTIONS always raise.
            self._open(spec.kind, spec.location, str(alias), spec.options, lazy=not raise_errors)
            self._set_policy(raise_errors, signing_keys)
        except _native.ConfigError as e:
            raise ImproperlyConfigured(f"CACHES[{alias!r}]: {e}") from None

    def __repr__(self):
        return f"<{type(self).__name__} {self.alias!r} at {self.store_location!r}>"

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        """Django's get_or_set; a callable default is computed by one caller
        at a time across every process of the region (regioncache.stampede),
        the others wait for its value instead of computing it too."""
        if not callable(default):
            return BaseCache.get_or_set(self, key, default, timeout, version)
        failures = self.failures
        value = self.get(key, _MISSING, version)
        if value is not _MISSING:
            return value
        if self.failures != failures:
            # The region failed (a miss by the failure policy): its lock
            # could not be taken either, so compute here rather than wait.
            value = default()
            self.set(key, value, timeout, version)
            return value
        return stampede.compute_once(
            self, key, default, version,
            lambda v: self.set(key, v, timeout, version),
        )

    def lock(self, key, version=None, timeout=None, sleep=0.1, blocking=True,
             blocking_timeout=None, thread_local=True):
        """django-redis's cache.lock(): a regioncache.locks.Lock on the entry
        under key (README, "Locks")."""
        return Lock(self, key, version, timeout, sleep, blocking, blocking_timeout, thread_local)

    async def aget_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        if not callable(default):
            return await BaseCache.aget_or_set(self, key, default, timeout, version)
        value = await self.aget(key, _MISSING, version)
        if value is not _MISSING:
            return value

        async def compute():
            result = default()
            if inspect.isawaitable(result):
                result = await result
            return result

        async def store(v):
            await self.aset(key, v, timeout, version)

        return await stampede.acompute_once(self, key, compute, version, store)

    # The async API answers in the calling coroutine: the store works in RAM
    # (no thread hop, unlike BaseCache's sync_to_async defaults).
    async def aget(self, key, default=None, version=None):
        return self.get(key, default, version)

    async def aset(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self.set(key, value, timeout, version)

    async def aadd(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self.add(key, value, timeout, version)

    async def atouch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self.touch(key, timeout, version)

    async def adelete(self, key, version=None):
        return self.delete(key, version)

    async def aget_many(self, keys, version=None):
        return self.get_many(keys, version)

    async def aset_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self.set_many(data, timeout, version)

    async def adelete_many(self, keys, version=None):
        return self.delete_many(keys, version)

    async def ahas_key(self, key, version=None):
        return self.has_key(key, version)

    async def aincr(self, key, delta=1, version=None):
        return self.incr(key, delta, version)

    async def adecr(self, key, delta=1, version=None):
        return self.decr(key, delta, version)

    async def aclear(self):
        return self.clear()


class SharedMemoryCache(_RegionCache):
    """A region in one POSIX shared-memory segment, shared by every process
    of the user on this host. LOCATION is the region name."""

    store_kind = "shm"


class FileCache(_RegionCache):
    """A region in a directory of files (one self-describing file per entry,
    native/file/FORMAT.md), shared by every process of the user that names
    the same directory, and kept across restarts. LOCATION is the directory.

    Async: reads (aget, aget_many, ahas_key) answer in the calling coroutine,
    as the other regions do: a read of a small value from the page cache
    costs a few microseconds, less than the thread hop of sync_to_async, and
    the store releases the GIL while it reads. Writes (a file written and
    renamed, maybe a journal wait or an eviction scan on the way) and clear
    go to a worker thread with sync_to_async, as Django's own
    FileBasedCache does, so they never stall the event loop.
    """

    store_kind = "file"

    async def aset(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return await sync_to_async(self.set, thread_sensitive=False)(key, value, timeout, version)

    async def aadd(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return await sync_to_async(self.add, thread_sensitive=False)(key, value, timeout, version)

    async def atouch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return await sync_to_async(self.touch, thread_sensitive=False)(key, timeout, version)

    async def adelete(self, key, version=None):
        return await sync_to_async(self.delete, thread_sensitive=False)(key, version)

    async def aset_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return await sync_to_async(self.set_many, thread_sensitive=False)(data, timeout, version)

    async def adelete_many(self, keys, version=None):
        return await sync_to_async(self.delete_many, thread_sensitive=False)(keys, version)

    async def aincr(self, key, delta=1, version=None):
        return await sync_to_async(self.incr, thread_sensitive=False)(key, delta, version)

    async def adecr(self, key, delta=1, version=None):
        return await sync_to_async(self.decr, thread_sensitive=False)(key, delta, version)

    async def aclear(self):
        return await sync_to_async(self.clear, thread_sensitive=False)()

    # django-redis's API: ttl/pttl read in the loop as aget does; expiry
    # changes (a file rewritten) and listings (directory scans) in a thread.
    _redis_api_in_thread = WRITES | LISTINGS


class MemcachedCache(_RegionCache):
    """A region on memcached servers, through libmemcached in the native
    module. LOCATION is "host:port", several joined by ";" or given as a
    list, or unix socket paths. Keys memcached cannot take (over 250 bytes,
    spaces, control characters) are mapped to safe ones, so every key Django
    accepts works (with Django's CacheKeyWarning, as for any backend).

    Timeouts follow Django's memcached backends: 0 means "do not cache",
    None "forever", more than 30 days is sent as an absolute time.
    """

    store_kind = "memcached"

    @property
    def _servers(self):
        """The servers, as Django's memcached backends name them."""
        return self._spec.servers

    # Network I/O: the async API runs in a thread (BaseCache's own a*
    # methods, through sync_to_async), not in the event loop.
    aget = BaseCache.aget
    aset = BaseCache.aset
    aadd = BaseCache.aadd
    atouch = BaseCache.atouch
    adelete = BaseCache.adelete
    aset_many = BaseCache.aset_many
    adelete_many = BaseCache.adelete_many
    ahas_key = BaseCache.ahas_key
    aincr = BaseCache.aincr
    adecr = BaseCache.adecr
    aclear = BaseCache.aclear

    _redis_api_in_thread = READS | WRITES | LISTINGS

    async def aget_many(self, keys, version=None):
        # One thread hop and one multi-get (BaseCache's awaits aget per key:
        # a round trip each; @region reads a result and its generation so).
        return await sync_to_async(self.get_many, thread_sensitive=True)(keys, version)
