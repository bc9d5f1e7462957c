-- The Files API end to end: streaming uploads checked before a byte is sent,
-- reference media (auto-upload, both modes), against a real rivya-sim.
local helper = require "helper"
local rivya = require "rivya"
local compat = require "rivya.compat"

local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR"
local JPEG = "\255\216\255\224\0\16JFIF\0"
local WEBP = "RIFF\0\0\0\0WEBPVP8 "
local MP3 = "ID3\3\0\0\0\0\0\0"

local function sha256(path)
  local p = io.popen("sha256sum " .. helper.sh_quote(path))
  local sum = p:read("*a"):match("^(%x+)")
  p:close()
  return sum
end

describe("files API", function()
  local sim, client, dir, video

  local function requests()
    return sim:control("GET", "requests").data
  end

  local function fixture(name, head, size)
    local path = dir .. "/" .. name
    local body = head .. string.rep("\0", math.max(0, (size or 256) - #head))
    helper.write_file(path, body)
    return path
  end

  -- a file of `size` bytes that starts with `head`, without writing them all
  local function sparse(name, head, size)
    local path = dir .. "/" .. name
    helper.write_file(path, head)
    assert(compat.execute(("truncate -s %d %s"):format(size, helper.sh_quote(path))))
    return path
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.2", "--credits", "100000" } }
    client = helper.client(sim)
    dir = helper.tmpdir()
    video = helper.ROOT .. "/sim/sample.mp4"
  end)

  teardown(function()
    client:close()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
  end)

  describe("uploads", function()
    it("streams a video and the simulator stores exactly its bytes", function()
      local file = assert(client:upload(video, { model = "wan-2-7-video" }))
      assert.matches("^file_", file.id)
      assert.are.equal("video", file.kind)
      assert.are.equal("video/mp4", file.mime_type)
      assert.are.equal("sample.mp4", file.name)
      assert.are.equal(3732, file.size_bytes)
      assert.are.equal(2, file.duration_seconds)
      assert.matches("^dt_", file.duration_token)
      local stored = sim:ledger().files_list[1]
      assert.are.equal(sha256(video), stored.sha256)
    end)

    it("uploads PNG, JPEG and WebP images detected from their bytes", function()
      for name, head in pairs{ ["a.png"] = PNG, ["b.jpg"] = JPEG, ["c.webp"] = WEBP } do
        local path = fixture(name, head, 4096)
        local file = assert(client:upload(path))
        assert.are.equal("image", file.kind)
        local stored
        for _, f in ipairs(sim:ledger().files_list) do if f.id == file.id then stored = f end end
        assert.are.equal(sha256(path), stored.sha256)
      end
      assert.are.equal(3, sim:ledger().files)
    end)

    it("uploads from a Lua string", function()
      local data = PNG .. string.rep("z", 1000)
      local file = assert(client:upload({ data = data, name = "mem.png" }))
      assert.are.equal("image/png", file.mime_type)
      assert.are.equal(#data, file.size_bytes)
    end)

    it("reports progress in bytes, monotonically, ending at the file's size", function()
      local path = fixture("big.png", PNG, 3 * 1000 * 1000)
      local calls = {}
      assert(client:upload(path, { on_progress = function(sent, total) calls[#calls + 1] = { sent, total } end }))
      assert.is_true(#calls >= 1)
      for i, c in ipairs(calls) do
        assert.are.equal(3 * 1000 * 1000, c[2])
        if i > 1 then assert.is_true(c[1] >= calls[i - 1][1]) end
      end
      assert.are.equal(3 * 1000 * 1000, calls[#calls][1])
    end)

    it("sends kind, model and client_request_id as multipart fields", function()
      assert(client:upload(video, { model = "wan-2-7-video", client_request_id = "cr-1" }))
      local r = requests()[1]
      assert.are.equal("POST", r.method)
      assert.truthy(r.content_type:find("multipart/form-data", 1, true))
    end)

    it("counts client_request_id in code points, as creates do, and needs UTF-8", function()
      assert(client:upload(video, { client_request_id = ("é"):rep(128) }))
      local before = #requests()
      for _, id in ipairs{ ("é"):rep(129), "caf\233" } do
        local file, err = client:upload(video, { client_request_id = id })
        assert.is_nil(file)
        assert.are.equal("validation_failed", err.code)
        assert.are.equal("client_request_id", err.field)
      end
      assert.are.equal(before, #requests())
    end)

    it("reads either spelling of the file object's fields", function()
      sim:fault{ method = "POST", path = "/api/v1/files", action = "respond", status = 201,
        body = '{"file_id":"file_x","url":"http://127.0.0.1:1/f.mp4","kind":"video","name":"f.mp4",'
          .. '"mimeType":"video/mp4","size_bytes":3732,"durationToken":"dt_camel","durationSeconds":2}' }
      local file = assert(client:upload(video))
      assert.are.equal("file_x", file.id)
      assert.are.equal("video/mp4", file.mime_type)
      assert.are.equal("dt_camel", file.duration_token)
      assert.are.equal(2, file.duration_seconds)
    end)
  end)

  describe("rejections before a byte is sent", function()
    local function rejects(source, opts, field, words)
      local file, err = client:upload(source, opts)
      assert.is_nil(file)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal(field, err.field)
      for _, w in ipairs(words) do
        assert.truthy(err.message:find(w, 1, true), ("%q not in %q"):format(w, err.message))
      end
      assert.are.equal(0, #requests())
    end

    it("rejects a missing file", function()
      rejects(dir .. "/nope.png", nil, "file", { "nope.png" })
    end)

    it("rejects a directory", function()
      rejects(dir, nil, "file", { "directory" })
    end)

    it("rejects a FIFO without blocking on it", function()
      local fifo = dir .. "/pipe.png"
      assert(compat.execute("mkfifo " .. helper.sh_quote(fifo)))
      rejects(fifo, nil, "file", { "fifo" })
      os.remove(fifo)
    end)

    it("rejects a device", function()
      rejects("/dev/null", nil, "file", { "device" })
    end)

    it("rejects an empty file", function()
      rejects(fixture("empty.png", "", 0), nil, "file", { "empty" })
    end)

    it("rejects an extension that lies, naming both types", function()
      rejects(fixture("photo.png", JPEG), nil, "file", { "image/png", "image/jpeg" })
    end)

    it("rejects bytes of no supported type", function()
      rejects(fixture("notes.png", "hello, world"), nil, "file", { "signature" })
    end)

    it("rejects a kind that does not match the bytes", function()
      rejects(fixture("pic.png", PNG), { kind = "video" }, "kind", { "video", "image" })
    end)

    it("enforces the model's image limit of 20 MB on both sides", function()
      assert(client:upload(sparse("ok.png", PNG, 20000000), { model = "wan-2-7-video" }))
      sim:reset()
      rejects(sparse("big.png", PNG, 20000001), { model = "wan-2-7-video" }, "file", { "20000000" })
    end)

    it("enforces the default image limit of 10 MB without a model", function()
      rejects(sparse("big10.png", PNG, 10000001), nil, "file", { "10000000" })
    end)

    it("enforces the model's video limit of 95 MB", function()
      local head = helper.read_file(video):sub(1, 64)
      rejects(sparse("huge.mp4", head, 95000001), { model = "wan-2-7-video" }, "file", { "95000000" })
    end)

    it("rejects audio for a model that takes none", function()
      rejects(fixture("song.mp3", MP3, 4096), { model = "wan-2-7-video" }, "file", { "audio" })
    end)

    it("raises on misuse: an upload source that is neither a path nor {data, name}", function()
      assert.has_error(function() client:upload(42) end)
      assert.has_error(function() client:upload({ data = "x" }) end)
      assert.has_error(function() client:upload(video, { kind = "hologram" }) end)
    end)
  end)

  describe("reference media", function()
    local function req(items, params)
      params = params or {}
      params.referenceMediaItems = items
      return { model = "wan-2-7-video", prompt = "a cat turns its head", params = params }
    end

    it("uploads local paths automatically with the target model, then creates", function()
      local cat = fixture("cat.png", PNG, 2048)
      local task = assert(client:generate(req({ cat })))
      assert.are.equal("succeeded", task.status)
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.files)
      assert.are.equal(1, ledger.tasks_created)
    end)

    it("converts uploaded file tables to the camelCase reference form", function()
      local file = assert(client:upload(video, { model = "wan-2-7-video" }))
      local body = assert(rivya.validate(req({ file })))
      assert.are.same({ url = file.url, kind = "video", name = "sample.mp4", mimeType = "video/mp4",
        durationSeconds = 2, durationToken = file.duration_token }, body.params.referenceMediaItems[1])
    end)

    it("runs image-to-video with two images and reports aspect_ratio as ignored", function()
      local a, b = fixture("a.png", PNG), fixture("b.jpg", JPEG)
      local task = assert(client:generate(req({ a, b }, { aspect_ratio = "9:16" })))
      assert.are.equal("succeeded", task.status)
      assert.truthy(table.concat(task.warnings, "\n"):find("aspect_ratio", 1, true))
    end)

    it("runs video editing with a video and an image, clamping 15 s to 10 s", function()
      local task = assert(client:generate(req({ video, fixture("frame.png", PNG) }, { duration = 15 })))
      assert.are.equal("succeeded", task.status)
      assert.truthy(table.concat(task.warnings, "\n"):find("clamped to 10", 1, true))
      assert.are.equal(2, sim:ledger().files)
    end)

    it("rejects three references before uploading anything", function()
      local a = fixture("x.png", PNG)
      local task, err = client:create(req({ a, a, a }))
      assert.is_nil(task)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal(0, #requests())
    end)

    it("rejects two videos before uploading anything", function()
      local task, err = client:create(req({ video, video }))
      assert.is_nil(task)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal(0, #requests())
    end)

    it("rejects a video reference without its duration token", function()
      local task, err = client:create(req({ { url = "https://cdn.example/v.mp4", kind = "video" } }))
      assert.is_nil(task)
      assert.are.equal("validation_failed", err.code)
      assert.truthy(err.field:find("durationToken", 1, true))
    end)

    it("names the reference when a local path cannot be uploaded", function()
      local task, err = client:create(req({ dir .. "/missing.png" }))
      assert.is_nil(task)
      assert.are.equal("params.referenceMediaItems[1]", err.field)
      assert.are.equal(0, #requests())
    end)
  end)
end)
