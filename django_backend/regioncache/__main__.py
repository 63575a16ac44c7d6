"""python -m regioncache: small tools that need no Django settings.

    python -m regioncache shm-regions          list this user's shared-memory regions
    python -m regioncache drop-shm NAME...     remove shared-memory regions
"""

import argparse
import sys

from regioncache import _native


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m regioncache")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("shm-regions", help="list this user's shared-memory regions")
    drop = sub.add_parser("drop-shm", help="remove shared-memory regions")
    drop.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
