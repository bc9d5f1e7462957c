--- rivya.cli.cmd.credits: `rivya credits`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local credits, err = client:credits()
  if not credits then return ctx:fail(err) end
  if a.json then ctx:emit({ current_credits = credits }) else ctx:out(tostring(credits)) end
  return EXIT.ok
end

local function add_to_parser(parser)
  local c = parser:command("credits", "Print the credit balance.")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
