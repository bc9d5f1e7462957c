-- The same polling pass through Debian's lua-curl (luacurl 0.3, the easy
-- interface only, built for Lua 5.1/5.2): one reused handle, requests in
-- sequence over one kept-alive connection, each answer decoded with cjson.
--   lua5.1 bench/concurrency/poll_luacurl.lua BASE_URL KEY IDS_FILE ROUNDS
local curl = require "curl"
local cjson = require "cjson"

local base_url, key, ids_file = arg[1], arg[2], arg[3]
local rounds = tonumber(arg[4])
local ids = {}
for line in io.lines(ids_file) do ids[#ids + 1] = line end

local easy = curl.easy_init()
local chunks
easy:setopt(curl.OPT_HTTPHEADER, { "Authorization: Bearer " .. key, "Accept: application/json" })
easy:setopt(curl.OPT_WRITEFUNCTION, function(data, size)
  chunks[#chunks + 1] = data
  return size
end)
for _ = 1, rounds do
  for _, id in ipairs(ids) do
    chunks = {}
    easy:setopt(curl.OPT_URL, base_url .. "/api/v1/generations/" .. id)
    assert(easy:perform() == 0, "transfer failed")
    local task = cjson.decode(table.concat(chunks))
    assert(task.status, "no status")
  end
end
