#!/usr/bin/env python3
"""Runs Django's own cache test suite against regioncache's backends.

Django's tests/cache/tests.py is the contract. It is not in the wheel, so
this script fetches the source distribution of the Django that is installed
(the pinned one), unpacks its tests/cache package into a cache directory and
runs the suite's BaseCacheTests (plus the backend-specific tests that apply)
against each of our backends with Django's own test runner.

    python tests/django_suite/run.py                 # every backend
    python tests/django_suite/run.py shm -v 2        # one backend, verbose
    python tests/django_suite/run.py --list-excluded

Where the sdist comes from: $REGIONCACHE_DJANGO_SDIST (a path to
Django-X.Y.Z.tar.gz) if set, else ~/.cache/regioncache/ (downloaded there
once with pip). The exit status is 0 only if every selected test passed.
"""

import argparse
import os
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "regioncache"


def django_version():
    import django

    return django.__version__


def find_sdist(version):
    given = os.environ.get("REGIONCACHE_DJANGO_SDIST")
    if given:
        return Path(given)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        if (CACHE_DIR / name).exists():
            return CACHE_DIR / name
    print(f"== downloading Django {version}'s source distribution (for its test suite)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
         f"django=={version}", "-d", str(CACHE_DIR)],
        check=True,
    )
    for name in (f"django-{version}.tar.gz", f"Django-{version}.tar.gz"):
        if (CACHE_DIR / name).exists():
            return CACHE_DIR / name
    raise SystemExit(f"pip download did not leave django-{version}.tar.gz in {CACHE_DIR}")


def unpack_cache_tests(sdist, version):
    """Extracts <sdist>/tests/cache into a directory of its own; returns it."""
    root = CACHE_DIR / f"django-{version}-tests"
    marker = root / "cache" / "tests.py"
    if marker.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        members = [
            m for m in tar.getmembers()
            if "/tests/cache/" in m.name and m.isfile() and ".." not in m.name
        ]
        if not members:
            raise SystemExit(f"{sdist} has no tests/cache/ directory")
        for m in members:
            m.name = "cache/" + m.name.split("/tests/cache/", 1)[1]
            tar.extract(m, root, filter="data")
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", help="shm, file, memcached (default: all built)")
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    parser.add_argument("--failfast", action="store_true")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only test methods matching this substring")
    parser.add_argument("--list-excluded", action="store_true")
    args = parser.parse_args()

    version = django_version()
    tests_root = unpack_cache_tests(find_sdist(version), version)
    sys.path[:0] = [str(tests_root), str(HERE)]
    os.environ["DJANGO_SETTINGS_MODULE"] = "conformance_settings"

    import django

    django.setup()
    import conformance

    if args.list_excluded:
        conformance.print_excluded()
        return 0

    labels = conformance.labels(args.backends)
    conformance.print_excluded(labels)
    from django.test.runner import DiscoverRunner

    runner = DiscoverRunner(
        verbosity=args.verbosity, failfast=args.failfast, interactive=False,
        test_name_patterns=args.patterns or None,
    )
    failures = runner.run_tests(labels)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
