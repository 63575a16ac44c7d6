// Bytes lent between regioncache._native.Cache and its store: the bytes
// objects a file store reads into (ReadTarget), and the values read and
// written through them (signed, checked, decoded without a copy where the
// bytes are ours). The per-thread read buffers are in cache.cc.
#include "python/cache.h"

#include <string>

#include "regioncache/codec.h"

namespace regioncache::py {
namespace {

// Decode for a value that arrived in a bytes object of its own: bytes are
// returned as they are and pickles loaded from it, without another copy.
PyObject* DecodeOwned(ModuleState* m, PyObject* bytes, uint32_t flags, const std::string& region) {
  if (!bytes) return nullptr;
  if (!(flags & ~kKnownFlags)) {
    if (Encoding(flags) == kEncBytes) return bytes;
    if (Encoding(flags) == kEncPickle) {
      PyObject* r = PyObject_CallOneArg(m->pickle_loads, bytes);
      Py_DECREF(bytes);
      return r;
    }
  }
  PyObject* r = Decode(m, std::string_view(PyBytes_AS_STRING(bytes),
                                        static_cast<size_t>(PyBytes_GET_SIZE(bytes))),
                       flags, region);
  Py_DECREF(bytes);
  return r;
}

}  // namespace

// ---- bytes lent to a store ------------------------------------------------------

BytesTarget::BytesTarget(size_t first) {
  first_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(first));
  if (!first_) PyErr_Clear();  // then the store reads into Value::data
}

BytesTarget::~BytesTarget() {
  Py_XDECREF(first_);
  Py_XDECREF(whole_);
}

std::span<char> BytesTarget::First() {
  if (!first_) return {};
  return {PyBytes_AS_STRING(first_), static_cast<size_t>(PyBytes_GET_SIZE(first_))};
}

char* BytesTarget::Whole(size_t n) {
  PyGILState_STATE gs = PyGILState_Ensure();
  Py_CLEAR(whole_);
  whole_ = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
  if (!whole_) PyErr_Clear();  // too large for memory: the store says so
  PyGILState_Release(gs);
  return whole_ ? PyBytes_AS_STRING(whole_) : nullptr;
}

PyObject* BytesTarget::Take(const Value& v) {
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

// ---- values ----------------------------------------------------------------------

// Encodes a value for key; signs it if the region has a SIGNING_KEY. Exact
// ints stay plain decimal text, unsigned, so the stores' in-place incr keeps
// working (README, "Signed values").
bool EncodeFor(CacheObject* self, std::string_view key, PyObject* value, Encoded* e) {
  if (!e->Encode(self->mod, value)) return false;
  if (self->st->signer && Encoding(e->flags()) != kEncInt)
    return e->Sign(self->mod, self->st->signer.get(), key, RegionName(self));
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
  PyObject* r = owned ? DecodeOwned(self->mod, owned, flags, RegionName(self))
                      : Decode(self->mod, data, flags, RegionName(self));
  if (r || !PyErr_ExceptionMatches(PyExc_Exception)) return r;
  return Undecodable(self, key, {});
}

}  // namespace regioncache::py
