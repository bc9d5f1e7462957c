-- The client end to end against a real rivya-sim on 127.0.0.1.
local helper = require "helper"
local rivya = require "rivya"
local compat = require "rivya.compat"

local function request(prompt, params)
  return { model = "wan-2-7-video", prompt = prompt or "a lighthouse in a storm", params = params or {} }
end

describe("rivya client against rivya-sim", function()
  local sim, client, dir

  local function requests(filter)
    local out = {}
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if not filter or filter(r) then out[#out + 1] = r end
    end
    return out
  end

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--credits", "1000" } }
    client = helper.client(sim)
    dir = helper.tmpdir()
  end)

  teardown(function()
    client:close()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
  end)

  describe("catalog and credits", function()
    it("lists the models without an API key", function()
      local anonymous = rivya.new{ base_url = sim.url, api_key = "" }
      local models = assert(anonymous:models())
      assert.are.equal("wan-2-7-video", models[1].id)
      local r = requests()
      assert.are.equal("absent", r[#r].authorization)
      anonymous:close()
    end)

    it("reads the credit balance as an integer", function()
      local credits = assert(client:credits())
      assert.are.equal(1000, credits)
      assert.are.equal("integer", compat.math_type(credits))
    end)

    it("names rivya and its version in the User-Agent and sends the key as a Bearer", function()
      assert(client:credits())
      local r = requests()[1]
      assert.truthy(r.user_agent:find("rivya-lua/" .. rivya.VERSION, 1, true))
      assert.are.equal("present", r.authorization)
    end)

    it("reuses one connection for consecutive calls", function()
      local c = helper.client(sim)
      for _ = 1, 5 do assert(c:credits()) end
      c:close()
      -- a TCP connect per request would show as 5 connections accepted by the sim
      assert.are.equal(1, sim:ledger().connections)
      assert.are.equal(5, #requests())
    end)
  end)

  describe("create, get and wait", function()
    it("creates a task with the documented object and reserves 80 credits", function()
      local task = assert(client:create(request()))
      assert.matches("^task_", task.id)
      assert.are.equal("queued", task.status)
      assert.are.equal("wan-2-7-video", task.model)
      assert.are.equal(80, task.reserved_credits)
      assert.are.equal("integer", compat.math_type(task.reserved_credits))
      assert.are.equal(0, task.final_credits)
      assert.is_string(task.created_at)
      assert.is_nil(task.result)
      assert.are.equal(920, client:credits())
    end)

    it("sends the wire form of natural Lua values", function()
      local task = assert(client:create(request("wire", { duration = 10, prompt_extend = false, seed = 7 })))
      assert.is_string(task.id)
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("gets a task by id", function()
      local task = assert(client:create(request()))
      local again = assert(client:get(task.id))
      assert.are.equal(task.id, again.id)
    end)

    it("answers not_found for an unknown task with status and request id", function()
      local task, err = client:get("task_doesnotexist")
      assert.is_nil(task)
      assert.are.equal("not_found", err.code)
      assert.are.equal(404, err.status)
      assert.matches("^req_", err.request_id)
    end)

    it("refuses a task id that would change the URL path, sending nothing", function()
      local task, err = client:get("../credits")
      assert.is_nil(task)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal(0, #requests())
    end)

    it("waits until the task succeeds and reports each status change once", function()
      local task = assert(client:create(request()))
      local seen = {}
      local final = assert(client:wait(task, { on_update = function(t) seen[#seen + 1] = t.status end }))
      assert.are.equal("succeeded", final.status)
      assert.are.equal(80, final.final_credits)
      assert.matches("^http://127%.0%.0%.1:%d+/videos/", final.result.primary_url)
      assert.are.equal("succeeded", seen[#seen])
      for i = 2, #seen do assert.are_not.equal(seen[i - 1], seen[i]) end
    end)

    it("waits on a bare task id too", function()
      local task = assert(client:create(request()))
      local final = assert(client:wait(task.id))
      assert.are.equal(task.id, final.id)
    end)

    it("returns generation_failed with the task, and the credits are refunded", function()
      local task, err = client:generate(request("this one breaks [[fail]]"))
      assert.is_nil(task)
      assert.are.equal("generation_failed", err.code)
      assert.are.equal("failed", err.task.status)
      assert.are.equal("generation_failed", err.task.error.code)
      assert.are.equal(1000, client:credits())
      assert.are.equal(80, sim:ledger().credits_refunded)
    end)

    it("gives up at wait's deadline with the last known task", function()
      sim:config{ task_seconds = 600 }
      local task = assert(client:create(request()))
      local final, err = client:wait(task, { timeout = 0.3, interval = 0.05 })
      assert.is_nil(final)
      assert.are.equal("timeout", err.code)
      assert.are.equal(task.id, err.task.id)
      assert.is_true(err.task.status == "queued" or err.task.status == "processing")
    end)

    it("has a finite default wait deadline and the documented polling pace", function()
      local c = rivya.new{ api_key = helper.KEY, base_url = sim.url }
      assert.are.equal(900, c.wait_timeout)
      assert.is_nil(c.poll_interval)
      c:close()
    end)

    it("generates end to end and saves the video when given an output path", function()
      local path = dir .. "/video.mp4"
      local progress = {}
      local task = assert(client:generate(request(), { output = path,
        on_progress = function(received, total) progress[#progress + 1] = { received, total } end }))
      assert.are.equal("succeeded", task.status)
      assert.are.equal(path, task.output)
      local bytes = helper.read_file(path)
      assert.are.equal(helper.read_file(helper.ROOT .. "/sim/sample.mp4"), bytes)
      assert.are.same({ "video.mp4" }, helper.ls(dir))
      local last = progress[#progress]
      assert.are.equal(#bytes, last[1])
      os.remove(path)
    end)
  end)

  describe("credits and idempotency", function()
    it("fails with insufficient_credits and creates nothing", function()
      sim:config{ credits = 50 }
      local task, err = client:create(request())
      assert.is_nil(task)
      assert.are.equal("insufficient_credits", err.code)
      assert.are.equal(402, err.status)
      assert.are.equal(0, sim:ledger().tasks_created)
    end)

    it("returns the same task for the same Idempotency-Key and body, charging once", function()
      local req = request()
      req.idempotency_key = "retry-me-1"
      local a = assert(client:create(req))
      local b = assert(client:create(req))
      assert.are.equal(a.id, b.id)
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.charges)
      assert.are.equal(920, ledger.credits)
    end)

    it("answers idempotency_conflict for the same key with another body", function()
      local req = request("first")
      req.idempotency_key = "same-key"
      assert(client:create(req))
      local other = request("second")
      other.idempotency_key = "same-key"
      local task, err = client:create(other)
      assert.is_nil(task)
      assert.are.equal("idempotency_conflict", err.code)
      assert.are.equal(409, err.status)
      assert.are.equal(1, sim:ledger().tasks_created)
    end)

    it("gives every create its own generated Idempotency-Key", function()
      assert(client:create(request("one")))
      assert(client:create(request("one")))
      local keys = {}
      for _, r in ipairs(requests(function(r) return r.method == "POST" end)) do
        assert.is_string(r.idempotency_key)
        keys[r.idempotency_key] = true
      end
      local n = 0
      for _ in pairs(keys) do n = n + 1 end
      assert.are.equal(2, n)
      assert.are.equal(2, sim:ledger().tasks_created)
    end)
  end)

  describe("validation before any byte is sent", function()
    it("rejects a bad option naming the field, the expected values and what was given", function()
      local task, err = client:create(request("x", { duration = 7 }))
      assert.is_nil(task)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal("params.duration", err.field)
      assert.truthy(err.message:find("7", 1, true))
      assert.truthy(err.message:find("10", 1, true))
      assert.are.equal(0, #requests())
    end)

    it("returns api_key_missing locally when the client has no key", function()
      local c = rivya.new{ base_url = sim.url, api_key = "" }
      local credits, err = c:credits()
      assert.is_nil(credits)
      assert.are.equal("api_key_missing", err.code)
      assert.are.equal(0, #requests())
      c:close()
    end)

    it("raises on misuse: a non-table request", function()
      assert.has_error(function() client:create("a prompt") end)
      assert.has_error(function() client:get(42) end)
    end)

    it("raises on a duration that is not a finite number of seconds >= 0, before any request", function()
      local function raises(where, name, v, fn)
        local ok, msg = pcall(fn)
        assert.is_false(ok, where .. " took " .. name .. " = " .. tostring(v))
        assert.matches(where:gsub("%p", "%%%0") .. ": option '" .. name
          .. "' must be a finite number of seconds >= 0, got "
          .. (type(v) == "number" and tostring(v) or type(v)):gsub("%p", "%%%0"), msg)
      end
      for _, v in ipairs({ 0 / 0, -1, math.huge, "5" }) do
        raises("client:wait", "interval", v, function() client:wait("gen_x", { interval = v }) end)
        raises("client:wait", "timeout", v, function() client:wait("gen_x", { timeout = v }) end)
        raises("client:updates", "interval", v, function() client:updates("gen_x", { interval = v }) end)
        raises("client:download", "timeout", v, function() client:download("gen_x", "x.mp4", { timeout = v }) end)
        raises("rivya.new", "poll_interval", v, function() rivya.new{ api_key = helper.KEY, poll_interval = v } end)
        raises("rivya.new", "stall_timeout", v, function() rivya.new{ api_key = helper.KEY, stall_timeout = v } end)
      end
      assert.are.equal(0, #requests())
    end)
  end)

  describe("auth errors from the server", function()
    local cases = {
      { key = "rvya_sk_unknown_key_123456", code = "api_key_invalid", status = 401 },
      { key = helper.REVOKED_KEY, code = "api_key_revoked", status = 401 },
      { key = helper.EXPIRED_KEY, code = "api_key_expired", status = 401 },
    }
    for _, case in ipairs(cases) do
      it("maps " .. case.code .. " to an error with status " .. case.status, function()
        local c = helper.client(sim, { api_key = case.key })
        local credits, err = c:credits()
        assert.is_nil(credits)
        assert.are.equal(case.code, err.code)
        assert.are.equal(case.status, err.status)
        assert.is_falsy(tostring(err):find(case.key, 1, true))
        c:close()
      end)
    end

    it("maps api_scope_denied on create", function()
      local c = helper.client(sim, { api_key = helper.SCOPED_KEY })
      local task, err = c:create(request())
      assert.is_nil(task)
      assert.are.equal("api_scope_denied", err.code)
      assert.are.equal(403, err.status)
      c:close()
    end)

    it("retries public_api_disabled and reports it when it persists", function()
      sim:config{ public_api_disabled = true }
      local c = helper.client(sim, { max_retries = 2 })
      local credits, err = c:credits()
      assert.is_nil(credits)
      assert.are.equal("public_api_disabled", err.code)
      assert.are.equal(503, err.status)
      assert.are.equal(3, err.attempts)
      assert.are.equal(3, #requests())
      c:close()
    end)
  end)

  describe("retries", function()
    it("retries a 503 on create with the same Idempotency-Key and creates one task", function()
      sim:fault{ method = "POST", path = "/api/v1/generations", action = "respond", status = 503 }
      local task = assert(client:create(request()))
      assert.is_string(task.id)
      local posts = requests(function(r) return r.method == "POST" end)
      assert.are.equal(2, #posts)
      assert.are.equal(posts[1].idempotency_key, posts[2].idempotency_key)
      assert.are.equal(1, sim:ledger().charges)
    end)

    it("survives a connection dropped after the create was committed: one task, one charge", function()
      sim:fault{ method = "POST", path = "/api/v1/generations", action = "drop_after_commit" }
      local task = assert(client:create(request()))
      local ledger = sim:ledger()
      assert.are.equal(1, ledger.tasks_created)
      assert.are.equal(1, ledger.charges)
      assert.are.equal(ledger.tasks[1].id, task.id)
    end)

    it("honours Retry-After on a 429 and reads it into the error when retries run out", function()
      sim:fault{ path = "/api/v1/credits", action = "respond", status = 429, times = 5,
        headers = { ["Retry-After"] = "0" },
        body = '{"error":{"code":"rate_limited","message":"slow down","requestId":"req_rl"}}' }
      local c = helper.client(sim, { max_retries = 1 })
      local credits, err = c:credits()
      assert.is_nil(credits)
      assert.are.equal("rate_limited", err.code)
      assert.are.equal(429, err.status)
      assert.are.equal(0, err.retry_after)
      assert.are.equal("req_rl", err.request_id)
      assert.are.equal(2, #requests())
      c:close()
    end)

    it("retries an HTML 502 and then succeeds", function()
      sim:fault{ path = "/api/v1/credits", action = "respond", status = 502,
        content_type = "text/html", body = "<html><body>Bad gateway</body></html>" }
      assert.are.equal(1000, client:credits())
      local seen = requests()
      assert.are.equal(2, #seen)
      assert.are.equal("/api/v1/credits", seen[1].path)
      assert.are.equal("/api/v1/credits", seen[2].path)
    end)

    it("does not retry a 400 that describes the request", function()
      sim:fault{ path = "/api/v1/credits", action = "respond", status = 400,
        body = '{"error":{"code":"validation_failed","message":"nope","requestId":"req_x"}}' }
      local credits, err = client:credits()
      assert.is_nil(credits)
      assert.are.equal("validation_failed", err.code)
      assert.are.equal(1, #requests())
    end)

    it("stops after max_retries with the number of attempts", function()
      sim:fault{ path = "/api/v1/credits", action = "respond", status = 500, times = 10 }
      local c = helper.client(sim, { max_retries = 2 })
      local credits, err = c:credits()
      assert.is_nil(credits)
      assert.are.equal(500, err.status)
      assert.are.equal(3, err.attempts)
      assert.are.equal(3, #requests())
      c:close()
    end)

    it("treats invalid JSON as bad_response when it persists", function()
      sim:fault{ path = "/api/v1/credits", action = "invalid_json", times = 10 }
      local c = helper.client(sim, { max_retries = 1 })
      local credits, err = c:credits()
      assert.is_nil(credits)
      assert.are.equal("bad_response", err.code)
      c:close()
    end)
  end)

  describe("downloads", function()
    it("leaves no file and no temporary litter when the body is cut off", function()
      local task = assert(client:generate(request()))
      sim:fault{ listener = "cdn", path = "/videos/", action = "truncate", times = 10 }
      local path = dir .. "/cut.mp4"
      local c = helper.client(sim, { max_retries = 1 })
      local ok, err = c:download(task, path)
      assert.is_nil(ok)
      assert.are.equal("network", err.code)
      assert.are.same({}, helper.ls(dir))
      c:close()
    end)

    it("answers not_found for a missing result and writes nothing", function()
      local ok, err = client:download(sim.cdn_url .. "/videos/task_missing.mp4", dir .. "/none.mp4")
      assert.is_nil(ok)
      assert.are.equal("not_found", err.code)
      assert.are.same({}, helper.ls(dir))
    end)

    it("never sends the API key to the CDN", function()
      local task = assert(client:generate(request()))
      assert(client:download(task, dir .. "/a.mp4"))
      os.remove(dir .. "/a.mp4")
      local cdn = requests(function(r) return r.listener == "cdn" end)
      assert.is_true(#cdn >= 1)
      for _, r in ipairs(cdn) do assert.are.equal("absent", r.authorization) end
      assert.are.equal(0, sim:ledger().cdn_auth_violations)
    end)
  end)

  describe("the key stays secret", function()
    it("shows at most a short suffix in tostring(client)", function()
      local s = tostring(client)
      assert.is_falsy(s:find(helper.KEY, 1, true))
      assert.is_falsy(s:find(helper.KEY:sub(1, 12), 1, true))
      assert.truthy(s:find(helper.KEY:sub(-4), 1, true))
    end)

    it("keeps the key out of the client's Lua fields", function()
      for k, v in pairs(client) do
        if type(v) == "string" then assert.is_falsy(v:find(helper.KEY, 1, true), k) end
      end
    end)

    it("never appears in the simulator's log", function()
      assert(client:credits())
      assert.is_falsy(sim:log_text():find(helper.KEY, 1, true))
    end)
  end)

  describe("errors", function()
    it("print as one readable line with code, field and status", function()
      local _, err = client:get("task_nope")
      local line = tostring(err)
      assert.is_falsy(line:find("\n"))
      assert.truthy(line:find("not_found", 1, true))
      assert.truthy(line:find("status=404", 1, true))
      assert.is_true(rivya.is_error(err))
    end)
  end)

  describe("rivya.new", function()
    it("raises on an unknown option and suggests the closest", function()
      local ok, msg = pcall(rivya.new, { api_key = "k", base_url = sim.url, timout = 3 })
      assert.is_false(ok)
      assert.truthy(msg:find("did you mean 'timeout'", 1, true))
    end)

    it("raises on an option of the wrong type", function()
      assert.has_error(function() rivya.new{ base_url = sim.url, timeout = "3" } end)
    end)

    it("refuses plain http to a host other than loopback unless opted in by name", function()
      assert.has_error(function() rivya.new{ base_url = "http://api.example.com" } end)
      local c = rivya.new{ base_url = "http://api.example.com", allow_http = "api.example.com" }
      assert.are.equal("http://api.example.com", c.origin)
      c:close()
    end)

    it("refuses a base URL with a path or credentials", function()
      assert.has_error(function() rivya.new{ base_url = "https://rivya.ai/api" } end)
      assert.has_error(function() rivya.new{ base_url = "https://user:pw@rivya.ai" } end)
    end)

    it("refuses use after close, and close is idempotent", function()
      local c = helper.client(sim)
      c:close()
      c:close()
      assert.has_error(function() c:credits() end)
      assert.truthy(tostring(c):find("closed", 1, true))
    end)
  end)

  describe("gather", function()
    it("runs many generations together from one Lua state", function()
      local fns = {}
      for i = 1, 6 do
        fns[i] = function() return client:generate(request("batch " .. i)) end
      end
      local results = rivya.gather(fns, { concurrency = 3 })
      for i = 1, 6 do
        assert.are.equal("succeeded", results[i][1].status)
      end
      assert.are.equal(6, sim:ledger().tasks_created)
    end)

    it("returns an error raised in one function in its slot without stopping the others", function()
      local results = rivya.gather{
        function() error({ code = "mine" }) end,
        function() return client:credits() end,
      }
      assert.is_nil(results[1][1])
      assert.are.equal("mine", results[1][2].code)
      assert.are.equal(1000, results[2][1])
    end)

    it("yields while sleeping so other functions run meanwhile", function()
      local order = {}
      rivya.gather{
        function() rivya.sleep(0.2) order[#order + 1] = "slept" end,
        function() order[#order + 1] = "ran" end,
      }
      assert.are.same({ "ran", "slept" }, order)
    end)
  end)
end)
