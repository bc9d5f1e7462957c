--- rivya.cli.cmd.download: `rivya download`.
local core = require "rivya.core"
local errors = require "rivya.errors"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  if a.file == "" then return ctx:usage("FILE: a destination path is needed, got ''") end
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local p = { id = a.id, phase = "downloading" }
  ctx.status.render = steps.render(p)
  return ctx:live(function()
    local task, err = client:get(a.id)
    if not task then return ctx:fail(err) end
    if task.status ~= "succeeded" then
      local e = errors.new(task.status == "failed" and "generation_failed" or "not_ready",
        task.status == "failed" and ("task %s failed: %s"):format(task.id,
          type(task.error) == "table" and tostring(task.error.message) or "no result")
        or ("task %s is %s, not succeeded yet: `rivya wait %s --out %s` waits and downloads")
          :format(task.id, task.status, util.shell_word(task.id), util.shell_word(a.file or "FILE")), { task = task })
      return steps.failure(ctx, a, e)
    end
    -- no FILE: where the ledger says it was to be saved, else ./ID.<extension of the result>
    local file = a.file
    if not file and client.ledger then
      local row = client.ledger:task(task.id)
      file = row and row.output
    end
    if not file then
      local url = type(task.result) == "table" and task.result.primary_url or ""
      file = "./" .. task.id .. "." .. (url:match("%.(%w+)$") or url:match("%.(%w+)[?#]") or "mp4")
    end
    local path
    steps.transfer_begins(p, "downloading", nil)
    path, err = client:download(task, file, { on_progress = steps.progress(ctx, p) })
    steps.transfer_ends(p)
    if not path then return ctx:fail(err) end
    local st = core.stat(path)
    if a.json then
      ctx:emit({ id = task.id, output = path, size_bytes = st and st.size })
    else
      ctx:out(("%s  saved %s (%s)"):format(task.id, path, util.human_bytes(st and st.size)))
    end
    return EXIT.ok
  end)
end

local function add_to_parser(parser)
  local c = parser:command("download", "Download a succeeded task's video.")
  c:argument("id", "Task id.")
  c:argument("file", "Destination (appears only when complete; default: the path the ledger recorded, "
    .. "else ./ID.mp4)."):args("?")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
