// Hooks around a call that is about to block (waiting for a lock held by
// another process). The Python module sets them to release and retake the
// GIL, so a store that is normally too fast to bother releasing the GIL
// still lets other threads run while it waits.
#pragma once

namespace regioncache {

struct BlockingHooks {
  void (*before)() = nullptr;   // about to block
  void (*after)() = nullptr;    // done blocking
};

// Process-wide; set once at module initialisation.
void SetBlockingHooks(BlockingHooks hooks);
const BlockingHooks& GetBlockingHooks();

// RAII: calls before() now and after() at scope exit, if set.
class BlockingSection {
 public:
  BlockingSection();
  ~BlockingSection();
  BlockingSection(const BlockingSection&) = delete;
  BlockingSection& operator=(const BlockingSection&) = delete;
};

}  // namespace regioncache
