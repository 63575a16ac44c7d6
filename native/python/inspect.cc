// What the operators' tools ask of regioncache._native.Cache: stats,
// listing entries page by page, purging (expired, by glob, by full key).
// Long work, always without the GIL.
#include "python/cache.h"

#include <string>
#include <vector>

#include "regioncache/codec.h"

namespace regioncache::py {
namespace {

PyObject* MsToSeconds(int64_t ms) {
  if (ms == 0) Py_RETURN_NONE;
  return PyFloat_FromDouble(static_cast<double>(ms) / 1000.0);
}

}  // namespace

PyObject* Cache_stats(CacheObject* self, PyObject*) {
  if (!Ready(self)) return nullptr;
  Stats st;
  Status s = CallReleased(self, [&](Store* store) { return store->GetStats(&st); });
  if (!s.ok()) return RaiseStatus(self->mod, s);
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

// list_entries(cursor="", glob="", limit=1000, include_expired=False,
//              keys_only=False) -> (list of dicts, or of keys, next_cursor)
PyObject* Cache_list_entries(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"cursor", "glob", "limit", "include_expired", "keys_only"};
  PyObject* a[5];
  if (!ParseArgs("list_entries", args, nargs, kwnames, names, 5, 0, a)) return nullptr;
  bool keys_only = false;
  if (a[4]) {
    int t = PyObject_IsTrue(a[4]);
    if (t < 0) return nullptr;
    keys_only = t != 0;
  }
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
  if (!s.ok()) return RaiseStatus(self->mod, s);
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(page.entries.size()));
  if (!list) return nullptr;
  for (size_t i = 0; i < page.entries.size(); ++i) {
    const EntryInfo& e = page.entries[i];
    PyObject* key = PyUnicode_DecodeUTF8(e.key.data(), static_cast<Py_ssize_t>(e.key.size()), "replace");
    if (keys_only) {
      // The keys alone (keys(), iter_keys(), delete_pattern()): no dict
      // and no float objects per entry.
      if (!key) {
        Py_DECREF(list);
        return nullptr;
      }
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), key);
      continue;
    }
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
  if (!s.ok()) return RaiseStatus(self->mod, s);
  return PyLong_FromUnsignedLongLong(removed);
}

PyObject* Cache_purge(CacheObject* self, PyObject* arg) {
  if (!Ready(self)) return nullptr;
  const char* glob = PyUnicode_AsUTF8(arg);
  if (!glob) return nullptr;
  std::string g2 = glob;
  uint64_t removed = 0;
  Status s = CallReleased(self, [&](Store* st) { return st->PurgeMatching(g2, &removed); });
  if (!s.ok()) return RaiseStatus(self->mod, s);
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
  if (!s.ok()) return RaiseStatus(self->mod, s);
  return PyLong_FromUnsignedLongLong(deleted);
}

}  // namespace regioncache::py
