"""The Python tests' process harness (the twin of tests/support/ in C++):
free loopback ports, forked children whose end is checked, kill -9 rounds
against a writer process, and the rule for tests that need root."""

import os
import signal
import socket
import subprocess
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_root(reason):
    """Skips the calling test when not root; fails it instead where CI says
    every test must run (REGIONCACHE_REQUIRE_ROOT=1)."""
    import pytest  # here: the memcached launcher runs where pytest is not installed

    if os.geteuid() != 0:
        if os.environ.get("REGIONCACHE_REQUIRE_ROOT") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def run_forked(fn, *args, before_wait=None):
    """Runs fn(*args) in a forked child (which must end with os._exit; a
    return is exit 0, an exception exit 1) and returns its wait status as
    text: "exit N" or "killed by signal N". before_wait(pid), if given,
    runs in the parent while the child works."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn(*args)
            code = 0
        finally:
            os._exit(code)
    if before_wait is not None:
        before_wait(pid)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def kill_nine_round(argv, env, rng, low=0.005, high=0.050):
    """One kill -9 round: starts the writer argv (it prints "started" once set
    up, then writes until killed), lets it run for a random time between low
    and high seconds, kills it with SIGKILL and reaps it. Asserts that the
    writer got going, did not stop on its own, and died of the kill."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.strip() == "started", (line, p.stderr.read() if p.poll() is not None else "")
        time.sleep(rng.uniform(low, high))
        assert p.poll() is None, f"writer died on its own: {p.stderr.read()}"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL


class RedisServer:
    """A real redis-server (Debian's package) on a free 127.0.0.1 port, for
    the parity suite against django-redis; nothing saved to disk. A missing
    binary is a RuntimeError: the tests that need it fail, never skip."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import shutil

        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)")
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
               "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {cmd}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING: {cmd}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
