--- rivya.cli.util: what several commands share — exit statuses, error
-- lines, paths, sizes and clocks, canonical JSON.
local core = require "rivya.core"
local json = require "rivya.json"
local compat = require "rivya.compat"
local idiv = compat.idiv

--- Exit statuses (README, "The rivya command").
local EXIT = { ok = 0, failure = 1, usage = 2, invalid = 3, auth = 4, credits = 5, timeout = 6,
  interrupted = 130, terminated = 143 }

--- API error codes that mean authentication or permission (exit 4).
local AUTH_CODES = { api_key_missing = true, api_key_invalid = true, api_key_revoked = true,
  api_key_expired = true, api_scope_denied = true }

--- The exit status for a rivya error table.
local function exit_code(err)
  local code = type(err) == "table" and err.code
  if code == "validation_failed" or code == "webhook_url_rejected" then return EXIT.invalid end
  if AUTH_CODES[code] then return EXIT.auth end
  if code == "insufficient_credits" then return EXIT.credits end
  -- 6 is for a wait's deadline (the task keeps running); a request that
  -- timed out (err.request names it) is a runtime failure
  if code == "timeout" then return err.request and EXIT.failure or EXIT.timeout end
  return EXIT.failure
end

-- a rivya error as plain data for --json output
local function error_object(err)
  if type(err) ~= "table" then return { code = "internal", message = tostring(err) } end
  return { code = err.code, message = err.message, field = err.field, status = err.status,
    request_id = err.request_id, attempts = err.attempts, idempotency_key = err.idempotency_key }
end

-- "rivya: code: message" without the module's own prefix repeated
local function error_line(err)
  local s = tostring(err)
  if s:sub(1, 7) ~= "rivya: " then s = "rivya: " .. s end
  -- say that it was tried again, when it was
  if type(err) == "table" and compat.math_type(err.attempts) == "integer" and err.attempts > 1 then
    s = s .. (" (tried %d times)"):format(err.attempts)
  end
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
  if compat.execute("mkdir -p -- " .. sh_quote(dir)) then return true end
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
    return ("%d:%02d:%02d"):format(idiv(seconds, 3600), idiv(seconds % 3600, 60), seconds % 60)
  end
  return ("%d:%02d"):format(idiv(seconds, 60), seconds % 60)
end

local function bar(done, total, width)
  width = width or 20
  if not total or total <= 0 then return "[" .. ("?"):rep(width) .. "]" end
  local filled = math.min(width, math.floor(width * done / total + 0.5))
  return "[" .. ("#"):rep(filled) .. ("."):rep(width - filled) .. "]"
    .. ("%4d%%"):format(math.min(100, math.floor(100 * done / total)))
end

-- JSON with object keys sorted (json.canonical): the batch's idempotency
-- keys are hashed from it.
local canonical = json.canonical

-- JSON for people and scripts: cjson 2.1.0 escapes every '/', undone here
-- (in JSON text a "\/" is always an escaped slash)
local function json_text(v)
  return (assert(json.encode(v)):gsub("\\/", "/"))
end

-- a request body as printed: sorted keys, so it reads the same every time
local function body_text(v)
  return (canonical(v):gsub("\\/", "/"))
end

-- A server's text made safe to print on a terminal: control characters
-- (C0, DEL, C1) become visible escapes, so an answer cannot move the cursor,
-- clear the screen or hide a line. Tabs and newlines too: one line stays one.
-- With keep_tabs, tabs stay (the separators of a tab-separated line).
local function printable(s, keep_tabs)
  s = tostring(s)
  if not s:find("[%c\127\194]") then return s end
  return (s:gsub("[%c\127]", function(c)
    if keep_tabs and c == "\t" then return c end
    return ("\\x%02x"):format(c:byte())
  end):gsub("\194([\128-\159])", function(c) return ("\\u{%x}"):format(c:byte()) end))
end

-- a word for the shell: unchanged when it is plainly safe, else single-quoted
local function shell_word(s)
  s = tostring(s)
  if s:match("^[%w_%-%.,/:=@%+]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

return {
  printable = printable,
  shell_word = shell_word,
  EXIT = EXIT,
  AUTH_CODES = AUTH_CODES,
  MAX_VARIANTS = 1000,   -- the most variants a sweep (or values a range) expands to
  exit_code = exit_code,
  error_object = error_object,
  error_line = error_line,
  shallow_copy = shallow_copy,
  file_exists = file_exists,
  dirname = dirname,
  basename = basename,
  join = join,
  sh_quote = sh_quote,
  mkdir_p = mkdir_p,
  human_bytes = human_bytes,
  clock = clock,
  bar = bar,
  canonical = canonical,
  json_text = json_text,
  body_text = body_text,
}
