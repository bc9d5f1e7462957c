-- Concurrency measures against rivya-sim on loopback, all in one run:
--  1. 1,000 generations created and polled to completion through gather,
--     against the same work done one after the other;
--  2. client CPU per HTTP request: rivya, the curl CLI (--parallel) and
--     Debian's lua-curl on the same polling mix (hyperfine);
--  3. 10,000 tasks in flight in one Lua state: peak RSS (GNU time) and the
--     CPU used while idle-waiting.
--   make bench   (or: lua5.4 bench/concurrency.lua; BENCH_QUICK=1 for a short run)
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local cjson = require "cjson"

local QUICK = os.getenv("BENCH_QUICK") ~= nil
local LUA = os.getenv("LUA") or "lua5.4"
local HERE = helper.ROOT .. "/bench/concurrency"
local q = helper.sh_quote

local GENERATIONS = QUICK and 200 or 1000        -- measure 1
local T = 5                                      -- their server-side processing time, seconds
local POLL = 0.5                                 -- poll interval of measure 1, seconds
local SEQUENTIAL = QUICK and 2 or 5              -- generations timed one after the other
local POLL_IDS, POLL_ROUNDS = 200, 10            -- measure 2: 2,000 GETs
local IN_FLIGHT = QUICK and 2000 or 10000        -- measure 3
local IN_FLIGHT_T = QUICK and 12 or 30

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function machine()
  local cpu = "unknown CPU"
  for line in io.lines("/proc/cpuinfo") do
    local m = line:match("^model name%s*:%s*(.+)$")
    if m then cpu = m break end
  end
  return ("%s, %s, %s cores, %s"):format(os.date("!%Y-%m-%d %H:%M UTC"), sh("uname -m"):gsub("%s+$", ""),
    sh("nproc"):gsub("%s+$", ""), cpu)
end

local function start_sim(args)
  local all = { "--quiet", "--credits", "1000000000" }
  for _, a in ipairs(args) do all[#all + 1] = a end
  return helper.start_sim{ args = all }
end

------------------------------------------------------------------------------
-- 1. 1,000 generations through gather vs one after the other
------------------------------------------------------------------------------
local function measure_gather()
  local sim = start_sim{ "--task-seconds", tostring(T) }
  local client = rivya.new{ api_key = sim.key, base_url = sim.url, poll_interval = POLL }
  local function generation(i)
    return function()
      local task = assert(client:create{ model = "wan-2-7-video", prompt = "bench generation #" .. i })
      return assert(client:wait(task)).status
    end
  end
  local fns = {}
  for i = 1, GENERATIONS do fns[i] = generation(i) end
  local t0 = core.now()
  local results = rivya.gather(fns)
  local wall = core.now() - t0
  for i = 1, GENERATIONS do assert(results[i][1] == "succeeded", tostring(results[i][2])) end
  local ledger = sim:ledger()
  sim:reset()
  t0 = core.now()
  for i = 1, SEQUENTIAL do assert(generation(i)() == "succeeded") end
  local per = (core.now() - t0) / SEQUENTIAL
  client:close()
  sim:stop()
  return { wall = wall, requests = ledger.requests, connections = ledger.connections,
    sequential_each = per, sequential_all = per * GENERATIONS }
end

------------------------------------------------------------------------------
-- 2. client CPU per request: rivya vs curl CLI vs lua-curl, same GETs
------------------------------------------------------------------------------
local function measure_cpu()
  local sim = start_sim{ "--task-seconds", "86400" }
  local client = rivya.new{ api_key = sim.key, base_url = sim.url }
  local fns = {}
  for i = 1, POLL_IDS do
    fns[i] = function() return assert(client:create{ model = "wan-2-7-video", prompt = "polled #" .. i }).id end
  end
  local dir = helper.tmpdir()
  local ids, one = dir .. "/ids", dir .. "/one"
  local f, g = assert(io.open(ids, "w")), assert(io.open(one, "w"))
  for i, r in ipairs(rivya.gather(fns)) do
    f:write(r[1], "\n")
    if i == 1 then g:write(r[1], "\n") end
  end
  f:close()
  g:close()
  client:close()
  -- the curl CLI's config: the same URLs, in the same order
  local function curl_config(path, list, rounds)
    local out = assert(io.open(path, "w"))
    for _ = 1, rounds do
      for id in io.lines(list) do
        out:write(('url = "%s/api/v1/generations/%s"\noutput = "/dev/null"\n'):format(sim.url, id))
      end
    end
    out:close()
  end
  curl_config(dir .. "/curl.cfg", ids, POLL_ROUNDS)
  curl_config(dir .. "/curl1.cfg", one, 1)
  local curl = ("curl -sS --parallel --parallel-max 16 -H %s -H 'Accept: application/json' -K "):format(
    q("Authorization: Bearer " .. sim.key))
  local n = POLL_IDS * POLL_ROUNDS
  local commands = {
    { "rivya, gather, 16 at once",
      ("%s %s/poll_rivya.lua %s %s %s %d 16"):format(LUA, HERE, sim.url, sim.key, ids, POLL_ROUNDS),
      ("%s %s/poll_rivya.lua %s %s %s 1 16"):format(LUA, HERE, sim.url, sim.key, one) },
    { "rivya, one after the other",
      ("%s %s/poll_rivya.lua %s %s %s %d 1"):format(LUA, HERE, sim.url, sim.key, ids, POLL_ROUNDS),
      ("%s %s/poll_rivya.lua %s %s %s 1 1"):format(LUA, HERE, sim.url, sim.key, one) },
    { "curl CLI --parallel --parallel-max 16", curl .. q(dir .. "/curl.cfg"), curl .. q(dir .. "/curl1.cfg") },
    { "lua-curl 0.3 (Lua 5.1), one handle, in sequence",
      ("lua5.1 %s/poll_luacurl.lua %s %s %s %d"):format(HERE, sim.url, sim.key, ids, POLL_ROUNDS),
      ("lua5.1 %s/poll_luacurl.lua %s %s %s 1"):format(HERE, sim.url, sim.key, one) },
  }
  local out = {}
  for i, c in ipairs(commands) do
    local json = dir .. "/h" .. i .. ".json"
    local text, ok = sh(("hyperfine -N --style none --warmup 1 --runs %d --export-json %s %s %s"):format(
      QUICK and 3 or 10, q(json), q(c[2]), q(c[3])))
    assert(ok, text)
    local res = cjson.decode(helper.read_file(json)).results
    local full, base = res[1].user + res[1].system, res[2].user + res[2].system
    out[i] = { name = c[1], per_request = (full - base) / (n - 1), wall = res[1].mean, cpu = full }
  end
  -- connection reuse of one rivya pass
  local before = sim:ledger()
  local text, ok = sh(commands[1][2])
  assert(ok, text)
  local after = sim:ledger()
  sim:stop()
  helper.rmrf(dir)
  return { commands = out, requests = n, reuse_requests = after.requests - before.requests,
    reuse_connections = after.connections - before.connections }
end

------------------------------------------------------------------------------
-- 3. 10,000 tasks in flight: peak RSS, idle CPU
------------------------------------------------------------------------------
local function measure_in_flight(gc)
  local sim = start_sim{ "--task-seconds", tostring(IN_FLIGHT_T) }
  local text, ok = sh(("/usr/bin/time -v %s %s/inflight.lua %s %s %d %s"):format(LUA, HERE, sim.url,
    sim.key, IN_FLIGHT, gc))
  local ledger = sim:ledger()
  sim:stop()
  assert(ok, text)
  local r = cjson.decode((assert(text:match("(%b{})"), text)))
  r.peak_rss_mb = tonumber(text:match("Maximum resident set size %(kbytes%): (%d+)")) / 1024
  r.requests = ledger.requests
  return r
end

local m1 = measure_gather()
local m2 = measure_cpu()
local m3 = measure_in_flight("default")
local m3l = measure_in_flight("lua-gc")
local m3g = measure_in_flight("generational")

local curl_cpu = m2.commands[3].per_request
local out = {}
local function add(s) out[#out + 1] = s end
add(("### Concurrency on loopback (%s)"):format(machine()))
add("")
add(("rivya-sim on the same machine; rivya %s, %s, %s."):format(rivya.VERSION, _VERSION,
  core.curl_version:match("^%S+") or "libcurl"))
add("")
add("| measure | result | goal |")
add("|---|---|---|")
add(("| %d generations through `gather` (T = %d s, polled every %.1f s) | **%.2f s** wall (T + %.2f s); "
  .. "%d requests over %d TCP connections | ≤ T + 2 s = %d s |"):format(GENERATIONS, T, POLL, m1.wall, m1.wall - T,
  m1.requests, m1.connections, T + 2))
add(("| the same, one after the other | %.2f s per generation → %.0f s for %d (from %d timed) | — |"):format(
  m1.sequential_each, m1.sequential_all, GENERATIONS, SEQUENTIAL))
add(("| speed-up of `gather` | %.0f× | — |"):format(m1.sequential_all / m1.wall))
for i, c in ipairs(m2.commands) do
  add(("| client CPU per request: %s | %.0f µs (%.2f s CPU, %.2f s wall for %d GETs)%s | %s |"):format(c.name,
    c.per_request * 1e6, c.cpu, c.wall, m2.requests,
    i ~= 3 and (" = %.2f× curl"):format(c.per_request / curl_cpu) or "",
    i <= 2 and "≤ 1.5× curl" or "yardstick"))
end
add(("| connection reuse, one rivya pass | %d requests over %d TCP connections | kept alive |"):format(
  m2.reuse_requests, m2.reuse_connections))
for _, m in ipairs({ { m3, "gather's default (`gc_growth = 1.5`)" },
                    { m3l, "`gc_growth = false` (Lua's incremental GC alone)" },
                    { m3g, "`gc_growth = false`, `collectgarbage(\"generational\")`" } }) do
  local r, gc = m[1], m[2]
  add(("| %d tasks in flight, %s: peak RSS | **%.1f MB** (%d full collections by gather) | ≤ 64 MB |"):format(
    r.count, gc, r.peak_rss_mb, r.collections))
  add(("| … CPU while idle-waiting (all %d waiting, %.1f s window) | **%.2f %%** of wall | ≤ 5 %% |"):format(
    r.count, r.idle_wall, 100 * r.idle_cpu / r.idle_wall))
  add(("| … whole wait, documented polling pace (T = %d s) | %.1f s CPU over %.1f s (%.1f %%), %d requests "
    .. "(%.0f µs CPU each) | — |"):format(IN_FLIGHT_T, r.wait_cpu, r.wait_wall, 100 * r.wait_cpu / r.wait_wall,
    r.requests - r.count, 1e6 * r.wait_cpu / (r.requests - r.count)))
  add(("| … creating them, 256 at a time | %.1f s wall, %.1f s CPU | — |"):format(r.create_wall, r.create_cpu))
end
print(table.concat(out, "\n"))
return out
