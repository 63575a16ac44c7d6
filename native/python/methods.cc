// Methods of regioncache._native.Cache that carry __func__, as Python methods do.
//
// A C method of a type binds to a builtin method, which has no __func__.
// Django 6.x's BaseCache reads `self.get_many.__func__` (and the same of
// get_or_set, has_key, incr, set_many, delete_many, incr_version, close, ...)
// to find out whether a backend specialises a sync method, and its test
// suite does so for every method it checks. So each C method of the type is
// replaced by a `regioncache._native.method`:
//   - a method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR): a call written
//     `cache.get(key)` does not bind at all, the interpreter calls the
//     descriptor with the instance first, as it does for C methods;
//   - `cache.get` binds to a `regioncache._native.bound_method` with
//     __func__ (the descriptor, which is also the class attribute, as for a
//     Python function), __self__, __name__, __qualname__ and __doc__, so any
//     `x.__func__` check Django adds keeps working;
//   - both call the C function directly (after the same type check of self
//     a C method does): no bound-method hop and no argument copies, so a
//     bound `get = cache.get` costs what the builtin method cost.
#include "python/glue.h"

#include <structmember.h>

namespace regioncache::py {
namespace {

constexpr int kFastKw = METH_FASTCALL | METH_KEYWORDS;
// A METH_FASTCALL | METH_KEYWORDS C function (PyCFunctionFastWithKeywords in 3.13+).
using FastKwFunction = PyObject* (*)(PyObject*, PyObject* const*, Py_ssize_t, PyObject*);

struct MethodObject {
  PyObject_HEAD
  PyObject* func;          // the type's original method descriptor
  PyTypeObject* objclass;  // the type the method belongs to (borrowed from func)
  FastKwFunction fast;  // the C function, for METH_FASTCALL|METH_KEYWORDS
  PyTypeObject* bound_type;  // what binding makes (a strong reference)
  vectorcallfunc call;     // else: the descriptor's own vectorcall
  vectorcallfunc vectorcall;
};

struct BoundObject {
  PyObject_HEAD
  MethodObject* func;
  PyObject* self;
  vectorcallfunc vectorcall;
};

// As the method descriptor does, a self that is not an instance of the type
// is a TypeError (checked when a call comes with self, or when binding).
bool CheckSelf(MethodObject* m, PyObject* self) {
  if (PyObject_TypeCheck(self, m->objclass)) return true;
  PyErr_Format(PyExc_TypeError, "descriptor '%U' for '%s' objects doesn't apply to a '%s' object",
               PyDescr_NAME(m->func), m->objclass->tp_name, Py_TYPE(self)->tp_name);
  return false;
}

PyObject* Method_vectorcall(PyObject* op, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  auto* m = reinterpret_cast<MethodObject*>(op);
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (!m->fast || nargs < 1) return m->call(m->func, args, nargsf, kwnames);
  if (!CheckSelf(m, args[0])) return nullptr;
  return m->fast(args[0], args + 1, nargs - 1, kwnames);
}

PyObject* Bound_vectorcall(PyObject* op, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  auto* b = reinterpret_cast<BoundObject*>(op);
  MethodObject* m = b->func;
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (m->fast) return m->fast(b->self, args, nargs, kwnames);  // self checked when bound
  // Other calling conventions: self first, through the descriptor.
  Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
  PyObject* small[8];
  PyObject** stack = total + 1 <= 8 ? small : static_cast<PyObject**>(PyMem_Malloc((total + 1) * sizeof(PyObject*)));
  if (!stack) return PyErr_NoMemory();
  stack[0] = b->self;
  for (Py_ssize_t i = 0; i < total; ++i) stack[i + 1] = args[i];
  PyObject* r = m->call(m->func, stack, static_cast<size_t>(nargs + 1), kwnames);
  if (stack != small) PyMem_Free(stack);
  return r;
}

PyObject* Method_get(PyObject* op, PyObject* obj, PyObject*) {
  if (obj == nullptr || obj == Py_None) return Py_NewRef(op);
  if (!CheckSelf(reinterpret_cast<MethodObject*>(op), obj)) return nullptr;
  BoundObject* b = PyObject_GC_New(BoundObject, reinterpret_cast<MethodObject*>(op)->bound_type);
  if (!b) return nullptr;
  b->func = reinterpret_cast<MethodObject*>(Py_NewRef(op));
  b->self = Py_NewRef(obj);
  b->vectorcall = Bound_vectorcall;
  PyObject_GC_Track(b);
  return reinterpret_cast<PyObject*>(b);
}

void Method_dealloc(PyObject* op) {
  PyTypeObject* tp = Py_TYPE(op);
  PyObject_GC_UnTrack(op);
  Py_CLEAR(reinterpret_cast<MethodObject*>(op)->func);
  Py_CLEAR(reinterpret_cast<MethodObject*>(op)->bound_type);
  tp->tp_free(op);
  Py_DECREF(tp);
}

int Method_traverse(PyObject* op, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(op));
  Py_VISIT(reinterpret_cast<MethodObject*>(op)->func);
  Py_VISIT(reinterpret_cast<MethodObject*>(op)->bound_type);
  return 0;
}

PyObject* Method_repr(PyObject* op) {
  PyObject* name = PyObject_GetAttrString(reinterpret_cast<MethodObject*>(op)->func, "__qualname__");
  if (!name) return nullptr;
  PyObject* r = PyUnicode_FromFormat("<regioncache method %U>", name);
  Py_DECREF(name);
  return r;
}

// __name__, __qualname__, __objclass__, __text_signature__: the original
// descriptor's, so help(), inspect and mock.patch see the same.
PyObject* Method_getattro(PyObject* op, PyObject* name) {
  PyObject* r = PyObject_GenericGetAttr(op, name);
  if (r || !PyErr_ExceptionMatches(PyExc_AttributeError)) return r;
  const char* n = PyUnicode_AsUTF8(name);
  if (!n || n[0] != '_' || n[1] != '_') return nullptr;  // keep the AttributeError
  PyErr_Clear();
  return PyObject_GetAttr(reinterpret_cast<MethodObject*>(op)->func, name);
}

PyObject* Method_doc(PyObject* op, void*) {
  return PyObject_GetAttrString(reinterpret_cast<MethodObject*>(op)->func, "__doc__");
}

PyGetSetDef kMethodGetSet[] = {
    {"__doc__", Method_doc, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef kMethodMembers[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MethodObject, vectorcall), READONLY, nullptr},
    {"__wrapped__", T_OBJECT, offsetof(MethodObject, func), READONLY,
     "the C method descriptor this method calls"},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot kMethodSlots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(Method_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Method_traverse)},
    {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
    {Py_tp_descr_get, reinterpret_cast<void*>(Method_get)},
    {Py_tp_repr, reinterpret_cast<void*>(Method_repr)},
    {Py_tp_getattro, reinterpret_cast<void*>(Method_getattro)},
    {Py_tp_members, kMethodMembers},
    {Py_tp_getset, kMethodGetSet},
    {0, nullptr},
};

PyType_Spec kMethodSpec = {
    "regioncache._native.method",
    sizeof(MethodObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
        Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    kMethodSlots,
};

// ---- the bound method ----------------------------------------------------------

void Bound_dealloc(PyObject* op) {
  PyTypeObject* tp = Py_TYPE(op);
  PyObject_GC_UnTrack(op);
  auto* b = reinterpret_cast<BoundObject*>(op);
  Py_CLEAR(b->func);
  Py_CLEAR(b->self);
  tp->tp_free(op);
  Py_DECREF(tp);
}

int Bound_traverse(PyObject* op, visitproc visit, void* arg) {
  auto* b = reinterpret_cast<BoundObject*>(op);
  Py_VISIT(Py_TYPE(op));
  Py_VISIT(b->func);
  Py_VISIT(b->self);
  return 0;
}

int Bound_clear(PyObject* op) {
  auto* b = reinterpret_cast<BoundObject*>(op);
  Py_CLEAR(b->func);
  Py_CLEAR(b->self);
  return 0;
}

PyObject* Bound_repr(PyObject* op) {
  auto* b = reinterpret_cast<BoundObject*>(op);
  PyObject* name = PyObject_GetAttrString(b->func->func, "__qualname__");
  if (!name) return nullptr;
  PyObject* r = PyUnicode_FromFormat("<bound method %U of %R>", name, b->self);
  Py_DECREF(name);
  return r;
}

// __name__, __qualname__, __doc__, ...: the method's.
PyObject* Bound_getattro(PyObject* op, PyObject* name) {
  PyObject* r = PyObject_GenericGetAttr(op, name);
  if (r || !PyErr_ExceptionMatches(PyExc_AttributeError)) return r;
  const char* n = PyUnicode_AsUTF8(name);
  if (!n || n[0] != '_' || n[1] != '_') return nullptr;
  PyErr_Clear();
  return PyObject_GetAttr(reinterpret_cast<PyObject*>(reinterpret_cast<BoundObject*>(op)->func), name);
}

PyObject* Bound_doc(PyObject* op, void*) {
  return Method_doc(reinterpret_cast<PyObject*>(reinterpret_cast<BoundObject*>(op)->func), nullptr);
}

PyObject* Bound_richcompare(PyObject* a, PyObject* b, int op) {
  if ((op != Py_EQ && op != Py_NE) || Py_TYPE(b) != Py_TYPE(a)) Py_RETURN_NOTIMPLEMENTED;
  auto* x = reinterpret_cast<BoundObject*>(a);
  auto* y = reinterpret_cast<BoundObject*>(b);
  bool eq = x->func == y->func && x->self == y->self;
  return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

Py_hash_t Bound_hash(PyObject* op) {
  auto* b = reinterpret_cast<BoundObject*>(op);
  Py_hash_t h = PyObject_Hash(reinterpret_cast<PyObject*>(b->func)) ^
                static_cast<Py_hash_t>(reinterpret_cast<uintptr_t>(b->self) >> 4);
  return h == -1 ? -2 : h;
}

PyGetSetDef kBoundGetSet[] = {
    {"__doc__", Bound_doc, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef kBoundMembers[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(BoundObject, vectorcall), READONLY, nullptr},
    {"__func__", T_OBJECT, offsetof(BoundObject, func), READONLY, "the method (the class attribute)"},
    {"__self__", T_OBJECT, offsetof(BoundObject, self), READONLY, "the cache it is bound to"},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot kBoundSlots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(Bound_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Bound_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Bound_clear)},
    {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
    {Py_tp_repr, reinterpret_cast<void*>(Bound_repr)},
    {Py_tp_getattro, reinterpret_cast<void*>(Bound_getattro)},
    {Py_tp_richcompare, reinterpret_cast<void*>(Bound_richcompare)},
    {Py_tp_hash, reinterpret_cast<void*>(Bound_hash)},
    {Py_tp_members, kBoundMembers},
    {Py_tp_getset, kBoundGetSet},
    {0, nullptr},
};

PyType_Spec kBoundSpec = {
    "regioncache._native.bound_method",
    sizeof(BoundObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
        Py_TPFLAGS_DISALLOW_INSTANTIATION,
    kBoundSlots,
};

}  // namespace

// Replaces every C method in type's own dict by a method (above); the two
// types are made once per module and kept in its state. 0 on success, -1
// with an exception set.
int WrapMethods(PyObject* module, PyObject* type) {
  ModuleState* state = StateOf(module);
  if (!state->bound_type) {
    state->bound_type = PyType_FromModuleAndSpec(module, &kBoundSpec, nullptr);
    if (!state->bound_type) return -1;
  }
  if (!state->method_type) {
    state->method_type = PyType_FromModuleAndSpec(module, &kMethodSpec, nullptr);
    if (!state->method_type) return -1;
  }
  PyObject* method_type = state->method_type;
  PyObject* dict = reinterpret_cast<PyTypeObject*>(type)->tp_dict;
  PyObject* items = PyDict_Items(dict);  // a copy: the dict changes below
  int rc = items ? 0 : -1;
  for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); ++i) {
    PyObject* name = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 0);
    PyObject* value = PyTuple_GET_ITEM(PyList_GET_ITEM(items, i), 1);
    if (!Py_IS_TYPE(value, &PyMethodDescr_Type)) continue;
    vectorcallfunc call = PyVectorcall_Function(value);
    if (!call) continue;
    auto* descr = reinterpret_cast<PyMethodDescrObject*>(value);
    auto* m = PyObject_GC_New(MethodObject, reinterpret_cast<PyTypeObject*>(method_type));
    if (!m) {
      rc = -1;
      break;
    }
    m->func = Py_NewRef(value);
    m->objclass = PyDescr_TYPE(descr);
    m->fast = (descr->d_method->ml_flags & ~METH_COEXIST) == kFastKw
                  ? reinterpret_cast<FastKwFunction>(
                        reinterpret_cast<void (*)()>(descr->d_method->ml_meth))
                  : nullptr;
    m->call = call;
    m->bound_type = reinterpret_cast<PyTypeObject*>(Py_NewRef(state->bound_type));
    m->vectorcall = Method_vectorcall;
    PyObject_GC_Track(m);
    rc = PyObject_SetAttr(type, name, reinterpret_cast<PyObject*>(m));
    Py_DECREF(m);
  }
  Py_XDECREF(items);
  return rc;
}

}  // namespace regioncache::py
