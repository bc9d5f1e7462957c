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

local SAMPLE = helper.ROOT .. "/sim/sample.mp4"
local TIMEOUT = 1            -- the client's request timeout and stall detector, seconds
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
  local line = p:read("l")
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
  local client

  setup(function() client = rivya.new{ api_key = "rvya_sk_unit_0000000000", base_url = "http://127.0.0.1:9" } end)
  teardown(function() client:close() end)

  it("backs off from 0.5 s, doubling up to 8 s, with jitter between 50 and 100 percent", function()
    for attempt = 0, 8 do
      local full = math.min(8, 0.5 * 2 ^ attempt)
      for _ = 1, 20 do
        local d = client:_backoff(attempt)
        assert.is_true(d >= full / 2 and d <= full, ("attempt %d waited %g"):format(attempt, d))
      end
    end
  end)

  it("waits what Retry-After asks, capped at retry_after_cap", function()
    assert.are.equal(5, client:_retry_delay(errors.new("rate_limited", "x", { retry_after = 5 }), 0))
    assert.are.equal(60, client:_retry_delay(errors.new("rate_limited", "x", { retry_after = 3600 }), 0))
    local capped = rivya.new{ api_key = "rvya_sk_unit_0000000000", base_url = "http://127.0.0.1:9",
      retry_after_cap = 2 }
    assert.are.equal(2, capped:_retry_delay(errors.new("rate_limited", "x", { retry_after = 30 }), 3))
    capped:close()
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

  local function new_client(opts)
    local o = { api_key = helper.KEY, base_url = sim.url, timeout = TIMEOUT, stall_timeout = TIMEOUT,
      connect_timeout = TIMEOUT, retry_base = 0.01, retry_cap = 0.05, retry_after_cap = 0.05,
      poll_interval = 0.05 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return rivya.new(o)
  end

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
    setup_client = new_client{ timeout = 10 }
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
          local fds = helper.fd_count()
          ctx.client = new_client{ max_retries = persistent and PERSISTENT_TIMES - 1 or 3 }

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
          assert.are.equal(fds, helper.fd_count())
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
