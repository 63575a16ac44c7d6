// The memcached store: a region kept on one or several memcached servers,
// spoken to through libmemcached. Keys are spread over the servers by a
// ketama-style consistent-hash continuum; a server that fails is ejected for
// RETRY_TIMEOUT and then tried again.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "regioncache/store.h"

namespace regioncache {

// spec.location: servers separated by ';' (or ','): "host:port", "host"
// (port 11211), "[v6addr]:port", or a unix socket path ("/run/mc.sock" or
// "unix:/run/mc.sock"). Options (defaults in brackets):
//   TCP_NODELAY           disable Nagle on TCP connections [true]
//   CONNECT_TIMEOUT       seconds to wait for a connection [1.0]
//   POLL_TIMEOUT          seconds a whole reply may take: a watchdog ends a
//                         call that overruns it (plus CONNECT_TIMEOUT when
//                         the call connects); each inspection reply too [1.0]
//   RETRY_TIMEOUT         seconds a failed server is left alone [2]
//   SERVER_FAILURE_LIMIT  consecutive failures that mark a server failed [2]
//   REMOVE_FAILED_SERVERS a failed server's keys go to the next server of
//                         the continuum until it is retried; false: its keys
//                         miss (reads) and fail (writes) meanwhile [true]
//   BINARY_PROTOCOL       memcached's binary protocol instead of text [false]
//   MAX_ITEM_SIZE         largest key + stored value sent; larger values are
//                         refused (TooLarge) without a round trip; keep it at
//                         or below the servers' -I [1MB]
//   COMPRESS_MIN_SIZE     values of at least this size are zstd-compressed
//                         when that saves an eighth; 0 = never [32KB]
//   COMPRESS_LEVEL        zstd level [1]
//   REGION_PREFIX         made-key prefix that marks this region's keys on
//                         servers shared with others: listing, purge and
//                         clear touch only keys starting with it [""; the
//                         Django backend sets "<KEY_PREFIX>:"]
//   FLUSH_ALL_ON_CLEAR    Clear() sends flush_all to every server (wiping
//                         every region on them) instead of deleting this
//                         region's keys one by one [false]
Status OpenMemcachedStore(const StoreSpec& spec, std::unique_ptr<Store>* out);

}  // namespace regioncache
