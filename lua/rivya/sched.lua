--- The coroutine scheduler behind rivya.gather and rivya.sleep.
-- Inside a function run by gather, waiting (for a transfer, a sleep, a free
-- transfer slot or child functions) yields to the scheduler; outside, the
-- same waits block in the kernel, or call the client's `waiter` (a foreign
-- event loop's wait). Yields only ever happen here, in Lua: never across a C
-- frame, and user callbacks run in the waiting coroutine, between steps.
--
-- Costs stay flat with thousands of coroutines: a waiting coroutine is found
-- from the id of its transfer (the C session reports the ids of finished
-- transfers) or from a binary heap of wake-up times, never by a scan.
local core = require "rivya.core"
local errors = require "rivya.errors"

local sched = {}

local now, create, resume, yield, running, status =
  core.now, coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
-- Lua 5.4 only: elsewhere a coroutine has no to-be-closed values to run
local close = coroutine.close or function() end
local compat = require "rivya.compat"
local pack = compat.pack

--- Transfers one session runs at once for a scheduler; more wait in Lua, so
-- 10,000 coroutines do not hold 10,000 curl handles (about 12 KB each).
-- While a session's answers come over HTTP/1.x the bound is its
-- max_connections (session:limit()): a transfer beyond it would only wait in
-- curl's queue, and be tried again at each completion.
sched.MAX_ACTIVE = 128

-- the bound of `session`'s transfers in curl, for take_slot
local function limit_of(session)
  local n = session:limit()
  local max = sched.MAX_ACTIVE
  return (n and n < max) and n or max
end

--- Rounds of the scheduler loops so far: each waits once, for I/O or time.
-- (A busy loop would show here as a count that grows without waiting.)
sched.rounds = 0

--- Collections the schedulers ran to keep the heap near its live size.
sched.collections = 0

--- The heap a scheduler lets grow past what its last collection left (in
-- KB) is the larger of growth x live and live + GC_SLACK_KB.
sched.GC_SLACK_KB = 4096

-- the value a waiting coroutine yields; anything else is a user's own yield
local WAIT = setmetatable({}, { __name = "rivya.wait", __tostring = function() return "rivya.wait" end })

--- The token a parked coroutine yields from its own frame (see park_sleep).
sched.WAIT = WAIT

-- coroutine -> its record {co=, seq=, waiting=, group=, index=, id=, state=,
-- outer=}: at most 8 fields, so a record's hash part stays at 8 nodes (10,000
-- waiting coroutines); its scheduler is group.sched. While a park_call runs,
-- `co` is the coroutine standing in for the task's own (`outer`), and both
-- map to the record.
local record = setmetatable({}, { __mode = "k" })

local Scheduler = {}
Scheduler.__index = Scheduler

local function new_scheduler(gc_growth)
  local kb = collectgarbage("count")
  return setmetatable({
    gc_growth = gc_growth,       -- false: leave the heap to Lua's collector
    gc_limit = gc_growth and math.max(kb * gc_growth, kb + sched.GC_SLACK_KB),
    q = {}, qh = 1, qt = 0,      -- ready FIFO
    -- timers: a binary heap, earliest first, in three parallel arrays (no
    -- table per timer): wake time, waiting record, its seq when armed
    hat = {}, hw = {}, hseq = {}, hn = 0,
    count = 0,                   -- coroutines not finished
    sessions = {},               -- session -> per-session state (see :state)
    waiter = nil,                -- a foreign loop's wait, learned from clients
  }, Scheduler)
end

-- ---- ready queue and timers ------------------------------------------------------

function Scheduler:push_ready(w)
  local qt = self.qt + 1
  self.qt = qt
  self.q[qt] = w
end

function Scheduler:pop_ready()
  local qh = self.qh
  if qh > self.qt then return nil end
  local w = self.q[qh]
  self.q[qh] = nil
  if qh == self.qt then self.qh, self.qt = 1, 0 else self.qh = qh + 1 end
  return w
end

function Scheduler:add_timer(w, at)
  local hat, hw, hseq = self.hat, self.hw, self.hseq
  local i = self.hn + 1
  self.hn = i
  while i > 1 do
    -- (i - i % 2) / 2, not math.floor: no C call on a parked coroutine's
    -- stack (see "Parking"); a float index reads the same slot
    local p = (i - i % 2) / 2
    if hat[p] <= at then break end
    hat[i], hw[i], hseq[i] = hat[p], hw[p], hseq[p]
    i = p
  end
  hat[i], hw[i], hseq[i] = at, w, w.seq
end

-- Remove the earliest timer; returns its record and the seq it was armed with.
function Scheduler:pop_timer()
  local hat, hw, hseq, n = self.hat, self.hw, self.hseq, self.hn
  local w, seq = hw[1], hseq[1]
  local lat, lw, lseq = hat[n], hw[n], hseq[n]
  hat[n], hw[n], hseq[n] = nil, nil, nil
  n = n - 1
  self.hn = n
  if n > 0 then
    local i = 1
    while true do
      local c = 2 * i
      if c > n then break end
      if c < n and hat[c + 1] < hat[c] then c = c + 1 end
      if hat[c] >= lat then break end
      hat[i], hw[i], hseq[i] = hat[c], hw[c], hseq[c]
      i = c
    end
    hat[i], hw[i], hseq[i] = lat, lw, lseq
  end
  return w, seq
end

-- Reserve one of `st`'s transfer slots for `w`: true when it has one now,
-- false when it was put in line (Scheduler:release hands it over).
local function take_slot(st, w)
  if st.reserved[w] then return true end
  if st.active < st.limit and st.active < sched.MAX_ACTIVE then
    st.active = st.active + 1
    st.reserved[w] = true
    return true
  end
  st.st = st.st + 1
  st.slots[st.st] = w
  w.waiting = true
  return false
end

--- Make a waiting coroutine runnable, once, whatever it waited for. A
-- park_sleep that wants a transfer slot after its sleep (w.state set, no
-- w.id) takes one here, or goes on waiting in line for one.
function Scheduler:wake(w)
  if not w.waiting then return end
  w.seq = w.seq + 1   -- its pending timer entry, if any, is now stale
  local st = w.state
  if st then
    w.state = nil
    if w.id then
      st.pending[w.id] = nil
      st.transfers[w.id] = nil
      st.npending = st.npending - 1
      w.id = nil
    elseif not take_slot(self:state(st.session), w) then
      -- (the state afresh: a session closed meanwhile has a new one)
      return   -- in line: Scheduler:release wakes it with a slot
    end
  end
  w.waiting = false
  self:push_ready(w)
end

-- ---- per-session state: waiters by transfer id, transfer slots ---------------------

function Scheduler:state(session)
  local st = self.sessions[session]
  if not st then
    -- pending: transfer id -> waiting record; transfers: id -> its transfer;
    -- reserved: records holding a slot taken before their transfer started
    st = { session = session, pending = {}, transfers = {}, npending = 0, admitted = {}, active = 0,
      slots = {}, sh = 1, st = 0, reserved = {}, limit = limit_of(session) }
    self.sessions[session] = st
  end
  return st
end

-- A transfer slot of `st` is free again: hand it to the first coroutine
-- queued for one, as reserved (the slot stays counted), else count it free.
function Scheduler:release(st)
  local sh = st.sh
  if sh <= st.st then
    local w = st.slots[sh]
    st.slots[sh] = nil
    if sh == st.st then st.sh, st.st = 1, 0 else st.sh = sh + 1 end
    st.reserved[w] = true
    self:wake(w)
  else
    st.active = st.active - 1
  end
end

-- Wake the coroutines whose transfers on `st` finished; free their slots.
-- Returns true when the session was closed (every transfer aborted).
function Scheduler:drain(st)
  local ids, closed, lost = st.session:finished()
  local pending, admitted = st.pending, st.admitted
  -- an HTTP/2 answer lifts the bound (a session's first answers tell)
  if ids[1] and st.limit < sched.MAX_ACTIVE then st.limit = limit_of(st.session) end
  for i = 1, #ids do
    local id = ids[i]
    local w = pending[id]
    if w then self:wake(w) end
    if admitted[id] then
      admitted[id] = nil
      self:release(st)
    end
  end
  if lost then   -- a report was lost for want of memory: look at each one
    local transfers = st.transfers
    for id, w in pairs(pending) do
      if transfers[id]:done() then self:wake(w) end
    end
    for id, t in pairs(admitted) do
      if t:done() then
        admitted[id] = nil
        self:release(st)
      end
    end
  end
  if closed then
    -- every transfer was aborted: wake who waits in line for a slot too;
    -- their next call finds the client closed
    while st.sh <= st.st do self:release(st) end
  end
  return closed
end

-- ---- the loop ----------------------------------------------------------------------

--- A new coroutine running `fn`; `group` (a gather) learns of its end
-- through group:done(index, results).
function Scheduler:spawn(fn, group, index)
  local co = create(fn)
  local w = { co = co, seq = 0, waiting = false, group = group, index = index }
  record[co] = w
  self.count = self.count + 1
  self:push_ready(w)
end

-- A coroutine (or its stand-in) died with an error between taking a
-- transfer slot and starting its transfer: give the slot back.
local function drop_reserved(self, w)
  for _, st in pairs(self.sessions) do
    if st.reserved[w] then
      st.reserved[w] = nil
      self:release(st)
    end
  end
end

-- what resuming `co` (w's coroutine) returned: finished (results packed), a
-- wait, or a user's yield

local resumed

-- w's coroutine `co` ended (or is made to end): finished, or a park_call's
-- stand-in done
local function ended(self, w, co, ok, ...)
  record[co] = nil
  if not ok then drop_reserved(self, w) end
  local outer = w.outer
  if outer then
    -- a park_call ended: the task's own coroutine goes on, with (ok, ...)
    w.co, w.outer = outer, nil
    return resumed(self, w, outer, resume(outer, ok, ...))
  end
  self.count = self.count - 1
  w.group:done(w.index, ok and pack(...) or pack(nil, (...)))
end

function resumed(self, w, co, ok, ...)
  if status(co) == "dead" then
    return ended(self, w, co, ok, ...)
  elseif ... ~= WAIT then
    if select("#", ...) > 0 then
      -- coroutine.yield(v, ...) from user code: inside gather the yields are
      -- rivya's, and those values would go nowhere. The function fails (and
      -- before 5.4, with no coroutine.close, its coroutine is left to the GC).
      close(co)
      return ended(self, w, co, false, "rivya.gather: coroutine.yield(" .. tostring((...)) .. ", ...) inside "
        .. "gather: rivya owns the yields there (a bare coroutine.yield() lets the others run; "
        .. "run your own coroutines with coroutine.wrap inside the function)")
    end
    -- a bare coroutine.yield() from user code: run it again next round
    self:push_ready(w)
  end
end

function Scheduler:run(w)
  local co = w.co
  resumed(self, w, co, resume(co))
end

local BIG = 60   -- seconds: the longest single wait with no deadline at all

-- The waits in the kernel return when a signal arrives (core.sleep, step and
-- poll never restart), and lua.c's SIGINT handler (core.trap_terminate's, for
-- SIGTERM) raises "interrupted!" ("terminated!") at the next instruction:
-- `blocking` runs a wait and turns that into the rivya error `interrupted`.
local function signal_error(e)
  if type(e) == "string" then
    if e:find("interrupted!", 1, true) then
      return errors.new("interrupted", "interrupted by a signal (SIGINT)", { signal = "SIGINT" })
    elseif e:find("terminated!", 1, true) then
      return errors.new("interrupted", "terminated by a signal (SIGTERM)", { signal = "SIGTERM" })
    end
  end
  return e
end

local function blocking(f, a, b)
  local ok, e = pcall(f, a, b)
  if not ok then error(signal_error(e), 0) end
end

--- Wait for I/O on the sessions in use or for the earliest timer (not at
-- all when something is ready), step the sessions and wake who can run.
function Scheduler:wait_io()
  sched.rounds = sched.rounds + 1
  local list, n = {}, 0
  for session, st in pairs(self.sessions) do
    if st.npending > 0 or st.active > 0 then
      if self:drain(st) then
        self.sessions[session] = nil   -- closed: its waiters were all woken
      else
        n = n + 1
        list[n] = st
      end
    end
  end
  local timeout
  if self.qh <= self.qt then
    timeout = 0
  elseif self.hn > 0 then
    timeout = self.hat[1] - now()
    if timeout < 0 then timeout = 0 end
  end
  if n == 0 then
    if timeout == nil then
      error("rivya.gather: every function is waiting and nothing can wake them", 0)
    end
    if timeout > 0 then
      if self.waiter then self.waiter(nil, timeout) else core.sleep(timeout) end
    end
  elseif n == 1 then
    local st = list[1]
    local session = st.session
    if st.waiter then
      local ct = session:timeout()
      if ct and (not timeout or ct < timeout) then timeout = ct end
      if timeout ~= 0 then st.waiter(st.pollable, timeout) end
      session:step()
    else
      session:step(timeout or BIG)
    end
  else
    local fds, waiter, pollable = {}, nil, nil
    for i = 1, n do
      local st = list[i]
      local ct = st.session:timeout()
      if ct and (not timeout or ct < timeout) then timeout = ct end
      fds[i] = st.session:pollfd()
      if st.waiter and not waiter then waiter, pollable = st.waiter, st.pollable end
    end
    if timeout ~= 0 then
      if waiter then
        -- a foreign loop waits on one pollable: look at the others often
        waiter(pollable, math.min(timeout or BIG, 0.05))
      else
        core.poll(fds, timeout or BIG)
      end
    end
    for i = 1, n do list[i].session:step() end
  end
  for i = 1, n do
    local st = list[i]
    if self:drain(st) then self.sessions[st.session] = nil end
  end
  if self.hn > 0 then
    local t = now()
    local hat = self.hat
    while self.hn > 0 and hat[1] <= t do
      local w, seq = self:pop_timer()
      if seq == w.seq then self:wake(w) end
    end
  end
end

--- Keep the heap near its live size. Lua's collector lets the heap grow to
-- twice what is live before it starts a cycle, and 10,000 coroutines waiting
-- on polls are a large live set: the polls' garbage would double it. Between
-- rounds, when the heap has grown past gc_limit (gc_growth x what the last
-- collection left, at least GC_SLACK_KB more), collect fully, then move the
-- limit. A full collection works in any GC mode; with 10,000 tasks in flight
-- it takes about 20 ms, once per few thousand polls.
function Scheduler:tend_heap()
  if not self.gc_growth or collectgarbage("count") <= self.gc_limit then return end
  collectgarbage("collect")
  sched.collections = sched.collections + 1
  local kb = collectgarbage("count")
  self.gc_limit = math.max(kb * self.gc_growth, kb + sched.GC_SLACK_KB)
end

--- Run until every spawned coroutine has finished.
function Scheduler:loop()
  while self.count > 0 do
    -- what is ready now runs; what becomes ready meanwhile runs next
    -- round, after I/O has been looked at
    for _ = 1, self.qt - self.qh + 1 do
      local w = self:pop_ready()
      if not w then break end
      self:run(w)
    end
    self:tend_heap()
    if self.count > 0 then
      if self.waiter and not compat.yield_in_pcall and running() then
        -- PUC 5.1: a foreign loop's waiter yields, which no pcall can cross
        -- (its loop, not a kernel wait here, sees the signals)
        self:wait_io()
      else
        blocking(self.wait_io, self)
      end
    end
  end
end

-- ---- what the client calls ------------------------------------------------------------


-- Parking. Between polls, 10,000 coroutines may wait at once; each keeps
-- Lua's smallest stack (40 slots, 720 bytes) only if no call it makes
-- leaves fewer than 20 free slots above a C function (lua_yield included):
-- one frame too deep, and its stack doubles for good. So client:wait and
-- client:updates park in their own frame: park_sleep / park_call arm the
-- wait and return true, then the caller yields sched.WAIT itself; they make
-- their C calls in low registers. The deep work of a poll (request,
-- retries, JSON) runs on park_call's stand-in coroutine, whose large stack
-- is garbage when the poll ends. Outside gather, they do the work.

--- true inside a function run by gather (where waits yield).
function sched.in_gather()
  return record[running()] ~= nil
end

--- Sleep `seconds`, then (inside gather, when `session` is given) take a
-- transfer slot of it for this coroutine's next request: returns true when
-- armed (yield sched.WAIT), false when done (outside gather: it blocked).
function sched.park_sleep(seconds, waiter, session)
  local w = record[running()]
  if not w then
    sched.sleep(seconds, waiter)
    return false
  end
  if seconds <= 0 or seconds ~= seconds then seconds = 0 end   -- a NaN timer would never fire
  local at = now() + seconds
  local s = w.group.sched
  if waiter then s.waiter = waiter end
  if session then w.state = s:state(session) end
  w.waiting = true
  s:add_timer(w, at)
  return true
end

--- Run call[1](call[2], call[3], call[4], call[5]). Inside gather, on a
-- task's own coroutine: on a new coroutine standing in for it (its waits
-- are this task's waits), returning true; the caller then yields
-- sched.WAIT and passes what the yield returns to sched.unpark. Elsewhere
-- returns false and the call's first two results.
function sched.park_call(call)
  local w = record[running()]
  if not w or w.outer then return false, call[1](call[2], call[3], call[4], call[5]) end
  local co = create(function() return call[1](call[2], call[3], call[4], call[5]) end)
  record[co] = w
  w.outer, w.co = w.co, co
  w.group.sched:push_ready(w)
  return true
end

--- What a park_call's stand-in returned: its first two results, or its
-- error raised again.
function sched.unpark(ok, x, y)
  if not ok then error(x, 0) end
  return x, y
end

--- Give back a slot reserved and not used by a sched.start.
function sched.unreserve(session)
  local w = record[running()]
  if not w then return end
  local s = w.group.sched
  local st = s.sessions[session]
  if st and st.reserved[w] then
    st.reserved[w] = nil
    s:release(st)
  end
end

function sched.start(session, spec)
  local w = record[running()]
  if not w then return session:start(spec) end
  local s = w.group.sched
  local st = s:state(session)
  while not take_slot(st, w) do yield(WAIT) end
  st.reserved[w] = nil
  local ok, t, err = pcall(session.start, session, spec)
  if not ok or not t then
    s:release(st)
    if not ok then error(t, 0) end
    return nil, err
  end
  st.admitted[t:watch()] = t
  return t
end

--- Wait for a transfer of `session` to finish. `tick` (seconds, optional)
-- bounds each wait so `on_tick` (progress reporting) runs between steps.
-- `waiter(pollable, timeout)`, when given, waits instead of blocking: a
-- foreign event loop's wait (cqueues.poll, a luv poll handle and a yield).
-- Its timeout is nil when only I/O can end the wait.
function sched.await(session, transfer, tick, on_tick, waiter, pollable)
  local w = record[running()]
  if w then
    local s = w.group.sched
    local st = s:state(session)
    if waiter then
      st.waiter, st.pollable = waiter, pollable
      s.waiter = waiter
    end
    local id = transfer:watch()
    while not transfer:done() do
      st.pending[id] = w
      st.transfers[id] = transfer
      st.npending = st.npending + 1
      w.id, w.state, w.waiting = id, st, true
      if tick then s:add_timer(w, now() + tick) end
      yield(WAIT)
      if on_tick then on_tick() end
    end
    return
  end
  while not transfer:done() do
    if waiter then
      local t = session:timeout()
      if tick and (not t or t > tick) then t = tick end
      waiter(pollable, t)
      session:step()
    else
      blocking(session.step, session, tick or 1)
    end
    if on_tick then on_tick() end
  end
end

-- the rest of a sleep a harmless signal cut short is slept again
local function sleep_until(deadline)
  repeat
    local left = deadline - now()
  until left <= 0 or core.sleep(left)
end

--- Sleep `seconds`: yields inside gather, blocks in the kernel outside.
function sched.sleep(seconds, waiter)
  if type(seconds) ~= "number" then
    errors.misuse("rivya.sleep: seconds must be a number, got " .. type(seconds))
  end
  if seconds <= 0 or seconds ~= seconds then seconds = 0 end
  local w = record[running()]
  if w then
    local s = w.group.sched
    if waiter then s.waiter = waiter end
    w.waiting = true
    s:add_timer(w, now() + seconds)
    yield(WAIT)
  elseif waiter then
    local deadline = now() + seconds
    repeat waiter(nil, math.max(deadline - now(), 0)) until now() >= deadline
  else
    blocking(sleep_until, now() + seconds)
  end
end

-- The functions of one gather call: started in order, at most `concurrency`
-- at once; the gather's caller (a coroutine of the same scheduler when
-- nested) wakes when the last one ends.
local Group = {}
Group.__index = Group

function Group:start_next()
  local i = self.next
  if i > self.n then return end
  self.next = i + 1
  self.sched:spawn(self.fns[i], self, i)
end

function Group:done(i, results)
  self.results[i] = results
  self.left = self.left - 1
  self:start_next()
  if self.left == 0 and self.parent then self.sched:wake(self.parent) end
end

--- Run functions as coroutines; results[i] == table.pack(fns[i]()).
-- An error raised in one function lands in its slot as (nil, err).
-- opts.concurrency bounds how many run at once. opts.gc_growth (default
-- 1.5; false: off) bounds the heap's growth over its live size between
-- full collections (see Scheduler:tend_heap). Inside a function run by
-- gather, a nested gather shares its scheduler and yields until done.
function sched.gather(fns, opts)
  if type(fns) ~= "table" then
    errors.misuse("rivya.gather: expected an array of functions, got " .. type(fns))
  end
  opts = opts or {}
  if type(opts) ~= "table" then errors.misuse("rivya.gather: opts must be a table") end
  for k in pairs(opts) do
    if k ~= "concurrency" and k ~= "gc_growth" then
      errors.misuse("rivya.gather: unknown option '" .. tostring(k) .. "'")
    end
  end
  local gc_growth = opts.gc_growth
  if gc_growth == nil then gc_growth = 1.5 end
  if gc_growth ~= false and (type(gc_growth) ~= "number" or gc_growth ~= gc_growth or gc_growth < 1.1) then
    errors.misuse("rivya.gather: gc_growth must be a number >= 1.1 or false")
  end
  local n = #fns
  for i = 1, n do
    if type(fns[i]) ~= "function" then
      errors.misuse(("rivya.gather: fns[%d] is a %s, not a function"):format(i, type(fns[i])))
    end
  end
  local limit = opts.concurrency or n
  if compat.math_type(limit) ~= "integer" or limit < 1 then
    if limit ~= 0 or n ~= 0 then
      errors.misuse("rivya.gather: concurrency must be a positive integer")
    end
  end
  if n == 0 then return {} end
  local parent = record[running()]
  local s = parent and parent.group.sched or new_scheduler(gc_growth)
  local group = setmetatable({ sched = s, fns = fns, n = n, left = n, next = 1, results = {},
    parent = parent }, Group)
  for _ = 1, math.min(limit, n) do group:start_next() end
  if parent then
    parent.waiting = true
    yield(WAIT)
  else
    s:loop()
  end
  return group.results
end

return sched
