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
      collectgarbage()
      collectgarbage()
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
