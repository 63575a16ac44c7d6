#include "regioncache/log.h"

#include <atomic>

namespace regioncache {
namespace {
std::atomic<LogSink> g_sink{nullptr};
}

void SetLogSink(LogSink sink) { g_sink.store(sink, std::memory_order_release); }

void Log(LogLevel level, std::string_view region, std::string_view store, std::string_view message) {
  LogSink sink = g_sink.load(std::memory_order_acquire);
  if (sink) sink(level, region, store, message);
}

}  // namespace regioncache
