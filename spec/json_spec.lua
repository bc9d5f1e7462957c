-- rivya.json: lua-cjson's decode made Lua-shaped by core.json_tidy (C).
local json = require "rivya.json"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"
local helper = require "helper"

describe("rivya.json.decode", function()
  it("drops null members of objects, at every depth", function()
    local v = assert(json.decode([[{"id":"t1","error":null,"output":{"url":null,"size":3},
      "list":[{"a":null,"b":1}]}]]))
    assert.are.same({ id = "t1", output = { size = 3 }, list = { { b = 1 } } }, v)
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "id", "list", "output" }, keys)
  end)

  it("leaves a hole, not cjson.null, where an array holds null", function()
    local v = assert(json.decode("[1,null,3]"))
    assert.are.equal(1, v[1])
    assert.is_nil(v[2])
    assert.are.equal(3, v[3])
  end)

  it("turns whole numbers within 2^53 into integers and keeps the rest floats", function()
    local v = assert(json.decode([[{"a":5,"b":5.0,"c":-3,"d":1.5,"e":1e300,"f":9007199254740991,
      "g":9007199254740992,"h":[2,2.5],"i":0}]]))
    assert.are.equal("integer", compat.math_type(v.a))
    assert.are.equal("integer", compat.math_type(v.b))
    assert.are.equal(-3, v.c)
    assert.are.equal("integer", compat.math_type(v.c))
    assert.are.equal("float", compat.math_type(v.d))
    assert.are.equal("float", compat.math_type(v.e))
    assert.are.equal("integer", compat.math_type(v.f))
    assert.are.equal(9007199254740991, v.f)
    assert.are.equal("float", compat.math_type(v.g))
    assert.are.equal("integer", compat.math_type(v.h[1]))
    assert.are.equal("float", compat.math_type(v.h[2]))
    assert.are.equal("integer", compat.math_type(v.i))
  end)

  it("keeps strings, booleans and empty containers", function()
    assert.are.same({ s = "x", t = true, f = false, o = {}, a = {} },
      json.decode([[{"s":"x","t":true,"f":false,"o":{},"a":[]}]]))
    assert.are.equal("plain", json.decode([["plain"]]))
    assert.are.equal(false, json.decode("false"))
  end)

  it("returns nil and a message for a top-level null and for text that is not JSON", function()
    local v, err = json.decode("null")
    assert.is_nil(v)
    assert.are.equal("null", err)
    v, err = json.decode("{nope")
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("refuses nesting deeper than 64 without a crash", function()
    assert.is_table(json.decode(("["):rep(64) .. ("]"):rep(64)))
    local v, err = json.decode(("["):rep(65) .. ("]"):rep(65))
    assert.is_nil(v)
    assert.matches("too many nested", err)
  end)

  it("builds tables at their exact size: objects that lost their nulls take less heap than cjson's", function()
    local text = [[{"id":"t","status":"processing","model":"wan-2-7-video","prompt":"p","progress":40,
      "created_at":"2026-01-01T00:00:00Z","error":null,"output":null,"finished_at":null,"usage":null}]]
    local function heap_of(decode)
      local keep = {}
      helper.settle_heap()
      local base = collectgarbage("count")
      for i = 1, 1000 do keep[i] = decode(text) end
      collectgarbage()
      local kb = collectgarbage("count") - base
      assert.are.equal(1000, #keep)
      return kb
    end
    local raw, tidy = helper.heap_steady(heap_of, cjson.decode), helper.heap_steady(heap_of, json.decode)
    -- 10 members: cjson's table has 16 hash nodes; the 6 kept fit in 8
    assert.is_true(tidy < raw * 0.75, ("cjson %.0f KB, rivya.json %.0f KB"):format(raw, tidy))
  end)
end)

describe("rivya.json.encode", function()
  it("encodes tables and refuses what JSON cannot hold", function()
    assert.are.equal('{"a":1}', json.encode({ a = 1 }))
    assert.are.equal("[1,2]", json.encode({ 1, 2 }))
    local s, err = json.encode({ f = function() end })
    assert.is_nil(s)
    assert.is_string(err)
    s, err = json.encode({ x = 0 / 0 })
    assert.is_nil(s)
    assert.is_string(err)
  end)
end)

-- Integers on the wire on every interpreter: 5.1, 5.2 and LuaJIT hold them as
-- doubles (exact up to 2^53), and lua-cjson writes numbers with "%.14g".
describe("integers on the wire", function()
  local rivya = require "rivya"
  local catalog = require "rivya.catalog"
  local MAX = 9007199254740991   -- 2^53 - 1

  it("encodes whole numbers up to 2^53 with every digit, and decodes them back", function()
    local text = json.encode({ a = MAX, b = MAX + 1, c = -MAX, d = 123456789012345, e = 100000000000000,
      f = 99999999999999, g = 4000000000, h = { 1e15, 2 ^ 52 + 1 } })
    assert.matches('"a":9007199254740991[,}]', text)
    assert.matches('"b":9007199254740992[,}]', text)
    assert.matches('"c":%-9007199254740991[,}]', text)
    assert.matches('"d":123456789012345[,}]', text)
    assert.matches('"e":100000000000000[,}]', text)
    assert.matches('"f":99999999999999[,}]', text)
    assert.matches('"g":4000000000[,}]', text)
    assert.matches('"h":%[1000000000000000,4503599627370497%]', text)
    assert.is_nil(text:find("e+", 1, true))
    local v = assert(json.decode(text))
    assert.are.equal(MAX, v.a)
    assert.are.equal("integer", compat.math_type(v.a))
    assert.are.equal(-MAX, v.c)
    assert.are.equal(123456789012345, v.d)
    assert.are.equal(2 ^ 52 + 1, v.h[2])
    -- floats and magnitudes beyond 2^63 stay cjson's
    assert.are.equal('[0.5,1e+300]', json.encode({ 0.5, 1e300 }))
  end)

  it("leaves a string that looks like its own marker a string", function()
    local s = "\1rivya-int-00000000:5\1"
    local text = json.encode({ s = s, n = MAX })
    assert.are.equal(s, assert(json.decode(text)).s)
    assert.matches('"n":9007199254740991', text)
  end)

  it("gives the same integers from the C core: a seed of 2^31 - 1, and sizes to 2^53 - 1 in messages", function()
    local body = assert(rivya.validate({ model = "wan-2-7-video", prompt = "p", params = { seed = 2147483647 } }))
    assert.matches('"seed":2147483647[,}]', json.encode(body))
    assert.are.equal("integer", compat.math_type(body.params.seed))
    -- 10.5 is no integer on any version (a 5.1 lua_tointeger would truncate it to 10)
    assert.is_nil(rivya.validate({ model = "wan-2-7-video", prompt = "p", params = { seed = 10.5 } }))
    assert.is_nil(rivya.validate({ model = "wan-2-7-video", prompt = "p", params = { seed = "9007199254740993" } }))
    local ok, err = catalog.snapshot():check_upload(nil, "video", "video/mp4", MAX)
    assert.is_nil(ok)
    assert.are.equal("9007199254740991 bytes", err.got)
  end)
end)

describe("rivya.json.decode_object", function()
  local core = require "rivya.core"
  local TASK = '{"id":"task_5219d1fe","status":"queued","model":"wan-2-7-video","reserved_credits":80,'
    .. '"final_credits":0,"created_at":"2026-11-29T12:11:04.116Z","updated_at":"2026-11-29T12:11:04.116Z",'
    .. '"result":null,"error":null}'

  -- deep equality with math types: 80 and 80.0 differ here
  local function same(a, b)
    if type(a) ~= type(b) then return false end
    if type(a) == "number" then return compat.math_type(a) == compat.math_type(b) and (a == b or a ~= a and b ~= b) end
    if type(a) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end

  it("decodes a task answer in one pass (core.json_object) to what json.decode gives", function()
    local fast = core.json_object(TASK)
    assert.is_table(fast)
    assert.is_true(same(json.decode(TASK), fast))
    assert.are.equal("integer", compat.math_type(fast.reserved_credits))
    assert.is_nil(fast.result)
    assert.are.same(fast, json.decode_object(TASK))
  end)

  it("builds tables no larger than json.decode's", function()
    local function heap_of(decode)
      local keep = {}
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      for i = 1, 1000 do keep[i] = decode(TASK) end
      collectgarbage()
      local kb = collectgarbage("count") - base
      assert.are.equal(1000, #keep)
      return kb
    end
    local tidy, fast = heap_of(json.decode), heap_of(core.json_object)
    assert.is_true(fast <= tidy * 1.02, ("json.decode %.0f KB, core.json_object %.0f KB"):format(tidy, fast))
  end)

  it("leaves what it does not take to json.decode, with the same result", function()
    for _, text in ipairs({
      '{"a":1.5}', '{"a":1e3}', '{"a":"tab\\there"}', '{"a":"\\u00e9"}', '{"a":[1,null,3]}',
      '{"a":12345678901234567}', '{"a":01}', '[1,2]', '"s"', '{"a":1}x', '{"a":1,}', '{"a" 1}',
      '{"a":tru}', '{"a":"unterminated}', '{"a":"ctl\1"}', '', '{', '{"a":-}', '{"a":NaN}',
      '{"a":Infinity}', ('{"a":'):rep(70) .. '1' .. ('}'):rep(70),
    }) do
      assert.is_nil(core.json_object(text), text)
      local want, werr = json.decode(text)
      local got, gerr = json.decode_object(text)
      assert.is_true(same(want, got), text)
      assert.are.equal(werr == nil, gerr == nil, text)
    end
  end)

  it("agrees with json.decode on 3,000 generated documents and their mutations", function()
    -- a fixed seed: the same documents every run
    local seed = 12345
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local WORDS = { '"id"', '"status"', '"a"', '"b"', '""', '"é"', '"x y"', '"a"' }
    local function value(depth)
      local k = rand(depth > 4 and 6 or 9)
      if k == 1 then return tostring(rand(1000) - 500) end
      if k == 2 then return ({ "0", "-0", "123456789012345", "1234567890123456", "2.5", "1e2" })[rand(6)] end
      if k == 3 then return WORDS[rand(#WORDS)] end
      if k == 4 then return ({ "true", "false", "null" })[rand(3)] end
      if k == 5 then return '"with\\nescape"' end
      if k == 6 then return "null" end
      if k <= 8 then
        local parts = {}
        for i = 1, rand(5) - 1 do parts[i] = WORDS[rand(#WORDS)] .. ":" .. value(depth + 1) end
        return "{" .. table.concat(parts, ",") .. "}"
      end
      local parts = {}
      for i = 1, rand(5) - 1 do parts[i] = value(depth + 1) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    local fast_taken = 0
    for i = 1, 3000 do
      local parts = {}
      for j = 1, rand(6) - 1 do parts[j] = WORDS[rand(#WORDS)] .. " : " .. value(1) end
      local text = "{" .. table.concat(parts, ",") .. "}"
      if i % 3 == 0 then   -- a mutation: a byte dropped, doubled or replaced
        local at = rand(#text)
        local m = rand(3)
        text = text:sub(1, at - 1) .. (m == 2 and text:sub(at, at):rep(2) or m == 3 and "]" or "")
          .. text:sub(at + 1)
      end
      local fast = core.json_object(text)
      local want = json.decode(text)
      if fast then
        fast_taken = fast_taken + 1
        assert.is_true(same(want, fast), text)
      end
      assert.is_true(same(want, (json.decode_object(text))), text)
    end
    assert.is_true(fast_taken > 500, "fast path taken " .. fast_taken .. " times")
  end)

  it("returns nil rather than raising on an array too long for the Lua stack", function()
    local text = '{"a":[' .. ("1,"):rep(1200000) .. '1]}'
    local ok, v = pcall(core.json_object, text)
    assert.is_true(ok, tostring(v))
    assert.is_true(v == nil or #v.a == 1200001)
  end)
end)
