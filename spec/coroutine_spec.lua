-- User coroutines inside tasks: asyncio.coroutine lets a generator call
-- yielding APIs (the call suspends the whole task), the plain coroutine table
-- gets a clear error instead, and yields through pcall, xpcall and
-- metamethods work while a C boundary without continuation is refused.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.vrun
local assert_class = helper.assert_class
local C = asyncio.coroutine

describe("asyncio.coroutine", function()
  it("is a drop-in for the coroutine table", function()
    for _, name in ipairs { "create", "resume", "wrap", "status", "yield", "isyieldable", "running", "close" } do
      assert.is_function(C[name], name)
    end
    local gen = C.wrap(function(a)
      local b = C.yield(a + 1)
      return b * 2
    end)
    assert.equal(2, gen(1))
    assert.equal(10, gen(5))
    local co = C.create(function(x) return x, C.status(C.running()) end)
    assert.same({ true, 7, "running" }, { C.resume(co, 7) })
    assert.equal("dead", C.status(co))
  end)

  it("lets a generator await inside a task and yield its own values in between", function()
    local got = run(function()
      local loop = asyncio.get_running_loop()
      local gen = C.wrap(function(n)
        for i = 1, n do
          asyncio.sleep(0.001)
          local f = loop:create_future()
          loop:call_soon(f.set_result, f, i * 10)
          C.yield(f:await())
        end
        return "done"
      end)
      local out = {}
      for _ = 1, 4 do out[#out + 1] = gen(3) end
      return out
    end)
    assert.same({ 10, 20, 30, "done" }, got)
  end)

  it("suspends the whole task: other tasks run while the generator waits", function()
    local order = run(function()
      local order = {}
      local other = asyncio.create_task(function() order[#order + 1] = "other" end)
      local gen = C.wrap(function()
        asyncio.sleep(0.01)
        order[#order + 1] = "generator"
      end)
      gen()
      other:await()
      return order
    end)
    assert.same({ "other", "generator" }, order)
  end)

  it("works through several levels of coroutines", function()
    local v = run(function()
      local outer = C.wrap(function()
        local inner = C.wrap(function()
          asyncio.sleep(0)
          return "inner"
        end)
        return inner() .. "+outer"
      end)
      return outer()
    end)
    assert.equal("inner+outer", v)
  end)

  it("passes errors of the awaited call into the generator, where pcall can catch them", function()
    local v = run(function()
      local f = asyncio.get_running_loop():create_future()
      f:set_exception(asyncio.ValueError("bad"))
      local gen = C.wrap(function()
        local ok, e = pcall(f.await, f)
        return ok, e
      end)
      local ok, e = gen()
      assert.is_false(ok)
      assert_class(asyncio.ValueError, e)
      return true
    end)
    assert.is_true(v)
  end)

  it("delivers a cancellation of the task inside the generator", function()
    local msg = run(function()
      local t = asyncio.create_task(function()
        local g = C.wrap(function()
          local ok, e = pcall(asyncio.sleep, 10)
          assert.is_false(ok)
          return e
        end)
        return g()
      end)
      asyncio.sleep(0.001)
      t:cancel("stop")
      return t:await()
    end)
    assert_class(asyncio.CancelledError, msg)
    assert.equal("stop", msg.message)
  end)

  it("wrap raises the generator's error and closes it", function()
    run(function()
      local closed = false
      local gen = C.wrap(function()
        local _ <close> = setmetatable({}, { __close = function() closed = true end })
        asyncio.sleep(0)
        error("boom")
      end)
      local ok, e = pcall(gen)
      assert.is_false(ok)
      assert.matches("boom", e)
      assert.is_true(closed)
    end)
  end)
end)

describe("the plain coroutine table", function()
  it("is refused with a clear error when its coroutine awaits", function()
    run(function()
      local co = coroutine.create(function() asyncio.sleep(0) end)
      local ok, first = coroutine.resume(co)
      assert.is_true(ok) -- the request to the runtime comes back as a yielded value
      assert.is_not_nil(first)
      local ok2, err = coroutine.resume(co, "anything")
      assert.is_false(ok2)
      assert_class(asyncio.RuntimeError, err)
      assert.matches("asyncio.coroutine", err.message)
    end)
  end)

  it("still works for generators that do not await", function()
    local v = run(function()
      local gen = coroutine.wrap(function()
        coroutine.yield(1)
        coroutine.yield(2)
      end)
      return gen() + gen()
    end)
    assert.equal(3, v)
  end)
end)

describe("yielding where Lua allows it", function()
  it("works through pcall and xpcall", function()
    local v = run(function()
      local ok, a = pcall(asyncio.sleep, 0.001, "p")
      local ok2, b = xpcall(asyncio.sleep, debug.traceback, 0.001, "x")
      assert.is_true(ok and ok2)
      return a .. b
    end)
    assert.equal("px", v)
  end)

  it("works through metamethods called from Lua", function()
    local v = run(function()
      local t = setmetatable({}, {
        __index = function(_, k)
          asyncio.sleep(0)
          return k .. "!"
        end,
        __add = function()
          asyncio.sleep(0)
          return 42
        end,
      })
      return t.key, t + 1
    end)
    assert.equal("key!", v)
  end)

  it("is refused with a clear error across a C function without continuation", function()
    run(function()
      local ok, e = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        asyncio.sleep(0)
        return a < b
      end)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("table.sort", e.message)
    end)
  end)

  it("a task body yielding with plain coroutine.yield fails with RuntimeError", function()
    run(function()
      local t = asyncio.create_task(function() coroutine.yield("x") end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert_class(asyncio.RuntimeError, e)
    end)
  end)
end)
