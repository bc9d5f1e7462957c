--- Shared fixtures for the specs: a real rivya-sim process on 127.0.0.1.
-- Each spec file starts its own simulator in `setup` and stops it in
-- `teardown`, so files never share server state. Nothing here reaches
-- beyond loopback.
local cjson = require "cjson.safe"
local compat = require "rivya.compat"

local helper = {}

helper.KEY = "rvya_sk_test_0123456789abcdef"
helper.REVOKED_KEY = "rvya_sk_revoked_0000"
helper.EXPIRED_KEY = "rvya_sk_expired_0000"
helper.SCOPED_KEY = "rvya_sk_scoped_0000"

local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  return (src:match("^(.*)/spec/[^/]*$") or ".")
end
--- The repository's root as an absolute path (specs run subprocesses elsewhere).
local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local f = io.popen("cd '" .. p:gsub("'", "'\\''") .. "' && pwd")
  local r = f:read("*l")
  f:close()
  return r
end
helper.ROOT = abspath(root())

--- The interpreter the specs run (the Makefile's LUA: lua5.4, luajit, ...);
-- subprocesses (bin/rivya, examples) run under it too.
helper.LUA = os.getenv("RIVYA_LUA") or "lua5.4"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.sh_quote = sh_quote

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
helper.read_file = read_file

function helper.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

function helper.sleep(s)
  compat.execute("sleep " .. string.format("%.3f", s))
end

--- A fresh scratch directory, removed by helper.cleanup(dir).
function helper.tmpdir()
  local p = io.popen("mktemp -d " .. sh_quote((os.getenv("TMPDIR") or "/tmp") .. "/rivya-spec.XXXXXX"))
  local dir = p:read("*l")
  p:close()
  return dir
end

function helper.rmrf(dir)
  if dir and dir:match("^/tmp/") or (dir and dir:match("rivya%-spec")) then
    compat.execute("rm -rf " .. sh_quote(dir))
  end
end

--- The unsigned 32-bit integer at byte `pos` of s, big-endian (`le`:
-- little-endian): string.unpack(">I4") on every Lua.
function helper.u32(s, pos, le)
  local a, b, c, d = s:byte(pos, pos + 3)
  if le then a, b, c, d = d, c, b, a end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

--- Run fn() with LuaJIT's compiler off and its traces flushed (elsewhere
-- just fn()): traces are garbage-collected objects, compiled and flushed at
-- the JIT's whim, and would blur a measure of the heap.
function helper.heap_steady(fn, ...)
  local resume = helper.jit_pause()
  local r = compat.pack(pcall(fn, ...))
  resume()
  if not r[1] then error(r[2], 0) end
  return compat.unpack(r, 2, r.n)
end

--- Full collections until the heap stops shrinking (at most 30): LuaJIT
-- halves its string table at most once a cycle, so after a spec that made
-- many strings, the shrinking would land inside a measure.
function helper.settle_heap()
  local kb = collectgarbage("count")
  for _ = 1, 30 do
    collectgarbage()
    local now = collectgarbage("count")
    if now >= kb then return end
    kb = now
  end
end

--- LuaJIT's compiler off and its traces flushed until the function
-- returned is called (for busted's finally); elsewhere nothing.
function helper.jit_pause()
  local jit = rawget(_G, "jit")
  if type(jit) ~= "table" then return function() end end
  jit.off()
  jit.flush()
  return function() jit.on() end
end

--- Run a shell command; returns its stdout and its exit as 5.2's
-- pipe:close() gives it (true | nil, "exit" | "signal", code): on Lua 5.1
-- and LuaJIT a pipe's close says nothing of the exit, so the shell reports it.
function helper.popen(cmd)
  local p = io.popen("{ " .. cmd .. "\n}; echo \"rivya-exit:$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)rivya%-exit:(%d+)\n?$")
  code = tonumber(code)
  if not code then return out, nil, "exit", -1 end
  if code == 0 then return body, true, "exit", 0 end
  if code > 128 then return body, nil, "signal", code - 128 end
  return body, nil, "exit", code
end

--- Names in a directory (without . and ..), sorted.
function helper.ls(dir)
  local names = {}
  local p = io.popen("ls -A " .. sh_quote(dir) .. " 2>/dev/null")
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

--- Open file descriptors of this process: the entries of /proc/<pid>/fd,
-- listed by a child (the pipe to it is not counted). The least of three
-- readings: a descriptor in the middle of being closed can show once, a
-- leaked one shows every time.
function helper.fd_count()
  local pid = (read_file("/proc/self/stat") or ""):match("^(%d+)")
  local dir = "/proc/" .. assert(pid, "no /proc/self/stat") .. "/fd"
  -- the pipe to the lister is left out, both its ends: until this process
  -- has closed its copy of the child's end (just after the spawn), the child
  -- can see it, and on a loaded machine three readings in a row did
  local script = 'me=$(readlink /proc/$$/fd/1); for f in ' .. dir .. '/*; do '
    .. 'l=$(readlink "$f") || continue; [ "$l" = "$me" ] || echo; done'
  local n = math.huge
  for _ = 1, 3 do
    local p = io.popen("sh -c " .. sh_quote(script))
    local count = 0
    for _ in p:lines() do count = count + 1 end
    p:close()
    n = math.min(n, count)
  end
  return n
end

--- The descriptor count once it has settled to `want`: descriptors a closed
-- client gave back can take a moment to go (a socket the peer is closing, a
-- handle awaiting its collection), so count again, collecting between counts,
-- for up to two seconds. A descriptor really leaked stays, and the count
-- returned then differs from `want`.
function helper.fd_count_settled(want)
  local n = helper.fd_count()
  for _ = 1, 20 do
    if n == want then break end
    collectgarbage()
    collectgarbage()
    helper.sleep(0.1)
    n = helper.fd_count()
  end
  return n
end

local Sim = {}
Sim.__index = Sim

--- Start rivya-sim. opts.args: extra command-line arguments (array);
-- opts.curl_args: arguments for every curl CLI call to it (--cacert for TLS).
-- Returns a Sim with port, cdn_port, url, cdn_url (https:// when the sim
-- serves TLS), tls, key, log (path).
function helper.start_sim(opts)
  opts = opts or {}
  local bin = os.getenv("RIVYA_SIM") or (helper.ROOT .. "/build/rivya-sim")
  local dir = helper.tmpdir()
  local args = {
    "--port", "0", "--cdn-port", "0", "--max-lifetime", "900",
    "--api-key", helper.KEY,
    "--revoked-key", helper.REVOKED_KEY,
    "--expired-key", helper.EXPIRED_KEY,
    "--scoped-key", helper.SCOPED_KEY,
  }
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = sh_quote(a) end
  local out, log, pidf = dir .. "/stdout", dir .. "/stderr", dir .. "/pid"
  local cmd = string.format("%s %s >%s 2>%s & echo $! >%s", sh_quote(bin),
    table.concat(quoted, " "), sh_quote(out), sh_quote(log), sh_quote(pidf))
  assert(compat.execute(cmd))
  local info
  for _ = 1, 400 do
    local line = read_file(out)
    if line and line:find("\n") then
      info = cjson.decode(line:match("^[^\n]*"))
      break
    end
    helper.sleep(0.025)
  end
  local pid = tonumber((read_file(pidf) or ""):match("%d+"))
  if not info then
    if pid then compat.execute("kill " .. pid .. " 2>/dev/null") end
    error("rivya-sim did not start: " .. (read_file(log) or "no log"))
  end
  local scheme = info.tls and "https" or "http"
  local sim = setmetatable({
    pid = pid, dir = dir, log = log, tls = info.tls == true,
    port = compat.tointeger(info.port), cdn_port = compat.tointeger(info.cdn_port),
    url = scheme .. "://127.0.0.1:" .. compat.tointeger(info.port),
    cdn_url = scheme .. "://127.0.0.1:" .. compat.tointeger(info.cdn_port),
    key = helper.KEY, curl_args = opts.curl_args,
  }, Sim)
  return sim
end

--- A client of `sim` for the specs: the spec key, fast retries and polls,
-- then each table of `...` laid over those defaults in turn (a spec file's
-- own defaults, then a test's options).
function helper.client(sim, ...)
  local o = { api_key = helper.KEY, base_url = sim.url, poll_interval = 0.05, retry_base = 0.01,
    retry_cap = 0.05 }
  for i = 1, select("#", ...) do
    for k, v in pairs(select(i, ...) or {}) do o[k] = v end
  end
  return require("rivya").new(o)
end

--- Run bin/rivya against `sim` in a scratch directory `dir`. o.env
-- overrides the environment (false unsets), o.stdin feeds it, o.cwd runs it
-- elsewhere, o.pty = {cols = n} runs it on a pseudo-terminal of that width
-- (script(1): stdout and stderr then both arrive in out). Returns
-- {code =, out =, err =, json = the stdout lines that are JSON objects}.
function helper.cli(sim, dir, args, o)
  o = o or {}
  local env = { RIVYA_BASE_URL = sim.url, RIVYA_API_KEY = helper.KEY, RIVYA_POLL_INTERVAL = "0.05",
    TERM = "dumb", XDG_STATE_HOME = dir .. "/state", RIVYA_LEDGER = dir .. "/ledger.db" }
  for k, v in pairs(o.env or {}) do env[k] = v end
  local unset, set = {}, {}
  for k, v in pairs(env) do
    if v == false then unset[#unset + 1] = "-u " .. k else set[#set + 1] = sh_quote(k .. "=" .. v) end
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = sh_quote(a) end
  local cmd = ("env %s %s %s %s"):format(table.concat(unset, " "), table.concat(set, " "),
    sh_quote(helper.ROOT .. "/bin/rivya"), table.concat(quoted, " "))
  if o.pty then
    cmd = ("script -qfec %s /dev/null"):format(sh_quote(("stty cols %d rows 24; exec %s"):format(o.pty.cols, cmd)))
  end
  local stdin = "/dev/null"
  if o.stdin then
    stdin = dir .. "/stdin"
    helper.write_file(stdin, o.stdin)
  end
  local _, how, code = compat.execute(("cd %s && %s <%s >%s 2>%s"):format(sh_quote(o.cwd or dir), cmd,
    sh_quote(stdin), sh_quote(dir .. "/out"), sh_quote(dir .. "/err")))
  local r = { code = how == "exit" and code or -1, out = read_file(dir .. "/out") or "",
    err = read_file(dir .. "/err") or "", json = {} }
  for line in r.out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then r.json[#r.json + 1] = cjson.decode(line) end
  end
  return r
end

--- Stop with SIGTERM and wait for the exit; returns true when it exited by itself.
function Sim:stop()
  if not self.pid then return true end
  compat.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  local gone = false
  for _ = 1, 200 do
    if not compat.execute("kill -0 " .. self.pid .. " 2>/dev/null") then gone = true break end
    helper.sleep(0.025)
  end
  if not gone then compat.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  self.stderr = read_file(self.log)
  -- `make spec` keeps every simulator's log there and scans them for the keys
  local keep = os.getenv("RIVYA_SIM_LOGS")
  if keep and keep ~= "" and self.stderr then
    helper.write_file(keep .. "/" .. self.dir:match("([^/]+)$") .. ".log", self.stderr)
  end
  helper.rmrf(self.dir)
  return gone
end

--- The simulator's stderr so far.
function Sim:log_text()
  return read_file(self.log) or self.stderr or ""
end

--- One HTTP request through the curl CLI (independent of rivya's client).
-- req: method, url (or path on the API listener), headers (table), body (string).
-- Returns status (integer), headers (lower-case names), body (string).
function helper.curl(req)
  local dir = helper.tmpdir()
  local args = { "curl", "-sS", "--max-time", tostring(req.max_time or 30),
    "-o", sh_quote(dir .. "/body"), "-D", sh_quote(dir .. "/headers"),
    "-w", "'%{http_code}'", "-X", sh_quote(req.method or "GET") }
  for k, v in pairs(req.headers or {}) do
    args[#args + 1] = "-H " .. sh_quote(k .. ": " .. v)
  end
  if req.body then
    helper.write_file(dir .. "/req", req.body)
    args[#args + 1] = "--data-binary @" .. sh_quote(dir .. "/req")
  end
  for _, a in ipairs(req.extra or {}) do args[#args + 1] = a end
  args[#args + 1] = sh_quote(req.url)
  local p = io.popen(table.concat(args, " ") .. " 2>/dev/null")
  local code = p:read("*a")
  p:close()
  local headers = {}
  for line in (read_file(dir .. "/headers") or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local body = read_file(dir .. "/body") or ""
  helper.rmrf(dir)
  return tonumber(code) or 0, headers, body
end

--- A request to the simulator's API listener; `auth` false sends no key.
-- Returns status, decoded JSON (or nil), headers, raw body.
function Sim:api(method, path, body, opts)
  opts = opts or {}
  local headers = opts.headers or {}
  if opts.key ~= false then
    headers["Authorization"] = headers["Authorization"] or ("Bearer " .. (opts.key or self.key))
  end
  if body ~= nil and type(body) ~= "string" then body = cjson.encode(body) end
  if body then headers["Content-Type"] = headers["Content-Type"] or "application/json" end
  local extra = {}
  for _, a in ipairs(self.curl_args or {}) do extra[#extra + 1] = sh_quote(a) end
  for _, a in ipairs(opts.extra or {}) do extra[#extra + 1] = a end
  local status, h, raw = helper.curl{ method = method, url = self.url .. path,
    headers = headers, body = body, extra = extra }
  return status, cjson.decode(raw), h, raw
end

--- The simulator's control API (no key): /__sim/...
function Sim:control(method, path, body)
  local status, json = self:api(method, "/__sim/" .. path, body, { key = false })
  assert(status >= 200 and status < 300, "control " .. path .. " answered " .. status)
  return json
end

--- Start spec/rawserver.lua (a scripted HTTP server, its own lua5.4
-- process) answering with `config` (see that file). Returns
-- { port, url, log (path of the request heads), stop() }.
function helper.rawserver(config)
  local function literal(v)
    if type(v) == "string" then return ("%q"):format(v) end
    return tostring(v)
  end
  local dir = helper.tmpdir()
  config.log = config.log or (dir .. "/requests")
  local lines = { "return {" }
  for k, v in pairs(config) do
    local val
    if type(v) == "table" then
      local parts = {}
      for kk, vv in pairs(v) do
        parts[#parts + 1] = (type(kk) == "number" and "" or ("[%q] = "):format(kk)) .. literal(vv)
      end
      val = "{ " .. table.concat(parts, ", ") .. " }"
    else
      val = literal(v)
    end
    lines[#lines + 1] = ("  %s = %s,"):format(k, val)
  end
  lines[#lines + 1] = "}"
  helper.write_file(dir .. "/config.lua", table.concat(lines, "\n") .. "\n")
  local lua = os.getenv("RIVYA_REAL_LUA") or "lua5.4"
  local out, pidf = dir .. "/stdout", dir .. "/pid"
  assert(compat.execute(("%s %s %s >%s 2>%s & echo $! >%s"):format(sh_quote(lua),
    sh_quote(helper.ROOT .. "/spec/rawserver.lua"), sh_quote(dir .. "/config.lua"), sh_quote(out),
    sh_quote(dir .. "/stderr"), sh_quote(pidf))))
  local port
  for _ = 1, 400 do
    port = tonumber((read_file(out) or ""):match("^(%d+)\n"))
    if port then break end
    helper.sleep(0.025)
  end
  local pid = tonumber((read_file(pidf) or ""):match("%d+"))
  assert(port, "rawserver did not start: " .. (read_file(dir .. "/stderr") or ""))
  return {
    port = port, url = "http://127.0.0.1:" .. port, log = config.log,
    requests = function()
      local heads = {}
      for head in (read_file(config.log) or ""):gmatch("(.-)%-%-\n") do heads[#heads + 1] = head end
      return heads
    end,
    stop = function()
      if pid then compat.execute("kill " .. pid .. " 2>/dev/null") end
      pid = nil
      helper.rmrf(dir)
    end,
  }
end

function Sim:ledger() return self:control("GET", "ledger") end
function Sim:reset() return self:control("POST", "reset", {}) end
function Sim:fault(f) return self:control("POST", "faults", f) end
function Sim:config(c) return self:control("POST", "config", c) end

return helper
