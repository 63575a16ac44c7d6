// The shapes recognised (Django 4.2 to 6.1; django/utils/cache.py,
// django/core/cache/utils.py, django/contrib/sessions/backends/cache*.py,
// and regioncache's keys.py and stampede.py):
//
//   full key    <KEY_PREFIX>:<version>:<key>   (the default KEY_FUNCTION)
//   page        views.decorators.cache.cache_page.<key_prefix>.<METHOD>.<md5 url>.<md5 vary>[.<lang>][.<tz>]
//   headers     views.decorators.cache.cache_header.<key_prefix>.<md5 url>[.<lang>][.<tz>]
//   fragment    template.cache.<name>.<md5 of vary_on>
//   session     django.contrib.sessions.cache<session key>, ...cached_db<session key>
//   function    <name>(<arguments>)  or  <name>#<sha256, 40 hex>   (+ ":regioncache-lock": its lock)
//
// A key_prefix or fragment name may hold dots, so the fixed-width hashes are
// found from the right. The language and time zone suffixes are there only
// with USE_I18N / USE_TZ: one suffix alone is a language if it looks like
// Django's language codes (lower case, "en-us"), else a time zone ("UTC",
// "Europe/Paris").
#include "regioncache/django_keys.h"

namespace regioncache {
namespace {

constexpr std::string_view kPageHead = "views.decorators.cache.cache_page.";
constexpr std::string_view kHeaderHead = "views.decorators.cache.cache_header.";
constexpr std::string_view kFragmentHead = "template.cache.";
constexpr std::string_view kSessionHead = "django.contrib.sessions.";
constexpr std::string_view kLockTail = ":regioncache-lock";

bool IsHex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }

// "<prefix>:<version>:<rest>": the first ":<digits>:" splits it.
bool SplitVersion(std::string_view full, DjangoKey* k) {
  for (size_t i = full.find(':'); i != std::string_view::npos; i = full.find(':', i + 1)) {
    size_t j = i + 1;
    if (j < full.size() && full[j] == '-') ++j;
    const size_t digits = j;
    int64_t v = 0;
    while (j < full.size() && IsDigit(full[j]) && j - digits < 18) v = v * 10 + (full[j++] - '0');
    if (j == digits || j >= full.size() || full[j] != ':') continue;
    k->versioned = true;
    k->prefix = full.substr(0, i);
    k->version = full[i + 1] == '-' ? -v : v;
    k->key = full.substr(j + 1);
    return true;
  }
  return false;
}

// Django's language codes as get_language() gives them: "en", "en-us", "zh-hans", "sr-latn".
bool LooksLikeLanguage(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsLower(s[i])) ++i;
  if (i < 2 || i > 3) return false;
  while (i < s.size()) {
    if (s[i] != '-' && s[i] != '_') return false;
    size_t j = ++i;
    while (i < s.size() && (IsLower(s[i]) || IsDigit(s[i]))) ++i;
    if (i == j) return false;
  }
  return true;
}

// The ".<lang>.<tz>" / ".<lang>" / ".<tz>" / "" after the hashes.
bool SplitLocale(std::string_view tail, DjangoKey* k) {
  if (tail.empty()) return true;
  if (tail[0] != '.' || tail.size() == 1) return false;
  tail.remove_prefix(1);
  const size_t dot = tail.find('.');
  if (dot == std::string_view::npos) {
    (LooksLikeLanguage(tail) ? k->language : k->time_zone) = tail;
    return true;
  }
  if (dot == 0 || dot + 1 == tail.size()) return false;
  k->language = tail.substr(0, dot);
  k->time_zone = tail.substr(dot + 1);
  return true;
}

// ".<32 hex>" at rest[p] followed by the end or a dot.
bool HashAt(std::string_view rest, size_t p) {
  return rest[p] == '.' && p + 33 <= rest.size() && IsHex(rest.substr(p + 1, 32), 32) &&
         (p + 33 == rest.size() || rest[p + 33] == '.');
}

bool IsMethod(std::string_view m) {
  if (m.empty() || m.size() > 16) return false;
  for (char c : m)
    if (c < 'A' || c > 'Z') return false;
  return true;
}

// rest = "<key_prefix>.<METHOD>.<md5>.<md5>[locale]"
bool ParsePage(std::string_view rest, DjangoKey* k) {
  // The last ".<hex32>.<hex32>" pair preceded by ".<METHOD>" (a locale holds no hash).
  for (size_t p = rest.size(); p-- > 0;) {
    if (p < 33 || !HashAt(rest, p) || !HashAt(rest, p - 33)) continue;
    const size_t first = p - 33;  // the url hash's dot
    const size_t method_dot = rest.rfind('.', first - 1);
    if (first == 0 || method_dot == std::string_view::npos) continue;
    const std::string_view method = rest.substr(method_dot + 1, first - method_dot - 1);
    if (!IsMethod(method)) continue;
    DjangoKey parts = *k;
    if (!SplitLocale(rest.substr(p + 33), &parts)) return false;
    parts.page_prefix = rest.substr(0, method_dot);
    parts.method = method;
    parts.url_hash = rest.substr(first + 1, 32);
    parts.header_hash = rest.substr(p + 1, 32);
    parts.kind = DjangoKeyKind::kPage;
    *k = parts;
    return true;
  }
  return false;
}

// rest = "<key_prefix>.<md5>[locale]"
bool ParseHeaders(std::string_view rest, DjangoKey* k) {
  for (size_t p = rest.size(); p-- > 0;) {
    if (!HashAt(rest, p)) continue;
    DjangoKey parts = *k;
    if (!SplitLocale(rest.substr(p + 33), &parts)) return false;
    parts.page_prefix = rest.substr(0, p);
    parts.url_hash = rest.substr(p + 1, 32);
    parts.kind = DjangoKeyKind::kPageHeaders;
    *k = parts;
    return true;
  }
  return false;
}

bool ParseFragment(std::string_view rest, DjangoKey* k) {
  if (rest.size() < 34 || rest[rest.size() - 33] != '.' || !IsHex(rest.substr(rest.size() - 32), 32))
    return false;
  k->name = rest.substr(0, rest.size() - 33);
  k->vary_hash = rest.substr(rest.size() - 32);
  k->kind = DjangoKeyKind::kFragment;
  return true;
}

bool ParseSession(std::string_view rest, DjangoKey* k) {
  for (std::string_view engine : {std::string_view("cached_db"), std::string_view("cache")}) {
    if (rest.substr(0, engine.size()) != engine) continue;
    const std::string_view id = rest.substr(engine.size());
    if (id.empty() || id.size() > 64) return false;
    for (char c : id)
      if (!IsLower(c) && !IsDigit(c)) return false;
    k->engine = engine;
    k->session_key = id;
    k->kind = DjangoKeyKind::kSession;
    return true;
  }
  return false;
}

// keys.py: only printable ASCII without spaces; a name starts as a Python
// identifier does (a namespace= name too, in practice).
bool NameOk(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  const char c0 = name[0];
  if (!(IsLower(c0) || (c0 >= 'A' && c0 <= 'Z') || c0 == '_')) return false;
  for (char c : name)
    if (c < 33 || c > 126 || c == '(' || c == ')' || c == '#') return false;
  return true;
}

bool ParseFunction(std::string_view rest, DjangoKey* k) {
  if (rest.size() >= kLockTail.size() && rest.substr(rest.size() - kLockTail.size()) == kLockTail) {
    if (!ParseFunction(rest.substr(0, rest.size() - kLockTail.size()), k)) return false;
    k->lock = true;
    return true;
  }
  const size_t hash = rest.size() >= 41 ? rest.size() - 41 : std::string_view::npos;
  if (hash != std::string_view::npos && rest[hash] == '#' && IsHex(rest.substr(hash + 1), 40) &&
      NameOk(rest.substr(0, hash))) {
    k->name = rest.substr(0, hash);
    k->args_hash = rest.substr(hash + 1);
    k->kind = DjangoKeyKind::kFunction;
    return true;
  }
  const size_t open = rest.find('(');
  if (open == std::string_view::npos || rest.back() != ')' || !NameOk(rest.substr(0, open)))
    return false;
  for (char c : rest)
    if (c < 33 || c > 126) return false;
  k->name = rest.substr(0, open);
  k->arguments = rest.substr(open + 1, rest.size() - open - 2);
  k->kind = DjangoKeyKind::kFunction;
  return true;
}

bool StartsWith(std::string_view s, std::string_view head) { return s.substr(0, head.size()) == head; }

}  // namespace

DjangoKey ClassifyDjangoKey(std::string_view full_key) {
  DjangoKey k;
  if (!SplitVersion(full_key, &k)) k.key = full_key;
  const std::string_view key = k.key;
  bool found = false;
  if (StartsWith(key, kPageHead)) {
    found = ParsePage(key.substr(kPageHead.size()), &k);
  } else if (StartsWith(key, kHeaderHead)) {
    found = ParseHeaders(key.substr(kHeaderHead.size()), &k);
  } else if (StartsWith(key, kFragmentHead)) {
    found = ParseFragment(key.substr(kFragmentHead.size()), &k);
  } else if (StartsWith(key, kSessionHead)) {
    found = ParseSession(key.substr(kSessionHead.size()), &k);
  }
  if (!found && !ParseFunction(key, &k)) {
    DjangoKey plain;
    plain.versioned = k.versioned;
    plain.prefix = k.prefix;
    plain.version = k.version;
    plain.key = k.key;
    return plain;
  }
  return k;
}

std::string_view DjangoKeyKindName(DjangoKeyKind kind) {
  switch (kind) {
    case DjangoKeyKind::kPage: return "page";
    case DjangoKeyKind::kPageHeaders: return "page-headers";
    case DjangoKeyKind::kFragment: return "fragment";
    case DjangoKeyKind::kSession: return "session";
    case DjangoKeyKind::kFunction: return "function";
    case DjangoKeyKind::kPlain: break;
  }
  return "plain";
}

std::string_view DjangoKeyKindLabel(DjangoKeyKind kind) {
  switch (kind) {
    case DjangoKeyKind::kPage: return "cached page";
    case DjangoKeyKind::kPageHeaders: return "page headers";
    case DjangoKeyKind::kFragment: return "template fragment";
    case DjangoKeyKind::kSession: return "session";
    case DjangoKeyKind::kFunction: return "@region function";
    case DjangoKeyKind::kPlain: break;
  }
  return "plain";
}

}  // namespace regioncache
