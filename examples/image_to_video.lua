-- Image to video: two reference images (the first and the last frame) are
-- uploaded to the Files API, then a wan-2-7-video task animates between them.
--   RIVYA_API_KEY=... lua5.4 examples/image_to_video.lua [out.mp4]
-- Against the simulator: examples/with-sim.sh lua5.4 examples/image_to_video.lua
local rivya = require "rivya"

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
local output = arg[1] or "out/image_to_video.mp4"
local frames = { here .. "/assets/first_frame.png", here .. "/assets/last_frame.jpg" }

local function check(value, err)
  if value == nil then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
  return value
end

local client = rivya.new{}   -- key and base URL from RIVYA_API_KEY / RIVYA_BASE_URL
print(("rivya %s -> %s"):format(rivya.VERSION, client.base_url))

-- 1. upload: the kind and MIME type come from the file's bytes; `model`
--    applies wan-2-7-video's own limits before a byte is sent
local references = {}
for i, path in ipairs(frames) do
  local file = check(client:upload(path, { model = "wan-2-7-video" }))
  print(("reference %d: %s -> %s (%s, %d bytes)"):format(i, path:match("[^/]+$"), file.id, file.mime_type,
    file.size_bytes))
  references[i] = file
end

-- 2. the request: upload results go straight into referenceMediaItems
--    (rivya converts them to the API's camelCase reference form)
local request = {
  model = "wan-2-7-video",
  prompt = "The camera glides from a deep blue night sky into a warm golden sunrise over the sea",
  params = { resolution = "720p", duration = 5, prompt_extend = false, referenceMediaItems = references },
}
local body, warnings = rivya.validate(request)
check(body, warnings)
print(("mode: image-to-video with %d images, %d credits"):format(#body.params.referenceMediaItems,
  check(rivya.estimate(request))))
for _, w in ipairs(warnings) do print("note: " .. w) end

-- 3. create, wait, download
local task = check(client:generate(request, {
  output = output,
  interval = tonumber(os.getenv("RIVYA_POLL_INTERVAL")),
  on_update = function(t) print(("task %s %s"):format(t.id, t.status)) end,
}))
print(("saved %s (task %s, %d credits)"):format(task.output, task.id, task.final_credits))
client:close()
