-- The render a C host runs (examples/embed/host.c): returns a function
-- the host resumes as a coroutine. Whenever rivya would wait, the waiter
-- yields the client's descriptor and a timeout to the host, which polls them
-- in its own loop and resumes. Nothing here blocks.
local rivya = require "rivya"

return function(output, label)
  local client = rivya.new{
    poll_interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
    waiter = function(c, timeout) coroutine.yield(c and c:pollfd() or -1, timeout or -1) end,
  }
  local statuses = {}
  local task, err = client:generate({
    model = "wan-2-7-video",
    prompt = "A lighthouse keeper's lamp sweeping over a stormy sea, " .. label,
    params = { duration = 5, resolution = "720p" },
  }, {
    output = output,
    on_update = function(t) statuses[#statuses + 1] = t.status end,
  })
  client:close()
  if not task then return nil, tostring(err) end
  return ("%s: task %s %s (%s), saved %s"):format(label, task.id, task.status,
    table.concat(statuses, " > "), task.output)
end
