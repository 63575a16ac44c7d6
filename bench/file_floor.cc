// The floor for bench_file.py: the system calls of a file-per-entry cache
// from a plain C++ loop, no Python, no checksums, no locks. Prints one line
// per operation:  <op> <microseconds per call>
//   set_rename    open(O_CREAT|O_TRUNC) + write + close + rename over the entry
//                 (the textbook atomic write; a new inode per set)
//   set_exchange  open an existing spare + write + close + fcntl lock +
//                 renameat2(RENAME_EXCHANGE) + lstat + fcntl unlock
//                 (the sequence FileCache's set makes)
//   get           open + pread + close
// Usage: file_floor <empty directory> <value bytes> <iterations>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kKeys = 200;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Die(const char* what, const std::string& path) {
  std::perror((std::string(what) + " " + path).c_str());
  std::exit(1);
}

void WriteFile(const std::string& path, const std::vector<char>& buf, int flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0600);
  if (fd < 0) Die("open", path);
  if (write(fd, buf.data(), buf.size()) != ssize_t(buf.size())) Die("write", path);
  if (close(fd) != 0) Die("close", path);
}

void Lock(int fd, int type) {
  struct flock fl;
  std::memset(&fl, 0, sizeof fl);
  fl.l_type = short(type);
  fl.l_whence = SEEK_SET;
  fl.l_len = 1;
  if (fcntl(fd, type == F_UNLCK ? F_OFD_SETLK : F_OFD_SETLKW, &fl) != 0) Die("fcntl", "lock");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <empty directory> <value bytes> <iterations>\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  std::vector<char> buf(std::strtoul(argv[2], nullptr, 10) + 64 + 8, 'x');
  int n = std::atoi(argv[3]);
  std::vector<std::string> names, spares;
  for (int i = 0; i < kKeys; ++i) {
    names.push_back(dir + "/entry" + std::to_string(i));
    spares.push_back(dir + "/.spare" + std::to_string(i));
    WriteFile(names.back(), buf, O_CREAT | O_TRUNC);
    WriteFile(spares.back(), buf, O_CREAT | O_TRUNC);
  }
  std::string tmp = dir + "/.tmp";
  double t0 = Now();
  for (int i = 0; i < n; ++i) {
    WriteFile(tmp, buf, O_CREAT | O_TRUNC);
    if (rename(tmp.c_str(), names[i % kKeys].c_str()) != 0) Die("rename", tmp);
  }
  std::printf("set_rename %.3f\n", (Now() - t0) / n * 1e6);

  int lockfd = open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lockfd < 0) Die("open", dir + "/lock");
  t0 = Now();
  for (int i = 0; i < n; ++i) {
    const std::string& sp = spares[i % kKeys];
    WriteFile(sp, buf, 0);
    Lock(lockfd, F_WRLCK);
    if (renameat2(AT_FDCWD, sp.c_str(), AT_FDCWD, names[i % kKeys].c_str(), RENAME_EXCHANGE) != 0)
      Die("renameat2", sp);
    struct stat st;
    if (lstat(sp.c_str(), &st) != 0) Die("lstat", sp);
    Lock(lockfd, F_UNLCK);
  }
  std::printf("set_exchange %.3f\n", (Now() - t0) / n * 1e6);

  std::vector<char> in(buf.size() + 16384);
  t0 = Now();
  for (int i = 0; i < n * 4; ++i) {
    int fd = open(names[i % kKeys].c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open", names[i % kKeys]);
    if (pread(fd, in.data(), in.size(), 0) != ssize_t(buf.size())) Die("pread", names[i % kKeys]);
    close(fd);
  }
  std::printf("get %.3f\n", (Now() - t0) / (n * 4) * 1e6);
  return 0;
}
