--- JSON through lua-cjson, with whole numbers turned into Lua integers.
-- cjson decodes every number as a float; the API's counts and credits are
-- integers, so integral values within 2^53 become integers here.
local cjson = require("cjson.safe").new()

cjson.decode_max_depth(64)
cjson.encode_max_depth(64)
cjson.encode_sparse_array(false)
cjson.encode_invalid_numbers(false)

local json = {}

json.null = cjson.null

local floor, tointeger, mtype = math.floor, math.tointeger, math.type
local LIMIT = 2 ^ 53

local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(x) == "table" then
        integers(x)
      elseif mtype(x) == "float" and x == floor(x) and x > -LIMIT and x < LIMIT then
        v[k] = tointeger(x)
      end
    end
  end
  return v
end

--- Replace cjson.null (JSON null) by nil throughout a decoded table.
function json.strip_nulls(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if x == cjson.null then v[k] = nil else json.strip_nulls(x) end
    end
  end
  return v
end

--- Decode a JSON text; returns the value or nil, message. `null` becomes nil.
function json.decode(text)
  local v, err = cjson.decode(text)
  if v == nil and err then return nil, err end
  if v == cjson.null then return nil, "null" end
  return json.strip_nulls(integers(v))
end

--- Encode a value; returns the text or nil, message.
function json.encode(v)
  return cjson.encode(v)
end

return json
