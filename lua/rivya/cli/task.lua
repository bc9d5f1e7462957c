--- rivya.cli.task: the steps of one task the single-task commands share —
-- its live line, uploads of local references, wait and download, printing.
local core = require "rivya.core"
local util = require "rivya.cli.util"

local shallow_copy, human_bytes, bar, error_object = util.shallow_copy, util.human_bytes, util.bar,
  util.error_object

-- "12.3 kB/s" from bytes moved since a transfer began
local function rate(p, now)
  local dt = now - (p.since or now)
  if dt < 0.5 or not p.done or p.done == 0 then return nil end
  return util.human_bytes(p.done / dt) .. "/s"
end

-- the live line of one task: phase, id, bytes (bar, size, rate, time of the
-- transfer), elapsed
local function task_render(p)
  return function(st)
    local parts = { p.phase or "starting" }
    if p.id then parts[#parts + 1] = p.id end
    if p.transfer then
      local t = core.now()
      if p.total and p.total > 0 then
        parts[#parts + 1] = bar(p.done or 0, p.total)
        parts[#parts + 1] = human_bytes(p.done or 0) .. "/" .. human_bytes(p.total)
      else
        parts[#parts + 1] = human_bytes(p.done or 0)
      end
      parts[#parts + 1] = rate(p, t)
      parts[#parts + 1] = util.clock(t - (p.since or t))
    end
    parts[#parts + 1] = st:elapsed()
    return table.concat(parts, "  ")
  end
end

-- a transfer starts on the live line of p
local function transfer_begins(p, phase, total)
  p.phase, p.done, p.total, p.transfer, p.since = phase, 0, total, true, core.now()
end

local function transfer_ends(p)
  p.total, p.transfer = nil, nil
end

local function progress_cb(ctx, p)
  return function(done, total)
    p.done, p.total = done, total
    -- the last call is always drawn, so a full bar is seen even for small files
    ctx.status:redraw(total ~= nil and total > 0 and done >= total)
  end
end

-- the task as printed by --json: the API's object plus what the CLI did
local function task_object(task, extra)
  local o = shallow_copy(task)
  for k, v in pairs(extra or {}) do o[k] = v end
  if o.warnings and #o.warnings == 0 then o.warnings = nil end
  return o
end

local function print_task(ctx, a, task, extra)
  if a.json then return ctx:emit(task_object(task, extra)) end
  local line = ("%s  %s"):format(task.id, task.status)
  if task.status == "succeeded" then
    local url = type(task.result) == "table" and task.result.primary_url
    if extra and extra.output then line = line .. "  " .. extra.output elseif url then line = line .. "  " .. url end
  elseif task.status == "failed" and type(task.error) == "table" then
    line = line .. "  " .. tostring(task.error.code) .. ": " .. tostring(task.error.message)
  end
  ctx:out(line)
end

-- upload the local references of a prepared request (rivya.refs) with a
-- progress bar, attaching each file to it; on_file(ref) may give a file
-- uploaded before (batch state), on_file(ref, file) records a new one.
-- Returns true | nil, err.
local function upload_refs(ctx, client, prepared, p, on_file)
  for _, ref in ipairs(prepared:pending()) do
    local file = on_file and on_file(ref)
    if not file then
      transfer_begins(p, "uploading " .. ref.info.name, ref.info.size)
      local err
      file, err = client:upload(ref.info, { model = ref.info.model, kind = ref.info.kind,
        on_progress = progress_cb(ctx, p) })
      transfer_ends(p)
      if not file then
        err.field = err.field or ("params.referenceMediaItems[%d]"):format(ref.index)
        return nil, err
      end
      ctx.status:note(("%suploaded %s (%s) as %s"):format(p.label and (p.label .. ": ") or "", ref.path,
        human_bytes(ref.info.size), tostring(file.id)))
      if on_file then on_file(ref, file) end
    end
    prepared:attach(ref.index, file)
  end
  return true
end

-- wait for a task and download its result; p is the live line's state
local function wait_and_download(ctx, a, client, task, out, p)
  p.id, p.phase = task.id, task.status or p.phase
  -- a.interval: --interval, else RIVYA_POLL_INTERVAL, else the library's pace
  local o = { interval = a.interval, timeout = a.timeout }
  o.on_update = function(t)
    if client.ledger then client.ledger:update(t) end
    p.phase = t.status
    ctx.status:event(("%s %s (%s)"):format(t.id, t.status, ctx.status:elapsed()))
  end
  local final, err = client:wait(task, o)
  if not final then return nil, err end
  if out then
    transfer_begins(p, "downloading", nil)
    local path
    path, err = client:download(final, out, { on_progress = progress_cb(ctx, p) })
    transfer_ends(p)
    if not path then
      -- the task is paid for: say how to fetch it (the ledger keeps it pending)
      err.task = err.task or final
      local word = out:match("^[%w%./_%-]+$") and out or util.sh_quote(out)
      err.message = ("task %s succeeded but its result could not be saved to %s: %s; "
        .. "fetch it with: rivya download %s %s"):format(final.id, out, err.message, final.id, word)
      return nil, err
    end
    local st = core.stat(path)
    ctx.status:note(("saved %s (%s)"):format(out, human_bytes(st and st.size)))
  end
  return final
end

-- a failure that concerns a known task: the task's JSON on stdout with --json
local function task_failure(ctx, a, err, extra)
  if a.json and type(err) == "table" and type(err.task) == "table" then
    local o = shallow_copy(extra or {})
    o.error = error_object(err)
    ctx:emit(task_object(err.task, o))
    return ctx:fail(err, nil, false)
  end
  return ctx:fail(err)
end


return {
  render = task_render,
  progress = progress_cb,
  object = task_object,
  print = print_task,
  upload_refs = upload_refs,
  wait_and_download = wait_and_download,
  failure = task_failure,
  transfer_begins = transfer_begins,
  transfer_ends = transfer_ends,
}
