// A Django page as @cache_page and the cache middleware store it: a pickled
// HttpResponse (or a subclass), read with the restricted pickle machine
// (pickle_reader.h) into status, reason, headers, charset and body. Nothing
// in the pickle is imported or called. A gzip or deflate body (GZipMiddleware)
// is unpacked with zlib up to a bound.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "regioncache/pickle_reader.h"
#include "regioncache/status.h"

namespace regioncache {

struct DjangoPage {
  bool found = false;      // a response object was found (maybe only part of it)
  bool complete = false;   // everything below was read; else `problems` says why not
  std::string class_name;  // "django.http.response.HttpResponse"
  int status = 0;          // 0: not read
  std::string reason;      // _reason_phrase, or the standard phrase of the status
  std::vector<std::pair<std::string, std::string>> headers;  // as Django writes them
  std::string charset;     // _charset, else Content-Type's charset, else "utf-8"
  std::string content_encoding;  // "gzip", "deflate" or "" (from the headers)
  std::string stored_body;  // the bytes of _container, joined
  std::string body;         // stored_body unpacked when content_encoding says so
  bool body_unpacked = false;
  std::vector<std::string> problems;  // what could not be read, and why
};

struct PageLimits {
  size_t max_body = size_t{64} << 20;  // bytes an unpacked body may reach
  pickle::Limits pickle;
};

// Reads a stored page. OK: the whole page was read. Otherwise *page holds
// what could be read (found says whether a response was seen at all) and the
// Status says why the rest could not: Corruption for a damaged pickle,
// InvalidArgument for a pickle that holds something other than a response.
Status ReadDjangoPage(std::string_view pickle, DjangoPage* page, const PageLimits& limits = {});

// The same, from a tree already read (tree.root, or tree.partial after a
// failed read; `why` is that failure).
Status PageFromTree(const pickle::Tree& tree, const Status& why, DjangoPage* page,
                    const PageLimits& limits = {});

// "OK", "Not Found" ... for a status code, "" when unknown.
const char* HttpReason(int status);

// Inflates gzip or zlib/raw deflate data up to max_out bytes.
Status Inflate(std::string_view data, std::string_view encoding, size_t max_out, std::string* out);

}  // namespace regioncache
