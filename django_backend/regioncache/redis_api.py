"""django-redis's extra API on every region (README: "django-redis's API").

Expiry: ttl, pttl, expire, pexpire, expire_at, pexpire_at, persist, built on
the native `_expiry` (-2 no live entry, -1 never, else the expiry in epoch
ms) and Django's `touch`. Keys by pattern: keys, iter_keys, delete_pattern,
in the caller's key space: the pattern is a redis glob over the keys the
caller gives `get`/`set`; KEY_PREFIX, VERSION and KEY_FUNCTION frame it as
`make_key` frames a key, the framed glob goes to the store's listing
(`list_entries`, paged by its cursor), and the listed keys come back
unframed. The async forms answer in the loop, or in a thread for the calls
a backend names in `_redis_api_in_thread` (file and memcached I/O).
"""

import datetime
import logging
import numbers
import time
import uuid

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from regioncache import _log, _native
from regioncache._listing import entry_pages

# Entries asked of the store per listing call when itersize is not given.
DEFAULT_ITERSIZE = 1000

# The calls a backend may send to a thread in their async forms.
READS = frozenset({"ttl", "pttl"})
WRITES = frozenset({"expire", "pexpire", "expire_at", "pexpire_at", "persist"})
LISTINGS = frozenset({"keys", "delete_pattern", "iter_keys"})

# Characters the store's glob (native/core/glob.cc) gives a meaning to
# outside a class, and inside one.
_LITERAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_IN_CLASS = frozenset("\\]-^!")


def _literal(text):
    """text as a store glob matching exactly text."""
    return text.translate(_LITERAL)


def _class_member(c):
    return "\\" + c if c in _IN_CLASS else c


def _redis_class(pattern, i):
    """The redis class starting after the '[' at pattern[i - 1], as a store
    glob class, and the index after it. None for an empty class, which
    matches nothing (redis's "[]"). Redis's reading: a leading '^' negates,
    a backslash takes the next character literally, "x-y" is a range (ends
    swapped if reversed, y taken as it is), ']' closes the class even
    first, and an unclosed class runs to the end of the pattern."""
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    members = []
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            members.append(_class_member(pattern[i + 1]))
            i += 2
        elif c == "]":
            i += 1
            break
        elif i + 2 < n and pattern[i + 1] == "-":
            lo, hi = sorted((c, pattern[i + 2]))
            if ord(hi) > 127:
                raise ValueError(
                    f"pattern: the range {c}-{pattern[i + 2]} in [...] is not of ASCII "
                    f"characters (the store matches bytes, as redis does; list the characters)"
                )
            if lo == hi:
                members.append(_class_member(lo))
            elif hi == "]":
                # The store's class cannot end a range with ']': the range
                # up to the character before it (a backslash), then ']'.
                members.append(_class_member(lo) + "-\\" if lo != "\\" else "\\\\")
                members.append("\\]")
            else:
                members.append(_class_member(lo) + "-" + hi)
            i += 3
        else:
            members.append(_class_member(c))
            i += 1
    if not members:
        return ("?" if negate else None), i
    return "[" + ("^" if negate else "") + "".join(members) + "]", i


def redis_glob(pattern):
    """A redis glob (KEYS/SCAN MATCH: * ? [abc] [^a] [a-z] and backslash
    escapes) as the store's glob, or None if it matches nothing."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("*")
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1
        elif c == "?":
            out.append("?")
        elif c == "[":
            cls, i = _redis_class(pattern, i + 1)
            if cls is None:
                return None
            out.append(cls)
            continue
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(_literal(pattern[i]))
        else:
            out.append(_literal(c))
        i += 1
    return "".join(out)


def _itersize(itersize):
    if itersize is None:
        return DEFAULT_ITERSIZE
    if isinstance(itersize, bool) or not isinstance(itersize, int) or itersize <= 0:
        raise ValueError(f"itersize must be a positive int, not {itersize!r}")
    return itersize


def _seconds(value, name):
    """A number of seconds (int, float, timedelta) checked: TypeError for
    anything else, ValueError for NaN."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or a timedelta, not {type(value).__name__}")
    if value != value:
        raise ValueError(f"{name} is NaN")
    return value


def _epoch_ms(when, name, datetime_ms):
    """An absolute time in epoch ms: a datetime (a naive one is local time,
    as datetime.timestamp() and redis-py read it; under Django that is
    TIME_ZONE), or a number of epoch seconds (datetime_ms False) or ms."""
    if isinstance(when, datetime.datetime):
        # redis-py's rounding: whole seconds for EXPIREAT, whole ms for PEXPIREAT.
        return int(when.timestamp() * 1000) if datetime_ms else int(when.timestamp()) * 1000
    if isinstance(when, bool) or not isinstance(when, numbers.Real):
        raise TypeError(f"{name} must be a datetime or a number, not {type(when).__name__}")
    if when != when:
        raise ValueError(f"{name} is NaN")
    return when if datetime_ms else when * 1000


def _now_ms():
    return time.time_ns() // 1_000_000


class RedisAPI:
    """django-redis's extras, mixed into every regioncache backend."""

    _redis_api_in_thread = frozenset()

    # ---- expiry ------------------------------------------------------------

    def ttl(self, key, version=None):
        """Seconds left, rounded as redis's TTL rounds; None: no expiry; 0:
        no such key."""
        left = self.pttl(key, version)
        return left if left is None else (left + 500) // 1000

    def pttl(self, key, version=None):
        """Milliseconds left; None: no expiry; 0: no such key."""
        expires = self._expiry(key, version)
        if expires == -2:
            return 0
        if expires == -1:
            return None
        return max(0, expires - _now_ms())

    def expire(self, key, timeout, version=None):
        """Sets the key's timeout in seconds (a number or a timedelta;
        DEFAULT_TIMEOUT: the region's; None: never expires; 0: expires
        now). True if the key was there."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return self.touch(key, None, version)
        return self._expire_in(key, _seconds(timeout, "timeout"), version, timeout)

    def pexpire(self, key, timeout, version=None):
        """expire() in milliseconds (DEFAULT_TIMEOUT, None and a timedelta
        mean what they mean to expire())."""
        if timeout is DEFAULT_TIMEOUT or timeout is None or isinstance(timeout, datetime.timedelta):
            return self.expire(key, timeout, version)
        return self._expire_in(key, _seconds(timeout, "timeout") / 1000, version, timeout)

    def expire_at(self, key, when, version=None):
        """Expires the key at `when`: a datetime or epoch seconds. A time
        past deletes it. True if the key was there."""
        return self._expire_at_ms(key, _epoch_ms(when, "when", False), version)

    def pexpire_at(self, key, when, version=None):
        """expire_at() with epoch milliseconds."""
        return self._expire_at_ms(key, _epoch_ms(when, "when", True), version)

    def persist(self, key, version=None):
        """Removes the key's expiry: True only if it had one."""
        if self._expiry(key, version) < 0:
            return False
        return self.touch(key, None, version)

    def _expire_in(self, key, seconds, version, given):
        if seconds < 0:
            raise ValueError(
                f"timeout must not be negative, not {given!r} (redis would delete the key: "
                f"give 0 or call delete())"
            )
        if seconds == 0:
            return self.delete(key, version)
        return self.touch(key, seconds, version)

    def _expire_at_ms(self, key, at_ms, version):
        left_ms = at_ms - _now_ms()
        if left_ms <= 0:
            return self.delete(key, version)
        return self.touch(key, left_ms / 1000, version)

    # ---- keys by pattern ---------------------------------------------------

    def keys(self, search, version=None):
        """The caller's keys matching the redis glob `search`, as a list."""
        glob, frame = self._search(search, "search", version)
        return list(self._listed_keys(glob, frame, DEFAULT_ITERSIZE, "keys"))

    def iter_keys(self, search, itersize=None, version=None):
        """keys(), as a generator asking the store for itersize entries at
        a time: memory stays O(itersize) whatever the region holds."""
        glob, frame = self._search(search, "search", version)
        return self._listed_keys(glob, frame, _itersize(itersize), "iter_keys")

    def delete_pattern(self, pattern, version=None, prefix=None, itersize=None):
        """Deletes the keys matching the redis glob `pattern` (under
        KEY_PREFIX `prefix` if given), itersize at a time; the count."""
        glob, _ = self._search(pattern, "pattern", version, prefix)
        size = _itersize(itersize)
        count = 0
        if glob is None:
            return 0
        try:
            for page in entry_pages(self, glob, size=size, keys_only=True):
                if page:
                    count += self.delete_raw(page)
        except _native.RegionError as e:
            self._listing_failed("delete_pattern", f"{count} deleted", e)
        return count

    def _key_frame(self, version, prefix):
        """What the key function puts before and after a key: (head, tail),
        learnt from two unique marker keys. ValueError if it does not keep
        the key verbatim between a fixed head and tail (a hashing one)."""
        prefix = self.key_prefix if prefix is None else prefix
        version = self.version if version is None else version
        marker = f"regioncache-probe-{uuid.uuid4().hex}"
        made = self.key_func(marker, prefix, version)
        head, found, tail = made.partition(marker) if isinstance(made, str) else ("", "", "")
        if found and self.key_func(marker + "-2", prefix, version) == f"{head}{marker}-2{tail}":
            return head, tail
        raise ValueError(
            f"KEY_FUNCTION {getattr(self.key_func, '__qualname__', self.key_func)} does not "
            f"keep the key verbatim between a fixed prefix and suffix (it makes {made!r} of "
            f"{marker!r}), so this region's keys cannot be searched by pattern"
        )

    def _search(self, pattern, name, version, prefix=None):
        """(store glob or None if nothing can match, (head, tail))."""
        if not isinstance(pattern, str):
            raise TypeError(f"{name} must be a str, not {type(pattern).__name__}")
        if prefix is not None and not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__}")
        head, tail = frame = self._key_frame(version, prefix)
        inner = redis_glob(pattern)
        if inner is None:
            return None, frame
        glob = _literal(head) + inner + _literal(tail)
        # The listing reads an empty glob as "everything".
        return (glob or None), frame

    def _listed_keys(self, glob, frame, size, call):
        if glob is None:
            return
        head, tail = len(frame[0]), len(frame[1])
        pages = entry_pages(self, glob, size=size, keys_only=True)
        while True:
            try:
                page = next(pages, None)
            except _native.RegionError as e:
                self._listing_failed(call, "no more keys listed", e)
                return
            if page is None:
                return
            if tail:
                yield from (full[head:-tail] for full in page)
            else:
                yield from (full[head:] for full in page)

    def _listing_failed(self, call, answer, error):
        """The failure policy for a listing (list_entries raises under
        either): RAISE_ERRORS raises, else one WARNING on the region's
        logger, as the native calls log what they swallow."""
        if self.raise_errors:
            raise error
        _log.emit(logging.WARNING, self.region, self.store_kind,
                  f"{call} failed, {answer}: {error}", 0)

    # ---- async forms ---------------------------------------------------------

    async def _answer(self, name, *args):
        method = getattr(self, name)
        if name in self._redis_api_in_thread:
            return await sync_to_async(method, thread_sensitive=False)(*args)
        return method(*args)

    async def attl(self, key, version=None):
        return await self._answer("ttl", key, version)

    async def apttl(self, key, version=None):
        return await self._answer("pttl", key, version)

    async def aexpire(self, key, timeout, version=None):
        return await self._answer("expire", key, timeout, version)

    async def apexpire(self, key, timeout, version=None):
        return await self._answer("pexpire", key, timeout, version)

    async def aexpire_at(self, key, when, version=None):
        return await self._answer("expire_at", key, when, version)

    async def apexpire_at(self, key, when, version=None):
        return await self._answer("pexpire_at", key, when, version)

    async def apersist(self, key, version=None):
        return await self._answer("persist", key, version)

    async def akeys(self, search, version=None):
        return await self._answer("keys", search, version)

    async def adelete_pattern(self, pattern, version=None, prefix=None, itersize=None):
        return await self._answer("delete_pattern", pattern, version, prefix, itersize)

    def aiter_keys(self, search, itersize=None, version=None):
        """iter_keys() as an async generator (bad arguments raise here, at
        the call, as iter_keys's do)."""
        glob, frame = self._search(search, "search", version)
        size = _itersize(itersize)
        keys = self._listed_keys(glob, frame, size, "iter_keys")
        return self._aiter(keys, size, "iter_keys" in self._redis_api_in_thread)

    async def _aiter(self, keys, size, in_thread):
        if not in_thread:
            for key in keys:
                yield key
            return
        # A page at a time from a worker thread: each next() that reaches
        # the end of a page asks the store for the next one there.
        done = object()

        def take():
            out = []
            for key in keys:
                out.append(key)
                if len(out) == size:
                    break
            return out or done

        while True:
            batch = await sync_to_async(take, thread_sensitive=False)()
            if batch is done:
                return
            for key in batch:
                yield key
