-- Upload and download of a 95 MB video: rivya vs the curl CLI, same run.
--   make bench   (or: lua5.4 bench/files.lua [rounds])
-- Reports throughput ratios and rivya's peak RSS growth during each transfer.
local helper = require "helper"
local rivya = require "rivya"
local core = require "rivya.core"
local compat = require "rivya.compat"

local ROUNDS = tonumber(arg and arg[1]) or 5
local SIZE = 95000000

local function status_kb(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- reset the high-water mark so VmHWM measures this transfer alone
local function reset_hwm()
  local f = io.open("/proc/self/clear_refs", "w")
  if f then f:write("5") f:close() end
end

local function median(t)
  table.sort(t)
  local n = #t
  local h = math.floor(n / 2)
  return n % 2 == 1 and t[h + 1] or (t[h] + t[h + 1]) / 2
end

local dir = helper.tmpdir()
local path = dir .. "/big.mp4"
do -- a real MP4 header followed by incompressible bytes, 95,000,000 in all
  local head = helper.read_file(helper.ROOT .. "/sim/sample.mp4")
  helper.write_file(path, head)
  assert(compat.execute(("head -c %d /dev/urandom >> %s"):format(SIZE - #head, helper.sh_quote(path))))
end

local sim = helper.start_sim{ args = { "--quiet", "--credits", "1000000" } }
local client = rivya.new{ api_key = sim.key, base_url = sim.url }

local up_rivya, up_curl, down_rivya, down_curl, up_rss, down_rss = {}, {}, {}, {}, {}, {}
for round = 1, ROUNDS do
  sim:reset()
  -- rivya upload
  collectgarbage()
  local before = status_kb("VmRSS")
  reset_hwm()
  local t0 = core.now()
  assert(client:upload(path, { model = "wan-2-7-video" }))
  up_rivya[round] = core.now() - t0
  up_rss[round] = (status_kb("VmHWM") - before) / 1024
  -- curl -F upload, same file, same server
  sim:reset()
  t0 = core.now()
  assert(compat.execute(("curl -sS -o /dev/null -H %s -F 'file=@%s;type=video/mp4' -F kind=video "
    .. "-F model=wan-2-7-video %s/api/v1/files"):format(helper.sh_quote("Authorization: Bearer " .. sim.key),
    path, sim.url)))
  up_curl[round] = core.now() - t0
  -- downloads of the file the curl upload stored
  local stored = sim:ledger().files_list[1]
  local url = ("%s/files/%s/%s"):format(sim.cdn_url, stored.id, stored.name)
  collectgarbage()
  before = status_kb("VmRSS")
  reset_hwm()
  t0 = core.now()
  assert(client:download(url, dir .. "/down.mp4"))
  down_rivya[round] = core.now() - t0
  down_rss[round] = (status_kb("VmHWM") - before) / 1024
  os.remove(dir .. "/down.mp4")
  t0 = core.now()
  assert(compat.execute(("curl -sS -o %s %s"):format(helper.sh_quote(dir .. "/down2.mp4"), url)))
  down_curl[round] = core.now() - t0
  os.remove(dir .. "/down2.mp4")
end
client:close()
sim:stop()
helper.rmrf(dir)

local function mbps(t) return SIZE / t / 1e6 end
local cpu = "unknown CPU"
for line in io.lines("/proc/cpuinfo") do
  local m = line:match("^model name%s*:%s*(.+)$")
  if m then cpu = m break end
end
local nproc = io.popen("nproc"):read("*l")
local out = {}
out[#out + 1] = ("### Files: 95 MB upload and download on loopback (%s, %s cores %s, %d rounds, medians)")
  :format(os.date("!%Y-%m-%d"), nproc, cpu, ROUNDS)
out[#out + 1] = ""
out[#out + 1] = "| transfer | rivya MB/s | curl CLI MB/s | rivya / curl | rivya peak RSS growth |"
out[#out + 1] = "|---|---|---|---|---|"
out[#out + 1] = ("| upload (multipart, streamed) | %.0f | %.0f | %.2f× | %.1f MB |"):format(mbps(median(up_rivya)),
  mbps(median(up_curl)), median(up_curl) / median(up_rivya), median(up_rss))
out[#out + 1] = ("| download (temp file + rename) | %.0f | %.0f | %.2f× | %.1f MB |"):format(
  mbps(median(down_rivya)), mbps(median(down_curl)), median(down_curl) / median(down_rivya), median(down_rss))
print(table.concat(out, "\n"))
return out
