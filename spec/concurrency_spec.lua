-- Concurrency: rivya.gather and rivya.sleep, the client inside and outside
-- gather, client:updates, the pollable interface, and two real event loops
-- (cqueues and luv, both from Debian) driving the client. Overlap is proven
-- by the order of events, never by wall time.
local helper = require "helper"
local rivya = require "rivya"
local sched = require "rivya.sched"
local core = require "rivya.core"
local compat = require "rivya.compat"

local function request(prompt)
  return { model = "wan-2-7-video", prompt = prompt or "a paper lantern drifting over a lake" }
end

describe("rivya.gather", function()
  it("returns results[i] == compat.pack(fns[i]()) in the order of fns, whatever order they end in", function()
    local results = rivya.gather({
      function() rivya.sleep(0.06) return 1, nil, "three" end,
      function() return end,
      function() rivya.sleep(0.01) return nil end,
      function() rivya.sleep(0.03) return "a", "b" end,
    })
    assert.are.same({ n = 3, 1, nil, "three" }, results[1])
    assert.are.same({ n = 0 }, results[2])
    assert.are.same({ n = 1 }, results[3])
    assert.are.same({ n = 2, "a", "b" }, results[4])
  end)

  it("returns an error raised in one function in its slot as nil, err and runs the others to the end", function()
    local ran = {}
    local results = rivya.gather({
      function() rivya.sleep(0.02) ran[#ran + 1] = 1 return "one" end,
      function() error("boom in two") end,
      function() rivya.sleep(0.01) error({ code = "mine" }) end,
      function() rivya.sleep(0.03) ran[#ran + 1] = 4 return "four" end,
    })
    assert.are.same({ n = 1, "one" }, results[1])
    assert.is_nil(results[2][1])
    assert.matches("boom in two", results[2][2])
    assert.are.equal(2, results[2].n)
    assert.is_nil(results[3][1])
    assert.are.same({ code = "mine" }, results[3][2])
    assert.are.same({ n = 1, "four" }, results[4])
    assert.are.same({ 1, 4 }, ran)
  end)

  it("never runs more functions at once than the concurrency option allows", function()
    local running, most, fns = 0, 0, {}
    for i = 1, 12 do
      fns[i] = function()
        running = running + 1
        if running > most then most = running end
        rivya.sleep(0.005 * (i % 3))
        running = running - 1
        return i
      end
    end
    local results = rivya.gather(fns, { concurrency = 3 })
    assert.are.equal(3, most)
    for i = 1, 12 do assert.are.equal(i, results[i][1]) end
  end)

  it("runs every function at once without a concurrency option", function()
    local running, most, fns = 0, 0, {}
    for i = 1, 50 do
      fns[i] = function()
        running = running + 1
        if running > most then most = running end
        rivya.sleep(0.01)
        running = running - 1
      end
    end
    rivya.gather(fns)
    assert.are.equal(50, most)
  end)

  it("overlaps sleeps: a short sleep started later ends before a long one started first", function()
    local order = {}
    rivya.gather({
      function() rivya.sleep(0.2) order[#order + 1] = "long" end,
      function() rivya.sleep(0.02) order[#order + 1] = "short" end,
    })
    -- one after the other would give long, short
    assert.are.same({ "short", "long" }, order)
  end)

  it("wakes 2,000 sleeping functions in the order of their wake-up times", function()
    -- each records its own wake-up time (when its sleep was due), so the
    -- order is checked however long starting 2,000 functions takes
    local now = require("rivya.core").now
    local order, fns = {}, {}
    for i = 1, 2000 do
      local level = (i * 7) % 5   -- 0..4, interleaved
      fns[i] = function()
        local due = now() + level * 0.05
        rivya.sleep(level * 0.05)
        order[#order + 1] = due
      end
    end
    rivya.gather(fns)
    assert.are.equal(2000, #order)
    for i = 2, #order do
      -- 5 ms of slack: `due` is read a moment before the scheduler reads its clock
      if order[i] < order[i - 1] - 0.005 then
        error(("woke a sleep due at %.4f after one due at %.4f (position %d)"):format(order[i], order[i - 1], i))
      end
    end
  end)

  it("runs a gather nested in a gathered function alongside that function's siblings", function()
    local order = {}
    local results = rivya.gather({
      function()
        local inner = rivya.gather({
          function() rivya.sleep(0.1) order[#order + 1] = "inner a" return "a" end,
          function() rivya.sleep(0.1) order[#order + 1] = "inner b" return "b" end,
        })
        order[#order + 1] = "outer 1"
        return inner[1][1] .. inner[2][1]
      end,
      function() rivya.sleep(0.02) order[#order + 1] = "outer 2" return "2" end,
    })
    assert.are.same({ n = 1, "ab" }, results[1])
    assert.are.same({ n = 1, "2" }, results[2])
    assert.are.equal("outer 2", order[1])
    assert.are.equal("outer 1", order[4])
  end)

  it("lets a gathered function yield plainly with a bare coroutine.yield() and go on", function()
    local order = {}
    local results = rivya.gather({
      function()
        order[#order + 1] = "a1"
        coroutine.yield()
        order[#order + 1] = "a2"
        coroutine.yield()
        return "done"
      end,
      function() order[#order + 1] = "b" return "b" end,
    })
    assert.are.same({ n = 1, "done" }, results[1])
    assert.are.same({ n = 1, "b" }, results[2])
    assert.are.same({ "a1", "b", "a2" }, order)
  end)

  it("fails a gathered function that yields values (they would go nowhere), and runs the others", function()
    local went_on = false
    local results = rivya.gather({
      function()
        coroutine.yield("x", 1)
        went_on = true
        return "never"
      end,
      function() rivya.sleep(0.01) return "b" end,
    })
    assert.is_nil(results[1][1])
    assert.matches("coroutine.yield(x, ...) inside gather: rivya owns the yields there", results[1][2], 1, true)
    assert.is_false(went_on)   -- the function's coroutine is not resumed again
    assert.are.same({ n = 1, "b" }, results[2])
  end)

  it("lets a gathered function run its own coroutines, where rivya calls block", function()
    local results = rivya.gather({
      function()
        local gen = coroutine.wrap(function()
          rivya.sleep(0.01)   -- not a gather coroutine: blocks, yields nothing
          coroutine.yield("from inner")
        end)
        return gen()
      end,
    })
    assert.are.same({ n = 1, "from inner" }, results[1])
  end)

  it("returns an empty table for no functions", function()
    assert.are.same({}, rivya.gather({}))
  end)

  it("raises on misuse: no array, a non-function, a bad concurrency, an unknown option", function()
    assert.has_error(function() rivya.gather("nope") end,
      "rivya.gather: expected an array of functions, got string")
    assert.has_error(function() rivya.gather({ function() end, 42 }) end,
      "rivya.gather: fns[2] is a number, not a function")
    assert.has_error(function() rivya.gather({ function() end }, { concurrency = 0 }) end,
      "rivya.gather: concurrency must be a positive integer")
    assert.has_error(function() rivya.gather({ function() end }, { concurrency = 1.5 }) end,
      "rivya.gather: concurrency must be a positive integer")
    assert.has_error(function() rivya.gather({ function() end }, { limit = 2 }) end,
      "rivya.gather: unknown option 'limit'")
  end)

  it("collects between rounds when the heap grows past gc_growth x its live size, and not with gc_growth = false",
    function()
      collectgarbage()
      local function run(opts)
        collectgarbage()
        local start = collectgarbage("count")
        local before = sched.collections
        rivya.gather({ function()
          -- live for one round: past both 2 x the heap the scheduler started
          -- with and GC_SLACK_KB more than it, whatever the specs before left
          local target = math.max(start * 2, start + sched.GC_SLACK_KB) + 1024
          local hold, i = {}, 0
          while collectgarbage("count") < target do
            i = i + 1
            hold[i] = ("x"):rep(1000) .. i
          end
          rivya.sleep(0)
          return #hold
        end }, opts)
        return sched.collections - before
      end
      assert.are.equal(1, run())
      assert.are.equal(1, run({ gc_growth = 1.25 }))
      assert.are.equal(0, run({ gc_growth = false }))
    end)

  it("raises on a gc_growth that is not a number >= 1.1 or false", function()
    for _, v in ipairs({ 1, 0.5, "2", true, 0 / 0 }) do
      assert.has_error(function() rivya.gather({ function() end }, { gc_growth = v }) end,
        "rivya.gather: gc_growth must be a number >= 1.1 or false")
    end
  end)

  it("runs a parked call on a stand-in coroutine: its sleeps are the task's, its results and errors come back",
    function()
      local order = {}
      local function add(a, b)
        rivya.sleep(0.05)
        order[#order + 1] = "stand-in"
        return a + b, "two", "dropped"
      end
      local results = rivya.gather({
        function()
          local parked = sched.park_call({ add, 1, 2 })
          assert.is_true(parked)
          return sched.unpark(coroutine.yield(sched.WAIT))
        end,
        function()
          assert.is_true(sched.park_call({ error, "broken on the stand-in" }))
          return sched.unpark(coroutine.yield(sched.WAIT))
        end,
        function() rivya.sleep(0.01) order[#order + 1] = "sibling" end,
      })
      assert.are.same({ n = 2, 3, "two" }, results[1])
      assert.is_nil(results[2][1])
      assert.matches("broken on the stand%-in", results[2][2])
      assert.are.same({ "sibling", "stand-in" }, order)
      -- outside gather the call just runs
      assert.are.same({ false, 5, "two" }, { sched.park_call({ function(a) return a, "two" end, 5 }) })
    end)

  it("sleeps in the kernel while it waits: a 0.3 s sleep takes a handful of scheduler rounds", function()
    local before = sched.rounds
    rivya.gather({ function() rivya.sleep(0.3) end })
    local rounds = sched.rounds - before
    -- a busy loop would count thousands of rounds here
    assert.is_true(rounds >= 1 and rounds <= 5, "rounds: " .. rounds)
  end)
end)

describe("rivya.sleep", function()
  it("blocks outside gather and returns nothing", function()
    assert.are.equal(0, select("#", rivya.sleep(0.01)))
  end)

  it("raises when seconds is not a number", function()
    assert.has_error(function() rivya.sleep("1") end, "rivya.sleep: seconds must be a finite number >= 0, got string")
  end)

  it("raises for negative, NaN and infinite seconds, at the caller's line, inside gather too", function()
    for _, v in ipairs({ -1, 0 / 0, math.huge, -math.huge }) do
      local ok, err = pcall(function() rivya.sleep(v) end)
      assert.is_false(ok)
      assert.matches("^spec/concurrency_spec%.lua:%d+: rivya%.sleep: seconds must be a finite number >= 0", err)
    end
    local results = rivya.gather({ function() rivya.sleep(0) rivya.sleep(-1) return "ok" end })
    assert.is_nil(results[1][1])
    assert.matches("rivya.sleep: seconds must be a finite number >= 0, got -1", results[1][2], 1, true)
  end)

  it("takes zero seconds as no wait at all", function()
    local results = rivya.gather({ function() rivya.sleep(0) return "ok" end })
    assert.are.same({ n = 1, "ok" }, results[1])
  end)
end)

describe("the client with coroutines", function()
  local sim, client, dir

  setup(function()
    sim = helper.start_sim{ args = { "--task-seconds", "0.6", "--credits", "100000" } }
    client = helper.client(sim)
    dir = helper.tmpdir()
  end)

  teardown(function()
    client:close()
    sim:stop()
    helper.rmrf(dir)
  end)

  before_each(function()
    sim:reset()
  end)

  describe("inside gather", function()
    it("creates and polls several generations at once: every create comes before any success", function()
      local events, fns = {}, {}
      for i = 1, 5 do
        fns[i] = function()
          local task = assert(client:create(request("concurrent " .. i)))
          events[#events + 1] = "created"
          local final = assert(client:wait(task))
          events[#events + 1] = "succeeded"
          return final.status
        end
      end
      local results = rivya.gather(fns)
      for i = 1, 5 do assert.are.same({ n = 1, "succeeded" }, results[i]) end
      -- one after the other would alternate created, succeeded
      assert.are.same({ "created", "created", "created", "created", "created",
        "succeeded", "succeeded", "succeeded", "succeeded", "succeeded" }, events)
    end)

    it("yields during a download: a sibling runs while the CDN delays the file", function()
      local task = assert(client:generate(request("to download")))
      sim:fault{ listener = "cdn", path = "/", action = "delay", delay_ms = 400 }
      local order = {}
      local results = rivya.gather({
        function()
          local path = assert(client:download(task, dir .. "/delayed.mp4"))
          order[#order + 1] = "downloaded"
          return path
        end,
        function() rivya.sleep(0.05) order[#order + 1] = "sibling" end,
      })
      assert.are.equal(dir .. "/delayed.mp4", results[1][1])
      assert.are.same({ "sibling", "downloaded" }, order)
    end)

    it("yields during an upload: a sibling runs while the API delays the answer", function()
      sim:fault{ path = "/api/v1/files", action = "delay", delay_ms = 400 }
      local order = {}
      local results = rivya.gather({
        function()
          local file = assert(client:upload(helper.ROOT .. "/sim/sample.mp4"))
          order[#order + 1] = "uploaded"
          return file.kind
        end,
        function() rivya.sleep(0.05) order[#order + 1] = "sibling" end,
      })
      assert.are.same({ n = 1, "video" }, results[1])
      assert.are.same({ "sibling", "uploaded" }, order)
    end)

    it("runs user callbacks that sleep and call the client themselves, without a C-call boundary error", function()
      local seen, credits, progress = {}, {}, 0
      local results = rivya.gather({
        function()
          local final, err = client:generate(request("callbacks"), {
            output = dir .. "/callbacks.mp4",
            on_update = function(t)
              rivya.sleep(0.01)
              seen[#seen + 1] = t.status
              credits[#credits + 1] = assert(client:credits())
            end,
            on_progress = function()
              rivya.sleep(0)
              progress = progress + 1
              assert(client:credits())
            end,
          })
          assert(final, err and tostring(err))
          return final.status
        end,
        function() return assert(client:credits()) end,
      })
      assert.are.same({ n = 1, "succeeded" }, results[1])
      assert.are.equal("integer", compat.math_type(results[2][1]))
      assert.are.same({ "queued", "processing", "succeeded" }, seen)
      assert.are.equal(3, #credits)
      assert.is_true(progress >= 1)
    end)

    -- the most transfers of `c` in curl at once while 600 credits calls run
    local function most_in_curl(c)
      local most, finished, fns = 0, 0, {}
      for i = 1, 600 do
        fns[i] = function()
          local credits = assert(c:credits())
          finished = finished + 1
          return credits
        end
      end
      fns[601] = function()   -- samples between the others' steps
        while finished < 600 do
          local n = c.session:running()
          if n > most then most = n end
          coroutine.yield()
        end
      end
      local results = rivya.gather(fns)
      for i = 1, 600 do assert.are.same({ n = 1, 100000 }, results[i]) end
      return most
    end

    it("keeps at most MAX_ACTIVE transfers of one client in curl at once, however many calls wait", function()
      local c = helper.client(sim, { max_connections = 1000 })
      local most = most_in_curl(c)
      c:close()
      assert.is_true(most > 16 and most <= sched.MAX_ACTIVE, "most at once: " .. most)
    end)

    it("keeps no more transfers in curl than max_connections while answers come over HTTP/1.1", function()
      -- more would wait in curl's own queue, tried again at every completion
      local c = helper.client(sim, { max_connections = 8 })
      local most = most_in_curl(c)
      c:close()
      assert.is_true(most > 1 and most <= 8, "most at once: " .. most)
    end)

    it("ends every wait with an error, not a hang, when the client closes while 300 polls wait for slots", function()
      local c = helper.client(sim, { max_retries = 0 })
      local task = assert(c:create(request("closed under its waits")))
      local fns = {}
      for i = 1, 300 do fns[i] = function() return c:wait(task, { interval = 0.05 }) end end
      fns[301] = function() rivya.sleep(0.12) c:close() return "closed" end
      local results = rivya.gather(fns)
      for i = 1, 300 do
        assert.is_nil(results[i][1])
        assert.matches("closed", tostring(results[i][2]))
      end
      assert.are.same({ n = 1, "closed" }, results[301])
    end)

    it("gives a transfer slot back when a poll raises between taking it and starting its request", function()
      local c = helper.client(sim)
      local max, done = sched.MAX_ACTIVE, false
      sched.MAX_ACTIVE = 1
      local ok, results = pcall(rivya.gather, {
        function()
          -- what client:wait does between polls, with a poll that raises
          assert.is_true(sched.park_sleep(0, nil, c.session))
          coroutine.yield(sched.WAIT)
          assert.is_true(sched.park_call({ error, "the poll broke" }))
          return sched.unpark(coroutine.yield(sched.WAIT))
        end,
        function()
          rivya.sleep(0.05)
          local credits, err = c:credits()
          done = true
          return credits, err
        end,
        function()   -- a slot never given back would leave the call above in line: close under it
          for _ = 1, 100 do
            rivya.sleep(0.05)
            if done then return end
          end
          c:close()
        end,
      })
      sched.MAX_ACTIVE = max
      c:close()
      assert.is_true(ok, tostring(results))
      assert.is_nil(results[1][1])
      assert.matches("the poll broke", results[1][2])
      assert.are.same({ n = 2, 100000 }, results[2])
    end)

    it("ends a call with an error, not a hang, when a sibling closes the client under it", function()
      local c = helper.client(sim, { max_retries = 0 })
      sim:fault{ path = "/api/v1/credits", action = "delay", delay_ms = 2000 }
      local results = rivya.gather({
        function() return c:credits() end,
        function() rivya.sleep(0.1) c:close() return "closed" end,
      })
      assert.is_nil(results[1][1])
      assert.is_true(rivya.is_error(results[1][2]))
      assert.are.same({ n = 1, "closed" }, results[2])
    end)
  end)

  describe("parked waits", function()
    local long_sim, c

    setup(function()
      long_sim = helper.start_sim{ args = { "--task-seconds", "600", "--credits", "1000000" } }
      c = rivya.new{ api_key = helper.KEY, base_url = long_sim.url }
    end)

    teardown(function()
      c:close()
      long_sim:stop()
    end)

    -- bytes of heap per function of `fns` while they are all parked: a
    -- monitor waits until `settled()` (polls done, no transfer in curl),
    -- then collects and counts
    local function parked_bytes(fns, settled)
      local n = #fns
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      local per
      fns[n + 1] = function()
        repeat rivya.sleep(0.02) until settled()
        collectgarbage()
        collectgarbage()
        per = (collectgarbage("count") - base) * 1024 / n
      end
      rivya.gather(fns)
      fns[n + 1] = nil
      return per
    end

    it("hold about what parked sleeps hold: the last task seen, and stacks no larger", function()
      finally(helper.jit_pause())   -- LuaJIT: no traces compiled or flushed while weighing
      local N = 300
      local tasks, fns = {}, {}
      for i = 1, N do fns[i] = function() return assert(c:create(request("parked " .. i))) end end
      for i, r in ipairs(rivya.gather(fns)) do tasks[i] = r[1] end
      for i = 1, N do fns[i] = function() rivya.sleep(0.4) end end
      local sleep_bytes = parked_bytes(fns, function() return true end)
      -- waits that have polled twice, parked until their next poll (deadline 1.6 s)
      local r0, ended = long_sim:ledger().requests, 0
      for i = 1, N do
        fns[i] = function()
          local _, err = c:wait(tasks[i], { interval = 0.3, timeout = 1.6 })
          ended = ended + 1
          return err
        end
      end
      local wait_bytes = parked_bytes(fns, function()
        assert(ended == 0, "the waits ended before they were measured")
        return long_sim:ledger().requests >= r0 + 2 * N and c.session:running() == 0
      end)
      -- a parked wait keeps the last task table it saw: weigh N of those
      local json = require "rivya.json"
      local text = json.encode(assert(c:get(tasks[1].id)))
      local seen = {}
      collectgarbage()
      collectgarbage()
      local base = collectgarbage("count")
      for i = 1, N do seen[i] = json.decode(text) end
      collectgarbage()
      local task_bytes = (collectgarbage("count") - base) * 1024 / N
      assert.are.equal(N, #seen)
      assert.is_true(task_bytes > 100, "a task table weighs " .. task_bytes)
      -- beyond that task a wait's record and timer hold about 250 bytes more
      -- than a sleep's; polling on the wait's own coroutine (no stand-in)
      -- grows its stack for good and measures about 1,100
      -- (PUC Lua 5.1 grows a coroutine's stack and call-info array sooner: there
      -- a parked wait measures about 1,000 bytes more; README, interpreters)
      local extra = wait_bytes - sleep_bytes - task_bytes
      local bound = (compat.version == "5.1" and not compat.jit) and 1300 or 500
      assert.is_true(extra < bound, ("a parked sleep holds %.0f bytes, a parked wait %.0f, a task %.0f")
        :format(sleep_bytes, wait_bytes, task_bytes))
    end)
  end)

  describe("client:updates", function()
    it("yields each status once and ends with the final state", function()
      local task = assert(client:create(request("updates")))
      local statuses = {}
      for t, err in client:updates(task.id) do
        assert.is_nil(err)
        statuses[#statuses + 1] = t.status
      end
      assert.are.same({ "queued", "processing", "succeeded" }, statuses)
    end)

    it("starts after the status of a task table it is given", function()
      local task = assert(client:create(request("updates from a table")))
      local statuses = {}
      for t in client:updates(task) do statuses[#statuses + 1] = t.status end
      assert.are.same({ "processing", "succeeded" }, statuses)
    end)

    it("ends with the failed state of a failed generation", function()
      local task = assert(client:create(request("this one will [[fail]]")))
      local last
      for t in client:updates(task) do last = t end
      assert.are.equal("failed", last.status)
    end)

    it("yields false, err once and ends when the task cannot be polled", function()
      local items = {}
      for t, err in client:updates("task_does_not_exist") do items[#items + 1] = { t, err } end
      assert.are.equal(1, #items)
      assert.is_false(items[1][1])
      assert.are.equal("not_found", items[1][2].code)
    end)

    it("yields false, err with a timeout when the deadline passes first", function()
      local task = assert(client:create(request("too slow for the deadline")))
      local items = {}
      for t, err in client:updates(task, { timeout = 0.1 }) do items[#items + 1] = { t, err } end
      assert.is_false(items[#items][1])
      assert.are.equal("timeout", items[#items][2].code)
    end)

    it("yields inside gather: two iterators interleave with a sibling", function()
      if not compat.yield_in_pcall then
        -- PUC Lua 5.1 calls the iterator across a C boundary: it says so at once
        local results = rivya.gather({ function() return client:updates("task_x") end })
        assert.is_nil(results[1][1])
        assert.matches("client:updates: PUC Lua 5.1 cannot yield across a for%-in iterator", results[1][2])
        return
      end
      local order = {}
      local fns = {}
      for i = 1, 2 do
        fns[i] = function()
          local task = assert(client:create(request("iterated " .. i)))
          local n = 0
          for t in client:updates(task.id) do
            n = n + 1
            order[#order + 1] = i .. ":" .. t.status
          end
          return n
        end
      end
      local results = rivya.gather(fns)
      assert.are.same({ n = 1, 3 }, results[1])
      assert.are.same({ n = 1, 3 }, results[2])
      assert.are.equal(6, #order)
      -- both saw "queued" before either saw "succeeded"
      local first_success
      for i, e in ipairs(order) do
        if e:find("succeeded") and not first_success then first_success = i end
      end
      local queued = 0
      for i = 1, first_success do if order[i]:find("queued") then queued = queued + 1 end end
      assert.are.equal(2, queued)
    end)
  end)

  describe("the pollable interface", function()
    -- a coroutine whose waiter hands each wait back to the test: the test
    -- is the event loop, as a foreign loop would be
    local function driven(c, fn)
      local co = coroutine.create(fn)
      local ok, err = coroutine.resume(co)
      assert(ok, err)
      return co, function(timeout)
        while coroutine.status(co) ~= "dead" do
          core.poll({ c:pollfd() }, timeout or 1)
          c:step()
          ok, err = coroutine.resume(co)
          assert(ok, err)
        end
      end
    end

    it("gives one integer descriptor, the same for the client's whole life", function()
      local c = helper.client(sim)
      local fd = c:pollfd()
      assert.are.equal("integer", compat.math_type(fd))
      assert.is_true(fd >= 0)
      assert(c:credits())
      assert.are.equal(fd, c:pollfd())
      c:close()
    end)

    it("asks to be polled for reading", function()
      assert.are.equal("r", client:events())
    end)

    it("steps without blocking: 0 running when idle, 1 while a delayed call is in flight", function()
      local c = helper.client(sim, { waiter = function() coroutine.yield() end })
      assert.are.equal(0, c:step())
      assert.is_nil(c:timeout())
      sim:fault{ path = "/api/v1/credits", action = "delay", delay_ms = 300 }
      local got
      local co, run = driven(c, function() got = assert(c:credits()) end)
      assert.are.equal("suspended", coroutine.status(co))
      assert.are.equal(1, c:step())   -- returned at once: the answer is 300 ms away
      local t = c:timeout()
      assert.are.equal("number", type(t))
      assert.is_true(t >= 0)
      run()
      assert.are.equal(100000, got)
      assert.are.equal(0, c:step())
      c:close()
    end)

    it("drives a whole generation from a loop that only polls the descriptor and steps", function()
      local waits = 0
      local c = helper.client(sim, { waiter = function(p, timeout)
        waits = waits + 1
        coroutine.yield(p, timeout)
      end })
      local final
      local _, run = driven(c, function() final = assert(c:generate(request("driven"))) end)
      run(0.05)
      assert.are.equal("succeeded", final.status)
      assert.is_true(waits > 0)
      c:close()
    end)

    it("refuses use after close", function()
      local c = helper.client(sim)
      c:close()
      assert.has_error(function() c:pollfd() end, "rivya: attempt to use a closed client")
      assert.has_error(function() c:step() end, "rivya: attempt to use a closed client")
    end)
  end)

  describe("in a cqueues loop", function()
    local cqueues = require "cqueues"

    local function cq_client()
      return helper.client(sim, { waiter = function(c, timeout)
        if c then cqueues.poll(c, timeout) else cqueues.sleep(timeout) end
      end })
    end

    it("takes a client as a pollable object in cqueues.poll and returns it when an answer is there", function()
      local c
      local woken_by = {}
      c = helper.client(sim, { waiter = function(p, timeout)
        local ready = cqueues.poll(p, timeout)
        woken_by[#woken_by + 1] = ready == c and "client" or "timeout"
      end })
      local cq = cqueues.new()
      local credits
      cq:wrap(function() credits = assert(c:credits()) end)
      assert(cq:loop())
      assert.are.equal(100000, credits)
      assert.are.equal("client", woken_by[#woken_by])
      c:close()
    end)

    it("runs several generations in cqueues coroutines while the loop keeps ticking", function()
      local c = cq_client()
      local cq = cqueues.new()
      local events, ticks, left = {}, 0, 3
      for i = 1, 3 do
        cq:wrap(function()
          local task = assert(c:generate(request("cqueues " .. i), {
            on_update = function(t) events[#events + 1] = { i = i, status = t.status, ticks = ticks } end,
          }))
          assert.are.equal("succeeded", task.status)
          left = left - 1
        end)
      end
      cq:wrap(function()
        while left > 0 do
          ticks = ticks + 1
          cqueues.sleep(0.02)
        end
      end)
      assert(cq:loop())
      assert.are.equal(0, left)
      assert.are.equal(9, #events)
      -- all three were queued before any succeeded, and the ticker ran in between
      for i = 1, 3 do assert.are.equal("queued", events[i].status) end
      assert.is_true(events[9].ticks > events[1].ticks)
      c:close()
    end)

    it("runs rivya.gather inside a cqueues coroutine without stalling the cqueue", function()
      local c = cq_client()
      local cq = cqueues.new()
      local ticks_during, ticks, results = nil, 0, nil
      local gathering = true
      cq:wrap(function()
        results = rivya.gather({
          function() return assert(c:generate(request("gathered in cqueues 1"))).status end,
          function() return assert(c:generate(request("gathered in cqueues 2"))).status end,
        })
        ticks_during = ticks
        gathering = false
      end)
      cq:wrap(function()
        while gathering do
          ticks = ticks + 1
          cqueues.sleep(0.02)
        end
      end)
      assert(cq:loop())
      assert.are.same({ n = 1, "succeeded" }, results[1])
      assert.are.same({ n = 1, "succeeded" }, results[2])
      assert.is_true(ticks_during > 1, "ticks while gathering: " .. tostring(ticks_during))
      c:close()
    end)
  end)

  describe("in a luv loop", function()
    local uv = require "luv"

    -- The integration a luv program writes: a poll handle on the client's fd
    -- and a timer from client:timeout(), both stepping the client and
    -- resuming the coroutines that wait on it; each wait's own timeout is a
    -- one-shot timer.
    local function luv_run(bodies)
      local waiting, client_ref, errors, left = {}, nil, {}, #bodies
      local poll, curl_timer, ticker
      local function ms(s) return math.max(1, math.ceil(s * 1000)) end
      local function finished()
        left = left - 1
        if left == 0 then poll:close() curl_timer:close() ticker:close() end
      end
      local function wake(co)
        local w = waiting[co]
        if not w then return end
        waiting[co] = nil
        if w.timer then w.timer:close() end
        local ok, err = coroutine.resume(co)
        if not ok then   -- a body that died (no pcall on PUC 5.1) ends too, or the loop would not
          errors[#errors + 1] = err
          finished()
        end
      end
      curl_timer = uv.new_timer()
      local function activity()
        client_ref:step()
        for co, w in pairs(waiting) do if w.client then wake(co) end end
      end
      local function rearm()
        local t = client_ref:timeout()
        if t then curl_timer:start(ms(t), 0, activity) else curl_timer:stop() end
      end
      client_ref = helper.client(sim, { waiter = function(c, timeout)
        local co = coroutine.running()
        local w = { client = c }
        if timeout then
          w.timer = uv.new_timer()
          w.timer:start(ms(timeout), 0, function() wake(co) end)
        end
        waiting[co] = w
        rearm()
        coroutine.yield()
      end })
      poll = uv.new_poll(client_ref:pollfd())
      poll:start("r", function() activity() rearm() end)
      local ticks = 0
      ticker = uv.new_timer()
      ticker:start(20, 20, function() ticks = ticks + 1 end)
      local results = {}
      for i, body in ipairs(bodies) do
        local co = coroutine.create(function()
          -- (PUC Lua 5.1 cannot yield across pcall: there an error ends the run)
          results[i] = compat.yield_in_pcall and compat.pack(pcall(body, client_ref, function() return ticks end))
            or compat.pack(true, body(client_ref, function() return ticks end))
          finished()
        end)
        local ok, err = coroutine.resume(co)
        if not ok then
          errors[#errors + 1] = err
          finished()
        end
      end
      uv.run()
      client_ref:close()
      assert.are.same({}, errors)
      return results, ticks
    end

    it("runs generations in coroutines resumed by a poll handle and timers", function()
      local events = {}
      local function body(i)
        return function(c, ticks)
          local task = assert(c:generate(request("luv " .. i), {
            on_update = function(t) events[#events + 1] = { status = t.status, ticks = ticks() } end,
          }))
          return task.status
        end
      end
      local results, ticks = luv_run({ body(1), body(2), body(3) })
      for i = 1, 3 do assert.are.same({ n = 2, true, "succeeded" }, results[i]) end
      assert.are.equal(9, #events)
      for i = 1, 3 do assert.are.equal("queued", events[i].status) end
      assert.is_true(events[9].ticks > events[1].ticks)
      assert.is_true(ticks > 0)
    end)

    it("runs uploads, downloads and sleeps the same way", function()
      local results = luv_run({
        function(c)
          local file = assert(c:upload(helper.ROOT .. "/sim/sample.mp4"))
          rivya.sleep(0.01)
          return file.kind
        end,
        function(c)
          local task = assert(c:generate(request("luv download"), { output = dir .. "/luv.mp4" }))
          return task.output
        end,
      })
      assert.are.same({ n = 2, true, "video" }, results[1])
      assert.are.same({ n = 2, true, dir .. "/luv.mp4" }, results[2])
      assert.are.equal("ftyp", helper.read_file(dir .. "/luv.mp4"):sub(5, 8))
    end)
  end)

  describe("the examples", function()
    local function run_example(name)
      local cmd = ("RIVYA_BASE_URL=%s RIVYA_API_KEY=%s RIVYA_POLL_INTERVAL=0.05 %s %s 2>&1"):format(
        helper.sh_quote(sim.url), helper.sh_quote(helper.KEY), helper.LUA,
        helper.sh_quote(helper.ROOT .. "/examples/" .. name))
      return helper.popen(cmd)
    end

    it("examples/cqueues_loop.lua runs three generations in a cqueues loop", function()
      local out, ok = run_example("cqueues_loop.lua")
      assert.is_true(ok, out)
      local _, successes = out:gsub("generation %d succeeded", "")
      assert.are.equal(3, successes, out)
      assert.matches("3 generations, 0 failed", out)
    end)

    it("examples/luv_loop.lua runs three generations in a luv loop", function()
      local out, ok = run_example("luv_loop.lua")
      assert.is_true(ok, out)
      local _, successes = out:gsub("generation %d succeeded", "")
      assert.are.equal(3, successes, out)
      assert.matches("3 generations, 0 failed", out)
    end)
  end)
end)
