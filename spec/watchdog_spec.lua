-- The stall watchdog of debug mode: a task step or callback that runs longer
-- than slow_callback_duration is reported *while* it is stuck, with where it
-- is, and not only after it returns (Python's slow-callback warning is the
-- latter). Also the wording of the after-the-fact warnings.
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local function still(records)
  return helper.grep(records, "is still running after")
end

describe("stall watchdog", function()
  it("names the task and the line it is stuck at, while it runs", function()
    local records = helper.capture_log(function(records)
      helper.run(function()
        local loop = asyncio.get_running_loop()
        loop:set_debug(true)
        loop.slow_callback_duration = 0.03
        local t = asyncio.create_task(function()
          local t0 = os.clock()
          records.line = debug.getinfo(1, "l").currentline + 1
          while os.clock() - t0 < 0.15 do
          end
          -- by now the warning was logged: from inside this very loop
          records.before_return = #helper.grep(records, "is still running after")
        end)
        t:set_name("spinner")
        t:await()
      end)
      return records
    end)
    assert.equal(1, records.before_return)
    local found = still(records)
    assert.equal(1, #found)
    assert.equal("warning", found[1].level)
    assert.matches("^Task 'spinner' is still running after 0%.0%d%d seconds at", found[1].msg)
    assert.matches("watchdog_spec.lua:" .. records.line, found[1].msg, 1, true)
    assert.matches("stack traceback", found[1].msg, 1, true)
    -- and the after-the-fact warning, with Python's words
    local took = helper.grep(records, "took")
    assert.equal(1, #took)
    assert.matches("^Executing <Task finished name='spinner'> took 0%.%d%d%d seconds$", took[1].msg)
  end)

  it("reports a callback stuck in Lua, with where it was defined", function()
    local records = helper.capture_log(function(records)
      helper.with_loop(function(loop)
        loop:set_debug(true)
        loop.slow_callback_duration = 0.03
        records.defined = debug.getinfo(1, "l").currentline + 1
        loop:call_soon(function()
          helper.busy(0.12)
        end)
        loop:run_once()
        loop:run_once()
      end)
      return records
    end)
    local found = still(records)
    assert.equal(1, #found)
    assert.matches("^Callback defined at .*watchdog_spec.lua:" .. records.defined, found[1].msg)
    local took = helper.grep(records, "took")
    assert.equal(1, #took)
    assert.matches("^Executing <callback defined at .*watchdog_spec.lua:" .. records.defined .. "> took",
      took[1].msg)
  end)

  it("puts back a debug.sethook hook it replaced", function()
    helper.capture_log(function()
      helper.run(function()
        local loop = asyncio.get_running_loop()
        loop:set_debug(true)
        loop.slow_callback_duration = 0.02
        local t = asyncio.create_task(function()
          local calls = 0
          local function hook()
            calls = calls + 1
          end
          debug.sethook(hook, "", 1000)
          asyncio.sleep(0) -- the step the watchdog sees starts with the hook set
          helper.busy(0.1)
          local h, mask, count = debug.gethook()
          debug.sethook()
          return h == hook, mask, count, calls
        end)
        local same, mask, count, calls = t:await()
        assert.is_true(same)
        assert.equal("", mask)
        assert.equal(1000, count)
        assert.is_true(calls > 0)
      end)
    end)
  end)

  it("is quiet for steps shorter than slow_callback_duration", function()
    local records = helper.capture_log(function(records)
      helper.run(function()
        local loop = asyncio.get_running_loop()
        loop:set_debug(true)
        loop.slow_callback_duration = 0.5
        for _ = 1, 20 do
          helper.busy(0.005)
          asyncio.sleep(0)
        end
      end)
      return records
    end)
    assert.equal(0, #still(records))
  end)

  it("stops with set_debug(false): no report after that", function()
    local records = helper.capture_log(function(records)
      helper.run(function()
        local loop = asyncio.get_running_loop()
        loop:set_debug(true)
        loop.slow_callback_duration = 0.02
        asyncio.sleep(0)
        loop:set_debug(false)
        helper.busy(0.08)
        asyncio.sleep(0)
        loop:set_debug(true) -- again: a new watchdog, from the next step on
        asyncio.sleep(0)
        helper.busy(0.08)
      end)
      return records
    end)
    assert.equal(1, #still(records))
  end)

  it("reports a step blocked in C on stderr from its own thread, then where it was", function()
    -- a child interpreter, so that its stderr can be read
    local exe = "/proc/" .. helper.pid() .. "/exe"
    local code = [[
      local asyncio = require 'asyncio'
      asyncio.logger.set_handler(function(level, msg) io.stderr:write('LOG ', msg, '\n') end)
      asyncio.run(function()
        local loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.05
        local t = asyncio.create_task(function()
          os.execute('sleep 0.4')
          local x = 1
          return x
        end)
        t:set_name('blocker')
        t:await()
      end, {debug = true})
    ]]
    local cmd = ("timeout 10 %s -e %q 2>&1"):format(exe, code)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    assert.matches("asyncio warning: Task 'blocker' is still running after 0%.%d+ seconds outside Lua code",
      out)
    assert.matches("LOG Task 'blocker' is still running after 0%.%d+ seconds at %(command line%):%d+", out)
    assert.matches("LOG Executing <Task finished name='blocker'> took 0%.[34]%d%d seconds", out)
  end)
end)
