--- json_fuzz.lua — the Lua half of fuzz/json_fuzz.c: one client call whose
-- answer is the fuzzer's (fuzz_transfer builds it), then the properties of
-- what the call returned. The client is the real one; only its session is
-- a fake that hands out finished transfers, and max_retries = 0, so no
-- answer ever makes it sleep.
local rivya = require "rivya"
local errors = require "rivya.errors"
local compat = require "rivya.compat"

local client = rivya.new{
  api_key = "rvya_sk_fuzz_0123456789abcdef", base_url = "http://127.0.0.1:9", max_retries = 0,
}
client.session:close()

local fake = {}
function fake.start(_, spec) return fuzz_transfer(spec) end   -- luacheck: ignore
function fake.step() return 0 end
function fake.timeout() return nil end
function fake.pollfd() return -1 end
function fake.events() return "r" end
function fake.running() return 0 end
function fake.finished() return {}, false, false end
function fake.close() end
client.session = fake

local PNG = "\137PNG\r\n\26\n" .. string.rep("\0", 56)
local OUT = "/tmp/rivya-json-fuzz.out"   -- never written: the fake transfer has no file

local calls = {
  models = function() return client:models() end,
  credits = function() return client:credits() end,
  get = function() return client:get("task_0123") end,
  create = function() return client:create{ model = "wan-2-7-video", prompt = "a paper boat" } end,
  upload = function() return client:upload({ data = PNG, name = "a.png" }, { kind = "image" }) end,
  download = function() return client:download("https://cdn.example/v.mp4", OUT) end,
}
local order = { "models", "credits", "get", "create", "upload", "download" }

-- what every call promises: a value, or nil and a rivya.Error that prints as one line
local function check(name, v, err)
  if v ~= nil then return end
  assert(errors.is(err), name .. ": err is not a rivya.Error: " .. tostring(err))
  assert(type(err.code) == "string" and err.code ~= "", name .. ": err.code is not a string")
  assert(type(err.message) == "string", name .. ": err.message is not a string")
  local line = tostring(err)
  assert(type(line) == "string", name .. ": tostring(err)")
  assert(not line:find("[\r\n]"), name .. ": tostring(err) is not one line: " .. line)
  assert(err.retry_after == nil or (type(err.retry_after) == "number" and err.retry_after >= 0),
    name .. ": retry_after " .. tostring(err.retry_after))
  assert(err.status == nil or compat.math_type(err.status) == "integer", name .. ": status")
end

return function(call)
  local name = calls[call] and call or order[#call % #order + 1]
  check(name, calls[name]())
  os.remove(OUT)
end
