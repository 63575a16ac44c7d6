"""Test helper of the desktop app's QtTest programs: fills and inspects a
region through the real Django backend, so the app is checked against what
Django stores and sees.

    python django_region.py CONF_JSON fill      -> stores the fixture set, prints what was stored
    python django_region.py CONF_JSON has KEY.. -> prints {"KEY": true|false, ...}
    python django_region.py CONF_JSON get KEY   -> prints {"value": repr(value)}
    python django_region.py CONF_JSON set-many N PREFIX TIMEOUT -> stores N small str values
    python django_region.py CONF_JSON set-text NAME LENGTH -> stores an a..z str of LENGTH chars

CONF_JSON is one CACHES entry ({"BACKEND", "LOCATION", "OPTIONS"}) used as
the "default" cache. Sizes and expiries printed by fill are computed here
from the values and the clock, not read back from the store.
"""

import datetime
import decimal
import json
import pickle
import sys
import time


def setup(conf):
    import django
    from django.conf import settings

    settings.configure(CACHES={"default": conf}, USE_TZ=True)
    django.setup()
    from django.core.cache import cache

    return cache


def make_png(width, height):
    """A real RGB PNG (a colour gradient), encoded with zlib and CRCs."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 255 // width, y * 255 // height, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = make_png(48, 32)


def fixture():
    """(name, value, timeout): one of each encoding and view."""
    return [
        ("user:1", "Ada Lovelace", 300),
        ("user:2", "Grace Hopper", 600),
        ("counter", 42, None),
        ("negative", -7, 120),
        ("blob", bytes(range(256)), 900),
        ("json", json.dumps({"id": 7, "tags": ["a", "b"], "ok": True}).encode(), None),
        ("session:abc", {"user": 1, "when": datetime.date(2024, 1, 2), "cost": decimal.Decimal("1.50")}, 60),
        ("session:def", [1, 2.5, None, True, ("t", b"b")], 3600),
        ("image", PNG, None),
        ("unicode", "h\u00e9llo \u2603", 45),
    ]


def stored_size(value):
    if type(value) is str:
        return len(value.encode("utf-8"))
    if type(value) is bytes:
        return len(value)
    if type(value) is int:
        return len(str(value))
    return len(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def encoding(value):
    return {str: "str", bytes: "bytes", int: "int"}.get(type(value), "pickle")


def main():
    conf = json.loads(sys.argv[1])
    cache = setup(conf)
    cmd = sys.argv[2]
    if cmd == "fill":
        out = []
        for name, value, timeout in fixture():
            now = time.time()
            cache.set(name, value, timeout)
            out.append(
                {
                    "name": name,
                    "key": cache.make_key(name),
                    "size": stored_size(value),
                    "encoding": encoding(value),
                    "expires": None if timeout is None else now + timeout,
                }
            )
        print(json.dumps(out))
    elif cmd == "has":
        print(json.dumps({k: cache.has_key(k) for k in sys.argv[3:]}))
    elif cmd == "get":
        print(json.dumps({"value": repr(cache.get(sys.argv[3]))}))
    elif cmd == "set-many":
        n, prefix, timeout = int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
        cache.set_many({f"{prefix}{i}": f"v{i}" for i in range(n)}, timeout)
        print(json.dumps({"stored": n}))
    elif cmd == "set-text":
        name, length = sys.argv[3], int(sys.argv[4])
        cache.set(name, "".join(chr(97 + i % 26) for i in range(length)), None)
        print(json.dumps({"key": cache.make_key(name)}))
    elif cmd == "count":
        entries, cursor, total = [], "", 0
        while True:
            entries, cursor = cache.list_entries(cursor=cursor, limit=10000)
            total += len(entries)
            if not cursor:
                break
        print(json.dumps({"count": total}))
    else:
        raise SystemExit(f"unknown command {cmd}")
    cache.close()


if __name__ == "__main__":
    main()
