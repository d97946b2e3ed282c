-- call_soon / call_later / call_at and their Handle / TimerHandle objects
-- (after CPython's test_events.py HandleTests, TimerTests and the ordering
-- tests of test_base_events.py).
local asyncio = require "asyncio"
local helper = require "helper"

local with_loop = helper.with_loop

-- runs the loop until `pred()` or `max` seconds passed
local function run_until(loop, pred, max)
  local deadline = loop:time() + (max or 2)
  while not pred() and loop:time() < deadline do
    loop:run_once(0.01)
  end
end

describe("call_soon", function()
  it("runs callbacks in FIFO order, with their arguments", function()
    with_loop(function(loop)
      local log = {}
      for i = 1, 100 do
        loop:call_soon(function(a, b)
          log[#log + 1] = a .. ":" .. b
        end, i, i * 2)
      end
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.equal(100, #log)
      for i = 1, 100 do
        assert.equal(i .. ":" .. i * 2, log[i])
      end
    end)
  end)

  it("passes nil arguments and trailing nils through", function()
    with_loop(function(loop)
      local got
      loop:call_soon(function(...)
        got = table.pack(...)
      end, nil, 2, nil, nil)
      loop:run_once()
      assert.same({ nil, 2, nil, nil, n = 4 }, got)
    end)
  end)

  it("accepts a callable table", function()
    with_loop(function(loop)
      local got
      local obj = setmetatable({}, {
        __call = function(self, x)
          got = { self, x }
        end,
      })
      loop:call_soon(obj, "arg")
      loop:run_once()
      assert.equal(obj, got[1])
      assert.equal("arg", got[2])
    end)
  end)

  it("interleaves with task steps in scheduling order", function()
    with_loop(function(loop)
      local log = {}
      loop:run_until_complete(function()
        loop:call_soon(function()
          log[#log + 1] = "cb1"
        end)
        asyncio.sleep(0) -- queued behind cb1
        log[#log + 1] = "task"
        loop:call_soon(function()
          log[#log + 1] = "cb2"
        end)
        asyncio.sleep(0)
        log[#log + 1] = "task again"
      end)
      assert.same({ "cb1", "task", "cb2", "task again" }, log)
    end)
  end)

  it("returns a Handle that is not cancelled and has no when()", function()
    with_loop(function(loop)
      local h = loop:call_soon(function() end)
      assert.is_false(h:cancelled())
      assert.is_nil(h.when)
      assert.matches("Handle", tostring(h))
      assert.equal(loop, h:get_loop())
    end)
  end)
end)

describe("Handle:cancel", function()
  it("cancel() marks the handle cancelled, twice is harmless", function()
    with_loop(function(loop)
      local h = loop:call_soon(function() end)
      h:cancel()
      assert.is_true(h:cancelled())
      h:cancel()
      assert.is_true(h:cancelled())
      assert.matches("cancelled", tostring(h))
    end)
  end)

  it("a handle cancelled while in the ready queue does not run", function()
    with_loop(function(loop)
      local log = {}
      local h2
      loop:call_soon(function()
        log[#log + 1] = 1
        h2:cancel() -- h2 is already queued in this same batch
      end)
      h2 = loop:call_soon(function()
        log[#log + 1] = 2
      end)
      loop:call_soon(function()
        log[#log + 1] = 3
      end)
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.same({ 1, 3 }, log)
      assert.is_true(h2:cancelled())
    end)
  end)

  it("a timer that is due and queued is prevented by cancel", function()
    with_loop(function(loop)
      local log = {}
      local t2
      local when = loop:time() - 1 -- both due at once: queued in the same turn
      loop:call_at(when, function()
        log[#log + 1] = "t1"
        t2:cancel()
      end)
      t2 = loop:call_at(when, function()
        log[#log + 1] = "t2"
      end)
      loop:call_later(0.01, loop.stop, loop)
      loop:run_forever()
      assert.same({ "t1" }, log)
    end)
  end)

  it("cancelling a handle after it ran is harmless", function()
    with_loop(function(loop)
      local n = 0
      local h = loop:call_soon(function()
        n = n + 1
      end)
      loop:run_once()
      h:cancel()
      assert.is_true(h:cancelled())
      loop:run_once()
      assert.equal(1, n)
    end)
  end)

  it("a handle may cancel itself while running", function()
    with_loop(function(loop)
      local h
      local ok, err = false, nil
      h = loop:call_soon(function()
        ok, err = pcall(h.cancel, h)
      end)
      loop:run_once()
      assert(ok, err)
      assert.is_true(h:cancelled())
    end)
  end)

  it("cancel releases the callback and its arguments", function()
    with_loop(function(loop)
      local weak = setmetatable({}, { __mode = "v" })
      local h
      do
        local arg = {}
        weak[1] = arg
        h = loop:call_later(10, function(_) end, arg)
      end
      h:cancel()
      helper.gc()
      assert.is_nil(weak[1])
    end)
  end)

  it("a scheduled handle is kept alive by the loop", function()
    with_loop(function(loop)
      local ran = false
      loop:call_later(0.01, function()
        ran = true
      end)
      helper.gc() -- nobody holds the handle
      run_until(loop, function()
        return ran
      end)
      assert.is_true(ran)
    end)
  end)
end)

describe("call_later / call_at", function()
  it("call_later waits at least the delay", function()
    with_loop(function(loop)
      local t0 = loop:time()
      local fired_at
      loop:call_later(0.05, function()
        fired_at = loop:time()
        loop:stop()
      end)
      loop:run_forever()
      assert.is_not_nil(fired_at)
      assert.is_true(fired_at - t0 >= 0.05 - 1e-3, "fired after " .. (fired_at - t0))
      assert.is_true(fired_at - t0 < 2)
    end)
  end)

  it("passes its arguments", function()
    with_loop(function(loop)
      local got
      loop:call_later(0, function(...)
        got = table.pack(...)
        loop:stop()
      end, "a", nil, 3)
      loop:run_forever()
      assert.same({ "a", nil, 3, n = 3 }, got)
    end)
  end)

  it("TimerHandle:when() is the absolute deadline on the loop clock", function()
    with_loop(function(loop)
      local when = loop:time() + 10
      local h = loop:call_at(when, function() end)
      assert.equal(when, h:when())
      local before = loop:time()
      local h2 = loop:call_later(3, function() end)
      local after = loop:time()
      assert.is_true(h2:when() >= before + 3 and h2:when() <= after + 3)
      assert.matches("TimerHandle", tostring(h2))
      assert.is_false(h2:cancelled())
      assert.equal(loop, h2:get_loop())
    end)
  end)

  it("timers fire in deadline order, whatever the order they were added", function()
    with_loop(function(loop)
      local log = {}
      local base = loop:time()
      for _, d in ipairs({ 0.03, 0.01, 0.04, 0.02, 0.0 }) do
        loop:call_at(base + d, function()
          log[#log + 1] = d
        end)
      end
      loop:call_at(base + 0.05, loop.stop, loop)
      loop:run_forever()
      assert.same({ 0.0, 0.01, 0.02, 0.03, 0.04 }, log)
    end)
  end)

  it("timers with equal deadlines fire in insertion order", function()
    with_loop(function(loop)
      local log = {}
      local when = loop:time() + 0.01
      for i = 1, 50 do
        loop:call_at(when, function()
          log[#log + 1] = i
        end)
      end
      -- a later one with an earlier deadline still goes first
      loop:call_at(when - 0.005, function()
        log[#log + 1] = 0
      end)
      loop:call_at(when + 0.01, loop.stop, loop)
      loop:run_forever()
      assert.equal(51, #log)
      for i = 0, 50 do
        assert.equal(i, log[i + 1])
      end
    end)
  end)

  it("equal deadlines keep insertion order after cancellations", function()
    with_loop(function(loop)
      local log = {}
      local when = loop:time() + 0.01
      local handles = {}
      for i = 1, 20 do
        handles[i] = loop:call_at(when, function()
          log[#log + 1] = i
        end)
      end
      for i = 2, 20, 3 do
        handles[i]:cancel()
      end
      loop:call_at(when + 0.01, loop.stop, loop)
      loop:run_forever()
      local expected = {}
      for i = 1, 20 do
        if (i - 2) % 3 ~= 0 then
          expected[#expected + 1] = i
        end
      end
      assert.same(expected, log)
    end)
  end)

  it("a due timer runs after the callbacks already in the ready queue", function()
    with_loop(function(loop)
      local log = {}
      loop:call_later(0, function()
        log[#log + 1] = "timer"
      end)
      loop:call_soon(function()
        log[#log + 1] = "soon"
      end)
      loop:call_later(0.01, loop.stop, loop)
      loop:run_forever()
      assert.same({ "soon", "timer" }, log)
    end)
  end)

  it("negative delays and past deadlines fire on the next iteration", function()
    with_loop(function(loop)
      local log = {}
      loop:call_later(-5, function()
        log[#log + 1] = "later"
      end)
      loop:call_at(loop:time() - 100, function()
        log[#log + 1] = "at"
      end)
      loop:run_once()
      table.sort(log)
      assert.same({ "at", "later" }, log)
    end)
  end)

  it("a cancelled timer does not fire and others do", function()
    with_loop(function(loop)
      local log = {}
      local h = loop:call_later(0.01, function()
        log[#log + 1] = "cancelled one"
      end)
      loop:call_later(0.02, function()
        log[#log + 1] = "kept"
      end)
      h:cancel()
      assert.is_true(h:cancelled())
      loop:call_later(0.04, loop.stop, loop)
      loop:run_forever()
      assert.same({ "kept" }, log)
    end)
  end)

  it("a callback can schedule timers, and cancel future ones", function()
    with_loop(function(loop)
      local log = {}
      local victim = loop:call_later(0.03, function()
        log[#log + 1] = "victim"
      end)
      loop:call_later(0.01, function()
        log[#log + 1] = "first"
        victim:cancel()
        loop:call_later(0.01, function()
          log[#log + 1] = "nested"
          loop:stop()
        end)
      end)
      loop:run_forever()
      assert.same({ "first", "nested" }, log)
    end)
  end)

  it("many timers: all fire, in order", function()
    with_loop(function(loop)
      local base = loop:time()
      local fired = {}
      local n = 500
      -- deterministic shuffle
      local seed = 12345
      local function rnd(m)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % m
      end
      for i = 1, n do
        local d = rnd(1000) / 1e5 -- up to 10 ms
        loop:call_at(base + d, function()
          fired[#fired + 1] = base + d
        end)
      end
      loop:call_at(base + 0.02, loop.stop, loop)
      loop:run_forever()
      assert.equal(n, #fired)
      for i = 2, n do
        assert.is_true(fired[i - 1] <= fired[i])
      end
    end)
  end)

  it("refuses a NaN delay or deadline", function()
    with_loop(function(loop)
      assert.has_error(function()
        loop:call_later(0 / 0, function() end)
      end)
      assert.has_error(function()
        loop:call_at(0 / 0, function() end)
      end)
    end)
  end)

  it("an infinite delay never fires and can be cancelled", function()
    with_loop(function(loop)
      local ran = false
      local h = loop:call_later(math.huge, function()
        ran = true
      end)
      loop:run_once()
      h:cancel()
      loop:run_once()
      assert.is_false(ran)
    end)
  end)
end)
