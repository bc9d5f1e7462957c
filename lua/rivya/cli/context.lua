--- rivya.cli.context: what a command runs with — its streams, status
-- display and client — and how it reports results and failures.
local rivya = require "rivya"
local errors = require "rivya.errors"
local util = require "rivya.cli.util"
local compat = require "rivya.compat"

-- the API's origin when RIVYA_BASE_URL is not set (rivya.new's default)
local DEFAULT_BASE_URL = "https://rivya.ai"

local EXIT, exit_code, error_line, json_text = util.EXIT, util.exit_code, util.error_line, util.json_text

local Ctx = {}
Ctx.__index = Ctx

function Ctx:out(line)
  self.status:clear()
  self.stdout:write(line, "\n")
  self.stdout:flush()
end

-- JSON for people and scripts: cjson 2.1.0 escapes every '/', undone here


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
    local ok, c = pcall(rivya.new, {
      api_key = self.getenv("RIVYA_API_KEY") or "",
      base_url = self.getenv("RIVYA_BASE_URL") or DEFAULT_BASE_URL,
      timeout = timeout,
    })
    if not ok then
      local message = tostring(c):gsub("^.-:%d+: ", ""):gsub("^rivya%.new: ", "")
      -- a key that would forge header lines: an authentication failure (exit 4)
      local key_why = message:match("^api_key: (.*)$")
      if key_why then return nil, errors.new("api_key_invalid", "RIVYA_API_KEY: " .. key_why) end
      return nil, errors.new("config", "RIVYA_BASE_URL: " .. message)
    end
    self.client_obj = c
    require("rivya.cli.catalog").seed(c)   -- the catalog this run loaded, not fetched twice
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
