"""Cache keys for function results: the function's qualified name and its
arguments, spelled the same way in every process and after every restart.

Only values whose text is stable may take part: None, bools, numbers, str,
bytes, dates and times, Decimal, UUID, enums, tuples/lists/dicts/sets of
those, saved Django model instances (by app label, model and primary key),
and any object with a ``__cache_key__()`` method returning one of those.
Anything else (an open file, a lambda, an object whose repr holds its
address) would give a key that differs per process, so it raises TypeError
naming the argument instead of caching under a key that never hits.
"""

import datetime
import decimal
import enum
import hashlib
import inspect
import uuid

_P = inspect.Parameter

# Keys longer than this, or with characters memcached refuses, are hashed.
MAX_READABLE = 200
# The arguments part of a function's generation key.
GENERATION = "regioncache-generation"


class _Unkeyable(Exception):
    def __init__(self, value, path):
        self.value = value
        self.path = path


def _text(value, path):
    if value is None or isinstance(value, (bool, int, float, str, bytes, complex)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal)):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return f"UUID({value.hex})"
    custom = getattr(type(value), "__cache_key__", None)
    if custom is not None:
        return f"{type(value).__qualname__}<{_text(custom(value), path)}>"
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(meta, "label_lower") and hasattr(value, "pk"):
        if value.pk is None:
            raise _Unkeyable(value, path + " (an unsaved model instance has no primary key)")
        return f"<{meta.label_lower}:{_text(value.pk, path)}>"
    if isinstance(value, (tuple, list)):
        inner = ",".join(_text(v, f"{path}[{i}]") for i, v in enumerate(value))
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        items = sorted(
            (_text(k, f"{path} key"), _text(v, f"{path}[{k!r}]")) for k, v in value.items()
        )
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_text(v, f"{path} item") for v in value)) + "}"
    raise _Unkeyable(value, path)


def _safe(text):
    # What every store (memcached included) takes as is, without a warning:
    # printable ASCII (33 to 126) alone.
    return len(text) <= MAX_READABLE and text.isascii() and text.isprintable() and " " not in text


def function_name(func):
    return f"{func.__module__}.{func.__qualname__}"


class KeyMaker:
    """Builds the cache key of one decorated function's calls.

    ignore: names of arguments left out of the key (a request, a logger);
    each must be a parameter of the function, or the function must take
    **kwargs (then a keyword of that name is left out)."""

    def __init__(self, func, namespace=None, ignore=()):
        self.func = func
        self.name = namespace or function_name(func)
        self.signature = inspect.signature(func)
        params = self.signature.parameters
        names = list(params)
        # Methods: the instance or class is not part of the key unless it
        # says how to be (a __cache_key__ method); see _text.
        self.skip_first = bool(names) and names[0] in ("self", "cls")
        self.ignore = self._ignored(ignore, params)
        # The common signature (no positional-only, no *args or **kwargs) is
        # bound here, on the hot path, in a few steps; any other, or a call
        # that does not fit, goes through Signature.bind (and its errors).
        simple = all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
                     for p in params.values())
        self.names = tuple(names) if simple else None
        self.positional = sum(p.kind is _P.POSITIONAL_OR_KEYWORD for p in params.values())
        self.defaults = tuple(p.default for p in params.values())
        self.name_set = frozenset(names)
        # **kwargs, whose keywords named in ignore are left out too.
        self.var_keyword = next(
            (n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        # The function's generation entry (decorators.py), spelled as a call
        # (the desktop app lists it with the function) that no call makes: a
        # call's arguments are name=value, or none.
        self.generation_key = self._fit(f"{self.name}({GENERATION})", self.name)

    def _ignored(self, ignore, params):
        if isinstance(ignore, str):
            ignore = (ignore,)
        try:
            ignore = tuple(ignore)
        except TypeError:
            raise TypeError(
                f"{self.name}: ignore must be argument names (a tuple of str), not {ignore!r}"
            ) from None
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for n in ignore:
            if not isinstance(n, str):
                raise TypeError(f"{self.name}: ignore takes argument names (str), not {n!r}")
            if n not in params and not takes_kwargs:
                raise TypeError(
                    f"{self.name}: ignore names {n!r}, which is not an argument of the function "
                    f"(its arguments: {', '.join(params) or 'none'})"
                )
        return frozenset(ignore)

    def arguments(self, args, kwargs):
        """(name, value) of every parameter in the signature's order,
        defaults applied: what Signature.bind and apply_defaults give."""
        names = self.names
        if names is not None and len(args) <= self.positional and (
                not kwargs or self.name_set.issuperset(kwargs)):
            n = len(args)
            out = []
            for i, name in enumerate(names):
                if i < n:
                    if kwargs and name in kwargs:
                        break  # given twice: bind says so
                    out.append((name, args[i]))
                elif kwargs and name in kwargs:
                    out.append((name, kwargs[name]))
                elif self.defaults[i] is not _P.empty:
                    out.append((name, self.defaults[i]))
                else:
                    break  # missing: bind says so
            else:
                return out
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.name}: {e}") from None
        bound.apply_defaults()
        return bound.arguments.items()

    def __call__(self, args, kwargs):
        ignore = self.ignore
        parts = []
        for i, (name, value) in enumerate(self.arguments(args, kwargs)):
            if i == 0 and self.skip_first and getattr(type(value), "__cache_key__", None) is None:
                continue
            if ignore:
                if name in ignore:
                    continue
                if name == self.var_keyword:
                    value = {k: v for k, v in value.items() if k not in ignore}
            try:
                parts.append(f"{name}={_text(value, name)}")
            except _Unkeyable as e:
                raise TypeError(
                    f"{self.name}: argument {e.path} cannot form a cache key: "
                    f"{type(e.value).__module__}.{type(e.value).__qualname__} has no stable text "
                    "form (use None, bool, numbers, str, bytes, dates, Decimal, UUID, enums, "
                    "tuples, lists, dicts or sets of them, saved model instances, or give the "
                    "type a __cache_key__() method)"
                ) from None
        return self._fit(f"{self.name}({','.join(parts)})", self.name)

    @staticmethod
    def _fit(text, name):
        """text if every store takes it as is, else the name's printable head
        and a digest of text."""
        if _safe(text):
            return text
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        head = "".join(c for c in name if 33 <= ord(c) < 127)[:100]
        return f"{head}#{digest}"
