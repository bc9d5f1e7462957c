--- rivya.cli.jobs: batch and sweep — many requests run together,
-- resumable through the ledger of their output folder. Usable without a
-- subprocess: `jobs.run(ctx, a, jobs, o)` with a context from
-- rivya.cli.context.
local rivya = require "rivya"
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"
local Ledger = require "rivya.ledger"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local compat = require "rivya.compat"
local cli_catalog = require "rivya.cli.catalog"
local request = require "rivya.cli.request"
local context = require "rivya.cli.context"

local EXIT, AUTH_CODES = util.EXIT, util.AUTH_CODES
local join, dirname, canonical = util.join, util.dirname, util.canonical
local error_object, error_line, exit_code = util.error_object, util.error_line, util.exit_code
local body_text, file_exists, mkdir_p = util.body_text, util.file_exists, util.mkdir_p

-- the folder's own files: its ledger and lock live in LEDGER_DIR
local LEDGER_DIR = ".rivya"
local LEDGER_FILE = LEDGER_DIR .. "/ledger.db"
local LOCK_FILE = LEDGER_DIR .. "/lock"
local STATE_FILE = "rivya-state.json"   -- the state file of rivya before the ledger
local OWN_FILES = { [LEDGER_DIR] = true, [STATE_FILE] = true, ["index.html"] = true }

------------------------------------------------------------------------------
-- Why a re-run never pays twice, and two runs never both create:
-- * Each output folder has its own ledger, DIR/.rivya/ledger.db (SQLite,
--   WAL): one row per create, written row by row — committed before the
--   create leaves, then its answer, each status, the save. A kill -9 at any
--   moment leaves every committed row; a 100,000-line batch costs the same
--   per line as a 10-line one.
-- * A run holds DIR/.rivya/lock (a POSIX record lock, dropped by the kernel
--   however the process ends) from before its first request to its end: a
--   second run on the same folder exits at once, naming the first's pid.
-- * Each request's Idempotency-Key is derived, not random:
--   sha256(nonce, request, attempt). The nonce is drawn once per output
--   folder and kept in its ledger (under the lock, in one transaction);
--   `request` is sha256 of the validated body in canonical JSON (sorted
--   keys, wire form, so `10` and `"10"` agree) plus its occurrence number
--   (two identical lines are two wanted runs). A re-run derives the same
--   key, sends the same body (uploaded references are recorded and reused),
--   and the API answers with the task it already made.
-- * Lines are matched to rows by request, not line number, so inserting a
--   line does not shift the others onto tasks that are not theirs. A fresh
--   output folder is an explicit "run it again". A failed task is final for
--   its key: --retry-failed bumps the attempt to get a new key on purpose.

--- Why an output name cannot be used | nil: outputs stay inside the
-- folder and never name rivya's own files.
local function output_problem(name)
  if type(name) ~= "string" or name == "" then return "output must be a non-empty file name" end
  if name:find("[%c\\]") then return ("output %q has a control character or a backslash"):format(name) end
  if name:sub(1, 1) == "/" then
    return ("output %s is an absolute path: outputs stay inside the output folder"):format(name)
  end
  if name:sub(-1) == "/" or name:find("//", 1, true) then return ("output %s does not name a file"):format(name) end
  for part in name:gmatch("[^/]+") do
    if part == ".." or part == "." then
      return ("output %s leaves the output folder (%s): outputs stay inside it"):format(name, part)
    end
  end
  local first = name:match("^[^/]+")
  if OWN_FILES[first] or first:sub(1, #LEDGER_DIR) == LEDGER_DIR then
    return ("output %s names one of rivya's own files in the output folder"):format(name)
  end
  return nil
end

-- a batch line's request: the decoded object without `output`, with the
-- default model | nil, err
local function decode_line(line, n)
  local req, derr = json.decode(line)
  if type(req) ~= "table" or req[1] ~= nil then
    return nil, errors.new("validation_failed", ("line %d: expected a JSON object per line%s"):format(n,
      derr and (": " .. derr) or ""))
  end
  local output = req.output
  req.output = nil
  req.model = req.model or flags.default_model()
  return req, output
end

--- Jobs from a JSONL file: one request object per non-empty line, `model`
-- defaulting to the first known model and an optional `output` file name
-- (inside the output folder). opts.lean: keep only where each line starts
-- (a 100,000-line batch is not held in memory; `load` reads a line again).
-- Returns jobs | nil, message, exit status.
local function read_batch(path, opts)
  local lean = opts and opts.lean
  local st = core.stat(path)
  if st and st.type ~= "file" then return nil, ("cannot read the batch file %s: it is a %s"):format(path, st.type),
    EXIT.usage end
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "cannot read the batch file: " .. tostring(ferr), EXIT.usage end
  local jobs, n, outputs = { source = path, base_dir = dirname(path) }, 0, {}
  -- lean: parallel arrays of integers, no table or string per line (100,000
  -- lines in a few MB); line numbers are kept only once a blank line shifts them
  if lean then jobs.lean, jobs.count, jobs.offset, jobs.out = true, 0, {}, {} end
  while true do
    local offset = f:seek()
    local line = f:read("*l")
    if not line then break end
    n = n + 1
    if n == 1 then line = line:gsub("^\239\187\191", "") end   -- a UTF-8 BOM
    if line:match("%S") then
      local req, output = decode_line(line, n)
      if not req then
        f:close()
        return nil, output, EXIT.invalid
      end
      local problem = output ~= nil and output_problem(output)
      if problem then
        f:close()
        return nil, errors.new("validation_failed", ("line %d: %s"):format(n, problem), { field = "output" }),
          EXIT.invalid
      end
      if lean then
        local i = jobs.count + 1
        if n ~= i and not jobs.line then
          jobs.line = {}
          for k = 1, i - 1 do jobs.line[k] = k end
        end
        if jobs.line then jobs.line[i] = n end
        jobs.count, jobs.offset[i], jobs.out[i] = i, offset, output
      else
        jobs[#jobs + 1] = { n = n, output_name = output, req = req, base_dir = jobs.base_dir }
      end
    end
  end
  f:close()
  local width = math.max(2, #tostring(n))
  jobs.width = width
  local count = jobs.count or #jobs
  local function line_of(i)
    if jobs.lean then return jobs.line and jobs.line[i] or i, jobs.out[i] end
    return jobs[i].n, jobs[i].output_name
  end
  for i = 1, count do
    local line, name = line_of(i)
    -- explicit names only: a default name (line-NN.mp4) is its line's alone
    if name then
      if outputs[name] then
        return nil, errors.new("validation_failed", ("line %d: output %s is also line %d's"):format(line,
          name, outputs[name]), { field = "output" }), EXIT.invalid
      end
      outputs[name] = line
    end
  end
  for i = 1, count do
    local line, explicit = line_of(i)
    local name = ("line-%0" .. width .. "d.mp4"):format(line)
    if not explicit and outputs[name] then
      return nil, errors.new("validation_failed", ("line %d: output %s is also line %d's"):format(outputs[name],
        name, line), { field = "output" }), EXIT.invalid
    end
  end
  if count == 0 then return nil, "the batch file has no requests", EXIT.usage end
  return jobs
end

-- A line's 128-bit identity (32 hex digits) kept as numbers, not a string:
-- two 64-bit integers where Lua has them (5.3+), else three whole numbers
-- of at most 48 bits (exact in a double).
local WIDE = math.tointeger ~= nil
local ID_PARTS = WIDE and { { 1, 16 }, { 17, 32 } } or { { 1, 12 }, { 13, 24 }, { 25, 32 } }
local ID_FORMAT = WIDE and "%016x%016x" or "%012x%012x%08x"

local function id_store(jobs, i, hex)
  for k, part in ipairs(ID_PARTS) do
    jobs.request_parts[k][i] = compat.tointeger(tonumber(hex:sub(part[1], part[2]), 16))
  end
end

local function id_load(jobs, i)
  local parts = jobs.request_parts
  if not parts or parts[1][i] == nil then return nil end
  if WIDE then return ID_FORMAT:format(parts[1][i], parts[2][i]) end
  return ID_FORMAT:format(parts[1][i], parts[2][i], parts[3][i])
end

-- how many jobs, and job i: a lean batch's job is a fresh small table each
-- time (what run_one needs), written back by `keep`
local function count_of(jobs) return jobs.count or #jobs end
local function job_at(jobs, i)
  if not jobs.lean then return jobs[i] end
  return { index = i, n = jobs.line and jobs.line[i] or i, offset = jobs.offset[i], output_name = jobs.out[i],
    request = id_load(jobs, i), ext = jobs.ext and jobs.ext[i],
    credits = jobs.credits and (jobs.credits[i] or jobs.credits[0]) }
end

-- the output name of a job (lean batch jobs keep only explicit ones); the
-- default takes the extension of the model's media (line-01.png for an image)
local function output_name(jobs, job)
  return job.output_name or ("line-%0" .. (jobs.width or 2) .. "d.%s"):format(job.n, job.ext or "mp4")
end

-- a job's request: kept (sweep, small batches) or read again from its line
local function load(jobs, job)
  if job.req then return job.req end
  local f, ferr = io.open(jobs.source, "rb")
  if not f then return nil, errors.new("io", "cannot read the batch file again: " .. tostring(ferr)) end
  f:seek("set", job.offset)
  local line = f:read("*l") or ""
  f:close()
  if job.n == 1 then line = line:gsub("^\239\187\191", "") end
  local req, err = decode_line(line, job.n)
  if not req then return nil, err end
  return req
end

local function idempotency_key(nonce, kind, job_request, attempt)
  return ("rivya-%s-%s"):format(kind == "sweep" and "sweep" or "batch",
    core.sha256(nonce .. "\n" .. job_request .. "\n" .. attempt):sub(1, 32))
end

-- How many times each request body came so far, the current one included:
-- `occurrence(hash)`. Counted by two numbers cut from the body's SHA-256 (its
-- first 52 bits and the next 52, exact in a double), not by the hash's text:
-- 100,000 strings kept alive through the preparation made every collection
-- walk them, doubling its cost per line. A body that shares only the first
-- 52 bits with another is counted by its whole hash.
local function new_occurrences()
  local second, repeats, clash = {}, {}, {}
  return function(hash)
    local k1, k2 = tonumber(hash:sub(1, 13), 16), tonumber(hash:sub(14, 26), 16)
    local first = second[k1]
    if first == nil then
      second[k1] = k2
      return 1
    end
    if first == k2 then
      local n = (repeats[k1] or 1) + 1
      repeats[k1] = n
      return n
    end
    local n = (clash[hash] or 0) + 1
    clash[hash] = n
    return n
  end
end

--- Check every job offline; prints every invalid one. Each job gets
-- request (its identity in the folder) and credits. Returns true | exit status.
local function prepare_jobs(ctx, jobs, label)
  local occurrence, bad = new_occurrences(), 0
  if jobs.lean then
    jobs.request_parts, jobs.credits, jobs.ext = {}, {}, {}
    for k = 1, #ID_PARTS do jobs.request_parts[k] = {} end
  end
  for i = 1, count_of(jobs) do
    local job = job_at(jobs, i)
    local req, lerr = load(jobs, job)
    local prepared, body, credits
    if req then prepared, body, credits = request.check(ctx, req, jobs.base_dir or job.base_dir, true) end
    local warnings = prepared and prepared.warnings
    if not prepared then
      ctx:fail(req and body or lerr, ("%s %d: "):format(label, job.n), { [label] = job.n })
      bad = bad + 1
    else
      local text = canonical(body)
      job.request = core.sha256(occurrence(core.sha256(text)) .. "\n" .. text):sub(1, 32)
      job.credits = credits
      local ext = cli_catalog.expected_ext(req.model)
      if ext ~= "mp4" then job.ext = ext end
      -- lean jobs keep nothing else; the others their body and warnings to show
      if jobs.lean then
        -- credits only where they differ from the first line's
        id_store(jobs, i, job.request)
        jobs.ext[i] = job.ext
        if jobs.credits[0] == nil then jobs.credits[0] = credits end
        if credits ~= jobs.credits[0] then jobs.credits[i] = credits end
      else
        job.body, job.warnings = body, warnings
      end
    end
  end
  if bad > 0 then return EXIT.invalid end
  return true
end

-- the batch/sweep live line: counts by phase (kept as phases change), elapsed
local JOB_PHASES = { "uploading", "creating", "queued", "processing", "downloading", "failed" }
local function new_phases(total)
  local counts = {}
  local function set(job, phase)
    local old = job.phase
    if old == "error" or old == "skipped" or old == "timeout" then old = "failed" end
    local new = (phase == "error" or phase == "skipped" or phase == "timeout") and "failed" or phase
    if old then counts[old] = (counts[old] or 1) - 1 end
    if new then counts[new] = (counts[new] or 0) + 1 end
    job.phase = phase
  end
  local function render(name)
    return function(st)
      local parts = { ("%s %d/%d done"):format(name, counts.succeeded or 0, total) }
      for _, ph in ipairs(JOB_PHASES) do
        if (counts[ph] or 0) > 0 then parts[#parts + 1] = counts[ph] .. " " .. ph end
      end
      parts[#parts + 1] = st:elapsed()
      return table.concat(parts, "  ")
    end
  end
  return set, render
end

-- the row of a job in the folder's ledger: its latest attempt
local JOB_ROW = "SELECT * FROM tasks WHERE job = ? ORDER BY attempt DESC LIMIT 1"

-- `path` with `.N` before its extension, the first N that is free
local function numbered(path)
  local stem, ext = path:match("^(.*)(%.[^./]+)$")
  stem, ext = stem or path, ext or ""
  for i = 1, 1000 do
    local candidate = ("%s.%d%s"):format(stem, i, ext)
    if not core.stat(candidate) then return candidate end
  end
  return nil
end

--- Run prepared jobs with resume. o: unit ("lines"|"variants"), unit_key
-- ("line"|"variant"), label, out_dir, kind, source, describe. Returns the
-- exit status; each job gets job.status (and job.result unless lean).
local function run_jobs(ctx, a, jobs, o)
  local out_dir = o.out_dir
  local ledger_path = join(out_dir, LEDGER_FILE)
  local total, count = 0, count_of(jobs)
  for i = 1, count do total = total + job_at(jobs, i).credits end

  if a.dry_run then
    local ledger = core.stat(ledger_path) and Ledger.open(ledger_path) or nil
    local pending = 0
    for i = 1, count do
      local job = job_at(jobs, i)
      local row = ledger and ledger:row(JOB_ROW, job.request) or nil
      local id = row and row.id
      if not id then pending = pending + job.credits end
      local body = job.body
      if not body then
        local req = assert(load(jobs, job))
        body = select(2, assert(request.check(ctx, req, jobs.base_dir)))
      end
      ctx:warnings(job.warnings)
      if a.json then
        local obj = { [o.unit_key] = job.n, body = body, credits = job.credits,
          output = join(out_dir, output_name(jobs, job)), task_id = id }
        if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
        ctx:emit(obj)
      else
        ctx:out(("%s %d  %s%s"):format(o.label, job.n, body_text(body), id and ("  (created: " .. id .. ")") or ""))
      end
    end
    if ledger then ledger:close() end
    if a.json then
      ctx:emit({ requests = count, credits = total, credits_to_reserve = pending })
    else
      ctx:out(("total: %d requests, %d credits%s"):format(count, total,
        pending ~= total and (" (%d still to reserve; the rest are created in %s)"):format(pending, out_dir) or ""))
    end
    return EXIT.ok
  end

  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local ok, merr = mkdir_p(out_dir)
  if not ok then return ctx:usage(merr) end
  local ledger, lerr = Ledger.open(ledger_path, { sync = "NORMAL" })
  if not ledger then return ctx:fail(lerr) end
  -- one run per folder, decided before any request
  local lock, kerr, holder = core.lock(join(out_dir, LOCK_FILE))
  if not lock then
    ledger:close()
    ctx.status:clear()
    if holder then
      ctx.stderr:write(("rivya: another rivya %s (pid %d) is working in %s\n"):format(o.kind, holder, out_dir))
      return EXIT.failure
    end
    return ctx:fail(kerr)
  end
  local nonce, nerr = ledger:meta("nonce", function()
    -- a folder begun by rivya before the ledger keeps its keys
    local f = io.open(join(out_dir, STATE_FILE), "rb")
    local old = f and json.decode(f:read("*a") or "")
    if f then f:close() end
    return type(old) == "table" and type(old.nonce) == "string" and old.nonce or core.random_hex(16)
  end)
  if not nonce then
    ledger:close()
    lock:unlock()
    return ctx:fail(nerr)
  end

  -- the balance, before the first create: a batch that cannot finish is refused
  local needed, to_create = 0, 0
  for i = 1, count do
    local job = job_at(jobs, i)
    local row = ledger:row(JOB_ROW, job.request)
    if not (row and row.id and (row.status ~= "failed" or not a.retry_failed)) then
      needed, to_create = needed + job.credits, to_create + 1
    end
  end
  if to_create > 0 and not a.allow_partial then
    local balance, berr = client:credits()
    if not balance then
      ledger:close()
      lock:unlock()
      return ctx:fail(berr)
    end
    if balance < needed then
      ledger:close()
      lock:unlock()
      return ctx:fail(errors.new("insufficient_credits",
        ("the %s needs %d credits for %d new task%s and the balance is %d; nothing was sent "
          .. "(--allow-partial runs what the balance allows)"):format(o.kind, needed, to_create,
          to_create == 1 and "" or "s", balance)))
    end
  end

  local user_ledger = client.ledger
  client.ledger = ledger
  if not jobs.lean then
    for _, job in ipairs(jobs) do ctx:warnings(job.warnings) end
  end
  local set_phase, render = new_phases(count)
  ctx.status.render = render(o.kind)
  ctx.resume_hint = "re-run the same command to resume: created tasks are waited for, not paid again"
  local stop   -- an error that makes starting more tasks pointless (auth, credits)
  local summary = { succeeded = 0, failed = 0, credits = 0, first_failure = nil }

  -- the result of one job as printed (stdout)
  local function finish(job, r)
    set_phase(job, r.status)
    job.status = r.status
    if not jobs.lean then job.result = r end
    local credits = r.credits
    if credits == nil then credits = r.task_id and job.credits or 0 end
    summary.credits = summary.credits + credits
    if r.status == "succeeded" then
      summary.succeeded = summary.succeeded + 1
    else
      summary.failed = summary.failed + 1
      local c = r.error and exit_code(r.error) or EXIT.failure
      if summary.code == nil then summary.code = c elseif summary.code ~= c then summary.code = EXIT.failure end
      summary.first_failure = summary.first_failure or ("%s %d: %s"):format(o.label, job.n,
        r.error and error_line(r.error):gsub("^rivya: ", "") or r.status)
    end
    local obj = { [o.unit_key] = job.n, task_id = r.task_id, status = r.status, output = r.output,
      resumed = r.resumed or false, credits = credits, idempotency_key = r.idempotency_key,
      replaced = r.replaced, error = r.error and error_object(r.error) or nil }
    if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
    if a.json then
      ctx:emit(obj)
    else
      local line = ("%s %d  %s  %s"):format(o.label, job.n, r.task_id or "-", r.status)
      if r.output and r.status == "succeeded" then line = line .. "  " .. r.output end
      if r.replaced then line = line .. ("  (line changed: the previous output is now %s)"):format(r.replaced) end
      if r.error then line = line .. "  " .. error_line(r.error):gsub("^rivya: ", "") end
      ctx:out(line)
    end
    ctx.status:redraw()
  end

  local function run_one(job)
    local name = ("%s %d"):format(o.label, job.n)
    local out_name = output_name(jobs, job)
    local output = join(out_dir, out_name)
    local row, rerr = ledger:row(JOB_ROW, job.request)
    if row == nil then error(rerr, 0) end
    local attempt = row and row.attempt or 1
    local resumed = row and row.id ~= nil
    if row and row.status == "succeeded" and row.saved_path == output and file_exists(output) then
      return finish(job, { status = "succeeded", task_id = row.id, output = output, resumed = true,
        idempotency_key = row.key, credits = row.final_credits or job.credits })
    end
    if row and (row.status == "failed" or row.status == "rejected") then
      if row.status == "failed" and not a.retry_failed then
        return finish(job, { status = "failed", task_id = row.id, resumed = true, idempotency_key = row.key,
          credits = row.final_credits or 0,
          error = errors.new("generation_failed", (row.error or "the generation failed")
            .. " (--retry-failed runs it again)") })
      end
      -- a new attempt is a new key: the old one is final
      attempt, row, resumed = attempt + 1, nil, false
    end
    local key = row and row.key or idempotency_key(nonce, o.kind, job.request, attempt)
    local task_id, status = row and row.id, row and row.status
    if not task_id then
      if stop then return finish(job, { status = "skipped", error = stop, credits = 0 }) end
      local req, err = load(jobs, job)
      local prepared
      -- local references relative to the batch file; the client uploads and records them
      if req then prepared, err = request.check(ctx, req, jobs.base_dir or job.base_dir) end
      if prepared then
        -- no credits for a result that has nowhere to go: a folder there, or a file as its folder
        local folder = dirname(output)
        if folder ~= out_dir and not core.stat(folder) then mkdir_p(folder) end
        local st, fst = core.stat(output), core.stat(folder)
        if (st and st.type ~= "file") or not (fst and fst.type == "directory") then
          prepared, err = nil, errors.new("validation_failed", ("output: cannot save to %s: %s"):format(output,
            st and st.type ~= "file" and ("it is a " .. st.type) or "its folder cannot be made"), { field = "output" })
        end
      end
      if prepared then
        set_phase(job, "creating")
        local task
        task, err = client:create(prepared, { key = key, job = job.request, attempt = attempt, output = output,
          on_upload = function(_, path, _, file)
            if not file then set_phase(job, "uploading") return nil end
            ctx.status:event(("%s: uploaded %s as %s"):format(name, path, tostring(file.id)))
            set_phase(job, "creating")
            return nil
          end })
        if task then
          task_id, status = task.id, task.status
          ctx.status:event(("%s: created %s"):format(name, task.id))
        end
      end
      if err then
        if AUTH_CODES[err.code] or err.code == "insufficient_credits" then stop = stop or err end
        return finish(job, { status = "error", error = err, idempotency_key = key, credits = 0 })
      end
    else
      ctx.status:event(("%s: resuming %s"):format(name, task_id))
    end
    set_phase(job, status or "queued")
    -- the last known status, so the first poll reports only a change
    local known = (status == "queued" or status == "processing") and { id = task_id, status = status }
    local final, err = client:wait(known or task_id, { interval = a.interval, timeout = a.timeout,
      on_update = function(t)
        ledger:update(t)
        set_phase(job, t.status)
        ctx.status:event(("%s: %s %s"):format(name, t.id, t.status))
      end })
    if not final then
      if err.code == "generation_failed" then
        local t = err.task or {}
        return finish(job, { status = "failed", task_id = task_id, error = err, resumed = resumed,
          idempotency_key = key, credits = compat.tointeger(t.final_credits) or 0 })
      end
      return finish(job, { status = err.code == "timeout" and "timeout" or "error", task_id = task_id,
        error = err, resumed = resumed, idempotency_key = key })
    end
    set_phase(job, "downloading")
    -- a line that changed since its output was saved: the old video is kept beside it
    local replaced
    if core.stat(output) then
      local owner = ledger:row("SELECT id FROM tasks WHERE saved_path = ? AND job IS NOT ? LIMIT 1", output,
        job.request)
      if owner then
        replaced = numbered(output)
        -- the rows that saved it follow it: a line edited back must not take the new video for its own
        if replaced and os.rename(output, replaced) then
          ledger:run("UPDATE tasks SET saved_path = ? WHERE saved_path = ? AND job IS NOT ?", replaced, output,
            job.request)
        end
      end
    end
    local folder = dirname(output)
    if folder ~= out_dir and not core.stat(folder) then mkdir_p(folder) end
    local path
    path, err = client:download(final, output)
    if not path then
      err.message = ("task %s succeeded but its result could not be saved to %s: %s; fetch it with: "
        .. "rivya download %s %s"):format(task_id, output, err.message, task_id, util.sh_quote(output))
      return finish(job, { status = "error", task_id = task_id, error = err, resumed = resumed,
        idempotency_key = key })
    end
    ctx.status:event(("%s: saved %s"):format(name, output))
    return finish(job, { status = "succeeded", task_id = task_id, output = output, resumed = resumed,
      idempotency_key = key, replaced = replaced,
      credits = compat.tointeger(final.final_credits) ~= 0 and compat.tointeger(final.final_credits) or job.credits })
  end

  -- a pool of workers over the jobs: memory grows with the concurrency, not the batch
  local next_job = 0
  local function worker()
    while true do
      next_job = next_job + 1
      if next_job > count then return end
      local job = job_at(jobs, next_job)
      -- (PUC Lua 5.1 cannot yield across pcall: there a raise ends the run)
      local done, err = (compat.yield_in_pcall and pcall or function(f, ...) return true, f(...) end)(run_one, job)
      if not done then
        if type(err) == "string" and err:find("interrupted!", 1, true) then error(err, 0) end
        if errors.is(err) and err.code == "interrupted" then error(err, 0) end   -- SIGINT, SIGTERM
        -- a raise inside a job is a bug or an I/O failure (the ledger)
        if not job.status then
          finish(job, { status = "error", error = errors.is(err) and err or errors.new("internal", tostring(err)) })
        end
      end
    end
  end
  local workers = {}
  for i = 1, math.min(a.concurrency, count) do workers[i] = worker end
  local ran, rerr = pcall(ctx.live, ctx, function()
    local results = rivya.gather(workers)
    for _, r in ipairs(results) do
      if r[1] == nil and r[2] ~= nil then error(r[2], 0) end
    end
  end)
  client.ledger = user_ledger
  ledger:close()
  lock:unlock()
  if not ran then error(rerr, 0) end
  ctx.resume_hint = nil

  local line = ("%d %s: %d succeeded, %d failed%s; %d credits"):format(count, o.unit, summary.succeeded,
    summary.failed, summary.first_failure and (" (" .. summary.first_failure .. ")") or "", summary.credits)
  if a.json then ctx.status:note(line) else ctx:out(line) end
  return summary.code or EXIT.ok
end

return {
  STATE_FILE = STATE_FILE,
  LEDGER_FILE = LEDGER_FILE,
  LOCK_FILE = LOCK_FILE,
  read_batch = read_batch,
  prepare = prepare_jobs,
  output_problem = output_problem,
  idempotency_key = idempotency_key,
  new_occurrences = new_occurrences,
  run = run_jobs,
}
