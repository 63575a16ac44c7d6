// Text for figures shown in tables: sizes, times, durations, encodings.
#pragma once

#include <QString>
#include <cstdint>

namespace rcgui {

QString HumanBytes(uint64_t n);                 // "512 B", "1.5 KiB", "64.0 MiB"
QString EpochMsText(int64_t ms);                // local "2026-11-25 06:30:12"; "" for 0
QString TimeLeftText(int64_t expires_ms, int64_t now_ms);  // "never", "expired", "4m 03s"
QString ExpiryText(int64_t expires_ms, int64_t now_ms);    // "never" or absolute + time left
QString EncodingText(uint32_t flags);           // "str", "pickle", "unknown(7)"
QString HitRatioText(uint64_t hits, uint64_t misses);      // "87.5 %", "—" when no lookups

}  // namespace rcgui
