-- One side of bench/validate.lua: N validations of a wan-2-7-video request
-- with every param set and two reference images, in this process; prints
-- the CPU seconds they took (os.clock). The rivya loaded is whichever
-- LUA_PATH/LUA_CPATH name.
local rivya = require "rivya"
local N = tonumber(arg[1]) or 100000

local req = {
  model = "wan-2-7-video",
  prompt = "A paper boat drifting down a rain-soaked street at dusk, cinematic, shallow depth of field",
  params = {
    resolution = "1080p", duration = 10, aspect_ratio = "16:9", negative_prompt = "blur, text",
    prompt_extend = false, watermark = false, audio_setting = "auto", seed = 42,
    referenceMediaItems = {
      { url = "https://cdn.example.com/first.png", kind = "image", name = "first.png", mime_type = "image/png" },
      { url = "https://cdn.example.com/last.jpg", kind = "image", name = "last.jpg", mime_type = "image/jpeg" },
    },
  },
}
assert(rivya.validate(req))
collectgarbage()
local validate = rivya.validate
local t0 = os.clock()
for _ = 1, N do validate(req) end
io.write(("%.6f\n"):format(os.clock() - t0))
