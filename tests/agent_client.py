"""A small client of the inspection agent's protocol (docs/AGENT.md), for the
tests: starts the agent as a child process (any command: a local
`python -m regioncache agent ...`, or the same words behind an `ssh ... --`
prefix), reads its hello, sends requests and reads replies, every wait with
a deadline. Standard error is drained by a thread and kept (`stderr_text()`)
so that the agent never blocks on it."""

import base64
import json
import os
import selectors
import shlex
import subprocess
import sys
import threading
import time


def agent_command(settings, pythonpath=(), read_only=False, max_request_bytes=None,
                  python=sys.executable, prefix=(), env=None):
    """The argv that starts the agent: its own words, or, behind a prefix
    that hands one command line to a shell (`ssh -T ... host --`, `sh -c`),
    the prefix and then the words joined and quoted for that shell, as the
    app does (docs/AGENT.md, Transports). env: variables set for the agent
    alone, through env(1) (a remote shell does not get the local ones)."""
    words = [python, "-m", "regioncache", "agent", "--settings", settings]
    if env:
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    for p in pythonpath:
        words += ["--pythonpath", str(p)]
    if read_only:
        words.append("--read-only")
    if max_request_bytes is not None:
        words += ["--max-request-bytes", str(max_request_bytes)]
    return [*prefix, shlex.join(words)] if prefix else words


class AgentError(AssertionError):
    """A reply that was not what the caller required, or no reply in time."""


class AgentClient:
    def __init__(self, argv, env=None, timeout=60.0, expect_hello=True):
        self.timeout = timeout
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._buf = bytearray()
        self._scan = 0  # where the search for the next newline resumes
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._stderr = bytearray()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self._next_id = 0
        self.hello = self.read(timeout) if expect_hello else None

    # ---- raw lines -----------------------------------------------------------

    def _drain_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):
            self._stderr += chunk

    def stderr_text(self):
        return self._stderr.decode("utf-8", "replace")

    def send_line(self, raw):
        """Writes raw bytes as they are (a newline is added if missing)."""
        if not raw.endswith(b"\n"):
            raw += b"\n"
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def read_line(self, timeout=None):
        """The next line of standard output (bytes, without its newline);
        AgentError at the end of output or after timeout seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        fd = self.proc.stdout.fileno()
        while True:
            nl = self._buf.find(b"\n", self._scan)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                self._scan = 0
                return line
            self._scan = len(self._buf)
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise AgentError(f"no line from the agent in time; stderr:\n{self.stderr_text()}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise AgentError(f"the agent closed its output (exit {self.proc.poll()}); "
                                 f"stderr:\n{self.stderr_text()}")
            self._buf += chunk

    def read(self, timeout=None):
        """The next line, parsed."""
        return json.loads(self.read_line(timeout))

    # ---- requests ------------------------------------------------------------

    def send(self, op, rid=None, **fields):
        """Sends a request; returns its id (a fresh integer unless given)."""
        if rid is None:
            self._next_id += 1
            rid = self._next_id
        self.send_line(json.dumps({"id": rid, "op": op, **fields}).encode())
        return rid

    def reply(self, rid, timeout=None, progress=None):
        """Reads lines up to the final reply to rid (a progress line is given
        to progress(done) if given); a line about another request is an
        AgentError."""
        while True:
            msg = self.read(timeout)
            if msg.get("id") != rid:
                raise AgentError(f"a line about {msg.get('id')!r} while waiting for {rid!r}: {msg}")
            if "progress" in msg:
                if progress is not None:
                    progress(msg["progress"]["done"])
                continue
            return msg

    def call(self, op, **fields):
        """One request and its final reply, ok or not."""
        return self.reply(self.send(op, **fields))

    def ok(self, op, **fields):
        """One request whose reply must be a success; the reply."""
        r = self.call(op, **fields)
        if r.get("ok") is not True:
            raise AgentError(f"{op} {fields}: {r}")
        return r

    def list_all(self, region, limit=1000, **fields):
        """Every entry of a listing, page after page."""
        entries, cursor = [], ""
        while True:
            page = self.ok("list", region=region, cursor=cursor, limit=limit, **fields)
            entries += page["entries"]
            cursor = page["next_cursor"]
            if not cursor:
                return entries

    def get_bytes(self, region, key, **fields):
        """get: the reply, with "data" (the decoded bytes) added when found.
        key: str, or bytes (sent as key_b64)."""
        k = {"key_b64": base64.b64encode(key).decode()} if isinstance(key, bytes) else {"key": key}
        r = self.ok("get", region=region, **k, **fields)
        if r["found"]:
            r["data"] = base64.b64decode(r["data_b64"])
        return r

    # ---- the end -------------------------------------------------------------

    def close_input(self):
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self, timeout=None):
        """The exit status, after the agent ends by itself."""
        rc = self.proc.wait(self.timeout if timeout is None else timeout)
        self._stderr_thread.join(self.timeout)
        return rc

    def close(self):
        """Ends the agent (end of input, then a kill if it lingers)."""
        try:
            self.close_input()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._sel.close()
        self.proc.stdout.close()
        self._stderr_thread.join(10)
        self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
