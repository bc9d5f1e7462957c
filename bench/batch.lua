-- Batches of 1,000, 10,000 and 100,000 lines through `rivya batch` against
-- rivya-sim on loopback: client CPU per line (user + system of the rivya
-- process only), peak RSS and wall time, from GNU time. Each line is a
-- distinct request, created, polled, downloaded and recorded in the
-- folder's ledger (DIR/.rivya/ledger.db).
--   lua5.4 bench/batch.lua            (BENCH_SIZES=1000,10000 for a shorter run)
-- Goal (issue 11): CPU per line at 100,000 <= 1.3 x at 1,000; peak RSS < 64 MB.
local helper = require "helper"
local compat = require "rivya.compat"

local q = helper.sh_quote
local SIZES = {}
local DEFAULT_SIZES = os.getenv("BENCH_QUICK") and "1000,10000" or "1000,10000,100000"
for n in (os.getenv("BENCH_SIZES") or DEFAULT_SIZES):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(n) end
local CONCURRENCY = tonumber(os.getenv("BENCH_CONCURRENCY") or "32")

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function machine()
  local cpu = "unknown CPU"
  for line in io.lines("/proc/cpuinfo") do
    local m = line:match("^model name%s*:%s*(.+)$")
    if m then cpu = m break end
  end
  return ("%s, %s, %s cores, %s"):format(os.date("!%Y-%m-%d %H:%M UTC"), (sh("uname -m"):gsub("%s+$", "")),
    (sh("nproc"):gsub("%s+$", "")), cpu)
end

local function run(n)
  local dir = helper.tmpdir()
  local sim = helper.start_sim{ args = { "--task-seconds", "0", "--credits", tostring(n * 80 + 80), "--quiet" } }
  local f = assert(io.open(dir .. "/jobs.jsonl", "wb"))
  for i = 1, n do
    f:write(('{"prompt":"Batch bench line %d: a paper boat on a rainy street","params":{"duration":5,"seed":%d}}\n')
      :format(i, i % 2147483647))
  end
  f:close()
  local cmd = ("cd %s && env RIVYA_BASE_URL=%s RIVYA_API_KEY=%s RIVYA_LEDGER=off RIVYA_POLL_INTERVAL=0.02 "
    .. "/usr/bin/time -f '%%e %%U %%S %%M' -o time.txt %s batch jobs.jsonl --out-dir out -c %d -q "
    .. ">stdout.txt 2>stderr.txt"):format(q(dir), q(sim.url), q(helper.KEY), q(helper.ROOT .. "/bin/rivya"),
    CONCURRENCY)
  local _, how, code = compat.execute(cmd)
  local wall, user, sys, rss = helper.read_file(dir .. "/time.txt"):match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)")
  local ledger = sim:ledger()
  local lines = select(2, (helper.read_file(dir .. "/stdout.txt") or ""):gsub("succeeded", ""))
  local integrity = sh(("sqlite3 %s 'PRAGMA integrity_check'"):format(q(dir .. "/out/.rivya/ledger.db")))
  sim:stop()
  assert(how == "exit" and code == 0, "rivya batch failed: " .. (helper.read_file(dir .. "/stderr.txt") or ""))
  helper.rmrf(dir)
  return { n = n, wall = tonumber(wall), cpu = tonumber(user) + tonumber(sys), rss = tonumber(rss) / 1024,
    tasks = ledger.tasks_created, succeeded = lines - 1, integrity = integrity:gsub("%s+$", "") }
end

print("machine: " .. machine())
print(("concurrency %d, rivya-sim --task-seconds 0, poll interval 0.02 s"):format(CONCURRENCY))
print("| lines | client CPU | CPU per line | peak RSS | wall | tasks created | ledger integrity |")
print("|---:|---:|---:|---:|---:|---:|---|")
local first
for _, n in ipairs(SIZES) do
  local r = run(n)
  first = first or r
  print(("| %d | %.1f s | %.3f ms | %.1f MB | %.1f s | %d | %s |"):format(r.n, r.cpu, r.cpu / r.n * 1000, r.rss,
    r.wall, r.tasks, r.integrity))
  io.stdout:flush()
  if r ~= first then
    print(("  CPU per line vs %d lines: %.2fx"):format(first.n, (r.cpu / r.n) / (first.cpu / first.n)))
  end
end
