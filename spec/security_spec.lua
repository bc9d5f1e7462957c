-- The key stays secret and bad input loses nothing: the key never shows in
-- an error, tostring(client), the client's fields, the simulator's logs or a
-- request to any host but the API; failures leave no partial file and no
-- open descriptor. (`make spec` also scans busted's whole output and every
-- simulator log for the keys: see the Makefile.)
local helper = require "helper"
local rivya = require "rivya"
local compat = require "rivya.compat"

local KEY = helper.KEY
local SAMPLE = helper.ROOT .. "/sim/sample.mp4"

local function request(prompt)
  return { model = "wan-2-7-video", prompt = prompt or "a heron in the fog", params = {} }
end

-- the first run of 6 characters of `secret` found in `s`, or nil: a
-- 4-character suffix may show, a longer piece of the key may not
local function key_piece(s, secret)
  secret = secret or KEY
  for i = 1, #secret - 5 do
    local piece = secret:sub(i, i + 5)
    if s:find(piece, 1, true) then return i end
  end
  return nil
end

-- every string reachable from `v` (keys and values of tables, cycles skipped)
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      strings(k, out, seen)
      strings(x, out, seen)
    end
  end
  return out
end

-- asserts that no string of `v` holds a piece of the key; `what` names it
local function assert_secret(v, what, secret)
  for _, s in ipairs(strings(v)) do
    assert.is_nil(key_piece(s, secret), what .. " shows a piece of the API key")
  end
end

describe("the API key", function()
  local sim, dir

  -- short timeouts and one retry: the attacks below need no patience
  local QUICK = { timeout = 1, stall_timeout = 1, connect_timeout = 1, retry_after_cap = 0.05, max_retries = 1 }

  local function requests()
    return sim:control("GET", "requests").data
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
  end)

  it("never shows in an error, whatever the failure", function()
    local client = helper.client(sim, QUICK)
    local task = assert(client:generate(request()))
    local failures = {
      refused = function()
        local c = helper.client(sim, QUICK, { base_url = "http://127.0.0.1:1" })
        local v, err = c:credits()
        c:close()
        return v, err
      end,
      missing_key = function()
        local c = helper.client(sim, QUICK, { api_key = "" })
        local v, err = c:credits()
        c:close()
        return v, err
      end,
      server_error = function()
        sim:fault{ path = "/api/v1/credits", action = "respond", status = 500, times = 4 }
        return client:credits()
      end,
      rate_limited = function()
        sim:fault{ path = "/api/v1/credits", action = "respond", status = 429, times = 4,
          headers = { ["Retry-After"] = "1" } }
        return client:credits()
      end,
      timeout = function()
        sim:fault{ path = "/api/v1/credits", action = "delay", delay_ms = 1300, times = 4 }
        local c = helper.client(sim, QUICK, { max_retries = 0 })
        local v, err = c:credits()
        c:close()
        return v, err
      end,
      invalid_json = function()
        sim:fault{ path = "/api/v1/credits", action = "invalid_json", times = 4 }
        return client:credits()
      end,
      oversized = function()
        sim:fault{ path = "/api/v1/credits", action = "oversized", size = 8000000, times = 4 }
        return client:credits()
      end,
      redirect = function()
        sim:fault{ path = "/api/v1/credits", action = "redirect", status = 302, location = sim.cdn_url .. "/x" }
        return client:credits()
      end,
      not_found = function() return client:get("task_missing") end,
      invalid_request = function() return client:create(request(("x"):rep(6000))) end,
      idempotency_conflict = function()
        local req = request("first")
        req.idempotency_key = "same-key-twice"
        assert(client:create(req))
        req.prompt = "second"
        return client:create(req)
      end,
      generation_failed = function() return client:generate(request("doomed [[fail]]")) end,
      missing_upload = function() return client:upload(dir .. "/nothing-here.mp4") end,
      download_truncated = function()
        sim:fault{ listener = "cdn", path = "/videos/", action = "truncate", times = 4 }
        return client:download(task, dir .. "/cut.mp4")
      end,
      download_missing_dir = function() return client:download(task, dir .. "/no/such/dir/video.mp4") end,
    }
    local names = {}
    for name in pairs(failures) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local v, err = failures[name]()
      sim:control("DELETE", "faults")
      assert.is_nil(v, name .. " succeeded")
      assert.is_true(rivya.is_error(err), name .. " gave no rivya error")
      assert.is_nil(key_piece(tostring(err)), name .. ": tostring(err) shows a piece of the key")
      assert_secret(err, name .. ": a field of the error")
    end
    client:close()
  end)

  it("never shows in an error of a client with a wrong key, not even that key", function()
    local wrong = "rvya_sk_wrong_4f8a2c9e1b7d"
    local c = helper.client(sim, QUICK, { api_key = wrong })
    local v, err = c:credits()
    assert.is_nil(v)
    assert.are.equal("api_key_invalid", err.code)
    assert.is_nil(key_piece(tostring(err), wrong))
    assert_secret(err, "the error", wrong)
    c:close()
  end)

  it("shows at most its last four characters in tostring(client), open or closed", function()
    local client = helper.client(sim, QUICK)
    local s = tostring(client)
    assert.is_nil(key_piece(s))
    assert.truthy(s:find(KEY:sub(-4), 1, true))
    assert.is_nil(key_piece(tostring(client.session)))
    client:close()
    assert.is_nil(key_piece(tostring(client)))
  end)

  it("is in no string field of the client, before or after use", function()
    local client = helper.client(sim, QUICK)
    assert_secret(client, "the client")
    assert(client:credits())
    assert(client:create(request()))
    assert_secret(client, "the client after use")
    client:close()
    assert_secret(client, "the closed client")
  end)

  it("never reaches the simulator's stderr log or its request log", function()
    local client = helper.client(sim, QUICK)
    local task = assert(client:generate(request()))
    assert(client:upload(SAMPLE))
    assert(client:download(task, dir .. "/seen.mp4"))
    os.remove(dir .. "/seen.mp4")
    sim:fault{ path = "/api/v1/credits", action = "drop" }
    assert(client:credits())
    client:close()
    local _, _, _, raw = sim:api("GET", "/__sim/requests", nil, { key = false })
    assert.truthy(raw:find('"authorization":"present"', 1, true))
    assert.is_nil(key_piece(raw), "the request log shows a piece of the key")
    assert.is_nil(key_piece(sim:log_text()), "the simulator's stderr shows a piece of the key")
  end)

  it("is never sent to the CDN, not even when the CDN redirects to another host", function()
    local client = helper.client(sim, QUICK)
    local task = assert(client:generate(request()))
    local video = task.result.primary_url:match("^https?://[^/]+(/.*)$")
    sim:fault{ listener = "cdn", path = "/videos/", action = "redirect", status = 302,
      location = "http://localhost:" .. sim.cdn_port .. video }
    assert(client:download(task, dir .. "/moved.mp4"))
    os.remove(dir .. "/moved.mp4")
    local cdn = 0
    for _, r in ipairs(requests()) do
      if r.listener == "cdn" then
        cdn = cdn + 1
        assert.are.equal("absent", r.authorization)
      end
    end
    assert.are.equal(2, cdn)
    assert.are.equal(0, sim:ledger().cdn_auth_violations)
    client:close()
  end)

  it("is not sent when a download URL points at the API's own origin", function()
    local client = helper.client(sim, QUICK)
    local path, err = client:download(sim.url .. "/api/v1/credits", dir .. "/credits.json")
    assert.is_nil(path)
    assert.are.equal("api_key_missing", err.code)
    local r = requests()
    assert.are.equal(1, #r)
    assert.are.equal("absent", r[1].authorization)
    assert.are.same({}, helper.ls(dir))
    client:close()
  end)

  it("is refused by the C core for a URL outside the API origin", function()
    local client = helper.client(sim, QUICK)
    assert.has_error(function() client.session:start{ url = sim.cdn_url .. "/videos/x.mp4", auth = true } end)
    assert.has_error(function() client.session:start{ url = sim.url .. ".evil.example/api", auth = true } end)
    assert.are.equal(0, #requests())
    client:close()
  end)
end)

describe("bad input", function()
  local sim, dir, task

  local QUICK = { timeout = 1, stall_timeout = 1, connect_timeout = 1, max_retries = 1 }

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05" } }
    dir = helper.tmpdir()
    local c = helper.client(sim, QUICK)
    task = assert(c:generate(request()))
    c:close()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:control("DELETE", "faults")
    for _, name in ipairs(helper.ls(dir)) do compat.execute("rm -rf " .. helper.sh_quote(dir .. "/" .. name)) end
  end)

  it("leaves no descriptor open after failing and succeeding calls and close", function()
    collectgarbage()
    collectgarbage()
    local before = helper.fd_count()
    local client = helper.client(sim, QUICK)
    assert(client:credits())
    assert(client:create(request()))
    assert(client:upload(SAMPLE))
    assert(client:download(task, dir .. "/ok.mp4"))
    -- each fault outlasts the retries (libcurl itself may resend once on a
    -- kept-alive connection that died), then goes
    local function failing(fault, call)
      fault.times = 4
      sim:fault(fault)
      local v, err = call()
      sim:control("DELETE", "faults")
      assert.is_nil(v, fault.action)
      assert.is_true(rivya.is_error(err))
    end
    local function credits() return client:credits() end
    failing({ path = "/api/v1/credits", action = "respond", status = 500 }, credits)
    failing({ path = "/api/v1/credits", action = "drop" }, credits)
    failing({ path = "/api/v1/credits", action = "stall", delay_ms = 1300 }, credits)
    failing({ path = "/api/v1/credits", action = "oversized", size = 8000000 }, credits)
    failing({ listener = "cdn", path = "/videos/", action = "stall", delay_ms = 1300 },
      function() return client:download(task, dir .. "/stalled.mp4") end)
    failing({ listener = "cdn", path = "/videos/", action = "truncate" },
      function() return client:download(task, dir .. "/cut.mp4") end)
    assert.is_nil(client:download(task, dir .. "/missing/x.mp4"))
    assert.is_nil(client:upload(dir .. "/nothing.mp4"))
    local refused = helper.client(sim, QUICK, { base_url = "http://127.0.0.1:1" })
    assert.is_nil(refused:credits())
    refused:close()
    client:close()
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, helper.fd_count_settled(before))
  end)

  it("leaves no file and no temporary when a download is cut, stalls, is not a video or is missing", function()
    local client = helper.client(sim, QUICK)
    local faults = {
      { listener = "cdn", path = "/videos/", action = "truncate", times = 4 },
      { listener = "cdn", path = "/videos/", action = "stall", delay_ms = 1300, times = 4 },
      { listener = "cdn", path = "/videos/", action = "invalid_json", times = 4 },
      { listener = "cdn", path = "/videos/", action = "oversized", times = 4 },
      { listener = "cdn", path = "/videos/", action = "respond", status = 404, times = 4 },
    }
    for _, f in ipairs(faults) do
      sim:control("DELETE", "faults")
      sim:fault(f)
      local path, err = client:download(task, dir .. "/video.mp4")
      assert.is_nil(path, f.action)
      assert.is_true(rivya.is_error(err))
      assert.are.same({}, helper.ls(dir), f.action)
    end
    client:close()
  end)

  it("leaves a file already at the destination as it was when a download fails", function()
    local client = helper.client(sim, QUICK)
    local path = dir .. "/keep.mp4"
    helper.write_file(path, "the user's own bytes")
    sim:fault{ listener = "cdn", path = "/videos/", action = "truncate", times = 4 }
    assert.is_nil(client:download(task, path))
    assert.are.equal("the user's own bytes", helper.read_file(path))
    assert.are.same({ "keep.mp4" }, helper.ls(dir))
    client:close()
  end)

  it("answers a download into a missing directory with an io error, creating nothing", function()
    local client = helper.client(sim, QUICK)
    local path, err = client:download(task, dir .. "/missing/deeper/video.mp4")
    assert.is_nil(path)
    assert.are.equal("io", err.code)
    assert.truthy(err.message:find("missing/deeper", 1, true))
    assert.are.same({}, helper.ls(dir))
    assert(client:credits())
    client:close()
  end)

  it("answers a download onto a directory with an io error, leaving the directory as it was", function()
    local client = helper.client(sim, QUICK)
    compat.execute("mkdir " .. helper.sh_quote(dir .. "/taken"))
    local path, err = client:download(task, dir .. "/taken")
    assert.is_nil(path)
    assert.are.equal("io", err.code)
    assert.are.same({ "taken" }, helper.ls(dir))
    assert.are.same({}, helper.ls(dir .. "/taken"))
    client:close()
  end)

  it("refuses to upload a missing file, a directory or a file that is no media, sending nothing", function()
    local client = helper.client(sim, QUICK)
    local files, sent = sim:ledger().files, #sim:control("GET", "requests").data
    helper.write_file(dir .. "/notes.mp4", "just some text, not a video")
    for _, source in ipairs{ dir .. "/absent.mp4", dir, dir .. "/notes.mp4" } do
      local file, err = client:upload(source)
      assert.is_nil(file)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal("file", err.field)
    end
    assert.are.equal(files, sim:ledger().files)
    assert.are.equal(sent, #sim:control("GET", "requests").data)
    client:close()
  end)

  it("raises on misuse instead of sending anything", function()
    local client = helper.client(sim, QUICK)
    assert.has_error(function() client:download(nil, dir .. "/x.mp4") end)
    assert.has_error(function() client:download(task, 42) end)
    assert.has_error(function() client:upload(42) end)
    assert.has_error(function() client:download(task, dir .. "/x.mp4", { speed = 2 }) end)
    assert.are.same({}, helper.ls(dir))
    client:close()
  end)
end)
