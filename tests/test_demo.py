"""The demo site of examples/ (the README's first command) serves its pages
and fills its three regions on their three stores: run in a process of its
own with the demo's settings, a memcached the test starts, and a temporary
files directory."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from memcached_servers import start_servers

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo_site"

CLIENT = r"""
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
import django
django.setup()
from django.test import Client
from django.core.cache import caches
c = Client()
out = {}
for path in ["/", "/users/7/", "/users/7/", "/files/report-1.txt", "/files/logo-2.png",
             "/files/logo-2.png", "/files/nope.exe"]:
    r = c.get(path)
    out.setdefault("status", []).append(r.status_code)
    if path == "/files/logo-2.png":
        out["png"] = r.content[:8].hex()
out["stats"] = json.loads(c.get("/stats/").content)
out["kinds"] = {a: caches[a].store_kind for a in ("functions", "files", "pages")}
import regioncache
out["page_urls"] = [p["url"] for p in regioncache.pages(cache="pages")]
out["purged"] = regioncache.purge_url("http://testserver/users/*", cache="pages")
out["left_urls"] = [p["url"] for p in regioncache.pages(cache="pages")]
# demo/wsgi.py (runserver's WSGI_APPLICATION): a page the region holds is
# answered in front of Django's handler, which never starts for it
from django.core.signals import request_started
from demo.wsgi import application
started = []
request_started.connect(lambda sender, **kw: started.append(1), weak=False)
answers = []
for _ in range(3):
    got = []
    body = b"".join(application(c._base_environ(PATH_INFO="/users/8/"),
                                lambda s, h, exc_info=None: got.append(s)))
    answers.append((got[0], body))
out["wsgi"] = {"statuses": [a[0] for a in answers], "same": len({a[1] for a in answers}) == 1,
               "app": type(application).__name__, "started": len(started)}
for a in ("functions", "files", "pages"):
    caches[a].clear()
print(json.dumps(out))
"""


def test_demo_site_fills_its_three_regions(tmp_path):
    servers = start_servers(1)
    prefix = f"demo-test-{uuid.uuid4().hex[:6]}"
    try:
        env = {**os.environ, "DEMO_REGION_PREFIX": prefix, "DEMO_FILES_DIR": str(tmp_path / "files"),
               "DEMO_MEMCACHED": servers[0].location,
               "PYTHONPATH": os.pathsep.join([str(DEMO), os.environ.get("PYTHONPATH", "")])}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        proc = subprocess.run([sys.executable, "-c", CLIENT], cwd=DEMO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        servers.stop()
        import regioncache

        for name in regioncache.shm_regions():
            if name.startswith(prefix):
                regioncache.remove_shm_region(name)
    assert out["status"] == [200, 200, 200, 200, 200, 200, 404]
    assert out["png"] == "89504e470d0a1a0a"
    assert out["kinds"] == {"functions": "shm", "files": "file", "pages": "memcached"}
    s = out["stats"]
    assert s["functions"]["entries"] == 2  # user 7's profile by @region, and its generation
    assert s["files"]["entries"] == 2      # the two imports
    assert s["files"]["hits"] >= 1         # the second logo-2.png
    assert s["pages"]["entries"] >= 2      # cache_page: pages and their header keys
    # regioncache.cache_page records each page's URL: found and purged by it.
    assert out["page_urls"] == ["http://testserver/", "http://testserver/users/7/"]
    assert out["purged"] >= 2              # the page and its header list (and the record)
    assert out["left_urls"] == ["http://testserver/"]
    # the WSGI application: one miss through Django, two hits in front of it, the same page
    assert out["wsgi"] == {"statuses": ["200 OK"] * 3, "same": True,
                           "app": "PageHitApplication", "started": 1}
