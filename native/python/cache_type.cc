// The type regioncache._native.Cache: its slots, the data descriptors,
// _open/_set_policy and the method table (the methods are in cache.cc and
// inspect.cc).
//
// The backends of the Python package derive from this type and from Django's
// BaseCache (in that order), so get/set/... resolve to the C methods below
// while get_or_set, incr_version and the rest of BaseCache stay Django's own.
// key_prefix, version, key_func and default_timeout are data descriptors:
// BaseCache.__init__ (and anyone later, as Django's tests do) sets them
// through us, so the native key maker always sees the current values.
#include "python/cache.h"

#include <memory>
#include <string>
#include <vector>

#include "regioncache/clock.h"

namespace regioncache::py {
namespace {

// ---- type slots --------------------------------------------------------------

PyObject* Cache_new(PyTypeObject* type, PyObject*, PyObject*) {
  ModuleState* mod = StateOfType(type);
  if (!mod) return nullptr;
  CacheObject* self = reinterpret_cast<CacheObject*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  self->mod = mod;
  self->st = new (std::nothrow) CacheState();
  if (!self->st) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  self->key_prefix = PyUnicode_FromString("");
  self->version = PyLong_FromLong(1);
  self->default_timeout = PyLong_FromLong(300);
  self->key_func = nullptr;
  self->native_key_func = true;
  if (!self->key_prefix || !self->version || !self->default_timeout || !RebuildPrefix(self)) {
    Py_DECREF(self);
    return nullptr;
  }
  return reinterpret_cast<PyObject*>(self);
}

// The objects a cache holds, for the GC slots below.
constexpr PyObject* CacheObject::*kCacheObjects[] = {
    &CacheObject::key_prefix, &CacheObject::version, &CacheObject::key_func,
    &CacheObject::default_timeout,
};

int Cache_traverse(CacheObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  for (auto field : kCacheObjects) Py_VISIT(self->*field);
  return 0;
}

int Cache_clear(CacheObject* self) {
  for (auto field : kCacheObjects) Py_CLEAR(self->*field);
  return 0;
}

void Cache_dealloc(CacheObject* self) {
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  Cache_clear(self);
  delete self->st;
  self->st = nullptr;
  tp->tp_free(self);
  Py_DECREF(tp);
}

// ---- descriptors -------------------------------------------------------------

// key_prefix and version: kept as set, and the native key maker's prefix
// made again from them. closure names the field (KeyPart below).
struct KeyPart {
  PyObject* CacheObject::*field;
  const char* deleted;  // the AttributeError of a del
};
const KeyPart kKeyPrefix{&CacheObject::key_prefix, "key_prefix cannot be deleted"};
const KeyPart kVersion{&CacheObject::version, "version cannot be deleted"};

PyObject* Get_key_part(CacheObject* self, void* closure) {
  PyObject* v = self->*static_cast<const KeyPart*>(closure)->field;
  return Py_NewRef(v ? v : Py_None);
}
int Set_key_part(CacheObject* self, PyObject* v, void* closure) {
  const KeyPart* part = static_cast<const KeyPart*>(closure);
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, part->deleted);
    return -1;
  }
  Py_XSETREF(self->*part->field, Py_NewRef(v));
  return RebuildPrefix(self) ? 0 : -1;
}
PyObject* Get_key_func(CacheObject* self, void*) {
  if (self->key_func) return Py_NewRef(self->key_func);
  return Py_NewRef(self->mod->default_key_func ? self->mod->default_key_func : Py_None);
}
int Set_key_func(CacheObject* self, PyObject* v, void*) {
  if (!v || v == Py_None) {
    Py_CLEAR(self->key_func);
    self->native_key_func = true;
    return 0;
  }
  if (!PyCallable_Check(v)) {
    PyErr_SetString(PyExc_TypeError, "key_func must be callable");
    return -1;
  }
  Py_XSETREF(self->key_func, Py_NewRef(v));
  self->native_key_func = (v == self->mod->default_key_func);
  return 0;
}
PyObject* Get_default_timeout(CacheObject* self, void*) {
  return Py_NewRef(self->default_timeout ? self->default_timeout : Py_None);
}
int Set_default_timeout(CacheObject* self, PyObject* v, void*) {
  if (!v) v = Py_None;
  if (v != Py_None && !PyNumber_Check(v)) {
    PyErr_SetString(PyExc_TypeError, "default_timeout must be a number or None");
    return -1;
  }
  Py_XSETREF(self->default_timeout, Py_NewRef(v));
  return 0;
}
PyObject* Get_store_kind(CacheObject* self, void*) {
  if (!self->st->store) Py_RETURN_NONE;
  std::string_view k = self->st->store->kind();
  return PyUnicode_FromStringAndSize(k.data(), static_cast<Py_ssize_t>(k.size()));
}
PyObject* Get_store_location(CacheObject* self, void*) {
  if (!self->st->store) Py_RETURN_NONE;
  return PyUnicode_FromString(self->st->store->location().c_str());
}
PyObject* Get_region(CacheObject* self, void*) {
  if (!self->st->store) Py_RETURN_NONE;
  return PyUnicode_FromString(self->st->store->region().c_str());
}
PyObject* Get_max_item_size(CacheObject* self, void*) {
  if (!self->st->store) Py_RETURN_NONE;
  return PyLong_FromUnsignedLongLong(self->st->store->MaxItemSize());
}

// ---- opening ---------------------------------------------------------------

// _open(kind, location, region, options: dict[str, str])
PyObject* Cache_open(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"kind", "location", "region", "options", "lazy"};
  PyObject* a[5];
  if (!ParseArgs("_open", args, nargs, kwnames, names, 5, 4, a)) return nullptr;
  int lazy = a[4] ? PyObject_IsTrue(a[4]) : 0;
  if (lazy < 0) return nullptr;
  StoreSpec spec;
  const char* s;
  if (!(s = PyUnicode_AsUTF8(a[0]))) return nullptr;
  spec.kind = s;
  if (!(s = PyUnicode_AsUTF8(a[1]))) return nullptr;
  spec.location = s;
  if (!(s = PyUnicode_AsUTF8(a[2]))) return nullptr;
  spec.region = s;
  if (!PyDict_Check(a[3])) {
    PyErr_SetString(PyExc_TypeError, "_open: options must be a dict of str to str");
    return nullptr;
  }
  PyObject *k, *v;
  Py_ssize_t pos = 0;
  while (PyDict_Next(a[3], &pos, &k, &v)) {
    const char* ks = PyUnicode_AsUTF8(k);
    if (!ks) return nullptr;
    const char* vs = PyUnicode_AsUTF8(v);
    if (!vs) return nullptr;
    spec.options[ks] = vs;
  }
  std::unique_ptr<Store> store;
  Status st;
  Py_BEGIN_ALLOW_THREADS
  st = OpenStore(spec, &store);
  Py_END_ALLOW_THREADS
  if (!st.ok()) {
    // Bad options raise whatever the policy; with lazy (the default
    // policy) a store that cannot be opened now is opened by a later call.
    if (!lazy || st.code() == Status::Code::kInvalidArgument) return RaiseStatus(self->mod, st);
    self->st->spec = std::move(spec);
    self->st->open_error = st;
    self->st->next_open_ms = NowMs() + 1000;
    LogWarning(self, "cannot be opened, every call answers as a failure until it can (tried again "
                     "at most once a second): " + CauseText(self, st));
    Py_RETURN_FALSE;
  }
  self->st->spec = std::move(spec);
  self->st->may_block = store->MayBlock();
  self->st->first_read = store->FirstReadSize();
  self->st->store = std::move(store);
  Py_RETURN_TRUE;
}

// _set_policy(raise_errors, signing_keys): signing_keys is None or a list of
// bytes (the first signs, all verify). Done once, right after _open.
PyObject* Cache_set_policy(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"raise_errors", "signing_keys"};
  PyObject* a[2];
  if (!ParseArgs("_set_policy", args, nargs, kwnames, names, 2, 2, a)) return nullptr;
  int raise = PyObject_IsTrue(a[0]);
  if (raise < 0) return nullptr;
  std::unique_ptr<Signer> signer;
  if (a[1] != Py_None) {
    if (!PyList_Check(a[1]) || PyList_GET_SIZE(a[1]) == 0) {
      PyErr_SetString(PyExc_TypeError, "_set_policy: signing_keys must be a non-empty list of bytes");
      return nullptr;
    }
    std::vector<std::string> keys;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(a[1]); ++i) {
      PyObject* k = PyList_GET_ITEM(a[1], i);
      if (!PyBytes_Check(k) || PyBytes_GET_SIZE(k) == 0) {
        PyErr_SetString(PyExc_TypeError, "_set_policy: signing_keys must be non-empty bytes");
        return nullptr;
      }
      keys.emplace_back(PyBytes_AS_STRING(k), static_cast<size_t>(PyBytes_GET_SIZE(k)));
    }
    std::string error;
    signer = Signer::Make(keys, &error);
    if (!signer) {
      PyErr_Format(self->mod->ConfigError, "region '%s': SIGNING_KEY: %s", RegionName(self).c_str(),
                   error.c_str());
      return nullptr;
    }
  }
  self->st->raise_errors = raise != 0;
  self->st->signer = std::move(signer);
  Py_RETURN_NONE;
}

PyObject* Get_raise_errors(CacheObject* self, void*) { return PyBool_FromLong(self->st->raise_errors); }
PyObject* Get_signed(CacheObject* self, void*) { return PyBool_FromLong(self->st->signer != nullptr); }
PyObject* Get_open_error(CacheObject* self, void*) {
  if (self->st->store || self->st->open_error.ok()) Py_RETURN_NONE;
  const std::string& m = self->st->open_error.message();
  return PyUnicode_DecodeUTF8(m.data(), static_cast<Py_ssize_t>(m.size()), "replace");
}
PyObject* Get_failures(CacheObject* self, void*) {
  return PyLong_FromUnsignedLongLong(self->st->failures);
}

// ---- the type ------------------------------------------------------------------

// Every method hands what the stores and the policy logged to Python's
// logging on its way out (module.cc): one relaxed load when nothing was.
using FastFn = PyObject* (*)(CacheObject*, PyObject* const*, Py_ssize_t, PyObject*);
using NoArgFn = PyObject* (*)(CacheObject*, PyObject*);
template <FastFn F>
PyObject* Drained(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* r = F(self, args, nargs, kwnames);
  if (LogPending()) [[unlikely]] DrainLog(self->mod);
  return r;
}
template <NoArgFn F>
PyObject* Drained1(CacheObject* self, PyObject* arg) {
  PyObject* r = F(self, arg);
  if (LogPending()) [[unlikely]] DrainLog(self->mod);
  return r;
}

#define FASTKW(name, fn, doc) \
  {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Drained<fn>)), METH_FASTCALL | METH_KEYWORDS, doc}
#define ONEARG(name, fn, flags, doc) \
  {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Drained1<fn>)), flags, doc}

PyMethodDef kMethods[] = {
    FASTKW("get", Cache_get, "get(key, default=None, version=None)"),
    FASTKW("set", Cache_set, "set(key, value, timeout=DEFAULT_TIMEOUT, version=None)"),
    FASTKW("add", Cache_add, "add(key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool"),
    FASTKW("touch", Cache_touch, "touch(key, timeout=DEFAULT_TIMEOUT, version=None) -> bool"),
    FASTKW("delete", Cache_delete, "delete(key, version=None) -> bool"),
    FASTKW("has_key", Cache_has_key, "has_key(key, version=None) -> bool"),
    FASTKW("incr", Cache_incr,
           "incr(key, delta=1, version=None, ignore_key_check=False) -> new value"),
    FASTKW("decr", Cache_decr, "decr(key, delta=1, version=None) -> new value"),
    FASTKW("get_many", Cache_get_many, "get_many(keys, version=None) -> dict"),
    FASTKW("set_many", Cache_set_many, "set_many(data, timeout=DEFAULT_TIMEOUT, version=None) -> failed keys"),
    FASTKW("delete_many", Cache_delete_many, "delete_many(keys, version=None)"),
    FASTKW("_expiry", Cache__expiry,
           "_expiry(key, version=None) -> -2 (no live entry), -1 (never expires) or epoch ms"),
    FASTKW("_swap", Cache__swap,
           "_swap(key, expected, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool (atomic)"),
    FASTKW("_delete_if", Cache__delete_if, "_delete_if(key, expected, version=None) -> bool (atomic)"),
    ONEARG("clear", Cache_clear_all, METH_NOARGS, "Remove every entry of the region."),
    {"close", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Cache_close)), METH_VARARGS | METH_KEYWORDS,
     "Django's per-request close: the store stays open."},
    FASTKW("_open", Cache_open, "_open(kind, location, region, options, lazy=False)"),
    FASTKW("_set_policy", Cache_set_policy, "_set_policy(raise_errors, signing_keys)"),
    ONEARG("stats", Cache_stats, METH_NOARGS, "Region statistics as a dict."),
    FASTKW("list_entries", Cache_list_entries,
           "list_entries(cursor='', glob='', limit=1000, include_expired=False, keys_only=False, raw_keys=False, with_scanned=False) -> (entries or keys, next_cursor[, scanned])"),
    ONEARG("purge_expired", Cache_purge_expired, METH_NOARGS, "Remove expired entries; returns the count."),
    FASTKW("purge", Cache_purge,
           "purge(glob, progress=None) -> entries removed (glob over full keys); progress(done) -> False cancels"),
    FASTKW("_peek_raw", Cache__peek_raw,
           "_peek_raw(full_key, max_bytes=1048576) -> None or {data, size, flags, encoding, expires_ms, truncated}"),
    ONEARG("_stats_full", Cache__stats_full, METH_NOARGS, "stats() plus extra and servers"),
    ONEARG("_counters", Cache__counters, METH_NOARGS,
           "as _stats_full, the cheap way a metrics scrape reads (no key dump, nothing O(entries))"),
    ONEARG("_count_stampede_wait", Cache__count_stampede_wait, METH_NOARGS,
           "count a caller that waited for another's computation"),
    ONEARG("delete_raw", Cache_delete_raw, METH_O, "delete_raw(full_keys) -> entries deleted"),
    {nullptr, nullptr, 0, nullptr},
};

#define GETSET(name, get, set, doc) \
  {name, reinterpret_cast<getter>(get), reinterpret_cast<setter>(set), doc, nullptr}
#define KEYPART(name, part, doc) \
  {name, reinterpret_cast<getter>(Get_key_part), reinterpret_cast<setter>(Set_key_part), doc, \
   const_cast<KeyPart*>(&part)}
#define GETTER(name, get, doc) {name, reinterpret_cast<getter>(get), nullptr, doc, nullptr}

PyGetSetDef kGetSet[] = {
    KEYPART("key_prefix", kKeyPrefix, "KEY_PREFIX"),
    KEYPART("version", kVersion, "VERSION"),
    GETSET("key_func", Get_key_func, Set_key_func, "KEY_FUNCTION"),
    GETSET("default_timeout", Get_default_timeout, Set_default_timeout, "TIMEOUT"),
    GETTER("store_kind", Get_store_kind, "shm, file or memcached"),
    GETTER("store_location", Get_store_location, "where the store lives"),
    GETTER("region", Get_region, "the name used in messages (the CACHES alias)"),
    GETTER("max_item_size", Get_max_item_size, "largest key + value accepted"),
    GETTER("raise_errors", Get_raise_errors, "OPTIONS RAISE_ERRORS: store failures raise instead of a miss/False"),
    GETTER("signs_values", Get_signed, "values are signed and checked (OPTIONS SIGNING_KEY)"),
    GETTER("open_error", Get_open_error,
           "why the store is not open (it is tried again by the next call), or None"),
    GETTER("failures", Get_failures,
           "store failures and unreadable values this cache object answered as a miss/False"),
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot kSlots[] = {
    {Py_tp_new, reinterpret_cast<void*>(Cache_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Cache_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Cache_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Cache_clear)},
    {Py_tp_methods, kMethods},
    {Py_tp_getset, kGetSet},
    {Py_tp_doc, const_cast<char*>("A cache region on a native regioncache store (Django's BaseCache contract).")},
    {0, nullptr},
};

PyType_Spec kSpec = {
    "regioncache._native.Cache",
    sizeof(CacheObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    kSlots,
};


}  // namespace

int WrapMethods(PyObject* module, PyObject* type);  // methods.cc: methods that carry __func__ (Django 6)

PyObject* MakeCacheType(PyObject* module) {
  PyObject* type = PyType_FromModuleAndSpec(module, &kSpec, nullptr);
  if (type && WrapMethods(module, type) < 0) Py_CLEAR(type);
  return type;
}


}  // namespace regioncache::py
