"""Another local user, for the tests that play a hostile neighbour on a
shared host: pre-creating segments, directories, ledgers and links that the
site's user must refuse.

The tests run as root (CI does), so the user is made here with useradd when
it is missing. A run that is not root cannot make one: that is a failure in
CI (REGIONCACHE_REQUIRE_ROOT=1, which .ci/test sets), a skip with the reason
elsewhere.

    user = other_user()            # (name, uid, gid)
    as_user(user, fn, *args)       # run fn(*args) in a forked child with that uid
"""

import os
import pwd
import subprocess

from harness import require_root

NAME = "rc-intruder"


def other_user():
    """(name, uid, gid) of a second, unprivileged local user; made if needed."""
    require_root("the other-user tests need root to create a second local user")
    try:
        pw = pwd.getpwnam(NAME)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
            check=False, capture_output=True, text=True,
        )
        pw = pwd.getpwnam(NAME)  # a race with another test run: it exists now
    return pw.pw_name, pw.pw_uid, pw.pw_gid


def as_user(user, fn, *args):
    """Run fn(*args) in a forked child as `user`; re-raise its failure here.

    The child drops its groups, gid and uid (in that order) before calling fn,
    so whatever it creates belongs to that user, as a real neighbour's would.
    Returns fn's result if it is a str, int, bytes or None (sent back as text).
    """
    _, uid, gid = user
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = fn(*args)
            os.write(w, b"ok:" + repr(result).encode())
        except BaseException as e:  # report everything, then leave without cleanup
            os.write(w, f"error:{type(e).__name__}: {e}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode(errors="replace")
    if not out.startswith("ok:") or os.waitstatus_to_exitcode(status) != 0:
        raise AssertionError(f"as_user({fn.__name__}) failed: {out or status}")
    import ast

    return ast.literal_eval(out[3:])
