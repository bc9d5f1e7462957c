-- The `rivya` command on the live catalog (a real subprocess against this
-- file's rivya-sim): `rivya models` with its disk cache, `--model` for any
-- model with that model's own flags, outputs named after the media
-- downloaded, and `rivya webhooks`.
local helper = require "helper"
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local sh = helper.sh_quote
local RIVYA = helper.ROOT .. "/bin/rivya"

describe("the rivya command on the live catalog", function()
  local sim, tmp, serial = nil, nil, 0

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "100000", "--allow-loopback-webhooks" } }
    tmp = helper.tmpdir()
  end)

  teardown(function()
    sim:stop()
    helper.rmrf(tmp)
  end)

  before_each(function() sim:reset() end)

  local function scratch()
    serial = serial + 1
    local d = ("%s/run-%d"):format(tmp, serial)
    assert(compat.execute("mkdir -p " .. sh(d)))
    return d
  end

  -- run rivya in `o.cwd` (default a fresh dir) with XDG_STATE_HOME under tmp
  local function run(args, o)
    o = o or {}
    local d = o.cwd or scratch()
    local env = { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY, RIVYA_POLL_INTERVAL = "0.05",
      TERM = "dumb", XDG_STATE_HOME = o.state or (tmp .. "/state"), RIVYA_LEDGER = "off" }
    for k, v in pairs(o.env or {}) do env[k] = v end
    local set = {}
    for k, v in pairs(env) do set[#set + 1] = sh(k .. "=" .. v) end
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh(a) end
    local _, how, code = compat.execute(("cd %s && env %s %s %s %s </dev/null >%s/.out 2>%s/.err"):format(sh(d),
      table.concat(set, " "), helper.LUA, sh(RIVYA), table.concat(quoted, " "), sh(d), sh(d)))
    local r = { code = how == "exit" and code or -1, out = helper.read_file(d .. "/.out") or "",
      err = helper.read_file(d .. "/.err") or "", json = {}, dir = d }
    for line in r.out:gmatch("[^\n]+") do
      if line:sub(1, 1) == "{" then r.json[#r.json + 1] = assert(cjson.decode(line), line) end
    end
    return r
  end

  local function ok(r)
    assert.are.equal(0, r.code, "stderr: " .. r.err .. "\nstdout: " .. r.out)
    return r
  end

  local function catalog_fetches()
    local n = 0
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if r.method == "GET" and r.path == "/api/v1/models" then n = n + 1 end
    end
    return n
  end

  local function magic(path, n)
    local data = helper.read_file(path)
    return data and data:sub(1, n or 4)
  end

  it("models lists id, category, modes, credits and status, cached on disk with a TTL and --refresh", function()
    local state = scratch() .. "/state"
    local r = ok(run({ "models" }, { state = state }))
    assert.truthy(r.out:find("wan-2-7-video\tvideo\ttext-to-video,image-to-video,video-editing\t80\tavailable\n",
      1, true), r.out)
    assert.truthy(r.out:find("veo-4-video\tvideo\ttext-to-video\t200\tcoming_soon\n", 1, true), r.out)
    assert.truthy(r.out:find("rivya-tts\taudio\ttext-to-speech\t2 PER_1K_CHARACTERS\tavailable\n", 1, true), r.out)
    assert.truthy(r.out:find("rivya-chat\tchat\t", 1, true))
    assert.truthy(helper.read_file(state .. "/rivya/catalog.json"))
    assert.equal(1, catalog_fetches())
    r = ok(run({ "models", "--json" }, { state = state }))
    assert.equal(1, catalog_fetches())                 -- from the cache
    local z
    for _, m in ipairs(r.json) do if m.id == "z-image" then z = m end end
    assert.equal("image", z.category)
    assert.equal("steps", z.params[2].key)
    ok(run({ "models", "--refresh" }, { state = state }))
    assert.equal(2, catalog_fetches())
    ok(run({ "models" }, { state = state, env = { RIVYA_CATALOG_TTL = "0" } }))
    assert.equal(3, catalog_fetches())                 -- older than the TTL
    ok(run({ "models" }, { state = state, env = { RIVYA_BASE_URL = sim.url .. "/" } }))
    assert.equal(4, catalog_fetches())                 -- another origin, its own catalog
  end)

  it("generate --model ID --help lists that model's own flags", function()
    local r = ok(run({ "generate", "--model", "z-image", "--help" }))
    for _, flag in ipairs({ "--steps", "--guidance", "--size", "--negative-prompt", "--seed" }) do
      assert.truthy(r.out:find(flag, 1, true), flag .. " missing:\n" .. r.out)
    end
    assert.truthy(r.out:find("1024x1536", 1, true))
    assert.is_nil(r.out:find("--duration", 1, true))
    r = ok(run({ "generate", "--model=rivya-tts", "--help" }))
    assert.truthy(r.out:find("--voice", 1, true))
    assert.truthy(r.out:find("--no-normalize", 1, true))
    r = run({ "generate", "--model", "no-such-model", "--help" })
    assert.equal(3, r.code)
    assert.truthy(r.err:find("no-such-model", 1, true))
  end)

  it("generate --model z-image saves a .png named after what was downloaded", function()
    local r = ok(run({ "generate", "a red fox in snow", "--model", "z-image", "--steps", "12", "--size", "768x768",
      "--guidance", "4.5", "--json" }, { state = scratch() .. "/state" }))
    assert.equal(1, catalog_fetches())       -- one catalog for the command and its client
    local task = r.json[#r.json]
    assert.equal("succeeded", task.status)
    assert.matches("^task_%w+%.png$", task.output)
    assert.equal("\137PNG", magic(r.dir .. "/" .. task.output))
    local sent
    for _, t in ipairs(sim:ledger().tasks) do sent = t end
    assert.equal(12, sent.params.steps)
    assert.equal("768x768", sent.params.size)
  end)

  it("generate --model rivya-tts saves .mp3 or .wav after the bytes", function()
    local r = ok(run({ "generate", "Hello there", "--model", "rivya-tts", "--voice", "ember", "--json" }))
    assert.matches("%.mp3$", r.json[#r.json].output)
    r = ok(run({ "generate", "Hello there", "--model", "rivya-tts", "--voice", "ember", "--format", "wav", "--json" }))
    local out = r.json[#r.json].output
    assert.matches("%.wav$", out)
    assert.equal("RIFF", magic(r.dir .. "/" .. out))
  end)

  it("validate and estimate take --model, offline for wan-2-7-video and from the catalog for others", function()
    local r = ok(run({ "validate", "Hi", "--model", "rivya-tts", "--voice", "ember", "--no-normalize", "--json" }))
    assert.same({ voice = "ember", normalize = false }, r.json[1].body.params)
    r = run({ "validate", "Hi", "--model", "rivya-tts" })
    assert.equal(3, r.code)
    assert.truthy(r.err:find("params.voice", 1, true), r.err)
    r = run({ "validate", "a wave", "--model", "veo-4-video" })
    assert.equal(3, r.code)
    assert.truthy(r.err:find("coming_soon", 1, true), r.err)
    r = ok(run({ "estimate", "a fox", "--model", "z-image", "--count", "3" }))
    assert.equal("12 credits (3 runs)\n", r.out)
    local before = catalog_fetches()
    ok(run({ "validate", "A boat", "--duration", "10" }, { env = { RIVYA_BASE_URL = "http://127.0.0.1:9" } }))
    assert.equal(before, catalog_fetches())
  end)

  it("batch lines and sweep take a model, outputs named after it", function()
    local d = scratch()
    helper.write_file(d .. "/jobs.jsonl", table.concat({
      cjson.encode{ model = "z-image", prompt = "a fox", params = { steps = 4 } },
      cjson.encode{ prompt = "a boat" },
    }, "\n") .. "\n")
    ok(run({ "batch", "jobs.jsonl", "--out-dir", "out", "--json" }, { cwd = d }))
    assert.equal("\137PNG", magic(d .. "/out/line-01.png"))
    assert.equal("ftyp", magic(d .. "/out/line-02.mp4", 8):sub(5, 8))
    local s = scratch()
    ok(run({ "sweep", "a fox", "--model", "z-image", "--steps", "4,8", "--out-dir", "sw" }, { cwd = s }))
    local pngs = 0
    for _, name in ipairs(helper.ls(s .. "/sw")) do
      if name:match("%.png$") then
        pngs = pngs + 1
        assert.equal("\137PNG", magic(s .. "/sw/" .. name))
      end
    end
    assert.equal(2, pngs)
  end)

  it("webhooks create shows the secret once; list, test, deliveries, rotate and delete", function()
    local r = ok(run({ "webhooks", "create", "renders", "https://hooks.example.com/rivya" }))
    local id = r.out:match("^(whend_%w+)\t")
    assert.is_string(id, r.out)
    local secret = r.out:match("signing secret %(shown once; store it like the API key%): (whsec_%w+)")
    assert.is_string(secret, r.out)
    assert.is_nil(r.err:find(secret, 1, true))
    r = ok(run({ "webhooks", "list" }))
    assert.truthy(r.out:find(id .. "\tactive\thttps://hooks.example.com/rivya\t", 1, true), r.out)
    assert.is_nil(r.out:find(secret, 1, true))
    r = ok(run({ "webhooks", "list", "--json" }))
    assert.equal(id, r.json[1].id)
    assert.is_nil(r.json[1].signing_secret)
    local rotated = ok(run({ "webhooks", "rotate", id, "--json" })).json[1]
    assert.matches("^whsec_", rotated.signing_secret)
    assert.not_equal(secret, rotated.signing_secret)
    ok(run({ "webhooks", "deliveries", id }))
    ok(run({ "webhooks", "delete", id }))
    assert.equal("", ok(run({ "webhooks", "list" })).out)
    r = run({ "webhooks", "create", "local", "https://127.0.0.1/hook" })
    assert.equal(3, r.code)
    assert.truthy(r.err:find("webhook_url_rejected", 1, true), r.err)
    r = run({ "webhooks", "delete" })
    assert.equal(2, r.code)
  end)

  it("webhooks test sends a test event recorded as a delivery", function()
    local socket = require "socket"
    local server = assert(socket.bind("127.0.0.1", 0))
    local port = select(2, server:getsockname())
    server:settimeout(20)
    local r = ok(run({ "webhooks", "create", "local", "http://127.0.0.1:" .. port .. "/hook", "--allow-loopback" }))
    local id = r.out:match("^(whend_%w+)\t")
    ok(run({ "webhooks", "test", id }))
    local c = assert(server:accept())
    c:settimeout(10)
    repeat local line = assert(c:receive("*l")) until line == ""
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c:close()
    server:close()
    local seen
    for _ = 1, 200 do
      r = ok(run({ "webhooks", "deliveries", id }))
      if r.out:find("\twebhook.test\tsucceeded\t200\t", 1, true) then seen = true break end
      helper.sleep(0.05)
    end
    assert.is_true(seen, r.out)
  end)
end)
