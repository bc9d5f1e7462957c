--- rivya.Client: the Rivya Public API v1 over one libcurl multi handle.
-- Every call returns its result, or `nil, err` on a runtime failure (err is a
-- rivya.Error table); misuse (wrong argument types, unknown options) raises.
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"
local sched = require "rivya.sched"

local Client = {}
Client.__index = Client
Client.__name = "rivya.Client"

local now = core.now
local min, yield = math.min, coroutine.yield
local park_sleep, park_call, unpark, WAIT = sched.park_sleep, sched.park_call, sched.unpark, sched.WAIT

--- Defaults, documented in the README.
local DEFAULTS = {
  base_url = "https://rivya.ai",
  timeout = 60,            -- seconds, one HTTP request
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
  connect_timeout = "seconds", max_retries = "number", ca_file = "string",
  retry_base = "seconds", retry_cap = "seconds", retry_after_cap = "seconds",
  stall_timeout = "seconds", wait_timeout = "seconds", poll_interval = "seconds",
  max_connections = "number", allow_http = "string", user_agent = "string",
  waiter = "function", max_download_bytes = "number", min_download_rate = "number",
}

-- the known name closest to `word` (edit distance at most 3), for messages
local function closest(word, names)
  local best, best_d = nil, 4
  for _, name in ipairs(names) do
    local prev = {}
    for j = 0, #name do prev[j] = j end
    for i = 1, #word do
      local cur = { [0] = i }
      for j = 1, #name do
        local cost = word:sub(i, i) == name:sub(j, j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    if prev[#name] < best_d then best, best_d = name, prev[#name] end
  end
  return best
end

-- the options of a call given none: shared, never written to
local NO_OPTIONS = setmetatable({}, {
  __newindex = function() error("rivya: internal: NO_OPTIONS is read-only", 2) end,
})

local function check_options(where, opts, allowed)
  if opts == nil then return NO_OPTIONS end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(where, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then
      local names = {}
      for name in pairs(allowed) do names[#names + 1] = name end
      table.sort(names)
      local hint = type(k) == "string" and closest(k, names)
      error(("%s: unknown option '%s'%s"):format(where, tostring(k),
        hint and ("; did you mean '" .. hint .. "'?") or ""), 3)
    end
    if want == "seconds" then
      if type(v) ~= "number" or not (v >= 0 and v < math.huge) then
        error(("%s: option '%s' must be a finite number of seconds >= 0, got %s"):format(where, k,
          type(v) == "number" and tostring(v) or type(v)), 3)
      end
    elseif want ~= "any" and type(v) ~= want then
      error(("%s: option '%s' must be a %s, got %s"):format(where, k, want, type(v)), 3)
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
  if not scheme then error("rivya.new: base_url must look like https://host, got '" .. url .. "'", 3) end
  scheme = scheme:lower()
  if hostport:find("@", 1, true) then error("rivya.new: base_url must not carry credentials", 3) end
  if rest ~= "" and rest ~= "/" then error("rivya.new: base_url must not have a path, got '" .. rest .. "'", 3) end
  local host = hostport:match("^(%[[^%]]+%])") or hostport:match("^([^:]+)")
  if scheme == "http" then
    if not is_loopback(host) and allow_http ~= host then
      error(("rivya.new: refusing plain http:// to %s (the API key would travel in clear); "
        .. "use https, or pass allow_http = %q to opt in"):format(host, host), 3)
    end
  elseif scheme ~= "https" then
    error("rivya.new: base_url scheme must be https (or http on loopback), got " .. scheme, 3)
  end
  return scheme .. "://" .. hostport
end

-- A ca_file that cannot serve as a trust anchor is misuse found offline: it raises
-- in rivya.new rather than making every call fail later with a `tls` error.
local function check_ca_file(path)
  local st, why = core.stat(path)
  if st and st.type ~= "file" then why = "a " .. st.type .. ", not a PEM file" end
  if not why then
    local f, ferr = io.open(path, "rb")
    local pem = f and f:read("a")
    if f then f:close() end
    why = (ferr or not pem) and (ferr or "not readable")
      or (not pem:find("-----BEGIN CERTIFICATE-----", 1, true) and "no PEM certificate in it")
  end
  if why then error(("rivya.new: ca_file: cannot use %s: %s"):format(path, why), 3) end
end

--- rivya.new(opts) -> client. Raises on misuse; never contacts the server.
function Client.new(opts)
  opts = check_options("rivya.new", opts, OPTIONS)
  local self = setmetatable({}, Client)
  for k, v in pairs(DEFAULTS) do self[k] = v end
  for k, v in pairs(opts) do if k ~= "api_key" then self[k] = v end end
  -- the `timeout` option must not shadow the pollable client:timeout() method
  self.request_timeout, self.timeout = self.timeout, nil
  self.base_url = opts.base_url or os.getenv("RIVYA_BASE_URL") or DEFAULTS.base_url
  self.origin = parse_origin(self.base_url, opts.allow_http)
  self.api_url = self.origin .. "/api/v1"
  -- result URLs are https only, unless the API itself is reached in plain
  -- http (loopback or allow_http: a local simulator and its CDN)
  self.plain_downloads = self.origin:sub(1, 7) == "http://"
  local key = opts.api_key or os.getenv("RIVYA_API_KEY")
  if key == "" then key = nil end
  self.has_key = key ~= nil
  -- only a short suffix of the key stays on the Lua side, for tostring
  self.key_hint = key and #key >= 16 and key:sub(-4) or nil
  self.user_agent = (opts.user_agent and (opts.user_agent .. " ") or "")
    .. ("rivya-lua/%s (%s; %s)"):format(core.VERSION, _VERSION, core.curl_version:match("^%S+") or "libcurl")
  if math.type(self.max_retries) ~= "integer" or self.max_retries < 0 then
    error("rivya.new: max_retries must be a non-negative integer", 2)
  end
  for _, name in ipairs({ "max_download_bytes", "min_download_rate" }) do
    if not (self[name] >= 0 and self[name] < math.huge) then
      error(("rivya.new: %s must be a finite number >= 0"):format(name), 2)
    end
  end
  if opts.ca_file then check_ca_file(opts.ca_file) end
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
  if getmetatable(self) ~= Client then error("rivya: method called without a client (use client:method)", 3) end
  if self.closed then error("rivya: attempt to use a closed client", 3) end
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
-- the headers of a bodyless API call: one shared table, never modified
local ACCEPT_JSON = { "Accept: application/json" }

--- One HTTP exchange with the retry policy. `spec` is a core transfer spec;
-- o: deadline (monotonic seconds), decode (JSON answer expected), on_tick, tick.
-- Returns the decoded body (or status, headers for raw) | nil, err.
function Client:_exchange(spec, o)
  local attempt = 0
  while true do
    if o.deadline then
      local left = o.deadline - now()
      if left <= 0 then
        return nil, errors.new("timeout", "deadline passed before the request could complete")
      end
      if not spec.timeout or spec.timeout == 0 or spec.timeout > left then spec.timeout = left end
    end
    -- inside gather, waits for a free slot; <close> returns curl's memory as soon as
    -- the answer is read, not at some later GC cycle
    local t <close>, start_err = sched.start(self.session, spec)
    if not t then return nil, start_err end
    sched.await(self.session, t, o.tick, o.on_tick and function() o.on_tick(t) end, self.waiter, self)
    if o.on_tick then o.on_tick(t) end
    local status, headers, body = t:result()
    local err, retryable
    if status == nil then
      local kind, message = headers, body
      local code = ({ timeout = "timeout", tls = "tls", io = "io", too_large = "bad_response",
        not_media = "bad_response", changed = "io", insecure = "bad_response" })[kind] or "network"
      err = errors.new(code, message)
      -- an answer over the size cap is garbled like invalid JSON: try again
      -- (not a download over max_download_bytes: it would only come again)
      retryable = kind == "network" or kind == "timeout" or kind == "not_media"
        or (kind == "too_large" and not spec.output)
    elseif status >= 200 and status < 300 then
      if not o.decode then return status, headers end
      local v = json.decode(body)
      if type(v) == "table" then return v, headers end
      err = errors.new("bad_response", ("the API answered %d with a body that is not a JSON object (%s)")
        :format(status, headers["content-type"] or "no content type"),
        { status = status, request_id = headers["x-request-id"] })
      retryable = true
    else
      err = errors.from_response(status, headers, body)
      retryable = status == 429 or status >= 500 or RETRY_CODES[err.code] == true
    end
    if not retryable or attempt >= self.max_retries then
      err.attempts = attempt + 1
      return nil, err
    end
    local delay = self:_retry_delay(err, attempt)
    if o.deadline and now() + delay >= o.deadline then
      err.attempts = attempt + 1
      return nil, err
    end
    sched.sleep(delay, self.waiter)
    attempt = attempt + 1
  end
end

--- A JSON call to the API. o: body (table), idempotency_key, auth (default
-- true), deadline.
function Client:_api(method, path, o)
  o = o or {}
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
    max_body = MAX_API_BODY,
  }, { decode = true, deadline = o.deadline })
end

--- The model catalog: an array of model tables (no key needed).
function Client:models()
  check_open(self)
  local v, err = self:_api("GET", "/models", { auth = false })
  if not v then return nil, err end
  if type(v.data) ~= "table" then
    return nil, errors.new("bad_response", "the model catalog has no data array")
  end
  return v.data
end

--- The current credit balance, an integer.
function Client:credits()
  check_open(self)
  local v, err = self:_api("GET", "/credits")
  if not v then return nil, err end
  if math.type(v.current_credits) ~= "integer" then
    return nil, errors.new("bad_response", "the credits answer has no integer current_credits")
  end
  return v.current_credits
end

local function check_task(v)
  if type(v.id) ~= "string" or type(v.status) ~= "string" then
    return nil, errors.new("bad_response", "the answer is not a task object (no id or status)")
  end
  return v
end

local function check_id(id)
  if type(id) ~= "string" then error("rivya: task id must be a string, got " .. type(id), 3) end
  if not id:match("^[%w_%-]+$") or #id > 200 then
    return nil, errors.new("validation_failed",
      ("task id: expected letters, digits, '_' or '-'; got %q"):format(id:sub(1, 80)), { field = "id" })
  end
  return id
end

-- file name extension -> the MIME type it claims
local EXTENSION_MIME = {
  jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", webp = "image/webp",
  mp4 = "video/mp4", m4v = "video/mp4", mov = "video/quicktime", qt = "video/quicktime",
  webm = "video/webm", mp3 = "audio/mpeg", m4a = "audio/mp4", wav = "audio/wav",
  aac = "audio/aac", ogg = "audio/ogg", oga = "audio/ogg",
}
local KINDS = { image = true, video = true, audio = true }
local UPLOAD_OPTIONS = { kind = "string", model = "string", client_request_id = "string",
  on_progress = "function", name = "string" }

local function file_error(message, extra)
  local e = { field = "file" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return nil, errors.new("validation_failed", message, e)
end

-- the checks of inspect_upload on what it read
local function check_upload(name, size, head, opts)
  if size == 0 then return file_error(("file: %s is empty"):format(name)) end
  local kind, mime = core.sniff(head)
  if not kind then
    return file_error(("file: %s is not a supported image, video or audio file (unknown signature)"):format(name))
  end
  local ext = name:match("%.([%w]+)$")
  local claimed = ext and EXTENSION_MIME[ext:lower()]
  if claimed and claimed ~= mime then
    return file_error(("file: %s is named like %s but its bytes are %s"):format(name, claimed, mime),
      { expected = claimed, got = mime })
  end
  if opts.kind and opts.kind ~= kind then
    return file_error(("file: kind %s was asked but %s is %s (%s)"):format(opts.kind, name, kind, mime),
      { field = "kind", expected = opts.kind, got = kind })
  end
  local ok, lerr = core.check_upload(opts.model, kind, mime, size)
  if not ok then return nil, lerr end
  return { name = name, size = size, kind = kind, mime = mime }
end

--- Everything known about an upload before a byte is sent: source, name,
-- size, kind and MIME type from the bytes, the model's limits checked, and
-- for a path the open file (info.file, a core.open_upload handle the
-- caller closes). `source` is a path or {data = bytes, name = "x.png"}.
local function inspect_upload(source, opts)
  local name, size, head, file
  if type(source) == "string" then
    local st, serr = core.stat(source)
    if not st then return file_error(("file: cannot read %s: %s"):format(source, serr)) end
    if st.type ~= "file" then
      return file_error(("file: %s is a %s, expected a regular file"):format(source, st.type))
    end
    if not st.readable then return file_error(("file: %s is not readable"):format(source)) end
    name = opts.name or source:match("([^/]+)$")
    -- opened once: every attempt of the upload streams from this descriptor
    local ferr
    file, ferr = core.open_upload(source)
    if not file then return file_error(("file: cannot read %s: %s"):format(source, ferr)) end
    size, head = file:size(), file:head(64)
  elseif type(source) == "table" then
    if type(source.data) ~= "string" then error("rivya: upload data must be a string", 3) end
    if type(source.name) ~= "string" or source.name == "" then
      error("rivya: upload {data=...} needs a name string", 3)
    end
    size, name, head = #source.data, source.name, source.data:sub(1, 64)
  else
    error("rivya: upload expects a path or {data=, name=}, got " .. type(source), 3)
  end
  local info, err = check_upload(name, size, head, opts)
  if not info then
    if file then file:close() end
    return nil, err
  end
  info.file = file
  return info
end

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
  return v
end

--- Upload a reference file (streamed from disk, never loaded whole) to the
-- Files API. `source` is a path or {data = bytes, name = "x.png"}. opts:
-- kind (else from the bytes), model (its limits apply), client_request_id,
-- on_progress(sent, total) with total = the file's size.
function Client:upload(source, opts)
  check_open(self)
  opts = check_options("client:upload", opts, UPLOAD_OPTIONS)
  if opts.kind and not KINDS[opts.kind] then
    error("client:upload: kind must be image, video or audio, got " .. opts.kind, 2)
  end
  local info, err = inspect_upload(source, opts)
  if not info then return nil, err end
  local _ <close> = info.file   -- closed however the upload ends
  return self:_send_upload(info, source, opts)
end

-- The upload of what inspect_upload found (info.file stays open: the caller closes it).
function Client:_send_upload(info, source, opts)
  if opts.client_request_id and #opts.client_request_id > 128 then
    return nil, errors.new("validation_failed", "client_request_id: expected at most 128 characters",
      { field = "client_request_id" })
  end
  if not self.has_key then
    return nil, errors.new("api_key_missing", "no API key: pass api_key to rivya.new or set RIVYA_API_KEY")
  end
  local file_part = { name = "file", filename = info.name, type = info.mime }
  if info.file then file_part.file = info.file else file_part.data = source.data end
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
  local key = "rivya-" .. core.random_hex(16)
  local v, err = self:_exchange({
    method = "POST", url = self.api_url .. "/files",
    headers = { "Accept: application/json", "Idempotency-Key: " .. key },
    multipart = parts, auth = true, timeout = 0, stall = self.stall_timeout,
    connect_timeout = self.connect_timeout, max_body = MAX_API_BODY,
  }, { decode = true, tick = on_progress and 0.1 or nil, on_tick = on_progress and tick or nil })
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

-- closes the open files of a table of inspect_upload results
local CLOSE_FILES = { __close = function(infos)
  for _, info in pairs(infos) do
    if info.file then info.file:close() end
  end
end }

-- Local paths in params.referenceMediaItems are uploaded first (with the
-- request's model). Everything else is validated before the first upload,
-- with placeholders standing for the files, so a bad request sends nothing.
function Client:_upload_references(req)
  local items = type(req.params) == "table" and req.params.referenceMediaItems
  if type(items) ~= "table" then return req end
  local paths = {}
  for i, item in ipairs(items) do
    if type(item) == "string" then paths[#paths + 1] = i end
  end
  if #paths == 0 then return req end
  local copy, params, list = {}, {}, {}
  for k, v in pairs(req) do copy[k] = v end
  for k, v in pairs(req.params) do params[k] = v end
  for i, item in ipairs(items) do list[i] = item end
  params.referenceMediaItems = list
  copy.params = params
  -- each file is opened once, inspected, and uploaded from that descriptor
  local infos <close> = setmetatable({}, CLOSE_FILES)
  for _, i in ipairs(paths) do
    local info, err = inspect_upload(items[i], { model = req.model })
    if not info then
      err.field = ("params.referenceMediaItems[%d]"):format(i)
      return nil, err
    end
    infos[i] = info
    list[i] = { url = "https://placeholder.invalid/" .. info.name, kind = info.kind, name = info.name,
      mime_type = info.mime, duration_token = info.kind == "video" and "pending" or nil }
  end
  local ok, verr = core.validate(copy)
  if not ok then return nil, verr end
  for _, i in ipairs(paths) do
    local file, err = self:_send_upload(infos[i], items[i], { model = req.model })
    if not file then
      err.field = err.field or ("params.referenceMediaItems[%d]"):format(i)
      return nil, err
    end
    list[i] = file
  end
  return copy
end

--- Create a generation task (80 credits for wan-2-7-video). Validates first:
-- an invalid request sends nothing. Every create carries an Idempotency-Key
-- (req.idempotency_key or a fresh one) that all its retries reuse.
function Client:create(req)
  check_open(self)
  if type(req) ~= "table" then error("rivya: create expects a request table, got " .. type(req), 2) end
  local uerr
  req, uerr = self:_upload_references(req)
  if not req then return nil, uerr end
  local body, warnings = core.validate(req)
  if not body then return nil, warnings end
  local key = req.idempotency_key or ("rivya-" .. core.random_hex(16))
  local v, err = self:_api("POST", "/generations", { body = body, idempotency_key = key })
  if not v then
    -- creating again with this key can never charge twice, whatever happened
    err.idempotency_key = key
    return nil, err
  end
  local task, terr = check_task(v)
  if not task then return nil, terr end
  if warnings and #warnings > 0 then
    task.warnings = task.warnings or {}
    for _, w in ipairs(warnings) do task.warnings[#task.warnings + 1] = w end
  end
  task.idempotency_key = key
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
  local msg = type(task.error) == "table" and task.error.message or "the generation failed"
  return nil, errors.new("generation_failed", msg, { task = task })
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
function Client:_poll(id, deadline, last)
  local task, err = self:_get(id, deadline)
  sched.unreserve(self.session)
  if task then return task end
  if not TRANSIENT[err.code] then return nil, err end
  if now() >= deadline then return nil, wait_timeout(id, last, err.message) end
  return false
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
  local deadline, polls = now() + (opts.timeout or self.wait_timeout), 0
  while true do
    local left = deadline - now()
    if left <= 0 then return nil, wait_timeout(id, last) end
    if park_sleep(min(self:_poll_delay(polls, opts.interval), left), self.waiter, self.session) then
      yield(WAIT)
    end
    polls = polls + 1
    local parked, task, err = park_call({ Client._poll, self, id, deadline, last })
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
    end
  end
end

--- Iterate over a task's status changes, each once, ending with the final
-- state: `for task, err in client:updates(id) do ... end`. On a failure the
-- loop sees (false, err) once and then ends. opts: interval, timeout.
function Client:updates(task_or_id, opts)
  check_open(self)
  opts = check_options("client:updates", opts, { interval = "seconds", timeout = "seconds" })
  local id, last = task_ref(task_or_id)
  local deadline, polls, finished = now() + (opts.timeout or self.wait_timeout), 0, false
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
        return false, wait_timeout(id, last)
      end
      if park_sleep(min(self:_poll_delay(polls, opts.interval), left), self.waiter, self.session) then
        yield(WAIT)
      end
      polls = polls + 1
      local parked, task, err = park_call({ Client._poll, self, id, deadline, last })
      if parked then task, err = unpark(yield(WAIT)) end
      if task then
        local changed = task.status ~= (last and last.status)
        last = task
        if changed then return task end
      elseif task == nil then
        finished = true
        return false, err
      end
    end
  end
end

local GENERATE_OPTIONS = { interval = "seconds", timeout = "seconds", on_update = "function",
  output = "string", on_progress = "function" }

--- create + wait; with opts.output also download the result to that path.
function Client:generate(req, opts)
  check_open(self)
  opts = check_options("client:generate", opts, GENERATE_OPTIONS)
  local deadline = opts.timeout and now() + opts.timeout
  local task, err = self:create(req)
  if not task then return nil, err end
  if opts.on_update then opts.on_update(task) end
  local final
  final, err = self:wait(task, { interval = opts.interval, timeout = opts.timeout, on_update = opts.on_update })
  if not final then return nil, err end
  final.warnings = final.warnings or task.warnings
  final.idempotency_key = task.idempotency_key
  if opts.output then
    local path
    -- the download too ends by the call's deadline
    path, err = self:_download(final, opts.output, { on_progress = opts.on_progress, deadline = deadline })
    if not path then
      err.task = err.task or final
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
    error("rivya: download expects a destination path string, got " .. type(path), 2)
  end
  if type(task_or_url) ~= "table" and type(task_or_url) ~= "string" then
    error("rivya: download expects a task or a URL, got " .. type(task_or_url), 2)
  end
  opts = check_options("client:download", opts, DOWNLOAD_OPTIONS)
  return self:_download(task_or_url, path, opts)
end

-- download's work; opts.deadline (monotonic seconds) is generate's own
function Client:_download(task_or_url, path, opts)
  local url, from_task = task_or_url, type(task_or_url) == "table"
  if from_task then
    local r = task_or_url.result
    url = type(r) == "table" and (r.primary_url or (type(r.urls) == "table" and r.urls[1])) or nil
    if type(url) ~= "string" then
      return nil, errors.new("validation_failed",
        ("task %s has no result URL (status %s)"):format(tostring(task_or_url.id), tostring(task_or_url.status)),
        { field = "task" })
    end
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
  local deadline = opts.deadline or (opts.timeout and now() + opts.timeout) or nil
  local status, err = self:_exchange({
    url = url, auth = false, follow = true, output = path, media = true,
    timeout = opts.timeout or 0, connect_timeout = self.connect_timeout,
    stall = self.stall_timeout, max_body = 64 * 1024, https_only = not self.plain_downloads,
    max_file = self.max_download_bytes, min_rate = self.min_download_rate, rate_window = self.stall_timeout,
  }, { tick = on_progress and 0.1 or nil, on_tick = on_progress and tick or nil, deadline = deadline })
  if not status then return nil, err end
  return path
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
  self.session:close()
end
Client.__close = Client.close
Client.__gc = Client.close

return Client
