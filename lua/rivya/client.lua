--- rivya.Client: the Rivya Public API v1 over one libcurl multi handle.
-- Every call returns its result, or `nil, err` on a runtime failure (err is a
-- rivya.Error table); misuse (wrong argument types, unknown options) raises.
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"
local sched = require "rivya.sched"
local compat = require "rivya.compat"
local catalog = require "rivya.catalog"
local webhook = require "rivya.webhook"
local Ledger = require "rivya.ledger"
local refs = require "rivya.refs"

local Client = {}
Client.__index = Client
Client.__name = "rivya.Client"

local now = core.now
local find = string.find
local min, yield = math.min, coroutine.yield
local park_sleep, park_call, unpark, WAIT = sched.park_sleep, sched.park_call, sched.unpark, sched.WAIT

--- Defaults, documented in the README.
local DEFAULTS = {
  base_url = "https://rivya.ai",
  timeout = 60,            -- seconds, one HTTP request
  call_timeout = nil,      -- seconds, one API call with its retries: 2 x timeout when nil
  connect_timeout = 10,    -- seconds
  max_retries = 3,         -- retries after the first attempt
  retry_base = 0.5,        -- first backoff, seconds; doubles each retry
  retry_cap = 8,           -- longest backoff, seconds
  retry_after_cap = 60,    -- longest Retry-After honoured, seconds
  stall_timeout = 30,      -- a download with no byte for this long fails
  wait_timeout = 900,      -- client:wait's total deadline, seconds
  max_connections = 16,    -- per host
  max_download_bytes = 2 * 1024 * 1024 * 1024,   -- a larger download fails (bad_response)
  min_download_rate = 1024,  -- bytes a second over each stall_timeout window, else it fails
}

local MAX_API_BODY = 4 * 1024 * 1024   -- an API answer larger than this is an error
local FINAL = { succeeded = true, failed = true }

-- option name -> Lua type, for rivya.new
-- ("seconds": a finite number >= 0)
local OPTIONS = {
  api_key = "string", base_url = "string", timeout = "seconds",
  connect_timeout = "seconds", call_timeout = "seconds", max_retries = "number", ca_file = "string",
  retry_base = "seconds", retry_cap = "seconds", retry_after_cap = "seconds",
  stall_timeout = "seconds", wait_timeout = "seconds", poll_interval = "seconds",
  max_connections = "number", allow_http = "string", user_agent = "string",
  waiter = "function", ledger = "any", on_retry = "function",
  max_download_bytes = "number", min_download_rate = "number",
}

-- the options of a call given none: shared, never written to
local NO_OPTIONS = setmetatable({}, {
  __newindex = function() errors.misuse("rivya: internal: NO_OPTIONS is read-only") end,
})

local function check_options(where, opts, allowed)
  if opts == nil then return NO_OPTIONS end
  if type(opts) ~= "table" then
    errors.misuse(("%s: options must be a table, got %s"):format(where, type(opts)))
  end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      local hint = type(k) == "string" and core.suggest(k, names)
      errors.misuse(("%s: unknown option '%s'%s"):format(where, tostring(k),
        hint and ("; did you mean '" .. hint .. "'?") or ""))
    end
    if want == "seconds" then
      if type(v) ~= "number" or not (v >= 0 and v < math.huge) then
        errors.misuse(("%s: option '%s' must be a finite number of seconds >= 0, got %s"):format(where, k,
          type(v) == "number" and tostring(v) or type(v)))
      end
    elseif want ~= "any" and type(v) ~= want then
      errors.misuse(("%s: option '%s' must be a %s, got %s"):format(where, k, want, type(v)))
    end
  end
  return opts
end

local function is_loopback(host)
  host = host:lower()
  return host == "localhost" or host == "[::1]" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- "https://host:port" from a base URL; raises on anything else
local function parse_origin(url, allow_http)
  local scheme, hostport, rest = url:match("^(%a[%w+.-]*)://([^/?#]+)(.*)$")
  if not scheme then errors.misuse("rivya.new: base_url must look like https://host, got '" .. url .. "'") end
  scheme = scheme:lower()
  if hostport:find("@", 1, true) then errors.misuse("rivya.new: base_url must not carry credentials") end
  if rest ~= "" and rest ~= "/" then errors.misuse("rivya.new: base_url must not have a path, got '" .. rest .. "'") end
  local host = hostport:match("^(%[[^%]]+%])") or hostport:match("^([^:]+)")
  if scheme == "http" then
    if not is_loopback(host) and allow_http ~= host then
      errors.misuse(("rivya.new: refusing plain http:// to %s (the API key would travel in clear); "
        .. "use https, or pass allow_http = %q to opt in"):format(host, host))
    end
  elseif scheme ~= "https" then
    errors.misuse("rivya.new: base_url scheme must be https (or http on loopback), got " .. scheme)
  end
  return scheme .. "://" .. hostport
end

-- Close a transfer now (its __close, a no-op when closed already).
local function close_transfer(t)
  getmetatable(t).__close(t)
end

-- sched.await, closing the transfer when a callback raises; PUC Lua 5.1
-- cannot yield across that pcall, so there the transfer is left to __gc.
local function await_closing(session, t, tick, on_tick, waiter, pollable)
  if not compat.yield_in_pcall then return sched.await(session, t, tick, on_tick, waiter, pollable) end
  local ok, err = pcall(sched.await, session, t, tick, on_tick, waiter, pollable)
  if not ok then
    close_transfer(t)
    error(err, 0)
  end
end

-- A ca_file that cannot serve as a trust anchor is misuse found offline: it raises
-- in rivya.new rather than making every call fail later with a `tls` error.
local function check_ca_file(path)
  local st, why = core.stat(path)
  if st and st.type ~= "file" then why = "a " .. st.type .. ", not a PEM file" end
  if not why then
    local f, ferr = io.open(path, "rb")
    local pem = f and f:read("*a")
    if f then f:close() end
    why = (ferr or not pem) and (ferr or "not readable")
      or (not pem:find("-----BEGIN CERTIFICATE-----", 1, true) and "no PEM certificate in it")
  end
  if why then errors.misuse(("rivya.new: ca_file: cannot use %s: %s"):format(path, why)) end
end

-- opts.ledger: a path, true (the default path; none when RIVYA_LEDGER=off), an
-- open rivya.Ledger, or false. A ledger that cannot be opened raises: a client
-- asked to keep records must not run without them.
function Client._open_ledger(spec)
  if getmetatable(spec) == Ledger then return spec end
  local path = spec
  if spec == true then path = Ledger.default_path() if not path then return nil end
  elseif type(spec) ~= "string" then
    errors.misuse("rivya.new: option 'ledger' must be a path, true or false, got " .. type(spec))
  end
  local ledger, err = Ledger.open(path)
  if not ledger then errors.misuse("rivya.new: ledger: " .. tostring(err.message or err)) end
  return ledger
end

-- The key as sent: surrounding whitespace stripped (a trailing newline from
-- `$(cat keyfile)` is common), nil when nothing is left. A key with a control
-- character or whitespace inside would forge header lines: it raises, naming
-- the byte's position, never the key.
local function check_key(key)
  if key == nil then return nil end
  key = key:match("^%s*(.-)%s*$")
  if key == "" then return nil end
  local at = key:find("[%c%s]")
  if at then
    errors.misuse(("rivya.new: api_key: a control character or whitespace at byte %d (API keys are one word "
      .. "of printable characters)"):format(at))
  end
  return key
end

--- rivya.new(opts) -> client. Raises on misuse; never contacts the server.
function Client.new(opts)
  opts = check_options("rivya.new", opts, OPTIONS)
  local self = setmetatable({}, Client)
  for k, v in pairs(DEFAULTS) do self[k] = v end
  for k, v in pairs(opts) do if k ~= "api_key" then self[k] = v end end
  -- the `timeout` option must not shadow the pollable client:timeout() method
  self.request_timeout, self.timeout = self.timeout, nil
  self.call_timeout = self.call_timeout or 2 * self.request_timeout
  self.base_url = opts.base_url or os.getenv("RIVYA_BASE_URL") or DEFAULTS.base_url
  self.origin = parse_origin(self.base_url, opts.allow_http)
  self.api_url = self.origin .. "/api/v1"
  -- result URLs are https only, unless the API itself is reached in plain
  -- http (loopback or allow_http: a local simulator and its CDN)
  self.plain_downloads = self.origin:sub(1, 7) == "http://"
  local key = check_key(opts.api_key or os.getenv("RIVYA_API_KEY"))
  self.has_key = key ~= nil
  -- only a short suffix of the key stays on the Lua side, for tostring
  self.key_hint = key and #key >= 16 and key:sub(-4) or nil
  self.user_agent = (opts.user_agent and (opts.user_agent .. " ") or "")
    .. ("rivya-lua/%s (%s; %s)"):format(core.VERSION, _VERSION, core.curl_version:match("^%S+") or "libcurl")
  if compat.math_type(self.max_retries) ~= "integer" or self.max_retries < 0 then
    errors.misuse("rivya.new: max_retries must be a non-negative integer")
  end
  for _, name in ipairs({ "max_download_bytes", "min_download_rate" }) do
    if not (self[name] >= 0 and self[name] < math.huge) then
      errors.misuse(("rivya.new: %s must be a finite number >= 0"):format(name))
    end
  end
  if opts.ca_file then check_ca_file(opts.ca_file) end
  self.ledger = nil
  if opts.ledger then
    self.ledger = Client._open_ledger(opts.ledger)
    if self.ledger == opts.ledger then self._given_ledger = opts.ledger end   -- the caller's to close
  end
  self.session = core.session{
    api_key = key, api_origin = self.origin, user_agent = self.user_agent,
    ca_file = opts.ca_file, max_connections = self.max_connections,
  }
  return self
end

function Client:__tostring()
  return ("rivya.Client(%s, key=%s%s)"):format(self.origin,
    self.has_key and ("…" .. (self.key_hint or "")) or "none",
    self.closed and ", closed" or "")
end

local function check_open(self)
  if getmetatable(self) ~= Client then errors.misuse("rivya: method called without a client (use client:method)") end
  if self.closed then errors.misuse("rivya: attempt to use a closed client") end
end

--- Backoff before retry number `attempt` (0-based): base·2^attempt capped,
-- with jitter in [50%, 100%] so many clients do not retry in step.
function Client:_backoff(attempt)
  local d = math.min(self.retry_cap, self.retry_base * 2 ^ attempt)
  return d * (0.5 + 0.5 * math.random())
end

--- The wait before retry number `attempt` after `err`: the server's
-- Retry-After (seconds or an HTTP date, read into err.retry_after) capped at
-- retry_after_cap, else the backoff.
function Client:_retry_delay(err, attempt)
  if err.retry_after then return math.min(err.retry_after, self.retry_after_cap) end
  return self:_backoff(attempt)
end

local RETRY_CODES = { rate_limited = true, public_api_disabled = true }

-- The scope each call needs (API.md, "Transport and auth"): method, path
-- pattern under /api/v1, scope. The first match wins.
local SCOPES = {
  { "GET", "^/models", "models:read" },
  { "POST", "^/generations", "generations:create" },
  { "GET", "^/generations/", "generations:read" },
  { "POST", "^/files", "files:create" },
  { "GET", "^/files/", "files:read" },
  { "GET", "^/credits", "credits:read" },
  { nil, "^/webhook", "webhooks:manage" },
  { "POST", "^/chat/", "chat:create" },
  { "GET", "^/chat/", "chat:read" },
}

-- api_scope_denied says the key lacks a scope; name the one this call needs.
local function name_scope(err, spec)
  local method = spec.method or "GET"
  local path = spec.url:match("/api/v1(/[^?#]*)") or ""
  for _, s in ipairs(SCOPES) do
    if (s[1] == nil or s[1] == method) and path:find(s[2]) then
      err.scope = s[3]
      err.message = ("%s (%s %s needs the %s scope)"):format(err.message, method, "/api/v1" .. path, s[3])
      return
    end
  end
end
-- the headers of a bodyless API call: one shared table, never modified
local ACCEPT_JSON = { "Accept: application/json" }

-- "GET /api/v1/credits" (API calls) or the method and URL without its query
-- (downloads: a signed URL's query is a secret of sorts): for timeout messages
function Client:_request_name(spec)
  local url = spec.url
  if url:sub(1, #self.api_url) == self.api_url then
    url = url:sub(#self.origin + 1)
  end
  return (spec.method or "GET") .. " " .. (url:match("^[^?#]*"))
end

-- A timeout error that says which request timed out (err.request too).
function Client:_timeout(spec, why)
  local name = self:_request_name(spec)
  return errors.new("timeout", name .. ": " .. why, { request = name })
end

-- transport failure kind -> error code
local FAILURE_CODES = { timeout = "timeout", tls = "tls", io = "io", too_large = "bad_response",
  not_media = "bad_response", changed = "io", insecure = "bad_response" }

--- One HTTP exchange with the retry policy. `spec` is a core transfer spec;
-- o: deadline (monotonic seconds: the whole call's, retries and backoff
-- included; the argument `deadline` overrides it), decode (JSON answer
-- expected), empty_ok, on_tick, tick.
-- Returns the decoded body (or status, headers for raw) | nil, err.
function Client:_exchange(spec, o, deadline)
  deadline = deadline or o.deadline
  local attempt, last = 0, nil
  while true do
    if deadline then
      local left = deadline - now()
      if left <= 0 then
        -- after failed attempts, the last one's cause is the news
        local e = self:_timeout(spec, "the call's deadline passed before the request could be sent"
          .. (last and ("; attempt %d of it failed: %s"):format(attempt, last.message) or ""))
        e.attempts = attempt > 0 and attempt or nil
        return nil, e
      end
      if not spec.timeout or spec.timeout == 0 or spec.timeout > left then spec.timeout = left end
    end
    -- inside gather, waits for a free slot; the transfer is closed as soon as its
    -- answer is read (or a callback raised), returning curl's memory then, not at
    -- some later GC cycle (by hand: LuaJIT and 5.1-5.3 have no <close>)
    local t, start_err = sched.start(self.session, spec)
    if not t then return nil, start_err end
    await_closing(self.session, t, o.tick, o.on_tick and function() o.on_tick(t) end, self.waiter, self)
    if o.on_tick then
      if compat.yield_in_pcall then
        local ok, cerr = pcall(o.on_tick, t)
        if not ok then close_transfer(t) error(cerr, 0) end
      else
        o.on_tick(t)
      end
    end
    -- the header table is built only when something reads it, before the close
    local status, body, message = t:answer()
    local err, retryable
    if status == nil then
      close_transfer(t)
      local kind = body
      local code = FAILURE_CODES[kind] or "network"
      err = code == "timeout" and self:_timeout(spec, "timed out (" .. message .. ")") or errors.new(code, message)
      -- an answer over the size cap is garbled like invalid JSON: try again
      -- (not a download over max_download_bytes: it would only come again)
      retryable = kind == "network" or kind == "timeout" or kind == "not_media"
        or (kind == "too_large" and not spec.output)
    elseif status >= 200 and status < 300 then
      if not o.decode then
        local headers = t:headers()
        close_transfer(t)
        return status, headers
      end
      -- a DELETE may answer 204 or 200 without a body
      if o.empty_ok and (body == nil or body == "") then close_transfer(t) return {} end
      local v = json.decode_object(body)
      if type(v) == "table" then
        -- the headers only for who asks (a create: was it replayed?)
        local headers = o.headers and t:headers() or nil
        close_transfer(t)
        return v, headers
      end
      local headers = t:headers()
      close_transfer(t)
      err = errors.new("bad_response", ("the API answered %d with a body that is not a JSON object (%s)")
        :format(status, headers["content-type"] or "no content type"),
        { status = status, request_id = headers["x-request-id"] })
      retryable = true
    else
      err = errors.from_response(status, t:headers(), body)
      close_transfer(t)
      if err.code == "api_scope_denied" then name_scope(err, spec) end
      retryable = status == 429 or status >= 500 or RETRY_CODES[err.code] == true
    end
    if not retryable or attempt >= self.max_retries then
      err.attempts = attempt + 1
      return nil, err
    end
    local delay = self:_retry_delay(err, attempt)
    if deadline and now() + delay >= deadline then
      err.attempts = attempt + 1
      return nil, err
    end
    -- on_retry({attempt = n (1 for the first retry), delay = seconds, error = err}):
    -- what a progress display shows while the client keeps trying
    if self.on_retry then self.on_retry({ attempt = attempt + 1, delay = delay, error = err }) end
    last = err
    sched.sleep(delay, self.waiter)
    attempt = attempt + 1
  end
end

-- what _api asks of _exchange: shared, never written to
local DECODE, DECODE_EMPTY_OK = { decode = true }, { decode = true, empty_ok = true }
local DECODE_HEADERS = { decode = true, headers = true }

--- A JSON call to the API. o: body (table), idempotency_key, auth (default
-- true), deadline (monotonic seconds; call_timeout from now at the latest).
function Client:_api(method, path, o)
  o = o or NO_OPTIONS
  local deadline = now() + self.call_timeout
  if o.deadline and o.deadline < deadline then deadline = o.deadline end
  if o.auth ~= false and not self.has_key then
    return nil, errors.new("api_key_missing",
      "no API key: pass api_key to rivya.new or set RIVYA_API_KEY")
  end
  local headers = ACCEPT_JSON
  local body
  if o.body ~= nil or o.idempotency_key then headers = { ACCEPT_JSON[1] } end
  if o.body ~= nil then
    local err
    body, err = json.encode(o.body)
    if not body then return nil, errors.new("validation_failed", "cannot encode the request: " .. err) end
    headers[#headers + 1] = "Content-Type: application/json"
  end
  if o.idempotency_key then headers[#headers + 1] = "Idempotency-Key: " .. o.idempotency_key end
  return self:_exchange({
    method = method, url = self.api_url .. path, headers = headers, body = body,
    auth = o.auth ~= false, timeout = self.request_timeout, connect_timeout = self.connect_timeout,
    max_body = MAX_API_BODY, close = o.close,
  }, o.headers and DECODE_HEADERS or o.empty_ok and DECODE_EMPTY_OK or DECODE, deadline)
end

-- The live catalog, fetched once per client (no key needed) and compiled
-- for the validator: models, compiled | nil, err. Coroutines that ask while
-- the first fetch is on its way wait for it rather than fetch again.
function Client:_catalog()
  -- the coroutine fetching it (no pcall here: Lua 5.1 cannot yield across
  -- one); one that died on the way leaves the fetch to the next asker
  local fetcher = self.catalog_fetcher
  while type(fetcher) == "thread" and fetcher ~= coroutine.running() and coroutine.status(fetcher) ~= "dead"
      and not self.catalog_models do
    sched.sleep(0.01, self.waiter)
    fetcher = self.catalog_fetcher
  end
  if self.catalog_models then return self.catalog_models, self.catalog_compiled end
  self.catalog_fetcher = coroutine.running() or true
  local v, err = self:_api("GET", "/models", { auth = false, close = true })
  self.catalog_fetcher = nil
  if not v then return nil, err end
  local data = v.data
  if type(data) ~= "table" then
    return nil, errors.new("bad_response", "the model catalog has no data array")
  end
  local models = {}
  for _, m in ipairs(data) do
    if type(m) == "table" and type(m.id) == "string" then models[#models + 1] = m end
  end
  self.catalog_models, self.catalog_compiled = models, catalog.compile(models)
  return models, self.catalog_compiled
end

-- Use `models` (catalog objects, compiled as `compiled`) as this client's
-- catalog: the CLI's, read from its disk cache. Only before the first fetch.
function Client:_use_catalog(models, compiled)
  if not self.catalog_models then self.catalog_models, self.catalog_compiled = models, compiled end
end

--- The live model catalog: the documented objects of GET /api/v1/models
-- (no key needed), fetched once per client; fresh tables on each call.
function Client:models()
  check_open(self)
  local models, err = self:_catalog()
  if not models then return nil, err end
  return catalog.copy(models)
end

-- client:validate and client:estimate: `req` checked by the live catalog's
-- method `name`.
local function with_catalog(self, req, name)
  check_open(self)
  if type(req) ~= "table" then
    errors.misuse(("client:%s: expected a request table, got %s"):format(name, type(req)))
  end
  local models, cat = self:_catalog()
  if not models then return nil, cat end
  return cat[name](cat, req)
end

--- The exact JSON-ready body a create of `req` would send, and its warnings
-- | nil, err: validated against the live catalog (any model it lists).
function Client:validate(req)
  return with_catalog(self, req, "validate")
end

--- Credits a run of `req` would reserve | nil, err: the model's base_credits
-- when its billing is FIXED (else code "unknown"), after validation.
function Client:estimate(req)
  return with_catalog(self, req, "estimate")
end

--- The current credit balance, an integer.
function Client:credits()
  check_open(self)
  local v, err = self:_api("GET", "/credits")
  if not v then return nil, err end
  if compat.math_type(v.current_credits) ~= "integer" then
    return nil, errors.new("bad_response", "the credits answer has no integer current_credits")
  end
  return v.current_credits
end

-- The one rule for task and file ids, those rivya sends and those it is
-- sent: 1-200 letters, digits, '_' or '-'. An id from an answer reaches URL
-- paths, file names, ledgers and terminals: anything else is refused.
local function valid_id(id)
  return #id <= 200 and find(id, "^[%w_%-]+$") ~= nil
end

-- a bad id in an answer: the message names its length, never its bytes
local function bad_id(what, id)
  return errors.new("bad_response", ("the answer's %s id is not 1-200 letters, digits, '_' or '-' "
    .. "(%d bytes)"):format(what, #id))
end

local function check_task(v)
  local id = v.id
  if type(id) ~= "string" or type(v.status) ~= "string" then
    return nil, errors.new("bad_response", "the answer is not a task object (no id or status)")
  end
  if not valid_id(id) then return nil, bad_id("task", id) end
  return v
end

local function check_id(id)
  if type(id) ~= "string" then errors.misuse("rivya: task id must be a string, got " .. type(id)) end
  if not valid_id(id) then
    return nil, errors.new("validation_failed",
      ("task id: expected letters, digits, '_' or '-'; got %q"):format(id:sub(1, 80)), { field = "id" })
  end
  return id
end

local KINDS = { image = true, video = true, audio = true }
local UPLOAD_OPTIONS = { kind = "string", model = "string", client_request_id = "string",
  on_progress = "function", name = "string", timeout = "seconds" }

-- the API's file object with either spelling, in rivya's snake_case form
local function normalize_file(v)
  v.id = v.id or v.file_id
  v.mime_type = v.mime_type or v.mimeType
  v.duration_token = v.duration_token or v.durationToken
  v.duration_seconds = v.duration_seconds or v.durationSeconds
  v.size_bytes = v.size_bytes or v.sizeBytes
  if type(v.url) ~= "string" then
    return nil, errors.new("bad_response", "the answer is not a file object (no url)")
  end
  if v.id ~= nil and (type(v.id) ~= "string" or not valid_id(v.id)) then
    return nil, bad_id("file", tostring(v.id))
  end
  return v
end

-- The code points of `s`, or nil when it is not UTF-8 (no utf8 library on
-- 5.1 and LuaJIT). client_request_id counts code points for uploads as for
-- creates (docs/api-contract.md).
local function utf8_count(s)
  local n, i, len = 0, 1, #s
  while i <= len do
    local c, c2 = s:byte(i), s:byte(i + 1)
    local k = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
      or (c >= 0xF0 and c <= 0xF4) and 4
    if not k or i + k - 1 > len then return nil end
    for j = i + 1, i + k - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return nil end
    end
    if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) or (c == 0xF0 and c2 < 0x90)
        or (c == 0xF4 and c2 > 0x8F) then
      return nil
    end
    n, i = n + 1, i + k
  end
  return n
end

--- Upload a reference file (streamed from disk, never loaded whole) to the
-- Files API. `source` is a path or {data = bytes, name = "x.png"}. opts:
-- kind (else from the bytes), model (its limits apply), client_request_id,
-- on_progress(sent, total) with total = the file's size.
function Client:upload(source, opts)
  check_open(self)
  opts = check_options("client:upload", opts, UPLOAD_OPTIONS)
  return self:_upload(source, opts)
end

-- upload with a given Idempotency-Key (a ledger's recorded one) or a new one
function Client:_upload(source, opts, key)
  if opts.kind and not KINDS[opts.kind] then
    errors.misuse("client:upload: kind must be image, video or audio, got " .. opts.kind)
  end
  -- a model's own limits come from the live catalog, fetched once the file
  -- passed its local checks
  local cat = opts.model and function()
    local models, c = self:_catalog()
    if not models then return nil, c end
    return c
  end
  if cat and self.catalog_compiled then cat = self.catalog_compiled end
  -- a reference from refs.inspect (client:create, the CLI) is not looked at twice
  local info, err = source
  -- (a path's info is used once: its open file is closed by the upload)
  if not (refs.is_info(source) and info.catalog == cat and info.model == opts.model
      and (opts.kind or info.kind) == info.kind and (opts.name or info.name) == info.name
      and (info.file or type(info.source) ~= "string")) then
    info, err = refs.inspect(refs.is_info(source) and source.source or source, opts, cat)
    if not info then return nil, err end
  end
  source = info.source
  local cri = opts.client_request_id and utf8_count(opts.client_request_id)
  if opts.client_request_id and not (cri and cri <= 128) then
    return nil, errors.new("validation_failed",
      "client_request_id: expected at most 128 characters (code points) of UTF-8",
      { field = "client_request_id" })
  end
  if not self.has_key then
    return nil, errors.new("api_key_missing", "no API key: pass api_key to rivya.new or set RIVYA_API_KEY")
  end
  -- every attempt streams from the descriptor refs.inspect opened: the path is
  -- never opened again (a file swapped during a backoff is not what is sent);
  -- closed when the upload ends (a raise in on_progress leaves it to __gc)
  local file = info.file
  info.file = nil
  local file_part = { name = "file", filename = info.name, type = info.mime }
  if file then file_part.file = file else file_part.data = source.data end
  local parts = { file_part, { name = "kind", data = info.kind } }
  if opts.model then parts[#parts + 1] = { name = "model", data = opts.model } end
  if opts.client_request_id then parts[#parts + 1] = { name = "client_request_id", data = opts.client_request_id } end
  local on_progress, reported = opts.on_progress, -1
  local function tick(t)
    local sent = t:progress()
    if sent > info.size then sent = info.size end
    if on_progress and sent > reported then
      reported = sent
      on_progress(sent, info.size)
    end
  end
  -- every retry re-streams the file from its start under the same key, so
  -- an upload the server stored before the connection broke is not stored twice
  key = key or ("rivya-" .. core.random_hex(16))
  local v
  v, err = self:_exchange({
    method = "POST", url = self.api_url .. "/files",
    headers = { "Accept: application/json", "Idempotency-Key: " .. key },
    multipart = parts, auth = true, timeout = 0, stall = self.stall_timeout,
    connect_timeout = self.connect_timeout, max_body = MAX_API_BODY,
  }, { decode = true, tick = on_progress and 0.1 or nil, on_tick = on_progress and tick or nil,
       deadline = opts.timeout and now() + opts.timeout })
  if file then file:close() end
  if not v then
    if err.code == "io" then
      err.message = ("file: %s: %s"):format(info.name, err.message)
      err.field = "file"
    end
    return nil, err
  end
  if on_progress and reported < info.size then on_progress(info.size, info.size) end
  return normalize_file(v)
end

--- The uploaded file `id` ("file_..."): its object as client:upload
-- returned it (GET /api/v1/files/{id}).
function Client:file(id)
  check_open(self)
  local ok, err = check_id(id)
  if not ok then return nil, err end
  local v
  v, err = self:_api("GET", "/files/" .. id)
  if not v then return nil, err end
  return normalize_file(v)
end

-- Upload the local files of a prepared request (rivya.refs) that are not
-- attached yet, attaching each. rec (with a ledger): {ledger, key = the
-- create's key, uploads = recorded uploads by position}: a file recorded as
-- uploaded is not sent again (the replayed create must carry the same URL),
-- an upload recorded but not answered is sent again under its own key, and
-- each one is recorded before it leaves. on_upload(index, path, info) may
-- return an on_progress for that file, and is called again with the file
-- object once uploaded. Returns true | nil, err.
function Client:_upload_references(prepared, rec, deadline, on_upload)
  for _, ref in ipairs(prepared:pending()) do
    local i, path, info = ref.index, ref.path, ref.info
    local done = rec and rec.uploads[i]
    if done and (done.path ~= path or done.size ~= info.size or done.mtime ~= info.mtime) then done = nil end
    local file = done and done.file
    if not file then
      local ukey = done and done.key or (rec and ("rivya-" .. core.random_hex(16)))
      if rec then
        local ok, lerr = rec.ledger:upload_begin{ key = ukey, task_key = rec.key, position = i, path = path,
          size = info.size, mtime = info.mtime, kind = info.kind }
        if not ok then return nil, lerr end
      end
      local err
      file, err = self:_upload(info, { model = info.model, kind = info.kind,
        timeout = deadline and math.max(deadline - now(), 0),
        on_progress = on_upload and on_upload(i, path, info) or nil }, ukey)
      if not file then
        err.field = err.field or ("params.referenceMediaItems[%d]"):format(i)
        return nil, err
      end
      if rec then
        local ok, lerr = rec.ledger:upload_done(ukey, file)
        if not ok then return nil, lerr end
      end
      if on_upload then on_upload(i, path, info, file) end
    end
    prepared:attach(i, file)
  end
  return true
end

-- task.replayed = true when the answer says the key's earlier task was
-- given back (the Idempotent-Replayed header): nothing new was reserved
local function mark_replay(task, headers)
  if type(headers) == "table" and tostring(headers["idempotent-replayed"]):lower() == "true" then
    task.replayed = true
  end
end

--- Create a generation task (80 credits for wan-2-7-video). Validates first:
-- an invalid request sends nothing. Every create carries an Idempotency-Key
-- (req.idempotency_key or a fresh one) that all its retries reuse. With a
-- ledger, the create is recorded before it is sent (see _create_recorded).
-- o.deadline (monotonic seconds, core.now) bounds the call, uploads included;
-- o (internal): output (where generate will save it), job, attempt, key,
-- on_upload (see _upload_references).
function Client:create(req, o)
  check_open(self)
  if type(req) ~= "table" then errors.misuse("rivya: create expects a request table, got " .. type(req)) end
  local models, cat = self:_catalog()
  if not models then return nil, cat end
  -- local reference paths are inspected and the request validated once,
  -- before the first upload: a request that would fail sends nothing
  local prepared, perr = refs.prepare(req, { catalog = cat, resolve = function(id) return self:file(id) end })
  if not prepared then return nil, perr end
  if self.ledger then return self:_create_recorded(prepared, o or NO_OPTIONS, cat) end
  local deadline = o and o.deadline
  local uploaded, uerr = self:_upload_references(prepared, nil, deadline, o and o.on_upload)
  if not uploaded then return nil, uerr end
  local body, berr = prepared:final_body()
  if not body then return nil, berr end
  local warnings = prepared.warnings
  local key = prepared.idempotency_key or ("rivya-" .. core.random_hex(16))
  local v, err = self:_api("POST", "/generations", { body = body, idempotency_key = key, deadline = deadline,
    headers = true })
  -- creating again with this key can never charge twice, whatever happened
  if not v then
    err.idempotency_key = key
    return nil, err
  end
  local replayed = err
  local task, terr = check_task(v)
  if not task then
    terr.idempotency_key = key
    return nil, terr
  end
  if warnings and #warnings > 0 then
    task.warnings = task.warnings or {}
    for _, w in ipairs(warnings) do task.warnings[#task.warnings + 1] = w end
  end
  task.idempotency_key = key
  mark_replay(task, replayed)
  return task
end

-- A create the API may have made though no answer came (or a 2xx whose
-- body could not be read): the row stays `sending`, to be resumed under the
-- same key
local function unanswered(err)
  return err.status == nil or err.status < 300 or err.status >= 500 or err.status == 429 or err.status == 408
end

-- The create with a ledger. The request is identified by a hash of its
-- validated body (placeholders for local files) and each local file's path,
-- size and mtime. A row for that hash still `sending` (no answer recorded,
-- younger than a day, its process gone) lends its key and its uploads, so
-- the API replays the task that create may have made; else a new row is
-- committed before anything is uploaded or sent.
function Client:_create_recorded(prepared, o, cat)
  local ledger, req = self.ledger, prepared.req
  local body, warnings = prepared.body, prepared.warnings
  local ident = { Ledger.canonical(body) }
  for _, ref in ipairs(prepared.locals) do
    ident[#ident + 1] = ("%s\0%d\0%d"):format(ref.path, ref.info.size, ref.info.mtime or 0)
  end
  local hash = Ledger.digest(table.concat(ident, "\n"))
  local key = o.key or prepared.idempotency_key
  if not key then
    local row, ferr = ledger:find_sending(hash)
    if row == nil then return nil, ferr end
    key = row and row.key
  end
  key = key or ("rivya-" .. core.random_hex(16))
  -- the files a create under this key already carried (a resume, or a given key)
  local uploads = {}
  if #prepared.locals > 0 then
    local lerr0
    uploads, lerr0 = ledger:uploads(key)
    if not uploads then return nil, lerr0 end
  end
  local ok, lerr = ledger:begin{ key = key, request_hash = hash, model = req.model,
    prompt = type(req.prompt) == "string" and req.prompt or nil, credits = (cat:estimate(req)),
    output = o.output, job = o.job, attempt = o.attempt }
  if not ok then return nil, lerr end
  if #prepared.locals > 0 then
    local rec = { ledger = ledger, key = key, uploads = uploads }
    local sent, uerr = self:_upload_references(prepared, rec, o.deadline, o.on_upload)
    if not sent then
      ledger:unanswered(key)
      uerr.idempotency_key = key
      return nil, uerr
    end
    local berr
    body, berr = prepared:final_body()
    if not body then
      ledger:rejected(key, berr)
      return nil, berr
    end
  end
  local v, err = self:_api("POST", "/generations", { body = body, idempotency_key = key,
    deadline = o.deadline, headers = true })
  if not v then
    err.idempotency_key = key
    if unanswered(err) then ledger:unanswered(key) else ledger:rejected(key, err) end
    return nil, err
  end
  local replayed = err
  local task, terr = check_task(v)
  if not task then
    ledger:unanswered(key)
    terr.idempotency_key = key
    return nil, terr
  end
  task.idempotency_key = key
  mark_replay(task, replayed)
  ok, lerr = ledger:answered(key, task)
  if not ok then
    lerr.task, lerr.idempotency_key = task, key
    return nil, lerr
  end
  if warnings and #warnings > 0 then
    task.warnings = task.warnings or {}
    for _, w in ipairs(warnings) do task.warnings[#task.warnings + 1] = w end
  end
  return task
end

--- The task's current state. o.deadline (monotonic seconds, core.now) bounds
-- the call with its retries.
function Client:get(id, o)
  check_open(self)
  return self:_get(id, o and o.deadline)
end

function Client:_get(id, deadline)
  local ok, err = check_id(id)
  if not ok then return nil, err end
  local v
  v, err = self:_api("GET", "/generations/" .. id, deadline and { deadline = deadline })
  if not v then return nil, err end
  return check_task(v)
end

local WAIT_OPTIONS = { interval = "seconds", timeout = "seconds", on_update = "function" }
-- errors that polling again could outlive
local TRANSIENT = { network = true, timeout = true, server_error = true, rate_limited = true,
  public_api_disabled = true, bad_response = true }

local function final_result(task)
  if task.status == "succeeded" then return task end
  -- the docs say a failed task "may include" an error object: without one, a generic message
  local msg = type(task.error) == "table" and type(task.error.message) == "string" and task.error.message
    or ("the generation failed (task %s gave no error details)"):format(tostring(task.id))
  return nil, errors.new("generation_failed", msg, { task = task })
end

-- What a failed poll says about why a wait ran out: a request that failed
-- (it has attempts) is the news; "no time left to send one" is not, when
-- an earlier poll failed for a reason.
local function poll_cause(err, cause)
  if err.attempts or not cause then
    local n = err.attempts or 1
    return ("the last poll failed: %s, after %d attempt%s"):format(err.message, n, n == 1 and "" or "s")
  end
  return cause
end

local function wait_timeout(id, last, why)
  return errors.new("timeout", ("task %s not final after the wait deadline%s"):format(id,
    why and " (" .. why .. ")" or ""), { task = last })
end

-- The pause before poll number polls + 1: the documented advice is a first
-- poll 2-3 s after create, then every 5-10 s. (No C call here: it runs one
-- frame above a parked wait, see "Parking" in sched.lua.)
function Client:_poll_delay(polls, interval)
  if interval or self.poll_interval then return interval or self.poll_interval end
  if polls == 0 then return 2.5 end
  local d = 5 * 1.25 ^ (polls - 1)
  return d < 10 and d or 10
end

-- One poll for wait and updates, after its pause: the task | false (a
-- transient error: poll again) | nil, err (a lasting error, or the deadline
-- passed). Inside gather it runs on a stand-in coroutine (sched.park_call)
-- with a transfer slot taken at the end of the pause (sched.park_sleep):
-- thousands of polls due at once queue in line with small stacks.
function Client:_poll(id, deadline)
  local task, err = self:_get(id, deadline)
  sched.unreserve(self.session)
  if task then return task end
  if not TRANSIENT[err.code] then return nil, err end
  return false, err   -- the caller polls again, or names it when its deadline has come
end

-- The id and the last known state of task_or_id | nil, err.
local function task_ref(task_or_id)
  local last = type(task_or_id) == "table" and task_or_id or nil
  local id, err = check_id(last and last.id or task_or_id)
  return id, err or last
end

--- Poll a task until it is final. opts: interval, timeout (total deadline),
-- on_update(task) on each status change, the final one included. A failed
-- task returns nil, err (generation_failed, err.task); a passed deadline
-- returns nil, err (timeout, err.task = the last known state).
function Client:wait(task_or_id, opts)
  check_open(self)
  opts = check_options("client:wait", opts, WAIT_OPTIONS)
  -- few locals, and the waits in this frame: see "Parking" in sched.lua
  local id, last = task_ref(task_or_id)
  if not id then return nil, last end
  if FINAL[last and last.status] then return final_result(last) end
  local deadline, polls, cause = now() + (opts.timeout or self.wait_timeout), 0, nil
  while true do
    local left = deadline - now()
    if left <= 0 then return nil, wait_timeout(id, last, cause) end
    if park_sleep(min(self:_poll_delay(polls, opts.interval), left), self.waiter, self.session) then
      yield(WAIT)
    end
    polls = polls + 1
    local parked, task, err = park_call({ Client._poll, self, id, deadline })
    if parked then task, err = unpark(yield(WAIT)) end
    if task then
      local changed = task.status ~= (last and last.status)   -- last.status: the status seen so far
      last = task
      if changed then
        if opts.on_update then opts.on_update(task) end
        if FINAL[task.status] then return final_result(task) end
      end
    elseif task == nil then
      return nil, err
    else
      -- a transient failure: polled again, and named if the deadline comes first
      cause = poll_cause(err, cause)
    end
  end
end

--- Iterate over a task's status changes, each once, ending with the final
-- state: `for task, err in client:updates(id) do ... end`. On a failure the
-- loop sees (false, err) once and then ends. opts: interval, timeout.
function Client:updates(task_or_id, opts)
  check_open(self)
  opts = check_options("client:updates", opts, { interval = "seconds", timeout = "seconds" })
  -- PUC Lua 5.1 calls a for-in iterator across a C boundary: no yield from it
  if sched.in_gather() or self.waiter then compat.check_yieldable("client:updates", 2) end
  local id, last = task_ref(task_or_id)
  local deadline, polls, finished, cause = now() + (opts.timeout or self.wait_timeout), 0, false, nil
  return function()
    if finished then return nil end
    if not id then
      finished = true
      return false, last
    end
    if FINAL[last and last.status] then
      finished = true
      if polls == 0 then return last end
      return nil
    end
    -- the waits in this frame, as in wait
    while true do
      local left = deadline - now()
      if left <= 0 then
        finished = true
        return false, wait_timeout(id, last, cause)
      end
      if park_sleep(min(self:_poll_delay(polls, opts.interval), left), self.waiter, self.session) then
        yield(WAIT)
      end
      polls = polls + 1
      local parked, task, err = park_call({ Client._poll, self, id, deadline })
      if parked then task, err = unpark(yield(WAIT)) end
      if task then
        local changed = task.status ~= (last and last.status)
        last = task
        if changed then return task end
      elseif task == nil then
        finished = true
        return false, err
      else
        cause = poll_cause(err, cause)
      end
    end
  end
end

local GENERATE_OPTIONS = { interval = "seconds", timeout = "seconds", on_update = "function",
  output = "string", on_progress = "function" }

-- Can a result be saved at `path`? Its folder must exist and take a new
-- file, and the path must not be a folder or a special file: checked before
-- the create, so no credits are spent on a result that has nowhere to go.
local function check_destination(path)
  local function refuse(message)
    return nil, errors.new("validation_failed", "output: " .. message, { field = "output" })
  end
  local st = core.stat(path)
  if st and st.type ~= "file" then return refuse(("%s is a %s, not a file"):format(path, st.type)) end
  local dir = path:match("^(.*)/[^/]*$")
  if dir == "" then dir = "/" end
  dir = dir or "."
  local dst, derr = core.stat(dir)
  if not dst then
    return refuse(("cannot save to %s: the folder %s %s"):format(path, dir,
      derr == "No such file or directory" and "does not exist" or ("cannot be read: " .. tostring(derr))))
  end
  if dst.type ~= "directory" then return refuse(("cannot save to %s: %s is a %s"):format(path, dir, dst.type)) end
  -- the one sure test of "can a file be made there": make one
  local probe = ("%s/.rivya-probe-%s"):format(dir, core.random_hex(6))
  local f, ferr = io.open(probe, "wb")
  if not f then return refuse(("cannot save to %s: %s"):format(path, ferr)) end
  f:close()
  os.remove(probe)
  return true
end

Client._check_destination = check_destination

-- a value raised by a user callback, as the error generate returns
local function raised(e, task)
  if errors.is(e) then
    e.task = e.task or task
    return e
  end
  return errors.new("callback_failed", "a callback raised: " .. tostring(e), { task = task })
end

-- a path as one shell word, for the command a message suggests
local function shell_word(s)
  if s:match("^[%w%./_%-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- create + wait; with opts.output also download the result to that path.
-- opts.timeout bounds the whole call: uploads, create, wait and download.
-- Every error after the create carries err.task (its id at least), also
-- one raised in on_update or on_progress.
function Client:generate(req, opts)
  check_open(self)
  opts = check_options("client:generate", opts, GENERATE_OPTIONS)
  if opts.output then
    local ok, derr = check_destination(opts.output)
    if not ok then return nil, derr end
  end
  local deadline = opts.timeout and now() + opts.timeout
  local function left() return deadline and math.max(deadline - now(), 0) end
  local task, err = self:create(req, { output = opts.output, deadline = deadline })
  if not task then return nil, err end
  local ledger, user_update = self.ledger, opts.on_update
  -- each status change is recorded before the user sees it
  local on_update = (ledger or user_update) and function(t)
    if ledger then ledger:update(t) end
    if user_update then user_update(t) end
  end or nil
  -- a raise in a callback comes back as an error with the task; inside a
  -- coroutine on PUC Lua 5.1, which cannot yield across pcall, it propagates
  local guard = (compat.yield_in_pcall or select(2, compat.running())) and pcall
    or function(f, ...) return true, f(...) end
  local ok, final
  ok, final, err = guard(function()
    if user_update then user_update(task) end
    return self:wait(task, { interval = opts.interval, timeout = left(), on_update = on_update })
  end)
  if not ok then final, err = nil, raised(final, task) end
  if not final then
    err.task = err.task or task
    err.idempotency_key = err.idempotency_key or task.idempotency_key
    return nil, err
  end
  final.warnings = final.warnings or task.warnings
  final.idempotency_key = task.idempotency_key
  if opts.output then
    local path
    ok, path, err = guard(self.download, self, final, opts.output, { on_progress = opts.on_progress,
      timeout = left() })
    if not ok then path, err = nil, raised(path, final) end
    if not path then
      err.task = err.task or final
      err.output = opts.output
      err.message = ("task %s succeeded but its result could not be saved to %s: %s; "
        .. "fetch it with: rivya download %s %s")
        :format(final.id, opts.output, err.message, final.id, shell_word(opts.output))
      return nil, err
    end
    final.output = path
  end
  return final
end

local DOWNLOAD_OPTIONS = { on_progress = "function", timeout = "seconds" }

--- Download a task's result (or a URL) to `path`. The file appears only when
-- complete: bytes go to a temporary file beside it, renamed at the end. The
-- API key is never sent: result URLs live on a CDN host.
function Client:download(task_or_url, path, opts)
  check_open(self)
  if type(path) ~= "string" or path == "" then
    errors.misuse("rivya: download expects a destination path string, got "
      .. (path == "" and "an empty string" or type(path)))
  end
  opts = check_options("client:download", opts, DOWNLOAD_OPTIONS)
  if type(task_or_url) == "string" and not task_or_url:match("^%a[%w+.-]*://") then
    -- a task id: fetched, and it must have succeeded
    local task, terr = self:get(task_or_url)
    if not task then return nil, terr end
    if task.status == "failed" then return final_result(task) end
    if task.status ~= "succeeded" then
      return nil, errors.new("validation_failed", ("task %s is %s, not succeeded yet: wait for it first")
        :format(task.id, tostring(task.status)), { field = "task", task = task })
    end
    task_or_url = task
  end
  local url, from_task = task_or_url, type(task_or_url) == "table"
  if from_task then
    local r = task_or_url.result
    url = type(r) == "table" and (r.primary_url or (type(r.urls) == "table" and r.urls[1])) or nil
    if type(url) ~= "string" then
      return nil, errors.new("validation_failed",
        ("task %s has no result URL (status %s)"):format(tostring(task_or_url.id), tostring(task_or_url.status)),
        { field = "task" })
    end
  elseif type(url) ~= "string" then
    errors.misuse("rivya: download expects a task or a URL, got " .. type(task_or_url))
  end
  if not url:match("^[hH][tT][tT][pP][sS]?://") then
    return nil, errors.new("validation_failed", "expected an http(s) URL, got " .. url:sub(1, 80), { field = "url" })
  end
  -- plain http:// only when the API itself is plain http (a local simulator):
  -- otherwise a result URL could point the client at any internal address
  if not self.plain_downloads and not url:match("^[hH][tT][tT][pP][sS]://") then
    return nil, errors.new(from_task and "bad_response" or "validation_failed",
      ("refusing to download from a plain http:// URL (%s): downloads are https only"):format(url:sub(1, 80)),
      { field = "url" })
  end
  local on_progress, last_received = opts.on_progress, -1
  local function tick(t)
    local _, _, received, total = t:progress()
    if on_progress and received ~= last_received then
      last_received = received
      on_progress(received, total)
    end
  end
  local status, err = self:_exchange({
    url = url, auth = false, follow = true, output = path, media = true,
    timeout = opts.timeout or 0, connect_timeout = self.connect_timeout,
    stall = self.stall_timeout, max_body = 64 * 1024, https_only = not self.plain_downloads,
    max_file = self.max_download_bytes, min_rate = self.min_download_rate, rate_window = self.stall_timeout,
  }, { tick = on_progress and 0.1 or nil, on_tick = on_progress and tick or nil,
       deadline = opts.timeout and now() + opts.timeout or nil })
  if not status then return nil, err end
  if self.ledger and type(task_or_url) == "table" and type(task_or_url.id) == "string" then
    -- a record that fails leaves the task pending: a later resume saves it again
    local st = core.stat(path)
    self.ledger:saved(task_or_url.id, path, st and st.size, (core.sha256_file(path)))
  end
  return path
end

--- Webhook endpoints (the documented management endpoints, scope
-- webhooks:manage): :create{name, url, event_types}, :list(), :get(id),
-- :update(id, fields), :delete(id), :rotate_secret(id), :test(id),
-- :deliveries(id). opts.allow_loopback admits http:// receivers on loopback
-- (rivya-sim --allow-loopback-webhooks); other URLs are checked by the
-- documented rules before sending (webhook_url_rejected).
function Client:webhooks(opts)
  check_open(self)
  return webhook.manager(self, opts)
end

--- The account's webhook events (an array; shape not documented).
function Client:webhook_events()
  check_open(self)
  return webhook.events(self)
end

--- The task a webhook event is about, re-read with the API key: act on this
-- answer, not on the event (no signature scheme is documented).
function Client:confirm(event)
  check_open(self)
  return webhook.confirm(self, event)
end

--- Pollable interface for foreign event loops (cqueues, luv, ...).
function Client:pollfd() check_open(self) return self.session:pollfd() end
function Client:events() check_open(self) return self.session:events() end
function Client:timeout() check_open(self) return self.session:timeout() end
--- One non-blocking step of every transfer; returns how many are running.
function Client:step() check_open(self) return self.session:step() end

--- Release the connection pool and the key. Idempotent; also __gc and __close.
function Client:close()
  if self.closed then return end
  self.closed = true
  -- (a rivya.new that raised leaves a client without a session to __gc,
  -- and on 5.2/5.3 an error in __gc reaches whatever code ran the GC)
  if self.session then self.session:close() end
  if self.ledger and self.ledger ~= self._given_ledger then self.ledger:close() end
end
Client.__close = Client.close
Client.__gc = Client.close

return Client
