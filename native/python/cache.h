// Private header of regioncache._native.Cache, shared by the files that
// implement it:
//   call.cc         how a call reaches its store: opening on demand, the
//                   failure policy, undecodable values (the GIL policy,
//                   Call/CallReleased, is here, inline)
//   django_rules.cc Django's key and timeout rules (make_key, validate_key,
//                   get_backend_timeout)
//   lending.cc      bytes lent to the stores, decoding and signing of values
//   cache.cc        the cache contract (get, set, add, ..., clear) and its
//                   per-thread read buffers (beside the calls that use them,
//                   so the hot path inlines them)
//   inspect.cc      stats, listing and purging
//   cache_type.cc   the type: slots, descriptors, _open, the method table
#pragma once

#include "python/glue.h"

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "python/signing.h"
#include "regioncache/store.h"

namespace regioncache::py {

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
  // Events counted while the store was not open (Store::Event order),
  // handed to it when it opens. Last: off the hot path's lines.
  uint64_t pending_events[2] = {0, 0};
};

struct CacheObject {
  PyObject_HEAD
  CacheState* st;
  // The state of the module that made the type (glue.h), taken once in
  // tp_new: the hot path reads pickle's functions and Django's sentinels
  // from it without a PyType_GetModuleByDef walk per call. The type holds
  // the module, so the state outlives the object.
  ModuleState* mod;
  PyObject* key_prefix;       // as set (normally str)
  PyObject* version;          // as set (normally int)
  PyObject* key_func;         // as set
  PyObject* default_timeout;  // as set: None or a number
  bool native_key_func;       // key_func is Django's default_key_func
};

// ---- GIL handling ----------------------------------------------------------

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

// Runs fn without the GIL for stores that block on I/O; stores that only
// block on a contended lock keep the GIL and release it through the blocking
// hooks (module.cc) only while they wait.
template <typename Fn>
Status Call(CacheObject* self, Fn&& fn) {
  if (!self->st->may_block) return fn(self->st->store.get());
  return CallReleased(self, fn);
}

// ---- call.cc: opening and the failure policy --------------------------------

const std::string& RegionName(CacheObject* self);
// Opens the store now if the first open failed (at most once a second).
// The failed open's Status otherwise.
Status TryOpen(CacheObject* self);
// For the inspection calls: the store, or RegionError.
bool Ready(CacheObject* self);
void LogWarning(CacheObject* self, const std::string& message);
// A Status's message without the "region 'x': " its log line has already.
std::string CauseText(CacheObject* self, const Status& s);
// For a failed Status: true if the policy swallows it (logged; the caller
// answers with its miss/False), false with the exception set otherwise.
// outcome says what the caller answers ("a miss", "returned False").
bool Swallow(CacheObject* self, const char* op, const Status& s, const char* outcome);
// The store for a cache call: true if open; false if not, with the failure
// policy applied (swallowed: logged, no exception, the caller answers its
// miss/False; or the exception set). Inline: every call passes here.
bool OpenOrAnswer(CacheObject* self, const char* op, const char* outcome);
inline bool Opened(CacheObject* self, const char* op, const char* outcome) {
  return self->st->store != nullptr || OpenOrAnswer(self, op, outcome);
}
// Counts n events in the region's store (its counters every process sees,
// for shm and file); held until the store opens if it is not open yet.
void CountEvent(CacheObject* self, Store::Event e, uint64_t n = 1);
// A stored value that cannot be turned back into a Python object; see call.cc.
PyObject* Undecodable(CacheObject* self, std::string_view key, std::string why);

// ---- django_rules.cc: keys and timeouts --------------------------------------

// A made key: "<prefix>:<version>:<key>" as UTF-8, with its length in
// characters (Django's length rule counts characters).
struct MadeKey {
  std::string bytes;
  Py_ssize_t chars = 0;
  std::string_view view() const { return bytes; }
};

bool RebuildPrefix(CacheObject* self);
// make_and_validate_key(key, version): the default key function natively,
// a custom KEY_FUNCTION called as Django calls it.
bool MakeKey(CacheObject* self, PyObject* key, PyObject* version, MadeKey* out);
// Collects (original key, made key) pairs from any iterable of keys.
bool MakeKeys(CacheObject* self, PyObject* keys, PyObject* version, std::vector<PyObject*>* orig,
              std::vector<MadeKey>* made);
PyObject* MadeKeyStr(const MadeKey& k);

enum class Expiry { kAt, kNow, kError };
// Django's get_backend_timeout: DEFAULT_TIMEOUT -> the cache's default, None
// -> never, 0 or negative -> already expired.
Expiry ComputeExpiry(CacheObject* self, PyObject* timeout, int64_t* expires_ms);

// ---- lending.cc: lent bytes and values --------------------------------------------

// Lends the buffers of new bytes objects to a store that reads from files
// (ReadTarget), so that a value lands in the object get() returns: no copy
// between the kernel's and the caller's. Made and destroyed with the GIL.
class BytesTarget final : public ReadTarget {
 public:
  explicit BytesTarget(size_t first);
  ~BytesTarget() override;
  BytesTarget(const BytesTarget&) = delete;
  BytesTarget& operator=(const BytesTarget&) = delete;

  std::span<char> First() override;
  // Called from the store without the GIL (the file store's reads release it).
  char* Whole(size_t n) override;
  // The bytes object that holds v's value (v.at), cut to its length: a new
  // reference, or nullptr with an exception set.
  PyObject* Take(const Value& v);

 private:
  PyObject* first_ = nullptr;
  PyObject* whole_ = nullptr;
};

// Encodes a value for key; signs it if the region has a SIGNING_KEY.
bool EncodeFor(CacheObject* self, std::string_view key, PyObject* value, Encoded* e);
// A stored value as a Python object (signature checked, then decoded); see
// lending.cc for who owns what.
PyObject* ReadValue(CacheObject* self, std::string_view key, std::string_view data, uint32_t flags,
                    PyObject* owned);

// ---- cache.cc: the contract -----------------------------------------------------

PyObject* Cache_get(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_set(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_add(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_touch(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_delete(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_has_key(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache__expiry(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache__swap(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache__delete_if(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_incr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_decr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_get_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_set_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_delete_many(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_clear_all(CacheObject* self, PyObject*);
PyObject* Cache_close(CacheObject*, PyObject*, PyObject*);

// ---- inspect.cc ------------------------------------------------------------------

// The pending exception, normalized (new reference), or nullptr; cleared.
// RestoreException steals it back as the pending one. Any Python version.
PyObject* TakeException();
void RestoreException(PyObject* v);

PyObject* Cache_stats(CacheObject* self, PyObject*);
PyObject* Cache_list_entries(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache_purge_expired(CacheObject* self, PyObject*);
PyObject* Cache_purge(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache__peek_raw(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames);
PyObject* Cache__stats_full(CacheObject* self, PyObject*);
PyObject* Cache__counters(CacheObject* self, PyObject*);
PyObject* Cache__count_stampede_wait(CacheObject* self, PyObject*);
PyObject* Cache_delete_raw(CacheObject* self, PyObject* arg);

}  // namespace regioncache::py
