--- What differs between LuaJIT 2.1 and Lua 5.1, 5.2, 5.3 and 5.4, in one
-- place, for the rest of rivya (written in the subset all of them parse:
-- no goto, `//`, bit operators, `<close>` or integer-only functions).
-- On 5.1 and 5.2, which have no integer subtype, an "integer" is a whole
-- number within +-(2^53 - 1) (the C core's src/compat.h agrees).
local compat = {}

--- "5.1" (LuaJIT too), "5.2", "5.3" or "5.4".
compat.version = _VERSION:match("%d+%.%d+")

--- true on LuaJIT.
compat.jit = type(rawget(_G, "jit")) == "table"

-- PUC Lua 5.1 cannot yield across pcall, a metamethod, a for-in iterator or
-- any C function; LuaJIT and 5.2+ can (coroutine.wrap, pcall, iterators).
compat.yield_in_pcall = compat.jit or compat.version ~= "5.1"

compat.unpack = table.unpack or rawget(_G, "unpack")

--- table.pack: the values and n.
compat.pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end

local floor = math.floor
local MAXEXACT = 9007199254740991   -- 2^53 - 1: doubles hold every whole number up to it

--- math.maxinteger and math.mininteger, or +-(2^53 - 1) without integers.
compat.maxinteger = math.maxinteger or MAXEXACT
compat.mininteger = math.mininteger or -MAXEXACT

--- math.type: "integer", "float", or nil for a non-number.
compat.math_type = math.type or function(x)
  if type(x) ~= "number" then return nil end
  if x == floor(x) and x >= -MAXEXACT and x <= MAXEXACT then return "integer" end
  return "float"
end

--- math.tointeger for numbers: the integer of a whole number, else nil.
compat.tointeger = math.tointeger and function(x)
  if type(x) ~= "number" then return nil end
  return math.tointeger(x)
end or function(x)
  if compat.math_type(x) == "integer" then return x end
  return nil
end

--- a // b for whole numbers well inside 2^53, b ~= 0 (5.3+: an integer).
function compat.idiv(a, b)
  return floor(a / b)
end

-- the byte length of the UTF-8 sequence at i of s, or nil when it is not one
local function utf8_char(s, i)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local n, min
  if c >= 0xC2 and c <= 0xDF then n, min = 1, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, min = 2, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, min = 3, 0x10000
  else return nil end
  local cp = c % (2 ^ (6 - n))
  for k = 1, n do
    local b = s:byte(i + k)
    if not b or b < 0x80 or b > 0xBF then return nil end
    cp = cp * 64 + b % 64
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return n + 1
end

--- utf8.len(s) and utf8.offset(s, n) (n >= 1) of 5.3, on every Lua: the
-- number of code points | nil, the byte of the first invalid one; the byte
-- where the n-th code point starts (#s + 1 just past the end) | nil.
compat.utf8 = rawget(_G, "utf8") or {
  len = function(s)
    local i, n = 1, 0
    while i <= #s do
      local w = utf8_char(s, i)
      if not w then return nil, i end
      i, n = i + w, n + 1
    end
    return n
  end,
  offset = function(s, n)
    local i = 1
    for _ = 2, n do
      if i > #s then return nil end
      i = i + (utf8_char(s, i) or 1)
    end
    if i > #s + 1 then return nil end
    return i
  end,
}

--- os.execute with 5.2's results: true | nil, "exit" | "signal", code.
function compat.execute(cmd)
  local a, b, c = os.execute(cmd)
  if type(a) == "number" then   -- 5.1, LuaJIT: the wait status
    if a == 0 then return true, "exit", 0 end
    if a % 256 == 0 then return nil, "exit", floor(a / 256) end
    return nil, "signal", a % 128
  end
  return a, b, c
end

--- coroutine.running with 5.2's results: the coroutine and whether it is
-- the main one (5.1 gives nil in the main coroutine).
local running = coroutine.running
function compat.running()
  local co, main = running()
  if co == nil then return nil, true end
  return co, main == true
end

--- pcall(f, ...) around a call that may yield (a client call inside gather
-- or with a waiter): pcall where a yield can cross it. On PUC Lua 5.1, in a
-- coroutine (where a yield may come), f(...) is called plainly (true,
-- results) and its errors raise; in the main coroutine nothing yields, and
-- it is pcall.
if compat.yield_in_pcall then
  compat.ypcall = pcall
else
  function compat.ypcall(f, ...)
    if running() == nil then return pcall(f, ...) end
    return true, f(...)
  end
end

--- xpcall(f, handler, ...) with arguments, as 5.2.
if compat.version == "5.1" and not compat.jit then
  function compat.xpcall(f, handler, ...)
    local args = compat.pack(...)
    return xpcall(function() return f(compat.unpack(args, 1, args.n)) end, handler)
  end
else
  compat.xpcall = xpcall
end

--- load(text, name): a chunk from a string on every version.
compat.load = (compat.version == "5.1" and not compat.jit) and rawget(_G, "loadstring") or load

--- The string of a whole number within 2^53 with all its digits ("%.14g"
-- would write 2^53 as 9.007199254741e+15 on 5.1/5.2 and LuaJIT).
function compat.integer_string(n)
  return ("%.0f"):format(n)
end

--- Raise at once, naming the limitation, when running in a coroutine on
-- PUC Lua 5.1, for a call that would have to yield across a pcall,
-- metamethod, for-in iterator or C function (`what`: the call). On LuaJIT
-- and 5.2+, or in the main coroutine, it does nothing.
function compat.check_yieldable(what, level)
  if compat.yield_in_pcall or running() == nil then return end
  error(("%s: PUC Lua 5.1 cannot yield across a for-in iterator, pcall, metamethod or C function, "
    .. "and inside rivya.gather or with a waiter this call would have to; use it outside coroutines, "
    .. "or LuaJIT or Lua 5.2+ (see the README's interpreter table)"):format(what), (level or 1) + 1)
end

return compat
