-- Tasks (after CPython's test_tasks.py, without the combinators): creation,
-- results, names, current_task, all_tasks, get_stack, get_coro, the task
-- factory and the eager task factory (Python 3.12), to-be-closed variables.
local asyncio = require "asyncio"
local helper = require "helper"

local run, with_loop = helper.vrun, helper.with_vloop
local assert_class = helper.assert_class

describe("create_task", function()
  it("runs fn with its arguments, on a later turn of the loop", function()
    run(function()
      local got
      local t = asyncio.create_task(function(...)
        got = table.pack(...)
      end, 1, nil, "three", nil)
      assert.is_nil(got) -- not started yet
      assert.is_false(t:done())
      t:await()
      assert.same({ 1, nil, "three", nil, n = 4 }, got)
    end)
  end)

  it("the result is every value the function returned", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.sleep(0)
        return 1, nil, "x", nil
      end)
      local r = table.pack(t:await())
      assert.same({ 1, nil, "x", nil, n = 4 }, r)
      assert.same(r, table.pack(t:result()))
      local none = asyncio.create_task(function() end)
      assert.equal(0, select("#", none:await()))
      local one = asyncio.create_task(function()
        return nil
      end)
      assert.equal(1, select("#", one:await()))
      local many = asyncio.create_task(function()
        local t = {}
        for i = 1, 250 do
          t[i] = i
        end
        return table.unpack(t)
      end)
      local m = table.pack(many:await())
      assert.equal(250, m.n)
      assert.equal(250, m[250])
    end)
  end)

  it("returns a Task: a Future plus the task methods", function()
    run(function()
      local t = asyncio.create_task(function() end)
      assert.is_true(asyncio.isfuture(t))
      assert.equal(asyncio.get_running_loop(), t:get_loop())
      for _, m in ipairs({ "get_name", "set_name", "get_coro", "cancel", "cancelling", "uncancel",
                           "get_stack", "print_stack", "result", "exception", "done", "cancelled",
                           "add_done_callback", "remove_done_callback", "await" }) do
        assert.is_function(t[m], m)
      end
      t:await()
    end)
  end)

  it("loop:create_task works before the loop runs", function()
    with_loop(function(loop)
      local ran = false
      local t = loop:create_task(function(x)
        ran = true
        return x * 2
      end, 21)
      assert.is_false(ran)
      assert.equal(42, loop:run_until_complete(t))
      assert.is_true(ran)
    end)
  end)

  it("refuses a value that is not a function", function()
    run(function()
      for _, bad in ipairs({ 1, "f", {}, true }) do
        local ok, e = pcall(asyncio.create_task, bad)
        assert.is_false(ok)
        assert.matches("bad argument #1", tostring(e))
      end
    end)
  end)

  it("asyncio.create_task outside a running loop raises RuntimeError", function()
    local ok, e = pcall(asyncio.create_task, function() end)
    assert.is_false(ok)
    assert_class(asyncio.RuntimeError, e)
  end)

  it("an error in the body finishes the task with that error, unchanged", function()
    run(function()
      local exc = asyncio.ValueError("task failed")
      local t = asyncio.create_task(function()
        asyncio.sleep(0)
        error(exc)
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.equal(exc, e)
      assert.is_true(t:done())
      assert.is_false(t:cancelled())
      assert.equal(exc, t:exception())
      local tbl = {}
      local t2 = asyncio.create_task(function()
        error(tbl)
      end)
      assert.equal(tbl, select(2, pcall(t2.await, t2)))
      local t3 = asyncio.create_task(function()
        error("located")
      end)
      local _, s = pcall(t3.await, t3)
      assert.is_string(s)
      assert.matches("tasks_spec.lua:%d+: located$", s)
    end)
  end)

  it("set_result and set_exception are not supported on a task", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.sleep(0)
      end)
      local ok, e = pcall(t.set_result, t, 1)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      ok, e = pcall(t.set_exception, t, asyncio.ValueError())
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      t:await()
      assert.is_nil(t:result())
    end)
  end)

  it("a task cannot await itself", function()
    run(function()
      local t
      t = asyncio.create_task(function()
        asyncio.sleep(0)
        return pcall(t.await, t)
      end)
      local ok, e = t:await()
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
    end)
  end)

  it("tasks awaiting tasks", function()
    run(function()
      local function leaf(n)
        asyncio.sleep(0.001)
        return n, n * 10
      end
      local function mid(n)
        local a, b = asyncio.create_task(leaf, n):await()
        local c = asyncio.create_task(leaf, n + 1):await()
        return a + b + c
      end
      local ts = {}
      for i = 1, 10 do
        ts[i] = asyncio.create_task(mid, i)
      end
      for i = 1, 10 do
        assert.equal(i + 10 * i + (i + 1), ts[i]:await())
      end
    end)
  end)

  it("coroutine.yield in the body fails the task with RuntimeError", function()
    run(function()
      local t = asyncio.create_task(function()
        coroutine.yield("stray")
        return "not reached"
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      assert.is_true(t:done())
    end)
  end)

  it("a pending task is kept alive by its loop", function()
    run(function()
      local weak = setmetatable({}, { __mode = "v" })
      local fut = asyncio.get_running_loop():create_future()
      local result
      do
        weak[1] = asyncio.create_task(function()
          result = fut:await()
        end)
      end
      asyncio.sleep(0)
      helper.gc()
      assert.is_not_nil(weak[1])
      fut:set_result("alive")
      asyncio.sleep(0)
      asyncio.sleep(0)
      assert.equal("alive", result)
    end)
  end)

  it("many tasks all finish", function()
    run(function()
      local n, done = 2000, 0
      for i = 1, n do
        asyncio.create_task(function()
          asyncio.sleep(0)
          if i % 2 == 0 then
            asyncio.sleep(0.001)
          end
          done = done + 1
        end)
      end
      while done < n do
        asyncio.sleep(0.005)
      end
      assert.equal(n, done)
    end)
  end)

  it("done callbacks and awaiting tasks of a task run in the order they came", function()
    run(function()
      local log = {}
      local gate = asyncio.get_running_loop():create_future()
      local t = asyncio.create_task(function()
        gate:await()
        return "r"
      end)
      t:add_done_callback(function(f) log[#log + 1] = "cb1:" .. f:result() end)
      local w = asyncio.create_task(function()
        local r = t:await()
        log[#log + 1] = "waiter:" .. r
      end)
      asyncio.sleep(0) -- w awaits t now, after cb1
      local cb2 = function() log[#log + 1] = "cb2" end
      t:add_done_callback(cb2)
      t:add_done_callback(function() log[#log + 1] = "cb3" end)
      assert.equal(1, t:remove_done_callback(cb2))
      gate:set_result()
      w:await()
      asyncio.sleep(0)
      assert.same({ "cb1:r", "waiter:r", "cb3" }, log)
    end)
  end)

  it("a new task never inherits the callbacks of a finished one", function()
    run(function()
      local calls = 0
      for _ = 1, 3 do
        -- a done callback removed again, then one left to run: each task
        -- reuses the anchor of the one before it
        local t = asyncio.create_task(function() asyncio.sleep(0) end)
        local cb = function() calls = calls + 1 end
        t:add_done_callback(cb)
        assert.equal(1, t:remove_done_callback(cb))
        t:await()
        local u = asyncio.create_task(function() asyncio.sleep(0) end)
        u:add_done_callback(cb)
        u:await()
        asyncio.sleep(0)
      end
      assert.equal(3, calls)
      local plain = asyncio.create_task(function() end)
      plain:await()
      asyncio.sleep(0)
      assert.equal(3, calls)
    end)
  end)

  it("after a burst, the ready queue shrinks back with the steps left in it in order", function()
    run(function()
      local n, order, done = 10000, {}, 0
      for i = 1, n do
        asyncio.create_task(function()
          if i % 20 == 0 then
            asyncio.sleep(0) -- queued again behind the burst: the queue is mostly empty then
            order[#order + 1] = i
          end
          done = done + 1
        end)
      end
      while done < n do
        asyncio.sleep(0)
      end
      assert.equal(n // 20, #order)
      for k = 1, #order do
        assert.equal(k * 20, order[k])
      end
    end)
  end)

  it("asyncio.Task(loop, fn, ...) builds a task without the factory", function()
    with_loop(function(loop)
      local used = 0
      loop:set_task_factory(function(lp, fn, ...)
        used = used + 1
        return asyncio.Task(lp, fn, ...)
      end)
      local t = asyncio.Task(loop, function(a, b)
        return a .. b
      end, "x", "y")
      assert.equal(0, used)
      loop:set_task_factory(nil)
      assert.equal("xy", loop:run_until_complete(t))
    end)
  end)
end)

describe("task names", function()
  it("default to Task-<n> with a growing n", function()
    run(function()
      local a = asyncio.create_task(function() end)
      local b = asyncio.create_task(function() end)
      local na = tonumber(a:get_name():match("^Task%-(%d+)$"))
      local nb = tonumber(b:get_name():match("^Task%-(%d+)$"))
      assert.is_not_nil(na)
      assert.is_not_nil(nb)
      assert.is_true(nb > na)
    end)
  end)

  it("set_name / get_name; the name shows in tostring", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.sleep(0)
      end)
      t:set_name("worker")
      assert.equal("worker", t:get_name())
      assert.matches("worker", tostring(t))
      assert.matches("pending", tostring(t))
      t:set_name(42)
      assert.equal("42", t:get_name())
      t:await()
      assert.matches("finished", tostring(t))
      t:set_name("after done")
      assert.equal("after done", t:get_name())
    end)
  end)
end)

describe("current_task", function()
  it("is the running task inside it", function()
    run(function()
      local me = asyncio.current_task()
      assert.is_not_nil(me)
      local inner_seen
      local inner = asyncio.create_task(function()
        inner_seen = asyncio.current_task()
        asyncio.sleep(0)
        return asyncio.current_task()
      end)
      local after = inner:await()
      assert.equal(inner, inner_seen)
      assert.equal(inner, after)
      assert.equal(me, asyncio.current_task())
    end)
  end)

  it("follows interleaving tasks", function()
    run(function()
      local ok = true
      local ts = {}
      for i = 1, 5 do
        ts[i] = asyncio.create_task(function()
          for _ = 1, 5 do
            if asyncio.current_task() ~= ts[i] then
              ok = false
            end
            asyncio.sleep(0)
          end
        end)
      end
      for i = 1, 5 do
        ts[i]:await()
      end
      assert.is_true(ok)
    end)
  end)

  it("is nil in a callback", function()
    with_loop(function(loop)
      local seen = "unset"
      loop:call_soon(function()
        seen = asyncio.current_task()
      end)
      loop:run_once()
      assert.is_nil(seen)
    end)
  end)

  it("raises RuntimeError without a running loop; current_task(loop) is nil then", function()
    local ok, e = pcall(asyncio.current_task)
    assert.is_false(ok)
    assert_class(asyncio.RuntimeError, e)
    with_loop(function(loop)
      assert.is_nil(asyncio.current_task(loop))
    end)
  end)

  it("current_task(loop) names the loop explicitly", function()
    with_loop(function(loop)
      local t
      t = loop:create_task(function()
        return asyncio.current_task(loop) == t
      end)
      assert.is_true(loop:run_until_complete(t))
    end)
  end)
end)

describe("all_tasks", function()
  it("lists the unfinished tasks of the running loop", function()
    run(function()
      local me = asyncio.current_task()
      local fut = asyncio.get_running_loop():create_future()
      local a = asyncio.create_task(function()
        fut:await()
      end)
      local b = asyncio.create_task(function() end)
      local set = {}
      for _, t in ipairs(asyncio.all_tasks()) do
        set[t] = true
      end
      assert.is_true(set[me])
      assert.is_true(set[a])
      assert.is_true(set[b])
      b:await()
      asyncio.sleep(0)
      set = {}
      local n = 0
      for _, t in ipairs(asyncio.all_tasks()) do
        set[t] = true
        n = n + 1
      end
      assert.is_nil(set[b])
      assert.is_true(set[a])
      assert.equal(2, n)
      fut:set_result()
      a:await()
      assert.same({ me }, asyncio.all_tasks())
    end)
  end)

  it("all_tasks(loop) works outside the loop; without one it raises", function()
    with_loop(function(loop)
      local t = loop:create_task(function() end)
      assert.same({ t }, asyncio.all_tasks(loop))
      loop:run_until_complete(t)
      assert.same({}, asyncio.all_tasks(loop))
      local ok, e = pcall(asyncio.all_tasks)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
    end)
  end)

  it("does not list cancelled tasks", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.sleep(10)
      end)
      asyncio.sleep(0)
      t:cancel()
      pcall(t.await, t)
      for _, x in ipairs(asyncio.all_tasks()) do
        assert.are_not.equal(t, x)
      end
    end)
  end)
end)

describe("get_stack / get_coro", function()
  it("get_stack is a traceback of where the task is suspended", function()
    run(function()
      local line
      local t = asyncio.create_task(function()
        local function inner_waiter()
          line = debug.getinfo(1, "l").currentline + 1
          asyncio.sleep(10)
        end
        inner_waiter()
      end)
      asyncio.sleep(0)
      local s = t:get_stack()
      assert.is_string(s)
      assert.matches("tasks_spec.lua:" .. line .. ":", s, 1, true)
      assert.matches("inner_waiter", s, 1, true)
      t:cancel()
      pcall(t.await, t)
    end)
  end)

  it("get_stack of a done or unstarted task has no frames", function()
    run(function()
      local t = asyncio.create_task(function() end)
      assert.is_nil(t:get_stack():find("tasks_spec.lua", 1, true))
      t:await()
      assert.is_nil(t:get_stack():find("tasks_spec.lua", 1, true))
    end)
  end)

  it("get_coro is the task's coroutine while it runs, nil once done", function()
    run(function()
      local co_inside
      local t
      t = asyncio.create_task(function()
        co_inside = coroutine.running()
        asyncio.sleep(0)
        return t:get_coro() == coroutine.running()
      end)
      local co = t:get_coro()
      assert.equal("thread", type(co))
      assert.is_true(t:await())
      assert.equal(co, co_inside)
      assert.is_nil(t:get_coro())
    end)
  end)

  it("get_coro of a task whose coroutine was recycled from a finished task", function()
    run(function()
      local first = asyncio.create_task(function() return coroutine.running() end)
      local co1 = first:await()
      asyncio.sleep(0)
      local t = asyncio.create_task(function()
        asyncio.sleep(0)
        return coroutine.running()
      end)
      asyncio.sleep(0) -- started, on a coroutine from the pool
      local co = t:get_coro()
      assert.equal("thread", type(co))
      assert.equal("suspended", coroutine.status(co))
      assert.equal(co1, co) -- the pool gave it the first task's
      assert.equal(co, t:await())
      -- handed out: never given to another task
      local others = {}
      for i = 1, 3 do
        others[i] = asyncio.create_task(function() return coroutine.running() end)
      end
      for i = 1, 3 do
        assert.is_true(others[i]:await() ~= co)
      end
    end)
  end)

  it("get_coro in the first step, and a collection there, keep the running coroutine", function()
    run(function()
      local t
      t = asyncio.create_task(function()
        collectgarbage("collect")
        local same = t:get_coro() == coroutine.running()
        asyncio.sleep(0)
        collectgarbage("collect")
        return same, t:get_coro() == coroutine.running()
      end)
      local a, b = t:await()
      assert.is_true(a)
      assert.is_true(b)
    end)
  end)

  it("get_coro before the first step: the task then runs on that coroutine", function()
    run(function()
      local t = asyncio.create_task(function(a) return coroutine.running(), a end, "x")
      local co = t:get_coro()
      assert.equal("suspended", coroutine.status(co))
      local got, a = t:await()
      assert.equal(co, got)
      assert.equal("x", a)
      assert.is_nil(t:get_coro())
    end)
  end)
end)

describe("to-be-closed variables in a task body", function()
  local function closer(log, name, await)
    return setmetatable({}, {
      __close = function(_, err)
        if await then
          asyncio.sleep(0.001)
        end
        log[#log + 1] = { name, err }
      end,
    })
  end

  it("are closed when the body returns, and __close may await", function()
    run(function()
      local log = {}
      local t = asyncio.create_task(function()
        local a <close> = closer(log, "a", true)
        local b <close> = closer(log, "b", true)
        asyncio.sleep(0)
        return "result"
      end)
      assert.equal("result", t:await())
      assert.equal(2, #log)
      assert.equal("b", log[1][1])
      assert.equal("a", log[2][1])
      assert.is_nil(log[1][2])
    end)
  end)

  it("are closed when the body fails, with the error, and __close may await", function()
    run(function()
      local log = {}
      local exc = asyncio.ValueError("body failed")
      local t = asyncio.create_task(function()
        local a <close> = closer(log, "a", true)
        local b <close> = closer(log, "b", false)
        asyncio.sleep(0)
        error(exc)
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.equal(exc, e)
      assert.equal(2, #log)
      assert.equal("b", log[1][1])
      assert.equal(exc, log[1][2])
      assert.equal("a", log[2][1])
      assert.equal(exc, log[2][2])
    end)
  end)

  it("are closed when the task is cancelled", function()
    run(function()
      local log = {}
      local t = asyncio.create_task(function()
        local a <close> = closer(log, "a", true)
        asyncio.sleep(10)
      end)
      asyncio.sleep(0)
      t:cancel()
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert_class(asyncio.CancelledError, e)
      assert.is_true(t:cancelled())
      assert.equal(1, #log)
      assert_class(asyncio.CancelledError, log[1][2])
    end)
  end)

  it("an error in __close replaces the result", function()
    run(function()
      local t = asyncio.create_task(function()
        local _ <close> = setmetatable({}, {
          __close = function()
            asyncio.sleep(0)
            error("close failed", 0)
          end,
        })
        return "lost"
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.equal("close failed", e)
    end)
  end)

  it("work inside nested functions and pcall in the body", function()
    run(function()
      local log = {}
      local t = asyncio.create_task(function()
        local ok, e = pcall(function()
          local _ <close> = closer(log, "inner", true)
          asyncio.sleep(0)
          error("inner error", 0)
        end)
        log[#log + 1] = { "caught", e, ok }
        return "went on"
      end)
      assert.equal("went on", t:await())
      assert.equal("inner", log[1][1])
      assert.equal("inner error", log[1][2])
      assert.equal("caught", log[2][1])
      assert.equal("inner error", log[2][2])
    end)
  end)
end)

describe("eager task factory", function()
  local function with_eager(fn)
    return function()
      with_loop(function(loop)
        loop:set_task_factory(asyncio.eager_task_factory)
        assert.equal(asyncio.eager_task_factory, loop:get_task_factory())
        fn(loop)
      end)
    end
  end

  it("runs the first step inside create_task", with_eager(function(loop)
    loop:run_until_complete(function()
      local log = {}
      local t = asyncio.create_task(function()
        log[#log + 1] = "eager step"
        asyncio.sleep(0)
        log[#log + 1] = "second step"
      end)
      log[#log + 1] = "after create_task"
      t:await()
      assert.same({ "eager step", "after create_task", "second step" }, log)
    end)
  end))

  it("a body that never suspends is done when create_task returns, with every value", with_eager(function(loop)
    loop:run_until_complete(function()
      local t = asyncio.create_task(function(a)
        return a, nil, "z"
      end, "x")
      assert.is_true(t:done())
      assert.same({ "x", nil, "z", n = 3 }, table.pack(t:result()))
      assert.same({ "x", nil, "z", n = 3 }, table.pack(t:await()))
    end)
  end))

  it("current_task is the eager task during its first step, then the creator again", with_eager(function(loop)
    loop:run_until_complete(function()
      local me = asyncio.current_task()
      local seen
      local t = asyncio.create_task(function()
        seen = asyncio.current_task()
      end)
      assert.equal(t, seen)
      assert.equal(me, asyncio.current_task())
    end)
  end))

  it("an error in the first step finishes the task, create_task does not raise", with_eager(function(loop)
    loop:run_until_complete(function()
      local exc = asyncio.ValueError("eager failure")
      local ok, t = pcall(asyncio.create_task, function()
        error(exc)
      end)
      assert.is_true(ok)
      assert.is_true(t:done())
      assert.equal(exc, t:exception())
    end)
  end))

  it("a suspended eager task is listed in all_tasks and can be cancelled", with_eager(function(loop)
    loop:run_until_complete(function()
      local t = asyncio.create_task(function()
        asyncio.sleep(10)
      end)
      local listed = false
      for _, x in ipairs(asyncio.all_tasks()) do
        listed = listed or x == t
      end
      assert.is_true(listed)
      assert.is_true(t:cancel())
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert_class(asyncio.CancelledError, e)
      assert.is_true(t:cancelled())
    end)
  end))

  it("done callbacks of an eagerly finished task are still scheduled", with_eager(function(loop)
    loop:run_until_complete(function()
      local t = asyncio.create_task(function()
        return 1
      end)
      local called = false
      t:add_done_callback(function()
        called = true
      end)
      assert.is_false(called)
      asyncio.sleep(0)
      assert.is_true(called)
    end)
  end))

  it("nested eager tasks run depth first", with_eager(function(loop)
    loop:run_until_complete(function()
      local log = {}
      asyncio.create_task(function()
        log[#log + 1] = "outer start"
        asyncio.create_task(function()
          log[#log + 1] = "inner"
        end)
        log[#log + 1] = "outer end"
      end)
      log[#log + 1] = "main"
      assert.same({ "outer start", "inner", "outer end", "main" }, log)
    end)
  end))

  it("while the loop is not running, the task is only scheduled", with_eager(function(loop)
    local ran = false
    local t = loop:create_task(function()
      ran = true
      return "later"
    end)
    assert.is_false(ran)
    assert.equal("later", loop:run_until_complete(t))
  end))

  it("asyncio.eager_task_factory can be called directly", with_eager(function(loop)
    loop:run_until_complete(function()
      local t = asyncio.eager_task_factory(loop, function(x)
        return x + 1
      end, 1)
      assert.is_true(t:done())
      assert.equal(2, t:result())
    end)
  end))
end)

describe("create_eager_task_factory", function()
  it("the tasks its constructor makes with asyncio.Task start at once", function()
    with_loop(function(loop)
      local made = 0
      local function ctor(l, fn, ...)
        made = made + 1
        local n = made
        local t = asyncio.Task(l, fn, ...)
        t:set_name("custom-" .. n)
        return t
      end
      loop:run_until_complete(function()
        loop:set_task_factory(asyncio.create_eager_task_factory(ctor))
        local log = {}
        local t = asyncio.create_task(function(x)
          log[#log + 1] = "eager " .. x
          -- a task made inside that first step is eager too, through the factory
          local inner = asyncio.create_task(function() log[#log + 1] = "inner" end)
          asyncio.sleep(0)
          log[#log + 1] = "second step"
          return inner
        end, 1)
        log[#log + 1] = "after create_task"
        assert.equal("custom-1", t:get_name())
        local inner = t:await()
        assert.is_true(inner:done())
        assert.same({ "eager 1", "inner", "after create_task", "second step" }, log)
        assert.equal(2, made)
        -- asyncio.Task called directly, outside the factory, is not eager
        local plain = asyncio.Task(loop, function() log[#log + 1] = "plain" end)
        assert.is_false(plain:done())
        plain:await()
      end)
    end)
  end)

  it("a constructor's error propagates and leaves no eager start behind", function()
    with_loop(function(loop)
      loop:run_until_complete(function()
        loop:set_task_factory(asyncio.create_eager_task_factory(function() error("ctor failed", 0) end))
        local ok, e = pcall(asyncio.create_task, function() end)
        assert.is_false(ok)
        assert.matches("ctor failed", tostring(e))
        loop:set_task_factory(nil)
        local t = asyncio.Task(loop, function() end)
        assert.is_false(t:done())
        t:await()
      end)
    end)
    local ok, e = pcall(asyncio.create_eager_task_factory, 42)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'create_eager_task_factory'", e)
  end)
end)
