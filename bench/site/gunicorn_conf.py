"""gunicorn hooks of the bench site (bench_site.py passes -c this file).

post_worker_init: the worker renders /prime/ once through the whole
middleware stack (imports, URL resolver, template compiled: what every
request needs, whatever the cache), then writes its pid into
BENCH_SITE_READY_DIR: bench_site.py waits for one file per worker and
takes each worker's memory "before" from there. With BENCH_SITE_PROFILE
(a directory) the worker then runs under cProfile, timed in CPU time
(time.process_time: a worker waiting for a CPU on a busy machine is not
charged to the call it waits in; a system call's kernel time is), and dumps
its stats there when it exits."""

import io
import os
import sys

_profile = None


def post_worker_init(worker):
    global _profile
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/prime/", "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status = []
    body = worker.wsgi(environ, lambda s, h, exc_info=None: status.append(s))
    try:
        b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    if status != ["200 OK"]:
        raise RuntimeError(f"bench site: /prime/ answered {status}")
    ready = os.environ.get("BENCH_SITE_READY_DIR")
    if ready:
        with open(os.path.join(ready, str(os.getpid())), "w"):
            pass
    if os.environ.get("BENCH_SITE_PROFILE"):
        import cProfile
        import time

        _profile = cProfile.Profile(time.process_time)
        _profile.enable()


def worker_exit(server, worker):
    if _profile is not None:
        _profile.disable()
        _profile.dump_stats(os.path.join(os.environ["BENCH_SITE_PROFILE"], f"worker-{os.getpid()}.prof"))
