--- rivya.cli.cmd.models: `rivya models`.
local rivya = require "rivya"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local context = require "rivya.cli.context"
local cli_catalog = require "rivya.cli.catalog"
local compat = require "rivya.compat"

local EXIT = util.EXIT

local function command(ctx, a)
  local models
  if a.offline then
    models = rivya.models()
  else
    -- the live catalog, cached on disk next to the ledger (--refresh: fetch it now)
    local err
    models, err = cli_catalog.load(a.refresh)
    if not models then
      if err.code == "config" then return context.client_fail(ctx, err) end
      return ctx:fail(err)
    end
  end
  for _, m in ipairs(models) do
    if a.json then
      ctx:emit(m)
    else
      -- id, category, modes, credits, status: one tab-separated line each
      local modes = type(m.supported_modes) == "table" and table.concat(m.supported_modes, ",") or "-"
      local credits = compat.math_type(m.base_credits) == "integer"
        and (m.base_credits .. (m.billing_type == "FIXED" and "" or " " .. tostring(m.billing_type))) or "?"
      -- each field printable on its own: a tab inside one must not make a column
      local fields = { tostring(m.id), tostring(m.category or "-"), modes ~= "" and modes or "-",
        credits, tostring(m.api_status or "-") }
      for i, f in ipairs(fields) do fields[i] = util.printable(f) end
      ctx:out(table.concat(fields, "\t"))
    end
  end
  return EXIT.ok
end

local function add_to_parser(parser)
  local c = parser:command("models", "List the models: id, category, modes, credits, status (--json: the objects).")
  c:flag("--offline", "The catalog snapshot this rivya ships, without the network.")
  c:flag("--refresh", "Fetch the catalog now, not the cached one (kept RIVYA_CATALOG_TTL s, 3600).")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
