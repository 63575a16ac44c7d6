#include "regioncache/status.h"

#include <cstring>

namespace regioncache {

const char* CodeName(Status::Code c) {
  switch (c) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kNotFound: return "NotFound";
    case Status::Code::kNotStored: return "NotStored";
    case Status::Code::kTooLarge: return "TooLarge";
    case Status::Code::kInvalidArgument: return "InvalidArgument";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kIOError: return "IOError";
    case Status::Code::kUnavailable: return "Unavailable";
    case Status::Code::kNotANumber: return "NotANumber";
    case Status::Code::kOutOfRange: return "OutOfRange";
    case Status::Code::kCancelled: return "Cancelled";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  if (!msg_.empty()) {
    s += ": ";
    s += msg_;
  }
  return s;
}

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer (maybe not buf).
  const char* m = strerror_r(err, buf, sizeof buf);
  return std::string(m) + " (errno " + std::to_string(err) + ")";
}

std::string RegionPrefix(std::string_view region) {
  std::string s = "region '";
  s += region;
  s += "': ";
  return s;
}

std::string RegionMessage(std::string_view region, std::string_view what) {
  std::string s = RegionPrefix(region);
  s += what;
  return s;
}

Status ErrnoStatus(std::string_view region, std::string_view what, int err) {
  std::string s = RegionMessage(region, what);
  s += ": ";
  s += ErrnoText(err);
  return Status::IOError(std::move(s));
}

}  // namespace regioncache
