// Status: the one error type of the core library. No exceptions cross the
// library boundary: every fallible call returns a Status, and the message of
// a failed one names the region and what was wrong, ready to show a user.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace regioncache {

class Status {
 public:
  enum class Code : int {
    kOk = 0,
    kNotFound,         // no live entry under that key (a miss, not an error)
    kNotStored,        // add() found a live entry, replace() found none
    kTooLarge,         // key plus value exceed the region's maximum item size
    kInvalidArgument,  // bad option, bad key, bad name
    kCorruption,       // a segment, file or reply that is not what it claims
    kIOError,          // the operating system refused (errno text included)
    kUnavailable,      // a server is down or timed out
    kNotANumber,       // incr/decr of a value that is not a stored integer
    kOutOfRange,       // incr/decr result does not fit in 64 bits
    kCancelled,        // a long operation stopped by its progress callback
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string msg = {}) { return {Code::kNotFound, std::move(msg)}; }
  static Status NotStored(std::string msg = {}) { return {Code::kNotStored, std::move(msg)}; }
  static Status TooLarge(std::string msg) { return {Code::kTooLarge, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) { return {Code::kInvalidArgument, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status IOError(std::string msg) { return {Code::kIOError, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
  static Status NotANumber(std::string msg = {}) { return {Code::kNotANumber, std::move(msg)}; }
  static Status OutOfRange(std::string msg = {}) { return {Code::kOutOfRange, std::move(msg)}; }
  static Status Cancelled(std::string msg = {}) { return {Code::kCancelled, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsNotStored() const { return code_ == Code::kNotStored; }
  bool IsTooLarge() const { return code_ == Code::kTooLarge; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }
  bool IsNotANumber() const { return code_ == Code::kNotANumber; }
  bool IsOutOfRange() const { return code_ == Code::kOutOfRange; }
  bool IsCancelled() const { return code_ == Code::kCancelled; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  // The same code with another message (e.g. one that adds a count).
  Status WithMessage(std::string msg) const { return {code_, std::move(msg)}; }
  // "TooLarge: region 'files': value of 2000000 bytes exceeds ..."
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), msg_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

const char* CodeName(Status::Code c);

// errno as text, for IOError messages: "No such file or directory (errno 2)".
std::string ErrnoText(int err);

// "region 'files': " — the prefix every message about a region starts with.
std::string RegionPrefix(std::string_view region);

// "region 'files': <what>", the whole message.
std::string RegionMessage(std::string_view region, std::string_view what);

// IOError "region 'files': <what>: <errno text>", for a refused system call.
Status ErrnoStatus(std::string_view region, std::string_view what, int err);

}  // namespace regioncache
