#include "file/file_io.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <climits>

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

Status MakeDirs(const std::string& path, const std::string& where) {
  if (path.empty()) return Status::InvalidArgument(where + "LOCATION is empty: give a directory");
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
    return Status::IOError(where + "cannot create the cache directory " + path + " (at " + part +
                           "): " + ErrnoText(err));
  }
  return Status::OK();
}

int SyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

}  // namespace regioncache::file
