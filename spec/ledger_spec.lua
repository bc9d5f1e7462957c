-- The ledger (SQLite, src/db.c + rivya.ledger) and the client's records,
-- against a real rivya-sim: creates recorded before they leave, interrupted
-- creates resumed under their key with their uploads, saves that fail after
-- a success kept pending, err.task on every error after a create.
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local Ledger = require "rivya.ledger"
local compat = require "rivya.compat"

local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. string.rep("\0", 600)
local CREATE = "/api/v1/generations"

local function request(prompt, params)
  return { model = "wan-2-7-video", prompt = prompt or "a paper boat on a rainy street", params = params or {} }
end

local function mode_of(path)
  local p = io.popen("stat -c %a " .. helper.sh_quote(path))
  local m = p:read("*l")
  p:close()
  return m
end

local function sqlite(db, sql)
  local p = io.popen(("sqlite3 %s %s 2>&1"):format(helper.sh_quote(db), helper.sh_quote(sql)))
  local out = p:read("*a")
  p:close()
  return (out:gsub("\n$", ""))
end

describe("the SQLite binding", function()
  local dir
  setup(function() dir = helper.tmpdir() end)
  teardown(function() helper.rmrf(dir) end)

  it("creates the file 0600 in new folders 0700, in WAL mode", function()
    local path = dir .. "/a/b/ledger.db"
    local db = assert(core.db_open(path))
    assert(db:exec("CREATE TABLE t(x)"))
    assert.are.equal("600", mode_of(path))
    assert.are.equal("700", mode_of(dir .. "/a"))
    assert.are.equal("700", mode_of(dir .. "/a/b"))
    db:close()
    assert.are.equal("wal", sqlite(path, "PRAGMA journal_mode"))
  end)

  it("keeps integers integers, floats floats, bytes bytes and nil NULL", function()
    local db = assert(core.db_open(dir .. "/types.db"))
    assert(db:exec("CREATE TABLE t(a, b, c, d, e)"))
    local ins = assert(db:prepare("INSERT INTO t VALUES (?, ?, ?, ?, ?)"))
    assert.is_false(ins:bind(compat.maxinteger, 2.5, "a\0b", nil, true):step())
    local row = assert(db:prepare("SELECT * FROM t")):step()
    assert.are.equal(compat.maxinteger, row.a)
    assert.are.equal("integer", compat.math_type(row.a))
    assert.are.equal("float", compat.math_type(row.b))
    assert.are.equal("a\0b", row.c)
    assert.is_nil(row.d)
    assert.are.equal(1, row.e)
    db:close()
  end)

  it("stores hostile text as data: nothing is spliced into SQL", function()
    local db = assert(core.db_open(dir .. "/inject.db"))
    assert(db:exec("CREATE TABLE t(x)"))
    local evil = "'); DROP TABLE t; --"
    assert(db:prepare("INSERT INTO t VALUES (?)")):bind(evil):step()
    assert.are.equal(evil, assert(db:prepare("SELECT x FROM t")):step().x)
    db:close()
  end)

  it("returns nil, err for bad SQL and a path that is not a file; raises on misuse", function()
    local db = assert(core.db_open(dir .. "/misuse.db"))
    local st, err = db:prepare("SELEKT 1")
    assert.is_nil(st)
    assert.are.equal("io", err.code)
    assert.matches("syntax error", err.message)
    assert.has_error(function() assert(db:prepare("SELECT ?")):bind({}) end)
    local stmt = assert(db:prepare("SELECT 1 AS one"))
    db:close()
    db:close()
    assert.has_error(function() stmt:step() end, "rivya: attempt to use a statement of a closed ledger")
    stmt:finalize()
    stmt:finalize()
    assert.has_error(function() db:exec("SELECT 1") end, "rivya: attempt to use a closed ledger")
    local none, derr = core.db_open(dir)
    assert.is_nil(none)
    assert.matches("Is a directory", derr.message)
  end)

  it("locks a folder against a second process and names the holder's pid", function()
    local path = dir .. "/lock"
    local lock = assert(core.lock(path))
    local p = io.popen((helper.LUA .. " -e %s"):format(helper.sh_quote(
      "local core = require 'rivya.core'; local l, e, pid = core.lock(" .. ("%q"):format(path)
      .. "); io.write(tostring(l), ' ', tostring(pid))")))
    local out = p:read("*a")
    p:close()
    local self_pid = assert(helper.read_file("/proc/self/stat")):match("^(%d+)")
    assert.are.equal("nil " .. self_pid, out)
    lock:unlock()
    lock:unlock()
    p = io.popen((helper.LUA .. " -e %s"):format(helper.sh_quote(
      "local core = require 'rivya.core'; io.write(tostring(core.lock(" .. ("%q"):format(path) .. ") ~= nil))")))
    out = p:read("*a")
    p:close()
    assert.are.equal("true", out)
  end)

  it("hashes a file like sha256sum", function()
    local path = dir .. "/blob"
    helper.write_file(path, string.rep("rivya", 100000))
    local p = io.popen("sha256sum " .. helper.sh_quote(path))
    local want = p:read("*a"):match("^(%x+)")
    p:close()
    assert.are.equal(want, core.sha256_file(path))
    helper.write_file(path, "")
    assert.are.equal(core.sha256(""), core.sha256_file(path))
  end)
end)

describe("the ledger", function()
  local sim, dir, n = nil, nil, 0

  -- a client with its own ledger file (returned too)
  local function new_client(opts)
    n = n + 1
    local path = ("%s/ledger-%d.db"):format(dir, n)
    return helper.client(sim, { ledger = path }, opts), path
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.2", "--credits", "100000" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function() sim:reset() end)

  it("is off by default in the library", function()
    local client = rivya.new{ api_key = helper.KEY, base_url = sim.url }
    assert.is_nil(client.ledger)
    client:close()
  end)

  it("records a create before it leaves: a create the server made but never answered is there", function()
    local client, path = new_client{ max_retries = 0 }
    -- (twice: libcurl itself sends again once when a reused connection drops)
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "drop_after_commit", times = 2 }
    local task, err = client:create(request("recorded before sending"))
    assert.is_nil(task)
    assert.are.equal("network", err.code)
    assert.are.equal(1, sim:ledger().tasks_created)
    local rows = assert(rivya.ledger(path)):tasks()
    assert.are.equal(1, #rows)
    assert.are.equal("sending", rows[1].status)
    assert.are.equal(err.idempotency_key, rows[1].idempotency_key)
    assert.are.equal("recorded before sending", rows[1].prompt)
    assert.are.equal(80, rows[1].credits)
    assert.is_nil(rows[1].id)
    client:close()
  end)

  it("resumes an unanswered create under its key: 1 task, 1 charge", function()
    local client, path = new_client{ max_retries = 0 }
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "drop_after_commit", times = 1 }
    local req = request("resume me", { duration = 5, seed = 7 })
    local _, err = client:generate(req)
    assert.are.equal("network", err.code)
    -- the same request again, its params built in another order: the same create
    local again = assert(client:generate(request("resume me", { seed = 7, duration = "5" })))
    assert.are.equal("succeeded", again.status)
    assert.are.equal(err.idempotency_key, again.idempotency_key)
    local sl = sim:ledger()
    assert.are.equal(1, sl.tasks_created)
    assert.are.equal(1, sl.charges)
    assert.are.equal(1, sl.idempotent_replays)
    local rows = assert(rivya.ledger(path)):tasks()
    assert.are.equal(1, #rows)
    assert.are.equal(again.id, rows[1].id)
    assert.are.equal("succeeded", rows[1].status)
    client:close()
  end)

  it("resumes a create with a local reference: the recorded upload is reused, the body is the same", function()
    local client = new_client{ max_retries = 0 }
    local photo = dir .. "/photo.png"
    helper.write_file(photo, PNG)
    local req = request("from this photo", { referenceMediaItems = { photo } })
    -- twice: libcurl itself sends a request again once when a reused connection dies
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "drop_after_commit", times = 2 }
    local _, err = client:create(req)
    assert.are.equal("network", err.code)
    local task = assert(client:create(req))
    assert.are.equal(err.idempotency_key, task.idempotency_key)
    local sl = sim:ledger()
    assert.are.equal(1, sl.tasks_created)
    assert.are.equal(1, sl.files)
    client:close()
  end)

  it("sends an upload interrupted before its answer again under its own key", function()
    local client = new_client{ max_retries = 0 }
    local photo = dir .. "/photo2.png"
    helper.write_file(photo, PNG)
    local req = request("upload lost", { referenceMediaItems = { photo } })
    sim:fault{ listener = "api", method = "POST", path = "/api/v1/files", action = "drop_after_commit", times = 1 }
    local _, err = client:create(req)
    assert.are.equal("network", err.code)
    assert.are.equal(1, sim:ledger().files)
    local task = assert(client:create(req))
    assert.are.equal(err.idempotency_key, task.idempotency_key)
    local sl = sim:ledger()
    assert.are.equal(1, sl.files)
    assert.are.equal(1, sl.tasks_created)
    client:close()
  end)

  it("does not resume a create whose file changed since", function()
    local client = new_client{ max_retries = 0 }
    local photo = dir .. "/photo3.png"
    helper.write_file(photo, PNG)
    local req = request("file changed", { referenceMediaItems = { photo } })
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "drop_after_commit", times = 2 }
    local _, err = client:create(req)
    helper.write_file(photo, PNG .. "more bytes")
    local task = assert(client:create(req))
    assert.are_not.equal(err.idempotency_key, task.idempotency_key)
    assert.are.equal(2, sim:ledger().files)
    client:close()
  end)

  it("never joins a create that got its answer, nor one in flight in the same process", function()
    local client = new_client()
    local req = request("twice on purpose")
    local a = assert(client:generate(req))
    local b = assert(client:generate(req))
    assert.are_not.equal(a.id, b.id)
    local results = rivya.gather({
      function() return client:create(req) end,
      function() return client:create(req) end,
    })
    assert.are_not.equal(results[1][1].idempotency_key, results[2][1].idempotency_key)
    assert.are.equal(4, sim:ledger().tasks_created)
    client:close()
  end)

  it("never joins a create another live process is sending", function()
    local client, path = new_client()
    local req = request("a live neighbour")
    -- a row as a live process (this spec's parent shell) would leave it
    local ledger = assert(Ledger.open(path))
    local hash = core.sha256(Ledger.canonical(assert(rivya.validate(req))))
    local ppid = tonumber(helper.read_file("/proc/self/stat"):match("^%d+ %b() %S+ (%d+)"))
    assert(ledger:run([[INSERT INTO tasks(key, request_hash, status, owner_pid, owner_start,
      created_at, updated_at)
      VALUES ('rivya-neighbour', ?, 'sending', ?, ?, ?, ?)]], hash, ppid,
      Ledger.start_of(ppid), os.time(), os.time()))
    local task = assert(client:create(req))
    assert.are_not.equal("rivya-neighbour", task.idempotency_key)
    -- the same row, its process gone (another start time): taken over
    assert(ledger:run("UPDATE tasks SET owner_start = owner_start + 1 WHERE key = 'rivya-neighbour'"))
    task = assert(client:create(req))
    assert.are.equal("rivya-neighbour", task.idempotency_key)
    ledger:close()
    client:close()
  end)

  it("resumes a create answered 2xx with a body that is not JSON: the task exists, 1 charge", function()
    local client, path = new_client{ max_retries = 0 }
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "invalid_json", times = 1 }
    local req = request("answered but garbled")
    local _, err = client:create(req)
    assert.are.equal("bad_response", err.code)
    assert.are.equal(1, sim:ledger().tasks_created)
    local ledger = assert(rivya.ledger(path))
    assert.are.equal("sending", ledger:tasks()[1].status)
    local task = assert(client:create(req))
    assert.are.equal(err.idempotency_key, task.idempotency_key)
    assert.are.equal(1, sim:ledger().tasks_created)
    assert.are.equal(1, sim:ledger().charges)
    ledger:close()
    client:close()
  end)

  it("marks a refused create rejected: not pending, not resumed", function()
    local client, path = new_client()
    sim:config{ credits = 10 }
    local _, err = client:create(request("too poor"))
    assert.are.equal("insufficient_credits", err.code)
    local ledger = assert(rivya.ledger(path))
    assert.are.equal("rejected", ledger:tasks()[1].status)
    assert.are.same({}, ledger:tasks{ status = "pending" })
    assert.are.equal(1, #ledger:tasks{ status = "failed" })
    sim:config{ credits = 1000 }
    local task = assert(client:create(request("too poor")))
    assert.are_not.equal(err.idempotency_key, task.idempotency_key)
    ledger:close()
    client:close()
  end)

  it("marks a refused create sending again when its key is sent again: unanswered, it is pending", function()
    local client, path = new_client{ max_retries = 0 }
    sim:config{ credits = 10 }
    local req = request("refused, then paid")
    req.idempotency_key = "rivya-again-after-402"
    local _, err = client:create(req)
    assert.are.equal("insufficient_credits", err.code)
    sim:config{ credits = 1000 }
    -- (twice: libcurl itself sends once more when a reused connection drops)
    sim:fault{ listener = "api", method = "POST", path = CREATE, action = "drop_after_commit", times = 2 }
    local task
    task, err = client:create(req)
    assert.is_nil(task, task and task.id)
    assert.are.equal("network", err.code)
    assert.are.equal(1, sim:ledger().tasks_created)
    local ledger = assert(rivya.ledger(path))
    local pending = ledger:tasks{ status = "pending" }
    assert.are.equal(1, #pending)
    assert.are.equal("sending", pending[1].status)
    assert.are.equal("rivya-again-after-402", pending[1].idempotency_key)
    ledger:close()
    client:close()
  end)

  it("records every status, the final credits, the result and the save (bytes, sha256)", function()
    local client, path = new_client()
    local out = dir .. "/boat.mp4"
    local seen = {}
    local task = assert(client:generate(request("keep it all"), { output = out,
      on_update = function(t) seen[#seen + 1] = t.status end }))
    local row = assert(rivya.ledger(path)):tasks()[1]
    assert.are.equal(task.id, row.id)
    assert.are.equal("succeeded", row.status)
    assert.are.equal(out, row.output)
    assert.is_true(row.saved)
    assert.are.equal(#helper.read_file(out), row.saved_bytes)
    assert.are.equal(core.sha256(helper.read_file(out)), row.sha256)
    assert.are.equal(80, row.credits)
    assert.are.same({ task.result.primary_url }, row.result_urls)
    local ledger = assert(rivya.ledger(path))
    assert.are.same({}, ledger:tasks{ status = "pending" })
    assert.are.equal("succeeded", seen[#seen])
    ledger:close()
    client:close()
  end)

  it("lists tasks newest first as plain tables, by status and age", function()
    local client, path = new_client()
    assert(client:generate(request("first")))
    local _, ferr = client:generate(request("then [[fail]]"))
    assert.are.equal("generation_failed", ferr.code)
    local ledger = assert(rivya.ledger(path))
    local all = ledger:tasks()
    assert.are.equal(2, #all)
    assert.are.equal("then [[fail]]", all[1].prompt)
    assert.is_nil(getmetatable(all[1]))
    assert.are.equal(1, #ledger:tasks{ status = "failed" })
    assert.are.equal("failed", ledger:tasks{ status = "failed" }[1].status)
    assert.are.equal(1, #ledger:tasks{ status = "succeeded" })
    assert.are.equal(2, #ledger:tasks{ since = 3600 })
    assert(ledger:run("UPDATE tasks SET created_at = created_at - 7200 WHERE prompt = 'first'"))
    assert.are.equal(1, #ledger:tasks{ since = 3600 })
    assert.has_error(function() ledger:tasks{ state = "failed" } end, "ledger:tasks: unknown option 'state'")
    ledger:close()
    assert.has_error(function() ledger:tasks() end, "rivya: attempt to use a closed ledger")
    client:close()
  end)

  describe("destination checks before a create", function()
    for _, case in ipairs{
      { "a missing folder", function(d) return d .. "/missing/out.mp4" end, "does not exist" },
      { "a directory", function(d) return d end, "is a directory" },
      { "a device", function() return "/dev/null" end, "is a device" },
      { "a file as its folder", function(d)
          helper.write_file(d .. "/plain", "x")
          return d .. "/plain/out.mp4"
        end, "is a file" },
    } do
      it("refuses " .. case[1] .. " before anything is sent", function()
        local client = new_client()
        local task, err = client:generate(request("nowhere to go"), { output = case[2](dir) })
        assert.is_nil(task)
        assert.are.equal("validation_failed", err.code)
        assert.are.equal("output", err.field)
        assert.matches(case[3], err.message, 1, true)
        assert.are.equal(0, sim:ledger().requests)
        client:close()
      end)
    end
  end)

  it("names the task, the path and the command after a save that fails, and keeps it pending", function()
    local client, path = new_client()
    local folder = dir .. "/vanishing"
    compat.execute("mkdir -p " .. helper.sh_quote(folder))
    local out = folder .. "/v.mp4"
    local task, err = client:generate(request("saved later"), { output = out,
      on_update = function(t)
        if t.status == "succeeded" then compat.execute("rm -rf " .. helper.sh_quote(folder)) end
      end })
    assert.is_nil(task)
    assert.are.equal("io", err.code)
    assert.is_string(err.task.id)
    assert.matches(err.task.id, err.message, 1, true)
    assert.matches(out, err.message, 1, true)
    assert.matches("rivya download " .. err.task.id .. " " .. out, err.message, 1, true)
    local ledger = assert(rivya.ledger(path))
    local pending = ledger:tasks{ status = "pending" }
    assert.are.equal(1, #pending)
    assert.are.equal(err.task.id, pending[1].id)
    assert.are.equal(out, pending[1].output)
    -- once the cause is gone, downloading it ends the pending state
    compat.execute("mkdir -p " .. helper.sh_quote(folder))
    assert(client:download(err.task, out))
    assert.are.same({}, ledger:tasks{ status = "pending" })
    ledger:close()
    client:close()
  end)

  it("returns err.task for an error raised in on_update or on_progress", function()
    local client = new_client()
    local task, err = client:generate(request("callback trouble"), { on_update = function(t)
      if t.status ~= "queued" then error("boom in on_update") end
    end })
    assert.is_nil(task)
    assert.are.equal("callback_failed", err.code)
    assert.matches("boom in on_update", err.message)
    assert.is_string(err.task.id)
    assert.is_string(err.idempotency_key)
    task, err = client:generate(request("progress trouble"), { output = dir .. "/p.mp4",
      on_progress = function() error({ reason = "table" }) end })
    assert.is_nil(task)
    assert.are.equal("callback_failed", err.code)
    assert.are.equal("succeeded", err.task.status)
    assert.matches("rivya download " .. err.task.id, err.message, 1, true)
    -- a rivya error raised by the callback keeps its code and gets the task
    task, err = client:generate(request("raised error"), { on_update = function()
      error(rivya.new and require("rivya.errors").new("timeout", "mine"))
    end })
    assert.is_nil(task)
    assert.are.equal("timeout", err.code)
    assert.is_string(err.task.id)
    client:close()
  end)

  it("returns err.task for a failure after the create without a ledger too", function()
    local client = helper.client(sim, { max_retries = 0 })
    sim:fault{ listener = "api", method = "GET", path = "/api/v1/generations/", action = "respond",
      status = 401, times = 1, body = '{"error":{"code":"invalid_api_key","message":"no"}}' }
    local task, err = client:generate(request("polled out"))
    assert.is_nil(task)
    assert.is_string(err.task and err.task.id)
    client:close()
  end)

  it("opens the default path from RIVYA_LEDGER or XDG_STATE_HOME, and none with RIVYA_LEDGER=off", function()
    local function run(env, code)
      local p = io.popen(("env %s %s -e %s 2>&1"):format(env, helper.LUA, helper.sh_quote(code)))
      local out = p:read("*a")
      p:close()
      return out
    end
    local code = "local r = require 'rivya'; local c = r.new{api_key='k', ledger=true};"
      .. " io.write(c.ledger and c.ledger.path or 'none'); c:close()"
    assert.are.equal(dir .. "/env.db", run("RIVYA_LEDGER=" .. dir .. "/env.db", code))
    assert.are.equal(dir .. "/xdg/rivya/ledger.db", run("-u RIVYA_LEDGER XDG_STATE_HOME=" .. dir .. "/xdg", code))
    assert.are.equal("700", mode_of(dir .. "/xdg/rivya"))
    assert.are.equal("600", mode_of(dir .. "/xdg/rivya/ledger.db"))
    assert.are.equal(dir .. "/home/.local/state/rivya/ledger.db",
      run("-u RIVYA_LEDGER -u XDG_STATE_HOME HOME=" .. dir .. "/home", code))
    assert.are.equal("none", run("RIVYA_LEDGER=off", code))
    assert.has_error(function() rivya.new{ ledger = 42 } end,
      "rivya.new: option 'ledger' must be a path, true or false, got number")
    assert.has_error(function() rivya.new{ ledger = "/dev/null" } end)
  end)
end)
