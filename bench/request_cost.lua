-- The cost of one API request, whole processes side by side (issue 15):
-- N = 20,000 GETs of one task against rivya-sim on loopback,
--   rivya: client:get through rivya.gather, 50 at once;
--   curl:  the curl CLI, --parallel --parallel-max 50, one config file listing every URL;
-- and one call after the other: rivya outside gather against curl without --parallel.
-- CPU is user + sys of each whole process (GNU time), start-up included; the
-- runs alternate (rivya, curl, rivya, curl, ...) RUNS times and the median counts.
-- With BENCH_CALLGRIND=1 each command also runs once under callgrind: its
-- instruction count (user space only) is stable on a shared, loaded machine.
--   lua5.4 bench/request_cost.lua   (BENCH_N=2000 for a short run)
local helper = require "helper"
local cjson = require "cjson"

local N = tonumber(os.getenv("BENCH_N")) or 20000
local CONCURRENCY = 50
local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 3
local LUA = os.getenv("LUA") or "lua5.4"
local HERE = helper.ROOT .. "/bench/request_cost"
local q = helper.sh_quote

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

-- user + sys and wall seconds of one whole process, and its requests
local function timed(cmd, sim, dir)
  local before = sim:ledger().requests
  local out, ok = sh(("/usr/bin/time -f '%%U %%S %%e' -o %s %s"):format(q(dir .. "/time"), cmd))
  assert(ok, out)
  local user, sys, wall = helper.read_file(dir .. "/time"):match("([%d.]+) ([%d.]+) ([%d.]+)%s*$")
  local requests = sim:ledger().requests - before
  assert(requests == N, ("%d requests instead of %d: %s"):format(requests, N, out))
  return { cpu = tonumber(user) + tonumber(sys), wall = tonumber(wall) }
end

-- instructions of one whole process under callgrind
local function instructions(cmd, sim, dir)
  local before = sim:ledger().requests
  local out, ok = sh(("valgrind --tool=callgrind --callgrind-out-file=%s %s"):format(q(dir .. "/cg.out"), cmd))
  assert(ok, out)
  assert(sim:ledger().requests - before == N, "callgrind run: wrong request count")
  return tonumber((assert(out:match("Collected : (%d+)"), out)))
end

local function median(list, field)
  local v = {}
  for i, r in ipairs(list) do v[i] = r[field] end
  table.sort(v)
  return v[math.floor((#v + 1) / 2)]
end

local sim = helper.start_sim{ args = { "--quiet", "--credits", "1000000", "--task-seconds", "86400" } }
local dir = helper.tmpdir()
local created, cerr = sim:api("POST", "/api/v1/generations", { model = "wan-2-7-video", prompt = "polled" })
assert(created == 201, cerr)
local _, task = sim:api("GET", "/__sim/ledger", nil, { key = false })
local id = task.tasks[1].id

local cfg = assert(io.open(dir .. "/curl.cfg", "w"))
for _ = 1, N do
  cfg:write(('url = "%s/api/v1/generations/%s"\noutput = "/dev/null"\n'):format(sim.url, id))
end
cfg:close()
local curl = ("curl -sS -H %s -H 'Accept: application/json' "):format(q("Authorization: Bearer " .. sim.key))
local function rivya_cmd(concurrency)
  return ("%s %s/get_rivya.lua %s %s %s %d %d"):format(LUA, HERE, sim.url, sim.key, id, N, concurrency)
end

local pairs_ = {
  { name = ("gather, %d at once"):format(CONCURRENCY), rivya = rivya_cmd(CONCURRENCY),
    curl = curl .. ("--parallel --parallel-max %d -K %s"):format(CONCURRENCY, q(dir .. "/curl.cfg")),
    curl_name = ("curl --parallel --parallel-max %d"):format(CONCURRENCY), goal = 1.25 },
  { name = "one after the other", rivya = rivya_cmd(0),
    curl = curl .. ("-K %s"):format(q(dir .. "/curl.cfg")), curl_name = "curl, sequential", goal = 1.4 },
}

local rows = {}
for _, p in ipairs(pairs_) do
  local r, c = {}, {}
  for i = 1, RUNS do
    r[i] = timed(p.rivya, sim, dir)
    c[i] = timed(p.curl, sim, dir)
  end
  local row = { p = p, rivya = r, curl = c }
  if os.getenv("BENCH_CALLGRIND") then
    row.rivya_ir, row.curl_ir = instructions(p.rivya, sim, dir), instructions(p.curl, sim, dir)
  end
  rows[#rows + 1] = row
end
sim:stop()
helper.rmrf(dir)

local out = {}
local function add(s) out[#out + 1] = s end
add(("### Request cost (%s)"):format(machine()))
add("")
add(("%d GETs of one task against rivya-sim on loopback; CPU = user + sys of the whole process, "
  .. "median of %d alternating runs; %s; instructions: callgrind, one run each, user space."):format(N, RUNS,
  _VERSION))
add("")
add("| measure | rivya µs CPU / request | curl µs CPU / request | rivya / curl | goal "
  .. "| rivya runs (CPU s) | curl runs (CPU s) | instructions / request: rivya, curl, ratio |")
add("|---|---|---|---|---|---|---|---|")
local results = {}
for _, row in ipairs(rows) do
  local rc, cc = median(row.rivya, "cpu"), median(row.curl, "cpu")
  local function list(runs)
    local t = {}
    for i, x in ipairs(runs) do t[i] = ("%.2f"):format(x.cpu) end
    return table.concat(t, ", ")
  end
  local ir = row.rivya_ir and ("%.0fk, %.0fk, **%.2f×**"):format(row.rivya_ir / N / 1000, row.curl_ir / N / 1000,
    row.rivya_ir / row.curl_ir) or "—"
  add(("| %s (vs %s) | %.1f | %.1f | **%.2f×** | ≤ %.2f× | %s | %s | %s |"):format(row.p.name, row.p.curl_name,
    1e6 * rc / N, 1e6 * cc / N, rc / cc, row.p.goal, list(row.rivya), list(row.curl), ir))
  results[#results + 1] = { name = row.p.name, rivya_us = 1e6 * rc / N, curl_us = 1e6 * cc / N, ratio = rc / cc,
    rivya_ir = row.rivya_ir, curl_ir = row.curl_ir }
end
print(table.concat(out, "\n"))
if os.getenv("BENCH_JSON") then helper.write_file(os.getenv("BENCH_JSON"), cjson.encode(results)) end
return out
