"""python -m regioncache: small tools that need no Django settings.

    python -m regioncache shm-regions          list this user's shared-memory regions
    python -m regioncache drop-shm NAME...     remove shared-memory regions
    python -m regioncache describe --settings MODULE [--pythonpath DIR]
                                               print a project's CACHES regions as JSON:
                                               each one's store spec (regioncache.spec),
                                               what the desktop app opens
"""

import argparse
import json
import os
import sys

from regioncache import _native


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m regioncache")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("shm-regions", help="list this user's shared-memory regions")
    drop = sub.add_parser("drop-shm", help="remove shared-memory regions")
    drop.add_argument("names", nargs="+")
    desc = sub.add_parser("describe", help="print a Django project's cache regions as JSON")
    desc.add_argument("--settings", required=True, help="settings module, e.g. mysite.settings")
    desc.add_argument("--pythonpath", action="append", default=[], help="add to sys.path")
    args = parser.parse_args(argv)
    if args.command == "describe":
        return describe(args.settings, args.pythonpath)
    if args.command == "shm-regions":
        for name in _native.shm_regions():
            print(name)
        return 0
    status = 0
    for name in args.names:
        try:
            _native.remove_shm_region(name)
            print(f"removed {_native.shm_segment_name(name)}")
        except _native.RegionError as e:
            print(f"python -m regioncache: {e}", file=sys.stderr)
            status = 1
    return status


def describe(settings_module, pythonpath):
    """Prints {"regions": [{alias, kind, backend, location, options,
    key_prefix, version}, ...]}: each CACHES entry's store spec
    (regioncache.spec), the store's OPTIONS as the text the store is opened
    with, REGION_PREFIX included (the desktop app opens what it is given).

    kind is "shm", "file" or "memcached" for regioncache's backends and
    "django" for any other backend (listed, but not something the desktop app
    can open)."""
    for p in reversed(pythonpath):
        sys.path.insert(0, os.path.abspath(p))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        import django
        from django.conf import settings

        django.setup()
        caches = settings.CACHES
    except Exception as e:  # an import error in the project's settings, say
        print(f"python -m regioncache describe: cannot load {settings_module}: {e}", file=sys.stderr)
        return 2
    from django.core.exceptions import ImproperlyConfigured

    from regioncache.spec import store_spec

    regions = []
    for alias, conf in caches.items():
        try:
            regions.append(store_spec(alias, conf).as_json())
        except ImproperlyConfigured as e:
            print(f"python -m regioncache describe: {e}", file=sys.stderr)
            return 2
    json.dump({"regions": regions}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
