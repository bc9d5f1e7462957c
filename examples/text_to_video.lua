-- Text to video: create a wan-2-7-video task, watch it, save the result.
--   RIVYA_API_KEY=... lua5.4 examples/text_to_video.lua [out.mp4]
-- Against the simulator: examples/with-sim.sh lua5.4 examples/text_to_video.lua
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

local output = arg[1] or "out/text_to_video.mp4"
local client = rivya.new{}   -- key and base URL from RIVYA_API_KEY / RIVYA_BASE_URL
local started = os.time()

print(("rivya %s -> %s"):format(rivya.VERSION, client.base_url))
print("credits before: " .. check(client:credits()))

local request = {
  model = "wan-2-7-video",
  prompt = "A paper boat drifting down a rain-soaked street at dusk, cinematic, shallow depth of field",
  params = { resolution = "720p", duration = 5, aspect_ratio = "16:9", prompt_extend = false, seed = 42 },
}
print("estimate: " .. check(rivya.estimate(request)) .. " credits")

local task, err = client:generate(request, {
  output = output,
  interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
  on_update = function(t)
    print(("[%3ds] task %s %s"):format(os.time() - started, t.id, t.status))
  end,
  on_progress = function(received, total)
    if received == total and total > 0 then print(("downloaded %d bytes"):format(total)) end
  end,
})
if not task then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(("task %s %s: %s (reserved %d, final %d credits)"):format(task.id, task.status,
  task.result.primary_url, task.reserved_credits, task.final_credits))
print("saved " .. task.output)
print("credits after: " .. check(client:credits()))
client:close()
