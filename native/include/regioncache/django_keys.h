// What a stored key is to Django: a full key as Django's default key
// function makes it ("<KEY_PREFIX>:<VERSION>:<key>") is split into its prefix
// and version, and the key itself is recognised as one of the kinds Django
// and regioncache make (django_keys.cc lists the shapes). Pure text work on
// the bytes given: no store, no allocation; the parts are views into the
// key, so they live as long as it does. Anything not recognised is kPlain.
#pragma once

#include <cstdint>
#include <string_view>

namespace regioncache {

enum class DjangoKeyKind : uint8_t {
  kPlain,        // anything else (a key set by hand, another key function)
  kPage,         // @cache_page or the cache middleware: a cached response
  kPageHeaders,  // the same: the list of headers a page varies on
  kFragment,     // {% cache %}: template.cache.<name>.<md5 of vary_on>
  kSession,      // django.contrib.sessions.cache / .cached_db
  kFunction,     // a regioncache @region function's result (or its stampede lock)
};
inline constexpr int kDjangoKeyKinds = 6;

struct DjangoKey {
  DjangoKeyKind kind = DjangoKeyKind::kPlain;
  bool versioned = false;   // "<prefix>:<version>:" was found; prefix and version are set
  std::string_view prefix;  // KEY_PREFIX (may be empty)
  int64_t version = 0;
  std::string_view key;  // the key as the caller gave it to the cache (all of it if !versioned)

  // kPage, kPageHeaders
  std::string_view page_prefix;  // cache_page(key_prefix=) / CACHE_MIDDLEWARE_KEY_PREFIX
  std::string_view method;       // kPage: GET or HEAD
  std::string_view url_hash;     // md5 of the absolute URL
  std::string_view header_hash;  // kPage: md5 of the request's values of the Vary headers
  std::string_view language;     // USE_I18N: the active language ("" if none)
  std::string_view time_zone;    // USE_TZ: the current time zone ("" if none)

  // kFragment: the fragment's name and the md5 of its vary_on values.
  // kFunction: the function's name (module.qualname or its namespace).
  std::string_view name;
  std::string_view vary_hash;
  // kFunction: the arguments as keys.py spells them ("user_id=42"), or, for
  // a key too long to read, empty with args_hash set (sha256, 40 hex digits).
  std::string_view arguments;
  std::string_view args_hash;
  bool lock = false;  // kFunction: the stampede lock of that call, not its value

  // kSession: "cache" or "cached_db" (the engine), and the session key.
  std::string_view engine;
  std::string_view session_key;
};

DjangoKey ClassifyDjangoKey(std::string_view full_key);

// "page", "page-headers", "fragment", "session", "function", "plain".
std::string_view DjangoKeyKindName(DjangoKeyKind kind);
// For the app: "cached page", "page headers", "template fragment", ...
std::string_view DjangoKeyKindLabel(DjangoKeyKind kind);

}  // namespace regioncache
