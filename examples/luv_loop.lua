-- rivya inside a libuv loop (Debian: lua-luv). The loop watches the client's
-- one descriptor with a poll handle and curl's timer with a timer handle
-- (re-armed from client:timeout()), both calling client:step(). Generations
-- run in coroutines: whenever rivya would wait, the waiter yields, and the
-- loop's callbacks resume it. Nothing blocks the loop; a ticker shows it.
--   examples/with-sim.sh lua5.4 examples/luv_loop.lua [count]
local uv = require "luv"
local rivya = require "rivya"

local count = tonumber(arg[1]) or 3
local waiting = {}      -- coroutine -> {client = c or nil, timer = handle or nil}
local client

local function ms(seconds) return math.max(1, math.ceil(seconds * 1000)) end

-- resume a waiting coroutine once, whichever of its events comes first
local function wake(co)
  local w = waiting[co]
  if not w then return end
  waiting[co] = nil
  if w.timer then w.timer:close() end
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end

-- curl's own timer, as a uv timer re-armed after every step
local curl_timer = uv.new_timer()
local function on_activity()
  client:step()
  for co, w in pairs(waiting) do
    if w.client then wake(co) end   -- each checks its own transfer and waits again
  end
end
local function rearm()
  local t = client:timeout()
  if t then curl_timer:start(ms(t), 0, on_activity) else curl_timer:stop() end
end

client = rivya.new{
  poll_interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
  waiter = function(c, timeout)
    local co = coroutine.running()
    local w = { client = c }
    if timeout then
      w.timer = uv.new_timer()
      w.timer:start(ms(timeout), 0, function() wake(co) end)
    end
    waiting[co] = w
    rearm()
    coroutine.yield()
  end,
}
local poll = uv.new_poll(client:pollfd())
poll:start("r", function() on_activity() rearm() end)

local ticks, left, failed = 0, count, 0
local ticker = uv.new_timer()
ticker:start(50, 50, function() ticks = ticks + 1 end)

local function finished()
  left = left - 1
  if left == 0 then   -- close the handles: uv.run() returns
    poll:close()
    curl_timer:close()
    ticker:close()
  end
end

for i = 1, count do
  local co = coroutine.create(function()
    local task, err = client:generate({
      model = "wan-2-7-video",
      prompt = ("A koi pond in the rain, ripples spreading, fish %d"):format(i),
      params = { duration = 5, resolution = "720p" },
    }, {
      on_update = function(t) print(("[tick %3d] generation %d: %s %s"):format(ticks, i, t.id, t.status)) end,
    })
    if task then
      print(("generation %d succeeded: %s"):format(i, task.result.primary_url))
    else
      failed = failed + 1
      print(("generation %d failed: %s"):format(i, tostring(err)))
    end
    finished()
  end)
  local ok, err = coroutine.resume(co)
  if not ok then error(err, 0) end
end

uv.run()
print(("%d generations, %d failed, %d ticks of the loop meanwhile"):format(count, failed, ticks))
client:close()
os.exit(failed == 0 and 0 or 1)
