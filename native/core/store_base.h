// The skeleton the stores share (private to native/: the app, the Python
// module and the tests program against Store alone).
//
// StoreBase turns Set, Add and Replace into one Write(mode, ...) and gives
// the one message for an entry over the item size limit. AddToDecimal is the
// incr arithmetic on a stored decimal integer, for stores that add in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "regioncache/store.h"

namespace regioncache {

enum class WriteMode { kSet, kAdd, kReplace };

class StoreBase : public Store {
 public:
  Status Set(std::string_view key, std::string_view data, uint32_t flags,
             int64_t expires_ms) final {
    return Write(WriteMode::kSet, key, data, flags, expires_ms);
  }
  Status Add(std::string_view key, std::string_view data, uint32_t flags,
             int64_t expires_ms) final {
    return Write(WriteMode::kAdd, key, data, flags, expires_ms);
  }
  Status Replace(std::string_view key, std::string_view data, uint32_t flags,
                 int64_t expires_ms) final {
    return Write(WriteMode::kReplace, key, data, flags, expires_ms);
  }

 protected:
  using Store::Store;

  // kAdd: NotStored if a live entry exists; kReplace: NotStored if none does.
  virtual Status Write(WriteMode mode, std::string_view key, std::string_view data,
                       uint32_t flags, int64_t expires_ms) = 0;

  // TooLarge "region 'x': value of 2000000 bytes (key of 12 bytes) exceeds
  // the maximum item size of 1048576 bytes (OPTIONS MAX_ITEM_SIZE); nothing
  // was stored". stored_size, when not 0, is the size as the store would
  // keep it (compressed, wrapped) and is named too.
  Status TooLargeError(std::string_view key, uint64_t value_size, uint64_t max_item,
                       uint64_t stored_size = 0) const;
};

// The result of adding to a stored decimal integer: the sum and its text.
struct DecimalSum {
  int64_t value = 0;
  char text[24];
  size_t len = 0;
  std::string_view view() const { return {text, len}; }
};

// Adds delta to the decimal integer `stored` (optional '-', digits only).
// NotANumber if stored is not decimal digits; OutOfRange if it is but lies
// beyond int64, or if the sum does.
Status AddToDecimal(std::string_view stored, int64_t delta, DecimalSum* out);

}  // namespace regioncache
