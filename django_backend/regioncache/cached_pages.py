"""Cached pages by URL: record them as Django caches them, list and purge them.

Django keys a cached page by the MD5 of its absolute URL, so a region alone
cannot say which URL a page is. Recording is opt-in, two ways with one code:

* ``regioncache.RecordPagesMiddleware`` in place of Django's
  UpdateCacheMiddleware (first in MIDDLEWARE; FetchFromCacheMiddleware stays
  last), for the whole site;
* ``regioncache.cache_page(timeout, cache=..., key_prefix=...)`` in place of
  Django's decorator, for one view.

Both are Django's own classes with one step added after Django stored a page:
a record beside it, in the same region, with the page's own timeout, under
``regioncache.page-url.<url md5>.<page key md5>`` (a namespace no Django key
shares). The record is JSON text: the absolute URL, the method, the Vary
variant (the request's values of Django's header list, cookies by name only
and credentials by scheme only, the language and the time zone) and the full keys of the page and of its header list, made by
Django's own functions (``_generate_cache_header_key``, ``_generate_cache_key``
of the header list it stored). A cache hit does nothing more than Django
does (the step returns before any of this).

``regioncache.pages()`` lists the recorded pages still cached; ``regioncache.purge_url()`` deletes
pages by exact URL or by an anchored glob, every variant with its header
list and its record; an exact URL is also purged by its MD5 alone, so pages
cached without recording go too.
"""

import hashlib
import json
import re
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import DisallowedHost
from django.middleware.cache import CacheMiddleware, UpdateCacheMiddleware
from django.utils.cache import _generate_cache_header_key, _generate_cache_key, get_max_age
from django.utils.decorators import decorator_from_middleware_with_args

from regioncache._listing import entry_pages

RECORD_NS = "regioncache.page-url."
PAGE_NS = "views.decorators.cache.cache_page."
HEADER_NS = "views.decorators.cache.cache_header."


def _md5(text):
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _shown(header, value):
    """A request header's value as the record keeps it: cookies by name
    and credentials by scheme only (a record is readable by whoever reads
    the region: the app, the command), anything else as sent, cut at 200."""
    if value is None:
        return None
    if header == "HTTP_COOKIE":
        names = (part.split("=", 1)[0].strip() for part in value.split(";"))
        return "; ".join(f"{n}=…" for n in names if n)
    if header in ("HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"):
        return value.split(" ", 1)[0] + " …" if value else value
    return value[:200]


def _record_page(cache, request, key_prefix, timeout):
    """Store the record of the page Django cached for this request, if it
    did. The keys are Django's, made by its own functions once each: the
    header key, and the page key from the header list Django stored under
    it (what get_cache_key does)."""
    header_key = _generate_cache_header_key(key_prefix, request)
    headerlist = cache.get(header_key)
    if headerlist is None:
        return
    page_key = _generate_cache_key(request, request.method, headerlist, key_prefix)
    full_page_key = cache.make_key(page_key)
    if not cache.has_key(page_key):  # Django did not cache this response
        return
    # The URL's MD5, the language and the time zone as Django put them in
    # the header key (views.decorators.cache.cache_header.PREFIX.MD5[.LANG][.TZ]),
    # read back rather than asked again.
    url_hash, _, suffix = header_key[len(HEADER_NS) + len(key_prefix) + 1:].partition(".")
    language = time_zone = None
    if settings.USE_I18N and settings.USE_TZ:
        language, _, time_zone = suffix.partition(".")
    elif settings.USE_I18N:
        language = suffix
    elif settings.USE_TZ:
        time_zone = suffix
    url = request.build_absolute_uri()
    now = time.time()
    record = {
        "url": url,
        "method": request.method,
        "vary": {h: _shown(h, request.META.get(h)) for h in headerlist},
        "language": language,
        "time_zone": time_zone,
        "page_key": full_page_key,
        "header_key": cache.make_key(header_key),
        "headers": list(headerlist),
        "stored": now,
        "expires": now + timeout,
    }
    page_hash = hashlib.md5(page_key.encode(), usedforsecurity=False).hexdigest()
    name = f"{RECORD_NS}{url_hash}.{page_hash}"
    cache.set(name, json.dumps(record, separators=(",", ":")), timeout)


class _Recording:
    """Django's UpdateCacheMiddleware.process_response, then the record."""

    def process_response(self, request, response):
        response = super().process_response(request, response)
        # A hit (FetchFromCacheMiddleware said so), a POST, a streaming or
        # private response: Django stored nothing, neither do we.
        if not self._should_update_cache(request, response) or response.status_code != 200:
            return response
        timeout = self.page_timeout
        if timeout is None:  # Django used max-age, which it has just set
            timeout = get_max_age(response)
        if not timeout:
            return response
        cache, prefix = self.cache, self.key_prefix
        if getattr(response, "is_rendered", True) is False:
            # A TemplateResponse: Django stores it after rendering, so do we.
            response.add_post_render_callback(
                lambda r: _record_page(cache, request, prefix, timeout)
            )
        else:
            _record_page(cache, request, prefix, timeout)
        return response


class RecordPagesMiddleware(_Recording, UpdateCacheMiddleware):
    """Django's UpdateCacheMiddleware that also records each page's URL."""


class RecordingCacheMiddleware(_Recording, CacheMiddleware):
    """Django's CacheMiddleware (what @cache_page uses) that records URLs."""


def cache_page(timeout, *, cache=None, key_prefix=None):
    """Django's @cache_page, recording the URL of each page it caches."""
    return decorator_from_middleware_with_args(RecordingCacheMiddleware)(
        page_timeout=timeout, cache_alias=cache, key_prefix=key_prefix
    )


# --- reading the records -----------------------------------------------------


def _region(cache):
    if isinstance(cache, str):
        cache = caches[cache]
    if not hasattr(cache, "list_entries"):
        raise TypeError(f"{cache!r} is not a regioncache region: it cannot be listed")
    return cache


def _head(cache):
    """The part every full key of this cache starts with (KEY_PREFIX and
    VERSION, as the key function puts them)."""
    probe = cache.make_key("x")
    if not probe.endswith("x"):
        raise ValueError(
            "pages by URL need a KEY_FUNCTION that ends the full key with the key "
            f"(Django's default does); this one makes {probe!r} of 'x'"
        )
    return probe[:-1]


def _escape(text):
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _all(cache, glob, expired=False):
    return [e for page in entry_pages(cache, glob, include_expired=expired) for e in page]


def _records(cache, url_md5=None):
    """(record full key, record dict) of this region; damaged ones are
    skipped (they expire with their page)."""
    head = _head(cache)
    glob = _escape(head + RECORD_NS) + (f"{url_md5}.*" if url_md5 else "*")
    entries = _all(cache, glob)
    names = [e["key"][len(head):] for e in entries]
    values = cache.get_many(names) if names else {}
    out = []
    for name in names:
        try:
            rec = json.loads(values[name])
            keys = (rec["page_key"], rec["header_key"])
            # A record names keys of this region's page namespaces only: a
            # damaged or forged record cannot make a purge delete others.
            if not (keys[0].startswith(head + PAGE_NS) and keys[1].startswith(head + HEADER_NS)):
                continue
            if not isinstance(rec["url"], str):
                continue
        except (KeyError, TypeError, ValueError):
            continue
        out.append((head + name, rec))
    return out


def url_glob(pattern):
    """An anchored matcher for a URL glob: '*' is any run of characters
    (slashes too); everything else, '?' of a query string included, is
    literal.

    Matched without a regular expression: '.*a.*a.*b' backtracks in time
    that grows as the URL's length to the power of the stars, and a URL
    comes from a record anyone who can write the region may have stored.
    Taking each literal part at its first place after the previous one is
    enough for '*'-only globs (as the app's matcher in gui/page_index.cc
    does), so a match costs one pass per part."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return lambda url: url == pattern
    first, middle, last = parts[0], parts[1:-1], parts[-1]

    def match(url):
        if len(url) < len(first) + len(last) or not url.startswith(first) \
                or not url.endswith(last):
            return False
        at, end = len(first), len(url) - len(last)
        for part in middle:
            found = url.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True

    return match


def pages(cache="pages", url=None):
    """The recorded pages of a region still cached, one dict per URL and
    method: url, method, variants (vary, language, time_zone, page_key,
    expires), header_keys, expires (the latest). url: an exact URL or a glob
    ('*' any run of characters) anchored at both ends."""
    cache = _region(cache)
    glob = bool(url) and "*" in url
    match = url_glob(url) if glob else None
    md5 = url_md5(url) if url and not glob else None
    present = {e["key"] for e in _all(cache, _escape(_head(cache) + PAGE_NS) + "*")}
    grouped = {}
    for _, rec in _records(cache, md5):
        if rec["page_key"] not in present or (match and not match(rec["url"])):
            continue
        page = grouped.setdefault(
            (rec["url"], rec["method"]),
            {"url": rec["url"], "method": rec["method"], "variants": [], "header_keys": []},
        )
        fields = ("vary", "language", "time_zone", "page_key", "expires")
        page["variants"].append({k: rec.get(k) for k in fields})
        if rec["header_key"] not in page["header_keys"]:
            page["header_keys"].append(rec["header_key"])
    out = sorted(grouped.values(), key=lambda p: (p["url"], p["method"]))
    for p in out:
        p["variants"].sort(key=lambda v: v["page_key"])
        p["expires"] = max(v["expires"] or 0 for v in p["variants"])
    return out


def _hash_globs(cache, md5):
    """Globs of every page and header-list key Django can have made for this
    absolute URL in this region: any KEY_PREFIX of the middleware, any
    method, variant, language and time zone."""
    head = _escape(_head(cache))
    return [
        f"{head}{PAGE_NS}*.{md5}.*",
        f"{head}{HEADER_NS}*.{md5}",
        f"{head}{HEADER_NS}*.{md5}.*",
    ]


def url_md5(url):
    """Django's MD5 of an absolute URL, as its cache keys hold it: the hash of
    what request.build_absolute_uri() gives for a request of that URL."""
    from django.test import RequestFactory

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    request = RequestFactory().generic(
        "GET",
        parts.path + (f"?{parts.query}" if parts.query else ""),
        secure=parts.scheme == "https",
        HTTP_HOST=parts.netloc,
    )
    try:
        return _md5(request.build_absolute_uri())
    except DisallowedHost:  # Django answers no request for it: nothing cached
        raise ValueError(
            f"{parts.netloc!r} is not in ALLOWED_HOSTS: Django caches no page of {url}"
        ) from None


def url_keys(url_or_glob, cache="pages"):
    """The full keys purge_url would delete, sorted (for a count first)."""
    cache = _region(cache)
    if not isinstance(url_or_glob, str) or not url_or_glob:
        raise ValueError("purge_url needs a URL or a URL glob")
    doomed = set()
    if "*" in url_or_glob:
        match = url_glob(url_or_glob)
        records = [(k, r) for k, r in _records(cache) if match(r["url"])]
    else:
        md5 = url_md5(url_or_glob)
        records = _records(cache, md5)  # the same MD5: the same URL
        for glob in _hash_globs(cache, md5):
            doomed.update(e["key"] for e in _all(cache, glob, expired=True))
    for name, rec in records:
        doomed.update((name, rec["page_key"], rec["header_key"]))
    return sorted(doomed)


def purge_url(url_or_glob, cache="pages"):
    """Delete the cached pages of an exact URL or of an anchored URL glob
    ('https://shop.example/articles/*'): every variant (Vary headers,
    languages, time zones, GET and HEAD), its header-list entry and the URL
    records. Returns the number of keys deleted (0: nothing matched).

    An exact URL is purged by Django's MD5 of it as well, so its pages go even
    if they were cached without recording; a glob needs the records."""
    cache = _region(cache)
    doomed = url_keys(url_or_glob, cache)
    return cache.delete_raw(doomed) if doomed else 0
