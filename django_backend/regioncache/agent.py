"""The inspection agent: ``python -m regioncache agent --settings MODULE``.

Serves a Django project's regions over line-delimited JSON on standard input
and output, the protocol of docs/AGENT.md (version 1), to the desktop app
(through ssh) or any other client. Stores are opened per alias from the same
store specs `python -m regioncache describe` prints, on a bare
``_native.Cache`` (never through django's ``caches``), never creating a
shared-memory segment. Values leave as their stored bytes: nothing is
decoded or unpickled here.

Two threads: a reader takes request lines off standard input (a line over
the limit is read to its end and dropped, never held), answers ``cancel`` at
once and queues everything else; the main thread carries the requests out in
order. Reply lines are written whole, under a lock, and flushed one by one.
"""

import base64
import binascii
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from json.encoder import encode_basestring_ascii as _quote  # a str as a JSON string, ASCII

import regioncache
from regioncache import _native

PROTOCOL = 1
MAX_PAGE = 20000
MAX_VALUE_BYTES = 64 << 20
MAX_KEYS = 10000
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_GET_BYTES = 1 << 20
PROGRESS_EVERY = 0.1  # seconds between two progress lines of one request (the first goes at once)
WRITES = frozenset({"delete", "purge", "purge_expired", "clear"})
CANCELLABLE = frozenset({"purge"})  # the verbs with progress points

log = logging.getLogger("regioncache.agent")


class Failure(Exception):
    """A request's error reply: a protocol code, a message, and any result
    fields the reply still carries (a cancelled purge's "removed")."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra


def _usable_id(value):
    """A request id as the protocol takes it: an integer (64-bit) or a
    string of at most 64 characters; else None."""
    if type(value) is int and -(1 << 63) <= value < (1 << 63):
        return value
    if type(value) is str and len(value) <= 64:
        return value
    return None


def _utf8(value):
    """The UTF-8 bytes of a JSON string, or None for one JSON lets through
    that UTF-8 cannot hold (a lone surrogate escape)."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return None


class Args:
    """A request's fields, checked one by one; a bad one is a bad_request
    naming the verb, the region when there is one, and the field."""

    def __init__(self, op, msg):
        self.op = op
        self.msg = msg
        r = msg.get("region")
        self.where = f"{op} on region '{r}'" if type(r) is str else op

    def bad(self, name, what):
        return Failure("bad_request", f"{self.where}: '{name}' {what}")

    def region(self):
        r = self.msg.get("region")
        if type(r) is not str or not r:
            raise self.bad("region", "must be a CACHES alias (a non-empty string)")
        return r

    def text(self, name, default=None, non_empty=False):
        v = self.msg.get(name, default)
        if v is None:
            raise self.bad(name, "is missing")
        if type(v) is not str:
            raise self.bad(name, f"must be a string, not {_json_type(v)}")
        if non_empty and not v:
            raise self.bad(name, "must not be empty")
        if _utf8(v) is None:
            raise self.bad(name, "is not valid Unicode (a lone surrogate)")
        if "\0" in v:  # the store takes it as C text: "*\0x" would purge as "*"
            raise self.bad(name, "must not hold a NUL character")
        return v

    def integer(self, name, default, low, high):
        v = self.msg.get(name, default)
        if type(v) is not int or not low <= v <= high:
            shown = json.dumps(v)[:40]
            raise self.bad(name, f"must be an integer from {low} to {high}, not {shown}")
        return v

    def flag(self, name, default):
        v = self.msg.get(name, default)
        if type(v) is not bool:
            raise self.bad(name, f"must be true or false, not {_json_type(v)}")
        return v

    def _key(self, name, value):
        if type(value) is not str:
            raise self.bad(name, f"must hold strings, not {_json_type(value)}")
        if name.endswith("b64"):
            try:
                return base64.b64decode(value.encode("ascii"), validate=True)
            except (UnicodeEncodeError, binascii.Error):
                raise self.bad(name, "must be standard base64") from None
        raw = _utf8(value)
        if raw is None:
            raise self.bad(name, "is not valid Unicode (a lone surrogate): send such a key "
                                 "as key_b64")
        return raw

    def one_key(self):
        present = [n for n in ("key", "key_b64") if n in self.msg]
        if len(present) != 1:
            raise self.bad("key", "or 'key_b64' must be given, exactly one of them")
        return self._key(present[0], self.msg[present[0]])

    def key_list(self):
        present = [n for n in ("keys", "keys_b64") if n in self.msg]
        if not present:
            raise self.bad("keys", "or 'keys_b64' must be given")
        keys = []
        for name in present:
            v = self.msg[name]
            if type(v) is not list:
                raise self.bad(name, f"must be a list of strings, not {_json_type(v)}")
            if len(keys) + len(v) > MAX_KEYS:
                raise self.bad(name, f"holds more than max_keys ({MAX_KEYS}) keys in all")
            keys.extend(self._key(name, k) for k in v)
        return keys


def _json_type(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


class JSONText(bytes):
    """A value already encoded as JSON text, spliced into its reply line as
    it is (Output.send)."""


_ENTRY = ('%s,"size":%d,"expires_ms":%d,"stored_ms":%d,"accessed_ms":%d,"flags":%d,'
          '"encoding":%s}')


def _entries_json(entries):
    """A listing's entries as the protocol's JSON array, written directly:
    half the time of dicts through json.dumps for a 20,000-entry page
    (bench/bench_agent.py). A key that is UTF-8 goes as "key", any other
    as "key_b64"; times in ms, 0 for none."""
    out = []
    for e in entries:
        key = e["key"]
        try:
            head = '{"key":' + _quote(key.decode("utf-8"))
        except UnicodeDecodeError:
            head = '{"key_b64":"' + base64.b64encode(key).decode("ascii") + '"'
        x, s, a = e["expires"], e["stored"], e["accessed"]
        out.append(_ENTRY % (head, e["size"], 0 if x is None else round(x * 1000),
                             0 if s is None else round(s * 1000),
                             0 if a is None else round(a * 1000), e["flags"],
                             _quote(e["encoding"])))
    return JSONText(("[" + ",".join(out) + "]").encode("ascii"))


class Output:
    """Reply lines on the protocol's stream: compact JSON (ASCII only, so
    any text is valid UTF-8), each line written whole under a lock and
    flushed. A reader that has gone away ends the agent quietly, at once."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, obj):
        # Spliced in after the rest of the line rather than copied through a
        # str and json.dumps: a JSONText value as it is (a listing's
        # entries), a bytes value as a JSON string (base64 text: a value read
        # by get, up to 64 MiB of it encoded).
        raw = [(k, v) for k, v in obj.items() if isinstance(v, bytes)]
        if raw:
            obj = {k: v for k, v in obj.items() if not isinstance(v, bytes)}
        try:
            head = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
        except (TypeError, ValueError) as e:  # a result JSON cannot carry: the agent's fault
            log.exception("encoding a reply")
            raw = []
            head = json.dumps(_error(obj.get("id"), "internal", f"encoding the reply: {e}"),
                              separators=(",", ":")).encode("ascii")
        parts = [head + b"\n"]
        if raw:
            parts = [head[:-1]]
            for i, (k, v) in enumerate(raw):
                sep = b"," if i or len(head) > 2 else b""
                name = sep + json.dumps(k).encode("ascii")
                parts += [name + b":", v] if type(v) is JSONText else [name + b':"', v, b'"']
            parts.append(b"}\n")
        with self._lock:
            try:
                for p in parts:
                    self._stream.write(p)
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                _quit_quietly()


def _quit_quietly():
    try:
        sys.stderr.flush()
    except Exception:  # stderr may be gone with stdout
        pass
    os._exit(0)


class _Request:
    __slots__ = ("id", "op", "msg", "cancel")

    def __init__(self, rid, op, msg):
        self.id = rid
        self.op = op
        self.msg = msg
        self.cancel = threading.Event()


_EOF = object()


class Agent:
    def __init__(self, settings_module, specs, read_only, max_request_bytes, out):
        self.settings_module = settings_module
        self.specs = {s.alias: s for s in specs}
        self.order = list(specs)
        self.read_only = read_only
        self.max_request_bytes = max_request_bytes
        self.out = out
        self.stores = {}  # alias -> an open _native.Cache
        self.queue = queue.SimpleQueue()
        self.lock = threading.Lock()  # guards running and waiting (reader vs. main thread)
        self.running = None
        self.waiting = {}  # id -> [_Request] queued, not started

    # ---- the hello --------------------------------------------------------

    def hello(self):
        return hello(self.settings_module, self.read_only, self.max_request_bytes)

    # ---- the reader thread ------------------------------------------------

    def read_requests(self, stream):
        try:
            self.read_lines(stream)
        except (OSError, ValueError) as e:  # standard input unreadable: as its end
            log.warning("reading standard input: %s", e)
        finally:
            self.queue.put(_EOF)

    def read_lines(self, stream):
        cap = self.max_request_bytes
        while True:
            line = stream.readline(cap + 1)
            if not line:
                return
            if len(line) > cap and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # read to its end, keep nothing
                    line = stream.readline(1 << 16)
                self.queue.put(_error(None, "too_large",
                                      f"request line over max_request_bytes ({cap}): dropped"))
                continue
            try:
                self.take_line(line)
            except Exception as e:  # a fault of the agent: answered, and the agent goes on
                log.exception("reading a request")
                self.queue.put(_error(None, "internal",
                                      f"reading a request: {type(e).__name__}: {e}"))

    def take_line(self, line):
        try:
            msg = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            self.queue.put(_error(None, "bad_json", f"the request line is not UTF-8: {e}"))
            return
        except (ValueError, RecursionError) as e:
            self.queue.put(_error(None, "bad_json", f"the request line is not JSON: {e}"))
            return
        if type(msg) is not dict:
            self.queue.put(_error(None, "bad_json",
                                  f"the request is {_json_type(msg)}, not a JSON object"))
            return
        rid = _usable_id(msg.get("id"))
        if rid is None:
            self.queue.put(_error(None, "bad_request",
                                  "'id' must be an integer or a string of at most 64 characters"))
            return
        op = msg.get("op")
        if type(op) is not str:
            self.queue.put(_error(rid, "bad_request",
                                  f"'op' must be a string, not {_json_type(op)}"))
            return
        if op == "cancel":
            self.out.send(self.cancel(rid, msg))
            return
        req = _Request(rid, op, msg)
        with self.lock:
            self.waiting.setdefault(rid, []).append(req)
        self.queue.put(req)

    def cancel(self, rid, msg):
        target = _usable_id(msg.get("target"))
        if target is None:
            return _error(rid, "bad_request",
                          "cancel: 'target' must be a request id (an integer or a string)")
        hit = False
        with self.lock:
            r = self.running
            if r is not None and r.id == target and r.op in CANCELLABLE:
                r.cancel.set()
                hit = True
            for w in self.waiting.get(target, ()):
                w.cancel.set()
                hit = True
        return {"id": rid, "ok": True, "cancelled": hit}

    # ---- the main thread --------------------------------------------------

    def serve(self, stream):
        reader = threading.Thread(target=self.read_requests, args=(stream,), name="agent-reader",
                                  daemon=True)
        reader.start()
        while True:
            item = self.queue.get()
            if item is _EOF:
                return 0
            if isinstance(item, dict):  # a line answered by the reader, in its turn
                self.out.send(item)
                continue
            with self.lock:
                same = self.waiting.get(item.id)
                same.remove(item)
                if not same:
                    del self.waiting[item.id]
                early = item.cancel.is_set()
                self.running = None if early else item
            if early:
                extra = {"removed": 0} if item.op in CANCELLABLE else {}
                reply = _error(item.id, "cancelled", f"{item.op}: cancelled before it started",
                               **extra)
            else:
                reply = self.carry_out(item)
            with self.lock:
                self.running = None
            self.out.send(reply)

    def carry_out(self, req):
        verb = VERBS.get(req.op)
        try:
            if verb is None:
                raise Failure("unknown_op", f"no verb '{req.op[:64]}' in protocol {PROTOCOL}")
            if self.read_only and req.op in WRITES:
                raise Failure("read_only",
                              f"{req.op}: refused, the agent was started with --read-only")
            result = verb(self, req, Args(req.op, req.msg))
        except Failure as f:
            return _error(req.id, f.code, str(f), **f.extra)
        except _native.ConfigError as e:  # the store refused an argument (a cursor, a glob)
            return _error(req.id, "bad_request", str(e))
        except _native.RegionError as e:
            return _error(req.id, "store", str(e))
        except Exception as e:
            log.exception("request %r (%s)", req.id, req.op)
            return _error(req.id, "internal", f"{req.op}: {type(e).__name__}: {e}")
        return {"id": req.id, "ok": True, **result}

    def store(self, alias):
        """The open store of a region, opened on its first use; a failed
        open is answered and tried again by the next request."""
        spec = self.specs.get(alias)
        if spec is None:
            raise Failure("unknown_region", f"region '{alias}': no CACHES alias of that name in "
                          f"{self.settings_module}")
        if spec.kind == "django":
            raise Failure("unsupported", f"region '{alias}': {spec.backend} is not a regioncache "
                          "backend (listed, not opened)")
        cache = self.stores.get(alias)
        if cache is None:
            if spec.kind == "file" and not os.path.isdir(spec.location):
                # Opening would make it (mkdir -p): the agent creates no store.
                raise Failure("store", f"region '{alias}': no directory {spec.location} (the site "
                              "has not made it yet; the agent creates none)")
            options = {k.upper(): v for k, v in spec.options.items()}
            if spec.kind == "shm":
                options["CREATE"] = "false"
                options["ON_MISMATCH"] = "error"  # never recreate (wipe) a segment the site uses
                if self.read_only:
                    options["READ_ONLY"] = "true"
            cache = _native.Cache()
            try:
                cache._open(spec.kind, spec.location, alias, options)
                cache._set_policy(True, None)  # every failure raises: answered as `store`
            except _native.RegionError as e:
                raise Failure("store", str(e)) from None
            self.stores[alias] = cache
        return cache

    # ---- the verbs --------------------------------------------------------

    def do_hello(self, req, a):
        return self.hello()

    def do_regions(self, req, a):
        return {"regions": [s.as_json() for s in self.order]}

    def do_stats(self, req, a):
        return {"stats": self.store(a.region())._stats_full()}

    def do_list(self, req, a):
        region = a.region()
        cursor = a.text("cursor", "")
        glob = a.text("glob", "")
        limit = a.integer("limit", 1000, 1, MAX_PAGE)
        expired = a.flag("include_expired", False)
        entries, next_cursor, scanned = self.store(region).list_entries(
            cursor, glob, limit, expired, raw_keys=True, with_scanned=True)
        return {"entries": _entries_json(entries), "next_cursor": next_cursor,
                "scanned": scanned}

    def do_get(self, req, a):
        region = a.region()
        key = a.one_key()
        max_bytes = a.integer("max_bytes", DEFAULT_GET_BYTES, 0, MAX_VALUE_BYTES)
        v = self.store(region)._peek_raw(key, max_bytes)
        if v is None:
            return {"found": False}
        return {"found": True, "size": v["size"], "flags": v["flags"], "encoding": v["encoding"],
                "expires_ms": v["expires_ms"], "truncated": v["truncated"],
                "data_b64": base64.b64encode(v["data"])}  # spliced in by Output.send

    def do_delete(self, req, a):
        region = a.region()
        keys = a.key_list()
        return {"deleted": self.store(region).delete_raw(keys) if keys else 0}

    def do_purge(self, req, a):
        region = a.region()
        glob = a.text("glob", non_empty=True)
        cache = self.store(region)
        state = {"removed": 0, "cancelled": False, "last": None}

        def progress(done):
            state["removed"] = done
            if req.cancel.is_set():
                state["cancelled"] = True
                return False
            now = time.monotonic()
            if state["last"] is None or now - state["last"] >= PROGRESS_EVERY:
                state["last"] = now
                self.out.send({"id": req.id, "progress": {"done": done}})
            return True

        try:
            removed = cache.purge(glob, progress=progress)
        except _native.RegionError:
            if not state["cancelled"]:
                raise
            raise Failure("cancelled", f"region '{region}': purge of '{glob}' cancelled after "
                          f"{state['removed']} entries removed", removed=state["removed"]) from None
        return {"removed": removed}

    def do_purge_expired(self, req, a):
        return {"removed": self.store(a.region()).purge_expired()}

    def do_clear(self, req, a):
        self.store(a.region()).clear()
        return {}


VERBS = {
    "hello": Agent.do_hello,
    "regions": Agent.do_regions,
    "stats": Agent.do_stats,
    "list": Agent.do_list,
    "get": Agent.do_get,
    "delete": Agent.do_delete,
    "purge": Agent.do_purge,
    "purge_expired": Agent.do_purge_expired,
    "clear": Agent.do_clear,
}


def _error(rid, code, message, **extra):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}, **extra}


def hello(settings_module, read_only, max_request_bytes):
    return {
        "hello": "regioncache-agent",
        "protocol": PROTOCOL,
        "version": regioncache.__version__,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "settings": settings_module,
        "read_only": read_only,
        "limits": {"max_request_bytes": max_request_bytes, "max_page": MAX_PAGE,
                   "max_value_bytes": MAX_VALUE_BYTES, "max_keys": MAX_KEYS},
    }


def _protocol_stream():
    """The protocol's own copy of standard output; file descriptor 1 and
    sys.stdout then go to standard error, so that nothing else (a print in
    the site's settings, a library writing to fd 1) can land inside a reply
    line."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb")


def main(settings_module, pythonpath=(), read_only=False,
         max_request_bytes=DEFAULT_MAX_REQUEST_BYTES):
    """Runs the agent on this process's standard input and output; returns
    the exit status (0 at the end of input, 2 when the settings cannot be
    loaded: the hello then carries the error)."""
    if max_request_bytes < 1024:
        print("python -m regioncache agent: --max-request-bytes must be at least 1024",
              file=sys.stderr)
        return 2
    out = Output(_protocol_stream())
    from regioncache.spec import SettingsError, project_specs

    try:
        specs = project_specs(settings_module, pythonpath)
    except SettingsError as e:
        out.send({**hello(settings_module, read_only, max_request_bytes),
                  "error": {"code": "settings", "message": str(e)}})
        print(f"python -m regioncache agent: {e}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="regioncache agent: %(levelname)s %(name)s: %(message)s")
    agent = Agent(settings_module, specs, read_only, max_request_bytes, out)
    out.send(agent.hello())
    log.info("serving %d regions of %s%s (pid %d)", len(specs), settings_module,
             ", read-only" if read_only else "", os.getpid())
    return agent.serve(sys.stdin.buffer)
