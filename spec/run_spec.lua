-- asyncio.run (after CPython's test_runners.py).
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local assert_class = helper.assert_class

-- Wraps main so that a hang fails the test: a watchdog stops the loop after
-- `timeout` seconds, which makes asyncio.run raise.
local function bounded(main, timeout)
  return function(...)
    local loop = asyncio.get_running_loop()
    loop:call_later(timeout or helper.timeout, function()
      loop:stop()
    end)
    return main(...)
  end
end

describe("asyncio.run", function()
  it("returns every value main returned", function()
    local r = table.pack(asyncio.run(bounded(function()
      asyncio.sleep(0.001)
      return 1, nil, "three", nil
    end)))
    assert.same({ 1, nil, "three", nil, n = 4 }, r)
    assert.equal(0, select("#", asyncio.run(bounded(function() end))))
  end)

  it("runs main as a task of a fresh loop, closed afterwards", function()
    local loops, tasks = {}, {}
    for i = 1, 2 do
      asyncio.run(bounded(function()
        loops[i] = asyncio.get_running_loop()
        tasks[i] = asyncio.current_task()
        assert.is_true(loops[i]:is_running())
      end))
    end
    assert.are_not.equal(loops[1], loops[2])
    assert.is_true(loops[1]:is_closed())
    assert.is_true(loops[2]:is_closed())
    assert.is_not_nil(tasks[1])
    assert.is_true(tasks[1]:done())
    local ok = pcall(asyncio.get_running_loop)
    assert.is_false(ok)
  end)

  it("propagates errors unchanged: strings, tables, error objects", function()
    local tbl = { reason = "table error" }
    local obj = asyncio.ValueError("object error")
    for _, v in ipairs({ "plain string", tbl, obj }) do
      local ok, e = pcall(asyncio.run, bounded(function()
        asyncio.sleep(0)
        error(v, 0)
      end))
      assert.is_false(ok)
      assert.equal(v, e)
    end
    local ok, e = pcall(asyncio.run, bounded(function()
      error("with position")
    end))
    assert.is_false(ok)
    assert.matches("run_spec.lua:%d+: with position$", e)
  end)

  it("raises CancelledError when main is cancelled", function()
    local ok, e = pcall(asyncio.run, bounded(function()
      local me = asyncio.current_task()
      asyncio.get_running_loop():call_soon(function()
        me:cancel()
      end)
      asyncio.sleep(10)
    end))
    assert.is_false(ok)
    assert_class(asyncio.CancelledError, e)
  end)

  it("cancels leftover tasks, letting them clean up", function()
    local leftover, saw
    local cleaned = false
    local r = asyncio.run(bounded(function()
      leftover = asyncio.create_task(function()
        local ok, e = pcall(asyncio.sleep, 10)
        saw = e
        asyncio.sleep(0.001) -- cleanup may await
        cleaned = true
        if not ok then
          error(e, 0)
        end
      end)
      asyncio.sleep(0)
      return "main done"
    end))
    assert.equal("main done", r)
    assert.is_true(leftover:cancelled())
    assert_class(asyncio.CancelledError, saw)
    assert.is_true(cleaned)
  end)

  it("cancels leftover tasks also when main fails", function()
    local leftover
    local ok, e = pcall(asyncio.run, bounded(function()
      leftover = asyncio.create_task(function()
        asyncio.sleep(10)
      end)
      asyncio.sleep(0)
      error("main failed", 0)
    end))
    assert.is_false(ok)
    assert.equal("main failed", e)
    assert.is_true(leftover:done())
    assert.is_true(leftover:cancelled())
  end)

  it("reports a leftover task that fails while being cancelled", function()
    local contexts = {}
    asyncio.run(bounded(function()
      asyncio.get_running_loop():set_exception_handler(function(_, context)
        contexts[#contexts + 1] = context
      end)
      asyncio.create_task(function()
        pcall(asyncio.sleep, 10)
        error(asyncio.ValueError("failed during shutdown"))
      end)
      asyncio.sleep(0)
    end))
    assert.equal(1, #contexts)
    assert_class(asyncio.ValueError, contexts[1].exception)
    assert.equal("failed during shutdown", contexts[1].exception.message)
    assert.is_not_nil(contexts[1].task)
  end)

  it("refuses to run inside a running loop", function()
    helper.run(function()
      local ran = false
      local ok, e = pcall(asyncio.run, function()
        ran = true
      end)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      assert.is_false(ran)
      assert.is_true(asyncio.get_running_loop():is_running())
    end)
  end)

  it("refuses to run from a callback of a running loop", function()
    helper.with_loop(function(loop)
      local ok, e
      loop:call_soon(function()
        ok, e = pcall(asyncio.run, function() end)
      end)
      loop:run_once()
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
    end)
  end)

  it("debug option", function()
    local on = asyncio.run(bounded(function()
      return asyncio.get_running_loop():get_debug()
    end), { debug = true })
    assert.is_true(on)
    local off = asyncio.run(bounded(function()
      return asyncio.get_running_loop():get_debug()
    end), { debug = false })
    assert.is_false(off)
  end)

  it("main can create tasks and await them", function()
    local r = asyncio.run(bounded(function()
      local ts = {}
      for i = 1, 10 do
        ts[i] = asyncio.create_task(function()
          asyncio.sleep(0.001 * i)
          return i * i
        end)
      end
      local sum = 0
      for i = 1, 10 do
        sum = sum + ts[i]:await()
      end
      return sum
    end))
    assert.equal(385, r)
  end)
end)

describe("asyncio.run and SIGINT", function()
  -- Sends SIGINT to this very process. io.popen (unlike os.execute, whose
  -- system() ignores SIGINT in the caller while it waits) leaves our handler
  -- in place, so the signal reaches the loop.
  local function send_sigint()
    local p = assert(io.popen("kill -INT " .. helper.pid()))
    p:close()
  end

  local function can_catch_sigint()
    local loop = helper.new_loop()
    local ok = pcall(loop.add_signal_handler, loop, "SIGINT", function() end)
    if ok then
      loop:remove_signal_handler("SIGINT")
    end
    loop:close()
    return ok
  end

  it("a SIGINT cancels the main task; asyncio.run raises KeyboardInterrupt", function()
    assert.is_true(can_catch_sigint())
    local saw
    local loop_ref
    local t0 = helper.now()
    local ok, e = pcall(asyncio.run, bounded(function()
      loop_ref = asyncio.get_running_loop()
      loop_ref:call_later(0.01, send_sigint)
      local ok2, err = pcall(asyncio.sleep, 10)
      saw = err
      if not ok2 then
        error(err, 0)
      end
    end))
    assert.is_false(ok)
    assert_class(asyncio.KeyboardInterrupt, e)
    assert_class(asyncio.CancelledError, saw)
    assert.is_true(helper.now() - t0 < 5)
    assert.is_true(loop_ref:is_closed())
  end)

  it("main may catch the cancellation and finish normally", function()
    assert.is_true(can_catch_sigint())
    local r = asyncio.run(bounded(function()
      asyncio.get_running_loop():call_later(0.01, send_sigint)
      local ok = pcall(asyncio.sleep, 10)
      assert(not ok)
      asyncio.sleep(0.001)
      return "graceful"
    end))
    assert.equal("graceful", r)
  end)

  it("a second SIGINT interrupts at once", function()
    assert.is_true(can_catch_sigint())
    local caught = 0
    local t0 = helper.now()
    local ok, e = pcall(asyncio.run, bounded(function()
      local loop = asyncio.get_running_loop()
      loop:call_later(0.01, send_sigint)
      loop:call_later(0.05, send_sigint)
      -- ignores the first cancellation; the second (from the shutdown
      -- after the second SIGINT) ends it
      while caught < 2 do
        if not pcall(asyncio.sleep, 3) then
          caught = caught + 1
        end
      end
    end))
    assert.is_false(ok)
    assert_class(asyncio.KeyboardInterrupt, e)
    assert.equal(2, caught)
    assert.is_true(helper.now() - t0 < 2, "took " .. (helper.now() - t0))
  end)
end)

-- asyncio.Runner (after CPython's test_runners.py RunnerTests)
describe("asyncio.Runner", function()
  it("runs several functions on one loop, made at the first use", function()
    local runner = asyncio.Runner()
    assert.matches("created", tostring(runner))
    local a = runner:run(bounded(function(x, y)
      asyncio.sleep(0.001)
      return x + y, asyncio.get_running_loop()
    end), 2, 3)
    assert.equal(5, a)
    local loop = runner:get_loop()
    assert.is_false(loop:is_closed())
    assert.equal(loop, asyncio.get_event_loop()) -- set as the current loop until close
    local b, l2 = runner:run(bounded(function()
      return "again", asyncio.get_running_loop()
    end))
    assert.equal("again", b)
    assert.equal(loop, l2)
    runner:close()
    assert.is_true(loop:is_closed())
    assert.matches("closed", tostring(runner))
    runner:close() -- again: nothing
  end)

  it("get_loop() before run() makes the loop; run() after close() raises", function()
    local runner = asyncio.Runner()
    local loop = runner:get_loop()
    assert.equal(loop, runner:get_loop())
    runner:close()
    local ok, e = pcall(runner.run, runner, function() end)
    assert.is_false(ok)
    assert_class(asyncio.RuntimeError, e)
    assert.matches("Runner is closed", e.message)
    ok, e = pcall(runner.get_loop, runner)
    assert.is_false(ok)
    assert_class(asyncio.RuntimeError, e)
  end)

  it("closing a runner never used leaves it usable, as Python", function()
    local runner = asyncio.Runner()
    runner:close()
    assert.equal(1, runner:run(function() return 1 end))
    runner:close()
  end)

  it("a to-be-closed runner closes its loop, also when run raises", function()
    local loop
    local ok, e = pcall(function()
      local runner <close> = asyncio.Runner()
      loop = runner:get_loop()
      runner:run(bounded(function() error("boom", 0) end))
    end)
    assert.is_false(ok)
    assert.equal("boom", e)
    assert.is_true(loop:is_closed())
  end)

  it("debug and loop_factory options", function()
    local made
    local runner = asyncio.Runner { debug = true, loop_factory = function()
      made = asyncio.new_event_loop()
      return made
    end }
    local loop = runner:run(function() return asyncio.get_running_loop() end)
    assert.equal(made, loop)
    assert.is_true(loop:get_debug())
    runner:close()
    assert.is_true(made:is_closed())
    local r2 = asyncio.Runner { debug = false }
    assert.is_false(r2:get_loop():get_debug())
    r2:close()
    local r3 = asyncio.Runner { clock = "virtual" }
    assert.equal(0, r3:run(function() return asyncio.get_running_loop():time() end))
    r3:close()
  end)

  it("a loop_factory that does not return a loop is a RuntimeError", function()
    local runner = asyncio.Runner { loop_factory = function() return 42 end }
    local ok, e = pcall(runner.get_loop, runner)
    assert.is_false(ok)
    assert_class(asyncio.RuntimeError, e)
  end)

  it("close() cancels the leftover tasks and lets them clean up", function()
    local runner = asyncio.Runner()
    local cleaned = false
    runner:run(bounded(function()
      asyncio.create_task(function()
        local ok = pcall(asyncio.sleep, 10)
        assert(not ok)
        asyncio.sleep(0)
        cleaned = true
      end)
      asyncio.sleep(0)
    end))
    assert.is_false(cleaned)
    runner:close()
    assert.is_true(cleaned)
  end)

  it("run() from a running loop is a RuntimeError", function()
    local runner = asyncio.Runner()
    helper.run(function()
      local ok, e = pcall(runner.run, runner, function() end)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("running event loop", e.message)
    end)
    runner:close()
  end)

  it("run() of a future of its loop waits for it", function()
    local runner = asyncio.Runner()
    local loop = runner:get_loop()
    local f = loop:create_future()
    loop:call_later(0.001, function() f:set_result("done", 2) end)
    assert.same({ "done", 2 }, { runner:run(f) })
    runner:close()
  end)

  it("checks its arguments", function()
    for _, bad in ipairs { 1, "x", { loop_factory = 1 }, { clock = "fast" } } do
      local ok, e = pcall(asyncio.Runner, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'Runner'", e)
    end
    local runner = asyncio.Runner()
    local ok, e = pcall(runner.run, runner, 42)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'run'", e)
    runner:close()
    ok, e = pcall(asyncio.run, function() end, { loop_factory = "x" })
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'run'", e)
  end)

  it("asyncio.run takes loop_factory", function()
    local made
    local r = asyncio.run(function() return asyncio.get_running_loop() end, { loop_factory = function()
      made = asyncio.new_event_loop()
      return made
    end })
    assert.equal(made, r)
    assert.is_true(made:is_closed())
  end)
end)
