-- Regressions found by `make test-asan` and the fuzzers (fuzz/), each
-- through the public functions with the input that broke them. The inputs
-- also sit in the fuzzers' corpora (fuzz/corpus/<target>/regress_*), which
-- `make fuzz-smoke` replays on every CI run.
local helper = require "helper"
local rivya = require "rivya"
local errors = require "rivya.errors"

describe("regressions", function()
  describe("tostring of an error", function()
    -- error.c pushed the code and the message onto the stack while its
    -- luaL_Buffer was open; a code past the buffer's first 1 KiB block made
    -- the buffer grow under them: a heap use-after-free (ASan), garbage in
    -- the line without it. Found by json_fuzz (fuzz/corpus/json/regress_long_code).
    it("prints a code longer than a kilobyte whole", function()
      local code = ("c"):rep(2000)
      assert.are.equal("rivya: " .. code .. ": m", tostring(errors.new(code, "m")))
    end)

    it("prints a message longer than a kilobyte after a long code whole", function()
      local code, message = ("c"):rep(1500), ("m"):rep(3000)
      assert.are.equal("rivya: " .. code .. ": " .. message .. " (field=f)",
        tostring(errors.new(code, message, { field = "f" })))
    end)

    it("prints an API error body with a code over a kilobyte whole", function()
      local code = ("x"):rep(1100)
      local err = errors.from_response(400, {}, ('{"error":{"code":"%s","message":"no"}}'):format(code))
      assert.are.equal(code, err.code)
      assert.are.equal("rivya: " .. code .. ": no (status=400)", tostring(err))
    end)

    -- json_fuzz: a message or header from the server with a line break made
    -- tostring(err) two lines, against the README's promise of one.
    it("escapes line breaks and control characters from the server", function()
      local err = errors.from_response(400, {}, '{"error":{"code":"bad","message":"a\\nb\\r\\nc\\u0000d\\te"}}')
      assert.are.equal("a\nb\r\nc\0d\te", err.message)
      assert.are.equal("rivya: bad: a\\nb\\r\\nc\\x00d\\te (status=400)", tostring(err))
    end)

    -- json_fuzz: {"error":{"code":""}} made err.code "" and tostring(err)
    -- "rivya: : " (fuzz/corpus/json/regress_empty_code).
    it("gives an API error body with an empty code and message the code of its status", function()
      local err = errors.from_response(400, {}, '{"error":{"code":"","message":""}}')
      assert.are.equal("http_error", err.code)
      assert.are.equal("rivya: http_error: HTTP 400 without an API error body (no content type) (status=400)",
        tostring(err))
      err = errors.from_response(404, {}, '{"error":{"code":"","message":"gone"}}')
      assert.are.equal("not_found", err.code)
      assert.are.equal("gone", err.message)
    end)

    it("escapes a line break in a request id taken from a header", function()
      local err = errors.from_response(502, { ["x-request-id"] = "req_1\rX-Evil: 1" }, "")
      assert.are.equal("rivya: server_error: HTTP 502 without an API error body (no content type)"
        .. " (status=502, request_id=req_1\\rX-Evil: 1)", tostring(err))
    end)
  end)

  describe("the file sniffer", function()
    it("reads every ADTS header (FF F0, F1, F8, F9) as AAC, as rivya-sim does", function()
      local core = require "rivya.core"
      for _, second in ipairs{ 0xF0, 0xF1, 0xF8, 0xF9 } do
        local kind, mime = core.sniff(string.char(0xFF, second) .. "\0\0\0\0")
        assert.are.equal("audio", kind)
        assert.are.equal("audio/aac", mime)
      end
      assert.are.equal("audio/mpeg", select(2, core.sniff("\255\251\144\0")))
    end)
  end)

  describe("against rivya-sim", function()
    local sim, client
    setup(function()
      sim = helper.start_sim()
      client = rivya.new{ api_key = helper.KEY, base_url = sim.url, max_retries = 0 }
    end)
    teardown(function()
      client:close()
      sim:stop()
    end)

    it("an error answer with a kilobyte-long code and a multi-line message prints as one whole line", function()
      local code = ("e"):rep(1200)
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/credits", times = 1,
        action = "respond", status = 400,
        body = ('{"error":{"code":"%s","message":"line one\\nline two","requestId":"req_9"}}'):format(code) }
      local credits, err = client:credits()
      assert.is_nil(credits)
      assert.are.equal(code, err.code)
      assert.are.equal("line one\nline two", err.message)
      assert.are.equal("rivya: " .. code .. ": line one\\nline two (status=400, request_id=req_9)", tostring(err))
    end)

    -- sim_fuzz: rv_webm_duration let a NaN Duration float through (NaN < 0 is
    -- false), so the upload was stored with no duration and no durationToken
    -- instead of being refused (fuzz/corpus/sim/regress_webm_nan).
    local WEBM = "\26\69\223\163\159\66\134\129\1\66\247\129\1\66\242\129\4\66\243\129\8"
      .. "\66\130\132webm\66\135\129\4\66\133\129\2"
      .. "\24\83\128\103\1\0\0\0\0\0\0\19"
      .. "\21\73\169\102\142\42\215\177\131\15\66\64\68\137\132"   -- Duration: 4 bytes follow
    local function upload_webm(duration_bits)
      local dir = helper.tmpdir()
      local path = dir .. "/clip.webm"
      helper.write_file(path, WEBM .. duration_bits)
      local status, json = sim:api("POST", "/api/v1/files", nil, { extra = {
        "-F", helper.sh_quote("file=@" .. path), "-F", "kind=video" } })
      helper.rmrf(dir)
      return status, json
    end

    it("an upload takes a WebM whose Duration is a plain float", function()
      local status, file = upload_webm("\68\250\0\0")        -- 2000.0 ms
      assert.are.equal(201, status)
      assert.are.equal(2, file.duration_seconds)
    end)

    for name, bits in pairs{ NaN = "\127\192\0\0", infinite = "\127\128\0\0" } do
      it("an upload refuses a WebM whose Duration is " .. name .. " as a video without a readable duration", function()
        local status, json = upload_webm(bits)
        assert.are.equal(400, status)
        assert.are.equal("validation_failed", json.error.code)
        assert.matches("cannot read the video's duration", json.error.message, 1, true)
      end)
    end
  end)
end)
