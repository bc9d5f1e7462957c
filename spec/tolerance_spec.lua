-- Answers the docs allow and rivya must take in stride, against rivya-sim:
-- a failed task without an error object, and api_scope_denied naming the
-- scope the call needs.
local helper = require "helper"
local rivya = require "rivya"
local cjson = require "cjson"

describe("tolerance of documented variants", function()
  local sim, client, dir

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "30", "--credits", "1000" } }
    client = helper.client(sim)
    dir = helper.tmpdir()
  end)

  teardown(function()
    client:close()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function() sim:reset() end)

  it("reads a failed task with error: null as generation_failed with a generic message", function()
    local task = assert(client:create{ model = "wan-2-7-video", prompt = "a lighthouse" })
    sim:fault{ method = "GET", path = "/api/v1/generations/" .. task.id, action = "respond", status = 200,
      body = cjson.encode{ id = task.id, status = "failed", model = "wan-2-7-video", reserved_credits = 80,
        final_credits = 0, created_at = task.created_at, updated_at = task.updated_at,
        result = cjson.null, error = cjson.null } }
    local final, err = client:wait(task, { interval = 0.01 })
    assert.is_nil(final)
    assert.equal("generation_failed", err.code)
    assert.equal("failed", err.task.status)
    assert.equal(task.id, err.task.id)
    assert.truthy(err.message:find("gave no error details", 1, true), err.message)
    assert.truthy(tostring(err):find(task.id, 1, true))
  end)

  it("keeps the API's message when a failed task has one", function()
    local task = assert(client:create{ model = "wan-2-7-video", prompt = "a lighthouse" })
    sim:fault{ method = "GET", path = "/api/v1/generations/" .. task.id, action = "respond", status = 200,
      body = cjson.encode{ id = task.id, status = "failed", error = { code = "generation_failed",
        message = "the model declined" } } }
    local _, err = client:wait(task, { interval = 0.01 })
    assert.equal("generation_failed", err.code)
    assert.equal("the model declined", err.message)
  end)

  local function denied(path, method)
    sim:fault{ method = method, path = path, action = "respond", status = 403,
      body = '{"error":{"code":"api_scope_denied","message":"The API key lacks a scope","requestId":"req_s"}}' }
  end

  it("names the scope a denied call needs: credits:read", function()
    denied("/api/v1/credits", "GET")
    local credits, err = client:credits()
    assert.is_nil(credits)
    assert.equal("api_scope_denied", err.code)
    assert.equal(403, err.status)
    assert.equal("credits:read", err.scope)
    assert.truthy(err.message:find("needs the credits:read scope", 1, true), err.message)
    assert.equal("req_s", err.request_id)
  end)

  it("names the scope a denied call needs: generations:read and files:create", function()
    denied("/api/v1/generations/", "GET")
    local _, err = client:get("task_x")
    assert.equal("generations:read", err.scope)
    local path = dir .. "/k.png"
    helper.write_file(path, "\137PNG\r\n\26\n" .. ("\0"):rep(64))
    denied("/api/v1/files", "POST")
    _, err = client:upload(path)
    assert.equal("api_scope_denied", err.code)
    assert.equal("files:create", err.scope)
    assert.truthy(err.message:find("POST /api/v1/files needs the files:create scope", 1, true), err.message)
  end)

  it("names generations:create for a key without it, never showing the key", function()
    local c = rivya.new{ api_key = helper.SCOPED_KEY, base_url = sim.url }
    local task, err = c:create{ model = "wan-2-7-video", prompt = "a lighthouse" }
    assert.is_nil(task)
    assert.equal("api_scope_denied", err.code)
    assert.equal("generations:create", err.scope)
    assert.truthy(tostring(err):find("generations:create", 1, true))
    assert.is_falsy(tostring(err):find(helper.SCOPED_KEY, 1, true))
    c:close()
  end)
end)
