--- rivya.webhook: webhook endpoints (the documented management endpoints),
-- events received from Rivya, and the trusted way to act on them.
--
-- Rivya does not document its signature scheme, so rivya has no verifier:
-- an event is a hint. `client:confirm(event)` re-reads the task with the API
-- key, and that answer is the one to trust. A verifier will come when Rivya
-- documents one.
--
-- A signing secret is treated like the API key: it is returned once by
-- create and rotate_secret as a rivya.Secret, whose tostring shows only its
-- last 4 characters and which holds no field with the value;
-- `secret:reveal()` gives the string to store.
local json = require "rivya.json"
local errors = require "rivya.errors"

local floor = math.floor

local webhook = {}

local EVENT_TYPES = { "generation.succeeded", "generation.failed" }

------------------------------------------------------------------------------
-- Secrets

local Secret = { __name = "rivya.Secret", __metatable = "rivya.Secret" }
Secret.__index = Secret
local secret_of = setmetatable({}, { __mode = "k" })   -- wrapper -> value, out of reach

local function new_secret(value)
  local s = setmetatable({}, Secret)
  secret_of[s] = value
  return s
end

function Secret.__tostring(s)
  local v = secret_of[s] or ""
  return ("rivya.Secret(%s)"):format(#v >= 16 and ("…" .. v:sub(-4)) or "hidden")
end

--- The secret's value, to store it where you keep the API key.
function Secret.reveal(s)
  return secret_of[s]
end

webhook.is_secret = function(v) return secret_of[v] ~= nil end

------------------------------------------------------------------------------
-- Endpoint URLs, checked by the documented rules before anything is sent:
-- https only; no credentials, fragment, localhost or local-network names,
-- loopback, private, link-local or reserved addresses.

local function rejected(url, why)
  local shown = #url > 80 and url:sub(1, 80) .. "…" or url
  shown = shown:gsub("[%c]", "?")
  return nil, errors.new("webhook_url_rejected", ("url: %s is refused for a webhook endpoint: %s")
    :format(shown, why), { field = "url" })
end

-- an IPv4 address in any form inet_aton takes (127.1, 0x7f000001, 017700000001) -> 4 bytes
local function parse_ipv4(host)
  if not host:match("^[%x%.xX]+$") or host:sub(-1) == "." then return nil end
  local nums = {}
  for part in (host .. "."):gmatch("([^.]*)%.") do
    local n
    if part:match("^0[xX]%x*$") then n = tonumber(#part > 2 and part:sub(3) or "0", 16)
    elseif part:match("^0[0-7]+$") then n = tonumber(part, 8)
    elseif part:match("^%d+$") then n = tonumber(part)
    else return nil end
    nums[#nums + 1] = n
  end
  if #nums < 1 or #nums > 4 then return nil end
  local value = 0
  for i = 1, #nums - 1 do
    if nums[i] > 255 then return nil end
    value = value * 256 + nums[i]
  end
  local room = 256 ^ (5 - #nums)
  if nums[#nums] >= room then return nil end
  value = value * room + nums[#nums]
  return { floor(value / 16777216) % 256, floor(value / 65536) % 256, floor(value / 256) % 256, value % 256 }
end

-- why an IPv4 address may not receive webhooks, or nil
local function ipv4_refused(b)
  local a, c = b[1], b[2]
  if a == 127 then return "a loopback address" end
  if a == 10 or (a == 172 and c >= 16 and c <= 31) or (a == 192 and c == 168) then
    return "a private address"
  end
  if a == 169 and c == 254 then return "a link-local address" end
  if a == 0 or (a == 100 and c >= 64 and c <= 127) or (a == 192 and c == 0 and (b[3] == 0 or b[3] == 2))
    or (a == 192 and c == 88 and b[3] == 99) or (a == 198 and (c == 18 or c == 19))
    or (a == 198 and c == 51 and b[3] == 100) or (a == 203 and c == 0 and b[3] == 113) or a >= 224 then
    return "a reserved address"
  end
end

-- "[...]" IPv6 literal -> 8 groups, or nil
local function parse_ipv6(text)
  if text:find("%%") then return nil end        -- zone ids name a local interface
  local v4 = text:match(":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then                                    -- ::ffff:127.0.0.1 -> ::ffff:7f00:1
    local b = parse_ipv4(v4)
    if not b then return nil end
    text = text:sub(1, #text - #v4) .. ("%x:%x"):format(b[1] * 256 + b[2], b[3] * 256 + b[4])
  elseif text:find(".", 1, true) then
    return nil
  end
  local function groups(s)
    local out = {}
    if s == "" then return out end
    for g in (s .. ":"):gmatch("([^:]*):") do
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[#out + 1] = tonumber(g, 16)
    end
    return out
  end
  local want = 8
  local head, rest = text:match("^(.-)::(.*)$")
  local g
  if head then
    if rest:find("::", 1, true) then return nil end
    local h, r = groups(head), groups(rest)
    if not h or not r or #h + #r >= want then return nil end
    g = h
    for _ = 1, want - #h - #r do g[#g + 1] = 0 end
    for _, x in ipairs(r) do g[#g + 1] = x end
  else
    g = groups(text)
    if not g or #g ~= want then return nil end
  end
  return g
end

local function ipv6_refused(g)
  local zero = true
  for i = 1, 8 do if g[i] ~= 0 and not (i == 8 and g[i] == 1) then zero = false end end
  if zero then return g[8] == 1 and "a loopback address" or "a reserved address" end
  local mapped = g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0
    and (g[6] == 0xffff or g[6] == 0)
  if mapped or (g[1] == 0x64 and g[2] == 0xff9b) then
    return ipv4_refused({ floor(g[7] / 256), g[7] % 256, floor(g[8] / 256), g[8] % 256 })
      or (g[6] == 0 and "a reserved address") or nil
  end
  -- x - x % 2^k: the 16-bit group x with its low k bits cleared (x & mask, on every Lua)
  local top7, top10, top3 = g[1] - g[1] % 512, g[1] - g[1] % 64, g[1] - g[1] % 8192
  if top7 == 0xfc00 then return "a private address" end
  if top10 == 0xfe80 or top10 == 0xfec0 then return "a link-local address" end
  if top3 ~= 0x2000 or (g[1] == 0x2001 and (g[2] == 0x0db8 or g[2] < 0x0200)) or g[1] == 0x2002 then
    return "a reserved address"
  end
end

local LOCAL_SUFFIXES = { "localhost", "local", "localdomain", "internal", "lan", "home.arpa", "intranet" }

--- Check a webhook endpoint URL by the documented rules: the URL | nil, err
-- (webhook_url_rejected). o.allow_loopback admits http:// to 127.0.0.1 or
-- [::1] (for a local receiver of rivya-sim --allow-loopback-webhooks).
function webhook.check_url(url, o)
  o = o or {}
  if type(url) ~= "string" then
    return nil, errors.new("webhook_url_rejected", "url: expected an https:// URL string; got " .. type(url),
      { field = "url" })
  end
  if #url > 2048 then return rejected(url, "longer than 2048 characters") end
  if url:find("[%s%c]") then return rejected(url, "it contains spaces or control characters") end
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return rejected(url, "not an absolute https:// URL") end
  scheme = scheme:lower()
  if rest:find("#", 1, true) then return rejected(url, "it has a fragment") end
  if authority:find("@", 1, true) then return rejected(url, "it carries credentials") end
  local host, port = authority:match("^(%[[^%]]*%])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  if port ~= "" then
    local n = port:match("^:(%d+)$")
    if not n or tonumber(n) < 1 or tonumber(n) > 65535 then return rejected(url, "its port is not valid") end
  end
  host = host:lower()
  if host == "" then return rejected(url, "it has no host") end
  local loopback_ok = o.allow_loopback == true
  local why
  if host:sub(1, 1) == "[" then
    local g = parse_ipv6(host:sub(2, -2))
    if not g then return rejected(url, "its IPv6 address is not valid") end
    why = ipv6_refused(g)
  else
    local name = host:gsub("%.$", "")
    local b = parse_ipv4(name)
    if b then
      why = ipv4_refused(b)
    elseif host:match("^[%d.]+$") then
      return rejected(url, "its IPv4 address is not valid")
    elseif not name:match("^[%w%-_.]+$") or name:find("..", 1, true) then
      return rejected(url, "its host name is not valid")
    elseif not name:find(".", 1, true) then
      why = "a local network name (no domain)"
    else
      for _, suffix in ipairs(LOCAL_SUFFIXES) do
        if name == suffix or name:sub(-#suffix - 1) == "." .. suffix then
          why = suffix == "localhost" and "a localhost name" or "a local network name"
        end
      end
      if name:match("^ip6%-local") or name:match("^ip6%-loopback") then why = "a localhost name" end
    end
  end
  if why == "a loopback address" and loopback_ok then
    if scheme ~= "https" and scheme ~= "http" then return rejected(url, "the scheme must be https") end
    return url
  end
  if scheme ~= "https" then return rejected(url, "the scheme must be https") end
  if why then return rejected(url, "the host is " .. why) end
  return url
end

------------------------------------------------------------------------------
-- Endpoints

local Endpoint = { __name = "rivya.WebhookEndpoint" }
Endpoint.__index = Endpoint

function Endpoint.__tostring(e)
  return ("rivya.WebhookEndpoint(%s, %s, %s)"):format(tostring(e.id), tostring(e.url), tostring(e.status))
end

-- an endpoint answer as an Endpoint, its signing secret wrapped
local function endpoint(v)
  if type(v) ~= "table" then return nil, errors.new("bad_response", "the answer is not a webhook endpoint") end
  if type(v.signing_secret) == "string" then v.signing_secret = new_secret(v.signing_secret) end
  if type(v.id) ~= "string" then
    return nil, errors.new("bad_response", "the answer is not a webhook endpoint (no id)")
  end
  return setmetatable(v, Endpoint)
end

-- the items of a list answer: {data = [...]}, or an array
local function items(v)
  if type(v) ~= "table" then return nil end
  if type(v.data) == "table" then return v.data end
  if v[1] ~= nil or next(v) == nil then return v end
  return nil
end

local function check_endpoint_id(id)
  if type(id) ~= "string" then error("rivya: webhook endpoint id must be a string, got " .. type(id), 3) end
  if not id:match("^[%w_%-]+$") or #id > 200 then
    return nil, errors.new("validation_failed", ("webhook endpoint id %q is not an id"):format(id:sub(1, 60)),
      { field = "id" })
  end
  return id
end

local function check_event_types(types)
  if types == nil then return EVENT_TYPES end
  local bad = type(types) ~= "table" or #types == 0
  for _, t in ipairs(type(types) == "table" and types or {}) do
    if type(t) ~= "string" or not t:match("^[%w_]+%.[%w_.]+$") then bad = true end
  end
  if bad then
    return nil, errors.new("validation_failed", "event_types: expected a non-empty array of event names such as "
      .. table.concat(EVENT_TYPES, ", "), { field = "event_types" })
  end
  return types
end

local Webhooks = { __name = "rivya.Webhooks" }
Webhooks.__index = Webhooks

local MANAGER_OPTIONS = { allow_loopback = "boolean" }

--- The webhook endpoints of `client` (client:webhooks(opts)). opts:
-- allow_loopback (http:// receivers on 127.0.0.1, for rivya-sim).
function webhook.manager(client, opts)
  if opts ~= nil and type(opts) ~= "table" then error("client:webhooks: options must be a table", 3) end
  for k, v in pairs(opts or {}) do
    if not MANAGER_OPTIONS[k] then error(("client:webhooks: unknown option '%s'"):format(tostring(k)), 3) end
    if type(v) ~= MANAGER_OPTIONS[k] then
      error(("client:webhooks: option '%s' must be a %s"):format(k, MANAGER_OPTIONS[k]), 3)
    end
  end
  return setmetatable({ client = client, allow_loopback = opts and opts.allow_loopback or false }, Webhooks)
end

local function api(self, method, path, o)
  if self.client.closed then error("rivya: attempt to use a closed client", 3) end
  return self.client:_api(method, path, o)
end

--- Register an endpoint: t = {name, url, event_types (default both
-- generation events)}. Returns the endpoint; its `signing_secret` (a
-- rivya.Secret) is given this once.
function Webhooks:create(t)
  if type(t) ~= "table" then error("webhooks:create: expected {name=, url=, event_types=}", 2) end
  if type(t.name) ~= "string" or t.name == "" then
    return nil, errors.new("validation_failed", "name: expected a non-empty string", { field = "name" })
  end
  local url, err = webhook.check_url(t.url, self)
  if not url then return nil, err end
  local types
  types, err = check_event_types(t.event_types)
  if not types then return nil, err end
  local v
  v, err = api(self, "POST", "/webhooks", { body = { name = t.name, url = url, event_types = types } })
  if not v then return nil, err end
  return endpoint(v)
end

--- The registered endpoints (an array).
function Webhooks:list()
  local v, err = api(self, "GET", "/webhooks")
  if not v then return nil, err end
  local list = items(v)
  if not list then return nil, errors.new("bad_response", "the endpoint list has no data array") end
  local out = {}
  for i, e in ipairs(list) do
    local ep, eerr = endpoint(e)
    if not ep then return nil, eerr end
    out[i] = ep
  end
  return out
end

--- One endpoint.
function Webhooks:get(id)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  local v
  v, err = api(self, "GET", "/webhooks/" .. id)
  if not v then return nil, err end
  return endpoint(v)
end

--- Change an endpoint: fields among name, url, event_types, status.
function Webhooks:update(id, fields)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  if type(fields) ~= "table" then error("webhooks:update: expected a table of fields", 2) end
  local body = {}
  for k, v in pairs(fields) do
    if k ~= "name" and k ~= "url" and k ~= "event_types" and k ~= "status" then
      error(("webhooks:update: unknown field '%s' (name, url, event_types, status)"):format(tostring(k)), 2)
    end
    body[k] = v
  end
  if body.url ~= nil then
    local url, uerr = webhook.check_url(body.url, self)
    if not url then return nil, uerr end
  end
  if body.event_types ~= nil then
    local types, terr = check_event_types(body.event_types)
    if not types then return nil, terr end
  end
  local v
  v, err = api(self, "PATCH", "/webhooks/" .. id, { body = body })
  if not v then return nil, err end
  return endpoint(v)
end

--- Delete an endpoint: true | nil, err.
function Webhooks:delete(id)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  local v
  v, err = api(self, "DELETE", "/webhooks/" .. id, { empty_ok = true })
  if not v then return nil, err end
  return true
end

--- A new signing secret (the old one stops working): the endpoint with
-- `signing_secret`, given this once.
function Webhooks:rotate_secret(id)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  local v
  v, err = api(self, "POST", "/webhooks/" .. id .. "/rotate-secret", { body = {}, empty_ok = true })
  if not v then return nil, err end
  if type(v.signing_secret) ~= "string" then
    return nil, errors.new("bad_response", "the rotate-secret answer has no signing_secret")
  end
  if type(v.id) ~= "string" then v.id = id end
  return endpoint(v)
end

--- Ask Rivya to send a test event to the endpoint: the answer (its shape is
-- not documented).
function Webhooks:test(id)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  return api(self, "POST", "/webhooks/" .. id .. "/test", { body = {}, empty_ok = true })
end

--- The delivery attempts to an endpoint (an array; shape not documented).
function Webhooks:deliveries(id)
  local ok, err = check_endpoint_id(id)
  if not ok then return nil, err end
  local v
  v, err = api(self, "GET", "/webhooks/" .. id .. "/deliveries")
  if not v then return nil, err end
  return items(v) or v
end

--- The events of the account (client:webhook_events()): an array.
function webhook.events(client)
  local v, err = client:_api("GET", "/webhook-events")
  if not v then return nil, err end
  return items(v) or v
end

------------------------------------------------------------------------------
-- Receiving

local function looks_like_task(t)
  return type(t) == "table" and type(t.id) == "string" and type(t.status) == "string"
end

--- The event in a delivery's body | nil, err (validation_failed): a table
-- with id, type, api_version, created_at, `task` (the status endpoint's
-- object, when the payload carries one) and `task_id`. Nothing here is
-- verified: act on client:confirm(event).
function webhook.parse(body)
  if type(body) ~= "string" then error("rivya.webhook.parse: expected the request body (a string)", 2) end
  local v = json.decode(body)
  if type(v) ~= "table" then
    return nil, errors.new("validation_failed", "event: the body is not a JSON object", { field = "event" })
  end
  if type(v.id) ~= "string" or type(v.type) ~= "string" then
    return nil, errors.new("validation_failed", "event: no id or type (not a Rivya webhook event)",
      { field = "event" })
  end
  local event = {}
  for k, x in pairs(v) do event[k] = x end
  local data = type(v.data) == "table" and v.data or nil
  local task = (looks_like_task(v.task) and v.task) or (looks_like_task(data) and data)
    or (data and looks_like_task(data.task) and data.task) or (data and looks_like_task(data.object) and data.object)
    or nil
  event.task = task
  local id = task and task.id or v.task_id or v.generation_id or (data and (data.task_id or data.id))
  event.task_id = type(id) == "string" and id or nil
  return event
end

--- The task an event is about, re-read with the API key: the trusted
-- answer (client:confirm(event)). `event` is a parsed event or a body.
function webhook.confirm(client, event)
  if type(event) == "string" then
    local err
    event, err = webhook.parse(event)
    if not event then return nil, err end
  end
  if type(event) ~= "table" then error("client:confirm: expected an event from rivya.webhook.parse", 3) end
  local id = event.task_id or (type(event.task) == "table" and event.task.id)
  if type(id) ~= "string" then
    return nil, errors.new("validation_failed", "event: it names no task to confirm", { field = "event.task_id" })
  end
  return client:get(id)
end

return webhook
