-- The ledger from the command line, attacked: two batch runs at the same
-- instant, Ctrl-C during a slow create, a save that fails after success,
-- outputs escaping the folder, kill -9 of a batch at random points. Real
-- bin/rivya processes against this file's own rivya-sim.
local helper = require "helper"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local sh = helper.sh_quote
local RIVYA = helper.ROOT .. "/bin/rivya"
local PNG = helper.ROOT .. "/examples/assets/first_frame.png"
local SAMPLE = helper.read_file(helper.ROOT .. "/sim/sample.mp4")

local function sqlite(db, sql)
  local p = io.popen(("sqlite3 %s %s 2>&1"):format(sh(db), sh(sql)))
  local out = p:read("*a")
  p:close()
  return (out:gsub("\n$", ""))
end

local function alive(pid)
  return compat.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

describe("the ledger from the command line", function()
  local sim, tmp, serial = nil, nil, 0

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05", "--credits", "10000000" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(tmp)
  end)

  before_each(function() sim:reset() end)

  local function scratch(name)
    serial = serial + 1
    local d = ("%s/%s-%d"):format(tmp, name, serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    return d
  end

  -- the shell command running rivya in `cwd` with its own ledger there
  local function command_line(cwd, args, env)
    local vars = { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY, RIVYA_POLL_INTERVAL = "0.05",
      TERM = "dumb", RIVYA_LEDGER = cwd .. "/user-ledger.db" }
    for k, v in pairs(env or {}) do vars[k] = v end
    local set = {}
    for k, v in pairs(vars) do set[#set + 1] = sh(k .. "=" .. v) end
    table.sort(set)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh(a) end
    return ("cd %s && exec env %s %s %s %s"):format(sh(cwd), table.concat(set, " "), helper.LUA, sh(RIVYA),
      table.concat(quoted, " "))
  end

  local function run(cwd, args, env)
    serial = serial + 1
    local out, err = ("%s/.out-%d"):format(cwd, serial), ("%s/.err-%d"):format(cwd, serial)
    local _, how, code = compat.execute(("(%s) </dev/null >%s 2>%s"):format(command_line(cwd, args, env), sh(out),
      sh(err)))
    local r = { code = how == "exit" and code or -1, out = helper.read_file(out) or "",
      err = helper.read_file(err) or "", json = {} }
    os.remove(out)
    os.remove(err)
    for line in r.out:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then r.json[#r.json + 1] = assert(cjson.decode(line), line) end
    end
    return r
  end

  -- start rivya in the background; returns its pid (rivya's own: exec)
  local function start(cwd, args, tag)
    assert(compat.execute(("(%s) </dev/null >%s 2>%s & echo $! >%s"):format(command_line(cwd, args),
      sh(cwd .. "/" .. tag .. ".out"), sh(cwd .. "/" .. tag .. ".err"), sh(cwd .. "/" .. tag .. ".pid"))))
    return tonumber(helper.read_file(cwd .. "/" .. tag .. ".pid"):match("%d+"))
  end

  local function wait_exit(pid)
    for _ = 1, 2400 do
      if not alive(pid) then return true end
      helper.sleep(0.025)
    end
    return false
  end

  local function ok(r)
    assert.are.equal(0, r.code, "stderr: " .. r.err .. "\nstdout: " .. r.out)
    return r
  end

  local function write_lines(path, lines)
    helper.write_file(path, table.concat(lines, "\n") .. "\n")
  end

  it("lets only one of two batch runs started at the same instant create: 20 times, 0 extra tasks", function()
    local lines = { '{"prompt":"A heron in fog"}', '{"prompt":"A lantern on a pier"}' }
    local refused = 0
    for i = 1, 20 do
      local d = scratch("race")
      write_lines(d .. "/jobs.jsonl", lines)
      local before = sim:ledger().tasks_created
      -- both from one shell, backgrounded together
      local cmd = command_line(d, { "batch", "jobs.jsonl", "--out-dir", "out", "-q" })
      assert(compat.execute(("(%s) >%s 2>%s & (%s) >%s 2>%s & wait"):format(cmd, sh(d .. "/a.out"), sh(d .. "/a.err"),
        cmd, sh(d .. "/b.out"), sh(d .. "/b.err"))) ~= nil)
      local created = sim:ledger().tasks_created - before
      assert.are.equal(#lines, created, ("round %d: %d tasks for %d lines"):format(i, created, #lines))
      for _, tag in ipairs({ "a", "b" }) do
        local err = helper.read_file(d .. "/" .. tag .. ".err")
        if err:find("another rivya batch", 1, true) then
          refused = refused + 1
          assert.matches("^rivya: another rivya batch %(pid %d+%) is working in out\n$", err)
          assert.are.equal("", helper.read_file(d .. "/" .. tag .. ".out"))
        end
      end
      for _, name in ipairs({ "line-01.mp4", "line-02.mp4" }) do
        assert.are.equal(SAMPLE, helper.read_file(d .. "/out/" .. name))
      end
    end
    -- the lock, not luck: in 20 rounds the second run met the first at least once
    assert.is_true(refused >= 1)
    assert.are.equal(40, sim:ledger().charges)
  end)

  it("exits 1 before any request when another run holds the folder, naming its pid", function()
    local d = scratch("held")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"A held folder"}' })
    assert(compat.execute("mkdir -p " .. sh(d .. "/out/.rivya")))
    -- a process holding the folder's lock: a Lua one-liner that waits
    assert(compat.execute(("cd %s && (%s -e %s & echo $! >holder.pid)"):format(sh(d), helper.LUA, sh(
      "local core = require 'rivya.core'; local l = assert(core.lock('out/.rivya/lock')); "
      .. "io.open('locked', 'w'):close(); os.execute('sleep 30')"))))
    local pid = tonumber(helper.read_file(d .. "/holder.pid"):match("%d+"))
    finally(function() compat.execute("kill -KILL " .. pid .. " 2>/dev/null") end)
    for _ = 1, 400 do
      if helper.read_file(d .. "/locked") then break end
      helper.sleep(0.025)
    end
    local before = sim:ledger().requests
    local r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out" })
    assert.are.equal(1, r.code)
    assert.are.equal(("rivya: another rivya batch (pid %d) is working in out\n"):format(pid), r.err)
    assert.are.equal(before, sim:ledger().requests)
  end)

  for _, with_ref in ipairs({ false, true }) do
    it("resumes a create interrupted by SIGINT while the server is slow: 1 task" .. (with_ref and ", with --ref" or ""),
      function()
        local d = scratch("sigint")
        local args = { "generate", "A slow answer " .. tostring(with_ref), "-o", "slow.mp4" }
        if with_ref then
          args[#args + 1] = "--ref"
          args[#args + 1] = PNG
        end
        sim:fault{ listener = "api", method = "POST", path = "/api/v1/generations", action = "delay",
          delay_ms = 1500, times = 1 }
        local pid = start(d, args, "first")
        finally(function() compat.execute("kill -KILL " .. pid .. " 2>/dev/null") end)
        -- the create's row is committed, and the request has reached the simulator
        local db = d .. "/user-ledger.db"
        for _ = 1, 400 do
          if helper.read_file(db) and sqlite(db, "SELECT count(*) FROM tasks WHERE status = 'sending'") == "1"
              and sim:ledger().files >= (with_ref and 1 or 0) then break end
          helper.sleep(0.025)
        end
        helper.sleep(0.3)
        assert(compat.execute("kill -INT " .. pid))
        assert.is_true(wait_exit(pid))
        local err = helper.read_file(d .. "/first.err")
        assert.matches("rivya: interrupted", err)
        assert.matches("same command again resumes it", err, 1, true)
        -- the slow create completes server-side: the task exists, its id never reached rivya
        for _ = 1, 400 do
          if sim:ledger().tasks_created == 1 then break end
          helper.sleep(0.025)
        end
        assert.are.equal(1, sim:ledger().tasks_created)
        local files = sim:ledger().files
        local r = ok(run(d, args))
        assert.matches("^task_%w+  succeeded  slow.mp4\n$", r.out)
        local sl = sim:ledger()
        assert.are.equal(1, sl.tasks_created)
        assert.are.equal(1, sl.charges)
        assert.are.equal(1, sl.idempotent_replays)
        assert.are.equal(files, sl.files)   -- the recorded upload was reused: the same body
        assert.are.equal(SAMPLE, helper.read_file(d .. "/slow.mp4"))
      end)
  end

  it("names the task and the command after a save that fails, lists it pending and resumes it", function()
    local d = scratch("save")
    assert(compat.execute("mkdir -p " .. sh(d .. "/renders")))
    sim:config{ task_seconds = 30 }
    finally(function() sim:config{ task_seconds = 0.05 } end)
    local pid = start(d, { "generate", "A save that fails", "-o", "renders/v.mp4", "-q" }, "gen")
    finally(function() compat.execute("kill -KILL " .. pid .. " 2>/dev/null") end)
    local db = d .. "/user-ledger.db"
    local id
    for _ = 1, 400 do
      id = helper.read_file(db) and sqlite(db, "SELECT id FROM tasks WHERE id IS NOT NULL")
      if id and id:match("^task_") then break end
      helper.sleep(0.025)
    end
    assert.matches("^task_%w+$", id)
    -- the folder goes away while the task runs, then the task succeeds
    assert(compat.execute("rm -rf " .. sh(d .. "/renders")))
    sim:config{ task_seconds = 0 }
    assert.is_true(wait_exit(pid))
    local err = helper.read_file(d .. "/gen.err")
    assert.matches(("task %s succeeded but its result could not be saved to renders/v.mp4"):format(id), err, 1, true)
    assert.matches(("rivya download %s renders/v.mp4"):format(id), err, 1, true)
    assert.are.equal(1, select(2, err:gsub("\n", "")))   -- one line, the last one
    local pending = ok(run(d, { "tasks", "--pending", "--json" }))
    assert.are.equal(1, #pending.json)
    assert.are.equal(id, pending.json[1].id)
    assert.are.equal("succeeded", pending.json[1].status)
    assert.are.equal("renders/v.mp4", pending.json[1].output)
    assert.is_false(pending.json[1].saved)
    -- the cause fixed, resume saves it, once
    assert(compat.execute("mkdir -p " .. sh(d .. "/renders")))
    local r = ok(run(d, { "resume" }))
    assert.matches(id .. "  succeeded  renders/v.mp4", r.out, 1, true)
    assert.are.equal(SAMPLE, helper.read_file(d .. "/renders/v.mp4"))
    assert.are.same({}, ok(run(d, { "tasks", "--pending", "--json" })).json)
    r = ok(run(d, { "resume" }))
    assert.are.equal("", r.out)
    assert.are.equal(1, sim:ledger().tasks_created)
    -- download with no FILE: the recorded path
    os.remove(d .. "/renders/v.mp4")
    r = ok(run(d, { "download", id }))
    assert.matches("saved renders/v.mp4", r.out, 1, true)
    assert.are.equal(SAMPLE, helper.read_file(d .. "/renders/v.mp4"))
  end)

  it("refuses an output that cannot be written before creating anything", function()
    local d = scratch("dest")
    assert(compat.execute("mkdir -p " .. sh(d .. "/adir")))
    for _, out in ipairs({ "missing/x.mp4", "adir", "/dev/null" }) do
      local r = run(d, { "generate", "Nowhere", "-o", out })
      assert.are.equal(3, r.code, r.err)
      assert.matches("output: ", r.err, 1, true)
    end
    assert.are.equal(0, sim:ledger().requests)
  end)

  it("lists tasks newest first, --failed, --since and --json with the documented fields", function()
    local d = scratch("tasks")
    ok(run(d, { "generate", "First of two", "-o", "one.mp4" }))
    assert.are.equal(1, run(d, { "generate", "Second one [[fail]]", "-o", "two.mp4" }).code)
    local r = ok(run(d, { "tasks" }))
    local first, second = r.out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.matches("^task_%w+  failed  wan%-2%-7%-video  %d+  %d+s  two.mp4 %(not saved%)  "
      .. "Second one %[%[fail%]%]$", first)
    assert.matches("^task_%w+  succeeded  wan%-2%-7%-video  80  %d+s  one.mp4  First of two$", second)
    local j = ok(run(d, { "tasks", "--json" })).json
    assert.are.equal(2, #j)
    for _, field in ipairs({ "id", "status", "model", "prompt", "credits", "output", "idempotency_key",
      "created_at" }) do
      assert.is_not_nil(j[2][field], field)
    end
    assert.are.equal(1, #ok(run(d, { "tasks", "--failed", "--json" })).json)
    assert.are.equal(2, #ok(run(d, { "tasks", "--since", "2h", "--json" })).json)
    sqlite(d .. "/user-ledger.db", "UPDATE tasks SET created_at = created_at - 10800 WHERE prompt = 'First of two'")
    assert.are.equal(1, #ok(run(d, { "tasks", "--since", "2h", "--json" })).json)
    assert.are.equal(2, run(d, { "tasks", "--since", "soon" }).code)
    -- RIVYA_LEDGER=off: no ledger at all
    local off = scratch("off")
    ok(run(off, { "generate", "Unrecorded", "-o", "u.mp4" }, { RIVYA_LEDGER = "off" }))
    assert.is_nil(helper.read_file(off .. "/user-ledger.db"))
    assert.are.equal(2, run(off, { "tasks" }, { RIVYA_LEDGER = "off" }).code)
  end)

  it("refuses batch outputs that escape the folder or name rivya's files, before anything is sent", function()
    local d = scratch("escape")
    for _, case in ipairs({
      { "/tmp/evil.mp4", "absolute path" },
      { "../evil.mp4", "leaves the output folder" },
      { "a/../../evil.mp4", "leaves the output folder" },
      { ".rivya/ledger.db", "rivya's own files" },
      { ".rivya", "rivya's own files" },
      { "rivya-state.json", "rivya's own files" },
    }) do
      write_lines(d .. "/jobs.jsonl", { '{"prompt":"fine"}', cjson.encode({ prompt = "bad", output = case[1] }) })
      local r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out" })
      assert.are.equal(3, r.code, case[1])
      assert.matches("line 2: output " .. case[1]:gsub("%p", "%%%0"), r.err)
      assert.matches(case[2], r.err, 1, true)
    end
    assert.are.equal(0, sim:ledger().requests)
    assert.is_nil(helper.read_file(d .. "/out/.rivya/ledger.db"))
    -- a subfolder inside is fine
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"nested","output":"shots/a.mp4"}' })
    ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out" }))
    assert.are.equal(SAMPLE, helper.read_file(d .. "/out/shots/a.mp4"))
  end)

  it("creates no task for a batch line whose output cannot be saved (a folder, a file as its folder)", function()
    local d = scratch("unsavable")
    assert(compat.execute("mkdir -p " .. sh(d .. "/out/clips") .. " && touch " .. sh(d .. "/out/flat")))
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"fine"}', '{"prompt":"into a folder","output":"clips"}',
      '{"prompt":"under a file","output":"flat/x.mp4"}' })
    local r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out", "--json" })
    assert.are_not.equal(0, r.code)
    local by_line = {}
    for _, res in ipairs(r.json) do if res.line then by_line[res.line] = res end end
    assert.are.equal("succeeded", by_line[1].status)
    for _, n in ipairs({ 2, 3 }) do
      assert.are.equal("error", by_line[n].status)
      assert.is_nil(by_line[n].task_id)
      assert.are.equal("output", by_line[n].error.field)
    end
    assert.are.equal(1, sim:ledger().tasks_created)
  end)

  it("keeps the old output of a line that changed, says so, and sums up the run", function()
    local d = scratch("changed")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"Line one"}', '{"prompt":"Line two [[fail]]"}' })
    local r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out", "--json" })
    assert.are.equal(1, r.code)
    for _, res in ipairs(r.json) do
      -- a failed task is refunded: it costs nothing
      assert.are.equal(res.status == "failed" and 0 or 80, res.credits)
    end
    assert.matches("2 lines: 1 succeeded, 1 failed %(line 2: generation_failed", r.err)
    r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out" })
    assert.matches("\n2 lines: 1 succeeded, 1 failed %(line 2: .*%); 80 credits\n$", r.out)
    helper.write_file(d .. "/out/line-01.mp4", SAMPLE .. "first render")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"Line one, edited"}', '{"prompt":"Line two"}' })
    r = ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out" }))
    assert.matches("line 1  task_%w+  succeeded  out/line%-01.mp4  %(line changed: the previous output is now "
      .. "out/line%-01.1.mp4%)", r.out)
    assert.are.equal(SAMPLE .. "first render", helper.read_file(d .. "/out/line-01.1.mp4"))
    assert.are.equal(SAMPLE, helper.read_file(d .. "/out/line-01.mp4"))
  end)

  it("gives a line edited back its own output, not the video of the edit it replaced", function()
    local d = scratch("reverted")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"Version A"}' })
    ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out" }))
    helper.write_file(d .. "/out/line-01.mp4", SAMPLE .. "A")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"Version B"}' })
    ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out" }))
    assert.are.equal(SAMPLE .. "A", helper.read_file(d .. "/out/line-01.1.mp4"))
    helper.write_file(d .. "/out/line-01.mp4", SAMPLE .. "B")
    -- back to A: its video is line-01.1.mp4 now; line-01.mp4 is B's and must not pass for A's
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"Version A"}' })
    local r = ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out" }))
    assert.matches("previous output is now out/line%-01.2.mp4", r.out)
    assert.are.equal(SAMPLE, helper.read_file(d .. "/out/line-01.mp4"))
    assert.are.equal(SAMPLE .. "B", helper.read_file(d .. "/out/line-01.2.mp4"))
    assert.are.equal(2, sim:ledger().tasks_created)
  end)

  it("records the name a result was saved under once named after its bytes (.wav, not .mp3)", function()
    local d = scratch("renamed")
    local r = ok(run(d, { "generate", "Hello there", "--model", "rivya-tts", "--voice", "ember", "--format", "wav",
      "--json" }))
    local task = r.json[#r.json]
    assert.matches("%.wav$", task.output)
    local rows = ok(run(d, { "tasks", "--json" })).json
    assert.are.equal(task.id, rows[1].id)
    assert.are.equal(task.output, rows[1].output)
    assert.are.same({}, ok(run(d, { "tasks", "--pending", "--json" })).json)
  end)

  it("names the task on the last line when the wait after a create fails for good, -q too", function()
    local d = scratch("lostwait")
    sim:fault{ listener = "api", method = "GET", path = "/api/v1/generations/", action = "respond", status = 404,
      times = 100 }
    local r = run(d, { "generate", "A wait that fails", "-o", "w.mp4", "-q" })
    assert.are_not.equal(0, r.code)
    local id = sim:ledger().tasks[1].id
    assert.matches("^task_%w+$", id)
    assert.matches(id, r.err, 1, true)
  end)

  it("refuses with exit 5 a batch the balance cannot pay, unless --allow-partial", function()
    local d = scratch("balance")
    write_lines(d .. "/jobs.jsonl", { '{"prompt":"one"}', '{"prompt":"two"}', '{"prompt":"three"}' })
    sim:config{ credits = 200 }
    finally(function() sim:config{ credits = 10000000 } end)
    local r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out" })
    assert.are.equal(5, r.code)
    assert.matches("needs 240 credits for 3 new tasks and the balance is 200", r.err, 1, true)
    assert.are.equal(0, sim:ledger().tasks_created)
    r = run(d, { "batch", "jobs.jsonl", "--out-dir", "out", "--allow-partial" })
    assert.are.equal(5, r.code)
    assert.are.equal(2, sim:ledger().tasks_created)
  end)

  it("survives kill -9 at random points: 25 kills, then tasks created == lines, whole outputs, integrity ok", function()
    local d = scratch("kill9")
    local lines = {}
    for i = 1, 6 do lines[i] = cjson.encode({ prompt = "Killed and resumed " .. i }) end
    lines[7] = cjson.encode({ prompt = "With a reference", params = { referenceMediaItems = { PNG } } })
    write_lines(d .. "/jobs.jsonl", lines)
    math.randomseed(os.time())
    local kills = 0
    for round = 1, 25 do
      local pid = start(d, { "batch", "jobs.jsonl", "--out-dir", "out", "-c", "3", "-q" }, "k" .. round)
      helper.sleep(math.random() * 0.5)
      if compat.execute("kill -KILL " .. pid .. " 2>/dev/null") then kills = kills + 1 end
      assert.is_true(wait_exit(pid))
    end
    assert.is_true(kills >= 20, kills .. " kills")
    ok(run(d, { "batch", "jobs.jsonl", "--out-dir", "out", "-q" }))
    local sl = sim:ledger()
    assert.are.equal(#lines, sl.tasks_created)
    assert.are.equal(#lines, sl.charges)
    for i = 1, #lines do
      assert.are.equal(SAMPLE, helper.read_file(("%s/out/line-%02d.mp4"):format(d, i)), "line " .. i)
    end
    assert.are.equal("ok", sqlite(d .. "/out/.rivya/ledger.db", "PRAGMA integrity_check"))
    assert.are.equal(tostring(#lines), sqlite(d .. "/out/.rivya/ledger.db",
      "SELECT count(*) FROM tasks WHERE status = 'succeeded' AND saved_at IS NOT NULL"))
  end)
end)
