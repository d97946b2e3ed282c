-- Error objects, asyncio.isinstance, plain Lua errors through futures, bad
-- arguments to every function, and yielding APIs used outside a task.
local asyncio = require "asyncio"
local helper = require "helper"

local run, with_loop = helper.run, helper.with_loop

local CLASSES = {
  "CancelledError", "TimeoutError", "InvalidStateError", "IncompleteReadError",
  "LimitOverrunError", "QueueEmpty", "QueueFull", "QueueShutDown", "BrokenBarrierError",
  "SendfileNotAvailableError", "ExceptionGroup", "ValueError", "RuntimeError", "OSError",
  "ConnectionError", "ConnectionRefusedError", "ConnectionResetError",
  "ConnectionAbortedError", "BrokenPipeError",
}

describe("error classes", function()
  it("every class of the API exists and builds instances", function()
    for _, name in ipairs(CLASSES) do
      local cls = asyncio[name]
      assert.is_table(cls, name)
      local e = cls("some message")
      assert.is_true(asyncio.isinstance(e, cls), name)
      assert.equal("some message", e.message)
      assert.equal(name .. ": some message", tostring(e))
      assert.is_string(e.traceback)
      assert.equal(cls, getmetatable(e))
    end
  end)

  it("tostring of an error without a message is the class name", function()
    assert.equal("ValueError", tostring(asyncio.ValueError()))
    assert.equal("CancelledError", tostring(asyncio.CancelledError()))
    assert.equal("", asyncio.ValueError().message)
  end)

  it("a non-string message is converted with tostring", function()
    local e = asyncio.ValueError(42)
    assert.equal("42", e.message)
    assert.equal("ValueError: 42", tostring(e))
  end)

  it("tostring of a class names it", function()
    assert.matches("ValueError", tostring(asyncio.ValueError))
    assert.matches("ConnectionRefusedError", tostring(asyncio.ConnectionRefusedError))
  end)

  it("Class(message, fields) copies the fields", function()
    local e = asyncio.ConnectionRefusedError("connect failed", {
      errno = "ECONNREFUSED",
      strerror = "connection refused",
    })
    assert.equal("ECONNREFUSED", e.errno)
    assert.equal("connection refused", e.strerror)
    assert.equal("connect failed", e.message)
    local ir = asyncio.IncompleteReadError("short", { partial = "ab", expected = 5 })
    assert.equal("ab", ir.partial)
    assert.equal(5, ir.expected)
  end)

  it("fields must be a table", function()
    local ok, e = pcall(function()
      return asyncio.ValueError("m", 1)
    end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'ValueError'", tostring(e))
  end)

  it("traceback records where the error was built", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local e = asyncio.RuntimeError("here")
    assert.matches("errors_spec.lua:" .. line, e.traceback, 1, true)
  end)

  it("traceback names frames from their call sites and shortens a deep stack", function()
    local e, frames
    local function build()
      frames = 0
      while debug.getinfo(frames + 2, "l") do frames = frames + 1 end -- below build
      e = asyncio.ValueError("deep")
    end
    local function rec(n) if n == 0 then build() else rec(n - 1) end return n end
    rec(40)
    local lines = {}
    for l in e.traceback:gmatch("\n\t([^\n]*)") do lines[#lines + 1] = l end
    assert.equal("stack traceback:", e.traceback:match("^[^\n]*"))
    assert.matches("in upvalue 'build'$", lines[1])
    assert.matches("in upvalue 'rec'$", lines[2])
    -- 10 frames, the gap, the last 11: the gap counts every frame it hides
    assert.equal(22, #lines)
    assert.equal(("...\t(skipping %d levels)"):format(frames + 1 - 21), lines[11])
  end)

  it("error() raises the object itself", function()
    local obj = asyncio.ValueError("bad")
    local ok, e = pcall(error, obj)
    assert.is_false(ok)
    assert.equal(obj, e)
    ok, e = pcall(function()
      error(asyncio.TimeoutError("slow"))
    end)
    assert.is_false(ok)
    assert.is_true(asyncio.isinstance(e, asyncio.TimeoutError))
    assert.equal("TimeoutError: slow", tostring(e))
  end)
end)

describe("asyncio.isinstance", function()
  local function is(name, parent)
    return asyncio.isinstance(asyncio[name]("x"), asyncio[parent])
  end

  it("follows the class hierarchy", function()
    assert.is_true(is("ConnectionRefusedError", "ConnectionRefusedError"))
    assert.is_true(is("ConnectionRefusedError", "ConnectionError"))
    assert.is_true(is("ConnectionRefusedError", "OSError"))
    for _, name in ipairs({ "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError" }) do
      assert.is_true(is(name, "ConnectionError"), name)
      assert.is_true(is(name, "OSError"), name)
    end
    assert.is_true(is("ConnectionError", "OSError"))
    assert.is_true(is("TimeoutError", "OSError")) -- as in Python >= 3.11
    assert.is_true(is("SendfileNotAvailableError", "RuntimeError"))
    assert.is_true(is("BrokenBarrierError", "RuntimeError"))
  end)

  it("is false for unrelated classes and parents of the class", function()
    assert.is_false(is("OSError", "ConnectionError"))
    assert.is_false(is("ConnectionError", "ConnectionRefusedError"))
    assert.is_false(is("ConnectionRefusedError", "ConnectionResetError"))
    assert.is_false(is("ValueError", "RuntimeError"))
    assert.is_false(is("RuntimeError", "ValueError"))
    assert.is_false(is("TimeoutError", "CancelledError"))
    assert.is_false(is("QueueEmpty", "QueueFull"))
  end)

  it("CancelledError is not an Exception, the others are", function()
    assert.is_table(asyncio.Exception)
    assert.is_false(is("CancelledError", "Exception"))
    for _, name in ipairs(CLASSES) do
      if name ~= "CancelledError" then
        assert.is_true(is(name, "Exception"), name)
      end
    end
  end)

  it("is false for strings, plain tables, nil and look-alikes", function()
    for _, v in ipairs({ "ValueError: x", 1, true, {}, { message = "x" }, print }) do
      assert.is_false(asyncio.isinstance(v, asyncio.ValueError))
    end
    assert.is_false(asyncio.isinstance(nil, asyncio.ValueError))
    local fake = setmetatable({ message = "x" }, { __name = "ValueError" })
    assert.is_false(asyncio.isinstance(fake, asyncio.ValueError))
    local fake2 = setmetatable({}, { __index = asyncio.ValueError })
    assert.is_false(asyncio.isinstance(fake2, asyncio.ValueError))
  end)

  it("errors raised by the runtime are error objects", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local ok, e = pcall(f.result, f)
      assert.is_false(ok)
      assert.is_true(asyncio.isinstance(e, asyncio.InvalidStateError))
      assert.matches("^InvalidStateError: ", tostring(e))
      assert.is_string(e.traceback)
      f:cancel()
      ok, e = pcall(f.result, f)
      assert.is_true(asyncio.isinstance(e, asyncio.CancelledError))
      assert.matches("^CancelledError", tostring(e))
    end)
  end)
end)

describe("plain Lua errors", function()
  it("strings, tables and error objects travel through tasks unchanged", function()
    run(function()
      local values = { "plain", { code = 1 }, asyncio.ValueError("v"), 42, false }
      for i, v in ipairs(values) do
        local t = asyncio.create_task(function()
          asyncio.sleep(0)
          error(v, 0)
        end)
        local ok, e = pcall(t.await, t)
        assert.is_false(ok, "value " .. i)
        assert.equal(v, e)
        assert.equal(v, t:exception())
      end
    end)
  end)

  it("an error with position info keeps it", function()
    run(function()
      local line
      local t = asyncio.create_task(function()
        line = debug.getinfo(1, "l").currentline + 1
        error("where am I")
      end)
      local _, e = pcall(t.await, t)
      assert.equal("spec/errors_spec.lua:" .. line .. ": where am I", e:match("spec/errors_spec.lua:.*"))
    end)
  end)

  it("propagate unchanged through asyncio.run", function()
    local tbl = {}
    local ok, e = pcall(asyncio.run, function()
      error(tbl)
    end)
    assert.is_false(ok)
    assert.equal(tbl, e)
  end)
end)

describe("yielding APIs outside a task", function()
  local function runtime_error(e, pattern)
    assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), "got " .. tostring(e))
    if pattern then
      assert.matches(pattern, e.message)
    end
  end

  it("asyncio.sleep without a running loop", function()
    local ok, e = pcall(asyncio.sleep, 0)
    assert.is_false(ok)
    runtime_error(e, "outside a task")
  end)

  it("asyncio.sleep and fut:await() in a callback", function()
    with_loop(function(loop)
      local errs = {}
      local f = loop:create_future()
      loop:call_soon(function()
        errs[1] = select(2, pcall(asyncio.sleep, 0))
        errs[2] = select(2, pcall(f.await, f))
      end)
      loop:run_once()
      runtime_error(errs[1], "outside a task")
      runtime_error(errs[2], "outside a task")
    end)
  end)

  it("an uncaught one in a callback goes to the exception handler", function()
    with_loop(function(loop)
      local got
      loop:set_exception_handler(function(_, context)
        got = context.exception
      end)
      loop:call_soon(function()
        asyncio.sleep(1)
      end)
      loop:run_once()
      runtime_error(got)
    end)
  end)

  it("from a plain coroutine inside a task, when it is resumed after the request", function()
    run(function()
      local co = coroutine.wrap(function()
        asyncio.sleep(0)
      end)
      co() -- the request for asyncio.coroutine comes back as a yielded value
      local ok, e = pcall(co)
      assert.is_false(ok)
      runtime_error(e)
      asyncio.sleep(0) -- the task itself is fine
    end)
  end)

  it("across a C function that cannot yield", function()
    run(function()
      local ok, e = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        asyncio.sleep(0)
        return a < b
      end)
      assert.is_false(ok)
      runtime_error(e)
    end)
  end)

  it("asyncio.run inside a running loop", function()
    run(function()
      local ran = false
      local ok, e = pcall(asyncio.run, function()
        ran = true
      end)
      assert.is_false(ok)
      runtime_error(e)
      assert.is_false(ran)
    end)
  end)
end)

describe("bad arguments", function()
  -- Each case: function name, argument number, and a call. The error must
  -- be a Lua error naming the function and the argument, as luaL_argerror
  -- words it; with method-call syntax the self argument is not counted.
  local function cases(loop)
    local f = loop:create_future()
    local t = loop:create_task(function() end)
    local h = loop:call_soon(function() end)
    local th = loop:call_later(10, function() end)
    local notloop = f
    return {
      -- Loop methods, bad self
      { "run_until_complete", 1, function() loop.run_until_complete(notloop, f) end },
      { "run_forever", 1, function() loop.run_forever(nil) end },
      { "run_once", 1, function() loop.run_once({}) end },
      { "stop", 1, function() loop.stop("x") end },
      { "close", 1, function() loop.close(1) end },
      { "is_running", 1, function() loop.is_running(t) end },
      { "is_closed", 1, function() loop.is_closed(h) end },
      { "time", 1, function() loop.time(true) end },
      { "call_soon", 1, function() loop.call_soon(nil, print) end },
      { "create_future", 1, function() loop.create_future(1) end },
      { "get_debug", 1, function() loop.get_debug(print) end },
      { "backend_fd", 1, function() loop.backend_fd("loop") end },
      -- Loop methods, bad arguments
      { "run_until_complete", 1, function() loop:run_until_complete(42) end },
      { "run_until_complete", 1, function() loop:run_until_complete() end },
      { "run_once", 1, function() loop:run_once("soon") end },
      { "run_once", 1, function() loop:run_once(-1) end },
      { "call_soon", 1, function() loop:call_soon(42) end },
      { "call_soon", 1, function() loop:call_soon() end },
      { "call_later", 1, function() loop:call_later("x", print) end },
      { "call_later", 2, function() loop:call_later(1, "not callable") end },
      { "call_at", 1, function() loop:call_at(nil, print) end },
      { "call_at", 2, function() loop:call_at(1, {}) end },
      { "call_soon_threadsafe", 1, function() loop:call_soon_threadsafe(1) end },
      { "create_task", 1, function() loop:create_task("f") end },
      { "set_exception_handler", 1, function() loop:set_exception_handler(7) end },
      { "set_task_factory", 1, function() loop:set_task_factory("factory") end },
      { "default_exception_handler", 1, function() loop:default_exception_handler("ctx") end },
      { "call_exception_handler", 1, function() loop:call_exception_handler(7) end },
      { "add_signal_handler", 1, function() loop:add_signal_handler("SIGNOPE", print) end },
      { "add_signal_handler", 1, function() loop:add_signal_handler({}, print) end },
      { "add_signal_handler", 2, function() loop:add_signal_handler("SIGINT", 5) end },
      { "remove_signal_handler", 1, function() loop:remove_signal_handler({}) end },
      -- Future methods
      { "result", 1, function() f.result(loop) end },
      { "exception", 1, function() f.exception(1) end },
      { "set_result", 1, function() f.set_result(h) end },
      { "set_exception", 1, function() f:set_exception() end },
      { "done", 1, function() f.done({}) end },
      { "cancelled", 1, function() f.cancelled() end },
      { "cancel", 1, function() f:cancel({}) end },
      { "add_done_callback", 1, function() f:add_done_callback(1) end },
      { "add_done_callback", 1, function() f:add_done_callback() end },
      { "remove_done_callback", 1, function() f:remove_done_callback() end },
      { "get_loop", 1, function() f.get_loop("x") end },
      { "await", 1, function() f.await(1) end },
      -- Task methods
      { "get_name", 1, function() t.get_name(f) end },
      { "set_name", 1, function() t:set_name() end },
      { "get_coro", 1, function() t.get_coro(f) end },
      { "cancel", 1, function() t:cancel({}) end },
      { "cancelling", 1, function() t.cancelling(f) end },
      { "uncancel", 1, function() t.uncancel(1) end },
      { "get_stack", 1, function() t.get_stack(f) end },
      { "print_stack", 1, function() t.print_stack(f) end },
      -- Handle methods
      { "cancel", 1, function() h.cancel(f) end },
      { "cancelled", 1, function() h.cancelled(1) end },
      { "get_loop", 1, function() h.get_loop(nil) end },
      { "when", 1, function() th.when(h) end },
      -- module functions
      { "sleep", 1, function() asyncio.sleep("x") end },
      { "sleep", 1, function() asyncio.sleep() end },
      { "sleep", 1, function() asyncio.sleep(0 / 0) end },
      { "create_task", 1, function() asyncio.create_task(1) end },
      { "current_task", 1, function() asyncio.current_task(1) end },
      { "all_tasks", 1, function() asyncio.all_tasks("loop") end },
      { "set_event_loop", 1, function() asyncio.set_event_loop(f) end },
      { "run", 1, function() asyncio.run(1) end },
      { "run", 2, function() asyncio.run(print, "opts") end },
      { "Future", 1, function() asyncio.Future(1) end },
      { "Task", 1, function() asyncio.Task(1, print) end },
      { "Task", 2, function() asyncio.Task(loop, 1) end },
      { "eager_task_factory", 1, function() asyncio.eager_task_factory(1, print) end },
      { "eager_task_factory", 2, function() asyncio.eager_task_factory(loop, 1) end },
      { "set_handler", 1, function() asyncio.logger.set_handler(1) end },
      { "set_level", 1, function() asyncio.logger.set_level("loud") end },
    }
  end

  it("raise a Lua error naming the function and the argument", function()
    with_loop(function(loop)
      local list = cases(loop)
      assert.is_true(#list > 60)
      for i, c in ipairs(list) do
        local name, argn, fn = c[1], c[2], c[3]
        local ok, e = pcall(fn)
        assert.is_false(ok, ("case %d (%s) did not fail"):format(i, name))
        local msg = tostring(e)
        local pattern = ("bad argument #%d to '[%%w_.]*%s'"):format(argn, name)
        assert.is_truthy(msg:find(pattern), ("case %d: %q does not match %q"):format(i, msg, pattern))
      end
      -- nothing above left the loop or its objects in a bad state
      assert.equal(7, loop:run_until_complete(function()
        asyncio.sleep(0)
        return 7
      end))
    end)
  end)

  it("are errors that name the argument for asyncio.run and stay out of the loop", function()
    local ok = pcall(asyncio.run, nil)
    assert.is_false(ok)
    local ok2, e = pcall(asyncio.get_running_loop)
    assert.is_false(ok2)
    assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError))
  end)

  it("odd values never crash the process", function()
    with_loop(function(loop)
      local f = loop:create_future()
      local weird = { nil, true, false, 0, -1, 1e308, -1e308, math.huge, -math.huge, 0 / 0,
                      math.maxinteger, math.mininteger, "", "\0", {}, function() end, coroutine.create(print),
                      f, loop, io.stdout, setmetatable({}, { __index = function() error("trap") end }) }
      local n = 0
      local function try(fn, ...)
        n = n + 1
        pcall(fn, ...)
      end
      for i = 1, 21 do
        local v = weird[i]
        try(loop.call_soon, loop, v)
        try(loop.run_once, loop, type(v) == "number" and v == v and v > 0 and 0 or v)
        try(f.cancel, f, v)
        try(f.remove_done_callback, f, v)
        try(asyncio.isfuture, v)
        try(asyncio.isinstance, v, v)
        try(asyncio.isinstance, asyncio.ValueError(), v)
        try(asyncio.Future, v)
        try(loop.set_debug, loop, v)
        try(loop.remove_signal_handler, loop, v)
        local t = loop:create_task(function() end)
        try(t.set_name, t, v)
        try(t.cancel, t, v)
        local h = loop:call_soon(function() end)
        try(h.cancel, v)
      end
      loop:set_debug(false)
      loop:call_soon(loop.stop, loop)
      loop:run_forever()
      assert.is_true(n > 200)
      -- the loop is still usable
      assert.equal("ok", loop:run_until_complete(function()
        asyncio.sleep(0.001)
        return "ok"
      end))
    end)
  end)
end)

describe("random arguments", function()
  -- Every function of the public tables and every method of each object,
  -- called with seeded random mixes of odd values, then the loop run and
  -- closed: errors are fine, a crash (or a sanitizer report) is not.
  it("never crash the process, whatever they are called with", function()
    local core = require "asyncio.core"
    local loop = asyncio.new_event_loop()
    local ok, err = pcall(function()
      local silent = function() end
      local values = { nil, true, false, 0, -1, 1e308, -1e308, 0 / 0, math.huge, -math.huge,
                       math.mininteger, math.maxinteger, "", "x", "SIGUSR2", {}, silent,
                       setmetatable({}, { __call = silent }), coroutine.create(silent), io.stdout }
      local objects = { loop, loop:create_future(), loop:create_task(silent),
                        loop:call_soon(silent), loop:call_later(100, silent) }
      for _, o in ipairs(objects) do values[#values + 1] = o end
      -- these would block, stop or replace what the rest of the suite runs on
      local skip = { run = true, run_forever = true, run_until_complete = true, run_once = true,
                     close = true, set_hooks = true, set_event_loop = true,
                     add_signal_handler = true }
      math.randomseed(7)
      local function pick() return values[math.random(#values + 1)] end
      local calls = 0
      -- loops made by the calls (new_event_loop...) are closed afterwards:
      -- an open loop keeps itself, and its descriptors, alive
      local made = {}
      local function keep(ok, ...)
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          if ok and v ~= loop and pcall(core.Loop.is_closed, v) then made[#made + 1] = v end
        end
      end
      for _, t in ipairs { asyncio, core, core.Loop, core.Future, core.Task, core.Handle, asyncio.coroutine } do
        for name, f in pairs(t) do
          if type(f) == "function" and not skip[name] then
            for _ = 1, 20 do
              local a, b, c = pick(), pick(), pick()
              keep(pcall(f, a, b, c))
              for _, o in ipairs(objects) do keep(pcall(f, o, a, b)) end
              calls = calls + 1 + #objects
            end
          end
        end
      end
      assert.is_true(calls > 10000)
      loop:run_once(0)
      loop:run_once(0)
      for _, l in ipairs(made) do pcall(l.close, l) end
    end)
    if not loop:is_running() then loop:close() end
    collectgarbage()
    assert(ok, err)
  end)
end)
