#include "value_decoder.h"

#include <QJsonDocument>
#include <QStringDecoder>
#include <zstd.h>

#include "regioncache/codec.h"
#include "core/compress.h"

namespace rcgui {

DecodedValue DecodeStored(const QByteArray& stored, uint32_t flags, uint64_t max_output) {
  DecodedValue v;
  v.flags = flags;
  v.stored_size = static_cast<uint64_t>(stored.size());
  if (!(flags & regioncache::kFlagZstd)) {
    v.bytes = stored;
    return v;
  }
  // Stream the frame: its declared size may be absent or a lie.
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  QByteArray out;
  ZSTD_inBuffer in{stored.constData(), static_cast<size_t>(stored.size()), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  size_t ret = 1;
  while (in.pos < in.size || ret != 0) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    size_t before = in.pos;
    ret = ZSTD_decompressStream(dctx, &ob, &in);
    if (ZSTD_isError(ret)) {
      v.error = QString("zstd: %1").arg(ZSTD_getErrorName(ret));
      break;
    }
    out.append(chunk.data(), static_cast<qsizetype>(ob.pos));
    if (static_cast<uint64_t>(out.size()) > max_output) {
      v.error = QString("zstd: value decompresses to more than %1 bytes").arg(max_output);
      break;
    }
    if (ob.pos == 0 && in.pos == before) {
      if (ret != 0) v.error = "zstd: truncated frame";
      break;
    }
  }
  ZSTD_freeDCtx(dctx);
  if (!v.error.isEmpty()) {
    v.bytes = stored;
    return v;
  }
  v.bytes = out;
  v.decompressed = true;
  return v;
}

QString ImageFormat(const QByteArray& b) {
  if (b.startsWith("\x89PNG\r\n\x1a\n")) return "PNG";
  if (b.startsWith("\xff\xd8\xff")) return "JPEG";
  if (b.startsWith("GIF87a") || b.startsWith("GIF89a")) return "GIF";
  return {};
}

bool LooksLikeText(const QByteArray& bytes) {
  for (char c : bytes) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\n' && u != '\r' && u != '\t') || u == 0x7f) return false;
  }
  auto dec = QStringDecoder(QStringDecoder::Utf8, QStringDecoder::Flag::Stateless);
  QString s = dec.decode(bytes);
  return !dec.hasError();
}

ValueView BestView(const DecodedValue& v) {
  if (!v.error.isEmpty()) return ValueView::kHex;
  switch (regioncache::Encoding(v.flags)) {
    case regioncache::kEncPickle: return ValueView::kPickle;
    case regioncache::kEncInt: return ValueView::kText;
    default: break;
  }
  if (!ImageFormat(v.bytes).isEmpty()) return ValueView::kImage;
  if (!LooksLikeText(v.bytes)) return ValueView::kHex;
  QByteArray t = v.bytes.trimmed();
  if ((t.startsWith('{') || t.startsWith('[')) && !QJsonDocument::fromJson(t).isNull())
    return ValueView::kJson;
  return ValueView::kText;
}

QString HexDump(const QByteArray& bytes, qsizetype max_bytes) {
  const qsizetype n = std::min(bytes.size(), max_bytes);
  QString out;
  out.reserve(n / 16 * 80 + 80);
  static const char* kHex = "0123456789abcdef";
  for (qsizetype row = 0; row < n; row += 16) {
    QString line = QString("%1  ").arg(row, 8, 16, QChar('0'));
    QString ascii;
    for (qsizetype i = 0; i < 16; ++i) {
      if (row + i < n) {
        unsigned char c = static_cast<unsigned char>(bytes[row + i]);
        line += QChar(kHex[c >> 4]);
        line += QChar(kHex[c & 15]);
        line += ' ';
        ascii += (c >= 0x20 && c < 0x7f) ? QChar(c) : QChar('.');
      } else {
        line += "   ";
      }
      if (i == 7) line += ' ';
    }
    out += line + " |" + ascii + "|\n";
  }
  if (bytes.size() > n) out += QString::fromUtf8("… %1 more bytes\n").arg(bytes.size() - n);
  return out;
}

}  // namespace rcgui
