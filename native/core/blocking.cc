#include "regioncache/blocking.h"

namespace regioncache {
namespace {
BlockingHooks g_hooks;
}

void SetBlockingHooks(BlockingHooks hooks) { g_hooks = hooks; }
const BlockingHooks& GetBlockingHooks() { return g_hooks; }

BlockingSection::BlockingSection() {
  if (g_hooks.before) g_hooks.before();
}
BlockingSection::~BlockingSection() {
  if (g_hooks.after) g_hooks.after();
}

}  // namespace regioncache
