"""regioncache.views.metrics: the regions' metrics in Prometheus's text
format, for a scraper. One line in urls.py:

    path("metrics", regioncache.views.metrics),

Closed unless a setting opens it:

    REGIONCACHE_METRICS_TOKEN = "..."   a scraper sends "Authorization: Bearer <token>"
                                        (compared in constant time)
    REGIONCACHE_METRICS_STAFF = True    logged-in active staff users may read it
    REGIONCACHE_METRICS_ALIASES = [...] only these aliases (default: every regioncache alias)

Without either of the first two every request is refused (403). A request
with no credentials gets 401, a wrong token 403. System checks:
regioncache.E020 (a setting of the wrong type, an unknown alias, or the view
enabled without prometheus_client) and
regioncache.W020 (a token shorter than MIN_TOKEN characters).
"""

import hmac

from django.conf import settings
from django.core import checks
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

MIN_TOKEN = 24


def _token():
    token = getattr(settings, "REGIONCACHE_METRICS_TOKEN", None)
    return token if isinstance(token, str) and token else None


def _staff(request):
    if getattr(settings, "REGIONCACHE_METRICS_STAFF", False) is not True:
        return False
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _refusal(request):
    """None if the request may read the metrics, else the response."""
    token = _token()
    if token is None and getattr(settings, "REGIONCACHE_METRICS_STAFF", False) is not True:
        return HttpResponse("metrics are not enabled\n", status=403, content_type="text/plain")
    if _staff(request):
        return None
    given = request.headers.get("Authorization", "")
    if token is not None and given:
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode("utf-8"), token.encode("utf-8")):
            return None
        return HttpResponse("wrong credentials\n", status=403, content_type="text/plain")
    response = HttpResponse("credentials required\n", status=401, content_type="text/plain")
    if token is not None:
        response["WWW-Authenticate"] = 'Bearer realm="regioncache metrics"'
    return response


# never_cache: "private, no-store, max-age=0" on every answer, so that no
# page cache keeps an authorized scrape for the next, anonymous request
# (Django 4.2's cache middleware honours only "private").
@never_cache
@require_safe
def metrics(request):
    refused = _refusal(request)
    if refused is not None:
        return refused
    from regioncache import metrics as regionmetrics

    body = regionmetrics.exposition(getattr(settings, "REGIONCACHE_METRICS_ALIASES", None))
    from prometheus_client import CONTENT_TYPE_LATEST

    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@checks.register(checks.Tags.security, checks.Tags.caches)
def check_metrics_settings(app_configs=None, **kwargs):
    errors = []
    token = getattr(settings, "REGIONCACHE_METRICS_TOKEN", None)
    if token is not None and not isinstance(token, str):
        errors.append(checks.Error(
            f"REGIONCACHE_METRICS_TOKEN must be a str, not {type(token).__name__}: "
            "the metrics view stays closed", id="regioncache.E020"))
    elif isinstance(token, str) and len(token.strip()) < MIN_TOKEN:
        errors.append(checks.Warning(
            f"REGIONCACHE_METRICS_TOKEN is {len(token.strip())} characters: a bearer token "
            f"shorter than {MIN_TOKEN} can be guessed",
            hint="use secrets.token_urlsafe(32)", id="regioncache.W020"))
    staff = getattr(settings, "REGIONCACHE_METRICS_STAFF", False)
    if token is not None or staff is True:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            errors.append(checks.Error(
                "the metrics view is enabled but prometheus_client is not installed",
                hint="pip install 'regioncache[metrics]'", id="regioncache.E020"))
    if not isinstance(staff, bool):
        errors.append(checks.Error(
            f"REGIONCACHE_METRICS_STAFF must be True or False, not {staff!r}",
            id="regioncache.E020"))
    aliases = getattr(settings, "REGIONCACHE_METRICS_ALIASES", None)
    if aliases is not None:
        if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            errors.append(checks.Error(
                "REGIONCACHE_METRICS_ALIASES must be a list of CACHES aliases",
                id="regioncache.E020"))
        else:
            unknown = [a for a in aliases if a not in getattr(settings, "CACHES", {})]
            if unknown:
                errors.append(checks.Error(
                    f"REGIONCACHE_METRICS_ALIASES names {', '.join(unknown)}, not in CACHES",
                    id="regioncache.E020"))
    return errors
