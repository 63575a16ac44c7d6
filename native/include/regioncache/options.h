// Parsing of store options given as text (Django OPTIONS values, stringified,
// or a JSON file's). Every error message names the option and the bad value.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "regioncache/status.h"

namespace regioncache {

class OptionReader {
 public:
  OptionReader(std::string region, const std::map<std::string, std::string>& options)
      : region_(std::move(region)), options_(options) {}

  // Bytes: "65536", "64MB", "1.5 GiB", "512k" (K/M/G/T = powers of 1024).
  Status Size(const char* name, uint64_t def, uint64_t* out);
  // A non-negative integer.
  Status UInt(const char* name, uint64_t def, uint64_t* out);
  // Seconds as a number ("0.5", "10"), returned in milliseconds.
  Status Millis(const char* name, int64_t def_ms, int64_t* out);
  // true/false/1/0/yes/no/on/off (case-insensitive; Python's True prints "True").
  Status Bool(const char* name, bool def, bool* out);
  // One of the given words.
  Status Choice(const char* name, std::set<std::string> allowed, std::string def,
                std::string* out);
  // After reading every known option: an error naming any option left unread
  // and the ones this store knows (those it asked for).
  Status CheckAllUsed() const;

 private:
  const std::string* Find(const char* name);
  Status Bad(const char* name, const std::string& value, const char* expected) const;

  std::string region_;
  const std::map<std::string, std::string>& options_;
  std::set<std::string> asked_;
};

// Exposed for tests and the Python layer.
bool ParseSize(std::string_view text, uint64_t* out);

}  // namespace regioncache
