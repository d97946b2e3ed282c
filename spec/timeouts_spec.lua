-- asyncio.timeout / timeout_at scopes (after CPython's test_timeouts.py),
-- used as to-be-closed variables.
local asyncio = require "asyncio"
local timeouts = require "asyncio.timeouts"
local helper = require "helper"

local run, with_loop = helper.vrun, helper.with_vloop
local is, assert_class, raises = helper.is, helper.assert_class, helper.err_of
local loop, current = helper.loop, helper.current
local timeout, timeout_at = timeouts.timeout, timeouts.timeout_at

describe("asyncio.timeout", function()
  it("raises TimeoutError when the deadline passes (test_timeout_basic)", function()
    run(function()
      local cm
      local t0 = loop():time()
      local e = raises(function()
        local t <close> = timeout(0.01)
        cm = t
        asyncio.sleep(10)
      end)
      assert_class(asyncio.TimeoutError, e)
      assert.is_true(cm:expired())
      assert.is_true(loop():time() - t0 < 1)
      assert.equal(0, current():cancelling())
    end)
  end)

  it("timeout_at takes a loop time (test_timeout_at_basic)", function()
    run(function()
      local cm
      local deadline = loop():time() + 0.01
      assert_class(asyncio.TimeoutError, raises(function()
        local t <close> = timeout_at(deadline)
        cm = t
        asyncio.sleep(10)
      end))
      assert.is_true(cm:expired())
      assert.equal(deadline, cm:when())
    end)
  end)

  it("the TimeoutError's cause is the CancelledError (test_timeout_exception_cause)", function()
    run(function()
      local e = raises(function()
        local _ <close> = timeout(0)
        asyncio.sleep(1)
      end)
      assert_class(asyncio.TimeoutError, e)
      assert_class(asyncio.CancelledError, e.cause)
    end)
  end)

  it("inside the scope the body sees CancelledError (test_waiter_cancelled)", function()
    run(function()
      local seen
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.01)
        local ok, e = pcall(asyncio.sleep, 10)
        seen = e
        if not ok then error(e, 0) end
      end))
      assert_class(asyncio.CancelledError, seen)
    end)
  end)

  it("only the outermost of nested scopes with one deadline raises TimeoutError (test_nested_timeouts)", function()
    run(function()
      local cm1, cm2, inner_err
      local deadline = loop():time() + 0.01
      local e = raises(function()
        local t1 <close> = timeout_at(deadline)
        cm1 = t1
        local ok, err = pcall(function()
          local t2 <close> = timeout_at(deadline)
          cm2 = t2
          asyncio.sleep(10)
        end)
        inner_err = err
        if not ok then error(err, 0) end
      end)
      assert_class(asyncio.TimeoutError, e)
      assert_class(asyncio.CancelledError, inner_err)
      assert.is_true(cm1:expired())
      assert.is_true(cm2:expired())
      assert.equal(0, current():cancelling())
    end)
  end)

  it("does nothing when the body finishes in time (test_timeout_not_called)", function()
    run(function()
      local cm
      do
        local t <close> = timeout(10)
        cm = t
        asyncio.sleep(0.01)
      end
      local t1 = loop():time()
      assert.is_false(cm:expired())
      assert.is_true(cm:when() > t1)
    end)
  end)

  it("passes the body's values through a return", function()
    run(function()
      local function body()
        local _ <close> = timeout(10)
        asyncio.sleep(0)
        return 1, nil, 3
      end
      assert.same({ 1, nil, 3, n = 3 }, table.pack(body()))
    end)
  end)

  it("nil means no deadline (test_timeout_disabled, test_timeout_at_disabled)", function()
    run(function()
      for _, make in ipairs({ timeout, timeout_at }) do
        local cm
        do
          local t <close> = make(nil)
          cm = t
          asyncio.sleep(0.01)
        end
        assert.is_false(cm:expired())
        assert.is_nil(cm:when())
      end
    end)
  end)

  it("a zero or past deadline expires at the next await, even sleep(0)", function()
    run(function()
      for _, case in ipairs({ { 0, 10 }, { 0, 0 }, { -11, 0 } }) do
        local cm
        local t0 = loop():time()
        assert_class(asyncio.TimeoutError, raises(function()
          local t <close> = timeout(case[1])
          cm = t
          asyncio.sleep(case[2])
        end))
        local t1 = loop():time()
        assert.is_true(cm:expired())
        if case[1] == 0 then
          assert.is_true(t0 <= cm:when() and cm:when() <= t1)
        else
          assert.is_true(cm:when() < t0)
        end
      end
    end)
  end)

  it("lets another error through unchanged (test_foreign_exception_passed)", function()
    run(function()
      local cm
      local err = asyncio.ValueError("mine")
      assert.equal(err, raises(function()
        local t <close> = timeout(0.01)
        cm = t
        error(err)
      end))
      assert.is_false(cm:expired())
      assert.equal("plain", raises(function()
        local _ <close> = timeout(1)
        error("plain", 0)
      end))
    end)
  end)

  it("an error raised while handling its cancellation wins (test_foreign_exception_on_timeout)", function()
    run(function()
      local cm
      local e = raises(function()
        local t <close> = timeout(0.01)
        cm = t
        pcall(asyncio.sleep, 1)
        error(asyncio.ValueError("in cleanup"))
      end)
      assert_class(asyncio.ValueError, e)
      assert.is_true(cm:expired())
      assert.equal(0, current():cancelling())
    end)
  end)

  it("a body that swallows the cancellation and finishes raises nothing", function()
    run(function()
      local cm
      do
        local t <close> = timeout(0.01)
        cm = t
        assert.is_false(pcall(asyncio.sleep, 1))
      end
      assert.is_true(cm:expired())
      assert.equal(0, current():cancelling())
      asyncio.sleep(0) -- no cancellation left pending
    end)
  end)

  it("a cancel from outside stays a cancel when not expired (test_foreign_cancel_doesnt_timeout_if_not_expired)", function()
    run(function()
      local cm
      local e = raises(function()
        local t <close> = timeout(10)
        cm = t
        current():cancel()
        asyncio.sleep(10)
      end)
      assert_class(asyncio.CancelledError, e)
      assert.is_false(cm:expired())
      current():uncancel()
    end)
  end)

  it("a cancel from outside that coincides with the expiry stays a cancel", function()
    run(function()
      local cm
      local t = asyncio.create_task(function()
        local s <close> = timeout(0) -- expires on the next turn
        cm = s
        asyncio.current_task():cancel("outside")
        asyncio.sleep(10)
      end)
      local e = raises(t.await, t)
      assert_class(asyncio.CancelledError, e)
      assert.is_true(t:cancelled())
      assert.is_true(cm:expired())
    end)
  end)

  it("an outer task that caught TimeoutError is not cancelled (test_outer_task_is_not_cancelled)", function()
    run(function()
      local task = asyncio.create_task(function()
        assert_class(asyncio.TimeoutError, raises(function()
          local _ <close> = timeout(0.001)
          asyncio.sleep(10)
        end))
        return asyncio.current_task():cancelling()
      end)
      assert.equal(0, task:await())
      assert.is_false(task:cancelled())
      assert.is_true(task:done())
    end)
  end)

  it("nested scopes whose deadlines pass together: the inner one's passes a cancel out (test_nested_timeouts_concurrent)", function()
    run(function()
      local inner_err
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.002)
        local ok, e = pcall(function()
          local _ <close> = timeout(0.1)
          loop():advance(0.01) -- crunch numbers past the outer deadline (virtual clock)
          asyncio.sleep(1)
        end)
        inner_err = e
        if not ok then error(e, 0) end
      end))
      assert_class(asyncio.CancelledError, inner_err)
    end)
  end)

  it("the outer scope stops work after an inner one expired in a busy loop (test_nested_timeouts_loop_busy)", function()
    run(function()
      local t0 = loop():time()
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.1)
        local ok, e = pcall(function()
          local _ <close> = timeout(0.01)
          loop():advance(0.1) -- the loop is busy past both deadlines (virtual clock)
          asyncio.sleep(1)
        end)
        -- only a TimeoutError of the inner scope is expected here
        if ok or not is(asyncio.TimeoutError, e) then error(e, 0) end
        asyncio.sleep(10) -- the outer deadline interrupts this
      end))
      local t1 = loop():time()
      assert.is_true(t1 - t0 <= 1, "took " .. (t1 - t0))
    end, 5)
  end)

  it("reschedule moves the deadline, also from another task (test_reschedule)", function()
    run(function()
      local fut = loop():create_future()
      local deadline1 = loop():time() + 10
      local deadline2 = deadline1 + 20
      local task = asyncio.create_task(function()
        local cm <close> = timeout_at(deadline1)
        fut:set_result(cm)
        asyncio.sleep(50)
      end)
      local cm = fut:await()
      assert.equal(deadline1, cm:when())
      cm:reschedule(deadline2)
      assert.equal(deadline2, cm:when())
      cm:reschedule(nil)
      assert.is_nil(cm:when())
      task:cancel()
      assert_class(asyncio.CancelledError, raises(task.await, task))
      assert.is_false(cm:expired())
    end)
  end)

  it("reschedule brings a deadline forward, or pushes it back", function()
    run(function()
      local t0 = loop():time()
      assert_class(asyncio.TimeoutError, raises(function()
        local cm <close> = timeout(10)
        cm:reschedule(loop():time() + 0.01)
        asyncio.sleep(5)
      end))
      assert.is_true(loop():time() - t0 < 1)
      local cm
      do
        local t <close> = timeout(0.01)
        cm = t
        t:reschedule(loop():time() + 10)
        asyncio.sleep(0.03)
      end
      assert.is_false(cm:expired())
      do
        local t <close> = timeout(10)
        t:reschedule(loop():time() - 1) -- in the past: expires on the next turn
        assert_class(asyncio.CancelledError, raises(asyncio.sleep, 1))
        cm = t
      end
      assert.is_true(cm:expired())
      assert.equal(0, current():cancelling())
    end)
  end)

  it("reschedule after the scope ended raises RuntimeError (test_timeout_finished)", function()
    run(function()
      local cm
      do
        local t <close> = timeout(0.01)
        cm = t
      end
      local e = raises(cm.reschedule, cm, loop():time() + 1)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("finished", e.message)
      pcall(function()
        local t <close> = timeout(0)
        cm = t
        asyncio.sleep(1)
      end)
      e = raises(cm.reschedule, cm, nil)
      assert.matches("expired", e.message)
      assert.matches("bad argument #1 to 'reschedule'", raises(cm.reschedule, cm, "soon"))
    end)
  end)

  it("tostring shows the state (test_repr_*)", function()
    run(function()
      local cm
      do
        local t <close> = timeout(10)
        assert.matches("^<Timeout %[active%] when=%d+%.%d+>$", tostring(t))
        cm = t
      end
      assert.equal("<Timeout [finished]>", tostring(cm))
      do
        local t <close> = timeout(nil)
        assert.equal("<Timeout [active] when=nil>", tostring(t))
      end
      pcall(function()
        local t <close> = timeout(0)
        cm = t
        asyncio.sleep(1)
      end)
      assert.equal("<Timeout [expired]>", tostring(cm))
    end)
  end)

  it("a nested scope in cleanup code after an expiry works (test_nested_timeout_in_finally)", function()
    run(function()
      local inner_err
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.01)
        local ok, e = pcall(asyncio.sleep, 1)
        -- cleanup that needs a timeout of its own
        local ok2, e2 = pcall(function()
          local _ <close> = timeout(0.01)
          asyncio.sleep(10)
        end)
        inner_err = not ok2 and e2
        if not ok then error(e, 0) end
      end))
      assert_class(asyncio.TimeoutError, inner_err)
    end)
  end)

  it("works in a task that caught a cancellation before (test_timeout_after_cancellation)", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.current_task():cancel()
        assert_class(asyncio.CancelledError, raises(asyncio.sleep, 1))
        local e = raises(function()
          local _ <close> = timeout(0)
          asyncio.sleep(1) -- some cleanup
        end)
        return e
      end)
      assert_class(asyncio.TimeoutError, t:await())
    end)
  end)

  it("a new cancel in such a task stays a cancel (test_cancel_in_timeout_after_cancellation)", function()
    run(function()
      local t = asyncio.create_task(function()
        asyncio.current_task():cancel()
        assert_class(asyncio.CancelledError, raises(asyncio.sleep, 1))
        return raises(function()
          local _ <close> = timeout(1)
          asyncio.current_task():cancel()
          asyncio.sleep(2)
        end)
      end)
      assert_class(asyncio.CancelledError, t:await())
    end)
  end)

  it("the deadline cancels whatever the task awaits", function()
    run(function()
      local fut = loop():create_future()
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.01)
        fut:await()
      end))
      assert.is_true(fut:cancelled())
      local child = asyncio.create_task(asyncio.sleep, 10)
      assert_class(asyncio.TimeoutError, raises(function()
        local _ <close> = timeout(0.01)
        child:await()
      end))
      assert.is_true(child:cancelled())
    end)
  end)

  it("outside a task raises RuntimeError (test_timeout_without_task)", function()
    with_loop(function()
      local e = raises(timeout, 0.01)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("task", e.message)
    end)
    local e = raises(timeout_at, nil)
    assert_class(asyncio.RuntimeError, e)
    run(function()
      assert.matches("bad argument #1 to 'timeout'", raises(timeout, "1"))
      assert.matches("bad argument #1 to 'timeout_at'", raises(timeout_at, {}))
    end)
  end)

  it("an expired scope whose body ends with a plain error keeps that error", function()
    run(function()
      local e = raises(function()
        local _ <close> = timeout(0)
        pcall(asyncio.sleep, 1)
        error("plain", 0)
      end)
      assert.equal("plain", e)
      assert.is_false(is(asyncio.TimeoutError, e))
    end)
  end)
end)

describe("asyncio.Timeout", function()
  it("Timeout(when) is timeout_at(when): it cancels the task at the deadline", function()
    helper.vrun(function()
      local loop = asyncio.get_running_loop()
      local ok, e = pcall(function()
        local t <close> = asyncio.Timeout(loop:time() + 1)
        assert.is_true(asyncio.isinstance(t, asyncio.Timeout))
        asyncio.sleep(10)
      end)
      assert.is_false(ok)
      helper.assert_class(asyncio.TimeoutError, e)
      local never <close> = asyncio.Timeout(nil)
      assert.is_nil(never:when())
      assert.matches("bad argument #1 to 'Timeout'", helper.err_of(asyncio.Timeout, "soon"))
    end)
  end)
end)
