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

local tidy = require("rivya.core").json_tidy
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

local object = require("rivya.core").json_object

--- Decode an API answer expected to be a JSON object: what json.decode
-- gives, or nil, message. Its common shapes take one pass in C, straight
-- into exact-size tables (core.json_object); the rest (fractions,
-- escapes, ...) go through json.decode, with the same result.
function json.decode_object(text)
  local v = object(text)
  if v then return v end
  return json.decode(text)
end

--- Encode a value; returns the text or nil, message.
function json.encode(v)
  return cjson.encode(v)
end

return json
