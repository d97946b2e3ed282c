-- asyncio.TaskGroup as a to-be-closed scope (after CPython's
-- test_taskgroups.py, times scaled down).
local asyncio = require "asyncio"
local taskgroups = require "asyncio.taskgroups"
local timeouts = require "asyncio.timeouts"
local helper = require "helper"

local run, with_loop = helper.vrun, helper.with_vloop
local is, assert_class, raises = helper.is, helper.assert_class, helper.err_of
local loop, current, sleeper = helper.loop, helper.current, helper.sleeper
local TaskGroup = taskgroups.TaskGroup

-- the class names of the errors in an ExceptionGroup, sorted
local function error_types(eg)
  assert_class(asyncio.ExceptionGroup, eg)
  local names = {}
  for _, e in ipairs(eg.exceptions) do
    local mt = type(e) == "table" and getmetatable(e)
    names[#names + 1] = mt and mt.__name or type(e)
  end
  table.sort(names)
  return names
end

local function crash_after(delay, err)
  return function()
    asyncio.sleep(delay)
    error(err or asyncio.ValueError(tostring(delay)))
  end
end

-- runs `body` in a task group scope
local function group(body)
  local tg <close> = TaskGroup()
  body(tg)
end

-- the same, returning the error that leaves the scope, if any
local function with_group(body)
  local ok, e = pcall(group, body)
  if not ok then return e end
end

-- a child that raises `err` when cancelled (Python: try: sleep finally: 1/0)
local function fails_on_cancel(err)
  return function()
    pcall(asyncio.sleep, 10)
    error(err or asyncio.ValueError("in finally"))
  end
end

describe("TaskGroup", function()
  it("waits for its children on exit (test_taskgroup_01, _02)", function()
    run(function()
      local t1, t2, t3
      local t0 = loop():time()
      assert.is_nil(with_group(function(g)
        t1 = g:create_task(sleeper(0.01, 42))
        t2 = g:create_task(sleeper(0.02, 11, "more"))
        asyncio.sleep(0.015)
        t3 = g:create_task(sleeper(0.01, 3))
      end))
      assert.is_true(loop():time() - t0 >= 0.02)
      assert.equal(42, t1:result())
      assert.same({ 11, "more", n = 2 }, table.pack(t2:result()))
      assert.equal(3, t3:result())
    end)
  end)

  it("create_task passes arguments and returns the Task", function()
    run(function()
      assert.is_nil(with_group(function(g)
        local t = g:create_task(function(a, b) return a + b end, 1, 2)
        assert.is_true(asyncio.isfuture(t))
        assert.equal(3, t:await())
        assert.matches("bad argument #1 to 'create_task'", raises(g.create_task, g, 5))
      end))
    end)
  end)

  it("a child cancelled explicitly changes nothing else (test_taskgroup_03)", function()
    run(function()
      local t1, t2
      assert.is_nil(with_group(function(g)
        t1 = g:create_task(sleeper(1, 42))
        asyncio.sleep(0.01)
        t1:cancel()
        t2 = g:create_task(sleeper(0.01, 11))
      end))
      assert.is_true(t1:cancelled())
      assert.equal(11, t2:result())
      assert.equal(0, current():cancelling())
    end)
  end)

  it("a child failure cancels the other children and raises ExceptionGroup (test_taskgroup_04)", function()
    run(function()
      local num, t2_cancel, t2 = 0, false, nil
      local runner = asyncio.create_task(function()
        local e = with_group(function(g)
          g:create_task(crash_after(0.01, asyncio.ValueError("boom")))
          t2 = g:create_task(function()
            local ok, err = pcall(asyncio.sleep, 1)
            if not ok then
              t2_cancel = true
              error(err, 0)
            end
            num = num + 1
          end)
        end)
        if e then error(e, 0) end
        num = num + 10
      end)
      local e = raises(runner.await, runner)
      assert.same({ "ValueError" }, error_types(e))
      assert.equal("boom", e.exceptions[1].message)
      assert.equal(0, num)
      assert.is_true(t2_cancel)
      assert.is_true(t2:cancelled())
      assert.matches("unhandled errors in a TaskGroup %(1 sub%-exception%)", tostring(e))
    end)
  end)

  it("a child failure cancels the body too, and every failure is collected (test_cancel_children_on_child_error)", function()
    run(function()
      local t2_cancel, runner_cancel = false, false
      local e = with_group(function(g)
        for _ = 1, 3 do g:create_task(crash_after(0.01, asyncio.ValueError("zero"))) end
        g:create_task(function()
          local ok, err = pcall(asyncio.sleep, 5)
          t2_cancel = not ok
          error(err, 0)
        end)
        local ok, err = pcall(asyncio.sleep, 10)
        runner_cancel = not ok
        error(err, 0)
      end)
      assert.same({ "ValueError", "ValueError", "ValueError" }, error_types(e))
      assert.is_true(t2_cancel)
      assert.is_true(runner_cancel)
      assert.equal(0, current():cancelling())
    end)
  end)

  it("a body cancelled from outside stays cancelled, with the message (test_cancellation)", function()
    run(function()
      local num = 0
      local r = asyncio.create_task(group, function(g)
        for _ = 1, 5 do
          g:create_task(function()
            local ok, err = pcall(asyncio.sleep, 5)
            if not ok then num = num + 1 end
            error(err, 0)
          end)
        end
      end)
      asyncio.sleep(0.01)
      assert.is_false(r:done())
      r:cancel("test")
      local e = raises(r.await, r)
      assert_class(asyncio.CancelledError, e)
      assert.equal("test", e.message)
      assert.equal(5, num)
    end)
  end)

  it("a body that re-raises its cancellation stays cancelled (test_taskgroup_07)", function()
    run(function()
      local num = 0
      local r = asyncio.create_task(group, function(g)
        for _ = 1, 5 do
          g:create_task(function()
            local ok, err = pcall(asyncio.sleep, 5)
            if not ok then num = num + 1 end
            error(err, 0)
          end)
        end
        local ok, err = pcall(asyncio.sleep, 10)
        if not ok then num = num + 10 end
        error(err, 0)
      end)
      asyncio.sleep(0.01)
      r:cancel()
      assert_class(asyncio.CancelledError, raises(r.await, r))
      assert.is_true(r:cancelled())
      assert.equal(15, num)
    end)
  end)

  it("children failing in reaction to the cancel give an ExceptionGroup (test_taskgroup_08)", function()
    run(function()
      local r = asyncio.create_task(group, function(g)
        for _ = 1, 5 do g:create_task(fails_on_cancel()) end
        asyncio.sleep(10)
      end)
      asyncio.sleep(0.01)
      assert.is_false(r:done())
      r:cancel()
      local e = raises(r.await, r)
      assert.same({ "ValueError", "ValueError", "ValueError", "ValueError", "ValueError" }, error_types(e))
      assert.is_false(r:cancelled())
    end)
  end)

  it("a body cancelled before its children fail stays cancelled (test_cancellation_in_body)", function()
    run(function()
      local r = asyncio.create_task(group, function(g)
        for _ = 1, 5 do g:create_task(crash_after(0.05)) end
        asyncio.sleep(10)
      end)
      asyncio.sleep(0.01)
      r:cancel("test")
      local e = raises(r.await, r)
      assert_class(asyncio.CancelledError, e)
      assert.equal("test", e.message)
    end)
  end)

  it("an error of the body cancels the children and is collected (test_taskgroup_09, _10)", function()
    run(function()
      for _, wait_first in ipairs({ true, false }) do
        local t1, t2
        local e = with_group(function(g)
          t1 = g:create_task(sleeper(1, 42))
          t2 = g:create_task(sleeper(2, 11))
          if wait_first then asyncio.sleep(0.01) end
          error(asyncio.ValueError("body"))
        end)
        assert.same({ "ValueError" }, error_types(e))
        assert.equal("body", e.exceptions[1].message)
        assert.is_true(t1:cancelled())
        assert.is_true(t2:cancelled())
      end
      assert.equal("plain", with_group(function() error("plain", 0) end).exceptions[1])
    end)
  end)

  it("nested groups cancelled from outside raise CancelledError", function()
    run(function()
      for _, outer_child in ipairs({ false, true }) do
        local r = asyncio.create_task(group, function(g1)
          if outer_child then g1:create_task(asyncio.sleep, 10) end
          group(function(g2)
            for _ = 1, 5 do g2:create_task(crash_after(0.05)) end
            asyncio.sleep(10)
          end)
        end)
        asyncio.sleep(0.01)
        assert.is_false(r:done())
        r:cancel()
        assert_class(asyncio.CancelledError, raises(r.await, r))
      end
    end)
  end)

  it("nested groups whose inner children fail when cancelled nest the ExceptionGroups (test_taskgroup_11, _12)", function()
    run(function()
      for _, outer_child in ipairs({ false, true }) do
        local r = asyncio.create_task(group, function(g1)
          if outer_child then g1:create_task(asyncio.sleep, 10) end
          group(function(g2)
            for _ = 1, 5 do g2:create_task(fails_on_cancel()) end
            asyncio.sleep(10)
          end)
        end)
        asyncio.sleep(0.01)
        r:cancel()
        local e = raises(r.await, r)
        assert.same({ "ExceptionGroup" }, error_types(e))
        assert.equal(5, #error_types(e.exceptions[1]))
      end
    end)
  end)

  it("an outer child's failure cancels the inner group (test_taskgroup_13)", function()
    run(function()
      local e = with_group(function(g1)
        g1:create_task(crash_after(0.01))
        local e2 = with_group(function(g2) g2:create_task(crash_after(10)) end)
        if e2 then error(e2, 0) end
      end)
      assert.same({ "ValueError" }, error_types(e))
    end)
  end)

  it("an inner group's ExceptionGroup nests in the outer one (test_taskgroup_14)", function()
    run(function()
      local e = with_group(function(g1)
        g1:create_task(crash_after(10))
        local e2 = with_group(function(g2) g2:create_task(crash_after(0.01)) end)
        if e2 then error(e2, 0) end
      end)
      assert.same({ "ExceptionGroup" }, error_types(e))
      assert.same({ "ValueError" }, error_types(e.exceptions[1]))
    end)
  end)

  it("a child failing while the cancelled body cleans up gives an ExceptionGroup (test_taskgroup_15, _16)", function()
    run(function()
      for _, nested in ipairs({ false, true }) do
        local function runner()
          group(function(g1)
            g1:create_task(crash_after(0.03))
            local ok, err = pcall(asyncio.sleep, 10)
            if not ok then asyncio.sleep(0.05) end
            error(err, 0)
          end)
        end
        local r = asyncio.create_task(nested and function()
          local t = asyncio.create_task(runner)
          t:await()
        end or runner)
        asyncio.sleep(0.01)
        assert.is_false(r:done())
        r:cancel()
        assert.same({ "ValueError" }, error_types(raises(r.await, r)))
      end
    end)
  end)

  it("an empty group cancelled from outside: CancelledError (test_taskgroup_17)", function()
    run(function()
      local num = 0
      local r = asyncio.create_task(group, function()
        local ok, err = pcall(asyncio.sleep, 10)
        if not ok then num = num + 10 end
        error(err, 0)
      end)
      asyncio.sleep(0.01)
      r:cancel()
      assert_class(asyncio.CancelledError, raises(r.await, r))
      assert.equal(10, num)
    end)
  end)

  it("a body that turns its cancellation into an error gives an ExceptionGroup (test_taskgroup_18)", function()
    run(function()
      local num = 0
      local r = asyncio.create_task(group, function()
        if not pcall(asyncio.sleep, 10) then num = num + 10 end
        error(asyncio.ValueError("MyExc"))
      end)
      asyncio.sleep(0.01)
      r:cancel()
      local e = raises(r.await, r)
      assert.same({ "ValueError" }, error_types(e))
      assert.equal(10, num)
    end)
  end)

  it("an error the body raises while cancelled joins the children's (test_taskgroup_19)", function()
    run(function()
      local e = with_group(function(g)
        g:create_task(crash_after(0.01, asyncio.RuntimeError("child")))
        pcall(asyncio.sleep, 10)
        error(asyncio.ValueError("body"))
      end)
      assert.same({ "RuntimeError", "ValueError" }, error_types(e))
      assert.equal(0, current():cancelling())
    end)
  end)

  it("a KeyboardInterrupt from the body or a child ends the group as is (test_taskgroup_20)", function()
    run(function()
      local e = with_group(function(g)
        g:create_task(crash_after(0.01))
        pcall(asyncio.sleep, 10)
        error(asyncio.KeyboardInterrupt())
      end)
      assert_class(asyncio.KeyboardInterrupt, e)
      local e2 = with_group(function(g)
        g:create_task(crash_after(0.01, asyncio.KeyboardInterrupt()))
        g:create_task(crash_after(0.02))
      end)
      assert_class(asyncio.KeyboardInterrupt, e2)
    end)
  end)

  it("cancelled while the children run: CancelledError (test_taskgroup_22)", function()
    run(function()
      local t1
      local r = asyncio.create_task(group, function(g)
        t1 = g:create_task(sleeper(1, 42))
        g:create_task(sleeper(2, 11))
      end)
      asyncio.sleep(0.01)
      r:cancel()
      assert_class(asyncio.CancelledError, raises(r.await, r))
      assert.is_true(t1:cancelled())
    end)
  end)

  it("children may add children (test_taskgroup_24, _25)", function()
    run(function()
      local done = 0
      assert.is_nil(with_group(function(g)
        g:create_task(function()
          asyncio.sleep(0.01)
          g:create_task(function() asyncio.sleep(0.01); done = done + 1 end)
          g:create_task(function() asyncio.sleep(0.02); done = done + 1 end)
        end)
      end))
      assert.equal(2, done)

      local nhydras = 0
      local function hydra(g)
        nhydras = nhydras + 1
        asyncio.sleep(0.002)
        g:create_task(hydra, g)
        g:create_task(hydra, g)
      end
      local e = with_group(function(g)
        g:create_task(hydra, g)
        g:create_task(function()
          while nhydras < 10 do asyncio.sleep(0.003) end
          error(asyncio.ValueError("hercules"))
        end)
      end)
      assert.same({ "ValueError" }, error_types(e))
      assert.is_true(nhydras >= 10)
    end)
  end)

  it("create_task while shutting down raises RuntimeError (test_taskgroup_no_create_task_after_failure)", function()
    run(function()
      local seen
      local e = with_group(function(g)
        g:create_task(crash_after(0.001))
        g:create_task(function()
          if not pcall(asyncio.sleep, 1) then
            seen = raises(g.create_task, g, sleeper(0))
          end
        end)
      end)
      assert.same({ "ValueError" }, error_types(e))
      assert_class(asyncio.RuntimeError, seen)
      assert.matches("shutting down", seen.message)
    end)
  end)

  it("an error from another scope's __close in the body is collected (test_taskgroup_context_manager_exit_raises)", function()
    run(function()
      local main = asyncio.create_task(function()
        local e = with_group(function(tg)
          local _ <close> = setmetatable({}, {
            __close = function() error(asyncio.ValueError("from __close")) end,
          })
          tg:create_task(function() error(asyncio.ValueError("child")) end)
          asyncio.sleep(1)
        end)
        return e, asyncio.current_task():cancelling()
      end)
      local e, cancelling = main:await()
      assert.same({ "ValueError", "ValueError" }, error_types(e))
      assert.equal(0, cancelling)
    end)
  end)

  it("create_task after the scope ended raises RuntimeError (test_taskgroup_finished)", function()
    run(function()
      local group
      do
        local tg <close> = TaskGroup()
        group = tg
      end
      local e = raises(group.create_task, group, sleeper(0))
      assert_class(asyncio.RuntimeError, e)
      assert.matches("is finished", e.message)
    end)
  end)

  it("outside a task raises RuntimeError (test_taskgroup_without_parent_task)", function()
    with_loop(function()
      local e = raises(TaskGroup)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("parent task", e.message)
    end)
  end)

  it("leaves the cancel count as it found it (test_cancelling_level_preserved, test_cancellation_does_not_leak_out_of_tg)", function()
    run(function()
      local e = with_group(function(tg) tg:create_task(crash_after(0)) end)
      assert.same({ "ValueError" }, error_types(e))
      assert.equal(0, current():cancelling())
      e = with_group(function(tg) tg:create_task(function() error("now", 0) end) end)
      assert.equal("now", e.exceptions[1])
      asyncio.sleep(0) -- would raise CancelledError if a cancel leaked out
      assert.equal(0, current():cancelling())
    end)
  end)

  it("nested groups both failing (test_nested_groups_both_cancelled)", function()
    run(function()
      local inside
      local e = with_group(function(outer_tg)
        local e2 = with_group(function(inner_tg)
          inner_tg:create_task(crash_after(0, asyncio.RuntimeError("inner")))
          outer_tg:create_task(crash_after(0, asyncio.ValueError("outer")))
        end)
        assert.same({ "RuntimeError" }, error_types(e2))
        inside = current():cancelling()
      end)
      assert.equal(1, inside)
      assert.same({ "ValueError" }, error_types(e))
      assert.equal(0, current():cancelling())
    end)
  end)

  it("an outside cancel during a failing group stays pending after it (test_error_and_cancel)", function()
    run(function()
      local event = loop():create_future()
      local levels = {}
      local t = asyncio.create_task(function()
        local e = with_group(function(tg)
          tg:create_task(function()
            event:set_result()
            asyncio.sleep(0)
            error(asyncio.RuntimeError())
          end)
          asyncio.sleep(1)
          error("sleep in group should have been cancelled")
        end)
        levels.types = error_types(e)
        levels.after = asyncio.current_task():cancelling()
        asyncio.sleep(1)
        levels.reached = true
      end)
      event:await()
      assert.equal(0, t:cancelling())
      t:cancel()
      assert.equal(1, t:cancelling())
      assert_class(asyncio.CancelledError, raises(t.await, t))
      assert.is_true(t:cancelled())
      assert.same({ "RuntimeError" }, levels.types)
      assert.equal(1, levels.after)
      assert.is_nil(levels.reached)
    end)
  end)

  it("a child created by a child that fails at once still cancels its siblings (gh-128550)", function()
    run(function()
      local ran, sibling_err = false, nil
      local e = with_group(function(tg)
        tg:create_task(function()
          tg:create_task(function() error(asyncio.ValueError("third task failed")) end)
          sibling_err = raises(function()
            asyncio.sleep(0)
            asyncio.sleep(0)
          end)
          ran = true
        end)
      end)
      assert.is_true(ran)
      assert_class(asyncio.CancelledError, sibling_err)
      assert.same({ "ValueError" }, error_types(e))
    end)
  end)

  it("with the eager task factory (TestEagerTaskTaskGroup)", function()
    run(function()
      loop():set_task_factory(asyncio.eager_task_factory)
      local t
      assert.is_nil(with_group(function(tg)
        t = tg:create_task(function() return 1 end)
        assert.is_true(t:done())
        tg:create_task(sleeper(0.01))
      end))
      assert.equal(1, t:result())
      -- a child that fails eagerly cancels the body only once create_task returned
      local after_create
      local e = with_group(function(tg)
        tg:create_task(function() error(asyncio.ValueError("eager")) end)
        after_create = true
        asyncio.sleep(1)
      end)
      assert.is_true(after_create)
      assert.same({ "ValueError" }, error_types(e))
      assert.equal(0, current():cancelling())
    end)
  end)

  it("under a timeout: expiry while waiting for the children gives TimeoutError", function()
    run(function()
      local child
      local e = raises(function()
        local _ <close> = timeouts.timeout(0.02)
        local tg <close> = TaskGroup()
        child = tg:create_task(asyncio.sleep, 10)
      end)
      assert_class(asyncio.TimeoutError, e)
      assert.is_true(child:cancelled())
      assert.equal(0, current():cancelling())
      -- test_exception_refcycles_propagate_cancellation_error: the cause is the CancelledError
      e = raises(function()
        local _ <close> = timeouts.timeout(-1)
        local _ <close> = TaskGroup()
        asyncio.sleep(0)
      end)
      assert_class(asyncio.TimeoutError, e)
      assert_class(asyncio.CancelledError, e.cause)
    end)
  end)

  it("children's errors count as retrieved", function()
    helper.capture_log(function(records)
      run(function()
        local e = with_group(function(tg)
          tg:create_task(crash_after(0))
          tg:create_task(crash_after(0))
        end)
        assert.equal(2, #e.exceptions)
      end)
      helper.gc()
      assert.same({}, helper.grep(records, "never retrieved"))
    end)
  end)

  it("tostring shows the state", function()
    run(function()
      local group
      do
        local tg <close> = TaskGroup()
        group = tg
        assert.equal("<TaskGroup entered>", tostring(tg))
        tg:create_task(sleeper(0))
        assert.equal("<TaskGroup tasks=1 entered>", tostring(tg))
      end
      assert.equal("<TaskGroup>", tostring(group))
      assert.is_false(is(asyncio.ExceptionGroup, group))
    end)
  end)
end)
