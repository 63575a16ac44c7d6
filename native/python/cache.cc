// regioncache._native.Cache: Django's BaseCache contract implemented on a
// regioncache Store (get, set, add, touch, delete, has_key, incr/decr, the
// *_many calls, clear, close). The type itself is in cache_type.cc, the
// shared pieces in cache.h.
#include "python/cache.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "regioncache/codec.h"

namespace regioncache::py {
namespace {

// ---- per-thread read buffers ------------------------------------------------------

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
  BorrowedValue(const BorrowedValue&) = delete;
  BorrowedValue& operator=(const BorrowedValue&) = delete;
  Value* get() { return v_; }

 private:
  Value* v_;
  std::unique_ptr<Value> own_;
};

// get_many's key and value vectors, kept per thread between calls so their
// strings keep their capacity: after the first call, 100 keys and values
// cost no allocation. A nested call gets fresh ones; large buffers are not
// kept (as for ReadBuffer).
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
  BorrowedMany(const BorrowedMany&) = delete;
  BorrowedMany& operator=(const BorrowedMany&) = delete;
  std::vector<MadeKey>& made() { return b_->made; }
  std::vector<Value>& values() { return b_->values; }

 private:
  ManyBuffers* b_;
  std::unique_ptr<ManyBuffers> own_;
};

// ---- the opening of a single-key call ------------------------------------------

// A single-key method: its name (in messages and TypeErrors), what it
// answers when the failure policy swallows a failure, its arguments by name
// (the key first) and where the value, the timeout and the version are
// among them (-1: not taken).
struct Op {
  const char* name;
  const char* outcome;
  const char* const* args;
  int nargs, required;
  int value, timeout, version;
};

constexpr const char* kKeyDefault[] = {"key", "default", "version"};
constexpr const char* kKeyValue[] = {"key", "value", "timeout", "version"};
constexpr const char* kKeyTimeout[] = {"key", "timeout", "version"};
constexpr const char* kKeyOnly[] = {"key", "version"};
constexpr Op kGet{"get", "a miss", kKeyDefault, 3, 1, -1, -1, 2};
constexpr Op kSet{"set", "returned False", kKeyValue, 4, 2, 1, 2, 3};
constexpr Op kAdd{"add", "returned False", kKeyValue, 4, 2, 1, 2, 3};
constexpr Op kTouch{"touch", "returned False", kKeyTimeout, 3, 1, -1, 1, 2};
constexpr Op kDelete{"delete", "returned False", kKeyOnly, 2, 1, -1, -1, 1};
constexpr Op kHasKey{"has_key", "returned False", kKeyOnly, 2, 1, -1, -1, 1};
constexpr const char* kKeyExpectedValue[] = {"key", "expected", "value", "timeout", "version"};
constexpr const char* kKeyExpected[] = {"key", "expected", "version"};
constexpr Op kExpiry{"_expiry", "a miss", kKeyOnly, 2, 1, -1, -1, 1};
constexpr Op kSwap{"_swap", "returned False", kKeyExpectedValue, 5, 3, 2, 3, 4};
constexpr Op kDeleteIf{"_delete_if", "returned False", kKeyExpected, 3, 2, 1, -1, 2};

// What every single-key method does before it reaches the store, in this
// order: the arguments parsed, the store opened (else the failure policy),
// the key made and validated, the value encoded (and signed), the timeout
// turned into an expiry. Prepare() false: return Early(what the method
// answers on a failure the policy swallows).
class KeyCall {
 public:
  explicit KeyCall(const Op& op) : op_(op) {}

  bool Prepare(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    self_ = self;
    if (!ParseArgs(op_.name, args, nargs, kwnames, op_.args, op_.nargs, op_.required, arg))
      return false;
    if (!Opened(self, op_.name, op_.outcome)) return false;
    if (!MakeKey(self, arg[0], arg[op_.version], &made_)) return false;
    if (op_.value >= 0 && !EncodeFor(self, key(), arg[op_.value], &value)) return false;
    if (op_.timeout >= 0) {
      expiry = ComputeExpiry(self, arg[op_.timeout], &expires_ms);
      if (expiry == Expiry::kError) return false;
    }
    return true;
  }

  // After a false Prepare(): nullptr with the exception, or miss.
  static PyObject* Early(PyObject* miss) { return PyErr_Occurred() ? nullptr : Py_NewRef(miss); }

  // A store call's answer: True when it did it, False when the key was
  // not there (absent), else the failure policy's False or its exception.
  PyObject* Answer(const Status& s, bool absent) {
    if (s.ok()) Py_RETURN_TRUE;
    if (absent) Py_RETURN_FALSE;
    return Failed(s, Py_False);
  }
  // A failed store call: miss if the policy swallows it, else nullptr with
  // the exception set.
  PyObject* Failed(const Status& s, PyObject* miss) {
    if (!Swallow(self_, op_.name, s, op_.outcome)) return nullptr;
    return Py_NewRef(miss);
  }

  std::string_view key() const { return made_.view(); }

  PyObject* arg[5];
  Encoded value;
  int64_t expires_ms = 0;
  Expiry expiry = Expiry::kAt;

 private:
  const Op& op_;
  CacheObject* self_ = nullptr;
  MadeKey made_;
};

}  // namespace

PyObject* Cache_get(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kGet);
  PyObject*& dflt = c.arg[1];
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(dflt ? dflt : Py_None);
  BorrowedValue v;
  std::optional<BytesTarget> target;
  if (self->st->first_read) {
    target.emplace(self->st->first_read);
    v.get()->target = &*target;
  }
  Status s = Call(self, [&](Store* st) { return st->Get(c.key(), v.get()); });
  v.get()->target = nullptr;
  // A server that is down or slow is a miss, as in Django's memcached
  // backends; so is a damaged entry or any other failure of the medium.
  if (s.IsNotFound()) return Py_NewRef(dflt ? dflt : Py_None);
  if (!s.ok()) return c.Failed(s, dflt ? dflt : Py_None);
  PyObject* r;
  if (v.get()->at) {
    PyObject* owned = target->Take(*v.get());
    if (!owned) return nullptr;
    r = ReadValue(self, c.key(), {}, v.get()->flags, owned);
  } else {
    r = ReadValue(self, c.key(), v.get()->data, v.get()->flags, nullptr);
  }
  if (!r && !PyErr_Occurred()) return Py_NewRef(dflt ? dflt : Py_None);
  return r;
}

PyObject* Cache_set(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kSet);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Status s;
  if (c.expiry == Expiry::kNow) {
    s = Call(self, [&](Store* st) { return st->Delete(c.key()); });
    if (s.IsNotFound()) s = Status::OK();
  } else {
    s = Call(self, [&](Store* st) {
      return st->Set(c.key(), c.value.data(), c.value.flags(), c.expires_ms);
    });
    if (s.IsTooLarge()) {
      // The caller asked for the new value; the old one must not be served
      // in its place (cached_db sessions rely on this, as with memcached).
      Call(self, [&](Store* st) { return st->Delete(c.key()); });
    }
  }
  if (!s.ok()) return c.Failed(s, Py_False);  // Django's "not stored"
  Py_RETURN_NONE;
}

PyObject* Cache_add(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kAdd);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Status s;
  if (c.expiry == Expiry::kNow) {
    // Django adds an already-expired entry when none is live: the add
    // succeeds and nothing can be read back.
    BorrowedValue v;
    s = Call(self, [&](Store* st) { return st->Peek(c.key(), v.get()); });
    if (s.ok()) Py_RETURN_FALSE;
    if (s.IsNotFound()) Py_RETURN_TRUE;
    return c.Failed(s, Py_False);
  }
  s = Call(self, [&](Store* st) {
    return st->Add(c.key(), c.value.data(), c.value.flags(), c.expires_ms);
  });
  return c.Answer(s, s.IsNotStored());
}

PyObject* Cache_touch(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kTouch);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Status s = c.expiry == Expiry::kNow
                 ? Call(self, [&](Store* st) { return st->Delete(c.key()); })
                 : Call(self, [&](Store* st) { return st->Touch(c.key(), c.expires_ms); });
  return c.Answer(s, s.IsNotFound());
}

PyObject* Cache_delete(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kDelete);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Status s = Call(self, [&](Store* st) { return st->Delete(c.key()); });
  return c.Answer(s, s.IsNotFound());
}

PyObject* Cache_has_key(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kHasKey);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  BorrowedValue v;
  Status s = Call(self, [&](Store* st) { return st->Peek(c.key(), v.get()); });
  return c.Answer(s, s.IsNotFound());
}

// -2: no live entry (or a failure the policy swallows), -1: it never
// expires, else its expiry in epoch milliseconds. Neither a hit nor a use.
PyObject* Cache__expiry(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kExpiry);
  PyObject* missing = PyLong_FromLong(-2);
  if (!missing) return nullptr;
  if (!c.Prepare(self, args, nargs, kwnames)) {
    PyObject* r = c.Early(missing);
    Py_DECREF(missing);
    return r;
  }
  BorrowedValue v;
  Status s = Call(self, [&](Store* st) { return st->Peek(c.key(), v.get()); });
  if (!s.ok()) {
    PyObject* r = s.IsNotFound() ? Py_NewRef(missing) : c.Failed(s, missing);
    Py_DECREF(missing);
    return r;
  }
  Py_DECREF(missing);
  int64_t exp = v.get()->expires_ms;
  return PyLong_FromLongLong(exp == kNever ? -1 : exp);
}

namespace {

// The expected value as stored: encoded (and signed) as set() would have.
bool EncodeExpected(CacheObject* self, const KeyCall& c, PyObject* expected, Encoded* e) {
  return EncodeFor(self, c.key(), expected, e);
}

}  // namespace

// Replaces the live value `expected` with `value` (timeout as set's), in one
// step against every other writer: True if it did, False if the key holds
// something else or nothing.
PyObject* Cache__swap(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kSwap);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Encoded expected;
  if (!EncodeExpected(self, c, c.arg[1], &expected)) return nullptr;
  Status s;
  if (c.expiry == Expiry::kNow) {
    s = Call(self, [&](Store* st) {
      return st->CompareAndSwap(c.key(), expected.data(), expected.flags(), nullptr);
    });
  } else {
    WriteItem with{c.key(), c.value.data(), c.value.flags(), c.expires_ms};
    s = Call(self, [&](Store* st) {
      return st->CompareAndSwap(c.key(), expected.data(), expected.flags(), &with);
    });
  }
  return c.Answer(s, s.IsNotFound() || s.IsNotStored());
}

// Deletes the entry if it holds `expected`, in one step against every other
// writer: True if it did.
PyObject* Cache__delete_if(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  KeyCall c(kDeleteIf);
  if (!c.Prepare(self, args, nargs, kwnames)) return c.Early(Py_False);
  Status s = Call(self, [&](Store* st) {
    return st->CompareAndSwap(c.key(), c.value.data(), c.value.flags(), nullptr);
  });
  return c.Answer(s, s.IsNotFound() || s.IsNotStored());
}

namespace {

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

bool IsMissing(CacheObject* self, const MadeKey& k);
PyObject* IncrOnce(CacheObject* self, const MadeKey& k, PyObject* delta, bool native, long long d,
                   const char* fname);

// incr(..., ignore_key_check=True) of a missing key: the key is added with
// delta and no expiry (as django-redis's INCRBY makes it). nullptr with
// NotFound's ValueError when another caller added it first: incr again.
PyObject* StartAt(CacheObject* self, const MadeKey& k, PyObject* delta, const char* fname,
                  bool* again) {
  *again = false;
  Encoded e;
  if (!EncodeFor(self, k.view(), delta, &e)) return nullptr;
  Status s = Call(self, [&](Store* st) { return st->Add(k.view(), e.data(), e.flags(), kNever); });
  if (s.ok()) return Py_NewRef(delta);
  if (s.IsNotStored()) {
    *again = true;
    return nullptr;
  }
  if (Swallow(self, fname, s, "raised ValueError")) NotFoundError(k);
  return nullptr;
}

PyObject* DoIncr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                 const char* fname, bool negate) {
  static const char* const names[] = {"key", "delta", "version", "ignore_key_check"};
  PyObject* a[4];
  // decr takes no ignore_key_check (nor does django-redis's).
  if (!ParseArgs(fname, args, nargs, kwnames, names, negate ? 3 : 4, 1, a)) return nullptr;
  bool start = false;
  if (!negate && a[3]) {
    int t = PyObject_IsTrue(a[3]);
    if (t < 0) return nullptr;
    start = t;
  }
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
  // A missing key with ignore_key_check: added at delta; if another caller
  // added it between our incr and our add (or our look), incremented after
  // all (a few rounds at most).
  for (int round = 0; start && round < 3; ++round) {
    result = IncrOnce(self, k, delta, native, d, fname);
    if (result || !PyErr_ExceptionMatches(PyExc_ValueError)) break;
    PyErr_Clear();
    if (!IsMissing(self, k)) continue;  // there now: incr again
    bool again = false;
    result = StartAt(self, k, delta, fname, &again);
    if (result || !again) break;
  }
  // Three rounds lost to other callers' adds and deletes (or a failing
  // store): one last incr answers (the sum, or the ValueError).
  if (start && !result && !PyErr_Occurred()) result = IncrOnce(self, k, delta, native, d, fname);
  if (start) {
    Py_DECREF(delta);
    return result;
  }
  result = IncrOnce(self, k, delta, native, d, fname);
  Py_DECREF(delta);
  return result;
}

// True if key has no live entry now (a ValueError of incr can also be the
// failure policy's answer, or a value that is not a number).
bool IsMissing(CacheObject* self, const MadeKey& k) {
  BorrowedValue v;
  Status s = Call(self, [&](Store* st) { return st->Peek(k.view(), v.get()); });
  return s.IsNotFound();
}

PyObject* IncrOnce(CacheObject* self, const MadeKey& k, PyObject* delta, bool native, long long d,
                   const char* fname) {
  PyObject* result = nullptr;
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
  return result;
}

}  // namespace

PyObject* Cache_incr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return DoIncr(self, args, nargs, kwnames, "incr", false);
}
PyObject* Cache_decr(CacheObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return DoIncr(self, args, nargs, kwnames, "decr", true);
}

namespace {

void DecRefAll(std::vector<PyObject*>* objs) {
  for (PyObject* o : *objs) Py_DECREF(o);
  objs->clear();
}

}  // namespace

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
  if (!failed.empty() && s.ok()) CountEvent(self, Store::Event::kError, failed.size());
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

}  // namespace regioncache::py
