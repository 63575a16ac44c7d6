"""regioncache.FileCache against a hostile neighbour on a shared host (issue
11): another local user (tests/other_user.py) pre-creates the region's
directory, its ledger, a shard directory, or a link as LOCATION. The site's
user must refuse each, with an error naming the path, the owner and the mode,
and must leave the neighbour's files as they were. (Links inside LOCATION, the
ledger's damage, a removed directory and a full disk: tests/cpp/file_faults_test.cc.)"""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

import regioncache
from other_user import as_user, other_user


@pytest.fixture
def user():
    return other_user()


@pytest.fixture
def place():
    # Somewhere every user can reach, as /tmp is (the run's temp dir is not).
    base = Path(tempfile.mkdtemp(prefix="regioncache-shared-", dir="/tmp"))
    os.chmod(base, 0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[p] = (st.st_uid, stat.S_IMODE(st.st_mode), st.st_mtime_ns, data)
    return out


def open_region(new_region, location):
    """Why the region refused to open: the RegionError raised, or (under a
    failure policy that does not raise into views) the cache's open_error."""
    try:
        c = new_region(location)
    except regioncache.RegionError as e:
        return str(e)
    err = getattr(c, "open_error", None)
    assert err, f"the region opened on {location}"
    return str(err)


@pytest.fixture
def new_region(regions):
    from django.core.cache import caches

    def new(location):
        alias = regions.register({"BACKEND": "regioncache.FileCache", "LOCATION": str(location),
                                  "OPTIONS": {}})
        return caches[alias]

    return new


def _make_dir(path, mode):
    os.mkdir(path)
    os.chmod(path, mode)  # whatever the umask
    return None


def _make_file(path, mode, data):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return None


def _link(target, path):
    os.symlink(target, path)
    return None


@pytest.mark.parametrize("mode", [0o777, 0o700])
def test_location_made_by_another_user_is_refused(user, place, new_region, mode):
    loc = place / "cache"
    as_user(user, _make_dir, str(loc), mode)
    as_user(user, _make_file, str(loc / "note"), 0o644, b"theirs")
    before = snapshot(place)
    msg = open_region(new_region, loc)
    assert "refusing the cache directory" in msg and str(loc) in msg, msg
    assert f"owner {user[0]} (uid {user[1]})" in msg and f"mode {mode:04o}" in msg, msg
    assert "belongs to another user" in msg, msg
    assert snapshot(place) == before  # nothing made, written or removed there


def test_own_location_writable_by_others_is_refused(place, new_region):
    loc = place / "open"
    loc.mkdir()
    os.chmod(loc, 0o777)
    msg = open_region(new_region, loc)
    assert str(loc) in msg and "writable by group or others" in msg and "mode 0777" in msg, msg
    os.chmod(loc, 0o700)
    c = new_region(loc)  # made private, it is accepted
    c.set("k", "v")
    assert c.get("k") == "v"


# What another user plants inside the site's directory while it is open to
# all for a moment: the ledger (a file) or a shard directory.
@pytest.mark.parametrize("what, name, mode", [
    pytest.param("ledger", "regioncache.stats", 0o666, id="ledger"),
    pytest.param("shard directory", "3a", 0o777, id="shard"),
])
def test_file_made_by_another_user_inside_the_location_is_refused(user, place, new_region,
                                                                 what, name, mode):
    loc = place / "cache"
    loc.mkdir()
    os.chmod(loc, 0o777)  # for a moment, so the neighbour can plant its file
    planted = loc / name
    if what == "ledger":
        as_user(user, _make_file, str(planted), mode, b"\0" * 100)
    else:
        as_user(user, _make_dir, str(planted), mode)
    os.chmod(loc, 0o700)
    before = snapshot(loc)  # loc is ours: only what the neighbour made is compared
    msg = open_region(new_region, loc)
    assert f"refusing the {what}" in msg and str(planted) in msg, msg
    assert f"uid {user[1]}" in msg and f"mode {mode:04o}" in msg, msg
    assert snapshot(loc) == before


def test_location_linked_to_another_users_directory_is_refused(user, place, new_region):
    """A link as LOCATION is followed (it is the operator's path), once, and
    what it leads to must pass the same checks."""
    theirs = place / "theirs"
    as_user(user, _make_dir, str(theirs), 0o755)
    loc = place / "cache"
    as_user(user, _link, str(theirs), str(loc))
    before = snapshot(place)
    msg = open_region(new_region, loc)
    assert str(theirs) in msg and "belongs to another user" in msg, msg
    assert snapshot(place) == before


def test_directory_removed_under_a_running_site_is_made_again(new_region, tmp_path):
    """Issue 11: after a tmp cleaner or an operator's rm -rf, every later set()
    raised RegionError until a restart. The next write makes the directory
    again (0700, with a new ledger), as Django's FileBasedCache does."""
    loc = tmp_path / "cache"
    c = new_region(loc)
    for i in range(50):
        c.set(f"k{i}", i)
    shutil.rmtree(loc)
    assert c.get("k1") is None
    assert c.set("after", "v") is not False
    assert c.get("after") == "v"
    assert stat.S_IMODE(os.stat(loc).st_mode) == 0o700
    assert (loc / "regioncache.stats").is_file()
    for i in range(50):
        c.set(f"k{i}", i)
    assert all(c.get(f"k{i}") == i for i in range(50))
    c.clear()
    assert c.get("k3") is None
