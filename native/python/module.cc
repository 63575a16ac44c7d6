// The module regioncache._native: the Cache type (cache.cc), the exceptions,
// the blocking hooks that hand the GIL back while a store waits for a lock
// another process holds, and a few region-level functions.
#include <string>
#include <vector>

#include "python/glue.h"
#include "regioncache/blocking.h"
#include "regioncache/shm_store.h"

namespace regioncache::py {

PyObject* MakeCacheType(PyObject* module);

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
PyObject* Configure(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"default_timeout", "default_key_func", "key_warning"};
  PyObject* a[3];
  if (!ParseArgs("_configure", args, nargs, kwnames, names, 3, 3, a)) return nullptr;
  Py_XSETREF(g.default_timeout, Py_NewRef(a[0]));
  Py_XSETREF(g.default_key_func, Py_NewRef(a[1]));
  Py_XSETREF(g.key_warning, Py_NewRef(a[2]));
  Py_RETURN_NONE;
}

PyObject* ShmRegions(PyObject*, PyObject*) {
  std::vector<std::string> regions;
  Status s = ListShmRegions(&regions);
  if (!s.ok()) return RaiseStatus(s);
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

PyObject* RemoveShm(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  Status s = RemoveShmRegion(name);
  if (!s.ok()) return RaiseStatus(s);
  Py_RETURN_NONE;
}

PyObject* SegmentName(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  return PyUnicode_FromString(ShmSegmentName(name).c_str());
}

PyMethodDef kFunctions[] = {
    {"_configure", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Configure)),
     METH_FASTCALL | METH_KEYWORDS, "Hand Django's sentinels to the module (done by regioncache)."},
    {"shm_regions", ShmRegions, METH_NOARGS,
     "Names of this user's shared-memory regions (segments in /dev/shm)."},
    {"remove_shm_region", RemoveShm, METH_O,
     "Unlink a shared-memory region; processes that map it keep their copy until they reopen."},
    {"shm_segment_name", SegmentName, METH_O, "The POSIX shared-memory name of a region."},
    {nullptr, nullptr, 0, nullptr},
};

int Exec(PyObject* m) {
  PyObject* pickle = PyImport_ImportModule("pickle");
  if (!pickle) return -1;
  g.pickle_dumps = PyObject_GetAttrString(pickle, "dumps");
  g.pickle_loads = PyObject_GetAttrString(pickle, "loads");
  g.pickle_protocol = PyObject_GetAttrString(pickle, "HIGHEST_PROTOCOL");
  Py_DECREF(pickle);
  if (!g.pickle_dumps || !g.pickle_loads || !g.pickle_protocol) return -1;

  g.RegionError = PyErr_NewExceptionWithDoc(
      "regioncache._native.RegionError",
      "A cache region failed for a reason that is not the caller's (the message names the region).",
      nullptr, nullptr);
  if (!g.RegionError) return -1;
  g.ConfigError = PyErr_NewExceptionWithDoc(
      "regioncache._native.ConfigError",
      "A region's LOCATION or OPTIONS are wrong (the message names the region and the option).",
      g.RegionError, nullptr);
  if (!g.ConfigError) return -1;
  PyObject* bases = PyTuple_Pack(2, g.RegionError, PyExc_ValueError);
  if (!bases) return -1;
  g.ValueTooLargeError = PyErr_NewExceptionWithDoc(
      "regioncache._native.ValueTooLargeError",
      "A value (with its key) is larger than the region's MAX_ITEM_SIZE; nothing was stored.",
      bases, nullptr);
  Py_DECREF(bases);
  if (!g.ValueTooLargeError) return -1;
  if (PyModule_AddObjectRef(m, "RegionError", g.RegionError) < 0 ||
      PyModule_AddObjectRef(m, "ConfigError", g.ConfigError) < 0 ||
      PyModule_AddObjectRef(m, "ValueTooLargeError", g.ValueTooLargeError) < 0)
    return -1;

  PyObject* type = MakeCacheType(m);
  if (!type) return -1;
  if (PyModule_AddObject(m, "Cache", type) < 0) {
    Py_DECREF(type);
    return -1;
  }
  BlockingHooks hooks;
  hooks.before = BeforeBlocking;
  hooks.after = AfterBlocking;
  SetBlockingHooks(hooks);
  return 0;
}

PyModuleDef_Slot kSlots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(Exec)},
    {0, nullptr},
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT,
    "regioncache._native",
    "Native stores of regioncache and the Django cache contract on them.",
    0,
    kFunctions,
    kSlots,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace
}  // namespace regioncache::py

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&regioncache::py::kModule); }
