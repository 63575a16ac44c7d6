import os

from django.conf import settings
from django.shortcuts import render

from benchsite import pages

_miss_fd = None


def _count_miss():
    """One byte appended (O_APPEND: one write, atomic, across workers) to
    the miss log: bench_site.py counts the view's executions by its size."""
    global _miss_fd
    if not settings.BENCH_MISS_LOG:
        return
    if _miss_fd is None:
        _miss_fd = os.open(settings.BENCH_MISS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(_miss_fd, b"m")


def article(request, n, count=True):
    """Article n, rendered from its template; under @cache_page (urls.py),
    so it runs on a miss only."""
    if count:
        _count_miss()
    return render(request, "article.html", pages.article(settings.BENCH_SEED, n))
