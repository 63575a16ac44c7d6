"""manage.py cacheregions: see and purge what the cache regions hold.

    manage.py cacheregions                              every region: store, location, stats
    manage.py cacheregions keys ALIAS [--pattern P] [--limit N]
    manage.py cacheregions purge ALIAS (--pattern P | --expired | --all | --url U) [--yes]
    manage.py cacheregions pages ALIAS [--url GLOB]      cached pages by URL (recorded ones)
    manage.py cacheregions --prometheus                 metrics, Prometheus's text format
    ... --json                                          machine-readable output
"""

import contextlib
import json
import sys
import time

from django.conf import settings
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError

from regioncache import _native, cached_pages
from regioncache._listing import entry_pages


def _region(alias):
    if alias not in settings.CACHES:
        known = ", ".join(sorted(settings.CACHES))
        raise CommandError(f"no cache alias {alias!r} in CACHES (known: {known})")
    try:
        cache = caches[alias]
    except Exception as e:  # ImproperlyConfigured and friends, with their message
        raise CommandError(f"CACHES[{alias!r}]: {e}") from None
    if not isinstance(cache, _native.Cache):
        raise CommandError(
            f"CACHES[{alias!r}] uses {settings.CACHES[alias].get('BACKEND')}, "
            "not a regioncache backend: it cannot be inspected"
        )
    return cache


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def _failures(action, alias):
    """A store that fails mid-command (a server down, stopped, garbling, too
    slow) ends the command with one line naming the region and what failed
    (the store's message names the server), not a traceback."""
    try:
        yield
    except (CommandError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise CommandError(f"{action} {alias}: {_one_line(e)}") from None


def _when(t):
    if t is None:
        return "never"
    left = t - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    return f"{stamp} ({left:+.0f} s)"


class Command(BaseCommand):
    help = "List cache regions with their stats, list a region's keys, or purge them."
    # An operator looks at the regions that work even when another alias is
    # misconfigured (Django's cache checks would stop the command at once);
    # that alias's own row or action reports its error.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument("--prometheus", action="store_true",
                            help="print every region's metrics in Prometheus's text format "
                                 "(needs prometheus_client: regioncache[metrics])")
        sub = parser.add_subparsers(dest="action")
        keys = sub.add_parser("keys", help="list a region's keys with size and expiry")
        keys.add_argument("alias")
        keys.add_argument("--pattern", default="", help="glob over full keys, e.g. ':1:user:*'")
        keys.add_argument("--limit", type=int, default=100)
        keys.add_argument("--json", action="store_true", dest="json_sub")
        purge = sub.add_parser("purge", help="delete a region's keys")
        purge.add_argument("alias")
        what = purge.add_mutually_exclusive_group(required=True)
        what.add_argument("--pattern", help="delete keys matching this glob")
        what.add_argument("--expired", action="store_true", help="delete expired entries")
        what.add_argument("--all", action="store_true", help="delete every entry")
        what.add_argument("--url", help="delete the cached pages of this absolute URL, or of "
                          "a URL glob ('*' any run of characters, anchored)")
        purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        purge.add_argument("--json", action="store_true", dest="json_sub")
        pages = sub.add_parser("pages", help="list a region's cached pages by URL")
        pages.add_argument("alias")
        pages.add_argument("--url", default=None, help="an absolute URL or a URL glob")
        pages.add_argument("--json", action="store_true", dest="json_sub")

    def handle(self, *args, **opts):
        as_json = opts["json"] or opts.get("json_sub", False)
        action = opts.get("action")
        if action == "keys":
            with _failures("keys", opts["alias"]):
                return self.keys(opts["alias"], opts["pattern"], opts["limit"], as_json)
        if action == "purge":
            with _failures("purge", opts["alias"]):
                return self.purge(opts, as_json)
        if action == "pages":
            with _failures("pages", opts["alias"]):
                return self.pages(opts["alias"], opts["url"], as_json)
        if opts["prometheus"]:
            from regioncache import metrics

            try:
                text = metrics.exposition()
            except ImportError as e:
                raise CommandError(str(e)) from None
            self.stdout.write(text.decode("utf-8"), ending="")
            return
        return self.overview(as_json)

    def overview(self, as_json):
        rows = []
        for alias, conf in settings.CACHES.items():
            location = conf.get("LOCATION", "")
            if isinstance(location, (list, tuple)):
                location = ";".join(str(x) for x in location)
            row = {"alias": alias, "backend": conf.get("BACKEND", ""), "location": location}
            try:
                cache = caches[alias]
                if isinstance(cache, _native.Cache):
                    row["kind"] = cache.store_kind
                    row["stats"] = cache.stats()
                else:
                    row["kind"] = "django"
            except Exception as e:
                row["error"] = _one_line(e)
            rows.append(row)
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2, default=str))
            return
        self.stdout.write(
            f"{'alias':<14} {'store':<9} {'location':<24} {'entries':>9} {'used':>12} "
            f"{'capacity':>12} {'hit ratio':>9}"
        )
        for r in rows:
            if "error" in r:
                self.stdout.write(f"{r['alias']:<14} error: {r['error']}")
                continue
            s = r.get("stats")
            if not s:
                self.stdout.write(f"{r['alias']:<14} {r['kind']:<9} {str(r['location']):<24} (not a regioncache region)")
                continue
            looked = s["hits"] + s["misses"]
            ratio = f"{100 * s['hits'] / looked:.1f}%" if looked else "-"
            self.stdout.write(
                f"{r['alias']:<14} {r['kind']:<9} {str(r['location']):<24} {s['entries']:>9} "
                f"{s['bytes_used']:>12} {s['capacity']:>12} {ratio:>9}"
            )

    def keys(self, alias, pattern, limit, as_json):
        if limit <= 0:
            raise CommandError("--limit must be positive")
        cache = _region(alias)
        entries, cursor = [], ""
        while len(entries) < limit:
            page, cursor = cache.list_entries(cursor=cursor, glob=pattern, limit=min(1000, limit - len(entries)))
            entries.extend(page)
            if not cursor:
                break
        if as_json:
            self.stdout.write(json.dumps({"alias": alias, "entries": entries, "more": bool(cursor)}, indent=2))
            return
        for e in entries:
            self.stdout.write(f"{e['key']}\t{e['size']} B\t{e['encoding']}\texpires {_when(e['expires'])}")
        self.stdout.write(f"{len(entries)} entries" + (" (more not shown: raise --limit)" if cursor else ""))

    def purge(self, opts, as_json):
        alias = opts["alias"]
        cache = _region(alias)
        if opts["expired"]:
            n = cache.purge_expired()
            return self._done(alias, n, "expired entries", as_json)
        if opts["url"]:
            return self.purge_url(alias, cache, opts, as_json)
        if opts["all"]:
            what, pattern = "every entry", ""
        else:
            what, pattern = f"entries matching {opts['pattern']!r}", opts["pattern"]
        if not opts["yes"]:
            self._confirm(f"Delete {what} of region {alias!r}?")
        if opts["all"]:
            cache.clear()
            return self._done(alias, None, what, as_json)
        # Page through matching keys and delete them in batches, showing
        # progress: a region can hold millions of keys.
        removed, show = 0, not as_json and sys.stderr.isatty()
        for page in entry_pages(cache, pattern, include_expired=True):
            if page:
                removed += cache.delete_raw([e["key"] for e in page])
            if show:
                sys.stderr.write(f"\rdeleted {removed}")
                sys.stderr.flush()
        if show:
            sys.stderr.write("\n")
        return self._done(alias, removed, what, as_json)

    @staticmethod
    def _confirm(question):
        if not sys.stdin.isatty():
            raise CommandError("refusing to purge without confirmation: add --yes")
        if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
            raise CommandError("purge cancelled")

    def pages(self, alias, url, as_json):
        cache = _region(alias)
        found = self._url_call(cached_pages.pages, cache, url=url)
        if as_json:
            self.stdout.write(json.dumps({"alias": alias, "pages": found}, indent=2))
            return
        for p in found:
            n = len(p["variants"])
            self.stdout.write(f"{p['method']:<5} {n:>3} variant{'s' if n != 1 else ' '}  "
                              f"expires {_when(p['expires'])}  {p['url']}")
        if found:
            self.stdout.write(f"{len(found)} page{'s' if len(found) != 1 else ''}")
        elif url:
            self.stdout.write(f"no recorded page matches {url}")
        else:
            self.stdout.write("0 pages recorded (pages are recorded by "
                              "regioncache.RecordPagesMiddleware or regioncache.cache_page)")

    def purge_url(self, alias, cache, opts, as_json):
        url = opts["url"]
        doomed = self._url_call(cached_pages.url_keys, url, cache)
        if not doomed:
            if as_json:
                return self._done(alias, 0, "", True)
            how = "" if "*" in url else " (neither recorded nor under its MD5)"
            self.stdout.write(f"{alias}: no cached page matches {url}{how}; nothing removed")
            return
        n_pages = sum(cached_pages.PAGE_NS in k for k in doomed)
        if not opts["yes"]:
            self._confirm(f"Delete {n_pages} cached page variants of {url} "
                          f"({len(doomed)} keys with header lists and records) in region {alias!r}?")
        removed = cache.delete_raw(doomed)
        if as_json:
            return self._done(alias, removed, "", True)
        self.stdout.write(f"{alias}: removed {removed} keys of {url} ({n_pages} page variants)")

    @staticmethod
    def _url_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:  # not an absolute URL, a host Django refuses
            raise CommandError(_one_line(e)) from None

    def _done(self, alias, n, what, as_json):
        if as_json:
            self.stdout.write(json.dumps({"alias": alias, "removed": n}))
        elif n is None:
            self.stdout.write(f"{alias}: cleared")
        else:
            self.stdout.write(f"{alias}: removed {n} {what}")
