// The module regioncache._native: the Cache type (cache.cc), the exceptions,
// the blocking hooks that hand the GIL back while a store waits for a lock
// another process holds, and a few region-level functions.
#include <pthread.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "python/glue.h"
#include "regioncache/blocking.h"
#include "regioncache/log.h"
#include "regioncache/shm_store.h"

namespace regioncache::py {

PyObject* MakeCacheType(PyObject* module);
PyObject* KeyKind(PyObject* module, PyObject* full_key);  // django_keys_binding.cc

std::atomic<bool> g_log_pending{false};

namespace {

// ---- the log bridge ----------------------------------------------------------

struct LogLine {
  LogLevel level;
  std::string region, store, message;
};

constexpr size_t kMaxQueuedLines = 1024;  // beyond: counted, not kept

std::mutex g_log_mu;
std::vector<LogLine> g_log_queue;  // guarded by g_log_mu
uint64_t g_log_dropped = 0;        // guarded by g_log_mu
thread_local bool tl_draining = false;

// The sink: never takes the GIL, never blocks on anything but this short
// lock (held only to push or to swap the queue out).
void QueueLogLine(LogLevel level, std::string_view region, std::string_view store,
                  std::string_view message) {
  {
    std::lock_guard<std::mutex> lock(g_log_mu);
    if (g_log_queue.size() >= kMaxQueuedLines) {
      ++g_log_dropped;
    } else {
      g_log_queue.push_back(
          LogLine{level, std::string(region), std::string(store), std::string(message)});
    }
  }
  g_log_pending.store(true, std::memory_order_release);
}

// A fork while another thread held the queue's lock must not leave the child
// with a lock nobody will release.
void LockBeforeFork() { g_log_mu.lock(); }
void UnlockAfterFork() { g_log_mu.unlock(); }

PyObject* Text(std::string_view s) {
  return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
}

}  // namespace

void DrainLog(ModuleState* m) {
  if (tl_draining) return;  // a handler that uses a cache: its lines wait for the next call
  std::vector<LogLine> lines;
  uint64_t dropped;
  {
    std::lock_guard<std::mutex> lock(g_log_mu);
    lines.swap(g_log_queue);
    dropped = g_log_dropped;
    g_log_dropped = 0;
    g_log_pending.store(false, std::memory_order_relaxed);
  }
  if (!m->log_handler || (lines.empty() && !dropped)) return;
  tl_draining = true;
  // The caller's result or exception is kept as it is.
#if PY_VERSION_HEX >= 0x030C0000
  PyObject* saved = PyErr_GetRaisedException();
#else
  PyObject *et, *ev, *tb;
  PyErr_Fetch(&et, &ev, &tb);
#endif
  for (const LogLine& l : lines) {
    PyObject* region = Text(l.region);
    PyObject* store = Text(l.store);
    PyObject* message = Text(l.message);
    PyObject* r = region && store && message
                      ? PyObject_CallFunction(m->log_handler, "iOOOK", static_cast<int>(l.level),
                                              region, store, message, 0ULL)
                      : nullptr;
    Py_XDECREF(region);
    Py_XDECREF(store);
    Py_XDECREF(message);
    if (!r) PyErr_WriteUnraisable(m->log_handler);
    Py_XDECREF(r);
  }
  if (dropped) {
    PyObject* r = PyObject_CallFunction(m->log_handler, "isssK", static_cast<int>(LogLevel::kWarning),
                                        "", "", "", static_cast<unsigned long long>(dropped));
    if (!r) PyErr_WriteUnraisable(m->log_handler);
    Py_XDECREF(r);
  }
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(saved);
#else
  PyErr_Restore(et, ev, tb);
#endif
  tl_draining = false;
}

namespace {

// A store that waits for a lock calls these around the wait. They give the
// GIL back only if this thread holds it (a store called with the GIL
// released must not take it).
thread_local PyThreadState* tl_saved = nullptr;

void BeforeBlocking() {
  if (!tl_saved && PyGILState_Check()) tl_saved = PyEval_SaveThread();
}

void AfterBlocking() {
  if (tl_saved) {
    PyThreadState* t = tl_saved;
    tl_saved = nullptr;
    PyEval_RestoreThread(t);
  }
}

// _configure(default_timeout, default_key_func, key_warning): Django's
// DEFAULT_TIMEOUT sentinel, default_key_func and CacheKeyWarning, handed in
// by the Python package so this module does not import Django itself.
PyObject* Configure(PyObject* module, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"default_timeout", "default_key_func", "key_warning"};
  PyObject* a[3];
  if (!ParseArgs("_configure", args, nargs, kwnames, names, 3, 3, a)) return nullptr;
  ModuleState* m = StateOf(module);
  Py_XSETREF(m->default_timeout, Py_NewRef(a[0]));
  Py_XSETREF(m->default_key_func, Py_NewRef(a[1]));
  Py_XSETREF(m->key_warning, Py_NewRef(a[2]));
  Py_RETURN_NONE;
}

// _set_log_handler(emit): emit(level, region, store, message, dropped) gets
// every line the stores and the module log (dropped > 0: a line saying that
// many were dropped because the queue was full). None: lines are dropped.
PyObject* SetLogHandler(PyObject* module, PyObject* handler) {
  if (handler != Py_None && !PyCallable_Check(handler)) {
    PyErr_SetString(PyExc_TypeError, "_set_log_handler: a callable or None");
    return nullptr;
  }
  Py_XSETREF(StateOf(module)->log_handler, handler == Py_None ? nullptr : Py_NewRef(handler));
  Py_RETURN_NONE;
}

// _drain_log(): hands queued lines to the handler now (tests, atexit).
PyObject* DrainLogNow(PyObject* module, PyObject*) {
  DrainLog(StateOf(module));
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_NONE;
}

// _log_for_test(region, store, message, threads=0, n=1): a line through
// regioncache::Log, as a store would send it; with threads > 0, n lines from
// each of that many native threads, while this one waits without the GIL.
PyObject* LogForTest(PyObject*, PyObject* args) {
  const char *region, *store, *message;
  int threads = 0, n = 1;
  if (!PyArg_ParseTuple(args, "sss|ii", &region, &store, &message, &threads, &n)) return nullptr;
  if (threads <= 0) {
    Log(LogLevel::kWarning, region, store, message);
    Py_RETURN_NONE;
  }
  std::string r = region, k = store, m = message;
  Py_BEGIN_ALLOW_THREADS
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < n; ++i)
        Log(LogLevel::kWarning, r, k, m + " " + std::to_string(t) + "." + std::to_string(i));
    });
  for (auto& th : pool) th.join();
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

PyObject* ShmRegions(PyObject* module, PyObject*) {
  std::vector<std::string> regions;
  Status s = ListShmRegions(&regions);
  if (!s.ok()) return RaiseStatus(StateOf(module), s);
  PyObject* list = PyList_New(0);
  if (!list) return nullptr;
  for (const auto& r : regions) {
    PyObject* n = PyUnicode_DecodeUTF8(r.data(), static_cast<Py_ssize_t>(r.size()), "replace");
    if (!n || PyList_Append(list, n) < 0) {
      Py_XDECREF(n);
      Py_DECREF(list);
      return nullptr;
    }
    Py_DECREF(n);
  }
  if (PyList_Sort(list) < 0) {
    Py_DECREF(list);
    return nullptr;
  }
  return list;
}

PyObject* RemoveShm(PyObject* module, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  Status s = RemoveShmRegion(name);
  if (!s.ok()) return RaiseStatus(StateOf(module), s);
  Py_RETURN_NONE;
}

PyObject* SegmentName(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  return PyUnicode_FromString(ShmSegmentName(name).c_str());
}

}  // namespace
extern PyMethodDef kPickleTreeFunctions[];  // pickle_tree.cc: read_pickle, read_page
namespace {

PyMethodDef kFunctions[] = {
    {"_configure", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Configure)),
     METH_FASTCALL | METH_KEYWORDS, "Hand Django's sentinels to the module (done by regioncache)."},
    {"_set_log_handler", SetLogHandler, METH_O, "Where the native log lines go (regioncache._log)."},
    {"_drain_log", DrainLogNow, METH_NOARGS, "Hand queued native log lines to the handler now."},
    {"_log_for_test", LogForTest, METH_VARARGS, "Log one line as a store would (tests)."},
    {"shm_regions", ShmRegions, METH_NOARGS,
     "Names of this user's shared-memory regions (segments in /dev/shm)."},
    {"remove_shm_region", RemoveShm, METH_O,
     "Unlink a shared-memory region; processes that map it keep their copy until they reopen."},
    {"shm_segment_name", SegmentName, METH_O, "The POSIX shared-memory name of a region."},
    {"key_kind", KeyKind, METH_O, "What a full stored key is to Django: a dict (django_keys_binding.cc)."},
    {nullptr, nullptr, 0, nullptr},
};

int Exec(PyObject* module) {
  ModuleState* m = StateOf(module);
  PyObject* pickle = PyImport_ImportModule("pickle");
  if (!pickle) return -1;
  m->pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
  m->pickle_loads = PyObject_GetAttrString(pickle, "loads");
  m->pickle_protocol = PyObject_GetAttrString(pickle, "HIGHEST_PROTOCOL");
  Py_DECREF(pickle);
  if (!m->pickle_dumps || !m->pickle_loads || !m->pickle_protocol) return -1;
  if (PyModule_AddFunctions(module, kPickleTreeFunctions) < 0) return -1;

  m->RegionError = PyErr_NewExceptionWithDoc(
      "regioncache._native.RegionError",
      "A cache region failed for a reason that is not the caller's (the message names the region).",
      nullptr, nullptr);
  if (!m->RegionError) return -1;
  m->ConfigError = PyErr_NewExceptionWithDoc(
      "regioncache._native.ConfigError",
      "A region's LOCATION or OPTIONS are wrong (the message names the region and the option).",
      m->RegionError, nullptr);
  if (!m->ConfigError) return -1;
  PyObject* bases = PyTuple_Pack(2, m->RegionError, PyExc_ValueError);
  if (!bases) return -1;
  m->ValueTooLargeError = PyErr_NewExceptionWithDoc(
      "regioncache._native.ValueTooLargeError",
      "A value (with its key) is larger than the region's MAX_ITEM_SIZE; nothing was stored.",
      bases, nullptr);
  Py_DECREF(bases);
  if (!m->ValueTooLargeError) return -1;
  if (PyModule_AddObjectRef(module, "RegionError", m->RegionError) < 0 ||
      PyModule_AddObjectRef(module, "ConfigError", m->ConfigError) < 0 ||
      PyModule_AddObjectRef(module, "ValueTooLargeError", m->ValueTooLargeError) < 0)
    return -1;

  PyObject* type = MakeCacheType(module);
  if (!type) return -1;
  if (PyModule_AddObject(module, "Cache", type) < 0) {
    Py_DECREF(type);
    return -1;
  }
  BlockingHooks hooks;
  hooks.before = BeforeBlocking;
  hooks.after = AfterBlocking;
  SetBlockingHooks(hooks);
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(LockBeforeFork, UnlockAfterFork, UnlockAfterFork); });
  SetLogSink(QueueLogLine);
  return 0;
}

// Every object the state holds, for the GC slots below.
constexpr PyObject* ModuleState::*kStateObjects[] = {
    &ModuleState::pickle_dumps,     &ModuleState::pickle_loads,     &ModuleState::pickle_protocol,
    &ModuleState::default_timeout,  &ModuleState::default_key_func, &ModuleState::key_warning,
    &ModuleState::RegionError,      &ModuleState::ConfigError,      &ModuleState::ValueTooLargeError,
    &ModuleState::log_handler,      &ModuleState::method_type,      &ModuleState::bound_type,
};

int Traverse(PyObject* module, visitproc visit, void* arg) {
  ModuleState* m = StateOf(module);
  if (m)
    for (auto field : kStateObjects) Py_VISIT(m->*field);
  return 0;
}

int Clear(PyObject* module) {
  ModuleState* m = StateOf(module);
  if (m)
    for (auto field : kStateObjects) Py_CLEAR(m->*field);
  return 0;
}

void Free(void* module) { Clear(static_cast<PyObject*>(module)); }

PyModuleDef_Slot kSlots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(Exec)},
    {0, nullptr},
};

}  // namespace

PyModuleDef kModuleDef = {
    PyModuleDef_HEAD_INIT,
    "regioncache._native",
    "Native stores of regioncache and the Django cache contract on them.",
    sizeof(ModuleState),
    kFunctions,
    kSlots,
    Traverse,
    Clear,
    Free,
};

}  // namespace regioncache::py

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&regioncache::py::kModuleDef); }
