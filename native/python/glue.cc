#include "python/glue.h"

#include <cstring>

#include "python/signing.h"
#include "regioncache/codec.h"

namespace regioncache::py {

ModuleState* StateOfType(PyTypeObject* type) {
  PyObject* module = PyType_GetModuleByDef(type, &kModuleDef);
  return module ? StateOf(module) : nullptr;
}

PyObject* RaiseStatus(ModuleState* m, const Status& s) {
  PyObject* type = m->RegionError;
  switch (s.code()) {
    case Status::Code::kTooLarge:
      type = m->ValueTooLargeError;
      break;
    case Status::Code::kInvalidArgument:
      type = m->ConfigError;
      break;
    default:
      break;
  }
  std::string msg = s.message().empty() ? s.ToString() : s.message();
  PyErr_SetString(type, msg.c_str());
  return nullptr;
}

bool ParseArgs(const char* fname, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
               const char* const* names, int nnames, int nrequired, PyObject** out) {
  for (int i = 0; i < nnames; ++i) out[i] = nullptr;
  if (nargs > nnames) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, nnames,
                 nargs);
    return false;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  if (kwnames) {
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; ++k) {
      PyObject* name = PyTuple_GET_ITEM(kwnames, k);
      int found = -1;
      for (int i = 0; i < nnames; ++i) {
        if (PyUnicode_CompareWithASCIIString(name, names[i]) == 0) {
          found = i;
          break;
        }
      }
      if (found < 0) {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, name);
        return false;
      }
      if (out[found]) {
        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                     names[found]);
        return false;
      }
      out[found] = args[nargs + k];
    }
  }
  for (int i = 0; i < nrequired; ++i) {
    if (!out[i]) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
      return false;
    }
  }
  return true;
}

bool Encoded::Encode(ModuleState* m, PyObject* value) {
  if (PyUnicode_CheckExact(value)) {
    Py_ssize_t n;
    const char* p = PyUnicode_AsUTF8AndSize(value, &n);
    if (p) {
      // The UTF-8 form is cached in the str object, which we keep alive.
      Py_INCREF(value);
      owner_ = value;
      view_ = std::string_view(p, static_cast<size_t>(n));
      flags_ = kEncStr;
      return true;
    }
    PyErr_Clear();  // lone surrogates: not UTF-8, so pickle it below
  } else if (PyBytes_CheckExact(value)) {
    Py_INCREF(value);
    owner_ = value;
    view_ = std::string_view(PyBytes_AS_STRING(value), static_cast<size_t>(PyBytes_GET_SIZE(value)));
    flags_ = kEncBytes;
    return true;
  } else if (PyLong_CheckExact(value)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (!overflow && !(v == -1 && PyErr_Occurred())) {
      small_ = std::to_string(v);
      view_ = std::string_view(small_);
      flags_ = kEncInt;
      return true;
    }
    PyErr_Clear();  // beyond int64: pickled, so incr falls back to Python arithmetic
  }
  PyObject* argv[2] = {value, m->pickle_protocol};
  PyObject* b = PyObject_Vectorcall(m->pickle_dumps, argv, 2, nullptr);
  if (!b) return false;
  if (!PyBytes_Check(b)) {
    Py_DECREF(b);
    PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
    return false;
  }
  owner_ = b;
  view_ = std::string_view(PyBytes_AS_STRING(b), static_cast<size_t>(PyBytes_GET_SIZE(b)));
  flags_ = kEncPickle;
  return true;
}

bool Encoded::Sign(ModuleState* m, Signer* signer, std::string_view key, const std::string& region) {
  uint32_t f = flags_ | kFlagSigned;
  std::string buf;
  buf.reserve(view_.size() + kMacSize);
  buf.append(view_);
  buf.resize(view_.size() + kMacSize);
  if (!signer->Sign(key, f, view_, reinterpret_cast<unsigned char*>(buf.data() + view_.size()))) {
    PyErr_Format(m->RegionError, "region '%s': could not sign the value (libcrypto failed)",
                 region.c_str());
    return false;
  }
  small_ = std::move(buf);
  view_ = std::string_view(small_);
  flags_ = f;
  Py_CLEAR(owner_);
  return true;
}

PyObject* Decode(ModuleState* m, std::string_view data, uint32_t flags,
                 const std::string& region) {
  if (flags & ~kKnownFlags) {
    // Stores hand out only the bits of kKnownFlags (their own, such as
    // compression, are undone first); another bit means a store bug or a
    // foreign writer.
    PyErr_Format(m->RegionError, "region '%s': value has flags no store hands out (flags %u)",
                 region.c_str(), flags);
    return nullptr;
  }
  switch (Encoding(flags)) {
    case kEncStr:
      return PyUnicode_DecodeUTF8(data.data(), static_cast<Py_ssize_t>(data.size()), "strict");
    case kEncBytes:
      return PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size()));
    case kEncInt: {
      int64_t v;
      if (ParseInt64(data, &v)) return PyLong_FromLongLong(v);
      PyErr_Format(m->RegionError, "region '%s': stored integer is not a decimal int64",
                   region.c_str());
      return nullptr;
    }
    case kEncPickle: {
      // pickle.loads takes any bytes-like object. Small pickles go in a
      // bytes object (its fast path); large ones are lent as a view, without
      // a copy. The view dies before data does.
      PyObject* mv =
          data.size() <= 65536
              ? PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size()))
              : PyMemoryView_FromMemory(const_cast<char*>(data.data()),
                                        static_cast<Py_ssize_t>(data.size()), PyBUF_READ);
      if (!mv) return nullptr;
      PyObject* r = PyObject_CallOneArg(m->pickle_loads, mv);
      Py_DECREF(mv);
      return r;
    }
    default:
      PyErr_Format(m->RegionError, "region '%s': value has an unknown encoding (flags %u)",
                   region.c_str(), flags);
      return nullptr;
  }
}

}  // namespace regioncache::py
