--- rivya.cli.cmd.webhooks: `rivya webhooks list|create|delete|rotate|test|deliveries`.
-- A signing secret is shown once, on stdout, by create and rotate (the API
-- gives it once); never on stderr, never in --json of other actions.
local rivya = require "rivya"
local util = require "rivya.cli.util"
local flags = require "rivya.cli.flags"
local context = require "rivya.cli.context"

local EXIT = util.EXIT

local ACTIONS = { "list", "create", "delete", "rotate", "test", "deliveries" }

-- the endpoint as plain data for --json: the secret revealed only when asked
local function plain(ep, with_secret)
  local t = {}
  for k, v in pairs(ep) do
    if rivya.webhook.is_secret(v) then
      if with_secret then t[k] = v:reveal() end
    else
      t[k] = v
    end
  end
  return t
end

local function line(ep)
  local types = type(ep.event_types) == "table" and table.concat(ep.event_types, ",") or "-"
  return table.concat({ tostring(ep.id), tostring(ep.status or "-"), tostring(ep.url), types,
    tostring(ep.name or "-") }, "\t")
end

local function command(ctx, a)
  local need = { create = 2, delete = 1, rotate = 1, test = 1, deliveries = 1, list = 0 }
  local args = a.args or {}
  if #args ~= need[a.action] then
    return ctx:usage(("webhooks %s takes %s"):format(a.action, ({ [0] = "no argument", "an endpoint id",
      "NAME URL" })[need[a.action]]))
  end
  local client, cerr = ctx:client(true)
  if not client then return context.client_fail(ctx, cerr) end
  local hooks = client:webhooks{ allow_loopback = a.allow_loopback or false }
  if a.action == "list" then
    local list, err = hooks:list()
    if not list then return ctx:fail(err) end
    for _, ep in ipairs(list) do
      if a.json then ctx:emit(plain(ep)) else ctx:out(line(ep)) end
    end
  elseif a.action == "create" or a.action == "rotate" then
    local ep, err
    if a.action == "create" then
      ep, err = hooks:create{ name = args[1], url = args[2], event_types = #a.event > 0 and a.event or nil }
    else
      ep, err = hooks:rotate_secret(args[1])
    end
    if not ep then return ctx:fail(err) end
    if a.json then
      ctx:emit(plain(ep, true))
    else
      ctx:out(line(ep))
      if ep.signing_secret then
        ctx:out("signing secret (shown once; store it like the API key): " .. ep.signing_secret:reveal())
      end
    end
  elseif a.action == "delete" then
    local ok, err = hooks:delete(args[1])
    if not ok then return ctx:fail(err) end
    if a.json then ctx:emit({ id = args[1], deleted = true }) else ctx:out("deleted " .. args[1]) end
  elseif a.action == "test" then
    local v, err = hooks:test(args[1])
    if not v then return ctx:fail(err) end
    if a.json then ctx:emit(v) else ctx:out("test event sent to " .. args[1]) end
  else
    local list, err = hooks:deliveries(args[1])
    if not list then return ctx:fail(err) end
    for _, d in ipairs(list) do
      if a.json then
        ctx:emit(d)
      else
        ctx:out(table.concat({ tostring(d.id), tostring(d.event_type or d.type or "-"), tostring(d.status or "-"),
          tostring(d.response_status or "-"), tostring(d.attempt or "-"), tostring(d.created_at or "-") }, "\t"))
      end
    end
  end
  return EXIT.ok
end

local function add_to_parser(parser)
  local c = parser:command("webhooks", "Manage webhook endpoints: list, create NAME URL, delete ID, rotate ID, "
    .. "test ID, deliveries ID.")
  c:argument("action", "What to do."):choices(ACTIONS)
  c:argument("args", "NAME URL for create, an endpoint id for the others."):args("*")
  c:option("--event", "An event type for create (repeatable; default generation.succeeded and "
    .. "generation.failed)."):argname("<type>"):count("*")
  c:flag("--allow-loopback", "Accept an http://127.0.0.1 receiver (rivya-sim --allow-loopback-webhooks).")
  flags.common_flags(c)
  return c
end

return { add_to_parser = add_to_parser, command = command }
