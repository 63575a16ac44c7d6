"""Compare-and-swap from Python: cache._swap and cache._delete_if (the building
blocks of ttl/expire/lock, native/python/cache.cc) answer the same on a
SharedMemoryCache and on a FileCache (Store::CompareAndSwap of each store),
signed regions included: the expected value is compared as set() stores it."""

import os
import time
import uuid

import pytest

KEY = "k" * 40  # a SIGNING_KEY


@pytest.fixture(params=["shm", "file"])
def region(request, regions):
    """make(**options) -> a cache of the parametrized kind on a fresh region."""

    def make(**options):
        if request.param == "shm":
            return regions.new(OPTIONS={"SIZE": "8MB", "MAX_ITEM_SIZE": "1MB", **options})
        location = os.path.join(os.environ["REGIONCACHE_TEST_TMP"],
                                f"cas-{uuid.uuid4().hex[:8]}")
        return regions.new(location=location, BACKEND="regioncache.FileCache",
                           OPTIONS=options)

    make.kind = request.param
    return make


@pytest.mark.parametrize("signed", [False, True], ids=["plain", "signed"])
def test_swap_replaces_only_the_value_it_expects(region, signed):
    cache = region(**({"SIGNING_KEY": KEY} if signed else {}))
    assert cache.signs_values is signed
    cache.set("k", {"a": [1, 2]})
    assert cache._swap("k", {"a": [1, 3]}, "new") is False
    assert cache._swap("k", "{'a': [1, 2]}", "new") is False  # same text, other type
    assert cache.get("k") == {"a": [1, 2]}
    assert cache._swap("k", {"a": [1, 2]}, "new") is True
    assert cache.get("k") == "new"
    assert cache._swap("k", {"a": [1, 2]}, "newer") is False
    assert cache.get("k") == "new"
    assert cache._swap("missing", "new", "x") is False
    assert cache.get("missing", "absent") == "absent"


def test_swap_takes_the_new_timeout_and_zero_deletes(region):
    cache = region()
    cache.set("k", 1, timeout=None)
    assert cache._expiry("k") == -1
    before = time.time() * 1000
    assert cache._swap("k", 1, 2, timeout=100) is True
    assert before + 99_000 <= cache._expiry("k") <= time.time() * 1000 + 100_000
    assert cache._swap("k", 2, 3, timeout=None) is True
    assert cache._expiry("k") == -1
    assert cache._swap("k", 3, 4, timeout=0) is True
    assert cache.get("k") is None
    assert cache._expiry("k") == -2


@pytest.mark.parametrize("signed", [False, True], ids=["plain", "signed"])
def test_delete_if_deletes_only_the_value_it_expects(region, signed):
    cache = region(**({"SIGNING_KEY": KEY} if signed else {}))
    assert cache.signs_values is signed
    cache.set("lock", "token-1")
    assert cache._delete_if("lock", "token-2") is False
    assert cache._delete_if("lock", b"token-1") is False  # bytes are not the str
    assert cache.get("lock") == "token-1"
    assert cache._delete_if("lock", "token-1") is True
    assert cache.get("lock") is None
    assert cache._delete_if("lock", "token-1") is False
    assert cache.add("lock", "token-3") is True


def test_swap_of_large_values(region):
    # Over the file store's COMPRESS_MIN_SIZE: stored compressed, compared whole.
    cache = region(**({"COMPRESS_MIN_SIZE": "1KB"} if region.kind == "file" else {}))
    old, new = "y" * 200_000, "z" * 200_000
    cache.set("big", old)
    assert cache._swap("big", "y" * 199_999 + "x", new) is False
    assert cache._swap("big", old, new) is True
    assert cache.get("big") == new
    assert cache._delete_if("big", new) is True
    assert cache.get("big") is None


def test_versions_are_separate_keys(region):
    cache = region()
    cache.set("k", "v", version=2)
    assert cache._swap("k", "v", "w") is False  # version 1 holds nothing
    assert cache._swap("k", "v", "w", version=2) is True
    assert cache.get("k", version=2) == "w"
    assert cache._delete_if("k", "w", version=3) is False
    assert cache._delete_if("k", "w", version=2) is True
