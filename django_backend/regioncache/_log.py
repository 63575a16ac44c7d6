"""Where the native stores' log lines go: Python's logging.

The native sink (regioncache._native) queues each line without the GIL and
hands the queue to emit() from the next cache call, so a line appears
through logging.getLogger("regioncache.<alias>") shortly after the store
swallowed what it describes (a damaged entry, a server down, a value that
cannot be read). Each logger is rate-limited: at most MAX_LINES lines per
INTERVAL seconds; the lines beyond are counted, and the count is logged as
"(N more suppressed)" with the next line that gets through.
"""

import atexit
import logging
import threading
import time

from regioncache import _native

MAX_LINES = 20
INTERVAL = 60.0

_lock = threading.Lock()
_windows = {}  # logger name -> [window start, lines in window, suppressed]


def _allow(name, now):
    """True if a line for this logger may go out now; and the number of
    lines suppressed since the last one that went out (reported with it)."""
    with _lock:
        w = _windows.get(name)
        if w is None or now - w[0] >= INTERVAL:
            suppressed = w[2] if w else 0
            _windows[name] = [now, 1, 0]
            return True, suppressed
        if w[1] < MAX_LINES:
            w[1] += 1
            suppressed, w[2] = w[2], 0
            return True, suppressed
        w[2] += 1
        return False, 0


def emit(level, region, store, message, dropped):
    """Called by the native module with the GIL (see module.cc)."""
    if dropped:
        logging.getLogger("regioncache").warning(
            "%d native log lines were dropped (more than the queue holds between two cache calls)",
            dropped,
        )
        return
    name = f"regioncache.{region}" if region else "regioncache"
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(level):
        return
    ok, suppressed = _allow(name, time.monotonic())
    if not ok:
        return
    more = f" ({suppressed} more suppressed)" if suppressed else ""
    # A Status message carries the "region 'x': " prefix this line starts with.
    prefix = f"region '{region}': "
    if message.startswith(prefix):
        message = message[len(prefix):]
    logger.log(
        level,
        "region %r (%s): %s%s",
        region,
        store,
        message,
        more,
        extra={"region": region, "store": store, "suppressed": suppressed},
    )


def reset():
    """Forgets the rate limits (tests)."""
    with _lock:
        _windows.clear()


def drain():
    """Hands the queued lines to logging now (done by every cache call)."""
    _native._drain_log()


_native._set_log_handler(emit)
atexit.register(drain)
