#!/usr/bin/env python3
"""The inspection agent (`python -m regioncache agent`) against the same calls
made in this process on `_native.Cache`, in one run.

    python bench/bench_agent.py               # 20,000 entries, 5 rounds
    python bench/bench_agent.py --rounds 3

A shared-memory region of N entries ("user:<i>" -> a 100-byte str, no
expiry) is made by a bare store here; the agent is started as a child over
pipes on a settings module written for it, as the desktop app starts it.
Measured, best of the rounds, each in turns with its in-process twin:

- list: the whole region in pages of 1,000, and as one page of 20,000
  (entries/s): in process, `list_entries(raw_keys=True, with_scanned=True)`;
  through the agent, each request written and its reply line read whole
  (then the client's json.loads, timed apart);
- get: round trips of `get` on a 100-byte and a 64 KiB value against
  `_peek_raw` of the same key, and the floor of any round trip: a child
  that echoes each line through a reader thread, as the agent reads.

Then where a 20,000-entry page's time goes inside the agent (its own code,
called here): the store's listing, the entries as JSON text (keys checked
as UTF-8, times to ms), the reply line put together and written; the rest of
a round trip is the pipe, the reader thread and the client.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "django_backend"))
sys.path.insert(0, str(ROOT / "tests"))

REGION = f"bench-agent-{os.getpid()}"
ECHO = """
import queue, sys, threading
q = queue.SimpleQueue()
def read():
    for line in iter(sys.stdin.buffer.readline, b""):
        q.put(line)
    q.put(None)
threading.Thread(target=read, daemon=True).start()
while (line := q.get()) is not None:
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"""


def best(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gets", type=int, default=2000)
    args = ap.parse_args()
    n = args.entries

    from regioncache import _native
    from agent_client import AgentClient, agent_command

    store = _native.Cache()
    store._open("shm", REGION, "bench", {"SIZE": "64MB", "MAX_ITEM_SIZE": "1MB"})
    tmp = tempfile.mkdtemp(prefix="bench-agent-")
    try:
        for start in range(0, n, 5000):
            store.set_many({f"user:{i}": "x" * 100 for i in range(start, min(n, start + 5000))},
                           timeout=None)
        store.set("small", "s" * 100, timeout=None)
        store.set("big", os.urandom(64 << 10), timeout=None)
        n_all = store.stats()["entries"]
        Path(tmp, "bench_agent_settings.py").write_text(
            "SECRET_KEY = 'bench'\nINSTALLED_APPS = []\n"
            f"CACHES = {{'bench': {{'BACKEND': 'regioncache.SharedMemoryCache', "
            f"'LOCATION': {REGION!r}, 'OPTIONS': {{'SIZE': '64MB', 'MAX_ITEM_SIZE': '1MB'}}}}}}\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT / "django_backend")}
        agent = AgentClient(agent_command("bench_agent_settings", [tmp]), env=env)
        try:
            report(store, agent, n_all, args, tmp)
        finally:
            agent.close()
    finally:
        _native.remove_shm_region(REGION)


def report(store, agent, n_all, args, tmp):
    rows = []
    parse = {}

    def in_process(limit):
        cursor, count = "", 0
        while True:
            page, cursor, _ = store.list_entries(cursor, "", limit, raw_keys=True,
                                                 with_scanned=True)
            count += len(page)
            if not cursor:
                return count

    def through_agent(limit, keep):
        cursor, count = "", 0
        while True:
            rid = agent.send("list", region="bench", cursor=cursor, limit=limit)
            line = agent.read_line()
            keep.append(line)
            msg = json.loads(line)  # for the cursor; its time is taken out below
            assert msg["id"] == rid and msg["ok"], msg
            count += len(msg["entries"])
            cursor = msg["next_cursor"]
            if not cursor:
                return count

    for limit in (1000, 20000):
        lines = []
        t_native = best(lambda: in_process(limit), args.rounds)
        t_agent = best(lambda: (lines.clear(), through_agent(limit, lines)), args.rounds)
        t_parse = best(lambda: [json.loads(x) for x in lines], args.rounds)
        parse[limit] = t_parse
        rows.append((f"list, pages of {limit:,}", n_all / t_native, n_all / (t_agent - t_parse),
                     "entries/s", (t_agent - t_parse) / t_native))

    for key, label in (("small", "100-byte str"), ("big", "64 KiB bytes")):
        full = ":1:" + key
        store_full = full if store._peek_raw(full) is not None else key

        def native_gets():
            for _ in range(args.gets):
                store._peek_raw(store_full)

        def agent_gets():
            for _ in range(args.gets):
                agent.send("get", region="bench", key=store_full)
                agent.read_line()

        t_native = best(native_gets, args.rounds)
        t_agent = best(agent_gets, args.rounds)
        rows.append((f"get, {label}", t_native / args.gets * 1e6, t_agent / args.gets * 1e6,
                     "µs per call", t_agent / t_native))

    # The floor of a round trip: a child that echoes each line back, read
    # by a reader thread and written by its main thread, as the agent does.
    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    request = json.dumps({"id": 1, "op": "get", "region": "bench", "key": ":1:small"}).encode()
    request += b"\n"

    def echoes():
        for _ in range(args.gets):
            echo.stdin.write(request)
            echo.stdin.flush()
            echo.stdout.readline()

    t_echo = best(echoes, args.rounds)
    echo.stdin.close()
    echo.wait(30)
    rows.append(("floor: a line echoed by a reader thread", None, t_echo / args.gets * 1e6,
                 "µs per call", None))

    import django

    print(f"inspection agent vs in-process: Python {sys.version.split()[0]}, Django "
          f"{django.get_version()}, {os.cpu_count()} CPUs, {n_all:,} shm entries, best of "
          f"{args.rounds}\n")
    print("| call | in process | through the agent | unit | agent time / in process |")
    print("|---|---:|---:|---|---:|")
    for name, a, b, unit, ratio in rows:
        fmt = "{:,.0f}" if unit == "entries/s" else "{:.1f}"
        a = "" if a is None else fmt.format(a)
        ratio = "" if ratio is None else f"{ratio:.1f}×"
        print(f"| {name} | {a} | {fmt.format(b)} | {unit} | {ratio} |")
    print("\n(through the agent: request written, reply line read whole; the client's json.loads "
          f"apart: {parse[1000] * 1e3:.1f} ms for the region in pages of 1,000, "
          f"{parse[20000] * 1e3:.1f} ms for one page of 20,000)")

    # Where a 20,000-entry page goes inside the agent.
    from regioncache import agent as agent_mod
    from regioncache.spec import StoreSpec

    sink = io.BytesIO()
    a = agent_mod.Agent("bench_agent_settings", [StoreSpec("bench", "shm", "", REGION,
                                                           {"SIZE": "64MB"})],
                        False, 1 << 20, agent_mod.Output(sink))
    req = agent_mod._Request(1, "list", {"region": "bench", "limit": 20000})
    a.store("bench")
    listing = best(lambda: a.stores["bench"].list_entries("", "", 20000, raw_keys=True,
                                                          with_scanned=True), args.rounds)
    reply = {}
    whole = best(lambda: reply.update(a.carry_out(req)), args.rounds)
    written = best(lambda: (sink.seek(0), sink.truncate(), a.out.send(reply)), args.rounds)
    page_bytes = len(sink.getvalue())
    t_trip = best(lambda: (agent.send("list", region="bench", limit=20000), agent.read_line()),
                  args.rounds)
    print(f"\nOne page of 20,000 entries ({page_bytes / 1e6:.1f} MB of JSON), "
          f"a round trip of {t_trip * 1e3:.1f} ms:\n")
    print("| part | ms | share |")
    print("|---|---:|---:|")
    parts = [("the store's listing (list_entries)", listing),
             ("the entries as JSON text (UTF-8 check, ms times)", whole - listing),
             ("the reply line put together and written (to memory here)", written),
             ("pipe, reader, client (the rest)", max(0.0, t_trip - whole - written))]
    for name, t in parts:
        print(f"| {name} | {t * 1e3:.1f} | {t / t_trip:.0%} |")


if __name__ == "__main__":
    main()
