-- The executor: to_thread, run_in_executor, ThreadPoolExecutor. Jobs run in
-- worker threads in Lua states of their own, so a job function may use no
-- upvalue of this file: what it needs it requires (thread_sleep blocks its
-- thread) or gets as arguments.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run
local TPE = asyncio.ThreadPoolExecutor

-- threads of this process
local function nthreads()
  local ls = assert(io.popen("ls /proc/" .. helper.pid() .. "/task"))
  local n = 0
  for _ in ls:read("a"):gmatch("%d+") do n = n + 1 end
  ls:close()
  return n
end

local function ncpu()
  local p = assert(io.popen("nproc"))
  local n = tonumber(p:read("a"))
  p:close()
  return n or 1
end

local function sleeper(d, ...)
  require("thread_sleep")(d)
  return ...
end

describe("to_thread", function()
  it("returns the function's values, types kept apart", function()
    run(function()
      local r = table.pack(asyncio.to_thread(function(...) return ... end,
        1, 1.0, -0.0, math.maxinteger, "bin\0ary", true, false, nil, 2 ^ 53))
      assert.equal(9, r.n)
      assert.equal("integer", math.type(r[1]))
      assert.equal("float", math.type(r[2]))
      assert.equal(math.maxinteger, r[4])
      assert.equal("bin\0ary", r[5])
      assert.is_true(r[6])
      assert.is_false(r[7])
      assert.is_nil(r[8])
      assert.equal(2 ^ 53, r[9])
      assert.equal(0, select("#", asyncio.to_thread(function() end)))
    end)
  end)

  it("copies nested tables, shared references and cycles both ways", function()
    run(function()
      local shared = { "s" }
      local t = { a = { b = { c = "deep" } }, list = { 1, 2, 3 }, x = shared, y = shared, [1.5] = "f", [true] = 1 }
      t.self = t
      local out = asyncio.to_thread(function(v)
        assert(v.self == v and v.x == v.y)
        v.added = { back = v }
        return v
      end, t)
      assert.are_not.equal(t, out)
      assert.equal("deep", out.a.b.c)
      assert.same({ 1, 2, 3 }, out.list)
      assert.equal(out, out.self)
      assert.equal(out.x, out.y)
      assert.equal(out, out.added.back)
      assert.equal("f", out[1.5])
      assert.equal(1, out[true])
      assert.is_nil(t.added) -- a copy went, not the table
    end)
  end)

  it("refuses what does not copy before the job starts, naming the place", function()
    run(function()
      local up = 1
      local function upvalued() return up end
      assert.equal("to_thread: argument 2 .opts.cb: function",
        helper.err_of(asyncio.to_thread, function() end, { opts = { cb = print } }))
      assert.matches("^to_thread: argument 1: function with upvalue 'up'",
        helper.err_of(asyncio.to_thread, upvalued))
      assert.matches("^to_thread: argument 1: C function", helper.err_of(asyncio.to_thread, print))
      assert.equal("to_thread: argument 3: thread",
        helper.err_of(asyncio.to_thread, function() end, 1, coroutine.create(print)))
      assert.equal("to_thread: argument 2 [2]: table with a metatable",
        helper.err_of(asyncio.to_thread, function() end, { 1, setmetatable({}, {}) }))
      assert.equal("to_thread: argument 2: userdata", helper.err_of(asyncio.to_thread, function() end, io.stdout))
      local ex = TPE { max_workers = 1 }
      assert.equal("submit: argument 2 .f: function", helper.err_of(ex.submit, ex, function() end, { f = print }))
      assert.equal("run_in_executor: argument 3: function",
        helper.err_of(asyncio.get_running_loop().run_in_executor, asyncio.get_running_loop(), ex, function() end, print))
      ex:shutdown()
    end)
  end)

  it("a result that does not copy is the future's error", function()
    run(function()
      local err = helper.err_of(asyncio.to_thread, function() return { x = print } end)
      helper.assert_class(asyncio.RuntimeError, err)
      assert.equal("to_thread: result 1 .x: function", err.message)
      assert.equal("to_thread: result 2: thread",
        helper.err_of(asyncio.to_thread, function() return 1, coroutine.create(print) end).message)
    end)
  end)

  it("raises outside a task", function()
    assert.matches("to_thread called outside a task", tostring(helper.err_of(asyncio.to_thread, function() end)))
    run(function()
      local loop = asyncio.get_running_loop()
      local done = loop:create_future()
      loop:call_soon(function()
        done:set_result(helper.err_of(asyncio.to_thread, function() end))
      end)
      local err = done:await()
      helper.assert_class(asyncio.RuntimeError, err)
      assert.matches("outside a task", err.message)
    end)
  end)
end)

describe("errors in the worker", function()
  it("a string error comes as a RuntimeError with the worker's traceback", function()
    run(function()
      local err = helper.err_of(asyncio.to_thread, function()
        local function deep() error("boom") end
        deep()
      end)
      helper.assert_class(asyncio.RuntimeError, err)
      assert.matches("^spec/executor_spec%.lua:%d+: boom$", err.message)
      assert.equal(err.message, err.value)
      assert.matches("stack traceback:", err.traceback)
      assert.matches("in %a* ?%a* ?'?deep'?", err.traceback)
      local num = helper.err_of(asyncio.to_thread, function() error(42) end)
      helper.assert_class(asyncio.RuntimeError, num)
      assert.equal(42, num.value)
    end)
  end)

  it("a table error is copied with the worker's traceback", function()
    run(function()
      local err = helper.err_of(asyncio.to_thread, function() error({ code = 7, nested = { "x" } }) end)
      assert.equal(7, err.code)
      assert.same({ "x" }, err.nested)
      assert.matches("stack traceback:", err.traceback)
      assert.matches("executor_spec%.lua", err.traceback)
      local own = helper.err_of(asyncio.to_thread, function() error({ traceback = "mine" }) end)
      assert.equal("mine", own.traceback)
    end)
  end)

  it("an asyncio error object is rebuilt: class, message, fields, worker traceback", function()
    run(function()
      local err = helper.err_of(asyncio.to_thread, function()
        local errors = require "asyncio.errors"
        local function inner() error(errors.ValueError("bad value", { field = 3, f = print })) end
        inner()
      end)
      helper.assert_class(asyncio.ValueError, err)
      assert.equal("bad value", err.message)
      assert.equal(3, err.field)
      assert.is_nil(err.f) -- did not copy: dropped
      assert.matches("in %a* ?%a* ?'?inner'?", err.traceback)
      assert.equal("ValueError: bad value", tostring(err))
    end)
  end)

  it("an error value that does not copy becomes its tostring", function()
    run(function()
      assert.equal("custom", helper.err_of(asyncio.to_thread, function()
        error(setmetatable({}, { __tostring = function() return "custom" end }))
      end).message)
      assert.matches("^function: ", helper.err_of(asyncio.to_thread, function() error(print) end).message)
    end)
  end)
end)

describe("ThreadPoolExecutor", function()
  it("keeps each worker's state: isolated from the loop's, kept between jobs", function()
    run(function()
      local ex = TPE { max_workers = 1 }
      ex:submit(function() WORKER_GLOBAL = "set" end):await()
      assert.is_nil(rawget(_G, "WORKER_GLOBAL"))
      assert.equal("set", ex:submit(function() return WORKER_GLOBAL end):await())
      ex:shutdown()
    end)
  end)

  it("runs the initializer once per worker, with initargs", function()
    run(function()
      local ex = TPE { max_workers = 2, initargs = { "tag", 5 },
        initializer = function(tag, n) INITS = (INITS or 0) + 1; TAG = tag .. n end }
      local futs = {}
      for i = 1, 6 do
        futs[i] = ex:submit(function(d) require("thread_sleep")(d); return INITS, TAG end, 0.05)
      end
      for i = 1, 6 do
        local inits, tag = futs[i]:await()
        assert.equal(1, inits)
        assert.equal("tag5", tag)
      end
      ex:shutdown()
    end)
  end)

  it("an initializer that fails breaks the pool", function()
    run(function()
      local ex = TPE { max_workers = 1, initializer = function() error("no init") end }
      local f = ex:submit(function() return 1 end)
      local err = helper.err_of(f.await, f)
      helper.assert_class(asyncio.BrokenThreadPool, err)
      assert.matches("initializer failed.*no init", err.message)
      assert.matches("stack traceback", err.traceback)
      helper.wait_until(function()
        return not pcall(ex.submit, ex, function() end)
      end)
      helper.assert_class(asyncio.BrokenThreadPool, helper.err_of(ex.submit, ex, function() end))
      ex:shutdown()
    end)
  end)

  it("a module is required once per worker, found on the loop state's package.path", function()
    local dir = helper.tmpdir()
    local f = assert(io.open(dir .. "/exec_counted.lua", "w"))
    f:write("LOADS = (LOADS or 0) + 1\nreturn { answer = 42 }\n")
    f:close()
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, err = pcall(run, function()
      local ex = TPE { max_workers = 1 }
      for _ = 1, 5 do
        local answer, loads = ex:submit(function() return require("exec_counted").answer, LOADS end):await()
        assert.equal(42, answer)
        assert.equal(1, loads)
      end
      ex:shutdown()
    end)
    package.path = saved
    os.remove(dir .. "/exec_counted.lua")
    os.remove(dir)
    assert(ok, err)
  end)

  it("honours max_workers", function()
    run(function()
      local before = nthreads()
      local ex = TPE { max_workers = 2 }
      local loop = asyncio.get_running_loop()
      local t0 = loop:time()
      local futs = {}
      for i = 1, 4 do futs[i] = ex:submit(sleeper, 0.2, i) end
      local peak = 0
      for i = 1, 4 do
        peak = math.max(peak, nthreads() - before)
        assert.equal(i, futs[i]:await())
      end
      local dt = loop:time() - t0
      assert.is_true(dt >= 0.39, "4 jobs of 0.2 s on 2 workers took " .. dt)
      assert.is_true(dt < 2, "took " .. dt)
      assert.is_true(peak <= 2, "threads: " .. peak)
      ex:shutdown()
    end)
  end)

  it("submit needs a running loop; after shutdown it raises", function()
    local ex = TPE()
    helper.assert_class(asyncio.RuntimeError, helper.err_of(ex.submit, ex, function() end))
    run(function()
      ex:shutdown()
      local err = helper.err_of(ex.submit, ex, function() end)
      helper.assert_class(asyncio.RuntimeError, err)
      assert.equal("cannot schedule new futures after shutdown", err.message)
    end)
  end)

  it("checks its options", function()
    assert.matches("max_workers", helper.err_of(TPE, { max_workers = 0 }))
    assert.matches("initializer", helper.err_of(TPE, { initializer = 1 }))
    assert.matches("table expected", helper.err_of(TPE, 3))
    assert.equal("initializer: argument 2: function",
      helper.err_of(TPE, { initializer = function() end, initargs = { print } }))
  end)

  it("shutdown with cancel_futures cancels the queued jobs", function()
    run(function()
      local ex = TPE { max_workers = 1 }
      local first = ex:submit(sleeper, 0.2, "first")
      local queued = { ex:submit(sleeper, 0, 2), ex:submit(sleeper, 0, 3) }
      asyncio.sleep(0.05)
      ex:shutdown { cancel_futures = true }
      assert.equal("first", first:await())
      for _, f in ipairs(queued) do assert.is_true(f:cancelled()) end
    end)
  end)

  it("shutdown(wait) outside a loop joins the threads; a loop closed under a running job drops it", function()
    local before = nthreads()
    local ex = TPE { max_workers = 2 }
    run(function()
      ex:submit(sleeper, 0.3)
      ex:submit(sleeper, 0.3)
      asyncio.sleep(0.05)
      assert.equal(before + 2, nthreads())
    end) -- the loop closes with both jobs running
    ex:shutdown()
    -- a worker is counted out just before its thread ends
    local deadline = os.time() + 3
    while nthreads() ~= before and os.time() < deadline do end
    assert.equal(before, nthreads())
  end)
end)

describe("asyncio.call_soon_threadsafe from a job", function()
  it("runs on the submitting loop, in order, before the job's result arrives", function()
    run(function()
      local loop = asyncio.get_running_loop()
      _G.CALLS = {} -- the callbacks' _ENV is the state's globals, not this file's
      local n = asyncio.to_thread(function(k)
        local aio = require "asyncio"
        for i = 1, k do
          aio.call_soon_threadsafe(function(j, t) CALLS[#CALLS + 1] = j * t.mul end, i, { mul = 10 })
        end
        return k
      end, 200)
      assert.equal(200, n)
      assert.equal(200, #_G.CALLS)
      for i = 1, 200 do assert.equal(i * 10, _G.CALLS[i]) end
      -- outside a job it is the running loop's
      local ran = asyncio.Event()
      asyncio.call_soon_threadsafe(function() ran:set() end)
      ran:wait()
      assert.is_true(loop:is_running())
      _G.CALLS = nil
    end)
  end)

  it("refuses what does not copy, in the worker; a callback's error goes to the exception handler", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local ctx
      loop:set_exception_handler(function(_, c) ctx = c end)
      local err = helper.err_of(asyncio.to_thread, function()
        local aio, up = require "asyncio", 1
        aio.call_soon_threadsafe(function() return up end)
      end)
      assert.matches("call_soon_threadsafe: argument 1: function with upvalue 'up'", tostring(err))
      err = helper.err_of(asyncio.to_thread, function() require("asyncio").call_soon_threadsafe(42) end)
      assert.matches("function expected", tostring(err))
      asyncio.to_thread(function() require("asyncio").call_soon_threadsafe(function() error("cb failed") end) end)
      assert.is_table(ctx)
      assert.matches("cb failed", tostring(ctx.exception))
      assert.equal("Exception in callback", ctx.message)
    end)
  end)

  it("after its loop closed a job gets RuntimeError; calls never run are freed", function()
    local ex = TPE { max_workers = 1 }
    run(function()
      ex:submit(function()
        local aio = require "asyncio"
        aio.call_soon_threadsafe(function() error("must not run") end) -- dropped with the loop
        require("thread_sleep")(0.2)
        LATE = select(2, pcall(aio.call_soon_threadsafe, function() end))
      end)
      asyncio.sleep(0.05)
    end) -- the loop closes with the job running and its first call not run
    run(function()
      local late = ex:submit(function() return tostring(LATE) end):await()
      assert.matches("RuntimeError: Event loop is closed", late)
    end)
    ex:shutdown()
  end)
end)

describe("cancellation", function()
  it("a queued job whose future is cancelled never runs", function()
    run(function()
      local ex = TPE { max_workers = 1 }
      local busy = ex:submit(sleeper, 0.1)
      local f = ex:submit(function() RAN = true end)
      assert.is_true(f:cancel())
      busy:await()
      assert.is_nil(ex:submit(function() return RAN end):await())
      ex:shutdown()
    end)
  end)

  it("a running job runs to its end, its result dropped", function()
    run(function()
      local ex = TPE { max_workers = 1 }
      local f = ex:submit(function() require("thread_sleep")(0.1); FINISHED = true; return 1 end)
      asyncio.sleep(0.03)
      assert.is_true(f:cancel())
      assert.is_true(f:cancelled())
      assert.is_true(ex:submit(function() return FINISHED end):await())
      assert.is_true(f:cancelled())
      ex:shutdown()
    end)
  end)

  it("cancelling the awaiting task cancels its job", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local ex = TPE { max_workers = 1 }
      loop:set_default_executor(ex)
      local busy = ex:submit(sleeper, 0.1)
      local t = asyncio.create_task(function() return asyncio.to_thread(function() RAN2 = true end) end)
      asyncio.sleep(0)
      t:cancel()
      helper.await_cancelled(t)
      busy:await()
      assert.is_nil(ex:submit(function() return RAN2 end):await())
    end)
  end)
end)

describe("the default executor", function()
  it("run_in_executor, set_default_executor; one default executor per loop", function()
    run(function()
      local loop = asyncio.get_running_loop()
      assert.equal(3, loop:run_in_executor(nil, function(a, b) return a + b end, 1, 2):await())
      local ex = TPE { max_workers = 1, initializer = function() MARK = "mine" end }
      assert.equal("mine", loop:run_in_executor(ex, function() return MARK end):await())
      loop:set_default_executor(ex)
      assert.equal("mine", asyncio.to_thread(function() return MARK end))
      assert.matches("ThreadPoolExecutor expected", helper.err_of(loop.set_default_executor, loop, {}))
    end)
    run(function()
      assert.is_nil(asyncio.to_thread(function() return MARK end))
    end)
  end)

  it("loops in worker threads have default executors of their own", function()
    run(function()
      local v = asyncio.to_thread(function(x)
        local aio = require "asyncio"
        return aio.run(function() return aio.to_thread(function(y) return y * 2 end, x) end)
      end, 21)
      assert.equal(42, v)
    end)
  end)

  it("shutdown_default_executor warns about a stuck job and does not block the loop", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local function stuck() require("thread_sleep")(0.8); return "late" end
      local line = debug.getinfo(stuck, "S").linedefined
      local t = asyncio.create_task(function() return asyncio.to_thread(stuck) end)
      asyncio.sleep(0.05)
      local ticks = 0
      local timer = loop:call_later(0, function() ticks = ticks + 1 end)
      local t0 = loop:time()
      local log = helper.capture_log(function(records)
        loop:shutdown_default_executor(0.2)
        return records
      end)
      local dt = loop:time() - t0
      timer:cancel()
      assert.is_true(dt >= 0.19 and dt < 0.7, "waited " .. dt)
      assert.equal(1, ticks)
      local found = helper.grep(log, "executor_spec.lua:" .. line)
      assert.equal(1, #found, "log: " .. (log[1] and log[1].msg or "none"))
      assert.equal("warning", found[1].level)
      assert.matches("still running %(for 0%.%d s%)", found[1].msg)
      assert.equal("late", t:await()) -- its result still arrives
      helper.assert_class(asyncio.RuntimeError, helper.err_of(asyncio.to_thread, function() end))
    end)
  end)

  it("asyncio.run waits for the default executor's jobs", function()
    local t0 = helper.now()
    local fut
    assert.equal("main", asyncio.run(function()
      fut = asyncio.get_running_loop():run_in_executor(nil, function() require("thread_sleep")(0.3); return 1 end)
      return "main"
    end))
    assert.is_true(helper.now() - t0 >= 0.29)
    assert.equal(1, fut:result())
  end)

  it("asyncio.run warns about a job still running after 5 s and returns", function()
    local before = nthreads()
    local t0 = helper.now()
    local log = helper.capture_log(function(records)
      asyncio.run(function()
        asyncio.get_running_loop():run_in_executor(nil, function() require("thread_sleep")(5.6) end)
      end)
      return records
    end)
    local dt = helper.now() - t0
    assert.is_true(dt >= 4.9 and dt < 5.5, "took " .. dt)
    assert.equal(1, #helper.grep(log, "still running"))
    -- the orphaned job ends, and its thread with it
    local deadline = os.time() + 4
    while nthreads() ~= before and os.time() < deadline do end
    assert.equal(before, nthreads())
  end)
end)

describe("load", function()
  it("10,000 jobs in a row leak no thread", function()
    run(function()
      -- a thread of an earlier test may still be ending: the count must not grow
      local before = nthreads()
      local ex = TPE { max_workers = 4 }
      local sum = 0
      for i = 1, 10000 do
        sum = sum + ex:submit(function(x) return x + 1 end, i):await()
        if i % 2500 == 0 then assert.is_true(nthreads() <= before + 4) end
      end
      assert.equal(10000 * 10001 / 2 + 10000, sum)
      ex:shutdown()
      helper.wait_until(function() return nthreads() <= before end)
    end, 60)
  end)

  it("runs CPU-bound jobs in parallel", function()
    if ncpu() < 2 then return end
    run(function()
      local ex = TPE { max_workers = 2 }
      -- Each job marks that it started, then computes until it sees the
      -- other's mark: both can only see each other if they run at the same
      -- time (no timing involved; the bound only stops a serial run).
      local function job(me, other, dir)
        local f = assert(io.open(dir .. "/" .. me, "w"))
        f:close()
        local s = 0
        for round = 1, 200000 do
          for i = 1, 1000 do s = (s * 31 + i) & 0xFFFFFFF end
          local seen = io.open(dir .. "/" .. other)
          if seen then
            seen:close()
            return round, s
          end
        end
        return nil, s
      end
      local dir = helper.tmpdir()
      local a = ex:submit(job, "a", "b", dir)
      local b = ex:submit(job, "b", "a", dir)
      assert.is_number(a:await(), "job a never saw job b running")
      assert.is_number(b:await(), "job b never saw job a running")
      os.remove(dir .. "/a")
      os.remove(dir .. "/b")
      os.remove(dir)
      ex:shutdown()
    end, 60)
  end)
end)
