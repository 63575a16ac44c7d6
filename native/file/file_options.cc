// OpenFileStore: OPTIONS parsed and checked, the cache directory resolved and
// checked, the ledger opened, and the FileStore made.

#include "file/file_store.h"

#include "regioncache/options.h"

namespace regioncache {

using file::Config;
using file::FileStore;
using file::kDefaultMaxItem;
using file::kDefaultMaxSize;
using file::kHeaderSize;
using file::kLedgerName;
using file::kShards;
using file::Ledger;

Status OpenFileStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  std::string region = spec.region.empty() ? spec.location : spec.region;
  if (spec.location.empty())
    return Status::InvalidArgument(
        RegionMessage(region, "LOCATION is empty: give the cache directory"));
  OptionReader r(region, spec.options);
  Config cfg;
  uint64_t cull = 3, level = 3;
  Status s;
  bool item_given = spec.options.count("MAX_ITEM_SIZE") != 0;
  if (!(s = r.Size("MAX_SIZE", kDefaultMaxSize, &cfg.max_size)).ok()) return s;
  if (!(s = r.Size("MAX_ITEM_SIZE", kDefaultMaxItem, &cfg.max_item)).ok()) return s;
  if (!(s = r.UInt("MAX_ENTRIES", 0, &cfg.max_entries)).ok()) return s;
  if (!(s = r.UInt("CULL_FREQUENCY", 3, &cull)).ok()) return s;
  if (!(s = r.Size("COMPRESS_MIN_SIZE", 0, &cfg.compress_min)).ok()) return s;
  if (!(s = r.UInt("COMPRESS_LEVEL", 3, &level)).ok()) return s;
  if (!(s = r.Bool("FSYNC", false, &cfg.fsync)).ok()) return s;
  if (!(s = r.CheckAllUsed()).ok()) return s;
  if (cfg.max_size < 4096)
    return Status::InvalidArgument(RegionMessage(
        region, "option MAX_SIZE=" + std::to_string(cfg.max_size) +
                    " is below the smallest useful size of 4096 bytes"));
  if (cfg.max_item == 0)
    return Status::InvalidArgument(RegionMessage(region, "option MAX_ITEM_SIZE must be above 0"));
  // An entry file is the item plus a header; the largest must fit the bound.
  uint64_t fits = cfg.max_size - kHeaderSize;
  if (cfg.max_item > fits) {
    if (item_given)
      return Status::InvalidArgument(RegionMessage(
          region, "option MAX_ITEM_SIZE=" + std::to_string(cfg.max_item) +
                      " does not fit in MAX_SIZE=" + std::to_string(cfg.max_size) + " (with its " +
                      std::to_string(kHeaderSize) + "-byte header)"));
    cfg.max_item = fits;
  }
  if (cull > 1000000)
    return Status::InvalidArgument(RegionMessage(
        region, "option CULL_FREQUENCY=" + std::to_string(cull) + " is not a sensible fraction"));
  if (level < 1 || level > 19)
    return Status::InvalidArgument(RegionMessage(
        region, "option COMPRESS_LEVEL=" + std::to_string(level) +
                    " is not a zstd level from 1 to 19"));
  cfg.cull_frequency = uint32_t(cull);
  cfg.compress_level = int(level);

  std::string dir = spec.location;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!(s = file::MakeDirs(dir, region)).ok()) return s;
  // LOCATION is the operator's path: a link as LOCATION (or above it) is
  // followed, once, here. Everything inside is then opened without
  // following any link (file::OpenNoFollow on the resolved path).
  {
    char* real = realpath(dir.c_str(), nullptr);
    if (!real)
      return ErrnoStatus(region, "cannot resolve the cache directory " + dir, errno);
    dir = real;
    free(real);
    struct stat st;
    if (lstat(dir.c_str(), &st) != 0)
      return ErrnoStatus(region, "cannot stat the cache directory " + dir, errno);
    // Another user's directory (say one made in /tmp before the site
    // started), or one others may write in, could hold their files: refused.
    if (!(s = file::CheckOwned(st, S_IFDIR, "cache directory", dir, region)).ok()) return s;
    // The shard directories there already: real directories of ours only.
    for (int i = 0; i < kShards; ++i) {
      std::string shard = dir + "/" + file::ShardDirName(i);
      if (lstat(shard.c_str(), &st) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus(region, "cannot stat " + shard, errno);
      }
      if (!(s = file::CheckOwned(st, S_IFDIR, "shard directory", shard, region)).ok()) return s;
    }
  }
  // Writability is checked now, with a real file: access(2) says yes to root
  // on a read-only mount, and an error at the first set is too late.
  {
    std::string probe = dir + "/" + file::TempName();
    int fd = file::OpenNoFollow(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
      return ErrnoStatus(region, "the cache directory " + dir + " is not writable", errno);
    close(fd);
    unlink(probe.c_str());
  }
  auto ledger = std::make_unique<Ledger>();
  Ledger* lp = ledger.get();
  bool fresh = false;
  std::string damage;
  if (!(s = ledger->Open(dir + "/" + kLedgerName, region, &fresh, &damage)).ok()) return s;
  auto store = std::make_unique<FileStore>(region, spec.location, dir, cfg, std::move(ledger));
  if (fresh) {
    if (!damage.empty())
      Log(LogLevel::kWarning, region, "file",
          "the ledger " + lp->path() + " was damaged (" + damage + "); counting the shards again");
    // A new ledger over a directory that may already hold entries (a
    // deleted or damaged ledger, another version's): count what is there.
    // On failure the store's destruction closes the ledger, which drops
    // the init lock.
    if (!(s = store->RecountAll()).ok()) return s;
    lp->FinishInit();
  }
  *out = std::move(store);
  return Status::OK();
}

}  // namespace regioncache
