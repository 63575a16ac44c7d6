// ClassifyDjangoKey on keys the real Django made (printed by
// tests/test_django_keys.py with REGIONCACHE_PRINT_KEYS=1, Django 5.2: the
// same shapes since 4.2), on the shapes' edges, and on damaged keys.
#include "regioncache/django_keys.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace regioncache {
namespace {

using K = DjangoKeyKind;

struct PageCase {
  const char* key;
  const char *page_prefix, *method, *url_hash, *header_hash, *language, *time_zone;
};

TEST(DjangoKeys, CachedPagesFromDjango) {
  const PageCase cases[] = {
      {":1:views.decorators.cache.cache_page..GET.3f846679e786c95ad1b4411863a538f4."
       "d41d8cd98f00b204e9800998ecf8427e.fr.Europe/Paris",
       "", "GET", "3f846679e786c95ad1b4411863a538f4", "d41d8cd98f00b204e9800998ecf8427e", "fr", "Europe/Paris"},
      {":1:views.decorators.cache.cache_page..HEAD.0493fcb0812dbe4aaf91e2aaeffbd94e."
       "d41d8cd98f00b204e9800998ecf8427e.fr.Europe/Paris",
       "", "HEAD", "0493fcb0812dbe4aaf91e2aaeffbd94e", "d41d8cd98f00b204e9800998ecf8427e", "fr", "Europe/Paris"},
      // A key_prefix with a dot (cache_page(key_prefix="shop.v2")).
      {":1:views.decorators.cache.cache_page.shop.v2.GET.9c4b5631f7b32331f4c978c4f9d486fb."
       "bf165eabd6fe4626c2fd06d177bd3e93.en-us.Europe/Paris",
       "shop.v2", "GET", "9c4b5631f7b32331f4c978c4f9d486fb", "bf165eabd6fe4626c2fd06d177bd3e93", "en-us",
       "Europe/Paris"},
      // USE_I18N off, USE_TZ on: the time zone alone; both off: nothing.
      {":1:views.decorators.cache.cache_page..GET.fb6c6ef3af2ea9947df4404d598dcf12."
       "4792b9bac48c3f0441b0d9b0d7af8f2c.UTC",
       "", "GET", "fb6c6ef3af2ea9947df4404d598dcf12", "4792b9bac48c3f0441b0d9b0d7af8f2c", "", "UTC"},
      {":1:views.decorators.cache.cache_page..GET.753f1b85491c0dd1631fb340e45086d4."
       "4792b9bac48c3f0441b0d9b0d7af8f2c",
       "", "GET", "753f1b85491c0dd1631fb340e45086d4", "4792b9bac48c3f0441b0d9b0d7af8f2c", "", ""},
      // The issue's own example.
      {":1:views.decorators.cache.cache_page..GET.dbde1adc785edb0d9d10922e5a874047."
       "d41d8cd98f00b204e9800998ecf8427e.en-us.America/Chicago",
       "", "GET", "dbde1adc785edb0d9d10922e5a874047", "d41d8cd98f00b204e9800998ecf8427e", "en-us",
       "America/Chicago"},
  };
  for (const PageCase& c : cases) {
    const DjangoKey k = ClassifyDjangoKey(c.key);
    EXPECT_EQ(k.kind, K::kPage) << c.key;
    EXPECT_TRUE(k.versioned);
    EXPECT_EQ(k.prefix, "");
    EXPECT_EQ(k.version, 1);
    EXPECT_EQ(k.page_prefix, c.page_prefix) << c.key;
    EXPECT_EQ(k.method, c.method) << c.key;
    EXPECT_EQ(k.url_hash, c.url_hash) << c.key;
    EXPECT_EQ(k.header_hash, c.header_hash) << c.key;
    EXPECT_EQ(k.language, c.language) << c.key;
    EXPECT_EQ(k.time_zone, c.time_zone) << c.key;
  }
}

TEST(DjangoKeys, HeaderListsFromDjango) {
  DjangoKey k = ClassifyDjangoKey(
      ":1:views.decorators.cache.cache_header..3f846679e786c95ad1b4411863a538f4.en-us.Europe/Paris");
  EXPECT_EQ(k.kind, K::kPageHeaders);
  EXPECT_EQ(k.url_hash, "3f846679e786c95ad1b4411863a538f4");
  EXPECT_EQ(k.page_prefix, "");
  EXPECT_EQ(k.method, "");
  EXPECT_EQ(k.language, "en-us");
  EXPECT_EQ(k.time_zone, "Europe/Paris");
  k = ClassifyDjangoKey(
      ":1:views.decorators.cache.cache_header.shop.v2.9c4b5631f7b32331f4c978c4f9d486fb.en-us.Europe/Paris");
  EXPECT_EQ(k.kind, K::kPageHeaders);
  EXPECT_EQ(k.page_prefix, "shop.v2");
  k = ClassifyDjangoKey(":1:views.decorators.cache.cache_header..753f1b85491c0dd1631fb340e45086d4");
  EXPECT_EQ(k.kind, K::kPageHeaders);
  EXPECT_EQ(k.time_zone, "");
  k = ClassifyDjangoKey(":1:views.decorators.cache.cache_header..fb6c6ef3af2ea9947df4404d598dcf12.UTC");
  EXPECT_EQ(k.time_zone, "UTC");
  EXPECT_EQ(k.language, "");
}

TEST(DjangoKeys, FragmentsSessionsFunctionsFromDjango) {
  DjangoKey k = ClassifyDjangoKey(":1:template.cache.side.bar.185c4197b3d45ed4bfe7e93678b9b84e");
  EXPECT_EQ(k.kind, K::kFragment);
  EXPECT_EQ(k.name, "side.bar");
  EXPECT_EQ(k.vary_hash, "185c4197b3d45ed4bfe7e93678b9b84e");

  k = ClassifyDjangoKey(":1:django.contrib.sessions.cachef3nrdn4yp093dxksr1mrpmb9hmim8mdm");
  EXPECT_EQ(k.kind, K::kSession);
  EXPECT_EQ(k.engine, "cache");
  EXPECT_EQ(k.session_key, "f3nrdn4yp093dxksr1mrpmb9hmim8mdm");
  k = ClassifyDjangoKey(":1:django.contrib.sessions.cached_dbt0mvwr4iij8d2dq9ienxghkb04f4g7bd");
  EXPECT_EQ(k.kind, K::kSession);
  EXPECT_EQ(k.engine, "cached_db");
  EXPECT_EQ(k.session_key, "t0mvwr4iij8d2dq9ienxghkb04f4g7bd");

  k = ClassifyDjangoKey(":1:test_django_keys.profile(user_id=42,full=False)");
  EXPECT_EQ(k.kind, K::kFunction);
  EXPECT_EQ(k.name, "test_django_keys.profile");
  EXPECT_EQ(k.arguments, "user_id=42,full=False");
  EXPECT_FALSE(k.lock);
  k = ClassifyDjangoKey(":1:test_django_keys.Shop.price(sku='A-1')");
  EXPECT_EQ(k.name, "test_django_keys.Shop.price");
  EXPECT_EQ(k.arguments, "sku='A-1'");
  k = ClassifyDjangoKey(":1:test_django_keys.profile(user_id=7,full=False):regioncache-lock");
  EXPECT_EQ(k.kind, K::kFunction);
  EXPECT_TRUE(k.lock);
  EXPECT_EQ(k.arguments, "user_id=7,full=False");
  k = ClassifyDjangoKey(":1:catalogue#274dd56bd21c2eec8dc8914af70d427a97801f84");
  EXPECT_EQ(k.kind, K::kFunction);
  EXPECT_EQ(k.name, "catalogue");
  EXPECT_EQ(k.args_hash, "274dd56bd21c2eec8dc8914af70d427a97801f84");
  EXPECT_EQ(k.arguments, "");
  k = ClassifyDjangoKey(":1:f()");
  EXPECT_EQ(k.kind, K::kFunction);
  EXPECT_EQ(k.arguments, "");
}

TEST(DjangoKeys, PrefixAndVersion) {
  DjangoKey k = ClassifyDjangoKey("shop:eu:12:template.cache.menu.d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_TRUE(k.versioned);
  EXPECT_EQ(k.prefix, "shop:eu");
  EXPECT_EQ(k.version, 12);
  EXPECT_EQ(k.kind, K::kFragment);
  k = ClassifyDjangoKey("p:-2:x");
  EXPECT_EQ(k.version, -2);
  EXPECT_EQ(k.key, "x");
  k = ClassifyDjangoKey("p:2:");
  EXPECT_TRUE(k.versioned);
  EXPECT_EQ(k.key, "");
  EXPECT_EQ(k.kind, K::kPlain);
  // Another KEY_FUNCTION: no head, the kinds are still found.
  k = ClassifyDjangoKey("template.cache.menu.d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_FALSE(k.versioned);
  EXPECT_EQ(k.kind, K::kFragment);
  EXPECT_EQ(k.key, "template.cache.menu.d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(ClassifyDjangoKey("p:1x:y").versioned, false);
  EXPECT_EQ(ClassifyDjangoKey("p::y").versioned, false);
}

TEST(DjangoKeys, PlainKeysFromDjango) {
  for (const char* key :
       {":1:hello", ":1:user:42", ":1:a b(c)", ":1:views.decorators.cache.cache_page.nothing",
        ":1:template.cache.x.short", ":1:django.contrib.sessions.cacheNOT-A-KEY"}) {
    DjangoKey k = ClassifyDjangoKey(key);
    EXPECT_EQ(k.kind, K::kPlain) << key;
    EXPECT_EQ(k.version, 1) << key;
    EXPECT_EQ(std::string(":1:") + std::string(k.key), key);
    EXPECT_EQ(k.name, "") << key;
  }
}

TEST(DjangoKeys, DamagedAndTruncatedKeysArePlain) {
  const std::string page =
      ":1:views.decorators.cache.cache_page..GET.3f846679e786c95ad1b4411863a538f4."
      "d41d8cd98f00b204e9800998ecf8427e.fr.Europe/Paris";
  // Every truncation short of the second hash is plain; past it, the locale is cut.
  const size_t hashes_end = page.find(".fr.");
  for (size_t n = 0; n < page.size(); ++n) {
    DjangoKey k = ClassifyDjangoKey(std::string_view(page).substr(0, n));
    if (n < hashes_end) {
      EXPECT_EQ(k.kind, K::kPlain) << n;
    } else if (n == hashes_end + 1 || n == hashes_end + 4) {
      EXPECT_EQ(k.kind, K::kPlain) << n;  // "…hash." and "…hash.fr.": an empty part
    } else {
      EXPECT_EQ(k.kind, K::kPage) << n;
    }
  }
  // Upper-case hex, a lower-case method, a short hash: not Django's.
  EXPECT_EQ(ClassifyDjangoKey(":1:views.decorators.cache.cache_page..GET.3F846679E786C95AD1B4411863A538F4."
                              "d41d8cd98f00b204e9800998ecf8427e").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:views.decorators.cache.cache_page..get.3f846679e786c95ad1b4411863a538f4."
                              "d41d8cd98f00b204e9800998ecf8427e").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:template.cache.x.d41d8cd98f00b204e9800998ecf8427").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:template.cache..d41d8cd98f00b204e9800998ecf8427e").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:f(x").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:(x)").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:f(x y)").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1:#274dd56bd21c2eec8dc8914af70d427a97801f84").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(":1::regioncache-lock").kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey(std::string_view("\0:1:\xff", 5)).kind, K::kPlain);
  EXPECT_EQ(ClassifyDjangoKey("").kind, K::kPlain);
}

TEST(DjangoKeys, LanguageOrTimeZone) {
  const std::string head =
      ":1:views.decorators.cache.cache_header..3f846679e786c95ad1b4411863a538f4.";
  for (const char* lang : {"en", "fr", "en-us", "zh-hans", "sr-latn", "ast"})
    EXPECT_EQ(ClassifyDjangoKey(head + lang).language, lang);
  for (const char* tz : {"UTC", "GMT", "Europe/Paris", "Etc/GMT+5", "EST5EDT", "America/Argentina/Salta"})
    EXPECT_EQ(ClassifyDjangoKey(head + tz).time_zone, tz);
}

// Random bytes, and random splices of real keys: never a crash, and every
// part is a piece of the key given (the views point into it).
TEST(DjangoKeys, FuzzedKeysStayInside) {
  const std::string pieces[] = {
      ":1:", "views.decorators.cache.cache_page.", "views.decorators.cache.cache_header.",
      "template.cache.", "django.contrib.sessions.cache", "GET", ".", "3f846679e786c95ad1b4411863a538f4",
      "(", ")", "#", "274dd56bd21c2eec8dc8914af70d427a97801f84", ":regioncache-lock", "fr", "UTC", "\xff"};
  std::mt19937 rng(14);
  for (int round = 0; round < 20000; ++round) {
    std::string key;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) key += pieces[rng() % std::size(pieces)];
    if (rng() % 4 == 0) key += static_cast<char>(rng() % 256);
    const DjangoKey k = ClassifyDjangoKey(key);
    const char* lo = key.data();
    const char* hi = key.data() + key.size();
    for (std::string_view part : {k.prefix, k.key, k.page_prefix, k.method, k.url_hash, k.header_hash,
                                  k.language, k.time_zone, k.name, k.vary_hash, k.arguments,
                                  k.args_hash, k.engine, k.session_key}) {
      if (part.empty() || part == "cache" || part == "cached_db") continue;
      ASSERT_TRUE(part.data() >= lo && part.data() + part.size() <= hi) << key;
    }
    EXPECT_FALSE(DjangoKeyKindName(k.kind).empty());
  }
}

TEST(DjangoKeys, Names) {
  EXPECT_EQ(DjangoKeyKindName(K::kPage), "page");
  EXPECT_EQ(DjangoKeyKindName(K::kPageHeaders), "page-headers");
  EXPECT_EQ(DjangoKeyKindLabel(K::kFragment), "template fragment");
  EXPECT_EQ(DjangoKeyKindLabel(K::kPlain), "plain");
}

}  // namespace
}  // namespace regioncache
