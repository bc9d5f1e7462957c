-- Several generations at once from one Lua state: rivya.gather runs each as a
-- coroutine, and inside it every client call yields while it waits, so the
-- tasks are created, polled and downloaded together on one thread.
--   RIVYA_API_KEY=... lua5.4 examples/batch_gather.lua [out-dir]
-- Against the simulator: examples/with-sim.sh lua5.4 examples/batch_gather.lua
local rivya = require "rivya"

-- a failed call: its error (one line) on stderr, exit 1 (assert would do on
-- 5.3+, but 5.1/5.2's assert takes only a string message, not an error table)
local function check(value, err)
  if value == nil then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
  return value
end

local dir = arg[1] or "out/batch"
assert(os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'"))

local prompts = {
  "A red kite climbing over green dunes, wide shot",
  "A tram crossing a bridge at night in the rain, neon reflections",
  "Close-up of coffee being poured in slow motion, morning light",
  "A snow leopard walking along a rocky ridge, telephoto",
}

local client = rivya.new{}
print(("rivya %s -> %s"):format(rivya.VERSION, client.base_url))
local balance = check(client:credits())
local total = 0
local jobs = {}
for i, prompt in ipairs(prompts) do
  local request = { model = "wan-2-7-video", prompt = prompt, params = { duration = 5, seed = i } }
  check(rivya.validate(request))            -- offline: a bad request fails here, before anything is sent
  total = total + check(rivya.estimate(request))
  jobs[i] = function()
    local output = ("%s/%02d.mp4"):format(dir, i)
    return client:generate(request, {
      output = output,
      interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
      on_update = function(t) print(("[%d] task %s %s"):format(i, t.id, t.status)) end,
    })
  end
end
print(("%d generations, %d credits of %d"):format(#jobs, total, balance))

local results = rivya.gather(jobs, { concurrency = 3 })   -- at most 3 in flight

local failed = 0
for i, r in ipairs(results) do
  local task, err = r[1], r[2]
  if task then
    print(("[%d] saved %s (task %s)"):format(i, task.output, task.id))
  else
    failed = failed + 1
    print(("[%d] failed: %s"):format(i, tostring(err)))
  end
end
print(("credits after: %d"):format(check(client:credits())))
client:close()
os.exit(failed == 0 and 0 or 1)
