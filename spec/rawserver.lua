-- A scripted HTTP server for specs that need answers rivya-sim does not give
-- (a drip, a gzip body sent unasked, a giant header): run as its own process,
-- `lua5.4 spec/rawserver.lua CONFIG`, on 127.0.0.1. It prints its port on the
-- first line of stdout, then answers every connection, one at a time, with the
-- response CONFIG (a Lua file returning a table) describes:
--   status (200), reason, headers (array of "Name: value"), body (string) or
--   body_file (path), drip = { bytes = n, every = seconds } (the body in small
--   pieces), log (a path: each request's head is appended there, then "--"),
--   read_body (the request body, by Content-Length, is logged after its head),
--   routes (request path -> body file; other paths get a 404), no_length (the
--   body ends when the connection closes), length (a Content-Length to claim).
-- Started and stopped by helper.rawserver (spec/helper.lua).
local socket = require "socket"

local config = dofile(assert(arg[1], "usage: rawserver.lua CONFIG"))

local default_body = config.body or ""
if config.body_file then
  local f = assert(io.open(config.body_file, "rb"))
  default_body = f:read("*a")
  f:close()
end

local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
io.stdout:write(port, "\n")
io.stdout:flush()

local function log(head)
  if not config.log then return end
  local f = assert(io.open(config.log, "ab"))
  f:write(head, "--\n")
  f:close()
end

local function answer(c)
  c:settimeout(10)
  local lines = {}
  while true do
    local line = c:receive("*l")
    if not line or line == "" then break end
    lines[#lines + 1] = line
  end
  if #lines == 0 then return end
  local request = table.concat(lines, "\n") .. "\n"
  local length = tonumber(request:lower():match("\ncontent%-length:%s*(%d+)"))
  if length and config.read_body then request = request .. (c:receive(length) or "") .. "\n" end
  log(request)
  local path = lines[1]:match("^%u+ (%S+)")
  local body = default_body
  if config.routes then
    local file = config.routes[path]
    if not file then
      c:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      return
    end
    local f = assert(io.open(file, "rb"))
    body = f:read("*a")
    f:close()
  end
  local head = { ("HTTP/1.1 %d %s"):format(config.status or 200, config.reason or "OK") }
  for _, h in ipairs(config.headers or {}) do head[#head + 1] = h end
  if not config.no_length then head[#head + 1] = "Content-Length: " .. (config.length or #body) end
  head[#head + 1] = "Connection: close"
  c:send(table.concat(head, "\r\n") .. "\r\n\r\n")
  if config.drip then
    local i = 1
    while i <= #body do
      if not c:send(body:sub(i, i + config.drip.bytes - 1)) then return end
      i = i + config.drip.bytes
      socket.sleep(config.drip.every)
    end
  else
    c:send(body)
  end
end

while true do
  local c = server:accept()
  if c then
    pcall(answer, c)
    c:close()
  end
end
