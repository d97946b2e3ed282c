-- gather, wait, wait_for, as_completed and shield (after CPython's
-- test_tasks.py combinator tests and test_waitfor.py).
local asyncio = require "asyncio"
local tasks = require "asyncio.tasks"
local timeouts = require "asyncio.timeouts"
local helper = require "helper"

local run, with_loop = helper.run, helper.with_loop

after_each(helper.close_loops)

local function assert_class(cls, e)
  assert.is_true(asyncio.isinstance(e, cls), "got " .. tostring(e))
end

-- a function that sleeps `delay` then returns its values
local function sleeper(delay, ...)
  local values = table.pack(...)
  return function()
    asyncio.sleep(delay)
    return table.unpack(values, 1, values.n)
  end
end

-- a function that sleeps `delay` then raises `err`
local function failer(delay, err)
  return function()
    asyncio.sleep(delay)
    error(err, 0)
  end
end

-- a few turns of the loop (Python's test_utils.run_briefly)
local function run_briefly(n)
  for _ = 1, n or 3 do asyncio.sleep(0) end
end

-- raises what `fn` raises, or fails the test when it raises nothing
local function raises(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return e
end

local function loop()
  return asyncio.get_running_loop()
end

describe("gather", function()
  it("returns a future of the first value of each child, in the order given", function()
    run(function()
      local f = loop():create_future()
      loop():call_later(0.01, function() f:set_result("f", "more") end)
      local t = asyncio.create_task(function() return "t", 2 end)
      local g = tasks.gather({ sleeper(0.03, "a", "b"), f, t, function() end, sleeper(0, nil, 5) })
      assert.is_true(asyncio.isfuture(g))
      assert.is_false(g:done())
      local r = g:await()
      assert.same({ "a", "f", "t", nil, nil, n = 5 }, r)
      assert.equal(1, select("#", g:await()))
    end)
  end)

  it("of an empty list is a finished future with {n = 0}", function()
    run(function()
      local g = tasks.gather({})
      assert.is_true(g:done())
      assert.same({ n = 0 }, g:result())
    end)
  end)

  it("is finished at once when every child is already done", function()
    run(function()
      local a, b = loop():create_future(), loop():create_future()
      a:set_result(1)
      b:set_result(2)
      local g = tasks.gather({ a, b })
      assert.is_true(g:done())
      assert.same({ 1, 2, n = 2 }, g:result())
      local c = loop():create_future()
      c:set_exception(asyncio.ValueError("done already"))
      local pending = loop():create_future()
      local g2 = tasks.gather({ pending, c })
      assert.is_true(g2:done())
      assert.equal("done already", raises(g2.result, g2).message)
      pending:set_result(0)
    end)
  end)

  it("the same future twice gives its result twice", function()
    run(function()
      local f = loop():create_future()
      local g = tasks.gather({ f, f })
      f:set_result("x")
      assert.same({ "x", "x", n = 2 }, g:await())
    end)
  end)

  it("works outside a task, driven by run_until_complete", function()
    with_loop(function(lp)
      local g = tasks.gather({ sleeper(0, 1), sleeper(0.01, 2) })
      assert.same({ 1, 2, n = 2 }, lp:run_until_complete(g))
    end)
  end)

  it("fails with the first error (in completion order) and does not cancel the siblings", function()
    run(function()
      local slow_done = false
      local slow = asyncio.create_task(function()
        asyncio.sleep(0.05)
        slow_done = true
        return "slow"
      end)
      local later = asyncio.create_task(failer(0.02, asyncio.ValueError("second")))
      local g = tasks.gather({ slow, later, failer(0.01, asyncio.ValueError("first")) })
      local e = raises(g.await, g)
      assert_class(asyncio.ValueError, e)
      assert.equal("first", e.message)
      assert.is_false(g:cancelled())
      assert.is_false(slow:done())
      assert.equal("slow", slow:await())
      assert.is_true(slow_done)
      assert.equal("second", raises(later.await, later).message)
    end)
  end)

  it("passes plain Lua errors through unchanged", function()
    run(function()
      local g = tasks.gather({ failer(0, "plain string") })
      assert.equal("plain string", raises(g.await, g))
      local tbl = { code = 7 }
      local g2 = tasks.gather({ failer(0, tbl) })
      assert.equal(tbl, raises(g2.await, g2))
    end)
  end)

  it("return_exceptions puts errors and CancelledErrors in the child's place", function()
    run(function()
      local c = asyncio.create_task(asyncio.sleep, 10)
      local g = tasks.gather({
        sleeper(0, 1),
        failer(0, asyncio.ValueError("v")),
        c,
        failer(0.01, "plain"),
      }, { return_exceptions = true })
      asyncio.sleep(0)
      c:cancel("bye")
      local r = g:await()
      assert.equal(4, r.n)
      assert.equal(1, r[1])
      assert_class(asyncio.ValueError, r[2])
      assert_class(asyncio.CancelledError, r[3])
      assert.equal("bye", r[3].message)
      assert.equal("plain", r[4])
    end)
  end)

  it("a child cancelled on its own makes the gather raise CancelledError", function()
    run(function()
      local a = loop():create_future()
      local b = asyncio.create_task(sleeper(0.02, "b"))
      local g = tasks.gather({ a, b })
      a:cancel()
      assert_class(asyncio.CancelledError, raises(g.await, g))
      assert.equal("b", b:await()) -- the sibling was not cancelled
    end)
  end)

  -- a child that catches CancelledError(msg) into seen[i], cleans up, re-raises
  local function cancellable_child(seen, i)
    return function()
      local _, e = pcall(asyncio.sleep, 10)
      seen[i] = e
      asyncio.sleep(0.01)
      error(e, 0)
    end
  end

  it("cancelling it cancels every child, with the message", function()
    run(function()
      local seen = {}
      local f = loop():create_future()
      local t1 = asyncio.create_task(cancellable_child(seen, 1))
      local g = tasks.gather({ t1, cancellable_child(seen, 2), f })
      run_briefly()
      assert.is_true(g:cancel("stop"))
      local e = raises(g.await, g)
      assert_class(asyncio.CancelledError, e)
      assert.equal("stop", e.message)
      assert.is_true(g:cancelled())
      assert.is_false(g:cancel())
      assert.is_true(f:cancelled())
      assert.equal("stop", raises(t1.await, t1).message)
      assert_class(asyncio.CancelledError, seen[1])
      assert_class(asyncio.CancelledError, seen[2])
      assert.equal("stop", seen[2].message)
    end)
  end)

  it("with return_exceptions, cancelling it waits for every child, then raises CancelledError (bpo-32684)", function()
    run(function()
      local seen = {}
      local t1 = asyncio.create_task(cancellable_child(seen, 1))
      local t2 = asyncio.create_task(cancellable_child(seen, 2))
      local g = tasks.gather({ t1, t2 }, { return_exceptions = true })
      run_briefly()
      assert.is_true(g:cancel())
      assert_class(asyncio.CancelledError, raises(g.await, g))
      assert.is_true(t1:cancelled())
      assert.is_true(t2:cancelled())
    end)
  end)

  it("cancelling it cancels the children even before it ever ran", function()
    run(function()
      local t = asyncio.create_task(asyncio.sleep, 10)
      local g = tasks.gather({ t, asyncio.sleep })
      assert.is_true(g:cancel("early"))
      assert_class(asyncio.CancelledError, raises(g.await, g))
      local e = raises(t.await, t)
      assert_class(asyncio.CancelledError, e)
      assert.equal("early", e.message)
    end)
  end)

  it("a child that ignores the cancellation gives its error, not CancelledError", function()
    run(function()
      local g = tasks.gather({ function()
        pcall(asyncio.sleep, 10)
        error(asyncio.ValueError("in cleanup"))
      end })
      run_briefly()
      g:cancel()
      assert.equal("in cleanup", raises(g.await, g).message)
    end)
  end)

  it("cancelling the task that awaits it cancels the children (test_cancellation_broadcast)", function()
    run(function()
      local proof = 0
      local waiter = loop():create_future()
      local function inner()
        waiter:await()
        proof = proof + 1
      end
      local child1, child2 = asyncio.create_task(inner), asyncio.create_task(inner)
      local gatherer
      local f = asyncio.create_task(function()
        gatherer = tasks.gather({ child1, child2 })
        gatherer:await()
        proof = proof + 100
      end)
      run_briefly()
      assert.is_true(f:cancel())
      assert_class(asyncio.CancelledError, raises(f.await, f))
      assert.is_false(gatherer:cancel())
      assert.is_true(waiter:cancelled())
      assert.is_true(child1:cancelled())
      assert.is_true(child2:cancelled())
      run_briefly()
      assert.equal(0, proof)
    end)
  end)

  it("a task cancelled in a loop of gathers stays cancelled (test_cancel_gather_2)", function()
    run(function()
      local qwe = asyncio.create_task(function()
        for _ = 1, 1000 do
          tasks.gather({ sleeper(0.005) }, { return_exceptions = true }):await()
        end
      end)
      asyncio.sleep(0.02)
      qwe:cancel("my message")
      local e = raises(qwe.await, qwe)
      assert_class(asyncio.CancelledError, e)
      assert.equal("my message", e.message)
    end)
  end)

  it("nested gathers pass the cancellation down", function()
    run(function()
      local leaf = asyncio.create_task(asyncio.sleep, 10)
      local inner = tasks.gather({ leaf })
      local outer = tasks.gather({ inner, sleeper(10) })
      run_briefly()
      outer:cancel()
      assert_class(asyncio.CancelledError, raises(outer.await, outer))
      assert_class(asyncio.CancelledError, raises(inner.await, inner))
      assert.is_true(leaf:cancelled())
    end)
  end)

  it("marks the errors of children that fail after it as retrieved (test_exception_marking)", function()
    helper.capture_log(function(records)
      run(function()
        local a = asyncio.create_task(failer(0, asyncio.ValueError("a")))
        local b = asyncio.create_task(failer(0.01, asyncio.ValueError("b")))
        local g = tasks.gather({ a, b })
        raises(g.await, g)
        asyncio.sleep(0.03)
        assert.is_true(b:done())
      end)
      helper.gc()
      assert.same({}, helper.grep(records, "never retrieved"))
      -- the check can see a leak: an error nobody looked at is reported
      run(function()
        asyncio.create_task(failer(0, asyncio.ValueError("lost")))
        asyncio.sleep(0.01)
      end)
      helper.gc()
      assert.equal(1, #helper.grep(records, "never retrieved"))
    end)
  end)

  it("refuses futures of different loops, and non-lists", function()
    run(function()
      local other = helper.new_loop()
      local e = raises(tasks.gather, { loop():create_future(), other:create_future() })
      assert_class(asyncio.ValueError, e)
      assert.matches("bad argument #1 to 'gather' %(list expected, got number%)", raises(tasks.gather, 5))
      assert.matches("bad argument #1 to 'gather' %(list expected, got Future%)",
        raises(tasks.gather, loop():create_future()))
      assert.matches("item 2: Future, Task or function expected, got string", raises(tasks.gather, { loop():create_future(), "x" }))
      assert.matches("bad argument #2 to 'gather'", raises(tasks.gather, {}, 1))
    end)
  end)

  it("gathers 100,000 tasks quickly", function()
    run(function()
      local n = 100000
      local list = {}
      local function child(i)
        asyncio.sleep(0)
        return i
      end
      for i = 1, n do list[i] = asyncio.create_task(child, i) end
      local t0 = os.clock()
      local r = tasks.gather(list):await()
      local dt = os.clock() - t0
      assert.equal(n, r.n)
      for i = 1, n, 997 do assert.equal(i, r[i]) end
      assert.equal(n, r[n])
      assert.is_true(dt < 3, ("took %.2f s"):format(dt))
    end, 60)
  end)

  it("with the eager task factory, functions that finish at once give a finished gather", function()
    run(function()
      loop():set_task_factory(asyncio.eager_task_factory)
      local g = tasks.gather({ function() return 1 end, function() return 2 end })
      assert.is_true(g:done())
      assert.same({ 1, 2, n = 2 }, g:result())
      local g2 = tasks.gather({ function() return 1 end, sleeper(0.01, 2) })
      assert.is_false(g2:done())
      assert.same({ 1, 2, n = 2 }, g2:await())
    end)
  end)
end)

describe("wait", function()
  it("waits for all by default and returns done, pending lists", function()
    run(function()
      local a = asyncio.create_task(sleeper(0.01, "a"))
      local b = asyncio.create_task(sleeper(0.03, "b"))
      local t0 = loop():time()
      local done, pending = tasks.wait({ b, a })
      assert.is_true(loop():time() - t0 >= 0.025)
      assert.same({ b, a }, done)
      assert.same({}, pending)
      assert.equal("a", a:result())
    end)
  end)

  it("ALL_COMPLETED waits for failures and cancellations too", function()
    run(function()
      local a = asyncio.create_task(failer(0.01, asyncio.ValueError("x")))
      local b = asyncio.create_task(asyncio.sleep, 10)
      local c = asyncio.create_task(sleeper(0.02))
      loop():call_later(0.015, function() b:cancel() end)
      local done, pending = tasks.wait({ a, b, c }, { return_when = tasks.ALL_COMPLETED })
      assert.equal(3, #done)
      assert.equal(0, #pending)
      assert.is_true(b:cancelled())
      assert_class(asyncio.ValueError, a:exception())
    end)
  end)

  it("FIRST_COMPLETED returns as soon as one is done and cancels nothing", function()
    run(function()
      local a = asyncio.create_task(sleeper(0.01, "a"))
      local b = asyncio.create_task(asyncio.sleep, 10)
      local done, pending = tasks.wait({ b, a }, { return_when = tasks.FIRST_COMPLETED })
      assert.same({ a }, done)
      assert.same({ b }, pending)
      assert.is_false(b:done())
      b:cancel()
    end)
  end)

  it("FIRST_EXCEPTION returns at the first failure", function()
    run(function()
      local a = asyncio.create_task(failer(0.01, asyncio.ValueError("x")))
      local b = asyncio.create_task(asyncio.sleep, 10)
      local done, pending = tasks.wait({ b, a }, { return_when = tasks.FIRST_EXCEPTION })
      assert.same({ a }, done)
      assert.same({ b }, pending)
      assert.is_false(b:done())
      b:cancel()
    end)
  end)

  it("FIRST_EXCEPTION with a future that failed already (test_wait_first_exception_in_wait)", function()
    run(function()
      local a = loop():create_future()
      a:set_exception(asyncio.ValueError("early"))
      local b = asyncio.create_task(asyncio.sleep, 10)
      local done, pending = tasks.wait({ a, b }, { return_when = "FIRST_EXCEPTION" })
      assert.same({ a }, done)
      assert.same({ b }, pending)
      b:cancel()
    end)
  end)

  it("FIRST_EXCEPTION waits for all when nothing fails; a cancellation is no exception", function()
    run(function()
      local a = asyncio.create_task(sleeper(0.01))
      local b = asyncio.create_task(asyncio.sleep, 10)
      local c = asyncio.create_task(sleeper(0.03))
      loop():call_later(0.02, function() b:cancel() end)
      local done, pending = tasks.wait({ a, b, c }, { return_when = tasks.FIRST_EXCEPTION })
      assert.equal(3, #done)
      assert.equal(0, #pending)
    end)
  end)

  it("timeout returns what is done and leaves the rest running", function()
    run(function()
      local a = asyncio.create_task(sleeper(0.01))
      local b = asyncio.create_task(sleeper(10))
      local t0 = loop():time()
      local done, pending = tasks.wait({ a, b }, { timeout = 0.05 })
      local dt = loop():time() - t0
      assert.is_true(dt >= 0.04 and dt < 1, "waited " .. dt)
      assert.same({ a }, done)
      assert.same({ b }, pending)
      assert.is_false(b:cancelled())
      b:cancel()
    end)
  end)

  it("a timeout that does not expire changes nothing", function()
    run(function()
      local a = asyncio.create_task(sleeper(0.01))
      local done, pending = tasks.wait({ a }, { timeout = 5 })
      assert.same({ a }, done)
      assert.same({}, pending)
    end)
  end)

  it("futures already done come back done; duplicates once; functions become tasks", function()
    run(function()
      local a = loop():create_future()
      a:set_result(1)
      local done, pending = tasks.wait({ a, a, sleeper(0, "fn") })
      assert.equal(2, #done)
      assert.equal(0, #pending)
      assert.equal(a, done[1])
      assert.equal("fn", done[2]:result())
    end)
  end)

  it("cancelling the waiter raises CancelledError and leaves the futures alone", function()
    run(function()
      local f = loop():create_future()
      local w = asyncio.create_task(tasks.wait, { f })
      run_briefly()
      w:cancel()
      assert_class(asyncio.CancelledError, raises(w.await, w))
      assert.is_false(f:done())
      f:set_result(1)
      run_briefly()
    end)
  end)

  it("rejects an empty list, an unknown return_when and bad arguments", function()
    run(function()
      assert_class(asyncio.ValueError, raises(tasks.wait, {}))
      local f = loop():create_future()
      local e = raises(tasks.wait, { f }, { return_when = "SOMETIMES" })
      assert_class(asyncio.ValueError, e)
      assert.matches("SOMETIMES", e.message)
      assert.matches("bad argument #1 to 'wait'", raises(tasks.wait, f))
      assert.matches("bad argument #2 to 'wait'", raises(tasks.wait, { f }, { timeout = "1" }))
    end)
  end)

  it("outside a task raises a clear error", function()
    with_loop(function(lp)
      local f = lp:create_future()
      local e = raises(tasks.wait, { f })
      assert_class(asyncio.RuntimeError, e)
      assert.matches("outside a task", e.message)
    end)
  end)
end)

describe("wait_for", function()
  it("returns every value of the awaitable", function()
    run(function()
      assert.same({ 1, nil, 3, n = 3 }, table.pack(tasks.wait_for(sleeper(0.01, 1, nil, 3), 1)))
      local f = loop():create_future()
      loop():call_later(0.01, function() f:set_result("x", "y") end)
      assert.same({ "x", "y", n = 2 }, table.pack(tasks.wait_for(f, 1)))
    end)
  end)

  it("on timeout cancels the task, waits for it and raises TimeoutError (test_wait_for)", function()
    run(function()
      local running
      local fut = asyncio.create_task(function()
        running = true
        local ok, e = pcall(asyncio.sleep, 10)
        running = false
        if not ok then error(e, 0) end
        return "done"
      end)
      local t0 = loop():time()
      local e = raises(tasks.wait_for, fut, 0.05)
      assert_class(asyncio.TimeoutError, e)
      assert.is_true(loop():time() - t0 < 0.5)
      assert.is_true(fut:cancelled())
      assert.is_false(running)
      assert_class(asyncio.CancelledError, e.cause)
    end)
  end)

  it("a timeout of nil waits forever (test_wait_for_blocking)", function()
    run(function()
      assert.equal("done", tasks.wait_for(sleeper(0.02, "done"), nil))
      assert.equal("done", tasks.wait_for(sleeper(0, "done")))
    end)
  end)

  it("timeout <= 0 with a future that is done returns its result at once", function()
    run(function()
      local fut = loop():create_future()
      fut:set_result("done", 2)
      local other_ran = false
      loop():call_soon(function() other_ran = true end)
      assert.same({ "done", 2, n = 2 }, table.pack(tasks.wait_for(fut, 0)))
      assert.is_false(other_ran) -- did not even yield
    end)
  end)

  it("timeout <= 0 never starts a function", function()
    run(function()
      local started = false
      for _, timeout in ipairs({ 0, -1 }) do
        local e = raises(tasks.wait_for, function() started = true end, timeout)
        assert_class(asyncio.TimeoutError, e)
      end
      assert.is_false(started)
    end)
  end)

  it("timeout <= 0 cancels a running task and raises TimeoutError", function()
    run(function()
      for _, timeout in ipairs({ 0, -1 }) do
        local running
        local started = loop():create_future()
        local fut = asyncio.create_task(function()
          running = true
          started:set_result()
          local ok, e = pcall(asyncio.sleep, 10)
          running = false
          if not ok then error(e, 0) end
        end)
        started:await()
        local t0 = loop():time()
        assert_class(asyncio.TimeoutError, raises(tasks.wait_for, fut, timeout))
        assert.is_true(loop():time() - t0 < 0.1)
        assert.is_true(fut:cancelled())
        assert.is_false(running)
      end
    end)
  end)

  it("a result before the timeout is returned (test_wait_for_race_condition)", function()
    run(function()
      local fut = loop():create_future()
      loop():call_later(0.01, function() fut:set_result("ok") end)
      assert.equal("ok", tasks.wait_for(fut, 0.2))
    end)
  end)

  it("a result the inner task delivers while being cancelled is not lost", function()
    run(function()
      local inner_saw
      local r = tasks.wait_for(function()
        local ok, e = pcall(asyncio.sleep, 1)
        inner_saw = not ok and e
        return 1
      end, 0.01)
      assert.equal(1, r)
      assert_class(asyncio.CancelledError, inner_saw)
      assert.equal(0, asyncio.current_task():cancelling())
      -- test_wait_for_cancel_suppressed
      assert.equal(42, tasks.wait_for(function()
        if not pcall(asyncio.sleep, 10) then return 42 end
      end, 0.01))
    end)
  end)

  it("waits for the inner task to handle its cancellation (test_wait_for_waits_for_task_cancellation)", function()
    run(function()
      for _, timeout in ipairs({ 0.001, 0 }) do
        local task_done = false
        local inner = asyncio.create_task(function()
          local ok, e = pcall(asyncio.sleep, 10)
          if not ok then asyncio.sleep(0.01) end
          task_done = true
          error(e, 0)
        end)
        asyncio.sleep(0.001)
        local e = raises(tasks.wait_for, inner, timeout)
        assert_class(asyncio.TimeoutError, e)
        assert.is_true(task_done)
        assert_class(asyncio.CancelledError, e.cause)
      end
    end)
  end)

  it("an inner task that ignores cancellation runs to its end first (SlowTask)", function()
    run(function()
      local exited = false
      local function slow()
        local exit_at = loop():time() + 0.1
        while loop():time() < exit_at do pcall(asyncio.sleep, exit_at - loop():time()) end
        exited = true
      end
      assert.is_nil(tasks.wait_for(slow, 0.02))
      assert.is_true(exited)
      -- the outer task cancelled while waiting: the inner is cancelled, still runs out
      exited = false
      local w = asyncio.create_task(tasks.wait_for, slow, 0.5)
      run_briefly() -- until slow (a task of its own here) has started
      w:cancel()
      tasks.wait({ w })
      assert.is_true(exited)
    end)
  end)

  it("re-raises an error the inner task raises while cancelled", function()
    run(function()
      local inner = asyncio.create_task(function()
        pcall(asyncio.sleep, 0.2)
        error(asyncio.ValueError("foo"))
      end)
      local e = raises(tasks.wait_for, inner, 0.001)
      assert_class(asyncio.ValueError, e)
    end)
  end)

  it("stays cancellable when the inner task holds up cancellation (test_wait_for_self_cancellation)", function()
    run(function()
      local inner = asyncio.create_task(function()
        if not pcall(asyncio.sleep, 0.03) then
          if not pcall(asyncio.sleep, 0.03) then asyncio.sleep(0.03) end
        end
        return 42
      end)
      local w = asyncio.create_task(tasks.wait_for, inner, 0.01)
      w:cancel()
      assert_class(asyncio.CancelledError, raises(w.await, w))
      assert.equal(42, inner:await())
    end)
  end)

  it("cancelling wait_for cancels the inner task (bpo-23219)", function()
    run(function()
      for _, timeout in ipairs({ false, 60 }) do
        local blocker = asyncio.create_task(function() loop():create_future():await() end)
        local w = asyncio.create_task(tasks.wait_for, blocker, timeout or nil)
        loop():call_soon(function() w:cancel() end)
        assert_class(asyncio.CancelledError, raises(w.await, w))
        assert.is_true(blocker:cancelled())
      end
    end)
  end)

  it("a cancel after wait_for returned is not swallowed (gh-86296)", function()
    run(function()
      local reached_end = false
      local t = asyncio.create_task(function()
        tasks.wait_for(function() end, 100)
        asyncio.sleep(1)
        reached_end = true
      end)
      asyncio.sleep(0)
      assert.is_false(t:done())
      t:cancel()
      assert_class(asyncio.CancelledError, raises(t.await, t))
      assert.is_false(reached_end)
    end)
  end)

  it("inside a shorter timeout, the outer scope's TimeoutError wins", function()
    run(function()
      local cm
      local e = raises(function()
        local t <close> = timeouts.timeout(0.01)
        cm = t
        tasks.wait_for(sleeper(10), 5)
      end)
      assert_class(asyncio.TimeoutError, e)
      assert.is_true(cm:expired())
      assert.equal(0, asyncio.current_task():cancelling())
    end)
  end)

  it("outside a task, or with a bad timeout, raises a clear error", function()
    with_loop(function(lp)
      local e = raises(tasks.wait_for, lp:create_future(), 1)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("outside a task", e.message)
    end)
    run(function()
      assert.matches("bad argument #2 to 'wait_for'", raises(tasks.wait_for, sleeper(0), "1"))
      assert.matches("bad argument #1 to 'wait_for'", raises(tasks.wait_for, 42, 1))
    end)
  end)
end)

describe("as_completed", function()
  it("yields the futures in the order they finish", function()
    run(function()
      local list = {}
      for _, d in ipairs({ 0.03, 0.01, 0.02 }) do list[#list + 1] = asyncio.create_task(sleeper(d, d)) end
      local got, futs = {}, {}
      for f in tasks.as_completed(list) do
        futs[#futs + 1] = f
        got[#got + 1] = f:await()
      end
      assert.same({ 0.01, 0.02, 0.03 }, got)
      assert.same({ list[2], list[3], list[1] }, futs)
    end)
  end)

  it("raises TimeoutError once the timeout passes, cancelling nothing", function()
    run(function()
      local slow = asyncio.create_task(sleeper(10))
      local list = { asyncio.create_task(sleeper(0.01, "a")), slow, sleeper(0.02, "b") }
      local got = {}
      local e = raises(function()
        for f in tasks.as_completed(list, { timeout = 0.05 }) do got[#got + 1] = f:await() end
      end)
      assert_class(asyncio.TimeoutError, e)
      assert.same({ "a", "b" }, got)
      assert.is_false(slow:done())
      slow:cancel()
    end)
  end)

  it("a timeout that does not expire changes nothing", function()
    run(function()
      local got = {}
      for f in tasks.as_completed({ sleeper(0.01, 1), sleeper(0, 2) }, { timeout = 5 }) do
        got[#got + 1] = f:await()
      end
      assert.same({ 2, 1 }, got)
    end)
  end)

  it("errors come from f:await() and the iteration goes on", function()
    run(function()
      local got = {}
      for f in tasks.as_completed({ failer(0.01, asyncio.ValueError("x")), sleeper(0, "ok") }) do
        local ok, v = pcall(f.await, f)
        got[#got + 1] = ok and v or v.message
      end
      assert.same({ "ok", "x" }, got)
    end)
  end)

  it("futures done together, futures done already, duplicates and the empty list", function()
    run(function()
      local a, b, c = loop():create_future(), loop():create_future(), loop():create_future()
      c:set_result("c")
      loop():call_later(0.01, function()
        a:set_result("a")
        b:set_result("b")
      end)
      local got = {}
      for f in tasks.as_completed({ a, b, a, c }) do got[#got + 1] = f:await() end
      assert.same({ "c", "a", "b" }, got)
      for _ in tasks.as_completed({}) do error("nothing to yield") end
    end)
  end)

  it("outside a task, a step that has to wait raises a clear error", function()
    with_loop(function(lp)
      local f = lp:create_future()
      local it = tasks.as_completed({ f })
      local e = raises(it)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("outside a task", e.message)
    end)
  end)
end)

describe("shield", function()
  it("gives the inner result, every value (test_shield_result)", function()
    run(function()
      local inner = loop():create_future()
      local outer = tasks.shield(inner)
      run_briefly()
      inner:set_result(42, "x")
      assert.same({ 42, "x", n = 2 }, table.pack(outer:await()))
    end)
  end)

  it("gives the inner exception (test_shield_exception)", function()
    run(function()
      local inner = loop():create_future()
      local outer = tasks.shield(inner)
      run_briefly()
      local exc = asyncio.ValueError("inner")
      inner:set_exception(exc)
      assert.equal(exc, raises(outer.await, outer))
    end)
  end)

  it("is cancelled when the inner is (test_shield_cancel_inner)", function()
    run(function()
      local inner = loop():create_future()
      local outer = tasks.shield(inner)
      run_briefly()
      inner:cancel()
      run_briefly()
      assert.is_true(outer:cancelled())
    end)
  end)

  it("cancelling it leaves the inner alone (test_shield_cancel_outer)", function()
    run(function()
      local inner = loop():create_future()
      local outer = tasks.shield(inner)
      run_briefly()
      assert.is_true(outer:cancel())
      run_briefly()
      assert.is_true(outer:cancelled())
      assert.is_false(inner:cancelled())
      inner:set_result(1)
      run_briefly()
    end)
  end)

  it("an inner failure in the turn the outer is cancelled counts as retrieved", function()
    helper.capture_log(function(records)
      run(function()
        local inner = loop():create_future()
        local outer = tasks.shield(inner)
        run_briefly()
        outer:cancel()
        inner:set_exception(asyncio.ValueError("foo"))
        run_briefly()
      end)
      helper.gc()
      assert.same({}, helper.grep(records, "never retrieved"))
    end)
  end)

  it("an inner failure after the outer was cancelled is reported only when collected", function()
    helper.capture_log(function(records)
      local handled = 0
      run(function()
        loop():set_exception_handler(function() handled = handled + 1 end)
        local inner = asyncio.create_task(failer(0.01, asyncio.ValueError("foo")))
        local outer = tasks.shield(inner)
        run_briefly()
        outer:cancel()
        asyncio.sleep(0.03)
        assert.is_true(inner:done())
        assert.equal(0, handled) -- test_shield_cancel_outer_exception
      end)
      helper.gc()
      -- nobody saw the detached task's error: Python reports it too
      assert.equal(1, #helper.grep(records, "never retrieved"))
    end)
  end)

  it("returns a future that is done already as it is (test_shield_shortcut)", function()
    run(function()
      local fut = loop():create_future()
      fut:set_result(42)
      assert.equal(fut, tasks.shield(fut))
    end)
  end)

  it("cancelling the awaiting task does not stop the shielded work (test_shield_effect)", function()
    run(function()
      local proof = 0
      local waiter = loop():create_future()
      local function inner()
        waiter:await()
        proof = proof + 1
      end
      local f = asyncio.create_task(function()
        tasks.shield(inner):await()
        proof = proof + 100
      end)
      run_briefly()
      f:cancel()
      assert_class(asyncio.CancelledError, raises(f.await, f))
      waiter:set_result()
      run_briefly()
      assert.equal(1, proof)
    end)
  end)

  it("shielding a gather (test_shield_gather)", function()
    run(function()
      local child1, child2 = loop():create_future(), loop():create_future()
      local parent = tasks.gather({ child1, child2 })
      local outer = tasks.shield(parent)
      run_briefly()
      outer:cancel()
      run_briefly()
      assert.is_true(outer:cancelled())
      child1:set_result(1)
      child2:set_result(2)
      assert.same({ 1, 2, n = 2 }, parent:await())
    end)
  end)

  it("gathering shields (test_gather_shield)", function()
    run(function()
      local child1, child2 = loop():create_future(), loop():create_future()
      local inner1, inner2 = tasks.shield(child1), tasks.shield(child2)
      local parent = tasks.gather({ inner1, inner2 })
      run_briefly()
      parent:cancel()
      assert_class(asyncio.CancelledError, raises(parent.await, parent))
      assert.is_true(inner1:cancelled())
      assert.is_true(inner2:cancelled())
      assert.is_false(child1:done())
      child1:set_result(1)
      child2:set_result(2)
      run_briefly()
    end)
  end)

  it("wraps a function in a task, also outside a task", function()
    with_loop(function(lp)
      local outer = tasks.shield(sleeper(0.01, "v"))
      assert.equal("v", lp:run_until_complete(outer))
    end)
    run(function()
      assert.matches("bad argument #1 to 'shield'", raises(tasks.shield, 3))
    end)
  end)
end)
