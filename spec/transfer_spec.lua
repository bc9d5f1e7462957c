-- Hostile answers and swapped files (issue 12, items 1-6 and 12): what a
-- download may replace and take for the file, how much and how slowly it may
-- come, where it may come from; uploads streamed from the descriptor opened
-- once. Against rivya-sim, or spec/rawserver.lua for answers the simulator
-- does not script (binary bodies, a drip, gzip sent unasked, giant headers).
local helper = require "helper"
local rivya = require "rivya"
local compat = require "rivya.compat"

local SAMPLE = helper.ROOT .. "/sim/sample.mp4"
local sh = helper.sh_quote
local execute = compat.execute

-- n as k bytes, big-endian (string.pack on every Lua)
local function be(n, k)
  local t = {}
  for i = k, 1, -1 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end
local function be32(n) return be(n, 4) end
local function le32(n) return be(n, 4):reverse() end
local function le16(n) return be(n, 2):reverse() end

-- Minimal files of each format a download is checked as: { valid, broken }.
local function media()
  local sample = helper.read_file(SAMPLE)
  local png_head = "\137PNG\r\n\26\n" .. be32(13) .. "IHDR" .. be32(1) .. be32(1) .. "\8\0\0\0\0"
    .. "\0\0\0\0"
  local iend = be32(0) .. "IEND\174\66\96\130"
  local jpeg = "\255\216\255\224" .. be(16, 2) .. "JFIF\0\1\1\0\0\1\0\1\0\0"
  local fmt = "fmt " .. le32(16) .. le16(1) .. le16(1) .. le32(8000) .. le32(8000) .. le16(1) .. le16(8)
  local data = "data" .. le32(8) .. ("\128"):rep(8)
  local function wav(extra) return "RIFF" .. le32(4 + #fmt + #data + extra) .. "WAVE" .. fmt .. data end
  local function ogg(flags)
    return "OggS\0" .. string.char(flags) .. ("\0"):rep(8) .. le32(1) .. le32(0) .. le32(0) .. "\1\10"
      .. ("v"):rep(10)
  end
  local ebml = "\26\69\223\163\135\66\130\132webm"
  local function webm(extra) return ebml .. "\24\83\128\103" .. string.char(128 + 20 + extra) .. ("\0"):rep(20) end
  local frame = "\255\251\144\0" .. ("\0"):rep(413)   -- MPEG-1 layer III, 128 kb/s, 44.1 kHz: 417 bytes
  local id3 = "ID3\4\0\0\0\0\0\0"
  local adts = "\255\241\80\128\2\63\252" .. ("a"):rep(10)   -- one 17-byte frame
  return {
    mp4 = { sample, sample:sub(1, 32) .. "<html><body><h1>Welcome to nginx</h1></body></html>" },
    mp4_cut = { sample, sample:sub(1, #sample - 100) },
    png = { png_head .. iend, png_head },
    jpeg = { jpeg .. "\255\217", jpeg },
    wav = { wav(0), wav(100) },
    ogg = { ogg(6), ogg(2) },
    webm = { webm(0), webm(30) },
    mp3 = { id3 .. frame .. frame, id3 .. frame .. frame:sub(1, 200) },
    aac = { adts .. adts, adts .. adts:sub(1, 12) },
  }
end

describe("downloads", function()
  local sim, dir, task

  local function new_client(opts)
    return helper.client(sim, { retry_cap = 0.02, max_retries = 0 }, opts)
  end

  -- a task whose result is served by `server` at `path`
  local function task_at(server, path)
    return { id = "task_raw", status = "succeeded", result = { primary_url = server.url .. path } }
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05" } }
    dir = helper.tmpdir()
    local c = new_client()
    task = assert(c:generate{ model = "wan-2-7-video", prompt = "a lighthouse", params = {} })
    c:close()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:control("DELETE", "faults")
    execute("rm -rf " .. sh(dir) .. "/* " .. sh(dir) .. "/.[!.]*")
  end)

  local function cdn_requests()
    local n = 0
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if r.listener == "cdn" then n = n + 1 end
    end
    return n
  end

  describe("replace only a regular file or nothing", function()
    it("refuses a FIFO at the destination with an io error before any request, leaving it a FIFO", function()
      local c = new_client()
      local path = dir .. "/pipe.mp4"
      assert(execute("mkfifo " .. sh(path)))
      local before = cdn_requests()
      local ok, err = c:download(task, path)
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
      assert.truthy(err.message:find("not a regular file", 1, true), err.message)
      assert.are.equal(before, cdn_requests())
      assert.is_true(execute("test -p " .. sh(path)))
      assert.are.same({ "pipe.mp4" }, helper.ls(dir))
      c:close()
    end)

    it("refuses a link to a device node (/dev/null) and leaves the link in place", function()
      local c = new_client()
      local path = dir .. "/null.mp4"
      assert(execute("ln -s /dev/null " .. sh(path)))
      local ok, err = c:download(task, path)
      assert.is_nil(ok)
      assert.are.equal("io", err.code)
      assert.is_true(execute("test -L " .. sh(path)))
      assert.is_true(execute("test -c /dev/null"))
      c:close()
    end)

    it("still replaces a regular file, and creates a missing one", function()
      local c = new_client()
      helper.write_file(dir .. "/old.mp4", "old bytes")
      assert.are.equal(dir .. "/old.mp4", c:download(task, dir .. "/old.mp4"))
      assert.are.equal(helper.read_file(SAMPLE), helper.read_file(dir .. "/old.mp4"))
      assert.are.equal(dir .. "/new.mp4", c:download(task, dir .. "/new.mp4"))
      c:close()
    end)
  end)

  describe("take only a whole file", function()
    local files, server, names

    setup(function()
      files = media()
      local routes = {}
      names = {}
      for name, pair in pairs(files) do
        for i, bytes in ipairs(pair) do
          local p = ("%s-%s-%d"):format(os.tmpname(), name, i)
          helper.write_file(p, bytes)
          routes["/" .. name .. "/" .. i] = p
          names[#names + 1] = p
        end
      end
      -- close-delimited: libcurl cannot tell a cut body, only the structure can
      server = helper.rawserver{ routes = routes, no_length = true }
    end)

    teardown(function()
      server.stop()
      for _, p in ipairs(names) do os.remove(p) end
    end)

    for _, format in ipairs({ "mp4", "mp4_cut", "png", "jpeg", "wav", "ogg", "webm", "mp3", "aac" }) do
      it(("saves a whole %s and keeps the old file when the body does not hold together"):format(format), function()
        local c = new_client()
        local path = dir .. "/result.bin"
        assert.are.equal(path, c:download(task_at(server, "/" .. format .. "/1"), path))
        assert.are.equal(files[format][1], helper.read_file(path))
        helper.write_file(path, "the good old file")
        local ok, err = c:download(task_at(server, "/" .. format .. "/2"), path)
        assert.is_nil(ok)
        assert.are.equal("bad_response", err.code, tostring(err))
        assert.are.equal("the good old file", helper.read_file(path))
        assert.are.same({ "result.bin" }, helper.ls(dir))
        c:close()
      end)
    end

    for _, case in ipairs({ { status = 206, reason = "Partial Content" },
      { status = 203, reason = "Non-Authoritative" } }) do
      it(("takes only 200: a %d answer is bad_response and the old file stays"):format(case.status), function()
        local sample = helper.read_file(SAMPLE)
        local partial = case.status == 206
        local s = helper.rawserver{ status = case.status, reason = case.reason,
          body = partial and sample:sub(1, 1000) or sample,
          headers = partial and { ("Content-Range: bytes 0-999/%d"):format(#sample) } or nil }
        local c = new_client{ max_retries = 1 }
        local path = dir .. "/keep.mp4"
        helper.write_file(path, "the good old file")
        local ok, err = c:download(task_at(s, "/v.mp4"), path)
        s.stop()
        c:close()
        assert.is_nil(ok)
        assert.are.equal("bad_response", err.code, tostring(err))
        assert.truthy(err.message:find(tostring(case.status), 1, true), err.message)
        assert.are.equal("the good old file", helper.read_file(path))
        assert.are.same({ "keep.mp4" }, helper.ls(dir))
      end)
    end
  end)

  describe("limits", function()
    it("fails a drip that never stalls (a byte every 0.2 s) as a timeout, under the minimum rate", function()
      local sample = helper.read_file(SAMPLE)
      local s = helper.rawserver{ body = sample, drip = { bytes = 1, every = 0.2 } }
      -- stall_timeout 1 s is never reached (a byte comes every 0.2 s); the
      -- default minimum rate (1024 bytes a second over that window) is
      local c = new_client{ stall_timeout = 1 }
      local ok, err = c:download(task_at(s, "/v.mp4"), dir .. "/drip.mp4", { timeout = 20 })
      s.stop()
      c:close()
      assert.is_nil(ok)
      assert.are.equal("timeout", err.code)
      assert.truthy(err.message:find("minimum rate", 1, true), err.message)
      assert.are.same({}, helper.ls(dir))
    end)

    it("stops a body larger than max_download_bytes, declared or not", function()
      local big = helper.read_file(SAMPLE):sub(1, 32) .. ("\0"):rep(300000)
      for _, no_length in ipairs({ false, true }) do
        local s = helper.rawserver{ body = big, no_length = no_length }
        local c = new_client{ max_download_bytes = 100000, max_retries = 2 }
        local ok, err = c:download(task_at(s, "/v.mp4"), dir .. "/big.mp4")
        local tries = #s.requests()
        s.stop()
        c:close()
        assert.is_nil(ok)
        assert.are.equal("bad_response", err.code)
        assert.truthy(err.message:find("max_download_bytes", 1, true), err.message)
        assert.are.equal(1, tries)   -- not retried: it would only come again
        assert.are.same({}, helper.ls(dir))
      end
    end)

    it("asks for no compression and never inflates a gzip body sent unasked", function()
      local raw = dir .. "/bomb.raw"
      -- an MP4 head, then 20 MB of zeros: about 20 KB gzip'd
      helper.write_file(raw, helper.read_file(SAMPLE):sub(1, 32) .. ("\0"):rep(20 * 1000 * 1000))
      assert(execute("gzip -9 -n " .. sh(raw)))
      local s = helper.rawserver{ body_file = raw .. ".gz", headers = { "Content-Encoding: gzip" } }
      os.remove(raw .. ".gz")
      local c = new_client{ max_download_bytes = 1000000 }
      local ok, err = c:download(task_at(s, "/v.mp4"), dir .. "/bomb.mp4")
      local heads = s.requests()
      s.stop()
      c:close()
      assert.is_nil(ok)
      assert.are.equal("bad_response", err.code)
      assert.are.equal(1, #heads)
      assert.is_nil(heads[1]:lower():find("accept-encoding", 1, true), heads[1])
      assert.are.same({}, helper.ls(dir))
    end)

    it("ends generate's download by the call's own deadline", function()
      -- the CDN sends half the video, then nothing for 20 s; the stall
      -- detector (10 s) is not what ends it
      sim:fault{ listener = "cdn", path = "/videos/", action = "stall", delay_ms = 20000 }
      local c = new_client{ stall_timeout = 10 }
      local ok, err = c:generate({ model = "wan-2-7-video", prompt = "a slow lighthouse", params = {} },
        { timeout = 4, output = dir .. "/slow.mp4" })
      c:close()
      assert.is_nil(ok)
      assert.are.equal("timeout", err.code)
      assert.is_nil(err.message:find("stall_timeout", 1, true), err.message)
      assert.are.same({}, helper.ls(dir))
    end)
  end)

  describe("where from", function()
    it("refuses a plain http:// result URL when the API is https, without a connection", function()
      local s = helper.rawserver{ body = helper.read_file(SAMPLE) }
      local c = rivya.new{ api_key = helper.KEY, base_url = "https://127.0.0.1:9", max_retries = 0 }
      local ok, err = c:download(task_at(s, "/v.mp4"), dir .. "/metadata.mp4")
      assert.is_nil(ok)
      assert.are.equal("bad_response", err.code)
      assert.truthy(err.message:find("https only", 1, true), err.message)
      ok, err = c:download(s.url .. "/v.mp4", dir .. "/metadata.mp4")
      assert.is_nil(ok)
      assert.are.equal("validation_failed", err.code)
      local heads = s.requests()
      s.stop()
      c:close()
      assert.are.equal(0, #heads)
      assert.are.same({}, helper.ls(dir))
    end)

    it("takes plain http:// when the API itself is plain http on loopback", function()
      local s = helper.rawserver{ body = helper.read_file(SAMPLE) }
      local c = new_client()
      assert(c:download(task_at(s, "/v.mp4"), dir .. "/local.mp4"))
      s.stop()
      c:close()
    end)
  end)
end)

describe("uploads", function()
  local sim, dir

  local function new_client(opts)
    return helper.client(sim, { retry_cap = 0.02 }, opts)
  end

  local function sha256(path)
    local p = io.popen("sha256sum " .. sh(path))
    local line = p:read("*l")
    p:close()
    return line:match("^(%x+)")
  end

  setup(function()
    sim = helper.start_sim{}
    dir = helper.tmpdir()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
    execute("rm -rf " .. sh(dir) .. "/*")
  end)

  it("streams a retry from the descriptor it opened: a file swapped for a symlink is never read", function()
    local path, other = dir .. "/clip.mp4", dir .. "/other.mp4"
    helper.write_file(path, helper.read_file(SAMPLE))
    local want = sha256(path)
    helper.write_file(other, helper.read_file(SAMPLE) .. ("\0"):rep(5000))
    sim:fault{ path = "/api/v1/files", action = "respond", status = 503, times = 1 }
    local c = new_client()
    local swapped = false
    local file, err = c:upload(path, { on_progress = function()
      if not swapped then
        swapped = true
        os.remove(path)
        assert(execute("ln -s " .. sh(other) .. " " .. sh(path)))
      end
    end })
    c:close()
    assert(file, err and tostring(err))
    assert.is_true(swapped)
    local stored = sim:ledger().files_list
    assert.are.equal(1, #stored)
    assert.are.equal(want, stored[1].sha256)
  end)

  it("never blocks on a FIFO swapped in during the backoff: the retry reads the descriptor", function()
    -- in a child process, so that a hang is a failure rather than a hung suite
    local path = dir .. "/clip.mp4"
    helper.write_file(path, helper.read_file(SAMPLE))
    sim:fault{ path = "/api/v1/files", action = "respond", status = 503, times = 1 }
    local script = dir .. "/fifo.lua"
    helper.write_file(script, ([[
      local rivya = require "rivya"
      local c = rivya.new{ api_key = %q, base_url = %q, retry_base = 0.2, retry_cap = 0.2 }
      local swapped = false
      local f, err = c:upload(%q, { on_progress = function()
        if not swapped then
          swapped = true
          os.remove(%q)
          os.execute("mkfifo " .. %q)
        end
      end })
      io.write(f and ("ok " .. f.size_bytes) or tostring(err))
    ]]):format(helper.KEY, sim.url, path, path, sh(path)))
    local out = helper.popen(("timeout 30 %s %s 2>&1"):format(helper.LUA, sh(script)))
    assert.are.equal("ok " .. #helper.read_file(SAMPLE), out)
    assert.is_true(execute("test -p " .. sh(path)))
  end)

  for _, case in ipairs({
    { what = "grows", change = function(path) local f = io.open(path, "ab") f:write(("\0"):rep(1000)) f:close() end },
    { what = "is touched", change = function(path) execute("touch -d '2001-01-01' " .. sh(path)) end },
  }) do
    it(("fails with io 'changed while uploading' when the file %s during the upload, storing nothing")
        :format(case.what), function()
      -- 40 MB: the change lands after the first step, long before the end
      local path = dir .. "/long.mp4"
      local f = assert(io.open(path, "wb"))
      local sample = helper.read_file(SAMPLE)
      f:write(sample:sub(1, 943), be32(8 + 40 * 1000 * 1000), "mdat")
      local chunk = ("\0"):rep(1000 * 1000)
      for _ = 1, 40 do f:write(chunk) end
      f:close()
      local c = new_client{ max_retries = 0 }
      local changed = false
      local file, err = c:upload(path, { on_progress = function(sent)
        if not changed and sent > 0 then
          changed = true
          case.change(path)
        end
      end })
      c:close()
      assert.is_true(changed)
      assert.is_nil(file)
      assert.are.equal("io", err.code, tostring(err))
      assert.are.equal("file", err.field)
      assert.truthy(err.message:find("long.mp4", 1, true), err.message)
      assert.truthy(err.message:find("changed while uploading", 1, true), err.message)
      assert.are.equal(0, sim:ledger().files)
    end)
  end

  it("quotes a file name ending in a backslash so that the server reads it whole", function()
    local s = helper.rawserver{ status = 201, read_body = true, headers = { "Content-Type: application/json" },
      body = '{"id":"file_1","url":"http://127.0.0.1/x","kind":"video"}' }
    local path = dir .. "/clip\\"
    helper.write_file(path, helper.read_file(SAMPLE))
    local c = rivya.new{ api_key = helper.KEY, base_url = s.url, max_retries = 0 }
    assert(c:upload(path))
    c:close()
    local request = s.requests()[1]
    s.stop()
    -- RFC 9110 quoted-string: a backslash escapes the next character
    local at = assert(request:find('filename="', 1, true), request:sub(1, 2000)) + 10
    local name, i = {}, at
    while true do
      local ch = request:sub(i, i)
      assert(ch ~= "" and ch ~= "\n", "unterminated filename: " .. request:sub(at - 10, at + 40))
      if ch == '"' then break end
      if ch == "\\" then i = i + 1 ch = request:sub(i, i) end
      name[#name + 1] = ch
      i = i + 1
    end
    assert.are.equal("clip\\", table.concat(name))
  end)
end)

describe("answers", function()
  it("names a 200 KB response header as what it is, not 'Out of memory'", function()
    local s = helper.rawserver{ headers = { "X-Huge: " .. ("h"):rep(200 * 1024) }, body = "{}" }
    local c = rivya.new{ api_key = helper.KEY, base_url = s.url, max_retries = 0 }
    local ok, err = c:models()
    c:close()
    s.stop()
    assert.is_nil(ok)
    assert.are.equal("bad_response", err.code)
    assert.truthy(err.message:find("headers are too large", 1, true), err.message)
    assert.is_nil(err.message:find("memory", 1, true))
  end)
end)
