-- The fault suite: every endpoint (create, get, credits, upload, download)
-- against every fault rivya-sim can inject, once (a transient fault the
-- retry policy outlives) and repeatedly (a persistent one it reports).
-- Each case asserts the outcome class (success, or one typed error code),
-- the side effects in the simulator's ledger (exactly one task, charge or
-- stored file for a success; never two), that the client still works
-- afterwards, and for downloads that no partial file or temporary litter is
-- left. Set RIVYA_FAULTS_REPORT=path to get the table of cases × outcomes.
local helper = require "helper"
local rivya = require "rivya"
local compat = require "rivya.compat"

local SAMPLE = helper.ROOT .. "/sim/sample.mp4"
local TIMEOUT = 1            -- the client's request timeout and stall detector, seconds
-- helper.client's options here: every transfer gives up after TIMEOUT, and
-- Retry-After waits are short
local FAULT_OPTIONS = { timeout = TIMEOUT, stall_timeout = TIMEOUT, connect_timeout = TIMEOUT,
  retry_after_cap = 0.05 }
local SLOW_MS = 1600         -- the simulator's delays and stalls, past TIMEOUT
local PERSISTENT_TIMES = 2   -- a persistent fault outlasts max_retries = 1

local RATE_LIMITED = '{"error":{"code":"rate_limited","message":"slow down","requestId":"req_rl"}}'
local DISABLED = '{"error":{"code":"public_api_disabled","message":"paused","requestId":"req_pd"}}'
local BAD_REQUEST = '{"error":{"code":"validation_failed","message":"nope","requestId":"req_bad"}}'

local function request(prompt)
  return { model = "wan-2-7-video", prompt = prompt or "a kite over a windy beach", params = {} }
end

local function http_date(offset)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + offset)
end

local function sha256_of(path)
  local p = io.popen("sha256sum " .. helper.sh_quote(path))
  local line = p:read("*l")
  p:close()
  return line and line:match("^(%x+)")
end

-- Endpoints: where the fault is injected, how the call is made, what a
-- success looks like and which ledger counters one success moves.
-- ctx: sim, client (the one under test), setup_client, dir, and what
-- prepare() left (task, path).
local ENDPOINTS = {
  {
    name = "create", listener = "api", method = "POST", path = "/api/v1/generations",
    effect = { tasks_created = 1, charges = 1, files = 0 },
    call = function(ctx) return ctx.client:create(request()) end,
    check = function(ctx, task)
      assert.matches("^task_", task.id)
      local ledger = ctx.sim:ledger()
      assert.are.equal(task.id, ledger.tasks[1].id)
      assert.are.equal(task.idempotency_key, ledger.tasks[1].idempotency_key)
    end,
  },
  {
    name = "get", listener = "api", method = "GET", path = "/api/v1/generations/",
    effect = { tasks_created = 0, charges = 0, files = 0 },
    prepare = function(ctx) ctx.task = assert(ctx.setup_client:create(request())) end,
    call = function(ctx) return ctx.client:get(ctx.task.id) end,
    check = function(ctx, task) assert.are.equal(ctx.task.id, task.id) end,
  },
  {
    name = "credits", listener = "api", method = "GET", path = "/api/v1/credits",
    effect = { tasks_created = 0, charges = 0, files = 0 },
    call = function(ctx) return ctx.client:credits() end,
    check = function(ctx, credits) assert.are.equal(ctx.sim:ledger().credits, credits) end,
  },
  {
    name = "upload", listener = "api", method = "POST", path = "/api/v1/files",
    effect = { tasks_created = 0, charges = 0, files = 1 },
    call = function(ctx) return ctx.client:upload(SAMPLE, { kind = "video" }) end,
    check = function(ctx, file)
      assert.matches("^file_", file.id)
      local sample = helper.read_file(SAMPLE)
      assert.are.equal(#sample, file.size_bytes)
      -- the stored bytes are the whole file: a retry re-streamed it from the start
      local stored = ctx.sim:ledger().files_list[1]
      assert.are.equal(#sample, stored.size_bytes)
      assert.are.equal(ctx.sample_sha256, stored.sha256)
    end,
  },
  {
    name = "download", listener = "cdn", method = "GET", path = "/videos/",
    effect = { tasks_created = 0, charges = 0, files = 0 },
    prepare = function(ctx)
      ctx.task = assert(ctx.setup_client:generate(request()))
      ctx.path = ctx.dir .. "/result.mp4"
    end,
    call = function(ctx) return ctx.client:download(ctx.task, ctx.path) end,
    check = function(ctx, path)
      assert.are.equal(ctx.path, path)
      assert.are.equal(ctx.sample_sha256, sha256_of(path))
      assert.are.same({ "result.mp4" }, helper.ls(ctx.dir))
    end,
  },
}

-- Faults. `fault(ctx, ep)` is the simulator's fault object (listener,
-- method, path and times are added). `outcome` is "success" or the error
-- code, for a fault seen once (transient) and every time (persistent);
-- `retried` false: the client must not try again; `commits`: the server
-- processes the request before the fault hits the answer.
local FAULTS = {
  {
    name = "a 429 with Retry-After in seconds",
    fault = function() return { action = "respond", status = 429, body = RATE_LIMITED,
      headers = { ["Retry-After"] = "1" } } end,
    transient = "success", persistent = "rate_limited",
    check_error = function(err)
      assert.are.equal(429, err.status)
      assert.are.equal(1, err.retry_after)
    end,
  },
  {
    name = "a 429 with Retry-After as an HTTP date",
    fault = function() return { action = "respond", status = 429, body = RATE_LIMITED,
      headers = { ["Retry-After"] = http_date(2) } } end,
    transient = "success", persistent = "rate_limited",
    check_error = function(err)
      assert.are.equal(429, err.status)
      assert.is_number(err.retry_after)
      assert.is_true(err.retry_after >= 0 and err.retry_after <= 3)
    end,
  },
  {
    name = "a 429 without Retry-After",
    fault = function() return { action = "respond", status = 429 } end,
    transient = "success", persistent = "rate_limited",
    check_error = function(err)
      assert.are.equal(429, err.status)
      assert.is_nil(err.retry_after)
    end,
  },
  {
    name = "a 500",
    fault = function() return { action = "respond", status = 500 } end,
    transient = "success", persistent = "internal_error",
  },
  {
    name = "a 503",
    fault = function() return { action = "respond", status = 503 } end,
    transient = "success", persistent = "service_unavailable",
  },
  {
    name = "a 503 public_api_disabled",
    fault = function() return { action = "respond", status = 503, body = DISABLED } end,
    transient = "success", persistent = "public_api_disabled",
  },
  {
    name = "an HTML 502",
    fault = function() return { action = "respond", status = 502, content_type = "text/html",
      body = "<html><body><h1>502 Bad Gateway</h1></body></html>" } end,
    transient = "success", persistent = "server_error",
    check_error = function(err) assert.are.equal(502, err.status) end,
  },
  {
    name = "a 400 that describes the request",
    fault = function() return { action = "respond", status = 400, body = BAD_REQUEST } end,
    transient = "validation_failed", persistent = "validation_failed", retried = false,
    check_error = function(err) assert.are.equal("req_bad", err.request_id) end,
  },
  {
    name = "a connection reset before the response",
    fault = function() return { action = "drop" } end,
    transient = "success", persistent = "network",
  },
  {
    name = "a connection reset after the server committed",
    fault = function() return { action = "drop_after_commit" } end,
    transient = "success", persistent = "network", commits = true,
  },
  {
    name = "a delay past the timeout",
    fault = function() return { action = "delay", delay_ms = SLOW_MS } end,
    transient = "success", persistent = "timeout", commits = true,
  },
  {
    name = "a stall in the middle of the body",
    fault = function() return { action = "stall", delay_ms = SLOW_MS } end,
    transient = "success", persistent = "timeout", commits = true,
  },
  {
    name = "a truncated body",
    fault = function() return { action = "truncate" } end,
    transient = "success", persistent = "network", commits = true,
  },
  {
    name = "invalid JSON",
    fault = function() return { action = "invalid_json" } end,
    transient = "success", persistent = "bad_response", commits = true,
  },
  {
    name = "a wrong content type",
    fault = function() return { action = "wrong_content_type" } end,
    transient = "success", persistent = "success", commits = true, retried = false,
  },
  {
    name = "an oversized body",
    fault = function() return { action = "oversized", size = 64 * 1000 * 1000 } end,
    transient = "success", persistent = "bad_response", commits = true,
  },
  {
    -- a partial answer is never the result, nor a download's file
    name = "a 206 Partial Content",
    fault = function() return { action = "respond", status = 206, content_type = "text/plain",
      headers = { ["Content-Range"] = "bytes 0-11/3732" }, body = "partial body" } end,
    transient = "success", persistent = "bad_response",
  },
  {
    name = "a 203 with an HTML body",
    fault = function() return { action = "respond", status = 203, content_type = "text/html",
      body = "<html><body>cached elsewhere</body></html>" } end,
    transient = "success", persistent = "bad_response",
  },
  {
    -- API answers may be compressed (libcurl decodes them, and this one
    -- does not decode); a download never asks, so it is taken as bytes,
    -- which are no media
    name = "a gzip Content-Encoding sent unasked",
    fault = function() return { action = "respond", status = 200, content_type = "application/json",
      headers = { ["Content-Encoding"] = "gzip" }, body = "this is not gzip at all" } end,
    transient = "success", persistent = "network",
    download = { persistent = "bad_response" },
  },
  {
    -- API requests never follow a redirect (the key stays with the API);
    -- downloads follow it to another host, without Authorization
    name = "a redirect to another host",
    fault = function(ctx, ep)
      if ep.listener == "cdn" then
        local video = ctx.task.result.primary_url:match("^https?://[^/]+(/.*)$")
        return { action = "redirect", status = 302,
          location = "http://localhost:" .. ctx.sim.cdn_port .. video }
      end
      return { action = "redirect", status = 307, location = ctx.sim.cdn_url .. ep.path }
    end,
    transient = "http_error", persistent = "http_error", retried = false,
    check_error = function(err)
      assert.are.equal(307, err.status)
      assert.truthy(err.message:find("redirect", 1, true))
    end,
    download = { transient = "success", persistent = "success", retried = true },
  },
}

-- the outcome of fault `f` on endpoint `ep`, with per-endpoint overrides
local function expected(f, ep, persistent)
  local over = f[ep.name] or {}
  local outcome = over[persistent and "persistent" or "transient"] or f[persistent and "persistent" or "transient"]
  local retried = over.retried
  if retried == nil then retried = f.retried ~= false end
  return outcome, retried
end

local function count(list, pred)
  local n = 0
  for _, v in ipairs(list) do if pred(v) then n = n + 1 end end
  return n
end

local report = {}

describe("the retry policy", function()
  local errors = require "rivya.errors"
  local sim

  setup(function() sim = helper.start_sim() end)
  teardown(function() assert.is_true(sim:stop()) end)
  before_each(function() sim:reset() end)

  -- the delays a client announces through on_retry while credits() fails
  -- with `fault` every time; returns the delays and the final error
  -- (opts.library_defaults: no spec defaults, the library's own pace)
  local function delays(opts, fault)
    local seen = {}
    opts.on_retry = function(r)
      assert.are.equal(#seen + 1, r.attempt)
      assert.is_true(errors.is(r.error))
      seen[#seen + 1] = r.delay
    end
    local c
    if opts.library_defaults then
      c = rivya.new{ api_key = helper.KEY, base_url = sim.url, max_retries = opts.max_retries,
        on_retry = opts.on_retry }
    else
      c = helper.client(sim, opts)
    end
    fault.path, fault.action, fault.times = "/api/v1/credits", "respond", 100
    sim:fault(fault)
    local credits, err = c:credits()
    c:close()
    assert.is_nil(credits)
    return seen, err
  end

  it("backs off from 0.5 s by default, doubling up to retry_cap, with jitter between 50 and 100 percent", function()
    local seen, err = delays({ max_retries = 1, library_defaults = true }, { status = 503 })
    assert.are.equal(1, #seen)
    assert.is_true(seen[1] >= 0.25 and seen[1] <= 0.5, "first retry waited " .. seen[1])
    assert.are.equal(2, err.attempts)
    -- the doubling and the cap, scaled down so the spec waits milliseconds
    seen = delays({ max_retries = 8, retry_base = 0.001, retry_cap = 0.016 }, { status = 500 })
    assert.are.equal(8, #seen)
    for n, d in ipairs(seen) do
      local full = math.min(0.016, 0.001 * 2 ^ (n - 1))
      assert.is_true(d >= full / 2 and d <= full, ("retry %d waited %g"):format(n, d))
    end
  end)

  it("waits what Retry-After asks, capped at retry_after_cap", function()
    local seen = delays({ max_retries = 1 }, { status = 429, headers = { ["Retry-After"] = "1" } })
    assert.are.same({ 1 }, seen)
    seen = delays({ max_retries = 2, retry_after_cap = 0.02 }, { status = 429, headers = { ["Retry-After"] = "3600" } })
    assert.are.same({ 0.02, 0.02 }, seen)
  end)

  it("reads Retry-After as delta seconds or as an HTTP date", function()
    assert.are.equal(120, errors.retry_after("120"))
    assert.are.equal(0, errors.retry_after("0"))
    local now = 1445412450   -- Wed, 21 Oct 2015 07:27:30 GMT
    assert.are.equal(30, errors.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now))
    assert.are.equal(0, errors.retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now))
    assert.is_nil(errors.retry_after("soon"))
    assert.is_nil(errors.retry_after(nil))
  end)
end)

describe("rivya client under injected faults", function()
  local sim, setup_client, dir, sample_sha256
  local double_charges, cases_run, cases_defined = 0, 0, 0


  local function requests()
    return sim:control("GET", "requests").data
  end

  -- Wait until every request the simulator has begun since the reset has
  -- also been answered (or dropped): delayed ones included, so none can
  -- land in a later case. Returns the ledger then.
  local function settle(mark)
    local finished, ledger
    for _ = 1, 400 do
      ledger = sim:ledger()
      finished = 0
      for line in sim:log_text():sub(mark + 1):gmatch("[^\n]+") do
        local path = line:match("^%a+ %S+ (%S+) %-> ")
        if path and not path:find("^/__sim") then finished = finished + 1 end
      end
      if finished >= ledger.requests then return ledger end
      helper.sleep(0.05)
    end
    error(("the simulator still works on %d of %d requests"):format(ledger.requests - finished, ledger.requests))
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05", "--credits", "100000" } }
    setup_client = helper.client(sim, FAULT_OPTIONS, { timeout = 10 })
    dir = helper.tmpdir()
    sample_sha256 = sha256_of(SAMPLE)
  end)

  teardown(function()
    setup_client:close()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
    local out = os.getenv("RIVYA_FAULTS_REPORT")
    if out and out ~= "" then
      local lines = { "| endpoint | fault | once | every time | double charges |", "|---|---|---|---|---|" }
      for _, r in ipairs(report) do
        lines[#lines + 1] = ("| %s | %s | %s | %s | %d |"):format(r.endpoint, r.fault,
          r.transient or "?", r.persistent or "?", r.double_charges or 0)
      end
      lines[#lines + 1] = ("\ndouble charges: %d in %d cases"):format(double_charges, cases_run)
      helper.write_file(out, table.concat(lines, "\n") .. "\n")
    end
  end)

  for _, ep in ipairs(ENDPOINTS) do
    for _, f in ipairs(FAULTS) do
      local row = { endpoint = ep.name, fault = f.name }
      report[#report + 1] = row
      for _, persistent in ipairs({ false, true }) do
        local outcome, retried = expected(f, ep, persistent)
        local how = persistent and "every time" or "once"
        local title = ("%s facing %s %s %s"):format(ep.name, f.name, how,
          outcome == "success" and "succeeds with exactly one side effect"
          or ("returns a " .. outcome .. " error"))
        cases_defined = cases_defined + 1
        it(title, function()
          sim:reset()
          local mark = #sim:log_text()
          for _, name in ipairs(helper.ls(dir)) do os.remove(dir .. "/" .. name) end
          local ctx = { sim = sim, setup_client = setup_client, dir = dir, sample_sha256 = sample_sha256 }
          if ep.prepare then ep.prepare(ctx) end
          local before = sim:ledger()
          -- the last case's client may still await its collection: count
          -- descriptors only once it is gone, or a late __gc reads as a gain
          collectgarbage()
          collectgarbage()
          local fds = helper.fd_count()
          ctx.client = helper.client(sim, FAULT_OPTIONS, { max_retries = persistent and PERSISTENT_TIMES - 1 or 3 })

          local fault = f.fault(ctx, ep)
          fault.listener, fault.method, fault.path = ep.listener, ep.method, ep.path
          fault.times = persistent and PERSISTENT_TIMES or 1
          sim:fault(fault)

          local value, err = ep.call(ctx)
          local got = value and "success" or (err and err.code) or "nothing"
          row[persistent and "persistent" or "transient"] = got
          local after = settle(mark)
          local log = requests()

          -- never two charges for one intent, counted before anything can fail
          local extra = after.charges - before.charges - ep.effect.charges
          if extra > 0 then
            double_charges = double_charges + extra
            row.double_charges = (row.double_charges or 0) + extra
          end

          -- the outcome class
          if outcome == "success" then
            assert(value, err and tostring(err))
            ep.check(ctx, value)
          else
            assert.is_nil(value)
            assert.is_true(rivya.is_error(err))
            assert.are.equal(outcome, err.code, tostring(err))
            assert.are.equal("string", type(tostring(err)))
            if f.check_error then f.check_error(err) end
          end

          -- attempts: every try of the endpoint is in the simulator's log
          -- (prepare() never calls the endpoint under test)
          local tries = count(log, function(r)
            return r.method == ep.method and r.path:sub(1, #ep.path) == ep.path
          end)
          if not retried then
            assert.are.equal(1, tries)
          elseif outcome ~= "success" then
            assert.are.equal(PERSISTENT_TIMES, tries)
            assert.are.equal(PERSISTENT_TIMES, err.attempts)
          elseif ep.name == "download" and f.name:find("redirect") then
            assert.is_true(tries >= 2)
          else
            assert.are.equal(2, tries)
          end

          -- the ledger: exactly one side effect for a success, never two
          local committed = outcome == "success" or f.commits
          for counter, n in pairs(ep.effect) do
            assert.are.equal(before[counter] + (committed and n or 0), after[counter], counter)
          end
          assert.are.equal(after.tasks_created, after.charges)
          assert.are.equal(80 * after.charges, after.credits_charged)
          assert.are.equal(0, after.cdn_auth_violations)

          -- downloads: the complete file or nothing at all, never a temporary
          if ep.name == "download" and outcome ~= "success" then
            assert.are.same({}, helper.ls(dir))
          end

          -- redirects: the key never followed one; downloads followed without it
          if f.name:find("redirect") then
            local cdn = count(log, function(r) return r.listener == "cdn" end)
            assert.are.equal(0, count(log, function(r) return r.listener == "cdn" and r.authorization ~= "absent" end))
            assert.are.equal(ep.listener == "cdn" and tries or 0, cdn)
          end

          -- the client still works afterwards
          sim:control("DELETE", "faults")
          local credits, cerr = ctx.client:credits()
          assert.are.equal(after.credits, credits, cerr and tostring(cerr))
          ctx.client:close()
          collectgarbage()
          collectgarbage()
          assert.are.equal(fds, helper.fd_count_settled(fds))
          cases_run = cases_run + 1
        end)
      end
    end
  end

  it("observed no double charge in any of the cases", function()
    assert.are.equal(cases_defined, cases_run)
    assert.are.equal(0, double_charges)
  end)
end)

-- Hostile keys, answers and servers (issue 12, items 7, 10, 11 and 12): each
-- case failed on 45917ff. Faults come from rivya-sim, or from a listening
-- socket this spec holds that completes TCP handshakes and never answers.
describe("hardening against hostile input", function()
  local socket = require "socket"
  local sim, dir

  local function tries(method, prefix)
    return count(sim:control("GET", "requests").data, function(r)
      return r.method == method and r.path:sub(1, #prefix) == prefix
    end)
  end

  -- a fault answering `method prefix` with 2xx JSON `body`, `times` times
  local function answer(method, prefix, status, body, times)
    sim:fault{ listener = "api", method = method, path = prefix, times = times or 1,
      action = "respond", status = status, body = body }
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.05", "--credits", "100000" } }
    dir = helper.tmpdir()
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function() sim:reset() end)

  after_each(function()
    local ledger = sim:ledger()
    -- never two charges for one intent, never a charge without its task
    assert.are.equal(ledger.tasks_created, ledger.charges)
    assert.are.equal(80 * ledger.charges, ledger.credits_charged)
  end)

  describe("an API key", function()
    for _, case in ipairs({
      { "a CR LF and a forged header", helper.KEY .. "\r\nX-Injected: yes", #helper.KEY + 1 },
      { "a lone line feed", "rvya_sk_a\nb", 10 },
      { "a NUL byte", "rvya_sk_a\0b", 10 },
      { "a tab", "rvya_sk_a\tb", 10 },
      { "a space", "rvya_sk_a b", 10 },
      { "a DEL", "rvya_sk_a\127b", 10 },
    }) do
      it("with " .. case[1] .. " inside is refused by rivya.new, naming the byte, never the key", function()
        local ok, msg = pcall(function() local c = rivya.new{ api_key = case[2], base_url = sim.url }; return c end)
        assert.is_false(ok)
        assert.matches("api_key", msg)
        assert.truthy(msg:find("at byte " .. case[3], 1, true), msg)
        assert.is_nil(msg:find("rvya_sk_", 1, true))
        assert.is_nil(msg:find("X-Injected", 1, true))
        -- raised at the caller's line, as misuse is
        assert.matches("faults_spec%.lua:%d+:", msg)
      end)
    end

    it("with surrounding whitespace (a key file's trailing newline) is sent stripped", function()
      for _, key in ipairs({ helper.KEY .. "\n", helper.KEY .. "\r\n", "  " .. helper.KEY .. "\t \n" }) do
        local client = helper.client(sim, FAULT_OPTIONS, { api_key = key })
        local credits, err = client:credits()
        client:close()
        assert.are.equal(sim:ledger().credits, credits, err and tostring(err))
      end
    end)

    it("of only whitespace counts as no key at all", function()
      local client = helper.client(sim, FAULT_OPTIONS, { api_key = " \n" })
      local credits, err = client:credits()
      client:close()
      assert.is_nil(credits)
      assert.are.equal("api_key_missing", err.code)
      assert.are.equal(0, tries("GET", "/api/v1/credits"))
    end)
  end)

  describe("a call's total deadline", function()
    it("ends credits against a server that accepts and never answers, naming the request", function()
      -- a listener whose connections complete in the kernel and are never answered
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local client = rivya.new{ api_key = helper.KEY, base_url = "http://127.0.0.1:" .. port,
        timeout = 0.3, retry_base = 0.01, retry_cap = 0.02 }
      local credits, err = client:credits()
      client:close()
      server:settimeout(0)
      local connections = 0
      while server:accept() do connections = connections + 1 end
      server:close()
      assert.is_nil(credits)
      assert.are.equal("timeout", err.code)
      assert.are.equal("GET /api/v1/credits", err.request)
      assert.truthy(tostring(err):find("GET /api/v1/credits", 1, true), tostring(err))
      -- the default call deadline (2 x timeout) leaves room for two tries, not four
      assert.are.equal(2, err.attempts)
      assert.are.equal(2, connections)
    end)

    it("call_timeout bounds an API call, retries and backoff included", function()
      sim:fault{ listener = "api", method = "GET", path = "/api/v1/credits", times = 10,
        action = "respond", status = 503 }
      local client = helper.client(sim, FAULT_OPTIONS,
        { call_timeout = 0.3, retry_base = 0.2, retry_cap = 0.2, max_retries = 10 })
      local credits, err = client:credits()
      client:close()
      assert.is_nil(credits)
      assert.are.equal("service_unavailable", err.code)
      -- backoffs of 0.1-0.2 s: at most three tries fit in 0.3 s, never eleven
      assert.is_true(err.attempts <= 3, "attempts: " .. err.attempts)
      assert.are.equal(err.attempts, tries("GET", "/api/v1/credits"))
    end)

    it("generate{timeout} covers the create's retries: no backoff past it", function()
      sim:fault{ listener = "api", method = "POST", path = "/api/v1/generations", times = 10,
        action = "respond", status = 503, headers = { ["Retry-After"] = "1" } }
      local client = helper.client(sim, FAULT_OPTIONS, { retry_after_cap = 60 })
      local task, err = client:generate(request(), { timeout = 0.5 })
      client:close()
      assert.is_nil(task)
      assert.are.equal("service_unavailable", err.code)
      assert.are.equal(1, err.attempts)
      assert.matches("^rivya%-%x+$", err.idempotency_key)
      assert.are.equal(1, tries("POST", "/api/v1/generations"))
      assert.are.equal(0, sim:ledger().charges)
    end)

    it("generate{timeout} covers the download too", function()
      sim:fault{ listener = "cdn", method = "GET", path = "/videos/", times = 1,
        action = "delay", delay_ms = 3000 }
      local client = helper.client(sim, FAULT_OPTIONS, { timeout = 30, stall_timeout = 30 })
      local path = dir .. "/late.mp4"
      local task, err = client:generate(request(), { timeout = 1.5, output = path })
      client:close()
      assert.is_nil(task)
      assert.are.equal("timeout", err.code)
      assert.matches("^GET http://127%.0%.0%.1:%d+/videos/", err.request)
      assert.is_nil(io.open(path, "rb"))
      assert.are.equal(1, sim:ledger().charges)
    end)

    it("a wait's own deadline stays a wait timeout, not a request's", function()
      local client = helper.client(sim, FAULT_OPTIONS, { poll_interval = 0.05 })
      sim:config{ task_seconds = 60 }
      local created = assert(client:create(request("a slow one")))
      local final, err = client:wait(created, { timeout = 0.2 })
      sim:config{ task_seconds = 0.05 }
      client:close()
      assert.is_nil(final)
      assert.are.equal("timeout", err.code)
      assert.is_nil(err.request)
      assert.are.equal(created.id, err.task.id)
    end)
  end)

  describe("the rivya command", function()
    -- bin/rivya with `env` (RIVYA_BASE_URL, RIVYA_API_KEY, ...) under a 60 s
    -- guard; returns the exit status (124: still running at the guard), stdout, stderr
    local function rivya_cli(args, env)
      local set = { helper.sh_quote("RIVYA_LEDGER=" .. dir .. "/ledger.db") }
      for k, v in pairs(env) do set[#set + 1] = helper.sh_quote(k .. "=" .. v) end
      local quoted = {}
      for i, a in ipairs(args) do quoted[i] = helper.sh_quote(a) end
      local out, err = dir .. "/cli.out", dir .. "/cli.err"
      local _, how, code = compat.execute(("env %s timeout 60 %s %s %s </dev/null >%s 2>%s"):format(
        table.concat(set, " "), helper.LUA, helper.sh_quote(helper.ROOT .. "/bin/rivya"), table.concat(quoted, " "),
        helper.sh_quote(out), helper.sh_quote(err)))
      return how == "exit" and code or -1, helper.read_file(out) or "", helper.read_file(err) or ""
    end

    it("exits 4 naming RIVYA_API_KEY when the key has a CR LF inside, and sends nothing", function()
      local code, out, err = rivya_cli({ "credits" }, { RIVYA_BASE_URL = sim.url,
        RIVYA_API_KEY = helper.KEY .. "\r\nX-Injected: yes" })
      assert.are.equal(4, code, err)
      assert.are.equal("", out)
      assert.matches("^rivya: api_key_invalid: RIVYA_API_KEY: a control character or whitespace at byte %d+", err)
      assert.is_nil(err:find(helper.KEY, 1, true))
      assert.are.equal(0, tries("GET", "/api/v1/credits"))
    end)

    it("takes a key with a trailing newline, as $(cat keyfile) gives it", function()
      local code, out, err = rivya_cli({ "credits" }, { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY .. "\n" })
      assert.are.equal(0, code, err)
      assert.are.equal(("%d\n"):format(sim:ledger().credits), out)
    end)

    it("exits 1, not 6, naming the request when credits meets a server that never answers", function()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local code, out, err = rivya_cli({ "credits" }, { RIVYA_BASE_URL = "http://127.0.0.1:" .. port,
        RIVYA_API_KEY = helper.KEY, RIVYA_TIMEOUT = "0.3" })
      server:close()
      assert.are.equal(1, code, err)
      assert.are.equal("", out)
      assert.truthy(err:find("GET /api/v1/credits", 1, true), err)
      assert.truthy(err:find("timed out", 1, true), err)
      assert.is_nil(err:find("keeps running", 1, true))
    end)

    it("refuses a RIVYA_TIMEOUT that is no number of seconds with exit 2", function()
      local code, _, err = rivya_cli({ "credits" }, { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY,
        RIVYA_TIMEOUT = "soon" })
      assert.are.equal(2, code, err)
      assert.matches("RIVYA_TIMEOUT", err)
    end)
  end)

  describe("ids in answers", function()
    local ESCAPES = "task_\27]0;PWNED\7\27[2J"
    local function task_json(id)
      return ('{"id":%s,"status":"queued","model":"wan-2-7-video","reserved_credits":80}')
        :format(require("cjson").encode(id))
    end

    for _, case in ipairs({
      { "terminal escapes", ESCAPES },
      { "a path", "../../etc/passwd" },
      { "a space", "task_a b" },
      { "201 characters", "task_" .. ("x"):rep(196) },
      { "nothing", "" },
    }) do
      it("a create answered with a task id of " .. case[1] .. " is bad_response with its idempotency_key", function()
        answer("POST", "/api/v1/generations", 201, task_json(case[2]))
        local client = helper.client(sim, FAULT_OPTIONS)
        local task, err = client:create(request())
        client:close()
        assert.is_nil(task)
        assert.are.equal("bad_response", err.code)
        assert.matches("^rivya%-%x+$", err.idempotency_key)
        assert.is_nil(tostring(err):find("PWNED", 1, true))
        assert.is_nil(tostring(err):find("[%c]"))
        assert.are.equal(1, tries("POST", "/api/v1/generations"))
      end)
    end

    it("a get answered with another id form is bad_response", function()
      local client = helper.client(sim, FAULT_OPTIONS)
      local created = assert(client:create(request()))
      answer("GET", "/api/v1/generations/", 200, task_json(ESCAPES))
      local task, err = client:get(created.id)
      assert.is_nil(task)
      assert.are.equal("bad_response", err.code)
      -- the next answer is the real one
      assert.are.equal(created.id, assert(client:get(created.id)).id)
      client:close()
    end)

    it("an upload answered with a file id of terminal escapes is bad_response", function()
      answer("POST", "/api/v1/files", 200, '{"id":"file_\\u001b[2J","url":"https://cdn.invalid/x.mp4",'
        .. '"kind":"video","name":"x.mp4","mime_type":"video/mp4","size_bytes":1}')
      local client = helper.client(sim, FAULT_OPTIONS)
      local file, err = client:upload(SAMPLE, { kind = "video" })
      client:close()
      assert.is_nil(file)
      assert.are.equal("bad_response", err.code)
      assert.is_nil(tostring(err):find("[%c]"))
    end)

    it("a 2xx create answer that is no task is bad_response with its idempotency_key", function()
      answer("POST", "/api/v1/generations", 200, '{"ok":true}')
      local client = helper.client(sim, FAULT_OPTIONS)
      local req = request()
      req.idempotency_key = "rivya-spec-not-a-task"
      local task, err = client:create(req)
      client:close()
      assert.is_nil(task)
      assert.are.equal("bad_response", err.code)
      assert.are.equal("rivya-spec-not-a-task", err.idempotency_key)
      assert.are.equal(0, sim:ledger().charges)
    end)
  end)
end)
