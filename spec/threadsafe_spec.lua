-- asyncio.run_coroutine_threadsafe and asyncio.wrap_future. From a job of
-- the executor (loop nil) the function runs as a task of the loop that
-- submitted the job, and the worker blocks on its own future's result().
-- Job and task functions are copied into other states, so they may use no
-- upvalue of this file: what they need they require, or get as arguments;
-- they share values with this file through the state's real globals (_G.X
-- here, plain X in them: their _ENV is the state's, not this file's).
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run
local TPE = asyncio.ThreadPoolExecutor

describe("run_coroutine_threadsafe from a job", function()
  it("runs fn as a task of the submitting loop; result() blocks the worker for its values", function()
    run(function()
      local loop = asyncio.get_running_loop()
      _G.TASK_LOOP = nil
      local r = table.pack(asyncio.to_thread(function(k)
        local aio = require "asyncio"
        local f = aio.run_coroutine_threadsafe(function(a, t)
          local aio = require "asyncio"
          TASK_LOOP = aio.get_running_loop() -- this file's loop, in its state
          aio.sleep(0.02)
          return a * 2, nil, { got = t.v, list = { 1, 2 } }, aio.current_task() ~= nil
        end, nil, k, { v = "arg" })
        local before = tostring(f)
        local r = table.pack(f:result())
        assert(r.n == 4, "four values")
        return before, tostring(f), f:done(), f:cancelled(), f:running(), r[1], r[2], r[3].got, r[3].list[2],
          r[4], f:exception(), select("#", f:result())
      end, 21))
      assert.equal(loop, _G.TASK_LOOP)
      assert.matches("^<ConcurrentFuture %a+>$", r[1])
      assert.equal("<ConcurrentFuture finished>", r[2])
      assert.is_true(r[3])
      assert.is_false(r[4])
      assert.is_false(r[5])
      assert.equal(42, r[6])
      assert.equal("integer", math.type(r[6]))
      assert.is_nil(r[7])
      assert.equal("arg", r[8])
      assert.equal(2, r[9])
      assert.is_true(r[10]) -- it ran as a task
      assert.is_nil(r[11])   -- exception(): none
      assert.equal(4, r[12]) -- result() again: the same values
      _G.TASK_LOOP = nil
    end)
  end)

  it("many jobs in parallel, each calling it several times", function()
    run(function()
      local ex = TPE { max_workers = 8 }
      local ticks, ticking = 0, true
      local ticker = asyncio.create_task(function()
        while ticking do
          ticks = ticks + 1
          asyncio.sleep(0.002)
        end
      end)
      local futs = {}
      for i = 1, 16 do
        futs[i] = ex:submit(function(i)
          local aio = require "asyncio"
          local sum = 0
          for k = 1, 5 do
            sum = sum + aio.run_coroutine_threadsafe(function(i, k)
              require("asyncio").sleep(0.001 * ((i + k) % 4))
              return i * k
            end, nil, i, k):result()
          end
          return sum
        end, i)
      end
      for i = 1, 16 do assert.equal(i * 15, futs[i]:await()) end
      ticking = false
      ticker:await()
      assert.is_true(ticks > 0) -- the loop was never blocked
      ex:shutdown()
    end)
  end)

  it("result(timeout) raises TimeoutError, the task keeps running, a later result() has it", function()
    run(function()
      local r = asyncio.to_thread(function()
        local aio = require "asyncio"
        local f = aio.run_coroutine_threadsafe(function()
          require("asyncio").sleep(0.2)
          return "late"
        end)
        local out = {}
        local ok, e = pcall(f.result, f, 0.02)
        out.ok, out.timeout = ok, aio.isinstance(e, aio.TimeoutError)
        ok, e = pcall(f.exception, f, 0)
        out.timeout0 = aio.isinstance(e, aio.TimeoutError)
        out.done, out.running = f:done(), f:running()
        out.value = f:result(5)
        out.again = f:result(0)
        return out
      end)
      assert.is_false(r.ok)
      assert.is_true(r.timeout)
      assert.is_true(r.timeout0)
      assert.is_false(r.done)
      assert.is_true(r.running)
      assert.equal("late", r.value)
      assert.equal("late", r.again)
      local e = helper.err_of(asyncio.to_thread, function()
        local aio = require "asyncio"
        local f = aio.run_coroutine_threadsafe(function() end)
        return f:result(0 / 0)
      end)
      assert.matches("timeout is NaN", tostring(e))
    end)
  end)

  it("cancel() from the worker cancels the task in the loop; result() raises CancelledError", function()
    run(function()
      _G.SEEN = nil
      local r = asyncio.to_thread(function()
        local aio = require "asyncio"
        local f = aio.run_coroutine_threadsafe(function()
          local aio = require "asyncio"
          local ok, e = pcall(aio.sleep, 30)
          SEEN = not ok and aio.isinstance(e, aio.CancelledError)
          error(e, 0)
        end)
        while not f:running() do require("thread_sleep")(0.005) end
        local out = { first = f:cancel(), again = f:cancel(), done = f:done(), cancelled = f:cancelled() }
        local ok, e = pcall(f.result, f)
        out.result = not ok and aio.isinstance(e, aio.CancelledError)
        ok, e = pcall(f.exception, f)
        out.exception = not ok and aio.isinstance(e, aio.CancelledError)
        out.str = tostring(f)
        return out
      end)
      assert.is_true(r.first)
      assert.is_true(r.again)
      assert.is_true(r.done)
      assert.is_true(r.cancelled)
      assert.is_true(r.result)
      assert.is_true(r.exception)
      assert.equal("<ConcurrentFuture cancelled>", r.str)
      helper.wait_until(function() return _G.SEEN ~= nil end)
      assert.is_true(_G.SEEN)
      -- done first: cancel() is refused
      assert.is_false(asyncio.to_thread(function()
        local f = require("asyncio").run_coroutine_threadsafe(function() return 1 end)
        f:result()
        return f:cancel()
      end))
      _G.SEEN = nil
    end)
  end)

  it("a request cancelled before it reaches the loop never runs", function()
    run(function()
      _G.RAN, _G.READY = nil, false
      local ex = TPE { max_workers = 1 }
      local job = ex:submit(function()
        local aio = require "asyncio"
        aio.call_soon_threadsafe(function() READY = true end)
        require("thread_sleep")(0.05) -- the loop is busy by now
        local f = aio.run_coroutine_threadsafe(function() RAN = true end)
        local arrived = f:running()
        return arrived, f:cancel()
      end)
      helper.wait_until(function() return _G.READY end)
      helper.busy(0.3) -- the loop runs nothing: the request waits in its queue
      local arrived, cancelled = job:await()
      assert.is_false(arrived)
      assert.is_true(cancelled)
      asyncio.sleep(0.02)
      assert.is_nil(_G.RAN)
      ex:shutdown()
    end)
  end)

  it("errors come back as a job's do: asyncio errors rebuilt, strings as RuntimeError, tables copied", function()
    run(function()
      local r = asyncio.to_thread(function()
        local aio = require "asyncio"
        local function outcome(fn)
          local e = aio.run_coroutine_threadsafe(fn):exception()
          local mt = getmetatable(e)
          return { cls = mt and mt.__name, msg = type(e) == "table" and e.message, code = type(e) == "table" and e.code,
                   value = type(e) == "table" and e.value, tb = type(e) == "table" and e.traceback, x = type(e) == "table" and e.x }
        end
        return {
          cls = outcome(function()
            local aio = require "asyncio"
            error(aio.ValueError("bad value", { code = 7, cb = print }))
          end),
          str = outcome(function() error("plain failure") end),
          tbl = outcome(function() error({ x = 1 }) end),
          uncopyable = outcome(function() return print end),
        }
      end)
      assert.equal("ValueError", r.cls.cls)
      assert.equal("bad value", r.cls.msg)
      assert.equal(7, r.cls.code)
      assert.matches("stack traceback", r.cls.tb)
      assert.equal("RuntimeError", r.str.cls)
      assert.matches("plain failure", r.str.msg)
      assert.matches("plain failure", r.str.value)
      assert.matches("in function 'error'", r.str.tb) -- the task's traceback
      assert.is_nil(r.tbl.cls)
      assert.equal(1, r.tbl.x)
      assert.equal("RuntimeError", r.uncopyable.cls)
      assert.matches("run_coroutine_threadsafe: result 1: function$", r.uncopyable.msg)
      -- raised by result(), and on through the job
      local e = helper.err_of(asyncio.to_thread, function()
        local aio = require "asyncio"
        return aio.run_coroutine_threadsafe(function()
          error(require("asyncio").InvalidStateError("from the task"))
        end):result()
      end)
      helper.assert_class(asyncio.InvalidStateError, e)
      assert.equal("from the task", e.message)
    end)
  end)

  it("a function or argument that does not copy raises in the worker, at the call", function()
    run(function()
      local e = helper.err_of(asyncio.to_thread, function()
        local aio, up = require "asyncio", 1
        aio.run_coroutine_threadsafe(function() return up end)
      end)
      assert.matches("run_coroutine_threadsafe: argument 1: function with upvalue 'up'", tostring(e))
      e = helper.err_of(asyncio.to_thread, function()
        require("asyncio").run_coroutine_threadsafe(function() end, nil, 1, { cb = print })
      end)
      assert.matches("run_coroutine_threadsafe: argument 4 .cb: function", tostring(e))
      e = helper.err_of(asyncio.to_thread, function() require("asyncio").run_coroutine_threadsafe(42) end)
      assert.matches("bad argument #1 to '.*run_coroutine_threadsafe' %(function expected, got number%)", tostring(e))
      e = helper.err_of(asyncio.to_thread, function()
        require("asyncio").run_coroutine_threadsafe(function() end, 42)
      end)
      assert.matches("bad argument #2 to '.*run_coroutine_threadsafe' %(Loop expected, got number%)", tostring(e))
    end)
  end)

  it("goes through the loop's task factory; a factory's error is the worker's", function()
    run(function()
      local loop = asyncio.get_running_loop()
      _G.MADE = 0
      loop:set_task_factory(function(l, fn, ...)
        _G.MADE = _G.MADE + 1
        if select("#", ...) > 0 and ... == "refuse" then error(asyncio.ValueError("no task for you")) end
        return asyncio.Task(l, fn, ...)
      end)
      local ok, e = asyncio.to_thread(function()
        local aio = require "asyncio"
        local ok = aio.run_coroutine_threadsafe(function(x) return x end, nil, "fine"):result()
        local e = aio.run_coroutine_threadsafe(function() end, nil, "refuse"):exception(5)
        return ok, tostring(e)
      end)
      loop:set_task_factory(nil)
      assert.equal("fine", ok)
      assert.equal("ValueError: no task for you", e)
      assert.equal(2, _G.MADE)
      loop:set_task_factory(asyncio.eager_task_factory)
      assert.equal(6, asyncio.to_thread(function()
        return require("asyncio").run_coroutine_threadsafe(function(x) return x * 2 end, nil, 3):result()
      end))
      loop:set_task_factory(nil)
      _G.MADE = nil
    end)
  end)

  it("a worker waiting when its loop closes wakes with RuntimeError, whether the request arrived or not", function()
    local ex = TPE { max_workers = 1 } -- one worker: its globals hold what each job saw
    run(function()
      ex:submit(function()
        local aio = require "asyncio"
        local f = aio.run_coroutine_threadsafe(function() require("asyncio").sleep(30) end)
        ARRIVED_ERR = tostring(select(2, pcall(f.result, f)))
      end)
      asyncio.sleep(0.1)
    end) -- closes the loop with the task pending and the worker in result()
    helper.with_loop(function(loop)
      _G.READY = false
      loop:run_until_complete(function()
        ex:submit(function()
          local aio = require "asyncio"
          aio.call_soon_threadsafe(function() READY = true end)
          require("thread_sleep")(0.05) -- the loop does not run any more
          local f = aio.run_coroutine_threadsafe(function() end)
          QUEUED_ERR = tostring(select(2, pcall(f.result, f)))
          LATE_ERR = tostring(select(2, pcall(aio.run_coroutine_threadsafe, function() end)))
        end)
        helper.wait_until(function() return _G.READY end)
      end)
      helper.busy(0.2) -- the request is posted, never run
    end) -- closes the loop with the request in its queue
    run(function()
      assert.equal("RuntimeError: Event loop is closed", ex:submit(function() return ARRIVED_ERR end):await())
      assert.equal("RuntimeError: Event loop is closed", ex:submit(function() return QUEUED_ERR end):await())
      assert.equal("RuntimeError: Event loop is closed", ex:submit(function() return LATE_ERR end):await())
    end)
    ex:shutdown()
  end)

  it("futures dropped unretrieved, done or not, leave nothing behind", function()
    local ex = TPE { max_workers = 2 }
    run(function()
      local futs = {}
      for i = 1, 4 do
        futs[i] = ex:submit(function()
          local aio = require "asyncio"
          for _ = 1, 25 do aio.run_coroutine_threadsafe(function() require("asyncio").sleep(0.01) return {} end) end
          collectgarbage()
          aio.run_coroutine_threadsafe(function() require("asyncio").sleep(30) end) -- pending at loop close
        end)
      end
      for i = 1, 4 do futs[i]:await() end
      asyncio.sleep(0.05)
      helper.gc()
    end)
    ex:shutdown()
  end)
end)

describe("run_coroutine_threadsafe in the loop's own state", function()
  it("returns a Future chained to a task: its values (not copied) and its errors", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local t = {}
      local f = asyncio.run_coroutine_threadsafe(function(a, b)
        asyncio.sleep(0.01)
        return a, nil, b
      end, loop, t, 3)
      assert.is_true(asyncio.isfuture(f))
      assert.equal(loop, f:get_loop())
      local r = table.pack(f:await())
      assert.equal(3, r.n)
      assert.equal(t, r[1]) -- the same table
      assert.equal(3, r[3])
      local err = asyncio.ValueError("task failed")
      f = asyncio.run_coroutine_threadsafe(function() error(err) end) -- loop nil: the running one
      assert.equal(err, helper.err_of(f.await, f))
      -- from a callback of the loop
      local from_cb
      loop:call_soon(function()
        from_cb = asyncio.run_coroutine_threadsafe(function(x) return x + 1 end, loop, 1)
      end)
      helper.wait_until(function() return from_cb ~= nil end)
      assert.equal(2, from_cb:await())
    end)
  end)

  it("cancelling the future cancels the task, and a cancelled task cancels the future", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local seen
      local f = asyncio.run_coroutine_threadsafe(function()
        local ok, e = pcall(asyncio.sleep, 30)
        seen = not ok and asyncio.isinstance(e, asyncio.CancelledError)
        error(e, 0)
      end, loop)
      asyncio.sleep(0)
      assert.is_true(f:cancel())
      helper.wait_until(function() return seen ~= nil end)
      assert.is_true(seen)
      assert.is_true(f:cancelled())
      f = asyncio.run_coroutine_threadsafe(function()
        asyncio.current_task():cancel()
        asyncio.sleep(1)
      end, loop)
      helper.assert_class(asyncio.CancelledError, helper.err_of(f.await, f))
      assert.is_true(f:cancelled())
    end)
  end)

  it("refuses a loop that is not a Loop, a closed loop, no running loop", function()
    local function call(...)
      local f = asyncio.run_coroutine_threadsafe(...)
      return f
    end
    assert.equal("bad argument #2 to 'run_coroutine_threadsafe' (Loop expected, got number)",
      (helper.err_of(call, function() end, 42):gsub("^.-:%d+: ", "")))
    assert.matches("bad argument #1 to 'run_coroutine_threadsafe' %(function expected, got nil%)",
      helper.err_of(call, nil, helper.new_loop()))
    local e = helper.err_of(call, function() end)
    helper.assert_class(asyncio.RuntimeError, e)
    assert.equal("no running event loop", e.message)
    local closed = asyncio.new_event_loop()
    closed:close()
    e = helper.err_of(call, function() end, closed)
    helper.assert_class(asyncio.RuntimeError, e)
    assert.equal("Event loop is closed", e.message)
    -- a loop that is not running takes the task for when it runs
    local loop = helper.new_loop()
    local f = call(function(x) return x end, loop, "later")
    assert.equal("later", loop:run_until_complete(f))
  end)
end)

describe("wrap_future", function()
  it("returns a Future or Task unchanged and refuses anything else", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local f, t = loop:create_future(), asyncio.create_task(function() end)
      assert.equal(f, asyncio.wrap_future(f))
      assert.equal(t, asyncio.wrap_future(t, loop))
      local function wrap(...)
        local r = asyncio.wrap_future(...)
        return r
      end
      assert.equal("bad argument #1 to 'wrap_future' (Future expected, got table)",
        (helper.err_of(wrap, {}):gsub("^.-:%d+: ", "")))
      assert.matches("Future expected, got asyncio.Loop", helper.err_of(wrap, loop))
      assert.matches("Future expected, got no value", helper.err_of(wrap))
      assert.matches("bad argument #2 to 'wrap_future' %(Loop expected, got number%)", helper.err_of(wrap, f, 1))
      t:await()
      -- a worker's future of run_coroutine_threadsafe has no loop of its state
      local e = helper.err_of(asyncio.to_thread, function()
        local aio = require "asyncio"
        local cf = aio.run_coroutine_threadsafe(function() end)
        cf:result()
        aio.wrap_future(cf)
      end)
      assert.matches("bad argument #1 to '.*wrap_future' %(Future expected, got asyncio.ConcurrentFuture%)",
        tostring(e))
    end)
  end)
end)
