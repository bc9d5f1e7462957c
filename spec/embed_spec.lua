-- examples/embed: a C host embedding Lua 5.4 and rivya (built by `make embed`,
-- part of `make test`) runs renders against rivya-sim while its own loop ticks.
local helper = require "helper"

describe("the embedding C host (examples/embed)", function()
  local sim, dir
  local bin = os.getenv("RIVYA_EMBED") or (helper.ROOT .. "/build/rivya-embed")
  local script = helper.ROOT .. "/examples/embed/render.lua"

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.6" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
  end)

  -- run the host; returns its output lines and whether it exited 0
  local function host(args, key)
    local cmd = ("RIVYA_BASE_URL=%s RIVYA_API_KEY=%s RIVYA_POLL_INTERVAL=0.05 %s %s %s %s 2>&1"):format(
      helper.sh_quote(sim.url), helper.sh_quote(key or helper.KEY), helper.sh_quote(bin), args,
      helper.sh_quote(script), helper.sh_quote(dir))
    local out, ok = helper.popen(cmd)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    return lines, ok, out
  end

  local function is_mp4(path)
    local data = helper.read_file(path)
    return data ~= nil and data:sub(5, 8) == "ftyp"
  end

  it("runs a render in a coroutine while the host's own loop keeps ticking", function()
    local lines, ok, out = host("--tick-ms 10")
    assert.is_true(ok, out)
    assert.are.equal(1, #lines, out)
    assert.matches("^%[1%] render 1: task task_%w+ succeeded %(queued > processing > succeeded%), saved ", lines[1])
    local ticks, waits = lines[1]:match("host ticks (%d+), waits (%d+)$")
    -- the host ticked while the render waited, and the render handed it its waits
    assert.is_true(tonumber(ticks) > 0, out)
    assert.is_true(tonumber(waits) > 0, out)
    assert.is_true(is_mp4(dir .. "/render-1.mp4"))
  end)

  it("runs two renders at once in two threads, each with its own lua_State", function()
    local lines, ok, out = host("--threads 2")
    assert.is_true(ok, out)
    assert.are.equal(2, #lines, out)
    local ids = {}
    for i = 1, 2 do
      local id = lines[i]:match("^%[" .. i .. "%] render " .. i .. ": task (task_%w+) succeeded")
      assert.is_truthy(id, out)
      ids[i] = id
      assert.is_true(is_mp4(dir .. "/render-" .. i .. ".mp4"))
    end
    assert.are_not.equal(ids[1], ids[2])
    assert.are.equal(2, sim:ledger().tasks_created)
  end)

  it("exits non-zero and says why when a render fails", function()
    local lines, ok, out = host("", helper.REVOKED_KEY)
    assert.is_falsy(ok)
    assert.are.equal(1, #lines, out)
    assert.matches("^%[1%] failed: rivya: api_key_revoked", lines[1])
    assert.are.equal(0, sim:ledger().tasks_created)
  end)
end)
