-- rivya.validate of a wan-2-7-video request: rivya at 45917ff (the model
-- compiled into C as static tables) against this tree (the model compiled
-- at run time from the catalog snapshot into C structures), same run.
--   make bench   (or: lua5.4 bench/validate.lua [rounds] [n])
-- The old rivya is built from `git archive 45917ff` in a temporary directory.
-- Each round runs both sides as fresh processes, alternating; the table
-- gives the median CPU time per validation (os.clock over n calls).
local helper = require "helper"

local ROUNDS = tonumber(arg and arg[1]) or 5
local N = tonumber(arg and arg[2]) or 200000
local BASE = "45917ff"
local LUA = os.getenv("LUA") or "lua5.4"
local q = helper.sh_quote

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function median(t)
  table.sort(t)
  local n = #t
  local h = math.floor(n / 2)
  return n % 2 == 1 and t[h + 1] or (t[h] + t[h + 1]) / 2
end

local root = helper.ROOT
local old = helper.tmpdir() .. "/rivya-" .. BASE
local out, ok = sh(("mkdir -p %s && git -C %s archive %s | tar -x -C %s && make -C %s build BUILD=build >/dev/null")
  :format(q(old), q(root), BASE, q(old), q(old)))
assert(ok, "building rivya " .. BASE .. " failed:\n" .. out)

local function side(dir)
  return ("LUA_PATH=%s LUA_CPATH=%s %s %s %d"):format(
    q(dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;;"), q(dir .. "/build/?.so;;"),
    LUA, q(root .. "/bench/validate/loop.lua"), N)
end

local before, after = {}, {}
for round = 1, ROUNDS do
  for _, s in ipairs({ { old, before }, { root, after } }) do
    local o, good = sh(side(s[1]))
    assert(good and tonumber(o), o)
    s[2][round] = tonumber(o) / N * 1e6
  end
end
local b, a = median(before), median(after)
print(("#### validate (`bench/validate.lua`, %s, %d rounds of %d calls, medians)\n")
  :format(os.date("!%Y-%m-%d %H:%M UTC"), ROUNDS, N))
print("| rivya.validate, wan-2-7-video, every param + 2 references | µs per call | vs " .. BASE .. " | goal |")
print("|---|---|---|---|")
print(("| rivya %s (model as static C tables) | %.2f | 1.00× | — |"):format(BASE, b))
print(("| this tree (catalog snapshot compiled to C at run time) | %.2f | %.2f× | ≤ 1.2× |"):format(a, a / b))
