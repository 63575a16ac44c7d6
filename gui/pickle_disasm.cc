#include "pickle_disasm.h"

#include <cstdint>
#include <cstring>

namespace rcgui {

namespace {

// How an opcode's argument is laid out in the stream.
enum class Arg {
  kNone,
  kU1, kU2, kI4, kU4, kU8,       // little-endian integers
  kF8,                           // big-endian IEEE double (BINFLOAT)
  kLine,                         // text up to '\n' (INT, FLOAT, LONG, STRING, GET, PUT, PERSID)
  kUnicodeLine,                  // raw-unicode-escape text up to '\n' (UNICODE)
  kTwoLines,                     // "module\nname\n" (GLOBAL, INST)
  kStr1, kStr4,                  // length-prefixed byte strings shown as text (protocol 1 STRINGs)
  kBytes1, kBytes4, kBytes8,     // length-prefixed bytes
  kUtf1, kUtf4, kUtf8,           // length-prefixed UTF-8
  kLong1, kLong4,                // length-prefixed little-endian two's complement
};

struct OpInfo {
  const char* name;
  Arg arg;
  int stack;  // +1 pushes a MARK, -1 pops to a MARK, 0 neither
};

// The opcode table of pickle protocols 0-5 (see Python's Lib/pickle.py).
const OpInfo* Lookup(unsigned char c) {
  static OpInfo table[256];
  static bool ready = [] {
    auto set = [](unsigned char c, const char* n, Arg a, int s = 0) { table[c] = {n, a, s}; };
    set('(', "MARK", Arg::kNone, +1);
    set('.', "STOP", Arg::kNone);
    set('0', "POP", Arg::kNone);
    set('1', "POP_MARK", Arg::kNone, -1);
    set('2', "DUP", Arg::kNone);
    set('F', "FLOAT", Arg::kLine);
    set('I', "INT", Arg::kLine);
    set('J', "BININT", Arg::kI4);
    set('K', "BININT1", Arg::kU1);
    set('L', "LONG", Arg::kLine);
    set('M', "BININT2", Arg::kU2);
    set('N', "NONE", Arg::kNone);
    set('P', "PERSID", Arg::kLine);
    set('Q', "BINPERSID", Arg::kNone);
    set('R', "REDUCE", Arg::kNone);
    set('S', "STRING", Arg::kLine);
    set('T', "BINSTRING", Arg::kStr4);
    set('U', "SHORT_BINSTRING", Arg::kStr1);
    set('V', "UNICODE", Arg::kUnicodeLine);
    set('X', "BINUNICODE", Arg::kUtf4);
    set('a', "APPEND", Arg::kNone);
    set('b', "BUILD", Arg::kNone);
    set('c', "GLOBAL", Arg::kTwoLines);
    set('d', "DICT", Arg::kNone, -1);
    set('}', "EMPTY_DICT", Arg::kNone);
    set('e', "APPENDS", Arg::kNone, -1);
    set('g', "GET", Arg::kLine);
    set('h', "BINGET", Arg::kU1);
    set('i', "INST", Arg::kTwoLines, -1);
    set('j', "LONG_BINGET", Arg::kU4);
    set('l', "LIST", Arg::kNone, -1);
    set(']', "EMPTY_LIST", Arg::kNone);
    set('o', "OBJ", Arg::kNone, -1);
    set('p', "PUT", Arg::kLine);
    set('q', "BINPUT", Arg::kU1);
    set('r', "LONG_BINPUT", Arg::kU4);
    set('s', "SETITEM", Arg::kNone);
    set('t', "TUPLE", Arg::kNone, -1);
    set(')', "EMPTY_TUPLE", Arg::kNone);
    set('u', "SETITEMS", Arg::kNone, -1);
    set('G', "BINFLOAT", Arg::kF8);
    // protocol 2
    set(0x80, "PROTO", Arg::kU1);
    set(0x81, "NEWOBJ", Arg::kNone);
    set(0x82, "EXT1", Arg::kU1);
    set(0x83, "EXT2", Arg::kU2);
    set(0x84, "EXT4", Arg::kI4);
    set(0x85, "TUPLE1", Arg::kNone);
    set(0x86, "TUPLE2", Arg::kNone);
    set(0x87, "TUPLE3", Arg::kNone);
    set(0x88, "NEWTRUE", Arg::kNone);
    set(0x89, "NEWFALSE", Arg::kNone);
    set(0x8a, "LONG1", Arg::kLong1);
    set(0x8b, "LONG4", Arg::kLong4);
    // protocol 3
    set('B', "BINBYTES", Arg::kBytes4);
    set('C', "SHORT_BINBYTES", Arg::kBytes1);
    // protocol 4
    set(0x8c, "SHORT_BINUNICODE", Arg::kUtf1);
    set(0x8d, "BINUNICODE8", Arg::kUtf8);
    set(0x8e, "BINBYTES8", Arg::kBytes8);
    set(0x8f, "EMPTY_SET", Arg::kNone);
    set(0x90, "ADDITEMS", Arg::kNone, -1);
    set(0x91, "FROZENSET", Arg::kNone, -1);
    set(0x92, "NEWOBJ_EX", Arg::kNone);
    set(0x93, "STACK_GLOBAL", Arg::kNone);
    set(0x94, "MEMOIZE", Arg::kNone);
    set(0x95, "FRAME", Arg::kU8);
    // protocol 5
    set(0x96, "BYTEARRAY8", Arg::kBytes8);
    set(0x97, "NEXT_BUFFER", Arg::kNone);
    set(0x98, "READONLY_BUFFER", Arg::kNone);
    return true;
  }();
  (void)ready;
  return table[c].name ? &table[c] : nullptr;
}

uint64_t LittleEndian(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

QString Quote(const QString& s, int max_arg) {
  QString body = s.size() > max_arg ? s.left(max_arg) + QString::fromUtf8("…") : s;
  body.replace('\\', "\\\\").replace('\'', "\\'").replace('\n', "\\n").replace('\r', "\\r");
  return "'" + body + "'" + (s.size() > max_arg ? QString(" (%1 chars)").arg(s.size()) : QString());
}

QString BytesText(const unsigned char* p, uint64_t n, int max_arg) {
  QString out = "b'";
  uint64_t shown = std::min<uint64_t>(n, static_cast<uint64_t>(max_arg));
  for (uint64_t i = 0; i < shown; ++i) {
    unsigned char c = p[i];
    if (c == '\\' || c == '\'') { out += QChar('\\'); out += QChar(c); }
    else if (c >= 0x20 && c < 0x7f) out += QChar(c);
    else out += QString("\\x%1").arg(c, 2, 16, QChar('0'));
  }
  out += "'";
  if (n > shown) out += QString::fromUtf8("… (%1 bytes)").arg(n);
  return out;
}

// Two's complement little-endian integer of n bytes (LONG1/LONG4).
QString LongText(const unsigned char* p, uint64_t n) {
  if (n == 0) return "0";
  if (n <= 8) {
    uint64_t v = LittleEndian(p, static_cast<int>(n));
    if (n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return QString::number(static_cast<qint64>(v));
  }
  QString hex;
  for (uint64_t i = n; i > 0; --i) hex += QString("%1").arg(p[i - 1], 2, 16, QChar('0'));
  return QString("0x%1 (%2-byte two's complement)").arg(hex).arg(n);
}

}  // namespace

PickleListing DisassemblePickle(const QByteArray& data, int max_ops, int max_arg) {
  PickleListing out;
  const auto* base = reinterpret_cast<const unsigned char*>(data.constData());
  const uint64_t size = static_cast<uint64_t>(data.size());
  uint64_t pos = 0;
  int depth = 0;
  auto fail = [&](uint64_t at, const QString& why) {
    out.error = QString("offset %1: %2").arg(at).arg(why);
    return out;
  };
  while (pos < size) {
    if (out.ops.size() >= max_ops) {
      out.truncated = true;
      return out;
    }
    const uint64_t at = pos;
    const unsigned char code = base[pos++];
    const OpInfo* op = Lookup(code);
    if (!op) return fail(at, QString("unknown opcode 0x%1").arg(code, 2, 16, QChar('0')));
    PickleOp rec;
    rec.offset = static_cast<qsizetype>(at);
    rec.name = op->name;
    if (op->stack < 0) {
      if (depth == 0) return fail(at, QString("%1 without a MARK").arg(op->name));
      --depth;
    }
    rec.depth = depth;
    auto need = [&](uint64_t n) { return n <= size - pos; };
    auto fixed = [&](int n, uint64_t* v) {
      if (!need(static_cast<uint64_t>(n))) return false;
      *v = LittleEndian(base + pos, n);
      pos += static_cast<uint64_t>(n);
      return true;
    };
    auto line = [&](QString* text) {
      const void* nl = std::memchr(base + pos, '\n', size - pos);
      if (!nl) return false;
      uint64_t end = static_cast<uint64_t>(static_cast<const unsigned char*>(nl) - base);
      *text = QString::fromLatin1(reinterpret_cast<const char*>(base + pos), static_cast<qsizetype>(end - pos));
      pos = end + 1;
      return true;
    };
    const QString short_arg = QString("%1 argument runs past the end").arg(op->name);
    uint64_t v = 0, n = 0;
    QString text, text2;
    switch (op->arg) {
      case Arg::kNone:
        break;
      case Arg::kU1:
      case Arg::kU2:
      case Arg::kU4:
      case Arg::kU8: {
        int w = op->arg == Arg::kU1 ? 1 : op->arg == Arg::kU2 ? 2 : op->arg == Arg::kU4 ? 4 : 8;
        if (!fixed(w, &v)) return fail(at, short_arg);
        rec.arg = QString::number(v);
        if (code == 0x80) out.protocol = static_cast<int>(v);
        break;
      }
      case Arg::kI4:
        if (!fixed(4, &v)) return fail(at, short_arg);
        rec.arg = QString::number(static_cast<int32_t>(static_cast<uint32_t>(v)));
        break;
      case Arg::kF8: {
        if (!need(8)) return fail(at, short_arg);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | base[pos + static_cast<uint64_t>(i)];
        pos += 8;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        rec.arg = QString::number(d, 'g', 17);
        break;
      }
      case Arg::kLine:
        if (!line(&text)) return fail(at, QString("%1 argument has no end of line").arg(op->name));
        rec.arg = text.size() > max_arg ? text.left(max_arg) + QString::fromUtf8("…") : text;
        break;
      case Arg::kUnicodeLine:
        if (!line(&text)) return fail(at, QString("%1 argument has no end of line").arg(op->name));
        rec.arg = Quote(text, max_arg);
        break;
      case Arg::kTwoLines:
        if (!line(&text) || !line(&text2))
          return fail(at, QString("%1 needs a module and a name line").arg(op->name));
        rec.arg = text + " " + text2;
        break;
      case Arg::kStr1:
      case Arg::kBytes1:
      case Arg::kUtf1:
      case Arg::kLong1:
        if (!fixed(1, &n)) return fail(at, short_arg);
        [[fallthrough]];
      case Arg::kStr4:
      case Arg::kBytes4:
      case Arg::kUtf4:
      case Arg::kLong4:
      case Arg::kBytes8:
      case Arg::kUtf8: {
        if (op->arg == Arg::kStr4 || op->arg == Arg::kBytes4 || op->arg == Arg::kUtf4) {
          if (!fixed(4, &n)) return fail(at, short_arg);
        } else if (op->arg == Arg::kLong4) {
          if (!fixed(4, &n)) return fail(at, short_arg);
          if (n & 0x80000000u) return fail(at, "LONG4 with a negative byte count");
        } else if (op->arg == Arg::kBytes8 || op->arg == Arg::kUtf8) {
          if (!fixed(8, &n)) return fail(at, short_arg);
        }
        if (!need(n))
          return fail(at, QString("%1 of %2 bytes runs past the end (%3 left)").arg(op->name).arg(n).arg(size - pos));
        const unsigned char* p = base + pos;
        pos += n;
        if (op->arg == Arg::kUtf1 || op->arg == Arg::kUtf4 || op->arg == Arg::kUtf8)
          rec.arg = Quote(QString::fromUtf8(reinterpret_cast<const char*>(p), static_cast<qsizetype>(n)), max_arg);
        else if (op->arg == Arg::kLong1 || op->arg == Arg::kLong4)
          rec.arg = LongText(p, n);
        else
          rec.arg = BytesText(p, n, max_arg);
        break;
      }
    }
    if (op->stack > 0) ++depth;
    out.ops.push_back(rec);
    if (code == '.') {
      out.complete = true;
      return out;
    }
  }
  return fail(pos, "the pickle ends without STOP");
}

QString PickleListingText(const PickleListing& l) {
  QString out;
  out.reserve(l.ops.size() * 40);
  if (l.protocol >= 0) out += QString("pickle protocol %1\n").arg(l.protocol);
  for (const PickleOp& op : l.ops) {
    out += QString("%1: ").arg(op.offset, 8);
    out += QString(op.depth * 2, ' ');
    out += op.name;
    if (!op.arg.isEmpty()) out += " " + op.arg;
    out += '\n';
  }
  if (l.truncated) out += QString::fromUtf8("… listing stopped after %1 opcodes\n").arg(l.ops.size());
  if (!l.error.isEmpty()) out += "not a well-formed pickle: " + l.error + "\n";
  return out;
}

}  // namespace rcgui
