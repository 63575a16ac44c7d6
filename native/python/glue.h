// Shared pieces of the CPython module regioncache._native: the module's
// state, argument parsing, the value codec and the log bridge.
//
// What the module keeps (pickle's functions, Django's sentinels, its
// exceptions, the log handler) lives in its state (PyModule_GetState, the
// way CPython's own modules keep theirs), not in C globals; a Cache object
// keeps a pointer to that state from its creation (CacheObject::mod). The
// log queue and the blocking hooks stay process-wide: they are the sinks
// of the stores, which know no interpreter.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "regioncache/status.h"
#include "regioncache/store.h"

namespace regioncache::py {

class Signer;  // signing.h

struct ModuleState {
  PyObject* pickle_dumps = nullptr;
  PyObject* pickle_loads = nullptr;
  PyObject* pickle_protocol = nullptr;   // int: pickle.HIGHEST_PROTOCOL
  PyObject* default_timeout = nullptr;   // django...base.DEFAULT_TIMEOUT (set by _configure)
  PyObject* default_key_func = nullptr;  // django...base.default_key_func (set by _configure)
  PyObject* key_warning = nullptr;       // django...base.CacheKeyWarning (set by _configure)
  PyObject* RegionError = nullptr;
  PyObject* ConfigError = nullptr;
  PyObject* ValueTooLargeError = nullptr;
  PyObject* log_handler = nullptr;       // emit(level, region, store, message, dropped)
  PyObject* method_type = nullptr;       // methods.cc: regioncache._native.method
  PyObject* bound_type = nullptr;        // methods.cc: regioncache._native.bound_method
};

extern PyModuleDef kModuleDef;  // module.cc

inline ModuleState* StateOf(PyObject* module) {
  return static_cast<ModuleState*>(PyModule_GetState(module));
}
// The state of the module that defined type or one of its bases (the
// backends are Python subclasses of Cache); nullptr with TypeError if none.
ModuleState* StateOfType(PyTypeObject* type);

// ---- the log bridge (module.cc) ---------------------------------------------
//
// regioncache::Log lines are queued by the sink (any thread, no GIL, store
// locks possibly held) and handed to the Python handler set by
// _set_log_handler (regioncache._log.emit) by DrainLog(), which needs the
// GIL. Every Cache method checks LogPending() on its way out: one relaxed
// load when nothing was logged.
extern std::atomic<bool> g_log_pending;
inline bool LogPending() { return g_log_pending.load(std::memory_order_relaxed); }
void DrainLog(ModuleState* m);

// Raises the Python exception that matches a failed Status; returns nullptr.
PyObject* RaiseStatus(ModuleState* m, const Status& s);

// Parses fastcall arguments by name into out[0..nnames). Entries not given
// stay nullptr. Returns false with TypeError set on a bad call.
bool ParseArgs(const char* fname, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
               const char* const* names, int nnames, int nrequired, PyObject** out);

// ---- values ----------------------------------------------------------------

// A Python value as bytes + flags (codec.h). Exact int (in int64), str and
// bytes are stored as they are; everything else is pickled. Holds a reference
// to whatever owns the bytes.
class Encoded {
 public:
  Encoded() = default;
  ~Encoded() { Py_XDECREF(owner_); }
  Encoded(const Encoded&) = delete;
  Encoded& operator=(const Encoded&) = delete;
  Encoded(Encoded&& o) noexcept
      : view_(o.view_), flags_(o.flags_), owner_(o.owner_), small_(o.small_) {
    o.owner_ = nullptr;
    if (o.view_.data() == o.small_.data()) view_ = std::string_view(small_);
  }

  // False with a Python exception set (e.g. a pickling error).
  bool Encode(ModuleState* m, PyObject* value);
  // Appends the HMAC tag (signing.h) over key, flags | kFlagSigned and the
  // bytes, and sets kFlagSigned. One copy of the value. False with
  // RegionError set if libcrypto failed.
  bool Sign(ModuleState* m, Signer* signer, std::string_view key, const std::string& region);
  std::string_view data() const { return view_; }
  uint32_t flags() const { return flags_; }

 private:
  std::string_view view_;
  uint32_t flags_ = 0;
  PyObject* owner_ = nullptr;
  std::string small_;
};

// Builds the Python value stored as data + flags. New reference or nullptr
// with an exception set. region names the store in error messages.
PyObject* Decode(ModuleState* m, std::string_view data, uint32_t flags,
                 const std::string& region);

}  // namespace regioncache::py
