-- The CLI's package in-process: core.sha256 (the batch keys' hash) and the
-- resumable job runner driven without a subprocess, against rivya-sim.
local helper = require "helper"
local core = require "rivya.core"
local cjson = require "cjson.safe"

describe("core.sha256", function()
  it("gives the FIPS 180-4 example digests and sha256sum's for padding edges", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      core.sha256(("a"):rep(1000000)))
    -- 55, 56 and 64 bytes: the length fits the last block, spills over, fills it
    for _, n in ipairs({ 55, 56, 63, 64, 65, 119, 120 }) do
      local s = ("\0\255x"):rep(50):sub(1, n)
      local path = os.tmpname()
      helper.write_file(path, s)
      local p = io.popen("sha256sum " .. helper.sh_quote(path))
      local want = p:read("*l"):sub(1, 64)
      p:close()
      os.remove(path)
      assert.are.equal(want, core.sha256(s), "length " .. n)
    end
  end)

  it("raises for a non-string", function()
    assert.has_error(function() core.sha256({}) end)
  end)
end)

describe("rivya.cli.jobs occurrence counts (a batch line's identity)", function()
  local jobs = require "rivya.cli.jobs"

  it("counts each body's hash apart, also two that share their first 52 bits", function()
    local count = jobs.new_occurrences()
    local a = core.sha256("a body")
    local b = core.sha256("another body")
    -- same first 13 hex digits as a, different after: a different body
    local a2 = a:sub(1, 13) .. (a:sub(14, 14) == "0" and "1" or "0") .. a:sub(15)
    -- same first 26 hex digits as a2 but not a: counted by its whole hash
    local a3 = a2:sub(1, 30) .. (a2:sub(31, 31) == "0" and "1" or "0") .. a2:sub(32)
    assert.are.equal(1, count(a))
    assert.are.equal(1, count(b))
    assert.are.equal(1, count(a2))
    assert.are.equal(2, count(a))
    assert.are.equal(2, count(a2))
    assert.are.equal(1, count(a3))
    assert.are.equal(3, count(a))
    assert.are.equal(2, count(b))
    assert.are.equal(3, count(a2))
    -- a fresh counter starts again
    assert.are.equal(1, jobs.new_occurrences()(a))
  end)

  it("gives the same keys as counting by the whole hash (resumes of older folders)", function()
    local count, by_text = jobs.new_occurrences(), {}
    for i = 1, 2000 do
      local h = core.sha256(tostring(i % 700))
      by_text[h] = (by_text[h] or 0) + 1
      local n = count(h)
      assert.are.equal(by_text[h], n)
      -- the key is built from n .. "\n": "2", never "2.0"
      assert.are.equal(("%d"):format(by_text[h]), tostring(n))
    end
  end)
end)

describe("rivya.cli.jobs without a subprocess", function()
  local sim, tmp

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.2", "--credits", "100000" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(tmp)
  end)

  -- a context on temporary files, driven like cli.main drives one
  local function new_ctx()
    local context = require "rivya.cli.context"
    local status = require "rivya.cli.status"
    local env = { RIVYA_API_KEY = helper.KEY, RIVYA_BASE_URL = sim.url }
    local ctx = context.new({ stdout = io.tmpfile(), stderr = io.tmpfile(), stdin = io.tmpfile() },
      function(k) return env[k] end)
    ctx.status = status.new(ctx.stderr, "quiet")
    return ctx
  end

  local function lines_of(f)
    f:seek("set")
    local out = {}
    for line in f:lines() do out[#out + 1] = assert(cjson.decode(line), line) end
    return out
  end

  it("runs a batch, and a second run resumes every line without creating a task again", function()
    local jobs = require "rivya.cli.jobs"
    local file = tmp .. "/two.jsonl"
    helper.write_file(file, '{"prompt":"A kite","params":{"duration":5}}\n\n{"prompt":"A tram","output":"tram.mp4"}\n')
    local a = { json = true, concurrency = 2, interval = 0.05 }
    local function run_once()
      local list = assert(jobs.read_batch(file))
      local ctx = new_ctx()
      assert.is_true(jobs.prepare(ctx, list, "line"))
      local code = jobs.run(ctx, a, list, { unit = "lines", unit_key = "line", label = "line", kind = "batch",
        out_dir = tmp .. "/two.out", source = file })
      if ctx.client_obj then ctx.client_obj:close() end
      return code, lines_of(ctx.stdout)
    end
    local code, first = run_once()
    assert.are.equal(0, code)
    assert.are.equal(2, #first)
    local outputs = {}
    for _, r in ipairs(first) do
      assert.are.equal("succeeded", r.status)
      assert.is_false(r.resumed)
      outputs[#outputs + 1] = r.output
    end
    table.sort(outputs)
    assert.are.same({ tmp .. "/two.out/line-01.mp4", tmp .. "/two.out/tram.mp4" }, outputs)
    local again
    code, again = run_once()
    assert.are.equal(0, code)
    for _, r in ipairs(again) do assert.is_true(r.resumed) end
    assert.are.equal(2, sim:ledger().tasks_created)
  end)

  it("takes the key and the base URL from cli.main's env only, never the process's", function()
    local code = [[
      local context = require "rivya.cli.context"
      local env = { RIVYA_BASE_URL = os.getenv("SIM_URL") }
      local ctx = context.new({}, function(k) return env[k] end)
      local c = assert(ctx:client(false))
      io.write(tostring(c))
      c:close()
    ]]
    local p = io.popen(("env RIVYA_API_KEY=%s RIVYA_BASE_URL=https://elsewhere.invalid SIM_URL=%s %s -e %s"):format(
      helper.sh_quote(helper.KEY), helper.sh_quote(sim.url), helper.LUA, helper.sh_quote(code)))
    local shown = p:read("*a")
    p:close()
    assert.are.equal("rivya.Client(" .. sim.url .. ", key=none)", shown)
  end)

  it("reports a raise inside a command in one line, its stack only with RIVYA_DEBUG", function()
    local cli = require "rivya.cli"
    local broken = { write = function() error("disk full") end, flush = function() end }
    for _, debug_on in ipairs({ false, true }) do
      local err = io.tmpfile()
      local code = cli.main({ "validate", "a boat" }, { RIVYA_DEBUG = debug_on and "1" or nil },
        { stdout = broken, stderr = err, stdin = io.tmpfile(), tty = false })
      assert.are.equal(1, code)
      err:seek("set")
      local text = err:read("*a")
      assert.matches("^rivya: internal error: [^\n]*disk full\n", text)
      if debug_on then
        assert.truthy(text:find("stack traceback", 1, true), text)
      else
        assert.are.equal(2, select(2, text:gsub("\n", "")), text)
        assert.is_nil(text:find("traceback", 1, true), text)
      end
    end
  end)
end)
