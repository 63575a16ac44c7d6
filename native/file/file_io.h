// Small POSIX helpers for the file store: whole reads and writes that retry
// on EINTR and short counts, and directory creation with parents.
//
// Errors: what can fail for a reason worth telling returns a Status naming
// the region (MakeDirs, CheckOwned, SyncDir). The read and write wrappers keep
// the shape of the system calls they wrap (a count, or -1/errno): a short
// count is a result there, and their callers name the file and the region.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "regioncache/status.h"

namespace regioncache::file {

// One read of up to n bytes at off (retried only on EINTR): for a regular
// file a short count means the end of the file, so a small file is read in
// one system call. Returns the count or -1 with errno set.
ssize_t PReadOnce(int fd, void* buf, size_t n, off_t off);

// Reads exactly n bytes at off. Returns n, fewer at end of file, or -1 with errno set.
ssize_t PReadFull(int fd, void* buf, size_t n, off_t off);

// Writes all the buffers. Returns 0, or the errno of the failure.
int WriteAllV(int fd, struct iovec* iov, int iovcnt);

// Writes all bytes at off. Returns 0, or an errno.
int PWriteFull(int fd, const void* buf, size_t n, off_t off);

// mkdir -p with mode 0700 for what it creates. Errors name the region and
// the component that failed.
Status MakeDirs(const std::string& path, std::string_view region);

// Opens path without following a symbolic link in any of its components
// (openat2 with RESOLVE_NO_SYMLINKS; where the kernel lacks openat2, O_NOFOLLOW
// on the last component only). The store resolves LOCATION once (realpath),
// so every path it opens lies inside it and has no link to follow. Returns
// the descriptor or -1 with errno set (ELOOP: a link was met).
int OpenNoFollow(const std::string& path, int flags, mode_t mode = 0);

// Checks what lstat/fstat found at path against the rules for everything the
// store uses: of `type` (S_IFDIR or S_IFREG), owned by the effective uid,
// not writable by group or others. The error names what, path, owner, mode.
Status CheckOwned(const struct stat& st, unsigned type, const std::string& what,
                  const std::string& path, std::string_view region);

// This process's pid without a system call (glibc's getpid() is one): kept
// by a pthread_atfork child handler, so a forked child sees its own pid.
pid_t CurrentPid();

// fsync of a directory (after a rename into it): IOError "cannot sync <path>".
Status SyncDir(const std::string& path, std::string_view region);

}  // namespace regioncache::file
