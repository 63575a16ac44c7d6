"""python -m regioncache: small tools that need no Django settings.

    python -m regioncache shm-regions          list this user's shared-memory regions
    python -m regioncache drop-shm NAME...     remove shared-memory regions
    python -m regioncache describe --settings MODULE [--pythonpath DIR]
                                               print a project's CACHES regions as JSON:
                                               each one's store spec (regioncache.spec),
                                               what the desktop app opens
    python -m regioncache agent --settings MODULE [--pythonpath DIR]... [--read-only]
                                [--max-request-bytes N]
                                               the inspection agent: line-delimited JSON
                                               on stdin/stdout (docs/AGENT.md)
"""

import argparse
import json
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
    agent = sub.add_parser("agent",
                           help="serve the inspection protocol (docs/AGENT.md) on stdin/stdout")
    agent.add_argument("--settings", required=True, help="settings module, e.g. mysite.settings")
    agent.add_argument("--pythonpath", action="append", default=[], help="add to sys.path")
    agent.add_argument("--read-only", action="store_true", help="refuse every write")
    agent.add_argument("--max-request-bytes", type=int, default=1 << 20,
                       help="longest request line taken (default 1 MiB)")
    args = parser.parse_args(argv)
    if args.command == "agent":
        from regioncache import agent

        return agent.main(args.settings, args.pythonpath, args.read_only, args.max_request_bytes)
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
    from regioncache.spec import SettingsError, project_specs

    try:
        regions = [spec.as_json() for spec in project_specs(settings_module, pythonpath)]
    except SettingsError as e:
        print(f"python -m regioncache describe: {e}", file=sys.stderr)
        return 2
    json.dump({"regions": regions}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
