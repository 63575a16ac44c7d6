// Unit tests of the core floor's small pieces on their own: glob matching,
// sizes and the option reader, Status and its message helpers, the decimal
// incr arithmetic, and the compression module.
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "core/compress.h"
#include "core/store_base.h"
#include "regioncache/glob.h"
#include "regioncache/options.h"
#include "regioncache/status.h"

namespace regioncache {
namespace {

// ---------------------------------------------------------------- glob --

// Pattern, key, and whether the one matches the other.
struct GlobCase {
  std::string_view pattern, text;
  bool matches;
};

TEST(GlobMatch, StarsQuestionMarksClassesAndEscapes) {
  const GlobCase cases[] = {
      {"", "", true},
      {"", "a", false},
      {"*", "", true},
      {"*", "anything at all", true},
      {":1:user:*", ":1:user:42", true},
      {":1:user:*", ":1:post:42", false},
      {"*:42", ":1:user:42", true},
      {"a*b*c", "a-b-b-c", true},
      {"a*b*c", "a-b-b-d", false},
      {"odd:1?", "odd:13", true},
      {"odd:1?", "odd:1", false},
      {"odd:1?", "odd:133", false},
      {"k?", "k\xff", true},  // byte-wise: any byte is one '?'
      {std::string_view("a\0*", 3), std::string_view("a\0bc", 4), true},
      // Classes, ranges, negation.
      {"k[abc]", "kb", true},
      {"k[abc]", "kd", false},
      {"k[a-c]9", "kc9", true},
      {"k[a-c]9", "kd9", false},
      {"k[!a-c]", "kd", true},
      {"k[!a-c]", "kb", false},
      {"k[^a]", "kz", true},
      {"k[]]", "k]", true},   // ']' first in a class is literal
      {"k[a-]", "k-", true},  // '-' before ']' is literal
      {"k[", "k[", true},     // unterminated: '[' is literal
      {"k[", "ka", false},
      // Escapes.
      {"k\\*", "k*", true},
      {"k\\*", "kx", false},
      {"k\\?", "k?", true},
  };
  for (const GlobCase& c : cases)
    EXPECT_EQ(GlobMatch(c.pattern, c.text), c.matches)
        << "pattern '" << c.pattern << "' on '" << c.text << "'";
}

TEST(GlobMatch, ManyStarsStayLinear) {
  // A pattern that makes a naive backtracking matcher exponential.
  std::string text(5000, 'a');
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*a*b", text));
  EXPECT_TRUE(GlobMatch("*a*a*a*a*a*a*a*a*a*a*a*", text));
}

// ---------------------------------------------------------------- sizes --

TEST(ParseSize, BytesAndUnitsOfPowersOf1024) {
  uint64_t n = 0;
  ASSERT_TRUE(ParseSize("65536", &n));
  EXPECT_EQ(n, 65536u);
  ASSERT_TRUE(ParseSize("64MB", &n));
  EXPECT_EQ(n, 64u << 20);
  ASSERT_TRUE(ParseSize("1.5 GiB", &n));
  EXPECT_EQ(n, 3ull << 29);
  ASSERT_TRUE(ParseSize("512k", &n));
  EXPECT_EQ(n, 512u << 10);
  ASSERT_TRUE(ParseSize("  2 tb ", &n));
  EXPECT_EQ(n, 2ull << 40);
  ASSERT_TRUE(ParseSize("7b", &n));
  EXPECT_EQ(n, 7u);
  ASSERT_TRUE(ParseSize("0", &n));
  EXPECT_EQ(n, 0u);
}

TEST(ParseSize, RefusesWhatIsNotASize) {
  uint64_t n = 12345;
  for (const char* bad : {"", "MB", "12XB", "-5", "1.5", "0.3KB", "1e3", "64 M B", "abc",
                          "99999999999T"}) {
    EXPECT_FALSE(ParseSize(bad, &n)) << bad;
  }
  EXPECT_EQ(n, 12345u);  // untouched on refusal
}

// -------------------------------------------------------- option reader --

TEST(OptionReader, ReadsEachTypeAndDefaults) {
  std::map<std::string, std::string> opts{{"SIZE", "8MB"},       {"COUNT", " 42 "},
                                          {"TIMEOUT", "0.25"},   {"FLAG", "True"},
                                          {"OFF", "off"},        {"MODE", "Recreate"}};
  OptionReader r("myregion", opts);
  // Each type, given and absent (absent options take their defaults).
  uint64_t size = 0, count = 0, absent = 0;
  ASSERT_TRUE(r.Size("SIZE", 1, &size).ok());
  EXPECT_EQ(size, 8u << 20);
  ASSERT_TRUE(r.Size("MAX_SIZE", 77, &absent).ok());
  EXPECT_EQ(absent, 77u);
  ASSERT_TRUE(r.UInt("COUNT", 1, &count).ok());
  EXPECT_EQ(count, 42u);
  int64_t ms = 0, absent_ms = 0;
  ASSERT_TRUE(r.Millis("TIMEOUT", 1, &ms).ok());
  EXPECT_EQ(ms, 250);
  ASSERT_TRUE(r.Millis("POLL", 1500, &absent_ms).ok());
  EXPECT_EQ(absent_ms, 1500);
  bool flag = false, off = true, absent_flag = false;
  ASSERT_TRUE(r.Bool("FLAG", false, &flag).ok());
  ASSERT_TRUE(r.Bool("OFF", true, &off).ok());
  ASSERT_TRUE(r.Bool("OTHER", true, &absent_flag).ok());
  EXPECT_TRUE(flag && !off && absent_flag) << flag << off << absent_flag;
  std::string mode, absent_mode;
  ASSERT_TRUE(r.Choice("MODE", {"error", "recreate"}, "error", &mode).ok());
  EXPECT_EQ(mode, "recreate");
  ASSERT_TRUE(r.Choice("KIND", {"a", "b"}, "b", &absent_mode).ok());
  EXPECT_EQ(absent_mode, "b");
  EXPECT_TRUE(r.CheckAllUsed().ok());
}

TEST(OptionReader, ErrorsNameRegionOptionAndValue) {
  struct Case {
    const char* name;
    const char* value;
    std::function<Status(OptionReader&)> read;
  } cases[] = {
      {"SIZE", "12XB", [](OptionReader& r) { uint64_t v; return r.Size("SIZE", 0, &v); }},
      {"COUNT", "-3", [](OptionReader& r) { uint64_t v; return r.UInt("COUNT", 0, &v); }},
      {"COUNT", "4x", [](OptionReader& r) { uint64_t v; return r.UInt("COUNT", 0, &v); }},
      {"TIMEOUT", "soon", [](OptionReader& r) { int64_t v; return r.Millis("TIMEOUT", 0, &v); }},
      {"TIMEOUT", "-1", [](OptionReader& r) { int64_t v; return r.Millis("TIMEOUT", 0, &v); }},
      {"FLAG", "maybe", [](OptionReader& r) { bool v; return r.Bool("FLAG", false, &v); }},
      {"MODE", "sideways",
       [](OptionReader& r) { std::string v; return r.Choice("MODE", {"error", "recreate"}, "", &v); }},
  };
  for (auto& c : cases) {
    std::map<std::string, std::string> opts{{c.name, c.value}};
    OptionReader r("myregion", opts);
    Status st = c.read(r);
    EXPECT_TRUE(st.IsInvalidArgument()) << c.name << "=" << c.value;
    EXPECT_NE(st.message().find("region 'myregion': "), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(c.name), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(std::string("'") + c.value + "'"), std::string::npos)
        << st.message();
  }
  // A choice's error lists what is allowed.
  std::map<std::string, std::string> opts{{"MODE", "sideways"}};
  OptionReader r("myregion", opts);
  std::string mode;
  Status st = r.Choice("MODE", {"error", "recreate"}, "error", &mode);
  EXPECT_NE(st.message().find("error, recreate"), std::string::npos) << st.message();
}

TEST(OptionReader, UnknownOptionIsNamed) {
  std::map<std::string, std::string> opts{{"SIZE", "1MB"}, {"COLOUR", "red"}};
  OptionReader r("myregion", opts);
  uint64_t size = 0;
  ASSERT_TRUE(r.Size("SIZE", 0, &size).ok());
  ASSERT_TRUE(r.Size("MAX_ITEM_SIZE", 0, &size).ok());  // asked for, not given: still known
  Status st = r.CheckAllUsed();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_EQ(st.message(),
            "region 'myregion': unknown option COLOUR (this store knows: MAX_ITEM_SIZE, SIZE)");
}

// --------------------------------------------------------------- status --

TEST(Status, EveryCodeHasItsOwnIsX) {
  struct Case {
    Status st;
    Status::Code code;
  } cases[] = {
      {Status::OK(), Status::Code::kOk},
      {Status::NotFound(), Status::Code::kNotFound},
      {Status::NotStored(), Status::Code::kNotStored},
      {Status::TooLarge("t"), Status::Code::kTooLarge},
      {Status::InvalidArgument("i"), Status::Code::kInvalidArgument},
      {Status::Corruption("c"), Status::Code::kCorruption},
      {Status::IOError("io"), Status::Code::kIOError},
      {Status::Unavailable("u"), Status::Code::kUnavailable},
      {Status::NotANumber(), Status::Code::kNotANumber},
      {Status::OutOfRange(), Status::Code::kOutOfRange},
      {Status::Cancelled(), Status::Code::kCancelled},
  };
  for (auto& c : cases) {
    const Status& s = c.st;
    SCOPED_TRACE(CodeName(c.code));
    EXPECT_EQ(s.code(), c.code);
    // Exactly one predicate holds: the one of its code.
    int holds = s.ok() + s.IsNotFound() + s.IsNotStored() + s.IsTooLarge() +
                s.IsInvalidArgument() + s.IsCorruption() + s.IsIOError() + s.IsUnavailable() +
                s.IsNotANumber() + s.IsOutOfRange() + s.IsCancelled();
    EXPECT_EQ(holds, 1);
    switch (c.code) {
      case Status::Code::kOk: EXPECT_TRUE(s.ok()); break;
      case Status::Code::kNotFound: EXPECT_TRUE(s.IsNotFound()); break;
      case Status::Code::kNotStored: EXPECT_TRUE(s.IsNotStored()); break;
      case Status::Code::kTooLarge: EXPECT_TRUE(s.IsTooLarge()); break;
      case Status::Code::kInvalidArgument: EXPECT_TRUE(s.IsInvalidArgument()); break;
      case Status::Code::kCorruption: EXPECT_TRUE(s.IsCorruption()); break;
      case Status::Code::kIOError: EXPECT_TRUE(s.IsIOError()); break;
      case Status::Code::kUnavailable: EXPECT_TRUE(s.IsUnavailable()); break;
      case Status::Code::kNotANumber: EXPECT_TRUE(s.IsNotANumber()); break;
      case Status::Code::kOutOfRange: EXPECT_TRUE(s.IsOutOfRange()); break;
      case Status::Code::kCancelled: EXPECT_TRUE(s.IsCancelled()); break;
    }
  }
  Status moved = Status::Corruption("old").WithMessage("new");
  EXPECT_TRUE(moved.IsCorruption());
  EXPECT_EQ(moved.message(), "new");
}

TEST(Status, RegionMessagesAndErrnoText) {
  EXPECT_EQ(RegionPrefix("sessions"), "region 'sessions': ");
  EXPECT_EQ(RegionMessage("sessions", "SIZE '12XB' is not a size"),
            "region 'sessions': SIZE '12XB' is not a size");
  Status st = ErrnoStatus("files", "cannot open /var/cache/x", ENOENT);
  EXPECT_TRUE(st.IsIOError());
  EXPECT_EQ(st.message(), std::string("region 'files': cannot open /var/cache/x: ") +
                              std::strerror(ENOENT) + " (errno " + std::to_string(ENOENT) + ")");
  EXPECT_EQ(ErrnoText(EACCES), std::string(std::strerror(EACCES)) + " (errno " +
                                   std::to_string(EACCES) + ")");
  EXPECT_NE(st.ToString().find("region 'files'"), std::string::npos) << st.ToString();
}

// ---------------------------------------------------------- decimal incr --

TEST(AddToDecimal, SumsAndTheirText) {
  DecimalSum sum;
  ASSERT_TRUE(AddToDecimal("41", 1, &sum).ok());
  EXPECT_EQ(sum.value, 42);
  EXPECT_EQ(sum.view(), "42");
  ASSERT_TRUE(AddToDecimal("42", -50, &sum).ok());
  EXPECT_EQ(sum.value, -8);
  EXPECT_EQ(sum.view(), "-8");
  ASSERT_TRUE(AddToDecimal("-9223372036854775807", -1, &sum).ok());
  EXPECT_EQ(sum.view(), "-9223372036854775808");
  ASSERT_TRUE(AddToDecimal("9223372036854775806", 1, &sum).ok());
  EXPECT_EQ(sum.view(), "9223372036854775807");
  ASSERT_TRUE(AddToDecimal("0", 0, &sum).ok());
  EXPECT_EQ(sum.view(), "0");
}

TEST(AddToDecimal, NotANumberAndOutOfRange) {
  DecimalSum sum;
  for (const char* text : {"", "-", "4x1", "abc", "1.5", "+3", " 4"})
    EXPECT_TRUE(AddToDecimal(text, 1, &sum).IsNotANumber()) << "'" << text << "'";
  // Decimal, but beyond int64 (stored, or after the addition).
  EXPECT_TRUE(AddToDecimal("123456789012345678901234567890", 1, &sum).IsOutOfRange());
  EXPECT_TRUE(AddToDecimal("-123456789012345678901234567890", 1, &sum).IsOutOfRange());
  EXPECT_TRUE(AddToDecimal("9223372036854775807", 1, &sum).IsOutOfRange());
  EXPECT_TRUE(AddToDecimal("-9223372036854775808", -1, &sum).IsOutOfRange());
}

// ---------------------------------------------------------- compression --

TEST(Compress, RoundTripOfWhatIsWorthIt) {
  std::string text;
  for (int i = 0; text.size() < 200000; ++i) text += "line " + std::to_string(i % 50) + "\n";
  ASSERT_GE(MaxCompressLevel(), 19);
  for (int level : {1, 3, MaxCompressLevel()}) {
    SCOPED_TRACE(level);
    std::string frame;
    ASSERT_TRUE(Compress(text, level, text.size(), &frame));
    EXPECT_LT(frame.size(), text.size() / 10);
    uint64_t size = 0;
    ASSERT_TRUE(FrameContentSize(frame, 1 << 20, &size));
    EXPECT_EQ(size, text.size());
    std::string back(size, '\0');
    std::string why;
    ASSERT_TRUE(Decompress(frame, back.data(), back.size(), &why)) << why;
    EXPECT_EQ(back, text);
  }
}

TEST(Compress, RefusesWhatIsNotWorthItAndDamagedFrames) {
  // Random bytes do not shrink: no frame within the caller's bound.
  std::mt19937_64 rng(5);
  std::string random(50000, '\0');
  for (auto& c : random) c = static_cast<char>(rng());
  std::string frame = "stale";
  EXPECT_FALSE(Compress(random, 3, random.size() - random.size() / 8, &frame));
  EXPECT_TRUE(frame.empty());
  std::string text(100000, 'z');
  ASSERT_TRUE(Compress(text, 3, text.size(), &frame));
  EXPECT_FALSE(Compress(text, 3, 2, &frame)) << "a frame longer than max_size";
  ASSERT_TRUE(Compress(text, 3, text.size(), &frame));
  // A frame that says more than the caller's limit.
  uint64_t size = 0;
  EXPECT_FALSE(FrameContentSize(frame, 1000, &size));
  EXPECT_FALSE(FrameContentSize("not a frame at all", 1 << 20, &size));
  // Decompressing into the wrong size, or a damaged frame: refused with a reason.
  std::string out(text.size() - 1, '\0'), why;
  EXPECT_FALSE(Decompress(frame, out.data(), out.size(), &why));
  EXPECT_FALSE(why.empty());
  std::string damaged = frame;
  damaged[damaged.size() / 2] ^= 0x55;
  damaged.resize(damaged.size() - 3);
  out.assign(text.size(), '\0');
  why.clear();
  EXPECT_FALSE(Decompress(damaged, out.data(), out.size(), &why));
  EXPECT_FALSE(why.empty());
}

}  // namespace
}  // namespace regioncache
