-- Signals end waits (issue 12, item 9): a wait in the kernel returns when a
-- signal arrives, lua.c's SIGINT hook raises at the next instruction, and
-- rivya turns that into the error `interrupted`; the CLI exits 130 with its
-- resume hint, and on SIGTERM (143) removes its temporary files as on SIGINT.
-- Each case runs in a child process, signalled once it is waiting; a child
-- still alive long after the signal is killed, and the case fails.
local helper = require "helper"
local compat = require "rivya.compat"

local sh = helper.sh_quote

describe("a signal during a wait", function()
  local sim, dir, serial = nil, nil, 0

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "600" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function() sim:control("DELETE", "faults") end)

  -- Start `cmd` (a shell command) in the background; returns the child's
  -- files: pid (the command itself), out, err, code (its exit status, once done).
  local function spawn(cmd, cwd)
    serial = serial + 1
    local d = ("%s/child-%d"):format(dir, serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    local c = { dir = d, pid = d .. "/pid", out = d .. "/out", err = d .. "/err", code = d .. "/code" }
    local inner = ("cd %s && %s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s"):format(sh(cwd or d), cmd,
      sh(c.out), sh(c.err), sh(c.pid), sh(c.code))
    assert(compat.execute(("sh -c %s >/dev/null 2>&1 &"):format(sh(inner))))
    return c
  end

  local function wait_for(pred, what)
    for _ = 1, 600 do
      if pred() then return end
      helper.sleep(0.05)
    end
    error("gave up waiting for " .. what)
  end

  local function pid_of(c)
    local pid
    wait_for(function()
      pid = tonumber((helper.read_file(c.pid) or ""):match("%d+"))
      return pid ~= nil
    end, "the child's pid")
    return pid
  end

  -- signal the child once `ready` holds (and it has had time to reach its
  -- wait), then wait for its exit: the child's exit status
  local function signal(c, name, ready)
    local pid = pid_of(c)
    wait_for(ready, "the child to be waiting")
    helper.sleep(0.5)
    compat.execute(("kill -%s %d"):format(name, pid))
    local ended = false
    for _ = 1, 200 do   -- 10 s, against waits of 20 s and more
      if helper.read_file(c.code) then ended = true break end
      helper.sleep(0.05)
    end
    if not ended then compat.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    assert.is_true(ended, "the child still waited after SIG" .. name)
    return tonumber(helper.read_file(c.code):match("%d+"))
  end

  -- a Lua child printing the error it got; it writes `ready` before the wait
  local function lua_child(body)
    local script = ("%s/script-%d.lua"):format(dir, serial + 1)
    helper.write_file(script, ([[
      local rivya = require "rivya"
      local client = rivya.new{ api_key = %q, base_url = %q, poll_interval = 20 }
      local function ready() local f = io.open("ready", "w") f:close() end
      local ok, err = pcall(function() %s end)
      io.write(ok and "no error" or (rivya.is_error(err) and err.code or tostring(err)))
    ]]):format(helper.KEY, sim.url, body))
    local c = spawn(helper.LUA .. " " .. sh(script))
    return c, function() return helper.read_file(c.dir .. "/ready") ~= nil end
  end

  it("ends rivya.sleep(30) at SIGINT with the error interrupted", function()
    local c, ready = lua_child("ready() rivya.sleep(30)")
    signal(c, "INT", ready)
    assert.are.equal("interrupted", helper.read_file(c.out))
  end)

  it("ends client:wait between 20 s polls at SIGINT with the error interrupted", function()
    local c, ready = lua_child([[
      local task = assert(client:create{ model = "wan-2-7-video", prompt = "a long wait", params = {} })
      ready()
      client:wait(task, { interval = 20 })
    ]])
    signal(c, "INT", ready)
    assert.are.equal("interrupted", helper.read_file(c.out))
  end)

  it("ends the pause a 429 with Retry-After: 20 asks for at SIGINT", function()
    sim:fault{ path = "/api/v1/credits", action = "respond", status = 429, headers = { ["Retry-After"] = "20" },
      times = 4 }
    local c, ready = lua_child("ready() client:credits()")
    signal(c, "INT", function()
      if not ready() then return false end
      for _, r in ipairs(sim:control("GET", "requests").data) do
        if r.path == "/api/v1/credits" then return true end
      end
      return false
    end)
    assert.are.equal("interrupted", helper.read_file(c.out))
  end)

  local function rivya_command(args)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh(a) end
    return ("env RIVYA_BASE_URL=%s RIVYA_API_KEY=%s %s %s %s"):format(sh(sim.url), sh(helper.KEY),
      helper.LUA, sh(helper.ROOT .. "/bin/rivya"), table.concat(quoted, " "))
  end

  it("makes `rivya wait ID --interval 20` exit 130 at SIGINT with the command that resumes", function()
    local probe = spawn(rivya_command({ "generate", "a long wait", "--no-wait", "--json" }))
    wait_for(function() return helper.read_file(probe.code) ~= nil end, "the create")
    local id = assert(helper.read_file(probe.out):match('"id":"(task_[%w_]+)"'), helper.read_file(probe.out))
    local c = spawn(rivya_command({ "wait", id, "--interval", "20" }))
    local code = signal(c, "INT", function()
      for _, r in ipairs(sim:control("GET", "requests").data) do
        if r.path == "/api/v1/generations/" .. id then return true end
      end
      return false
    end)
    assert.are.equal(130, code)
    local err = helper.read_file(c.err)
    assert.truthy(err:find("rivya: interrupted", 1, true), err)
    assert.truthy(err:find("rivya wait " .. id, 1, true), err)
  end)

  it("makes `rivya download` remove its temporary file at SIGTERM and exit 143", function()
    sim:config{ task_seconds = 0 }
    local probe = spawn(rivya_command({ "generate", "a quick one", "--no-wait", "--json" }))
    wait_for(function() return helper.read_file(probe.code) ~= nil end, "the create")
    local id = assert(helper.read_file(probe.out):match('"id":"(task_[%w_]+)"'))
    -- the CDN sends half the video, then nothing for 30 s
    sim:fault{ listener = "cdn", path = "/videos/", action = "stall", delay_ms = 30000 }
    local out = dir .. "/downloads"
    assert(compat.execute("mkdir -p " .. sh(out)))
    local c = spawn(rivya_command({ "download", id, "video.mp4" }), out)
    local code = signal(c, "TERM", function()
      for _, name in ipairs(helper.ls(out)) do
        if name:find("^%.video%.mp4%.rivya%-") then return true end
      end
      return false
    end)
    sim:config{ task_seconds = 600 }
    assert.are.equal(143, code, helper.read_file(c.err))
    assert.are.same({}, helper.ls(out))
    assert.truthy(helper.read_file(c.err):find("rivya: terminated", 1, true), helper.read_file(c.err))
  end)
end)
