-- rivya.webhook offline: endpoint URLs checked by the documented rules,
-- events parsed (never trusted).
local rivya = require "rivya"
local webhook = require "rivya.webhook"
local cjson = require "cjson"
local compat = require "rivya.compat"

describe("rivya.webhook.check_url", function()
  local function refused(url, why, o)
    local ok, err = webhook.check_url(url, o)
    assert.is_nil(ok, url .. " was accepted")
    assert.equal("webhook_url_rejected", err.code)
    assert.equal("url", err.field)
    if why then assert.truthy(err.message:find(why, 1, true), err.message) end
    return err
  end

  it("accepts public https URLs", function()
    for _, url in ipairs({ "https://hooks.example.com/rivya", "https://example.com:8443/a?b=c",
      "https://93.184.216.34/x", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook", "HTTPS://Example.COM" }) do
      assert.equal(url, (webhook.check_url(url)), url)
    end
  end)

  it("refuses other schemes, credentials and fragments", function()
    refused("http://hooks.example.com/x", "https")
    refused("ftp://hooks.example.com/x", "https")
    refused("hooks.example.com/x", "absolute")
    refused("https://user:pass@hooks.example.com/x", "credentials")
    refused("https://user@hooks.example.com/x", "credentials")
    refused("https://hooks.example.com/x#frag", "fragment")
    refused("https://hooks.example.com/x#", "fragment")
    refused("https://hooks.example.com:0/x", "port")
    refused("https://hooks.example.com:99999/x", "port")
    refused("https://hooks.example.com/a b", "spaces")
    refused("https:///x", "no host")
  end)

  it("refuses localhost and local network names", function()
    for _, host in ipairs({ "localhost", "LOCALHOST", "localhost.", "api.localhost", "printer.local",
      "db.internal", "nas.lan", "router.home.arpa", "intranet", "ip6-localhost" }) do
      refused("https://" .. host .. "/hook")
    end
  end)

  it("refuses loopback, private, link-local and reserved IPv4 in every spelling", function()
    local cases = {
      ["127.0.0.1"] = "loopback", ["127.1"] = "loopback", ["2130706433"] = "loopback",
      ["0x7f000001"] = "loopback", ["0177.0.0.1"] = "loopback", ["127.255.255.254"] = "loopback",
      ["10.0.0.5"] = "private", ["172.16.0.1"] = "private", ["172.31.255.255"] = "private",
      ["192.168.1.10"] = "private", ["169.254.169.254"] = "link-local", ["0.0.0.0"] = "reserved",
      ["100.64.0.1"] = "reserved", ["192.0.2.1"] = "reserved", ["198.18.0.1"] = "reserved",
      ["203.0.113.9"] = "reserved", ["224.0.0.1"] = "reserved", ["255.255.255.255"] = "reserved",
    }
    for host, why in pairs(cases) do refused("https://" .. host .. ":443/hook", why) end
    refused("https://256.1.1.1/", "not valid")
    assert.truthy(webhook.check_url("https://172.32.0.1/"))
  end)

  it("refuses loopback, private, link-local and reserved IPv6, mapped IPv4 included", function()
    local cases = {
      ["::1"] = "loopback", ["0:0:0:0:0:0:0:1"] = "loopback", ["::"] = "reserved",
      ["::ffff:127.0.0.1"] = "loopback", ["::ffff:7f00:1"] = "loopback", ["::ffff:10.1.2.3"] = "private",
      ["fd00::1"] = "private", ["fc12:3456::1"] = "private", ["fe80::1"] = "link-local",
      ["ff02::1"] = "reserved", ["2001:db8::1"] = "reserved", ["64:ff9b::192.168.0.1"] = "private",
    }
    for host, why in pairs(cases) do refused("https://[" .. host .. "]/hook", why) end
    refused("https://[fe80::1%25eth0]/hook", "not valid")
    refused("https://[1::2::3]/hook", "not valid")
  end)

  it("admits http:// to loopback only with allow_loopback, never a private address", function()
    assert.truthy(webhook.check_url("http://127.0.0.1:8080/hook", { allow_loopback = true }))
    assert.truthy(webhook.check_url("http://[::1]:8080/hook", { allow_loopback = true }))
    refused("http://10.0.0.1/hook", "https", { allow_loopback = true })
    refused("https://192.168.0.1/hook", "private", { allow_loopback = true })
    refused("http://localhost:8080/hook", nil, { allow_loopback = true })
  end)

  it("quotes at most 80 characters of the URL, on one line", function()
    local err = refused("http://example.com/" .. ("a"):rep(300) .. "\n")
    assert.is_nil(tostring(err):find("\n"))
    assert.truthy(#err.message < 200)
  end)
end)

describe("rivya.webhook.parse", function()
  local task = { id = "task_1", status = "succeeded", model = "wan-2-7-video", reserved_credits = 80,
    final_credits = 80, result = { primary_url = "https://cdn.example.com/v.mp4" } }

  it("reads the documented head and the task under data", function()
    local e = assert(rivya.webhook.parse(cjson.encode{ id = "evt_1", type = "generation.succeeded",
      api_version = "2026-05-11", created_at = "2026-05-11T00:00:00.000Z", data = task }))
    assert.equal("evt_1", e.id)
    assert.equal("generation.succeeded", e.type)
    assert.equal("2026-05-11", e.api_version)
    assert.equal("task_1", e.task.id)
    assert.equal("task_1", e.task_id)
    assert.equal("integer", compat.math_type(e.task.final_credits))
  end)

  it("finds the task under task, data.task or data.object, or only its id", function()
    for _, shape in ipairs({ { task = task }, { data = { task = task } }, { data = { object = task } } }) do
      shape.id, shape.type = "evt_2", "generation.failed"
      local e = assert(webhook.parse(cjson.encode(shape)))
      assert.equal("task_1", e.task_id)
    end
    local e = assert(webhook.parse('{"id":"evt_3","type":"generation.failed","task_id":"task_9"}'))
    assert.is_nil(e.task)
    assert.equal("task_9", e.task_id)
  end)

  it("refuses what is no event", function()
    for _, body in ipairs({ "", "not json", "[]", '{"type":"generation.succeeded"}', '{"id":"evt_1"}' }) do
      local e, err = webhook.parse(body)
      assert.is_nil(e)
      assert.equal("validation_failed", err.code)
    end
    assert.is_false(pcall(webhook.parse, nil))
  end)
end)

describe("client:webhooks against rivya-sim", function()
  local helper = require "helper"
  local socket = require "socket"
  local sim, server, port, client

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.3", "--allow-loopback-webhooks",
      "--scoped-key", "rvya_sk_nohooks_0001:generations:create,generations:read" } }
    server = assert(socket.bind("127.0.0.1", 0))
    port = select(2, server:getsockname())
    server:settimeout(20)       -- a bound on a wait, not an assertion on time
    client = helper.client(sim)
  end)

  teardown(function()
    client:close()
    server:close()
    sim:stop()
  end)

  before_each(function() sim:reset() end)

  local function requests(method, prefix)
    local n = 0
    for _, r in ipairs(sim:control("GET", "requests").data) do
      if r.method == method and r.path:sub(1, #prefix) == prefix then n = n + 1 end
    end
    return n
  end

  -- accept one delivery, answer 200; { method, path, headers, body }
  local function receive()
    local c = assert(server:accept())
    c:settimeout(10)
    local line = assert(c:receive("*l"))
    local req = { headers = {} }
    req.method, req.path = line:match("^(%u+) (%S+) HTTP/1%.1$")
    while true do
      local h = assert(c:receive("*l"))
      if h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.*)$")
      req.headers[k:lower()] = v
    end
    req.body = assert(c:receive(tonumber(req.headers["content-length"])))
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c:close()
    return req
  end

  it("manages endpoints: create, list, get, update, rotate_secret, deliveries, delete", function()
    local hooks = client:webhooks()
    local ep = assert(hooks:create{ name = "renders", url = "https://hooks.example.com/rivya",
      event_types = { "generation.failed" } })
    assert.matches("^whend_", ep.id)
    assert.same({ "generation.failed" }, ep.event_types)
    assert.truthy(tostring(ep):find(ep.id, 1, true))
    local list = assert(hooks:list())
    assert.equal(1, #list)
    assert.equal(ep.id, list[1].id)
    assert.is_nil(list[1].signing_secret)
    assert.equal("renders", assert(hooks:get(ep.id)).name)
    local changed = assert(hooks:update(ep.id, { name = "videos", event_types = { "generation.succeeded" } }))
    assert.equal("videos", changed.name)
    assert.same({ "generation.succeeded" }, changed.event_types)
    local rotated = assert(hooks:rotate_secret(ep.id))
    assert.is_true(rivya.webhook.is_secret(rotated.signing_secret))
    assert.not_equal(ep.signing_secret:reveal(), rotated.signing_secret:reveal())
    assert.same({}, assert(hooks:deliveries(ep.id)))
    assert.is_true(hooks:delete(ep.id))
    local gone, err = hooks:get(ep.id)
    assert.is_nil(gone)
    assert.equal("not_found", err.code)
    assert.same({}, assert(hooks:list()))
  end)

  it("treats the signing secret like the API key: not in tostring, pairs, JSON or errors", function()
    local ep = assert(client:webhooks():create{ name = "n", url = "https://hooks.example.com/x" })
    local value = ep.signing_secret:reveal()
    assert.matches("^whsec_", value)
    assert.is_nil(tostring(ep.signing_secret):find(value, 1, true))
    assert.is_nil(tostring(ep.signing_secret):find(value:sub(1, 12), 1, true))
    assert.is_nil(tostring(ep):find(value, 1, true))
    for k, v in pairs(ep.signing_secret) do
      assert.is_nil(tostring(k):find(value, 1, true))
      assert.is_nil(tostring(v):find(value, 1, true))
    end
    local ok, encoded = pcall(cjson.encode, ep.signing_secret)
    assert.is_true(not ok or not encoded:find(value, 1, true))
    assert.equal("rivya.Secret", getmetatable(ep.signing_secret))
  end)

  it("refuses an endpoint URL by the documented rules before sending", function()
    local hooks = client:webhooks()
    for _, url in ipairs({ "http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.0.0.8/x",
      "https://localhost/x", "https://u:p@hooks.example.com/x", "https://hooks.example.com/x#f" }) do
      local ep, err = hooks:create{ name = "n", url = url }
      assert.is_nil(ep)
      assert.equal("webhook_url_rejected", err.code, url)
    end
    local _, err = hooks:update("whend_1", { url = "https://169.254.169.254/latest" })
    assert.equal("webhook_url_rejected", err.code)
    assert.equal(0, requests("POST", "/api/v1/webhooks") + requests("PATCH", "/api/v1/webhooks"))
  end)

  it("names webhooks:manage when the key lacks it", function()
    local c = rivya.new{ api_key = "rvya_sk_nohooks_0001", base_url = sim.url }
    local list, err = c:webhooks():list()
    assert.is_nil(list)
    assert.equal("api_scope_denied", err.code)
    assert.equal("webhooks:manage", err.scope)
    c:close()
  end)

  it("receives a delivery for a task the client created, parses it and confirms it with the key", function()
    local hooks = client:webhooks{ allow_loopback = true }
    local ep = assert(hooks:create{ name = "receiver", url = "http://127.0.0.1:" .. port .. "/hook" })
    local task = assert(client:create{ model = "wan-2-7-video", prompt = "a lighthouse at dawn" })
    local req = receive()
    assert.equal("POST", req.method)
    assert.equal("/hook", req.path)
    assert.truthy(req.headers["content-type"]:find("application/json", 1, true))
    assert.is_nil(req.headers["authorization"])
    local event = assert(rivya.webhook.parse(req.body))
    assert.matches("^evt_", event.id)
    assert.equal("generation.succeeded", event.type)
    assert.equal("2026-05-11", event.api_version)
    assert.equal(task.id, event.task_id)
    assert.equal("succeeded", event.task.status)
    local confirmed = assert(client:confirm(event))
    assert.equal(task.id, confirmed.id)
    assert.equal("succeeded", confirmed.status)
    assert.equal(1, requests("GET", "/api/v1/generations/" .. task.id))
    -- the delivery is recorded; the events list has it
    local seen
    for _ = 1, 200 do
      local list = assert(hooks:deliveries(ep.id))
      if list[1] and list[1].status == "succeeded" then seen = list[1] break end
      helper.sleep(0.02)
    end
    assert.is_table(seen)
    assert.equal(event.id, seen.event_id)
    local found
    for _, e in ipairs(assert(client:webhook_events())) do
      if e.id == event.id then found = e end
    end
    assert.is_table(found)
  end)

  it("sends a test event to the endpoint", function()
    local hooks = client:webhooks{ allow_loopback = true }
    local ep = assert(hooks:create{ name = "receiver", url = "http://127.0.0.1:" .. port .. "/test" })
    assert(hooks:test(ep.id))
    local req = receive()
    local event = assert(rivya.webhook.parse(req.body))
    assert.equal("webhook.test", event.type)
    assert.is_nil(event.task_id and event.task)
    local task, err = client:confirm(event)
    assert.is_nil(task)
    assert.equal("validation_failed", err.code)
  end)
end)
