// The one SIGBUS handler of the process, for stores that map files or
// shared memory another process can cut short (native/core: knows no store).
//
// A shared mapping of a file faults with SIGBUS when the file is truncated
// under it (or, on a full tmpfs, when a page cannot be allocated). Two kinds
// of mapping are guarded, each by its own means:
//  - a jump (FaultJump): a thread arms one around the calls that touch a
//    mapping; a fault the kernel raised inside that range on that thread
//    jumps back to the sigsetjmp point, and the caller refuses from then on
//    (the shared-memory store);
//  - a repaired file (GuardMappedFile): a fault inside a registered range is
//    mended in place and the access retried: the file gets its length back
//    if it was cut, else the page becomes private zeros; either way the
//    range is marked detached so its owner maps the file afresh (the file
//    store's ledger).
// Every other SIGBUS goes to the handler that was installed before this
// one; if that was the default action, a fault kills as it would have
// without a store, and a SIGBUS sent by kill() or raise() is delivered again.
#pragma once

#include <setjmp.h>

#include <cstddef>

namespace regioncache {

// A recovery point for faults in [lo, hi) on the arming thread. Arm it only
// after sigsetjmp(jb, 0) returned 0, in the frame that will return to it;
// disarm it on both paths (after a normal return and after the jump).
// Nested points (an armed call making another) restore the outer one; a
// fault goes to the innermost point whose range holds its address.
struct FaultJump {
  sigjmp_buf jb;
  const char* lo = nullptr;
  const char* hi = nullptr;
  FaultJump* outer = nullptr;
};
void ArmFaultJump(FaultJump* j, const char* lo, const char* hi);
void DisarmFaultJump(FaultJump* j);

// Installs the handler (once per process; later calls do nothing). Returns
// false if sigaction refused. Needed before a FaultJump can catch a fault;
// GuardMappedFile installs it itself.
bool InstallFaultHandler();

// Registers [base, base + len), a shared mapping of the file open as fd, to
// be repaired on a fault (see above). fd must stay the same descriptor
// number for as long as the range is registered (dup2 onto it is fine).
// Returns a slot, or -1 if the handler could not be installed or every slot
// is taken (the range then goes unguarded).
int GuardMappedFile(char* base, size_t len, int fd);
void UnguardMappedFile(int slot);
// Whether a fault in the slot's range was repaired since the last clear.
bool MappedFileDetached(int slot);
void ClearMappedFileDetached(int slot);

}  // namespace regioncache
