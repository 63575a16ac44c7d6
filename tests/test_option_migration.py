"""Coming from another backend: an OPTION of Django's PyMemcacheCache,
PyLibMCCache or RedisCache, or of django-redis, is refused naming the
backend it belongs to and regioncache's equivalent (or why there is none),
from the backend and from the system check; an option nobody has keeps the
native "unknown option" message listing the store's own options; and the
README's table says what the errors say."""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from regioncache import checks
from regioncache.foreign_options import BEHAVIORS, CLASS_OF_KIND, FOREIGN, table_rows

README = Path(__file__).resolve().parent.parent / "README.md"
BACKEND = {
    "shm": "regioncache.SharedMemoryCache",
    "file": "regioncache.FileCache",
    "memcached": "regioncache.MemcachedCache",
}


def conf_of(regions, kind, options):
    location = {
        "shm": None,  # a fresh region name
        "file": os.path.join(settings.TMP_DIR, f"migration-{len(regions.aliases)}"),
        "memcached": "127.0.0.1:1",  # never reached: options are read before any connection
    }[kind]
    return regions.conf(location, BACKEND=BACKEND[kind], OPTIONS=options)


def open_error(regions, kind, options):
    """The ImproperlyConfigured text of opening a region of kind with options."""
    alias = regions.register(conf_of(regions, kind, options))
    with pytest.raises(ImproperlyConfigured) as e:
        caches[alias]
    return str(e.value)


# (kind, OPTIONS, the words the error must have), as a user of each backend would write them.
NAMED = [
    ("memcached", {"no_delay": True},
     "OPTIONS['no_delay'] is an option of Django's PyMemcacheCache (pymemcache); "
     "regioncache's MemcachedCache has TCP_NODELAY (on by default)"),
    ("memcached", {"connect_timeout": 2}, "MemcachedCache has CONNECT_TIMEOUT (seconds"),
    ("memcached", {"timeout": 2}, "MemcachedCache has POLL_TIMEOUT (seconds"),
    ("memcached", {"dead_timeout": 30},
     "MemcachedCache has RETRY_TIMEOUT (seconds a failed server"),
    ("memcached", {"retry_attempts": 3}, "MemcachedCache has SERVER_FAILURE_LIMIT"),
    ("memcached", {"max_pool_size": 4},
     "OPTIONS['max_pool_size'] is an option of Django's PyMemcacheCache (pymemcache); "
     "regioncache's MemcachedCache has no equivalent: each process keeps one pool"),
    ("memcached", {"binary": True},
     "OPTIONS['binary'] is an option of Django's PyLibMCCache (pylibmc); "
     "regioncache's MemcachedCache has BINARY_PROTOCOL (off by default)"),
    ("memcached", {"behaviors": {"tcp_nodelay": True, "ketama": True, "connect_timeout": 500,
                                 "remove_failed": 4, "no_such_behavior": 1}},
     "OPTIONS['behaviors'] is an option of Django's PyLibMCCache (pylibmc); regioncache's "
     "MemcachedCache, behavior by behavior: 'tcp_nodelay': has TCP_NODELAY (on by default); "
     "'ketama': needs no equivalent: keys always go to the servers on a consistent-hash ring"),
    ("memcached", {"behaviors": {"connect_timeout": 500}},
     "'connect_timeout': has CONNECT_TIMEOUT (in seconds, where pylibmc's is in milliseconds"),
    ("memcached", {"behaviors": {"remove_failed": 4, "no_such_behavior": 1}},
     "'remove_failed': has REMOVE_FAILED_SERVERS (on by default: after SERVER_FAILURE_LIMIT "
     "failures a server's keys go to the next server on the ring); 'no_such_behavior': has no "
     "equivalent"),
    ("memcached", {"password": "secret"},
     "OPTIONS['password'] is an option of Django's PyLibMCCache (pylibmc) and Django's "
     "RedisCache (redis-py); regioncache's MemcachedCache has no equivalent: no SASL or AUTH"),
    ("memcached", {"db": 1}, "OPTIONS['db'] is an option of Django's RedisCache (redis-py); "
                             "regioncache's MemcachedCache has no equivalent: a region is its own"),
    ("memcached", {"SOCKET_TIMEOUT": 0.5},
     "OPTIONS['SOCKET_TIMEOUT'] is an option of django-redis; regioncache's MemcachedCache has "
     "POLL_TIMEOUT"),
    ("memcached", {"SOCKET_CONNECT_TIMEOUT": 0.5}, "MemcachedCache has CONNECT_TIMEOUT"),
    ("memcached", {"CONNECTION_POOL_KWARGS": {"max_connections": 100}},
     "OPTIONS['CONNECTION_POOL_KWARGS'] is an option of django-redis; regioncache's "
     "MemcachedCache has no equivalent: each process keeps one pool"),
    ("file", {"COMPRESSOR": "django_redis.compressors.zstd.ZStdCompressor"},
     "OPTIONS['COMPRESSOR'] is an option of django-redis; regioncache's FileCache has "
     "COMPRESS_MIN_SIZE and COMPRESS_LEVEL"),
    ("shm", {"COMPRESSOR": "django_redis.compressors.zstd.ZStdCompressor"},
     "OPTIONS['COMPRESSOR'] is an option of django-redis; regioncache's SharedMemoryCache has "
     "COMPRESS_MIN_SIZE and COMPRESS_LEVEL"),
    ("shm", {"IGNORE_EXCEPTIONS": True},
     "OPTIONS['IGNORE_EXCEPTIONS'] is an option of django-redis; regioncache's SharedMemoryCache "
     "has RAISE_ERRORS (the other way round"),
    ("file", {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
     "OPTIONS['CLIENT_CLASS'] is an option of django-redis; regioncache's FileCache has no "
     "equivalent: each store has one native client"),
    ("shm", {"no_delay": True},
     "regioncache's SharedMemoryCache has no equivalent: the region has no server and no "
     "connection"),
    ("file", {"PASSWORD": "secret"},
     "regioncache's FileCache has no equivalent: the region is the site's user's alone"),
]


@pytest.mark.parametrize("kind,options,words", NAMED,
                         ids=[f"{k}-{next(iter(o))}" for k, o, _ in NAMED])
def test_a_foreign_option_names_its_backend_and_our_equivalent(regions, kind, options, words):
    message = open_error(regions, kind, options)
    assert message.startswith("CACHES["), message
    assert words in message, message
    assert "unknown option" not in message


def test_every_foreign_option_on_every_store_gets_its_answer(regions):
    for kind in BACKEND:
        for name, (backends, answer) in FOREIGN.items():
            value = {"tcp_nodelay": True} if answer is None else 1
            message = open_error(regions, kind, {name: value})
            whose = " and ".join(backends)
            assert f"OPTIONS[{name!r}] is an option of {whose}; regioncache's " \
                   f"{CLASS_OF_KIND[kind]}" in message, message
            if answer is not None:
                assert answer.text(kind) in message, message


def test_several_foreign_options_are_all_named_and_ours_beside_them_do_not_hide_them(regions):
    message = open_error(regions, "memcached", {"POLL_TIMEOUT": 0.5, "no_delay": True,
                                                "SOCKET_TIMEOUT": 1, "COMPRESS_LEVEL": 3})
    assert "OPTIONS['no_delay'] is an option of" in message
    assert "OPTIONS['SOCKET_TIMEOUT'] is an option of" in message
    assert "POLL_TIMEOUT'] is an option" not in message and "COMPRESS_LEVEL'] is" not in message


def test_our_own_options_still_open(regions):
    for kind, options in [("memcached", {"TCP_NODELAY": True, "POLL_TIMEOUT": 0.5}),
                          ("file", {"COMPRESS_MIN_SIZE": "64KB"}),
                          ("shm", {"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB"})]:
        alias = regions.register(conf_of(regions, kind, options))
        assert caches[alias].store_kind == kind


def _known_options(regions, kind):
    message = open_error(regions, kind, {"NO_SUCH_OPTION": 1})
    m = re.search(r"unknown option NO_SUCH_OPTION \(this store knows: ([A-Z_, ]+)\)$", message)
    assert m, message
    return set(m.group(1).split(", "))


def test_an_option_nobody_has_keeps_the_native_message_listing_ours(regions):
    known = {kind: _known_options(regions, kind) for kind in BACKEND}
    assert {"SIZE", "MAX_ITEM_SIZE", "ON_MISMATCH", "LOCK_TIMEOUT"} <= known["shm"]
    assert {"MAX_SIZE", "COMPRESS_MIN_SIZE", "FSYNC"} <= known["file"]
    assert {"TCP_NODELAY", "CONNECT_TIMEOUT", "POLL_TIMEOUT",
            "BINARY_PROTOCOL"} <= known["memcached"]
    # No foreign name is one of ours: each would otherwise be refused though valid.
    for kind, ours in known.items():
        assert not ours & set(FOREIGN), (kind, ours & set(FOREIGN))
        assert not ours & set(BEHAVIORS), (kind, ours & set(BEHAVIORS))
    message = open_error(regions, "memcached", {"no_dealy": True})
    assert "unknown option no_dealy (this store knows: " in message
    assert "is an option of" not in message


def test_the_system_check_reports_it_with_a_pointer_to_the_table(regions):
    alias = regions.register(conf_of(regions, "memcached", {"ignore_exc": True}))
    errors = [m for m in checks.check_regions() if alias in m.msg]
    assert len(errors) == 1, errors
    (error,) = errors
    assert error.id == "regioncache.E001"
    assert "OPTIONS['ignore_exc'] is an option of Django's PyMemcacheCache (pymemcache); " \
           "regioncache's MemcachedCache has RAISE_ERRORS" in error.msg
    assert "Coming from another backend" in error.hint
    # An option nobody has: E001 as before, without the pointer.
    alias = regions.register(conf_of(regions, "memcached", {"NO_SUCH_OPTION": 1}))
    (error,) = [m for m in checks.check_regions() if alias in m.msg]
    assert error.id == "regioncache.E001" and error.hint is None
    assert "unknown option NO_SUCH_OPTION" in error.msg


def _readme_table():
    text = README.read_text()
    section = text.split("\n## Coming from another backend\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [tuple(cell.strip() for cell in row.strip("|").split(" | ")) for row in rows]


def test_the_readme_table_says_what_the_errors_say():
    assert _readme_table() == table_rows()
    named = {n for row in table_rows() for n in re.findall(r"`([^`]+)`", row[0])}
    assert named == set(FOREIGN) - {"behaviors"} | {f"behaviors[{b!r}]" for b in BEHAVIORS}
