-- Copies of the API key in memory (issue 12, item 8): every copy rivya owns
-- is wiped before it is freed. Each case runs in a child process that does
-- its work, closes, runs two full collections and then waits; this process
-- reads the child's writable memory (/proc/PID/mem) and counts the key's
-- bytes there, so the scan's own buffers are never among what it counts.
-- The child's Lua strings holding the key are counted and allowed; what
-- libcurl keeps (its request buffers) is documented in the README ("the
-- key") and not counted.
local helper = require "helper"
local compat = require "rivya.compat"

local sh = helper.sh_quote

-- how many times each needle occurs in the writable private memory of `pid`
local function scan(pid, needles)
  local maps = assert(io.open("/proc/" .. pid .. "/maps"))
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
  local mem = assert(io.open("/proc/" .. pid .. "/mem", "rb"))
  local counts = {}
  for i = 1, #needles do counts[i] = 0 end
  for _, r in ipairs(regions) do
    local at = r[1]
    while at < r[2] do
      local len = math.min(1048576, r[2] - at)
      local chunk = mem:seek("set", at) and mem:read(len)
      for i, needle in ipairs(needles) do
        local from = 1
        while chunk do
          local s = chunk:find(needle, from, true)
          if not s then break end
          counts[i], from = counts[i] + 1, s + 1
        end
      end
      at = at + len
    end
  end
  mem:close()
  return counts
end

-- Run `body` in a child (arg[1], arg[2]: `a`, `b`); once it is done, scan
-- it for the needles (made here: the child holds no string of them). Returns
-- the counts.
local function scan_child(body, needles, a, b)
  local dir = helper.tmpdir()
  helper.write_file(dir .. "/child.lua", body .. [[

    local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
    local f = io.open(arg[3] .. "/tmp", "w")
    f:write(pid)
    f:close()
    os.rename(arg[3] .. "/tmp", arg[3] .. "/ready")
    -- scanned now; ends normally (a sanitizer's checks run at exit) once told
    for _ = 1, 2400 do
      local go = io.open(arg[3] .. "/go")
      if go then go:close() break end
      os.execute("sleep 0.05")
    end
  ]])
  assert(compat.execute(("%s %s %s %s %s >%s 2>&1 &"):format(helper.LUA, sh(dir .. "/child.lua"), sh(a or ""),
    sh(b or ""), sh(dir), sh(dir .. "/log"))))
  local ready
  for _ = 1, 1200 do
    ready = helper.read_file(dir .. "/ready")
    if ready then break end
    helper.sleep(0.05)
  end
  assert(ready, "the child did not get ready: " .. (helper.read_file(dir .. "/log") or ""))
  local pid = ready:match("^%d+$")
  local ok, counts = pcall(scan, pid, needles)
  helper.write_file(dir .. "/go", "")
  for _ = 1, 1200 do
    if not compat.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    helper.sleep(0.05)
  end
  helper.rmrf(dir)
  assert(ok, counts)
  return counts
end

describe("the API key in memory", function()
  it("is wiped when core.session raises on another option, however many times", function()
    local key = "rvya_sk_" .. require("rivya.core").random_hex(12)
    local counts = scan_child([[
      local core = require "rivya.core"
      local key = arg[1]
      local x = "https://x"
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = 42 }) end
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = x, user_agent = 7 }) end
      for _ = 1, 200 do pcall(core.session, { api_key = key, api_origin = x, ca_file = "/nonexistent" }) end
      collectgarbage() collectgarbage()
    ]], { key }, key)
    -- the child's Lua string of the key (under a sanitizer also freed
    -- copies in its quarantine): a handful. A copy kept by each failed call
    -- would be hundreds.
    assert.is_true(counts[1] < 50, counts[1] .. " copies")
  end)

  it("leaves no copy of the key or of its own Authorization header after close", function()
    local sim = helper.start_sim{}
    local counts = scan_child([[
      local rivya = require "rivya"
      local url, key = arg[1], arg[2]
      local client = rivya.new{ api_key = key, base_url = url }
      for _ = 1, 20 do assert(client:credits()) end
      client:close()
      client = nil
      collectgarbage() collectgarbage()
    ]], { "Authorization: Bearer " .. helper.KEY .. "\0", helper.KEY .. "\0" }, sim.url, helper.KEY)
    sim:stop()
    -- NUL-terminated copies are C strings (rivya's key, its header list
    -- entry, libcurl's option copies), not libcurl's request buffers
    -- (CRLF-ended). Lua's strings end in NUL too: the child's key (one
    -- string, interned) is allowed, and under valgrind, which does not hand
    -- freed memory out again soon, one more freed copy of the bare key
    -- (its source not pinned down; 0 with glibc's allocator and ASan's).
    assert.are.equal(0, counts[1])
    assert.is_true(counts[2] >= 1 and counts[2] <= 2, counts[2] .. " copies")
  end)
end)
