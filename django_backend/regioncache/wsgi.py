"""Cached pages answered in front of Django's handler: PageHitApplication.

The WSGI form of regioncache.middleware.PageHitMiddleware, for wsgi.py::

    from django.core.wsgi import get_wsgi_application
    from regioncache.wsgi import PageHitApplication

    application = PageHitApplication(get_wsgi_application())

It answers the same pages as the middleware, by the same code (the keys of
REGIONCACHE_PAGE_HITS, the same replayed and guarded middlewares, the same
fall-through), but before Django's WSGIHandler rather than inside it: a hit
builds the request object and nothing else of the handler's, so it skips
what the handler does around every request:

* the ``request_started`` and ``request_finished`` signals. Django's own
  receivers (closing database connections that are too old or broken,
  closing cache connections, resetting the URLconf and the query log) have
  nothing to do for a hit, which touches neither a database nor the
  URLconf of the thread; a site's own receivers do not run for hits;
* ``set_script_prefix``: nothing on a hit reverses a URL;
* the middleware chain up to PageHitMiddleware: with this form no
  middleware runs before the lookup (the middleware form's W010).

Anything the middleware would leave to Django (a miss, another method, a
host outside ALLOWED_HOSTS, a request a replayed middleware would answer,
a store that fails) goes to the wrapped application untouched, with the
environ as it came: Django answers exactly as without this wrapper.
"""

import logging

from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.wsgi import WSGIRequest

from regioncache.middleware import (
    DOTTED,
    PageHitMiddleware,
    _header_store,
    _noop,
    skipped_middlewares,
)

log = logging.getLogger("regioncache.page_hits")

_READ = frozenset(("GET", "HEAD"))


class PageHitApplication:
    """A WSGI application answering stored pages, the rest passed to
    `application` (Django's, from get_wsgi_application())."""

    def __init__(self, application):
        self.application = application
        self.request_class = getattr(application, "request_class", WSGIRequest)
        try:
            self.pages = PageHitMiddleware(_noop)
        except MiddlewareNotUsed as e:
            log.warning("PageHitApplication answers no page, every request goes to Django: %s", e)
            self.pages = None
            return
        for path in skipped_middlewares(self.pages.later):
            log.warning("%s is skipped on a page hit: its request and response phases do not "
                        "run for a page PageHitApplication answers; if it can change a cached "
                        "page's answer, answer pages with %s placed after it instead",
                        path, DOTTED)
        if self.pages.listed:
            log.warning("%s is in MIDDLEWARE as well as PageHitApplication in front of the "
                        "handler: a page the application did not find is looked up again",
                        DOTTED)

    def __call__(self, environ, start_response):
        pages = self.pages
        method = environ.get("REQUEST_METHOD", "")
        if pages is None or (method not in _READ and method.upper() not in _READ):
            return self.application(environ, start_response)
        try:
            # on a copy: WSGIRequest rewrites PATH_INFO and SCRIPT_NAME in
            # the environ it is given (decoded), and Django's handler must
            # get them as the server sent them (latin-1 read bytes) on a miss
            request = self.request_class(dict(environ))
        except Exception:  # Django's handler meets the same and answers it
            return self.application(environ, start_response)
        response = pages.hit(request)  # None on a miss, never raises
        if response is None:
            return self.application(environ, start_response)
        try:
            # what WSGIHandler sends for the same response
            status = "%d %s" % (response.status_code, response.reason_phrase)
            store = _header_store(response)  # response.items(), without the mapping's walk
            headers = list(store.values()) if store is not None else list(response.items())
            if response.cookies:
                headers += [("Set-Cookie", c.output(header="")) for c in response.cookies.values()]
            body = response.content
        except Exception as e:
            log.warning("page hit: %s %s left to Django: %s: %s", request.method,
                        request.path, type(e).__name__, e)
            return self.application(environ, start_response)
        start_response(status, headers)
        return [body]
