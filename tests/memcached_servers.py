"""Real memcached servers for the tests: started on free loopback ports (or
unix sockets), stopped afterwards. A missing memcached binary is a failure,
never a skip."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import free_port  # noqa: F401 (the memcached tests import it from here too)


def memcached_binary():
    path = shutil.which("memcached")
    if not path:
        raise RuntimeError("memcached is not installed: the memcached tests need the real server")
    return path


class Server:
    """One memcached process; restartable on the same port or socket."""

    def __init__(self, port=None, socket_path=None, memory_mb=64):
        self.port = port if port is not None or socket_path else free_port()
        self.socket_path = socket_path
        self.memory_mb = memory_mb
        self.proc = None

    @property
    def location(self):
        return self.socket_path or f"127.0.0.1:{self.port}"

    def start(self):
        cmd = [memcached_binary(), "-m", str(self.memory_mb), "-U", "0", "-t", "1"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        if self.socket_path:
            cmd += ["-s", self.socket_path]
        else:
            cmd += ["-l", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memcached exited with {self.proc.returncode}: {cmd}")
            try:
                if self.socket_path:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(self.socket_path)
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"memcached did not start: {cmd}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server too
            self.proc.kill()
            self.proc.wait()

    def pause(self):
        """SIGSTOP: the server accepts connections (the kernel does) and
        answers nothing until resume()."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        # The signal is delivered asynchronously: wait until every thread
        # has stopped, or a request sent right now may still be answered.
        task_dir = f"/proc/{self.proc.pid}/task"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for tid in os.listdir(task_dir):
                try:
                    with open(f"{task_dir}/{tid}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except OSError:
                    pass
            if states and all(s == "T" for s in states):
                return
            time.sleep(0.002)
        raise RuntimeError("memcached did not stop on SIGSTOP")

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def raw(self, payload):
        """Sends raw protocol bytes; returns the reply as bytes, up to END for
        a get or stats, else up to the first line."""
        if self.socket_path:
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.socket_path)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        multi = payload.startswith((b"get", b"stats"))
        with s:
            s.sendall(payload)
            data = b""
            while not (data.endswith(b"END\r\n") or (data.endswith(b"\r\n") and not multi)):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def command(self, line):
        """One text-protocol command; returns the reply up to END/the first line."""
        return self.raw(line.encode() + b"\r\n").decode("utf-8", "replace")

    def plant(self, wire_key, flags, value):
        """Stores raw bytes under a wire key, as any client of the server could."""
        if isinstance(wire_key, str):
            wire_key = wire_key.encode()
        reply = self.raw(b"set %s %d 0 %d\r\n%s\r\n" % (wire_key, flags, len(value), value))
        assert reply == b"STORED\r\n", reply

    def has_key(self, wire_key):
        return f"VALUE {wire_key} " in self.command(f"get {wire_key}")

    def curr_items(self):
        for line in self.command("stats").splitlines():
            if line.startswith("STAT curr_items "):
                return int(line.split()[2])
        raise AssertionError("no curr_items in stats")


class Servers(list):
    def stop(self):
        for s in self:
            s.kill()


def start_servers(n, tmpdir=None, unix=False):
    out = Servers()
    try:
        for i in range(n):
            if unix:
                d = tmpdir or tempfile.mkdtemp(prefix="rc-mc-")
                out.append(Server(socket_path=os.path.join(d, f"mc{i}.sock")).start())
            else:
                out.append(Server().start())
    except Exception:
        out.stop()
        raise
    return out
