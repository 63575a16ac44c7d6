"""Test helper of the app's key kinds: fills a region with one of each kind
of key Django and regioncache make, through the real Django.

    python django_kinds.py CONF_JSON  -> prints [{"key": FULL_KEY, "kind": KIND, "name": NAME}, ...]

CONF_JSON is one CACHES entry, used as the "default" cache. The pages come
from @cache_page through Django's test client (GET in two languages and a
HEAD, Vary: Accept-Language, i18n and time zones on), the fragments from
{% cache %}, the sessions from the cache and cached_db engines (on an
in-memory database), the functions from @regioncache.region. KIND is the
name _native.key_kind gives; the helper checks that it is the expected one.
"""

import json
import sys


def setup(conf):
    import django
    from django.conf import settings

    settings.configure(
        CACHES={"default": conf}, USE_TZ=True, USE_I18N=True, TIME_ZONE="Europe/Paris",
        LANGUAGE_CODE="en-us", LANGUAGES=[("en-us", "English"), ("fr", "French")],
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], SECRET_KEY="kinds-test",
        MIDDLEWARE=["django.middleware.locale.LocaleMiddleware"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions", "regioncache"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    django.setup()


urlpatterns = []


def main():
    conf = json.loads(sys.argv[1])
    setup(conf)
    from django.contrib.sessions.backends import cache as cache_sessions
    from django.contrib.sessions.backends import cached_db
    from django.contrib.sessions.models import Session
    from django.core.cache import cache
    from django.db import connection
    from django.http import HttpResponse
    from django.template import Context, Engine
    from django.test import Client
    from django.urls import path
    from django.views.decorators.cache import cache_page

    from regioncache import _native, region

    @cache_page(300)
    def article(request, n):
        return HttpResponse(f"<p>article {n}</p>")

    urlpatterns.append(path("articles/<int:n>/", article))

    @region("default", namespace="shop.profile")
    def profile(user_id):
        return {"user": user_id}

    client = Client()
    client.get("/articles/1/", HTTP_ACCEPT_LANGUAGE="fr")
    client.get("/articles/1/", HTTP_ACCEPT_LANGUAGE="en-us")
    client.head("/articles/2/", HTTP_ACCEPT_LANGUAGE="fr")
    engine = Engine(libraries={"cache": "django.templatetags.cache"})
    engine.from_string("{% load cache %}{% cache 300 sidebar n %}side {{ n }}{% endcache %}").render(
        Context({"n": 1}))
    engine.from_string("{% load cache %}{% cache 300 sidebar n %}side {{ n }}{% endcache %}").render(
        Context({"n": 2}))
    with connection.schema_editor() as editor:
        editor.create_model(Session)
    for engine_module in (cache_sessions, cached_db):
        s = engine_module.SessionStore()
        s["cart"] = [1, 2, 3]
        s.save()
    profile(1)
    profile(2)
    profile(3)
    cache.set("greeting", "hello", 300)
    cache.set("user:42", {"name": "Ada"}, 300)

    out, cursor = [], ""
    while True:
        page, cursor = cache.list_entries(cursor=cursor, limit=500)
        for e in page:
            k = _native.key_kind(e["key"])
            out.append({"key": e["key"], "kind": k["kind"], "name": k.get("name", k.get("engine", ""))})
        if not cursor:
            break
    print(json.dumps(sorted(out, key=lambda e: e["key"])))
    cache.close()


if __name__ == "__main__":
    main()
