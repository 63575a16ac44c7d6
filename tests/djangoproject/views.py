"""Views of the test project. CALLS counts how often each view body ran in
this process, so a test can tell a response made by the view from one served
out of the cache region."""

from collections import Counter

from django.http import HttpResponse
from django.views.decorators.cache import cache_page

CALLS = Counter()


@cache_page(60, cache="pages")
def cached_view(request, name="index"):
    CALLS["cached"] += 1
    return HttpResponse(f"page {name} rendered {CALLS['cached']} times", content_type="text/plain")


@cache_page(60, cache="file-pages")
def file_cached_view(request, name):
    CALLS["file"] += 1
    return HttpResponse(f"file page {name} rendered {CALLS['file']} times",
                        content_type="text/plain")


def plain_view(request):
    CALLS["plain"] += 1
    return HttpResponse(f"plain {CALLS['plain']}", content_type="text/plain")


# --- pages by URL (tests/test_pages_by_url.py): the alias "url-pages" is set
# by the test to a shm, file or memcached region.
import regioncache  # noqa: E402
from django.views.decorators.vary import vary_on_headers  # noqa: E402


@regioncache.cache_page(60, cache="url-pages")
@vary_on_headers("Accept-Language", "Cookie")
def recorded_view(request, name="index"):
    CALLS["recorded"] += 1
    return HttpResponse(f"recorded {name} {CALLS['recorded']}", content_type="text/plain")


@cache_page(60, cache="url-pages")
def unrecorded_view(request, name="index"):
    CALLS["unrecorded"] += 1
    return HttpResponse(f"unrecorded {name} {CALLS['unrecorded']}", content_type="text/plain")


@vary_on_headers("Cookie")
def article_view(request, pk):
    """Cached by the cache middleware (RecordPagesMiddleware ...
    FetchFromCacheMiddleware) when a test turns it on; long enough to gzip."""
    CALLS["article"] += 1
    from django.utils.translation import get_language

    body = f"article {pk} in {get_language()} rendered {CALLS['article']} times. " * 20
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


@regioncache.cache_page(60, cache="url-pages")
def template_view(request):
    """A TemplateResponse: Django caches it after rendering (the test gives
    TEMPLATES with a locmem loader holding "page.html")."""
    from django.template.response import TemplateResponse

    CALLS["template"] += 1
    return TemplateResponse(request, "page.html", {"n": CALLS["template"]})
