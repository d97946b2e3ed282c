-- The event loop: running, stopping, closing, time, call_soon_threadsafe,
-- settings and the exception handler API (after CPython's test_events.py and
-- test_base_events.py).
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local with_loop = helper.with_loop
local err_of = helper.err_of

describe("loop life cycle", function()
  it("new_event_loop gives an open loop that is not running", function()
    with_loop(function(loop)
      assert.is_false(loop:is_running())
      assert.is_false(loop:is_closed())
      assert.matches("Loop", tostring(loop))
    end)
  end)

  it("is_running is true inside callbacks and tasks, false after", function()
    with_loop(function(loop)
      local in_cb, in_task
      loop:call_soon(function()
        in_cb = loop:is_running()
      end)
      loop:run_until_complete(function()
        in_task = loop:is_running()
      end)
      assert.is_true(in_cb)
      assert.is_true(in_task)
      assert.is_false(loop:is_running())
    end)
  end)

  it("close marks it closed; closing twice is fine", function()
    local loop = helper.new_loop()
    loop:close()
    assert.is_true(loop:is_closed())
    assert.is_false(loop:is_running())
    loop:close()
    assert.is_true(loop:is_closed())
  end)

  it("a closed loop refuses to schedule or run with RuntimeError", function()
    local loop = helper.new_loop()
    loop:close()
    local function refuses(fn, ...)
      local e = err_of(fn, ...)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.matches("closed", e.message)
    end
    refuses(loop.call_soon, loop, function() end)
    refuses(loop.call_later, loop, 1, function() end)
    refuses(loop.call_at, loop, loop:time() + 1, function() end)
    refuses(loop.call_soon_threadsafe, loop, function() end)
    refuses(loop.create_task, loop, function() end)
    refuses(loop.run_forever, loop)
    refuses(loop.run_until_complete, loop, function() end)
    refuses(loop.run_once, loop)
  end)

  it("close() of a running loop is refused with RuntimeError and the loop goes on", function()
    with_loop(function(loop)
      local e
      local after = false
      loop:call_soon(function()
        local ok
        ok, e = pcall(loop.close, loop)
        assert(not ok, "close succeeded inside the loop")
        loop:call_soon(function()
          after = true
          loop:stop()
        end)
      end)
      loop:run_forever()
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.matches("running", e.message)
      assert.is_true(after)
      assert.is_false(loop:is_closed())
    end)
  end)

  it("close() from inside a task is refused too", function()
    with_loop(function(loop)
      local ok, e = loop:run_until_complete(function()
        return pcall(loop.close, loop)
      end)
      assert.is_false(ok)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.is_false(loop:is_closed())
    end)
  end)
end)

describe("run_forever and stop", function()
  it("stop() from a callback ends run_forever after the current batch", function()
    with_loop(function(loop)
      local log = {}
      loop:call_soon(function()
        log[#log + 1] = "a"
        loop:stop()
        loop:call_soon(function()
          log[#log + 1] = "scheduled by a"
        end)
      end)
      loop:call_soon(function()
        log[#log + 1] = "b" -- same batch as the stop: still runs
      end)
      loop:run_forever()
      assert.same({ "a", "b" }, log)
      assert.is_false(loop:is_running())
      -- the callback scheduled during the stopping batch runs next time
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.same({ "a", "b", "scheduled by a" }, log)
    end)
  end)

  it("stop() before run_forever runs one iteration, then returns", function()
    with_loop(function(loop)
      local count = 0
      loop:call_soon(function()
        count = count + 1
      end)
      loop:stop()
      loop:run_forever()
      assert.equal(1, count)
      -- the stop request was used up: the loop runs normally again
      loop:call_later(0.01, loop.stop, loop)
      loop:call_soon(function()
        count = count + 1
      end)
      loop:run_forever()
      assert.equal(2, count)
    end)
  end)

  it("the old idiom call_soon(stop) + run_forever runs exactly the ready callbacks", function()
    with_loop(function(loop)
      local count = 0
      loop:call_soon(function()
        count = count + 1
      end)
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.equal(1, count)
    end)
  end)

  it("run_forever inside a running loop is refused with RuntimeError", function()
    with_loop(function(loop)
      local e = loop:run_until_complete(function()
        local ok, err = pcall(loop.run_forever, loop)
        assert(not ok)
        return err
      end)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.matches("already running", e.message)
    end)
  end)

  it("a loop cannot run while another loop of the state is running", function()
    with_loop(function(loop)
      local other = helper.new_loop()
      local e = loop:run_until_complete(function()
        local ok, err = pcall(other.run_until_complete, other, function() end)
        assert(not ok)
        return err
      end)
      other:close()
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
    end)
  end)

  it("a loop can be run again after stop", function()
    with_loop(function(loop)
      for round = 1, 3 do
        local ran = false
        loop:call_soon(function()
          ran = true
          loop:stop()
        end)
        loop:run_forever()
        assert.is_true(ran, "round " .. round)
      end
    end)
  end)
end)

describe("run_until_complete", function()
  it("returns every value of a future", function()
    with_loop(function(loop)
      local fut = loop:create_future()
      loop:call_soon(fut.set_result, fut, 1, nil, "three")
      local r = table.pack(loop:run_until_complete(fut))
      assert.equal(3, r.n)
      assert.same({ 1, nil, "three", n = 3 }, r)
    end)
  end)

  it("wraps a function in a task and returns every value it returned", function()
    with_loop(function(loop)
      local r = table.pack(loop:run_until_complete(function()
        asyncio.sleep(0)
        return "a", false, nil
      end))
      assert.same({ "a", false, nil, n = 3 }, r)
    end)
  end)

  it("returns nothing for a function that returned nothing", function()
    with_loop(function(loop)
      assert.equal(0, select("#", loop:run_until_complete(function() end)))
    end)
  end)

  it("accepts a task", function()
    with_loop(function(loop)
      local t = loop:create_task(function(a, b)
        asyncio.sleep(0.001)
        return a + b
      end, 2, 3)
      assert.equal(5, loop:run_until_complete(t))
      assert.is_true(t:done())
    end)
  end)

  it("raises the error of a failed future unchanged", function()
    with_loop(function(loop)
      local obj = {}
      local e = err_of(loop.run_until_complete, loop, function()
        asyncio.sleep(0)
        error(obj)
      end)
      assert.equal(obj, e)
      e = err_of(loop.run_until_complete, loop, function()
        error("plain string", 0)
      end)
      assert.equal("plain string", e)
    end)
  end)

  it("raises CancelledError for a cancelled future", function()
    with_loop(function(loop)
      local fut = loop:create_future()
      loop:call_soon(fut.cancel, fut)
      local e = err_of(loop.run_until_complete, loop, fut)
      assert.is_true(asyncio.isinstance(e, asyncio.CancelledError), tostring(e))
    end)
  end)

  it("nested run_until_complete is refused with RuntimeError", function()
    with_loop(function(loop)
      local inner_ran = false
      local e = loop:run_until_complete(function()
        local ok, err = pcall(loop.run_until_complete, loop, function()
          inner_ran = true
        end)
        assert(not ok)
        return err
      end)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.matches("already running", e.message)
      -- a refused nested call may have created its task: let it finish
      loop:run_until_complete(function()
        asyncio.sleep(0)
      end)
    end)
  end)

  it("raises RuntimeError when the loop is stopped before the future is done", function()
    with_loop(function(loop)
      local t = loop:create_task(function()
        loop:stop()
        asyncio.sleep(0.05)
        return "late"
      end)
      local e = err_of(loop.run_until_complete, loop, t)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.is_false(t:done())
      -- the loop can go on with the same task
      assert.equal("late", loop:run_until_complete(t))
    end)
  end)

  it("refuses a future of another loop", function()
    with_loop(function(loop)
      local other = helper.new_loop()
      local fut = other:create_future()
      local ok, e = pcall(loop.run_until_complete, loop, fut)
      other:close()
      assert.is_false(ok)
      assert.matches("another loop", tostring(e))
    end)
  end)

  it("does not stop the loop from processing other callbacks", function()
    with_loop(function(loop)
      local ticks = 0
      local function tick()
        ticks = ticks + 1
        if ticks < 5 then
          loop:call_soon(tick)
        end
      end
      loop:call_soon(tick)
      loop:run_until_complete(function()
        asyncio.sleep(0.02)
      end)
      assert.equal(5, ticks)
    end)
  end)
end)

describe("run_once", function()
  it("runs the callbacks that are ready, not the ones they schedule", function()
    with_loop(function(loop)
      local log = {}
      loop:call_soon(function()
        log[#log + 1] = 1
        loop:call_soon(function()
          log[#log + 1] = 3
        end)
      end)
      loop:call_soon(function()
        log[#log + 1] = 2
      end)
      loop:run_once()
      assert.same({ 1, 2 }, log)
      assert.is_false(loop:is_running())
      loop:run_once()
      assert.same({ 1, 2, 3 }, log)
    end)
  end)

  it("with a timeout waits for a timer, at most about that long", function()
    with_loop(function(loop)
      local fired = false
      loop:call_later(0.03, function()
        fired = true
      end)
      local t0 = loop:time()
      local turns = 0
      while not fired and turns < 50 do
        loop:run_once(0.2)
        turns = turns + 1
      end
      local elapsed = loop:time() - t0
      assert.is_true(fired)
      assert.is_true(elapsed >= 0.025, "fired too early: " .. elapsed)
      assert.is_true(elapsed < 2, "waited too long: " .. elapsed)
    end)
  end)

  it("does not block without a timeout", function()
    with_loop(function(loop)
      loop:call_later(5, function() end)
      local t0 = loop:time()
      loop:run_once()
      assert.is_true(loop:time() - t0 < 1)
    end)
  end)

  it("steps tasks", function()
    with_loop(function(loop)
      local steps = {}
      local t = loop:create_task(function()
        steps[#steps + 1] = 1
        asyncio.sleep(0)
        steps[#steps + 1] = 2
        return "done"
      end)
      loop:run_once()
      assert.same({ 1 }, steps)
      loop:run_once()
      assert.same({ 1, 2 }, steps)
      assert.is_true(t:done())
      assert.equal("done", t:result())
    end)
  end)

  it("is refused inside a running loop and on a closed loop", function()
    with_loop(function(loop)
      local e = loop:run_until_complete(function()
        local ok, err = pcall(loop.run_once, loop)
        assert(not ok)
        return err
      end)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
    end)
  end)
end)

describe("time()", function()
  it("is a monotonic float in seconds", function()
    with_loop(function(loop)
      local t1 = loop:time()
      assert.equal("float", math.type(t1))
      local prev = t1
      for _ = 1, 1000 do
        local t = loop:time()
        assert.is_true(t >= prev)
        prev = t
      end
      loop:run_until_complete(function()
        asyncio.sleep(0.05)
      end)
      local t2 = loop:time()
      assert.is_true(t2 - t1 >= 0.045, "slept " .. (t2 - t1))
      assert.is_true(t2 - t1 < 5)
    end)
  end)

  it("agrees between two loops", function()
    with_loop(function(loop)
      local other = helper.new_loop()
      local a, b = loop:time(), other:time()
      other:close()
      assert.is_true(math.abs(a - b) < 0.5)
    end)
  end)
end)

describe("call_soon_threadsafe", function()
  it("schedules a callback with its arguments and returns a Handle", function()
    with_loop(function(loop)
      local got
      local h = loop:call_soon_threadsafe(function(...)
        got = table.pack(...)
        loop:stop()
      end, 1, nil, 3)
      assert.is_false(h:cancelled())
      loop:run_forever()
      assert.same({ 1, nil, 3, n = 3 }, got)
    end)
  end)

  it("keeps FIFO order among threadsafe callbacks", function()
    with_loop(function(loop)
      local log = {}
      for i = 1, 10 do
        loop:call_soon_threadsafe(function()
          log[#log + 1] = i
        end)
      end
      loop:call_soon_threadsafe(loop.stop, loop)
      loop:run_forever()
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, log)
    end)
  end)

  it("wakes up a loop that waits for a far timer", function()
    with_loop(function(loop)
      loop:call_later(5, function() end)
      local woke = false
      loop:call_soon(function()
        loop:call_soon_threadsafe(function()
          woke = true
          loop:stop()
        end)
      end)
      local t0 = loop:time()
      loop:run_forever()
      assert.is_true(woke)
      assert.is_true(loop:time() - t0 < 2)
    end)
  end)

  it("can be cancelled before it runs", function()
    with_loop(function(loop)
      local ran = false
      local h = loop:call_soon_threadsafe(function()
        ran = true
      end)
      h:cancel()
      assert.is_true(h:cancelled())
      loop:call_later(0.01, loop.stop, loop)
      loop:run_forever()
      assert.is_false(ran)
    end)
  end)
end)

describe("event loop policy functions", function()
  it("get_running_loop raises RuntimeError outside a running loop", function()
    local e = err_of(asyncio.get_running_loop)
    assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
  end)

  it("get_running_loop returns the loop inside callbacks and tasks", function()
    with_loop(function(loop)
      local in_cb, in_task
      loop:call_soon(function()
        in_cb = asyncio.get_running_loop()
      end)
      in_task = loop:run_until_complete(function()
        return asyncio.get_running_loop()
      end)
      assert.equal(loop, in_cb)
      assert.equal(loop, in_task)
    end)
  end)

  it("set_event_loop / get_event_loop", function()
    local loop = helper.new_loop()
    local ok, err = pcall(function()
      asyncio.set_event_loop(loop)
      assert.equal(loop, asyncio.get_event_loop())
      asyncio.set_event_loop(nil)
      local fresh = asyncio.get_event_loop() -- makes one
      assert.is_not_nil(fresh)
      assert.are_not.equal(loop, fresh)
      assert.equal(fresh, asyncio.get_event_loop())
      asyncio.set_event_loop(nil)
      fresh:close()
    end)
    asyncio.set_event_loop(nil)
    loop:close()
    assert(ok, err)
  end)

  it("get_event_loop prefers the running loop", function()
    with_loop(function(loop)
      local other = helper.new_loop()
      asyncio.set_event_loop(other)
      local seen = loop:run_until_complete(function()
        return asyncio.get_event_loop()
      end)
      asyncio.set_event_loop(nil)
      other:close()
      assert.equal(loop, seen)
    end)
  end)
end)

describe("settings", function()
  it("set_debug / get_debug", function()
    with_loop(function(loop)
      loop:set_debug(true)
      assert.is_true(loop:get_debug())
      loop:set_debug(false)
      assert.is_false(loop:get_debug())
    end)
  end)

  it("slow_callback_duration defaults to 0.1 and can be set", function()
    with_loop(function(loop)
      assert.equal(0.1, loop.slow_callback_duration)
      loop.slow_callback_duration = 0.25
      assert.equal(0.25, loop.slow_callback_duration)
      local other = helper.new_loop()
      local theirs = other.slow_callback_duration
      other:close()
      assert.equal(0.1, theirs) -- per loop
    end)
  end)

  it("other fields cannot be set on a loop", function()
    with_loop(function(loop)
      assert.has_error(function()
        loop.no_such_field = 1
      end)
    end)
  end)

  it("set_task_factory / get_task_factory", function()
    with_loop(function(loop)
      assert.is_nil(loop:get_task_factory())
      local calls = {}
      local function factory(lp, fn, ...)
        calls[#calls + 1] = table.pack(lp, fn, ...)
        return asyncio.Task(lp, fn, ...)
      end
      loop:set_task_factory(factory)
      assert.equal(factory, loop:get_task_factory())
      local body = function(a, b)
        return a * b
      end
      local t = loop:create_task(body, 6, 7)
      assert.equal(42, loop:run_until_complete(t))
      assert.equal(1, #calls)
      assert.equal(loop, calls[1][1])
      assert.equal(body, calls[1][2])
      assert.equal(6, calls[1][3])
      assert.equal(7, calls[1][4])
      -- asyncio.create_task goes through the factory too
      local r = loop:run_until_complete(function()
        return asyncio.create_task(function()
          return "inner"
        end):await()
      end)
      assert.equal("inner", r)
      assert.is_true(#calls >= 3) -- the wrapper task and the inner one
      loop:set_task_factory(nil)
      assert.is_nil(loop:get_task_factory())
      local n = #calls
      loop:run_until_complete(loop:create_task(function() end))
      assert.equal(n, #calls)
    end)
  end)

  it("a task factory that does not return a future is an error", function()
    with_loop(function(loop)
      loop:set_task_factory(function()
        return 42
      end)
      local ok, e = pcall(loop.create_task, loop, function() end)
      loop:set_task_factory(nil)
      assert.is_false(ok)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
    end)
  end)

  it("a task factory may return any future", function()
    with_loop(function(loop)
      loop:set_task_factory(function(lp)
        local f = lp:create_future()
        f:set_result("from factory")
        return f
      end)
      local f = loop:create_task(function()
        error("not run")
      end)
      loop:set_task_factory(nil)
      assert.is_true(asyncio.isfuture(f))
      assert.equal("from factory", loop:run_until_complete(f))
    end)
  end)
end)

describe("backend_fd / backend_timeout", function()
  it("backend_fd is a file descriptor", function()
    local loop = helper.new_loop()
    local fd = loop:backend_fd()
    loop:close()
    assert.equal("integer", math.type(fd))
    assert.is_true(fd >= 0)
  end)

  it("backend_timeout is 0 while callbacks are ready", function()
    local loop = helper.new_loop()
    local ok, err = pcall(function()
      loop:call_later(5, function() end)
      loop:call_soon(function() end)
      assert.equal(0, loop:backend_timeout())
      loop:run_once()
      -- a timer that is already due counts as ready
      loop:call_at(loop:time() - 1, function() end)
      assert.equal(0, loop:backend_timeout())
    end)
    loop:close()
    assert(ok, err)
  end)

  it("backend_timeout is the time to the next timer when nothing is ready", function()
    local loop = helper.new_loop()
    local ok, err = pcall(function()
      loop:call_later(5, function() end)
      local t = loop:backend_timeout()
      assert.is_number(t)
      assert.is_true(t > 4 and t <= 5.01, "backend_timeout " .. tostring(t))
    end)
    loop:close()
    assert(ok, err)
  end)

  it("backend_timeout of a far timer (30 days) is a deadline, not 'none'", function()
    local loop = helper.new_loop()
    loop:call_later(30 * 86400, function() end)
    local t = loop:backend_timeout()
    loop:close()
    assert.is_number(t)
    assert.is_true(t > 0 and t <= 30 * 86400 + 1, "backend_timeout " .. tostring(t))
  end)

  it("backend_timeout has no deadline (nil) when nothing is scheduled", function()
    local loop = helper.new_loop()
    local t = loop:backend_timeout()
    loop:close()
    assert.is_nil(t)
  end)

  it("both raise RuntimeError on a closed loop", function()
    local loop = helper.new_loop()
    loop:close()
    for _, name in ipairs({ "backend_fd", "backend_timeout" }) do
      local e = err_of(loop[name], loop)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), name)
    end
  end)
end)

describe("exception handler", function()
  it("get_exception_handler is nil by default and returns what was set", function()
    with_loop(function(loop)
      assert.is_nil(loop:get_exception_handler())
      local function handler() end
      loop:set_exception_handler(handler)
      assert.equal(handler, loop:get_exception_handler())
      loop:set_exception_handler(nil)
      assert.is_nil(loop:get_exception_handler())
    end)
  end)

  it("set_exception_handler refuses a value that cannot be called", function()
    with_loop(function(loop)
      for _, bad in ipairs({ 123, "123", {}, true }) do
        local ok, e = pcall(loop.set_exception_handler, loop, bad)
        assert.is_false(ok)
        assert.matches("bad argument", tostring(e))
      end
      assert.is_nil(loop:get_exception_handler())
      -- a callable table is fine
      local callable = setmetatable({}, { __call = function() end })
      loop:set_exception_handler(callable)
      assert.equal(callable, loop:get_exception_handler())
    end)
  end)

  it("an error in a callback reaches the handler and the loop goes on", function()
    with_loop(function(loop)
      local contexts = {}
      loop:set_exception_handler(function(lp, context)
        assert.equal(loop, lp)
        contexts[#contexts + 1] = context
      end)
      local err = asyncio.ValueError("from callback")
      local after = false
      local h = loop:call_soon(function()
        error(err)
      end)
      loop:call_soon(function()
        after = true
      end)
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.is_true(after)
      assert.equal(1, #contexts)
      local c = contexts[1]
      assert.equal(err, c.exception)
      assert.matches("Exception in callback", c.message)
      assert.equal(h, c.handle)
    end)
  end)

  it("errors in timer callbacks and done callbacks reach the handler", function()
    with_loop(function(loop)
      local contexts = {}
      loop:set_exception_handler(function(_, context)
        contexts[#contexts + 1] = context
      end)
      local th = loop:call_later(0.001, function()
        error("timer boom", 0)
      end)
      local fut = loop:create_future()
      fut:add_done_callback(function()
        error("done boom", 0)
      end)
      fut:set_result(1)
      loop:run_until_complete(function()
        asyncio.sleep(0.02)
      end)
      assert.equal(2, #contexts)
      local by = {}
      for _, c in ipairs(contexts) do
        by[c.exception] = c
      end
      assert.is_not_nil(by["timer boom"])
      assert.is_not_nil(by["done boom"])
      assert.equal(th, by["timer boom"].handle)
      assert.equal(fut, by["done boom"].future)
      assert.is_string(by["timer boom"].message)
    end)
  end)

  it("plain string and table errors reach the handler unchanged", function()
    with_loop(function(loop)
      local got = {}
      loop:set_exception_handler(function(_, context)
        got[#got + 1] = context.exception
      end)
      local tbl = { code = 7 }
      loop:call_soon(function()
        error("just a string", 0)
      end)
      loop:call_soon(function()
        error(tbl)
      end)
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.same({ "just a string", tbl }, got)
      assert.equal(tbl, got[2])
    end)
  end)

  it("call_exception_handler calls the handler with the context", function()
    with_loop(function(loop)
      local seen
      loop:set_exception_handler(function(lp, context)
        seen = { lp, context }
      end)
      local ctx = { message = "hello", extra = 1 }
      loop:call_exception_handler(ctx)
      assert.equal(loop, seen[1])
      assert.equal(ctx, seen[2])
    end)
  end)

  it("call_exception_handler uses default_exception_handler without a handler", function()
    with_loop(function(loop)
      local records = helper.capture_log(function(records)
        loop:call_exception_handler({ message = "custom message xyzzy", exception = asyncio.ValueError("v1") })
        return records
      end)
      local found = helper.grep(records, "custom message xyzzy")
      assert.equal(1, #found)
      assert.equal("error", found[1].level)
      assert.matches("ValueError: v1", found[1].msg)
    end)
  end)

  it("default_exception_handler logs the message, the exception and other keys", function()
    with_loop(function(loop)
      local records = helper.capture_log(function(records)
        loop:default_exception_handler({ message = "plugh happened", exception = "the error", detail = "d42" })
        loop:default_exception_handler({ exception = "no message given" })
        return records
      end)
      local found = helper.grep(records, "plugh happened")
      assert.equal(1, #found)
      assert.matches("the error", found[1].msg)
      assert.matches("d42", found[1].msg)
      found = helper.grep(records, "no message given")
      assert.equal(1, #found)
      assert.equal("error", found[1].level)
    end)
  end)

  it("default_exception_handler prints an address as Python prints its tuple", function()
    with_loop(function(loop)
      local records = helper.capture_log(function(records)
        loop:default_exception_handler({ message = "handshake", peername = { "127.0.0.1", 5001 } })
        return records
      end)
      local found = helper.grep(records, "handshake")
      assert.equal(1, #found)
      assert.is_truthy(found[1].msg:find("peername: ('127.0.0.1', 5001)", 1, true), found[1].msg)
    end)
  end)

  it("a custom handler may call default_exception_handler", function()
    with_loop(function(loop)
      local records = helper.capture_log(function(records)
        loop:set_exception_handler(function(lp, context)
          context.message = "wrapped: " .. context.message
          lp:default_exception_handler(context)
        end)
        loop:call_soon(function()
          error("frotz", 0)
        end)
        loop:call_soon(loop.stop, loop)
        loop:run_forever()
        return records
      end)
      local found = helper.grep(records, "wrapped: Exception in callback")
      assert.equal(1, #found)
      assert.matches("frotz", found[1].msg)
    end)
  end)

  it("an error in the handler itself is logged and the loop goes on", function()
    with_loop(function(loop)
      local records = helper.capture_log(function(records)
        loop:set_exception_handler(function()
          error("handler is broken", 0)
        end)
        local after = false
        loop:call_soon(function()
          error("original", 0)
        end)
        loop:call_soon(function()
          after = true
          loop:stop()
        end)
        loop:run_forever()
        assert.is_true(after)
        return records
      end)
      local found = helper.grep(records, "Unhandled error in exception event handler")
      assert.equal(1, #found)
      assert.matches("handler is broken", found[1].msg)
    end)
  end)

  it("call_exception_handler refuses a context that is not a table", function()
    with_loop(function(loop)
      local ok, e = pcall(loop.call_exception_handler, loop, "nope")
      assert.is_false(ok)
      assert.matches("bad argument", tostring(e))
    end)
  end)
end)
