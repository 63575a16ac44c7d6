// Turns a stored value into what the viewer shows: undoes zstd (codec.h
// kFlagZstd) and guesses the best view (text, JSON, image, pickle, hex).
// Pure functions, no widgets, so the tests check them directly.
#pragma once

#include <QByteArray>
#include <QString>
#include <cstdint>

namespace rcgui {

enum class ValueView { kText, kHex, kJson, kImage, kPickle };

struct DecodedValue {
  QByteArray bytes;        // the payload after decompression
  uint32_t flags = 0;      // the stored flags
  uint64_t stored_size = 0;  // bytes in the store (compressed size for zstd values)
  bool decompressed = false;
  QString error;           // decompression failure (bytes then holds the stored bytes)
};

// Decompresses when flags carry kFlagZstd; the output is bounded by
// max_output so a hostile frame cannot exhaust memory.
DecodedValue DecodeStored(const QByteArray& stored, uint32_t flags,
                          uint64_t max_output = uint64_t(1) << 30);

// The view that shows this value best.
ValueView BestView(const DecodedValue& v);

// "PNG", "JPEG", "GIF" from the magic bytes, or "" when not an image we show.
QString ImageFormat(const QByteArray& bytes);

// True when bytes are valid UTF-8 with no control characters but tab and
// new lines (so a text view shows them faithfully).
bool LooksLikeText(const QByteArray& bytes);

// A classic hex dump: "00000010  48 65 6c 6c 6f ...  |Hello...|", of at most
// max_bytes bytes.
QString HexDump(const QByteArray& bytes, qsizetype max_bytes);

}  // namespace rcgui
