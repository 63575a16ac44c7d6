-- wrk's script for bench/bench_site.py (run with -t1):
--   wrk ... -s bench/site.lua http://127.0.0.1:PORT -- PATHS_FILE S SEED COUNT DONE_FILE
-- Each request asks one path of PATHS_FILE (one a line, hottest first),
-- drawn from a Zipf law of exponent S: path k with weight 1/k^S. Each
-- thread seeds its generator with SEED + its number. After COUNT responses
-- the thread stops and creates DONE_FILE (wrk itself runs until its -d or
-- a SIGINT, which bench_site.py sends on seeing the file). At the end one
-- line "BENCH_JSON {...}" carries the counts and the latency percentiles (µs).

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local paths, cdf = {}, {}
local limit, done_file, seen = 0, nil, 0

function init(args)
  local file, s, seed = args[1], tonumber(args[2]), tonumber(args[3])
  limit, done_file = tonumber(args[4]), args[5]
  for line in io.lines(file) do paths[#paths + 1] = line end
  local total = 0
  for k = 1, #paths do
    total = total + 1 / k ^ s
    cdf[k] = total
  end
  for k = 1, #paths do cdf[k] = cdf[k] / total end
  math.randomseed(seed + id)
end

function request()
  local u = math.random()
  local lo, hi = 1, #paths
  while lo < hi do  -- the first k with cdf[k] >= u
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", paths[lo])
end

function response(status, headers, body)
  seen = seen + 1
  if seen == limit then
    local f = io.open(done_file, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
