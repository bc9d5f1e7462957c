--- The client and rivya-sim judged side by side (issue 15). The simulator is
-- an independent implementation of docs/api-contract.md (its own validator
-- in sim/validate.c, its own sniffer in sim/media.c); rivya's checks are
-- src/validate.c, src/sniff.c and lua/rivya/refs.lua. Every accept/reject
-- case below runs through both: the client offline (`rivya.validate`, for
-- the models of the snapshot), the client against the live catalog
-- (`client:validate`, `client:create`, `client:upload`, `core.sniff`), and a
-- real rivya-sim process spoken to with the curl CLI (creates and uploads in
-- the wire form). Where the two disagree, the case must be in INTENDED, with
-- the outcome of each side; any other disagreement fails. docs/api-contract.md
-- lists the same differences.
local helper = require "helper"
local cjson = require "cjson.safe"
local rivya = require "rivya"
local core = require "rivya.core"

-- The intended differences: case name -> what each side does, and why
-- (`create`: the simulator's verdict on the body client:create itself sends,
-- when it differs from its verdict on the case's wire form).
local INTENDED = {
  ["select param given a Lua number"] = { client = "accept", sim = "reject", create = "accept",
    why = "rivya.validate converts natural Lua values to the wire form (10 -> \"10\"); the API "
      .. "takes only the wire form" },
  ["select param given a Lua boolean"] = { client = "accept", sim = "reject", create = "accept",
    why = "the same conversion (false -> \"false\")" },
  ["number param given a numeric string"] = { client = "accept", sim = "reject", create = "accept",
    why = "the same conversion (\"42\" -> 42)" },
  ["Idempotency-Key with a leading space"] = { client = "reject", sim = "accept",
    why = "HTTP drops a leading or trailing space in transit: the simulator receives \"key\", "
      .. "never the key the client would hold, so only the client can refuse it" },
  ["upload: JPEG bytes named .png"] = { client = "reject", sim = "accept",
    why = "the Files API judges a file by its bytes only; the client also refuses a name whose "
      .. "extension claims another type, before sending" },
  ["upload: MP4 video bytes named .m4b"] = { client = "reject", sim = "accept",
    why = "the same: .m4b names audio/mp4 (an MPEG-4 audiobook), the bytes say video/mp4" },
  ["refs: a video with a durationToken issued for another file"] = { client = "accept", sim = "reject",
    why = "only the server knows which token it issued for which URL" },
  ["refs: a video whose durationSeconds is not its length"] = { client = "accept", sim = "reject",
    why = "only the server measured the upload; the client passes the seconds it is given" },
  ["upload: a video whose duration cannot be read"] = { client = "accept", sim = "reject",
    why = "the client judges a file by its first 64 bytes before sending; the length of a video "
      .. "(its duration token) is read from the whole file by the service" },
}

local MODEL = "wan-2-7-video"
local ASSETS = helper.ROOT .. "/examples/assets"

-- `n` as 4 big-endian bytes (no string.pack on 5.1, 5.2 and LuaJIT)
local function be32(n)
  local floor = math.floor
  return string.char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

-- a minimal ISO-BMFF file of `brand`: ftyp, then a moov with an mvhd
local function bmff(brand)
  local function box(kind, payload) return be32(8 + #payload) .. kind .. payload end
  local mvhd = box("mvhd", "\0\0\0\0" .. ("\0"):rep(8) .. be32(1000) .. be32(2000)
    .. ("\0"):rep(80))
  return box("ftyp", brand .. "\0\0\0\0isom") .. box("moov", mvhd)
end

-- a minimal WebM: the EBML header, then Segment / Info / Duration (2000 ms)
local WEBM = "\26\69\223\163\135\66\130\132webm"
  .. "\24\83\128\103\140" .. "\21\73\169\102\135" .. "\68\137\132" .. "\68\250\0\0"   -- 2000.0, a big-endian float

describe("client and rivya-sim, side by side", function()
  local sim, client, dir
  local outcomes = {}     -- case -> { client =, sim = }, for the INTENDED check
  local uploaded = {}     -- name -> the file table client:upload returned

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.2", "--credits", "100000000" } }
    client = helper.client(sim, { max_retries = 0 })
    dir = helper.tmpdir()
  end)

  teardown(function()
    client:close()
    sim:stop()
    helper.rmrf(dir)
  end)

  local function verdict(ok) return ok and "accept" or "reject" end

  -- record one case's verdicts and hold them to each other (or to INTENDED)
  local function agree(case, client_v, sim_v, detail)
    outcomes[case] = { client = client_v, sim = sim_v }
    local want = INTENDED[case]
    if want then
      assert.are.same({ client = want.client, sim = want.sim }, { client = client_v, sim = sim_v },
        case .. ": not the intended difference: " .. detail)
    else
      assert.are.equal(client_v, sim_v, case .. ": client " .. client_v .. "s, rivya-sim "
        .. sim_v .. "s: " .. detail)
    end
  end

  ---------------------------------------------------------------- creates

  -- the wire body of `req` (the Idempotency-Key travels as a header) and
  -- its key; `refs` names uploaded files, given to the sim in wire form
  local function wire(req)
    local body, key = {}, req.idempotency_key
    for k, v in pairs(req) do if k ~= "idempotency_key" then body[k] = v end end
    return body, key
  end

  local function sim_create(req)
    local body, key = wire(req)
    local headers = key and { ["Idempotency-Key"] = key } or nil
    local status, json, _, raw = sim:api("POST", "/api/v1/generations", cjson.encode(body),
      { headers = headers })
    return status == 201, ("%d %s"):format(status, raw:sub(1, 300)), json
  end

  -- every verdict of the client on `req`; `snapshot` when rivya ships the model
  local function client_verdicts(req)
    local v = {}
    local known = false
    for _, m in ipairs(rivya.models()) do if m.id == req.model then known = true end end
    if known then
      local body, err = rivya.validate(req)
      v.offline = { ok = body ~= nil, err = err }
    end
    local body, err = client:validate(req)
    v.live = { ok = body ~= nil, err = err }
    return v
  end

  -- run one create case through both; `lua` is the client's form (default: `req`)
  local function create_case(case, req, lua_req)
    lua_req = lua_req or req
    local v = client_verdicts(lua_req)
    if v.offline then
      assert.are.equal(v.live.ok, v.offline.ok, case .. ": rivya.validate and client:validate differ: "
        .. tostring(v.live.err or v.offline.err))
    end
    local sim_ok, detail = sim_create(req)
    agree(case, verdict(v.live.ok), verdict(sim_ok), "client: " .. tostring(v.live.err) .. "; sim: " .. detail)
    if v.live.ok then
      -- the body the client itself sends gets the simulator's verdict too
      local task, err = client:create(lua_req)
      if sim_ok or (INTENDED[case] or {}).create == "accept" then
        assert(task, case .. ": client:create of a request both accept: " .. tostring(err))
      else
        assert.is_nil(task, case)
        assert.are.equal(400, err.status, case .. ": " .. tostring(err))
      end
    end
  end

  local function req(prompt, params, extra)
    local r = { model = MODEL, prompt = prompt or "A paper boat on a rainy street", params = params or {} }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end

  describe("prompts, counted in code points", function()
    local cases = {
      { "a prompt of 5000 two-byte code points", req(("é"):rep(5000)) },
      { "a prompt of 5000 four-byte code points", req(("😀"):rep(5000)) },
      { "a prompt of 5001 ASCII characters", req(("a"):rep(5001)) },
      { "a prompt of 5001 two-byte code points", req(("é"):rep(5001)) },
      { "an empty prompt", req("") },
      { "no prompt", { model = MODEL, params = {} } },
      { "a prompt that is not UTF-8", req("caf\233 au lait") },
      { "a z-image prompt of 1000 code points", { model = "z-image", prompt = ("ж"):rep(1000) } },
      { "a z-image prompt of 1001 code points", { model = "z-image", prompt = ("ж"):rep(1001) } },
      { "a z-image negative_prompt of 500 code points",
        { model = "z-image", prompt = "a fox", params = { negative_prompt = ("é"):rep(500) } } },
      { "a z-image negative_prompt of 501 code points",
        { model = "z-image", prompt = "a fox", params = { negative_prompt = ("é"):rep(501) } } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function() create_case(c[1], c[2]) end)
    end
  end)

  describe("select options and numbers", function()
    local cases = {
      { "every wan-2-7-video param in wire form", req(nil, { resolution = "1080p", duration = "10",
        aspect_ratio = "9:16", negative_prompt = "blur", prompt_extend = "false", watermark = "true",
        audio_setting = "origin", seed = 42 }) },
      { "a select value outside the options", req(nil, { duration = "7" }) },
      { "a select value in another case", req(nil, { resolution = "1080P" }) },
      { "select param given a Lua number", req(nil, { duration = 10 }) },
      { "select param given a Lua boolean", req(nil, { prompt_extend = false }) },
      { "a seed of 0", req(nil, { seed = 0 }) },
      { "a seed of 2147483647", req(nil, { seed = 2147483647 }) },
      { "a seed of -1", req(nil, { seed = -1 }) },
      { "a seed of 2147483648", req(nil, { seed = 2147483648 }) },
      { "a seed of 1.5", req(nil, { seed = 1.5 }) },
      { "a seed of 42.0 (an integral float)", req(nil, { seed = 42.0 }) },
      { "number param given a numeric string", req(nil, { seed = "42" }) },
      { "a seed that is a word", req(nil, { seed = "forty-two" }) },
      { "a seed that is a boolean", req(nil, { seed = true }) },
      { "z-image guidance 3.5 (a fraction allowed)", { model = "z-image", prompt = "a fox",
        params = { guidance = 3.5, steps = 12, size = "768x768" } } },
      { "z-image steps 12.5", { model = "z-image", prompt = "a fox", params = { steps = 12.5 } } },
      { "z-image steps 0", { model = "z-image", prompt = "a fox", params = { steps = 0 } } },
      { "rivya-tts without its required voice", { model = "rivya-tts", prompt = "Hello" } },
      { "rivya-tts with a voice and a boolean", { model = "rivya-tts", prompt = "Hello",
        params = { voice = "ember", normalize = false, speed = 1.25, format = "wav" } } },
      { "rivya-tts speed 2.5", { model = "rivya-tts", prompt = "Hello",
        params = { voice = "ember", speed = 2.5 } } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function() create_case(c[1], c[2]) end)
    end
  end)

  describe("unknown fields and models", function()
    local cases = {
      { "an unknown param", req(nil, { durations = "10" }) },
      { "a param of another model", req(nil, { steps = 12 }) },
      { "an unknown top-level field", req(nil, nil, { seeds = 1 }) },
      { "a top-level files field", req(nil, nil, { files = { "file_x" } }) },
      { "params that is not an object", req(nil, nil, { params = "duration=10" }) },
      { "an unknown model", { model = "wan-2-7", prompt = "a boat" } },
      { "a coming_soon model (veo-4-video)", { model = "veo-4-video", prompt = "a boat" } },
      { "a studio_only model (studio-upscale)", { model = "studio-upscale", prompt = "a boat" } },
      { "a chat model (rivya-chat)", { model = "rivya-chat", prompt = "hello" } },
      { "no model", { prompt = "a boat" } },
    }
    for _, c in ipairs(cases) do
      it(c[1], function() create_case(c[1], c[2]) end)
    end
  end)

  describe("Idempotency-Key and client_request_id", function()
    local cases = {
      { "an Idempotency-Key with inner spaces", req(nil, nil, { idempotency_key = "batch 7 line 3" }) },
      { "an Idempotency-Key of 255 characters", req(nil, nil, { idempotency_key = ("k"):rep(255) }) },
      { "an Idempotency-Key of 256 characters", req(nil, nil, { idempotency_key = ("k"):rep(256) }) },
      { "Idempotency-Key with a leading space", req(nil, nil, { idempotency_key = " lead-1" }) },
      { "an Idempotency-Key with a tab inside", req(nil, nil, { idempotency_key = "a\tb" }) },
      { "an Idempotency-Key with a non-ASCII letter", req(nil, nil, { idempotency_key = "clé-1" }) },
      { "an Idempotency-Key with a DEL byte", req(nil, nil, { idempotency_key = "a\127b" }) },
      { "a client_request_id of 128 two-byte code points",
        req(nil, nil, { client_request_id = ("é"):rep(128) }) },
      { "a client_request_id of 129 ASCII characters",
        req(nil, nil, { client_request_id = ("c"):rep(129) }) },
      { "a client_request_id of 129 two-byte code points",
        req(nil, nil, { client_request_id = ("é"):rep(129) }) },
      { "a client_request_id that is not UTF-8", req(nil, nil, { client_request_id = "id-\255" }) },
      { "a client_request_id that is a number", req(nil, nil, { client_request_id = 7 }) },
    }
    for _, c in ipairs(cases) do
      it(c[1], function() create_case(c[1], c[2]) end)
    end
  end)

  ---------------------------------------------------------------- uploads

  -- the media the project ships, media rivya-sim generates (saved by the
  -- client), and heads of every format the two sniffers know
  local function fixture(name, bytes)
    local path = dir .. "/" .. name
    helper.write_file(path, bytes)
    return path
  end

  local function generated(model, params, name)
    local path = dir .. "/" .. name
    local task, err = client:generate({ model = model, prompt = "differential " .. name, params = params },
      { output = path, interval = 0.05, timeout = 60 })
    assert(task, "generate " .. name .. ": " .. tostring(err))
    return path
  end

  -- the simulator's verdict on `path` uploaded with form fields `fields`
  local function sim_upload(path, fields)
    local extra = { "-F", helper.sh_quote("file=@" .. path) }
    for k, v in pairs(fields) do
      extra[#extra + 1] = "--form-string"
      extra[#extra + 1] = helper.sh_quote(k .. "=" .. v)
    end
    local status, json, _, raw = sim:api("POST", "/api/v1/files", nil, { extra = extra })
    return status == 201, json, ("%d %s"):format(status, raw:sub(1, 300))
  end

  local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
  end

  -- one upload case: core.sniff and client:upload against a plain curl upload
  local function upload_case(case, path, opts)
    opts = opts or {}
    local kind, mime = core.sniff(read(path):sub(1, 64))
    local file, err = client:upload(path, { model = opts.model, client_request_id = opts.client_request_id })
    -- a refusal with a status came from the simulator: the client let it through
    local client_ok = file ~= nil or (err.status ~= nil)
    assert(file or not err.status or (INTENDED[case] or {}).sim == "reject",
      case .. ": the client sent what rivya-sim refused: " .. tostring(err))
    local fields = { kind = opts.kind or kind or "image" }
    if opts.model then fields.model = opts.model end
    if opts.client_request_id then fields.client_request_id = opts.client_request_id end
    local sim_ok, json, detail = sim_upload(path, fields)
    agree(case, verdict(client_ok), verdict(sim_ok), "client: " .. tostring(err) .. "; sim: " .. detail)
    if file and sim_ok then
      assert.are.equal(mime, file.mime_type, case .. ": core.sniff vs the simulator's answer")
      assert.are.equal(mime, json.mime_type, case .. ": core.sniff vs the simulator's sniffer")
    end
    return file
  end

  describe("uploads and sniffing", function()
    it("the media the project ships", function()
      uploaded.png = upload_case("upload: examples/assets/first_frame.png", ASSETS .. "/first_frame.png",
        { model = MODEL })
      uploaded.jpg = upload_case("upload: examples/assets/last_frame.jpg", ASSETS .. "/last_frame.jpg",
        { model = MODEL })
      uploaded.mp4 = upload_case("upload: sim/sample.mp4", helper.ROOT .. "/sim/sample.mp4", { model = MODEL })
      assert.is_string(uploaded.mp4.duration_token)
    end)

    it("the media rivya-sim generates, saved by the client", function()
      local png = generated("z-image", { steps = 4 }, "gen.png")
      local mp3 = generated("rivya-tts", { voice = "alloy", format = "mp3" }, "gen.mp3")
      local wav = generated("rivya-tts", { voice = "verse", format = "wav" }, "gen.wav")
      local mp4 = generated(MODEL, { duration = "5" }, "gen.mp4")
      upload_case("upload: a generated PNG for z-image", png, { model = "z-image" })
      uploaded.mp3 = upload_case("upload: a generated MP3", mp3)
      upload_case("upload: a generated WAV", wav)
      upload_case("upload: a generated MP4 for wan-2-7-video", mp4, { model = MODEL })
      upload_case("upload: a generated MP3 for rivya-tts (no reference media)", mp3, { model = "rivya-tts" })
      upload_case("upload: a generated MP4 for z-image (images only)", mp4, { model = "z-image" })
    end)

    it("every signature both sniffers know, and names that lie", function()
      local cases = {
        { "upload: an M4B audiobook named .m4b", "book.m4b", bmff("M4B ") },
        { "upload: an M4A named .m4a", "song.m4a", bmff("M4A ") },
        { "upload: an M4B named .m4a", "book.m4a", bmff("M4B ") },
        { "upload: MP4 video bytes named .m4b", "film.m4b", bmff("isom") },
        { "upload: QuickTime named .mov", "clip.mov", bmff("qt  ") },
        { "upload: QuickTime for wan-2-7-video", "clip2.mov", bmff("qt  "), { model = MODEL } },
        { "upload: WebM named .webm", "clip.webm", WEBM },
        { "upload: WebM for wan-2-7-video (MP4 and QuickTime only)", "clip2.webm", WEBM, { model = MODEL } },
        { "upload: a video whose duration cannot be read", "nomoov.mp4", "\0\0\0\24ftypisom\0\0\0\0isom" },
        { "upload: WebP named .webp", "still.webp", "RIFF\20\0\0\0WEBPVP8 " .. ("\0"):rep(20) },
        { "upload: WAV named .wav", "tone.wav", "RIFF\36\0\0\0WAVEfmt " .. ("\0"):rep(28) },
        { "upload: Ogg named .ogg", "tone.ogg", "OggS\0\2" .. ("\0"):rep(40) },
        { "upload: ADTS AAC named .aac", "tone.aac", "\255\241\80\128" .. ("\0"):rep(20) },
        { "upload: an MPEG frame named .mp3", "tone.mp3", "\255\251\144\100" .. ("\0"):rep(40) },
        { "upload: ID3 named .mp3", "tag.mp3", "ID3\3\0\0\0\0\0\0" .. ("\0"):rep(20) },
        { "upload: JPEG bytes named .png", "photo.png", read(ASSETS .. "/last_frame.jpg") },
        { "upload: PNG bytes without an extension", "frame", read(ASSETS .. "/first_frame.png") },
        { "upload: bytes of no known format", "notes.txt", "just some text, not media" },
        { "upload: an empty file", "empty.png", "" },
        { "upload: a 2-byte file", "tiny.jpg", "\255\216" },
      }
      for _, c in ipairs(cases) do
        upload_case(c[1], fixture(c[2], c[3]), c[4])
      end
    end)

    it("heads one byte short of a signature, and the shortest that match", function()
      local cases = {
        { "upload: 2 bytes of a JPEG signature", "a.jpg", "\255\216" },
        { "upload: the 3-byte JPEG signature alone", "b.jpg", "\255\216\255" },
        { "upload: 7 bytes of the PNG signature", "a.png", "\137PNG\r\n\26" },
        { "upload: RIFF....WEB (11 bytes)", "a.webp", "RIFF\0\0\0\0WEB" },
        { "upload: an ftyp box cut inside its brand", "a.m4a", "\0\0\0\24ftypM4A" },
        { "upload: a RIFF of another form (AVI)", "a.avi", "RIFF\0\0\0\0AVI LIST" .. ("\0"):rep(8) },
        { "upload: 3 bytes of the WebM signature", "a.webm", "\26\69\223" },
        { "upload: ID (2 bytes of ID3)", "a.mp3", "ID" },
        { "upload: an MPEG sync byte alone", "b.mp3", "\255" },
        { "upload: FF E0 (the shortest MPEG frame sync)", "c.mp3", "\255\224" },
        { "upload: FF F6 (ADTS sync, layer bits 11)", "d.mp3", "\255\246" },
        { "upload: FF F8 (ADTS, MPEG-2)", "e.aac", "\255\248" },
        { "upload: Ogg (3 bytes of OggS)", "a.ogg", "Ogg" },
        { "upload: a signature after 64 bytes of nothing", "late.png", ("\0"):rep(64) .. "\137PNG\r\n\26\n" },
      }
      for _, c in ipairs(cases) do
        upload_case(c[1], fixture(c[2], c[3]))
      end
    end)

    it("size limits: the defaults and a model's", function()
      local png = read(ASSETS .. "/first_frame.png")
      local big = fixture("big.png", png .. ("\0"):rep(10000001 - #png))
      upload_case("upload: an image of 10,000,001 bytes without a model", big)
      upload_case("upload: an image of 10,000,001 bytes for wan-2-7-video (20 MB)", big, { model = MODEL })
      upload_case("upload: an image of 10,000,001 bytes for z-image (10 MB)", big, { model = "z-image" })
    end)

    it("client_request_id in code points, as for creates", function()
      local png = ASSETS .. "/first_frame.png"
      upload_case("upload: a client_request_id of 128 two-byte code points", png,
        { client_request_id = ("é"):rep(128) })
      upload_case("upload: a client_request_id of 129 ASCII characters", png,
        { client_request_id = ("c"):rep(129) })
      upload_case("upload: a client_request_id of 129 two-byte code points", png,
        { client_request_id = ("é"):rep(129) })
      upload_case("upload: a client_request_id that is not UTF-8", png, { client_request_id = "id-\255" })
    end)
  end)

  ---------------------------------------------------------------- references

  describe("reference media: modes and counts", function()
    -- names of uploaded files -> the client's file tables and the wire items
    local function refs_case(case, model, names, drop_token)
      local lua_items, wire_items = {}, {}
      for i, name in ipairs(names) do
        local f = assert(uploaded[name], "no upload " .. name)
        local copy = {}
        for k, v in pairs(f) do copy[k] = v end
        if drop_token then copy.duration_token, copy.durationToken = nil, nil end
        lua_items[i] = copy
        wire_items[i] = { url = f.url, kind = f.kind, durationToken = not drop_token and f.duration_token or nil }
      end
      local prompt = "references " .. case
      create_case(case, { model = model, prompt = prompt, params = { referenceMediaItems = wire_items } },
        { model = model, prompt = prompt, params = { referenceMediaItems = lua_items } })
    end

    it("wan-2-7-video: image-to-video, video editing, and what fits no mode", function()
      assert(uploaded.png and uploaded.mp4 and uploaded.mp3, "the uploads above ran first")
      refs_case("refs: one image (image-to-video)", MODEL, { "png" })
      refs_case("refs: two images (image-to-video)", MODEL, { "png", "jpg" })
      refs_case("refs: three images (max_items 2)", MODEL, { "png", "jpg", "png" })
      refs_case("refs: one video (video-editing)", MODEL, { "mp4" })
      refs_case("refs: a video and an image (video-editing)", MODEL, { "mp4", "png" })
      refs_case("refs: two videos", MODEL, { "mp4", "mp4" })
      refs_case("refs: a video without its durationToken", MODEL, { "mp4" }, true)
      refs_case("refs: an audio file (not a kind of the model)", MODEL, { "mp3" })
    end)

    -- items written out: the client's file table and the wire item
    local function items_case(case, lua_items, wire_items)
      local prompt = "items " .. case
      create_case(case, { model = MODEL, prompt = prompt, params = { referenceMediaItems = wire_items } },
        { model = MODEL, prompt = prompt, params = { referenceMediaItems = lua_items } })
    end

    it("wan-2-7-video: the fields of an item", function()
      local png, mp4, jpg = uploaded.png, uploaded.mp4, uploaded.jpg
      items_case("refs: an item with an accepted mimeType",
        { { url = png.url, kind = "image", mime_type = "image/png", name = "first.png" } },
        { { url = png.url, kind = "image", mimeType = "image/png", name = "first.png" } })
      items_case("refs: an item whose mimeType the model does not take",
        { { url = png.url, kind = "image", mime_type = "image/gif" } },
        { { url = png.url, kind = "image", mimeType = "image/gif" } })
      items_case("refs: an item whose url is not http(s)",
        { { url = "ftp://127.0.0.1/first.png", kind = "image" } },
        { { url = "ftp://127.0.0.1/first.png", kind = "image" } })
      items_case("refs: an item without a kind", { { url = png.url } }, { { url = png.url } })
      items_case("refs: an item whose name is a number",
        { { url = jpg.url, kind = "image", name = 5 } }, { { url = jpg.url, kind = "image", name = 5 } })
      items_case("refs: an item with negative durationSeconds",
        { { url = png.url, kind = "image", duration_seconds = -1 } },
        { { url = png.url, kind = "image", durationSeconds = -1 } })
      items_case("refs: a video with its own durationToken and durationSeconds",
        { { url = mp4.url, kind = "video", duration_token = mp4.duration_token,
            duration_seconds = mp4.duration_seconds } },
        { { url = mp4.url, kind = "video", durationToken = mp4.duration_token,
            durationSeconds = mp4.duration_seconds } })
      items_case("refs: a video with a durationToken issued for another file",
        { { url = png.url:gsub("%.png$", ".mp4"), kind = "video", duration_token = mp4.duration_token } },
        { { url = png.url:gsub("%.png$", ".mp4"), kind = "video", durationToken = mp4.duration_token } })
      items_case("refs: a video whose durationSeconds is not its length",
        { { url = mp4.url, kind = "video", duration_token = mp4.duration_token,
            duration_seconds = mp4.duration_seconds + 1 } },
        { { url = mp4.url, kind = "video", durationToken = mp4.duration_token,
            durationSeconds = mp4.duration_seconds + 1 } })
    end)

    it("z-image and rivya-tts", function()
      refs_case("refs: z-image, one image (image-to-image)", "z-image", { "png" })
      refs_case("refs: z-image, two images", "z-image", { "png", "jpg" })
      refs_case("refs: z-image, a video", "z-image", { "mp4" })
      refs_case("refs: rivya-tts takes none", "rivya-tts", { "png" })
    end)
  end)

  it("lists only differences that happen, each one in docs/api-contract.md", function()
    local doc = read(helper.ROOT .. "/docs/api-contract.md")
    for case, want in pairs(INTENDED) do
      assert.are.same({ client = want.client, sim = want.sim }, outcomes[case],
        case .. ": an intended difference no case showed")
      assert.is_truthy(doc:find(case, 1, true), case .. ": not listed in docs/api-contract.md")
    end
  end)
end)
