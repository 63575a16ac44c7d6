#include "regioncache/options.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace regioncache {
namespace {

std::string Lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Parses a non-negative decimal number with an optional fraction.
bool ParseNumber(std::string_view s, double* out, size_t* used) {
  size_t i = 0;
  bool digits = false;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
  }
  if (!digits) return false;
  std::string num(s.substr(0, i));
  char* end = nullptr;
  *out = std::strtod(num.c_str(), &end);
  *used = i;
  return end == num.c_str() + num.size() && std::isfinite(*out);
}

}  // namespace

bool ParseSize(std::string_view text, uint64_t* out) {
  std::string_view s = Trim(text);
  double n = 0;
  size_t used = 0;
  if (!ParseNumber(s, &n, &used)) return false;
  std::string unit = Lower(Trim(s.substr(used)));
  double mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else return false;
  double v = n * mult;
  if (v >= 18446744073709551615.0 || v != std::floor(v)) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

const std::string* OptionReader::Find(const char* name) {
  asked_.insert(name);  // an option asked for is one this store knows
  auto it = options_.find(name);
  return it == options_.end() ? nullptr : &it->second;
}

Status OptionReader::Bad(const char* name, const std::string& value, const char* expected) const {
  return Status::InvalidArgument(RegionMessage(region_, std::string("option ") + name + "='" +
                                                            value + "' is not " + expected));
}

Status OptionReader::Size(const char* name, uint64_t def, uint64_t* out) {
  const std::string* v = Find(name);
  if (!v) {
    *out = def;
    return Status::OK();
  }
  if (!ParseSize(*v, out))
    return Bad(name, *v, "a size (bytes, or a number with K, M, G or T, e.g. 64MB)");
  return Status::OK();
}

Status OptionReader::UInt(const char* name, uint64_t def, uint64_t* out) {
  const std::string* v = Find(name);
  if (!v) {
    *out = def;
    return Status::OK();
  }
  std::string_view s = Trim(*v);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size())
    return Bad(name, *v, "a non-negative integer");
  return Status::OK();
}

Status OptionReader::Millis(const char* name, int64_t def_ms, int64_t* out) {
  const std::string* v = Find(name);
  if (!v) {
    *out = def_ms;
    return Status::OK();
  }
  std::string_view s = Trim(*v);
  double n = 0;
  size_t used = 0;
  if (!ParseNumber(s, &n, &used) || used != s.size() || n > 1e9)
    return Bad(name, *v, "a non-negative number of seconds");
  *out = static_cast<int64_t>(std::llround(n * 1000));
  return Status::OK();
}

Status OptionReader::Bool(const char* name, bool def, bool* out) {
  const std::string* v = Find(name);
  if (!v) {
    *out = def;
    return Status::OK();
  }
  std::string s = Lower(Trim(*v));
  if (s == "1" || s == "true" || s == "yes" || s == "on") *out = true;
  else if (s == "0" || s == "false" || s == "no" || s == "off") *out = false;
  else return Bad(name, *v, "a boolean (True or False)");
  return Status::OK();
}

Status OptionReader::Choice(const char* name, std::set<std::string> allowed, std::string def,
                            std::string* out) {
  const std::string* v = Find(name);
  if (!v) {
    *out = std::move(def);
    return Status::OK();
  }
  std::string s = Lower(Trim(*v));
  if (!allowed.count(s)) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    return Bad(name, *v, ("one of: " + list).c_str());
  }
  *out = s;
  return Status::OK();
}

Status OptionReader::CheckAllUsed() const {
  for (const auto& [k, v] : options_) {
    if (!asked_.count(k)) {
      std::string known;
      for (const auto& u : asked_) known += (known.empty() ? "" : ", ") + u;
      return Status::InvalidArgument(RegionMessage(
          region_, "unknown option " + k + " (this store knows: " + known + ")"));
    }
  }
  return Status::OK();
}

}  // namespace regioncache
