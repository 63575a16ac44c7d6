// _native.read_pickle and _native.read_page: the restricted pickle machine
// of core (pickle_reader.h, django_page.h) for Python, so that the command
// can show a stored value without unpickling it.
//
// read_pickle(data) returns plain Python objects: None, bool, int, float,
// str (surrogates as pickle writes them), bytes, bytearray, list, tuple,
// dict, set, frozenset; a class the pickle names is
// SimpleNamespace(kind="global", name="module.Name") and a call of one is
// SimpleNamespace(kind="object", cls="module.Name", args=tuple,
// kwargs=dict|None, state=..., items=list, dictitems=dict) (plus
// callable=... when what is called is not a named class). Shared values
// stay shared and a list that contains itself does so here too. A dict key
// or set item that Python cannot hash (an object) becomes its repr().
// A pickle the machine cannot read raises ValueError with its message.
#include <unordered_map>

#include "python/glue.h"
#include "regioncache/django_page.h"
#include "regioncache/pickle_reader.h"

namespace regioncache::py {
namespace {

using pickle::Kind;
using pickle::kNoNode;
using pickle::Node;
using pickle::Tree;

constexpr int kMaxDepth = 900;

class Converter {
 public:
  explicit Converter(const Tree& t) : t_(t) {}
  ~Converter() {
    for (auto& [id, obj] : done_) Py_DECREF(obj);
    Py_XDECREF(namespace_);
  }

  PyObject* Convert(uint32_t id, int depth) {
    if (auto it = done_.find(id); it != done_.end()) return Py_NewRef(it->second);
    if (depth > kMaxDepth) {
      PyErr_Format(PyExc_ValueError, "pickle: values nested deeper than %d levels", kMaxDepth);
      return nullptr;
    }
    const Node& n = t_.at(id);
    switch (n.kind) {
      case Kind::kNone: return Py_NewRef(Py_None);
      case Kind::kBool: return PyBool_FromLong(n.b);
      case Kind::kInt:
        return n.big ? PyLong_FromString(n.text.c_str(), nullptr, 10) : PyLong_FromLongLong(n.i);
      case Kind::kFloat: return PyFloat_FromDouble(n.f);
      case Kind::kStr:
        return PyUnicode_DecodeUTF8(n.text.data(), static_cast<Py_ssize_t>(n.text.size()),
                                    "surrogatepass");
      case Kind::kBytes:
        return PyBytes_FromStringAndSize(n.text.data(), static_cast<Py_ssize_t>(n.text.size()));
      case Kind::kByteArray:
        return PyByteArray_FromStringAndSize(n.text.data(), static_cast<Py_ssize_t>(n.text.size()));
      case Kind::kTuple: {
        PyObject* tup = PyTuple_New(static_cast<Py_ssize_t>(n.items.size()));
        if (!tup) return nullptr;
        for (size_t k = 0; k < n.items.size(); ++k) {
          PyObject* v = Convert(n.items[k], depth + 1);
          if (!v) { Py_DECREF(tup); return nullptr; }
          PyTuple_SET_ITEM(tup, static_cast<Py_ssize_t>(k), v);
        }
        // A tuple reached again through its own items was built twice; keep the first.
        if (auto it = done_.find(id); it != done_.end()) {
          Py_DECREF(tup);
          return Py_NewRef(it->second);
        }
        return Remember(id, tup);
      }
      case Kind::kList: {
        PyObject* list = Remember(id, PyList_New(0));
        if (!list) return nullptr;
        if (!FillList(list, n.items, depth)) { Py_DECREF(list); return nullptr; }
        return list;
      }
      case Kind::kDict: {
        PyObject* dict = Remember(id, PyDict_New());
        if (!dict) return nullptr;
        if (!FillDict(dict, n.items, depth)) { Py_DECREF(dict); return nullptr; }
        return dict;
      }
      case Kind::kSet: case Kind::kFrozenSet: {
        PyObject* set = n.kind == Kind::kSet ? PySet_New(nullptr) : PyFrozenSet_New(nullptr);
        if (!set) return nullptr;
        for (uint32_t item : n.items) {
          PyObject* v = Hashable(Convert(item, depth + 1));
          if (!v || PySet_Add(set, v) < 0) { Py_XDECREF(v); Py_DECREF(set); return nullptr; }
          Py_DECREF(v);
        }
        return Remember(id, set);
      }
      case Kind::kGlobal: {
        PyObject* ns = Namespace();
        if (!ns) return nullptr;
        return Remember(id, Make({{"kind", Str("global")}, {"name", Str(t_.ClassName(id))}}));
      }
      case Kind::kObject: {
        PyObject* ns = Namespace();
        if (!ns) return nullptr;
        const std::string cls = t_.ClassName(id);
        PyObject* obj = Remember(id, Make({{"kind", Str("object")}, {"cls", Str(cls)}}));
        if (!obj) return nullptr;
        bool ok = Set(obj, "args", n.args == kNoNode ? PyTuple_New(0) : Convert(n.args, depth + 1)) &&
                  Set(obj, "kwargs", n.kwargs == kNoNode ? Py_NewRef(Py_None) : Convert(n.kwargs, depth + 1)) &&
                  Set(obj, "state", n.state == kNoNode ? Py_NewRef(Py_None) : Convert(n.state, depth + 1));
        PyObject* items = ok ? PyList_New(0) : nullptr;
        ok = ok && Set(obj, "items", items) && FillList(items, n.items, depth);
        PyObject* dictitems = ok ? PyDict_New() : nullptr;
        ok = ok && Set(obj, "dictitems", dictitems) && FillDict(dictitems, n.dict_items, depth);
        if (ok && cls.empty()) ok = Set(obj, "callable", Convert(n.callable, depth + 1));
        if (!ok) { Py_DECREF(obj); return nullptr; }
        return obj;
      }
    }
    PyErr_SetString(PyExc_ValueError, "pickle: a value of unknown kind");
    return nullptr;
  }

 private:
  PyObject* Remember(uint32_t id, PyObject* obj) {
    if (obj) done_[id] = Py_NewRef(obj);
    return obj;
  }

  static PyObject* Str(const std::string& s) {
    return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  }

  PyObject* Namespace() {
    if (!namespace_) {
      PyObject* types = PyImport_ImportModule("types");
      if (!types) return nullptr;
      namespace_ = PyObject_GetAttrString(types, "SimpleNamespace");
      Py_DECREF(types);
    }
    return namespace_;
  }

  // SimpleNamespace(**fields); steals the field values.
  PyObject* Make(std::initializer_list<std::pair<const char*, PyObject*>> fields) {
    PyObject* kw = PyDict_New();
    bool ok = kw != nullptr;
    for (const auto& [name, value] : fields) {
      ok = ok && value && PyDict_SetItemString(kw, name, value) == 0;
      Py_XDECREF(value);
    }
    if (!ok) { Py_XDECREF(kw); return nullptr; }
    PyObject* empty = PyTuple_New(0);
    PyObject* obj = empty ? PyObject_Call(namespace_, empty, kw) : nullptr;
    Py_XDECREF(empty);
    Py_DECREF(kw);
    return obj;
  }

  // Sets obj.name = value (stolen); false with an exception on failure.
  static bool Set(PyObject* obj, const char* name, PyObject* value) {
    if (!value) return false;
    const int rc = PyObject_SetAttrString(obj, name, value);
    Py_DECREF(value);
    return rc == 0;
  }

  // The value itself when Python can hash it, else its repr().
  static PyObject* Hashable(PyObject* v) {
    if (!v) return nullptr;
    if (PyObject_Hash(v) != -1) return v;
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) { Py_DECREF(v); return nullptr; }
    PyErr_Clear();
    PyObject* r = PyObject_Repr(v);
    Py_DECREF(v);
    return r;
  }

  bool FillList(PyObject* list, const std::vector<uint32_t>& items, int depth) {
    for (uint32_t item : items) {
      PyObject* v = Convert(item, depth + 1);
      if (!v) return false;
      const int rc = PyList_Append(list, v);
      Py_DECREF(v);
      if (rc < 0) return false;
    }
    return true;
  }

  bool FillDict(PyObject* dict, const std::vector<uint32_t>& items, int depth) {
    for (size_t k = 0; k + 1 < items.size(); k += 2) {
      PyObject* key = Hashable(Convert(items[k], depth + 1));
      if (!key) return false;
      PyObject* v = Convert(items[k + 1], depth + 1);
      const int rc = v ? PyDict_SetItem(dict, key, v) : -1;
      Py_DECREF(key);
      Py_XDECREF(v);
      if (rc < 0) return false;
    }
    return true;
  }

  const Tree& t_;
  std::unordered_map<uint32_t, PyObject*> done_;
  PyObject* namespace_ = nullptr;
};

// Runs read(bytes) on arg's buffer with the GIL released; false (TypeError
// set) when arg is not a bytes-like object.
template <typename Read>
bool OnBuffer(PyObject* arg, Read read) {
  Py_buffer view;
  if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) return false;
  const std::string_view data(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
  Py_BEGIN_ALLOW_THREADS
  read(data);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&view);
  return true;
}

PyObject* ReadPickleFn(PyObject*, PyObject* arg) {
  Tree tree;
  Status s;
  if (!OnBuffer(arg, [&](std::string_view data) { s = pickle::ReadPickle(data, &tree); })) return nullptr;
  if (!s.ok()) {
    PyErr_SetString(PyExc_ValueError, s.message().c_str());
    return nullptr;
  }
  Converter c(tree);
  return c.Convert(tree.root, 0);
}

PyObject* Bytes(const std::string& s) {
  return PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
}

PyObject* ReadPageFn(PyObject*, PyObject* arg) {
  DjangoPage page;
  Status s;
  if (!OnBuffer(arg, [&](std::string_view data) { s = ReadDjangoPage(data, &page); })) return nullptr;
  if (!page.found) {
    PyErr_SetString(PyExc_ValueError, s.message().c_str());
    return nullptr;
  }
  PyObject* headers = PyList_New(0);
  PyObject* problems = PyList_New(0);
  bool ok = headers && problems;
  for (const auto& [n, v] : page.headers) {
    PyObject* pair = ok ? Py_BuildValue("(s#s#)", n.data(), static_cast<Py_ssize_t>(n.size()),
                                        v.data(), static_cast<Py_ssize_t>(v.size()))
                        : nullptr;
    ok = pair && PyList_Append(headers, pair) == 0;
    Py_XDECREF(pair);
  }
  for (const std::string& p : page.problems) {
    PyObject* text = ok ? PyUnicode_DecodeUTF8(p.data(), static_cast<Py_ssize_t>(p.size()), "replace")
                        : nullptr;
    ok = text && PyList_Append(problems, text) == 0;
    Py_XDECREF(text);
  }
  PyObject* out = nullptr;
  if (ok) {
    out = Py_BuildValue(
        "{s:s#,s:i,s:s#,s:O,s:s#,s:s#,s:N,s:N,s:O,s:O,s:O,s:z}", "class",
        page.class_name.data(), static_cast<Py_ssize_t>(page.class_name.size()), "status",
        page.status, "reason", page.reason.data(), static_cast<Py_ssize_t>(page.reason.size()),
        "headers", headers, "charset", page.charset.data(),
        static_cast<Py_ssize_t>(page.charset.size()), "content_encoding",
        page.content_encoding.data(), static_cast<Py_ssize_t>(page.content_encoding.size()),
        "body", Bytes(page.body), "stored_body", Bytes(page.stored_body), "body_unpacked",
        page.body_unpacked ? Py_True : Py_False, "complete", page.complete ? Py_True : Py_False,
        "problems", problems, "error", s.ok() ? nullptr : s.message().c_str());
  }
  Py_XDECREF(headers);
  Py_XDECREF(problems);
  return out;
}

}  // namespace

// Added to the module by module.cc's Exec.
PyMethodDef kPickleTreeFunctions[] = {
    {"read_pickle", ReadPickleFn, METH_O,
     "read_pickle(data) -> the pickled value as plain Python objects, read without importing or "
     "calling anything (classes and calls become SimpleNamespace(kind='global'/'object', ...)); "
     "ValueError names the opcode and offset of what could not be read."},
    {"read_page", ReadPageFn, METH_O,
     "read_page(data) -> dict (class, status, reason, headers, charset, content_encoding, body, "
     "stored_body, body_unpacked, complete, problems, error) of a pickled Django HttpResponse, "
     "read without unpickling; a damaged page gives what could be read and `problems`; "
     "ValueError when no response is found."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace regioncache::py
