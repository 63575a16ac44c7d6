#include "core/store_base.h"

#include <cctype>
#include <charconv>

#include "regioncache/codec.h"

namespace regioncache {

Status StoreBase::TooLargeError(std::string_view key, uint64_t value_size, uint64_t max_item,
                                uint64_t stored_size) const {
  std::string m = Where() + "value of " + std::to_string(value_size) + " bytes (";
  if (stored_size) m += std::to_string(stored_size) + " as stored, ";
  m += "key of " + std::to_string(key.size()) + " bytes) exceeds the maximum item size of " +
       std::to_string(max_item) + " bytes (OPTIONS MAX_ITEM_SIZE); nothing was stored";
  return Status::TooLarge(std::move(m));
}

Status AddToDecimal(std::string_view stored, int64_t delta, DecimalSum* out) {
  int64_t cur = 0;
  if (!ParseInt64(stored, &cur)) {
    // Decimal but beyond int64 is out of range; anything else is not a number.
    bool digits = !stored.empty() && !(stored.size() == 1 && stored[0] == '-');
    for (size_t i = 0; i < stored.size() && digits; ++i)
      digits = std::isdigit(static_cast<unsigned char>(stored[i])) || (i == 0 && stored[i] == '-');
    return digits ? Status::OutOfRange() : Status::NotANumber();
  }
  if (__builtin_add_overflow(cur, delta, &out->value)) return Status::OutOfRange();
  auto [end, ec] = std::to_chars(out->text, out->text + sizeof out->text, out->value);
  (void)ec;  // 24 bytes hold any int64
  out->len = static_cast<size_t>(end - out->text);
  return Status::OK();
}

}  // namespace regioncache
