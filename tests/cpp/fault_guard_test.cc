// The process's one SIGBUS handler (native/core/fault_guard.h), on real
// files cut short under real shared mappings: a jump catches faults in its
// own range, a registered file mapping is repaired, both work in one
// process at once, and every other SIGBUS (a fault elsewhere, a sent one)
// ends the process as it would without the guard.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "core/fault_guard.h"

namespace regioncache {
namespace {

constexpr size_t kLen = 3 * 4096;

// A file of kLen bytes mapped shared, removed from the directory at once.
struct MappedFile {
  int fd = -1;
  char* p = nullptr;
  MappedFile() {
    char path[] = "/tmp/fault_guard_test.XXXXXX";
    fd = mkstemp(path);
    if (fd < 0) return;
    unlink(path);
    if (ftruncate(fd, off_t(kLen)) != 0) return;
    void* m = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) p = static_cast<char*>(m);
  }
  ~MappedFile() {
    if (p) munmap(p, kLen);
    if (fd >= 0) close(fd);
  }
  bool Cut() { return ftruncate(fd, 10) == 0; }
  off_t Size() const {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_size : -1;
  }
};

// Touches p[off] inside an armed jump over [lo, hi): true if it faulted
// and came back through the jump.
bool JumpedBack(char* lo, char* hi, volatile char* at) {
  FaultJump j;
  if (sigsetjmp(j.jb, 0) != 0) {
    DisarmFaultJump(&j);
    return true;
  }
  ArmFaultJump(&j, lo, hi);
  *at = 'x';
  DisarmFaultJump(&j);
  return false;
}

// How a forked child ended: its signal, or 1000 + its exit status.
template <class F>
int InChild(F&& f) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(10);
    f();
    _exit(4);  // carried on past what should have ended it
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 1000 + WEXITSTATUS(status);
}

// Killed by SIGBUS, or (under AddressSanitizer, whose handler was there
// first) ended by that handler's report.
void ExpectKilledBySigbus(int end) {
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_TRUE(end == SIGBUS || end == SIGABRT || (end > 1000 && end != 1004)) << end;
#else
  EXPECT_EQ(end, SIGBUS);
#endif
}

TEST(FaultGuard, AJumpCatchesAFaultInItsRange) {
  ASSERT_TRUE(InstallFaultHandler());
  MappedFile f;
  ASSERT_NE(f.p, nullptr);
  EXPECT_FALSE(JumpedBack(f.p, f.p + kLen, f.p + 2 * 4096));  // no fault yet
  ASSERT_TRUE(f.Cut());
  EXPECT_TRUE(JumpedBack(f.p, f.p + kLen, f.p + 2 * 4096));
  // Nested: the inner jump's range does not hold the address, the outer's
  // does; the fault goes to the outer one.
  FaultJump outer;
  volatile bool came_back = false;
  if (sigsetjmp(outer.jb, 0) != 0) {
    DisarmFaultJump(&outer);
    came_back = true;
  } else {
    ArmFaultJump(&outer, f.p, f.p + kLen);
    FaultJump inner;
    if (sigsetjmp(inner.jb, 0) == 0) {
      ArmFaultJump(&inner, f.p, f.p + 4096);
      f.p[2 * 4096] = 'y';
    }
    ADD_FAILURE() << "the inner jump took a fault outside its range";
  }
  EXPECT_TRUE(came_back);
}

TEST(FaultGuard, ARegisteredFileGetsItsLengthBack) {
  MappedFile f;
  ASSERT_NE(f.p, nullptr);
  int slot = GuardMappedFile(f.p, kLen, f.fd);
  ASSERT_GE(slot, 0);
  EXPECT_FALSE(MappedFileDetached(slot));
  ASSERT_TRUE(f.Cut());
  f.p[2 * 4096] = 'x';  // faults, is repaired, runs again
  EXPECT_EQ(f.Size(), off_t(kLen));
  EXPECT_EQ(f.p[2 * 4096], 'x');
  EXPECT_TRUE(MappedFileDetached(slot));
  ClearMappedFileDetached(slot);
  EXPECT_FALSE(MappedFileDetached(slot));
  UnguardMappedFile(slot);
}

// A jump armed on one mapping and a repaired file registered for another,
// in one process: each fault goes to its own.
TEST(FaultGuard, AJumpAndARepairedFileInOneProcess) {
  ASSERT_TRUE(InstallFaultHandler());
  MappedFile jumped, repaired;
  ASSERT_NE(jumped.p, nullptr);
  ASSERT_NE(repaired.p, nullptr);
  int slot = GuardMappedFile(repaired.p, kLen, repaired.fd);
  ASSERT_GE(slot, 0);
  ASSERT_TRUE(jumped.Cut());
  ASSERT_TRUE(repaired.Cut());
  // Armed over the first mapping, a fault in the second is repaired there.
  EXPECT_FALSE(JumpedBack(jumped.p, jumped.p + kLen, repaired.p + 2 * 4096));
  EXPECT_TRUE(MappedFileDetached(slot));
  EXPECT_EQ(repaired.Size(), off_t(kLen));
  EXPECT_TRUE(JumpedBack(jumped.p, jumped.p + kLen, jumped.p + 2 * 4096));
  UnguardMappedFile(slot);
}

TEST(FaultGuard, AFaultOutsideEveryRangeStillKills) {
  ASSERT_TRUE(InstallFaultHandler());
  MappedFile guarded, other;
  ASSERT_NE(guarded.p, nullptr);
  ASSERT_NE(other.p, nullptr);
  int slot = GuardMappedFile(guarded.p, kLen, guarded.fd);
  ASSERT_GE(slot, 0);
  ExpectKilledBySigbus(InChild([&] {
    if (!other.Cut()) _exit(3);
    JumpedBack(guarded.p, guarded.p + kLen, other.p + 2 * 4096);
  }));
  // Unregistered, a mapping is no longer repaired.
  UnguardMappedFile(slot);
  ExpectKilledBySigbus(InChild([&] {
    if (!guarded.Cut()) _exit(3);
    guarded.p[2 * 4096] = 'x';
  }));
}

TEST(FaultGuard, ASentSigbusIsDeliveredAgain) {
  ASSERT_TRUE(InstallFaultHandler());
  MappedFile f;
  ASSERT_NE(f.p, nullptr);
  int slot = GuardMappedFile(f.p, kLen, f.fd);
  ASSERT_GE(slot, 0);
  // Even with a jump armed: only a fault the kernel raised is caught.
  ExpectKilledBySigbus(InChild([&] {
    FaultJump j;
    if (sigsetjmp(j.jb, 0) != 0) _exit(5);
    ArmFaultJump(&j, f.p, f.p + kLen);
    raise(SIGBUS);
  }));
  UnguardMappedFile(slot);
}

}  // namespace
}  // namespace regioncache
