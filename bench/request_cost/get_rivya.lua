-- N GETs of one task through rivya: `client:get` in N functions run by
-- rivya.gather with CONCURRENCY at once, or (CONCURRENCY 0) one call after
-- the other outside gather. The whole process is what bench/request_cost.lua
-- weighs: start-up, the client, every decoded task and the checks on it.
--   lua5.4 bench/request_cost/get_rivya.lua BASE_URL KEY TASK_ID N CONCURRENCY
local rivya = require "rivya"
local compat = require "rivya.compat"

local base_url, key, id = arg[1], arg[2], arg[3]
local n, concurrency = compat.tointeger(tonumber(arg[4])), compat.tointeger(tonumber(arg[5]))

local client = rivya.new{ api_key = key, base_url = base_url }
local function get()
  local task = assert(client:get(id))
  assert(task.id == id)
  return task.status
end
if concurrency == 0 then
  for _ = 1, n do get() end
else
  local fns = {}
  for i = 1, n do fns[i] = get end
  local results = rivya.gather(fns, { concurrency = concurrency })
  for i = 1, n do assert(results[i][1], results[i][2]) end
end
client:close()
