"""Metrics of the cache regions for Prometheus (prometheus_client).

Register the collector once, e.g. in settings.py or an AppConfig.ready():

    from regioncache.metrics import register
    register()                      # prometheus_client's default REGISTRY

Every scrape then reads each regioncache alias of CACHES through the
store's cheap path (``_counters()``: no key dump, nothing O(entries)) and
yields, labelled region=<alias>, store=<kind>, scope=<whose figure>:

    regioncache_{hits,misses,sets,evictions,expirations,errors,stampede_waits}_total
    regioncache_{entries,bytes_used,capacity}      gauges
    regioncache_up      1 if the store answered (every server, for memcached), else 0

``scope`` is "region" (counted in the shared-memory segment or the file
ledger: every process on the host, so one worker's scrape is the host's
numbers), "process" (this process alone: memcached's errors and stampede
waits) or "servers" (the memcached servers' own totals, shared by every
region on them). A scrape never raises: a region that cannot answer is
``up 0`` and its error is logged (logger "regioncache.metrics").
"""

import logging

_log = logging.getLogger("regioncache.metrics")

PREFIX = "regioncache"
LABELS = ("region", "store", "scope")
COUNTERS = (
    ("hits", "Reads that found a live entry."),
    ("misses", "Reads that found none."),
    ("sets", "Entries written."),
    ("evictions", "Live entries removed to make room."),
    ("expirations", "Expired entries removed."),
    ("errors", "Store failures answered as a miss/False or raised, unreadable values, "
               "values too large for the region."),
    ("stampede_waits", "Callers that waited for another caller's computation."),
)
GAUGES = (
    ("entries", "Live entries."),
    ("bytes_used", "Bytes the entries take, headers included."),
    ("capacity", "The bound bytes_used never passes (0: none known)."),
)
UP_HELP = "1 if the region's store answered the scrape (every server, for memcached), else 0."


def _prometheus():
    try:
        from prometheus_client import core
    except ImportError as e:
        raise ImportError(
            "regioncache.metrics needs the prometheus_client package: "
            "pip install 'regioncache[metrics]'"
        ) from e
    return core


def _regioncache_aliases(only=None):
    """(alias, store kind) of every regioncache alias in CACHES, in CACHES
    order; only: an iterable of aliases to keep (others, and aliases of other
    backends, are skipped)."""
    from django.conf import settings

    from regioncache.spec import backend_kind

    wanted = None if only is None else set(only)
    found = []
    for alias, conf in getattr(settings, "CACHES", {}).items():
        if wanted is not None and alias not in wanted:
            continue
        kind = backend_kind(conf.get("BACKEND", ""))
        if kind != "django":
            found.append((alias, kind))
    return found


def _read(alias):
    """The region's _counters() dict, or None (logged) when it cannot answer."""
    from django.core.cache import caches

    try:
        figures = caches[alias]._counters()
    except Exception as e:
        _log.warning("regioncache metrics: region '%s' did not answer: %s", alias,
                     " ".join(str(e).split()) or type(e).__name__)
        return None
    down = [s for s in figures.get("servers", ()) if not s["up"]]
    if down:
        _log.warning("regioncache metrics: region '%s': %d of %d servers down: %s", alias,
                     len(down), len(figures["servers"]), "; ".join(s["error"] for s in down))
    figures["up"] = 0 if down else 1
    return figures


class RegionCollector:
    """A prometheus_client collector of the regioncache aliases of CACHES
    (all of them, or those named in aliases)."""

    def __init__(self, aliases=None):
        self._core = _prometheus()
        self.aliases = None if aliases is None else tuple(aliases)

    def _families(self):
        core = self._core
        counters = {n: core.CounterMetricFamily(f"{PREFIX}_{n}", h, labels=LABELS)
                    for n, h in COUNTERS}
        gauges = {n: core.GaugeMetricFamily(f"{PREFIX}_{n}", h, labels=LABELS)
                  for n, h in GAUGES}
        up = core.GaugeMetricFamily(f"{PREFIX}_up", UP_HELP, labels=("region", "store"))
        return counters, gauges, up

    def describe(self):
        # The names alone, so that registering does not scrape the stores.
        counters, gauges, up = self._families()
        return [*counters.values(), *gauges.values(), up]

    def collect(self):
        counters, gauges, up = self._families()
        for alias, kind in _regioncache_aliases(self.aliases):
            figures = _read(alias)
            if figures is None:
                up.add_metric((alias, kind), 0)
                continue
            up.add_metric((alias, kind), figures["up"])
            scope = figures["scope"]
            for name, family in (*counters.items(), *gauges.items()):
                family.add_metric((alias, kind, scope[name]), figures[name])
        yield from counters.values()
        yield from gauges.values()
        yield up


def register(registry=None, aliases=None):
    """Registers a RegionCollector with registry (default: prometheus_client's
    REGISTRY) and returns it."""
    collector = RegionCollector(aliases)
    if registry is None:
        from prometheus_client import REGISTRY as registry
    registry.register(collector)
    return collector


def exposition(aliases=None):
    """The text exposition format (bytes) of the regions, from a registry of
    their own (what `cacheregions --prometheus` prints and the view serves)."""
    _prometheus()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegionCollector(aliases))
    return generate_latest(registry)
