-- The `rivya` command, run as a real subprocess (bin/rivya) against this
-- file's own rivya-sim on 127.0.0.1.
local helper = require "helper"
local rivya = require "rivya"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local sh = helper.sh_quote

local ROOT = helper.ROOT
local RIVYA = ROOT .. "/bin/rivya"
local PNG = ROOT .. "/examples/assets/first_frame.png"
local JPEG = ROOT .. "/examples/assets/last_frame.jpg"
local SAMPLE = ROOT .. "/sim/sample.mp4"
local COMMANDS = { "generate", "upload", "status", "wait", "download", "tasks", "resume", "credits", "models",
  "validate", "estimate", "batch", "sweep" }

local function is_mp4(path)
  local data = helper.read_file(path)
  return data ~= nil and #data > 100 and data:sub(5, 8) == "ftyp"
end

-- JSON with whole numbers as Lua integers (cjson 2.1.0 decodes them as floats)
local function decode(text)
  local function ints(v)
    if type(v) ~= "table" then
      return compat.math_type(v) == "float" and compat.tointeger(v) or v
    end
    for k, x in pairs(v) do v[k] = ints(x) end
    return v
  end
  local v, err = cjson.decode(text)
  if v == nil then return nil, err end
  return ints(v)
end

local function count(s, needle)
  local n, from = 0, 1
  while true do
    local i = s:find(needle, from, true)
    if not i then return n end
    n, from = n + 1, i + #needle
  end
end

describe("the rivya command", function()
  local sim, tmp, serial = nil, nil, 0

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "100000" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(tmp)
  end)

  before_each(function()
    sim:reset()
  end)

  -- a fresh directory under this file's scratch directory
  local function scratch(name)
    serial = serial + 1
    local d = ("%s/%s-%d"):format(tmp, name or "run", serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    return d
  end

  -- the shell command that runs rivya with `args`; o.env overrides the
  -- environment (false unsets a variable), o.tty runs it on a pseudo-terminal
  local function command_line(args, o)
    o = o or {}
    local env = { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY, RIVYA_POLL_INTERVAL = "0.05",
      TERM = "dumb", XDG_STATE_HOME = tmp .. "/state" }   -- the catalog cache, never the real home
    for k, v in pairs(o.env or {}) do env[k] = v end
    local unset, set = {}, {}
    for k, v in pairs(env) do
      if v == false then unset[#unset + 1] = "-u " .. k else set[#set + 1] = sh(k .. "=" .. v) end
    end
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh(a) end
    local cmd = ("env %s %s %s %s %s"):format(table.concat(unset, " "), table.concat(set, " "), helper.LUA, sh(RIVYA),
      table.concat(quoted, " "))
    if o.tty then cmd = "script -qec " .. sh(cmd) .. " /dev/null" end
    return cmd
  end

  -- run rivya; returns {code=, out=, err=, json = the stdout lines decoded}
  local function run(args, o)
    o = o or {}
    local d = scratch("io")
    local stdin = "/dev/null"
    if o.stdin then
      stdin = d .. "/stdin"
      helper.write_file(stdin, o.stdin)
    end
    local _, how, code = compat.execute(("cd %s && %s <%s >%s 2>%s"):format(sh(o.cwd or d), command_line(args, o),
      sh(stdin), sh(d .. "/out"), sh(d .. "/err")))
    local r = { code = how == "exit" and code or -1, out = helper.read_file(d .. "/out") or "",
      err = helper.read_file(d .. "/err") or "", json = {} }
    for line in r.out:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then r.json[#r.json + 1] = assert(decode(line), line) end
    end
    return r
  end

  local function ok(r)
    assert.are.equal(0, r.code, "stderr: " .. r.err .. "\nstdout: " .. r.out)
    return r
  end

  describe("help and usage", function()
    it("lists every subcommand, the environment and the exit codes in --help", function()
      local r = ok(run({ "--help" }))
      for _, c in ipairs(COMMANDS) do assert.truthy(r.out:find("\n   " .. c .. " ", 1, true), c) end
      assert.truthy(r.out:find("RIVYA_API_KEY", 1, true))
      assert.truthy(r.out:find("3 validation error", 1, true))
    end)

    it("prints --help for each subcommand on stdout and exits 0", function()
      for _, c in ipairs(COMMANDS) do
        local r = ok(run({ c, "--help" }))
        assert.truthy(r.out:find("Usage: rivya " .. c, 1, true), c)
        assert.are.equal("", r.err)
      end
    end)

    it("generates the parameter flags from the model schema, options included", function()
      local r = ok(run({ "generate", "--help" }))
      local text = r.out:gsub("%s+", " ")
      for _, flag in ipairs({ "--resolution", "--duration", "--aspect-ratio", "--seed", "--negative-prompt",
        "--no-prompt-extend", "--watermark", "--audio-setting", "--ref", "--out", "--json" }) do
        assert.truthy(r.out:find(flag, 1, true), flag)
      end
      assert.truthy(text:find("One of 5, 10, 15", 1, true))
      assert.truthy(text:find("One of 16:9, 9:16, 1:1, 4:3, 3:4", 1, true))
    end)

    it("prints its version", function()
      assert.are.equal("rivya " .. rivya.VERSION .. "\n", ok(run({ "--version" })).out)
    end)

    it("exits 2 on an unknown flag, a missing argument or no command, suggesting --help", function()
      local r = run({ "generate", "a boat", "--durtion", "5" })
      assert.are.equal(2, r.code)
      assert.truthy(r.err:find("--duration", 1, true))
      assert.truthy(r.err:find("rivya generate --help", 1, true))
      assert.are.equal(2, run({ "status" }).code)
      assert.are.equal(2, run({}).code)
      assert.are.equal(2, run({ "frobnicate" }).code)
      assert.are.equal(2, run({ "generate", "x", "--watermark", "--no-watermark" }).code)
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("has no flag for the key, and says so without echoing the value", function()
      for _, args in ipairs({ { "credits", "--api-key", helper.KEY }, { "credits", "--api-key=" .. helper.KEY } }) do
        local r = run(args)
        assert.are.equal(2, r.code)
        assert.truthy(r.err:find("RIVYA_API_KEY", 1, true))
        assert.is_nil((r.out .. r.err):find(helper.KEY, 1, true))
      end
    end)
  end)

  describe("generate", function()
    it("maps every parameter flag to its wire value and saves the video to --out", function()
      local d = scratch("gen")
      local r = ok(run({ "generate", "A paper boat at dusk", "--resolution", "1080p", "--duration", "10",
        "--aspect-ratio", "9:16", "--seed", "42", "--negative-prompt", "blur, text", "--no-prompt-extend",
        "--watermark", "--audio-setting", "origin", "--out", "boat.mp4", "--json" }, { cwd = d }))
      assert.are.equal(1, #r.json)
      local task = r.json[1]
      assert.matches("^task_", task.id)
      assert.are.equal("succeeded", task.status)
      assert.are.equal("boat.mp4", task.output)
      assert.is_true(is_mp4(d .. "/boat.mp4"))
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.tasks_created)
      assert.are.same({ resolution = "1080p", duration = "10", aspect_ratio = "9:16", seed = 42,
        negative_prompt = "blur, text", prompt_extend = "false", watermark = "true", audio_setting = "origin" },
        ledger.tasks[1].params)
      assert.are.equal(task.idempotency_key, ledger.tasks[1].idempotency_key)
      assert.are.equal(0, ledger.cdn_auth_violations)
    end)

    it("saves to <task id>.mp4 in the current directory without --out, reading '-' from stdin", function()
      local d = scratch("default-out")
      local r = ok(run({ "generate", "-", "--quiet" }, { cwd = d, stdin = "A lighthouse in a storm\n" }))
      local id = r.out:match("^(task_%w+)%s+succeeded")
      assert.truthy(id, r.out)
      assert.is_true(is_mp4(d .. "/" .. id .. ".mp4"))
      assert.are.equal("A lighthouse in a storm", sim:ledger().tasks[1].prompt)
      assert.are.equal("", r.err)
    end)

    it("uploads two --ref images first and creates an image-to-video task with them", function()
      local d = scratch("i2v")
      local r = ok(run({ "generate", "From night to sunrise", "--ref", PNG, "--ref", JPEG, "-o", "i2v.mp4",
        "--json" }, { cwd = d }))
      assert.are.equal("succeeded", r.json[1].status)
      assert.is_true(is_mp4(d .. "/i2v.mp4"))
      local ledger = sim:ledger()
      assert.are.equal(2, ledger.files)
      local items = ledger.tasks[1].params.referenceMediaItems
      assert.are.equal(2, #items)
      assert.are.same({ "image", "image" }, { items[1].kind, items[2].kind })
      assert.are.same({ "image/png", "image/jpeg" }, { items[1].mimeType, items[2].mimeType })
      assert.truthy(r.err:find("uploaded " .. PNG, 1, true))
    end)

    it("sends a video --ref with its duration token (video editing)", function()
      local d = scratch("edit")
      ok(run({ "generate", "Golden hour", "--ref", SAMPLE, "--ref", JPEG, "--duration", "10", "-o", "e.mp4" },
        { cwd = d }))
      local items = sim:ledger().tasks[1].params.referenceMediaItems
      assert.are.equal("video", items[1].kind)
      assert.matches("^dt_", items[1].durationToken)
      assert.is_true(is_mp4(d .. "/e.mp4"))
    end)

    it("exits 3 on an invalid value, naming the field and the options, and sends nothing", function()
      local r = run({ "generate", "a boat", "--duration", "7" })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("params.duration", 1, true))
      assert.truthy(r.err:find("5, 10, 15", 1, true))
      r = run({ "generate", "a boat", "--ref", PNG, "--ref", JPEG, "--ref", PNG })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("at most 2", 1, true))
      r = run({ "generate", "a boat", "--ref", ROOT .. "/README.md" })
      assert.are.equal(3, r.code)
      local ledger = sim:ledger()
      assert.are.equal(0, ledger.requests)
      assert.are.equal(0, ledger.files)
    end)

    it("exits 1 for a failed generation and prints the failed task with --json", function()
      local r = run({ "generate", "this one breaks [[fail]]", "--json" })
      assert.are.equal(1, r.code)
      assert.are.equal("failed", r.json[1].status)
      assert.are.equal("generation_failed", r.json[1].error.code)
      assert.truthy(r.err:find("generation_failed", 1, true))
    end)

    it("exits 5 when the credits do not cover the run", function()
      sim:config{ credits = 40 }
      local r = run({ "generate", "a boat" })
      assert.are.equal(5, r.code)
      assert.truthy(r.err:find("insufficient_credits", 1, true))
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("exits 4 without a key, with an unknown key and with a revoked key", function()
      local r = run({ "generate", "a boat" }, { env = { RIVYA_API_KEY = false } })
      assert.are.equal(4, r.code)
      assert.truthy(r.err:find("RIVYA_API_KEY", 1, true))
      assert.are.equal(0, sim:ledger().requests)
      assert.are.equal(4, run({ "credits" }, { env = { RIVYA_API_KEY = "rvya_sk_unknown_000000" } }).code)
      assert.are.equal(4, run({ "credits" }, { env = { RIVYA_API_KEY = helper.REVOKED_KEY } }).code)
    end)

    it("exits 2 for a base URL it refuses (plain http to a remote host)", function()
      local r = run({ "credits" }, { env = { RIVYA_BASE_URL = "http://example.com" } })
      assert.are.equal(2, r.code)
      assert.truthy(r.err:find("RIVYA_BASE_URL", 1, true))
    end)

    it("creates only with --no-wait, then status, wait and download finish the job", function()
      local d = scratch("steps")
      sim:config{ task_seconds = 30 }
      local r = ok(run({ "generate", "step by step", "--no-wait", "--json" }))
      local id = r.json[1].id
      assert.are.equal("queued", r.json[1].status)
      r = ok(run({ "status", id, "--json" }))
      assert.are.equal(id, r.json[1].id)
      assert.are.equal("queued", r.json[1].status)
      r = run({ "download", id, d .. "/early.mp4" })
      assert.are.equal(1, r.code)
      assert.truthy(r.err:find("rivya wait " .. id, 1, true))
      assert.is_nil(helper.read_file(d .. "/early.mp4"))
      r = run({ "wait", id, "--timeout", "0.3" })
      assert.are.equal(6, r.code)
      sim:config{ task_seconds = 0.2 }
      r = ok(run({ "wait", id, "--out", d .. "/w.mp4", "--json" }))
      assert.are.equal("succeeded", r.json[1].status)
      assert.is_true(is_mp4(d .. "/w.mp4"))
      r = ok(run({ "download", id, d .. "/d.mp4", "--json" }))
      assert.are.same({ id = id, output = d .. "/d.mp4", size_bytes = #helper.read_file(SAMPLE) }, r.json[1])
      r = ok(run({ "status", id }))
      assert.matches("^" .. id .. "  succeeded  http", r.out)
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("reports an unknown task id with exit 1", function()
      local r = run({ "status", "task_doesnotexist" })
      assert.are.equal(1, r.code)
      assert.truthy(r.err:find("not_found", 1, true))
    end)
  end)

  describe("the other subcommands", function()
    it("upload prints the file object, with the duration token for a video", function()
      local r = ok(run({ "upload", SAMPLE, "--json" }))
      local file = r.json[1]
      assert.matches("^file_", file.id)
      assert.are.equal("video", file.kind)
      assert.are.equal("video/mp4", file.mime_type)
      assert.matches("^dt_", file.duration_token)
      r = ok(run({ "upload", PNG }))
      assert.matches("^file_%w+  image  image/png  ", r.out)
      assert.are.equal(2, sim:ledger().files)
    end)

    it("upload exits 3 for a file the model does not take, before sending it", function()
      local d = scratch("upload-bad")
      helper.write_file(d .. "/notes.txt", "just text")
      local r = run({ "upload", d .. "/notes.txt" })
      assert.are.equal(3, r.code)
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("credits prints the balance, models the catalog without needing a key", function()
      assert.are.equal("100000\n", ok(run({ "credits" })).out)
      assert.are.same({ current_credits = 100000 }, ok(run({ "credits", "--json" })).json[1])
      local r = ok(run({ "models", "--json" }, { env = { RIVYA_API_KEY = false } }))
      assert.are.equal("wan-2-7-video", r.json[1].id)
      r = ok(run({ "models", "--offline" }, { env = { RIVYA_BASE_URL = "http://127.0.0.1:9" } }))
      assert.matches("^wan%-2%-7%-video\t", r.out)
    end)

    it("validate prints the exact body offline, in wire form", function()
      local offline = { env = { RIVYA_BASE_URL = "http://127.0.0.1:9", RIVYA_API_KEY = false } }
      local r = ok(run({ "validate", "A boat", "--duration", "10", "--no-prompt-extend", "--seed", "7" }, offline))
      assert.are.same({ model = "wan-2-7-video", prompt = "A boat",
        params = { duration = "10", prompt_extend = "false", seed = 7 } }, decode(r.out))
      r = ok(run({ "validate", "Two frames", "--ref", PNG, "--ref", JPEG, "--aspect-ratio", "1:1", "--json" },
        offline))
      assert.is_true(r.json[1].valid)
      assert.are.equal(80, r.json[1].credits)
      assert.are.equal(PNG, r.json[1].body.params.referenceMediaItems[1].upload)
      assert.truthy(r.json[1].warnings[1]:find("ignored in image-to-video", 1, true))
      r = run({ "validate", "A boat", "--seed=-1" }, offline)
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("params.seed", 1, true))
    end)

    it("estimate gives the credits of one run, of --count runs and of a batch file", function()
      local d = scratch("estimate")
      helper.write_file(d .. "/b.jsonl", '{"prompt":"one"}\n{"prompt":"two"}\n\n{"prompt":"three"}\n')
      assert.are.equal("80 credits (1 run)\n", ok(run({ "estimate", "a boat" })).out)
      assert.are.same({ credits = 240, runs = 3 }, ok(run({ "estimate", "a boat", "--count", "3", "--json" })).json[1])
      assert.are.same({ credits = 240, runs = 3 },
        ok(run({ "estimate", "--batch", d .. "/b.jsonl", "--json" })).json[1])
      assert.are.equal(3, run({ "estimate", "a boat", "--resolution", "4k" }).code)
      assert.are.equal(0, sim:ledger().requests)
    end)
  end)

  describe("the terminal", function()
    it("draws a live line with status, elapsed time and byte bars on a terminal", function()
      local d = scratch("tty")
      -- by polls, not by time: processing from the 2nd status GET, final on the 4th
      sim:config{ task_seconds = 600, task_polls = 4 }
      local r = ok(run({ "generate", "a boat", "--ref", PNG, "-o", "tty.mp4" }, { cwd = d, tty = true,
        env = { TERM = "xterm" } }))
      -- script(1) puts stdout and stderr of the pseudo-terminal on its stdout
      assert.truthy(r.out:find("\27[K", 1, true))
      assert.truthy(r.out:find("\rprocessing  task_%w+  %d+:%d%d"), r.out)
      assert.truthy(r.out:find("uploading first_frame.png  [####################] 100%", 1, true), r.out)
      assert.truthy(r.out:find("downloading  task_%w+  %[####################%] 100%%"), r.out)
      assert.is_true(is_mp4(d .. "/tty.mp4"))
    end)

    it("writes plain lines, without control characters, when stderr is not a terminal", function()
      local r = ok(run({ "generate", "a boat", "--ref", PNG, "-o", scratch("plain") .. "/p.mp4" }))
      assert.is_nil(r.err:find("[\r\27]"))
      assert.truthy(r.err:find("rivya: created task_%w+ %(80 credits reserved%)\n"))
      assert.truthy(r.err:find("succeeded", 1, true))
      local q = ok(run({ "generate", "a boat", "-q", "-o", scratch("quiet") .. "/q.mp4" }))
      assert.are.equal("", q.err)
    end)

    it("never prints the API key, whatever the command and outcome", function()
      local d = scratch("secret")
      local all = {}
      for _, args in ipairs({ { "credits" }, { "credits", "--json" }, { "generate", "a boat", "-o", d .. "/k.mp4" },
        { "generate", "x [[fail]]", "--json" }, { "status", "task_nope" }, { "upload", PNG, "--json" },
        { "generate", "a", "--duration", "7" }, { "models" }, { "batch", d .. "/missing.jsonl" } }) do
        local r = run(args)
        all[#all + 1] = r.out .. r.err
        r = run(args, { tty = true, env = { TERM = "xterm" } })
        all[#all + 1] = r.out .. r.err
      end
      local text = table.concat(all, "\n")
      assert.truthy(text:find("task_", 1, true))
      assert.is_nil(text:find(helper.KEY, 1, true))
      assert.is_nil(text:find(helper.KEY:sub(9), 1, true))
    end)
  end)

  describe("batch", function()
    local LINES = {
      '{"prompt":"A red kite over dunes","params":{"duration":5,"seed":1}}',
      '{"prompt":"A tram on a bridge at night","params":{"resolution":"1080p"},"output":"tram.mp4"}',
      '{"prompt":"Coffee poured in slow motion","params":{"referenceMediaItems":["frame.png"]}}',
      '{"prompt":"A red kite over dunes","params":{"duration":5,"seed":1}}',
    }

    local function batch_dir(lines)
      local d = scratch("batch")
      helper.write_file(d .. "/jobs.jsonl", table.concat(lines or LINES, "\n") .. "\n")
      assert(compat.execute(("cp %s %s/frame.png"):format(sh(PNG), sh(d))))
      return d
    end

    -- the folder's ledger (out/.rivya/ledger.db, read with the sqlite3 CLI) as
    -- {lines = {["N"] = row}}: each line's latest attempt, found by its output
    local OUTPUT_LINE = { ["line-01.mp4"] = 1, ["tram.mp4"] = 2, ["line-03.mp4"] = 3, ["line-04.mp4"] = 4 }
    local function state_of(d)
      local db = d .. "/out/.rivya/ledger.db"
      if not helper.read_file(db) then return nil end
      local p = io.popen(("sqlite3 -json %s %s 2>/dev/null"):format(sh(db), sh(
        "SELECT key AS idempotency_key, id AS task_id, status, output, attempt FROM tasks ORDER BY attempt")))
      local rows = decode(p:read("*a")) or {}
      p:close()
      local lines = {}
      for _, row in ipairs(rows) do
        local n = OUTPUT_LINE[tostring(row.output):match("([^/]*)$")]
        if n then lines[tostring(n)] = row end
      end
      return { lines = lines }
    end

    local function task_ids(state)
      local ids = {}
      for line, e in pairs(state and state.lines or {}) do
        if e.task_id then ids[tonumber(line)] = e.task_id end
      end
      return ids
    end

    local function size(t)
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      return n
    end

    local function outputs(d)
      return { d .. "/out/line-01.mp4", d .. "/out/tram.mp4", d .. "/out/line-03.mp4", d .. "/out/line-04.mp4" }
    end

    it("--dry-run prints the validated requests and the total credits, sending nothing", function()
      local d = batch_dir()
      local r = ok(run({ "batch", "jobs.jsonl", "--dry-run", "--out-dir", "out" }, { cwd = d }))
      assert.truthy(r.out:find('line 1  {"model":"wan-2-7-video","params":{"duration":"5","seed":1},', 1, true))
      assert.truthy(r.out:find('"upload":"frame.png"', 1, true))
      assert.truthy(r.out:find("total: 4 requests, 320 credits\n", 1, true))
      r = ok(run({ "batch", "jobs.jsonl", "--dry-run", "--json" }, { cwd = d }))
      assert.are.equal(5, #r.json)
      assert.are.same({ requests = 4, credits = 320, credits_to_reserve = 320 }, r.json[5])
      assert.are.equal(1, r.json[1].line)
      assert.are.equal("5", r.json[1].body.params.duration)
      assert.are.equal(0, sim:ledger().requests)
      assert.is_nil(helper.read_file(d .. "/out/rivya-state.json"))
    end)

    it("rejects the whole batch with exit 3 when a line is invalid, naming every bad line", function()
      local d = batch_dir({ LINES[1], '{"prompt":"x","params":{"duration":7}}', "not json", LINES[2] })
      local r = run({ "batch", "jobs.jsonl" }, { cwd = d })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("line 2", 1, true) or r.err:find("line 3", 1, true))
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("runs every line together, records each task in the folder's ledger and saves every video", function()
      local d = batch_dir()
      local r = ok(run({ "batch", "jobs.jsonl", "--concurrency", "4", "--out-dir", "out", "--json" }, { cwd = d }))
      assert.are.equal(4, #r.json)
      local seen = {}
      for _, res in ipairs(r.json) do
        assert.are.equal("succeeded", res.status)
        assert.is_false(res.resumed)
        seen[res.line] = res.task_id
      end
      for _, path in ipairs(outputs(d)) do assert.is_true(is_mp4(path), path) end
      local state = state_of(d)
      assert.are.same(seen, task_ids(state))
      assert.matches("^rivya%-batch%-%x+$", state.lines["1"].idempotency_key)
      -- two identical lines are two wanted runs: two keys, two tasks
      assert.are_not.equal(state.lines["1"].idempotency_key, state.lines["4"].idempotency_key)
      local ledger = sim:ledger()
      assert.are.equal(4, ledger.tasks_created)
      assert.are.equal(1, ledger.files)
      assert.are.equal(0, ledger.cdn_auth_violations)
      assert.is_nil(helper.read_file(d .. "/out/.rivya/ledger.db"):find(helper.KEY, 1, true))
      -- a second run finds everything done and creates nothing
      r = ok(run({ "batch", "jobs.jsonl", "--out-dir", "out", "--json" }, { cwd = d }))
      for _, res in ipairs(r.json) do assert.is_true(res.resumed) end
      assert.are.equal(4, sim:ledger().tasks_created)
    end)

    it("resumes a batch killed midway: no task created twice, every video saved", function()
      local d = batch_dir()
      sim:config{ task_seconds = 30 }
      -- exec: the background job's pid is rivya's own
      assert(compat.execute(("(cd %s && exec %s >run1.out 2>run1.err </dev/null) & echo $! >%s"):format(sh(d),
        command_line({ "batch", "jobs.jsonl", "--concurrency", "2", "--out-dir", "out" }), sh(d .. "/pid"))))
      local pid = tonumber(helper.read_file(d .. "/pid"):match("%d+"))
      finally(function() compat.execute("kill -KILL " .. pid .. " 2>/dev/null") end)
      -- with 2 in flight and 30 s tasks the run stalls after its second create
      local ids = {}
      for _ = 1, 400 do
        ids = task_ids(state_of(d))
        if size(ids) >= 2 then break end
        helper.sleep(0.025)
      end
      assert.are.equal(2, size(ids), helper.read_file(d .. "/run1.err"))
      assert(compat.execute("kill -KILL " .. pid))
      for _ = 1, 200 do
        if not compat.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
        helper.sleep(0.025)
      end
      assert.are.equal(2, sim:ledger().tasks_created)
      for _, path in ipairs(outputs(d)) do assert.is_nil(helper.read_file(path)) end

      sim:config{ task_seconds = 0.2 }
      local r = ok(run({ "batch", "jobs.jsonl", "--concurrency", "2", "--out-dir", "out", "--json" }, { cwd = d }))
      local resumed = 0
      for _, res in ipairs(r.json) do
        assert.are.equal("succeeded", res.status)
        if res.resumed then
          resumed = resumed + 1
          assert.are.equal(ids[res.line], res.task_id)
        end
      end
      assert.are.equal(2, resumed)
      local ledger = sim:ledger()
      assert.are.equal(#LINES, ledger.tasks_created)
      assert.are.equal(#LINES, ledger.charges)
      for _, path in ipairs(outputs(d)) do assert.is_true(is_mp4(path), path) end
    end)

    it("replays, not re-creates, a task whose id never reached the ledger", function()
      local d = batch_dir()
      local first = ok(run({ "batch", "jobs.jsonl", "--out-dir", "out", "--json" }, { cwd = d }))
      local before = {}
      for _, res in ipairs(first.json) do before[res.line] = res.task_id end
      -- the ledger as a kill right before each answer was recorded would have left it
      assert(compat.execute(("sqlite3 %s %s"):format(sh(d .. "/out/.rivya/ledger.db"), sh(
        "UPDATE tasks SET id = NULL, status = 'sending', saved_path = NULL, saved_at = NULL, owner_pid = NULL"))))
      for _, path in ipairs(outputs(d)) do os.remove(path) end
      local r = ok(run({ "batch", "jobs.jsonl", "--out-dir", "out", "--json" }, { cwd = d }))
      for _, res in ipairs(r.json) do assert.are.equal(before[res.line], res.task_id) end
      local ledger = sim:ledger()
      assert.are.equal(#LINES, ledger.tasks_created)
      assert.are.equal(#LINES, ledger.idempotent_replays)
      assert.are.equal(1, ledger.files)   -- the recorded upload was reused, so the body matched
      for _, path in ipairs(outputs(d)) do assert.is_true(is_mp4(path), path) end
    end)

    it("reports a failed line with exit 1 and runs it again only with --retry-failed", function()
      local d = batch_dir({ LINES[1], '{"prompt":"breaks [[fail]]"}' })
      local r = run({ "batch", "jobs.jsonl", "--out-dir", "out", "--json" }, { cwd = d })
      assert.are.equal(1, r.code)
      local failed
      for _, res in ipairs(r.json) do if res.line == 2 then failed = res end end
      assert.are.equal("failed", failed.status)
      assert.are.equal("generation_failed", failed.error.code)
      assert.are.equal(1, run({ "batch", "jobs.jsonl", "--out-dir", "out" }, { cwd = d }).code)
      assert.are.equal(2, sim:ledger().tasks_created)
      assert.are.equal(1, run({ "batch", "jobs.jsonl", "--out-dir", "out", "--retry-failed" }, { cwd = d }).code)
      assert.are.equal(3, sim:ledger().tasks_created)
    end)

    it("exits 2 for a batch file that cannot be read", function()
      local r = run({ "batch", "/nonexistent/jobs.jsonl" })
      assert.are.equal(2, r.code)
      assert.truthy(r.err:find("cannot read", 1, true))
    end)
  end)

  describe("sweep", function()
    it("--dry-run prints the whole grid and its credits", function()
      local r = ok(run({ "sweep", "A paper boat", "--seed", "1..4", "--duration", "5,10", "--dry-run", "--json" }))
      assert.are.equal(9, #r.json)
      local combos = {}
      for i = 1, 8 do combos[#combos + 1] = r.json[i].params.seed .. "/" .. r.json[i].params.duration end
      table.sort(combos)
      assert.are.same({ "1/10", "1/5", "2/10", "2/5", "3/10", "3/5", "4/10", "4/5" }, combos)
      assert.are.same({ requests = 8, credits = 640, credits_to_reserve = 640 }, r.json[9])
      assert.are.equal(0, sim:ledger().requests)
    end)

    it("exits 2 for a malformed range and 3 when a value of the grid is invalid", function()
      assert.are.equal(2, run({ "sweep", "x", "--seed", "4..1", "--dry-run" }).code)
      local r = run({ "sweep", "x", "--duration", "5,7", "--dry-run" })
      assert.are.equal(3, r.code)
      assert.truthy(r.err:find("variant 2", 1, true))
    end)

    it("keeps the last whole index.html when writing the new one fails (a full disk)", function()
      local d = scratch("sweepfull")
      local args = { "sweep", "A full disk", "--seed", "1..2", "--out-dir", "sheet" }
      ok(run(args, { cwd = d }))
      local index = d .. "/sheet/index.html"
      local before = assert(helper.read_file(index))
      -- the temporary file of the next write is /dev/full: every byte written fails
      assert.is_true(compat.execute("ln -s /dev/full " .. sh(index .. ".tmp")))
      local r = run(args, { cwd = d })
      assert.are_not.equal(0, r.code)
      assert.truthy(r.err:find("index.html", 1, true), r.err)
      assert.are.equal(before, helper.read_file(index))
      assert.are.equal(2, sim:ledger().tasks_created)
    end)

    it("renders the grid and an index.html contact sheet that Chromium loads, lists and screenshots", function()
      local d = scratch("sweep")
      local r = ok(run({ "sweep", "A paper boat <drifting> & sinking", "--seed", "1..2", "--duration", "5,10",
        "--no-prompt-extend", "--out-dir", "sheet", "--json" }, { cwd = d }))
      assert.are.equal(4, #r.json)
      assert.are.equal(4, sim:ledger().tasks_created)
      local index = d .. "/sheet/index.html"
      local html = assert(helper.read_file(index))
      assert.is_nil(html:find("<script", 1, true))
      assert.is_nil(html:find("http", 1, true))   -- self-contained: nothing fetched
      for _, res in ipairs(r.json) do
        assert.are.equal("succeeded", res.status)
        assert.is_true(is_mp4(d .. "/" .. res.output), res.output)
      end

      local profile = helper.tmpdir()
      local function chromium(extra, out)
        return compat.execute(("timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic "
          .. "--no-first-run --disable-background-networking --disable-component-update --disable-sync "
          .. "--user-data-dir=%s %s file://%s >%s 2>%s"):format(sh(profile), extra, sh(index), sh(out),
          sh(d .. "/chromium.err")))
      end
      assert.is_true(chromium("--dump-dom", d .. "/dom.html"), helper.read_file(d .. "/chromium.err"))
      local dom = assert(helper.read_file(d .. "/dom.html"))
      assert.are.equal(4, count(dom, '<figure class="variant '))
      assert.truthy(dom:find("A paper boat &lt;drifting&gt; &amp; sinking", 1, true))
      for _, res in ipairs(r.json) do
        local figure = dom:match('<figure[^>]- id="variant%-' .. res.variant .. '".-</figure>')
        assert.truthy(figure, "variant " .. res.variant)
        local file = res.output:match("[^/]+$")
        assert.truthy(figure:find('<video src="' .. file .. '"', 1, true), file)
        assert.truthy(figure:find("<th>seed</th><td>" .. res.params.seed .. "</td>", 1, true))
        assert.truthy(figure:find("<th>duration</th><td>" .. res.params.duration .. "</td>", 1, true))
        assert.truthy(figure:find("<th>prompt_extend</th><td>false</td>", 1, true))
      end
      local shot = d .. "/sheet.png"
      assert.is_true(chromium("--screenshot=" .. sh(shot) .. " --window-size=1200,900", d .. "/shot.out"))
      local png = assert(helper.read_file(shot))
      assert.are.equal("\137PNG\r\n\26\n", png:sub(1, 8))
      assert.is_true(#png > 20000, "screenshot of " .. #png .. " bytes")
      helper.rmrf(profile)
    end)
  end)

  describe("installation", function()
    it("installs to PREFIX/bin with make install and finds the module through LUA_PATH", function()
      local prefix = scratch("prefix")
      assert.is_true(compat.execute(("make -s -C %s -o build install PREFIX=%s >%s/make.log 2>&1"):format(sh(ROOT),
        sh(prefix), sh(prefix))), helper.read_file(prefix .. "/make.log"))
      local env = ("LUA_PATH=%s LUA_CPATH=%s"):format(
        sh(prefix .. "/share/lua/" .. compat.version .. "/?.lua;" .. prefix .. "/share/lua/" .. compat.version
          .. "/?/init.lua;;"), sh(prefix .. "/lib/lua/" .. compat.version .. "/?.so;;"))
      local out, exited = helper.popen(("cd / && env %s %s --version && env %s %s models --offline --json"):format(env,
        sh(prefix .. "/bin/rivya"), env, sh(prefix .. "/bin/rivya")))
      assert.is_true(exited, out)
      assert.truthy(out:find("rivya " .. rivya.VERSION, 1, true))
      assert.truthy(out:find('"id":"wan-2-7-video"', 1, true))
    end)
  end)
end)
