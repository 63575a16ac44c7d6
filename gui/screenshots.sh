#!/usr/bin/env bash
# Renders the README's screenshots of the desktop app, offscreen:
#   gui/screenshots.sh [BUILD_DIR]       (default build/release; run .ci/setup first)
# It makes a small Django project with two shared-memory regions, fills them
# through the Django cache API (JSON, a PNG, pickles, text, counters), keeps
# some traffic going for the hit-ratio chart, opens the app on the project
# with --screenshot, and removes the regions afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
PYTHON=${PYTHON:-python3}
APP="$BUILD/regioncache-gui"
OUT=docs/screenshots
[[ -x "$APP" ]] || { echo "no $APP: build first (.ci/setup, or cmake --build $BUILD)" >&2; exit 1; }

tmp=$(mktemp -d)
prefix="shots-$$"
export PYTHONPATH="$PWD/django_backend${PYTHONPATH:+:$PYTHONPATH}"
cleanup() {
  [[ -n "${traffic:-}" ]] && kill "$traffic" 2>/dev/null || true
  "$PYTHON" -m regioncache drop-shm "$prefix-pages" "$prefix-functions" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/shots_settings.py" <<PY
SECRET_KEY = "screenshots"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("fr", "French")]
ROOT_URLCONF = "shots_urls"
ALLOWED_HOSTS = ["shop.example"]
MIDDLEWARE = ["django.middleware.locale.LocaleMiddleware"]
CACHES = {
    "pages": {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": "$prefix-pages",
              "TIMEOUT": 600, "OPTIONS": {"SIZE": "16MB"}},
    "functions": {"BACKEND": "regioncache.SharedMemoryCache", "LOCATION": "$prefix-functions",
                  "TIMEOUT": 120, "OPTIONS": {"SIZE": "8MB", "MAX_ITEM_SIZE": "256KB"}},
}
PY

# Pages cached by real views through regioncache.cache_page (URLs recorded),
# for the Pages tab.
cat >"$tmp/shots_urls.py" <<'PY'
import regioncache
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.vary import vary_on_headers

@regioncache.cache_page(600, cache="pages")
@vary_on_headers("X-Device")
def article(request, pk):
    return HttpResponse(f"<html><head><title>Article {pk}</title></head><body><h1>Article {pk}</h1>"
                        f"<p>Language {request.LANGUAGE_CODE}: the body of article {pk}.</p></body></html>")

@regioncache.cache_page(300, cache="pages")
def about(request):
    return HttpResponse("<html><body><h1>About the shop</h1><p>Open every day.</p></body></html>")

urlpatterns = [path("articles/<int:pk>/", article), path("about/", about)]
PY

"$PYTHON" - "$tmp" <<'PY'
import datetime, decimal, json, os, random, struct, sys, zlib
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "shots_settings"
import django
django.setup()
from django.core.cache import caches

def png(w, h):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    rows = b"".join(b"\x00" + bytes(c for x in range(w) for c in (x * 255 // w, y * 255 // h, 160))
                    for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

pages, functions = caches["pages"], caches["functions"]
random.seed(7)
pages.set("api:products", json.dumps({"products": [{"id": i, "name": f"Widget {i}", "price": 9.5 + i,
                                                    "tags": ["blue", "small"]} for i in range(5)]}).encode())
pages.set("thumb:42.png", png(160, 96), None)
pages.set("session:9f2c", {"user_id": 42, "cart": [3, 7], "last_seen": datetime.datetime(2026, 11, 25, 6, 30),
                           "total": decimal.Decimal("19.90")}, 1800)
pages.set("session:a71b", {"user_id": 7, "cart": [], "flags": {"beta": True}}, 900)
pages.set("page:/about/", "<html><body><h1>About us</h1><p>Cached page body…</p></body></html>", 300)
pages.set("raw:blob", bytes(range(256)) * 4, 60)
pages.set("visits", 1234, None)
for i in range(300):
    pages.set(f"page:/articles/{i}/", f"<html><body>article {i}</body></html>" * random.randint(1, 40),
              random.choice([60, 300, 3600, None]))
from django.test import Client
shop = Client(HTTP_HOST="shop.example")
for pk in (7, 12, 42):
    for lang, device in (("en", "desk"), ("fr", "desk"), ("en", "phone")):
        shop.get(f"/articles/{pk}/", secure=True, HTTP_ACCEPT_LANGUAGE=lang, HTTP_X_DEVICE=device)
shop.head("/about/", secure=True)
shop.get("/about/", secure=True)
for i in range(120):
    functions.set(f"price:{i}", decimal.Decimal(i) / 7, 120)
    functions.set(f"rate:{i}", i * 3, None)
PY

# Traffic while the app samples, so the chart has a hit ratio.
"$PYTHON" - "$tmp" <<'PY' &
import os, random, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "shots_settings"
import django
django.setup()
from django.core.cache import caches
pages = caches["pages"]
end = time.time() + 60
while time.time() < end:
    for _ in range(50):
        pages.get(f"page:/articles/{random.randint(0, 400)}/")
    pages.set(f"page:/new/{random.randint(0, 10**6)}/", "x" * random.randint(100, 20000), 300)
    time.sleep(0.05)
PY
traffic=$!

mkdir -p "$OUT"
QT_QPA_PLATFORM=offscreen "$APP" --no-shm-discovery --python "$PYTHON" \
  --django-settings shots_settings --pythonpath "$tmp" --screenshot "$OUT"
echo "== screenshots in $OUT"
