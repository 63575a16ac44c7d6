// LOCATION parsed into servers (host:port, [v6]:port, socket paths) and the
// continuum that picks a key's server (see mc_servers.h).
#include "memcached/mc_servers.h"

#include <xxhash.h>

#include <algorithm>
#include <charconv>

namespace regioncache::mc {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status BadServer(const std::string& region, std::string_view item, const char* why) {
  return Status::InvalidArgument(
      RegionMessage(region, "LOCATION server '" + std::string(item) + "' " + why));
}

bool ParsePort(std::string_view s, uint16_t* port) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535)
    return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

Status ParseLocation(const std::string& region, const std::string& location,
                     std::vector<ServerAddr>* out) {
  out->clear();
  std::string_view rest = location;
  while (!rest.empty()) {
    size_t cut = rest.find_first_of(";,");
    std::string_view item = Trim(rest.substr(0, cut));
    rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
    if (item.empty()) continue;
    ServerAddr a;
    if (item.substr(0, 5) == "unix:") {
      item.remove_prefix(5);
      if (item.empty() || item.front() != '/')
        return BadServer(region, item, "is not an absolute socket path after 'unix:'");
    }
    if (!item.empty() && item.front() == '/') {
      a.unix_socket = true;
      a.host = std::string(item);
      a.name = a.host;
    } else if (item.front() == '[') {
      size_t close = item.find(']');
      if (close == std::string_view::npos) return BadServer(region, item, "has no closing ']'");
      a.host = std::string(item.substr(1, close - 1));
      std::string_view tail = item.substr(close + 1);
      a.port = 11211;
      if (!tail.empty() && (tail.front() != ':' || !ParsePort(tail.substr(1), &a.port)))
        return BadServer(region, item, "has a bad port (expected [address]:1-65535)");
      a.name = "[" + a.host + "]:" + std::to_string(a.port);
    } else {
      size_t colon = item.rfind(':');
      a.port = 11211;
      if (colon != std::string_view::npos) {
        if (item.find(':') != colon)
          return BadServer(region, item, "is ambiguous: write IPv6 addresses as [addr]:port");
        if (!ParsePort(item.substr(colon + 1), &a.port))
          return BadServer(region, item, "has a bad port (expected host:1-65535)");
        item = item.substr(0, colon);
      }
      if (item.empty()) return BadServer(region, item, "has no host");
      for (char c : item)
        if (static_cast<unsigned char>(c) <= 0x20)
          return BadServer(region, item, "has a blank or control character in its host");
      a.host = std::string(item);
      a.name = a.host + ":" + std::to_string(a.port);
    }
    for (const auto& prev : *out)
      if (prev.name == a.name) return BadServer(region, a.name, "is listed twice");
    out->push_back(std::move(a));
  }
  if (out->empty())
    return Status::InvalidArgument(
        RegionMessage(region,
                      "LOCATION names no memcached server (expected 'host:port', several "
                      "separated by ';', or a socket path)"));
  return Status::OK();
}

void Continuum::Build(const std::vector<ServerAddr>& servers) {
  points_.clear();
  points_.reserve(servers.size() * kPointsPerServer);
  for (size_t s = 0; s < servers.size(); ++s) {
    for (int i = 0; i < kPointsPerServer; ++i) {
      std::string label = servers[s].name + "-" + std::to_string(i);
      points_.push_back(Point{XXH3_64bits(label.data(), label.size()), static_cast<int>(s)});
    }
  }
  // Ties (vanishingly rare) break by server index, so every process agrees.
  std::sort(points_.begin(), points_.end(), [](const Point& a, const Point& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.server < b.server;
  });
}

size_t Continuum::LowerBound(uint64_t hash) const {
  auto it = std::lower_bound(points_.begin(), points_.end(), hash,
                             [](const Point& p, uint64_t h) { return p.hash < h; });
  return static_cast<size_t>(it - points_.begin());  // == size(): wraps to 0 in Pick
}

uint64_t KeyHash(std::string_view wire_key) { return XXH3_64bits(wire_key.data(), wire_key.size()); }

}  // namespace regioncache::mc
