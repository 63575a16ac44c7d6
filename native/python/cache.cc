// regioncache._native.Cache: Django's BaseCache contract implemented on a
// regioncache Store.
//
// The backends of the Python package derive from this type and from Django's
// BaseCache (in that order), so get/set/... resolve to the C methods below
// while get_or_set, incr_version and the rest of BaseCache stay Django's own.
// key_prefix, version, key_func and default_timeout are data descriptors:
// BaseCache.__init__ (and anyone later, as Django's tests do) sets them
// through us, so the native key maker always sees the current values.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "python/glue.h"
#include "python/signing.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/log.h"
#include "regioncache/store.h"
#include "core/compress.h"

namespace regioncache::py {
namespace {

constexpr Py_ssize_t kMemcachedMaxKeyLength = 250;  // Django's MEMCACHE_MAX_KEY_LENGTH

struct CacheState {
  std::unique_ptr<Store> store;
  bool may_block = false;
  size_t first_read = 0;  // the store's FirstReadSize(): get() lends bytes buffers
  // "<key_prefix>:<version>:" in UTF-8 and its length in characters, for the
  // default key function with the default version.
  std::string prefix;
  Py_ssize_t prefix_chars = 0;
  // The failure policy (_set_policy): false = a store failure is a miss /
  // False and a log line; true = it raises (OPTIONS RAISE_ERRORS).
  bool raise_errors = false;
  // A region whose store could not be opened (its directory unwritable, say)
  // answers under the failure policy and is opened again, at most once a
  // second, by the next call (EnsureOpen).
  StoreSpec spec;
  Status open_error;
  int64_t next_open_ms = 0;
  bool opening = false;
  uint64_t failures = 0;  // failures swallowed so far (the `failures` attribute)
  std::unique_ptr<Signer> signer;  // OPTIONS SIGNING_KEY; null: values are not signed
};

struct CacheObject {
  PyObject_HEAD
  CacheState* st;
  PyObject* key_prefix;       // as set (normally str)
  PyObject* version;          // as set (normally int)
  PyObject* key_func;         // as set
  PyObject* default_timeout;  // as set: None or a number
  bool native_key_func;       // key_func is Django's default_key_func
};

// ---- GIL handling ----------------------------------------------------------

// Runs fn without the GIL for stores that block on I/O; stores that only
// block on a contended lock keep the GIL and release it through the blocking
// hooks (module.cc) only while they wait.
template <typename Fn>
Status Call(CacheObject* self, Fn&& fn) {
  if (!self->st->may_block) return fn(self->st->store.get());
  Status s;
  Store* store = self->st->store.get();
  Py_BEGIN_ALLOW_THREADS
  s = fn(store);
  Py_END_ALLOW_THREADS
  return s;
}

// Long inspection work always runs without the GIL.
template <typename Fn>
Status CallReleased(CacheObject* self, Fn&& fn) {
  Status s;
  Store* store = self->st->store.get();
  Py_BEGIN_ALLOW_THREADS
  s = fn(store);
  Py_END_ALLOW_THREADS
  return s;
}

const std::string& RegionName(CacheObject* self) {
  static const std::string none = "?";
  if (self->st->store) return self->st->store->region();
  return self->st->spec.region.empty() ? none : self->st->spec.region;
}

// Opens the store now if the first open failed (at most once a second).
// The failed open's Status otherwise.
Status TryOpen(CacheObject* self) {
  CacheState* st = self->st;
  if (st->store) return Status::OK();
  if (st->spec.kind.empty()) return Status::Unavailable("regioncache: this cache object has no store open");
  if (st->opening || NowMs() < st->next_open_ms) return st->open_error;
  st->opening = true;  // another thread meanwhile answers with open_error
  StoreSpec spec = st->spec;
  std::unique_ptr<Store> store;
  Status s;
  Py_BEGIN_ALLOW_THREADS
  s = OpenStore(spec, &store);
  Py_END_ALLOW_THREADS
  st->opening = false;
  if (!s.ok()) {
    st->open_error = s;
    st->next_open_ms = NowMs() + 1000;
    return s;
  }
  st->may_block = store->MayBlock();
  st->first_read = store->FirstReadSize();
  st->store = std::move(store);
  st->open_error = Status::OK();
  return Status::OK();
}

// For the inspection calls: the store, or RegionError.
bool Ready(CacheObject* self) {
  Status s = TryOpen(self);
  if (s.ok()) return true;
  RaiseStatus(s.IsUnavailable() ? s : Status::Unavailable(s.message()));
  return false;
}

// ---- the failure policy ------------------------------------------------------
//
// A failure that is not the caller's (the store's medium is damaged, refused
// or unreachable) is answered as a miss / False and logged through
// regioncache::Log (so Python's logging "regioncache.<alias>", rate-limited),
// unless the region has RAISE_ERRORS. Caller mistakes (a value too large, an
// invalid key, an unpicklable value) raise either way.

bool IsStoreFailure(const Status& s) {
  switch (s.code()) {
    case Status::Code::kCorruption:
    case Status::Code::kIOError:
    case Status::Code::kUnavailable:
      return true;
    default:
      return false;
  }
}

void LogWarning(CacheObject* self, const std::string& message) {
  std::string_view kind = self->st->store ? self->st->store->kind() : std::string_view(self->st->spec.kind);
  Log(LogLevel::kWarning, RegionName(self), kind, message);
}

// For a failed Status: true if the policy swallows it (logged; the caller
// answers with its miss/False), false with the exception set otherwise.
// outcome says what the caller answers ("a miss", "returned False").
// A Status's message without the "region 'x': " its log line has already.
std::string CauseText(CacheObject* self, const Status& s) {
  std::string cause = s.message().empty() ? s.ToString() : s.message();
  std::string own = "region '" + RegionName(self) + "': ";
  if (cause.compare(0, own.size(), own) == 0) cause.erase(0, own.size());
  return cause;
}

bool Swallow(CacheObject* self, const char* op, const Status& s, const char* outcome) {
  if (self->st->raise_errors || !IsStoreFailure(s)) {
    RaiseStatus(s);
    return false;
  }
  LogWarning(self, std::string(op) + " failed, " + outcome + ": " + CauseText(self, s));
  ++self->st->failures;
  return true;
}

// The store for a cache call: true if open; false if not, with the failure
// policy applied (swallowed: logged, no exception, the caller answers its
// miss/False; or the exception set).
bool Opened(CacheObject* self, const char* op, const char* outcome) {
  Status s = TryOpen(self);
  if (s.ok()) return true;
  Status failure = IsStoreFailure(s) ? s : Status::Unavailable(s.message());
  Swallow(self, op, failure, outcome);
  return false;
}

std::string KeyForMessage(std::string_view key) {
  std::string k(key.substr(0, 200));
  for (char& c : k)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (key.size() > 200) k += "...";
  return k;
}

// The pending exception, normalized (new reference), or nullptr; cleared.
PyObject* TakeException() {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  if (!t) return nullptr;
  PyErr_NormalizeException(&t, &v, &tb);
  if (tb && v) PyException_SetTraceback(v, tb);
  Py_DECREF(t);
  Py_XDECREF(tb);
  return v;
#endif
}

void RestoreException(PyObject* v) {  // steals v
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(v);
#else
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(v))), v, PyException_GetTraceback(v));
#endif
}

// "TypeName: text" of an exception object.
std::string ExceptionText(PyObject* v) {
  std::string text = Py_TYPE(v)->tp_name;
  PyObject* str = PyObject_Str(v);
  const char* c = str ? PyUnicode_AsUTF8(str) : nullptr;
  if (c && *c) text = text + ": " + std::string(c).substr(0, 300);
  Py_XDECREF(str);
  PyErr_Clear();
  return text;
}

// A stored value that cannot be turned back into a Python object (bad
// UTF-8, unknown flags, a pickle that fails to load, a signature that does
// not check). why may be empty: then the pending exception says why.
// Returns nullptr; with the exception set only under RAISE_ERRORS (a
// RegionError naming the region and the key, caused by the original error).
PyObject* Undecodable(CacheObject* self, std::string_view key, std::string why) {
  PyObject* cause = TakeException();
  if (why.empty() && cause) why = ExceptionText(cause);
  std::string msg = "value of key '" + KeyForMessage(key) + "' cannot be read: " + why;
  if (!self->st->raise_errors) {
    Py_XDECREF(cause);
    LogWarning(self, msg + " (a miss)");
    ++self->st->failures;
    return nullptr;
  }
  PyErr_Format(g.RegionError, "region '%s': %s", RegionName(self).c_str(), msg.c_str());
  if (cause) {
    PyObject* v = TakeException();
    if (v) {
      PyException_SetContext(v, Py_NewRef(cause));
      PyException_SetCause(v, cause);  // steals
      RestoreException(v);
    } else {
      Py_DECREF(cause);
    }
  }
  return nullptr;
}

// ---- keys ------------------------------------------------------------------

// A made key: "<prefix>:<version>:<key>" as UTF-8, with its length in
// characters (Django's length rule counts characters).
struct MadeKey {
  std::string bytes;
  Py_ssize_t chars = 0;
  std::string_view view() const { return bytes; }
};

bool AppendStr(PyObject* obj, std::string* out, Py_ssize_t* chars) {
  PyObject* s;
  if (PyUnicode_CheckExact(obj)) {
    s = obj;
    Py_INCREF(s);
  } else {
    s = PyObject_Str(obj);
    if (!s) return false;
  }
  Py_ssize_t n;
  const char* p = PyUnicode_AsUTF8AndSize(s, &n);
  if (!p) {
    Py_DECREF(s);
    return false;
  }
  out->append(p, static_cast<size_t>(n));
  *chars += PyUnicode_GET_LENGTH(s);
  Py_DECREF(s);
  return true;
}

bool RebuildPrefix(CacheObject* self) {
  std::string p;
  Py_ssize_t chars = 0;
  if (!AppendStr(self->key_prefix ? self->key_prefix : Py_None, &p, &chars)) return false;
  p.push_back(':');
  if (!AppendStr(self->version ? self->version : Py_None, &p, &chars)) return false;
  p.push_back(':');
  self->st->prefix = std::move(p);
  self->st->prefix_chars = chars + 2;
  return true;
}

// Django's memcache_key_warnings, with the same messages.
bool WarnAboutKey(const MadeKey& k) {
  bool too_long = k.chars > kMemcachedMaxKeyLength;
  bool bad_chars = false;
  for (unsigned char c : k.bytes) {
    if (c <= 0x20 || c == 0x7f) {
      bad_chars = true;
      break;
    }
  }
  if (!too_long && !bad_chars) return true;
  if (!g.key_warning) return true;
  PyObject* key = PyUnicode_DecodeUTF8(k.bytes.data(), static_cast<Py_ssize_t>(k.bytes.size()),
                                       "replace");
  if (!key) return false;
  bool ok = true;
  if (too_long) {
    PyObject* msg = PyUnicode_FromFormat(
        "Cache key will cause errors if used with memcached: %R (longer than %zd)", key,
        kMemcachedMaxKeyLength);
    ok = msg && PyErr_WarnEx(g.key_warning, PyUnicode_AsUTF8(msg), 1) == 0;
    Py_XDECREF(msg);
  }
  if (ok && bad_chars) {
    PyObject* msg = PyUnicode_FromFormat(
        "Cache key contains characters that will cause errors if used with memcached: %R", key);
    ok = msg && PyErr_WarnEx(g.key_warning, PyUnicode_AsUTF8(msg), 1) == 0;
    Py_XDECREF(msg);
  }
  Py_DECREF(key);
  return ok;
}

// make_and_validate_key(key, version): the default key function natively,
// a custom KEY_FUNCTION called as Django calls it.
bool MakeKey(CacheObject* self, PyObject* key, PyObject* version, MadeKey* out) {
  out->bytes.clear();
  out->chars = 0;
  if (version == Py_None) version = nullptr;
  if (self->native_key_func) {
    if (!version) {
      out->bytes.reserve(self->st->prefix.size() + 32);
      out->bytes = self->st->prefix;
      out->chars = self->st->prefix_chars;
    } else {
      if (!AppendStr(self->key_prefix, &out->bytes, &out->chars)) return false;
      out->bytes.push_back(':');
      if (!AppendStr(version, &out->bytes, &out->chars)) return false;
      out->bytes.push_back(':');
      out->chars += 2;
    }
    if (!AppendStr(key, &out->bytes, &out->chars)) return false;
  } else {
    PyObject* argv[3] = {key, self->key_prefix ? self->key_prefix : Py_None,
                         version ? version : (self->version ? self->version : Py_None)};
    PyObject* made = PyObject_Vectorcall(self->key_func, argv, 3, nullptr);
    if (!made) return false;
    bool ok = AppendStr(made, &out->bytes, &out->chars);
    Py_DECREF(made);
    if (!ok) return false;
  }
  return WarnAboutKey(*out);
}

PyObject* MadeKeyStr(const MadeKey& k) {
  return PyUnicode_DecodeUTF8(k.bytes.data(), static_cast<Py_ssize_t>(k.bytes.size()), "replace");
}

// ---- timeouts --------------------------------------------------------------

enum class Expiry { kAt, kNow, kError };

// Django's get_backend_timeout: DEFAULT_TIMEOUT -> the cache's default, None
// -> never, 0 or negative -> already expired.
Expiry ComputeExpiry(CacheObject* self, PyObject* timeout, int64_t* expires_ms) {
  if (!timeout || timeout == g.default_timeout) timeout = self->default_timeout;
  if (!timeout || timeout == Py_None) {
    *expires_ms = kNever;
    return Expiry::kAt;
  }
  double seconds;
  if (PyLong_Check(timeout)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(timeout, &overflow);
    if (v == -1 && PyErr_Occurred()) return Expiry::kError;
    if (overflow < 0) return Expiry::kNow;
    seconds = overflow > 0 ? 1e18 : static_cast<double>(v);
  } else {
    seconds = PyFloat_AsDouble(timeout);
    if (seconds == -1.0 && PyErr_Occurred()) return Expiry::kError;
    if (std::isnan(seconds)) {
      PyErr_SetString(PyExc_ValueError, "cache timeout is NaN");
      return Expiry::kError;
    }
  }
  if (seconds <= 0) return Expiry::kNow;
  // Far futures are clamped to about 290,000 years from now: still "not never".
  constexpr double kMaxMs = 9.0e15;
  double ms = seconds * 1000.0;
  int64_t now = NowMs();
  *expires_ms = ms >= kMaxMs ? now + static_cast<int64_t>(kMaxMs) : now + std::max<int64_t>(1, std::llround(ms));
  return Expiry::kAt;
}

// ---- type slots --------------------------------------------------------------

PyObject* Cache_new(PyTypeObject* type, PyObject*, PyObject*) {
  CacheObject* self = reinterpret_cast<CacheObject*>(type->tp_alloc(type, 0));
  if (!self) return nullptr;
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

int Cache_traverse(CacheObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(self->key_prefix);
  Py_VISIT(self->version);
  Py_VISIT(self->key_func);
  Py_VISIT(self->default_timeout);
  return 0;
}

int Cache_clear(CacheObject* self) {
  Py_CLEAR(self->key_prefix);
  Py_CLEAR(self->version);
  Py_CLEAR(self->key_func);
  Py_CLEAR(self->default_timeout);
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

PyObject* Get_key_prefix(CacheObject* self, void*) {
  return Py_NewRef(self->key_prefix ? self->key_prefix : Py_None);
}
int Set_key_prefix(CacheObject* self, PyObject* v, void*) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "key_prefix cannot be deleted");
    return -1;
  }
  Py_XSETREF(self->key_prefix, Py_NewRef(v));
  return RebuildPrefix(self) ? 0 : -1;
}
PyObject* Get_version(CacheObject* self, void*) {
  return Py_NewRef(self->version ? self->version : Py_None);
}
int Set_version(CacheObject* self, PyObject* v, void*) {
  if (!v) {
    PyErr_SetString(PyExc_AttributeError, "version cannot be deleted");
    return -1;
  }
  Py_XSETREF(self->version, Py_NewRef(v));
  return RebuildPrefix(self) ? 0 : -1;
}
PyObject* Get_key_func(CacheObject* self, void*) {
  if (self->key_func) return Py_NewRef(self->key_func);
  return Py_NewRef(g.default_key_func ? g.default_key_func : Py_None);
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
  self->native_key_func = (v == g.default_key_func);
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
    if (!lazy || st.code() == Status::Code::kInvalidArgument) return RaiseStatus(st);
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
      PyErr_Format(g.ConfigError, "region '%s': SIGNING_KEY: %s", RegionName(self).c_str(),
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

// ---- the cache contract ------------------------------------------------------

// Reads into a per-thread buffer that keeps its capacity between calls, so a
// hit costs no allocation; a nested call (from a pickle's __setstate__, say)
// falls back to a fresh buffer.
struct ReadBuffer {
  Value value;
  bool busy = false;
};
thread_local ReadBuffer tl_read;

class BorrowedValue {
 public:
  BorrowedValue() {
    if (!tl_read.busy) {
      tl_read.busy = true;
      v_ = &tl_read.value;
      v_->target = nullptr;
      v_->at = nullptr;
    } else {
      own_ = std::make_unique<Value>();
      v_ = own_.get();
    }
  }
  ~BorrowedValue() {
    if (own_) return;
    // A large value's buffer is not kept: it would pin that much memory in
    // every thread that ever read one (a file region holds values of GBs).
    if (tl_read.value.data.capacity() > (16u << 20)) std::string().swap(tl_read.value.data);
    tl_read.busy = false;
  }
  Value* get() { return v_; }

 private:
  Value* v_;
  std::unique_ptr<Value> own_;
};

// Lends the buffers of new bytes objects to a store that reads from files
// (ReadTarget), so that a value lands in the object get() returns: no copy
// between the kernel's and the caller's. Made and destroyed with the GIL.
class BytesTarget final : public ReadTarget {
 public:
  explicit BytesTarget(size_t first) {
    first_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(first));
    if (!first_) PyErr_Clear();  // then the store reads into Value::data
  }
  ~BytesTarget() override {
    Py_XDECREF(first_);
    Py_XDECREF(whole_);
  }
  BytesTarget(const BytesTarget&) = delete;
  BytesTarget& operator=(const BytesTarget&) = delete;

  std::span<char> First() override {
    if (!first_) return {};
    return {PyBytes_AS_STRING(first_), static_cast<size_t>(PyBytes_GET_SIZE(first_))};
  }
  // Called from the store without the GIL (the file store's reads release it).
  char* Whole(size_t n) override {
    PyGILState_STATE gs = PyGILState_Ensure();
    Py_CLEAR(whole_);
    whole_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
    if (!whole_) PyErr_Clear();  // too large for memory: the store says so
    PyGILState_Release(gs);
    return whole_ ? PyBytes_AS_STRING(whole_) : nullptr;
  }
  // The bytes object that holds v's value (v.at), cut to its length: a new
  // reference, or nullptr with an exception set.
  PyObject* Take(const Value& v) {
    PyObject** slot = nullptr;
    if (first_ && v.at == PyBytes_AS_STRING(first_)) slot = &first_;
    else if (whole_ && v.at == PyBytes_AS_STRING(whole_)) slot = &whole_;
    if (!slot) {
      PyErr_SetString(PyExc_SystemError, "regioncache: a value outside the lent buffers");
      return nullptr;
    }
    PyObject* o = *slot;
    *slot = nullptr;
    Py_ssize_t len = static_cast<Py_ssize_t>(v.len);
    if (PyBytes_GET_SIZE(o) != len && _PyBytes_Resize(&o, len) < 0) return nullptr;
    return o;
  }

 private:
  PyObject* first_ = nullptr;
  PyObject* whole_ = nullptr;
};

// Decode for a value that arrived in a bytes object of its own: bytes are
// returned as they are and pickles loaded from it, without another copy.
PyObject* DecodeOwned(PyObject* bytes, uint32_t flags, const std::string& region) {
  if (!bytes) return nullptr;
  if (!(flags & kFlagZstd)) {
    if (Encoding(flags) == kEncBytes) return bytes;
    if (Encoding(flags) == kEncPickle) {
      PyObject* r = PyObject_CallOneArg(g.pickle_loads, bytes);
      Py_DECREF(bytes);
      return r;
    }
  }
  PyObject* r = Decode(std::string_view(PyBytes_AS_STRING(bytes),
                                        static_cast<size_t>(PyBytes_GET_SIZE(bytes))),
                       flags, region);
  Py_DECREF(bytes);
  return r;
}

// Encodes a value for key; signs it if the region has a SIGNING_KEY. Exact
// ints stay plain decimal text, unsigned, so the stores' in-place incr keeps
// working (README, "Signed values").
bool EncodeFor(CacheObject* self, std::string_view key, PyObject* value, Encoded* e) {
  if (!e->Encode(value)) return false;
  if (self->st->signer && Encoding(e->flags()) != kEncInt)
    return e->Sign(self->st->signer.get(), key, RegionName(self));
  return true;
}

// A stored value as a Python object: the signature checked (when the region
// signs, or the value carries one), then decoded. owned (stolen; may be
// null) is a bytes object that holds the data. nullptr without an exception:
// the value is undecodable and was logged, a miss. nullptr with an
// exception: raise it.
PyObject* ReadValue(CacheObject* self, std::string_view key, std::string_view data, uint32_t flags,
                    PyObject* owned) {
  if (owned)
    data = std::string_view(PyBytes_AS_STRING(owned), static_cast<size_t>(PyBytes_GET_SIZE(owned)));
  if (flags & kFlagSigned) {
    if (data.size() < kMacSize) {
      Py_XDECREF(owned);
      return Undecodable(self, key, "signed value shorter than its signature");
    }
    std::string_view body = data.substr(0, data.size() - kMacSize);
    if (self->st->signer &&
        !self->st->signer->Verify(key, flags, body,
                                  reinterpret_cast<const unsigned char*>(body.data() + body.size()))) {
      Py_XDECREF(owned);
      return Undecodable(self, key,
                         "signature does not match (not written with this region's SIGNING_KEY)");
    }
    data = body;
    flags &= ~static_cast<uint32_t>(kFlagSigned);
    if (owned && _PyBytes_Resize(&owned, static_cast<Py_ssize_t>(body.size())) < 0) return nullptr;
  } else if (self->st->signer && Encoding(flags) != kEncInt) {
    Py_XDECREF(owned);
    return Undecodable(self, key, "value is not signed (written without the SIGNING_KEY)");
  }
  PyObject* r = owned ? DecodeOwned(owned, flags, RegionName(self))
                      : Decode(data, flags, RegionName(self));
  if (r || !PyErr_ExceptionMatches(PyExc_Exception)) return r;
  return Undecodable(self, key, {});
}

PyObject* Cache_get(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "default", "version"};
  PyObject* a[3];
  if (!ParseArgs("get", args, nargs, kwnames, names, 3, 1, a)) return nullptr;
  if (!Opened(self, "get", "a miss")) return PyErr_Occurred() ? nullptr : Py_NewRef(a[1] ? a[1] : Py_None);
  MadeKey k;
  if (!MakeKey(self, a[0], a[2], &k)) return nullptr;
  BorrowedValue v;
  std::optional<BytesTarget> target;
  if (self->st->first_read) {
    target.emplace(self->st->first_read);
    v.get()->target = &*target;
  }
  Status s = Call(self, [&](Store* st) { return st->Get(k.view(), v.get()); });
  v.get()->target = nullptr;
  // A server that is down or slow is a miss, as in Django's memcached
  // backends; so is a damaged entry or any other failure of the medium.
  if (s.IsNotFound()) return Py_NewRef(a[1] ? a[1] : Py_None);
  if (!s.ok()) {
    if (!Swallow(self, "get", s, "a miss")) return nullptr;
    return Py_NewRef(a[1] ? a[1] : Py_None);
  }
  PyObject* r;
  if (v.get()->at) {
    PyObject* owned = target->Take(*v.get());
    if (!owned) return nullptr;
    r = ReadValue(self, k.view(), {}, v.get()->flags, owned);
  } else {
    r = ReadValue(self, k.view(), v.get()->data, v.get()->flags, nullptr);
  }
  if (!r && !PyErr_Occurred()) return Py_NewRef(a[1] ? a[1] : Py_None);
  return r;
}

PyObject* Cache_set(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "value", "timeout", "version"};
  PyObject* a[4];
  if (!ParseArgs("set", args, nargs, kwnames, names, 4, 2, a)) return nullptr;
  if (!Opened(self, "set", "returned False")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_FALSE;
  }
  MadeKey k;
  if (!MakeKey(self, a[0], a[3], &k)) return nullptr;
  Encoded e;
  if (!EncodeFor(self, k.view(), a[1], &e)) return nullptr;
  int64_t exp;
  Expiry x = ComputeExpiry(self, a[2], &exp);
  if (x == Expiry::kError) return nullptr;
  Status s;
  if (x == Expiry::kNow) {
    s = Call(self, [&](Store* st) { return st->Delete(k.view()); });
    if (s.IsNotFound()) s = Status::OK();
  } else {
    s = Call(self, [&](Store* st) { return st->Set(k.view(), e.data(), e.flags(), exp); });
    if (s.code() == Status::Code::kTooLarge) {
      // The caller asked for the new value; the old one must not be served
      // in its place (cached_db sessions rely on this, as with memcached).
      Call(self, [&](Store* st) { return st->Delete(k.view()); });
    }
  }
  if (!s.ok()) {
    if (!Swallow(self, "set", s, "returned False")) return nullptr;
    Py_RETURN_FALSE;  // Django's "not stored"
  }
  Py_RETURN_NONE;
}

PyObject* Cache_add(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "value", "timeout", "version"};
  PyObject* a[4];
  if (!ParseArgs("add", args, nargs, kwnames, names, 4, 2, a)) return nullptr;
  if (!Opened(self, "add", "returned False")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_FALSE;
  }
  MadeKey k;
  if (!MakeKey(self, a[0], a[3], &k)) return nullptr;
  Encoded e;
  if (!EncodeFor(self, k.view(), a[1], &e)) return nullptr;
  int64_t exp;
  Expiry x = ComputeExpiry(self, a[2], &exp);
  if (x == Expiry::kError) return nullptr;
  Status s;
  if (x == Expiry::kNow) {
    // Django adds an already-expired entry when none is live: the add
    // succeeds and nothing can be read back.
    BorrowedValue v;
    s = Call(self, [&](Store* st) { return st->Peek(k.view(), v.get()); });
    if (s.ok()) Py_RETURN_FALSE;
    if (s.IsNotFound()) Py_RETURN_TRUE;
    if (!Swallow(self, "add", s, "returned False")) return nullptr;
    Py_RETURN_FALSE;
  }
  s = Call(self, [&](Store* st) { return st->Add(k.view(), e.data(), e.flags(), exp); });
  if (s.ok()) Py_RETURN_TRUE;
  if (s.IsNotStored()) Py_RETURN_FALSE;
  if (!Swallow(self, "add", s, "returned False")) return nullptr;
  Py_RETURN_FALSE;
}

PyObject* Cache_touch(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "timeout", "version"};
  PyObject* a[3];
  if (!ParseArgs("touch", args, nargs, kwnames, names, 3, 1, a)) return nullptr;
  if (!Opened(self, "touch", "returned False")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_FALSE;
  }
  MadeKey k;
  if (!MakeKey(self, a[0], a[2], &k)) return nullptr;
  int64_t exp;
  Expiry x = ComputeExpiry(self, a[1], &exp);
  if (x == Expiry::kError) return nullptr;
  Status s = x == Expiry::kNow ? Call(self, [&](Store* st) { return st->Delete(k.view()); })
                               : Call(self, [&](Store* st) { return st->Touch(k.view(), exp); });
  if (s.ok()) Py_RETURN_TRUE;
  if (s.IsNotFound()) Py_RETURN_FALSE;
  if (!Swallow(self, "touch", s, "returned False")) return nullptr;
  Py_RETURN_FALSE;
}

PyObject* Cache_delete(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "version"};
  PyObject* a[2];
  if (!ParseArgs("delete", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  if (!Opened(self, "delete", "returned False")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_FALSE;
  }
  MadeKey k;
  if (!MakeKey(self, a[0], a[1], &k)) return nullptr;
  Status s = Call(self, [&](Store* st) { return st->Delete(k.view()); });
  if (s.ok()) Py_RETURN_TRUE;
  if (s.IsNotFound()) Py_RETURN_FALSE;
  if (!Swallow(self, "delete", s, "returned False")) return nullptr;
  Py_RETURN_FALSE;
}

PyObject* Cache_has_key(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "version"};
  PyObject* a[2];
  if (!ParseArgs("has_key", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  if (!Opened(self, "has_key", "returned False")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_FALSE;
  }
  MadeKey k;
  if (!MakeKey(self, a[0], a[1], &k)) return nullptr;
  BorrowedValue v;
  Status s = Call(self, [&](Store* st) { return st->Peek(k.view(), v.get()); });
  if (s.ok()) Py_RETURN_TRUE;
  if (s.IsNotFound()) Py_RETURN_FALSE;
  if (!Swallow(self, "has_key", s, "returned False")) return nullptr;
  Py_RETURN_FALSE;
}

PyObject* NotFoundError(const MadeKey& k) {
  PyObject* key = MadeKeyStr(k);
  if (!key) return nullptr;
  PyErr_Format(PyExc_ValueError, "Key '%U' not found", key);
  Py_DECREF(key);
  return nullptr;
}

// The value is not a stored int64 (a float, a pickled big int, a str...) or
// the sum leaves int64: add in Python as Django's backends do, and write the
// result back keeping the entry's expiry.
PyObject* IncrInPython(CacheObject* self, const MadeKey& k, PyObject* delta) {
  BorrowedValue v;
  Status s = Call(self, [&](Store* st) { return st->Peek(k.view(), v.get()); });
  if (s.IsNotFound()) return NotFoundError(k);
  if (!s.ok()) return Swallow(self, "incr", s, "raised ValueError") ? NotFoundError(k) : nullptr;
  int64_t exp = v.get()->expires_ms;
  PyObject* old = ReadValue(self, k.view(), v.get()->data, v.get()->flags, nullptr);
  if (!old) return PyErr_Occurred() ? nullptr : NotFoundError(k);
  PyObject* sum = PyNumber_Add(old, delta);
  Py_DECREF(old);
  if (!sum) return nullptr;
  Encoded e;
  if (!EncodeFor(self, k.view(), sum, &e)) {
    Py_DECREF(sum);
    return nullptr;
  }
  s = Call(self, [&](Store* st) { return st->Replace(k.view(), e.data(), e.flags(), exp); });
  if (s.IsNotStored()) {
    Py_DECREF(sum);
    return NotFoundError(k);
  }
  if (!s.ok()) {
    Py_DECREF(sum);
    return Swallow(self, "incr", s, "raised ValueError") ? NotFoundError(k) : nullptr;
  }
  return sum;
}

PyObject* DoIncr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                 const char* fname, bool negate) {
  static const char* const names[] = {"key", "delta", "version"};
  PyObject* a[3];
  if (!ParseArgs(fname, args, nargs, kwnames, names, 3, 1, a)) return nullptr;
  MadeKey k;
  if (!MakeKey(self, a[0], a[2], &k)) return nullptr;
  if (!Opened(self, fname, "raised ValueError")) return PyErr_Occurred() ? nullptr : NotFoundError(k);
  PyObject* delta = a[1] ? Py_NewRef(a[1]) : PyLong_FromLong(1);
  if (!delta) return nullptr;
  if (negate) {
    PyObject* n = PyNumber_Negative(delta);
    Py_DECREF(delta);
    if (!n) return nullptr;
    delta = n;
  }
  PyObject* result = nullptr;
  bool native = false;
  long long d = 0;
  if (PyLong_CheckExact(delta)) {
    int overflow = 0;
    d = PyLong_AsLongLongAndOverflow(delta, &overflow);
    native = !overflow && !(d == -1 && PyErr_Occurred());
    PyErr_Clear();
  }
  if (native) {
    int64_t out = 0;
    Status s = Call(self, [&](Store* st) { return st->Incr(k.view(), d, &out); });
    if (s.ok()) {
      result = PyLong_FromLongLong(out);
    } else if (s.IsNotFound()) {
      NotFoundError(k);
    } else if (s.code() == Status::Code::kNotANumber || s.code() == Status::Code::kOutOfRange) {
      result = IncrInPython(self, k, delta);
    } else if (Swallow(self, fname, s, "raised ValueError")) {
      NotFoundError(k);  // a value that cannot be read counts as missing
    }
  } else {
    result = IncrInPython(self, k, delta);
  }
  Py_DECREF(delta);
  return result;
}

PyObject* Cache_incr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return DoIncr(self, args, nargs, kwnames, "incr", false);
}
PyObject* Cache_decr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return DoIncr(self, args, nargs, kwnames, "decr", true);
}

// Collects (original key, made key) pairs from any iterable of keys.
bool MakeKeys(CacheObject* self, PyObject* keys, PyObject* version, std::vector<PyObject*>* orig,
              std::vector<MadeKey>* made) {
  PyObject* it = PyObject_GetIter(keys);
  if (!it) return false;
  // made may come with strings from an earlier call: they are written over,
  // keeping their capacity.
  size_t n = 0;
  PyObject* key;
  while ((key = PyIter_Next(it))) {
    if (made->size() <= n) made->emplace_back();
    orig->push_back(key);  // owns the reference
    if (!MakeKey(self, key, version, &(*made)[n++])) {
      Py_DECREF(it);
      return false;
    }
  }
  Py_DECREF(it);
  made->resize(n);
  return !PyErr_Occurred();
}

// get_many's key and value vectors, kept per thread between calls so their
// strings keep their capacity: after the first call, 100 keys and values
// cost no allocation. A nested call (from a pickle's __setstate__, say)
// gets fresh ones; large buffers are not kept (as for ReadBuffer).
struct ManyBuffers {
  std::vector<MadeKey> made;
  std::vector<Value> values;
  bool busy = false;
};
thread_local ManyBuffers tl_many;

class BorrowedMany {
 public:
  BorrowedMany() {
    if (!tl_many.busy) {
      tl_many.busy = true;
      b_ = &tl_many;
    } else {
      own_ = std::make_unique<ManyBuffers>();
      b_ = own_.get();
    }
  }
  ~BorrowedMany() {
    if (own_) return;
    size_t kept = 0;
    for (const Value& v : tl_many.values) kept += v.data.capacity();
    if (kept > (16u << 20) || tl_many.values.size() > 100000) {
      std::vector<Value>().swap(tl_many.values);
      std::vector<MadeKey>().swap(tl_many.made);
    }
    tl_many.busy = false;
  }
  std::vector<MadeKey>& made() { return b_->made; }
  std::vector<Value>& values() { return b_->values; }

 private:
  ManyBuffers* b_;
  std::unique_ptr<ManyBuffers> own_;
};

void DecRefAll(std::vector<PyObject*>* objs) {
  for (PyObject* o : *objs) Py_DECREF(o);
  objs->clear();
}

PyObject* Cache_get_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"keys", "version"};
  PyObject* a[2];
  if (!ParseArgs("get_many", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  if (!Opened(self, "get_many", "all misses")) return PyErr_Occurred() ? nullptr : PyDict_New();
  std::vector<PyObject*> orig;
  BorrowedMany buffers;
  std::vector<MadeKey>& made = buffers.made();
  std::vector<Value>& values = buffers.values();
  PyObject* result = nullptr;
  std::vector<std::string_view> views;
  std::vector<bool> found;
  Status s;
  if (!MakeKeys(self, a[0], a[1], &orig, &made)) goto done;
  for (const auto& m : made) views.push_back(m.view());
  s = Call(self, [&](Store* st) { return st->GetMany(views, &values, &found); });
  if (!s.ok()) {
    if (!Swallow(self, "get_many", s, "all misses")) goto done;
    s = Status::OK();  // e.g. every server down: all misses
    found.assign(views.size(), false);
    values.resize(views.size());
  }
  result = PyDict_New();
  if (!result) goto done;
  for (size_t i = 0; i < orig.size(); ++i) {
    if (!found[i]) continue;
    PyObject* v = ReadValue(self, views[i], values[i].data, values[i].flags, nullptr);
    if (!v && !PyErr_Occurred()) continue;  // undecodable: a miss, logged
    if (!v || PyDict_SetItem(result, orig[i], v) < 0) {
      Py_XDECREF(v);
      Py_CLEAR(result);
      goto done;
    }
    Py_DECREF(v);
  }
done:
  DecRefAll(&orig);
  return result;
}

PyObject* Cache_set_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"data", "timeout", "version"};
  PyObject* a[3];
  if (!ParseArgs("set_many", args, nargs, kwnames, names, 3, 1, a)) return nullptr;
  if (!Opened(self, "set_many", "every key returned as failed"))
    return PyErr_Occurred() ? nullptr : PyMapping_Keys(a[0]);
  std::vector<PyObject*> orig;
  std::vector<MadeKey> made;
  std::vector<Encoded> enc;
  std::vector<WriteItem> items;
  std::vector<size_t> failed;
  PyObject* result = nullptr;
  PyObject* items_list = nullptr;
  int64_t exp = 0;
  Expiry x;
  Status s;
  // Encode everything before writing anything: an unpicklable value raises
  // and leaves the region as it was.
  items_list = PyMapping_Items(a[0]);
  if (!items_list) goto done;
  x = ComputeExpiry(self, a[1], &exp);
  if (x == Expiry::kError) goto done;
  {
    Py_ssize_t n = PyList_GET_SIZE(items_list);
    made.resize(static_cast<size_t>(n));
    enc.resize(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* pair = PyList_GET_ITEM(items_list, i);
      PyObject* key = PyTuple_GET_ITEM(pair, 0);
      orig.push_back(Py_NewRef(key));
      if (!MakeKey(self, key, a[2], &made[static_cast<size_t>(i)])) goto done;
      if (!EncodeFor(self, made[static_cast<size_t>(i)].view(), PyTuple_GET_ITEM(pair, 1),
                     &enc[static_cast<size_t>(i)]))
        goto done;
    }
  }
  if (x == Expiry::kNow) {
    std::vector<std::string_view> views;
    for (const auto& m : made) views.push_back(m.view());
    uint64_t deleted = 0;
    s = Call(self, [&](Store* st) { return st->DeleteMany(views, &deleted); });
  } else {
    for (size_t i = 0; i < made.size(); ++i)
      items.push_back(WriteItem{made[i].view(), enc[i].data(), enc[i].flags(), exp});
    s = Call(self, [&](Store* st) { return st->SetMany(items, &failed); });
    if (!failed.empty() && !s.IsUnavailable()) {
      // As in set(): a key whose new value was refused keeps no old value.
      std::vector<std::string_view> gone;
      for (size_t i : failed) gone.push_back(items[i].key);
      uint64_t deleted = 0;
      Call(self, [&](Store* st) { return st->DeleteMany(gone, &deleted); });
    }
  }
  // Values too large for the region are reported in the failed list, as
  // Django's set_many reports keys it could not store.
  if (s.code() == Status::Code::kTooLarge) s = Status::OK();
  if (!s.ok()) {
    if (!Swallow(self, "set_many", s, "every key returned as failed")) goto done;
    failed.clear();  // nothing is known to be stored: every key failed
    for (size_t i = 0; i < made.size(); ++i) failed.push_back(i);
  }
  result = PyList_New(0);
  if (!result) goto done;
  for (size_t i : failed) {
    if (PyList_Append(result, orig[i]) < 0) {
      Py_CLEAR(result);
      goto done;
    }
  }
done:
  Py_XDECREF(items_list);
  DecRefAll(&orig);
  return result;
}

PyObject* Cache_delete_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"keys", "version"};
  PyObject* a[2];
  if (!ParseArgs("delete_many", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  if (!Opened(self, "delete_many", "returned None")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_NONE;
  }
  std::vector<PyObject*> orig;
  std::vector<MadeKey> made;
  bool ok = MakeKeys(self, a[0], a[1], &orig, &made);
  DecRefAll(&orig);
  if (!ok) return nullptr;
  std::vector<std::string_view> views;
  for (const auto& m : made) views.push_back(m.view());
  uint64_t deleted = 0;
  Status s = Call(self, [&](Store* st) { return st->DeleteMany(views, &deleted); });
  if (!s.ok() && !Swallow(self, "delete_many", s, "returned None")) return nullptr;
  Py_RETURN_NONE;
}

PyObject* Cache_clear_all(CacheObject* self, PyObject*) {
  if (!Opened(self, "clear", "returned None")) {
    if (PyErr_Occurred()) return nullptr;
    Py_RETURN_NONE;
  }
  Status s = CallReleased(self, [&](Store* st) { return st->Clear(); });
  if (!s.ok() && !Swallow(self, "clear", s, "returned None")) return nullptr;
  Py_RETURN_NONE;
}

// Django calls close() at the end of every request; the store stays open
// (it is shared by the whole process).
PyObject* Cache_close(CacheObject*, PyObject*, PyObject*) { Py_RETURN_NONE; }

// ---- inspection ----------------------------------------------------------------

PyObject* MsToSeconds(int64_t ms) {
  if (ms == 0) Py_RETURN_NONE;
  return PyFloat_FromDouble(static_cast<double>(ms) / 1000.0);
}

PyObject* Cache_stats(CacheObject* self, PyObject*) {
  if (!Ready(self)) return nullptr;
  Stats st;
  Status s = CallReleased(self, [&](Store* store) { return store->GetStats(&st); });
  if (!s.ok()) return RaiseStatus(s);
  std::string_view kind = self->st->store->kind();
  PyObject* d = Py_BuildValue(
      "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:s#,s:s,s:s}", "entries",
      (unsigned long long)st.entries, "bytes_used", (unsigned long long)st.bytes_used, "capacity",
      (unsigned long long)st.capacity, "hits", (unsigned long long)st.hits, "misses",
      (unsigned long long)st.misses, "sets", (unsigned long long)st.sets, "evictions",
      (unsigned long long)st.evictions, "expirations", (unsigned long long)st.expirations, "kind",
      kind.data(), (Py_ssize_t)kind.size(), "location", self->st->store->location().c_str(),
      "region", self->st->store->region().c_str());
  if (!d) return nullptr;
  for (const auto& [k, v] : st.extra) {
    PyObject* pv = PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "replace");
    if (!pv || PyDict_SetItemString(d, k.c_str(), pv) < 0) {
      Py_XDECREF(pv);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(pv);
  }
  return d;
}

// list_entries(cursor="", glob="", limit=1000, include_expired=False)
//   -> (list of dicts, next_cursor)
PyObject* Cache_list_entries(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"cursor", "glob", "limit", "include_expired"};
  PyObject* a[4];
  if (!ParseArgs("list_entries", args, nargs, kwnames, names, 4, 0, a)) return nullptr;
  if (!Ready(self)) return nullptr;
  ListOptions lo;
  if (a[0] && a[0] != Py_None) {
    const char* c = PyUnicode_AsUTF8(a[0]);
    if (!c) return nullptr;
    lo.cursor = c;
  }
  if (a[1] && a[1] != Py_None) {
    const char* c = PyUnicode_AsUTF8(a[1]);
    if (!c) return nullptr;
    lo.glob = c;
  }
  if (a[2] && a[2] != Py_None) {
    long long n = PyLong_AsLongLong(a[2]);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n <= 0) {
      PyErr_SetString(PyExc_ValueError, "list_entries: limit must be positive");
      return nullptr;
    }
    lo.limit = static_cast<size_t>(n);
  }
  if (a[3]) {
    int t = PyObject_IsTrue(a[3]);
    if (t < 0) return nullptr;
    lo.include_expired = t != 0;
  }
  ListPage page;
  Status s = CallReleased(self, [&](Store* st) { return st->List(lo, &page); });
  if (!s.ok()) return RaiseStatus(s);
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(page.entries.size()));
  if (!list) return nullptr;
  for (size_t i = 0; i < page.entries.size(); ++i) {
    const EntryInfo& e = page.entries[i];
    PyObject* key = PyUnicode_DecodeUTF8(e.key.data(), static_cast<Py_ssize_t>(e.key.size()), "replace");
    PyObject* exp = MsToSeconds(e.expires_ms);
    PyObject* stored = MsToSeconds(e.stored_ms);
    PyObject* accessed = MsToSeconds(e.accessed_ms);
    PyObject* d = nullptr;
    if (key && exp && stored && accessed)
      d = Py_BuildValue("{s:O,s:K,s:O,s:O,s:O,s:s,s:I}", "key", key, "size",
                        (unsigned long long)e.value_size, "expires", exp, "stored", stored,
                        "accessed", accessed, "encoding", EncodingName(e.flags), "flags",
                        (unsigned int)e.flags);
    Py_XDECREF(key);
    Py_XDECREF(exp);
    Py_XDECREF(stored);
    Py_XDECREF(accessed);
    if (!d) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), d);
  }
  return Py_BuildValue("(Ns)", list, page.next_cursor.c_str());
}

PyObject* Cache_purge_expired(CacheObject* self, PyObject*) {
  if (!Ready(self)) return nullptr;
  uint64_t removed = 0;
  Status s = CallReleased(self, [&](Store* st) { return st->PurgeExpired(&removed); });
  if (!s.ok()) return RaiseStatus(s);
  return PyLong_FromUnsignedLongLong(removed);
}

PyObject* Cache_purge(CacheObject* self, PyObject* arg) {
  if (!Ready(self)) return nullptr;
  const char* glob = PyUnicode_AsUTF8(arg);
  if (!glob) return nullptr;
  std::string g2 = glob;
  uint64_t removed = 0;
  Status s = CallReleased(self, [&](Store* st) { return st->PurgeMatching(g2, &removed); });
  if (!s.ok()) return RaiseStatus(s);
  return PyLong_FromUnsignedLongLong(removed);
}

// delete_raw(full_keys) -> number deleted; keys exactly as list_entries shows them.
PyObject* Cache_delete_raw(CacheObject* self, PyObject* arg) {
  if (!Ready(self)) return nullptr;
  std::vector<std::string> keys;
  PyObject* it = PyObject_GetIter(arg);
  if (!it) return nullptr;
  PyObject* k;
  while ((k = PyIter_Next(it))) {
    const char* s = PyUnicode_AsUTF8(k);
    if (s) keys.emplace_back(s);
    Py_DECREF(k);
    if (!s) break;
  }
  Py_DECREF(it);
  if (PyErr_Occurred()) return nullptr;
  std::vector<std::string_view> views(keys.begin(), keys.end());
  uint64_t deleted = 0;
  Status s = CallReleased(self, [&](Store* st) { return st->DeleteMany(views, &deleted); });
  if (!s.ok()) return RaiseStatus(s);
  return PyLong_FromUnsignedLongLong(deleted);
}

// ---- the type ------------------------------------------------------------------

// Every method hands what the stores and the policy logged to Python's
// logging on its way out (module.cc): one relaxed load when nothing was.
using FastFn = PyObject* (*)(CacheObject*, PyObject* const*, Py_ssize_t, PyObject*);
using NoArgFn = PyObject* (*)(CacheObject*, PyObject*);
template <FastFn F>
PyObject* Drained(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* r = F(self, args, nargs, kwnames);
  if (LogPending()) [[unlikely]] DrainLog();
  return r;
}
template <NoArgFn F>
PyObject* Drained1(CacheObject* self, PyObject* arg) {
  PyObject* r = F(self, arg);
  if (LogPending()) [[unlikely]] DrainLog();
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
    FASTKW("incr", Cache_incr, "incr(key, delta=1, version=None) -> new value"),
    FASTKW("decr", Cache_decr, "decr(key, delta=1, version=None) -> new value"),
    FASTKW("get_many", Cache_get_many, "get_many(keys, version=None) -> dict"),
    FASTKW("set_many", Cache_set_many, "set_many(data, timeout=DEFAULT_TIMEOUT, version=None) -> failed keys"),
    FASTKW("delete_many", Cache_delete_many, "delete_many(keys, version=None)"),
    ONEARG("clear", Cache_clear_all, METH_NOARGS, "Remove every entry of the region."),
    {"close", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Cache_close)), METH_VARARGS | METH_KEYWORDS,
     "Django's per-request close: the store stays open."},
    FASTKW("_open", Cache_open, "_open(kind, location, region, options, lazy=False)"),
    FASTKW("_set_policy", Cache_set_policy, "_set_policy(raise_errors, signing_keys)"),
    ONEARG("stats", Cache_stats, METH_NOARGS, "Region statistics as a dict."),
    FASTKW("list_entries", Cache_list_entries,
           "list_entries(cursor='', glob='', limit=1000, include_expired=False) -> (entries, next_cursor)"),
    ONEARG("purge_expired", Cache_purge_expired, METH_NOARGS, "Remove expired entries; returns the count."),
    ONEARG("purge", Cache_purge, METH_O, "purge(glob) -> entries removed (glob over full keys)"),
    ONEARG("delete_raw", Cache_delete_raw, METH_O, "delete_raw(full_keys) -> entries deleted"),
    {nullptr, nullptr, 0, nullptr},
};

#define GETSET(name, get, set, doc) \
  {name, reinterpret_cast<getter>(get), reinterpret_cast<setter>(set), doc, nullptr}
#define GETTER(name, get, doc) {name, reinterpret_cast<getter>(get), nullptr, doc, nullptr}

PyGetSetDef kGetSet[] = {
    GETSET("key_prefix", Get_key_prefix, Set_key_prefix, "KEY_PREFIX"),
    GETSET("version", Get_version, Set_version, "VERSION"),
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

int WrapMethods(PyObject* type);  // methods.cc: methods that carry __func__ (Django 6)

PyObject* MakeCacheType(PyObject* module) {
  PyObject* type = PyType_FromModuleAndSpec(module, &kSpec, nullptr);
  if (type && WrapMethods(type) < 0) Py_CLEAR(type);
  return type;
}

}  // namespace regioncache::py
