--- rivya.cli.task: the steps of one task the single-task commands share —
-- its live line, uploads of local references, wait and download, printing.
local util = require "rivya.cli.util"

local shallow_copy, human_bytes, bar, error_object = util.shallow_copy, util.human_bytes, util.bar,
  util.error_object

-- the live line of one task: phase, id, bytes, elapsed
local function task_render(p)
  return function(st)
    local parts = { p.phase or "starting" }
    if p.id then parts[#parts + 1] = p.id end
    if p.total then
      parts[#parts + 1] = bar(p.done or 0, p.total)
      parts[#parts + 1] = human_bytes(p.done or 0) .. "/" .. human_bytes(p.total)
    end
    parts[#parts + 1] = st:elapsed()
    return table.concat(parts, "  ")
  end
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
      p.phase, p.done, p.total = "uploading " .. ref.info.name, 0, ref.info.size
      local err
      file, err = client:upload(ref.info, { model = ref.info.model, kind = ref.info.kind,
        on_progress = progress_cb(ctx, p) })
      p.total = nil
      if not file then
        err.field = err.field or ("params.referenceMediaItems[%d]"):format(ref.index)
        return nil, err
      end
      ctx.status:event(("%suploaded %s (%s) as %s"):format(p.label and (p.label .. ": ") or "", ref.path,
        human_bytes(ref.info.size), tostring(file.id)))
      if on_file then on_file(ref, file) end
    end
    prepared:attach(ref.index, file)
  end
  return true
end

-- wait for a task and download its result; p is the live line's state
local function wait_and_download(ctx, a, client, task, out, p)
  p.id, p.phase = task.id, task.status
  -- a.interval: --interval, else RIVYA_POLL_INTERVAL, else the library's pace
  local o = { interval = a.interval, timeout = a.timeout }
  o.on_update = function(t)
    p.phase = t.status
    ctx.status:event(("%s %s (%s)"):format(t.id, t.status, ctx.status:elapsed()))
  end
  local final, err = client:wait(task, o)
  if not final then return nil, err end
  if out then
    p.phase, p.done, p.total = "downloading", 0, nil
    local path
    path, err = client:download(final, out, { on_progress = progress_cb(ctx, p) })
    p.total = nil
    if not path then
      err.task = err.task or final
      return nil, err
    end
    ctx.status:event(("saved %s"):format(out))
  end
  return final
end

-- a failure that concerns a known task: the task's JSON on stdout with --json
local function task_failure(ctx, a, err, extra)
  if a.json and type(err) == "table" and type(err.task) == "table" then
    local o = shallow_copy(extra or {})
    o.error = error_object(err)
    ctx:emit(task_object(err.task, o))
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
}
