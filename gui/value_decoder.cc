#include "value_decoder.h"

#include <QJsonDocument>
#include <QStringDecoder>

#include "regioncache/codec.h"

namespace rcgui {

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

ValueView BestView(const QByteArray& bytes, uint32_t flags) {
  switch (regioncache::Encoding(flags)) {
    case regioncache::kEncPickle: return ValueView::kPickle;
    case regioncache::kEncInt: return ValueView::kText;
    default: break;
  }
  if (!ImageFormat(bytes).isEmpty()) return ValueView::kImage;
  if (!LooksLikeText(bytes)) return ValueView::kHex;
  QByteArray t = bytes.trimmed();
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
