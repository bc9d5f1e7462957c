-- rivya inside a cqueues event loop (Debian: lua-cqueues). Each generation
-- runs in its own cqueues coroutine; whenever rivya would wait, the client's
-- waiter hands the wait to cqueues: `cqueues.poll(client, timeout)` works
-- because a rivya client is pollable (pollfd, events, timeout). A ticker
-- coroutine shows the loop stays free while the generations wait.
--   examples/with-sim.sh lua5.4 examples/cqueues_loop.lua [count]
local cqueues = require "cqueues"
local rivya = require "rivya"

local count = tonumber(arg[1]) or 3
local client = rivya.new{
  poll_interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
  waiter = function(c, timeout)
    if c then cqueues.poll(c, timeout) else cqueues.sleep(timeout) end
  end,
}

local cq = cqueues.new()
local ticks, left, failed = 0, count, 0
for i = 1, count do
  cq:wrap(function()
    local task, err = client:generate({
      model = "wan-2-7-video",
      prompt = ("A hot-air balloon festival at dawn, balloon %d rising"):format(i),
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
    left = left - 1
  end)
end
cq:wrap(function()   -- the loop's own work, going on meanwhile
  while left > 0 do
    ticks = ticks + 1
    cqueues.sleep(0.05)
  end
end)

local ok, err = cq:loop()
if not ok then error(err) end
print(("%d generations, %d failed, %d ticks of the loop meanwhile"):format(count, failed, ticks))
client:close()
os.exit(failed == 0 and 0 or 1)
