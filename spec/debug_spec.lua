-- Debug mode and asyncio.logger: slow callbacks, exceptions never retrieved
-- with where the future was created, tasks destroyed while pending,
-- LUA_ASYNCIO_DEBUG (after CPython's test_base_events.py debug tests).
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local with_loop = helper.with_loop

local function env_debug()
  local v = os.getenv("LUA_ASYNCIO_DEBUG")
  return v ~= nil and v ~= "" and v ~= "0"
end

describe("asyncio.logger", function()
  after_each(function()
    asyncio.logger.set_level("warning")
    asyncio.logger.set_handler(nil)
  end)

  it("set_handler receives level and message", function()
    local records = helper.capture_log()
    asyncio.logger.warning("careful")
    asyncio.logger.error("broken")
    asyncio.logger.log("critical", "very broken")
    helper.restore_log()
    assert.same({
      { level = "warning", msg = "careful" },
      { level = "error", msg = "broken" },
      { level = "critical", msg = "very broken" },
    }, records)
  end)

  it("the level filters, default warning", function()
    assert.equal("warning", asyncio.logger.get_level())
    local records = helper.capture_log()
    asyncio.logger.debug("d")
    asyncio.logger.info("i")
    asyncio.logger.warning("w")
    asyncio.logger.set_level("error")
    assert.equal("error", asyncio.logger.get_level())
    asyncio.logger.warning("w2")
    asyncio.logger.error("e")
    asyncio.logger.set_level("debug")
    asyncio.logger.debug("d2")
    helper.restore_log()
    local msgs = {}
    for _, r in ipairs(records) do
      msgs[#msgs + 1] = r.msg
    end
    assert.same({ "w", "e", "d2" }, msgs)
  end)

  it("set_handler(nil) restores the default handler", function()
    local records = helper.capture_log()
    asyncio.logger.set_handler(nil)
    asyncio.logger.set_level("critical") -- keep stderr quiet
    asyncio.logger.error("not captured")
    assert.same({}, records)
  end)
end)

describe("debug mode", function()
  it("is off by default unless LUA_ASYNCIO_DEBUG is set", function()
    with_loop(function(loop)
      assert.equal(env_debug(), loop:get_debug())
    end)
  end)

  it("LUA_ASYNCIO_DEBUG=1 turns it on for new loops", function()
    -- a child interpreter (this same executable) with the variable set
    local exe = "/proc/" .. helper.pid() .. "/exe"
    local code = [[local a = require 'asyncio' local l = a.new_event_loop() ]]
      .. [[io.write(tostring(l:get_debug())) l:close()]]
    local function child(value)
      local cmd = ("LUA_ASYNCIO_DEBUG=%s %s -e %q 2>&1"):format(value, exe, code)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      return out
    end
    assert.equal("true", child("1"))
    assert.equal("false", child("0"))
  end)

  it("asyncio.run(main, {debug = true}) turns it on", function()
    local on = asyncio.run(function()
      return asyncio.get_running_loop():get_debug()
    end, { debug = true })
    assert.is_true(on)
  end)

  it("logs callbacks slower than slow_callback_duration", function()
    local records = helper.capture_log(function(records)
      with_loop(function(loop)
        loop:set_debug(true)
        loop.slow_callback_duration = 0.02
        loop:call_soon(function()
          helper.busy(0.05)
        end)
        loop:call_soon(function() end) -- fast: not logged
        loop:call_later(0.001, function()
          helper.busy(0.05)
        end)
        loop:call_later(0.01, loop.stop, loop)
        loop:run_forever()
      end)
      return records
    end)
    local slow = helper.grep(records, "took")
    assert.equal(2, #slow)
    for _, r in ipairs(slow) do
      assert.equal("warning", r.level)
      assert.matches("Executing", r.msg)
      local secs = tonumber(r.msg:match("took ([%d.]+) seconds"))
      assert.is_not_nil(secs, r.msg)
      assert.is_true(secs >= 0.04 and secs < 5, r.msg)
    end
  end)

  it("logs slow done callbacks", function()
    local records = helper.capture_log(function(records)
      with_loop(function(loop)
        loop:set_debug(true)
        loop.slow_callback_duration = 0.02
        local f = loop:create_future()
        f:add_done_callback(function()
          helper.busy(0.04)
        end)
        f:set_result()
        loop:run_once()
      end)
      return records
    end)
    assert.equal(1, #helper.grep(records, "took"))
  end)

  it("logs slow task steps", function()
    local records = helper.capture_log(function(records)
      with_loop(function(loop)
        loop:set_debug(true)
        loop.slow_callback_duration = 0.02
        loop:run_until_complete(function()
          helper.busy(0.04)
          asyncio.sleep(0)
        end)
      end)
      return records
    end)
    assert.equal(1, #helper.grep(records, "took"))
  end)

  it("does not log slow callbacks when debug is off", function()
    local records = helper.capture_log(function(records)
      with_loop(function(loop)
        loop:set_debug(false)
        loop.slow_callback_duration = 0.001
        loop:call_soon(function()
          helper.busy(0.01)
        end)
        loop:run_once()
      end)
      return records
    end)
    assert.equal(0, #helper.grep(records, "took"))
  end)

  it("does not log callbacks faster than slow_callback_duration", function()
    local records = helper.capture_log(function(records)
      with_loop(function(loop)
        loop:set_debug(true)
        assert.equal(0.1, loop.slow_callback_duration)
        for _ = 1, 10 do
          loop:call_soon(function() end)
        end
        loop:run_once()
      end)
      return records
    end)
    assert.equal(0, #helper.grep(records, "took"))
  end)

  it("an exception never retrieved is reported with where the future was created", function()
    with_loop(function(loop)
      loop:set_debug(true)
      local contexts = {}
      loop:set_exception_handler(function(_, context)
        contexts[#contexts + 1] = context
      end)
      local exc = asyncio.ValueError("debug unretrieved")
      local line
      do
        line = debug.getinfo(1, "l").currentline + 1
        local f = loop:create_future()
        f:set_exception(exc)
      end
      helper.gc()
      local found
      for _, c in ipairs(contexts) do
        if c.exception == exc then
          found = c
        end
      end
      assert.is_not_nil(found)
      assert.is_string(found.source_traceback)
      assert.matches("debug_spec.lua:" .. line, found.source_traceback, 1, true)
    end)
  end)

  it("the logged report of a never retrieved exception shows the creation traceback", function()
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(true)
      local line
      do
        line = debug.getinfo(1, "l").currentline + 1
        local t = loop:create_task(function()
          error(asyncio.ValueError("zyzzyva"))
        end)
        loop:run_once()
        assert.is_true(t:done())
      end
      loop:close()
      helper.gc()
      records.line = line
      return records
    end)
    local found = helper.grep(records, "zyzzyva")
    assert.equal(1, #found)
    assert.matches("never retrieved", found[1].msg)
    assert.matches("debug_spec.lua:" .. records.line, found[1].msg, 1, true)
  end)

  it("a task collected while pending is reported", function()
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(true)
      local name
      do
        local fut = loop:create_future()
        local t = loop:create_task(function()
          fut:await()
        end)
        name = t:get_name()
        loop:run_once()
        assert.is_false(t:done())
      end
      loop:close()
      helper.gc()
      records.name = name
      return records
    end)
    local found = helper.grep(records, "destroyed but it is pending")
    assert.equal(1, #found)
    assert.equal("error", found[1].level)
    assert.matches(records.name, found[1].msg, 1, true)
  end)

  it("a task that finished is not reported when collected", function()
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(true)
      do
        local t = loop:create_task(function() end)
        loop:run_until_complete(t)
      end
      loop:close()
      helper.gc()
      return records
    end)
    assert.equal(0, #helper.grep(records, "destroyed but it is pending"))
  end)

  it("a yielding API misused from a callback reaches the exception handler", function()
    with_loop(function(loop)
      loop:set_debug(true)
      local got
      loop:set_exception_handler(function(_, context)
        got = context
      end)
      loop:call_soon(function()
        asyncio.sleep(0)
      end)
      loop:run_once()
      assert.is_not_nil(got)
      assert.is_true(asyncio.isinstance(got.exception, asyncio.RuntimeError))
      assert.matches("outside a task", got.exception.message)
    end)
  end)

  it("the report of a pending task destroyed has Python's words and where it was made", function()
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(true)
      do
        records.line = debug.getinfo(1, "l").currentline + 1
        local t = loop:create_task(function()
          loop:create_future():await()
        end)
        t:set_name("forgotten")
        loop:run_once()
      end
      loop:close()
      helper.gc()
      return records
    end)
    local found = helper.grep(records, "destroyed but it is pending")
    assert.equal(1, #found)
    assert.matches("^Task was destroyed but it is pending!\ntask: <Task pending name='forgotten'>", found[1].msg)
    assert.matches("debug_spec.lua:" .. records.line, found[1].msg, 1, true)
  end)
end)

describe("debug mode: resources never closed", function()
  local function serve_and_forget(on)
    return helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(on)
      asyncio.set_event_loop(loop)
      loop:run_until_complete(function()
        local server = asyncio.start_server(function() end, "127.0.0.1", 0)
        asyncio.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
        asyncio.sleep(0.01)
      end)
      loop:close()
      asyncio.set_event_loop(nil)
      return records
    end)
  end

  it("servers and transports still open when the loop closes are named with their origin", function()
    local records = helper.capture_log(function(records)
      local loop = helper.new_loop()
      loop:set_debug(true)
      asyncio.set_event_loop(loop)
      loop:run_until_complete(function()
        records.server_line = debug.getinfo(1, "l").currentline + 1
        local server = asyncio.start_server(function() end, "127.0.0.1", 0)
        records.client_line = debug.getinfo(1, "l").currentline + 1
        asyncio.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
        asyncio.sleep(0.01)
        local srv2 = asyncio.start_server(function() end, "127.0.0.1", 0)
        srv2:close() -- closed: not reported
      end)
      loop:close()
      asyncio.set_event_loop(nil)
      return records
    end)
    local unclosed = helper.grep(records, "unclosed")
    local servers = helper.grep(unclosed, "unclosed server <TCP server>")
    assert.equal(1, #servers)
    assert.equal("warning", servers[1].level)
    assert.matches("created at .*debug_spec.lua:" .. records.server_line .. "$", servers[1].msg)
    local transports = helper.grep(unclosed, "unclosed transport <TCP transport>")
    assert.equal(2, #transports) -- the client's and the server's end
    local client = helper.grep(transports, "debug_spec.lua:" .. records.client_line)
    assert.equal(1, #client)
    local accepted = helper.grep(transports, "a connection of the server made at")
    assert.equal(1, #accepted)
    assert.matches("debug_spec.lua:" .. records.server_line, accepted[1].msg, 1, true)
    assert.equal(3, #unclosed)
  end)

  it("nothing is reported outside debug mode, and everything is closed all the same", function()
    local records = serve_and_forget(false)
    assert.equal(0, #helper.grep(records, "unclosed"))
  end)

  it("a loop never closed is reported when the state goes, with where it was made", function()
    local exe = "/proc/" .. helper.pid() .. "/exe"
    local code = "local asyncio = require 'asyncio'\n"
      .. "asyncio.logger.set_handler(function(level, msg) io.stdout:write(level, ' ', msg, '\\n') end)\n"
      .. "local loop = asyncio.new_event_loop()\n"
      .. "local closed = asyncio.new_event_loop() closed:close()\n"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(code)
    f:close()
    local p = assert(io.popen(("LUA_ASYNCIO_DEBUG=1 timeout 10 %s %s 2>&1"):format(exe, path)))
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.matches("warning unclosed event loop <Loop running=false closed=false debug=true> created at [^\n]*:3\n", out)
    local _, n = out:gsub("unclosed", "")
    assert.equal(1, n)
  end)
end)

describe("non-thread-safe loop methods", function()
  it("work from the loop's own thread, running or not", function()
    with_loop(function(loop)
      loop:call_soon(function() end)
      loop:call_later(0, function() end)
      loop:call_at(loop:time(), function() end)
      loop:create_future()
      asyncio.Future(loop)
      local t = loop:create_task(function()
        loop:call_soon(function() end)
        loop:create_future()
        asyncio.create_task(function() end)
      end)
      loop:run_until_complete(t)
    end)
  end)
  -- from another OS thread: test/thread_check.c (a Lua state can only be
  -- entered by one thread at a time, which a spec cannot arrange)
end)

