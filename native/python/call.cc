// How a call of regioncache._native.Cache reaches its store: a store whose
// open failed is opened again on demand, and a failure that is not the
// caller's is answered under the region's failure policy (the GIL policy,
// Call and CallReleased, is in cache.h).
#include "python/cache.h"

#include <string>

#include "regioncache/clock.h"
#include "regioncache/log.h"

namespace regioncache::py {
namespace {

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

std::string KeyForMessage(std::string_view key) {
  std::string k(key.substr(0, 200));
  for (char& c : k)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (key.size() > 200) k += "...";
  return k;
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

}  // namespace

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
  for (int e = 0; e < 2; ++e) {
    if (st->pending_events[e]) store->Count(static_cast<Store::Event>(e), st->pending_events[e]);
    st->pending_events[e] = 0;
  }
  st->store = std::move(store);
  st->open_error = Status::OK();
  return Status::OK();
}

// For the inspection calls: the store, or RegionError.
bool Ready(CacheObject* self) {
  Status s = TryOpen(self);
  if (s.ok()) return true;
  RaiseStatus(self->mod, s.IsUnavailable() ? s : Status::Unavailable(s.message()));
  return false;
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

void CountEvent(CacheObject* self, Store::Event e, uint64_t n) {
  if (self->st->store) self->st->store->Count(e, n);
  else self->st->pending_events[static_cast<int>(e)] += n;
}

// Counted in the store's `errors`, swallowed or raised: a failure of the
// store, or a value it refused as too large (a set that stored nothing).
bool Swallow(CacheObject* self, const char* op, const Status& s, const char* outcome) {
  if (IsStoreFailure(s) || s.IsTooLarge()) CountEvent(self, Store::Event::kError);
  if (self->st->raise_errors || !IsStoreFailure(s)) {
    RaiseStatus(self->mod, s);
    return false;
  }
  LogWarning(self, std::string(op) + " failed, " + outcome + ": " + CauseText(self, s));
  ++self->st->failures;
  return true;
}

// The store for a cache call: true if open; false if not, with the failure
// policy applied (swallowed: logged, no exception, the caller answers its
// miss/False; or the exception set).
bool OpenOrAnswer(CacheObject* self, const char* op, const char* outcome) {
  Status s = TryOpen(self);
  if (s.ok()) return true;
  Status failure = IsStoreFailure(s) ? s : Status::Unavailable(s.message());
  Swallow(self, op, failure, outcome);
  return false;
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
  CountEvent(self, Store::Event::kError);
  if (!self->st->raise_errors) {
    Py_XDECREF(cause);
    LogWarning(self, msg + " (a miss)");
    ++self->st->failures;
    return nullptr;
  }
  PyErr_Format(self->mod->RegionError, "region '%s': %s", RegionName(self).c_str(), msg.c_str());
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

}  // namespace regioncache::py
