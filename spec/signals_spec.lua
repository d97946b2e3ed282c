-- Unix signal handlers of the loop (after CPython's test_asyncio
-- test_unix_events signal tests where they apply): handlers run from the
-- ready queue, replace each other, and refuse the signals they cannot have.
-- The signals come from kill(1), a program of coreutils.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run

local function kill_me(sig)
  local p = asyncio.create_subprocess_exec({ "kill", "-" .. sig, tostring(helper.pid()) })
  assert.equal(0, p:wait())
end

describe("add_signal_handler", function()
  it("runs the handler with its arguments on the loop, once per delivery", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local got, fired = {}, asyncio.Event()
      loop:add_signal_handler("SIGUSR1", function(a, b)
        -- a plain callback of the ready queue: it may schedule and may raise
        got[#got + 1] = { a, b, asyncio.current_task() }
        fired:set()
      end, "x", 2)
      for i = 1, 3 do
        fired:clear()
        kill_me("USR1")
        asyncio.wait_for(function() return fired:wait() end, 5)
        assert.equal(i, #got)
      end
      assert.same({ "x", 2 }, { got[1][1], got[1][2] })
      assert.is_nil(got[1][3])
      assert.is_true(loop:remove_signal_handler("SIGUSR1"))
      assert.is_false(loop:remove_signal_handler("SIGUSR1"))
    end)
  end)

  it("a second handler for a signal replaces the first; numbers work as names", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local which, fired = nil, asyncio.Event()
      loop:add_signal_handler("SIGUSR2", function() which = "first"; fired:set() end)
      loop:add_signal_handler(12, function() which = "second"; fired:set() end)
      kill_me("USR2")
      asyncio.wait_for(function() return fired:wait() end, 5)
      assert.equal("second", which)
      assert.is_true(loop:remove_signal_handler(12))
    end)
  end)

  it("an error in the handler goes to the exception handler and the loop goes on", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local reported = asyncio.Event()
      local ctx
      loop:set_exception_handler(function(_, c) ctx = c; reported:set() end)
      loop:add_signal_handler("SIGHUP", function() error("boom") end)
      kill_me("HUP")
      asyncio.wait_for(function() return reported:wait() end, 5)
      assert.matches("boom", tostring(ctx.exception))
      loop:remove_signal_handler("SIGHUP")
      loop:set_exception_handler(nil)
    end)
  end)

  it("SIGKILL and SIGSTOP cannot be caught, SIGCHLD is the runtime's, bad numbers are ValueError",
    function()
      run(function()
        local loop = asyncio.get_running_loop()
        for _, sig in ipairs { "SIGKILL", "SIGSTOP", 9, 19 } do
          local err = helper.err_of(loop.add_signal_handler, loop, sig, print)
          helper.assert_class(asyncio.RuntimeError, err)
          assert.matches("cannot be caught", tostring(err))
          assert.is_false(loop:remove_signal_handler(sig))
        end
        helper.assert_class(asyncio.RuntimeError,
          helper.err_of(loop.add_signal_handler, loop, "SIGCHLD", print))
        for _, n in ipairs { 0, -1, 65, 1000 } do
          helper.assert_class(asyncio.ValueError, helper.err_of(loop.add_signal_handler, loop, n, print))
        end
        assert.has_error(function() loop:add_signal_handler("SIGNOPE", print) end)
      end)
    end)

  it("a closed loop has no handlers left and takes none", function()
    local loop = asyncio.new_event_loop()
    loop:add_signal_handler("SIGUSR1", print)
    loop:close()
    assert.is_false(loop:remove_signal_handler("SIGUSR1"))
    assert.has_error(function() loop:add_signal_handler("SIGUSR1", print) end)
  end)
end)
