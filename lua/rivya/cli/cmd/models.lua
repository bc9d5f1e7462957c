--- rivya.cli.cmd.models: `rivya models`.
local rivya = require "rivya"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local function command(ctx, a)
  local models
  if a.offline then
    models = rivya.models()
  else
    local client, cerr = ctx:client(false)
    if not client then return context.client_fail(ctx, cerr) end
    local err
    models, err = client:models()
    if not models then return ctx:fail(err) end
  end
  for _, m in ipairs(models) do
    if a.json then
      ctx:emit(m)
    else
      local inputs = m.supported_api_inputs or m.inputs
      local credits = type(m.pricing) == "table" and m.pricing.credits
      ctx:out((table.concat({ tostring(m.id), tostring(m.api_status or m.name or ""),
        type(inputs) == "table" and table.concat(inputs, ",") or "",
        credits and (credits .. " credits") or "" }, "\t"):gsub("\t+$", "")))
    end
  end
  return EXIT.ok
end

local function add_to_parser(parser)
  local c = parser:command("models", "List the models (the service's catalog, or --offline the known schemas).")
  c:flag("--offline", "The schemas this rivya knows, without the network.")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
