"""A scriptable fake memcached on 127.0.0.1 for the fault tests.

It speaks enough of the text protocol to be a working server (get/gets,
set/add/replace, delete, touch, incr/decr, version, stats, lru_crawler
metadump, mg) with its data in a dict, and misbehaves on the commands a
test names:

    fake = FakeMemcached(faults={"get": "trickle"}, delay=0.05).start()
    ... LOCATION = fake.location ...
    fake.stop()

Faults (what the reply to that command is):
    silent   nothing, ever (the connection stays open)
    trickle  the correct reply, one byte every `delay` seconds
    garbage  bytes that are no memcached reply, then a newline
    huge     for get: a VALUE header claiming 2 GB, then zeros, one every `delay`
    endless  bytes without a newline, forever, one every `delay` seconds
    late     the command is applied and answered after `late` seconds
"""

import socket
import threading
import time

GARBAGE = b"\xff\xfe\x00HELLO \xc3\x28 not memcached\r\n"


class FakeMemcached:
    def __init__(self, faults=None, delay=0.05, late=1.0):
        self.faults = dict(faults or {})
        self.delay = delay
        self.late = late
        self.data = {}  # key -> (flags, bytes)
        self.lock = threading.Lock()
        self.seen = []  # command names received
        # When set, every get/gets reply goes through rewrite(reply) -> bytes
        # (the corruption campaign's mutations).
        self.rewrite = None
        self._sock = None
        self._stop = threading.Event()
        self._threads = []
        self._conns = []

    @property
    def location(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for c in list(self._conns):
            try:
                c.close()
            except OSError:
                pass
        if self._sock:
            self._sock.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- server ----------------------------------------------------------------

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        buf = b""
        conn.settimeout(0.1)
        try:
            while not self._stop.is_set():
                while b"\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except socket.timeout:
                        if self._stop.is_set():
                            return
                        continue
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                parts = line.rstrip(b"\r").split()
                if not parts:
                    continue
                cmd = parts[0].decode("latin-1")
                data = None
                if cmd in ("set", "add", "replace", "append", "prepend", "cas"):
                    n = int(parts[4])
                    while len(buf) < n + 2:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    data, buf = buf[:n], buf[n + 2:]
                self.seen.append(cmd)
                name = cmd if cmd != "lru_crawler" else "metadump"
                self._answer(conn, name, parts, data, self.faults.get(name))
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _send_slowly(self, conn, payload, forever=False):
        i = 0
        while not self._stop.is_set():
            if i < len(payload):
                conn.sendall(payload[i:i + 1])
            elif forever:
                conn.sendall(b"0")
            else:
                return
            i += 1
            time.sleep(self.delay)

    def _answer(self, conn, cmd, parts, data, fault):
        if fault == "silent":
            return
        if fault == "garbage":
            conn.sendall(GARBAGE)
            return
        if fault == "endless":
            self._send_slowly(conn, b"VALUE", forever=True)
            return
        if fault == "huge" and cmd in ("get", "gets"):
            key = parts[1].decode("latin-1")
            conn.sendall(f"VALUE {key} 0 2147483648\r\n".encode())
            self._send_slowly(conn, b"", forever=True)
            return
        if fault == "late":
            time.sleep(self.late)
        reply = self._apply(cmd, parts, data)
        if self.rewrite is not None and cmd in ("get", "gets"):
            reply = self.rewrite(reply)
        if fault == "trickle":
            self._send_slowly(conn, reply)
        elif reply:
            conn.sendall(reply)

    def _apply(self, cmd, parts, data):
        args = [p.decode("latin-1") for p in parts[1:]]
        noreply = bool(args) and args[-1] == "noreply"
        out = b""
        with self.lock:
            if cmd in ("get", "gets"):
                for k in args:
                    if k in self.data:
                        flags, v = self.data[k]
                        out += f"VALUE {k} {flags} {len(v)}\r\n".encode() + v + b"\r\n"
                out += b"END\r\n"
            elif cmd in ("set", "add", "replace"):
                k, flags = args[0], int(args[1])
                exists = k in self.data
                if (cmd == "add" and exists) or (cmd == "replace" and not exists):
                    out = b"NOT_STORED\r\n"
                else:
                    self.data[k] = (flags, data)
                    out = b"STORED\r\n"
            elif cmd == "delete":
                out = b"DELETED\r\n" if self.data.pop(args[0], None) is not None else b"NOT_FOUND\r\n"
            elif cmd == "touch":
                out = b"TOUCHED\r\n" if args[0] in self.data else b"NOT_FOUND\r\n"
            elif cmd in ("incr", "decr"):
                if args[0] not in self.data:
                    out = b"NOT_FOUND\r\n"
                else:
                    flags, v = self.data[args[0]]
                    n = int(v) + (int(args[1]) if cmd == "incr" else -int(args[1]))
                    n = max(n, 0)
                    self.data[args[0]] = (flags, str(n).encode())
                    out = f"{n}\r\n".encode()
            elif cmd == "version":
                out = b"VERSION 1.6.18\r\n"
            elif cmd == "stats":
                out = b"STAT pid 1\r\nSTAT version 1.6.18\r\nSTAT limit_maxbytes 67108864\r\nEND\r\n"
            elif cmd == "metadump":
                for k, (flags, v) in self.data.items():
                    out += f"key={k} exp=-1 la=0 cas=1 fetch=no cls=1 size={len(v)}\n".encode()
                out += b"END\r\n"
            elif cmd == "mg":
                k = args[0]
                if k in self.data:
                    flags, v = self.data[k]
                    out = f"HD s{len(v)} f{flags}\r\n".encode()
                else:
                    out = b"EN\r\n"
            elif cmd == "flush_all":
                self.data.clear()
                out = b"OK\r\n"
            else:
                out = b"ERROR\r\n"
        return b"" if noreply else out
