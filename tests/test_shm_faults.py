"""The shared-memory store against a hostile neighbour and damaged segments
(issue 11, items 1 and 9), through Django's cache API.

Item 1: another local user (tests/other_user.py, made as root) pre-creates
the segment a region will use, or a link in its place: the site must refuse
it with an error naming the path, the owner and the mode, and leave it as it
is. The fault campaign itself (1,000 trials) is tests/cpp/shm_fault_test.cc;
here a damaged live segment is exercised from Django in forked processes.
"""

import mmap
import os
import stat
import time

import pytest
from django.conf import settings
from django.core.cache import caches

import regioncache
from conftest import forget_alias, unique_name
from harness import run_forked
from other_user import as_user, other_user

UID = os.geteuid()


def seg_path(location):
    return f"/dev/shm/regioncache.{os.getuid()}.{location}"


def open_alias(regions, location, **options):
    options.setdefault("SIZE", "8MB")
    alias = regions.register(regions.conf(location, OPTIONS=options))
    return alias


def precreate(path, mode, size):
    """Run as the other user: create the file the site's segment would be."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode)
    os.fchmod(fd, mode)
    os.ftruncate(fd, size)
    os.close(fd)
    return os.stat(path).st_uid


def make_link(path, target):
    os.symlink(target, path)
    return None


# What another user puts where the site's segment will be: a file of theirs
# (in three modes) or a link to a file of the site's.
@pytest.mark.parametrize("plant, mode", [
    pytest.param("file", 0o666, id="precreated-0666"),
    pytest.param("file", 0o600, id="precreated-0600"),
    pytest.param("file", 0o644, id="precreated-0644"),
    pytest.param("link", None, id="link"),
])
def test_segment_planted_by_another_user_is_refused(regions, tmp_path, plant, mode):
    """Refused with an error naming the path (and for a file the owner and
    mode), and left as the neighbour made it; a link is not followed."""
    user = other_user()
    location = unique_name("planted" if plant == "file" else "link")
    path = seg_path(location)
    target = tmp_path / "victim"
    try:
        if plant == "file":
            owner = as_user(user, precreate, path, mode, 8 << 20)
            assert owner == user[1]
            needle = f"{mode:04o}"
        else:
            target.write_bytes(b"site data that must stay as it is")
            os.chmod(tmp_path, 0o755)
            as_user(user, make_link, path, str(target))
            assert os.path.islink(path)
            needle = "link"
        alias = open_alias(regions, location, RAISE_ERRORS=True)
        with pytest.raises(regioncache.RegionError) as err:
            caches[alias].set("k", "v")
        msg = str(err.value)
        assert path in msg, msg
        if plant == "file":
            assert user[0] in msg and needle in msg, msg
            assert alias in msg, msg
        assert_refused_by_default(regions, location, path, needle)
        if plant == "file":
            # Left as the neighbour made it: not adopted, not initialised.
            st = os.stat(path)
            assert st.st_uid == user[1] and stat.S_IMODE(st.st_mode) == mode
            with open(path, "rb") as f:
                assert f.read(4096) == bytes(4096)
        else:
            assert target.read_bytes() == b"site data that must stay as it is"
            assert os.path.islink(path)
    finally:
        forget_alias_safe(regions)
        if os.path.lexists(path):
            os.unlink(path)


def test_segment_made_group_or_world_accessible_is_refused(regions):
    """The site's own segment, chmod'ed 0666 by someone: refused, not used."""
    location = unique_name("chmod")
    alias = open_alias(regions, location)
    caches[alias].set("k", "v")
    forget_alias(alias)
    os.chmod(seg_path(location), 0o666)
    alias2 = open_alias(regions, location, RAISE_ERRORS=True)
    with pytest.raises(regioncache.RegionError) as err:
        caches[alias2].get("k")
    assert seg_path(location) in str(err.value) and "0666" in str(err.value)
    assert_refused_by_default(regions, location, seg_path(location), "0666")


def assert_refused_by_default(regions, location, path, needle):
    """Under the default failure policy the refused region answers misses and
    False, and says why in open_error; it never attaches."""
    c = caches[open_alias(regions, location)]
    assert c.set("k", "v") is False
    assert c.get("k", "miss") == "miss"
    assert path in c.open_error and needle in c.open_error, c.open_error


def test_new_segment_is_created_exclusively_and_private(regions):
    location = unique_name("fresh")
    alias = open_alias(regions, location)
    caches[alias].set("k", "v")
    st = os.stat(seg_path(location))
    assert st.st_uid == UID and stat.S_IMODE(st.st_mode) == 0o600
    assert caches[alias].get("k") == "v"


def forget_alias_safe(regions):
    for alias in list(regions.aliases):
        try:
            forget_alias(alias)
        except Exception:
            settings.CACHES.pop(alias, None)


def _child_reads(alias, keys):
    """In a forked child: read every key; exit 0 if each is its own value or a miss."""
    c = caches[alias]
    for k in keys:
        try:
            v = c.get(k)
        except regioncache.RegionError:
            continue
        if v is not None and v != "value-of-" + k:
            os._exit(2)
    os._exit(0)


def test_damaged_live_segment_never_crashes_django_processes(regions):
    """Header geometry, bucket array and values scribbled on while forked
    Django processes have the region open: each finishes, no wrong value."""
    location = unique_name("scribble")
    alias = open_alias(regions, location, SIZE="4MB", MAX_ITEM_SIZE="64KB")
    c = caches[alias]
    keys = [f"key{i}" for i in range(500)]
    for k in keys:
        c.set(k, "value-of-" + k, None)
    fd = os.open(seg_path(location), os.O_RDWR)
    m = mmap.mmap(fd, 0)
    os.close(fd)
    import random

    rng = random.Random(11)
    for rnd in range(20):
        what = rnd % 3
        if what == 0:
            m[40:80] = rng.randbytes(40)
        elif what == 1:
            for _ in range(64):
                off = 8192 + rng.randrange(len(m) - 8192 - 8)
                m[off:off + 8] = rng.randbytes(8)
        else:
            for _ in range(64):
                off = rng.randrange(len(m))
                m[off] ^= 1 + rng.randrange(255)
        end = run_forked(_child_reads, alias, keys)
        assert end == "exit 0", f"round {rnd}: child {end} (exit 2: a wrong value was returned)"
        # The parent writes too (repairs what it finds).
        for k in keys[:50]:
            c.set(k, "value-of-" + k, None)
    m.close()
    for k in keys:
        v = c.get(k)
        assert v is None or v == "value-of-" + k


def _child_after_truncation(alias, keys):
    """In a forked child that has the region open: every call answers (the
    default failure policy: misses, False, counted in cache.failures)."""
    c = caches[alias]
    failures = c.failures
    for k in keys:
        v = c.get(k)
        if v is not None and v != "value-of-" + k:
            os._exit(2)
    if c.set("after", "x" * 50_000) is not False:
        os._exit(3)
    os._exit(0 if c.failures > failures else 4)


@pytest.mark.parametrize("to", [0, 8192, 1 << 20])
def test_segment_truncated_under_a_django_process(regions, to):
    """The SIGBUS a shrunk segment raises is caught inside the store (in the
    loaded Python module too): an error naming the segment, no dead process."""
    location = unique_name("trunc")
    alias = open_alias(regions, location, SIZE="4MB", MAX_ITEM_SIZE="64KB")
    c = caches[alias]
    keys = [f"key{i}" for i in range(300)]
    for k in keys:
        c.set(k, "value-of-" + k + "." * 5000, None)
    c.set_many({k: "value-of-" + k for k in keys}, None)
    def after_a_while():
        time.sleep(0.3)  # the parent truncates meanwhile; this process keeps its mapping
        _child_after_truncation(alias, keys)

    end = run_forked(after_a_while,
                     before_wait=lambda pid: os.truncate(seg_path(location), to))
    assert end == "exit 0", f"child {end}"
