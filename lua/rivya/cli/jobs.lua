--- rivya.cli.jobs: batch and sweep — many requests run together,
-- resumable through a state file in the output directory. Usable without a
-- subprocess: `jobs.run(ctx, a, jobs, o)` with a context from
-- rivya.cli.context.
local rivya = require "rivya"
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"
local util = require "rivya.cli.util"
local cli_catalog = require "rivya.cli.catalog"
local flags = require "rivya.cli.flags"
local compat = require "rivya.compat"
local request = require "rivya.cli.request"
local task_steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT, AUTH_CODES = util.EXIT, util.AUTH_CODES
local join, dirname, canonical = util.join, util.dirname, util.canonical
local error_object, error_line, exit_code = util.error_object, util.error_line, util.exit_code
local human_bytes, body_text, file_exists, mkdir_p = util.human_bytes, util.body_text, util.file_exists,
  util.mkdir_p

local STATE_FILE = "rivya-state.json"

------------------------------------------------------------------------------
-- Batch and sweep: many requests run together, resumable through a state
-- file in the output directory.
--
-- Why a re-run never pays twice:
-- * The state file (DIR/rivya-state.json) is rewritten atomically (a
--   temporary file in DIR, then rename) after every change, and a task id is
--   recorded the moment its create returns: an interrupted run leaves either
--   the old or the new state, never a torn file.
-- * There is still a window between the API creating a task and the id
--   reaching the disk (a kill, a crash, a lost answer). It is closed by the
--   Idempotency-Key: each request's key is derived, not random —
--   sha256(nonce, request, attempt), where the nonce is drawn once per output
--   directory and written to the state file *before the first create*, and
--   `request` is sha256 of the validated body in canonical JSON (sorted keys,
--   wire form, so `10` and `"10"` agree) plus its occurrence number (two
--   identical lines are two wanted runs, so they get two keys). A re-run
--   derives the same key and sends the same body, and the API answers with
--   the task it already made instead of a new one.
-- * The body must be byte-for-byte the same for that replay, so uploaded
--   references are recorded in the state before the create and reused: a
--   second upload would give a new URL, a different body and an
--   idempotency_conflict. (An upload interrupted before it is recorded is
--   only uploaded again: files cost no credits.)
-- * Why not the batch file's path in the key: moving or renaming the file
--   would then re-create everything whose id was lost, while a fresh output
--   directory is an explicit "run it again". Entries are matched by
--   request, not line number, so inserting a line does not shift the others
--   onto tasks that are not theirs.
-- * Limits: the service keeps idempotency keys for a limited time (not
--   documented); a failed task is final for its key, so --retry-failed bumps
--   the attempt number to get a new key on purpose.

local function load_state(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local state, err = json.decode(text)
  if type(state) ~= "table" or type(state.nonce) ~= "string" then
    return nil, ("%s is not a rivya state file (%s); move it away or pick another --out-dir"):format(path,
      err or "no nonce")
  end
  return state
end

local function save_state(path, state)
  local tmp = ("%s.%s.tmp"):format(path, core.random_hex(4))
  local text = assert(json.encode(state))
  local f, err = io.open(tmp, "wb")
  if not f then error(errors.new("io", "cannot write the state file: " .. err)) end
  local ok, werr = f:write(text, "\n")
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    error(errors.new("io", "cannot write the state file: " .. tostring(werr or cerr)))
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    error(errors.new("io", "cannot replace the state file: " .. tostring(rerr)))
  end
end

--- Jobs from a JSONL file: one request object per non-empty line, `model`
-- defaulting to the first known model and an optional `output` file name.
-- Returns jobs | nil, message, exit status.
local function read_batch(path)
  local st = core.stat(path)
  if st and st.type ~= "file" then
    return nil, ("cannot read the batch file: %s is a %s, not a JSONL file"):format(path, st.type), EXIT.usage
  end
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "cannot read the batch file: " .. tostring(ferr), EXIT.usage end
  local jobs, n, outputs = {}, 0, {}
  local base = dirname(path)
  for line in f:lines() do
    n = n + 1
    -- a UTF-8 byte order mark (some editors write one) is not part of line 1's JSON
    if n == 1 then line = line:gsub("^\239\187\191", "") end
    if line:match("%S") then
      local req, derr = json.decode(line)
      if type(req) ~= "table" or req[1] ~= nil then
        f:close()
        return nil, errors.new("validation_failed", ("line %d: expected a JSON object per line%s"):format(n,
          derr and (": " .. derr) or "")), EXIT.invalid
      end
      local output = req.output
      req.output = nil
      if output ~= nil and (type(output) ~= "string" or output == "" or output:find("/", 1, true)
          or output:sub(1, 1) == ".") then
        f:close()
        return nil, errors.new("validation_failed",
          ("line %d: output must be a plain file name inside --out-dir"):format(n), { field = "output" }), EXIT.invalid
      end
      req.model = req.model or flags.default_model()
      jobs[#jobs + 1] = { n = n, req = req, base_dir = base, output_name = output }
    end
  end
  f:close()
  local width = math.max(2, #tostring(n))
  for _, job in ipairs(jobs) do
    job.output_name = job.output_name
      or ("line-%0" .. width .. "d.%s"):format(job.n, cli_catalog.expected_ext(job.req.model))
    if outputs[job.output_name] then
      return nil, errors.new("validation_failed", ("line %d: output %s is also line %d's"):format(job.n,
        job.output_name, outputs[job.output_name]), { field = "output" }), EXIT.invalid
    end
    outputs[job.output_name] = job.n
  end
  if #jobs == 0 then return nil, "the batch file has no requests", EXIT.usage end
  return jobs
end

-- the state entries that stand for `jobs`, matched by request hash
local function match_state(state, unit, jobs)
  local by_request = {}
  for _, e in pairs(state[unit] or {}) do
    if type(e) == "table" and e.request then by_request[e.request] = e end
  end
  for _, e in ipairs(state.orphans or {}) do
    if type(e) == "table" and e.request then by_request[e.request] = e end
  end
  local entries, used = {}, {}
  for _, job in ipairs(jobs) do
    local e = by_request[job.request]
    if e then
      entries[tostring(job.n)] = e
      used[e] = true
    end
  end
  local orphans = {}
  for _, e in pairs(by_request) do
    if not used[e] and e.task_id then orphans[#orphans + 1] = e end
  end
  table.sort(orphans, function(x, y) return tostring(x.task_id) < tostring(y.task_id) end)
  state[unit] = entries
  state.orphans = #orphans > 0 and orphans or nil
end

local function idempotency_key(state, unit, e)
  return ("rivya-%s-%s"):format(unit == "variants" and "sweep" or "batch",
    core.sha256(state.nonce .. "\n" .. e.request .. "\n" .. e.attempt):sub(1, 32))
end

-- what an uploaded file must keep to stand in the request again
local function file_record(file)
  return { id = file.id, url = file.url, kind = file.kind, name = file.name, mime_type = file.mime_type,
    duration_token = file.duration_token, duration_seconds = file.duration_seconds, size_bytes = file.size_bytes }
end

--- Check every job offline; prints every invalid one. Returns true | exit status.
local function prepare_jobs(ctx, jobs, label)
  local seen, bad = {}, 0
  for _, job in ipairs(jobs) do
    local prepared, body, credits = request.check(ctx, job.req, job.base_dir, true)
    if not prepared then
      ctx:fail(body, ("%s %d: "):format(label, job.n), { [label] = job.n })
      bad = bad + 1
    else
      job.prepared, job.body, job.warnings, job.credits = prepared, body, prepared.warnings, credits
      local text = canonical(body)
      seen[text] = (seen[text] or 0) + 1
      job.request = core.sha256(seen[text] .. "\n" .. text):sub(1, 32)
    end
  end
  if bad > 0 then return EXIT.invalid end
  return true
end

-- the batch/sweep live line: counts by phase, bytes, elapsed
local JOB_PHASES = { "uploading", "creating", "queued", "processing", "downloading", "failed" }
local function jobs_render(name, jobs)
  return function(st)
    local count, bytes = { failed = 0 }, 0
    for _, job in ipairs(jobs) do
      local ph = job.phase
      if ph == "error" or ph == "skipped" or ph == "timeout" then ph = "failed" end
      if ph then count[ph] = (count[ph] or 0) + 1 end
      bytes = bytes + (job.bytes or 0)
    end
    local parts = { ("%s %d/%d done"):format(name, count.succeeded or 0, #jobs) }
    for _, ph in ipairs(JOB_PHASES) do
      if (count[ph] or 0) > 0 then parts[#parts + 1] = count[ph] .. " " .. ph end
    end
    if bytes > 0 then parts[#parts + 1] = human_bytes(bytes) .. " down" end
    parts[#parts + 1] = st:elapsed()
    return table.concat(parts, "  ")
  end
end

-- the result of one job as printed (stdout) and returned
local function job_result(ctx, a, o, job, r)
  job.phase = r.status
  job.result = r
  local obj = { [o.unit_key] = job.n, task_id = r.task_id, status = r.status, output = r.output,
    resumed = r.resumed or false, credits = job.credits, idempotency_key = r.idempotency_key,
    error = r.error and error_object(r.error) or nil }
  if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
  if a.json then
    ctx:emit(obj)
  else
    local line = ("%s %d  %s  %s"):format(o.label, job.n, r.task_id or "-", r.status)
    if r.output and r.status == "succeeded" then line = line .. "  " .. r.output end
    if r.error then line = line .. "  " .. error_line(r.error):gsub("^rivya: ", "") end
    ctx:out(line)
  end
  ctx.status:redraw(true)
  return r
end

--- Run prepared jobs with resume. o: unit ("lines"|"variants"), unit_key
-- ("line"|"variant"), label, out_dir, concurrency, kind, source, describe.
-- Returns the exit status; each job gets job.result.
local function run_jobs(ctx, a, jobs, o)
  local state_path = join(o.out_dir, STATE_FILE)
  local state, serr = load_state(state_path)
  if serr then return ctx:usage(serr) end
  local total, pending = 0, 0
  if state then match_state(state, o.unit, jobs) end
  for _, job in ipairs(jobs) do
    job.output = join(o.out_dir, job.output_name)
    total = total + job.credits
    local e = state and state[o.unit][tostring(job.n)]
    if not (e and e.task_id) then pending = pending + job.credits end
  end

  if a.dry_run then
    for _, job in ipairs(jobs) do
      ctx:warnings(job.warnings)
      local e = state and state[o.unit][tostring(job.n)]
      if a.json then
        local obj = { [o.unit_key] = job.n, body = job.body, credits = job.credits, output = job.output,
          task_id = e and e.task_id or nil }
        if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
        ctx:emit(obj)
      else
        ctx:out(("%s %d  %s%s"):format(o.label, job.n, body_text(job.body),
          e and e.task_id and ("  (created: " .. e.task_id .. ")") or ""))
      end
    end
    if a.json then
      ctx:emit({ requests = #jobs, credits = total, credits_to_reserve = pending })
    else
      ctx:out(("total: %d requests, %d credits%s"):format(#jobs, total,
        pending ~= total and (" (%d still to reserve; the rest are created in %s)"):format(pending, o.out_dir) or ""))
    end
    return EXIT.ok
  end

  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local ok, merr = mkdir_p(o.out_dir)
  if not ok then return ctx:usage(merr) end
  if not state then
    -- the nonce reaches the disk before any create: see the comment above
    state = { version = 1, kind = o.kind, nonce = core.random_hex(16), source = o.source, [o.unit] = {} }
  end
  state.source = o.source
  for _, job in ipairs(jobs) do
    local key = tostring(job.n)
    local e = state[o.unit][key]
    if not e then
      e = { request = job.request }
      state[o.unit][key] = e
    end
    e.attempt = compat.tointeger(e.attempt) or 1
    e.idempotency_key = idempotency_key(state, o.unit, e)
    job.entry = e
    ctx:warnings(job.warnings)
  end
  local function save() save_state(state_path, state) end
  save()

  ctx.status.render = jobs_render(o.kind, jobs)
  ctx.resume_hint = "re-run the same command to resume: created tasks are waited for, not paid again"
  local stop   -- an error that makes starting more tasks pointless (auth, credits)

  local function run_one(job)
    local e = job.entry
    local name = ("%s %d"):format(o.label, job.n)
    local resumed = e.task_id ~= nil
    if e.status == "succeeded" and e.output == job.output_name and file_exists(job.output) then
      return job_result(ctx, a, o, job, { status = "succeeded", task_id = e.task_id, output = job.output,
        resumed = true, idempotency_key = e.idempotency_key })
    end
    if e.status == "failed" then
      if not a.retry_failed then
        return job_result(ctx, a, o, job, { status = "failed", task_id = e.task_id, resumed = true,
          idempotency_key = e.idempotency_key,
          error = errors.new("generation_failed", (e.error or "the generation failed")
            .. " (--retry-failed runs it again)") })
      end
      e.attempt, e.task_id, e.status, e.error = e.attempt + 1, nil, nil, nil
      e.idempotency_key = idempotency_key(state, o.unit, e)
      resumed = false
      save()
    end
    if not e.task_id then
      if stop then
        return job_result(ctx, a, o, job, { status = "skipped", error = stop })
      end
      job.phase = "uploading"
      local p = { label = name }
      local uploaded, err = task_steps.upload_refs(ctx, client, job.prepared, p, function(ref, file)
        e.uploads = e.uploads or {}
        if file then
          e.uploads[tostring(ref.index)] = file_record(file)
          save()
          return file
        end
        return e.uploads[tostring(ref.index)]
      end)
      if uploaded then
        job.prepared.idempotency_key = e.idempotency_key
        job.phase = "creating"
        local task
        task, err = client:create(job.prepared)
        if task then
          e.task_id, e.status = task.id, task.status
          save()   -- as soon as it exists: a kill from here on resumes this task
          job.phase = task.status
          ctx.status:event(("%s: created %s"):format(name, task.id))
        end
      end
      if err then
        if AUTH_CODES[err.code] or err.code == "insufficient_credits" then stop = stop or err end
        return job_result(ctx, a, o, job, { status = "error", error = err, idempotency_key = e.idempotency_key })
      end
    else
      job.phase = e.status or "queued"
      ctx.status:event(("%s: resuming %s"):format(name, e.task_id))
    end
    -- the last known status, so the first poll reports only a change
    local known = (e.status == "queued" or e.status == "processing") and { id = e.task_id, status = e.status }
    local final, err = client:wait(known or e.task_id, { interval = a.interval, timeout = a.timeout,
      on_update = function(t)
        job.phase = t.status
        if e.status ~= t.status then
          e.status = t.status
          if t.status ~= "succeeded" then save() end
        end
        ctx.status:event(("%s: %s %s"):format(name, t.id, t.status))
      end })
    if not final then
      if err.code == "generation_failed" then
        e.status = "failed"
        e.error = err.message
        save()
        return job_result(ctx, a, o, job, { status = "failed", task_id = e.task_id, error = err, resumed = resumed,
          idempotency_key = e.idempotency_key })
      end
      return job_result(ctx, a, o, job, { status = err.code == "timeout" and "timeout" or "error",
        task_id = e.task_id, error = err, resumed = resumed, idempotency_key = e.idempotency_key })
    end
    job.phase = "downloading"
    local path
    path, err = client:download(final, job.output, { on_progress = function(received) job.bytes = received end })
    if not path then
      return job_result(ctx, a, o, job, { status = "error", task_id = e.task_id, error = err, resumed = resumed,
        idempotency_key = e.idempotency_key })
    end
    e.status, e.output = "succeeded", job.output_name
    save()
    ctx.status:event(("%s: saved %s"):format(name, job.output))
    return job_result(ctx, a, o, job, { status = "succeeded", task_id = e.task_id, output = job.output,
      resumed = resumed, idempotency_key = e.idempotency_key })
  end

  local fns = {}
  for i, job in ipairs(jobs) do fns[i] = function() return run_one(job) end end
  ctx:live(function()
    local results = rivya.gather(fns, { concurrency = math.min(a.concurrency, #jobs) })
    for i, r in ipairs(results) do
      if r[1] == nil and r[2] ~= nil then
        if type(r[2]) == "string" and r[2]:find("interrupted!", 1, true) then error(r[2], 0) end
        if errors.is(r[2]) and r[2].code == "interrupted" then error(r[2], 0) end
        -- a raise inside a job is a bug or an I/O failure (state file)
        local err = errors.is(r[2]) and r[2] or errors.new("internal", tostring(r[2]))
        if not jobs[i].result then job_result(ctx, a, o, jobs[i], { status = "error", error = err }) end
      end
    end
  end)

  local worst
  for _, job in ipairs(jobs) do
    local r = job.result
    if r.status ~= "succeeded" then
      local c = r.error and exit_code(r.error) or EXIT.failure
      if worst == nil then worst = c elseif worst ~= c then worst = EXIT.failure end
    end
  end
  return worst or EXIT.ok
end

return {
  STATE_FILE = STATE_FILE,
  read_batch = read_batch,
  prepare = prepare_jobs,
  idempotency_key = idempotency_key,
  match_state = match_state,
  run = run_jobs,
}
