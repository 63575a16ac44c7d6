// Django's cache rules, natively: make_key with the default key function
// (a KEY_FUNCTION is called as Django calls it), validate_key's memcached
// warnings (CacheKeyWarning, Django's messages) and get_backend_timeout.
//
// This is their one home: the Python package does not make, validate or
// time keys itself (BaseCache's own make_key/validate_key are never on
// regioncache's path; `_configure` hands in only Django's sentinels). They
// stay native because they are on every call's hot path: in Python,
// Django's make_and_validate_key costs about 1.8 µs and get_backend_timeout
// 0.1 µs (best of 300 runs, Python 3.11, Django 5.2, on the dev machine),
// against 0.18 µs for a whole native get of a 100-byte str from shm and
// 0.27 µs for its set; doing them in Python would cost the backend most of
// its lead over LocMemCache (bench/bench_shm.py).
#include "python/cache.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "regioncache/clock.h"

namespace regioncache::py {
namespace {

constexpr Py_ssize_t kMemcachedMaxKeyLength = 250;  // Django's MEMCACHE_MAX_KEY_LENGTH

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

// Django's memcache_key_warnings, with the same messages.
bool WarnAboutKey(ModuleState* m, const MadeKey& k) {
  bool too_long = k.chars > kMemcachedMaxKeyLength;
  bool bad_chars = false;
  for (unsigned char c : k.bytes) {
    if (c <= 0x20 || c == 0x7f) {
      bad_chars = true;
      break;
    }
  }
  if (!too_long && !bad_chars) return true;
  if (!m->key_warning) return true;
  PyObject* key = PyUnicode_DecodeUTF8(k.bytes.data(), static_cast<Py_ssize_t>(k.bytes.size()),
                                       "replace");
  if (!key) return false;
  bool ok = true;
  if (too_long) {
    PyObject* msg = PyUnicode_FromFormat(
        "Cache key will cause errors if used with memcached: %R (longer than %zd)", key,
        kMemcachedMaxKeyLength);
    ok = msg && PyErr_WarnEx(m->key_warning, PyUnicode_AsUTF8(msg), 1) == 0;
    Py_XDECREF(msg);
  }
  if (ok && bad_chars) {
    PyObject* msg = PyUnicode_FromFormat(
        "Cache key contains characters that will cause errors if used with memcached: %R", key);
    ok = msg && PyErr_WarnEx(m->key_warning, PyUnicode_AsUTF8(msg), 1) == 0;
    Py_XDECREF(msg);
  }
  Py_DECREF(key);
  return ok;
}

}  // namespace


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
  return WarnAboutKey(self->mod, *out);
}

PyObject* MadeKeyStr(const MadeKey& k) {
  return PyUnicode_DecodeUTF8(k.bytes.data(), static_cast<Py_ssize_t>(k.bytes.size()), "replace");
}

// ---- timeouts --------------------------------------------------------------


// Django's get_backend_timeout: DEFAULT_TIMEOUT -> the cache's default, None
// -> never, 0 or negative -> already expired.
Expiry ComputeExpiry(CacheObject* self, PyObject* timeout, int64_t* expires_ms) {
  if (!timeout || timeout == self->mod->default_timeout) timeout = self->default_timeout;
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

}  // namespace regioncache::py
