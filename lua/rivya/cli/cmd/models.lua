--- rivya.cli.cmd.models: `rivya models`.
local rivya = require "rivya"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local context = require "rivya.cli.context"
local compat = require "rivya.compat"

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
      -- id, category, modes, credits, status: one tab-separated line each
      local modes = type(m.supported_modes) == "table" and table.concat(m.supported_modes, ",") or "-"
      local credits = compat.math_type(m.base_credits) == "integer"
        and (m.base_credits .. (m.billing_type == "FIXED" and "" or " " .. tostring(m.billing_type))) or "?"
      ctx:out(table.concat({ tostring(m.id), tostring(m.category or "-"), modes ~= "" and modes or "-",
        credits, tostring(m.api_status or "-") }, "\t"))
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
