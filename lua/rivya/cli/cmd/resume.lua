--- rivya.cli.cmd.resume: `rivya resume`, wait for and save every pending
-- task of the ledger that has an out path.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  if not client.ledger then return ctx:usage("the ledger is off (RIVYA_LEDGER=off): nothing to resume") end
  local rows, err = client.ledger:tasks{ status = "pending" }
  if not rows then return ctx:fail(err) end
  local code = EXIT.ok
  local p = {}
  ctx.status.render = steps.render(p)
  return ctx:live(function()
    for i = #rows, 1, -1 do   -- oldest first
      local t = rows[i]
      if not t.id then
        ctx.status:note(("%s was never answered: run the command that made it again to resume it")
          :format(t.idempotency_key))
      elseif not t.output then
        ctx.status:note(("%s has no out path: rivya wait %s --out FILE"):format(t.id, t.id))
      else
        ctx.current_task, ctx.current_out = t.id, t.output
        local task
        task, err = client:get(t.id)
        if task then task, err = steps.wait_and_download(ctx, a, client, task, t.output, p) end
        if task then
          steps.print(ctx, a, task, { output = t.output })
        else
          local failed = steps.failure(ctx, a, err, { output = t.output })
          if code == EXIT.ok then code = failed end
        end
      end
    end
    return code
  end)
end

local function add_to_parser(parser)
  local c = parser:command("resume", "Wait for and save every pending task of the ledger that has an out path.")
  flags.common_flags(c, { wait = true })
  return c
end

return { add_to_parser = add_to_parser, command = command }
