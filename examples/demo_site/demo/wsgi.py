"""The demo's WSGI application (runserver takes it from WSGI_APPLICATION):
Django's, with regioncache.wsgi.PageHitApplication in front, which answers
a page the "pages" region holds before Django's handler is entered."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

from regioncache.wsgi import PageHitApplication  # noqa: E402  (after the settings are named)

application = PageHitApplication(get_wsgi_application())
