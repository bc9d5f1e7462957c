--- rivya.cli.cmd.generate: `rivya generate`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local request = require "rivya.cli.request"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"
local core = require "rivya.core"
local Client = require "rivya.client"
local cli_catalog = require "rivya.cli.catalog"

local EXIT = util.EXIT

local function command(ctx, a, specs)
  local req, uerr = request.from_args(ctx, a, specs)
  if not req then return ctx:usage(uerr) end
  local prepared, perr = request.check(ctx, req)
  if not prepared then return ctx:fail(perr) end
  ctx:warnings(prepared.warnings)
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local p = {}
  ctx.status.render = steps.render(p)
  return ctx:live(function()
    -- no credits for a result that has nowhere to go (the default: ./<task id>.mp4)
    if not a.no_wait then
      local ok, derr = Client._check_destination(a.out or ("./.rivya-" .. core.random_hex(8) .. ".mp4"))
      if not ok then return ctx:fail(derr) end
    end
    local err, on_upload
    if client.ledger then
      -- the client uploads and records the references, so a re-run resumes with the same files
      on_upload = function(_, path, info, file)
        if file then
          steps.transfer_ends(p)
          ctx.status:note(("uploaded %s (%s) as %s"):format(path, util.human_bytes(info.size), tostring(file.id)))
          return nil
        end
        steps.transfer_begins(p, "uploading " .. info.name, info.size)
        return steps.progress(ctx, p)
      end
    else
      local uploaded
      uploaded, err = steps.upload_refs(ctx, client, prepared, p)
      if not uploaded then return ctx:fail(err) end
    end
    if a.idempotency_key then prepared.idempotency_key = a.idempotency_key end
    p.phase = "creating"
    ctx.resume_hint = client.ledger and "the create may have reached the API: the same command again resumes it "
      .. "under the same Idempotency-Key (no second charge)" or nil
    local task
    task, err = client:create(prepared, { output = a.out, on_upload = on_upload })
    ctx.resume_hint = nil
    if not task then return ctx:fail(err) end
    ctx.current_task = task.id
    if client.ledger and not a.out and not a.no_wait then
      client.ledger:adopt(task, task.id .. "." .. cli_catalog.expected_ext(req.model))
    end
    if task.replayed then
      ctx.status:note(("replayed %s: created earlier under this idempotency key; nothing new reserved")
        :format(task.id))
    else
      ctx.status:note(("created %s (%d credits reserved)"):format(task.id, task.reserved_credits or 0))
    end
    if a.no_wait then
      steps.print(ctx, a, task)
      return EXIT.ok
    end
    -- the default name takes the extension of what is downloaded (.png, .mp3, ...)
    local out = a.out or (task.id .. "." .. cli_catalog.expected_ext(req.model))
    ctx.current_out = out
    local final
    final, err = steps.wait_and_download(ctx, a, client, task, out, p)
    if not final then
      -- the task is paid for: its id is on the last line whatever failed (-q prints nothing else)
      if type(err.message) == "string" and not err.message:find(task.id, 1, true) then
        err.message = ("%s (task %s)"):format(err.message, task.id)
      end
      return steps.failure(ctx, a, err, { output = nil })
    end
    if not a.out then
      local named = cli_catalog.name_after_media(out, task.id)
      -- the ledger follows the rename (rivya tasks, rivya download ID)
      if named ~= out and client.ledger then
        client.ledger:run("UPDATE tasks SET output = ?, saved_path = ? WHERE id = ?", named, named, task.id)
      end
      out = named
    end
    steps.print(ctx, a, final, { output = out, idempotency_key = task.idempotency_key })
    return EXIT.ok
  end)
end

local function add_to_parser(parser, specs)
  local c = parser:command("generate", "Create a video: upload references, create the task, wait, download.")
  c:argument("prompt", "The prompt ('-' reads it from stdin).")
  flags.request_flags(c, specs)
  c:option("-o --out", "Where to save the result (default ./<task id>.<extension of the media>)."):argname("<file>")
  c:option("--client-request-id", "Your own id for tracing the request."):argname("<id>")
  c:option("--idempotency-key", "Reuse a key to make a retried command replay the same task."):argname("<key>")
  c:flag("--no-wait", "Print the created task and exit (then: rivya wait ID --out FILE).")
  flags.common_flags(c, { wait = true })
  return c
end

return { add_to_parser = add_to_parser, command = command }
