-- The README's promises about the command line, checked by running them:
-- every command of its "The `rivya` command" section, in order, in one
-- shell, against the rivya-sim the section itself starts (issue 14, item 16).
local helper = require "helper"
local compat = require "rivya.compat"

local sh = helper.sh_quote

-- the lines of the ```sh blocks of the section `title` of README.md
local function section_commands(title)
  local text = assert(helper.read_file(helper.ROOT .. "/README.md"))
  local start = assert(text:find("\n## " .. title .. "\n", 1, true), "no section " .. title)
  local stop = text:find("\n## ", start + 1, true) or #text
  local section = text:sub(start, stop)
  local lines = {}
  for block in section:gmatch("\n```sh\n(.-)\n```") do
    for line in (block .. "\n"):gmatch("([^\n]*)\n") do
      if line:match("%S") then lines[#lines + 1] = line end
    end
  end
  return lines
end

describe("the README's CLI section", function()
  local dir

  setup(function() dir = helper.tmpdir() end)
  teardown(function() helper.rmrf(dir) end)

  it("runs, every command in order, with the exit status each one promises", function()
    local lines = section_commands("The `rivya` command")
    assert.is_true(#lines >= 15, #lines .. " commands")
    -- a copy of the checkout's layout (links) to run in, so nothing lands in the checkout
    local work = dir .. "/checkout"
    assert(compat.execute("mkdir -p " .. sh(work)))
    -- `build` is the build under test (build-asan/ under make test-asan), so the
    -- README's `make` finds it up to date and its commands run what the suite tests
    local layout = { "Makefile", "src", "sim", "lua", "bin", "examples", "spec", "rivya-scm-1.rockspec" }
    for _, name in ipairs(layout) do
      assert(compat.execute(("ln -s %s %s"):format(sh(helper.ROOT .. "/" .. name), sh(work .. "/" .. name))))
    end
    -- (the README's `rivya` is lua5.4's: under another interpreter, the 5.4 build)
    local build = helper.LUA == "lua5.4" and os.getenv("RIVYA_BUILD") or (helper.ROOT .. "/build")
    assert(compat.execute(("ln -s %s %s"):format(sh(build), sh(work .. "/build"))))
    local script = { "cd " .. sh(work), "export RIVYA_LEDGER=" .. sh(dir .. "/ledger.db"),
      "export XDG_STATE_HOME=" .. sh(dir .. "/state"),
      "unset RIVYA_API_KEY RIVYA_BASE_URL MAKEFLAGS MAKELEVEL BUILD CC CFLAGS SANITIZE LDFLAGS" }
    for i, line in ipairs(lines) do
      script[#script + 1] = line
      script[#script + 1] = ("echo \"%d $?\" >>%s"):format(i, sh(dir .. "/status"))
    end
    script[#script + 1] = "kill \"$(sed -E 's/.*\"pid\":([0-9]+).*/\\1/;q' sim.json)\""
    helper.write_file(dir .. "/run.sh", table.concat(script, "\n") .. "\n")
    local _, how, code = compat.execute(("timeout 900 bash %s >%s 2>%s </dev/null"):format(sh(dir .. "/run.sh"),
      sh(dir .. "/out"), sh(dir .. "/err")))
    local log = (helper.read_file(dir .. "/out") or "") .. (helper.read_file(dir .. "/err") or "")
    assert.are.same({ "exit", 0 }, { how, code }, log)
    local status = {}
    for i, st in (helper.read_file(dir .. "/status") or ""):gmatch("(%d+) (%d+)\n") do
      status[tonumber(i)] = tonumber(st)
    end
    for i, line in ipairs(lines) do
      local promised = tonumber(line:match("# .-exit (%d)")) or 0
      assert.are.equal(promised, status[i], ("README command %d: %s\n%s"):format(i, line, log))
    end
    -- what the commands say they make
    for _, f in ipairs({ "boat.mp4", "i2v.mp4", "renders/line-01.mp4", "renders/tram.mp4",
        "boat-sweep/index.html" }) do
      assert.truthy(io.open(work .. "/" .. f), f .. " missing\n" .. log)
    end
    local videos = 0
    for _, name in ipairs(helper.ls(work .. "/boat-sweep")) do
      if name:match("%.mp4$") then videos = videos + 1 end
    end
    assert.are.equal(8, videos)
  end)
end)
