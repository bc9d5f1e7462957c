-- Keyframe to video, two models from the live catalog: z-image makes a
-- keyframe (PNG), it is uploaded to the Files API, and wan-2-7-video
-- animates it (image-to-video).
--   RIVYA_API_KEY=... lua5.4 examples/keyframe_to_video.lua [out-dir]
-- Against the simulator: examples/with-sim.sh lua5.4 examples/keyframe_to_video.lua
local rivya = require "rivya"

local dir = arg[1] or "out"
os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")

local function check(value, err)
  if value == nil then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
  return value
end

local client = rivya.new{}   -- key and base URL from RIVYA_API_KEY / RIVYA_BASE_URL
local interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL"))

-- the catalog says what each model takes: no model is hard-coded in rivya
local by_id = {}
for _, m in ipairs(check(client:models())) do by_id[m.id] = m end
for _, id in ipairs({ "z-image", "wan-2-7-video" }) do
  local m = by_id[id]
  if not m or m.api_status ~= "available" then
    check(nil, id .. " is not available: " .. tostring(m and m.api_status))
  end
  print(("%s: %s, %s, %s credits (%s)"):format(id, m.category, table.concat(m.supported_modes, ", "),
    tostring(m.base_credits), m.billing_type))
end

-- 1. the keyframe: a text-to-image run, validated against the live catalog
local still = {
  model = "z-image",
  prompt = "A lighthouse on a cliff at dusk, storm clouds, volumetric light, cinematic still",
  params = { size = "1536x1024", steps = 12, seed = 7 },
}
check(client:validate(still))
local keyframe = check(client:generate(still, { output = dir .. "/keyframe.png", interval = interval }))
print(("keyframe: task %s -> %s (%s credits)"):format(keyframe.id, keyframe.output, tostring(keyframe.final_credits)))

-- 2. the keyframe goes to the Files API under wan-2-7-video's limits
local file = check(client:upload(keyframe.output, { model = "wan-2-7-video" }))
print(("uploaded: %s (%s, %d bytes)"):format(file.id, file.mime_type, file.size_bytes))

-- 3. image-to-video from the keyframe
local motion = {
  model = "wan-2-7-video",
  prompt = "The storm rolls in, waves crash below, the lighthouse beam sweeps through the rain",
  params = { duration = 5, prompt_extend = false, referenceMediaItems = { file } },
}
local body, warnings = client:validate(motion)
check(body, warnings)
print(("mode: image-to-video with %d image, %d credits"):format(#body.params.referenceMediaItems,
  check(client:estimate(motion))))
for _, w in ipairs(warnings) do print("note: " .. w) end
local video = check(client:generate(motion, { output = dir .. "/keyframe_to_video.mp4", interval = interval,
  on_update = function(t) print(("task %s %s"):format(t.id, t.status)) end }))
print(("saved %s (task %s, %d credits)"):format(video.output, video.id, video.final_credits))
client:close()
