// A restricted pickle machine: reads a Python pickle (protocols 0 to 5) into
// a tree of plain values without importing or calling anything. A class or
// function the pickle names (GLOBAL, STACK_GLOBAL) becomes a name; a call
// of it (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) becomes an "object of class
// module.Name" node holding the call's arguments, and BUILD, APPENDS and
// SETITEMS aimed at such an object are recorded on it as its state, list
// items and dict items. A few pure data constructors that pickle uses for
// plain values at low protocols (_codecs.encode(s, "latin1"), set(),
// frozenset(), bytearray(), bytes()) are read as the value they make.
//
// Every length is checked against the input, the node count and the stack
// are bounded, and anything the machine cannot read (a malformed opcode, a
// persistent id, an out-of-band buffer, an extension code) ends it with a
// Status that names the opcode and its offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "regioncache/status.h"

namespace regioncache::pickle {

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,        // fits in int64 (`i`), or a big int as decimal text (`text`, `big`)
  kFloat,
  kStr,        // UTF-8 in `text`
  kBytes,      // raw bytes in `text`
  kByteArray,  // raw bytes in `text`
  kList,       // items
  kTuple,      // items
  kDict,       // items: key, value, key, value ...
  kSet,        // items
  kFrozenSet,  // items
  kGlobal,     // a class or function named by the pickle: module, name
  kObject,     // the result of calling `callable` (usually a kGlobal) with args
};

inline constexpr uint32_t kNoNode = UINT32_MAX;

struct Node {
  Kind kind = Kind::kNone;
  bool b = false;
  bool big = false;            // kInt too large for int64: the value is `text`
  int64_t i = 0;
  double f = 0;
  std::string text;            // str / bytes / big int / kGlobal's module
  std::string name;            // kGlobal: the qualified name in its module
  std::vector<uint32_t> items;  // containers; kObject: list items appended to it
  // kObject only:
  uint32_t callable = kNoNode;  // the kGlobal called (or another node)
  uint32_t args = kNoNode;      // a kTuple (kNoNode for OBJ/INST without args is an empty tuple node)
  uint32_t kwargs = kNoNode;    // NEWOBJ_EX's keyword arguments (a kDict)
  uint32_t state = kNoNode;     // what BUILD gave it
  std::vector<uint32_t> dict_items;  // key, value pairs SETITEM(S) gave it
  bool newobj = false;          // made by NEWOBJ / NEWOBJ_EX (cls.__new__) rather than a call
  // Where the opcodes that made the node lie in the input: [first, end).
  size_t first = 0;
  size_t end = 0;
};

struct Limits {
  size_t max_input = size_t{256} << 20;  // bytes of pickle
  size_t max_nodes = size_t{1} << 21;  // about 2 million values (a node is ~170 bytes)
  size_t max_stack = size_t{1} << 20;    // stack entries and open MARKs together
  size_t max_big_int_bytes = 8192;       // LONG1/LONG4/LONG payload converted to decimal text
};

// The tree of one pickle. Nodes may be shared (a memo GET) and, as in
// Python, a container may contain itself: walk it with a depth limit or a
// visited set.
struct Tree {
  std::vector<Node> nodes;
  uint32_t root = kNoNode;
  int protocol = 0;     // from PROTO; 0 when the pickle does not say
  size_t stop_offset = 0;  // offset of the STOP opcode
  // When reading failed: what was on the stack then, bottom first (the
  // values read so far, e.g. an object whose state dict was being filled).
  std::vector<uint32_t> partial;

  const Node& at(uint32_t n) const { return nodes[n]; }
  // "module.Name" of a kGlobal, or of the callable of a kObject ("" if the
  // callable is not a kGlobal). `__builtin__` and `copy_reg` read as Python 3's
  // `builtins` and `copyreg`, as pickle's fix_imports does.
  // For a kObject made by copyreg._reconstructor or copyreg.__newobj__
  // (protocols 0 and 1) it is the class constructed (their first argument).
  std::string ClassName(uint32_t n) const;
  // The value of a kDict's entry whose key is the str `key`, or kNoNode.
  uint32_t DictGet(uint32_t dict, std::string_view key) const;
};

// Reads data into *tree. On failure *tree keeps what was read so far (no
// root) and the Status (Corruption or InvalidArgument) reads like
// "pickle: REDUCE (0x52) at offset 123: the stack holds 1 item, it needs 2".
Status ReadPickle(std::string_view data, Tree* tree, const Limits& limits = {});

// pickletools' name of an opcode byte ("SHORT_BINUNICODE"), or nullptr.
const char* OpcodeName(uint8_t op);

// "int", "str", "dict", "object" ...
const char* KindName(Kind k);

}  // namespace regioncache::pickle
