#include "format.h"

#include <QDateTime>

#include "regioncache/codec.h"
#include "regioncache/store.h"

namespace rcgui {

QString HumanBytes(uint64_t n) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return QString("%1 B").arg(n);
  double v = double(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return QString("%1 %2").arg(v, 0, 'f', 1).arg(kUnits[u]);
}

QString EpochMsText(int64_t ms) {
  if (ms == 0) return QString();
  return QDateTime::fromMSecsSinceEpoch(ms).toString("yyyy-MM-dd HH:mm:ss");
}

QString TimeLeftText(int64_t expires_ms, int64_t now_ms) {
  if (expires_ms == regioncache::kNever) return "never";
  int64_t left = expires_ms - now_ms;
  if (left <= 0) return "expired";
  int64_t s = (left + 999) / 1000;
  if (s < 60) return QString("%1s").arg(s);
  if (s < 3600) return QString("%1m %2s").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
  if (s < 86400) return QString("%1h %2m").arg(s / 3600).arg((s / 60) % 60, 2, 10, QChar('0'));
  return QString("%1d %2h").arg(s / 86400).arg((s / 3600) % 24);
}

QString ExpiryText(int64_t expires_ms, int64_t now_ms) {
  if (expires_ms == regioncache::kNever) return "never";
  return QString("%1 (%2)").arg(EpochMsText(expires_ms), TimeLeftText(expires_ms, now_ms));
}

QString EncodingText(uint32_t flags) {
  using namespace regioncache;
  return Encoding(flags) <= kEncPickle ? QString(EncodingName(flags))
                                       : QString("unknown(%1)").arg(Encoding(flags));
}

QString HitRatioText(uint64_t hits, uint64_t misses) {
  if (hits + misses == 0) return QString::fromUtf8("—");
  return QString("%1 %").arg(100.0 * double(hits) / double(hits + misses), 0, 'f', 1);
}

}  // namespace rcgui
