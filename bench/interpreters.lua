-- Client CPU per request under each interpreter, in one run: the same
-- polling pass as bench/concurrency.lua's measure 2 (GET /generations/{id}
-- through rivya.gather, 16 at once, bench/concurrency/poll_rivya.lua),
-- timed by hyperfine under Lua 5.4 and LuaJIT (and 5.1-5.3 when built),
-- each against its own build (build/, build/jit, build/5.X).
--   make bench   (or: lua5.4 bench/interpreters.lua; BENCH_QUICK=1 for a short run)
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local cjson = require "cjson"

local QUICK = os.getenv("BENCH_QUICK") ~= nil
local HERE = helper.ROOT .. "/bench/concurrency"
local q = helper.sh_quote
local POLL_IDS, POLL_ROUNDS = 200, 10            -- 2,000 GETs a pass

-- interpreter, its build folder, label
local INTERPRETERS = {
  { "lua5.4", "build", "Lua 5.4" },
  { "luajit", "build/jit", "LuaJIT 2.1" },
  { "lua5.3", "build/5.3", "Lua 5.3" },
  { "lua5.2", "build/5.2", "Lua 5.2" },
  { "lua5.1", "build/5.1", "Lua 5.1" },
}

local function sh(cmd)
  local out, ok = helper.popen(cmd .. " 2>&1")
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

local sim = helper.start_sim{ args = { "--quiet", "--credits", "1000000000", "--task-seconds", "86400" } }
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

local n = POLL_IDS * POLL_ROUNDS
local rows = {}
for _, it in ipairs(INTERPRETERS) do
  local lua, build, label = it[1], helper.ROOT .. "/" .. it[2], it[3]
  local have = sh("command -v " .. lua)
  if have ~= "" and helper.read_file(build .. "/rivya/core.so") then
    -- the interpreter's own build, whatever LUA_CPATH this run has
    local env = ("env LUA_CPATH=%s "):format(q(build .. "/?.so;;"))
    local full = ("%s%s %s/poll_rivya.lua %s %s %s %d 16"):format(env, lua, HERE, sim.url, sim.key, ids, POLL_ROUNDS)
    local base = ("%s%s %s/poll_rivya.lua %s %s %s 1 16"):format(env, lua, HERE, sim.url, sim.key, one)
    local json = dir .. "/" .. lua .. ".json"
    local text, ok = sh(("hyperfine -N --style none --warmup 1 --runs %d --export-json %s %s %s"):format(
      QUICK and 3 or 10, q(json), q(full), q(base)))
    assert(ok, text)
    local res = cjson.decode(helper.read_file(json)).results
    local cpu, cpu1 = res[1].user + res[1].system, res[2].user + res[2].system
    rows[#rows + 1] = { label = label, per_request = (cpu - cpu1) / (n - 1), cpu = cpu, wall = res[1].mean }
  end
end
sim:stop()
helper.rmrf(dir)

print(("### Client CPU per request by interpreter (%s)"):format(machine()))
print("")
print(("rivya %s, %s; one pass: %d GETs through `gather`, 16 at once, against rivya-sim on loopback "
  .. "(hyperfine: the pass minus a 1-request pass, over %d)."):format(rivya.VERSION,
  core.curl_version:match("^%S+") or "libcurl", n, n - 1))
print("")
print("| interpreter | client CPU per request | CPU and wall of one pass | vs Lua 5.4 |")
print("|---|---|---|---|")
local ref = rows[1] and rows[1].per_request
for _, r in ipairs(rows) do
  print(("| %s | **%.0f µs** | %.2f s CPU, %.2f s wall | %.2f× |"):format(r.label, r.per_request * 1e6, r.cpu,
    r.wall, r.per_request / ref))
end
