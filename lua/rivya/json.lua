--- JSON through lua-cjson, with whole numbers turned into Lua integers.
-- cjson decodes every number as a float; the API's counts and credits are
-- integers, so integral values within 2^53 become integers here (in C).
local cjson = require("cjson.safe").new()

cjson.decode_max_depth(64)
cjson.encode_max_depth(64)
cjson.encode_sparse_array(false)
cjson.encode_invalid_numbers(false)

local json = {}

json.null = cjson.null

local core = require "rivya.core"
local tidy = core.json_tidy
local null = cjson.null

--- Decode a JSON text; returns the value or nil, message. `null` becomes
-- nil, whole numbers within 2^53 integers, and each table is rebuilt at its
-- exact size (core.json_tidy, in C: thousands of tasks in flight hold these).
function json.decode(text)
  local v, err = cjson.decode(text)
  if v == nil and err then return nil, err end
  if v == null then return nil, "null" end
  return tidy(v, null)
end

local object = core.json_object

--- Decode an API answer expected to be a JSON object: what json.decode
-- gives, or nil, message. Its common shapes take one pass in C, straight
-- into exact-size tables (core.json_object); the rest (fractions,
-- escapes, ...) go through json.decode, with the same result.
function json.decode_object(text)
  local v = object(text)
  if v then return v end
  return json.decode(text)
end

-- lua-cjson writes every number with "%.14g": 2^53 would go out as
-- 9.007199254741e+15, and an integer of 15+ digits rounded, on every Lua
-- (5.1, 5.2 and LuaJIT have no integers; 5.3/5.4's are written as floats).
-- Whole numbers from 1e14 up are written with all their digits instead: each
-- is swapped for a marker string (with a per-process nonce) before encoding
-- and the quoted marker for its digits after (up to 2^63; larger magnitudes
-- stay in cjson's exponent form).
local BIG, HUGE, floor = 1e14, 2 ^ 63, math.floor
local math_type = require("rivya.compat").math_type
local mark, mark_pattern

local function digits(x)
  if math_type(x) == "integer" and math.type then return ("%d"):format(x) end
  return ("%.0f"):format(x)
end

-- v, or a copy with its big whole numbers marked; second result: changed
local function mark_big(v, depth)
  local tv = type(v)
  if tv == "number" then
    if (v >= BIG or v <= -BIG) and v <= HUGE and v >= -HUGE and v == floor(v) then
      if not mark then
        local nonce = core.random_hex(8)
        mark = "\1rivya-int-" .. nonce .. ":"
        mark_pattern = '"\\u0001rivya%-int%-' .. nonce .. ':(%-?%d+)\\u0001"'
      end
      return mark .. digits(v) .. "\1", true
    end
  elseif tv == "table" and depth <= 64 then
    local copy
    for k, x in pairs(v) do
      local y, changed = mark_big(x, depth + 1)
      if changed then
        if not copy then
          copy = {}
          for k2, x2 in pairs(v) do copy[k2] = x2 end
          setmetatable(copy, getmetatable(v))
        end
        copy[k] = y
      end
    end
    if copy then return copy, true end
  end
  return v, false
end

--- Encode a value; returns the text or nil, message. Whole numbers keep
-- every digit up to 2^53 (and 5.3/5.4 integers all of theirs).
function json.encode(v)
  local marked, changed = mark_big(v, 0)
  local text, err = cjson.encode(marked)
  if not text or not changed then return text, err end
  return (text:gsub(mark_pattern, "%1"))
end

--- The JSON text of `v` with object keys sorted: equal tables give equal
-- texts whatever order they were built in (the ledger's request hashes and
-- the batch's idempotency keys are taken from it).
function json.canonical(v)
  if type(v) ~= "table" then return json.encode(v) end
  local n = #v
  local is_array = n > 0
  if is_array then
    for k in pairs(v) do
      if math_type(k) ~= "integer" or k < 1 or k > n then is_array = false break end
    end
  end
  local parts = {}
  if is_array then
    for i = 1, n do parts[i] = json.canonical(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = json.encode(k) .. ":" .. json.canonical(x)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

return json
