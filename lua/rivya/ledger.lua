--- rivya.ledger: the durable record of every create, upload and save, in one
-- SQLite file (WAL). Each row is committed before the request it stands for
-- leaves the process, so an interrupted create can be resumed under the same
-- Idempotency-Key with the same body, and a task that was paid for is never
-- lost because the process that asked for it died.
--
-- One module behind a small interface (open, begin, answered, update,
-- saved, find_sending, uploads, tasks): see "Beyond one machine" in the README.
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"
local compat = require "rivya.compat"

local Ledger = {}
Ledger.__index = Ledger
Ledger.__name = "rivya.Ledger"

--- The schema's version, kept in PRAGMA user_version.
Ledger.SCHEMA_VERSION = 1

-- how long an unanswered create may be resumed (the service keeps keys
-- for a limited time; a day is what rivya relies on)
Ledger.RESUME_WINDOW = 24 * 3600

local FINAL = { succeeded = true, failed = true }

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS tasks (
  key TEXT PRIMARY KEY,             -- the create's Idempotency-Key
  request_hash TEXT NOT NULL,       -- what was asked (local files by path, size, mtime)
  job TEXT,                         -- a batch line's identity in its folder, else NULL
  attempt INTEGER NOT NULL DEFAULT 0,
  id TEXT,                          -- the task id, once the API answered
  status TEXT NOT NULL,             -- 'sending', 'rejected', then the API's statuses
  model TEXT,
  prompt TEXT,
  credits INTEGER,                  -- the estimate, before sending
  reserved_credits INTEGER,
  final_credits INTEGER,
  output TEXT,                      -- where the result is to be saved
  result_urls TEXT,                 -- JSON array
  error TEXT,
  saved_path TEXT,
  saved_bytes INTEGER,
  saved_sha256 TEXT,
  saved_at INTEGER,
  owner_pid INTEGER,                -- the process sending it (pid and start time)
  owner_start INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE INDEX IF NOT EXISTS tasks_id ON tasks(id);
CREATE INDEX IF NOT EXISTS tasks_sending ON tasks(request_hash) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job) WHERE job IS NOT NULL;
CREATE TABLE IF NOT EXISTS uploads (
  key TEXT PRIMARY KEY,             -- the upload's Idempotency-Key
  task_key TEXT NOT NULL,           -- the create it is for
  position INTEGER NOT NULL,        -- its index in referenceMediaItems
  path TEXT NOT NULL,
  size INTEGER,
  mtime INTEGER,
  kind TEXT,
  file_id TEXT,
  url TEXT,
  duration_token TEXT,
  file TEXT,                        -- the whole file object (JSON), once uploaded
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_task ON uploads(task_key);
CREATE TABLE IF NOT EXISTS saves (
  task_key TEXT NOT NULL,
  task_id TEXT,
  path TEXT NOT NULL,
  bytes INTEGER,
  sha256 TEXT,
  saved_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value TEXT
);
]]

local function now() return os.time() end

-- a rivya error from a failed ledger call (its err is already one)
local function fail(err)
  if errors.is(err) then return nil, err end
  return nil, errors.new("io", "ledger: " .. tostring(err))
end

--- rivya's folder of user state, ${XDG_STATE_HOME:-$HOME/.local/state}/rivya,
-- or nil when no home is known (the ledger and the CLI's catalog cache).
function Ledger.state_dir(getenv)
  getenv = getenv or os.getenv
  local state = getenv("XDG_STATE_HOME")
  if not state or state == "" then
    local home = getenv("HOME")
    if not home or home == "" then return nil end
    state = home .. "/.local/state"
  end
  return state .. "/rivya"
end

--- The default ledger path: RIVYA_LEDGER, else
-- ${XDG_STATE_HOME:-$HOME/.local/state}/rivya/ledger.db; nil when
-- RIVYA_LEDGER is `off` (or no home is known). getenv: default os.getenv.
function Ledger.default_path(getenv)
  getenv = getenv or os.getenv
  local env = getenv("RIVYA_LEDGER")
  if env == "off" then return nil end
  if env and env ~= "" then return env end
  local dir = Ledger.state_dir(getenv)
  return dir and dir .. "/ledger.db"
end

--- The JSON text of `v` with object keys sorted (json.canonical).
Ledger.canonical = json.canonical

--- A hex digest of `text`, for matching requests: SHA-256 from the C core.
function Ledger.digest(text)
  return core.sha256(text)
end

-- this process: pid and start time (clock ticks after boot), from /proc.
-- Together they name a process even after its pid is reused.
local self_owner
local function process_start(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  -- fields after the command name (which may hold spaces and parentheses)
  local rest = text and text:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local i = 3
  for field in rest:gmatch("%S+") do
    if i == 22 then return compat.tointeger(tonumber(field)) end
    i = i + 1
  end
  return nil
end

local function owner()
  if not self_owner then
    local f = io.open("/proc/self/stat", "rb")
    local pid = f and f:read("*a"):match("^(%d+)")
    if f then f:close() end
    pid = compat.tointeger(tonumber(pid)) or -1
    self_owner = { pid = pid, start = process_start(pid) or 0 }
  end
  return self_owner.pid, self_owner.start
end

--- The start time of process `pid` (clock ticks after boot) | nil.
Ledger.start_of = process_start

--- true when the process (pid, start) still runs.
function Ledger.alive(pid, start)
  if not pid then return false end
  local s = process_start(pid)
  return s ~= nil and s == start
end

-- creates sent by this process right now, by key: never resumed from here
local in_flight = {}

--- Open (creating if needed: 0600, folders 0700) the ledger at `path`.
-- opts.sync: "FULL" (default: a commit survives a power cut) or "NORMAL"
-- (survives any crash of the process). Returns the ledger | nil, err.
function Ledger.open(path, opts)
  if type(path) ~= "string" or path == "" then
    error("rivya.ledger: expected a path string, got " .. type(path), 2)
  end
  opts = opts or {}
  local db, err = core.db_open(path)
  if not db then return nil, err end
  local sync = opts.sync == "NORMAL" and "NORMAL" or "FULL"
  local ok, perr = db:exec("PRAGMA synchronous=" .. sync .. "; PRAGMA foreign_keys=OFF")
  if not ok then db:close() return nil, perr end
  local st = assert(db:prepare("PRAGMA user_version"))
  local row = st:step()
  st:finalize()
  local version = row and row.user_version or 0
  if version > Ledger.SCHEMA_VERSION then
    db:close()
    return nil, errors.new("io", ("ledger: %s has schema version %d; this rivya knows up to %d")
      :format(path, version, Ledger.SCHEMA_VERSION))
  end
  if version < Ledger.SCHEMA_VERSION then
    -- one transaction: two processes opening a new ledger at once agree
    ok, perr = db:exec("BEGIN IMMEDIATE; " .. SCHEMA .. " PRAGMA user_version = "
      .. Ledger.SCHEMA_VERSION .. "; COMMIT")
    if not ok then db:exec("ROLLBACK") db:close() return nil, perr end
  end
  return setmetatable({ db = db, path = path, stmts = {} }, Ledger)
end

function Ledger:__tostring()
  return ("rivya.Ledger(%s%s)"):format(self.path, self.db and "" or ", closed")
end

--- Close the database. Idempotent; also __gc and __close.
function Ledger:close()
  if not self.db then return end
  for _, st in pairs(self.stmts) do st:finalize() end
  self.stmts = {}
  self.db:close()
  self.db = nil
end
Ledger.__gc = Ledger.close
Ledger.__close = Ledger.close

-- a prepared statement per SQL text, kept for the ledger's life
function Ledger:_stmt(sql)
  if not self.db then error("rivya: attempt to use a closed ledger", 3) end
  local st = self.stmts[sql]
  if not st then
    local err
    st, err = self.db:prepare(sql)
    if not st then error(err, 3) end
    self.stmts[sql] = st
  end
  return st
end

--- Run a statement that returns no rows (each is its own transaction,
-- committed when this returns) | nil, err.
function Ledger:run(sql, ...)
  local st = self:_stmt(sql)
  local ok, err = st:bind(...):step()
  st:reset()
  if ok == nil then return fail(err) end
  return true
end

--- The first row of a query, or false | nil, err.
function Ledger:row(sql, ...)
  local st = self:_stmt(sql)
  local row, err = st:bind(...):step()
  st:reset()
  if row == nil then return fail(err) end
  return row
end

--- Every row of a query, as an array | nil, err.
function Ledger:rows(sql, ...)
  local st = self:_stmt(sql)
  st:bind(...)
  local list = {}
  while true do
    local row, err = st:step()
    if row == nil then st:reset() return fail(err) end
    if not row then break end
    list[#list + 1] = row
  end
  st:reset()
  return list
end

--- Run `fn` in one transaction (BEGIN IMMEDIATE: writers queue here, not at
-- the first write). Returns fn's results | nil, err (rolled back).
function Ledger:transaction(fn, ...)
  local ok, err = self.db:exec("BEGIN IMMEDIATE")
  if not ok then return fail(err) end
  local res = compat.pack(pcall(fn, ...))
  if not res[1] or res[2] == nil then
    self.db:exec("ROLLBACK")
    -- a failed statement (assert of nil, err) is a result; anything else a bug
    if not res[1] and not errors.is(res[2]) then error(res[2], 0) end
    if not res[1] then return nil, res[2] end
    return nil, res[3]
  end
  ok, err = self.db:exec("COMMIT")
  if not ok then self.db:exec("ROLLBACK") return fail(err) end
  return compat.unpack(res, 2, res.n)
end

--- A named value kept in the ledger (e.g. a batch folder's nonce): the
-- stored one, or `make()` stored now if there is none. Two processes
-- asking at once get the same value.
function Ledger:meta(name, make)
  return self:transaction(function()
    local row, err = self:row("SELECT value FROM meta WHERE name = ?", name)
    if row == nil then error(err, 0) end
    if row then return row.value end
    local value = make()
    assert(self:run("INSERT INTO meta(name, value) VALUES (?, ?)", name, value))
    return value
  end)
end

--- Record a create before it is sent. t: key, request_hash, model, prompt,
-- credits, output, job, attempt. Returns true | nil, err.
function Ledger:begin(t)
  local pid, start = owner()
  local at = now()
  in_flight[t.key] = true
  return self:run([[INSERT INTO tasks(key, request_hash, job, attempt, status, model, prompt, credits,
    output, owner_pid, owner_start, created_at, updated_at)
    VALUES (?, ?, ?, ?, 'sending', ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(key) DO UPDATE SET owner_pid = excluded.owner_pid, owner_start = excluded.owner_start,
      output = coalesce(excluded.output, output), updated_at = excluded.updated_at,
      status = CASE status WHEN 'rejected' THEN 'sending' ELSE status END]],
    t.key, t.request_hash, t.job, t.attempt or 0, t.model, t.prompt, t.credits, t.output,
    pid, start, at, at)
end

--- The create still `sending` (no answer recorded, younger than the
-- resume window) for `request_hash` that no live process is sending, taken
-- over by this process | false | nil, err.
function Ledger:find_sending(request_hash)
  local rows, err = self:rows([[SELECT key, owner_pid, owner_start FROM tasks
    WHERE request_hash = ? AND status = 'sending' AND created_at >= ? ORDER BY created_at DESC]],
    request_hash, now() - Ledger.RESUME_WINDOW)
  if not rows then return nil, err end
  local pid, start = owner()
  for _, row in ipairs(rows) do
    if not in_flight[row.key] and not (row.owner_pid == pid and row.owner_start == start)
        and not Ledger.alive(row.owner_pid, row.owner_start) then
      -- claim it: of two processes resuming at once, one wins
      local ok, cerr = self:run([[UPDATE tasks SET owner_pid = ?, owner_start = ?, updated_at = ?
        WHERE key = ? AND status = 'sending' AND owner_pid IS ? AND owner_start IS ?]],
        pid, start, now(), row.key, row.owner_pid, row.owner_start)
      if not ok then return nil, cerr end
      if self.db:changes() == 1 then
        in_flight[row.key] = true
        return self:row("SELECT * FROM tasks WHERE key = ?", row.key)
      end
    end
  end
  return false
end

--- The uploads recorded for a create, by position in referenceMediaItems.
function Ledger:uploads(task_key)
  local rows, err = self:rows("SELECT * FROM uploads WHERE task_key = ? ORDER BY position", task_key)
  if not rows then return nil, err end
  local by_position = {}
  for _, row in ipairs(rows) do
    if row.file then row.file = json.decode(row.file) end
    by_position[row.position] = row
  end
  return by_position
end

--- Record an upload before it is sent. t: key, task_key, position, path,
-- size, mtime, kind.
function Ledger:upload_begin(t)
  return self:run([[INSERT INTO uploads(key, task_key, position, path, size, mtime, kind, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(key) DO UPDATE SET size = excluded.size, mtime = excluded.mtime]],
    t.key, t.task_key, t.position, t.path, t.size, t.mtime, t.kind, now())
end

--- Record an upload's answer: the file object the create will carry.
function Ledger:upload_done(key, file)
  return self:run([[UPDATE uploads SET file_id = ?, url = ?, duration_token = ?, file = ? WHERE key = ?]],
    file.id, file.url, file.duration_token, json.encode(file), key)
end

-- the recorded fields of a task answer
local function task_fields(task)
  local r = type(task.result) == "table" and task.result or nil
  local urls = r and (type(r.urls) == "table" and r.urls or (r.primary_url and { r.primary_url })) or nil
  local message = type(task.error) == "table" and task.error.message or nil
  return compat.tointeger(task.reserved_credits), compat.tointeger(task.final_credits),
    urls and json.encode(urls) or nil, message
end

--- Record the API's answer to a create (the task id above all).
function Ledger:answered(key, task)
  in_flight[key] = nil
  local reserved, final, urls, message = task_fields(task)
  return self:run([[UPDATE tasks SET id = ?, status = ?, reserved_credits = ?, final_credits = ?,
    result_urls = coalesce(?, result_urls), error = ?, updated_at = ? WHERE key = ?]],
    task.id, task.status, reserved, final, urls, message, now(), key)
end

--- Record that a create was refused (no task exists, nothing to resume).
function Ledger:rejected(key, err)
  in_flight[key] = nil
  return self:run([[UPDATE tasks SET status = 'rejected', error = ?, updated_at = ? WHERE key = ?
    AND status = 'sending']], tostring(err and err.message or err), now(), key)
end

--- The create was not answered (network, timeout, interrupted): the row
-- stays `sending` for a later resume; this process lets go of it.
function Ledger:unanswered(key)
  in_flight[key] = nil
  return self:run("UPDATE tasks SET owner_pid = NULL, owner_start = NULL WHERE key = ? AND status = 'sending'", key)
end

--- Record a status change or the final result of task (by its id).
function Ledger:update(task)
  local reserved, final, urls, message = task_fields(task)
  return self:run([[UPDATE tasks SET status = ?, reserved_credits = coalesce(?, reserved_credits),
    final_credits = coalesce(?, final_credits), result_urls = coalesce(?, result_urls),
    error = coalesce(?, error), updated_at = ? WHERE id = ?]],
    task.status, reserved, final, urls, message, now(), task.id)
end

--- Record that task `id` was saved to `path` (bytes, sha256).
function Ledger:saved(id, path, bytes, sha256)
  local at = now()
  return self:transaction(function()
    local row, err = self:row("SELECT key FROM tasks WHERE id = ? ORDER BY created_at DESC LIMIT 1", id)
    if row == nil then error(err, 0) end
    assert(self:run("INSERT INTO saves(task_key, task_id, path, bytes, sha256, saved_at) VALUES (?, ?, ?, ?, ?, ?)",
      row and row.key or "", id, path, bytes, sha256, at))
    if row then
      assert(self:run([[UPDATE tasks SET saved_path = ?, saved_bytes = ?, saved_sha256 = ?, saved_at = ?,
        updated_at = ? WHERE key = ?]], path, bytes, sha256, at, at, row.key))
    end
    return true
  end)
end

--- Record a task created without a ledger row (e.g. `rivya wait ID --out`
-- of a task made elsewhere), so its save can be followed.
function Ledger:adopt(task, output)
  local row = self:row("SELECT key FROM tasks WHERE id = ?", task.id)
  if row then
    if output then return self:run("UPDATE tasks SET output = ? WHERE key = ?", output, row.key) end
    return true
  end
  local at = now()
  return self:run([[INSERT INTO tasks(key, request_hash, id, status, model, output, created_at, updated_at)
    VALUES (?, '', ?, ?, ?, ?, ?, ?)]], "adopted-" .. task.id, task.id, task.status,
    type(task.model) == "string" and task.model or nil, output, at, at)
end

-- the public shape of a task row
local function public(row)
  return {
    id = row.id, status = row.status, model = row.model, prompt = row.prompt,
    credits = row.final_credits and row.status == "succeeded" and row.final_credits > 0 and row.final_credits
      or row.reserved_credits or row.credits,
    estimated_credits = row.credits, reserved_credits = row.reserved_credits,
    final_credits = row.final_credits,
    output = row.saved_path or row.output, saved = row.saved_path ~= nil, saved_path = row.saved_path,
    saved_bytes = row.saved_bytes, sha256 = row.saved_sha256,
    idempotency_key = row.key, created_at = row.created_at, updated_at = row.updated_at,
    error = row.error, result_urls = row.result_urls and json.decode(row.result_urls) or nil,
    job = row.job,
  }
end

local TASK_FILTERS = {
  -- not final, or final but not saved where it was to be saved
  pending = "(status NOT IN ('succeeded', 'failed', 'rejected') OR (status = 'succeeded' AND output IS NOT NULL"
    .. " AND saved_at IS NULL))",
  failed = "status IN ('failed', 'rejected')",
}

--- The ledger's tasks, newest first, as plain tables (id, status, model,
-- prompt, credits, output, idempotency_key, created_at, ...). opts: status
-- ("pending", "failed" or an API status), since (seconds back), limit.
function Ledger:tasks(opts)
  if not self.db then error("rivya: attempt to use a closed ledger", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("ledger:tasks: options must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "status" and k ~= "since" and k ~= "limit" then
      error(("ledger:tasks: unknown option '%s'"):format(tostring(k)), 2)
    end
  end
  local where, args = { "1 = 1" }, {}
  if opts.status ~= nil then
    if type(opts.status) ~= "string" then error("ledger:tasks: status must be a string", 2) end
    if TASK_FILTERS[opts.status] then where[#where + 1] = TASK_FILTERS[opts.status]
    else
      where[#where + 1] = "status = ?"
      args[#args + 1] = opts.status
    end
  end
  if opts.since ~= nil then
    if type(opts.since) ~= "number" or opts.since ~= opts.since or opts.since < 0 then
      error("ledger:tasks: since must be a number of seconds >= 0", 2)
    end
    where[#where + 1] = "created_at >= ?"
    args[#args + 1] = now() - math.floor(opts.since)
  end
  local sql = "SELECT * FROM tasks WHERE " .. table.concat(where, " AND ")
    .. " ORDER BY created_at DESC, rowid DESC"
  if opts.limit then
    sql = sql .. " LIMIT ?"
    args[#args + 1] = compat.tointeger(opts.limit) or error("ledger:tasks: limit must be an integer", 2)
  end
  local rows, err = self:rows(sql, compat.unpack(args))
  if not rows then return nil, err end
  for i, row in ipairs(rows) do rows[i] = public(row) end
  return rows
end

--- One task by id (or idempotency key), as tasks() shows it | false.
function Ledger:task(id)
  local row, err = self:row("SELECT * FROM tasks WHERE id = ? OR key = ? ORDER BY created_at DESC LIMIT 1", id, id)
  if row == nil then return nil, err end
  return row and public(row)
end

Ledger.FINAL = FINAL

return Ledger
