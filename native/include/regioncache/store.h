// The store interface: what every regioncache store (shared memory, a
// directory of files, memcached) implements, and what the Python module, the
// management command and the desktop app program against.
//
// Keys are the full keys made by the Django layer (":1:user:42"), as bytes;
// values are bytes plus flags that say how they were encoded (codec.h).
// Expiry is an absolute wall-clock time in milliseconds since the Unix epoch
// (clock.h), or kNever. An entry whose expiry is <= now is gone: reads miss it.
//
// Thread safety: every method may be called from several threads at once on
// the same Store object, and from several processes on the same region.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "regioncache/status.h"

namespace regioncache {

inline constexpr int64_t kNever = 0;

// Buffers a caller lends for a read, so that a store that reads from a file
// can put the value where the caller will keep it instead of into
// Value::data, to be copied again (the Python module lends the buffers of
// bytes objects it then returns). Optional: a store may ignore it and fill
// data, as the shared-memory and memcached stores do.
class ReadTarget {
 public:
  virtual ~ReadTarget() = default;
  // A buffer lent before the value's size is known; the value lands in it
  // when it fits. May be empty.
  virtual std::span<char> First() = 0;
  // A buffer of exactly n bytes for a value that did not fit in First(), or
  // nullptr (then the store uses data). Called without the store's locks;
  // a later call replaces the earlier buffer.
  virtual char* Whole(size_t n) = 0;
};

struct Value {
  std::string data;
  uint32_t flags = 0;
  int64_t expires_ms = kNever;  // filled by Get/Peek; kNever if never or unknown
  ReadTarget* target = nullptr;  // in: optional, see ReadTarget
  // Out: when not null, the value is the `len` bytes at `at`, in one of the
  // target's buffers, and data is not used. Stores that honour a target
  // reset it on every read.
  const char* at = nullptr;
  size_t len = 0;
  std::string_view bytes() const { return at ? std::string_view(at, len) : std::string_view(data); }
};

// One entry to write in a batch.
struct WriteItem {
  std::string_view key;
  std::string_view data;
  uint32_t flags = 0;
  int64_t expires_ms = kNever;
};

// What inspection shows about one entry. Times are epoch milliseconds; 0
// means "never" for expires_ms and "not known to this store" for the others.
struct EntryInfo {
  std::string key;
  uint64_t value_size = 0;
  int64_t expires_ms = kNever;
  int64_t stored_ms = 0;
  int64_t accessed_ms = 0;
  uint32_t flags = 0;
};

struct ListOptions {
  std::string cursor;        // "" starts at the beginning; else a ListPage::next_cursor
  std::string glob;          // fnmatch-style (* ? [..]); "" matches every key
  size_t limit = 1000;       // at most this many entries in the page
  bool include_expired = false;
};

struct ListPage {
  std::vector<EntryInfo> entries;
  std::string next_cursor;   // "" when the listing is complete
  uint64_t scanned = 0;      // entries looked at to fill this page (for progress)
};

// How one server of a store spread over several (memcached) was found by
// GetStats. A store answers GetStats while some of its servers are down.
struct ServerHealth {
  std::string address;         // the server as LOCATION names it ("127.0.0.1:11211", a socket path)
  bool up = false;             // it answered
  bool marked_failed = false;  // up, but marked failed by recent calls (retried soon)
  std::string error;           // when down: why, the whole message (region and server named)
  uint64_t entries = 0;        // when up: this region's live entries on it
  uint64_t bytes_used = 0;     // when up: their bytes
};

// Whose figures a Stats field holds.
enum class Scope : uint8_t {
  kRegion,   // this region's, counted by every process that uses it (a segment, a ledger)
  kProcess,  // this process's alone (this Store object's)
  kServers,  // the servers' own totals, shared by every region on them (memcached)
};
const char* ScopeName(Scope s);  // "region", "process", "servers"

struct Stats {
  uint64_t entries = 0;
  uint64_t bytes_used = 0;   // memory or disk the entries take, headers included
  uint64_t capacity = 0;     // the bound bytes_used never passes (0: none known)
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t sets = 0;
  uint64_t evictions = 0;
  uint64_t expirations = 0;
  uint64_t errors = 0;          // failures the layers above saw (Store::Count)
  uint64_t stampede_waits = 0;  // callers that waited for another's computation
  // The scope of each group of figures above.
  Scope contents_scope = Scope::kRegion;  // entries, bytes_used
  Scope capacity_scope = Scope::kRegion;  // capacity
  Scope counters_scope = Scope::kRegion;  // hits, misses, sets, evictions, expirations
  Scope events_scope = Scope::kRegion;    // errors, stampede_waits
  // Store-specific figures, in display order ("layout_version", "servers", ...).
  std::vector<std::pair<std::string, std::string>> extra;
  // Each server's health, in LOCATION order; empty for a store in one place.
  std::vector<ServerHealth> servers;
};

// Called during long operations with the count done so far; returning false
// cancels the operation (which then returns Status::Cancelled()).
using Progress = std::function<bool(uint64_t done)>;

class Store {
 public:
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- the cache contract ---------------------------------------------------
  // NotFound on a miss (absent or expired).
  virtual Status Get(std::string_view key, Value* out) = 0;
  virtual Status Set(std::string_view key, std::string_view data, uint32_t flags,
                     int64_t expires_ms) = 0;
  // NotStored if a live entry exists.
  virtual Status Add(std::string_view key, std::string_view data, uint32_t flags,
                     int64_t expires_ms) = 0;
  // NotStored if no live entry exists.
  virtual Status Replace(std::string_view key, std::string_view data, uint32_t flags,
                         int64_t expires_ms) = 0;
  // NotFound if no live entry exists.
  virtual Status Touch(std::string_view key, int64_t expires_ms) = 0;
  // NotFound if no live entry existed.
  virtual Status Delete(std::string_view key) = 0;
  // Adds delta to a stored integer (codec kInt) atomically and returns the new
  // value. NotFound if missing; NotANumber if not an integer the store can add
  // to; OutOfRange if the result leaves int64. The caller falls back to a
  // read-modify-write for the last two.
  virtual Status Incr(std::string_view key, int64_t delta, int64_t* result) = 0;
  // Removes every entry of this region.
  virtual Status Clear() = 0;
  // Atomically with every other write to key, in every process (and, for a
  // store spread over servers, every host): if the live entry under key
  // holds exactly `expected` with `expected_flags`, replaces it with `with`
  // (its key is ignored) or, when `with` is null, deletes it. NotFound if no
  // live entry; NotStored if the entry holds anything else. The base of
  // cache.lock() (release, extend, taking over a dead holder's lock): the
  // default answers InvalidArgument, for a store that cannot.
  virtual Status CompareAndSwap(std::string_view key, std::string_view expected,
                                uint32_t expected_flags, const WriteItem* with);

  // Batches. The defaults loop over the single calls; network stores override
  // them to pipeline. GetMany fills found[i] and values[i] for keys[i].
  virtual Status GetMany(std::span<const std::string_view> keys, std::vector<Value>* values,
                         std::vector<bool>* found);
  // failed receives the indexes of the items that were not stored.
  virtual Status SetMany(std::span<const WriteItem> items, std::vector<size_t>* failed);
  virtual Status DeleteMany(std::span<const std::string_view> keys, uint64_t* deleted);

  // --- inspection (management command, desktop app) -------------------------
  // Reads an entry without counting a hit or marking it used.
  virtual Status Peek(std::string_view key, Value* out);
  virtual Status List(const ListOptions& opts, ListPage* page) = 0;
  virtual Status GetStats(Stats* out) = 0;
  // What a metrics scrape reads every few seconds: every figure of Stats,
  // nothing O(entries) and no key dump (extra may be shorter). The default
  // is GetStats, for stores whose GetStats is already that cheap.
  virtual Status GetCounters(Stats* out) { return GetStats(out); }

  // Events that the layers above a store see happen to it.
  enum class Event : uint8_t {
    kError,        // answered or raised under the failure policy: a failure of the
                   // store, a value that cannot be read, a value too large
    kStampedeWait, // a caller waited for another caller's computation
  };
  // Counts n events: where every process sees them if the store's medium
  // can hold them (a segment, a ledger), else in the store object
  // (ProcessEvents: this process's alone), scoped so in Stats. One relaxed
  // atomic add, only where the event happens, never on a plain get or set.
  virtual void Count(Event e, uint64_t n = 1) = 0;
  virtual Status PurgeExpired(uint64_t* removed) = 0;
  // Deletes every live entry whose key matches glob; the default lists and
  // deletes page by page.
  virtual Status PurgeMatching(std::string_view glob, uint64_t* removed,
                               const Progress& progress = {});

  // --- identity --------------------------------------------------------------
  virtual std::string_view kind() const = 0;   // "shm", "file", "memcached"
  const std::string& region() const { return region_; }
  const std::string& location() const { return location_; }
  // True when calls may block on I/O (the Python module then releases the
  // GIL around every call). Stores that only block on a contended lock
  // return false and use the blocking hooks (blocking.h) instead.
  virtual bool MayBlock() const { return true; }
  // The size of a first buffer that lets reads land in a caller's memory
  // (see ReadTarget); 0 if this store ignores Value::target.
  virtual size_t FirstReadSize() const { return 0; }
  // Largest key + value the store accepts in one entry.
  virtual uint64_t MaxItemSize() const = 0;

 protected:
  Store(std::string region, std::string location)
      : region_(std::move(region)), location_(std::move(location)) {}
  // "region 'files': " — the prefix every error message of this store carries.
  std::string Where() const { return RegionPrefix(region_); }

 private:
  std::string region_;
  std::string location_;
};

// Store::Count's events kept in one process, for a store whose medium
// cannot hold them (memcached; a read-only shared-memory mapping). Kept as
// its store's last member: it moves none of the store's hot fields.
class ProcessEvents {
 public:
  void Add(Store::Event e, uint64_t n) { n_[static_cast<int>(e)].fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get(Store::Event e) const { return n_[static_cast<int>(e)].load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> n_[2] = {};
};

// How to open a store: the kind, where it lives, and its options as text
// (the Django OPTIONS or a JSON file's values, stringified). Each store parses
// and validates its own options, naming the option in any error.
struct StoreSpec {
  std::string region;    // the name shown in messages (a CACHES alias or a region name)
  std::string kind;      // "shm", "file", "memcached"
  std::string location;  // region name, directory, or "host:port;host:port"
  std::map<std::string, std::string> options;  // upper-case names, e.g. "SIZE" -> "64MB"
};

// Opens (creating where that is the store's way) the store a spec names.
// Defined a floor above core, in native/stores (CMake regioncache_stores),
// the one place that knows every store; core itself never calls it.
Status OpenStore(const StoreSpec& spec, std::unique_ptr<Store>* out);

// The kinds this build knows, for messages.
std::vector<std::string> StoreKinds();

}  // namespace regioncache
