"""OPTIONS of other Django cache backends, and what regioncache has instead.

A site moving from Django's PyMemcacheCache or PyLibMCCache, Django's
RedisCache or django-redis brings its OPTIONS along. None of their names is
one of ours (ours are upper case and different), so the native option
reader would refuse each as "unknown option". regioncache.spec.store_spec
asks here first and raises ImproperlyConfigured naming the backend the
option belongs to and our equivalent, or saying there is none and why. The
README's "Coming from another backend" table is this one in prose; a test
keeps the two in step.
"""

from dataclasses import dataclass

PYMEMCACHE = "Django's PyMemcacheCache (pymemcache)"
PYLIBMC = "Django's PyLibMCCache (pylibmc)"
REDIS = "Django's RedisCache (redis-py)"
DJANGO_REDIS = "django-redis"

CLASS_OF_KIND = {
    "shm": "SharedMemoryCache",
    "file": "FileCache",
    "memcached": "MemcachedCache",
}

_NO_SERVER = {
    "shm": "the region has no server and no connection",
    "file": "the region has no server and no connection",
}


@dataclass(frozen=True)
class Answer:
    """What regioncache has for a foreign option. ours: our OPTION (or
    setting) and a few words; None when there is no equivalent, and why
    says so. kinds: the store kinds `ours` applies to; the others answer
    `elsewhere` (by default: no server, no connection)."""

    ours: str | None
    why: str = ""
    kinds: tuple = ("shm", "file", "memcached")
    elsewhere: dict | None = None
    needed: bool = True  # False: nothing is needed in its place


    def text(self, kind):
        """'has X (...)' or 'has no equivalent: why', for a store kind."""
        if kind in self.kinds:
            if self.ours is None:
                lead = "has no equivalent" if self.needed else "needs no equivalent"
                return f"{lead}: {self.why}"
            return f"has {self.ours}" + (f" ({self.why})" if self.why else "")
        return f"has no equivalent: {(self.elsewhere or _NO_SERVER)[kind]}"


_MC = ("memcached",)

NODELAY = Answer("TCP_NODELAY", "on by default", _MC)
CONNECT = Answer("CONNECT_TIMEOUT", "seconds, default 1.0", _MC)
CONNECT_MS = Answer("CONNECT_TIMEOUT",
                    "in seconds, where pylibmc's is in milliseconds; default 1.0", _MC)
POLL = Answer("POLL_TIMEOUT",
              "seconds, default 1.0; it bounds the whole call, not each wait for a byte", _MC)
POLL_US = Answer("POLL_TIMEOUT",
                 "in seconds, where pylibmc's is in microseconds; default 1.0; it bounds the "
                 "whole call", _MC)
POLL_MS = Answer("POLL_TIMEOUT",
                 "in seconds, where pylibmc's is in milliseconds; default 1.0; it bounds the "
                 "whole call", _MC)
FAILURE_LIMIT = Answer("SERVER_FAILURE_LIMIT",
                       "consecutive failures that mark a server failed, default 2", _MC)
DEAD_TIMEOUT = Answer("RETRY_TIMEOUT",
                      "seconds a failed server is left alone before it is tried again, default 2",
                      _MC)
EJECT = Answer("REMOVE_FAILED_SERVERS",
               "on by default: after SERVER_FAILURE_LIMIT failures a server's keys go to the "
               "next server on the ring", _MC)
NO_RETRY = Answer(None, "a failed call is not retried; SERVER_FAILURE_LIMIT and RETRY_TIMEOUT "
                        "say when a failing server is left alone and for how long", _MC)
RAISE = Answer("RAISE_ERRORS", "the other way round: False, the default, answers a failed store "
                               "with a miss or False and a log line; True raises RegionError")
POOL = Answer(None, "each process keeps one pool of connections a region, which grows to the "
                    "number of calls under way at once; it is not configurable", _MC)
HASHING = Answer(None, "keys always go to the servers on a consistent-hash ring (ketama's scheme, "
                       "4000 points a server, xxh3)", _MC, needed=False)
VALUES = Answer(None, "exact int, str (UTF-8) and bytes values are stored as they are, everything "
                      "else is pickled with the highest protocol; SIGNING_KEY signs values")
COMPRESS = Answer("COMPRESS_MIN_SIZE and COMPRESS_LEVEL",
                  "zstd; on from 32KB on memcached, off on a shared-memory or file region until "
                  "COMPRESS_MIN_SIZE is set")
KEY_PREFIX = Answer("Django's KEY_PREFIX", "a CACHES setting beside OPTIONS, as for every backend")
ANY_KEY = Answer(None, "any key Django accepts works (memcached: keys it cannot take are mapped, "
                       "see 'Memcached region')", needed=False)
NOREPLY = Answer(None, "every write waits for its reply (set_many and delete_many send all but a "
                       "server's last request with noreply)", _MC)
NO_TLS = Answer(None, "connections are plain TCP or unix sockets, without TLS", _MC)
NO_AUTH = Answer(None, "no SASL or AUTH: let only the site reach the memcached servers, and "
                       "SIGNING_KEY makes a value planted by anyone else a miss", _MC,
                 dict.fromkeys(("shm", "file"), "the region is the site's user's alone "
                                                "(a segment of mode 0600, a directory of 0700)"))
SOCKET = Answer(None, "the sockets are libmemcached's and not configurable", _MC)
ONE_CLIENT = Answer(None, "each store has one native client; spread keys over servers with "
                          "several LOCATION entries (MemcachedCache), and @region/get_or_set "
                          "give stampede protection")
ONE_NAMESPACE = Answer(None, "a region is its own namespace: give each its own LOCATION, or "
                             "its own KEY_PREFIX on shared memcached servers")
NO_REPLICAS = Answer(None, "each key lives on one server: there are no replicas or sentinels", _MC)
NOT_NEEDED = Answer(None, "connections are kept for the process and need no closing or checks",
                    _MC, needed=False)
NO_BLOCK = Answer(None, "calls block for at most POLL_TIMEOUT (plus CONNECT_TIMEOUT to connect)",
                  _MC)
PIPELINED = Answer(None, "get_many is one multi-get a server, set_many and delete_many are "
                         "pipelined", _MC, needed=False)
CAS = Answer(None, "the atomic calls (add, incr, compare-and-swap) are used where the API needs "
                   "them", _MC, needed=False)
KEEPALIVE = Answer(None, "TCP keepalive is not set; a dead server is found by POLL_TIMEOUT", _MC)

# Top-level OPTIONS names: (the backends they belong to, our answer).
FOREIGN = {
    # Django's PyMemcacheCache: pymemcache's HashClient keyword arguments.
    "no_delay": ((PYMEMCACHE,), NODELAY),
    "connect_timeout": ((PYMEMCACHE,), CONNECT),
    "timeout": ((PYMEMCACHE,), POLL),
    "ignore_exc": ((PYMEMCACHE,), RAISE),
    "max_pool_size": ((PYMEMCACHE,), POOL),
    "pool_idle_timeout": ((PYMEMCACHE,), POOL),
    "use_pooling": ((PYMEMCACHE,), POOL),
    "retry_attempts": ((PYMEMCACHE,), FAILURE_LIMIT),
    "retry_timeout": ((PYMEMCACHE,), NO_RETRY),
    "dead_timeout": ((PYMEMCACHE,), DEAD_TIMEOUT),
    "hasher": ((PYMEMCACHE,), HASHING),
    "serde": ((PYMEMCACHE,), VALUES),
    "serializer": ((PYMEMCACHE, REDIS), VALUES),
    "deserializer": ((PYMEMCACHE,), VALUES),
    "encoding": ((PYMEMCACHE,), VALUES),
    "key_prefix": ((PYMEMCACHE,), KEY_PREFIX),
    "allow_unicode_keys": ((PYMEMCACHE,), ANY_KEY),
    "default_noreply": ((PYMEMCACHE,), NOREPLY),
    "socket_keepalive": ((PYMEMCACHE, REDIS), KEEPALIVE),
    "socket_module": ((PYMEMCACHE,), SOCKET),
    "tls_context": ((PYMEMCACHE,), NO_TLS),
    "lock_generator": ((PYMEMCACHE,), POOL),
    # Django's PyLibMCCache: pylibmc.Client's keyword arguments.
    "binary": ((PYLIBMC,), Answer("BINARY_PROTOCOL", "off by default", _MC)),
    "username": ((PYLIBMC, REDIS), NO_AUTH),
    "password": ((PYLIBMC, REDIS), NO_AUTH),
    "behaviors": ((PYLIBMC,), None),  # a dict: answered behavior by behavior (BEHAVIORS)
    # Django's RedisCache: its own arguments and redis-py's connection pool's.
    "db": ((REDIS,), ONE_NAMESPACE),
    "pool_class": ((REDIS,), POOL),
    "parser_class": ((REDIS,), ONE_CLIENT),
    "socket_timeout": ((REDIS,), POLL),
    "socket_connect_timeout": ((REDIS,), CONNECT),
    "max_connections": ((REDIS,), POOL),
    "health_check_interval": ((REDIS,), NOT_NEEDED),
    "retry_on_timeout": ((REDIS,), NO_RETRY),
    "client_name": ((REDIS,), SOCKET),
    "ssl": ((REDIS,), NO_TLS),
    # django-redis.
    "CLIENT_CLASS": ((DJANGO_REDIS,), ONE_CLIENT),
    "SERIALIZER": ((DJANGO_REDIS,), VALUES),
    "PICKLE_VERSION": ((DJANGO_REDIS,), VALUES),
    "COMPRESSOR": ((DJANGO_REDIS,), COMPRESS),
    "USERNAME": ((DJANGO_REDIS,), NO_AUTH),
    "PASSWORD": ((DJANGO_REDIS,), NO_AUTH),
    "SOCKET_CONNECT_TIMEOUT": ((DJANGO_REDIS,), CONNECT),
    "SOCKET_TIMEOUT": ((DJANGO_REDIS,), POLL),
    "CONNECTION_POOL_KWARGS": ((DJANGO_REDIS,), POOL),
    "CONNECTION_POOL_CLASS": ((DJANGO_REDIS,), POOL),
    "CONNECTION_FACTORY": ((DJANGO_REDIS,), POOL),
    "IGNORE_EXCEPTIONS": ((DJANGO_REDIS,), RAISE),
    "PARSER_CLASS": ((DJANGO_REDIS,), ONE_CLIENT),
    "REDIS_CLIENT_CLASS": ((DJANGO_REDIS,), ONE_CLIENT),
    "REDIS_CLIENT_KWARGS": ((DJANGO_REDIS,), ONE_CLIENT),
    "REPLICA_READ_ONLY": ((DJANGO_REDIS,), NO_REPLICAS),
    "SENTINELS": ((DJANGO_REDIS,), NO_REPLICAS),
    "SENTINEL_KWARGS": ((DJANGO_REDIS,), NO_REPLICAS),
    "CLOSE_CONNECTION": ((DJANGO_REDIS,), NOT_NEEDED),
}

# pylibmc's behaviors (the keys of OPTIONS["behaviors"]).
BEHAVIORS = {
    "tcp_nodelay": NODELAY,
    "connect_timeout": CONNECT_MS,
    "receive_timeout": POLL_US,
    "send_timeout": POLL_US,
    "_poll_timeout": POLL_MS,
    "retry_timeout": DEAD_TIMEOUT,
    "dead_timeout": DEAD_TIMEOUT,
    "failure_limit": FAILURE_LIMIT,
    "remove_failed": EJECT,
    "auto_eject": EJECT,
    "ketama": HASHING,
    "ketama_weighted": HASHING,
    "ketama_hash": HASHING,
    "hash": HASHING,
    "distribution": HASHING,
    "verify_keys": ANY_KEY,
    "no_block": NO_BLOCK,
    "buffer_requests": PIPELINED,
    "noreply": NOREPLY,
    "cas": CAS,
    "num_replicas": NO_REPLICAS,
    "tcp_keepalive": KEEPALIVE,
    "pickle_protocol": VALUES,
}


def _behaviors_text(kind, behaviors):
    cls = f"regioncache's {CLASS_OF_KIND[kind]}"
    if not isinstance(behaviors, dict) or not behaviors:
        return f"{cls} takes each behavior it has as an OPTION of its own"
    parts = []
    for name in behaviors:
        answer = BEHAVIORS.get(name)
        parts.append(f"{name!r}: " + (answer.text(kind) if answer else "has no equivalent"))
    return f"{cls}, behavior by behavior: " + "; ".join(parts)


def foreign_option_errors(kind, options):
    """For a regioncache store kind and its OPTIONS dict: one sentence per
    option that belongs to another backend (in the order given), empty when
    none does."""
    out = []
    for name, value in options.items():
        entry = FOREIGN.get(name) if isinstance(name, str) else None
        if entry is None:
            continue
        backends, answer = entry
        whose = " and ".join(backends)
        if answer is None:  # pylibmc's behaviors
            text = _behaviors_text(kind, value)
        else:
            text = f"regioncache's {CLASS_OF_KIND[kind]} {answer.text(kind)}"
        out.append(f"OPTIONS[{name!r}] is an option of {whose}; {text}")
    return out


def table_rows():
    """The README's table: one row per backend and answer, (the options as
    written in OPTIONS, the backends they belong to, MemcachedCache's
    answer, SharedMemoryCache's and FileCache's answer), in FOREIGN's order."""
    rows = {}

    def add(name, whose, answer):
        row = rows.setdefault((whose, id(answer)), [[], whose, answer])
        row[0].append(f"`{name}`")

    for name, (backends, answer) in FOREIGN.items():
        whose = ", ".join(b.split(" (")[0].removeprefix("Django's ") for b in backends)
        if answer is None:  # pylibmc's behaviors, each of its own
            for behavior, b_answer in BEHAVIORS.items():
                add(f"behaviors[{behavior!r}]", whose, b_answer)
        else:
            add(name, whose, answer)
    out = []
    for names, whose, answer in rows.values():
        mc, shm, file = (answer.text(k).removeprefix("has ") for k in ("memcached", "shm", "file"))
        out.append((", ".join(names), whose, mc,
                    shm if shm == file else f"SharedMemoryCache: {shm}; FileCache: {file}"))
    return out
