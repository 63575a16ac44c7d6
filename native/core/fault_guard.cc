// The process's one SIGBUS handler: jumps back to an armed FaultJump,
// repairs a registered file mapping, or hands the signal on (fault_guard.h).
#include "core/fault_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace regioncache {
namespace {

// (Default TLS model: initial-exec cannot be used in a dlopen'ed module. A
// thread that faults inside an armed call has set t_jump in normal context
// first, so its TLS block exists when the handler reads it.)
thread_local FaultJump* t_jump = nullptr;

constexpr int kSlots = 64;  // repaired file mappings at once per process
struct Slot {
  std::atomic<char*> base{nullptr};
  std::atomic<size_t> len{0};
  std::atomic<int> fd{-1};
  std::atomic<bool> detached{false};
};
Slot g_slots[kSlots];
std::mutex g_slots_mu;

struct sigaction g_prev;
std::once_flag g_install_once;
bool g_installed = false;

// A fault in a registered file mapping: give the file its length back and
// let the access run again, or put private zeros under the page.
bool Repair(char* a) {
  for (auto& s : g_slots) {
    char* b = s.base.load(std::memory_order_acquire);
    size_t len = s.len.load(std::memory_order_acquire);
    if (!b || a < b || a >= b + len) continue;
    int fd = s.fd.load(std::memory_order_acquire);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && uint64_t(st.st_size) < len &&
        ftruncate(fd, off_t(len)) == 0) {
      s.detached.store(true, std::memory_order_release);  // the cut lost what was past it
      return true;
    }
    long page = sysconf(_SC_PAGESIZE);
    char* p = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(a) & ~uintptr_t(page - 1));
    mmap(p, size_t(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    s.detached.store(true, std::memory_order_release);
    return true;
  }
  return false;
}

void OnSigbus(int sig, siginfo_t* si, void* ctx) {
  const int saved = errno;
  char* a = static_cast<char*>(si->si_addr);
  const bool fault = si->si_code > 0;  // raised by the kernel, not sent
  // The innermost armed point whose range holds the address (an outer one
  // when a nested call guards another range).
  for (FaultJump* j = fault ? t_jump : nullptr; j != nullptr; j = j->outer) {
    if (a >= j->lo && a < j->hi) {
      t_jump = j->outer;
      siglongjmp(j->jb, 1);
    }
  }
  if (fault && Repair(a)) {
    errno = saved;
    return;  // the access runs again on the mended mapping
  }
  errno = saved;
  // Not ours: whatever was there before decides.
  if (g_prev.sa_flags & SA_SIGINFO) {
    if (g_prev.sa_sigaction) g_prev.sa_sigaction(sig, si, ctx);
    return;
  }
  if (g_prev.sa_handler == SIG_IGN && !fault) return;  // a sent SIGBUS stays ignored
  if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
    g_prev.sa_handler(sig);
    return;
  }
  // The default action (for a fault, also when SIGBUS was ignored: the
  // kernel does not let a fault be ignored): restore it; a fault repeats on
  // return and kills, a sent signal is delivered again.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, nullptr);
  if (!fault) raise(sig);
}

}  // namespace

void ArmFaultJump(FaultJump* j, const char* lo, const char* hi) {
  j->lo = lo;
  j->hi = hi;
  j->outer = t_jump;
  t_jump = j;
}

void DisarmFaultJump(FaultJump* j) { t_jump = j->outer; }

bool InstallFaultHandler() {
  std::call_once(g_install_once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = OnSigbus;
    // NODEFER: the handler may leave by siglongjmp, which does not restore
    // the signal mask; SIGBUS must not stay blocked afterwards. RESTART: a
    // repaired fault interrupts no system call of the thread.
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_installed = sigaction(SIGBUS, &sa, &g_prev) == 0;
  });
  return g_installed;
}

int GuardMappedFile(char* base, size_t len, int fd) {
  if (!InstallFaultHandler()) return -1;
  std::lock_guard<std::mutex> g(g_slots_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].base.load(std::memory_order_relaxed)) continue;
    g_slots[i].fd.store(fd, std::memory_order_relaxed);
    g_slots[i].len.store(len, std::memory_order_relaxed);
    g_slots[i].detached.store(false, std::memory_order_relaxed);
    g_slots[i].base.store(base, std::memory_order_release);
    return i;
  }
  return -1;
}

void UnguardMappedFile(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> g(g_slots_mu);
  g_slots[slot].base.store(nullptr, std::memory_order_release);
  g_slots[slot].fd.store(-1, std::memory_order_relaxed);
}

bool MappedFileDetached(int slot) {
  return slot >= 0 && g_slots[slot].detached.load(std::memory_order_acquire);
}

void ClearMappedFileDetached(int slot) {
  if (slot >= 0) g_slots[slot].detached.store(false, std::memory_order_release);
}

}  // namespace regioncache
