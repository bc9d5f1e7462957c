--- TLS: certificate and host verification are always on. A throwaway CA,
-- made here with the openssl CLI, signs a server certificate for 127.0.0.1
-- and localhost; rivya-sim serves it on both listeners (--tls-cert,
-- --tls-key). The client refuses it by default, trusts it with
-- `ca_file = ca.pem`, and refuses a certificate for another host name even
-- then. Plain http:// is refused for any host but loopback unless named.
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local compat = require "rivya.compat"

local SAMPLE = helper.ROOT .. "/sim/sample.mp4"

local function request(prompt)
  return { model = "wan-2-7-video", prompt = prompt or "a lantern on a night river", params = {} }
end

-- run `openssl args` in `dir`; raises with openssl's output when it fails
local function openssl(dir, args)
  local ok = compat.execute(("cd %s && openssl %s >openssl.log 2>&1"):format(helper.sh_quote(dir), args))
  assert(ok, "openssl " .. args .. ": " .. (helper.read_file(dir .. "/openssl.log") or ""))
end

local KEYGEN = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

-- a CA: NAME.key and NAME.pem in `dir`
local function make_ca(dir, name)
  openssl(dir, ("req -x509 %s -keyout %s.key -out %s.pem -days 2 -subj '/CN=rivya spec %s'"
    .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'")
    :format(KEYGEN, name, name, name))
end

-- a server key NAME.key and certificate NAME.pem for the subjectAltName
-- `san`, from a CSR signed by the CA `ca` (not self-signed)
local serial = 0
local function issue(dir, ca, name, san)
  serial = serial + 1
  openssl(dir, ("req %s -keyout %s.key -out %s.csr -subj '/CN=%s'"):format(KEYGEN, name, name, name))
  helper.write_file(("%s/%s.ext"):format(dir, name), "subjectAltName = " .. san
    .. "\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n")
  openssl(dir, ("x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial %d -days 2 -out %s.pem -extfile %s.ext")
    :format(name, ca, ca, serial, name, name))
end

-- the parts of the ledger a refused call must leave as they were
local function money(ledger)
  return { credits = ledger.credits, charges = ledger.charges, tasks_created = ledger.tasks_created,
    files = ledger.files, requests = ledger.requests }
end

describe("TLS", function()
  local dir, ca, sim, clients

  -- a client of the TLS simulator, closed after the test
  -- a client of this file's simulator, closed in teardown
  local function new_client(opts)
    local c = helper.client(sim, opts)
    clients[#clients + 1] = c
    return c
  end

  setup(function()
    dir = helper.tmpdir()
    make_ca(dir, "ca")
    make_ca(dir, "unrelated_ca")
    issue(dir, "ca", "server", "IP:127.0.0.1, DNS:localhost")
    issue(dir, "ca", "other", "DNS:other.example")
    ca = dir .. "/ca.pem"
    sim = helper.start_sim{
      args = { "--task-seconds", "0.2", "--tls-cert", dir .. "/server.pem", "--tls-key", dir .. "/server.key" },
      curl_args = { "--cacert", ca },
    }
  end)

  teardown(function()
    assert.is_true(sim:stop())
    helper.rmrf(dir)
  end)

  before_each(function()
    clients = {}
    sim:reset()
  end)

  after_each(function()
    for _, c in ipairs(clients) do c:close() end
  end)

  it("serves https on both listeners and says so on its start-up line", function()
    assert.is_true(sim.tls)
    assert.matches("^https://", sim.url)
    local status = helper.curl{ url = sim.cdn_url .. "/videos/task_none.mp4",
      extra = { "--cacert", helper.sh_quote(ca) } }
    assert.are.equal(404, status)
  end)

  it("refuses the simulator's certificate without ca_file, with a tls error and nothing charged", function()
    local before = money(sim:ledger())
    local c = new_client()
    local task, err = c:create(request())
    assert.is_nil(task)
    assert.are.equal("tls", err.code)
    assert.are.equal(1, err.attempts)   -- a refused certificate is not retried
    assert.is_nil(tostring(err):find(helper.KEY, 1, true))
    assert.is_nil(tostring(err.message):find(helper.KEY, 1, true))
    local after = sim:ledger()
    assert.are.same(before, money(after))
    -- the connection reached the simulator and ended at the handshake
    assert.are.equal(1, after.connections)
    local _, cerr = c:credits()
    assert.are.equal("tls", cerr.code)
  end)

  it("works end to end with ca_file: credits, create, wait, download from the CDN and upload", function()
    local c = new_client{ ca_file = ca }
    assert.are.equal(1000, c:credits())
    local task = assert(c:create(request()))
    task = assert(c:wait(task))
    assert.are.equal("succeeded", task.status)
    assert.matches("^https://127%.0%.0%.1:" .. sim.cdn_port .. "/", task.result.primary_url)
    local out = dir .. "/result.mp4"
    assert.are.equal(out, c:download(task, out))
    assert.are.equal(helper.read_file(SAMPLE), helper.read_file(out))
    local file = assert(c:upload(SAMPLE, { model = "wan-2-7-video" }))
    assert.matches("^https://127%.0%.0%.1:" .. sim.cdn_port .. "/files/", file.url)
    assert.are.equal(3732, file.size_bytes)
    local ledger = sim:ledger()
    assert.are.equal(920, ledger.credits)
    assert.are.equal(1, ledger.files)
    assert.are.equal(0, ledger.cdn_auth_violations)
    assert.are.equal(1, ledger.cdn_connections)
    -- every API call, polls and the upload included, went over one TLS connection; the
    -- live catalog is fetched once per client on a connection of its own, closed after
    assert.are.equal(2, ledger.connections)
  end)

  it("verifies the host name: localhost is in the certificate, other names are not", function()
    local c = new_client{ ca_file = ca, base_url = "https://localhost:" .. sim.port }
    assert.are.equal(1000, c:credits())
    local other = helper.start_sim{ args = { "--tls-cert", dir .. "/other.pem", "--tls-key", dir .. "/other.key" } }
    finally(function() other:stop() end)
    -- the certificate is sound for its own name (curl reaches it as other.example)...
    other.url = "https://other.example:" .. other.port
    other.curl_args = { "--cacert", ca, "--resolve", "other.example:" .. other.port .. ":127.0.0.1" }
    assert.are.equal(1000, other:ledger().credits)
    -- ...so refusing it at 127.0.0.1 is the host check, with the CA trusted
    local oc = new_client{ ca_file = ca, base_url = "https://127.0.0.1:" .. other.port }
    local credits, err = oc:credits()
    assert.is_nil(credits)
    assert.are.equal("tls", err.code)
    assert.is_nil(tostring(err):find(helper.KEY, 1, true))
    local task, cerr = oc:create(request())
    assert.is_nil(task)
    assert.are.equal("tls", cerr.code)
    local ledger = other:ledger()
    assert.are.equal(0, ledger.requests)
    assert.are.equal(0, ledger.charges)
    assert.are.equal(2, ledger.connections)
  end)

  it("raises at rivya.new for a ca_file that is missing, a directory or not PEM", function()
    local cases = {
      { dir .. "/missing.pem", "No such file" },
      { dir, "directory" },
      { dir .. "/server.ext", "no PEM certificate" },
    }
    for _, case in ipairs(cases) do
      local ok, msg = pcall(rivya.new, { api_key = helper.KEY, base_url = sim.url, ca_file = case[1] })
      assert.is_false(ok)
      assert.truthy(msg:find("ca_file", 1, true), msg)
      assert.truthy(msg:find(case[1], 1, true), msg)
      assert.truthy(msg:find(case[2], 1, true), msg)
      assert.is_nil(msg:find(helper.KEY, 1, true))
    end
  end)

  it("makes rivya-sim exit with a clear message for TLS flags it cannot use", function()
    local bin = os.getenv("RIVYA_SIM") or (helper.ROOT .. "/build/rivya-sim")
    local function run(cert, key)
      local args = { "--port 0 --cdn-port 0 --max-lifetime 5" }
      if cert then args[#args + 1] = "--tls-cert " .. helper.sh_quote(dir .. "/" .. cert) end
      if key then args[#args + 1] = "--tls-key " .. helper.sh_quote(dir .. "/" .. key) end
      local p = io.popen(("%s %s 2>&1 >/dev/null; echo \"rc=$?\""):format(helper.sh_quote(bin),
        table.concat(args, " ")))
      local out = p:read("*a")
      p:close()
      return out
    end
    local cases = {
      { "server.pem", nil, "rc=2", "--tls-cert needs --tls-key" },
      { "missing.pem", "server.key", "rc=2", "cannot read " .. dir .. "/missing.pem" },
      { "server.ext", "server.key", "rc=2", "holds no PEM CERTIFICATE" },
      { "server.pem", "server.pem", "rc=2", "holds no PEM PRIVATE KEY" },
      { "server.pem", "other.key", "rc=1", "certificate and key are not usable together" },
    }
    for _, case in ipairs(cases) do
      local out = run(case[1], case[2])
      assert.truthy(out:find(case[3], 1, true), out)
      assert.truthy(out:find(case[4], 1, true), out)
    end
  end)

  describe("ca_file adds to the system trust store", function()
    -- one GET through the C core with `system_ca` standing for the system bundle
    local function fetch(system_ca, ca_file)
      local session = core.session{ system_ca = system_ca, ca_file = ca_file }
      local t = session:start{ url = sim.url .. "/api/v1/models", connect_timeout = 10, timeout = 30 }
      while not t:done() do session:step(0.05) end
      local status, kind = t:result()
      session:close()
      return status or kind
    end

    it("keeps trusting the system bundle when ca_file names another CA", function()
      assert.are.equal(200, fetch(ca, dir .. "/unrelated_ca.pem"))
    end)

    it("trusts ca_file next to a system bundle that does not hold its CA", function()
      assert.are.equal(200, fetch(dir .. "/unrelated_ca.pem", ca))
    end)

    it("trusts neither when the server's CA is in neither", function()
      assert.are.equal("tls", fetch(dir .. "/unrelated_ca.pem", dir .. "/unrelated_ca.pem"))
    end)
  end)

  describe("plain http", function()
    it("is refused for a host other than loopback, naming allow_http", function()
      for _, url in ipairs{ "http://example.com", "http://127.0.0.1.example.com", "http://localhost.example.com:80" } do
        local ok, msg = pcall(rivya.new, { api_key = helper.KEY, base_url = url })
        assert.is_false(ok, url)
        assert.truthy(msg:find("allow_http", 1, true), msg)
        assert.is_nil(msg:find(helper.KEY, 1, true))
      end
    end)

    it("is allowed to a host named in allow_http, and only to that one", function()
      local c = rivya.new{ base_url = "http://example.com", allow_http = "example.com" }
      assert.are.equal("http://example.com", c.origin)
      c:close()
      assert.has_error(function()
        rivya.new{ base_url = "http://example.com", allow_http = "example.org" }
      end)
    end)

    it("is allowed to loopback without opting in", function()
      for _, url in ipairs{ "http://localhost:1", "http://127.0.0.1:1", "http://[::1]:1" } do
        local c = rivya.new{ base_url = url }
        assert.are.equal(url, c.origin)
        c:close()
      end
    end)
  end)
end)
