--- Catalogs compiled for the C validator (core.catalog, rivya.catalog):
-- any model validated from its catalog object, offline. The catalog below
-- is written the documented way (GET /api/v1/models) for models rivya's
-- snapshot does not know.
local core = require "rivya.core"
local catalog = require "rivya.catalog"
local rivya = require "rivya"
local compat = require "rivya.compat"

local DEFAULTS = {
  image = { max_bytes = 10000000, mime_types = { "image/jpeg", "image/png", "image/webp" } },
}

local function image_model()
  return {
    id = "z-image", display_name = "Z-Image", category = "image", runtime = "async_task",
    base_credits = 2, billing_type = "FIXED", supported_modes = { "text-to-image", "image-to-image" },
    max_prompt_length = 1000, api_status = "available",
    reference_media = {
      max_items = 1, kinds = { "image" },
      modes = { { mode = "image-to-image", counts = { image = { 1, 1 } } } },
      limits = { image = { max_bytes = 5000000, mime_types = { "image/png" } } },
    },
    params = {
      { key = "size", type = "select", options = { "512", "1024" }, default = "1024" },
      { key = "guidance", type = "number", min = 1, max = 20.5 },
      { key = "steps", type = "number", min = 1, max = 50, integer = true, required = true },
      { key = "style", type = "text", max_length = 5 },
      { key = "hdr", type = "boolean" },
      { key = "palette", type = "color-list", description = "a type rivya does not know" },
    },
    notices = {},
  }
end

local function models()
  return {
    image_model(),
    { id = "veo-4-video", category = "video", runtime = "async_task", api_status = "coming_soon",
      billing_type = "FIXED", base_credits = 300, params = {} },
    { id = "studio-upscale", category = "video", runtime = "async_task", api_status = "studio_only", params = {} },
    { id = "rivya-chat", category = "chat", runtime = "chat", api_status = "available", params = {} },
    { id = "rivya-tts", category = "audio", runtime = "async_task", api_status = "available",
      billing_type = "PER_CHARACTER", base_credits = 1, max_prompt_length = 2000, params = {} },
    { display_name = "no id: left out" },
    "not an object",
  }
end

local function ok(cat, req)
  local body, warnings = cat:validate(req)
  assert(body, warnings and tostring(warnings))
  return body, warnings
end

local function fails(cat, req, field)
  local body, err = cat:validate(req)
  assert.is_nil(body)
  assert.is_true(rivya.is_error(err))
  assert.equal("validation_failed", err.code)
  if field then assert.equal(field, err.field) end
  return err
end

describe("core.catalog", function()
  local cat
  before_each(function() cat = core.catalog(models(), DEFAULTS) end)

  it("validates a model it only knows from catalog data", function()
    local body = ok(cat, { model = "z-image", prompt = "a fox", params = { size = 512, steps = "30",
      guidance = 7.5, style = "ink", hdr = "true" } })
    assert.same({ size = "512", steps = 30, guidance = 7.5, style = "ink", hdr = true }, body.params)
    assert.equal("integer", compat.math_type(body.params.steps))
  end)

  it("checks select, number, text and boolean params by the catalog's rules", function()
    local function req(params)
      params.steps = params.steps or 10
      return { model = "z-image", prompt = "a fox", params = params }
    end
    local err = fails(cat, req{ size = "2048" }, "params.size")
    assert.equal("one of 512, 1024", err.expected)
    err = fails(cat, req{ guidance = 21 }, "params.guidance")
    assert.equal("a number from 1 to 20.5", err.expected)
    err = fails(cat, req{ steps = 2.5 }, "params.steps")
    assert.equal("an integer from 1 to 50", err.expected)
    err = fails(cat, req{ style = "watercolour" }, "params.style")
    assert.equal("at most 5 characters (Unicode code points)", err.expected)
    err = fails(cat, req{ hdr = "yes" }, "params.hdr")
    assert.equal("true or false", err.expected)
  end)

  it("refuses a missing required param, naming what it expects", function()
    local err = fails(cat, { model = "z-image", prompt = "a fox" }, "params.steps")
    assert.equal("nothing", err.got)
    assert.equal("an integer from 1 to 50", err.expected)
  end)

  it("passes a param of a type it does not understand through unchecked", function()
    local palette = { "#fff", { nested = true } }
    local body = ok(cat, { model = "z-image", prompt = "a fox", params = { steps = 5, palette = palette } })
    assert.equal(palette, body.params.palette)
  end)

  it("suggests the closest param and model from the catalog", function()
    local err = fails(cat, { model = "z-image", prompt = "x", params = { step = 5 } }, "params.step")
    assert.truthy(err.message:find('did you mean "params.steps"', 1, true))
    err = fails(cat, { model = "z-imag", prompt = "x" }, "model")
    assert.truthy(err.message:find('did you mean "z-image"', 1, true))
  end)

  it("counts the prompt against max_prompt_length in code points", function()
    ok(cat, { model = "z-image", prompt = ("é"):rep(1000), params = { steps = 1 } })
    local err = fails(cat, { model = "z-image", prompt = ("é"):rep(1001), params = { steps = 1 } }, "prompt")
    assert.equal("1001", err.got)
  end)

  it("refuses a model whose api_status is not available, naming the status", function()
    for id, status in pairs({ ["veo-4-video"] = "coming_soon", ["studio-upscale"] = "studio_only" }) do
      local err = fails(cat, { model = id, prompt = "x" }, "model")
      assert.equal(status, err.api_status)
      assert.truthy(err.message:find(status, 1, true), err.message)
      assert.is_nil(cat:estimate({ model = id, prompt = "x" }))
    end
  end)

  it("refuses a model whose runtime is not async_task", function()
    local err = fails(cat, { model = "rivya-chat", prompt = "hello" }, "model")
    assert.equal("chat", err.runtime)
    assert.truthy(err.message:find("runtime chat", 1, true), err.message)
  end)

  it("leaves out entries without an id", function()
    assert.equal("rivya.Catalog(5 models)", tostring(cat))
  end)

  it("estimates base_credits for FIXED billing and says unknown otherwise", function()
    assert.equal(2, cat:estimate({ model = "z-image", prompt = "a", params = { steps = 1 } }))
    local credits, err = cat:estimate({ model = "rivya-tts", prompt = "Hello" })
    assert.is_nil(credits)
    assert.equal("unknown", err.code)
    assert.truthy(err.message:find("PER_CHARACTER", 1, true))
  end)

  it("takes reference modes and limits from reference_media", function()
    local file = { url = "https://cdn.example.com/k.png", kind = "image", mime_type = "image/png" }
    local body = ok(cat, { model = "z-image", prompt = "a", params = { steps = 1, referenceMediaItems = { file } } })
    assert.equal("image/png", body.params.referenceMediaItems[1].mimeType)
    local err = fails(cat, { model = "z-image", prompt = "a", params = { steps = 1,
      referenceMediaItems = { file, file } } }, "params.referenceMediaItems")
    assert.equal("at most 1 items", err.expected)
    err = fails(cat, { model = "z-image", prompt = "a", params = { steps = 1, referenceMediaItems = {
      { url = "https://cdn.example.com/k.jpg", kind = "image", mime_type = "image/jpeg" } } } })
    assert.truthy(err.expected:find("image/png", 1, true))
    assert.same({ image = { max_bytes = 5000000, mime = { "image/png" } } }, cat:upload_rules("z-image"))
    assert.is_nil(cat:check_upload("z-image", "image", "image/png", 5000001))
    assert.is_true(cat:check_upload(nil, "image", "image/jpeg", 10000000))
  end)

  it("is compiled once: changing the catalog tables afterwards changes nothing", function()
    local data = models()
    local c = core.catalog(data, DEFAULTS)
    data[1].params[1].options[1] = "4096"
    data[1].id = "renamed"
    ok(c, { model = "z-image", prompt = "x", params = { size = "512", steps = 1 } })
    collectgarbage()
    collectgarbage()
    fails(c, { model = "z-image", prompt = "x", params = { size = "4096", steps = 1 } }, "params.size")
  end)

  it("tolerates malformed catalog fields as not said", function()
    local c = core.catalog({ { id = "odd", params = { { key = "a", type = "select", options = "no" },
      { key = 7 }, "x", { key = "n", type = "number", min = "low" } }, reference_media = { kinds = 3 },
      max_prompt_length = "long", base_credits = 1.5, billing_type = "FIXED" } }, {})
    local body = ok(c, { model = "odd", params = { a = { 1 }, n = 99 } })
    assert.same({ a = { 1 }, n = 99 }, body.params)
    local credits, err = c:estimate({ model = "odd" })
    assert.is_nil(credits)
    assert.equal("unknown", err.code)
  end)

  it("raises on misuse: arguments that are not tables", function()
    assert.is_false(pcall(core.catalog, "x", {}))
    assert.is_false(pcall(core.catalog, {}, nil))
    assert.is_false(pcall(cat.validate, cat, "x"))
    assert.is_false(pcall(cat.validate, {}, {}))
  end)
end)

describe("rivya.catalog.compile", function()
  it("keeps rivya's notes on the modes of a live model the snapshot knows", function()
    local live = rivya.models()
    for _, mode in ipairs(live[1].reference_media.modes) do mode.rivya_notes = nil end
    local cat = catalog.compile(live)
    assert.is_nil(live[1].reference_media.modes[2].rivya_notes)     -- the live objects stay as they were
    local video = { url = "https://cdn.example.com/v.mp4", kind = "video", duration_token = "dt_1" }
    local _, warnings = cat:validate({ model = "wan-2-7-video", prompt = "x",
      params = { duration = 15, referenceMediaItems = { video } } })
    assert.same({ "params.duration: video-editing tops out at 10 s; 15 was clamped to 10" }, warnings)
  end)
end)

describe("core.suggest", function()
  it("gives the closest name within 3 edits, ignoring case, '_' and '-'", function()
    assert.equal("timeout", core.suggest("timout", { "interval", "timeout" }))
    assert.equal("aspect_ratio", core.suggest("aspectRatio", { "aspect_ratio", "seed" }))
    assert.is_nil(core.suggest("id", { "seed" }))
    assert.is_nil(core.suggest("zzzzzz", { "timeout" }))
    assert.equal("seed", core.suggest("sed", { "seed" }, 1))
    assert.is_nil(core.suggest("sxxd", { "seed" }, 1))
  end)
end)
