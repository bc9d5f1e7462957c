--- rivya-sim: the simulator's own contract (API.md as it serves it, the
-- control API, fault injection, uploads and the CDN), spoken to with the
-- curl CLI through spec/helper.lua, independent of rivya's client.
local helper = require "helper"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local MODEL = "wan-2-7-video"
local SAMPLE = helper.ROOT .. "/sim/sample.mp4"
local PNG_SIG = "\137PNG\r\n\26\n"
local JPEG_SIG = "\255\216\255\224"

local function create_body(extra)
  local body = { model = MODEL, prompt = "A cinematic product reveal" }
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

local function sha256_of(path)
  local p = io.popen("sha256sum " .. helper.sh_quote(path))
  local out = p:read("*a")
  p:close()
  return out:match("^(%x+)")
end

describe("rivya-sim", function()
  local sim, tmp

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    helper.rmrf(tmp)
    assert.is_true(sim:stop(), "rivya-sim did not exit on SIGTERM")
  end)

  before_each(function()
    sim:reset()
  end)

  local function create(extra, opts)
    return sim:api("POST", "/api/v1/generations", create_body(extra), opts)
  end

  -- GET the task until its status is in `want` (a set); returns the task
  local function poll_until(id, want)
    local task
    for _ = 1, 200 do
      local status
      status, task = sim:api("GET", "/api/v1/generations/" .. id)
      assert.are.equal(200, status)
      if want[task.status] then return task end
      helper.sleep(0.05)
    end
    error("task " .. id .. " stayed " .. tostring(task and task.status))
  end

  local function upload(path, fields, opts)
    local extra = { "-F", helper.sh_quote("file=@" .. path) }
    for k, v in pairs(fields or {}) do
      extra[#extra + 1] = "-F"
      extra[#extra + 1] = helper.sh_quote(k .. "=" .. v)
    end
    opts = opts or {}
    opts.extra = extra
    return sim:api("POST", "/api/v1/files", nil, opts)
  end

  local function fixture(name, bytes)
    local path = tmp .. "/" .. name
    helper.write_file(path, bytes)
    return path
  end

  local function assert_error(status, json, want_status, code)
    assert.are.equal(want_status, status)
    assert.is_table(json, "expected a JSON error body")
    assert.are.equal(code, json.error.code)
    assert.is_string(json.error.message)
    assert.matches("^req_%x+$", json.error.requestId)
  end

  describe("the model catalog", function()
    local FIELDS = { id = "string", display_name = "string", category = "string",
      runtime = "string", base_credits = "number", billing_type = "string",
      supported_modes = "table", max_prompt_length = "number", params = "table",
      api_status = "string", api_input_status = "string", supported_api_inputs = "table",
      requires_files_api = "boolean", requires_upload_for_modes = "table",
      url_input_supported = "boolean", file_kinds = "table", notices = "table" }

    local function catalog()
      local status, json = sim:api("GET", "/api/v1/models", nil, { key = false })
      assert.are.equal(200, status)
      local by_id = {}
      for _, m in ipairs(json.data) do by_id[m.id] = m end
      return json, by_id
    end

    it("serves the documented shape without a key, every field of every model", function()
      local json, by_id = catalog()
      assert.are.equal("list", json.object)
      assert.are.equal(MODEL, json.data[1].id)
      for _, m in ipairs(json.data) do
        for k, t in pairs(FIELDS) do
          assert.are.equal(t, type(m[k]), m.id .. "." .. k)
        end
        -- null, or an object: both present as keys
        assert.truthy(m.reference_media == cjson.null or type(m.reference_media) == "table")
        assert.truthy(m.chat_capabilities == cjson.null or type(m.chat_capabilities) == "table")
        for _, p in ipairs(m.params) do
          assert.is_string(p.key)
          assert.is_string(p.type)
          assert.is_boolean(p.required)
        end
      end
      for _, id in ipairs{ "z-image", "rivya-tts", "veo-4-video", "studio-upscale", "rivya-chat" } do
        assert.is_table(by_id[id], id)
      end
      assert.are.same({ "video", "image", "audio", "video", "video", "chat" },
        { by_id[MODEL].category, by_id["z-image"].category, by_id["rivya-tts"].category,
          by_id["veo-4-video"].category, by_id["studio-upscale"].category,
          by_id["rivya-chat"].category })
      assert.are.equal("coming_soon", by_id["veo-4-video"].api_status)
      assert.are.equal("studio_only", by_id["studio-upscale"].api_status)
      assert.are.equal("chat", by_id["rivya-chat"].runtime)
      assert.are_not.equal("FIXED", by_id["rivya-tts"].billing_type)
    end)

    it("gives wan-2-7-video as its model page does", function()
      local _, by_id = catalog()
      local m = by_id[MODEL]
      assert.are.equal("Wan 2.7 Video", m.display_name)
      assert.are.equal("async_task", m.runtime)
      assert.are.equal(80, m.base_credits)
      assert.are.equal("FIXED", m.billing_type)
      assert.are.equal(5000, m.max_prompt_length)
      assert.are.equal("available", m.api_status)
      assert.are.same({ "text-to-video", "image-to-video", "video-editing" }, m.supported_modes)
      assert.are.same({ "text", "file" }, m.supported_api_inputs)
      assert.are.same({ "image", "video" }, m.file_kinds)
      local keys, by_key = {}, {}
      for i, p in ipairs(m.params) do keys[i] = p.key by_key[p.key] = p end
      assert.are.same({ "resolution", "duration", "aspect_ratio", "negative_prompt",
        "prompt_extend", "watermark", "audio_setting", "seed" }, keys)
      assert.are.same({ "720p", "1080p" }, by_key.resolution.options)
      assert.are.equal("720p", by_key.resolution.default)
      assert.are.same({ "5", "10", "15" }, by_key.duration.options)
      assert.are.equal("5", by_key.duration.default)
      assert.are.same({ "16:9", "9:16", "1:1", "4:3", "3:4" }, by_key.aspect_ratio.options)
      assert.are.equal("text", by_key.negative_prompt.type)
      assert.are.same({ "true", "false" }, by_key.prompt_extend.options)
      assert.are.same({ "false", "true" }, by_key.watermark.options)
      assert.are.same({ "auto", "origin" }, by_key.audio_setting.options)
      assert.are.equal("number", by_key.seed.type)
      assert.are.equal(0, by_key.seed.min)
      assert.are.equal(2147483647, by_key.seed.max)
      local refs = m.reference_media
      assert.are.equal(2, refs.max_items)
      assert.are.same({ "image", "video" }, refs.kinds)
      assert.are.same({ max_bytes = 20000000, mime_types = { "image/jpeg", "image/png", "image/webp" } },
        refs.limits.image)
      assert.are.same({ max_bytes = 95000000, mime_types = { "video/mp4", "video/quicktime" } },
        refs.limits.video)
      assert.are.same({ image = { 1, 2 } }, refs.modes[1].counts)
      assert.are.same({ video = { 1, 1 }, image = { 0, 1 } }, refs.modes[2].counts)
    end)

    it("refuses creates for coming_soon, studio_only and chat models, naming why", function()
      for id, want in pairs{ ["veo-4-video"] = "coming_soon", ["studio-upscale"] = "studio_only",
                             ["rivya-chat"] = "chat" } do
        local status, json = create({ model = id, prompt = "x" })
        assert_error(status, json, 400, "validation_failed")
        assert.are.equal("model", json.error.field)
        assert.truthy(json.error.message:find(want, 1, true), json.error.message)
      end
      assert.are.equal(0, sim:ledger().charges)
    end)

    it("checks z-image's own params: a select, numbers with ranges, a text", function()
      local function zimg(params) return create({ model = "z-image", prompt = "a red kite", params = params }) end
      local status, task = zimg({ size = "1536x1024", steps = 50, guidance = 0.5, negative_prompt = "blur" })
      assert.are.equal(201, status)
      assert.are.equal(4, task.reserved_credits)
      for _, case in ipairs{
        { { size = "1000x1000" }, "params.size", "1024x1024" },
        { { steps = 0 }, "params.steps", "from 1 to 50" },
        { { steps = 51 }, "params.steps" }, { { steps = 2.5 }, "params.steps", "integer" },
        { { steps = "8" }, "params.steps" },
        { { guidance = 20.01 }, "params.guidance", "from 0 to 20" },
        { { negative_prompt = ("é"):rep(501) }, "params.negative_prompt", "500" },
        { { duration = "5" }, "params.duration", "size, steps" },
      } do
        local s2, json = zimg(case[1])
        assert_error(s2, json, 400, "validation_failed")
        assert.are.equal(case[2], json.error.field)
        if case[3] then assert.truthy(json.error.message:find(case[3], 1, true), json.error.message) end
      end
      assert.are.equal(201, (zimg({ negative_prompt = ("é"):rep(500), guidance = 20 })))
      status = create({ model = "z-image", prompt = ("x"):rep(1001) })
      assert.are.equal(400, status)
    end)

    it("returns a whole PNG for z-image, text-to-image and image-to-image", function()
      local img = { url = "https://cdn.example.com/a.png", kind = "image" }
      local _, t2i = create({ model = "z-image", prompt = "a kite", params = { size = "1024x1536" } })
      local status, i2i = create({ model = "z-image", prompt = "a kite",
        params = { referenceMediaItems = { img } } })
      assert.are.equal(201, status)
      local json
      status, json = create({ model = "z-image", prompt = "a kite",
        params = { referenceMediaItems = { img, img } } })
      assert_error(status, json, 400, "validation_failed")
      status, json = create({ model = "z-image", prompt = "a kite",
        params = { referenceMediaItems = { { url = "https://cdn.example.com/a.mp4", kind = "video",
          durationToken = "dt_x" } } } })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("params.referenceMediaItems[0].kind", json.error.field)
      for _, t in ipairs{ t2i, i2i } do
        local done = poll_until(t.id, { succeeded = true, failed = true })
        assert.are.equal("succeeded", done.status)
        assert.matches("/images/" .. t.id .. "%.png$", done.result.primary_url)
        local s2, headers, body = helper.curl{ url = done.result.primary_url }
        assert.are.equal(200, s2)
        assert.are.equal("image/png", headers["content-type"])
        assert.are.equal(PNG_SIG, body:sub(1, 8))
        assert.are.equal("IHDR", body:sub(13, 16))
        assert.are.equal("IEND\174\66\96\130", body:sub(-8))
        if t == t2i then
          local w, h = helper.u32(body, 17), helper.u32(body, 21)
          assert.are.same({ 64, 96 }, { w, h })
        end
      end
      -- a result of another kind is not served under the wrong name
      assert.are.equal(404, (helper.curl{ url = sim.cdn_url .. "/videos/" .. t2i.id .. ".mp4" }))
    end)

    it("returns MP3 or WAV for rivya-tts, requires its voice, bills per 1,000 characters", function()
      local status, json = create({ model = "rivya-tts", prompt = "Hello" })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("params.voice", json.error.field)
      local mp3, wav
      status, mp3 = create({ model = "rivya-tts", prompt = "Hello", params = { voice = "ember" } })
      assert.are.equal(201, status)
      assert.are.equal(2, mp3.reserved_credits)
      status, wav = create({ model = "rivya-tts", prompt = ("é"):rep(2001),
        params = { voice = "alloy", format = "wav", speed = 1.5, normalize = false } })
      assert.are.equal(201, status)
      assert.are.equal(6, wav.reserved_credits)
      status, json = create({ model = "rivya-tts", prompt = "x", params = { voice = "alloy", normalize = "false" } })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("params.normalize", json.error.field)
      assert.are.equal(1000 - 8, sim:ledger().credits)
      local done = poll_until(mp3.id, { succeeded = true })
      local _, headers, body = helper.curl{ url = done.result.primary_url }
      assert.are.equal("audio/mpeg", headers["content-type"])
      assert.are.equal("ID3", body:sub(1, 3))
      assert.are.equal("\255\251", body:sub(11, 12))
      assert.are.equal(10 + 38 * 417, #body)
      assert.are.equal(2, done.final_credits)
      done = poll_until(wav.id, { succeeded = true })
      assert.matches("%.wav$", done.result.primary_url)
      _, headers, body = helper.curl{ url = done.result.primary_url }
      assert.are.equal("audio/wav", headers["content-type"])
      assert.are.equal("RIFF", body:sub(1, 4))
      assert.are.equal("WAVE", body:sub(9, 12))
      assert.are.equal(#body - 8, helper.u32(body, 5, "le"))
      assert.are.equal(#body - 44, helper.u32(body, 41, "le"))
    end)

    it("uploads follow the named model's reference limits", function()
      local status, json = upload(SAMPLE, { kind = "video", model = "z-image" })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("kind", json.error.field)
      status, json = upload(fixture("t.mp3", "ID3\3\0\0\0\0\0\0"), { kind = "audio", model = "rivya-tts" })
      assert_error(status, json, 400, "validation_failed")
      status = upload(fixture("z.png", PNG_SIG .. "x"), { kind = "image", model = "z-image" })
      assert.are.equal(201, status)
    end)
  end)

  describe("auth", function()
    it("answers api_key_missing without an Authorization header", function()
      local status, json, headers = sim:api("GET", "/api/v1/credits", nil, { key = false })
      assert_error(status, json, 401, "api_key_missing")
      assert.are.equal(headers["x-request-id"], json.error.requestId)
      assert.matches("application/json", headers["content-type"])
    end)

    it("answers api_key_invalid for a non-Bearer header and for an unknown key", function()
      local status, json = sim:api("GET", "/api/v1/credits", nil,
        { key = false, headers = { Authorization = "Basic " .. helper.KEY } })
      assert_error(status, json, 401, "api_key_invalid")
      status, json = sim:api("GET", "/api/v1/credits", nil, { key = "rvya_sk_unknown_1" })
      assert_error(status, json, 401, "api_key_invalid")
      assert.is_nil(json.error.message:find("rvya_sk_unknown_1", 1, true))
    end)

    it("answers api_key_revoked and api_key_expired", function()
      local status, json = sim:api("GET", "/api/v1/credits", nil, { key = helper.REVOKED_KEY })
      assert_error(status, json, 401, "api_key_revoked")
      status, json = sim:api("GET", "/api/v1/credits", nil, { key = helper.EXPIRED_KEY })
      assert_error(status, json, 401, "api_key_expired")
    end)

    it("lets a scoped key read but answers api_scope_denied on the POST endpoints", function()
      local opts = { key = helper.SCOPED_KEY }
      local status = sim:api("GET", "/api/v1/credits", nil, opts)
      assert.are.equal(200, status)
      local json
      status, json = create({}, { key = helper.SCOPED_KEY })
      assert_error(status, json, 403, "api_scope_denied")
      status, json = upload(fixture("scoped.png", PNG_SIG .. "x"), { kind = "image" },
        { key = helper.SCOPED_KEY })
      assert_error(status, json, 403, "api_scope_denied")
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("answers public_api_disabled on every /api/v1 path while disabled", function()
      sim:config{ public_api_disabled = true }
      local status, json = sim:api("GET", "/api/v1/models", nil, { key = false })
      assert_error(status, json, 503, "public_api_disabled")
      status, json = create()
      assert_error(status, json, 503, "public_api_disabled")
      sim:config{ public_api_disabled = false }
      status = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
    end)
  end)

  describe("credits", function()
    it("reports the starting balance and the configured one", function()
      local status, json = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal(1000, json.current_credits)
      assert.are.equal(500, sim:config{ credits = 500 }.credits)
      status, json = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal(500, json.current_credits)
    end)
  end)

  describe("generations", function()
    it("creates a queued task with every field of the task object and reserves 80", function()
      local status, task = create({ params = { duration = "5", seed = 7 },
        client_request_id = "cr-1" })
      assert.are.equal(201, status)
      assert.matches("^task_%x+$", task.id)
      assert.are.equal("queued", task.status)
      assert.are.equal(MODEL, task.model)
      assert.are.equal(80, task.reserved_credits)
      assert.are.equal(0, task.final_credits)
      local iso = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"
      assert.matches(iso, task.created_at)
      assert.matches(iso, task.updated_at)
      assert.are.equal(cjson.null, task.result)
      assert.are.equal(cjson.null, task.error)
      local _, credits = sim:api("GET", "/api/v1/credits")
      assert.are.equal(920, credits.current_credits)
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.tasks_created)
      assert.are.equal(1, ledger.charges)
      assert.are.equal(80, ledger.credits_charged)
      assert.are.equal(task.id, ledger.tasks[1].id)
    end)

    it("moves a task to succeeded with a result URL on the CDN and final_credits 80", function()
      local _, task = create()
      local done = poll_until(task.id, { succeeded = true, failed = true })
      assert.are.equal("succeeded", done.status)
      assert.are.equal(80, done.final_credits)
      assert.are.equal(cjson.null, done.error)
      local url = sim.cdn_url .. "/videos/" .. task.id .. ".mp4"
      assert.are.equal(url, done.result.primary_url)
      assert.are.same({ url }, done.result.urls)
      assert.are_not.equal(task.updated_at, done.updated_at)
    end)

    it("serves the sample video at the result URL once succeeded, and 404 before", function()
      sim:config{ task_seconds = 1000 }
      local _, pending = create()
      local status = helper.curl{ url = sim.cdn_url .. "/videos/" .. pending.id .. ".mp4" }
      assert.are.equal(404, status)
      sim:config{ task_seconds = 0.3 }
      local done = poll_until(pending.id, { succeeded = true })
      local headers, body
      status, headers, body = helper.curl{ url = done.result.primary_url }
      assert.are.equal(200, status)
      assert.are.equal("video/mp4", headers["content-type"])
      assert.are.equal("ftyp", body:sub(5, 8))
      assert.are.equal(helper.read_file(SAMPLE), body)
    end)

    it("fails a task whose prompt carries [[fail-silent]] with error null, refunded", function()
      local _, task = create({ prompt = "quietly [[fail-silent]]" })
      local done = poll_until(task.id, { succeeded = true, failed = true })
      assert.are.equal("failed", done.status)
      assert.are.equal(cjson.null, done.error)
      assert.are.equal(cjson.null, done.result)
      assert.are.equal(1000, sim:ledger().credits)
    end)

    it("fails a task whose prompt carries [[fail]] and refunds its credits", function()
      local _, task = create({ prompt = "make it [[fail]] please" })
      local done = poll_until(task.id, { succeeded = true, failed = true })
      assert.are.equal("failed", done.status)
      assert.are.equal("generation_failed", done.error.code)
      assert.is_string(done.error.message)
      assert.are.equal(cjson.null, done.result)
      assert.are.equal(0, done.final_credits)
      local _, credits = sim:api("GET", "/api/v1/credits")
      assert.are.equal(1000, credits.current_credits)
      assert.are.equal(80, sim:ledger().credits_refunded)
    end)

    it("answers insufficient_credits below 80 and creates and charges nothing", function()
      sim:config{ credits = 79 }
      local status, json = create()
      assert_error(status, json, 402, "insufficient_credits")
      local ledger = sim:ledger()
      assert.are.equal(0, ledger.tasks_created)
      assert.are.equal(0, ledger.charges)
      assert.are.equal(79, ledger.credits)
    end)

    it("takes Idempotency-Keys of printable ASCII with inner spaces, refuses the rest", function()
      local s1, t1 = create({}, { headers = { ["Idempotency-Key"] = "batch 7 line 3" } })
      local s2, t2 = create({}, { headers = { ["Idempotency-Key"] = "batch 7 line 3" } })
      assert.are.equal(201, s1)
      assert.are.equal(201, s2)
      assert.are.equal(t1.id, t2.id)
      assert.are.equal("batch 7 line 3", sim:ledger().tasks[1].idempotency_key)
      for _, key in ipairs{ "caf\195\169", ("k"):rep(256), "tab\there" } do
        local status, json = create({}, { headers = { ["Idempotency-Key"] = key } })
        assert_error(status, json, 400, "validation_failed")
        assert.are.equal("Idempotency-Key", json.error.field)
      end
      assert.are.equal(201, (create({}, { headers = { ["Idempotency-Key"] = ("k"):rep(255) } })))
      assert.are.equal(2, sim:ledger().tasks_created)
    end)

    it("replays the same task for the same Idempotency-Key and body, charging once", function()
      local s1, t1 = create({}, { headers = { ["Idempotency-Key"] = "idem-1" } })
      local s2, t2, h2 = create({}, { headers = { ["Idempotency-Key"] = "idem-1" } })
      assert.are.equal(201, s1)
      assert.are.equal(201, s2)
      assert.are.equal(t1.id, t2.id)
      assert.are.equal("true", h2["idempotent-replayed"])
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.tasks_created)
      assert.are.equal(1, ledger.charges)
      assert.are.equal(1, ledger.idempotent_replays)
      assert.are.equal(920, ledger.credits)
      assert.are.equal("idem-1", ledger.tasks[1].idempotency_key)
    end)

    it("answers idempotency_conflict for the same key with a different body", function()
      create({}, { headers = { ["Idempotency-Key"] = "idem-2" } })
      local status, json = create({ prompt = "another prompt" },
        { headers = { ["Idempotency-Key"] = "idem-2" } })
      assert_error(status, json, 409, "idempotency_conflict")
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("answers not_found for an unknown task and an unknown route, 405 for a wrong method",
      function()
        local status, json = sim:api("GET", "/api/v1/generations/task_doesnotexist")
        assert_error(status, json, 404, "not_found")
        status, json = sim:api("GET", "/api/v1/nothing-here")
        assert_error(status, json, 404, "not_found")
        local headers
        status, json, headers = sim:api("DELETE", "/api/v1/credits")
        assert.are.equal(405, status)
        assert.is_string(json.error.code)
        assert.matches("GET", headers["allow"])
        status, json = sim:api("BREW", "/api/v1/credits")
        assert.are.equal(405, status)
        assert.is_string(json.error.message)
      end)

    it("finishes a task on the Nth GET with --task-polls", function()
      local s2 = helper.start_sim{ args = { "--task-polls", "3", "--task-seconds", "1000" } }
      finally(function() assert.is_true(s2:stop()) end)
      local _, task = s2:api("POST", "/api/v1/generations", create_body())
      local seen = {}
      for i = 1, 3 do
        local _, t = s2:api("GET", "/api/v1/generations/" .. task.id)
        seen[i] = t.status
      end
      assert.are.same({ "queued", "processing", "succeeded" }, seen)
    end)
  end)

  describe("validation", function()
    local function rejects(extra, field, pattern)
      local status, json = create(extra)
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal(field, json.error.field)
      if pattern then assert.matches(pattern, json.error.message) end
      return json
    end

    it("rejects a JSON number for a select parameter, naming expected and given", function()
      local json = rejects({ params = { duration = 5 } }, "params.duration")
      assert.truthy(json.error.message:find('"5", "10", "15"', 1, true))
      assert.truthy(json.error.message:find("number 5", 1, true))
      rejects({ params = { duration = "7" } }, "params.duration", '"7"')
    end)

    it("rejects an unknown parameter and unknown top-level keys", function()
      rejects({ params = { fps = "24" } }, "params.fps", "unknown parameter")
      rejects({ duration = "5" }, "duration", "unknown top%-level")
    end)

    it("rejects a top-level files field pointing to params.referenceMediaItems", function()
      rejects({ files = { "x" } }, "files", "params%.referenceMediaItems")
    end)

    it("rejects a missing or unknown model and a missing or empty prompt", function()
      local status, json = sim:api("POST", "/api/v1/generations", { prompt = "x" })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("model", json.error.field)
      rejects({ model = "no-such-model" }, "model", "no%-such%-model")
      status, json = sim:api("POST", "/api/v1/generations", { model = MODEL })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("prompt", json.error.field)
      rejects({ prompt = "" }, "prompt")
    end)

    it("counts the prompt in code points: 5000 multi-byte accepted, 5001 rejected", function()
      local status = create({ prompt = ("é"):rep(4999) .. "😀" })
      assert.are.equal(201, status)
      rejects({ prompt = ("é"):rep(5001) }, "prompt", "5001")
    end)

    it("takes seeds 0 and 2147483647 and rejects -1, 2147483648 and 1.5", function()
      assert.are.equal(201, (create({ params = { seed = 0 } })))
      assert.are.equal(201, (create({ params = { seed = 2147483647 } })))
      rejects({ params = { seed = -1 } }, "params.seed")
      rejects({ params = { seed = 2147483648 } }, "params.seed")
      rejects({ params = { seed = 1.5 } }, "params.seed")
    end)

    it("rejects three references, two videos, a video without token and a bad token", function()
      local img = { url = "https://cdn.example.com/a.png", kind = "image" }
      rejects({ params = { referenceMediaItems = { img, img, img } } },
        "params.referenceMediaItems", "at most 2")
      local vid = { url = "https://cdn.example.com/a.mp4", kind = "video", durationToken = "dt_x" }
      rejects({ params = { referenceMediaItems = { vid, vid } } },
        "params.referenceMediaItems", "video")
      rejects({ params = { referenceMediaItems = { { url = vid.url, kind = "video" } } } },
        "params.referenceMediaItems[0].durationToken")
      rejects({ params = { referenceMediaItems = { img, vid } } },
        "params.referenceMediaItems[1].durationToken", "verify")
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("rejects malformed JSON, a non-object body and a wrong Content-Type", function()
      local status, json = sim:api("POST", "/api/v1/generations", "{\"model\": ")
      assert_error(status, json, 400, "validation_failed")
      status, json = sim:api("POST", "/api/v1/generations", "[1, 2]")
      assert_error(status, json, 400, "validation_failed")
      status, json = sim:api("POST", "/api/v1/generations", cjson.encode(create_body()),
        { headers = { ["Content-Type"] = "text/plain" } })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("Content-Type", json.error.field)
    end)

    it("answers 413 for a JSON body over 1 MB and keeps serving", function()
      local big = cjson.encode(create_body({ prompt = ("x"):rep(1100000) }))
      local status, json = sim:api("POST", "/api/v1/generations", big)
      assert_error(status, json, 413, "payload_too_large")
      assert.are.equal(200, (sim:api("GET", "/api/v1/credits")))
    end)
  end)

  describe("faults", function()
    it("respond: answers 429 with Retry-After and commits nothing", function()
      assert.are.equal(1, sim:fault{ path = "/api/v1/generations", action = "respond",
        status = 429, headers = { ["Retry-After"] = "2" } }.queued)
      local status, json, headers = create()
      assert_error(status, json, 429, "rate_limited")
      assert.are.equal("2", headers["retry-after"])
      assert.are.equal(0, sim:ledger().tasks_created)
      assert.are.equal(201, (create()))
    end)

    it("respond: uses the given body and content type", function()
      sim:fault{ path = "/api/v1/credits", action = "respond", status = 502,
        body = "<html>bad gateway</html>", content_type = "text/html" }
      local status, json, headers, raw = sim:api("GET", "/api/v1/credits")
      assert.are.equal(502, status)
      assert.is_nil(json)
      assert.are.equal("text/html", headers["content-type"])
      assert.are.equal("<html>bad gateway</html>", raw)
    end)

    it("drop: closes without a status and creates nothing", function()
      sim:fault{ path = "/api/v1/generations", action = "drop" }
      assert.are.equal(0, (create()))
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("drop_after_commit: closes without a status but the task and charge exist", function()
      sim:fault{ path = "/api/v1/generations", method = "POST", action = "drop_after_commit" }
      assert.are.equal(0, (create()))
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.tasks_created)
      assert.are.equal(920, ledger.credits)
    end)

    it("delay: still processes the request and consumes the fault", function()
      sim:fault{ path = "/api/v1/generations", action = "delay", delay_ms = 200 }
      local status, task = create()
      assert.are.equal(201, status)
      assert.matches("^task_", task.id)
      assert.are.equal(0, #sim:control("GET", "faults").data)
    end)

    it("stall: sends half the body, then closes it incomplete", function()
      sim:fault{ path = "/api/v1/generations", action = "stall", delay_ms = 200 }
      local status, json, headers, raw = create()
      assert.are.equal(201, status)
      assert.is_nil(json)
      assert.is_true(#raw < tonumber(headers["content-length"]))
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("truncate: declares the full length but sends only half", function()
      sim:fault{ path = "/api/v1/generations", action = "truncate" }
      local status, json, headers, raw = create()
      assert.are.equal(201, status)
      assert.is_nil(json)
      local declared = tonumber(headers["content-length"])
      assert.are.equal(math.floor(declared / 2), #raw)
    end)

    it("invalid_json: commits and answers a broken JSON body", function()
      sim:fault{ path = "/api/v1/generations", action = "invalid_json" }
      local status, json, headers, raw = create()
      assert.are.equal(201, status)
      assert.is_nil(json)
      assert.are.equal('{"id": "task_', raw)
      assert.matches("application/json", headers["content-type"])
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("wrong_content_type: answers the normal body as text/html", function()
      sim:fault{ path = "/api/v1/credits", action = "wrong_content_type" }
      local status, json, headers = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal("text/html", headers["content-type"])
      assert.are.equal(1000, json.current_credits)
    end)

    it("oversized: answers 200 with a body of the given size", function()
      sim:fault{ path = "/api/v1/generations/", action = "oversized", size = 100000 }
      local status, _, _, raw = sim:api("GET", "/api/v1/generations/task_x")
      assert.are.equal(200, status)
      assert.are.equal(100000, #raw)
    end)

    it("redirect: answers 302 with the Location and processes nothing", function()
      sim:fault{ path = "/api/v1/generations", action = "redirect",
        location = "http://127.0.0.1:9/elsewhere" }
      local status, _, headers = create()
      assert.are.equal(302, status)
      assert.are.equal("http://127.0.0.1:9/elsewhere", headers["location"])
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("matches by listener, method and path prefix, for `times` requests", function()
      sim:fault{ path = "/api/v1/credits", method = "POST", action = "respond", status = 500 }
      sim:fault{ listener = "cdn", path = "/videos/", action = "respond", status = 503,
        times = 2 }
      assert.are.equal(200, (sim:api("GET", "/api/v1/credits")))
      local url = sim.cdn_url .. "/videos/task_x.mp4"
      assert.are.equal(503, (helper.curl{ url = url }))
      assert.are.equal(503, (helper.curl{ url = url }))
      assert.are.equal(404, (helper.curl{ url = url }))
      local pending = sim:control("GET", "faults").data
      assert.are.equal(1, #pending)
      assert.are.equal("POST", pending[1].method)
      assert.are.equal(1, sim:control("DELETE", "faults").cleared)
      assert.are.equal(0, #sim:control("GET", "faults").data)
    end)

    -- one raw HTTP/1.1 GET on the API listener through lua-socket: status,
    -- headers (lower-case names), the socket (still open, body unread)
    local function raw_get(path)
      local socket = require "socket"
      local c = assert(socket.connect("127.0.0.1", sim.port))
      c:settimeout(30)
      assert(c:send(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        .. "Connection: close\r\n\r\n"):format(path, helper.KEY)))
      local status = tonumber(assert(c:receive("*l")):match("^HTTP/1%.1 (%d+)"))
      local headers = {}
      while true do
        local line = assert(c:receive("*l"))
        if line == "" then break end
        local k, v = line:match("^([^:]+):%s*(.*)$")
        headers[k:lower()] = v
      end
      return status, headers, c
    end

    it("drip: declares the whole body, then sends it one byte per delay_ms", function()
      sim:fault{ path = "/api/v1/credits", action = "drip", delay_ms = 1 }
      local status, json, _, raw = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal(1000, json.current_credits)
      assert.are.equal('{"current_credits":1000}', raw)
      -- a 10-minute drip: the first byte comes, the second does not
      sim:fault{ path = "/api/v1/credits", action = "drip", delay_ms = 600000 }
      local c
      status, _, c = raw_get("/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal("{", c:receive(1))
      c:settimeout(0.3)
      local got, err = c:receive(1)
      assert.is_nil(got)
      assert.are.equal("timeout", err)
      c:close()
    end)

    it("huge_header: adds one header of size bytes and keeps the answer", function()
      sim:fault{ path = "/api/v1/credits", action = "huge_header", size = 200000 }
      local status, headers, c = raw_get("/api/v1/credits")
      assert.are.equal(200, status)
      assert.are.equal(("p"):rep(200000), headers["x-rivya-sim-pad"])
      assert.are.equal('{"current_credits":1000}', c:receive(tonumber(headers["content-length"])))
      c:close()
      sim:fault{ path = "/api/v1/credits", action = "huge_header" }
      status, headers, c = raw_get("/api/v1/credits")
      c:close()
      assert.are.equal(200, status)
      assert.are.equal(200000, #headers["x-rivya-sim-pad"])
    end)

    it("gzip: the real body gzip-encoded, or size zero bytes compressed (a bomb)", function()
      sim:fault{ path = "/api/v1/credits", action = "gzip", times = 2 }
      local status, json, headers, raw = sim:api("GET", "/api/v1/credits")
      assert.are.equal(200, status)
      assert.is_nil(json)
      assert.are.equal("gzip", headers["content-encoding"])
      assert.are.equal("\31\139", raw:sub(1, 2))
      status, json = sim:api("GET", "/api/v1/credits", nil, { extra = { "--compressed" } })
      assert.are.equal(200, status)
      assert.are.equal(1000, json.current_credits)
      sim:fault{ path = "/videos/", listener = "cdn", action = "gzip", size = 20000000, times = 2 }
      local url = sim.cdn_url .. "/videos/task_none.mp4"
      local body
      status, headers, body = helper.curl{ url = url }
      assert.are.equal(404, status)
      assert.are.equal("gzip", headers["content-encoding"])
      assert.are.equal("\31\139", body:sub(1, 2))
      assert.truthy(#body < 200000, #body)
      status, headers, body = helper.curl{ url = url, extra = { "--compressed" } }
      assert.are.equal(404, status)
      assert.are.equal("gzip", headers["content-encoding"])
      assert.are.equal(20000000, #body)
      assert.are.equal(("\0"):rep(1000), body:sub(-1000))
    end)

    it("partial: 206 with Content-Range and the first size bytes", function()
      local _, task = create()
      local done = poll_until(task.id, { succeeded = true })
      sim:fault{ path = "/videos/", listener = "cdn", action = "partial", size = 1000 }
      local status, headers, body = helper.curl{ url = done.result.primary_url }
      local sample = helper.read_file(SAMPLE)
      assert.are.equal(206, status)
      assert.are.equal(("bytes 0-999/%d"):format(#sample), headers["content-range"])
      assert.are.equal("1000", headers["content-length"])
      assert.are.equal(sample:sub(1, 1000), body)
    end)

    it("oversized: size bytes, behind the given body when there is one", function()
      sim:fault{ path = "/videos/", listener = "cdn", action = "oversized", size = 3000000,
        body_base64 = "AAAAGGZ0eXBpc29tAAAAAA==" }
      local status, headers, body = helper.curl{ url = sim.cdn_url .. "/videos/x.mp4" }
      assert.are.equal(200, status)
      assert.are.equal("3000000", headers["content-length"])
      assert.are.equal(3000000, #body)
      assert.are.equal("\0\0\0\24ftypisom\0\0\0\0xxxx", body:sub(1, 20))
      sim:fault{ path = "/api/v1/credits", action = "oversized", size = 100 }
      local _, json = sim:api("GET", "/api/v1/credits")
      assert.are.equal(("x"):rep(100 - 11), json.data)
    end)

    it("respond: body_base64 carries binary bytes, NUL included", function()
      sim:fault{ path = "/videos/", listener = "cdn", action = "respond", status = 200,
        content_type = "video/mp4", body_base64 = "AAAAGGZ0eXBpc29tAAAAAA==" }
      local status, headers, body = helper.curl{ url = sim.cdn_url .. "/videos/x.mp4" }
      assert.are.equal(200, status)
      assert.are.equal("video/mp4", headers["content-type"])
      assert.are.equal("\0\0\0\24ftypisom\0\0\0\0", body)
      status = sim:api("POST", "/__sim/faults", { path = "/", action = "respond", body = "x",
        body_base64 = "eA==" }, { key = false })
      assert.are.equal(400, status)
      status = sim:api("POST", "/__sim/faults", { path = "/", action = "respond",
        body_base64 = "not base64!" }, { key = false })
      assert.are.equal(400, status)
    end)

    it("rejects a fault without path or with an unknown action", function()
      local status = sim:api("POST", "/__sim/faults", { action = "drop" }, { key = false })
      assert.are.equal(400, status)
      status = sim:api("POST", "/__sim/faults", { path = "/", action = "explode" },
        { key = false })
      assert.are.equal(400, status)
    end)
  end)

  describe("control", function()
    it("reset returns to the start-up state", function()
      sim:config{ credits = 5000, task_polls = 2 }
      create({}, { headers = { ["Idempotency-Key"] = "idem-r" } })
      sim:fault{ path = "/api/v1/credits", action = "drop" }
      local answer = sim:reset()
      assert.are.equal(1000, answer.config.credits)
      assert.are.equal(0, answer.config.task_polls)
      local ledger = sim:ledger()
      assert.are.equal(0, ledger.tasks_created)
      assert.are.equal(1000, ledger.credits)
      assert.are.same({}, ledger.tasks)
      assert.are.equal(0, ledger.requests)
      assert.are.equal(0, #sim:control("GET", "faults").data)
      -- the idempotency record went with the task
      local status, task = create({ prompt = "new" },
        { headers = { ["Idempotency-Key"] = "idem-r" } })
      assert.are.equal(201, status)
      assert.are.equal("queued", task.status)
    end)

    it("counts the connections each listener accepts since the reset, leaving out control ones", function()
      for _ = 1, 3 do sim:api("GET", "/api/v1/models", nil, { key = false }) end
      for _ = 1, 2 do helper.curl{ url = sim.cdn_url .. "/videos/task_none.mp4" } end
      local ledger = sim:ledger()
      assert.are.equal(3, ledger.connections)
      assert.are.equal(2, ledger.cdn_connections)
      sim:reset()
      ledger = sim:ledger()
      assert.are.equal(0, ledger.connections)
      assert.are.equal(0, ledger.cdn_connections)
    end)

    it("logs requests with Idempotency-Key but never the key itself", function()
      create({}, { headers = { ["Idempotency-Key"] = "idem-log" } })
      sim:api("GET", "/api/v1/credits", nil, { key = false })
      local status, _, _, raw = sim:api("GET", "/__sim/requests", nil, { key = false })
      assert.are.equal(200, status)
      assert.is_nil(raw:find(helper.KEY, 1, true))
      local data = cjson.decode(raw).data
      assert.are.equal(2, #data)
      assert.are.equal("POST", data[1].method)
      assert.are.equal("/api/v1/generations", data[1].path)
      assert.are.equal("idem-log", data[1].idempotency_key)
      assert.are.equal("present", data[1].authorization)
      assert.are.equal("api", data[1].listener)
      assert.matches("application/json", data[1].content_type)
      assert.are.equal("absent", data[2].authorization)
      assert.are.equal(cjson.null, data[2].idempotency_key)
    end)

    it("counts CDN requests that carry Authorization and logs them without the value", function()
      local status = helper.curl{ url = sim.cdn_url .. "/videos/task_none.mp4",
        headers = { Authorization = "Bearer " .. helper.KEY } }
      assert.are.equal(404, status)
      assert.are.equal(1, sim:ledger().cdn_auth_violations)
      local log = sim:log_text()
      assert.truthy(log:find("ERROR cdn request carried Authorization", 1, true))
      local requests = sim:control("GET", "requests").data
      assert.are.equal("cdn", requests[1].listener)
      assert.are.equal("present", requests[1].authorization)
    end)

    it("never writes any key to its stderr log", function()
      sim:api("GET", "/api/v1/credits")
      sim:api("GET", "/api/v1/credits", nil, { key = helper.REVOKED_KEY })
      sim:api("GET", "/api/v1/credits", nil, { key = "rvya_sk_typo_zzz" })
      create()
      local log = sim:log_text()
      assert.truthy(log:find("api GET /api/v1/credits -> 200", 1, true))
      for _, k in ipairs{ helper.KEY, helper.REVOKED_KEY, "rvya_sk_typo_zzz", "Bearer" } do
        assert.is_nil(log:find(k, 1, true), "the log holds " .. k)
      end
    end)
  end)

  describe("files", function()
    it("stores PNG and JPEG images and serves them on the CDN", function()
      for _, case in ipairs{ { "a.png", PNG_SIG .. "pixels", "image/png" },
                             { "b.jpg", JPEG_SIG .. "pixels", "image/jpeg" } } do
        local path = fixture(case[1], case[2])
        local status, file = upload(path, { kind = "image" })
        assert.are.equal(201, status)
        assert.matches("^file_%x+$", file.id)
        assert.are.equal("image", file.kind)
        assert.are.equal(case[1], file.name)
        assert.are.equal(case[3], file.mime_type)
        assert.are.equal(#case[2], file.size_bytes)
        assert.is_nil(file.duration_token)
        assert.are.equal(sim.cdn_url .. "/files/" .. file.id .. "/" .. case[1], file.url)
        local got, meta = sim:api("GET", "/api/v1/files/" .. file.id)
        assert.are.equal(200, got)
        assert.are.same(file, meta)
        local _, headers, body = helper.curl{ url = file.url }
        assert.are.equal(case[2], body)
        assert.are.equal(case[3], headers["content-type"])
      end
    end)

    it("reads an MP4's duration from mvhd and issues a duration token", function()
      local status, file = upload(SAMPLE, { kind = "video", model = MODEL })
      assert.are.equal(201, status)
      assert.are.equal("video/mp4", file.mime_type)
      assert.are.equal(2.0, file.duration_seconds)
      assert.matches("^dt_%w+$", file.duration_token)
    end)

    it("reads a WebM's duration from Segment/Info when no model is named", function()
      local info = "\42\215\177\131\15\66\64" -- TimecodeScale 1000000 (1 ms)
        .. "\68\137\132\68\250\0\0"          -- Duration 2000.0 as a float
      local webm = "\26\69\223\163\132\66\134\129\1"  -- EBML header
        .. "\24\83\128\103\1\255\255\255\255\255\255\255" -- Segment, unknown size
        .. "\21\73\169\102" .. string.char(0x80 + #info) .. info
      local status, file = upload(fixture("clip.webm", webm), { kind = "video" })
      assert.are.equal(201, status)
      assert.are.equal("video/webm", file.mime_type)
      assert.are.equal(2.0, file.duration_seconds)
      assert.matches("^dt_%w+$", file.duration_token)
      local json
      status, json = upload(fixture("nodur.webm", webm:sub(1, 21)), { kind = "video" })
      assert_error(status, json, 400, "validation_failed")
      assert.matches("duration", json.error.message)
    end)

    it("sniffs MPEG-4 audio brands M4A and M4B (.m4b audiobooks) as audio/mp4", function()
      for _, brand in ipairs{ "M4A ", "M4B " } do
        local path = fixture("book.m4b", "\0\0\0\24ftyp" .. brand .. "\0\0\0\0isom")
        local status, file = upload(path, { kind = "audio" })
        assert.are.equal(201, status)
        assert.are.equal("audio/mp4", file.mime_type)
        local json
        status, json = upload(path, { kind = "video" })
        assert_error(status, json, 400, "validation_failed")
        assert.are.equal("kind", json.error.field)
      end
    end)

    it("rejects a kind that does not match the signature, naming both", function()
      local status, json = upload(fixture("c.png", PNG_SIG .. "x"), { kind = "video" })
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("kind", json.error.field)
      assert.matches("image", json.error.message)
      assert.matches("video", json.error.message)
    end)

    it("rejects an empty file, a missing kind and an unknown signature", function()
      local status, json = upload(fixture("empty.png", ""), { kind = "image" })
      assert_error(status, json, 400, "validation_failed")
      assert.matches("empty", json.error.message)
      status, json = upload(fixture("d.png", PNG_SIG .. "x"))
      assert_error(status, json, 400, "validation_failed")
      assert.are.equal("kind", json.error.field)
      status, json = upload(fixture("e.txt", "just text"), { kind = "image" })
      assert_error(status, json, 400, "validation_failed")
    end)

    it("applies the model's rules: no audio and no WebM for wan-2-7-video", function()
      local status, json = upload(fixture("a.mp3", "ID3\3\0\0\0\0\0\0"),
        { kind = "audio", model = MODEL })
      assert_error(status, json, 400, "validation_failed")
      status = upload(fixture("b.mp3", "ID3\3\0\0\0\0\0\0"), { kind = "audio" })
      assert.are.equal(201, status)
      status, json = upload(fixture("a.webm", "\26\69\223\163webm"),
        { kind = "video", model = MODEL })
      assert_error(status, json, 400, "validation_failed")
      assert.matches("video/webm", json.error.message)
    end)

    it("rejects an image over the default 10 MB limit", function()
      local path = fixture("big.png", PNG_SIG .. ("\0"):rep(10000001 - #PNG_SIG))
      local status, json = upload(path, { kind = "image" })
      assert_error(status, json, 400, "validation_failed")
      assert.matches("10000000", json.error.message)
      assert.are.equal(0, sim:ledger().files)
    end)

    it("reports each stored file's sha256 in the ledger", function()
      local path = fixture("hash.jpg", JPEG_SIG .. ("rivya"):rep(1000))
      local _, image = upload(path, { kind = "image" })
      local _, video = upload(SAMPLE, { kind = "video" })
      local list = sim:ledger().files_list
      assert.are.equal(2, #list)
      assert.are.equal(image.id, list[1].id)
      assert.are.equal(sha256_of(path), list[1].sha256)
      assert.are.equal(video.id, list[2].id)
      assert.are.equal(sha256_of(SAMPLE), list[2].sha256)
    end)

    it("accepts an uploaded video referenced with its token, clamping the duration",
      function()
        local _, video = upload(SAMPLE, { kind = "video", model = MODEL })
        local status, task = create({ params = { duration = "15", referenceMediaItems = {
          { url = video.url, kind = "video", name = video.name, mimeType = video.mime_type,
            durationSeconds = video.duration_seconds, durationToken = video.duration_token },
        } } })
        assert.are.equal(201, status)
        assert.are.same({ "params.duration clamped to 10 in video-editing" }, task.warnings)
        assert.are.equal("10", sim:ledger().tasks[1].params.duration)
        -- the token is bound to the file's URL
        status = create({ params = { referenceMediaItems = {
          { url = video.url .. "x", kind = "video", durationToken = video.duration_token },
        } } })
        assert.are.equal(400, status)
      end)
  end)
end)

describe("rivya-sim command line", function()
  local tmp
  setup(function() tmp = helper.tmpdir() end)
  teardown(function() helper.rmrf(tmp) end)

  -- run rivya-sim with `args` expecting it to refuse them: exit code, stderr
  local function refused(args)
    local bin = os.getenv("RIVYA_SIM") or (helper.ROOT .. "/build/rivya-sim")
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = helper.sh_quote(a) end
    local err = tmp .. "/err"
    local _, _, code = compat.execute(helper.sh_quote(bin) .. " --port 0 --cdn-port 0 " ..
      table.concat(quoted, " ") .. " >/dev/null 2>" .. helper.sh_quote(err))
    return code, helper.read_file(err)
  end

  it("--catalog FILE serves and obeys another catalog", function()
    local path = tmp .. "/catalog.json"
    helper.write_file(path, [[{"object": "list", "data": [{
      "id": "tiny-video", "display_name": "Tiny", "category": "video", "runtime": "async_task",
      "base_credits": 7, "billing_type": "FIXED", "supported_modes": ["text-to-video"],
      "max_prompt_length": 10, "reference_media": null,
      "params": [{"key": "fps", "type": "select", "required": false, "options": ["12", "24"]},
                 {"key": "mood", "type": "vibe", "required": false}],
      "api_status": "available", "api_input_status": "available_text",
      "supported_api_inputs": ["text"], "requires_files_api": false,
      "requires_upload_for_modes": [], "url_input_supported": false, "file_kinds": [],
      "chat_capabilities": null, "notices": []}]}]])
    local sim = helper.start_sim{ args = { "--catalog", path, "--task-seconds", "0" } }
    local ok, err = pcall(function()
      local status, json = sim:api("GET", "/api/v1/models", nil, { key = false })
      assert.are.equal(200, status)
      assert.are.equal(1, #json.data)
      assert.are.equal("tiny-video", json.data[1].id)
      local function create(body) return sim:api("POST", "/api/v1/generations", body) end
      status, json = create({ model = "wan-2-7-video", prompt = "x" })
      assert.are.equal(400, status)
      assert.truthy(json.error.message:find("tiny-video", 1, true))
      status, json = create({ model = "tiny-video", prompt = "x", params = { fps = "30" } })
      assert.are.equal(400, status)
      assert.are.equal("params.fps", json.error.field)
      status, json = create({ model = "tiny-video", prompt = "12345678901" })
      assert.are.equal(400, status)
      assert.are.equal("prompt", json.error.field)
      -- a parameter type the simulator does not know takes any value but null
      status, json = create({ model = "tiny-video", prompt = "x", params = { fps = "24", mood = { 1 } } })
      assert.are.equal(201, status)
      assert.are.equal(7, json.reserved_credits)
      status, json = create({ model = "tiny-video", prompt = "x", params = { mood = cjson.null } })
      assert.are.equal(400, status)
      assert.are.equal("params.mood", json.error.field)
    end)
    sim:stop()
    assert(ok, err)
  end)

  it("refuses a catalog it cannot use, naming the file and the field", function()
    local code, err = refused({ "--catalog", tmp .. "/missing.json" })
    assert.are.equal(2, code)
    assert.truthy(err:find("missing.json", 1, true))
    local path = tmp .. "/bad.json"
    helper.write_file(path, '{"object": "list", "data": [{"id": "x", "display_name": "X", '
      .. '"category": "video", "runtime": "async_task", "billing_type": "FIXED", '
      .. '"api_status": "available", "api_input_status": "available_text", '
      .. '"base_credits": "ten", "max_prompt_length": 10, "params": []}]}')
    code, err = refused({ "--catalog", path })
    assert.are.equal(2, code)
    assert.truthy(err:find("base_credits", 1, true), err)
    helper.write_file(path, '{"object": "list", "data": [')
    code, err = refused({ "--catalog", path })
    assert.are.equal(2, code)
    assert.truthy(err:find("invalid JSON", 1, true), err)
  end)

  it("--scoped-key KEY:scopes grants those scopes; denials name the missing one", function()
    local key = "rvya_sk_scopes_0001"
    local sim = helper.start_sim{ args = { "--scoped-key", key .. ":generations:create,files:read" } }
    local ok, err = pcall(function()
      local opts = { key = key }
      local status, json = sim:api("POST", "/api/v1/generations",
        { model = "wan-2-7-video", prompt = "x" }, opts)
      assert.are.equal(201, status)
      status, json = sim:api("GET", "/api/v1/generations/" .. json.id, nil, opts)
      assert.are.equal(403, status)
      assert.are.equal("api_scope_denied", json.error.code)
      assert.truthy(json.error.message:find("generations:read", 1, true))
      status, json = sim:api("GET", "/api/v1/credits", nil, opts)
      assert.are.equal(403, status)
      assert.truthy(json.error.message:find("credits:read", 1, true))
      assert.is_nil(json.error.message:find(key, 1, true))
      status = sim:api("GET", "/api/v1/files/file_none", nil, opts)
      assert.are.equal(404, status)
    end)
    sim:stop()
    assert(ok, err)
    local code, msg = refused({ "--scoped-key", "k:generations:write" })
    assert.are.equal(2, code)
    assert.truthy(msg:find("generations:write", 1, true))
  end)
end)

describe("rivya-sim webhooks", function()
  local socket = require "socket"
  local sim, server, port

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--allow-loopback-webhooks",
      "--scoped-key", "rvya_sk_hooks_0001:webhooks:manage" } }
    server = assert(socket.bind("127.0.0.1", 0))
    port = select(2, server:getsockname())
    server:settimeout(20)
  end)

  teardown(function()
    server:close()
    assert.is_true(sim:stop(), "rivya-sim did not exit on SIGTERM")
  end)

  before_each(function()
    sim:reset()
    sim:config{ webhook_retry_seconds = 0.05 }
  end)

  local function hooks(method, path, body, opts)
    return sim:api(method, "/api/v1/webhooks" .. (path or ""), body, opts)
  end

  local function register(extra)
    local body = { name = "renders", url = "http://127.0.0.1:" .. port .. "/hook" }
    for k, v in pairs(extra or {}) do body[k] = v end
    local status, w = hooks("POST", "", body)
    assert.are.equal(201, status, w and w.error and w.error.message)
    return w
  end

  -- accept one delivery on the receiver, answer `status` (and `headers`),
  -- return { method, path, headers, body }
  local function receive(status, headers)
    local c = assert(server:accept())
    c:settimeout(10)
    local line = assert(c:receive("*l"))
    local req = { headers = {} }
    req.method, req.path = line:match("^(%u+) (%S+) HTTP/1%.1$")
    while true do
      local h = assert(c:receive("*l"))
      if h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.*)$")
      req.headers[k:lower()] = v
    end
    req.body = assert(c:receive(tonumber(req.headers["content-length"])))
    local extra = ""
    for k, v in pairs(headers or {}) do extra = extra .. k .. ": " .. v .. "\r\n" end
    c:send(("HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n%s\r\nok"):format(status, extra))
    c:close()
    return req
  end

  local function deliveries(id, want)
    for _ = 1, 200 do
      local status, json = hooks("GET", "/" .. id .. "/deliveries")
      assert.are.equal(200, status)
      local done = 0
      for _, d in ipairs(json.data) do
        if d.status == "succeeded" or d.status == "failed" then done = done + 1 end
      end
      if done >= want then return json.data end
      helper.sleep(0.02)
    end
    error("deliveries of " .. id .. " never reached " .. want)
  end

  it("manages endpoints: create shows the secret once, list, get, patch, rotate, delete", function()
    local w = register{ url = "https://hooks.example.com/rivya", event_types = { "generation.failed" } }
    assert.matches("^whend_%x+$", w.id)
    assert.are.equal("webhook_endpoint", w.object)
    assert.are.equal("renders", w.name)
    assert.are.same({ "generation.failed" }, w.event_types)
    assert.are.equal("active", w.status)
    assert.matches("^whsec_%x+$", w.signing_secret)
    assert.are.equal(w.signing_secret:sub(1, 8) .. "..." .. w.signing_secret:sub(-6), w.secret_preview)
    for _, k in ipairs{ "last_success_at", "last_failure_at", "disabled_at", "revoked_at" } do
      assert.are.equal(cjson.null, w[k], k)
    end
    assert.are.equal(0, w.failure_count)
    local status, list = hooks("GET")
    assert.are.equal(200, status)
    assert.are.equal("list", list.object)
    assert.are.equal(1, #list.data)
    assert.is_nil(list.data[1].signing_secret)
    local got
    status, got = hooks("GET", "/" .. w.id)
    assert.are.equal(200, status)
    assert.is_nil(got.signing_secret)
    assert.are.equal(w.secret_preview, got.secret_preview)
    status, got = hooks("PATCH", "/" .. w.id, { name = "renamed", status = "disabled" })
    assert.are.equal(200, status)
    assert.are.equal("renamed", got.name)
    assert.are.equal("disabled", got.status)
    assert.is_string(got.disabled_at)
    status, got = hooks("PATCH", "/" .. w.id, { url = "https://10.0.0.1/x" })
    assert.are.equal(400, status)
    assert.are.equal("webhook_url_rejected", got.error.code)
    status, got = hooks("PATCH", "/" .. w.id, { status = "paused" })
    assert.are.equal(400, status)
    assert.are.equal("status", got.error.field)
    status, got = hooks("POST", "/" .. w.id .. "/rotate-secret")
    assert.are.equal(200, status)
    assert.matches("^whsec_%x+$", got.signing_secret)
    assert.are_not.equal(w.signing_secret, got.signing_secret)
    status, got = hooks("DELETE", "/" .. w.id)
    assert.are.equal(200, status)
    assert.is_true(got.deleted)
    status = hooks("GET", "/" .. w.id)
    assert.are.equal(404, status)
    status, got = hooks("POST", "", { url = "https://hooks.example.com/x", event_types = { "task.done" } })
    assert.are.equal(400, status)
    assert.are.equal("event_types", got.error.field)
  end)

  it("needs webhooks:manage, and a key sees only its own endpoints", function()
    local w = register{ url = "https://hooks.example.com/a" }
    local status, json = hooks("GET", "", nil, { key = helper.SCOPED_KEY })
    assert.are.equal(403, status)
    assert.are.equal("api_scope_denied", json.error.code)
    assert.truthy(json.error.message:find("webhooks:manage", 1, true))
    status, json = sim:api("GET", "/api/v1/webhook-events", nil, { key = helper.SCOPED_KEY })
    assert.are.equal(403, status)
    assert.are.equal("api_scope_denied", json.error.code)
    local other = { key = "rvya_sk_hooks_0001" }
    status, json = hooks("GET", "", nil, other)
    assert.are.equal(200, status)
    assert.are.same({}, json.data)
    assert.are.equal(404, (hooks("GET", "/" .. w.id, nil, other)))
    assert.are.equal(404, (hooks("DELETE", "/" .. w.id, nil, other)))
  end)

  it("rejects endpoint URLs by the documented rules with webhook_url_rejected", function()
    for _, url in ipairs{
      "http://hooks.example.com/x", "ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/x",
      "https://hooks.example.com/x#frag", "https://localhost/x", "https://LOCALHOST./x",
      "https://api.localhost/x", "https://printer.local/x", "https://intranet/x",
      "https://127.9.9.9/x", "https://10.1.2.3/x", "https://172.16.0.1/x",
      "https://172.31.255.255/x", "https://192.168.1.1/x", "https://169.254.169.254/latest",
      "https://100.64.0.1/x", "https://0.0.0.0/x", "https://224.0.0.1/x", "https://240.0.0.1/x",
      "https://192.0.2.1/x", "https://2130706433/x", "https://0x7f.1/x", "https://127.1/x",
      "https://[fe80::1]/x", "https://[fd00::1]/x", "https://[::ffff:10.0.0.1]/x",
      "https://[::]/x", "https://hooks.example.com /x",
    } do
      local status, json = hooks("POST", "", { url = url })
      assert.are.equal(400, status, url)
      assert.are.equal("webhook_url_rejected", json.error.code, url)
      assert.are.equal("url", json.error.field, url)
    end
    for _, url in ipairs{ "https://hooks.example.com/rivya?x=1", "https://172.32.0.1/x",
                          "https://8.8.8.8:8443/x", "https://[2606:4700::1]/x" } do
      local status, json = hooks("POST", "", { url = url })
      assert.are.equal(201, status, url .. ": " .. tostring(json and json.error and json.error.message))
    end
    assert.are.equal(0, sim:ledger().webhook_attempts)
  end)

  it("delivers generation.succeeded: POST, JSON, the task as the status endpoint shows it", function()
    local w = register()
    local _, task = sim:api("POST", "/api/v1/generations", { model = "wan-2-7-video", prompt = "a boat" })
    local req = receive(200)
    assert.are.equal("POST", req.method)
    assert.are.equal("/hook", req.path)
    assert.matches("^application/json", req.headers["content-type"])
    assert.is_nil(req.headers.authorization)
    assert.matches('^{"id":"evt_%x+","type":"generation%.succeeded","api_version":"2026%-05%-11",'
      .. '"created_at":"', req.body)
    local event = cjson.decode(req.body)
    assert.are.equal(task.id, event.data.id)
    assert.are.equal("succeeded", event.data.status)
    local _, polled = sim:api("GET", "/api/v1/generations/" .. task.id)
    assert.are.same(polled.result, event.data.result)
    local list = deliveries(w.id, 1)
    assert.are.equal(1, #list)
    assert.are.equal("succeeded", list[1].status)
    assert.are.equal(200, list[1].response_status)
    assert.are.equal(event.id, list[1].event_id)
    assert.are.equal(1, list[1].attempt)
    local status, events = sim:api("GET", "/api/v1/webhook-events")
    assert.are.equal(200, status)
    assert.are.equal(event.id, events.data[1].id)
    assert.are.equal("generation.succeeded", events.data[1].type)
    local _, got = hooks("GET", "/" .. w.id)
    assert.is_string(got.last_success_at)
  end)

  it("delivers generation.failed and retries a failed attempt with the same event", function()
    local w = register{ event_types = { "generation.failed" } }
    sim:api("POST", "/api/v1/generations", { model = "wan-2-7-video", prompt = "fine" })
    local _, failing = sim:api("POST", "/api/v1/generations", { model = "wan-2-7-video", prompt = "[[fail]]" })
    local first = receive(500)
    local second = receive(204)
    assert.are.equal(first.body, second.body)
    local event = cjson.decode(second.body)
    assert.are.equal("generation.failed", event.type)
    assert.are.equal(failing.id, event.data.id)
    assert.are.equal("generation_failed", event.data.error.code)
    local list = deliveries(w.id, 2)
    assert.are.equal(2, #list)
    assert.are.same({ 2, "succeeded", 204 }, { list[1].attempt, list[1].status, list[1].response_status })
    assert.are.same({ 1, "failed", 500 }, { list[2].attempt, list[2].status, list[2].response_status })
    assert.is_string(list[2].error)
    local _, got = hooks("GET", "/" .. w.id)
    assert.are.equal(1, got.failure_count)
  end)

  it("follows no redirect and gives up after the configured attempts", function()
    sim:config{ webhook_attempts = 2 }
    local w = register()
    local _, t = hooks("POST", "/" .. w.id .. "/test")
    assert.are.equal("pending", t.status)
    local req = receive(302, { Location = "http://127.0.0.1:" .. port .. "/elsewhere" })
    assert.are.equal("webhook.test", cjson.decode(req.body).type)
    req = receive(302, { Location = "http://127.0.0.1:" .. port .. "/elsewhere" })
    assert.are.equal("/hook", req.path)
    local list = deliveries(w.id, 2)
    assert.are.equal(2, #list)
    for _, d in ipairs(list) do
      assert.are.equal("failed", d.status)
      assert.truthy(d.error:find("redirect", 1, true))
    end
    -- no third attempt, and nothing went to /elsewhere: the only requests were the two above
    assert.are.equal(2, sim:ledger().webhook_attempts)
  end)

  it("sends nothing for an event type the endpoint did not subscribe to, or when disabled", function()
    local failed_only = register{ event_types = { "generation.failed" } }
    local off = register()
    hooks("PATCH", "/" .. off.id, { status = "disabled" })
    local _, task = sim:api("POST", "/api/v1/generations", { model = "wan-2-7-video", prompt = "ok" })
    for _ = 1, 200 do
      local _, t = sim:api("GET", "/api/v1/generations/" .. task.id)
      if t.status == "succeeded" then break end
      helper.sleep(0.02)
    end
    local _, events = sim:api("GET", "/api/v1/webhook-events")
    assert.are.equal(1, #events.data)
    for _, id in ipairs{ failed_only.id, off.id } do
      local _, json = hooks("GET", "/" .. id .. "/deliveries")
      assert.are.same({}, json.data)
    end
  end)
end)

describe("rivya-sim webhooks without --allow-loopback-webhooks", function()
  it("refuses loopback receivers, http or https", function()
    local sim = helper.start_sim()
    local ok, err = pcall(function()
      for _, url in ipairs{ "http://127.0.0.1:9/hook", "https://127.0.0.1/x", "https://[::1]/x" } do
        local status, json = sim:api("POST", "/api/v1/webhooks", { url = url })
        assert.are.equal(400, status, url)
        assert.are.equal("webhook_url_rejected", json.error.code, url)
      end
    end)
    sim:stop()
    assert(ok, err)
  end)
end)
