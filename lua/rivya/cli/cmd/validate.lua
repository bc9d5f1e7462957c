--- rivya.cli.cmd.validate: `rivya validate`.
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local request = require "rivya.cli.request"

local EXIT = util.EXIT

local function command(ctx, a, specs)
  local req, uerr = request.from_args(ctx, a, specs)
  if not req then return ctx:usage(uerr) end
  local prepared, body, credits = request.check(ctx, req, nil, true)
  if not prepared then return ctx:fail(body) end
  local warnings = prepared.warnings
  if a.json then
    ctx:emit({ valid = true, body = body, warnings = #warnings > 0 and warnings or nil, credits = credits })
  else
    ctx:warnings(warnings)
    ctx:out(util.body_text(body))
  end
  return EXIT.ok
end

local function add_to_parser(parser, specs)
  local c = parser:command("validate", "Check a request offline and print the exact JSON body.")
  c:argument("prompt", "The prompt ('-' reads it from stdin).")
  flags.request_flags(c, specs)
  c:option("--client-request-id", "Your own id for tracing the request."):argname("<id>")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
