-- Video editing: one source video plus one style image. The local paths go
-- straight into referenceMediaItems: client:generate validates the whole
-- request first, then uploads them (the video gets its duration token) and
-- creates the task.
--   RIVYA_API_KEY=... lua5.4 examples/video_edit.lua [out.mp4] [source.mp4]
-- Against the simulator: examples/with-sim.sh lua5.4 examples/video_edit.lua
local rivya = require "rivya"

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
local output = arg[1] or "out/video_edit.mp4"
local source = arg[2] or (here .. "/../sim/sample.mp4")   -- a 2 s H.264 clip shipped with rivya
local style = here .. "/assets/last_frame.jpg"

local client = rivya.new{}
print(("rivya %s -> %s"):format(rivya.VERSION, client.base_url))

local request = {
  model = "wan-2-7-video",
  prompt = "Repaint the clip in warm golden-hour colours, keeping the motion and the framing",
  params = {
    duration = 10,               -- video editing tops out at 10 s
    aspect_ratio = "16:9",
    audio_setting = "origin",    -- keep the source's audio
    referenceMediaItems = { source, style },
  },
}

local task, err = client:generate(request, {
  output = output,
  interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
  on_update = function(t) print(("task %s %s"):format(t.id, t.status)) end,
})
if not task then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
for _, w in ipairs(task.warnings or {}) do print("note: " .. w) end
print(("saved %s (task %s, video editing, %d credits)"):format(task.output, task.id, task.final_credits))
client:close()
