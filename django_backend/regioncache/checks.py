"""System checks (manage.py check) for the regions in CACHES.

regioncache.E001  a region cannot be opened: bad OPTIONS, a shared-memory SIZE
                  too small for its MAX_ITEM_SIZE, a segment of another size...
regioncache.E002  a file region's directory is not writable (or cannot be made)
regioncache.W001  a memcached server does not answer (a warning: the site runs,
                  its reads miss and its writes fail until the server is back)
regioncache.W002  two aliases on one store with the same key prefix and
                  version: their keys collide, and clear() of one empties both
"""

import os
import socket

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

CONNECT_TIMEOUT = 0.5


def _regions():
    """{alias: its StoreSpec, or the ImproperlyConfigured it raised} for the
    CACHES entries of regioncache."""
    from django.core.exceptions import ImproperlyConfigured

    from regioncache.backends import _RegionCache
    from regioncache.spec import store_spec

    found = {}
    for alias, params in getattr(settings, "CACHES", {}).items():
        try:
            cls = import_string(params.get("BACKEND", ""))
        except ImportError:
            continue  # Django's own handling reports it when the cache is used
        if isinstance(cls, type) and issubclass(cls, _RegionCache):
            try:
                found[alias] = store_spec(alias, params, kind=cls.store_kind)
            except ImproperlyConfigured as e:
                found[alias] = e
    return found


def _answers(server):
    """None if a memcached server accepts a connection, else why not."""
    if server.startswith("unix:"):
        server = server[5:]
    try:
        if server.startswith("/"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(CONNECT_TIMEOUT)
                s.connect(server)
        else:
            host, _, port = server.rpartition(":")
            if not host:
                host, port = server, "11211"
            with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT):
                pass
    except (OSError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


def _directory_problem(path):
    """None if path is (or can be made) a writable directory, else why not."""
    path = os.path.abspath(str(path))
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} exists and is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable by this user (uid {os.getuid()})"
        return None
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent or "/", os.W_OK | os.X_OK):
        return f"{path} does not exist and {parent} is not writable to create it"
    return None


@checks.register(checks.Tags.caches)
def check_regions(app_configs=None, **kwargs):
    from django.core.cache import caches
    from django.core.exceptions import ImproperlyConfigured

    from regioncache import RegionError

    messages = []
    regions = _regions()
    for alias, spec in regions.items():
        if isinstance(spec, ImproperlyConfigured):
            messages.append(checks.Error(
                f"CACHES[{alias!r}]: the region cannot be opened: {spec}",
                hint=getattr(spec, "hint", None),  # an OPTION of another backend: where to look
                id="regioncache.E001",
            ))
            continue
        if spec.kind == "file":
            problem = _directory_problem(spec.location)
            if problem:
                messages.append(checks.Error(
                    f"CACHES[{alias!r}]: the file region's directory is not usable: {problem}.",
                    hint="Point LOCATION at a directory this user can write, or create it.",
                    id="regioncache.E002",
                ))
                continue
        try:
            cache = caches.create_connection(alias)
        except (ImproperlyConfigured, RegionError, ValueError) as e:
            messages.append(checks.Error(
                f"CACHES[{alias!r}]: the region cannot be opened: {e}",
                id="regioncache.E001",
            ))
            continue
        if getattr(cache, "open_error", None):
            # Opened lazily under the failure policy: the region answers
            # misses until its store can be opened.
            messages.append(checks.Error(
                f"CACHES[{alias!r}]: the region cannot be opened: {cache.open_error}",
                id="regioncache.E001",
            ))
            continue
        cache.close()
        for server in spec.servers:
            why = _answers(server)
            if why:
                messages.append(checks.Warning(
                    f"CACHES[{alias!r}]: memcached server {server} does not answer ({why}).",
                    hint="Reads of its keys miss and writes fail until it is back.",
                    id="regioncache.W001",
                ))
    messages.extend(_shared_stores(
        {a: s for a, s in regions.items() if not isinstance(s, ImproperlyConfigured)}))
    return messages


def _shared_stores(regions):
    by_store = {}
    for alias, spec in regions.items():
        if spec.kind == "memcached":
            where = tuple(sorted(spec.servers))
        elif spec.kind == "file":
            where = os.path.realpath(spec.location)
        else:
            where = spec.location
        keys = (spec.key_prefix, spec.version, settings.CACHES[alias].get("KEY_FUNCTION"))
        by_store.setdefault((spec.kind, where, repr(keys)), []).append(alias)
    out = []
    for (kind, where, _), aliases in by_store.items():
        if len(aliases) > 1:
            names = ", ".join(repr(a) for a in aliases)
            out.append(checks.Warning(
                f"CACHES aliases {names} use the same {kind} store ({where}) with the same "
                "KEY_PREFIX and VERSION: their keys collide, and clear() on one empties the others.",
                hint="Give each region its own LOCATION, or distinct KEY_PREFIX values if "
                "sharing the store is intended.",
                id="regioncache.W002",
            ))
    return out
