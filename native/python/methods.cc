// Methods of regioncache._native.Cache that look like Python methods.
//
// A C method of a type binds to a builtin method, which has no __func__.
// Django 6.x's BaseCache reads `self.get_many.__func__` (and the same of
// get_or_set, has_key, incr, set_many, delete_many, incr_version, close, ...)
// to find out whether a backend specialises a sync method, and its test
// suite does so for every method it checks. So each C method of the type is
// replaced by a `regioncache._native.method`: a descriptor that
//   - binds like a Python function, to a bound method (types.MethodType)
//     whose __func__ is the descriptor itself, so any `x.__func__` check
//     Django adds keeps working;
//   - is a method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR), so a call
//     written `cache.get(key)` does not bind at all: the interpreter calls
//     the descriptor with the instance first, as it does for C methods;
//   - calls the original C method through its vectorcall, with no argument
//     copies.
#include "python/glue.h"

#include <structmember.h>

namespace regioncache::py {
namespace {

struct MethodObject {
  PyObject_HEAD
  PyObject* func;  // the type's original method descriptor
  vectorcallfunc call;
  vectorcallfunc vectorcall;
};

PyObject* Method_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf,
                            PyObject* kwnames) {
  auto* m = reinterpret_cast<MethodObject*>(self);
  return m->call(m->func, args, nargsf, kwnames);
}

PyObject* Method_get(PyObject* self, PyObject* obj, PyObject*) {
  if (obj == nullptr || obj == Py_None) return Py_NewRef(self);
  return PyMethod_New(self, obj);
}

void Method_dealloc(PyObject* self) {
  PyTypeObject* tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  Py_CLEAR(reinterpret_cast<MethodObject*>(self)->func);
  tp->tp_free(self);
  Py_DECREF(tp);
}

int Method_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(reinterpret_cast<MethodObject*>(self)->func);
  return 0;
}

int Method_clear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<MethodObject*>(self)->func);
  return 0;
}

PyObject* Method_repr(PyObject* self) {
  PyObject* name = PyObject_GetAttrString(reinterpret_cast<MethodObject*>(self)->func, "__qualname__");
  if (!name) return nullptr;
  PyObject* r = PyUnicode_FromFormat("<regioncache method %U>", name);
  Py_DECREF(name);
  return r;
}

// __name__, __qualname__, __doc__, __objclass__, __text_signature__: the
// original descriptor's, so help(), inspect and mock.patch see the same.
PyObject* Method_getattro(PyObject* self, PyObject* name) {
  PyObject* r = PyObject_GenericGetAttr(self, name);
  if (r || !PyErr_ExceptionMatches(PyExc_AttributeError)) return r;
  const char* n = PyUnicode_AsUTF8(name);
  if (!n || n[0] != '_' || n[1] != '_') return nullptr;  // keep the AttributeError
  PyErr_Clear();
  return PyObject_GetAttr(reinterpret_cast<MethodObject*>(self)->func, name);
}

PyObject* Method_doc(PyObject* self, void*) {
  return PyObject_GetAttrString(reinterpret_cast<MethodObject*>(self)->func, "__doc__");
}

PyGetSetDef kGetSet[] = {
    {"__doc__", Method_doc, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef kMembers[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MethodObject, vectorcall), READONLY, nullptr},
    {"__wrapped__", T_OBJECT, offsetof(MethodObject, func), READONLY,
     "the C method descriptor this method calls"},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot kSlots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(Method_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Method_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Method_clear)},
    {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
    {Py_tp_descr_get, reinterpret_cast<void*>(Method_get)},
    {Py_tp_repr, reinterpret_cast<void*>(Method_repr)},
    {Py_tp_getattro, reinterpret_cast<void*>(Method_getattro)},
    {Py_tp_members, kMembers},
    {Py_tp_getset, kGetSet},
    {0, nullptr},
};

PyType_Spec kSpec = {
    "regioncache._native.method",
    sizeof(MethodObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
        Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    kSlots,
};

}  // namespace

// Replaces every C method in type's own dict by a method (above). 0 on
// success, -1 with an exception set.
int WrapMethods(PyObject* type) {
  PyObject* method_type = PyType_FromSpec(&kSpec);
  if (!method_type) return -1;
  PyObject* dict = reinterpret_cast<PyTypeObject*>(type)->tp_dict;
  PyObject* items = PyDict_Items(dict);  // a copy: the dict changes below
  int rc = items ? 0 : -1;
  for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); ++i) {
    PyObject* name = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
    PyObject* value = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
    if (!Py_IS_TYPE(value, &PyMethodDescr_Type)) continue;
    vectorcallfunc call = PyVectorcall_Function(value);
    if (!call) continue;
    auto* m = PyObject_GC_New(MethodObject, reinterpret_cast<PyTypeObject*>(method_type));
    if (!m) {
      rc = -1;
      break;
    }
    m->func = Py_NewRef(value);
    m->call = call;
    m->vectorcall = Method_vectorcall;
    PyObject_GC_Track(m);
    rc = PyObject_SetAttr(type, name, reinterpret_cast<PyObject*>(m));
    Py_DECREF(m);
  }
  Py_XDECREF(items);
  Py_DECREF(method_type);
  return rc;
}

}  // namespace regioncache::py
