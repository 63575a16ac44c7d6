// A disassembler for Python pickles: lists the opcodes of a pickle with their
// arguments, one per line, without running any of them. Unpickling executes
// code named by the data (GLOBAL/REDUCE), so the app never unpickles; this
// reads the byte stream against the opcode table of protocols 0 to 5.
#pragma once

#include <QByteArray>
#include <QString>
#include <QStringList>

namespace rcgui {

struct PickleOp {
  qsizetype offset = 0;
  QString name;   // "SHORT_BINUNICODE", as pickletools names it
  QString arg;    // the argument as text ("'hello'", "42", "builtins dict"), "" if none
  int depth = 0;  // MARKs open when the opcode runs, for indentation
};

struct PickleListing {
  QList<PickleOp> ops;
  int protocol = -1;   // from PROTO; -1 when the pickle does not say (protocol 0 or 1)
  bool complete = false;  // reached STOP
  QString error;       // set when the bytes are not a well-formed pickle (offset included)
  bool truncated = false;  // stopped at max_ops
};

// Disassembles data, stopping at STOP, at the first malformed opcode or after
// max_ops opcodes. Long string arguments are shortened to max_arg characters.
PickleListing DisassemblePickle(const QByteArray& data, int max_ops = 20000, int max_arg = 200);

// The listing as text: "   12: 8c SHORT_BINUNICODE 'user'" per line, indented by depth.
QString PickleListingText(const PickleListing& listing);

}  // namespace rcgui
