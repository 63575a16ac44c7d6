// Diagnostics from the stores: what a store swallowed (a damaged entry
// treated as a miss, a rebuilt segment, a server that timed out) goes to one
// process-wide sink, never to stderr. The Python module installs a sink that
// hands the lines to Python's logging (logger "regioncache.<alias>"); the
// desktop app and the C++ tests install their own. Without a sink the lines
// are dropped.
#pragma once

#include <string_view>

namespace regioncache {

enum class LogLevel : int { kDebug = 10, kInfo = 20, kWarning = 30, kError = 40 };

// region: the region's name as the store knows it (Store::region()); store:
// its kind ("shm", "file", "memcached"); message: one line, no newline,
// without the "region 'x': " prefix (the sink adds what it wants).
//
// The sink may be called from any thread, with a store's locks held, and
// without the GIL: it must be quick, must not block on I/O, and must not
// call back into a store. Rate limiting is the sink's business.
using LogSink = void (*)(LogLevel level, std::string_view region, std::string_view store,
                         std::string_view message);

// Process-wide; set once at start-up (nullptr: drop every line).
void SetLogSink(LogSink sink);

void Log(LogLevel level, std::string_view region, std::string_view store, std::string_view message);

}  // namespace regioncache
