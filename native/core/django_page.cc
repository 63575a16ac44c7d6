// A stored Django page (see django_page.h). HttpResponse pickles its
// __dict__ (less the closers) as BUILD state: status_code, _reason_phrase,
// _charset, headers (a ResponseHeaders whose state holds _store:
// {lower name: (Name, value)}; `_headers` in Django before 3.2), cookies (a
// SimpleCookie of Morsels) and _container (a list of bytes).
#include "regioncache/django_page.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>

namespace regioncache {
namespace {

using pickle::Kind;
using pickle::kNoNode;
using pickle::Node;
using pickle::Tree;

bool Valid(const Tree& t, uint32_t n) { return n < t.nodes.size(); }

// The state dict of a response-like object: BUILD's state, or (for a read
// cut short) the dict that was being filled above it on the stack.
uint32_t StateOf(const Tree& t, uint32_t obj, uint32_t pending) {
  const Node& o = t.at(obj);
  uint32_t st = o.state;
  if (Valid(t, st) && t.at(st).kind == Kind::kTuple && !t.at(st).items.empty()) {
    st = t.at(st).items[0];  // (state, slotstate)
  }
  if (Valid(t, st) && t.at(st).kind == Kind::kDict) return st;
  return pending;
}

bool LooksLikeResponse(const Tree& t, uint32_t obj, uint32_t state) {
  if (!Valid(t, obj) || t.at(obj).kind != Kind::kObject) return false;
  if (Valid(t, state) &&
      (t.DictGet(state, "_container") != kNoNode || t.DictGet(state, "status_code") != kNoNode)) {
    return true;
  }
  const std::string cls = t.ClassName(obj);
  return cls.rfind("django.", 0) == 0 && cls.size() >= 8 &&
         cls.compare(cls.size() - 8, 8, "Response") == 0;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string HeaderValue(const DjangoPage& p, std::string_view lower_name) {
  for (const auto& [n, v] : p.headers) {
    if (Lower(n) == lower_name) return v;
  }
  return {};
}

std::string Text(const Tree& t, uint32_t n) {
  if (!Valid(t, n)) return {};
  const Node& x = t.at(n);
  if (x.kind == Kind::kStr || x.kind == Kind::kBytes) return x.text;
  if (x.kind == Kind::kInt) return x.big ? x.text : std::to_string(x.i);
  return {};
}

void ReadHeaders(const Tree& t, uint32_t state, DjangoPage* p) {
  uint32_t store = kNoNode;
  const uint32_t h = t.DictGet(state, "headers");
  if (Valid(t, h) && t.at(h).kind == Kind::kObject) {
    uint32_t hs = StateOf(t, h, kNoNode);
    store = t.DictGet(hs, "_store");
    if (store == kNoNode) p->problems.push_back("the headers object has no _store");
  } else {
    store = t.DictGet(state, "_headers");  // Django < 3.2
    if (store == kNoNode) p->problems.push_back("no headers were read");
  }
  if (!Valid(t, store) || t.at(store).kind != Kind::kDict) return;
  const auto& it = t.at(store).items;
  for (size_t k = 0; k + 1 < it.size(); k += 2) {
    const Node& pair = t.at(it[k + 1]);
    if ((pair.kind == Kind::kTuple || pair.kind == Kind::kList) && pair.items.size() == 2) {
      p->headers.emplace_back(Text(t, pair.items[0]), Text(t, pair.items[1]));
    } else {
      p->problems.push_back("header '" + Text(t, it[k]) + "' is not a (name, value) pair");
    }
  }
}

void ReadCookies(const Tree& t, uint32_t state, DjangoPage* p) {
  const uint32_t c = t.DictGet(state, "cookies");
  if (!Valid(t, c) || t.at(c).kind != Kind::kObject) return;
  const auto& items = t.at(c).dict_items;
  for (size_t k = 0; k + 1 < items.size(); k += 2) {
    const uint32_t morsel = items[k + 1];
    if (!Valid(t, morsel) || t.at(morsel).kind != Kind::kObject) continue;
    const uint32_t ms = StateOf(t, morsel, kNoNode);
    std::string line = Text(t, t.DictGet(ms, "key")) + "=" + Text(t, t.DictGet(ms, "coded_value"));
    const auto& attrs = t.at(morsel).dict_items;  // the Morsel's own dict items
    for (size_t j = 0; j + 1 < attrs.size(); j += 2) {
      const std::string name = Text(t, attrs[j]);
      const Node& v = t.at(attrs[j + 1]);
      if (v.kind == Kind::kBool && v.b) {
        line += "; " + name;
      } else {
        const std::string value = Text(t, attrs[j + 1]);
        if (!value.empty()) line += "; " + name + "=" + value;
      }
    }
    p->headers.emplace_back("Set-Cookie", line);
  }
}

std::string CharsetOf(const std::string& content_type) {
  const std::string lower = Lower(content_type);
  const size_t at = lower.find("charset=");
  if (at == std::string::npos) return {};
  std::string cs = content_type.substr(at + 8);
  cs = cs.substr(0, cs.find(';'));
  cs.erase(std::remove(cs.begin(), cs.end(), '"'), cs.end());
  while (!cs.empty() && cs.back() == ' ') cs.pop_back();
  return cs;
}

// status_code is a class attribute unless the view set another one.
int ClassStatus(const std::string& cls) {
  struct { const char* name; int status; } const kClasses[] = {
      {"HttpResponseRedirect", 302}, {"HttpResponsePermanentRedirect", 301},
      {"HttpResponseNotModified", 304}, {"HttpResponseBadRequest", 400},
      {"HttpResponseNotFound", 404}, {"HttpResponseForbidden", 403},
      {"HttpResponseNotAllowed", 405}, {"HttpResponseGone", 410},
      {"HttpResponseServerError", 500},
  };
  const std::string last = cls.substr(cls.rfind('.') + 1);
  for (const auto& c : kClasses) {
    if (last == c.name) return c.status;
  }
  return 200;  // HttpResponseBase.status_code
}

}  // namespace

const char* HttpReason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  return "";
}

Status Inflate(std::string_view data, std::string_view encoding, size_t max_out, std::string* out) {
  out->clear();
  auto attempt = [&](int window_bits) -> Status {
    out->clear();
    z_stream z{};
    if (inflateInit2(&z, window_bits) != Z_OK) return Status::Corruption("zlib refused to start");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(std::min<size_t>(data.size(), UINT32_MAX));
    char buf[16384];
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = inflate(&z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) break;
      const size_t got = sizeof buf - z.avail_out;
      if (out->size() + got > max_out) {
        out->append(buf, max_out - out->size());
        inflateEnd(&z);
        return Status::TooLarge("the " + std::string(encoding) + " body unpacks to more than " +
                                std::to_string(max_out) + " bytes; the first " +
                                std::to_string(max_out) + " are shown");
      }
      out->append(buf, got);
      if (rc == Z_OK && got == 0 && z.avail_in == 0) break;  // input ended early
    }
    const size_t consumed = data.size() - z.avail_in;
    inflateEnd(&z);
    if (rc == Z_STREAM_END) return Status::OK();
    return Status::Corruption("the " + std::string(encoding) + " body is damaged or cut short after " +
                              std::to_string(consumed) + " of " + std::to_string(data.size()) +
                              " bytes (" + std::to_string(out->size()) + " bytes unpacked)");
  };
  if (encoding == "gzip") return attempt(16 + MAX_WBITS);
  Status s = attempt(MAX_WBITS);  // HTTP deflate is zlib-wrapped; some servers send it raw
  if (s.IsCorruption() && out->empty()) s = attempt(-MAX_WBITS);
  return s;
}

Status PageFromTree(const Tree& whole, const Status& why, DjangoPage* p, const PageLimits& limits) {
  *p = DjangoPage();
  uint32_t obj = kNoNode, state = kNoNode;
  Tree salvage;  // a read cut short: the tree plus the state it was filling
  const Tree* tp = &whole;
  if (Valid(whole, whole.root)) {
    obj = whole.root;
    state = StateOf(whole, obj, kNoNode);
  } else {
    // The response is the lowest object on the stack; a dict right above it
    // is its state, and the str-keyed pairs above that (pushed for a
    // SETITEMS that never came) are its items so far.
    const auto& st = whole.partial;
    auto is_key = [&](uint32_t n) {
      const Node& k = whole.at(n);
      return k.kind == Kind::kStr && (k.text == "_container" || k.text == "status_code");
    };
    for (size_t k = 0; k + 1 < st.size(); ++k) {
      if (whole.at(st[k]).kind != Kind::kObject || whole.at(st[k + 1]).kind != Kind::kDict) continue;
      std::vector<uint32_t> items = whole.at(st[k + 1]).items;
      for (size_t j = k + 2; j + 1 < st.size() && whole.at(st[j]).kind == Kind::kStr; j += 2) {
        items.push_back(st[j]);
        items.push_back(st[j + 1]);
      }
      bool response = LooksLikeResponse(whole, st[k], kNoNode);
      for (size_t j = 0; j < items.size() && !response; j += 2) response = is_key(items[j]);
      if (!response) continue;
      salvage = whole;  // one copy, for the one response found
      Node pending = salvage.at(st[k + 1]);
      pending.items = std::move(items);
      salvage.nodes.push_back(std::move(pending));
      obj = st[k];
      state = StateOf(salvage, obj, static_cast<uint32_t>(salvage.nodes.size() - 1));
      tp = &salvage;
      break;
    }
  }
  const Tree& t = *tp;
  if (!LooksLikeResponse(t, obj, state)) {
    if (!why.ok()) return why;
    std::string what = Valid(t, t.root) ? pickle::KindName(t.at(t.root).kind) : "nothing";
    if (Valid(t, t.root) && t.at(t.root).kind == Kind::kObject) what += " of class " + t.ClassName(t.root);
    return Status::InvalidArgument("not a Django page: the pickle holds " + what);
  }
  p->found = true;
  p->class_name = t.ClassName(obj);
  if (!why.ok()) p->problems.push_back(why.message());
  if (!Valid(t, state)) {
    p->problems.push_back("the response's state (its attributes) was not read");
    return why.ok() ? Status::Corruption("pickle: the response has no state") : why;
  }
  const uint32_t sc = t.DictGet(state, "status_code");
  if (Valid(t, sc) && t.at(sc).kind == Kind::kInt && !t.at(sc).big) {
    p->status = static_cast<int>(t.at(sc).i);
  } else if (sc == kNoNode) {
    p->status = ClassStatus(p->class_name);  // a class attribute, not in the pickle
  } else {
    p->problems.push_back("the status code is not a small int");
  }
  const uint32_t rp = t.DictGet(state, "_reason_phrase");
  if (Valid(t, rp) && t.at(rp).kind == Kind::kStr) p->reason = t.at(rp).text;
  if (p->reason.empty()) p->reason = HttpReason(p->status);
  ReadHeaders(t, state, p);
  ReadCookies(t, state, p);
  const uint32_t cs = t.DictGet(state, "_charset");
  if (Valid(t, cs) && t.at(cs).kind == Kind::kStr) p->charset = t.at(cs).text;
  if (p->charset.empty()) p->charset = CharsetOf(HeaderValue(*p, "content-type"));
  if (p->charset.empty()) p->charset = "utf-8";

  const uint32_t c = t.DictGet(state, "_container");
  if (Valid(t, c) && t.at(c).kind == Kind::kList) {
    for (uint32_t part : t.at(c).items) {
      const Node& b = t.at(part);
      if (b.kind == Kind::kBytes || b.kind == Kind::kByteArray || b.kind == Kind::kStr) {
        p->stored_body += b.text;
      } else {
        p->problems.push_back(std::string("a part of the body is a ") + pickle::KindName(b.kind) +
                              ", not bytes");
      }
    }
  } else {
    p->problems.push_back("no body (_container) was read");
  }
  p->content_encoding = Lower(HeaderValue(*p, "content-encoding"));
  if (p->content_encoding == "gzip" || p->content_encoding == "deflate") {
    Status s = Inflate(p->stored_body, p->content_encoding, limits.max_body, &p->body);
    p->body_unpacked = !p->body.empty() || s.ok();
    if (!s.ok()) p->problems.push_back(s.message());
  } else {
    p->body = p->stored_body;
    if (!p->content_encoding.empty() && p->content_encoding != "identity") {
      p->problems.push_back("the body is encoded as '" + p->content_encoding +
                            "', which this reader does not unpack");
    }
  }
  p->complete = why.ok() && p->problems.empty();
  if (!why.ok()) return why;
  if (!p->problems.empty()) return Status::Corruption("page: " + p->problems.front());
  return Status::OK();
}

Status ReadDjangoPage(std::string_view data, DjangoPage* page, const PageLimits& limits) {
  Tree tree;
  const Status s = pickle::ReadPickle(data, &tree, limits.pickle);
  return PageFromTree(tree, s, page, limits);
}

}  // namespace regioncache
