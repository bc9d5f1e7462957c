--- rivya.cli.context: what a command runs with — its streams, status
-- display and client — and how it reports results and failures.
local rivya = require "rivya"
local errors = require "rivya.errors"
local Ledger = require "rivya.ledger"
local util = require "rivya.cli.util"
local compat = require "rivya.compat"

-- the API's origin when RIVYA_BASE_URL is not set (rivya.new's default)
local DEFAULT_BASE_URL = "https://rivya.ai"

local EXIT, exit_code, error_line, json_text = util.EXIT, util.exit_code, util.error_line, util.json_text
local error_object, printable = util.error_object, util.printable

local Ctx = {}
Ctx.__index = Ctx

--- A result line on stdout (control characters made visible; tabs kept as
-- separators: a tab-separated command escapes its fields itself).
function Ctx:out(line)
  self.status:clear()
  self.stdout:write(printable(line, true), "\n")
  self.stdout:flush()
end

--- A JSON object on stdout (--json).
function Ctx:emit(obj)
  local text = json_text(obj)
  self.status:clear()
  self.stdout:write(text, "\n")
  self.stdout:flush()
end

--- A usage error: message on stderr (and {"error": {code = "usage", ...}}
-- on stdout with --json), status 2.
function Ctx:usage(message)
  self.status:clear()
  if self.json then self:emit({ error = { code = "usage", message = message } }) end
  self.stderr:write("rivya: ", printable(message), "\n")
  if self.command then self.stderr:write("Try 'rivya ", self.command, " --help'.\n") end
  return EXIT.usage
end

--- A runtime failure: one line on stderr, the matching status. With --json
-- also {"error": {...}} on stdout, with the fields of `extra` beside it;
-- extra == false when the caller has printed its own JSON for it.
function Ctx:fail(err, prefix, extra)
  self.status:clear()
  if self.json and extra ~= false then
    local o = {}
    for k, v in pairs(extra or {}) do o[k] = v end
    o.error = error_object(err)
    self:emit(o)
  end
  self.stderr:write("rivya: ", printable(prefix or ""), printable(error_line(err):sub(8)), "\n")
  return exit_code(err)
end

--- The user's ledger (RIVYA_LEDGER, else the XDG state folder), opened on
-- first use | false when RIVYA_LEDGER=off | nil, err.
function Ctx:ledger()
  if self.ledger_obj == nil then
    local path = Ledger.default_path(self.getenv)
    if not path then
      self.ledger_obj = false
    else
      local ledger, err = Ledger.open(path)
      if not ledger then
        return nil, errors.new("io", ("%s (set RIVYA_LEDGER to another path, or to off)"):format(err.message))
      end
      self.ledger_obj = ledger
    end
  end
  return self.ledger_obj
end

--- The client, created on first use from RIVYA_API_KEY / RIVYA_BASE_URL,
-- recording into the user's ledger unless RIVYA_LEDGER=off.
function Ctx:client(need_key)
  -- surrounding whitespace (a pasted key's newline, a leading space) is no part
  -- of a key, here as in rivya.new: a key of only whitespace is no key
  if need_key and not (self.getenv("RIVYA_API_KEY") or ""):find("%S") then
    return nil, errors.new("api_key_missing",
      "no API key: set RIVYA_API_KEY (the key is never taken as a flag, so it stays out of shell history and ps)")
  end
  if not self.client_obj then
    -- RIVYA_TIMEOUT: seconds for one request (a call gets twice that, retries included)
    local timeout = self.getenv("RIVYA_TIMEOUT")
    if timeout and timeout ~= "" then
      local t = tonumber(timeout)
      if not t or not (t > 0 and t < math.huge) then
        return nil, errors.new("config", "RIVYA_TIMEOUT: expected a number of seconds > 0, got " .. timeout)
      end
      timeout = t
    else
      timeout = nil
    end
    -- everything from self.getenv (cli.main's env), never the process's
    -- environment behind it: rivya.new falls back to os.getenv on nil
    local ledger, lerr = self:ledger()
    if ledger == nil then return nil, lerr end
    local ca_file = self.getenv("RIVYA_CA_FILE")
    local allow_http = self.getenv("RIVYA_ALLOW_HTTP")
    local key = (self.getenv("RIVYA_API_KEY") or ""):match("^%s*(.-)%s*$")
    local status = self.status
    local ok, c = pcall(rivya.new, {
      api_key = key,
      base_url = self.getenv("RIVYA_BASE_URL") or DEFAULT_BASE_URL,
      timeout = timeout, ledger = ledger,
      ca_file = ca_file ~= "" and ca_file or nil,
      allow_http = allow_http ~= "" and allow_http or nil,
      -- each retry on the live line (or a plain line): the user sees why it waits
      on_retry = function(r) status:retrying(r, self.max_tries) end,
    })
    if not ok then
      local message = tostring(c):gsub("^.-:%d+: ", ""):gsub("^rivya%.new: ", "")
      -- the library's hint names its Lua option; the command's user sets a variable
      message = message:gsub([[pass allow_http = "([^"]*)"]], "set RIVYA_ALLOW_HTTP=%1")
      if message:match("^ca_file:") then
        return nil, errors.new("config", "RIVYA_CA_FILE: " .. message:gsub("^ca_file: ", ""))
      end
      -- a key that would forge header lines: an authentication failure (exit 4)
      local key_why = message:match("^api_key: (.*)$")
      if key_why then return nil, errors.new("api_key_invalid", "RIVYA_API_KEY: " .. key_why) end
      return nil, errors.new("config", "RIVYA_BASE_URL: " .. message)
    end
    self.client_obj = c
    require("rivya.cli.catalog").seed(c)   -- the catalog this run loaded, not fetched twice
    self.max_tries = c.max_retries and c.max_retries + 1
  end
  return self.client_obj
end

-- client errors that are configuration, not runtime: exit 2
local function client_fail(ctx, err)
  if err.code == "config" then
    if ctx.json then ctx:emit({ error = { code = "usage", message = err.message } }) end
    ctx.stderr:write("rivya: ", printable(err.message), "\n")
    return EXIT.usage
  end
  return ctx:fail(err)
end

--- Run `fn` with the live line ticking (elapsed time) on a terminal.
function Ctx:live(fn)
  -- (PUC Lua 5.1 cannot yield across the pcall below: no ticking there)
  if self.status.mode ~= "tty" or not compat.yield_in_pcall then return fn() end
  local finished = false
  local results = rivya.gather({
    function()
      local r = compat.pack(pcall(fn))
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
  return compat.unpack(r, 2, r.n)
end



-- a warning of the validator, above the live line
function Ctx:warnings(warnings)
  for _, w in ipairs(warnings or {}) do self.status:note("warning: " .. tostring(w)) end
end

--- A new context: streams {stdout=, stderr=, stdin=}, getenv a function.
local function new(streams, getenv)
  return setmetatable({ stdout = streams.stdout or io.stdout, stderr = streams.stderr or io.stderr,
    stdin = streams.stdin or io.stdin, getenv = getenv }, Ctx)
end

return { new = new, client_fail = client_fail }
