// _native.key_kind(full_key) -> dict: what a stored key is to Django
// (regioncache/django_keys.h), for the command and the API. The dict always
// has "kind" and "key"; "prefix" and "version" when the key has Django's
// "<prefix>:<version>:" head; then the parts of its kind, each a str:
//   page          page_prefix, method, url_hash, header_hash, language, time_zone
//   page-headers  page_prefix, url_hash, language, time_zone
//   fragment      name, vary_hash
//   session       engine ("cache" or "cached_db"), session_key
//   function      name, arguments or args_hash, lock (bool)
#include <Python.h>

#include <string_view>

#include "regioncache/django_keys.h"

namespace regioncache::py {
namespace {

bool Put(PyObject* d, const char* name, std::string_view v) {
  PyObject* s = PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "replace");
  if (!s) return false;
  const int r = PyDict_SetItemString(d, name, s);
  Py_DECREF(s);
  return r == 0;
}

bool PutParts(PyObject* d, const DjangoKey& k) {
  if (!Put(d, "kind", DjangoKeyKindName(k.kind)) || !Put(d, "key", k.key)) return false;
  if (k.versioned) {
    PyObject* v = PyLong_FromLongLong(k.version);
    if (!v) return false;
    const int r = PyDict_SetItemString(d, "version", v);
    Py_DECREF(v);
    if (r < 0 || !Put(d, "prefix", k.prefix)) return false;
  }
  switch (k.kind) {
    case DjangoKeyKind::kPage:
      if (!Put(d, "method", k.method) || !Put(d, "header_hash", k.header_hash)) return false;
      [[fallthrough]];
    case DjangoKeyKind::kPageHeaders:
      return Put(d, "page_prefix", k.page_prefix) && Put(d, "url_hash", k.url_hash) &&
             Put(d, "language", k.language) && Put(d, "time_zone", k.time_zone);
    case DjangoKeyKind::kFragment:
      return Put(d, "name", k.name) && Put(d, "vary_hash", k.vary_hash);
    case DjangoKeyKind::kSession:
      return Put(d, "engine", k.engine) && Put(d, "session_key", k.session_key);
    case DjangoKeyKind::kFunction:
      if (!Put(d, "name", k.name)) return false;
      if (!(k.args_hash.empty() ? Put(d, "arguments", k.arguments) : Put(d, "args_hash", k.args_hash)))
        return false;
      return PyDict_SetItemString(d, "lock", k.lock ? Py_True : Py_False) == 0;
    case DjangoKeyKind::kPlain:
      break;
  }
  return true;
}

}  // namespace

// key_kind(full_key: str | bytes) -> dict
PyObject* KeyKind(PyObject*, PyObject* arg) {
  std::string_view key;
  if (PyUnicode_Check(arg)) {
    Py_ssize_t n;
    const char* s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s) return nullptr;
    key = std::string_view(s, static_cast<size_t>(n));
  } else if (PyBytes_Check(arg)) {
    key = std::string_view(PyBytes_AS_STRING(arg), static_cast<size_t>(PyBytes_GET_SIZE(arg)));
  } else {
    PyErr_Format(PyExc_TypeError, "key_kind: a full key as str or bytes, not %.100s",
                 Py_TYPE(arg)->tp_name);
    return nullptr;
  }
  PyObject* d = PyDict_New();
  if (d && !PutParts(d, ClassifyDjangoKey(key))) Py_CLEAR(d);
  return d;
}

}  // namespace regioncache::py
