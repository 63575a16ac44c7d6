"""One CACHES entry as the store it names: the one place that turns Django's
settings into what a native store is opened with.

The backends open their store from it, the system checks compare stores
with it, and ``python -m regioncache describe`` prints it for the desktop
app, so the app opens exactly the store the site opens (LOCATION split the
same way, OPTIONS as the same text, the same REGION_PREFIX default).
Importing this module needs Django only for the exception it raises.
"""

import os
import re
import sys
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

from regioncache import POLICY_OPTIONS
from regioncache.foreign_options import foreign_option_errors


class ForeignOptionError(ImproperlyConfigured):
    """OPTIONS that belong to another cache backend (regioncache.foreign_options)."""

    hint = ("The README's section 'Coming from another backend' maps each of those "
            "backends' OPTIONS to regioncache's.")


@dataclass(frozen=True)
class StoreSpec:
    alias: str
    kind: str  # "shm", "file", "memcached"; "django" for a backend regioncache cannot open
    backend: str  # the BACKEND as configured
    location: str  # the store's LOCATION as text (memcached servers joined by ";")
    options: dict = field(default_factory=dict)  # the store's OPTIONS as text
    key_prefix: str = ""
    version: int = 1

    @property
    def servers(self):
        """A memcached region's servers (empty for the other kinds)."""
        return self.location.split(";") if self.kind == "memcached" and self.location else []

    def as_json(self):
        """What `python -m regioncache describe` prints for this region."""
        return {
            "alias": self.alias,
            "kind": self.kind,
            "backend": self.backend,
            "location": self.location,
            "options": dict(self.options),
            "key_prefix": self.key_prefix,
            "version": self.version,
        }


def option_text(alias, name, value):
    """An OPTIONS value as the text a native store parses and validates."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ImproperlyConfigured(
        f"CACHES[{alias!r}]: OPTIONS[{name!r}] must be a number, a string or a bool, "
        f"not {type(value).__name__}"
    )


def _memcached_location(alias, location):
    if isinstance(location, (list, tuple)):
        servers = [str(s).strip() for s in location]
    elif isinstance(location, str):
        servers = [s.strip() for s in re.split("[;,]", location) if s.strip()]
    else:
        raise ImproperlyConfigured(
            f"CACHES[{alias!r}]: LOCATION must be 'host:port', several joined by ';', "
            f"or a list of them, not {type(location).__name__}"
        )
    return ";".join(servers)


def backend_kind(backend):
    """The store kind of a BACKEND path (or class): "shm", "file", "memcached",
    or "django" for anything that is not one of regioncache's backends."""
    if isinstance(backend, str):
        from django.utils.module_loading import import_string

        try:
            backend = import_string(backend)
        except ImportError:
            return "django"
    return getattr(backend, "store_kind", None) or "django"


def store_spec(alias, conf, kind=None):
    """The StoreSpec of CACHES[alias] (conf: that entry, or a backend's
    params with LOCATION in it). kind: the store kind when the caller knows
    it (a backend class), else found from conf["BACKEND"].

    Raises ImproperlyConfigured for a LOCATION or OPTIONS a regioncache store
    cannot take; an OPTION of another backend (PyMemcacheCache, PyLibMCCache,
    RedisCache, django-redis) is named with our equivalent. The policy
    OPTIONS (RAISE_ERRORS, the signing keys) are the Python backend's own and
    are left out: the store never sees them, and a signing key is a secret
    that describe must not print."""
    backend = conf.get("BACKEND", "")
    if kind is None:
        kind = backend_kind(backend)
    location = conf.get("LOCATION", "")
    options = conf.get("OPTIONS") or {}
    if kind == "django":
        # Listed for the app, never opened: shown as Django has it.
        text = {
            str(k): option_text(alias, k, v) if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in (options.items() if isinstance(options, dict) else ())
            if k not in POLICY_OPTIONS
        }
        if isinstance(location, (list, tuple)):
            location = ";".join(str(s) for s in location)
        return StoreSpec(str(alias), kind, backend, str(location), text,
                         str(conf.get("KEY_PREFIX", "")), conf.get("VERSION", 1))
    if not isinstance(options, dict):
        raise ImproperlyConfigured(f"CACHES[{alias!r}]: OPTIONS must be a dict")
    foreign = foreign_option_errors(kind, options)
    if foreign:
        # Before the native reader, which would call each "unknown option",
        # and before option_text, which refuses a dict (pylibmc's behaviors).
        raise ForeignOptionError(f"CACHES[{alias!r}]: " + ". ".join(foreign) + ".")
    text = {str(k): option_text(alias, k, v) for k, v in options.items() if k not in POLICY_OPTIONS}
    key_prefix = conf.get("KEY_PREFIX", "")
    if kind == "memcached":
        location = _memcached_location(alias, location)
        if "REGION_PREFIX" not in text:
            # Listing, purge and clear touch only the keys this alias makes.
            text["REGION_PREFIX"] = f"{key_prefix or ''}:"
    else:
        location = str(location)
    return StoreSpec(str(alias), kind, backend, location, text, str(key_prefix),
                     conf.get("VERSION", 1))


class SettingsError(Exception):
    """A project's settings that cannot be loaded, or a CACHES entry no
    store can take; the message names the settings module and what failed."""


def project_specs(settings_module, pythonpath=()):
    """Every CACHES alias of a Django project as its StoreSpec, in settings
    order: puts pythonpath first on sys.path, loads settings_module
    (django.setup()) and runs store_spec on each entry. What `python -m
    regioncache describe` prints and the inspection agent serves (one loader
    for both). Raises SettingsError."""
    for p in reversed(pythonpath):
        sys.path.insert(0, os.path.abspath(p))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        import django
        from django.conf import settings

        django.setup()
        caches = settings.CACHES
    except Exception as e:  # an import error in the project's settings, say
        raise SettingsError(f"cannot load {settings_module}: {e}") from e
    try:
        return [store_spec(alias, conf) for alias, conf in caches.items()]
    except ImproperlyConfigured as e:
        raise SettingsError(f"{settings_module}: {e}") from e
