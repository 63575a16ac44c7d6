"""The Python tests' process harness (the twin of tests/support/ in C++):
free loopback ports, forked children whose end is checked, kill -9 rounds
against a writer process, the rule for tests that need root, and real
servers on free ports (redis-server, sshd)."""

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path


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


class SshServer:
    """A real OpenSSH server (Debian's openssh-server) on a free 127.0.0.1
    port, with its own host key and one client key in workdir, accepting the
    current user by that key only. prefix() is the transport the desktop app
    builds for a remote site: the system ssh client, non-interactive, then
    the words it quotes for the remote shell. A missing binary is a
    RuntimeError: the tests that need it fail, never skip."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = Path(workdir)
        self.proc = None
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.client_key = self.workdir / "client_key"

    def prefix(self):
        return ["ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-i", str(self.client_key), "-p", str(self.port), f"{self.user}@127.0.0.1", "--"]

    def start(self):
        import shutil

        sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
        if not sshd or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
            raise RuntimeError("OpenSSH is not installed (Debian: apt-get install openssh-server openssh-client)")
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(w / name)],
                           check=True, stdout=subprocess.DEVNULL)
        (w / "authorized_keys").write_text((w / "client_key.pub").read_text())
        os.chmod(w / "authorized_keys", 0o600)
        (w / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {w / 'host_key'}\n"
            f"AuthorizedKeysFile {w / 'authorized_keys'}\nPidFile {w / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\n")
        if os.getuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation's chroot
        cmd = [sshd, "-D", "-e", "-f", str(w / "sshd_config")]
        self.log = open(w / "sshd.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: "
                                   f"{(w / 'sshd.log').read_text(errors='replace')[-2000:]}")
            r = subprocess.run(self.prefix() + ["echo", "ready"], capture_output=True, timeout=20)
            if r.returncode == 0 and r.stdout.strip() == b"ready":
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ssh to sshd on port {self.port} did not work: "
                           f"{(w / 'sshd.log').read_text(errors='replace')[-2000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if getattr(self, "log", None):
            self.log.close()
