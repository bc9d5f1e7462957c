--- The request validator of the C core run on the catalog snapshot rivya
-- ships: validate, estimate, upload_rules, check_upload (the methods of a
-- compiled rivya.Catalog), rivya.models() and core.sniff. The expectations
-- come from the wan-2-7-video model page (the parameter table is the source
-- of truth) and API.md, not from the data.
local rivya = require "rivya"
local catalog = require "rivya.catalog"
local snapshot = catalog.snapshot()
local compat = require "rivya.compat"
-- the catalog's methods under the names the specs below grew up with
local core = setmetatable({
  validate = function(...) return snapshot:validate(...) end,
  estimate = function(...) return snapshot:estimate(...) end,
  upload_rules = function(...) return snapshot:upload_rules(...) end,
  check_upload = function(...) return snapshot:check_upload(...) end,
  models = rivya.models,
}, { __index = require "rivya.core" })

local MODEL = "wan-2-7-video"
local PROMPT = "A cinematic product reveal with smooth camera movement"

-- the model page's parameter table, row by row
local SEED_PARAMS = {
  { name = "resolution", type = "select", default = "720p", options = { "720p", "1080p" } },
  { name = "duration", type = "select", default = "5", options = { "5", "10", "15" } },
  { name = "aspect_ratio", type = "select", default = "16:9",
    options = { "16:9", "9:16", "1:1", "4:3", "3:4" } },
  { name = "negative_prompt", type = "text" },
  { name = "prompt_extend", type = "select", default = "true", options = { "true", "false" } },
  { name = "watermark", type = "select", default = "false", options = { "false", "true" } },
  { name = "audio_setting", type = "select", default = "auto", options = { "auto", "origin" } },
  { name = "seed", type = "number", min = 0, max = 2147483647 },
}

local SELECTS = {}
for _, row in ipairs(SEED_PARAMS) do
  if row.type == "select" then SELECTS[#SELECTS + 1] = row end
end

--- A request for wan-2-7-video with `params` (and extra top-level fields).
local function req(params, extra)
  local r = { model = MODEL, prompt = PROMPT, params = params }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

--- Validate and insist on success; returns body, warnings.
local function accepts(r)
  local body, warnings = core.validate(r)
  assert(body, warnings and tostring(warnings))
  assert.is_table(warnings)
  return body, warnings
end

--- Validate and insist on a validation_failed error for `field`; returns err.
local function rejects(r, field)
  local body, err = core.validate(r)
  assert.is_nil(body)
  assert.is_true(core.is_error(err))
  assert.equal("validation_failed", err.code)
  assert.equal(field, err.field)
  assert.is_string(err.expected)
  assert.is_string(err.got)
  assert.truthy(err.message:find(field, 1, true), "message names the field: " .. err.message)
  return err
end

local function upload_video(extra)
  local f = {
    id = "file_v1", url = "https://cdn.example.com/clip.mp4", kind = "video",
    name = "clip.mp4", mime_type = "video/mp4", size_bytes = 123456,
    duration_seconds = 4.2, duration_token = "dt_abc",
  }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

local function upload_image(extra)
  local f = {
    id = "file_i1", url = "https://cdn.example.com/frame.png", kind = "image",
    name = "frame.png", mime_type = "image/png", size_bytes = 2048,
  }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

local function refs(...)
  return req({ referenceMediaItems = { ... } })
end

describe("core.validate", function()
  describe("the body", function()
    it("holds model, prompt and an empty params table for a minimal request", function()
      local body, warnings = accepts({ model = MODEL, prompt = PROMPT })
      assert.same({ model = MODEL, prompt = PROMPT, params = {} }, body)
      assert.same({}, warnings)
    end)

    it("sends only the params the user gave, without defaults", function()
      local body = accepts(req({ duration = 10 }))
      assert.same({ duration = "10" }, body.params)
    end)

    it("copies client_request_id into the body", function()
      local body = accepts(req(nil, { client_request_id = "job-42" }))
      assert.equal("job-42", body.client_request_id)
    end)

    it("keeps idempotency_key out of the body", function()
      local body = accepts(req(nil, { idempotency_key = "key-1" }))
      assert.is_nil(body.idempotency_key)
      assert.same({ model = MODEL, prompt = PROMPT, params = {} }, body)
    end)

    it("is a fresh table that does not share the caller's params", function()
      local params = { duration = "5" }
      local body = accepts(req(params))
      assert.are_not.equal(params, body.params)
      body.params.duration = "15"
      assert.equal("5", params.duration)
    end)

    it("encodes to the JSON body of the model page's minimal request", function()
      local cjson = require "cjson"
      local body = accepts(req({
        resolution = "720p", duration = 5, aspect_ratio = "16:9",
        negative_prompt = "Optional exclusions or failure modes to avoid.",
        prompt_extend = true, watermark = false, audio_setting = "auto", seed = 0,
      }))
      local decoded = cjson.decode(cjson.encode(body))
      assert.same({
        model = MODEL, prompt = PROMPT,
        params = {
          resolution = "720p", duration = "5", aspect_ratio = "16:9",
          negative_prompt = "Optional exclusions or failure modes to avoid.",
          prompt_extend = "true", watermark = "false", audio_setting = "auto", seed = 0,
        },
      }, decoded)
      assert.equal("integer", compat.math_type(body.params.seed))
    end)
  end)

  describe("select params", function()
    for _, row in ipairs(SELECTS) do
      it("accept every option of params." .. row.name .. " as the wire string", function()
        for _, option in ipairs(row.options) do
          local body = accepts(req({ [row.name] = option }))
          assert.equal(option, body.params[row.name])
        end
      end)

      it("reject a wrong option of params." .. row.name .. " naming field, expected and got", function()
        local err = rejects(req({ [row.name] = "bogus" }), "params." .. row.name)
        assert.equal("one of " .. table.concat(row.options, ", "), err.expected)
        assert.equal('"bogus"', err.got)
        assert.equal("params." .. row.name .. ": expected one of " .. table.concat(row.options, ", ")
          .. '; got "bogus"', err.message)
      end)

      it("reject a table as params." .. row.name, function()
        local err = rejects(req({ [row.name] = { row.options[1] } }), "params." .. row.name)
        assert.equal("a table", err.got)
      end)
    end

    it("accept every duration as a Lua integer and as an integral float", function()
      for _, n in ipairs({ 5, 10, 15 }) do
        assert.equal(tostring(n), accepts(req({ duration = n })).params.duration)
        assert.equal(tostring(n), accepts(req({ duration = n + 0.0 })).params.duration)
      end
    end)

    it("reject a duration that is not an option, like the message in the brief", function()
      local err = rejects(req({ duration = 7 }), "params.duration")
      assert.equal("params.duration: expected one of 5, 10, 15; got 7", err.message)
      assert.equal("one of 5, 10, 15", err.expected)
      assert.equal("7", err.got)
    end)

    it("reject a non-integral duration such as 10.5", function()
      local err = rejects(req({ duration = 10.5 }), "params.duration")
      assert.equal("10.5", err.got)
    end)

    it("reject duration strings that only look like options", function()
      rejects(req({ duration = "10.0" }), "params.duration")
      rejects(req({ duration = " 10" }), "params.duration")
      rejects(req({ duration = "10\0" }), "params.duration")
    end)

    it("accept booleans for the true/false params prompt_extend and watermark", function()
      for _, name in ipairs({ "prompt_extend", "watermark" }) do
        assert.equal("true", accepts(req({ [name] = true })).params[name])
        assert.equal("false", accepts(req({ [name] = false })).params[name])
      end
    end)

    it("reject a boolean for a select param whose options are not true and false", function()
      local err = rejects(req({ resolution = true }), "params.resolution")
      assert.equal("true", err.got)
    end)

    it("reject a number for a select param whose options are not numbers", function()
      rejects(req({ aspect_ratio = 1 }), "params.aspect_ratio")
      rejects(req({ resolution = 720 }), "params.resolution")
    end)

    it("reject NaN and infinities as a duration", function()
      assert.equal("nan", rejects(req({ duration = 0 / 0 }), "params.duration").got)
      assert.equal("inf", rejects(req({ duration = math.huge }), "params.duration").got)
      assert.equal("-inf", rejects(req({ duration = -math.huge }), "params.duration").got)
    end)
  end)

  describe("params.seed", function()
    it("accepts both ends of its range as Lua integers", function()
      for _, n in ipairs({ 0, 2147483647 }) do
        local seed = accepts(req({ seed = n })).params.seed
        assert.equal(n, seed)
        assert.equal("integer", compat.math_type(seed))
      end
    end)

    it("rejects one past each end of its range", function()
      local err = rejects(req({ seed = 2147483648 }), "params.seed")
      assert.equal("params.seed: expected an integer from 0 to 2147483647; got 2147483648", err.message)
      assert.equal("an integer from 0 to 2147483647", err.expected)
      assert.equal("2147483648", err.got)
      assert.equal("-1", rejects(req({ seed = -1 }), "params.seed").got)
    end)

    it("accepts an integral float and outputs a Lua integer", function()
      local seed = accepts(req({ seed = 42.0 })).params.seed
      assert.equal(42, seed)
      assert.equal("integer", compat.math_type(seed))
      assert.equal(2147483647, accepts(req({ seed = 2147483647.0 })).params.seed)
    end)

    it("rejects a non-integral seed", function()
      assert.equal("42.5", rejects(req({ seed = 42.5 }), "params.seed").got)
    end)

    it("accepts a string of decimal digits and outputs a Lua integer", function()
      local seed = accepts(req({ seed = "42" })).params.seed
      assert.equal(42, seed)
      assert.equal("integer", compat.math_type(seed))
      assert.equal(7, accepts(req({ seed = "007" })).params.seed)
      assert.equal(2147483647, accepts(req({ seed = "2147483647" })).params.seed)
    end)

    it("rejects strings that are not plain decimal digits or are out of range", function()
      -- 18446744073709551658 is 2^64 + 42: it must not wrap around to 42
      for _, s in ipairs({ "", "-1", "+1", "4x2", "1.5", " 1", "0x10", "2147483648",
                           "99999999999999999999999999", "18446744073709551658" }) do
        rejects(req({ seed = s }), "params.seed")
      end
    end)

    it("rejects NaN, infinities, huge numbers and booleans", function()
      rejects(req({ seed = 0 / 0 }), "params.seed")
      rejects(req({ seed = math.huge }), "params.seed")
      rejects(req({ seed = 1e300 }), "params.seed")
      rejects(req({ seed = compat.maxinteger }), "params.seed")
      rejects(req({ seed = compat.mininteger }), "params.seed")
      rejects(req({ seed = true }), "params.seed")
    end)
  end)

  describe("params.negative_prompt", function()
    it("accepts UTF-8 text and the empty string", function()
      assert.equal("blur, ñoise", accepts(req({ negative_prompt = "blur, ñoise" })).params.negative_prompt)
      assert.equal("", accepts(req({ negative_prompt = "" })).params.negative_prompt)
    end)

    it("rejects a number and invalid UTF-8", function()
      assert.equal("5", rejects(req({ negative_prompt = 5 }), "params.negative_prompt").got)
      rejects(req({ negative_prompt = "bad \255" }), "params.negative_prompt")
    end)
  end)

  describe("the prompt", function()
    it("is required", function()
      local err = rejects({ model = MODEL }, "prompt")
      assert.equal("nothing", err.got)
      rejects({ model = MODEL, prompt = "" }, "prompt")
      rejects({ model = MODEL, prompt = 42 }, "prompt")
    end)

    it("counts Unicode code points, so 5000 two-byte characters pass", function()
      local prompt = ("é"):rep(5000)
      assert.equal(10000, #prompt)
      assert.equal(prompt, accepts({ model = MODEL, prompt = prompt }).prompt)
    end)

    it("takes 5000 four-byte emoji", function()
      local prompt = ("\240\159\142\172"):rep(5000)   -- U+1F3AC
      assert.equal(20000, #prompt)
      accepts({ model = MODEL, prompt = prompt })
    end)

    it("takes exactly 5000 ASCII characters and rejects 5001", function()
      accepts({ model = MODEL, prompt = ("a"):rep(5000) })
      local err = rejects({ model = MODEL, prompt = ("a"):rep(5001) }, "prompt")
      assert.equal("prompt: expected at most 5000 characters (Unicode code points); got 5001", err.message)
      assert.equal("5001", err.got)
      rejects({ model = MODEL, prompt = ("é"):rep(5001) }, "prompt")
    end)

    it("takes the edge code points of UTF-8", function()
      for _, s in ipairs({ "\0", "\127", "\194\128", "\223\191", "\224\160\128", "\237\159\191",
                           "\238\128\128", "\239\191\191", "\240\144\128\128", "\244\143\191\191" }) do
        accepts({ model = MODEL, prompt = "x" .. s })
      end
    end)

    local invalid = {
      ["a stray continuation byte"] = "ab\128",
      ["an overlong two-byte form"] = "\192\175",
      ["an overlong two-byte form of a letter"] = "\193\129",
      ["an overlong three-byte form"] = "\224\128\175",
      ["an overlong four-byte form"] = "\240\128\128\175",
      ["a high surrogate"] = "\237\160\128",
      ["a low surrogate"] = "\237\191\191",
      ["a code point above U+10FFFF"] = "\244\144\128\128",
      ["a lead byte above F4"] = "\245\128\128\128",
      ["the byte FF"] = "\255",
      ["a truncated two-byte sequence"] = "ok\195",
      ["a truncated three-byte sequence"] = "ok\226\130",
      ["a truncated four-byte sequence"] = "ok\240\159\142",
      ["a sequence cut by ASCII"] = "\226\130a",
    }
    for what, s in pairs(invalid) do
      it("rejects invalid UTF-8: " .. what, function()
        local err = rejects({ model = MODEL, prompt = s }, "prompt")
        assert.equal("valid UTF-8 text", err.expected)
        assert.matches("^invalid UTF%-8 at byte %d+$", err.got)
      end)
    end

    it("reports the byte where UTF-8 goes wrong", function()
      assert.equal("invalid UTF-8 at byte 4", rejects({ model = MODEL, prompt = "abc\255def" }, "prompt").got)
    end)
  end)

  describe("unknown names", function()
    it("suggest the closest top-level key", function()
      local err = rejects({ model = MODEL, promt = PROMPT }, "promt")
      assert.equal('unknown field "promt"; did you mean "prompt"?', err.message)
      assert.equal('"promt"', err.got)
      assert.equal("one of model, prompt, params, client_request_id, idempotency_key", err.expected)
      assert.matches('did you mean "params"', rejects({ model = MODEL, prompt = PROMPT, parms = {} }, "parms").message)
      assert.matches('did you mean "client_request_id"',
        rejects(req(nil, { clientRequestId = "x" }), "clientRequestId").message)
    end)

    it("list the valid keys when nothing is close", function()
      local err = rejects(req(nil, { zzzzzzzz = 1 }), "zzzzzzzz")
      assert.not_matches("did you mean", err.message)
      assert.matches("client_request_id", err.message)
    end)

    it("suggest the closest params key", function()
      local err = rejects(req({ durration = 5 }), "params.durration")
      assert.equal('unknown field "params.durration"; did you mean "params.duration"?', err.message)
      assert.matches('"params.aspect_ratio"', rejects(req({ aspectRatio = "1:1" }), "params.aspectRatio").message)
      assert.matches('"params.seed"', rejects(req({ Seed = 1 }), "params.Seed").message)
      assert.matches('"params.referenceMediaItems"',
        rejects(req({ referenceMediaItem = {} }), "params.referenceMediaItem").message)
    end)

    it("do not suggest for a name too short to be a typo", function()
      assert.not_matches("did you mean", rejects(req({ id = 1 }), "params.id").message)
    end)

    it("suggest the closest model id for an unknown model", function()
      local err = rejects({ model = "wan-2.7-video", prompt = PROMPT }, "model")
      assert.equal('model: unknown model "wan-2.7-video"; did you mean "wan-2-7-video"?', err.message)
      assert.equal('"wan-2.7-video"', err.got)
      assert.equal("a model id, one of wan-2-7-video", err.expected)
      assert.not_matches("did you mean", rejects({ model = "sora", prompt = PROMPT }, "model").message)
    end)

    it("require the model as a string", function()
      assert.equal("nothing", rejects({ prompt = PROMPT }, "model").got)
      assert.equal("42", rejects({ model = 42, prompt = PROMPT }, "model").got)
      rejects({ model = MODEL .. "\0", prompt = PROMPT }, "model")
    end)

    it("name keys that are not strings", function()
      local err = rejects({ model = MODEL, prompt = PROMPT, [1] = "x" }, "[1]")
      assert.matches("number key", err.message)
      rejects({ model = MODEL, prompt = PROMPT, [true] = 1 }, "[true]")
      rejects({ model = MODEL, prompt = PROMPT, [{}] = 1 }, "[a table]")
      rejects(req({ [2.5] = 1 }), "params[2.5]")
      rejects(req({ "5" }), "params[1]")
    end)
  end)

  describe("top-level fields", function()
    it("reject files, pointing at params.referenceMediaItems", function()
      local err = rejects(req(nil, { files = { upload_image() } }), "files")
      assert.matches("params.referenceMediaItems", err.message, 1, true)
    end)

    it("take a client_request_id of up to 128 characters", function()
      accepts(req(nil, { client_request_id = ("x"):rep(128) }))
      accepts(req(nil, { client_request_id = ("é"):rep(128) }))
      local err = rejects(req(nil, { client_request_id = ("x"):rep(129) }), "client_request_id")
      assert.equal("129", err.got)
    end)

    it("reject a client_request_id that is empty or not a string", function()
      rejects(req(nil, { client_request_id = "" }), "client_request_id")
      rejects(req(nil, { client_request_id = 12 }), "client_request_id")
    end)

    it("take an idempotency_key of up to 255 printable ASCII characters", function()
      accepts(req(nil, { idempotency_key = ("k"):rep(255) }))
      accepts(req(nil, { idempotency_key = "run 42/a~b" }))
      rejects(req(nil, { idempotency_key = ("k"):rep(256) }), "idempotency_key")
    end)

    it("reject an idempotency_key that is empty, not ASCII, has controls or is not a string", function()
      rejects(req(nil, { idempotency_key = "" }), "idempotency_key")
      rejects(req(nil, { idempotency_key = "ключ" }), "idempotency_key")
      rejects(req(nil, { idempotency_key = "a\r\nX-Evil: 1" }), "idempotency_key")
      rejects(req(nil, { idempotency_key = 7 }), "idempotency_key")
      -- HTTP would drop these spaces: the key sent would not be the key held
      rejects(req(nil, { idempotency_key = " lead" }), "idempotency_key")
      rejects(req(nil, { idempotency_key = "trail " }), "idempotency_key")
    end)

    it("reject params that are not a table", function()
      assert.equal('"duration=5"', rejects(req("duration=5"), "params").got)
    end)
  end)

  describe("params.referenceMediaItems", function()
    it("converts an upload's snake_case file table to the camelCase reference", function()
      local body = accepts(refs(upload_video()))
      assert.same({ {
        url = "https://cdn.example.com/clip.mp4", kind = "video", name = "clip.mp4",
        mimeType = "video/mp4", durationSeconds = 4.2, durationToken = "dt_abc",
      } }, body.params.referenceMediaItems)
    end)

    it("passes a camelCase reference through, dropping file_id", function()
      local item = { url = "https://cdn.example.com/a.webp", kind = "image", name = "a.webp",
                     mimeType = "image/webp", file_id = "file_9" }
      local body = accepts(refs(item))
      assert.same({ { url = "https://cdn.example.com/a.webp", kind = "image", name = "a.webp",
                      mimeType = "image/webp" } }, body.params.referenceMediaItems)
    end)

    it("keeps only url and kind when nothing else is given", function()
      local body = accepts(refs({ url = "http://cdn.example.com/a.jpg", kind = "image" }))
      assert.same({ { url = "http://cdn.example.com/a.jpg", kind = "image" } },
        body.params.referenceMediaItems)
    end)

    it("is omitted from the body when empty", function()
      local body = accepts(req({ referenceMediaItems = {} }))
      assert.same({}, body.params)
    end)

    it("takes up to 2 images (image-to-video)", function()
      local body = accepts(refs(upload_image(), upload_image({ url = "https://cdn.example.com/b.jpg",
        mime_type = "image/jpeg" })))
      assert.equal(2, #body.params.referenceMediaItems)
      assert.equal("image/jpeg", body.params.referenceMediaItems[2].mimeType)
    end)

    it("takes 1 video alone or with 1 image (video-editing)", function()
      accepts(refs(upload_video()))
      local body = accepts(refs(upload_video(), upload_image()))
      assert.equal("video", body.params.referenceMediaItems[1].kind)
      assert.equal("image", body.params.referenceMediaItems[2].kind)
      accepts(refs(upload_image(), upload_video()))
    end)

    it("rejects 2 videos", function()
      local err = rejects(refs(upload_video(), upload_video()), "params.referenceMediaItems")
      assert.equal("2 videos", err.got)
      assert.matches("(image-to-video)", err.expected, 1, true)
      assert.matches("(video-editing)", err.expected, 1, true)
    end)

    it("rejects more than 2 items", function()
      local err = rejects(refs(upload_image(), upload_image(), upload_image()), "params.referenceMediaItems")
      assert.equal("at most 2 items", err.expected)
      assert.equal("3", err.got)
    end)

    it("rejects a video without durationToken", function()
      local video = upload_video()
      video.duration_token = nil
      local err = rejects(refs(video), "params.referenceMediaItems[1].durationToken")
      assert.equal("nothing", err.got)
      local bare = { url = "https://cdn.example.com/v.mov", kind = "video", mimeType = "video/quicktime" }
      rejects(refs(upload_image(), bare), "params.referenceMediaItems[2].durationToken")
    end)

    it("points at a misspelt durationToken", function()
      local item = { url = "https://cdn.example.com/v.mp4", kind = "video", durationTokn = "dt" }
      local err = rejects(refs(item), "params.referenceMediaItems[1].durationToken")
      assert.matches('"durationTokn"', err.message)
    end)

    it("takes an image without durationToken and keeps one when given", function()
      accepts(refs(upload_image()))
      local body = accepts(refs(upload_image({ duration_token = "dt_i" })))
      assert.equal("dt_i", body.params.referenceMediaItems[1].durationToken)
    end)

    it("rejects a local path, explaining that validate needs uploaded file tables", function()
      local err = rejects(refs("clip.mp4"), "params.referenceMediaItems[1]")
      assert.matches("client:create", err.message)
      assert.matches("file tables", err.message)
      assert.equal('"clip.mp4"', err.got)
      rejects(req({ referenceMediaItems = "clip.mp4" }), "params.referenceMediaItems")
    end)

    it("rejects a single file table not wrapped in a list", function()
      local err = rejects(req({ referenceMediaItems = upload_image() }), "params.referenceMediaItems")
      assert.matches("wrap a single file", err.message)
    end)

    it("rejects a list with holes and items that are not tables", function()
      rejects(req({ referenceMediaItems = { [1] = upload_image(), [3] = upload_image() } }),
        "params.referenceMediaItems")
      rejects(refs(42), "params.referenceMediaItems[1]")
      rejects(req({ referenceMediaItems = 5 }), "params.referenceMediaItems")
    end)

    it("requires an http or https url", function()
      rejects(refs({ kind = "image" }), "params.referenceMediaItems[1].url")
      for _, url in ipairs({ "ftp://cdn.example.com/a.png", "/tmp/a.png", "https://", "https://a b",
                             "https://a\nb", 42 }) do
        rejects(refs(upload_image({ url = url })), "params.referenceMediaItems[1].url")
      end
    end)

    it("requires a kind the model takes", function()
      rejects(refs({ url = "https://cdn.example.com/a.png" }), "params.referenceMediaItems[1].kind")
      local err = rejects(refs(upload_image({ kind = "audio" })), "params.referenceMediaItems[1].kind")
      assert.equal("one of image, video", err.expected)
    end)

    it("checks mimeType against the model's MIME list for the kind", function()
      accepts(refs(upload_video({ mime_type = "video/quicktime" })))
      for _, mime in ipairs({ "image/jpeg", "image/png", "image/webp" }) do
        accepts(refs(upload_image({ mime_type = mime })))
      end
      rejects(refs(upload_video({ mime_type = "video/webm" })), "params.referenceMediaItems[1].mimeType")
      rejects(refs(upload_image({ mime_type = "image/gif" })), "params.referenceMediaItems[1].mimeType")
      rejects(refs(upload_image({ mime_type = "video/mp4" })), "params.referenceMediaItems[1].mimeType")
    end)

    it("rejects mime_type and mimeType that disagree", function()
      local item = upload_image({ mimeType = "image/jpeg" })
      rejects(refs(item), "params.referenceMediaItems[1].mimeType")
      accepts(refs(upload_image({ mimeType = "image/png" })))
    end)

    it("rejects a negative or non-finite durationSeconds and an empty durationToken", function()
      rejects(refs(upload_video({ duration_seconds = -1 })), "params.referenceMediaItems[1].durationSeconds")
      rejects(refs(upload_video({ duration_seconds = 0 / 0 })), "params.referenceMediaItems[1].durationSeconds")
      rejects(refs(upload_video({ duration_seconds = math.huge })), "params.referenceMediaItems[1].durationSeconds")
      rejects(refs(upload_video({ duration_seconds = "4" })), "params.referenceMediaItems[1].durationSeconds")
      rejects(refs(upload_video({ duration_token = "" })), "params.referenceMediaItems[1].durationToken")
    end)

    it("clamps a duration above 10 to 10 in video-editing, with a warning", function()
      for _, given in ipairs({ 15, "15" }) do
        local r = refs(upload_video())
        r.params.duration = given
        local body, warnings = accepts(r)
        assert.equal("10", body.params.duration)
        assert.same({ "params.duration: video-editing tops out at 10 s; 15 was clamped to 10" }, warnings)
      end
    end)

    it("keeps a duration of 10 or less in video editing without a warning", function()
      local r = refs(upload_video(), upload_image())
      r.params.duration = 10
      local body, warnings = accepts(r)
      assert.equal("10", body.params.duration)
      assert.same({}, warnings)
    end)

    it("keeps a duration of 15 in image-to-video", function()
      local r = refs(upload_image())
      r.params.duration = 15
      local body, warnings = accepts(r)
      assert.equal("15", body.params.duration)
      assert.same({}, warnings)
    end)

    it("keeps aspect_ratio in image-to-video but reports it as ignored", function()
      local r = refs(upload_image())
      r.params.aspect_ratio = "9:16"
      local body, warnings = accepts(r)
      assert.equal("9:16", body.params.aspect_ratio)
      assert.same({ "params.aspect_ratio: ignored in image-to-video; the output follows the image" }, warnings)
    end)

    it("uses aspect_ratio in video editing and text-to-video without a warning", function()
      local r = refs(upload_video())
      r.params.aspect_ratio = "1:1"
      assert.same({}, select(2, accepts(r)))
      assert.same({}, select(2, accepts(req({ aspect_ratio = "1:1" }))))
    end)
  end)

  describe("robustness", function()
    it("raises when req is not a table", function()
      for _, v in ipairs({ 1, "x", true }) do
        local ok, msg = pcall(core.validate, v)
        assert.is_false(ok)
        assert.matches("table expected", msg)
      end
      assert.is_false(pcall(core.validate))
      assert.is_false(pcall(core.estimate, "x"))
    end)

    it("never runs the metamethods of the caller's tables", function()
      local calls = 0
      local trap = {}
      for _, ev in ipairs({ "__index", "__newindex", "__pairs", "__len", "__eq", "__tostring",
                            "__call", "__concat", "__lt", "__le", "__close" }) do
        trap[ev] = function() calls = calls + 1; error("metamethod " .. ev .. " ran") end
      end
      local item = setmetatable(upload_video(), trap)
      local list = setmetatable({ item }, trap)
      local params = setmetatable({ duration = 15, referenceMediaItems = list }, trap)
      local r = setmetatable({ model = MODEL, prompt = PROMPT, params = params }, trap)
      local body, warnings = accepts(r)
      assert.equal(0, calls)
      assert.equal("10", body.params.duration)
      assert.equal(1, #warnings)
      assert.is_nil(getmetatable(body.params.referenceMediaItems[1]))
      -- the same traps on values that are rejected
      rejects(req({ duration = setmetatable({}, trap) }), "params.duration")
      rejects(req(setmetatable({ bogus = 1 }, trap)), "params.bogus")
      assert.equal(0, calls)
    end)

    it("reads only raw fields, so __index cannot supply a model", function()
      local r = setmetatable({ prompt = PROMPT }, { __index = { model = MODEL } })
      rejects(r, "model")
    end)

    it("rejects deeply nested and strange values without crashing", function()
      local deep = {}
      for _ = 1, 100000 do deep = { deep } end
      assert.equal("a table", rejects(req({ duration = deep }), "params.duration").got)
      rejects(req({ referenceMediaItems = { deep } }), "params.referenceMediaItems[1].url")
      rejects(req(deep), "params[1]")
      assert.equal("a function", rejects({ model = MODEL, prompt = print }, "prompt").got)
      assert.equal("a thread", rejects(req({ seed = coroutine.create(function() end) }), "params.seed").got)
      assert.equal("a userdata", rejects(req({ negative_prompt = io.stdout }), "params.negative_prompt").got)
      rejects(req({ [io.stdout] = 1 }), "params[a userdata]")
      rejects(req({ referenceMediaItems = { [0] = upload_image() } }), "params.referenceMediaItems")
    end)

    it("keeps messages short for huge values", function()
      local huge = ("x"):rep(10 * 1000 * 1000)
      local err = rejects({ model = MODEL, prompt = huge }, "prompt")
      assert.equal("10000000", err.got)
      err = rejects(req({ duration = huge }), "params.duration")
      assert.truthy(#err.message < 300)
      assert.matches("10000000 bytes", err.got)
      local key = ("k"):rep(1000000)
      local body, kerr = core.validate(req({ [key] = 1 }))
      assert.is_nil(body)
      assert.truthy(#tostring(kerr) < 1500)
    end)

    it("gives a one-line tostring(err) with the code and the field", function()
      local err = rejects(req({ duration = 7 }), "params.duration")
      local line = tostring(err)
      assert.not_matches("\n", line)
      assert.matches("validation_failed", line)
      assert.matches("params.duration", line, 1, true)
      -- newlines and line separators in user values are escaped
      local _, err2 = core.validate(req({ ["a\nb\226\128\168c\194\133"] = 1 }))
      local line2 = tostring(err2)
      assert.not_matches("[\r\n]", line2)
      assert.not_matches("\226\128\168", line2)
      assert.not_matches("\194\133", line2)
      assert.not_matches("[\r\n]", err2.field)
      local _, err3 = core.validate({ model = MODEL, prompt = PROMPT, ["x\r\n"] = 1 })
      assert.not_matches("[\r\n]", tostring(err3))
    end)

    it("can be called again after an error with the same results", function()
      for _ = 1, 3 do
        rejects(req({ duration = 7 }), "params.duration")
        assert.equal("10", accepts(req({ duration = 10 })).params.duration)
      end
    end)
  end)
end)

describe("core.estimate", function()
  it("gives the 80 credits wan-2-7-video reserves, as a Lua integer", function()
    local credits = core.estimate(req({ duration = 15 }))
    assert.equal(80, credits)
    assert.equal("integer", compat.math_type(credits))
  end)

  it("validates the request first", function()
    local credits, err = core.estimate(req({ duration = 7 }))
    assert.is_nil(credits)
    assert.equal("validation_failed", err.code)
    assert.equal("params.duration", err.field)
  end)
end)

describe("core.models", function()
  local function find(list, id)
    for _, m in ipairs(list) do if m.id == id then return m end end
  end

  it("describes wan-2-7-video as on its model page, in the catalog's documented shape", function()
    local m = find(core.models(), MODEL)
    assert.is_table(m)
    assert.equal("Wan 2.7 Video", m.display_name)
    assert.equal("video", m.category)
    assert.equal("async_task", m.runtime)
    assert.equal("available", m.api_status)
    assert.same({ "text", "file" }, m.supported_api_inputs)
    assert.equal("FIXED", m.billing_type)
    assert.equal(80, m.base_credits)
    assert.equal("integer", compat.math_type(m.base_credits))
    assert.equal(5000, m.max_prompt_length)
    assert.same({ "text-to-video", "image-to-video", "video-editing" }, m.supported_modes)
  end)

  it("lists the parameter table row by row", function()
    local m = find(core.models(), MODEL)
    assert.equal(#SEED_PARAMS, #m.params)
    for i, row in ipairs(SEED_PARAMS) do
      local p = m.params[i]
      assert.equal(row.name, p.key)
      assert.equal(row.type, p.type)
      assert.equal(row.default, p.default)
      assert.same(row.options, p.options)
      assert.equal(row.min, p.min)
      assert.equal(row.max, p.max)
      assert.is_false(p.required)
      assert.is_string(p.description)
      assert.truthy(#p.description > 0)
    end
  end)

  it("gives the reference modes and upload limits", function()
    local m = find(core.models(), MODEL)
    local r = m.reference_media
    assert.equal(2, r.max_items)
    assert.same({ "image", "video" }, r.kinds)
    assert.same({ image = { 1, 2 } }, r.modes[1].counts)
    assert.equal("image-to-video", r.modes[1].mode)
    assert.same({ video = { 1, 1 }, image = { 0, 1 } }, r.modes[2].counts)
    assert.equal("video-editing", r.modes[2].mode)
    assert.same({
      image = { max_bytes = 20000000, mime_types = { "image/jpeg", "image/png", "image/webp" } },
      video = { max_bytes = 95000000, mime_types = { "video/mp4", "video/quicktime" } },
    }, r.limits)
  end)

  it("returns fresh tables on each call", function()
    local a = core.models()
    a[1].params[1].key = "changed"
    assert.equal("resolution", core.models()[1].params[1].key)
  end)
end)

describe("core.upload_rules", function()
  it("gives the Files API defaults without a model", function()
    assert.same({
      image = { max_bytes = 10000000, mime = { "image/jpeg", "image/png", "image/webp" } },
      video = { max_bytes = 50000000, mime = { "video/mp4", "video/quicktime", "video/webm" } },
      audio = { max_bytes = 10000000,
                mime = { "audio/mpeg", "audio/mp4", "audio/wav", "audio/x-wav", "audio/aac", "audio/ogg" } },
    }, core.upload_rules())
  end)

  it("gives wan-2-7-video's own limits, with no audio", function()
    local rules = core.upload_rules(MODEL)
    assert.equal(20000000, rules.image.max_bytes)
    assert.equal(95000000, rules.video.max_bytes)
    assert.is_nil(rules.audio)
  end)

  it("fails for an unknown model and raises for a model that is not a string", function()
    local rules, err = core.upload_rules("wan-2-7-vide")
    assert.is_nil(rules)
    assert.equal("model", err.field)
    assert.matches('did you mean "wan%-2%-7%-video"', err.message)
    assert.is_false(pcall(core.upload_rules, 42))
  end)
end)

describe("core.check_upload", function()
  local LIMITS = {
    { nil, "image", "image/png", 10000000 },
    { nil, "video", "video/mp4", 50000000 },
    { nil, "audio", "audio/mpeg", 10000000 },
    { MODEL, "image", "image/png", 20000000 },
    { MODEL, "video", "video/mp4", 95000000 },
  }
  for _, l in ipairs(LIMITS) do
    it("takes a " .. l[2] .. " of exactly the limit and rejects one byte more for "
        .. (l[1] or "no model"), function()
      assert.is_true(core.check_upload(l[1], l[2], l[3], l[4]))
      local ok, err = core.check_upload(l[1], l[2], l[3], l[4] + 1)
      assert.is_nil(ok)
      assert.equal("validation_failed", err.code)
      assert.equal("file", err.field)
      assert.matches(tostring(l[4]), err.message)
      assert.equal(tostring(l[4] + 1) .. " bytes", err.got)
    end)
  end

  it("takes every listed MIME type and nothing else", function()
    for _, model in ipairs({ false, MODEL }) do
      local rules = core.upload_rules(model or nil)
      for kind, rule in pairs(rules) do
        for _, mime in ipairs(rule.mime) do
          assert.is_true(core.check_upload(model or nil, kind, mime, 1))
        end
        local ok, err = core.check_upload(model or nil, kind, "application/pdf", 1)
        assert.is_nil(ok)
        assert.equal("file", err.field)
        assert.matches(rule.mime[1], err.message, 1, true)
      end
    end
  end)

  it("takes video/webm only without a model", function()
    assert.is_true(core.check_upload(nil, "video", "video/webm", 1))
    assert.is_nil(core.check_upload(MODEL, "video", "video/webm", 1))
  end)

  it("rejects audio for wan-2-7-video and unknown kinds", function()
    local ok, err = core.check_upload(MODEL, "audio", "audio/mpeg", 1)
    assert.is_nil(ok)
    assert.equal("file", err.field)
    assert.equal('"audio"', err.got)
    assert.is_nil(core.check_upload(nil, "document", "application/pdf", 1))
  end)

  it("skips the MIME check when the type is unknown", function()
    assert.is_true(core.check_upload(MODEL, "image", nil, 5))
  end)

  it("raises for misuse: a negative size or a missing kind", function()
    assert.is_false(pcall(core.check_upload, nil, "image", "image/png", -1))
    assert.is_false(pcall(core.check_upload, nil, nil, "image/png", 1))
    assert.is_false(pcall(core.check_upload, {}, "image", "image/png", 1))
  end)
end)

describe("core.sniff", function()
  local pad = ("\0"):rep(16)
  local SIGNATURES = {
    { "JPEG", "\255\216\255\224\0\016JFIF", "image", "image/jpeg" },
    { "PNG", "\137PNG\r\n\026\n\0\0\0\rIHDR", "image", "image/png" },
    { "WebP", "RIFF\036\0\0\0WEBPVP8 ", "image", "image/webp" },
    { "QuickTime", "\0\0\0\020ftypqt  \0\0\0\0", "video", "video/quicktime" },
    { "MP4 (isom)", "\0\0\0\032ftypisom\0\0\2\0", "video", "video/mp4" },
    { "MP4 (mp42)", "\0\0\0\024ftypmp42\0\0\0\0", "video", "video/mp4" },
    { "M4A", "\0\0\0\032ftypM4A \0\0\0\0", "audio", "audio/mp4" },
    { "M4B", "\0\0\0\032ftypM4B \0\0\0\0", "audio", "audio/mp4" },
    { "WebM", "\026\069\223\163\159\066\134\129", "video", "video/webm" },
    { "MP3 with ID3", "ID3\4\0\0\0\0\0\0", "audio", "audio/mpeg" },
    { "MP3 frame FF FB", "\255\251\144\100", "audio", "audio/mpeg" },
    { "MP3 frame FF E3", "\255\227\024\196", "audio", "audio/mpeg" },
    { "ADTS AAC FF F1", "\255\241\080\128", "audio", "audio/aac" },
    { "ADTS AAC FF F9", "\255\249\080\128", "audio", "audio/aac" },
    { "WAV", "RIFF\036\0\0\0WAVEfmt ", "audio", "audio/wav" },
    { "Ogg", "OggS\0\2\0\0", "audio", "audio/ogg" },
  }
  for _, s in ipairs(SIGNATURES) do
    it("recognises " .. s[1], function()
      local kind, mime = core.sniff(s[2] .. pad)
      assert.equal(s[3], kind)
      assert.equal(s[4], mime)
    end)
  end

  it("returns nil for unknown or too short bytes", function()
    for _, bytes in ipairs({ "", "hello world", "GIF89a\0\0", "%PDF-1.7", "RIFF\0\0\0\0AVI ",
                             "\255", "\255\216", "\255\192\0\0", "\0\0\0\020ftyp", "\137PNG" }) do
      assert.is_nil(core.sniff(bytes))
      assert.equal(1, select("#", core.sniff(bytes)))
    end
  end)

  it("looks at the first 64 bytes only", function()
    local kind = core.sniff(("\0"):rep(64) .. "\255\216\255")
    assert.is_nil(kind)
    assert.equal("image", (core.sniff("\255\216\255" .. ("\0"):rep(100000))))
  end)

  it("raises when given no string", function()
    assert.is_false(pcall(core.sniff))
    assert.is_false(pcall(core.sniff, {}))
  end)
end)
