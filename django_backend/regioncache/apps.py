from django.apps import AppConfig


class RegionCacheConfig(AppConfig):
    """Add "regioncache" to INSTALLED_APPS for the cacheregions command and
    the system checks of the regions in CACHES."""

    name = "regioncache"
    verbose_name = "regioncache"

    def ready(self):
        from regioncache import checks  # noqa: F401  (registers the checks)
        from regioncache import middleware  # noqa: F401  (PageHitMiddleware's check)
        from regioncache import views  # noqa: F401  (the metrics view's settings check)
