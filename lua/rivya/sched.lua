--- The coroutine scheduler behind rivya.gather and rivya.sleep.
-- Inside a function run by gather, waiting (for a transfer, a sleep or child
-- functions) yields to the scheduler; outside, the same waits block in the
-- kernel. Yields only ever happen here, in Lua: never across a C frame.
local core = require "rivya.core"

local sched = {}

local now, create, resume, yield, running, status =
  core.now, coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local huge = math.huge

-- coroutine -> its scheduler (weak: a finished coroutine is forgotten)
local owner = setmetatable({}, { __mode = "k" })

local Scheduler = {}
Scheduler.__index = Scheduler

--- The scheduler driving the running coroutine, or nil (blocking mode).
function sched.current()
  return owner[running()]
end

local function new_scheduler()
  return setmetatable({ waiting = {}, ready = {}, count = 0 }, Scheduler)
end

-- A waiter is {co=, transfer=, session=, wake=, children=}: runnable when its
-- transfer is done, its wake time passed, or its children all finished.
function Scheduler:spawn(fn, on_done)
  local co = create(function() return table.pack(fn()) end)
  owner[co] = self
  self.count = self.count + 1
  self.ready[#self.ready + 1] = { co = co, on_done = on_done }
end

function Scheduler:run_one(w)
  local ok, res = resume(w.co)
  if status(w.co) == "dead" then
    self.count = self.count - 1
    owner[w.co] = nil
    if ok then w.on_done(res) else w.on_done(table.pack(nil, res), res) end
    return
  end
  if type(res) ~= "table" or not res.rivya_wait then
    -- a plain coroutine.yield() from user code: run it again on the next round
    self.ready[#self.ready + 1] = w
    return
  end
  res.co, res.on_done = w.co, w.on_done
  self.waiting[#self.waiting + 1] = res
end

local function is_runnable(w, t)
  if w.transfer and w.transfer:done() then return true end
  if w.wake and t >= w.wake then return true end
  if w.children and w.children.left == 0 then return true end
  return false
end

--- Run until every spawned coroutine has finished.
function Scheduler:loop()
  while self.count > 0 do
    local ready = self.ready
    self.ready = {}
    for i = 1, #ready do self:run_one(ready[i]) end
    if #self.ready == 0 and self.count > 0 then
      -- nothing to run: wait for I/O or the earliest wake-up
      local t = now()
      local wake, sessions, nsess = huge, {}, 0
      for _, w in ipairs(self.waiting) do
        if w.wake and w.wake < wake then wake = w.wake end
        if w.session and not sessions[w.session] then
          sessions[w.session] = true
          nsess = nsess + 1
          sessions[nsess] = w.session
        end
      end
      local runnable = false
      for _, w in ipairs(self.waiting) do
        if is_runnable(w, t) then runnable = true break end
      end
      if not runnable then
        local timeout = wake == huge and 1 or math.max(wake - t, 0)
        if nsess == 1 then
          sessions[1]:step(timeout)
        elseif nsess > 1 then
          local fds = {}
          for i = 1, nsess do
            local st = sessions[i]:timeout()
            if st and st < timeout then timeout = st end
            fds[i] = sessions[i]:pollfd()
          end
          core.poll(fds, timeout)
          for i = 1, nsess do sessions[i]:step() end
        else
          core.sleep(timeout)
        end
      else
        for i = 1, nsess do sessions[i]:step() end
      end
      t = now()
      local still = {}
      for _, w in ipairs(self.waiting) do
        if is_runnable(w, t) then
          self.ready[#self.ready + 1] = w
        else
          still[#still + 1] = w
        end
      end
      self.waiting = still
    end
  end
end

--- Wait for a transfer of `session` to finish. `tick` (seconds, optional)
-- bounds each wait so `on_tick` (progress reporting) runs between steps.
-- `waiter(pollable, timeout)`, when given, waits instead of blocking: a
-- foreign event loop's wait (cqueues.poll, a luv poll handle and a yield).
function sched.await(session, transfer, tick, on_tick, waiter, pollable)
  local s = owner[running()]
  while not transfer:done() do
    if s then
      yield({ rivya_wait = true, session = session, transfer = transfer, wake = tick and now() + tick or nil })
    elseif waiter then
      local t = session:timeout()
      if tick and (not t or t > tick) then t = tick end
      waiter(pollable, t or 1)
      session:step()
    else
      session:step(tick or 1)
    end
    if on_tick then on_tick() end
  end
end

--- Sleep `seconds`: yields inside gather, blocks in the kernel outside.
function sched.sleep(seconds, waiter)
  if type(seconds) ~= "number" then
    error("rivya.sleep: seconds must be a number, got " .. type(seconds), 2)
  end
  if seconds <= 0 then seconds = 0 end
  if owner[running()] then
    yield({ rivya_wait = true, wake = now() + seconds })
  elseif waiter then
    local deadline = now() + seconds
    repeat waiter(nil, deadline - now()) until now() >= deadline
  else
    core.sleep(seconds)
  end
end

--- Run functions as coroutines; results[i] == table.pack(fns[i]()).
-- An error raised in one function lands in its slot as (nil, err).
-- opts.concurrency bounds how many run at once.
function sched.gather(fns, opts)
  if type(fns) ~= "table" then
    error("rivya.gather: expected an array of functions, got " .. type(fns), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("rivya.gather: opts must be a table", 2) end
  for k in pairs(opts) do
    if k ~= "concurrency" then error("rivya.gather: unknown option '" .. tostring(k) .. "'", 2) end
  end
  local n = #fns
  for i = 1, n do
    if type(fns[i]) ~= "function" then
      error(("rivya.gather: fns[%d] is a %s, not a function"):format(i, type(fns[i])), 2)
    end
  end
  local limit = opts.concurrency or n
  if math.type(limit) ~= "integer" or limit < 1 then
    if limit ~= 0 or n ~= 0 then
      error("rivya.gather: concurrency must be a positive integer", 2)
    end
  end
  local results = {}
  local parent = owner[running()]
  local s = parent or new_scheduler()
  local children = { left = n }
  local next_index = 1
  local function start_next()
    if next_index > n then return end
    local i = next_index
    next_index = next_index + 1
    s:spawn(fns[i], function(res)
      results[i] = res
      children.left = children.left - 1
      start_next()
    end)
  end
  for _ = 1, math.min(limit, n) do start_next() end
  if parent then
    if children.left > 0 then yield({ rivya_wait = true, children = children }) end
  else
    s:loop()
  end
  return results
end

return sched
