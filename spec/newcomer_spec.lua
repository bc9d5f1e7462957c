-- The CLI and the Lua API as a newcomer meets them (issue 14): honest
-- screens on a real pseudo-terminal, one-line errors, no dead ends. Each
-- test names the issue's item it checks.
local helper = require "helper"
local rivya = require "rivya"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local sh = helper.sh_quote
local PNG = helper.ROOT .. "/examples/assets/first_frame.png"
local JPEG = helper.ROOT .. "/examples/assets/last_frame.jpg"

-- the live line's redraws in a terminal capture: the text between each "\r"
-- and the erase-to-end-of-line that ends it
local function redraws(out)
  local list = {}
  for seg in out:gmatch("\r([^\r\n]-)\27%[K") do
    if seg ~= "" then list[#list + 1] = seg end
  end
  return list
end

local function longest(list)
  local n = 0
  -- columns: every byte but UTF-8 continuation bytes
  for _, s in ipairs(list) do n = math.max(n, #s:gsub("[\128-\191]", "")) end
  return n
end

describe("the rivya command as a newcomer meets it", function()
  local sim, tmp, serial = nil, nil, 0

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "100000" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(tmp)
  end)

  before_each(function() sim:reset() end)

  local function scratch()
    serial = serial + 1
    local d = ("%s/run-%d"):format(tmp, serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    return d
  end

  local function cli(args, o)
    return helper.cli(sim, scratch(), args, o)
  end

  local function ok(r)
    assert.are.equal(0, r.code, "stderr: " .. r.err .. "\nstdout: " .. r.out)
    return r
  end

  describe("the screen", function()
    it("fits the live line to the terminal's own width, 60 and 120 columns, whatever $COLUMNS says (1)", function()
      local d = scratch()
      local long = d .. "/a-reference-frame-with-a-rather-long-descriptive-file-name.png"
      assert(compat.execute(("cp %s %s"):format(sh(PNG), sh(long))))
      sim:config{ task_seconds = 600, task_polls = 4 }
      local narrow = ok(helper.cli(sim, d, { "generate", "a boat", "--ref", long, "-o", "n.mp4" },
        { pty = { cols = 60 }, env = { TERM = "xterm", COLUMNS = "200" } }))
      local lines = redraws(narrow.out)
      assert.is_true(#lines >= 4, narrow.out)
      assert.is_true(longest(lines) <= 59, narrow.out)
      assert.is_true(longest(lines) >= 50, narrow.out)    -- cut at the width, not far below it
      sim:config{ task_seconds = 600, task_polls = 4 }
      local wide = ok(helper.cli(sim, d, { "generate", "a boat", "--ref", long, "-o", "w.mp4" },
        { pty = { cols = 120 }, env = { TERM = "xterm", COLUMNS = "40" } }))
      lines = redraws(wide.out)
      assert.is_true(longest(lines) > 80, wide.out)        -- no longer cut at 80
      assert.is_true(longest(lines) <= 119, wide.out)
    end)

    it("follows a resize of the terminal while it waits (SIGWINCH) (1)", function()
      local d = scratch()
      -- the task stays processing until the script has resized the terminal
      sim:config{ task_seconds = 3600, task_polls = 1000000 }
      local env = ("RIVYA_BASE_URL=%s RIVYA_API_KEY=%s RIVYA_POLL_INTERVAL=0.05 TERM=xterm RIVYA_LEDGER=%s"):format(
        sh(sim.url), sh(helper.KEY), sh(d .. "/ledger.db"))
      local ledger = sim.url .. "/__sim/ledger"
      -- a long name: the upload's line is wider than 100 columns before the resize
      local long = d .. "/a-reference-frame-with-a-rather-long-descriptive-file-name.png"
      assert(compat.execute(("cp %s %s"):format(sh(PNG), sh(long))))
      helper.write_file(d .. "/run.sh", table.concat({
        "stty cols 120 rows 24",
        ("env %s %s generate 'a boat' --ref %s -o r.mp4 &"):format(env, sh(helper.ROOT .. "/bin/rivya"), sh(long)),
        "pid=$!",
        -- created, then polled at least twice at 120 columns
        -- (or until the CLI is gone: then the checks below fail, not hang)
        ("until ! kill -0 $pid 2>/dev/null || curl -s %s | grep -Eq '\"requests\": *([4-9]|[1-9][0-9]+),'; do "
          .. "sleep 0.05; done"):format(sh(ledger)),
        "stty cols 50",
        "printf '\\n@@resized@@\\n'",
        ("curl -s -X POST -d '{\"task_polls\": 1}' %s/__sim/config >/dev/null"):format(sh(sim.url)),
        "wait $pid",
      }, "\n") .. "\n")
      local _, how, code = compat.execute(("cd %s && script -qfec 'sh run.sh' /dev/null >out 2>err </dev/null")
        :format(sh(d)))
      assert.are.equal("exit", how)
      assert.are.equal(0, code)
      local out = helper.read_file(d .. "/out")
      local before, after = out:match("^(.*)@@resized@@(.*)$")
      assert.truthy(before, out)
      assert.is_true(longest(redraws(before)) > 100, before)
      local later = redraws(after)
      table.remove(later, 1)   -- one redraw may have measured the width just before the resize
      assert.is_true(#later >= 1, after)
      assert.is_true(longest(later) <= 49, after)
      assert.truthy(after:find("succeeded", 1, true))
    end)

    it("shows each retry on the live line and as a plain line, and says how often a call was tried (2)", function()
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/credits", action = "respond", status = 503,
        times = 2 }
      local r = ok(cli({ "credits" }, { pty = { cols = 100 }, env = { TERM = "xterm" } }))
      -- credits has no live line of its own: the retries still show, on lines of their own
      assert.truthy(r.out:find("rivya: retrying %(attempt 2/4 in %d[%d.]* s%): service_unavailable: "), r.out)
      assert.truthy(r.out:find("rivya: retrying (attempt 3/4 in ", 1, true), r.out)
      sim:reset()
      sim:config{ task_seconds = 600, task_polls = 3 }
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/generations/", action = "respond", status = 503,
        times = 1 }
      r = ok(cli({ "generate", "a boat", "-o", "x.mp4" }, { pty = { cols = 120 }, env = { TERM = "xterm" } }))
      local seen
      for _, line in ipairs(redraws(r.out)) do
        if line:find("retrying (attempt 2/4", 1, true) then
          seen = line
        end
      end
      assert.truthy(seen, r.out)
      assert.truthy(seen:find("^%a+  task_%w+"), seen)      -- beside the task's own state
      sim:reset()
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/credits", action = "respond", status = 503,
        times = 10 }
      r = cli({ "credits" })
      assert.are.equal(1, r.code)
      assert.truthy(r.err:find("rivya: retrying (attempt 2/4 in ", 1, true))
      assert.truthy(r.err:find("(tried 4 times)\n", 1, true), r.err)
    end)

    it("names the last cause when a wait gives up on a server that stopped answering (2)", function()
      local d = scratch()
      local created = ok(helper.cli(sim, d, { "generate", "a boat", "--no-wait", "--json" }))
      local id = created.json[1].id
      -- every poll's connection is dropped: the server looks down
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/generations/", action = "drop", times = 1000 }
      local r = helper.cli(sim, d, { "wait", id, "--timeout", "0.5" })
      assert.are.equal(6, r.code, r.err)
      local last = r.err:match("([^\n]*)\n$")
      assert.truthy(last:find("not final after the wait deadline (", 1, true), last)
      assert.truthy(last:find("failed: Empty reply from server", 1, true), last)
    end)

    it("shows the download's size, rate and time, and keeps uploads, creates and saves as lines (3, 4)", function()
      -- the CDN answers after 600 ms: the rate has a time to be measured over
      sim:fault{ listener = "cdn", method = "GET", path = "/", action = "delay", delay_ms = 600 }
      local r = ok(cli({ "generate", "a boat", "--ref", PNG, "-o", "x.mp4" },
        { pty = { cols = 120 }, env = { TERM = "xterm" } }))
      assert.truthy(r.out:find("rivya: uploaded " .. PNG .. " (904 B) as file_", 1, true), r.out)
      assert.truthy(r.out:find("rivya: created task_%w+ %(80 credits reserved%)\r?\n"), r.out)
      assert.truthy(r.out:find("rivya: saved x.mp4 %(%d[%d.]* kB%)\r?\n"), r.out)
      local full
      for _, line in ipairs(redraws(r.out)) do
        if line:find("^downloading  task_%w+  %[#+%] 100%%") then full = line end
      end
      assert.truthy(full, r.out)
      -- size of total, rate, the transfer's time, the command's time
      assert.truthy(full:find("%d[%d.]* kB/%d[%d.]* kB  %d[%d.]* k?B/s  %d+:%d%d  %d+:%d%d$"), full)
    end)

    it("says a replayed create was replayed and reserved nothing (5)", function()
      local d = scratch()
      local first = ok(helper.cli(sim, d, { "generate", "a boat", "--idempotency-key", "k-replay-1", "--no-wait" }))
      assert.truthy(first.err:find("credits reserved", 1, true))
      local again = ok(helper.cli(sim, d, { "generate", "a boat", "--idempotency-key", "k-replay-1", "--no-wait" }))
      assert.truthy(again.err:find("rivya: replayed task_%w+: created earlier under this idempotency key; "
        .. "nothing new reserved"), again.err)
      assert.is_nil(again.err:find("credits reserved", 1, true))
      assert.are.equal(1, sim:ledger().tasks_created)
    end)
  end)

  describe("errors", function()
    it("prints one JSON error object on stdout with --json, before any task exists (7)", function()
      local r = cli({ "credits", "--json" }, { env = { RIVYA_API_KEY = false } })
      assert.are.equal(4, r.code)
      assert.are.equal("api_key_missing", r.json[1].error.code)
      r = cli({ "status", "task_nope", "--json" })
      assert.are.equal(1, r.code)
      assert.are.same({ "task_nope", "not_found" }, { r.json[1].id, r.json[1].error.code })
      r = cli({ "validate", "a boat", "--duration", "7", "--json" })
      assert.are.equal(3, r.code)
      assert.are.same({ "validation_failed", "params.duration" }, { r.json[1].error.code, r.json[1].error.field })
      r = cli({ "generate", "a boat", "--bogus", "--json" })
      assert.are.equal(2, r.code)
      assert.are.equal("usage", r.json[1].error.code)
      assert.are.equal(1, #r.json)
    end)

    it("answers user mistakes with one line and the documented exit code, never a traceback (8)", function()
      local d = scratch()
      for _, args in ipairs({ { "batch", d }, { "estimate", "--batch", d }, { "download", "task_x", "" } }) do
        local r = helper.cli(sim, d, args)
        assert.are.equal(2, r.code, r.err)
        assert.is_nil(r.err:find("traceback", 1, true), r.err)
        assert.is_nil(r.err:find("%.lua:%d+:"), r.err)
        local first = r.err:match("^rivya: [^\n]+\n")
        assert.truthy(first, r.err)
        assert.truthy(first:find(d, 1, true) or first:find("FILE", 1, true), first)
      end
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("names the flag or variable, what it takes and what was given (9)", function()
      local cases = {
        { { "validate", "a boat", "--seed", "-1" }, 3,
          "params.seed: expected an integer from 0 to 2147483647; got -1" },
        { { "wait", "task_x", "--interval", "-1" }, 2, "--interval: expected a positive number of seconds, got '-1'" },
        { { "wait", "task_x", "--interval", "abc" }, 2,
          "--interval: expected a positive number of seconds, got 'abc'" },
        { { "batch", "x.jsonl", "-c", "1.5" }, 2, "--concurrency: expected a whole number of at least 1, got '1.5'" },
        { { "wait", "task_x" }, 2, "RIVYA_POLL_INTERVAL: expected a positive number of seconds, got '-3'",
          { RIVYA_POLL_INTERVAL = "-3" } },
      }
      for _, case in ipairs(cases) do
        local r = cli(case[1], { env = case[4] })
        assert.are.equal(case[2], r.code, r.err)
        assert.truthy(r.err:find(case[3], 1, true), r.err)
        assert.is_nil(r.err:find("unknown option", 1, true), r.err)
      end
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("refuses a whitespace-only prompt, reads a JSONL file with a BOM, says a bad line once (10)", function()
      local r = cli({ "generate", " \t\n " })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("prompt: expected some text; got only whitespace", 1, true), r.err)
      assert.are.equal(0, sim:ledger().requests)
      local d = scratch()
      helper.write_file(d .. "/bom.jsonl", '\239\187\191{"prompt":"A kite"}\n{"prompt":"A tram"}\n')
      r = helper.cli(sim, d, { "batch", "bom.jsonl", "--dry-run" })
      assert.are.equal(0, r.code, r.err)
      assert.truthy(r.out:find("total: 2 requests, 160 credits", 1, true), r.out)
      helper.write_file(d .. "/bad.jsonl", '{"prompt":"A kite"}\n{"prompt": oops}\n')
      r = helper.cli(sim, d, { "batch", "bad.jsonl", "--dry-run" })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("line 2: expected a JSON object per line", 1, true), r.err)
      assert.is_nil(r.err:find("field=line", 1, true), r.err)
    end)

    it("says a refused connection once, and how often it was tried (10)", function()
      local r = cli({ "credits" }, { env = { RIVYA_BASE_URL = "http://127.0.0.1:1" } })
      assert.are.equal(1, r.code)
      local last = r.err:match("([^\n]*)\n$")
      local _, n = last:gsub("[Cc]ouldn't connect", "")
      assert.are.equal(1, n, last)
      assert.truthy(last:find("(tried 4 times)", 1, true), last)
    end)

    it("takes RIVYA_ALLOW_HTTP and RIVYA_CA_FILE, and treats a key's surrounding whitespace alike (11)", function()
      -- 0.0.0.0 is no loopback name to rivya, yet it reaches this machine's simulator
      local plain = "http://0.0.0.0:" .. sim.port
      local r = cli({ "credits" }, { env = { RIVYA_BASE_URL = plain } })
      assert.are.equal(2, r.code)
      assert.truthy(r.err:find("set RIVYA_ALLOW_HTTP=0.0.0.0 to opt in", 1, true), r.err)
      assert.is_nil(r.err:find("allow_http =", 1, true), r.err)
      r = ok(cli({ "credits" }, { env = { RIVYA_BASE_URL = plain, RIVYA_ALLOW_HTTP = "0.0.0.0" } }))
      assert.are.equal("100000\n", r.out)
      local d = scratch()
      helper.write_file(d .. "/not.pem", "no certificate here\n")
      r = helper.cli(sim, d, { "credits" }, { env = { RIVYA_CA_FILE = d .. "/not.pem" } })
      assert.are.equal(2, r.code)
      local want = "rivya: RIVYA_CA_FILE: cannot use " .. d .. "/not.pem: no PEM certificate"
      assert.are.equal(1, r.err:find(want, 1, true), r.err)
      for _, key in ipairs({ " " .. helper.KEY, helper.KEY .. "\n", "\t" .. helper.KEY .. " \n" }) do
        r = ok(cli({ "credits" }, { env = { RIVYA_API_KEY = key } }))
        assert.are.equal("100000\n", r.out)
      end
      r = cli({ "credits" }, { env = { RIVYA_API_KEY = " \n" } })
      assert.are.equal(4, r.code)
      assert.truthy(r.err:find("no API key", 1, true), r.err)
    end)

    it("prints a server's text with its control characters made visible, and quotes ids in hints (12.11)", function()
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/credits", action = "respond", status = 400,
        body = '{"error":{"code":"validation_failed","message":"bad\\u001b[2J\\u001b]0;owned\\u0007 thing\\u009b"}}' }
      local r = cli({ "credits" })
      assert.are.equal(3, r.code)
      assert.is_nil(r.err:find("[\27\7]"), r.err)
      assert.is_nil(r.err:find("\194\155", 1, true), r.err)
      assert.truthy(r.err:lower():find("bad\\x1b[2j\\x1b]0;owned\\x07 thing\\u{9b}", 1, true), r.err)
      local d = scratch()
      sim:config{ task_seconds = 600 }
      local created = ok(helper.cli(sim, d, { "generate", "a boat", "--no-wait", "--json" }))
      r = helper.cli(sim, d, { "download", created.json[1].id, "my video's.mp4" })
      assert.are.equal(1, r.code)
      assert.truthy(r.err:find(("`rivya wait %s --out 'my video'\\''s.mp4'`"):format(created.json[1].id), 1, true),
        r.err)
    end)
  end)

  describe("references and downloads", function()
    it("takes an uploaded file's id or URL as --ref, in validate, generate and batch lines (13)", function()
      local d = scratch()
      local png = ok(helper.cli(sim, d, { "upload", PNG, "--json" })).json[1]
      local jpeg = ok(helper.cli(sim, d, { "upload", JPEG, "--json" })).json[1]
      local r = ok(helper.cli(sim, d, { "validate", "From night to sunrise", "--ref", png.id, "--ref", jpeg.url,
        "--json" }))
      local items = r.json[1].body.params.referenceMediaItems
      assert.are.same({ png.url, jpeg.url }, { items[1].url, items[2].url })
      assert.are.same({ "image/png", "image/jpeg" }, { items[1].mimeType, items[2].mimeType })
      ok(helper.cli(sim, d, { "generate", "From night to sunrise", "--ref", png.id, "--ref", jpeg.url,
        "-o", "i2v.mp4" }))
      local sent = sim:ledger().tasks[1].params.referenceMediaItems
      assert.are.same({ png.url, jpeg.url }, { sent[1].url, sent[2].url })
      assert.are.equal(2, sim:ledger().files)   -- nothing uploaded again
      helper.write_file(d .. "/ids.jsonl", cjson.encode({ prompt = "From night to sunrise",
        params = { referenceMediaItems = { png.id, jpeg.url } } }) .. "\n")
      r = ok(helper.cli(sim, d, { "batch", "ids.jsonl", "--dry-run", "--json" }))
      assert.are.equal(png.url, r.json[1].body.params.referenceMediaItems[1].url)
      r = helper.cli(sim, d, { "validate", "a boat", "--ref", "file_doesnotexist" })
      assert.are.equal(1, r.code)
      assert.truthy(r.err:find("not_found", 1, true), r.err)
      r = helper.cli(sim, d, { "validate", "a boat", "--ref", "https://cdn.example/clip" })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("cannot tell what https://cdn.example/clip is from its name", 1, true), r.err)
    end)
  end)
end)

describe("the Lua API as a newcomer meets it", function()
  local sim, client, dir

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.2", "--credits", "100000" } }
    client = helper.client(sim)
    dir = helper.tmpdir()
  end)

  teardown(function()
    client:close()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  it("downloads by task id as by task table, and refuses a task that has not succeeded (12)", function()
    local task = assert(client:generate{ model = "wan-2-7-video", prompt = "a boat" })
    assert.are.equal(dir .. "/by-id.mp4", client:download(task.id, dir .. "/by-id.mp4"))
    assert.are.equal("ftyp", helper.read_file(dir .. "/by-id.mp4"):sub(5, 8))
    sim:config{ task_seconds = 600 }
    local pending = assert(client:create{ model = "wan-2-7-video", prompt = "a boat" })
    local path, err = client:download(pending.id, dir .. "/pending.mp4")
    assert.is_nil(path)
    assert.are.equal("validation_failed", err.code)
    assert.are.equal(pending.id, err.task.id)
    assert.truthy(err.message:find("not succeeded yet", 1, true))
    assert.is_nil(io.open(dir .. "/pending.mp4"))
    sim:config{ task_seconds = 0.2 }
  end)

  it("takes {file = id} and an uploaded file's URL as references (13)", function()
    sim:reset()
    local png = assert(client:upload(PNG))
    local jpeg = assert(client:upload(JPEG))
    local task = assert(client:create{ model = "wan-2-7-video", prompt = "From night to sunrise",
      params = { referenceMediaItems = { { file = png.id }, jpeg.url } } })
    assert.is_string(task.id)
    local sent = sim:ledger().tasks[1].params.referenceMediaItems
    assert.are.same({ png.url, jpeg.url }, { sent[1].url, sent[2].url })
    local none, err = client:create{ model = "wan-2-7-video", prompt = "p",
      params = { referenceMediaItems = { { file = 42 } } } }
    assert.is_nil(none)
    assert.are.equal("params.referenceMediaItems[1]", err.field)
  end)

  it("points misuse errors at the caller's line, however the call reached the check (14)", function()
    local here = "^spec/newcomer_spec%.lua:%d+: "
    local calls = {
      function() local t = client:wait(12) return t end,
      function() local t = client:updates(12) return t end,
      function() local t = client:get(12) return t end,
      function() local t = client:download("https://x.example/a.mp4", "") return t end,
      function() local t = client:create(5) return t end,
      function() local t = client:upload(5) return t end,
      function() local t = client:wait("task_x", { intervl = 1 }) return t end,
      function() local t = rivya.gather({ 5 }) return t end,
      function() local t = rivya.new{ timout = 1 } return t end,
    }
    for i, f in ipairs(calls) do
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches(here, err, nil, false, "call " .. i)
    end
  end)
end)
