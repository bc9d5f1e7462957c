--- rivya.cli.cmd.generate: `rivya generate`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local request = require "rivya.cli.request"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"
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
    local uploaded, err = steps.upload_refs(ctx, client, prepared, p)
    if not uploaded then return ctx:fail(err) end
    if a.idempotency_key then prepared.idempotency_key = a.idempotency_key end
    p.phase = "creating"
    local task
    task, err = client:create(prepared)
    if not task then return ctx:fail(err) end
    ctx.current_task = task.id
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
    if not final then return steps.failure(ctx, a, err, { output = nil }) end
    if not a.out then out = cli_catalog.name_after_media(out, task.id) end
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
