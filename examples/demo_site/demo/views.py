import hashlib
import json
import time

from django.core.cache import caches
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page


def expensive_profile(user_id):
    """Stands in for a slow query: its result goes in the "functions" region,
    keyed by the user, and is shared by every worker process."""
    functions = caches["functions"]
    key = f"profile:{user_id}"
    profile = functions.get(key)
    if profile is None:
        time.sleep(0.01)
        digest = hashlib.sha256(str(user_id).encode()).hexdigest()
        profile = {"id": user_id, "name": f"user {user_id}", "digest": digest, "at": time.time()}
        functions.set(key, profile)
    return profile


@cache_page(60, cache="pages")
def index(request):
    return HttpResponse("<h1>regioncache demo</h1><p>Try /users/7/ and /stats/.</p>")


@cache_page(30, cache="pages")
def user_page(request, user_id):
    profile = expensive_profile(user_id)
    return HttpResponse(f"<h1>{profile['name']}</h1><pre>{json.dumps(profile, indent=2)}</pre>")


def stats(request):
    return JsonResponse({alias: caches[alias].stats() for alias in ("functions", "pages", "default")})
