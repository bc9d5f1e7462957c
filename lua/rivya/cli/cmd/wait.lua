--- rivya.cli.cmd.wait: `rivya wait`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local p = { id = a.id, phase = "waiting" }
  ctx.status.render = steps.render(p)
  ctx.current_task, ctx.current_out = a.id, a.out
  return ctx:live(function()
    local task, err = client:get(a.id)
    if not task then
      -- a server that does not answer now may later: the wait polls on
      if err.status ~= nil and err.status < 500 and err.status ~= 429 then return ctx:fail(err) end
      task = { id = a.id }
    end
    local final
    final, err = steps.wait_and_download(ctx, a, client, task, a.out, p)
    if not final then return steps.failure(ctx, a, err) end
    steps.print(ctx, a, final, { output = a.out })
    return EXIT.ok
  end)
end

local function add_to_parser(parser)
  local c = parser:command("wait", "Wait until a task is final; with --out, download its video.")
  c:argument("id", "Task id.")
  c:option("-o --out", "Where to save the video."):argname("<file>")
  flags.common_flags(c, { wait = true })
  return c
end

return { add_to_parser = add_to_parser, command = command }
