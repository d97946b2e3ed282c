-- Future (after CPython's test_futures.py: BaseFutureTests and
-- BaseFutureDoneCallbackTests).
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local with_loop = helper.with_loop
local err_of, assert_class = helper.err_of, helper.assert_class

describe("Future state", function()
  it("starts pending", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert.is_false(f:done())
      assert.is_false(f:cancelled())
      assert.equal(loop, f:get_loop())
      assert.is_true(asyncio.isfuture(f))
    end)
  end)

  it("asyncio.Future() uses the current event loop, asyncio.Future(loop) that loop", function()
    with_loop(function(loop)
      assert.equal(loop, asyncio.Future():get_loop())
      local other = helper.new_loop()
      local f = asyncio.Future(other)
      local l2 = f:get_loop()
      other:close()
      assert.equal(other, l2)
    end)
  end)

  it("asyncio.Future() inside a running loop belongs to it", function()
    with_loop(function(loop)
      asyncio.set_event_loop(nil)
      local f = loop:run_until_complete(function()
        return asyncio.Future()
      end)
      assert.equal(loop, f:get_loop())
    end)
  end)

  it("result() and exception() of a pending future raise InvalidStateError", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert_class(asyncio.InvalidStateError, err_of(f.result, f))
      assert_class(asyncio.InvalidStateError, err_of(f.exception, f))
    end)
  end)

  it("cancel", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert.is_true(f:cancel())
      assert.is_true(f:cancelled())
      assert.is_true(f:done())
      assert_class(asyncio.CancelledError, err_of(f.result, f))
      assert_class(asyncio.CancelledError, err_of(f.exception, f))
      assert_class(asyncio.InvalidStateError, err_of(f.set_result, f, nil))
      assert_class(asyncio.InvalidStateError, err_of(f.set_exception, f, asyncio.ValueError("x")))
      assert.is_false(f:cancel())
    end)
  end)

  it("cancel(msg): the CancelledError carries the message", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert.is_true(f:cancel("my message"))
      local e = err_of(f.result, f)
      assert_class(asyncio.CancelledError, e)
      assert.equal("my message", e.message)
      e = err_of(f.exception, f)
      assert.equal("my message", e.message)
      -- each call raises a fresh error with the same message
      local e2 = err_of(f.result, f)
      assert.equal("my message", e2.message)
    end)
  end)

  it("result", function()
    with_loop(function(loop)
      local f = loop:create_future()
      f:set_result(42)
      assert.is_true(f:done())
      assert.is_false(f:cancelled())
      assert.equal(42, f:result())
      assert.is_nil(f:exception())
      assert_class(asyncio.InvalidStateError, err_of(f.set_result, f, 43))
      assert_class(asyncio.InvalidStateError, err_of(f.set_exception, f, asyncio.ValueError()))
      assert.is_false(f:cancel())
      assert.equal(42, f:result())
    end)
  end)

  it("result is every value given to set_result", function()
    with_loop(function(loop)
      local f = loop:create_future()
      f:set_result(1, nil, "x", nil)
      assert.same({ 1, nil, "x", nil, n = 4 }, table.pack(f:result()))
      local g = loop:create_future()
      g:set_result()
      assert.equal(0, select("#", g:result()))
      local h = loop:create_future()
      h:set_result(nil)
      assert.equal(1, select("#", h:result()))
      local big = {}
      for i = 1, 300 do
        big[i] = i
      end
      local k = loop:create_future()
      k:set_result(table.unpack(big))
      local r = table.pack(k:result())
      assert.equal(300, r.n)
      assert.equal(300, r[300])
    end)
  end)

  it("a table result is returned as is, not copied", function()
    with_loop(function(loop)
      local t = {}
      local f = loop:create_future()
      f:set_result(t)
      assert.equal(t, f:result())
    end)
  end)

  it("exception", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local exc = asyncio.RuntimeError("boom")
      f:set_exception(exc)
      assert.is_true(f:done())
      assert.is_false(f:cancelled())
      assert.equal(exc, err_of(f.result, f))
      assert.equal(exc, f:exception())
      assert_class(asyncio.InvalidStateError, err_of(f.set_result, f, 1))
      assert_class(asyncio.InvalidStateError, err_of(f.set_exception, f, exc))
      assert.is_false(f:cancel())
    end)
  end)

  it("plain string and table errors travel unchanged", function()
    with_loop(function(loop)
      local f = loop:create_future()
      f:set_exception("a plain string")
      assert.equal("a plain string", f:exception())
      assert.equal("a plain string", err_of(f.result, f))
      local t = { code = 1 }
      local g = loop:create_future()
      g:set_exception(t)
      assert.equal(t, g:exception())
      assert.equal(t, err_of(g.result, g))
    end)
  end)

  it("set_exception(nil) is refused", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert.has_error(function()
        f:set_exception(nil)
      end)
      assert.is_false(f:done())
    end)
  end)

  it("tostring shows the state", function()
    with_loop(function(loop)
      local f = loop:create_future()
      assert.matches("Future", tostring(f))
      assert.matches("pending", tostring(f))
      f:cancel()
      assert.matches("cancelled", tostring(f))
      local g = loop:create_future()
      g:set_result(1)
      assert.matches("finished", tostring(g))
      local h = loop:create_future()
      h:set_exception(asyncio.ValueError("zork"))
      assert.matches("ValueError: zork", tostring(h))
      assert.equal(h:exception().message, "zork") -- retrieved: no log at collection
    end)
  end)

  it("isfuture is false for other values", function()
    with_loop(function(loop)
      for _, v in ipairs({ 1, "s", {}, loop, function() end, true }) do
        assert.is_false(asyncio.isfuture(v))
      end
      assert.is_false(asyncio.isfuture(nil))
      assert.is_false(asyncio.isfuture(loop:call_soon(function() end)))
      assert.is_true(asyncio.isfuture(loop:create_task(function() end)))
    end)
  end)
end)

describe("a cancel hook (core.Future_on_cancel, gather's)", function()
  local core = require "asyncio.core"

  it("cancel() calls it with the message and returns its answer; the future stays pending", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local got = {}
      core.Future_on_cancel(f, function(fut, msg)
        got[#got + 1] = { fut, msg }
        return #got == 1
      end)
      assert.is_true(f:cancel("m"))
      assert.is_false(f:cancel())
      assert.same({ { f, "m" }, { f } }, got)
      assert.is_false(f:done())
      core.Future_on_cancel(f, nil) -- the plain cancel() again
      assert.is_true(f:cancel("now"))
      assert.is_true(f:cancelled())
      assert.equal(2, #got)
    end)
  end)

  it("goes with the result", function()
    with_loop(function(loop)
      local f = loop:create_future()
      core.Future_on_cancel(f, function() error("not called") end)
      f:set_result(7)
      assert.is_false(f:cancel())
      assert.equal(7, f:result())
    end)
  end)

  it("is refused on a Task, a done future or a non-function", function()
    with_loop(function(loop)
      local t = loop:create_task(function() end)
      assert.matches("plain Future expected", err_of(core.Future_on_cancel, t, print))
      local f = loop:create_future()
      assert.matches("function expected, got number", err_of(core.Future_on_cancel, f, 1))
      f:set_result()
      assert.matches("pending Future expected", err_of(core.Future_on_cancel, f, print))
      assert.matches("Future expected, got table", err_of(core.Future_on_cancel, {}, print))
      loop:run_until_complete(t)
    end)
  end)
end)

describe("Future:await", function()
  it("returns every value once resolved", function()
    with_loop(function(loop)
      local f = loop:create_future()
      loop:call_later(0.01, f.set_result, f, "a", nil, 3)
      local r = loop:run_until_complete(function()
        return table.pack(f:await())
      end)
      assert.same({ "a", nil, 3, n = 3 }, r)
    end)
  end)

  it("can be awaited twice and by several tasks", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local got = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = loop:create_task(function()
          local v = f:await()
          got[#got + 1] = v
          return f:await() -- a second await of a done future
        end)
      end
      loop:call_soon(f.set_result, f, "v")
      for i = 1, 3 do
        assert.equal("v", loop:run_until_complete(tasks[i]))
      end
      assert.same({ "v", "v", "v" }, got)
    end)
  end)

  it("of a done future returns at once, without suspending", function()
    with_loop(function(loop)
      local f = loop:create_future()
      f:set_result(7)
      local log = {}
      loop:run_until_complete(function()
        loop:call_soon(function()
          log[#log + 1] = "callback"
        end)
        log[#log + 1] = f:await()
        log[#log + 1] = "after await"
        asyncio.sleep(0)
      end)
      assert.same({ 7, "after await", "callback" }, log)
    end)
  end)

  it("raises the future's exception unchanged", function()
    with_loop(function(loop)
      local exc = asyncio.ValueError("bad value")
      local f = loop:create_future()
      loop:call_soon(f.set_exception, f, exc)
      local ok, e = loop:run_until_complete(function()
        return pcall(f.await, f)
      end)
      assert.is_false(ok)
      assert.equal(exc, e)
    end)
  end)

  it("raises CancelledError when the future is cancelled", function()
    with_loop(function(loop)
      local f = loop:create_future()
      loop:call_soon(f.cancel, f, "gone")
      local ok, e = loop:run_until_complete(function()
        return pcall(f.await, f)
      end)
      assert.is_false(ok)
      assert_class(asyncio.CancelledError, e)
      assert.equal("gone", e.message)
    end)
  end)

  it("outside a task raises RuntimeError", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local e = err_of(f.await, f)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("outside a task", e.message)
      -- in a callback: running loop, but no task
      local cb_err
      loop:call_soon(function()
        local ok
        ok, cb_err = pcall(f.await, f)
        assert(not ok)
      end)
      loop:run_once()
      assert_class(asyncio.RuntimeError, cb_err)
      assert.is_false(f:done())
    end)
  end)

  it("of a future of another loop raises RuntimeError", function()
    with_loop(function(loop)
      local other = helper.new_loop()
      local f = other:create_future()
      local ok, e = loop:run_until_complete(function()
        return pcall(f.await, f)
      end)
      other:close()
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
    end)
  end)
end)

describe("done callbacks", function()
  local function recorder(log, name)
    return function(fut)
      log[#log + 1] = { name, fut }
    end
  end

  it("run via the loop, in the order they were added, with the future", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local log = {}
      f:add_done_callback(recorder(log, "a"))
      f:add_done_callback(recorder(log, "b"))
      f:add_done_callback(recorder(log, "c"))
      f:set_result(10)
      assert.same({}, log) -- not called synchronously
      loop:run_once()
      assert.equal(3, #log)
      for i, name in ipairs({ "a", "b", "c" }) do
        assert.equal(name, log[i][1])
        assert.equal(f, log[i][2])
      end
    end)
  end)

  it("run on set_exception and on cancel", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      f:add_done_callback(recorder(log, "exc"))
      f:set_exception(asyncio.ValueError("x"))
      local g = loop:create_future()
      g:add_done_callback(recorder(log, "cancel"))
      g:cancel()
      loop:run_once()
      assert.equal(2, #log)
      assert.equal("exc", log[1][1])
      assert.equal("cancel", log[2][1])
      assert_class(asyncio.ValueError, f:exception())
    end)
  end)

  it("added to a done future are scheduled, not called at once", function()
    with_loop(function(loop)
      local f = loop:create_future()
      f:set_result(1)
      local log = {}
      f:add_done_callback(recorder(log, "late"))
      assert.same({}, log)
      loop:run_once()
      assert.equal(1, #log)
      assert.equal(f, log[1][2])
    end)
  end)

  it("the same callback added twice runs twice", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local n = 0
      local function cb()
        n = n + 1
      end
      f:add_done_callback(cb)
      f:add_done_callback(cb)
      f:set_result()
      loop:run_once()
      assert.equal(2, n)
    end)
  end)

  it("remove_done_callback removes every occurrence and returns the count", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      local a, b, c = recorder(log, "a"), recorder(log, "b"), recorder(log, "c")
      f:add_done_callback(a)
      f:add_done_callback(b)
      f:add_done_callback(a)
      f:add_done_callback(c)
      assert.equal(2, f:remove_done_callback(a))
      assert.equal(0, f:remove_done_callback(a))
      assert.equal(0, f:remove_done_callback(function() end))
      f:set_result()
      loop:run_once()
      assert.equal(2, #log)
      assert.equal("b", log[1][1])
      assert.equal("c", log[2][1])
    end)
  end)

  it("removing the first callback (a single one)", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      local a = recorder(log, "a")
      f:add_done_callback(a)
      assert.equal(1, f:remove_done_callback(a))
      f:set_result()
      loop:run_once()
      assert.same({}, log)
    end)
  end)

  it("removing the first and second of three", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      local a, b, c = recorder(log, "a"), recorder(log, "b"), recorder(log, "c")
      f:add_done_callback(a)
      f:add_done_callback(b)
      f:add_done_callback(c)
      assert.equal(1, f:remove_done_callback(a))
      assert.equal(1, f:remove_done_callback(b))
      f:add_done_callback(a)
      f:set_result()
      loop:run_once()
      assert.equal(2, #log)
      assert.equal("c", log[1][1])
      assert.equal("a", log[2][1])
    end)
  end)

  it("removing the third of three", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      local a, b, c = recorder(log, "a"), recorder(log, "b"), recorder(log, "c")
      f:add_done_callback(a)
      f:add_done_callback(b)
      f:add_done_callback(c)
      assert.equal(1, f:remove_done_callback(c))
      f:set_result()
      loop:run_once()
      assert.equal(2, #log)
      assert.equal("a", log[1][1])
      assert.equal("b", log[2][1])
    end)
  end)

  it("remove after completion finds nothing: the callbacks were already scheduled", function()
    with_loop(function(loop)
      local log = {}
      local f = loop:create_future()
      local a = recorder(log, "a")
      f:add_done_callback(a)
      f:set_result()
      assert.equal(0, f:remove_done_callback(a))
      loop:run_once()
      assert.equal(1, #log)
    end)
  end)

  it("a callback removing others while the callbacks run does no harm", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local n = 0
      local function counted()
        n = n + 1
      end
      f:add_done_callback(function(fut)
        fut:remove_done_callback(counted)
      end)
      f:add_done_callback(counted)
      f:add_done_callback(counted)
      f:set_result(1)
      loop:run_once()
      assert.equal(2, n)
    end)
  end)

  it("a callback added by a callback runs too", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local log = {}
      f:add_done_callback(function(fut)
        log[#log + 1] = 1
        fut:add_done_callback(function()
          log[#log + 1] = 2
        end)
      end)
      f:set_result()
      loop:run_once()
      loop:run_once()
      assert.same({ 1, 2 }, log)
    end)
  end)

  it("a callable table works as a done callback", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local got
      local obj = setmetatable({}, {
        __call = function(_, fut)
          got = fut
        end,
      })
      f:add_done_callback(obj)
      assert.equal(1, f:remove_done_callback(obj))
      f:add_done_callback(obj)
      f:set_result()
      loop:run_once()
      assert.equal(f, got)
    end)
  end)

  it("many callbacks on one future all run in order", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local log = {}
      for i = 1, 200 do
        f:add_done_callback(function()
          log[#log + 1] = i
        end)
      end
      f:set_result()
      loop:run_once()
      assert.equal(200, #log)
      for i = 1, 200 do
        assert.equal(i, log[i])
      end
    end)
  end)
end)

describe("exception never retrieved", function()
  local function capture_handler(loop)
    local contexts = {}
    loop:set_exception_handler(function(_, context)
      contexts[#contexts + 1] = context
    end)
    return contexts
  end

  local function matching(contexts, exc)
    local n = 0
    for _, c in ipairs(contexts) do
      if c.exception == exc then
        n = n + 1
      end
    end
    return n
  end

  it("is reported to the loop's exception handler when the future is collected", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      local exc = asyncio.ValueError("never looked at")
      do
        local f = loop:create_future()
        f:set_exception(exc)
      end
      helper.gc()
      assert.equal(1, matching(contexts, exc))
      for _, c in ipairs(contexts) do
        if c.exception == exc then
          assert.matches("never retrieved", c.message)
        end
      end
    end)
  end)

  it("is logged through asyncio.logger when the loop is closed", function()
    local exc = asyncio.ValueError("unseen after close 31337")
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      do
        local f = loop:create_future()
        f:set_exception(exc)
      end
      loop:close()
      helper.gc()
      return records
    end)
    local found = helper.grep(records, "unseen after close 31337")
    assert.equal(1, #found)
    assert.equal("error", found[1].level)
    assert.matches("never retrieved", found[1].msg)
  end)

  it("is not reported once exception() was called", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      local exc = asyncio.ValueError("seen")
      do
        local f = loop:create_future()
        f:set_exception(exc)
        assert.equal(exc, f:exception())
      end
      helper.gc()
      assert.equal(0, matching(contexts, exc))
    end)
  end)

  it("is not reported once result() raised it", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      local exc = asyncio.ValueError("raised")
      do
        local f = loop:create_future()
        f:set_exception(exc)
        assert.equal(exc, err_of(f.result, f))
      end
      helper.gc()
      assert.equal(0, matching(contexts, exc))
    end)
  end)

  it("is not reported once a task awaited it", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      local exc = asyncio.ValueError("awaited")
      do
        local f = loop:create_future()
        loop:call_soon(f.set_exception, f, exc)
        local ok = loop:run_until_complete(function()
          return pcall(f.await, f)
        end)
        assert.is_false(ok)
      end
      helper.gc()
      assert.equal(0, matching(contexts, exc))
    end)
  end)

  it("results and cancellation are never reported", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      do
        local f = loop:create_future()
        f:set_result(asyncio.ValueError("a result, not an error"))
        local g = loop:create_future()
        g:cancel()
        local _ = loop:create_future() -- never resolved
      end
      helper.gc()
      assert.same({}, contexts)
    end)
  end)

  it("a failed task whose exception nobody retrieved is reported", function()
    with_loop(function(loop)
      local contexts = capture_handler(loop)
      local exc = asyncio.ValueError("task failed, nobody looked")
      do
        local t = loop:create_task(function()
          error(exc)
        end)
        loop:run_once()
        assert.is_true(t:done())
      end
      helper.gc()
      assert.equal(1, matching(contexts, exc))
      for _, c in ipairs(contexts) do
        if c.exception == exc then
          assert.matches("Task exception was never retrieved", c.message)
        end
      end
    end)
  end)
end)

describe("ensure_future, iscoroutine, iscoroutinefunction", function()
  it("ensure_future: a future or task as it is, a function as a new task", function()
    helper.run(function()
      local loop = asyncio.get_running_loop()
      local f = loop:create_future()
      assert.equal(f, asyncio.ensure_future(f))
      assert.equal(f, asyncio.ensure_future(f, loop))
      local t = asyncio.ensure_future(function(...) return select("#", ...) end)
      assert.is_true(asyncio.isinstance(t, asyncio.Task))
      assert.equal(0, t:await())
      assert.equal(t, asyncio.ensure_future(t))
      local other = helper.new_loop()
      local e = err_of(asyncio.ensure_future, f, other)
      assert_class(asyncio.ValueError, e)
      assert.matches("different loop", e.message)
      for _, bad in ipairs { 1, "x", {}, coroutine.create(print) } do
        assert.matches("bad argument #1 to 'ensure_future'", err_of(asyncio.ensure_future, bad))
      end
      assert.matches("bad argument #2 to 'ensure_future' %(Loop expected",
        err_of(asyncio.ensure_future, print, 42))
    end)
  end)

  it("ensure_future of a function with a loop given makes the task there", function()
    with_loop(function(loop)
      local t = asyncio.ensure_future(function() return "ran" end, loop)
      assert.equal(loop, t:get_loop())
      assert.equal("ran", loop:run_until_complete(t))
    end)
  end)

  it("iscoroutine is a Lua coroutine, iscoroutinefunction a function", function()
    assert.is_true(asyncio.iscoroutine(coroutine.create(print)))
    assert.is_false(asyncio.iscoroutine(print))
    assert.is_false(asyncio.iscoroutine(nil))
    assert.is_true(asyncio.iscoroutinefunction(print))
    assert.is_true(asyncio.iscoroutinefunction(function() end))
    assert.is_false(asyncio.iscoroutinefunction(coroutine.create(print)))
    assert.is_false(asyncio.iscoroutinefunction({}))
  end)
end)
