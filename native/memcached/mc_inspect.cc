// Inspection of a memcached region: listing through lru_crawler metadump,
// per-server stats, purge and clear of this region's keys. All of it speaks
// the text protocol on a TextConn of its own (one command at a time), never
// on the pooled libmemcached connections.
#include <algorithm>
#include <charconv>
#include <map>
#include <thread>

#include "memcached/mc_keys.h"
#include "memcached/mc_store.h"
#include "memcached/mc_text.h"
#include "regioncache/clock.h"
#include "regioncache/codec.h"
#include "regioncache/glob.h"
#include "regioncache/log.h"

namespace regioncache::mc {
namespace {

// Each inspection reply (stats, a batch of mg) is due whole within
// POLL_TIMEOUT, as a cache call's; a metadump has at least this long to
// start (the crawler walks the hash table) and then earns time by the bytes
// it sends (Dump).
constexpr int64_t kMinDumpStartMs = 1000;

std::string Hex(std::string_view s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

bool Unhex(std::string_view s, std::string* out) {
  if (s.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < s.size(); i += 2) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
    if (ec != std::errc() || p != s.data() + i + 2) return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

// "name=value" fields of a metadump line.
std::string_view Field(std::string_view line, std::string_view name) {
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) end = line.size();
    std::string_view tok = line.substr(pos, end - pos);
    if (tok.size() > name.size() && tok.substr(0, name.size()) == name && tok[name.size()] == '=')
      return tok.substr(name.size() + 1);
    pos = end + 1;
  }
  return {};
}

int64_t ToInt(std::string_view s, int64_t def = 0) {
  int64_t v = def;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() ? v : def;
}

uint64_t ToUInt(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// Reads "STAT name value" lines up to END.
Status ReadStats(TextConn* tc, std::map<std::string, std::string>* out) {
  std::string line;
  for (;;) {
    Status s = tc->ReadLine(&line);
    if (!s.ok()) return s;
    if (line == "END") return Status::OK();
    if (line.rfind("STAT ", 0) != 0)
      return tc->Garbled(Quoted(line) + " where a STAT line or END was due");
    size_t sp = line.find(' ', 5);
    if (sp == std::string::npos) continue;
    (*out)[line.substr(5, sp - 5)] = line.substr(sp + 1);
  }
}

}  // namespace

bool MemcachedStore::InRegion(std::string_view wire) const {
  if (cfg_.region_prefix.empty()) return true;
  if (wire.substr(0, cfg_.region_prefix.size()) == cfg_.region_prefix) return true;
  return LooksMapped(wire) && wire.substr(0, sanitized_prefix_.size()) == sanitized_prefix_;
}

Status MemcachedStore::Dump(int s, std::vector<Dumped>* out) {
  out->clear();
  TextConn tc(region(), cfg_.connect_timeout_ms, std::max(cfg_.poll_timeout_ms, kMinDumpStartMs));
  Status st = tc.Connect(servers_[s]);
  if (!st.ok()) return st;
  // A dump of a big server is long: it has the inspection timeout to start
  // and one more second for each 64 KB it sends, so a server that trickles
  // or never ends its dump is cut off, one that dumps at any real speed not.
  tc.SetMinRate(64 << 10);
  std::string line;
  // "metadump hash" walks the hash table: it sees every item. "metadump all"
  // (servers before 1.6) walks the LRUs and silently skips a class the
  // background crawler is walking at the time, so it is only the fallback.
  // One crawl at a time per server: BUSY means another crawl runs; wait.
  const char* command = "lru_crawler metadump hash\r\n";
  for (int attempt = 0;; ++attempt) {
    if (!(st = tc.Send(command)).ok()) return st;
    if (!(st = tc.ReadLine(&line)).ok()) return st;
    if (line.rfind("BUSY", 0) == 0 && attempt < 200) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if ((line.rfind("CLIENT_ERROR", 0) == 0 || line == "ERROR") &&
        std::string_view(command).find("hash") != std::string_view::npos) {
      command = "lru_crawler metadump all\r\n";
      continue;
    }
    break;
  }
  for (;;) {
    if (line == "END") return Status::OK();
    if (line.rfind("key=", 0) != 0)
      return Status::Unavailable(Where() + "memcached server " + servers_[s].name +
                                 " cannot list keys (lru_crawler metadump answered '" +
                                 Printable(line) +
                                 "'; memcached 1.4.31 or later with the LRU crawler is needed)");
    std::string wire = UrlDecode(Field(line, "key"));
    if (InRegion(wire)) {
      Dumped d;
      d.wire = std::move(wire);
      int64_t exp = ToInt(Field(line, "exp"), -1);
      d.expires_ms = exp <= 0 ? kNever : exp * 1000;
      d.accessed_ms = ToInt(Field(line, "la")) * 1000;
      d.size = ToUInt(Field(line, "size"));
      out->push_back(std::move(d));
    }
    if (!(st = tc.ReadLine(&line)).ok()) return st;
  }
}

namespace {

// How much one batch of "mg" requests may ask for. The batch is written
// whole before any reply is read, so its replies must fit in the socket
// buffers (else the server, blocked writing them, stops reading, and both
// ends wait until the timeout): about 32 bytes a reply line ("HD s<size>
// f<flags>"), plus the value for a mapped key (its envelope names the made
// key). 1000 plain keys make one batch.
constexpr size_t kBatchReplyBudget = 32 << 10;

size_t ReplyEstimate(const std::string& wire, uint64_t size) {
  return 32 + (LooksMapped(wire) ? static_cast<size_t>(std::min<uint64_t>(size, 1u << 30)) + 2 : 0);
}

}  // namespace

Status MemcachedStore::DisplayKeys(TextConn* tc, const Dumped* const* batch, size_t n,
                                   std::vector<Shown>* out) {
  out->assign(n, Shown{});
  if (n == 0) return Status::OK();
  std::string req;
  for (size_t i = 0; i < n; ++i) {
    req += "mg ";
    req += batch[i]->wire;
    req += LooksMapped(batch[i]->wire) ? " s f v\r\n" : " s f\r\n";
  }
  Status st = tc->Send(req);
  if (!st.ok()) return st;
  // memcached answers a connection's requests in order, one reply each.
  std::string line, value;
  for (size_t i = 0; i < n; ++i) {
    Shown& sh = (*out)[i];
    const std::string& wire = batch[i]->wire;
    if (!(st = tc->ReadLine(&line)).ok()) return st;
    if (line == "EN") {
      sh.gone = true;
      continue;
    }
    value.clear();
    if (line.rfind("VA ", 0) == 0) {
      size_t sp = line.find(' ', 3);
      std::string_view digits =
          std::string_view(line).substr(3, sp == std::string::npos ? sp : sp - 3);
      uint64_t len = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
      if (ec != std::errc() || p != digits.data() + digits.size() || digits.empty())
        return tc->Garbled(Quoted(line) + " for mg of " + Quoted(wire));
      if (len > cfg_.max_item_size)
        return tc->Garbled("mg of '" + Printable(wire) + "' claims a value of " +
                           std::to_string(len) + " bytes, more than MAX_ITEM_SIZE (" +
                           std::to_string(cfg_.max_item_size) + " bytes)");
      if (!(st = tc->ReadBlock(len, &value)).ok()) return st;
    } else if (line.rfind("HD", 0) != 0) {
      return tc->Garbled(Quoted(line) + " for mg of " + Quoted(wire));
    }
    std::string_view ls = line;
    size_t pos = 0;
    while ((pos = ls.find(' ', pos)) != std::string_view::npos) {
      ++pos;
      size_t end = ls.find(' ', pos);
      std::string_view tok = ls.substr(pos, end == std::string_view::npos ? end : end - pos);
      if (!tok.empty() && tok[0] == 's') sh.size = ToUInt(tok.substr(1));
      if (!tok.empty() && tok[0] == 'f') sh.flags = static_cast<uint32_t>(ToUInt(tok.substr(1)));
    }
    sh.key = wire;
    if (LooksMapped(wire) && (sh.flags & kFlagKeyEnvelope)) {
      std::string_view made, payload;
      if (UnwrapEnvelope(value, &made, &payload)) sh.key = std::string(made);
    }
    sh.flags &= ~kFlagKeyEnvelope;
  }
  return Status::OK();
}

// Cursor: "<server index>:<hex of the last wire key listed>". Each server's
// entries are listed in wire-key order, so a page starts after the cursor's
// key whatever the LRU did meanwhile. The entries a page still needs are
// looked up in batches (DisplayKeys): a page of 1000 plain keys is one
// round trip after the dump.
Status MemcachedStore::List(const ListOptions& opts, ListPage* page) {
  page->entries.clear();
  page->next_cursor.clear();
  page->scanned = 0;
  size_t first = 0;
  std::string after;
  if (!opts.cursor.empty()) {
    size_t colon = opts.cursor.find(':');
    uint64_t idx = 0;
    auto [p, ec] = std::from_chars(opts.cursor.data(), opts.cursor.data() + colon, idx);
    if (colon == std::string::npos || ec != std::errc() || idx >= servers_.size() ||
        !Unhex(std::string_view(opts.cursor).substr(colon + 1), &after))
      return Status::InvalidArgument(Where() + "bad listing cursor '" + opts.cursor + "'");
    first = idx;
  }
  size_t limit = std::max<size_t>(opts.limit, 1);
  int64_t now = NowMs();
  std::vector<const Dumped*> batch;
  std::vector<size_t> batch_pos;  // each batch entry's index in dump
  std::vector<Shown> shown;
  for (size_t s = first; s < servers_.size(); ++s) {
    std::vector<Dumped> dump;
    Status st = Dump(static_cast<int>(s), &dump);
    if (!st.ok()) return st;
    std::sort(dump.begin(), dump.end(),
              [](const Dumped& a, const Dumped& b) { return a.wire < b.wire; });
    // Listed already: everything up to the cursor's key.
    size_t start = 0;
    if (s == first && !after.empty())
      start = static_cast<size_t>(
          std::upper_bound(dump.begin(), dump.end(), after,
                           [](const std::string& k, const Dumped& d) { return k < d.wire; }) -
          dump.begin());
    TextConn tc(region(), cfg_.connect_timeout_ms,
                cfg_.poll_timeout_ms);
    bool connected = false;
    size_t i = start;
    while (i < dump.size()) {
      // A batch: as many live entries as the page still needs.
      batch.clear();
      batch_pos.clear();
      size_t need = limit - page->entries.size();
      size_t budget = 0;
      for (; i < dump.size() && batch.size() < need; ++i) {
        const Dumped& d = dump[i];
        if (!opts.include_expired && IsExpired(d.expires_ms, now)) continue;
        size_t est = ReplyEstimate(d.wire, d.size);
        if (!batch.empty() && budget + est > kBatchReplyBudget) break;
        budget += est;
        batch.push_back(&d);
        batch_pos.push_back(i);
      }
      if (batch.empty()) break;  // only expired entries were left
      if (!connected) {
        if (!(st = tc.Connect(servers_[s])).ok()) return st;
        connected = true;
      }
      if (!(st = DisplayKeys(&tc, batch.data(), batch.size(), &shown)).ok()) return st;
      for (size_t j = 0; j < batch.size(); ++j) {
        Shown& sh = shown[j];
        if (sh.gone) continue;
        if (!opts.glob.empty() && !GlobMatch(opts.glob, sh.key)) continue;
        EntryInfo e;
        e.key = std::move(sh.key);
        e.value_size = sh.size;
        e.flags = sh.flags;
        e.expires_ms = batch[j]->expires_ms;
        e.accessed_ms = batch[j]->accessed_ms;
        page->entries.push_back(std::move(e));
        if (page->entries.size() >= limit) {
          page->scanned += batch_pos[j] + 1 - start;
          page->next_cursor = std::to_string(s) + ":" + Hex(batch[j]->wire);
          return Status::OK();
        }
      }
    }
    page->scanned += dump.size() - start;
  }
  return Status::OK();
}

Status MemcachedStore::PurgeMatching(std::string_view glob, uint64_t* removed,
                                     const Progress& progress) {
  *removed = 0;
  bool all = glob.empty() || glob == "*";
  std::vector<const Dumped*> batch;
  std::vector<Shown> shown;
  for (size_t s = 0; s < servers_.size(); ++s) {
    std::vector<Dumped> dump;
    Status st = Dump(static_cast<int>(s), &dump);
    if (!st.ok()) return st;
    std::vector<std::string> doomed;
    if (all) {
      for (Dumped& d : dump) doomed.push_back(std::move(d.wire));
    } else {
      // Plain keys are matched as dumped; mapped keys need their envelope,
      // fetched in batches.
      TextConn tc(region(), cfg_.connect_timeout_ms,
                  cfg_.poll_timeout_ms);
      bool connected = false;
      auto flush = [&]() -> Status {
        if (batch.empty()) return Status::OK();
        if (!connected) {
          Status c = tc.Connect(servers_[s]);
          if (!c.ok()) return c;
          connected = true;
        }
        Status r = DisplayKeys(&tc, batch.data(), batch.size(), &shown);
        if (!r.ok()) return r;
        for (size_t j = 0; j < batch.size(); ++j)
          if (!shown[j].gone && GlobMatch(glob, shown[j].key)) doomed.push_back(batch[j]->wire);
        batch.clear();
        return Status::OK();
      };
      size_t budget = 0;
      for (const Dumped& d : dump) {
        if (!LooksMapped(d.wire)) {
          if (GlobMatch(glob, d.wire)) doomed.push_back(d.wire);
          continue;
        }
        size_t est = ReplyEstimate(d.wire, d.size);
        if (!batch.empty() && (budget + est > kBatchReplyBudget || batch.size() >= 1000)) {
          if (!(st = flush()).ok()) return st;
          budget = 0;
        }
        budget += est;
        batch.push_back(&d);
      }
      if (!(st = flush()).ok()) return st;
    }
    uint64_t sent = 0;
    if (!(st = DeleteWire(doomed, &sent)).ok()) return st;
    *removed += sent;
    if (progress && !progress(*removed)) return Status::Cancelled();
  }
  return Status::OK();
}

Status MemcachedStore::Clear() {
  if (cfg_.flush_all_on_clear) {
    Lease c(this);
    if (!c.ok()) return NoConnection();
    Status first;
    Deadline dl(this, c.get(), -1);
    for (size_t s = 0; s < servers_.size(); ++s) {
      memcached_return_t rc = memcached_flush(c->h[s], 0);
      if (memcached_failed(rc)) {
        Status st = Failed(static_cast<int>(s), c->h[s], rc, dl.Fired());
        if (first.ok()) first = st;
      } else {
        MarkOk(static_cast<int>(s));
      }
    }
    return first;
  }
  uint64_t removed = 0;
  return PurgeMatching("", &removed);
}

// memcached drops expired entries lazily; deleting them reclaims the memory
// now (a delete of an expired key unlinks it).
Status MemcachedStore::PurgeExpired(uint64_t* removed) {
  *removed = 0;
  int64_t now = NowMs();
  for (size_t s = 0; s < servers_.size(); ++s) {
    std::vector<Dumped> dump;
    Status st = Dump(static_cast<int>(s), &dump);
    if (!st.ok()) return st;
    std::vector<std::string> doomed;
    for (Dumped& d : dump)
      if (IsExpired(d.expires_ms, now)) doomed.push_back(std::move(d.wire));
    uint64_t sent = 0;
    if (!(st = DeleteWire(doomed, &sent)).ok()) return st;
    *removed += sent;
  }
  return Status::OK();
}

// Entries and bytes are this region's (from a dump); hits, misses, sets,
// evictions and expirations are the servers' own counters, shared by every
// region on them; errors and stampede waits this process's (Store::Count:
// the servers know nothing of them). Extras give each server's figures; a
// server that cannot be reached is reported as such rather than failing the
// call: typed in Stats::servers (what the app reads), and as "<server>
// status" lines among the extras (what the management command prints).
Status MemcachedStore::GetStats(Stats* out) { return CollectStats(out, true); }

// For a scrape: one "stats" per server, no dump. Entries and bytes are then
// the servers' curr_items and bytes (every region on them), scoped so.
Status MemcachedStore::GetCounters(Stats* out) { return CollectStats(out, false); }

Status MemcachedStore::CollectStats(Stats* out, bool full) {
  *out = Stats{};
  out->contents_scope = full ? Scope::kRegion : Scope::kServers;
  out->capacity_scope = Scope::kServers;
  out->counters_scope = Scope::kServers;
  out->events_scope = Scope::kProcess;
  out->errors = events_.Get(Event::kError);
  out->stampede_waits = events_.Get(Event::kStampedeWait);
  int64_t now = NowMs();
  size_t up = 0;
  out->extra.emplace_back("servers", std::to_string(servers_.size()));
  out->extra.emplace_back("distribution", "consistent continuum, " +
                                              std::to_string(Continuum::kPointsPerServer) +
                                              " points per server");
  out->extra.emplace_back("protocol", cfg_.binary ? "binary" : "text");
  out->extra.emplace_back("region_prefix", cfg_.region_prefix);
  std::vector<std::pair<std::string, std::string>> per_server;
  for (size_t s = 0; s < servers_.size(); ++s) {
    const std::string& name = servers_[s].name;
    int64_t retry = health_[s].retry_at_ms.load(std::memory_order_relaxed);
    TextConn tc(region(), cfg_.connect_timeout_ms,
                cfg_.poll_timeout_ms);
    std::map<std::string, std::string> st, items, slabs;
    Status r = tc.Connect(servers_[s]);
    if (r.ok()) r = tc.Send("stats\r\n");
    if (r.ok()) r = ReadStats(&tc, &st);
    if (full && r.ok()) r = tc.Send("stats items\r\n");
    if (full && r.ok()) r = ReadStats(&tc, &items);
    if (full && r.ok()) r = tc.Send("stats slabs\r\n");
    if (full && r.ok()) r = ReadStats(&tc, &slabs);
    std::vector<Dumped> dump;
    if (full && r.ok()) r = Dump(static_cast<int>(s), &dump);
    ServerHealth& health = out->servers.emplace_back();
    health.address = name;
    if (!r.ok()) {
      Log(LogLevel::kWarning, region(), kind(), "stats: " + r.message());
      health.error = r.message();
      per_server.emplace_back(name + " status", "down: " + r.message());
      continue;
    }
    ++up;
    health.up = true;
    health.marked_failed = retry != 0 && now < retry;
    auto num = [&](const std::map<std::string, std::string>& m, const char* k) -> uint64_t {
      auto it = m.find(k);
      return it == m.end() ? 0 : ToUInt(it->second);
    };
    if (!full) {  // the server's figures: every region on it
      health.entries = num(st, "curr_items");
      health.bytes_used = num(st, "bytes");
    }
    for (const Dumped& d : dump) {
      if (IsExpired(d.expires_ms, now)) continue;
      ++health.entries;
      health.bytes_used += d.size;
    }
    out->entries += health.entries;
    out->bytes_used += health.bytes_used;
    out->capacity += num(st, "limit_maxbytes");
    out->hits += num(st, "get_hits");
    out->misses += num(st, "get_misses");
    out->sets += num(st, "cmd_set");
    out->evictions += num(st, "evictions");
    out->expirations += num(st, "reclaimed") + num(st, "expired_unfetched");
    uint64_t items_total = 0, crawler_reclaimed = 0;
    for (const auto& [k, v] : items) {
      if (k.size() > 7 && k.compare(k.size() - 7, 7, ":number") == 0) items_total += ToUInt(v);
      if (k.size() > 18 && k.compare(k.size() - 18, 18, ":crawler_reclaimed") == 0)
        crawler_reclaimed += ToUInt(v);
    }
    if (!full) crawler_reclaimed = num(st, "crawler_reclaimed");  // "stats" has the total too
    out->expirations += crawler_reclaimed;
    per_server.emplace_back(name + " status",
                            health.marked_failed ? "up (marked failed; retried soon)" : "up");
    for (const char* k : {"version", "uptime", "curr_items", "bytes", "limit_maxbytes",
                          "curr_connections", "get_hits", "get_misses", "cmd_set", "evictions"}) {
      auto it = st.find(k);
      if (it != st.end()) per_server.emplace_back(name + " " + k, it->second);
    }
    if (!full) continue;
    per_server.emplace_back(name + " items (stats items)", std::to_string(items_total));
    per_server.emplace_back(name + " crawler_reclaimed", std::to_string(crawler_reclaimed));
    for (const char* k : {"active_slabs", "total_malloced"}) {
      auto it = slabs.find(k);
      if (it != slabs.end()) per_server.emplace_back(name + " " + k, it->second);
    }
  }
  out->extra.emplace_back("servers_up", std::to_string(up));
  for (auto& kv : per_server) out->extra.push_back(std::move(kv));
  return Status::OK();
}

}  // namespace regioncache::mc
