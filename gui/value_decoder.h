// Guesses the best view of a value as a store returns it (text, JSON,
// image, pickle, hex), and renders hex dumps. The stores undo their own
// compression before a value leaves them, so the bytes here are the value.
// Pure functions, no widgets, so the tests check them directly.
#pragma once

#include <QByteArray>
#include <QString>
#include <cstdint>

namespace rcgui {

enum class ValueView { kText, kHex, kJson, kImage, kPickle };

// The view that shows this value (bytes stored with flags) best.
ValueView BestView(const QByteArray& bytes, uint32_t flags);

// "PNG", "JPEG", "GIF" from the magic bytes, or "" when not an image we show.
QString ImageFormat(const QByteArray& bytes);

// True when bytes are valid UTF-8 with no control characters but tab and
// new lines (so a text view shows them faithfully).
bool LooksLikeText(const QByteArray& bytes);

// A classic hex dump: "00000010  48 65 6c 6c 6f ...  |Hello...|", of at most
// max_bytes bytes.
QString HexDump(const QByteArray& bytes, qsizetype max_bytes);

}  // namespace rcgui
