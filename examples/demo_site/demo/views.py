import hashlib
import json
import struct
import time
import zlib

from django.core.cache import caches
from django.http import Http404, HttpResponse, JsonResponse
from regioncache import cache_page, region


@region("functions")
def user_profile(user_id):
    """Stands in for a slow query. Its result lives in the "functions"
    region, keyed by the user, shared by every worker process; a cold key
    is computed by one caller while the others wait (stampede protection)."""
    time.sleep(0.01)
    digest = hashlib.sha256(str(user_id).encode()).hexdigest()
    return {"id": user_id, "name": f"user {user_id}", "digest": digest, "at": time.time()}


def _png(width, height, seed):
    """A small gradient PNG, made without any imaging library."""
    rows = b"".join(
        b"\x00" + bytes(((x * 255 // width) ^ seed) & 255 for x in range(width)) * 3
        for _ in range(height)
    )

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _import_file(name):
    """Stands in for an import from a slow remote system: a text report or
    an image, kept in the "files" region for days."""
    time.sleep(0.02)
    n = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
    if name.endswith(".png"):
        return "image/png", _png(64 + n % 64, 48, n % 256)
    lines = [f"{name}: line {i}, checksum {hashlib.md5(f'{name}{i}'.encode()).hexdigest()}"
             for i in range(200 + n % 2000)]
    return "text/plain", "\n".join(lines).encode()


def imported_file(request, name):
    if not name.endswith((".txt", ".png")):
        raise Http404("only .txt and .png imports")
    files = caches["files"]
    entry = files.get(f"import:{name}")
    if entry is None:
        entry = _import_file(name)
        files.set(f"import:{name}", entry)
    content_type, body = entry
    return HttpResponse(body, content_type=content_type)


# regioncache.cache_page is Django's decorator plus a record of each cached
# page's URL in the same region: the app, `manage.py cacheregions pages` and
# regioncache.purge_url() find pages by URL.
@cache_page(60, cache="pages")
def index(request):
    return HttpResponse(
        "<h1>regioncache demo</h1><p>Try /users/7/, /files/report-3.txt, /files/logo-2.png "
        "and /stats/.</p>"
    )


@cache_page(30, cache="pages")
def user_page(request, user_id):
    profile = user_profile(user_id)
    return HttpResponse(f"<h1>{profile['name']}</h1><pre>{json.dumps(profile, indent=2)}</pre>")


def stats(request):
    out = {}
    for alias in ("functions", "files", "pages", "default"):
        cache = caches[alias]
        try:
            out[alias] = cache.stats()
        except Exception as e:  # a server down: say so, keep the others
            out[alias] = {"error": str(e), "kind": cache.store_kind, "location": cache.store_location}
    return JsonResponse(out)
