"""Cached pages answered first: regioncache.middleware.PageHitMiddleware.

Opt-in, first in MIDDLEWARE. For a GET or HEAD request it makes the keys
Django's FetchFromCacheMiddleware (the site's cache middleware) or a
@cache_page view would make, for each (cache alias, key prefix) pair of
REGIONCACHE_PAGE_HITS, and answers a stored page at once. The keys are
made here once per request rather than twice, after a check at start-up
that they equal what Django's _generate_cache_key makes (else Django's
function makes them). Anything else (a miss, another method, a request it
cannot judge, a store that fails) goes on to the rest of MIDDLEWARE untouched,
so Django answers it exactly as without this middleware.

A hit skips the middlewares after this one. Each of them is one of three
kinds (the README's "Serving cached pages fast" has the table):

* replayed: its request phase is run first (SecurityMiddleware's https
  redirect, CommonMiddleware's forbidden user agents and www redirect,
  LocaleMiddleware's language, which the key needs); a request it would
  answer itself goes on to Django. On a hit its response phase is run on
  the page (security headers, Content-Length, X-Frame-Options,
  Content-Language, gzip, 304s), in Django's order.
* guarded: sessions, CSRF, auth, messages add nothing to a hit except in
  cases this middleware recognises and leaves to Django (a session cookie
  Django would delete, a CSRF cookie Django would replace); a setting that
  acts on every request (SESSION_SAVE_EVERY_REQUEST, CSRF_USE_SESSIONS)
  turns the fast path off (MiddlewareNotUsed, and a system check says so).
* the cache middlewares, which do nothing more on a hit.

Any other middleware is skipped on a hit; the system check names it.

A page a @cache_page view stored (an entry other than the site's cache
middleware pair) is served only for a path that resolves to a view whose
outermost wrapper is that cache_page, with that cache and prefix: a view
wrapped in login_required (or anything else) outside cache_page goes to
Django, which runs the wrapper first. The verdict is kept per path.
"""

import contextvars
import logging
import threading
import time
from hashlib import md5
from inspect import iscoroutinefunction
from types import SimpleNamespace

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core import checks
from django.core.cache import caches
from django.core.exceptions import DisallowedHost, ImproperlyConfigured, MiddlewareNotUsed
from django.core.signals import setting_changed
from django.middleware.cache import CacheMiddleware, FetchFromCacheMiddleware, UpdateCacheMiddleware
from django.urls import Resolver404, get_resolver
from django.utils import timezone as _timezone
from django.utils.cache import _generate_cache_header_key, _generate_cache_key, get_max_age
from django.utils.http import parse_http_date_safe
from django.utils.module_loading import import_string
from django.utils.timezone import _get_timezone_name, get_default_timezone
from django.utils.translation import trans_real

from regioncache._native import read_pickle

log = logging.getLogger("regioncache.page_hits")

HEADER_NS = "views.decorators.cache.cache_header."
PAGE_NS = "views.decorators.cache.cache_page."
ABSENT = b"-,"  # Django 5.2's mark of a Vary header the request lacks
_MISSING = object()
_EMPTY_MD5 = md5(b"", usedforsecurity=False).hexdigest()
_ABSENT_LIST = ()  # _peeked_list: no header list stored
_NO_DATE = object()
_AGE_PARTS = {}  # (Cache-Control, Expires) as stored -> (max-age, Expires timestamp)


class _LocalReader:
    """A reader of module._active.value (None when unset), one of Django's
    asgiref Locals; Django's test signals replace them, so the module's
    attribute is looked up on each read. Where this asgiref keeps a Local's
    values in a context variable (a thread-tagged dict), that variable is
    read directly: getattr on the Local takes a lock, and an unset value
    costs it an exception with a repr, together more than a page's get.
    Each Local it meets is checked first, in a copy of the context: a value
    set there must read back, and an unset one as None; else getattr."""

    def __init__(self, module):
        self.module = module
        self.local = self.var = None

    def __call__(self):
        local = self.module._active
        if local is not self.local:
            self._adopt(local)
        if self.var is None:
            return getattr(local, "value", None)
        stored = self.var.get(None)
        if stored is None or stored.thread_id != threading.get_ident():
            return None
        return stored.data.get("value")

    def _adopt(self, local):
        self.local, self.var = local, None
        var = getattr(local.__dict__.get("_storage"), "_data", None)
        if type(local).__name__ != "_DefaultLocal" or not isinstance(var, contextvars.ContextVar):
            return
        self.var = var
        marker = object()

        def agrees():
            if self() is not getattr(local, "value", None):
                return False
            local.value = marker
            return self() is marker

        try:
            ok = contextvars.copy_context().run(agrees)
        except Exception:
            ok = False
        if not ok:
            self.var = None


def _language():
    """translation.get_language() with USE_I18N (trans_real's)."""
    active = _ACTIVE_TRANSLATION()
    if active is not None:
        try:
            return active.to_language()
        except AttributeError:
            pass
    return settings.LANGUAGE_CODE


def _time_zone_name():
    """timezone.get_current_timezone_name()."""
    zone = _ACTIVE_ZONE()
    if zone is None:
        zone = get_default_timezone()
    try:
        name = _ZONE_NAMES.get(zone)
    except TypeError:  # a tzinfo that cannot be a key
        return _get_timezone_name(zone)
    if name is None:
        if len(_ZONE_NAMES) >= 1000:
            _ZONE_NAMES.clear()
        name = _ZONE_NAMES[zone] = _get_timezone_name(zone)
    return name


def _peeked_list(cache, key):
    """The header list under key, read without counting, or None (absent,
    signed, compressed or not a list of str: the caller gets it)."""
    if cache.signs_values:
        return None
    raw = cache._peek_raw(cache.make_key(key))
    if raw is None:
        return _ABSENT_LIST
    if raw["encoding"] != "pickle" or raw["truncated"]:
        return None
    try:
        value = read_pickle(raw["data"])
    except Exception:
        return None
    if type(value) is not list or not all(type(h) is str for h in value):
        return None
    return value


def _age_parts(response):
    max_age = get_max_age(response)
    if max_age is None:
        return (None, None)
    if "Expires" not in response.headers:
        return (max_age, None)
    expires = parse_http_date_safe(response["Expires"])
    return (max_age, _NO_DATE if expires is None else expires)


SETTING = "REGIONCACHE_PAGE_HITS"
DOTTED = "regioncache.middleware.PageHitMiddleware"

# Middlewares whose request phase is run before the lookup (a response or an
# exception from it sends the request to Django) and whose response phase
# is run on a hit. Each depends only on settings and the request.
REPLAYED = {
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
}
# Middlewares that add nothing to a hit but in the cases _guarded() checks.
GUARDED = {
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # process_view only: a @cache_page page is checked against it (_view_verdict)
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
}
CACHE_CLASSES = (UpdateCacheMiddleware, FetchFromCacheMiddleware)

# path verdicts of @cache_page entries: {(urlconf, path_info, language, alias, prefix): bool}
_VERDICTS = {}
_VERDICTS_MAX = 16_384  # bounded: paths are the client's


# Settings read on every request, kept per settings generation: a setting
# changed (override_settings in tests) makes every instance read them again.
_GENERATION = [0]
_ACTIVE_TRANSLATION = _LocalReader(trans_real)
_ACTIVE_ZONE = _LocalReader(_timezone)
_ZONE_NAMES = {}  # tzinfo -> its name as Django gives it
_URL_MD5 = {}  # request URL parts -> MD5 of build_absolute_uri()
_URL_MD5_MAX = 16_384  # a few MB at most


def _forget_verdicts(**kwargs):
    _VERDICTS.clear()
    _URL_MD5.clear()
    _GENERATION[0] += 1


setting_changed.connect(_forget_verdicts)


def _setting_problems():
    """What is wrong with REGIONCACHE_PAGE_HITS, one sentence each."""
    given = getattr(settings, SETTING, None)
    if given is None:
        return []
    if not isinstance(given, (list, tuple)):
        return [f"{SETTING} must be a list of {{'cache': alias, 'key_prefix': str}}, "
                f"not {type(given).__name__}"]
    out = []
    for i, entry in enumerate(given):
        where = f"{SETTING}[{i}]"
        if not isinstance(entry, dict):
            out.append(f"{where} must be a dict, not {type(entry).__name__}")
            continue
        unknown = sorted(set(entry) - {"cache", "key_prefix"}, key=repr)
        if unknown:
            out.append(f"{where} has unknown keys {unknown}; it takes 'cache' and 'key_prefix'")
        alias = entry.get("cache")
        if not isinstance(alias, str) or alias not in settings.CACHES:
            out.append(f"{where}: cache {alias!r} is not an alias of CACHES "
                       f"({sorted(settings.CACHES)})")
        if not isinstance(entry.get("key_prefix", ""), str):
            out.append(f"{where}: key_prefix must be a str, not "
                       f"{type(entry['key_prefix']).__name__}")
    return out


def _entries():
    """REGIONCACHE_PAGE_HITS as [(alias, key_prefix)], Django's cache
    middleware pair when unset."""
    problems = _setting_problems()
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    given = getattr(settings, SETTING, None)
    if given is None:
        return [(settings.CACHE_MIDDLEWARE_ALIAS, settings.CACHE_MIDDLEWARE_KEY_PREFIX)]
    return [(e["cache"], e.get("key_prefix", "")) for e in given]


def _later_middlewares():
    """The dotted paths after this middleware in MIDDLEWARE (all of them if
    it is not listed: a test may build a handler around it)."""
    names = list(settings.MIDDLEWARE)
    if DOTTED in names:
        return names[names.index(DOTTED) + 1:]
    return names


def _class(path):
    try:
        return import_string(path)
    except ImportError:
        return None


def _site_fetch_index(later):
    """Index in `later` of the site's fetching cache middleware, or None."""
    for i, path in enumerate(later):
        cls = _class(path)
        if isinstance(cls, type) and issubclass(cls, FetchFromCacheMiddleware):
            return i
    return None


def _noop(request):  # the get_response of the middlewares replayed here
    return None


def _cache_middleware_of(view):
    """The CacheMiddleware of a view's outermost wrapper if that wrapper is
    Django's cache_page (or regioncache.cache_page), else None."""
    code = getattr(view, "__code__", None)
    if code is None or code.co_name != "_view_wrapper":
        return None
    for cell in view.__closure__ or ():
        inner = cell.cell_contents
        for c in getattr(inner, "__closure__", None) or ():
            if isinstance(c.cell_contents, CacheMiddleware):
                return c.cell_contents
    return None


class PageHitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        off = _never_reason()
        if off:
            raise MiddlewareNotUsed(off)
        later = _later_middlewares()
        fetch = _site_fetch_index(later)
        site_pair = (settings.CACHE_MIDDLEWARE_ALIAS, settings.CACHE_MIDDLEWARE_KEY_PREFIX)
        # (alias, prefix, through_view): a page of the site's cache middleware
        # is answered where Django answers it, in the request phase; a page
        # of a @cache_page view only for a path that resolves to that view.
        self.entries = []
        for alias, prefix in _entries():
            through_view = fetch is None or (alias, prefix) != site_pair
            self.entries.append((alias, prefix, through_view))
        self.entries.sort(key=lambda e: e[2])  # the site's pair first, as Django asks it first
        # What a hit skips: up to the site's fetch for the site's pages (Django
        # answers them there), everything for a view's (Django answers after
        # every middleware's request phase).
        self.replayed_all = self._replayed(later)
        self.replayed_site = self._replayed(later[:fetch] if fetch is not None else later)
        self.session = "django.contrib.sessions.middleware.SessionMiddleware" in later
        self.csrf = "django.middleware.csrf.CsrfViewMiddleware" in later
        self.login_required = "django.contrib.auth.middleware.LoginRequiredMiddleware" in later
        self.later = later
        self.listed = DOTTED in settings.MIDDLEWARE
        if self.session:
            from importlib import import_module

            self.session_store = import_module(settings.SESSION_ENGINE).SessionStore
        self.own_keys, self.absent_marker = _own_keys_match()
        self._thread = threading.local()
        self._read_settings()

    def _read_settings(self):
        self.generation = _GENERATION[0]
        self.use_i18n, self.use_tz = settings.USE_I18N, settings.USE_TZ
        self.session_cookie = settings.SESSION_COOKIE_NAME
        self.csrf_cookie = settings.CSRF_COOKIE_NAME
        self.urlconf = settings.ROOT_URLCONF
        proxy = settings.SECURE_PROXY_SSL_HEADER
        self.proxy_ssl_header = proxy[0] if proxy else None

    @staticmethod
    def _replayed(paths):
        """(process_request methods in order, process_response steps in
        the order Django calls them) of the replayed middlewares."""
        instances = [import_string(p)(_noop) for p in paths if p in REPLAYED]
        requests = [m.process_request for m in instances
                    if hasattr(m, "process_request") and _request_phase_acts(m)]
        responses = [_response_step(m) for m in reversed(instances)
                     if hasattr(m, "process_response")]
        return requests, responses

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        response = self.hit(request)
        if response is None:
            return self.get_response(request)
        return response

    async def __acall__(self, request):
        # The lookup runs in the coroutine, as regioncache's own async
        # methods do (a store in RAM; memcached calls have deadlines).
        response = self.hit(request)
        if response is None:
            return await self.get_response(request)
        return response

    def hit(self, request):
        """The stored page for this request, with what the skipped
        middlewares add to a hit; None: Django answers."""
        if request.method not in ("GET", "HEAD"):
            return None
        try:
            if self.generation != _GENERATION[0]:
                self._read_settings()
            if self._guarded(request):
                return None
            for process_request in self.replayed_all[0]:
                if process_request(request) is not None:
                    return None
            parts = None
            for entry in self.entries:
                if entry[2] and not self._view_verdict(request, entry[0], entry[1]):
                    continue
                if parts is None:
                    parts = self._url_parts(request)
                response = self._lookup(request, entry[0], entry[1], *parts)
                if response is not None:
                    replayed = self.replayed_all if entry[2] else self.replayed_site
                    for process_response in replayed[1]:
                        response = process_response(request, response)
                    return response
        except DisallowedHost:
            pass  # Django answers 400 and logs it
        except Exception as e:
            # a store that raises (RAISE_ERRORS), a damaged page, a view
            # that cannot be resolved: Django answers, and says what it says
            log.warning("page hit: %s %s left to Django: %s: %s", request.method,
                        request.path, type(e).__name__, e)
        return None

    @classmethod
    def for_pair(cls, alias, prefix):
        """An instance answering the pages of one (cache alias, key prefix)
        where Django's FetchFromCacheMiddleware would (no URL check), for
        callers that stand in Django's place: tests/django_suite/middleware_suite.py."""
        self = cls(_noop)
        self.entries = [(alias, prefix, False)]
        return self

    def _guarded(self, request):
        """True when a skipped middleware would change a hit's answer."""
        if "HTTP_COOKIE" not in request.META:
            return False
        cookies = request.COOKIES
        if self.session:
            value = cookies.get(self.session_cookie)
            # Django deletes a session cookie that names no possible session
            if value is not None and self.session_store(value).is_empty():
                return True
        if self.csrf:
            value = cookies.get(self.csrf_cookie)
            if value is not None:
                from django.middleware.csrf import InvalidTokenFormat, _check_token_format

                try:
                    _check_token_format(value)
                except InvalidTokenFormat:  # Django sets a new CSRF cookie
                    return True
        return False

    def _cache(self, alias):
        """caches[alias], kept per thread for a sync stack (the handler's
        asgiref lookup costs more than the store's get); an async stack asks
        Django's handler every time."""
        if self.is_async:
            return caches[alias]
        mine = getattr(self._thread, "caches", None)
        if mine is None or mine[0] != _GENERATION[0]:
            mine = self._thread.caches = (_GENERATION[0], {})
        cache = mine[1].get(alias)
        if cache is None:
            cache = mine[1][alias] = caches[alias]
        return cache

    def _lookup(self, request, alias, prefix, url_md5, suffix):
        cache = self._cache(alias)
        # On a shared-memory or file region keys are first looked at without
        # counting (the store's Peek: the header list read as stored, by the
        # native restricted pickle reader, and has_key), so the store counts
        # what Django alone would: a hit, the header list's and the page's
        # gets; a miss left to Django, Django's own gets only. (Memcached: a
        # look is a round trip, so it gets at once, and a miss left to
        # Django is counted twice; so on a signed region's header list.)
        header_key = f"{HEADER_NS}{prefix}.{url_md5}{suffix}"
        peek = getattr(cache, "store_kind", None) in ("shm", "file")
        headerlist = _peeked_list(cache, header_key) if peek else None
        if headerlist is _ABSENT_LIST:
            return None
        if headerlist is None:
            headerlist = cache.get(header_key)
            if headerlist is None:
                return None
            counted = True
        else:
            counted = False
        key = self._page_key(request, "GET", headerlist, prefix, url_md5, suffix)
        if request.method == "HEAD":  # the GET page, else a page stored for HEAD
            if peek:
                if not cache.has_key(key):
                    key = self._page_key(request, "HEAD", headerlist, prefix, url_md5, suffix)
                response = cache.get(key) if cache.has_key(key) else None
            else:
                response = cache.get(key)
                if response is None:
                    response = cache.get(
                        self._page_key(request, "HEAD", headerlist, prefix, url_md5, suffix))
        else:
            response = cache.get(key) if not peek or cache.has_key(key) else None
        if response is None:
            return None
        if not counted:
            cache.get(header_key)  # the header list's get Django's hit counts
        # Django's estimate of the page's age (FetchFromCacheMiddleware's),
        # its two header parses kept per header value
        store = _header_store(response)
        if store is None:
            parts = (response.headers.get("Cache-Control"), response.headers.get("Expires"))
        else:
            parts = (store.get("cache-control"), store.get("expires"))
        dates = _AGE_PARTS.get(parts)
        if dates is None:
            dates = _age_parts(response)
            if len(_AGE_PARTS) >= 1000:
                _AGE_PARTS.clear()
            _AGE_PARTS[parts] = dates
        if dates[0] is not None:
            if dates[1] is None:  # max-age without Expires: Django raises; so does this
                raise KeyError("Expires")
            if dates[1] is not _NO_DATE:
                age = str(max(0, dates[0] - (dates[1] - int(time.time()))))
                if store is None:
                    response["Age"] = age
                else:
                    store["age"] = ("Age", age)
        return response

    def _url_parts(self, request):
        """The absolute URL's MD5 and the language / time zone suffix, as
        Django's _generate_cache_header_key and _i18n_cache_key_suffix make
        them (once per request rather than once per key)."""
        meta = request.META
        # build_absolute_uri() is a function of these (and of settings, whose
        # change empties the memo); a host Django refuses raises every time.
        given = (request.path, meta.get("QUERY_STRING"), meta.get("wsgi.url_scheme"),
                 meta.get("HTTP_HOST"), meta.get("SERVER_NAME"), meta.get("SERVER_PORT"),
                 meta.get("HTTP_X_FORWARDED_HOST"), meta.get("HTTP_X_FORWARDED_PORT"),
                 meta.get(self.proxy_ssl_header) if self.proxy_ssl_header else None)
        url_md5 = _URL_MD5.get(given)
        if url_md5 is None:
            url_md5 = md5(request.build_absolute_uri().encode("ascii"),
                          usedforsecurity=False).hexdigest()
            if len(_URL_MD5) >= _URL_MD5_MAX:
                _URL_MD5.clear()
            _URL_MD5[given] = url_md5
        return url_md5, self._suffix(request)

    def _suffix(self, request):
        """Django's _i18n_cache_key_suffix."""
        suffix = ""
        if self.use_i18n:
            language = getattr(request, "LANGUAGE_CODE", _MISSING)
            suffix = ".%s" % (_language() if language is _MISSING else language)
        if self.use_tz:
            suffix += ".%s" % _time_zone_name()
        return suffix

    def _page_key(self, request, method, headerlist, prefix, url_md5, suffix):
        """Django's _generate_cache_key, from the parts above."""
        if not self.own_keys:
            return _generate_cache_key(request, method, headerlist, prefix)
        if not headerlist:  # no Vary: the MD5 of nothing
            return f"{PAGE_NS}{prefix}.{method}.{url_md5}.{_EMPTY_MD5}{suffix}"
        ctx = md5(usedforsecurity=False)
        meta = request.META
        for header in headerlist:
            value = meta.get(header)
            if value is None:
                if self.absent_marker:
                    ctx.update(ABSENT)
                continue
            ctx.update(value.encode())
        return f"{PAGE_NS}{prefix}.{method}.{url_md5}.{ctx.hexdigest()}{suffix}"

    def _view_verdict(self, request, alias, prefix):
        """True if Django would reach this @cache_page first for this path:
        the path resolves to a view whose outermost wrapper is cache_page
        with this cache and prefix (and LoginRequiredMiddleware lets anyone
        see it)."""
        # the handler set ROOT_URLCONF for this request; no middleware ran yet
        urlconf = self.urlconf
        language = getattr(request, "LANGUAGE_CODE", None)
        key = (urlconf, request.path_info, language, alias, prefix)
        verdict = _VERDICTS.get(key)
        if verdict is None:
            verdict = False
            try:
                match = get_resolver(urlconf).resolve(request.path_info)
            except Resolver404:
                match = None
            if match is not None:
                mw = _cache_middleware_of(match.func)
                verdict = (
                    mw is not None and mw.cache_alias == alias and mw.key_prefix == prefix
                    and not (self.login_required and getattr(match.func, "login_required", True))
                )
            if len(_VERDICTS) >= _VERDICTS_MAX:
                _VERDICTS.clear()
            _VERDICTS[key] = verdict
        return verdict


class _SetIfAbsent:
    """The response phase of Django's SecurityMiddleware or
    XFrameOptionsMiddleware on a 200 page, worked out once: each header it
    sets when the page lacks it, for a request by https and by http (its
    only inputs besides settings; XFrameOptionsMiddleware also respects a
    view's xframe_options_exempt). Any other status: the middleware itself."""

    def __init__(self, middleware):
        from django.http import HttpResponse

        self.middleware = middleware
        self.exempt = type(middleware).__name__ == "XFrameOptionsMiddleware"
        self.headers = {}
        for secure in (False, True):
            blank = HttpResponse()
            before = set(blank.headers)
            scheme_only = SimpleNamespace(is_secure=lambda secure=secure: secure)
            done = middleware.process_response(scheme_only, blank)
            # (lower-case name, name, value): as Django's own setting left them
            self.headers[secure] = [(k.lower(), k, v) for k, v in done.items() if k not in before]
        self.same = self.headers[False] == self.headers[True]  # no HSTS: the scheme is not asked

    def __call__(self, request, response):
        if response.status_code != 200:
            return self.middleware.process_response(request, response)
        if self.exempt and getattr(response, "xframe_options_exempt", False):
            return response
        pairs = self.headers[True] if self.same else self.headers[request.is_secure()]
        store = _header_store(response)
        if store is None:
            for _, name, value in pairs:
                response.headers.setdefault(name, value)
            return response
        for lower, name, value in pairs:
            if lower not in store:
                store[lower] = (name, value)
        return response


def _header_store(response):
    """The response's header dict ({lower-case name: (name, value)}) where
    Django keeps it, for writing values Django itself converted already;
    None if this Django keeps them otherwise (checked once)."""
    if _STORE_WORKS[0] is None:
        from django.http import HttpResponse

        probe = HttpResponse()
        store = getattr(probe.headers, "_store", None)
        ok = isinstance(store, dict)
        if ok:
            store["x-probe"] = ("X-Probe", "1")
            ok = probe["x-probe"] == "1" and ("X-Probe", "1") in probe.items()
        _STORE_WORKS[0] = ok
    return response.headers._store if _STORE_WORKS[0] else None


_STORE_WORKS = [None]


def _content_length(request, response):
    """CommonMiddleware's response phase on a 200 page."""
    if response.streaming:
        return response
    store = _header_store(response)
    if store is None:
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
    elif "content-length" not in store:
        store["content-length"] = ("Content-Length", str(len(response.content)))
    return response


def _response_step(middleware):
    """The response phase of a replayed middleware as a callable(request,
    response): worked out once for Django's own security, clickjacking and
    common middlewares (whose answer on a 200 page depends on settings and
    the scheme only), the middleware's own process_response otherwise (a
    subclass included)."""
    from django.middleware.clickjacking import XFrameOptionsMiddleware
    from django.middleware.common import CommonMiddleware
    from django.middleware.security import SecurityMiddleware

    kind = type(middleware)
    if kind is SecurityMiddleware or kind is XFrameOptionsMiddleware:
        return _SetIfAbsent(middleware)
    if kind is CommonMiddleware:
        def common(request, response):
            if response.status_code != 200:
                return middleware.process_response(request, response)
            return _content_length(request, response)
        return common
    return middleware.process_response


def _request_phase_acts(middleware):
    """False for a replayed request phase that cannot answer under these
    settings (it is then not run: a hit saves its cost)."""
    from django.middleware.common import CommonMiddleware
    from django.middleware.security import SecurityMiddleware

    if type(middleware) is SecurityMiddleware:
        return bool(middleware.redirect)  # SECURE_SSL_REDIRECT
    if type(middleware) is CommonMiddleware:
        # get_host()'s DisallowedHost is raised by the key's URL too
        return bool(settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW)
    return True


class _Probe:
    """A request-like object for checking the key making against Django's."""

    LANGUAGE_CODE = "xx"
    META = {"HTTP_PRESENT": "v\u00e9", "HTTP_EMPTY": ""}

    def build_absolute_uri(self):
        return "http://probe.example/a%20b/?q=1"


def _own_keys_match():
    """(own key making equals Django's, with the absent-header mark): checked
    once against Django's own functions with these settings; on a mismatch
    (another Django) Django's functions make the page keys."""
    probe = _Probe()
    mw = PageHitMiddleware.__new__(PageHitMiddleware)
    mw.use_i18n, mw.use_tz = settings.USE_I18N, settings.USE_TZ
    headerlist = ["HTTP_ABSENT", "HTTP_EMPTY", "HTTP_PRESENT"]
    want = _generate_cache_key(probe, "GET", headerlist, "pfx")
    if _generate_cache_header_key("pfx", probe) != (
            f"{HEADER_NS}pfx.{md5(probe.build_absolute_uri().encode()).hexdigest()}"
            f"{mw._suffix(probe)}"):
        return False, False
    for marker in (True, False):
        mw.own_keys, mw.absent_marker = True, marker
        url_md5 = md5(probe.build_absolute_uri().encode(), usedforsecurity=False).hexdigest()
        suffix = mw._suffix(probe)
        if mw._page_key(probe, "GET", headerlist, "pfx", url_md5, suffix) == want:
            return True, marker
    return False, False


def _never_reason():
    """Why every hit would need the later middlewares, or None."""
    later = _later_middlewares()
    if settings.SESSION_SAVE_EVERY_REQUEST and \
            "django.contrib.sessions.middleware.SessionMiddleware" in later:
        return ("SESSION_SAVE_EVERY_REQUEST: SessionMiddleware saves the session and sets its "
                "cookie on every request, hits included")
    if settings.CSRF_USE_SESSIONS and "django.middleware.csrf.CsrfViewMiddleware" in later:
        return ("CSRF_USE_SESSIONS: CsrfViewMiddleware reads the session on every request, "
                "so every hit varies on Cookie")
    return None


def skipped_middlewares(later):
    """The dotted paths of `later` whose phases do not run for a hit and
    that this module knows nothing of (neither replayed nor guarded nor a
    cache middleware)."""
    out = []
    for path in later:
        cls = _class(path)
        if path in REPLAYED or path in GUARDED or (
                isinstance(cls, type) and issubclass(cls, CACHE_CLASSES)):
            continue
        out.append(path)
    return out


@checks.register(checks.Tags.caches)
def check_page_hits(app_configs=None, **kwargs):
    """REGIONCACHE_PAGE_HITS and the middlewares a hit skips. Without the
    middleware in MIDDLEWARE only the setting is checked (the WSGI form,
    regioncache.wsgi.PageHitApplication, is not visible from settings; it
    logs what it skips when it starts)."""
    if DOTTED not in settings.MIDDLEWARE:
        if getattr(settings, SETTING, None) is None:
            return []
        return [checks.Error(problem, id="regioncache.E010") for problem in _setting_problems()]
    out = [checks.Error(problem, id="regioncache.E010") for problem in _setting_problems()]
    names = list(settings.MIDDLEWARE)
    at = names.index(DOTTED)
    if at:
        out.append(checks.Warning(
            f"{DOTTED} is not first in MIDDLEWARE: {names[:at]} run before it on every hit",
            hint="put it first", id="regioncache.W010"))
    for path in skipped_middlewares(names[at + 1:]):
        out.append(checks.Warning(
            f"{path} is skipped on a page hit: its request and response phases do not run "
            f"for a page {DOTTED} answers",
            hint="if it can change a cached page's answer, put it before "
                 "PageHitMiddleware (it then runs on every request)", id="regioncache.W011"))
    reason = _never_reason()
    if reason:
        out.append(checks.Warning(f"{DOTTED} never answers with {reason}",
                                  id="regioncache.W012"))
    return out
