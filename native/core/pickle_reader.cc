// The restricted pickle machine (see pickle_reader.h). It keeps pickle's own
// stack, MARK stack and memo, but where pickle would import a name or call
// something it makes a node that says so.
#include "regioncache/pickle_reader.h"

#include <charconv>
#include <cstring>
#include <unordered_map>

namespace regioncache::pickle {
namespace {

struct OpName {
  uint8_t code;
  const char* name;
};

constexpr OpName kOps[] = {
    {'(', "MARK"},           {'.', "STOP"},          {'0', "POP"},
    {'1', "POP_MARK"},       {'2', "DUP"},           {'F', "FLOAT"},
    {'I', "INT"},            {'J', "BININT"},        {'K', "BININT1"},
    {'L', "LONG"},           {'M', "BININT2"},       {'N', "NONE"},
    {'P', "PERSID"},         {'Q', "BINPERSID"},     {'R', "REDUCE"},
    {'S', "STRING"},         {'T', "BINSTRING"},     {'U', "SHORT_BINSTRING"},
    {'V', "UNICODE"},        {'X', "BINUNICODE"},    {'a', "APPEND"},
    {'b', "BUILD"},          {'c', "GLOBAL"},        {'d', "DICT"},
    {'}', "EMPTY_DICT"},     {'e', "APPENDS"},       {'g', "GET"},
    {'h', "BINGET"},         {'i', "INST"},          {'j', "LONG_BINGET"},
    {'l', "LIST"},           {']', "EMPTY_LIST"},    {'o', "OBJ"},
    {'p', "PUT"},            {'q', "BINPUT"},        {'r', "LONG_BINPUT"},
    {'s', "SETITEM"},        {'t', "TUPLE"},         {')', "EMPTY_TUPLE"},
    {'u', "SETITEMS"},       {'G', "BINFLOAT"},      {0x80, "PROTO"},
    {0x81, "NEWOBJ"},        {0x82, "EXT1"},         {0x83, "EXT2"},
    {0x84, "EXT4"},          {0x85, "TUPLE1"},       {0x86, "TUPLE2"},
    {0x87, "TUPLE3"},        {0x88, "NEWTRUE"},      {0x89, "NEWFALSE"},
    {0x8a, "LONG1"},         {0x8b, "LONG4"},        {'B', "BINBYTES"},
    {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"},
    {0x8e, "BINBYTES8"},     {0x8f, "EMPTY_SET"},    {0x90, "ADDITEMS"},
    {0x91, "FROZENSET"},     {0x92, "NEWOBJ_EX"},    {0x93, "STACK_GLOBAL"},
    {0x94, "MEMOIZE"},       {0x95, "FRAME"},        {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"},   {0x98, "READONLY_BUFFER"},
};

uint64_t LittleEndian(std::string_view b) {
  uint64_t v = 0;
  for (size_t k = b.size(); k-- > 0;) v = (v << 8) | static_cast<uint8_t>(b[k]);
  return v;
}

void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// UTF-8 as Python's "surrogatepass" reads it (pickle writes lone surrogates
// that way). Returns the offset of the first bad byte, or npos.
size_t BadUtf8(std::string_view s) {
  size_t k = 0;
  while (k < s.size()) {
    const auto c = static_cast<uint8_t>(s[k]);
    size_t n = 0;
    uint32_t min = 0;
    if (c < 0x80) { ++k; continue; }
    if ((c & 0xE0) == 0xC0) { n = 1; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 2; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 3; min = 0x10000; }
    else return k;
    if (s.size() - k <= n) return k;
    uint32_t cp = c & (0x3F >> n);
    for (size_t j = 1; j <= n; ++j) {
      const auto cc = static_cast<uint8_t>(s[k + j]);
      if ((cc & 0xC0) != 0x80) return k;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF) return k;
    k += n + 1;
  }
  return std::string_view::npos;
}

// Little-endian two's complement (LONG1/LONG4) as decimal text.
std::string DecimalOf(std::string_view le) {
  std::vector<uint8_t> mag(le.rbegin(), le.rend());  // big-endian
  const bool negative = !mag.empty() && (mag[0] & 0x80);
  if (negative) {  // magnitude = ~x + 1
    for (auto& b : mag) b = static_cast<uint8_t>(~b);
    for (size_t k = mag.size(); k-- > 0;) {
      if (++mag[k] != 0) break;
    }
  }
  std::vector<uint32_t> chunks;  // base 1e9, least significant first
  size_t start = 0;
  while (start < mag.size()) {
    uint64_t rem = 0;
    for (size_t k = start; k < mag.size(); ++k) {
      const uint64_t cur = (rem << 8) | mag[k];
      mag[k] = static_cast<uint8_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    chunks.push_back(static_cast<uint32_t>(rem));
    while (start < mag.size() && mag[start] == 0) ++start;
  }
  std::string out = negative ? "-" : "";
  if (chunks.empty()) return "0";
  out += std::to_string(chunks.back());
  for (size_t k = chunks.size() - 1; k-- > 0;) {
    std::string part = std::to_string(chunks[k]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

std::string FixModule(std::string_view m) {
  if (m == "__builtin__") return "builtins";
  if (m == "copy_reg") return "copyreg";
  return std::string(m);
}

class Machine {
 public:
  Machine(std::string_view data, Tree* tree, const Limits& limits)
      : d_(data), t_(tree), lim_(limits) {}

  const std::vector<uint32_t>& stack() const { return stack_; }

  Status Run() {
    if (d_.size() > lim_.max_input) {
      return Status::InvalidArgument("pickle: " + std::to_string(d_.size()) +
                                     " bytes, more than the " + std::to_string(lim_.max_input) +
                                     " this reader takes");
    }
    while (pos_ < d_.size()) {
      op_off_ = pos_;
      op_ = static_cast<uint8_t>(d_[pos_++]);
      bool stop = false;
      Status s = Step(&stop);
      if (!s.ok()) return s;
      if (stop) return Status::OK();
    }
    return Status::Corruption("pickle: ends at offset " + std::to_string(d_.size()) +
                              " without STOP" +
                              (d_.empty() ? std::string(" (empty)") : std::string()));
  }

 private:
  Status Fail(const std::string& why) const {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op_);
    const char* name = OpcodeName(op_);
    return Status::Corruption("pickle: " + std::string(name ? name : "unknown opcode") + " (" +
                              hex + ") at offset " + std::to_string(op_off_) + ": " + why);
  }

  Status Take(size_t n, std::string_view* out) {
    if (n > d_.size() - pos_) {
      return Fail("needs " + std::to_string(n) + " bytes, " + std::to_string(d_.size() - pos_) +
                  " remain");
    }
    *out = d_.substr(pos_, n);
    pos_ += n;
    return Status::OK();
  }

  Status Line(std::string_view* out) {
    const size_t nl = d_.find('\n', pos_);
    if (nl == std::string_view::npos) return Fail("its text argument has no end of line");
    *out = d_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return Status::OK();
  }

  Status New(Kind k, uint32_t* id) {
    if (t_->nodes.size() >= lim_.max_nodes) {
      return Fail("more than " + std::to_string(lim_.max_nodes) + " values");
    }
    Node n;
    n.kind = k;
    n.first = op_off_;
    n.end = pos_;
    *id = static_cast<uint32_t>(t_->nodes.size());
    t_->nodes.push_back(std::move(n));
    return Status::OK();
  }

  Status Push(uint32_t id) {
    if (stack_.size() + marks_.size() >= lim_.max_stack) {
      return Fail("the stack holds more than " + std::to_string(lim_.max_stack) + " entries");
    }
    stack_.push_back(id);
    return Status::OK();
  }

  Status PushNew(Kind k, uint32_t* id = nullptr) {
    uint32_t n = kNoNode;
    Status s = New(k, &n);
    if (!s.ok()) return s;
    if (id) *id = n;
    return Push(n);
  }

  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }

  Status Pop(uint32_t* id) {
    if (stack_.size() <= Floor()) return Fail("the stack (above the last MARK) is empty");
    *id = stack_.back();
    stack_.pop_back();
    return Status::OK();
  }

  Status Top(uint32_t* id) const {
    if (stack_.size() <= Floor()) return Fail("the stack (above the last MARK) is empty");
    *id = stack_.back();
    return Status::OK();
  }

  Status PopMark(std::vector<uint32_t>* items) {
    if (marks_.empty()) return Fail("no MARK is open");
    const size_t m = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + static_cast<ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return Status::OK();
  }

  // The node's span grows to cover the children it takes and this opcode.
  void Cover(uint32_t id, const std::vector<uint32_t>& kids) {
    Node& n = t_->nodes[id];
    for (uint32_t k : kids) n.first = std::min(n.first, t_->nodes[k].first);
    n.end = std::max(n.end, pos_);
  }

  Status PushContainer(Kind k, std::vector<uint32_t> items) {
    uint32_t id = kNoNode;
    Status s = New(k, &id);
    if (!s.ok()) return s;
    Cover(id, items);
    t_->nodes[id].items = std::move(items);
    return Push(id);
  }

  Status PushInt(int64_t v) {
    uint32_t id = kNoNode;
    Status s = PushNew(Kind::kInt, &id);
    if (s.ok()) t_->nodes[id].i = v;
    return s;
  }

  Status PushBigText(std::string_view digits) {
    // digits: optional sign then decimal digits, already checked.
    int64_t v = 0;
    auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    uint32_t id = kNoNode;
    Status s = PushNew(Kind::kInt, &id);
    if (!s.ok()) return s;
    Node& n = t_->nodes[id];
    if (r.ec == std::errc() && r.ptr == digits.data() + digits.size()) {
      n.i = v;
    } else {
      n.big = true;
      n.text = std::string(digits[0] == '+' ? digits.substr(1) : digits);
    }
    return Status::OK();
  }

  Status PushText(Kind k, std::string_view bytes) {
    if (k == Kind::kStr) {
      const size_t bad = BadUtf8(bytes);
      if (bad != std::string_view::npos) {
        return Fail("its string is not UTF-8 (byte " + std::to_string(bad) + ")");
      }
    }
    uint32_t id = kNoNode;
    Status s = PushNew(k, &id);
    if (s.ok()) t_->nodes[id].text = std::string(bytes);
    return s;
  }

  // APPEND(S), SETITEM(S), ADDITEMS: items go into the container on top of
  // the stack, which is a `kind` or an object (a list, dict or set subclass
  // made by REDUCE/NEWOBJ: its items are recorded on it).
  Status AddToTop(Kind kind, const char* verb, const std::vector<uint32_t>& items) {
    uint32_t id = kNoNode;
    Status s = Top(&id);
    if (!s.ok()) return s;
    Node& target = t_->nodes[id];
    if (target.kind != kind && target.kind != Kind::kObject) {
      return Fail(std::string(verb) + " a " + KindName(target.kind) + ", not a " + KindName(kind));
    }
    auto& into = target.kind == Kind::kObject && kind == Kind::kDict ? target.dict_items : target.items;
    into.insert(into.end(), items.begin(), items.end());
    Cover(id, {});
    return s;
  }

  // A length read from the pickle, checked against the bytes that remain.
  Status CheckLength(uint64_t n) const {
    if (n <= d_.size() - pos_) return Status::OK();
    return Fail("its length " + std::to_string(n) + " runs past the end (" +
                std::to_string(d_.size() - pos_) + " bytes remain)");
  }

  Status Counted(size_t len_bytes, Kind k) {
    std::string_view lb, body;
    Status s = Take(len_bytes, &lb);
    if (!s.ok()) return s;
    const uint64_t n = LittleEndian(lb);
    if (!(s = CheckLength(n)).ok()) return s;
    s = Take(static_cast<size_t>(n), &body);
    if (!s.ok()) return s;
    return PushText(k, body);
  }

  bool IsDecimal(std::string_view t) const {
    size_t k = (!t.empty() && (t[0] == '-' || t[0] == '+')) ? 1 : 0;
    if (k == t.size()) return false;
    for (; k < t.size(); ++k) {
      if (t[k] < '0' || t[k] > '9') return false;
    }
    return true;
  }

  Status MemoKey(std::string_view text, uint64_t* key) {
    auto r = std::from_chars(text.data(), text.data() + text.size(), *key);
    if (r.ec != std::errc() || r.ptr != text.data() + text.size()) {
      return Fail("memo key '" + std::string(text.substr(0, 40)) + "' is not a number");
    }
    return Status::OK();
  }

  // The memo key of PUT/GET (a decimal line), BINPUT/BINGET (1 byte) or
  // LONG_BINPUT/LONG_BINGET (4 bytes).
  Status MemoArg(uint64_t* key) {
    std::string_view a;
    Status s;
    if (op_ == 'p' || op_ == 'g') {
      if (!(s = Line(&a)).ok()) return s;
      return MemoKey(a, key);
    }
    if (!(s = Take(op_ == 'q' || op_ == 'h' ? 1 : 4, &a)).ok()) return s;
    *key = LittleEndian(a);
    return s;
  }

  Status Put(uint64_t key) {
    uint32_t id = kNoNode;
    Status s = Top(&id);
    if (!s.ok()) return s;
    memo_[key] = id;
    return Status::OK();
  }

  Status Get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return Fail("memo key " + std::to_string(key) + " was never put");
    return Push(it->second);
  }

  Status Global(std::string_view module, std::string_view name) {
    uint32_t id = kNoNode;
    Status s = PushNew(Kind::kGlobal, &id);
    if (!s.ok()) return s;
    t_->nodes[id].text = std::string(module);
    t_->nodes[id].name = std::string(name);
    return Status::OK();
  }

  // Python string literal escapes (protocol 0 STRING): the bytes it means.
  Status Unescape(std::string_view in, std::string* out) {
    for (size_t k = 0; k < in.size(); ++k) {
      char c = in[k];
      if (c != '\\') { out->push_back(c); continue; }
      if (++k == in.size()) return Fail("its string ends with a lone backslash");
      c = in[k];
      switch (c) {
        case '\n': break;
        case '\\': case '\'': case '"': out->push_back(c); break;
        case 'a': out->push_back('\a'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'v': out->push_back('\v'); break;
        case 'x': {
          unsigned v = 0;
          if (in.size() - k < 3) return Fail("a \\x escape is cut short");
          auto r = std::from_chars(in.data() + k + 1, in.data() + k + 3, v, 16);
          if (r.ptr != in.data() + k + 3) return Fail("a \\x escape is not two hex digits");
          out->push_back(static_cast<char>(v));
          k += 2;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            unsigned v = 0;
            size_t j = 0;
            while (j < 3 && k + j < in.size() && in[k + j] >= '0' && in[k + j] <= '7') {
              v = v * 8 + static_cast<unsigned>(in[k + j] - '0');
              ++j;
            }
            out->push_back(static_cast<char>(v & 0xFF));
            k += j - 1;
          } else {
            out->push_back('\\');
            out->push_back(c);
          }
      }
    }
    return Status::OK();
  }

  // raw-unicode-escape (protocol 0 UNICODE) to UTF-8.
  Status RawUnicode(std::string_view in, std::string* out) {
    for (size_t k = 0; k < in.size(); ++k) {
      const auto c = static_cast<uint8_t>(in[k]);
      if (c == '\\' && k + 1 < in.size() && (in[k + 1] == 'u' || in[k + 1] == 'U')) {
        const size_t n = in[k + 1] == 'u' ? 4 : 8;
        if (in.size() - k - 2 < n) return Fail("a \\u escape is cut short");
        uint32_t cp = 0;
        auto r = std::from_chars(in.data() + k + 2, in.data() + k + 2 + n, cp, 16);
        if (r.ptr != in.data() + k + 2 + n || cp > 0x10FFFF) {
          return Fail("a \\u escape is not a code point");
        }
        AppendUtf8(out, cp);
        k += 1 + n;
      } else {
        AppendUtf8(out, c);
      }
    }
    return Status::OK();
  }

  // The value a pure data constructor makes, if callable(args) is one.
  bool DataConstructor(uint32_t callable, uint32_t args, uint32_t* made) {
    const Node& f = t_->nodes[callable];
    const Node& a = t_->nodes[args];
    if (f.kind != Kind::kGlobal || a.kind != Kind::kTuple) return false;
    const std::string mod = FixModule(f.text);
    const std::string& nm = f.name;
    const size_t argc = a.items.size();
    auto arg = [&](size_t k) -> const Node& { return t_->nodes[a.items[k]]; };
    auto latin1 = [&](const std::string& utf8, std::string* out) {
      for (size_t k = 0; k < utf8.size();) {
        const auto c = static_cast<uint8_t>(utf8[k]);
        if (c < 0x80) { out->push_back(static_cast<char>(c)); ++k; }
        else if ((c & 0xE0) == 0xC0 && k + 1 < utf8.size()) {
          const uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(utf8[k + 1]) & 0x3Fu);
          if (cp > 0xFF) return false;
          out->push_back(static_cast<char>(cp));
          k += 2;
        } else {
          return false;
        }
      }
      return true;
    };
    auto is_latin1_name = [](const Node& n) {
      return n.kind == Kind::kStr && (n.text == "latin1" || n.text == "latin-1");
    };
    Kind kind;
    std::string bytes;
    std::vector<uint32_t> items;
    if (mod == "_codecs" && nm == "encode" && argc == 2 && arg(0).kind == Kind::kStr &&
        is_latin1_name(arg(1))) {
      if (!latin1(arg(0).text, &bytes)) return false;
      kind = Kind::kBytes;
    } else if (mod == "builtins" && (nm == "bytes" || nm == "bytearray")) {
      kind = nm == "bytes" ? Kind::kBytes : Kind::kByteArray;
      if (argc == 1 && arg(0).kind == Kind::kBytes) {
        bytes = arg(0).text;
      } else if (argc == 2 && arg(0).kind == Kind::kStr && is_latin1_name(arg(1))) {
        if (!latin1(arg(0).text, &bytes)) return false;
      } else if (argc != 0) {
        return false;
      }
    } else if (mod == "builtins" && (nm == "set" || nm == "frozenset")) {
      kind = nm == "set" ? Kind::kSet : Kind::kFrozenSet;
      if (argc == 1 && (arg(0).kind == Kind::kList || arg(0).kind == Kind::kTuple)) {
        items = arg(0).items;
      } else if (argc != 0) {
        return false;
      }
    } else {
      return false;
    }
    if (!New(kind, made).ok()) return false;
    Node& n = t_->nodes[*made];
    n.text = std::move(bytes);
    n.items = std::move(items);
    return true;
  }

  Status MakeObject(uint32_t callable, uint32_t args, uint32_t kwargs, bool newobj) {
    uint32_t id = kNoNode;
    Status s = New(Kind::kObject, &id);
    if (!s.ok()) return s;
    std::vector<uint32_t> kids = {callable, args};
    if (kwargs != kNoNode) kids.push_back(kwargs);
    Cover(id, kids);
    Node& n = t_->nodes[id];
    n.callable = callable;
    n.args = args;
    n.kwargs = kwargs;
    n.newobj = newobj;
    return Push(id);
  }

  Status Step(bool* stop) {
    Status s;
    std::string_view a;
    uint32_t x = 0, y = 0, z = 0;
    std::vector<uint32_t> items;
    switch (op_) {
      case 0x80: {  // PROTO
        if (!(s = Take(1, &a)).ok()) return s;
        const int p = static_cast<uint8_t>(a[0]);
        if (p > 5) return Fail("protocol " + std::to_string(p) + " is newer than 5");
        t_->protocol = p;
        return s;
      }
      case 0x95:  // FRAME: a buffering hint. One that runs past the end is
                  // not refused here, so that a cut pickle is read as far as
                  // its bytes go and fails where they end.
        return Take(8, &a);
      case '.':  // STOP
        if (!(s = Pop(&x)).ok()) return Fail("nothing on the stack to return");
        t_->root = x;
        t_->stop_offset = op_off_;
        *stop = true;
        return s;
      case '(':  // MARK
        if (stack_.size() + marks_.size() >= lim_.max_stack) return Fail("too many MARKs");
        marks_.push_back(stack_.size());
        return s;
      case '0':  // POP
        if (stack_.size() > Floor()) {
          stack_.pop_back();
          return s;
        }
        return PopMark(&items);
      case '1':  // POP_MARK
        return PopMark(&items);
      case '2':  // DUP
        if (!(s = Top(&x)).ok()) return s;
        return Push(x);
      case 'N':
        return PushNew(Kind::kNone);
      case 0x88: case 0x89:
        if (!(s = PushNew(Kind::kBool, &x)).ok()) return s;
        t_->nodes[x].b = op_ == 0x88;
        return s;
      case 'J':
        if (!(s = Take(4, &a)).ok()) return s;
        return PushInt(static_cast<int32_t>(static_cast<uint32_t>(LittleEndian(a))));
      case 'K':
        if (!(s = Take(1, &a)).ok()) return s;
        return PushInt(static_cast<uint8_t>(a[0]));
      case 'M':
        if (!(s = Take(2, &a)).ok()) return s;
        return PushInt(static_cast<int64_t>(LittleEndian(a)));
      case 'I': {
        if (!(s = Line(&a)).ok()) return s;
        if (a == "01" || a == "00") {
          if (!(s = PushNew(Kind::kBool, &x)).ok()) return s;
          t_->nodes[x].b = a == "01";
          return s;
        }
        if (!IsDecimal(a)) return Fail("'" + std::string(a.substr(0, 40)) + "' is not an integer");
        return PushBigText(a);
      }
      case 'L': {
        if (!(s = Line(&a)).ok()) return s;
        if (!a.empty() && a.back() == 'L') a.remove_suffix(1);
        if (!IsDecimal(a)) return Fail("'" + std::string(a.substr(0, 40)) + "' is not an integer");
        if (a.size() > lim_.max_big_int_bytes * 3) return Fail("integer too long to show");
        return PushBigText(a);
      }
      case 0x8a: case 0x8b: {  // LONG1, LONG4
        if (!(s = Take(op_ == 0x8a ? 1 : 4, &a)).ok()) return s;
        const uint64_t n = LittleEndian(a);
        if (op_ == 0x8b && (n & 0x80000000u)) return Fail("negative length");
        if (!(s = CheckLength(n)).ok()) return s;
        if (n > lim_.max_big_int_bytes) {
          return Fail("an integer of " + std::to_string(n) + " bytes, more than the " +
                      std::to_string(lim_.max_big_int_bytes) + " this reader converts");
        }
        if (!(s = Take(static_cast<size_t>(n), &a)).ok()) return s;
        if (n <= 8) {
          uint64_t v = LittleEndian(a);
          if (n > 0 && n < 8 && (static_cast<uint8_t>(a[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
          return PushInt(static_cast<int64_t>(v));
        }
        return PushBigText(DecimalOf(a));
      }
      case 'F': {
        if (!(s = Line(&a)).ok()) return s;
        double v = 0;
        std::string_view t = a;
        if (!t.empty() && t[0] == '+') t.remove_prefix(1);
        auto r = std::from_chars(t.data(), t.data() + t.size(), v);
        if (r.ec != std::errc() || r.ptr != t.data() + t.size()) {
          return Fail("'" + std::string(a.substr(0, 40)) + "' is not a float");
        }
        if (!(s = PushNew(Kind::kFloat, &x)).ok()) return s;
        t_->nodes[x].f = v;
        return s;
      }
      case 'G': {
        if (!(s = Take(8, &a)).ok()) return s;
        uint64_t bits = 0;
        for (char c : a) bits = (bits << 8) | static_cast<uint8_t>(c);
        double v;
        std::memcpy(&v, &bits, sizeof v);
        if (!(s = PushNew(Kind::kFloat, &x)).ok()) return s;
        t_->nodes[x].f = v;
        return s;
      }
      case 'S': {
        if (!(s = Line(&a)).ok()) return s;
        if (a.size() < 2 || (a[0] != '\'' && a[0] != '"') || a.back() != a[0]) {
          return Fail("its string is not quoted");
        }
        std::string bytes;
        if (!(s = Unescape(a.substr(1, a.size() - 2), &bytes)).ok()) return s;
        bool ascii = true;
        for (char c : bytes) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
        return PushText(ascii ? Kind::kStr : Kind::kBytes, bytes);
      }
      case 'T': case 'U': {  // BINSTRING, SHORT_BINSTRING: Python 2 str
        std::string_view lb, body;
        if (!(s = Take(op_ == 'T' ? 4 : 1, &lb)).ok()) return s;
        const uint64_t n = LittleEndian(lb);
        if (op_ == 'T' && (n & 0x80000000u)) return Fail("negative length");
        if (!(s = CheckLength(n)).ok()) return s;
        if (!(s = Take(static_cast<size_t>(n), &body)).ok()) return s;
        bool ascii = true;
        for (char c : body) ascii = ascii && static_cast<uint8_t>(c) < 0x80;
        return PushText(ascii ? Kind::kStr : Kind::kBytes, body);
      }
      case 'V': {
        if (!(s = Line(&a)).ok()) return s;
        std::string text;
        if (!(s = RawUnicode(a, &text)).ok()) return s;
        return PushText(Kind::kStr, text);
      }
      case 'X': return Counted(4, Kind::kStr);
      case 0x8c: return Counted(1, Kind::kStr);
      case 0x8d: return Counted(8, Kind::kStr);
      case 'B': return Counted(4, Kind::kBytes);
      case 'C': return Counted(1, Kind::kBytes);
      case 0x8e: return Counted(8, Kind::kBytes);
      case 0x96: return Counted(8, Kind::kByteArray);
      case ']': return PushNew(Kind::kList);
      case '}': return PushNew(Kind::kDict);
      case ')': return PushNew(Kind::kTuple);
      case 0x8f: return PushNew(Kind::kSet);
      case 'l': case 't': case 0x91: {
        if (!(s = PopMark(&items)).ok()) return s;
        return PushContainer(op_ == 'l' ? Kind::kList : op_ == 't' ? Kind::kTuple : Kind::kFrozenSet,
                             std::move(items));
      }
      case 'd': {
        if (!(s = PopMark(&items)).ok()) return s;
        if (items.size() % 2) return Fail("an odd number of items (" + std::to_string(items.size()) + ") for a dict");
        return PushContainer(Kind::kDict, std::move(items));
      }
      case 0x85: case 0x86: case 0x87: {
        const size_t n = op_ - 0x84u;
        if (stack_.size() < Floor() + n) {
          return Fail("the stack holds " + std::to_string(stack_.size() - Floor()) +
                      " items above the last MARK, it needs " + std::to_string(n));
        }
        items.assign(stack_.end() - static_cast<ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        return PushContainer(Kind::kTuple, std::move(items));
      }
      case 'a': case 'e': {  // APPEND, APPENDS
        if (op_ == 'a') {
          if (!(s = Pop(&x)).ok()) return s;
          items.push_back(x);
        } else if (!(s = PopMark(&items)).ok()) {
          return s;
        }
        return AddToTop(Kind::kList, "appends to", items);
      }
      case 's': case 'u': {  // SETITEM, SETITEMS
        if (op_ == 's') {
          if (!(s = Pop(&y)).ok()) return s;
          if (!(s = Pop(&x)).ok()) return s;
          items = {x, y};
        } else {
          if (!(s = PopMark(&items)).ok()) return s;
          if (items.size() % 2) return Fail("an odd number of items (" + std::to_string(items.size()) + ") for a dict");
        }
        return AddToTop(Kind::kDict, "sets items of", items);
      }
      case 0x90: {  // ADDITEMS
        if (!(s = PopMark(&items)).ok()) return s;
        return AddToTop(Kind::kSet, "adds items to", items);
      }
      case 'c': {  // GLOBAL
        std::string_view mod, name;
        if (!(s = Line(&mod)).ok()) return s;
        if (!(s = Line(&name)).ok()) return s;
        return Global(mod, name);
      }
      case 0x93: {  // STACK_GLOBAL
        if (!(s = Pop(&y)).ok()) return s;
        if (!(s = Pop(&x)).ok()) return s;
        if (t_->nodes[x].kind != Kind::kStr || t_->nodes[y].kind != Kind::kStr) {
          return Fail("module and name are not both str");
        }
        const size_t first = t_->nodes[x].first;
        const std::string mod = t_->nodes[x].text, name = t_->nodes[y].text;
        if (!(s = Global(mod, name)).ok()) return s;
        t_->nodes[stack_.back()].first = first;
        return s;
      }
      case 'R': {  // REDUCE
        if (!(s = Pop(&y)).ok()) return s;
        if (!(s = Pop(&x)).ok()) return Fail("the stack holds 1 item, it needs 2");
        if (t_->nodes[y].kind != Kind::kTuple) {
          return Fail("its arguments are a " + std::string(KindName(t_->nodes[y].kind)) + ", not a tuple");
        }
        if (DataConstructor(x, y, &z)) {
          Cover(z, {x, y});
          return Push(z);
        }
        return MakeObject(x, y, kNoNode, false);
      }
      case 0x81: case 0x92: {  // NEWOBJ, NEWOBJ_EX
        if (op_ == 0x92 && !(s = Pop(&z)).ok()) return s;
        if (!(s = Pop(&y)).ok()) return s;
        if (!(s = Pop(&x)).ok()) return s;
        if (t_->nodes[y].kind != Kind::kTuple) return Fail("its arguments are not a tuple");
        if (op_ == 0x92 && t_->nodes[z].kind != Kind::kDict) return Fail("its keyword arguments are not a dict");
        return MakeObject(x, y, op_ == 0x92 ? z : kNoNode, true);
      }
      case 'i': {  // INST
        std::string_view mod, name;
        if (!(s = Line(&mod)).ok()) return s;
        if (!(s = Line(&name)).ok()) return s;
        if (!(s = PopMark(&items)).ok()) return s;
        if (!(s = Global(mod, name)).ok()) return s;
        x = stack_.back();
        stack_.pop_back();
        if (!(s = PushContainer(Kind::kTuple, std::move(items))).ok()) return s;
        y = stack_.back();
        stack_.pop_back();
        return MakeObject(x, y, kNoNode, false);
      }
      case 'o': {  // OBJ
        if (!(s = PopMark(&items)).ok()) return s;
        if (items.empty()) return Fail("no class after the MARK");
        x = items[0];
        items.erase(items.begin());
        if (!(s = PushContainer(Kind::kTuple, std::move(items))).ok()) return s;
        y = stack_.back();
        stack_.pop_back();
        return MakeObject(x, y, kNoNode, false);
      }
      case 'b': {  // BUILD
        if (!(s = Pop(&y)).ok()) return s;
        if (!(s = Top(&x)).ok()) return s;
        Node& target = t_->nodes[x];
        if (target.kind == Kind::kObject) {
          target.state = y;
          Cover(x, {});
          return s;
        }
        const Node& st = t_->nodes[y];
        if (st.kind == Kind::kNone || (st.kind == Kind::kDict && st.items.empty())) return s;
        return Fail("gives state to a " + std::string(KindName(target.kind)) + ", not an object");
      }
      case 'p': case 'q': case 'r': case 'g': case 'h': case 'j': {  // PUT, GET and their binary forms
        uint64_t key = 0;
        if (!(s = MemoArg(&key)).ok()) return s;
        return (op_ == 'p' || op_ == 'q' || op_ == 'r') ? Put(key) : Get(key);
      }
      case 0x94:  // MEMOIZE
        return Put(memo_.size());
      case 'P': case 'Q':
        return Fail("a persistent id names an object kept outside the pickle; it is not read");
      case 0x82: case 0x83: case 0x84:
        return Fail("an extension code stands for a class in copyreg's registry; it is not read");
      case 0x97: case 0x98:
        return Fail("an out-of-band buffer is not part of the stored bytes; it is not read");
      default:
        return Fail("not an opcode of pickle protocols 0 to 5");
    }
  }

  std::string_view d_;
  Tree* t_;
  const Limits& lim_;
  size_t pos_ = 0;
  size_t op_off_ = 0;
  uint8_t op_ = 0;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, uint32_t> memo_;
};

}  // namespace

const char* OpcodeName(uint8_t op) {
  for (const OpName& o : kOps) {
    if (o.code == op) return o.name;
  }
  return nullptr;
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kStr: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kByteArray: return "bytearray";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kSet: return "set";
    case Kind::kFrozenSet: return "frozenset";
    case Kind::kGlobal: return "class";
    case Kind::kObject: return "object";
  }
  return "?";
}

std::string Tree::ClassName(uint32_t n) const {
  if (n >= nodes.size()) return {};
  const Node& node = nodes[n];
  if (node.kind == Kind::kGlobal) return FixModule(node.text) + "." + node.name;
  if (node.kind != Kind::kObject || node.callable >= nodes.size()) return {};
  const Node& f = nodes[node.callable];
  if (f.kind != Kind::kGlobal) return {};
  const std::string name = FixModule(f.text) + "." + f.name;
  if ((name == "copyreg._reconstructor" || name == "copyreg.__newobj__") &&
      node.args < nodes.size() && !nodes[node.args].items.empty() &&
      nodes[nodes[node.args].items[0]].kind == Kind::kGlobal) {
    return ClassName(nodes[node.args].items[0]);
  }
  return name;
}

uint32_t Tree::DictGet(uint32_t dict, std::string_view key) const {
  if (dict >= nodes.size() || nodes[dict].kind != Kind::kDict) return kNoNode;
  const auto& it = nodes[dict].items;
  uint32_t found = kNoNode;
  for (size_t k = 0; k + 1 < it.size(); k += 2) {  // the last write wins, as in a dict
    const Node& kn = nodes[it[k]];
    if (kn.kind == Kind::kStr && kn.text == key) found = it[k + 1];
  }
  return found;
}

Status ReadPickle(std::string_view data, Tree* tree, const Limits& limits) {
  *tree = Tree();
  Machine m(data, tree, limits);
  Status s = m.Run();
  if (!s.ok()) {
    tree->root = kNoNode;
    tree->partial = m.stack();
  }
  return s;
}

}  // namespace regioncache::pickle
