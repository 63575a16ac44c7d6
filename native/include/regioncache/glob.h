// fnmatch-style matching of keys for inspection filters: '*' any run, '?' one
// byte, '[abc]' / '[a-z]' / '[!a]' a class, '\\' escapes. Byte-wise, so it
// works on any key.
#pragma once

#include <string_view>

namespace regioncache {

bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace regioncache
