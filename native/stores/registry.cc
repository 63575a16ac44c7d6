#include "regioncache/file_store.h"
#include "regioncache/memcached_store.h"
#include "regioncache/shm_store.h"
#include "regioncache/store.h"

namespace regioncache {

std::vector<std::string> StoreKinds() { return {"shm", "file", "memcached"}; }

Status OpenStore(const StoreSpec& spec, std::unique_ptr<Store>* out) {
  if (spec.kind == "shm") return OpenShmStore(spec, out);
  if (spec.kind == "file") return OpenFileStore(spec, out);
  if (spec.kind == "memcached") return OpenMemcachedStore(spec, out);
  std::string known;
  for (const auto& k : StoreKinds()) known += (known.empty() ? "" : ", ") + k;
  return Status::InvalidArgument(RegionMessage(
      spec.region, "unknown store kind '" + spec.kind + "' (this build knows: " + known + ")"));
}

}  // namespace regioncache
