"""cache.lock(): django-redis's lock (redis-py's Lock) on every region.

The lock is the entry under the caller's own key (made with make_key, the
same key space as values, as django-redis does). Its value names its holder:

    regioncache-lock/1 <token> <boot id> <pid namespace> <pid> <start time>

- acquire is ``cache.add`` (atomic in every store);
- release is ``cache._delete_if(key, value)``, extend and reacquire
  ``cache._swap(key, value, value, timeout)``: compare-and-delete and
  compare-and-replace in one step in the store, never a read then a write;
- a waiter whose add fails reads the value: a holder on this host (same boot
  id and pid namespace) whose process is gone (no such pid, a zombie, or a
  pid now used by a process that started at another time) is replaced at
  once with ``_swap(key, its_value, own_value)``, so of several waiters
  exactly one takes it. A holder on another host, a live one, or a value
  that is not one of ours is waited for; only the lock's timeout frees a
  dead holder on another host.

The token is kept per thread (thread_local=True, as redis-py) so a thread
never releases with a token another thread set.
"""

import asyncio
import os
import threading
import time
import uuid
from types import SimpleNamespace

from asgiref.sync import sync_to_async

from regioncache.redis_api import WRITES

PREFIX = "regioncache-lock/1"
MAX_KEY = 250
# The largest pid Linux can give (PID_MAX_LIMIT on 64-bit, 2**22).
PID_MAX_LIMIT = 1 << 22


class LockError(ValueError):
    """A lock could not be acquired, released, extended or reacquired.

    A ValueError, as redis-py's LockError is (and threading's RuntimeError
    is not): code that catches either keeps working."""

    def __init__(self, message=None, lock_name=None):
        super().__init__(message)
        self.message = message
        self.lock_name = lock_name


class LockNotOwnedError(LockError):
    """The lock is no longer held with this token (expired, taken over or
    released by its holder)."""


# ----------------------------------------------------------------- identity


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid):
    """(state, start time) of a process from /proc/<pid>/stat, or None."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # The command name (field 2) is in parentheses and may hold anything:
    # fields are counted after its last ')'. Field 3 is the state, 22 the
    # start time in clock ticks since boot.
    rest = text.rsplit(")", 1)[-1].split()
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


_identity = (None, None)  # (pid, "boot ns pid start") of this process


def _host_identity():
    """"<boot id> <pid namespace> <pid> <start time>" of this process, or
    None where /proc cannot say (its locks are then never taken over)."""
    global _identity
    pid = os.getpid()
    if _identity[0] == pid:  # a forked child computes its own
        return _identity[1]
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = None
    stat = _stat_fields(pid)
    ident = None
    if boot and ns and stat and " " not in ns:
        ident = f"{boot.strip()} {ns} {pid} {stat[1]}"
    _identity = (pid, ident)
    return ident


def _value(token):
    ident = _host_identity() or "- - 0 0"
    return f"{PREFIX} {token} {ident}"


def _parse(value):
    """(token, boot, ns, pid, start) of a value of ours, else None."""
    if not isinstance(value, str) or not value.startswith(PREFIX + " "):
        return None
    parts = value[len(PREFIX) + 1:].rsplit(" ", 4)
    if len(parts) != 5:
        return None
    try:
        parts[3] = int(parts[3])
    except ValueError:
        return None
    return tuple(parts)


def _holder_dead(value):
    """True if `value` names a process on this host that no longer runs.
    Anything uncertain (another host or pid namespace, EPERM, an unreadable
    /proc, a value not ours) answers False: the holder is respected."""
    fields = _parse(value)
    own = _host_identity()
    if fields is None or own is None:
        return False
    _token, boot, ns, pid, start = fields
    own_boot, own_ns, _own_pid, _own_start = own.split(" ")
    if boot != own_boot or ns != own_ns or not 0 < pid <= PID_MAX_LIMIT:
        # A pid no Linux process can have is no holder of ours: a planted
        # value (os.kill would raise OverflowError on a huge one).
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists (another user's); go on to its start time
        pass
    stat = _stat_fields(pid)
    if stat is None:
        return False
    state, now_start = stat
    # A zombie (killed, not yet reaped by its parent) holds nothing; a
    # different start time is another process under a reused pid.
    return state in ("Z", "X") or now_start != start


# --------------------------------------------------------------- arguments


def _seconds(name, value, none_ok=True):
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds{' or None' if none_ok else ''}, "
                        f"not {type(value).__name__}")
    if value != value or value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return value


def _token_text(token):
    if isinstance(token, bytes):
        try:
            token = token.decode()
        except UnicodeDecodeError:
            raise ValueError("token must be UTF-8 text") from None
    if not isinstance(token, str):
        raise TypeError(f"token must be str or bytes, not {type(token).__name__}")
    if not token or any(c in token for c in "\r\n"):
        raise ValueError("token must be non-empty text without line breaks")
    return token


# -------------------------------------------------------------------- Lock


class Lock:
    """A lock held in a region, with redis-py's Lock interface and meaning.

    Made by ``cache.lock(key, ...)``; see that method and the module's head.
    """

    def __init__(self, cache, key, version=None, timeout=None, sleep=0.1, blocking=True,
                 blocking_timeout=None, thread_local=True, raise_on_release_error=True):
        if not isinstance(key, str):
            raise TypeError(f"key must be str, not {type(key).__name__}")
        name = cache.make_key(key, version=version)
        if len(name) > MAX_KEY:
            raise ValueError(
                f"key {key!r} is {len(name)} characters once made ({name[:40]!r}...), "
                f"over the limit of {MAX_KEY}"
            )
        self.cache = cache
        self.key = key
        self.version = version
        self.name = name
        self.timeout = _seconds("timeout", timeout)
        self.sleep = _seconds("sleep", sleep, none_ok=False)
        self.blocking = bool(blocking)
        self.blocking_timeout = _seconds("blocking_timeout", blocking_timeout)
        self.thread_local = bool(thread_local)
        self.raise_on_release_error = raise_on_release_error
        self.local = threading.local() if self.thread_local else SimpleNamespace()
        self.local.token = None
        # The lock's steps are writes: their async forms run where the
        # backend runs its writes (redis_api's declaration: in the calling
        # coroutine for shm, in a thread for file and memcached).
        self._in_loop = not (WRITES & getattr(cache, "_redis_api_in_thread", WRITES))

    def __repr__(self):
        return f"<regioncache Lock {self.name!r} of {self.cache!r}>"

    # The store's expiry for the lock: redis-py's "if self.timeout" (0 and
    # None both mean none).
    def _ttl(self):
        return self.timeout if self.timeout else None

    def _token(self):
        return getattr(self.local, "token", None)

    # --- one step each, sync (the async forms run them in a thread or not)

    def _try(self, token):
        """One attempt: True if this caller now holds the lock, False if
        another does, None if the store failed (logged by the region)."""
        cache = self.cache
        own = _value(token)
        failures = cache.failures
        if cache.add(self.key, own, self._ttl(), self.version):
            return True
        if cache.failures != failures:
            # The add failed; if only its reply was lost (memcached), the
            # lock is there with this caller's value, and held.
            return True if cache.get(self.key, None, self.version) == own else None
        held = cache.get(self.key, None, self.version)
        if held is None:  # released in between: try again at once
            return bool(cache.add(self.key, own, self._ttl(), self.version))
        if _holder_dead(held):
            return bool(cache._swap(self.key, held, own, self._ttl(), self.version))
        return False

    def _stored_own(self, token):
        """The stored value if it carries `token` (it may name another
        process: a token handed over), else None."""
        held = self.cache.get(self.key, None, self.version)
        fields = _parse(held)
        return held if fields is not None and fields[0] == token else None

    def _do_release(self, token):
        cache = self.cache
        if cache._delete_if(self.key, _value(token), self.version):
            return True
        held = self._stored_own(token)
        return held is not None and cache._delete_if(self.key, held, self.version)

    def _do_renew(self, token, additional_time, replace_ttl):
        """extend (additional_time given) or reacquire (None): True if done."""
        cache = self.cache
        for held in (_value(token), None):
            if held is None:
                held = self._stored_own(token)
                if held is None:
                    return False
            if additional_time is None:
                ttl = self.timeout
            elif replace_ttl:
                ttl = additional_time
            else:
                expiry = cache._expiry(self.key, self.version)
                if expiry < 0:  # gone (-2), or without expiry (-1) as redis-py's script
                    return False
                ttl = max(expiry / 1000.0 - time.time(), 0.0) + additional_time
            # A ttl of 0 ends the lock, as redis-py's pexpire(0) does.
            if cache._swap(self.key, held, held, ttl, self.version):
                return True
        return False

    def _do_owned(self, token):
        return token is not None and self._stored_own(token) is not None

    # --- the sync API (redis-py's)

    def _begin(self, sleep, blocking, blocking_timeout, token):
        sleep = self.sleep if sleep is None else _seconds("sleep", sleep, none_ok=False)
        blocking = self.blocking if blocking is None else bool(blocking)
        if blocking_timeout is None:
            blocking_timeout = self.blocking_timeout
        else:
            blocking_timeout = _seconds("blocking_timeout", blocking_timeout)
        token = uuid.uuid4().hex if token is None else _token_text(token)
        stop = None if blocking_timeout is None else time.monotonic() + blocking_timeout
        return sleep, blocking, stop, token

    def _wait_more(self, blocking, stop, sleep):
        if not blocking:
            return False
        return stop is None or time.monotonic() + sleep <= stop

    def acquire(self, sleep=None, blocking=None, blocking_timeout=None, token=None):
        """Takes the lock: True once held; False if blocking is False and it
        is held, if blocking_timeout passed, or if the store failed (the
        region's failure policy: logged, or RegionError under RAISE_ERRORS)."""
        sleep, blocking, stop, token = self._begin(sleep, blocking, blocking_timeout, token)
        while True:
            got = self._try(token)
            if got:
                self.local.token = token.encode()
                return True
            if got is None or not self._wait_more(blocking, stop, sleep):
                return False
            time.sleep(sleep)

    def locked(self):
        """True if anyone holds the lock."""
        return self.cache.has_key(self.key, self.version)

    def owned(self):
        """True if this Lock (this thread, when thread-local) holds it."""
        token = self._token()
        return token is not None and self._do_owned(token.decode())

    def release(self):
        """Releases the lock: LockError if this Lock does not hold it,
        LockNotOwnedError if it was lost meanwhile (expired, taken over)."""
        token = self._token()
        if token is None:
            raise LockError("Cannot release a lock that's not owned or is already unlocked.",
                            lock_name=self.name)
        self.local.token = None
        if not self._do_release(token.decode()):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned",
                                    lock_name=self.name)

    def _check_renew(self, verb, additional_time=None):
        if self._token() is None:
            raise LockError(f"Cannot {verb} an unlocked lock", lock_name=self.name)
        if self.timeout is None:
            raise LockError(f"Cannot {verb} a lock with no timeout", lock_name=self.name)
        if additional_time is not None:
            _seconds("additional_time", additional_time, none_ok=False)
        return self._token().decode()

    def extend(self, additional_time, replace_ttl=False):
        """Adds additional_time seconds to the lock's time left (or sets it
        to that, with replace_ttl=True). True, or LockNotOwnedError."""
        token = self._check_renew("extend", additional_time)
        if not self._do_renew(token, additional_time, replace_ttl):
            raise LockNotOwnedError("Cannot extend a lock that's no longer owned",
                                    lock_name=self.name)
        return True

    def reacquire(self):
        """Resets the lock's time left to its timeout. True, or
        LockNotOwnedError."""
        token = self._check_renew("reacquire")
        if not self._do_renew(token, None, False):
            raise LockNotOwnedError("Cannot reacquire a lock that's no longer owned",
                                    lock_name=self.name)
        return True

    def __enter__(self):
        if self.acquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    def __exit__(self, exc_type, exc_value, traceback):
        try:
            self.release()
        except LockError:
            if self.raise_on_release_error:
                raise

    # --- async forms: the same steps, in the loop (shm) or in a thread

    async def _run(self, fn, *args):
        if self._in_loop:
            return fn(*args)
        return await sync_to_async(fn, thread_sensitive=False)(*args)

    async def aacquire(self, sleep=None, blocking=None, blocking_timeout=None, token=None):
        sleep, blocking, stop, token = self._begin(sleep, blocking, blocking_timeout, token)
        while True:
            got = await self._run(self._try, token)
            if got:
                self.local.token = token.encode()
                return True
            if got is None or not self._wait_more(blocking, stop, sleep):
                return False
            await asyncio.sleep(sleep)

    async def alocked(self):
        return await self._run(self.locked)

    async def aowned(self):
        token = self._token()
        return token is not None and await self._run(self._do_owned, token.decode())

    async def arelease(self):
        token = self._token()
        if token is None:
            raise LockError("Cannot release a lock that's not owned or is already unlocked.",
                            lock_name=self.name)
        self.local.token = None
        if not await self._run(self._do_release, token.decode()):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned",
                                    lock_name=self.name)

    async def aextend(self, additional_time, replace_ttl=False):
        token = self._check_renew("extend", additional_time)
        if not await self._run(self._do_renew, token, additional_time, replace_ttl):
            raise LockNotOwnedError("Cannot extend a lock that's no longer owned",
                                    lock_name=self.name)
        return True

    async def areacquire(self):
        token = self._check_renew("reacquire")
        if not await self._run(self._do_renew, token, None, False):
            raise LockNotOwnedError("Cannot reacquire a lock that's no longer owned",
                                    lock_name=self.name)
        return True

    async def __aenter__(self):
        if await self.aacquire():
            return self
        raise LockError("Unable to acquire lock within the time specified", lock_name=self.name)

    async def __aexit__(self, exc_type, exc_value, traceback):
        try:
            await self.arelease()
        except LockError:
            if self.raise_on_release_error:
                raise
