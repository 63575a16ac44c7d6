"""Django's own cache test suite (tests/cache/tests.py of the pinned Django's
source distribution) against each regioncache backend, through
tests/django_suite/run.py in a process of its own (the suite needs its own
settings module and test database)."""

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "django_suite" / "run.py"


# shm-signed, memcached-signed: the same contract with OPTIONS SIGNING_KEY (a second
# configuration in conformance.py; the default ones stay unsigned).
@pytest.mark.parametrize("backend", ["shm", "file", "memcached", "shm-signed", "memcached-signed"])
def test_djangos_cache_suite(backend):
    proc = subprocess.run(
        [sys.executable, str(RUNNER), backend, "-v", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-20000:]
    assert "\nOK" in out, out[-20000:]
    # Every test the suite has ran: a count of 0 would also say OK.
    ran = [line for line in out.splitlines() if line.startswith("Ran ")]
    assert ran and int(ran[-1].split()[1]) >= 50, out[-5000:]
