--- rivya.cli: the `rivya` command line.
-- `cli.main(argv, env, streams)` runs one command line and returns the exit
-- status; `bin/rivya` is a thin launcher around it. The work goes through the
-- library (rivya.new, client:create/wait/download/upload, rivya.validate,
-- rivya.estimate, rivya.gather), so the command validates with the very
-- schema the module uses, and its parameter flags are generated from
-- rivya.models() rather than listed here.
--
-- Exit statuses (README, "The rivya command"):
--   0 success · 1 runtime failure (generation failed, network, API, I/O)
--   2 usage error (flags, unreadable input, configuration) · 3 validation error
--   4 authentication or permission (no key, invalid/revoked/expired, scope)
--   5 insufficient credits · 6 timed out (the task keeps running server-side)
--   130 interrupted (SIGINT)
local argparse = require "argparse"
local rivya = require "rivya"
local core = require "rivya.core"
local json = require "rivya.json"
local errors = require "rivya.errors"

local cli = {}

cli.EXIT = { ok = 0, failure = 1, usage = 2, invalid = 3, auth = 4, credits = 5, timeout = 6,
  interrupted = 130 }
local EXIT = cli.EXIT

local STATE_FILE = "rivya-state.json"
local MAX_VARIANTS = 1000

local AUTH_CODES = { api_key_missing = true, api_key_invalid = true, api_key_revoked = true,
  api_key_expired = true, api_scope_denied = true }

--- The exit status for a rivya error table.
local function exit_code(err)
  local code = type(err) == "table" and err.code
  if code == "validation_failed" then return EXIT.invalid end
  if AUTH_CODES[code] then return EXIT.auth end
  if code == "insufficient_credits" then return EXIT.credits end
  if code == "timeout" then return EXIT.timeout end
  return EXIT.failure
end

-- a rivya error as plain data for --json output
local function error_object(err)
  if type(err) ~= "table" then return { code = "internal", message = tostring(err) } end
  return { code = err.code, message = err.message, field = err.field, status = err.status,
    request_id = err.request_id }
end

-- "rivya: code: message" without the module's own prefix repeated
local function error_line(err)
  local s = tostring(err)
  if s:sub(1, 7) ~= "rivya: " then s = "rivya: " .. s end
  return s
end

------------------------------------------------------------------------------
-- Small utilities

local function shallow_copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function file_exists(path)
  local st = core.stat(path)
  return st ~= nil and st.type == "file"
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function basename(path)
  return path:match("([^/]+)/*$") or path
end

local function join(dir, name)
  if name:sub(1, 1) == "/" then return name end
  if dir == "." or dir == "" then return name end
  return (dir:gsub("/+$", "")) .. "/" .. name
end

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function mkdir_p(dir)
  local st = core.stat(dir)
  if st then
    if st.type == "directory" then return true end
    return nil, dir .. " exists and is not a directory"
  end
  if os.execute("mkdir -p -- " .. sh_quote(dir)) then return true end
  return nil, "cannot create the directory " .. dir
end

local function human_bytes(n)
  if not n then return "?" end
  if n < 1000 then return ("%d B"):format(n) end
  if n < 1000 * 1000 then return ("%.1f kB"):format(n / 1000) end
  if n < 1000 * 1000 * 1000 then return ("%.1f MB"):format(n / 1e6) end
  return ("%.2f GB"):format(n / 1e9)
end

local function clock(seconds)
  seconds = math.floor(seconds)
  if seconds >= 3600 then
    return ("%d:%02d:%02d"):format(seconds // 3600, seconds % 3600 // 60, seconds % 60)
  end
  return ("%d:%02d"):format(seconds // 60, seconds % 60)
end

local function bar(done, total, width)
  width = width or 20
  if not total or total <= 0 then return "[" .. ("?"):rep(width) .. "]" end
  local filled = math.min(width, math.floor(width * done / total + 0.5))
  return "[" .. ("#"):rep(filled) .. ("."):rep(width - filled) .. "]"
    .. ("%4d%%"):format(math.min(100, math.floor(100 * done / total)))
end

-- JSON with object keys sorted: the same table always gives the same text,
-- which the batch's idempotency keys are hashed from.
local function canonical(v)
  if type(v) ~= "table" then return json.encode(v) end
  local n = #v
  local is_array = n > 0
  if is_array then
    for k in pairs(v) do
      if math.type(k) ~= "integer" or k < 1 or k > n then is_array = false break end
    end
  end
  local parts = {}
  if is_array then
    for i = 1, n do parts[i] = canonical(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = json.encode(k) .. ":" .. canonical(x)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- SHA-256 (FIPS 180-4) on Lua 5.4 integers: the idempotency keys of batch
-- and sweep runs are derived from it, so they are stable across runs.
local SHA_K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local M32 = 0xffffffff

local function rrot(x, n) return ((x >> n) | (x << (32 - n))) & M32 end

local function sha256_hex(msg)
  local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  local len = #msg
  msg = msg .. "\128" .. ("\0"):rep((55 - len) % 64) .. string.pack(">I8", len * 8)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do w[i] = string.unpack(">I4", msg, chunk + i * 4) end
    for i = 16, 63 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = rrot(x, 7) ~ rrot(x, 18) ~ (x >> 3)
      local s1 = rrot(y, 17) ~ rrot(y, 19) ~ (y >> 10)
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M32
    end
    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
    for i = 0, 63 do
      local s1 = rrot(e, 6) ~ rrot(e, 11) ~ rrot(e, 25)
      local ch = (e & f) ~ (~e & g)
      local t1 = (hh + s1 + ch + SHA_K[i + 1] + w[i]) & M32
      local s0 = rrot(a, 2) ~ rrot(a, 13) ~ rrot(a, 22)
      local maj = (a & b) ~ (a & c) ~ (b & c)
      local t2 = (s0 + maj) & M32
      hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & M32, c, b, a, (t1 + t2) & M32
    end
    h[1], h[2], h[3], h[4] = (h[1] + a) & M32, (h[2] + b) & M32, (h[3] + c) & M32, (h[4] + d) & M32
    h[5], h[6], h[7], h[8] = (h[5] + e) & M32, (h[6] + f) & M32, (h[7] + g) & M32, (h[8] + hh) & M32
  end
  return ("%08x"):rep(8):format(table.unpack(h))
end

------------------------------------------------------------------------------
-- The status display: one live line on a terminal (stderr), plain lines
-- otherwise, nothing with --quiet. Results go to stdout, never here.

local Status = {}
Status.__index = Status

local function new_status(stream, mode, width)
  return setmetatable({ stream = stream, mode = mode, shown = false, started = core.now(),
    last = -1, width = width or 80 }, Status)
end

function Status:elapsed()
  return clock(core.now() - self.started)
end

--- Redraw the live line (terminal only), at most 10 times a second unless forced.
function Status:redraw(force)
  if self.mode ~= "tty" or not self.render then return end
  local t = core.now()
  if not force and t - self.last < 0.1 then return end
  self.last = t
  local line = self.render(self)
  if #line > self.width - 1 then
    -- one terminal row, or \r would not return to its start; no half UTF-8 sequence
    line = line:sub(1, self.width - 1):gsub("[\192-\255][\128-\191]*$", "")
  end
  self.stream:write("\r\27[K", line)
  self.stream:flush()
  self.shown = true
end

function Status:clear()
  if self.shown then
    self.stream:write("\r\27[K")
    self.stream:flush()
    self.shown = false
  end
end

--- An event: a plain line when not on a terminal (the live line shows it otherwise).
function Status:event(line)
  if self.mode == "plain" then self.stream:write("rivya: ", line, "\n") end
  self:redraw(true)   -- events are few (status changes), each one is shown
end

--- A line everybody should see (warnings), above the live line on a terminal.
function Status:note(line)
  if self.mode == "quiet" then return end
  self:clear()
  self.stream:write("rivya: ", line, "\n")
  self:redraw(true)
end

------------------------------------------------------------------------------
-- Parameters: flags generated from the model schemas

local function param_specs()
  local seen, specs = {}, {}
  for _, model in ipairs(rivya.models()) do
    for _, p in ipairs(model.params or {}) do
      if not seen[p.name] then
        seen[p.name] = true
        specs[#specs + 1] = p
      end
    end
  end
  return specs
end

local function default_model()
  local models = rivya.models()
  return models[1] and models[1].id or "wan-2-7-video"
end

-- a select whose options are exactly "true" and "false": --name [BOOL] and --no-name
local function is_boolean(p)
  if p.type ~= "select" or type(p.options) ~= "table" or #p.options ~= 2 then return false end
  local set = { [p.options[1]] = true, [p.options[2]] = true }
  return set["true"] == true and set["false"] == true
end

local function flag_of(name) return "--" .. (name:gsub("_", "-")) end

local function first_sentence(s)
  if #s <= 60 then return s end
  return s:match("^(.-[.!?])%s") or s
end

local function param_help(p, list_mode)
  local h = first_sentence(p.description or p.name)
  if p.options then h = h .. (h:match("[.!?]$") and " " or ". ") .. "One of " .. table.concat(p.options, ", ") end
  if p.type == "number" then
    h = h .. (h:match("[.!?]$") and " " or ". ") .. ("%s %s..%s"):format(p.integer and "Integer" or "Number",
      tostring(p.min or "-inf"), tostring(p.max or "inf"))
  end
  if p.default then h = h .. " (service default " .. p.default .. ")" end
  h = h .. "."
  if list_mode then
    h = h .. (p.type == "text" and " Repeat to sweep several values."
      or p.type == "number" and " A list and/or ranges: 1..4,7." or " A comma-separated list.")
  end
  return h
end

local function add_param_flags(cmd, specs, list_mode)
  for _, p in ipairs(specs) do
    local flag = flag_of(p.name)
    if is_boolean(p) then
      local o = cmd:option(flag, param_help(p, list_mode)):args("?"):argname("<true|false>")
      if list_mode then o:count("*") end
      cmd:flag("--no-" .. flag:sub(3), ("Same as %s false."):format(flag))
    else
      local argname = p.type == "number" and "<n>" or p.options and "<" .. table.concat(p.options, "|") .. ">"
        or "<text>"
      if list_mode and p.type ~= "text" then argname = "<list>" end
      if #argname > 24 then argname = "<value>" end
      local o = cmd:option(flag, param_help(p, list_mode)):argname(argname)
      if list_mode then o:count("*") end
    end
  end
end

local function to_param_value(p, v)
  if p.type == "number" then return math.tointeger(tonumber(v)) or tonumber(v) or v end
  return v
end

--- params from single-valued flags | nil, message (usage)
local function params_from_args(a, specs)
  local params = {}
  for _, p in ipairs(specs) do
    local v = a[p.name]
    if is_boolean(p) then
      local no = a["no_" .. p.name]
      if no and v then
        return nil, ("%s and --no-%s contradict each other"):format(flag_of(p.name), flag_of(p.name):sub(3))
      end
      if no then params[p.name] = "false" elseif v then params[p.name] = v[1] or "true" end
    elseif v ~= nil then
      params[p.name] = to_param_value(p, v)
    end
  end
  return params
end

-- "1..4,7" -> {1,2,3,4,7} for numbers; "5,10" -> {"5","10"}; text as given
local function expand_values(p, given)
  local values = {}
  for _, s in ipairs(given) do
    if p.type == "text" then
      values[#values + 1] = s
    else
      for item in (s .. ","):gmatch("([^,]*),") do
        item = item:match("^%s*(.-)%s*$")
        local lo, hi = item:match("^(%-?%d+)%.%.(%-?%d+)$")
        if lo and p.type == "number" then
          lo, hi = math.tointeger(tonumber(lo)), math.tointeger(tonumber(hi))
          if not lo or not hi or hi < lo or hi - lo >= MAX_VARIANTS then
            return nil, ("%s: %s is not an ascending range of at most %d values"):format(flag_of(p.name), item,
              MAX_VARIANTS)
          end
          for x = lo, hi do values[#values + 1] = x end
        elseif item == "" then
          return nil, ("%s: empty value in %q"):format(flag_of(p.name), s)
        else
          values[#values + 1] = to_param_value(p, item)
        end
      end
    end
  end
  return values
end

--- for sweep: fixed params and the swept dimensions {name=, values=}
local function sweep_params_from_args(a, specs)
  local fixed, dims = {}, {}
  for _, p in ipairs(specs) do
    local given = {}
    if is_boolean(p) then
      for _, v in ipairs(a[p.name] or {}) do given[#given + 1] = v[1] or "true" end
      if a["no_" .. p.name] then given[#given + 1] = "false" end
    else
      for _, v in ipairs(a[p.name] or {}) do given[#given + 1] = v end
    end
    if #given > 0 then
      local values, err = expand_values(p, given)
      if not values then return nil, err end
      if #values == 1 then
        fixed[p.name] = values[1]
      else
        dims[#dims + 1] = { name = p.name, values = values }
      end
    end
  end
  return fixed, dims
end

------------------------------------------------------------------------------
-- Requests: offline checks with the library's schema

-- What the module knows about a local reference file before a byte is sent:
-- the kind and MIME type from its signature and the model's upload limits.
-- The same checks client:upload makes (the C core's sniffer and schema);
-- they are needed here because rivya.validate takes file tables, not paths.
local function inspect_reference(path, model)
  local function fail(message)
    return nil, errors.new("validation_failed", message, { field = "file" })
  end
  local st, serr = core.stat(path)
  if not st then return fail(("file: cannot read %s: %s"):format(path, serr)) end
  if st.type ~= "file" then return fail(("file: %s is a %s, expected a regular file"):format(path, st.type)) end
  if not st.readable then return fail(("file: %s is not readable"):format(path)) end
  local head, herr = core.read_head(path, 64)
  if not head then return fail(("file: cannot read %s: %s"):format(path, herr)) end
  local kind, mime = core.sniff(head)
  if not kind then
    return fail(("file: %s is not a supported image, video or audio file (unknown signature)"):format(path))
  end
  local ok, lerr = core.check_upload(model, kind, mime, st.size)
  if not ok then return nil, lerr end
  return { path = path, name = basename(path), kind = kind, mime = mime, size = st.size }
end

--- Validate `req` offline. Local paths in params.referenceMediaItems (relative
-- to base_dir) are inspected and stand in as placeholders, so a request that
-- would fail sends nothing, not even an upload.
-- Returns body, warnings, refs ({index, path, info}) | nil, err.
local function check_request(req, base_dir)
  local items = type(req.params) == "table" and req.params.referenceMediaItems
  local refs, probe = {}, req
  if type(items) == "table" then
    local params, list = shallow_copy(req.params), {}
    for i, item in ipairs(items) do list[i] = item end
    probe = shallow_copy(req)
    probe.params, params.referenceMediaItems = params, list
    for i, item in ipairs(items) do
      if type(item) == "string" then
        local path = join(base_dir or ".", item)
        local info, err = inspect_reference(path, req.model)
        if not info then
          err.field = ("params.referenceMediaItems[%d]"):format(i)
          return nil, err
        end
        refs[#refs + 1] = { index = i, path = path, info = info }
        list[i] = { url = "https://placeholder.invalid/reference-" .. i, kind = info.kind, name = info.name,
          mime_type = info.mime, duration_token = info.kind == "video" and "pending" or nil }
      end
    end
  end
  local body, warnings = rivya.validate(probe)
  if not body then return nil, warnings end
  local credits, cerr = rivya.estimate(probe)
  if not credits then return nil, cerr end
  -- show the local files in what is printed: they are uploaded at run time
  local shown = body.params and body.params.referenceMediaItems
  for _, ref in ipairs(refs) do
    local item = shown[ref.index]
    item.url, item.durationToken, item.upload = nil, nil, ref.path
  end
  return body, warnings or {}, refs, credits
end

------------------------------------------------------------------------------
-- The command context

local Ctx = {}
Ctx.__index = Ctx

function Ctx:out(line)
  self.status:clear()
  self.stdout:write(line, "\n")
  self.stdout:flush()
end

-- JSON for people and scripts: cjson 2.1.0 escapes every '/', undone here
-- (in JSON text a "\/" is always an escaped slash)
local function json_text(v)
  return (assert(json.encode(v)):gsub("\\/", "/"))
end

-- a request body as printed: sorted keys, so it reads the same every time
local function body_text(v)
  return (canonical(v):gsub("\\/", "/"))
end

function Ctx:emit(obj)
  local text = json_text(obj)
  self.status:clear()
  self.stdout:write(text, "\n")
  self.stdout:flush()
end

--- A usage error: message on stderr, status 2.
function Ctx:usage(message)
  self.status:clear()
  self.stderr:write("rivya: ", message, "\n")
  if self.command then self.stderr:write("Try 'rivya ", self.command, " --help'.\n") end
  return EXIT.usage
end

--- A runtime failure: one line on stderr, the matching status.
function Ctx:fail(err, prefix)
  self.status:clear()
  self.stderr:write("rivya: ", prefix or "", error_line(err):sub(8), "\n")
  return exit_code(err)
end

--- The client, created on first use from RIVYA_API_KEY / RIVYA_BASE_URL.
function Ctx:client(need_key)
  if need_key and (self.getenv("RIVYA_API_KEY") or "") == "" then
    return nil, errors.new("api_key_missing",
      "no API key: set RIVYA_API_KEY (the key is never taken as a flag, so it stays out of shell history and ps)")
  end
  if not self.client_obj then
    local ok, c = pcall(rivya.new, {
      api_key = self.getenv("RIVYA_API_KEY"),
      base_url = self.getenv("RIVYA_BASE_URL"),
    })
    if not ok then
      local message = tostring(c):gsub("^.-:%d+: ", ""):gsub("^rivya%.new: ", "")
      return nil, errors.new("config", "RIVYA_BASE_URL: " .. message)
    end
    self.client_obj = c
  end
  return self.client_obj
end

-- client errors that are configuration, not runtime: exit 2
local function client_fail(ctx, err)
  if err.code == "config" then
    ctx.stderr:write("rivya: ", err.message, "\n")
    return EXIT.usage
  end
  return ctx:fail(err)
end

--- Run `fn` with the live line ticking (elapsed time) on a terminal.
function Ctx:live(fn)
  if self.status.mode ~= "tty" then return fn() end
  local finished = false
  local results = rivya.gather({
    function()
      local r = table.pack(pcall(fn))
      finished = true
      return r
    end,
    function()
      while not finished do
        self.status:redraw(true)
        rivya.sleep(0.25)
      end
    end,
  })
  self.status:clear()
  local r = results[1][1]
  if not r then error(results[1][2], 0) end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end


------------------------------------------------------------------------------
-- Single-task commands

-- the live line of one task: phase, id, bytes, elapsed
local function task_render(p)
  return function(st)
    local parts = { p.phase or "starting" }
    if p.id then parts[#parts + 1] = p.id end
    if p.total then
      parts[#parts + 1] = bar(p.done or 0, p.total)
      parts[#parts + 1] = human_bytes(p.done or 0) .. "/" .. human_bytes(p.total)
    end
    parts[#parts + 1] = st:elapsed()
    return table.concat(parts, "  ")
  end
end

local function progress_cb(ctx, p)
  return function(done, total)
    p.done, p.total = done, total
    -- the last call is always drawn, so a full bar is seen even for small files
    ctx.status:redraw(total ~= nil and total > 0 and done >= total)
  end
end

-- the task as printed by --json: the API's object plus what the CLI did
local function task_object(task, extra)
  local o = shallow_copy(task)
  for k, v in pairs(extra or {}) do o[k] = v end
  if o.warnings and #o.warnings == 0 then o.warnings = nil end
  return o
end

local function print_task(ctx, a, task, extra)
  if a.json then return ctx:emit(task_object(task, extra)) end
  local line = ("%s  %s"):format(task.id, task.status)
  if task.status == "succeeded" then
    local url = type(task.result) == "table" and task.result.primary_url
    if extra and extra.output then line = line .. "  " .. extra.output elseif url then line = line .. "  " .. url end
  elseif task.status == "failed" and type(task.error) == "table" then
    line = line .. "  " .. tostring(task.error.code) .. ": " .. tostring(task.error.message)
  end
  ctx:out(line)
end

-- upload the local references of a checked request, with a progress bar;
-- returns a copy of req whose items are the uploaded file tables
local function upload_refs(ctx, client, req, refs, p, on_file)
  if #refs == 0 then return req end
  local copy, params, list = shallow_copy(req), shallow_copy(req.params), {}
  for i, item in ipairs(req.params.referenceMediaItems) do list[i] = item end
  copy.params, params.referenceMediaItems = params, list
  for _, ref in ipairs(refs) do
    local file = on_file and on_file(ref)   -- already uploaded (batch state)
    if not file then
      p.phase, p.done, p.total = "uploading " .. ref.info.name, 0, ref.info.size
      local err
      file, err = client:upload(ref.path, { model = req.model, kind = ref.info.kind,
        on_progress = progress_cb(ctx, p) })
      p.total = nil
      if not file then
        err.field = err.field or ("params.referenceMediaItems[%d]"):format(ref.index)
        return nil, err
      end
      ctx.status:event(("%suploaded %s (%s) as %s"):format(p.label and (p.label .. ": ") or "", ref.path,
        human_bytes(ref.info.size), tostring(file.id)))
      if on_file then on_file(ref, file) end
    end
    list[ref.index] = file
  end
  return copy
end

-- wait for a task and download its result; p is the live line's state
local function wait_and_download(ctx, a, client, task, out, p)
  p.id, p.phase = task.id, task.status
  -- a.interval: --interval, else RIVYA_POLL_INTERVAL, else the library's pace
  local o = { interval = a.interval, timeout = a.timeout }
  o.on_update = function(t)
    p.phase = t.status
    ctx.status:event(("%s %s (%s)"):format(t.id, t.status, ctx.status:elapsed()))
  end
  local final, err = client:wait(task, o)
  if not final then return nil, err end
  if out then
    p.phase, p.done, p.total = "downloading", 0, nil
    local path
    path, err = client:download(final, out, { on_progress = progress_cb(ctx, p) })
    p.total = nil
    if not path then
      err.task = err.task or final
      return nil, err
    end
    ctx.status:event(("saved %s"):format(out))
  end
  return final
end

-- a failure that concerns a known task: the task's JSON on stdout with --json
local function task_failure(ctx, a, err, extra)
  if a.json and type(err) == "table" and type(err.task) == "table" then
    local o = shallow_copy(extra or {})
    o.error = error_object(err)
    ctx:emit(task_object(err.task, o))
  end
  return ctx:fail(err)
end

local function read_prompt(ctx, prompt)
  if prompt == "-" then return ctx.stdin:read("a"):gsub("%s+$", "") end
  return prompt
end

-- model, prompt and params from the flags of generate/validate/estimate
local function request_from_args(ctx, a, specs)
  local params, perr = params_from_args(a, specs)
  if not params then return nil, perr end
  local req = { model = a.model or default_model(), prompt = read_prompt(ctx, a.prompt), params = params,
    client_request_id = a.client_request_id }
  if a.ref and #a.ref > 0 then
    params.referenceMediaItems = {}
    for i, path in ipairs(a.ref) do params.referenceMediaItems[i] = path end
  end
  return req
end

local function show_warnings(ctx, warnings)
  for _, w in ipairs(warnings or {}) do ctx.status:note("warning: " .. tostring(w)) end
end

local commands = {}

function commands.generate(ctx, a, specs)
  local req, uerr = request_from_args(ctx, a, specs)
  if not req then return ctx:usage(uerr) end
  local body, warnings, refs = check_request(req)
  if not body then return ctx:fail(warnings) end
  show_warnings(ctx, warnings)
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local p = {}
  ctx.status.render = task_render(p)
  return ctx:live(function()
    local sendable, err = upload_refs(ctx, client, req, refs, p)
    if not sendable then return ctx:fail(err) end
    if a.idempotency_key then sendable.idempotency_key = a.idempotency_key end
    p.phase = "creating"
    local task
    task, err = client:create(sendable)
    if not task then return ctx:fail(err) end
    ctx.current_task = task.id
    ctx.status:event(("created %s (%d credits reserved)"):format(task.id, task.reserved_credits or 0))
    if a.no_wait then
      print_task(ctx, a, task)
      return EXIT.ok
    end
    local out = a.out or (task.id .. ".mp4")
    ctx.current_out = out
    local final
    final, err = wait_and_download(ctx, a, client, task, out, p)
    if not final then return task_failure(ctx, a, err, { output = nil }) end
    print_task(ctx, a, final, { output = out, idempotency_key = task.idempotency_key })
    return EXIT.ok
  end)
end

function commands.validate(ctx, a, specs)
  local req, uerr = request_from_args(ctx, a, specs)
  if not req then return ctx:usage(uerr) end
  local body, warnings, _, credits = check_request(req)
  if not body then return ctx:fail(warnings) end
  if a.json then
    ctx:emit({ valid = true, body = body, warnings = #warnings > 0 and warnings or nil, credits = credits })
  else
    show_warnings(ctx, warnings)
    ctx:out(body_text(body))
  end
  return EXIT.ok
end

local read_batch   -- defined with the batch runner below

function commands.estimate(ctx, a, specs)
  local total, runs = 0, 0
  if a.batch then
    local jobs, err, status = read_batch(a.batch)
    if not jobs then
      if status == EXIT.usage then return ctx:usage(err) end
      return ctx:fail(err)
    end
    for _, job in ipairs(jobs) do
      local body, berr, _, credits = check_request(job.req, job.base_dir)
      if not body then return ctx:fail(berr, ("line %d: "):format(job.n)) end
      total, runs = total + credits, runs + 1
    end
  else
    if not a.prompt then return ctx:usage("estimate needs a PROMPT (and flags), or --batch FILE.jsonl") end
    local req, uerr = request_from_args(ctx, a, specs)
    if not req then return ctx:usage(uerr) end
    local body, err, _, credits = check_request(req)
    if not body then return ctx:fail(err) end
    runs = a.count
    total = credits * runs
  end
  if a.json then
    ctx:emit({ credits = total, runs = runs })
  else
    ctx:out(("%d credits (%d run%s)"):format(total, runs, runs == 1 and "" or "s"))
  end
  return EXIT.ok
end

function commands.upload(ctx, a)
  local model = a.model ~= "" and a.model or nil
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local p = { phase = "uploading " .. basename(a.file) }
  ctx.status.render = task_render(p)
  return ctx:live(function()
    local file, err = client:upload(a.file, { kind = a.kind, model = model, on_progress = progress_cb(ctx, p) })
    if not file then return ctx:fail(err) end
    if a.json then
      ctx:emit(file)
    else
      ctx:out(("%s  %s  %s  %s  %s%s"):format(tostring(file.id), tostring(file.kind), tostring(file.mime_type),
        human_bytes(file.size_bytes), tostring(file.url),
        file.duration_token and ("  duration_token=" .. file.duration_token) or ""))
    end
    return EXIT.ok
  end)
end

function commands.status(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local code = EXIT.ok
  for _, id in ipairs(a.id) do
    local task, err = client:get(id)
    if task then
      print_task(ctx, a, task)
    else
      code = ctx:fail(err, id .. ": ")
    end
  end
  return code
end

function commands.wait(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local p = { id = a.id, phase = "waiting" }
  ctx.status.render = task_render(p)
  ctx.current_task, ctx.current_out = a.id, a.out
  return ctx:live(function()
    local task, err = client:get(a.id)
    if not task then return ctx:fail(err) end
    local final
    final, err = wait_and_download(ctx, a, client, task, a.out, p)
    if not final then return task_failure(ctx, a, err) end
    print_task(ctx, a, final, { output = a.out })
    return EXIT.ok
  end)
end

function commands.download(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local p = { id = a.id, phase = "downloading" }
  ctx.status.render = task_render(p)
  return ctx:live(function()
    local task, err = client:get(a.id)
    if not task then return ctx:fail(err) end
    if task.status ~= "succeeded" then
      local e = errors.new(task.status == "failed" and "generation_failed" or "not_ready",
        task.status == "failed" and ("task %s failed: %s"):format(task.id,
          type(task.error) == "table" and tostring(task.error.message) or "no result")
        or ("task %s is %s, not succeeded yet: `rivya wait %s --out %s` waits and downloads")
          :format(task.id, task.status, task.id, a.file), { task = task })
      return task_failure(ctx, a, e)
    end
    local path
    path, err = client:download(task, a.file, { on_progress = progress_cb(ctx, p) })
    if not path then return ctx:fail(err) end
    local st = core.stat(path)
    if a.json then
      ctx:emit({ id = task.id, output = path, size_bytes = st and st.size })
    else
      ctx:out(("%s  saved %s (%s)"):format(task.id, path, human_bytes(st and st.size)))
    end
    return EXIT.ok
  end)
end

function commands.credits(ctx, a)
  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local credits, err = client:credits()
  if not credits then return ctx:fail(err) end
  if a.json then ctx:emit({ current_credits = credits }) else ctx:out(tostring(credits)) end
  return EXIT.ok
end

function commands.models(ctx, a)
  local models
  if a.offline then
    models = rivya.models()
  else
    local client, cerr = ctx:client(false)
    if not client then return client_fail(ctx, cerr) end
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

------------------------------------------------------------------------------
-- Batch and sweep: many requests run together, resumable through a state
-- file in the output directory.
--
-- Why a re-run never pays twice:
-- * The state file (DIR/rivya-state.json) is rewritten atomically (a
--   temporary file in DIR, then rename) after every change, and a task id is
--   recorded the moment its create returns: an interrupted run leaves either
--   the old or the new state, never a torn file.
-- * There is still a window between the API creating a task and the id
--   reaching the disk (a kill, a crash, a lost answer). It is closed by the
--   Idempotency-Key: each request's key is derived, not random —
--   sha256(nonce, request, attempt), where the nonce is drawn once per output
--   directory and written to the state file *before the first create*, and
--   `request` is sha256 of the validated body in canonical JSON (sorted keys,
--   wire form, so `10` and `"10"` agree) plus its occurrence number (two
--   identical lines are two wanted runs, so they get two keys). A re-run
--   derives the same key and sends the same body, and the API answers with
--   the task it already made instead of a new one.
-- * The body must be byte-for-byte the same for that replay, so uploaded
--   references are recorded in the state before the create and reused: a
--   second upload would give a new URL, a different body and an
--   idempotency_conflict. (An upload interrupted before it is recorded is
--   only uploaded again: files cost no credits.)
-- * Why not the batch file's path in the key: moving or renaming the file
--   would then re-create everything whose id was lost, while a fresh output
--   directory is an explicit "run it again". Entries are matched by
--   request, not line number, so inserting a line does not shift the others
--   onto tasks that are not theirs.
-- * Limits: the service keeps idempotency keys for a limited time (not
--   documented); a failed task is final for its key, so --retry-failed bumps
--   the attempt number to get a new key on purpose.

local function load_state(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local state, err = json.decode(text)
  if type(state) ~= "table" or type(state.nonce) ~= "string" then
    return nil, ("%s is not a rivya state file (%s); move it away or pick another --out-dir"):format(path,
      err or "no nonce")
  end
  return state
end

local function save_state(path, state)
  local tmp = ("%s.%s.tmp"):format(path, core.random_hex(4))
  local text = assert(json.encode(state))
  local f, err = io.open(tmp, "wb")
  if not f then error(errors.new("io", "cannot write the state file: " .. err)) end
  local ok, werr = f:write(text, "\n")
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    error(errors.new("io", "cannot write the state file: " .. tostring(werr or cerr)))
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    error(errors.new("io", "cannot replace the state file: " .. tostring(rerr)))
  end
end

--- Jobs from a JSONL file: one request object per non-empty line, `model`
-- defaulting to the first known model and an optional `output` file name.
-- Returns jobs | nil, message, exit status.
read_batch = function(path)
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "cannot read the batch file: " .. tostring(ferr), EXIT.usage end
  local jobs, n, outputs = {}, 0, {}
  local base = dirname(path)
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local req, derr = json.decode(line)
      if type(req) ~= "table" or req[1] ~= nil then
        f:close()
        return nil, errors.new("validation_failed", ("line %d: expected a JSON object per line%s"):format(n,
          derr and (": " .. derr) or ""), { field = "line " .. n }), EXIT.invalid
      end
      local output = req.output
      req.output = nil
      if output ~= nil and (type(output) ~= "string" or output == "" or output:find("/", 1, true)
          or output:sub(1, 1) == ".") then
        f:close()
        return nil, errors.new("validation_failed",
          ("line %d: output must be a plain file name inside --out-dir"):format(n), { field = "output" }), EXIT.invalid
      end
      req.model = req.model or default_model()
      jobs[#jobs + 1] = { n = n, req = req, base_dir = base, output_name = output }
    end
  end
  f:close()
  local width = math.max(2, #tostring(n))
  for _, job in ipairs(jobs) do
    job.output_name = job.output_name or ("line-%0" .. width .. "d.mp4"):format(job.n)
    if outputs[job.output_name] then
      return nil, errors.new("validation_failed", ("line %d: output %s is also line %d's"):format(job.n,
        job.output_name, outputs[job.output_name]), { field = "output" }), EXIT.invalid
    end
    outputs[job.output_name] = job.n
  end
  if #jobs == 0 then return nil, "the batch file has no requests", EXIT.usage end
  return jobs
end

-- the state entries that stand for `jobs`, matched by request hash
local function match_state(state, unit, jobs)
  local by_request = {}
  for _, e in pairs(state[unit] or {}) do
    if type(e) == "table" and e.request then by_request[e.request] = e end
  end
  for _, e in ipairs(state.orphans or {}) do
    if type(e) == "table" and e.request then by_request[e.request] = e end
  end
  local entries, used = {}, {}
  for _, job in ipairs(jobs) do
    local e = by_request[job.request]
    if e then
      entries[tostring(job.n)] = e
      used[e] = true
    end
  end
  local orphans = {}
  for _, e in pairs(by_request) do
    if not used[e] and e.task_id then orphans[#orphans + 1] = e end
  end
  table.sort(orphans, function(x, y) return tostring(x.task_id) < tostring(y.task_id) end)
  state[unit] = entries
  state.orphans = #orphans > 0 and orphans or nil
end

local function idempotency_key(state, unit, e)
  return ("rivya-%s-%s"):format(unit == "variants" and "sweep" or "batch",
    sha256_hex(state.nonce .. "\n" .. e.request .. "\n" .. e.attempt):sub(1, 32))
end

-- what an uploaded file must keep to stand in the request again
local function file_record(file)
  return { id = file.id, url = file.url, kind = file.kind, name = file.name, mime_type = file.mime_type,
    duration_token = file.duration_token, duration_seconds = file.duration_seconds, size_bytes = file.size_bytes }
end

--- Check every job offline; prints every invalid one. Returns true | exit status.
local function prepare_jobs(ctx, jobs, label)
  local seen, bad = {}, 0
  for _, job in ipairs(jobs) do
    local body, warnings, refs, credits = check_request(job.req, job.base_dir)
    if not body then
      ctx:fail(warnings, ("%s %d: "):format(label, job.n))
      bad = bad + 1
    else
      job.body, job.warnings, job.refs, job.credits = body, warnings, refs, credits
      local text = canonical(body)
      seen[text] = (seen[text] or 0) + 1
      job.request = sha256_hex(seen[text] .. "\n" .. text):sub(1, 32)
    end
  end
  if bad > 0 then return EXIT.invalid end
  return true
end

-- the batch/sweep live line: counts by phase, bytes, elapsed
local JOB_PHASES = { "uploading", "creating", "queued", "processing", "downloading", "failed" }
local function jobs_render(name, jobs)
  return function(st)
    local count, bytes = { failed = 0 }, 0
    for _, job in ipairs(jobs) do
      local ph = job.phase
      if ph == "error" or ph == "skipped" or ph == "timeout" then ph = "failed" end
      if ph then count[ph] = (count[ph] or 0) + 1 end
      bytes = bytes + (job.bytes or 0)
    end
    local parts = { ("%s %d/%d done"):format(name, count.succeeded or 0, #jobs) }
    for _, ph in ipairs(JOB_PHASES) do
      if (count[ph] or 0) > 0 then parts[#parts + 1] = count[ph] .. " " .. ph end
    end
    if bytes > 0 then parts[#parts + 1] = human_bytes(bytes) .. " down" end
    parts[#parts + 1] = st:elapsed()
    return table.concat(parts, "  ")
  end
end

-- the result of one job as printed (stdout) and returned
local function job_result(ctx, a, o, job, r)
  job.phase = r.status
  job.result = r
  local obj = { [o.unit_key] = job.n, task_id = r.task_id, status = r.status, output = r.output,
    resumed = r.resumed or false, credits = job.credits, idempotency_key = r.idempotency_key,
    error = r.error and error_object(r.error) or nil }
  if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
  if a.json then
    ctx:emit(obj)
  else
    local line = ("%s %d  %s  %s"):format(o.label, job.n, r.task_id or "-", r.status)
    if r.output and r.status == "succeeded" then line = line .. "  " .. r.output end
    if r.error then line = line .. "  " .. error_line(r.error):gsub("^rivya: ", "") end
    ctx:out(line)
  end
  ctx.status:redraw(true)
  return r
end

--- Run prepared jobs with resume. o: unit ("lines"|"variants"), unit_key
-- ("line"|"variant"), label, out_dir, concurrency, kind, source, describe.
-- Returns the exit status; each job gets job.result.
local function run_jobs(ctx, a, jobs, o)
  local state_path = join(o.out_dir, STATE_FILE)
  local state, serr = load_state(state_path)
  if serr then return ctx:usage(serr) end
  local total, pending = 0, 0
  if state then match_state(state, o.unit, jobs) end
  for _, job in ipairs(jobs) do
    job.output = join(o.out_dir, job.output_name)
    total = total + job.credits
    local e = state and state[o.unit][tostring(job.n)]
    if not (e and e.task_id) then pending = pending + job.credits end
  end

  if a.dry_run then
    for _, job in ipairs(jobs) do
      show_warnings(ctx, job.warnings)
      local e = state and state[o.unit][tostring(job.n)]
      if a.json then
        local obj = { [o.unit_key] = job.n, body = job.body, credits = job.credits, output = job.output,
          task_id = e and e.task_id or nil }
        if o.describe then for k, v in pairs(o.describe(job)) do obj[k] = v end end
        ctx:emit(obj)
      else
        ctx:out(("%s %d  %s%s"):format(o.label, job.n, body_text(job.body),
          e and e.task_id and ("  (created: " .. e.task_id .. ")") or ""))
      end
    end
    if a.json then
      ctx:emit({ requests = #jobs, credits = total, credits_to_reserve = pending })
    else
      ctx:out(("total: %d requests, %d credits%s"):format(#jobs, total,
        pending ~= total and (" (%d still to reserve; the rest are created in %s)"):format(pending, o.out_dir) or ""))
    end
    return EXIT.ok
  end

  local client, cerr = ctx:client(true)
  if not client then return client_fail(ctx, cerr) end
  local ok, merr = mkdir_p(o.out_dir)
  if not ok then return ctx:usage(merr) end
  if not state then
    -- the nonce reaches the disk before any create: see the comment above
    state = { version = 1, kind = o.kind, nonce = core.random_hex(16), source = o.source, [o.unit] = {} }
  end
  state.source = o.source
  for _, job in ipairs(jobs) do
    local key = tostring(job.n)
    local e = state[o.unit][key]
    if not e then
      e = { request = job.request }
      state[o.unit][key] = e
    end
    e.attempt = math.tointeger(e.attempt) or 1
    e.idempotency_key = idempotency_key(state, o.unit, e)
    job.entry = e
    show_warnings(ctx, job.warnings)
  end
  local function save() save_state(state_path, state) end
  save()

  ctx.status.render = jobs_render(o.kind, jobs)
  ctx.resume_hint = "re-run the same command to resume: created tasks are waited for, not paid again"
  local stop   -- an error that makes starting more tasks pointless (auth, credits)

  local function run_one(job)
    local e = job.entry
    local name = ("%s %d"):format(o.label, job.n)
    local resumed = e.task_id ~= nil
    if e.status == "succeeded" and e.output == job.output_name and file_exists(job.output) then
      return job_result(ctx, a, o, job, { status = "succeeded", task_id = e.task_id, output = job.output,
        resumed = true, idempotency_key = e.idempotency_key })
    end
    if e.status == "failed" then
      if not a.retry_failed then
        return job_result(ctx, a, o, job, { status = "failed", task_id = e.task_id, resumed = true,
          idempotency_key = e.idempotency_key,
          error = errors.new("generation_failed", (e.error or "the generation failed")
            .. " (--retry-failed runs it again)") })
      end
      e.attempt, e.task_id, e.status, e.error = e.attempt + 1, nil, nil, nil
      e.idempotency_key = idempotency_key(state, o.unit, e)
      resumed = false
      save()
    end
    if not e.task_id then
      if stop then
        return job_result(ctx, a, o, job, { status = "skipped", error = stop })
      end
      job.phase = "uploading"
      local p = { label = name }
      local req, err = upload_refs(ctx, client, job.req, job.refs, p, function(ref, file)
        e.uploads = e.uploads or {}
        if file then
          e.uploads[tostring(ref.index)] = file_record(file)
          save()
          return file
        end
        return e.uploads[tostring(ref.index)]
      end)
      if req then
        req = shallow_copy(req)
        req.idempotency_key = e.idempotency_key
        job.phase = "creating"
        local task
        task, err = client:create(req)
        if task then
          e.task_id, e.status = task.id, task.status
          save()   -- as soon as it exists: a kill from here on resumes this task
          job.phase = task.status
          ctx.status:event(("%s: created %s"):format(name, task.id))
        end
      end
      if err then
        if AUTH_CODES[err.code] or err.code == "insufficient_credits" then stop = stop or err end
        return job_result(ctx, a, o, job, { status = "error", error = err, idempotency_key = e.idempotency_key })
      end
    else
      job.phase = e.status or "queued"
      ctx.status:event(("%s: resuming %s"):format(name, e.task_id))
    end
    -- the last known status, so the first poll reports only a change
    local known = (e.status == "queued" or e.status == "processing") and { id = e.task_id, status = e.status }
    local final, err = client:wait(known or e.task_id, { interval = a.interval, timeout = a.timeout,
      on_update = function(t)
        job.phase = t.status
        if e.status ~= t.status then
          e.status = t.status
          if t.status ~= "succeeded" then save() end
        end
        ctx.status:event(("%s: %s %s"):format(name, t.id, t.status))
      end })
    if not final then
      if err.code == "generation_failed" then
        e.status = "failed"
        e.error = err.message
        save()
        return job_result(ctx, a, o, job, { status = "failed", task_id = e.task_id, error = err, resumed = resumed,
          idempotency_key = e.idempotency_key })
      end
      return job_result(ctx, a, o, job, { status = err.code == "timeout" and "timeout" or "error",
        task_id = e.task_id, error = err, resumed = resumed, idempotency_key = e.idempotency_key })
    end
    job.phase = "downloading"
    local path
    path, err = client:download(final, job.output, { on_progress = function(received) job.bytes = received end })
    if not path then
      return job_result(ctx, a, o, job, { status = "error", task_id = e.task_id, error = err, resumed = resumed,
        idempotency_key = e.idempotency_key })
    end
    e.status, e.output = "succeeded", job.output_name
    save()
    ctx.status:event(("%s: saved %s"):format(name, job.output))
    return job_result(ctx, a, o, job, { status = "succeeded", task_id = e.task_id, output = job.output,
      resumed = resumed, idempotency_key = e.idempotency_key })
  end

  local fns = {}
  for i, job in ipairs(jobs) do fns[i] = function() return run_one(job) end end
  ctx:live(function()
    local results = rivya.gather(fns, { concurrency = math.min(a.concurrency, #jobs) })
    for i, r in ipairs(results) do
      if r[1] == nil and r[2] ~= nil then
        if type(r[2]) == "string" and r[2]:find("interrupted!", 1, true) then error(r[2], 0) end
        -- a raise inside a job is a bug or an I/O failure (state file)
        local err = errors.is(r[2]) and r[2] or errors.new("internal", tostring(r[2]))
        if not jobs[i].result then job_result(ctx, a, o, jobs[i], { status = "error", error = err }) end
      end
    end
  end)

  local worst
  for _, job in ipairs(jobs) do
    local r = job.result
    if r.status ~= "succeeded" then
      local c = r.error and exit_code(r.error) or EXIT.failure
      if worst == nil then worst = c elseif worst ~= c then worst = EXIT.failure end
    end
  end
  return worst or EXIT.ok
end

function commands.batch(ctx, a)
  if a.concurrency < 1 then return ctx:usage("--concurrency must be at least 1") end
  local jobs, err, status = read_batch(a.file)
  if not jobs then
    if status == EXIT.usage then return ctx:usage(err) end
    return ctx:fail(err)
  end
  local prepared = prepare_jobs(ctx, jobs, "line")
  if prepared ~= true then return prepared end
  local out_dir = a.out_dir or (a.file:gsub("%.jsonl?$", "") .. ".out")
  return run_jobs(ctx, a, jobs, { unit = "lines", unit_key = "line", label = "line", kind = "batch",
    out_dir = out_dir, source = a.file })
end

------------------------------------------------------------------------------
-- Sweep and its contact sheet

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;" }))
end

local function url_escape_path(s)
  return (s:gsub("[^%w%-._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function slug(s)
  s = tostring(s):gsub("[^%w.]+", "-"):gsub("^-+", ""):gsub("-+$", "")
  return s:sub(1, 40)
end

local CONTACT_CSS = [[
*{box-sizing:border-box}
body{margin:0;padding:24px;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:#111418;color:#e8eaed}
header{margin-bottom:20px}
h1{margin:0 0 8px;font-size:20px;font-weight:600}
.prompt{margin:0 0 6px;font-size:15px;color:#fff;max-width:80em}
.meta{color:#9aa0a6;margin:0}
.meta b{color:#e8eaed;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.variant{margin:0;background:#1c2026;border:1px solid #2c313a;border-radius:8px;overflow:hidden}
.variant video,.variant .missing{display:block;width:100%;aspect-ratio:16/9;background:#000}
.variant .missing{display:flex;align-items:center;justify-content:center;color:#f28b82;padding:12px;text-align:center}
figcaption{padding:10px 12px}
figcaption h2{margin:0 0 6px;font-size:14px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{text-align:left;padding:2px 6px 2px 0;vertical-align:top}
th{color:#9aa0a6;font-weight:400;width:40%}
tr.swept td{color:#8ab4f8;font-weight:600}
.task{margin-top:6px;color:#9aa0a6;font-size:11px;word-break:break-all}
.status-failed h2,.status-error h2{color:#f28b82}
]]

-- index.html: every variant's video beside its parameters. Self-contained:
-- inline CSS, no script, videos by relative path next to it.
local function write_contact_sheet(path, sheet)
  local h = {}
  local function w(...) for i = 1, select("#", ...) do h[#h + 1] = select(i, ...) end end
  local swept = {}
  for _, d in ipairs(sheet.dims) do swept[d.name] = true end
  w("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>rivya sweep: ", html_escape(#sheet.variants), " variants</title>\n<style>\n", CONTACT_CSS,
    "</style>\n</head>\n<body>\n<header>\n<h1>rivya sweep · ", html_escape(#sheet.variants), " variants</h1>\n")
  for _, prompt in ipairs(sheet.prompts) do w("<p class=\"prompt\">", html_escape(prompt), "</p>\n") end
  local dim_names = {}
  for _, d in ipairs(sheet.dims) do dim_names[#dim_names + 1] = d.name end
  w("<p class=\"meta\">model <b>", html_escape(sheet.model), "</b> · swept <b>",
    html_escape(#dim_names > 0 and table.concat(dim_names, " × ") or "nothing"), "</b> · <b>",
    html_escape(sheet.credits), "</b> credits reserved · generated ", html_escape(sheet.generated), "</p>\n",
    "</header>\n<main class=\"grid\">\n")
  for _, v in ipairs(sheet.variants) do
    w(("<figure class=\"variant status-%s\" id=\"variant-%d\" data-variant=\"%d\" data-status=\"%s\">\n")
      :format(html_escape(v.status), v.n, v.n, html_escape(v.status)))
    if v.status == "succeeded" then
      w("<video src=\"", html_escape(url_escape_path(v.file)), "\" controls loop muted playsinline ",
        "preload=\"metadata\"></video>\n")
    else
      w("<div class=\"missing\">", html_escape(v.status), v.error and (": " .. html_escape(v.error)) or "",
        "</div>\n")
    end
    local title = {}
    for _, d in ipairs(sheet.dims) do title[#title + 1] = d.name .. " " .. tostring(v.values[d.name]) end
    w("<figcaption>\n<h2>#", v.n, #title > 0 and (" · " .. html_escape(table.concat(title, " · "))) or "",
      "</h2>\n<table class=\"params\">\n")
    for _, row in ipairs(v.rows) do
      w(("<tr%s><th>%s</th><td>%s</td></tr>\n"):format(swept[row[1]] and " class=\"swept\"" or "",
        html_escape(row[1]), html_escape(row[2])))
    end
    w("</table>\n<div class=\"task\">", html_escape(v.task_id or "no task"), " · ", html_escape(v.file), "</div>\n",
      "</figcaption>\n</figure>\n")
  end
  w("</main>\n</body>\n</html>\n")
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(table.concat(h))
  f:close()
  return os.rename(tmp, path)
end

function commands.sweep(ctx, a, specs)
  if a.concurrency < 1 then return ctx:usage("--concurrency must be at least 1") end
  local fixed, dims = sweep_params_from_args(a, specs)
  if not fixed then return ctx:usage(dims) end
  local prompts = {}
  for i, p in ipairs(a.prompt) do prompts[i] = read_prompt(ctx, p) end
  if #prompts > 1 then table.insert(dims, 1, { name = "prompt", values = prompts }) end
  local count = 1
  for _, d in ipairs(dims) do count = count * #d.values end
  if count > MAX_VARIANTS then
    return ctx:usage(("the grid has %d variants; at most %d"):format(count, MAX_VARIANTS))
  end
  local model = a.model or default_model()
  local width = math.max(2, #tostring(count))
  local jobs = {}
  for i = 1, count do
    -- the i-th combination, the last dimension varying fastest
    local values, picks, rest = {}, {}, i - 1
    for d = #dims, 1, -1 do
      local dim = dims[d]
      picks[d] = rest % #dim.values + 1
      values[dim.name] = dim.values[picks[d]]
      rest = rest // #dim.values
    end
    local params = shallow_copy(fixed)
    local name = { ("%0" .. width .. "d"):format(i) }
    for d, dim in ipairs(dims) do
      if dim.name == "prompt" then
        name[#name + 1] = "p" .. picks[d]
      else
        params[dim.name] = values[dim.name]
        name[#name + 1] = slug((dim.name:gsub("_", "-"))) .. "-" .. slug(values[dim.name])
      end
    end
    if a.ref and #a.ref > 0 then
      params.referenceMediaItems = {}
      for k, path in ipairs(a.ref) do params.referenceMediaItems[k] = path end
    end
    jobs[i] = { n = i, values = values, output_name = table.concat(name, "_") .. ".mp4",
      req = { model = model, prompt = values.prompt or prompts[1], params = params } }
  end
  local prepared = prepare_jobs(ctx, jobs, "variant")
  if prepared ~= true then return prepared end
  local out_dir = a.out_dir or "sweep"
  local function describe(job)
    local shown = {}
    for k, v in pairs(job.body.params or {}) do
      if k ~= "referenceMediaItems" then shown[k] = v end
    end
    return { params = shown, prompt = job.body.prompt }
  end
  local code = run_jobs(ctx, a, jobs, { unit = "variants", unit_key = "variant", label = "variant",
    kind = "sweep", out_dir = out_dir, source = "sweep", describe = describe })
  if a.dry_run or not jobs[1].result then return code end

  local sheet = { prompts = prompts, dims = {}, model = model, variants = {}, credits = 0,
    generated = os.date("!%Y-%m-%d %H:%M UTC") }
  for _, d in ipairs(dims) do sheet.dims[#sheet.dims + 1] = d end
  for _, job in ipairs(jobs) do
    local r = job.result
    sheet.credits = sheet.credits + (r.task_id and job.credits or 0)
    local rows = {}
    if #prompts > 1 then rows[#rows + 1] = { "prompt", job.body.prompt } end
    for _, p in ipairs(specs) do
      local v = job.body.params and job.body.params[p.name]
      if v ~= nil then rows[#rows + 1] = { p.name, tostring(v) } end
    end
    for k, item in ipairs(job.body.params and job.body.params.referenceMediaItems or {}) do
      rows[#rows + 1] = { "reference " .. k, tostring(item.upload or item.name or item.url) }
    end
    local shown_values = {}
    for _, d in ipairs(dims) do
      shown_values[d.name] = d.name == "prompt" and job.body.prompt or job.body.params[d.name]
    end
    sheet.variants[#sheet.variants + 1] = { n = job.n, file = job.output_name, status = r.status,
      task_id = r.task_id, error = r.error and r.error.message, values = shown_values, rows = rows }
  end
  local index = join(out_dir, "index.html")
  local ok, err = write_contact_sheet(index, sheet)
  if not ok then return ctx:fail(errors.new("io", "cannot write " .. index .. ": " .. tostring(err))) end
  if a.json then
    ctx.status:note("contact sheet: " .. index)
  else
    ctx:out("contact sheet: " .. index)
  end
  return code
end

------------------------------------------------------------------------------
-- The parser

local EPILOG = [[
Environment:
  RIVYA_API_KEY        the API key (rvya_sk_...); never a flag, never printed
  RIVYA_BASE_URL       the API origin (default https://rivya.ai)
  RIVYA_POLL_INTERVAL  seconds between status polls (default: the documented pace)

Exit status: 0 ok, 1 runtime failure (generation failed, network, API, I/O),
2 usage error, 3 validation error, 4 authentication or permission,
5 insufficient credits, 6 timed out waiting (the task keeps running), 130 interrupted.]]

local function common_flags(cmd, opts)
  opts = opts or {}
  cmd:flag("--json", "Print one JSON object per result on stdout.")
  cmd:flag("-q --quiet", "No progress on stderr (errors are still reported).")
  if opts.wait then
    cmd:option("--interval", "Seconds between status polls (default: RIVYA_POLL_INTERVAL or the documented pace).")
      :argname("<seconds>"):convert(tonumber)
    cmd:option("--timeout", "Give up waiting after this many seconds (default 900); the task keeps running.")
      :argname("<seconds>"):convert(tonumber)
  end
end

local function request_flags(cmd, specs, list_mode)
  cmd:option("--model", "Model id (default " .. default_model() .. ").")
  add_param_flags(cmd, specs, list_mode)
  cmd:option("--ref", "A reference file (image or video), uploaded first; repeat for two.")
    :argname("<file>"):count("*")
end

local function whole(s) return math.tointeger(tonumber(s)) end

local function build_parser(specs, hook)
  local parser = argparse("rivya", "Generate AI videos with the Rivya Public API v1 (rivya " .. rivya.VERSION .. ").")
    :epilog(EPILOG):command_target("command"):help_max_width(100)
  hook(parser)
  parser:flag("--version", "Print the version and exit."):action(function() coroutine.yield("version") end)

  local c = parser:command("generate", "Create a video: upload references, create the task, wait, download.")
  c:argument("prompt", "The prompt ('-' reads it from stdin).")
  request_flags(c, specs)
  c:option("-o --out", "Where to save the video (default ./<task id>.mp4)."):argname("<file>")
  c:option("--client-request-id", "Your own id for tracing the request."):argname("<id>")
  c:option("--idempotency-key", "Reuse a key to make a retried command replay the same task."):argname("<key>")
  c:flag("--no-wait", "Print the created task and exit (then: rivya wait ID --out FILE).")
  common_flags(c, { wait = true })
  hook(c)

  c = parser:command("upload", "Upload a reference file to the Files API.")
  c:argument("file", "The image or video.")
  c:option("--kind", "image or video (default: from the file's bytes)."):choices({ "image", "video", "audio" })
  c:option("--model", "Apply this model's upload rules (default " .. default_model() .. "; '' for none).")
    :default(default_model())
  common_flags(c)
  hook(c)

  c = parser:command("status", "Print a task's current state.")
  c:argument("id", "Task id(s)."):args("+")
  common_flags(c)
  hook(c)

  c = parser:command("wait", "Wait until a task is final; with --out, download its video.")
  c:argument("id", "Task id.")
  c:option("-o --out", "Where to save the video."):argname("<file>")
  common_flags(c, { wait = true })
  hook(c)

  c = parser:command("download", "Download a succeeded task's video.")
  c:argument("id", "Task id.")
  c:argument("file", "Destination (appears only when complete).")
  common_flags(c)
  hook(c)

  c = parser:command("credits", "Print the credit balance.")
  common_flags(c)
  hook(c)

  c = parser:command("models", "List the models (the service's catalog, or --offline the known schemas).")
  c:flag("--offline", "The schemas this rivya knows, without the network.")
  common_flags(c)
  hook(c)

  c = parser:command("validate", "Check a request offline and print the exact JSON body.")
  c:argument("prompt", "The prompt ('-' reads it from stdin).")
  request_flags(c, specs)
  c:option("--client-request-id", "Your own id for tracing the request."):argname("<id>")
  common_flags(c)
  hook(c)

  c = parser:command("estimate", "Credits a run (or --count runs, or a batch) would reserve. Offline.")
  c:argument("prompt", "The prompt."):args("?")
  request_flags(c, specs)
  c:option("--count", "Number of runs.", "1"):convert(whole):argname("<n>")
  c:option("--batch", "A batch file (JSONL) instead of a prompt."):argname("<file.jsonl>")
  common_flags(c)
  hook(c)

  c = parser:command("batch", "Run the requests of a JSONL file together; re-run to resume.")
  c:argument("file", "One request object per line: {\"prompt\":..., \"params\":{...}, \"output\":\"name.mp4\"}.")
  c:option("-c --concurrency", "Requests in flight at once.", "4"):convert(whole):argname("<n>")
  c:option("-d --out-dir", "Videos and the state file (default FILE.out)."):argname("<dir>")
  c:flag("--dry-run", "Validate, print the requests and the total credits; send nothing.")
  c:flag("--retry-failed", "Run lines whose task failed again (a new task, new credits).")
  common_flags(c, { wait = true })
  hook(c)

  c = parser:command("sweep", "Render the grid of variations of a prompt, with an index.html contact sheet.")
  c:argument("prompt", "The prompt(s): several prompts are one more dimension."):args("+")
  request_flags(c, specs, true)
  c:option("-c --concurrency", "Variants in flight at once.", "4"):convert(whole):argname("<n>")
  c:option("-d --out-dir", "Videos, state file and index.html (default ./sweep)."):argname("<dir>")
  c:flag("--dry-run", "Validate, print the variants and the total credits; send nothing.")
  c:flag("--retry-failed", "Run variants whose task failed again (a new task, new credits).")
  common_flags(c, { wait = true })
  hook(c)
  return parser
end

------------------------------------------------------------------------------

local function getenv_of(env)
  if env == nil then return os.getenv end
  if type(env) == "function" then return env end
  return function(name) return env[name] end
end

local function stderr_mode(ctx, a, streams)
  if a.quiet then return "quiet" end
  if streams.tty ~= nil then return streams.tty and "tty" or "plain" end
  if ctx.stderr ~= io.stderr then return "plain" end
  local term = ctx.getenv("TERM")
  if not term or term == "" or term == "dumb" then return "plain" end
  -- asked once per run; the shell inherits our stderr
  return os.execute("test -t 2") and "tty" or "plain"
end

--- Run the rivya command. argv: the arguments (without the program name);
-- env: a table or a getenv-like function (default os.getenv); streams:
-- {stdout=, stderr=, stdin=, tty=} (default the process's). Returns the
-- exit status.
function cli.main(argv, env, streams)
  streams = streams or {}
  local ctx = setmetatable({ stdout = streams.stdout or io.stdout, stderr = streams.stderr or io.stderr,
    stdin = streams.stdin or io.stdin, getenv = getenv_of(env) }, Ctx)
  ctx.status = new_status(ctx.stderr, "plain")
  for _, v in ipairs(argv) do
    if v == "--" then break end
    if v == "--api-key" or v:match("^%-%-api%-key=") or v == "--key" or v:match("^%-%-key=") then
      ctx.stderr:write("rivya: there is no key flag: set RIVYA_API_KEY in the environment ",
        "(a flag would land in shell history and ps)\n")
      return EXIT.usage
    end
  end
  local specs = param_specs()
  local parser = build_parser(specs, function(p)
    p:add_help({ action = function() coroutine.yield("help", p) end })
  end)
  local what, ok, a = coroutine.wrap(function() return "parsed", parser:pparse(argv) end)()
  if what == "help" then
    ctx.stdout:write(ok:get_help(), "\n")
    return EXIT.ok
  elseif what == "version" then
    ctx.stdout:write("rivya ", rivya.VERSION, "\n")
    return EXIT.ok
  end
  if not ok then
    local cmd
    for _, v in ipairs(argv) do
      if commands[v] then cmd = v break end
    end
    ctx.stderr:write("rivya: ", tostring(a), "\nTry 'rivya ", cmd and (cmd .. " ") or "", "--help'.\n")
    return EXIT.usage
  end
  if not a.command then
    ctx.stderr:write(parser:get_usage(), "\nrivya: a command is needed; try 'rivya --help'.\n")
    return EXIT.usage
  end
  ctx.command = a.command
  local width = tonumber(ctx.getenv("COLUMNS") or "")
  ctx.status = new_status(ctx.stderr, stderr_mode(ctx, a, streams), width and math.max(width, 20) or 80)
  if a.interval == nil and ctx.getenv("RIVYA_POLL_INTERVAL") then
    a.interval = tonumber(ctx.getenv("RIVYA_POLL_INTERVAL"))
    if not a.interval then return ctx:usage("RIVYA_POLL_INTERVAL must be a number of seconds") end
  end
  for _, name in ipairs({ "interval", "timeout" }) do
    if a[name] ~= nil and (type(a[name]) ~= "number" or not (a[name] > 0 and a[name] < math.huge)) then
      return ctx:usage(("--%s must be a positive number of seconds"):format(name))
    end
  end
  if a.command == "batch" or a.command == "sweep" then
    if not a.concurrency then return ctx:usage("--concurrency must be a whole number") end
  end
  if a.command == "estimate" and (not a.count or a.count < 1) then
    return ctx:usage("--count must be a positive whole number")
  end

  local done, code = xpcall(commands[a.command], debug.traceback, ctx, a, specs)
  if ctx.client_obj then ctx.client_obj:close() end
  if done then return code end
  ctx.status:clear()
  local message = tostring(code)
  if message:match("interrupted!") then
    ctx.stderr:write("rivya: interrupted")
    if ctx.resume_hint then
      ctx.stderr:write("; ", ctx.resume_hint)
    elseif ctx.current_task then
      ctx.stderr:write("; the task keeps running: rivya wait ", ctx.current_task, " --out ",
        sh_quote(ctx.current_out or "FILE"))
    end
    ctx.stderr:write("\n")
    return EXIT.interrupted
  end
  if errors.is(code) then return ctx:fail(code) end
  ctx.stderr:write("rivya: internal error: ", message, "\n")
  return EXIT.failure
end

return cli
