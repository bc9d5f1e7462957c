--- rivya's one error type: tables built here carry the "rivya.Error"
-- metatable from the C core, so `tostring(err)` is one readable line.
local core = require "rivya.core"
local json = require "rivya.json"

local errors = {}

--- A new error: errors.new("timeout", "message", {field = ..., status = ...}).
function errors.new(code, message, extra)
  local e = { code = code, message = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  return core.error(e)
end

errors.is = core.is_error

local idiv = require("rivya.compat").idiv

--- Raise `message` for a misuse, pointing at the first caller outside
-- rivya's own modules (lua/rivya/...): the user's line, however deep inside
-- rivya the check sits or however it was reached (tail calls included).
function errors.misuse(message)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    -- (5.1 shows a tail call as its own level, "tail": not the caller)
    if not info or info.what == "C"
      or (info.what ~= "tail" and not info.source:find("[/\\]rivya[/\\][%w_/]*%.lua$")) then break end
    level = level + 1
  end
  error(message, level)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- days since 1970-01-01 of a civil date (proleptic Gregorian)
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = idiv(y >= 0 and y or y - 399, 400)
  local yoe = y - era * 400
  local doy = idiv(153 * (m + (m > 2 and -3 or 9)) + 2, 5) + d - 1
  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds to wait from a Retry-After value (delta-seconds or HTTP-date);
-- nil when absent or unreadable. `now` is the Unix time (os.time()).
function errors.retry_after(value, now)
  if type(value) ~= "string" then return nil end
  local secs = tonumber(value:match("^%s*(%d+%.?%d*)%s*$"))
  if secs then return secs end
  local d, mon, y, h, mi, s = value:match("^%a+,%s*(%d+)%s+(%a+)%s+(%d+)%s+(%d+):(%d+):(%d+)%s+GMT")
  if not d or not MONTHS[mon] then return nil end
  local t = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  local wait = t - (now or os.time())
  return wait > 0 and wait or 0
end

--- An error from an HTTP answer that is not 2xx: the body's error.code when
-- there is one, else server_error (5xx), rate_limited (429), not_found (404)
-- or http_error.
function errors.from_response(status, headers, body)
  local decoded = json.decode(body or "")
  local e = type(decoded) == "table" and type(decoded.error) == "table" and decoded.error or {}
  -- an empty code or message says nothing: the status decides instead
  local code = type(e.code) == "string" and e.code ~= "" and e.code or nil
  local message = type(e.message) == "string" and e.message ~= "" and e.message or nil
  if not code then
    code = status >= 500 and "server_error" or (status == 429 and "rate_limited")
      or (status == 404 and "not_found") or "http_error"
    local ctype = headers["content-type"] or "no content type"
    local location = status >= 300 and status < 400 and headers["location"]
    if location then
      -- only the origin: a query string could carry anything
      local origin = location:match("^(%a[%w+.-]*://[^/?#]+)") or "a relative location"
      message = message or string.format("HTTP %d, a redirect to %s that rivya does not follow: "
        .. "API requests (and the key) stay with the API's origin", status, origin)
    end
    message = message or string.format("HTTP %d without an API error body (%s)", status, ctype)
  end
  return errors.new(code, message or code, {
    status = status,
    request_id = (type(e.requestId) == "string" and e.requestId)
      or (type(e.request_id) == "string" and e.request_id) or headers["x-request-id"],
    field = type(e.field) == "string" and e.field or nil,
    retry_after = errors.retry_after(headers["retry-after"]),
  })
end

return errors
