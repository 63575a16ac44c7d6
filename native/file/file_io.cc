// POSIX helpers of the file store: whole reads and writes, mkdir -p, opens that
// follow no link, ownership checks (file_io.h).
#include "file/file_io.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <climits>
#include <cstdio>
#include <pwd.h>

namespace regioncache::file {
namespace {

std::atomic<pid_t> g_pid{0};

void RefreshPid() { g_pid.store(getpid(), std::memory_order_relaxed); }

}  // namespace

pid_t CurrentPid() {
  static const bool registered = [] {
    RefreshPid();
    pthread_atfork(nullptr, nullptr, RefreshPid);
    return true;
  }();
  (void)registered;
  return g_pid.load(std::memory_order_relaxed);
}

ssize_t PReadOnce(int fd, void* buf, size_t n, off_t off) {
  for (;;) {
    ssize_t r = pread(fd, buf, n, off);
    if (r >= 0 || errno != EINTR) return r;
  }
}

ssize_t PReadFull(int fd, void* buf, size_t n, off_t off) {
  size_t done = 0;
  char* p = static_cast<char*>(buf);
  while (done < n) {
    ssize_t r = pread(fd, p + done, n - done, off + off_t(done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += size_t(r);
  }
  return ssize_t(done);
}

int WriteAllV(int fd, struct iovec* iov, int iovcnt) {
  while (iovcnt > 0) {
    ssize_t w = writev(fd, iov, std::min(iovcnt, IOV_MAX));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    // Step over what was written; a partial buffer keeps its tail.
    size_t left = size_t(w);
    while (iovcnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

int PWriteFull(int fd, const void* buf, size_t n, off_t off) {
  size_t done = 0;
  const char* p = static_cast<const char*>(buf);
  while (done < n) {
    ssize_t w = pwrite(fd, p + done, n - done, off + off_t(done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    done += size_t(w);
  }
  return 0;
}

Status MakeDirs(const std::string& path, std::string_view region) {
  if (path.empty())
    return Status::InvalidArgument(RegionMessage(region, "LOCATION is empty: give a directory"));
  // Walk the components from the root; each one must end up a directory.
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string part = path.substr(0, pos);
    if (part.empty() || part == "/") continue;
    if (mkdir(part.c_str(), 0700) == 0) continue;
    int err = errno;
    struct stat st;
    if (stat(part.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) continue;  // already there (mkdir said EEXIST or EACCES)
      err = ENOTDIR;
    }
    return ErrnoStatus(region, "cannot create the cache directory " + path + " (at " + part + ")",
                       err);
  }
  return Status::OK();
}

Status SyncDir(const std::string& path, std::string_view region) {
  int fd = OpenNoFollow(path, O_RDONLY | O_DIRECTORY);
  int err = fd < 0 ? errno : fsync(fd) == 0 ? 0 : errno;
  if (fd >= 0) close(fd);
  return err == 0 ? Status::OK() : ErrnoStatus(region, "cannot sync " + path, err);
}

int OpenNoFollow(const std::string& path, int flags, mode_t mode) {
  static std::atomic<bool> no_openat2{false};
  if (!no_openat2.load(std::memory_order_relaxed)) {
    struct open_how how {};
    how.flags = uint64_t(flags | O_CLOEXEC | O_NOFOLLOW);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (;;) {
      long fd = syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof how);
      if (fd >= 0) return int(fd);
      if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a rename raced the lookup
      if (errno == ENOSYS) {
        // A kernel (or a seccomp filter) without openat2: from now on the
        // last component only.
        no_openat2.store(true, std::memory_order_relaxed);
        break;
      }
      if (errno == EPERM) break;  // some seccomp filters say EPERM: this call only
      return -1;
    }
  }
  for (;;) {
    int fd = open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd >= 0 || errno != EINTR) return fd;
  }
}

Status CheckOwned(const struct stat& st, unsigned type, const std::string& what,
                  const std::string& path, std::string_view region) {
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
  std::string owner = std::to_string(st.st_uid);
  struct passwd pwd, *pw = nullptr;
  char buf[1024];
  if (getpwuid_r(st.st_uid, &pwd, buf, sizeof buf, &pw) == 0 && pw)
    owner = std::string(pw->pw_name) + " (uid " + owner + ")";
  else
    owner = "uid " + owner;
  std::string facts = " (owner " + owner + ", mode " + mode + ")";
  if ((st.st_mode & S_IFMT) != type) {
    const char* is = S_ISLNK(st.st_mode) ? "a symbolic link"
                     : S_ISDIR(st.st_mode) ? "a directory"
                     : S_ISREG(st.st_mode) ? "a regular file"
                                           : "a special file";
    return Status::IOError(RegionMessage(
        region, "refusing the " + what + " " + path + ": it is " + is +
                    (type == S_IFDIR ? ", not a directory" : ", not a regular file") + facts +
                    "; the store never follows links inside its directory"));
  }
  if (st.st_uid != geteuid())
    return Status::IOError(RegionMessage(
        region, "refusing the " + what + " " + path + ": it belongs to another user" + facts +
                    ", not to uid " + std::to_string(geteuid()) +
                    " which runs this process; another user could read or plant entries"));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return Status::IOError(RegionMessage(
        region, "refusing the " + what + " " + path + ": it is writable by group or others" +
                    facts + "; make it private (chmod go-w) or use another LOCATION"));
  return Status::OK();
}

}  // namespace regioncache::file
