-- One polling pass through rivya: GET /generations/{id} for every id in a
-- file, `rounds` times, through rivya.gather with `concurrency` at once.
--   lua5.4 bench/concurrency/poll_rivya.lua BASE_URL KEY IDS_FILE ROUNDS CONCURRENCY
local rivya = require "rivya"

local base_url, key, ids_file = arg[1], arg[2], arg[3]
local rounds, concurrency = tonumber(arg[4]), tonumber(arg[5])
local ids = {}
for line in io.lines(ids_file) do ids[#ids + 1] = line end

local client = rivya.new{ api_key = key, base_url = base_url }
local fns = {}
for r = 1, rounds do
  for i, id in ipairs(ids) do
    fns[(r - 1) * #ids + i] = function() return assert(client:get(id)).status end
  end
end
local results = rivya.gather(fns, { concurrency = concurrency })
for i = 1, #fns do assert(results[i][1], results[i][2]) end
client:close()
