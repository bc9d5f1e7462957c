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
