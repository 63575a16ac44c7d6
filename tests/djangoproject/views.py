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
