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

// A full key as the store holds it: text (UTF-8, undecodable bytes replaced:
// for people), or the exact bytes (raw: for tools that give it back).
PyObject* KeyObject(const std::string& k, bool raw) {
  if (raw) return PyBytes_FromStringAndSize(k.data(), static_cast<Py_ssize_t>(k.size()));
  return PyUnicode_DecodeUTF8(k.data(), static_cast<Py_ssize_t>(k.size()), "replace");
}

// A full key given back by a tool: str (as UTF-8) or bytes, exactly.
bool KeyArg(PyObject* o, std::string* out) {
  if (PyBytes_Check(o)) {
    out->assign(PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    return true;
  }
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o, &n);
  if (!s) return false;
  out->assign(s, static_cast<size_t>(n));
  return true;
}

bool TruthArg(PyObject* o, bool* out) {
  if (!o) return true;
  int t = PyObject_IsTrue(o);
  if (t < 0) return false;
  *out = t != 0;
  return true;
}

// The store's figures (cheap: GetCounters, what a scrape reads; else
// GetStats), or false with RegionError set.
bool ReadStats(CacheObject* self, bool cheap, Stats* st) {
  if (!Ready(self)) return false;
  Status s = CallReleased(self, [&](Store* store) {
    return cheap ? store->GetCounters(st) : store->GetStats(st);
  });
  if (s.ok()) return true;
  RaiseStatus(self->mod, s);
  return false;
}

// The figures every stats call gives: the counters, their scopes (a dict:
// field -> "region", "process" or "servers"), and the region's identity.
PyObject* StatsDict(CacheObject* self, const Stats& st) {
  std::string_view kind = self->st->store->kind();
  const char* contents = ScopeName(st.contents_scope);
  const char* counters = ScopeName(st.counters_scope);
  const char* events = ScopeName(st.events_scope);
  PyObject* scope = Py_BuildValue(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "entries", contents, "bytes_used", contents,
      "capacity", ScopeName(st.capacity_scope), "hits", counters, "misses", counters, "sets", counters,
      "evictions", counters, "expirations", counters, "errors", events, "stampede_waits", events);
  if (!scope) return nullptr;
  return Py_BuildValue(
      "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:s#,s:s,s:s}", "entries",
      (unsigned long long)st.entries, "bytes_used", (unsigned long long)st.bytes_used, "capacity",
      (unsigned long long)st.capacity, "hits", (unsigned long long)st.hits, "misses",
      (unsigned long long)st.misses, "sets", (unsigned long long)st.sets, "evictions",
      (unsigned long long)st.evictions, "expirations", (unsigned long long)st.expirations,
      "errors", (unsigned long long)st.errors, "stampede_waits", (unsigned long long)st.stampede_waits,
      "scope", scope, "kind", kind.data(), (Py_ssize_t)kind.size(), "location",
      self->st->store->location().c_str(), "region", self->st->store->region().c_str());
}

// StatsDict plus "extra" (the store's own figures, a list of (name, text)
// pairs in display order) and "servers" (each server's health, for a store
// spread over several; else empty).
PyObject* FullStatsDict(CacheObject* self, const Stats& st) {
  PyObject* d = StatsDict(self, st);
  PyObject* extra = PyList_New(0);
  PyObject* servers = PyList_New(0);
  bool ok = d && extra && servers;
  for (size_t i = 0; ok && i < st.extra.size(); ++i) {
    const auto& [k, v] = st.extra[i];
    PyObject* t = Py_BuildValue("(s#N)", k.data(), (Py_ssize_t)k.size(),
                                PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "replace"));
    ok = t && PyList_Append(extra, t) == 0;
    Py_XDECREF(t);
  }
  for (size_t i = 0; ok && i < st.servers.size(); ++i) {
    const ServerHealth& h = st.servers[i];
    PyObject* sd = Py_BuildValue(
        "{s:s#,s:O,s:O,s:N,s:K,s:K}", "address", h.address.data(), (Py_ssize_t)h.address.size(), "up",
        h.up ? Py_True : Py_False, "marked_failed", h.marked_failed ? Py_True : Py_False, "error",
        PyUnicode_DecodeUTF8(h.error.data(), static_cast<Py_ssize_t>(h.error.size()), "replace"),
        "entries", (unsigned long long)h.entries, "bytes_used", (unsigned long long)h.bytes_used);
    ok = sd && PyList_Append(servers, sd) == 0;
    Py_XDECREF(sd);
  }
  ok = ok && PyDict_SetItemString(d, "extra", extra) == 0 && PyDict_SetItemString(d, "servers", servers) == 0;
  Py_XDECREF(extra);
  Py_XDECREF(servers);
  if (!ok) Py_CLEAR(d);
  return d;
}

}  // namespace

PyObject* Cache_stats(CacheObject* self, PyObject*) {
  Stats st;
  if (!ReadStats(self, false, &st)) return nullptr;
  PyObject* d = StatsDict(self, st);
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
//              keys_only=False, raw_keys=False, with_scanned=False)
//   -> (list of dicts, or of keys, next_cursor[, scanned])
// raw_keys gives each key as the exact bytes the store holds (the agent,
// which hands keys back for deletes and reads); else as text.
PyObject* Cache_list_entries(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"cursor", "glob", "limit", "include_expired", "keys_only",
                                      "raw_keys", "with_scanned"};
  PyObject* a[7];
  if (!ParseArgs("list_entries", args, nargs, kwnames, names, 7, 0, a)) return nullptr;
  bool keys_only = false, raw_keys = false, with_scanned = false;
  if (!TruthArg(a[4], &keys_only) || !TruthArg(a[5], &raw_keys) || !TruthArg(a[6], &with_scanned))
    return nullptr;
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
    PyObject* key = KeyObject(e.key, raw_keys);
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
  if (with_scanned)
    return Py_BuildValue("(NsK)", list, page.next_cursor.c_str(), (unsigned long long)page.scanned);
  return Py_BuildValue("(Ns)", list, page.next_cursor.c_str());
}

PyObject* Cache_purge_expired(CacheObject* self, PyObject*) {
  if (!Ready(self)) return nullptr;
  uint64_t removed = 0;
  Status s = CallReleased(self, [&](Store* st) { return st->PurgeExpired(&removed); });
  if (!s.ok()) return RaiseStatus(self->mod, s);
  return PyLong_FromUnsignedLongLong(removed);
}

// purge(glob, progress=None) -> entries removed. progress, when given, is
// called now and then with the count removed so far (the GIL taken for it);
// a false answer cancels: the call then raises RegionError naming the count
// removed. An exception in progress cancels too and is raised.
PyObject* Cache_purge(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"glob", "progress"};
  PyObject* a[2];
  if (!ParseArgs("purge", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  const char* glob = PyUnicode_AsUTF8(a[0]);
  if (!glob) return nullptr;
  PyObject* cb = a[1] && a[1] != Py_None ? a[1] : nullptr;
  if (cb && !PyCallable_Check(cb)) {
    PyErr_SetString(PyExc_TypeError, "purge: progress must be callable");
    return nullptr;
  }
  if (!Ready(self)) return nullptr;
  std::string g2 = glob;
  uint64_t removed = 0;
  PyObject* raised = nullptr;  // an exception of the callback, kept past the released region
  Progress progress;
  if (cb) {
    progress = [&](uint64_t done) -> bool {
      PyGILState_STATE g = PyGILState_Ensure();
      bool go = false;
      PyObject* r = PyObject_CallFunction(cb, "K", (unsigned long long)done);
      if (r) {
        int t = PyObject_IsTrue(r);
        Py_DECREF(r);
        go = t > 0;
        if (t < 0) raised = TakeException();
      } else {
        raised = TakeException();
      }
      PyGILState_Release(g);
      return go;
    };
  }
  Status s = CallReleased(self, [&](Store* st) { return st->PurgeMatching(g2, &removed, progress); });
  if (raised) {
    RestoreException(raised);
    return nullptr;
  }
  if (!s.ok()) return RaiseStatus(self->mod, s);
  return PyLong_FromUnsignedLongLong(removed);
}

// _peek_raw(key, max_bytes=1048576) -> None (no live entry) or
// {data, size, flags, encoding, expires_ms, truncated}: the stored bytes as
// they are (never decoded, never unpickled), at most max_bytes of them.
// Reads without counting a hit (Store::Peek). key: a full key, str or bytes.
PyObject* Cache__peek_raw(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const names[] = {"key", "max_bytes"};
  PyObject* a[2];
  if (!ParseArgs("_peek_raw", args, nargs, kwnames, names, 2, 1, a)) return nullptr;
  std::string key;
  if (!KeyArg(a[0], &key)) return nullptr;
  long long cap = 1 << 20;
  if (a[1] && a[1] != Py_None) {
    cap = PyLong_AsLongLong(a[1]);
    if (cap == -1 && PyErr_Occurred()) return nullptr;
    if (cap < 0) {
      PyErr_SetString(PyExc_ValueError, "_peek_raw: max_bytes must be >= 0");
      return nullptr;
    }
  }
  if (!Ready(self)) return nullptr;
  Value v;
  Status s = CallReleased(self, [&](Store* st) { return st->Peek(key, &v); });
  if (s.IsNotFound()) Py_RETURN_NONE;
  if (!s.ok()) return RaiseStatus(self->mod, s);
  std::string_view b = v.bytes();
  const bool truncated = b.size() > static_cast<unsigned long long>(cap);
  if (truncated) b = b.substr(0, static_cast<size_t>(cap));
  return Py_BuildValue("{s:y#,s:K,s:I,s:s,s:L,s:O}", "data", b.data(), (Py_ssize_t)b.size(), "size",
                       (unsigned long long)v.bytes().size(), "flags", (unsigned int)v.flags,
                       "encoding", EncodingName(v.flags), "expires_ms", (long long)v.expires_ms,
                       "truncated", truncated ? Py_True : Py_False);
}

// _stats_full() -> stats() plus "extra" and "servers" (FullStatsDict): all
// the app shows.
PyObject* Cache__stats_full(CacheObject* self, PyObject*) {
  Stats st;
  return ReadStats(self, false, &st) ? FullStatsDict(self, st) : nullptr;
}

// _counters() -> as _stats_full, from Store::GetCounters: what a metrics
// scrape reads (nothing O(entries), no key dump; see each "scope").
PyObject* Cache__counters(CacheObject* self, PyObject*) {
  Stats st;
  return ReadStats(self, true, &st) ? FullStatsDict(self, st) : nullptr;
}

// _count_stampede_wait(): a caller of this region waited for another
// caller's computation (regioncache.stampede).
PyObject* Cache__count_stampede_wait(CacheObject* self, PyObject*) {
  CountEvent(self, Store::Event::kStampedeWait);
  Py_RETURN_NONE;
}

// delete_raw(full_keys) -> number deleted; keys exactly as list_entries
// shows them (str, or bytes as list_entries(raw_keys=True) gives them).
PyObject* Cache_delete_raw(CacheObject* self, PyObject* arg) {
  if (!Ready(self)) return nullptr;
  std::vector<std::string> keys;
  PyObject* it = PyObject_GetIter(arg);
  if (!it) return nullptr;
  PyObject* k;
  while ((k = PyIter_Next(it))) {
    std::string key;
    bool ok = KeyArg(k, &key);
    if (ok) keys.push_back(std::move(key));
    Py_DECREF(k);
    if (!ok) break;
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
