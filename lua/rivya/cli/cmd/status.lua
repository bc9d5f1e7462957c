--- rivya.cli.cmd.status: `rivya status`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local steps = require "rivya.cli.task"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local code = EXIT.ok
  for _, id in ipairs(a.id) do
    local task, err = client:get(id)
    if task then
      steps.print(ctx, a, task)
    else
      code = ctx:fail(err, id .. ": ", { id = id })
    end
  end
  return code
end

local function add_to_parser(parser)
  local c = parser:command("status", "Print a task's current state.")
  c:argument("id", "Task id(s)."):args("+")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
