-- Copies of the API key in memory (issue 12, item 8): every copy rivya owns
-- is wiped before it is freed. Each case runs in a child process that
-- counts the key's bytes in its own writable memory (/proc/self/mem) after
-- close and two full collections. The Lua strings holding the key (the
-- child's own, and the needles it searches with) are counted and allowed;
-- what libcurl keeps (its request buffers) is documented in the README
-- ("the key") and not counted.
local helper = require "helper"

local sh = helper.sh_quote

local SCAN = [[
local function scan(needle)
  local maps = assert(io.open("/proc/self/maps"))
  local regions = {}
  for line in maps:lines() do
    local a, b, perms, path = line:match("^(%x+)-(%x+) (%S+) %S+ %S+ %S+%s*(.*)$")
    -- (not the huge reservations of a sanitizer's shadow memory)
    local from, to = tonumber(a, 16), tonumber(b, 16)
    if perms:sub(1, 2) == "rw" and (path == "" or path == "[heap]") and to - from <= 1073741824 then
      regions[#regions + 1] = { from, to }
    end
  end
  maps:close()
  local mem = assert(io.open("/proc/self/mem", "rb"))
  local n = 0
  for _, r in ipairs(regions) do
    local at = r[1]
    while at < r[2] do
      local len = math.min(1048576, r[2] - at)
      local chunk = mem:seek("set", at) and mem:read(len)
      local i = 1
      while chunk do
        local s = chunk:find(needle, i, true)
        if not s then break end
        n, i = n + 1, s + 1
      end
      at = at + len
    end
  end
  mem:close()
  return n
end
]]

local function run_child(body, ...)
  local dir = helper.tmpdir()
  helper.write_file(dir .. "/child.lua", SCAN .. body)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = sh(a) end
  local out = helper.popen(("%s %s %s 2>&1"):format(helper.LUA, sh(dir .. "/child.lua"), table.concat(args, " ")))
  helper.rmrf(dir)
  return out
end

describe("the API key in memory", function()
  it("is wiped when core.session raises on another option, however many times", function()
    local out = run_child([[
      local core = require "rivya.core"
      local key = "rvya_sk_" .. core.random_hex(12)
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = 42 }) end
      local x = "https://x"
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = x, user_agent = 7 }) end
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = x, ca_file = "/nonexistent" }) end
      collectgarbage() collectgarbage()
      local needle = key:sub(9)
      io.write(scan(needle))
    ]])
    local n = assert(tonumber(out), out)
    -- Lua's own strings (the key, the needle; under a sanitizer also their
    -- freed copies held in its quarantine): a handful. A copy kept by each
    -- failed call would be hundreds.
    assert.is_true(n < 50, out .. " copies")
  end)

  it("leaves no copy of the key or of its own Authorization header after close", function()
    local sim = helper.start_sim{}
    local out = run_child([[
      local rivya = require "rivya"
      local url, key = arg[1], arg[2]
      local client = rivya.new{ api_key = key, base_url = url }
      for _ = 1, 20 do assert(client:credits()) end
      client:close()
      client = nil
      collectgarbage() collectgarbage()
      -- NUL-terminated copies: C strings (rivya's key, its header list entry,
      -- libcurl's option copies), not libcurl's request buffers (CRLF-ended).
      -- Lua's own strings end in NUL too: header, the needles, key.
      local header = "Authorization: Bearer " .. key
      local in_header, bare = header .. "\0", key .. "\0"
      io.write(scan(in_header) - 2, " ", scan(bare) - 4)
    ]], sim.url, helper.KEY)
    sim:stop()
    local header, bare = out:match("^(%-?%d+) (%-?%d+)$")
    assert(header, out)
    assert.are.equal("0", header)
    assert.are.equal("0", bare)
  end)
end)
