-- 10,000 tasks in flight in one Lua state: create them (256 creates at a
-- time), then wait for all of them at once, polled at the documented pace.
-- Run under /usr/bin/time -v for the peak RSS. Prints one JSON line:
-- create and wait phases (wall, CPU), the CPU of an idle window while every
-- task waits for its first poll, full collections gather made.
--   lua5.4 bench/concurrency/inflight.lua BASE_URL KEY COUNT [MODE]
-- MODE: default (gather's gc_growth 1.5) | lua-gc (gc_growth = false: Lua's
-- incremental collector alone) | generational (gc_growth = false and
-- collectgarbage("generational"))
local rivya = require "rivya"
local core = require "rivya.core"
local sched = require "rivya.sched"
local cjson = require "cjson"

local base_url, key, count = arg[1], arg[2], tonumber(arg[3])
local mode = arg[4] or "default"
assert(mode == "default" or mode == "lua-gc" or mode == "generational", "unknown mode " .. mode)
if mode == "generational" then collectgarbage("generational") end
local gather_opts = { gc_growth = mode == "default" and 1.5 or false }

-- this process's CPU seconds (user + system), from /proc
local function cpu()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for x in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100   -- utime, stime (after the state field)
end

local client = rivya.new{ api_key = key, base_url = base_url }
local fns = {}
for i = 1, count do
  fns[i] = function()
    return assert(client:create{ model = "wan-2-7-video", prompt = "in flight #" .. i })
  end
end
local t0, c0 = core.now(), cpu()
local t1, c1
do
  local created = rivya.gather(fns, { concurrency = 256 })
  t1, c1 = core.now(), cpu()
  for i = 1, count do
    local task = created[i][1]
    fns[i] = function() return assert(client:wait(task)).status end
  end
end

local idle = {}
fns[count + 1] = function()
  -- every task sleeps 2.5 s before its first poll: measure in between
  rivya.sleep(0.5)
  idle.t, idle.c = core.now(), cpu()
  rivya.sleep(1.5)
  idle.wall, idle.cpu = core.now() - idle.t, cpu() - idle.c
end
local collections = sched.collections
local results = rivya.gather(fns, gather_opts)
collections = sched.collections - collections
local t2, c2 = core.now(), cpu()
for i = 1, count do assert(results[i][1] == "succeeded", tostring(results[i][2])) end
client:close()

print(cjson.encode{
  count = count,
  create_wall = t1 - t0, create_cpu = c1 - c0,
  wait_wall = t2 - t1, wait_cpu = c2 - c1,
  idle_wall = idle.wall, idle_cpu = idle.cpu,
  collections = collections,
})
