// Peek and CompareAndSwap on memcached's meta protocol (memcached 1.6):
//   mg <key> v f t u        the value, its flags and remaining TTL, without
//                           bumping it in the LRU or marking it fetched
//   mg <key> v f c          the value, its flags and its CAS value
//   ms <key> <len> C<cas> F<flags> T<exptime>   store only if the CAS value
//   md <key> C<cas>                              (delete) is still the same
// A CAS value changes with every write to the item on the server, so the
// compare (here, on the unpacked bytes) and the write are one atomic step
// against every client of that server: any host, any library.
//
// libmemcached 1.x has no meta commands, so these speak the text protocol on
// TextConns of their own, a small pool a server: a connect per call would put
// a TCP handshake (and a TIME_WAIT socket) on every lock release. A pooled
// connection goes back only when its reply was read whole, and is checked
// (a zero-timeout poll) before reuse: a server that closed it, or restarted,
// costs no failed call. Each reply is due whole within POLL_TIMEOUT, the
// connect within CONNECT_TIMEOUT (TextConn), the same bounds as the
// libmemcached calls; failures count against the server's health as theirs.
#include <algorithm>
#include <charconv>

#include "memcached/mc_keys.h"
#include "memcached/mc_store.h"
#include "memcached/mc_text.h"
#include "regioncache/clock.h"
#include "regioncache/log.h"

namespace regioncache::mc {
namespace {

// A whole token as a number, nothing left over.
template <class T>
bool Number(std::string_view s, T* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

// Borrows a connected TextConn of server s for one call; gives it back to the
// pool when the call read its replies whole (else it was closed: dropped).
class MemcachedStore::TextLease {
 public:
  TextLease(MemcachedStore* st, int s) : st_(st), s_(s) {}
  ~TextLease() {
    if (tc_) st_->ReturnText(s_, std::move(tc_));
  }
  Status Open() {
    tc_ = st_->TakeText(s_);
    if (tc_) return Status::OK();
    auto fresh = std::make_unique<TextConn>(st_->region(), st_->cfg_.connect_timeout_ms,
                                            st_->cfg_.poll_timeout_ms);
    Status s = fresh->Connect(st_->servers_[s_]);
    if (!s.ok()) return st_->TextFailed(s_, s);
    fresh->generation = ForkGeneration();
    tc_ = std::move(fresh);
    return Status::OK();
  }
  TextConn* get() { return tc_.get(); }

 private:
  MemcachedStore* st_;
  int s_;
  std::unique_ptr<TextConn> tc_;
};

MemcachedStore::TextPool::~TextPool() {
  for (auto& sl : slot) delete sl.exchange(nullptr);
}

std::unique_ptr<TextConn> MemcachedStore::TakeText(int s) {
  TextPool& p = text_pools_[s];
  uint64_t gen = ForkGeneration();
  for (auto& sl : p.slot) {
    if (!sl.load(std::memory_order_relaxed)) continue;
    std::unique_ptr<TextConn> tc(sl.exchange(nullptr, std::memory_order_acquire));
    if (!tc) continue;
    // Made before a fork: the parent's connection. Dropping it closes only
    // this process's copy of the socket; the parent's stays open.
    if (tc->generation == gen && tc->Reusable()) return tc;
  }
  return nullptr;
}

void MemcachedStore::ReturnText(int s, std::unique_ptr<TextConn> tc) {
  if (!tc->Drained() || tc->generation != ForkGeneration()) return;
  for (auto& sl : text_pools_[s].slot) {
    TextConn* empty = nullptr;
    if (sl.compare_exchange_strong(empty, tc.get(), std::memory_order_release,
                                   std::memory_order_relaxed)) {
      tc.release();
      return;
    }
  }
}

Status MemcachedStore::TextFailed(int s, const Status& st) {
  CountFailure(s);
  return st.IsUnavailable() ? st : Status::Unavailable(st.message());
}

Status MemcachedStore::MetaGet(TextConn* tc, int s, std::string_view wire, std::string_view flags,
                               MetaItem* item, bool* no_meta) {
  *item = MetaItem{};
  *no_meta = false;
  std::string cmd;
  cmd.reserve(wire.size() + flags.size() + 8);
  cmd.append("mg ").append(wire).append(" ").append(flags).append("\r\n");
  Status st = tc->Send(cmd);
  if (!st.ok()) return TextFailed(s, st);
  std::string line;
  if (!(st = tc->ReadLine(&line)).ok()) return TextFailed(s, st);
  if (line == "EN") return Status::OK();
  if (line == "ERROR") {  // a server before 1.6: no meta commands
    *no_meta = true;
    return Status::OK();
  }
  auto garbled = [&](const std::string& what) {
    return TextFailed(s, tc->Garbled(what + " in the reply to mg of " + Quoted(wire)));
  };
  std::string_view rest;
  uint64_t len = 0;
  bool has_value = StartsWith(line, "VA ");
  if (has_value) {
    std::string_view after = std::string_view(line).substr(3);
    size_t sp = after.find(' ');
    if (!Number(after.substr(0, sp), &len)) return garbled(Quoted(line));
    if (len > value_limit_)
      return garbled("a value of " + std::to_string(len) + " bytes, more than MAX_ITEM_SIZE (" +
                     std::to_string(cfg_.max_item_size) + " bytes)");
    rest = sp == std::string_view::npos ? std::string_view() : after.substr(sp + 1);
  } else if (line == "HD" || StartsWith(line, "HD ")) {
    rest = std::string_view(line).substr(std::min<size_t>(line.size(), 3));
  } else {
    return garbled(Quoted(line));
  }
  // The flags asked for come back as tokens, each a letter and its value;
  // other letters (W, X, Z: recache hints) carry nothing asked for here.
  bool want_f = flags.find('f') != std::string_view::npos;
  bool want_t = flags.find('t') != std::string_view::npos;
  bool want_c = flags.find('c') != std::string_view::npos;
  bool seen_f = false, seen_t = false, seen_c = false;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    std::string_view tok = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    if (tok.empty()) continue;
    std::string_view v = tok.substr(1);
    bool ok = true;
    switch (tok[0]) {
      case 'f': ok = Number(v, &item->flags); seen_f = ok; break;
      case 't': ok = Number(v, &item->ttl_s) && item->ttl_s >= -1; seen_t = ok; break;
      case 'c': ok = Number(v, &item->cas); seen_c = ok; break;
      default: break;
    }
    if (!ok) return garbled("the token " + Quoted(tok));
  }
  if ((want_f && !seen_f) || (want_t && !seen_t) || (want_c && !seen_c) ||
      (flags.find('v') != std::string_view::npos) != has_value)
    return garbled(Quoted(line) + " (not the fields asked for: " + std::string(flags) + ")");
  if (has_value && !(st = tc->ReadBlock(static_cast<size_t>(len), &item->data)).ok())
    return TextFailed(s, st);
  item->found = true;
  return Status::OK();
}

Status MemcachedStore::Peek(std::string_view key, Value* out) {
  Routed rk;
  Status st = RouteKey(key, &rk);
  if (!st.ok()) return st;
  int s = rk.server;
  if (health_[s].no_meta.load(std::memory_order_relaxed)) return Get(key, out);
  MetaItem item;
  bool no_meta = false;
  {
    TextLease tl(this, s);
    if (!(st = tl.Open()).ok()) return st;
    if (!(st = MetaGet(tl.get(), s, rk.wire, "v f t u", &item, &no_meta)).ok()) return st;
  }
  MarkOk(s);
  if (no_meta) {
    health_[s].no_meta.store(true, std::memory_order_relaxed);
    Log(LogLevel::kWarning, region(), kind(),
        "memcached server " + servers_[s].name +
            " does not know the meta protocol (memcached 1.6): expiries read from it are "
            "unknown, and compare-and-swap cannot be done on it");
    return Get(key, out);
  }
  if (!item.found) return Status::NotFound();
  int64_t now = NowMs();
  if (!(st = Unpack(key, rk.mapped, item.data.data(), item.data.size(), item.flags, out)).ok())
    return st;
  // memcached keeps whole seconds: t is the seconds left (a live item has at
  // least 1; 0 is taken as "within the second").
  out->expires_ms = item.ttl_s < 0 ? kNever : now + std::max<int64_t>(item.ttl_s * 1000, 1);
  return Status::OK();
}

Status MemcachedStore::CompareAndSwap(std::string_view key, std::string_view expected,
                                      uint32_t expected_flags, const WriteItem* with) {
  Routed rk;
  Status st = RouteKey(key, &rk);
  if (!st.ok()) return st;
  int s = rk.server;
  std::string_view wire = rk.wire;
  // The replacement is packed as a write packs it (compression, envelope,
  // the size limit), before anything is sent.
  std::string buf, zbuf;
  std::string_view payload;
  uint32_t f = 0;
  if (with &&
      !(st = Pack(key, rk.mapped, with->data, with->flags, wire, &buf, &zbuf, &payload, &f)).ok())
    return st;
  auto cannot = [&] {
    return Status::InvalidArgument(Where() + "memcached server " + servers_[s].name +
                                   " does not know the meta protocol (memcached 1.6): it cannot "
                                   "compare and swap");
  };
  if (health_[s].no_meta.load(std::memory_order_relaxed)) return cannot();
  TextLease tl(this, s);
  if (!(st = tl.Open()).ok()) return st;
  TextConn* tc = tl.get();
  MetaItem item;
  bool no_meta = false;
  if (!(st = MetaGet(tc, s, wire, "v f c", &item, &no_meta)).ok()) return st;
  if (no_meta) {
    MarkOk(s);
    health_[s].no_meta.store(true, std::memory_order_relaxed);
    return cannot();
  }
  if (!item.found) {
    MarkOk(s);
    return Status::NotFound();
  }
  Value held;
  st = Unpack(key, rk.mapped, item.data.data(), item.data.size(), item.flags, &held);
  if (!st.ok()) {
    MarkOk(s);
    return st;  // NotFound: another key's entry under this wire key
  }
  if (held.flags != expected_flags || held.data != expected) {
    MarkOk(s);
    return Status::NotStored();
  }
  std::string head;
  const std::string cas = std::to_string(item.cas);
  if (with) {
    time_t exptime = ToExptime(with->expires_ms, NowMs());
    head.append("ms ").append(wire).append(" ").append(std::to_string(payload.size()));
    head.append(" C").append(cas).append(" F").append(std::to_string(f));
    head.append(" T").append(std::to_string(static_cast<int64_t>(exptime))).append("\r\n");
    st = tc->Send({head, payload, "\r\n"}, static_cast<int64_t>(payload.size() >> 16));
  } else {
    head.append("md ").append(wire).append(" C").append(cas).append("\r\n");
    st = tc->Send(head);
  }
  if (!st.ok()) return TextFailed(s, st);
  std::string line;
  if (!(st = tc->ReadLine(&line)).ok()) return TextFailed(s, st);
  // HD: done (ST/DE: the same in the meta protocol's first 1.6 releases);
  // EX: written by someone since the mg; NF: gone since; NS: not stored.
  std::string_view code = std::string_view(line).substr(0, line.find(' '));
  if (code == "HD" || code == "ST" || code == "DE") {
    MarkOk(s);
    return Status::OK();
  }
  if (code == "EX" || code == "NS") {
    MarkOk(s);
    return Status::NotStored();
  }
  if (code == "NF") {
    MarkOk(s);
    return Status::NotFound();
  }
  // The server refused the command: answered, but the connection is not
  // trusted for another request (it may still be reading a value).
  std::string what = "memcached server " + servers_[s].name + " refused " +
                     (with ? "ms" : "md") + " of " + Quoted(wire) + ": " + Quoted(line, 200);
  tc->Close();
  if (StartsWith(line, "SERVER_ERROR object too large"))
    return Status::TooLarge(Where() + what + "; nothing was stored");
  if (StartsWith(line, "SERVER_ERROR") || StartsWith(line, "CLIENT_ERROR") || line == "ERROR") {
    MarkOk(s);
    return Status::Unavailable(Where() + what);
  }
  return TextFailed(s, Status::Unavailable(Where() + "memcached server " + servers_[s].name +
                                           ": garbled reply: " + Quoted(line) + " to " +
                                           (with ? "ms" : "md") + " of " + Quoted(wire)));
}

}  // namespace regioncache::mc
