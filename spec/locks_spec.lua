-- Lock, Event, Condition, Semaphore, BoundedSemaphore and Barrier (after
-- CPython's test_locks.py, cancellation races included).
local asyncio = require "asyncio"
local core = require "asyncio.core"
local locks = require "asyncio.locks"
local helper = require "helper"

after_each(helper.close_loops)

local run = helper.vrunner(5)
local sleep0, err_of, assert_class = helper.sleep0, helper.err_of, helper.assert_class
local await_cancelled, within = helper.await_cancelled, helper.within

-- awaits every task, whatever the outcome
local function settle(tasks)
  for _, t in ipairs(tasks) do pcall(t.await, t) end
end

local function spawn(n, fn)
  local tasks = {}
  for i = 1, n do tasks[i] = asyncio.create_task(fn, i) end
  return tasks
end

local function results(tasks)
  local out = {}
  for i, t in ipairs(tasks) do out[i] = t:await() end
  return out
end

describe("Lock", function()
  it("has a repr like Python's", function()
    run(function()
      local lock = locks.Lock()
      assert.equal("<Lock [unlocked]>", tostring(lock))
      lock:acquire()
      assert.equal("<Lock [locked]>", tostring(lock))
      spawn(2, function() lock:acquire() end)
      sleep0()
      assert.equal("<Lock [locked, waiters:2]>", tostring(lock))
      lock:release()
      sleep0()
      lock:release()
      sleep0()
      lock:release()
      assert.equal("<Lock [unlocked]>", tostring(lock))
    end)
  end)

  it("starts unlocked; acquire() locks and returns the lock as its guard", function()
    run(function()
      local lock = locks.Lock()
      assert.is_false(lock:locked())
      assert.equal(lock, lock:acquire())
      assert.is_true(lock:locked())
      lock:release()
      assert.is_false(lock:locked())
    end)
  end)

  it("wakes waiters in FIFO order, one per release", function()
    run(function()
      local lock = locks.Lock()
      local result = {}
      lock:acquire()
      local function c(i)
        if lock:acquire() then result[#result + 1] = i end
        return true
      end
      local t1 = asyncio.create_task(c, 1)
      local t2 = asyncio.create_task(c, 2)
      sleep0()
      assert.same({}, result)
      lock:release()
      sleep0()
      assert.same({ 1 }, result)
      sleep0()
      assert.same({ 1 }, result)
      local t3 = asyncio.create_task(c, 3)
      lock:release()
      sleep0()
      assert.same({ 1, 2 }, result)
      lock:release()
      sleep0()
      assert.same({ 1, 2, 3 }, result)
      for _, t in ipairs { t1, t2, t3 } do
        assert.is_true(t:done())
        assert.is_true(t:result())
      end
    end)
  end)

  it("a newcomer does not overtake a woken waiter", function()
    run(function()
      local lock = locks.Lock()
      local order = {}
      lock:acquire()
      local waiter = asyncio.create_task(function()
        lock:acquire()
        order[#order + 1] = "waiter"
        lock:release()
      end)
      sleep0()
      lock:release()
      assert.is_false(lock:locked())
      local newcomer = asyncio.create_task(function()
        lock:acquire()
        order[#order + 1] = "newcomer"
        lock:release()
      end)
      waiter:await()
      newcomer:await()
      assert.same({ "waiter", "newcomer" }, order)
    end)
  end)

  it("a cancelled acquire leaves no waiter behind", function()
    run(function()
      local lock = locks.Lock()
      lock:acquire()
      local t = asyncio.create_task(lock.acquire, lock)
      asyncio.get_running_loop():call_soon(function() t:cancel() end)
      await_cancelled(t)
      assert.equal("<Lock [locked]>", tostring(lock))
      lock:release()
      assert.is_false(lock:locked())
    end)
  end)

  it("cancel race: the waiter cancelled as the lock is released passes the wake-up on", function()
    -- A holds the lock, B and C wait; B is cancelled while A releases: C must get it.
    run(function()
      local lock = locks.Lock()
      local function lockit(blocker)
        local _ <close> = lock:acquire()
        if blocker then blocker:await() end
      end
      local fa = asyncio.get_running_loop():create_future()
      local ta = asyncio.create_task(lockit, fa)
      sleep0()
      assert.is_true(lock:locked())
      local tb = asyncio.create_task(lockit)
      sleep0()
      assert.equal("<Lock [locked, waiters:1]>", tostring(lock))
      local tc = asyncio.create_task(lockit)
      sleep0()
      assert.equal("<Lock [locked, waiters:2]>", tostring(lock))
      fa:set_result()
      tb:cancel()
      sleep0()
      assert.is_false(lock:locked())
      assert.is_true(ta:done())
      assert.is_true(tb:cancelled())
      tc:await()
      assert.is_false(lock:locked())
    end)
  end)

  it("cancel/release race: only one waiter takes the lock (bpo-32734)", function()
    run(function()
      local lock = locks.Lock()
      local lock_count, call_count = 0, 0
      local function lockit()
        call_count = call_count + 1
        lock:acquire()
        lock_count = lock_count + 1
      end
      lock:acquire()
      local t1 = asyncio.create_task(lockit)
      local t2 = asyncio.create_task(lockit)
      local t3 = asyncio.create_task(lockit)
      sleep0()
      asyncio.get_running_loop():call_soon(function()
        t1:cancel()
        lock:release()
      end)
      await_cancelled(t1)
      assert.equal(1, lock_count)
      assert.equal(3, call_count)
      assert.is_true(t2:done())
      t3:cancel()
      sleep0()
      assert.is_true(t3:cancelled())
    end)
  end)

  it("a woken waiter cancelled before it runs wakes the next one", function()
    run(function()
      local lock = locks.Lock()
      lock:acquire()
      local tb = asyncio.create_task(lock.acquire, lock)
      sleep0()
      local tc = asyncio.create_task(lock.acquire, lock)
      tb:cancel()
      lock:release()
      sleep0()
      assert.is_true(lock:locked())
      assert.is_true(tb:cancelled())
      assert.equal(lock, tc:await())
    end)
  end)

  it("woken and cancelled at the same moment: no deadlock, no lost release", function()
    run(function()
      local lock = locks.Lock()
      lock:acquire()
      local got = {}
      local tasks = spawn(3, function(i)
        local _ <close> = lock:acquire()
        got[#got + 1] = i
      end)
      sleep0()
      lock:release() -- wakes task 1 ...
      tasks[1]:cancel() -- ... which is cancelled before it runs
      settle(tasks)
      assert.is_true(tasks[1]:cancelled())
      assert.same({ 2, 3 }, got)
      assert.is_false(lock:locked())
    end)
  end)

  it("release() of an unlocked lock raises RuntimeError", function()
    run(function()
      local lock = locks.Lock()
      local e = err_of(lock.release, lock)
      assert_class(asyncio.RuntimeError, e)
      assert.equal("RuntimeError: Lock is not acquired.", tostring(e))
    end)
  end)

  it("a <close> guard releases at scope exit, on error and on cancellation", function()
    run(function()
      local lock = locks.Lock()
      do
        local _ <close> = lock:acquire()
        assert.is_true(lock:locked())
      end
      assert.is_false(lock:locked())
      local ok, e = pcall(function()
        local _ <close> = lock:acquire()
        error("boom", 0)
      end)
      assert.is_false(ok)
      assert.equal("boom", e)
      assert.is_false(lock:locked())
      local holder = asyncio.create_task(function()
        local _ <close> = lock:acquire()
        asyncio.sleep(10)
      end)
      sleep0()
      assert.is_true(lock:locked())
      holder:cancel()
      await_cancelled(holder)
      assert.is_false(lock:locked())
    end)
  end)

  it("serialises a critical section across many tasks", function()
    run(function()
      local lock = locks.Lock()
      local inside, max_inside, total = 0, 0, 0
      local tasks = spawn(50, function()
        for _ = 1, 3 do
          local _ <close> = lock:acquire()
          inside = inside + 1
          if inside > max_inside then max_inside = inside end
          asyncio.sleep(0)
          total = total + 1
          inside = inside - 1
        end
      end)
      results(tasks)
      assert.equal(1, max_inside)
      assert.equal(150, total)
    end)
  end)

  it("hands the lock over in arrival order among many waiters", function()
    run(function()
      local lock = locks.Lock()
      local order, tasks = {}, {}
      local function waiter(i)
        lock:acquire()
        order[#order + 1] = i
        lock:release()
      end
      lock:acquire()
      for i = 1, 100 do tasks[i] = asyncio.create_task(waiter, i) end
      sleep0()
      lock:release()
      while #order < 60 do sleep0() end
      lock:acquire() -- queues behind the 40 left
      for i = 101, 200 do
        tasks[i] = asyncio.create_task(waiter, i)
        sleep0()
        local live = helper.check_waitlist(lock._waiters)
        local _, last = core.waitlist_slots(lock._waiters)
        assert.is_true(last <= 2 * live + 34, "waiter list grew to " .. last)
      end
      lock:release()
      for _, t in ipairs(tasks) do t:await() end
      assert.equal(200, #order)
      for i = 1, 200 do assert.equal(i, order[i]) end
    end)
  end)

  it("is tied to no loop: tasks of one loop, then of another, wait on it", function()
    local lock = locks.Lock()
    for _ = 1, 2 do
      run(function()
        lock:acquire()
        local t = asyncio.create_task(lock.acquire, lock)
        sleep0()
        assert.equal("<Lock [locked, waiters:1]>", tostring(lock))
        lock:release()
        t:await()
        lock:release()
      end)
    end
    assert.equal("<Lock [unlocked]>", tostring(lock))
  end)

  it("acquire() that must wait outside a task raises, and leaves no waiter", function()
    helper.with_loop(function(loop)
      local lock = locks.Lock()
      lock:acquire()
      loop:run_until_complete(function()
        loop:call_soon(function()
          local e = err_of(lock.acquire, lock)
          assert_class(asyncio.RuntimeError, e)
        end)
        asyncio.sleep(0)
      end)
      assert.equal("<Lock [locked]>", tostring(lock))
    end)
  end)

  it("waiters cancelled behind a lock that is never released do not pile up", function()
    run(function()
      local lock = locks.Lock()
      lock:acquire()
      local keep = asyncio.create_task(lock.acquire, lock)
      for _ = 1, 500 do
        local t = asyncio.create_task(lock.acquire, lock)
        sleep0()
        t:cancel()
        await_cancelled(t)
      end
      local _, last = core.waitlist_slots(lock._waiters)
      assert.is_true(last <= 70, "waiter list grew to " .. last)
      assert.equal("<Lock [locked, waiters:1]>", tostring(lock))
      lock:release()
      assert.equal(lock, keep:await())
      assert.is_true(lock:locked())
    end)
  end)

  it("a waiter that swallowed its cancellation and waits again queues at the tail", function()
    run(function()
      local lock = locks.Lock()
      local order = {}
      local function waiter(name, retry)
        if retry then
          local ok = pcall(lock.acquire, lock)
          assert.is_false(ok)
        end
        lock:acquire()
        order[#order + 1] = name
        lock:release()
      end
      lock:acquire()
      local a = asyncio.create_task(waiter, "a", true)
      sleep0()
      local b = asyncio.create_task(waiter, "b")
      local c = asyncio.create_task(waiter, "c")
      sleep0()
      a:cancel()
      sleep0()
      assert.equal("<Lock [locked, waiters:3]>", tostring(lock))
      lock:release()
      for _, t in ipairs { a, b, c } do t:await() end
      assert.same({ "b", "c", "a" }, order)
    end)
  end)
end)

describe("Event", function()
  it("has a repr like Python's", function()
    run(function()
      local ev = locks.Event()
      assert.equal("<Event [unset]>", tostring(ev))
      local t = asyncio.create_task(ev.wait, ev)
      sleep0()
      assert.equal("<Event [unset, waiters:1]>", tostring(ev))
      ev:set()
      assert.equal("<Event [set]>", tostring(ev))
      t:await()
    end)
  end)

  it("wait() returns true once set; waiters run in FIFO order", function()
    run(function()
      local ev = locks.Event()
      assert.is_false(ev:is_set())
      local result = {}
      local function c(i)
        if ev:wait() then result[#result + 1] = i end
      end
      local t1 = asyncio.create_task(c, 1)
      local t2 = asyncio.create_task(c, 2)
      sleep0()
      assert.same({}, result)
      local t3 = asyncio.create_task(c, 3)
      ev:set()
      sleep0()
      assert.same({ 3, 1, 2 }, result)
      for _, t in ipairs { t1, t2, t3 } do
        assert.is_true(t:done())
        assert.is_nil(t:result())
      end
    end)
  end)

  it("wait() on a set event returns true at once", function()
    run(function()
      local ev = locks.Event()
      ev:set()
      assert.is_true(ev:wait())
      assert.is_true(ev:is_set())
    end)
  end)

  it("a cancelled wait leaves no waiter", function()
    run(function()
      local ev = locks.Event()
      local t = asyncio.create_task(ev.wait, ev)
      asyncio.get_running_loop():call_soon(function() t:cancel() end)
      await_cancelled(t)
      assert.equal("<Event [unset]>", tostring(ev))
    end)
  end)

  it("clear", function()
    local ev = locks.Event()
    assert.is_false(ev:is_set())
    ev:set()
    assert.is_true(ev:is_set())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("set, clear, set again wakes a waiter once", function()
    run(function()
      local ev = locks.Event()
      local result = {}
      local t = asyncio.create_task(function()
        if ev:wait() then result[#result + 1] = 1 end
        return true
      end)
      sleep0()
      assert.same({}, result)
      ev:set()
      ev:clear()
      assert.is_false(ev:is_set())
      ev:set()
      ev:set()
      sleep0()
      assert.same({ 1 }, result)
      assert.is_true(t:result())
    end)
  end)

  it("a waiter woken and cancelled at once raises CancelledError; the others are woken", function()
    run(function()
      local ev = locks.Event()
      local tasks = spawn(3, function() return ev:wait() end)
      sleep0()
      ev:set()
      tasks[2]:cancel()
      assert.is_true(tasks[1]:await())
      await_cancelled(tasks[2])
      assert.is_true(tasks[3]:await())
    end)
  end)

  it("cancelled waits do not pile up", function()
    run(function()
      local ev = locks.Event()
      local keep = asyncio.create_task(ev.wait, ev)
      for _ = 1, 200 do
        local t = asyncio.create_task(ev.wait, ev)
        sleep0()
        t:cancel()
        sleep0()
      end
      local list = debug.getuservalue(ev, 1) -- the waiter list of src/event.c
      assert.is_true(#list <= 16, "waiter list grew to " .. #list)
      assert.equal("<Event [unset, waiters:1]>", tostring(ev))
      ev:set()
      assert.is_true(keep:await())
    end)
  end)

  it("a waiter cancelled before it was woken leaves the others in FIFO order", function()
    run(function()
      local ev = locks.Event()
      local order = {}
      local tasks = spawn(4, function(i)
        ev:wait()
        order[#order + 1] = i
      end)
      sleep0()
      tasks[1]:cancel()
      tasks[3]:cancel()
      sleep0()
      assert.equal("<Event [unset, waiters:2]>", tostring(ev))
      ev:set()
      settle(tasks)
      assert.same({ 2, 4 }, order)
      assert.is_true(tasks[1]:cancelled() and tasks[3]:cancelled())
    end)
  end)

  it("a task cancelled while it runs raises at wait()", function()
    run(function()
      local ev = locks.Event()
      local t = asyncio.create_task(function()
        asyncio.current_task():cancel()
        ev:wait()
      end)
      await_cancelled(t)
      assert.equal("<Event [unset]>", tostring(ev))
    end)
  end)

  it("is tied to no loop: tasks of one loop, then of another, wait on it", function()
    local ev = locks.Event()
    for _ = 1, 2 do
      run(function()
        local t = asyncio.create_task(ev.wait, ev)
        sleep0()
        assert.equal("<Event [unset, waiters:1]>", tostring(ev))
        ev:set()
        assert.is_true(t:await())
        ev:clear()
      end)
    end
    assert.equal("<Event [unset]>", tostring(ev))
  end)

  it("outlives a loop closed while one of its tasks waits on it", function()
    local ev = locks.Event()
    helper.with_loop(function(loop)
      loop:create_task(ev.wait, ev)
      loop:run_until_complete(function() asyncio.sleep(0) end)
    end)
    helper.gc()
    run(function()
      local t = asyncio.create_task(ev.wait, ev)
      sleep0()
      ev:set()
      assert.is_true(t:await())
    end)
  end)

  it("wait() inside an asyncio.coroutine generator suspends the whole task", function()
    run(function()
      local ev = locks.Event()
      local C = asyncio.coroutine
      local gen = C.wrap(function()
        C.yield("before")
        C.yield(ev:wait())
      end)
      local t = asyncio.create_task(function() return gen(), gen() end)
      sleep0()
      assert.is_false(t:done())
      ev:set()
      assert.same({ "before", true }, { t:await() })
    end)
  end)

  it("wait() outside a task raises RuntimeError unless the event is set", function()
    helper.with_loop(function(loop)
      local ev = locks.Event()
      local e
      loop:run_until_complete(function()
        loop:call_soon(function() e = err_of(ev.wait, ev) end)
        asyncio.sleep(0)
      end)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("Event.wait called outside a task", e.message)
      assert.equal("<Event [unset]>", tostring(ev))
      ev:set()
      assert.is_true(ev:wait())
    end)
  end)

  it("its methods check their argument", function()
    local ev = locks.Event()
    assert.matches("bad argument #1 to 'set' %(Event expected, got table%)", err_of(function() ev.set({}) end))
    assert.matches("bad argument #1 to 'wait' %(Event expected, got no value%)", err_of(function() ev.wait() end))
    assert.matches("Event expected, got number", err_of(ev.is_set, 1))
  end)
end)

describe("Condition", function()
  it("wait: notify wakes in FIFO order, each re-acquires the lock", function()
    run(function()
      local cond = locks.Condition()
      local result = {}
      local function c(i)
        cond:acquire()
        if cond:wait() then result[#result + 1] = i end
        return true
      end
      local tasks = spawn(3, c)
      sleep0()
      assert.same({}, result)
      assert.is_false(cond:locked())

      assert.equal(cond, cond:acquire())
      cond:notify()
      sleep0()
      assert.same({}, result)
      assert.is_true(cond:locked())

      cond:release()
      sleep0()
      assert.same({ 1 }, result)
      assert.is_true(cond:locked())

      cond:notify(2)
      sleep0()
      assert.same({ 1 }, result)
      assert.is_true(cond:locked())

      cond:release()
      sleep0()
      assert.same({ 1, 2 }, result)
      assert.is_true(cond:locked())

      cond:release()
      sleep0()
      assert.same({ 1, 2, 3 }, result)
      assert.is_true(cond:locked())
      for _, t in ipairs(tasks) do
        assert.is_true(t:done())
        assert.is_true(t:result())
      end
    end)
  end)

  it("a cancelled wait leaves no waiter and re-acquires the lock", function()
    run(function()
      local cond = locks.Condition()
      cond:acquire()
      local t = asyncio.create_task(cond.wait, cond)
      asyncio.get_running_loop():call_soon(function() t:cancel() end)
      await_cancelled(t)
      assert.equal("<Condition [locked]>", tostring(cond))
      assert.is_true(cond:locked())
    end)
  end)

  it("a wait cancelled while the lock is contested ends with the lock held", function()
    run(function()
      local cond = locks.Condition()
      cond:acquire()
      assert.is_true(cond:locked())
      local wait_task = asyncio.create_task(cond.wait, cond)
      sleep0()
      assert.is_false(cond:locked())
      cond:acquire()
      assert.is_true(cond:locked())
      cond:notify()
      local loop = asyncio.get_running_loop()
      loop:call_soon(function() wait_task:cancel() end)
      loop:call_soon(function() cond:release() end)
      pcall(wait_task.await, wait_task)
      assert.is_true(cond:locked())
    end)
  end)

  it("a wait cancelled after notify ends cancelled (bpo-32841)", function()
    run(function()
      local waited = false
      local cond = locks.Condition()
      local waiter = asyncio.create_task(function()
        local _ <close> = cond:acquire()
        waited = true
        cond:wait()
      end)
      sleep0()
      cond:acquire()
      cond:notify()
      sleep0()
      waiter:cancel()
      sleep0()
      cond:release()
      sleep0()
      assert.is_true(waiter:cancelled())
      assert.is_true(waited)
      assert.is_false(cond:locked())
    end)
  end)

  it("wait() without the lock raises RuntimeError", function()
    run(function()
      local cond = locks.Condition()
      local e = err_of(cond.wait, cond)
      assert_class(asyncio.RuntimeError, e)
      assert.equal("RuntimeError: cannot wait on un-acquired lock", tostring(e))
    end)
  end)

  it("wait_for(pred) waits until the predicate holds and returns its value", function()
    run(function()
      local cond = locks.Condition()
      local presult = false
      local result = {}
      local t = asyncio.create_task(function()
        cond:acquire()
        if cond:wait_for(function() return presult end) then
          result[#result + 1] = 1
          cond:release()
        end
        return true
      end)
      sleep0()
      assert.same({}, result)
      cond:acquire()
      cond:notify()
      cond:release()
      sleep0()
      assert.same({}, result)
      presult = true
      cond:acquire()
      cond:notify()
      cond:release()
      sleep0()
      assert.same({ 1 }, result)
      assert.is_true(t:result())
    end)
  end)

  it("wait_for without the lock: fine if the predicate holds, RuntimeError otherwise", function()
    run(function()
      local cond = locks.Condition()
      local value = { 1, 2, 3 }
      assert.equal(value, cond:wait_for(function() return value end))
      assert_class(asyncio.RuntimeError, err_of(cond.wait_for, cond, function() return false end))
    end)
  end)

  it("notify(n) wakes at most n waiters", function()
    run(function()
      local cond = locks.Condition()
      local result = {}
      local tasks = spawn(3, function(i)
        cond:acquire()
        if cond:wait() then
          result[#result + 1] = i
          cond:release()
        end
        return true
      end)
      sleep0()
      assert.same({}, result)
      cond:acquire()
      cond:notify(1)
      cond:release()
      sleep0()
      assert.same({ 1 }, result)
      cond:acquire()
      cond:notify(1)
      cond:notify(2048)
      cond:release()
      sleep0()
      assert.same({ 1, 2, 3 }, result)
      assert.same({ true, true, true }, results(tasks))
    end)
  end)

  it("notify_all wakes every waiter", function()
    run(function()
      local cond = locks.Condition()
      local result = {}
      local tasks = spawn(2, function(i)
        cond:acquire()
        if cond:wait() then
          result[#result + 1] = i
          cond:release()
        end
        return true
      end)
      sleep0()
      assert.same({}, result)
      cond:acquire()
      cond:notify_all()
      cond:release()
      sleep0()
      assert.same({ 1, 2 }, result)
      assert.same({ true, true }, results(tasks))
    end)
  end)

  it("notify and notify_all without the lock raise RuntimeError", function()
    local cond = locks.Condition()
    assert_class(asyncio.RuntimeError, err_of(cond.notify, cond))
    assert_class(asyncio.RuntimeError, err_of(cond.notify_all, cond))
  end)

  it("has a repr like Python's", function()
    run(function()
      local cond = locks.Condition()
      assert.equal("<Condition [unlocked]>", tostring(cond))
      cond:acquire()
      assert.equal("<Condition [locked]>", tostring(cond))
      spawn(2, function()
        cond:acquire()
        cond:wait()
        cond:release()
      end)
      cond:release()
      sleep0()
      assert.equal("<Condition [unlocked, waiters:2]>", tostring(cond))
      cond:acquire()
      cond:notify_all()
      cond:release()
    end)
  end)

  it("a <close> guard releases the lock", function()
    run(function()
      local cond = locks.Condition()
      assert.is_false(cond:locked())
      do
        local _ <close> = cond:acquire()
        assert.is_true(cond:locked())
      end
      assert.is_false(cond:locked())
    end)
  end)

  it("shares an explicit lock", function()
    run(function()
      local function f(lock, cond)
        lock = lock or locks.Lock()
        cond = cond or locks.Condition(lock)
        assert.equal(lock, cond._lock)
        assert.is_false(lock:locked())
        assert.is_false(cond:locked())
        do
          local _ <close> = cond:acquire()
          assert.is_true(lock:locked())
          assert.is_true(cond:locked())
        end
        assert.is_false(lock:locked())
        assert.is_false(cond:locked())
        do
          local _ <close> = lock:acquire()
          assert.is_true(lock:locked())
          assert.is_true(cond:locked())
        end
        assert.is_false(lock:locked())
        assert.is_false(cond:locked())
      end
      f()
      f(locks.Lock())
      local lock = locks.Lock()
      f(lock, locks.Condition(lock))
    end)
  end)

  it("rejects a lock argument that is not a Lock", function()
    local e = err_of(locks.Condition, 42)
    assert.matches("bad argument #1 to 'Condition' %(Lock expected, got number%)", e)
  end)

  it("is tied to no loop: a wait in one loop, then in another", function()
    local cond = locks.Condition()
    for _ = 1, 2 do
      run(function()
        cond:acquire()
        local t = asyncio.create_task(function()
          cond:acquire()
          cond:wait()
          cond:release()
        end)
        cond:release()
        sleep0()
        cond:acquire()
        cond:notify()
        cond:release()
        t:await()
      end)
    end
    assert.equal("<Condition [unlocked]>", tostring(cond))
  end)

  it("a wait outside a task raises RuntimeError with the lock held again", function()
    helper.with_loop(function(loop)
      local cond = locks.Condition()
      loop:run_until_complete(function()
        loop:call_soon(function()
          cond:acquire()
          assert_class(asyncio.RuntimeError, err_of(cond.wait, cond))
          assert.is_true(cond:locked())
          cond:release()
        end)
        asyncio.sleep(0)
      end)
      assert.equal("<Condition [unlocked]>", tostring(cond))
    end)
  end)

  it("a wait cut by a timeout raises, with the lock held again", function()
    run(function()
      local cond = locks.Condition()
      local _ <close> = cond:acquire()
      assert.is_false(within(0.05, function() cond:wait() end))
      assert.is_true(cond:locked())
    end)
  end)

  it("a cancellation while waiting for the notification is re-raised unchanged", function()
    run(function()
      local cond = locks.Condition()
      local raised
      local task = asyncio.create_task(function()
        local _ <close> = cond:acquire()
        local ok, e = pcall(cond.wait_for, cond, function() return false end)
        assert.is_false(ok)
        raised = e
        error(e, 0)
      end)
      sleep0()
      task:cancel("foo")
      local e = await_cancelled(task)
      assert.equal("foo", e.message)
      assert_class(asyncio.CancelledError, raised)
      assert.equal("foo", raised.message)
      assert.is_false(cond:locked())
    end)
  end)

  it("a cancellation while re-acquiring the lock is re-raised once the lock is held", function()
    run(function()
      local cond = locks.Condition()
      local wake = false
      local raised, held
      local task = asyncio.create_task(function()
        local _ <close> = cond:acquire()
        local ok, e = pcall(cond.wait_for, cond, function() return wake end)
        assert.is_false(ok)
        raised, held = e, cond:locked()
        error(e, 0)
      end)
      sleep0()
      cond:acquire()
      wake = true
      cond:notify()
      sleep0() -- the task now waits for the lock
      task:cancel("foo")
      cond:release()
      local e = await_cancelled(task)
      assert.equal("foo", e.message)
      assert.equal("foo", raised.message)
      assert.is_true(held)
      assert.is_false(cond:locked())
    end)
  end)

  local function consumer_race(settle_first)
    run(function()
      local condition = locks.Condition()
      local state = 0
      local function consumer()
        local _ <close> = condition:acquire()
        while true do
          condition:wait_for(function() return state ~= 0 end)
          if state < 0 then return end
          state = state - 1
        end
      end
      local c = spawn(2, consumer)
      sleep0()
      do
        local _ <close> = condition:acquire()
        state = state + 1
        condition:notify(1)
        if settle_first then sleep0() end -- the woken consumer now waits for the lock
        c[1]:cancel()
        -- the notification must not be lost with the cancelled consumer
        within(0.5, function() condition:wait_for(function() return state == 0 end) end)
        assert.equal(0, state)
        state = -1
        condition:notify_all()
      end
      c[2]:await()
      await_cancelled(c[1])
    end)
  end

  it("a consumer cancelled as it is notified does not lose the notification", function()
    consumer_race(false)
  end)

  it("a consumer cancelled while re-acquiring does not lose the notification", function()
    consumer_race(true)
  end)
end)

describe("Semaphore", function()
  it("with initial value 0 is locked", function()
    assert.is_true(locks.Semaphore(0):locked())
  end)

  it("has a repr like Python's", function()
    run(function()
      local sem = locks.Semaphore()
      assert.equal("<Semaphore [unlocked, value:1]>", tostring(sem))
      sem:acquire()
      assert.equal("<Semaphore [locked]>", tostring(sem))
      spawn(2, function() sem:acquire() end)
      sleep0()
      assert.equal("<Semaphore [locked, waiters:2]>", tostring(sem))
      sem:release()
      sem:release()
      sleep0()
      assert.equal("<BoundedSemaphore [unlocked, value:3]>", tostring(locks.BoundedSemaphore(3)))
    end)
  end)

  it("defaults to 1; rejects negative and non-integer values", function()
    local sem = locks.Semaphore()
    assert.equal(1, sem._value)
    assert.is_false(sem:locked())
    local e = err_of(locks.Semaphore, -1)
    assert_class(asyncio.ValueError, e)
    assert.equal("ValueError: Semaphore initial value must be >= 0", tostring(e))
    assert_class(asyncio.ValueError, err_of(locks.BoundedSemaphore, -1))
    assert.matches("bad argument #1 to 'Semaphore' %(number expected, got string%)", err_of(locks.Semaphore, "x"))
    assert.matches("bad argument #1 to 'Semaphore' %(number has no integer representation%)",
      err_of(locks.Semaphore, 1.5))
  end)

  it("acquire: value counts down, waiters queue, releases hand units over", function()
    run(function()
      local sem = locks.Semaphore(3)
      local result = {}
      assert.equal(sem, sem:acquire())
      assert.equal(sem, sem:acquire())
      assert.is_false(sem:locked())
      local function c(i)
        sem:acquire()
        result[#result + 1] = i
        return true
      end
      local t1 = asyncio.create_task(c, 1)
      local t2 = asyncio.create_task(c, 2)
      local t3 = asyncio.create_task(c, 3)
      sleep0()
      assert.same({ 1 }, result)
      assert.is_true(sem:locked())
      assert.equal("<Semaphore [locked, waiters:2]>", tostring(sem))
      assert.equal(0, sem._value)

      local t4 = asyncio.create_task(c, 4)
      sem:release()
      sem:release()
      assert.equal(0, sem._value)
      sleep0()
      assert.equal(0, sem._value)
      assert.equal(3, #result)
      assert.is_true(sem:locked())
      assert.equal("<Semaphore [locked, waiters:1]>", tostring(sem))
      assert.is_true(t1:result())
      local done = 0
      for _, t in ipairs { t2, t3, t4 } do
        if t:done() and t:result() then done = done + 1 end
      end
      assert.equal(2, done)
      sem:release()
      results { t2, t3, t4 }
    end)
  end)

  it("a cancelled acquire leaves no waiter", function()
    run(function()
      local sem = locks.Semaphore()
      sem:acquire()
      local t = asyncio.create_task(sem.acquire, sem)
      asyncio.get_running_loop():call_soon(function() t:cancel() end)
      await_cancelled(t)
      assert.equal("<Semaphore [locked]>", tostring(sem))
    end)
  end)

  it("waiters cancelled before they are woken do not take the unit", function()
    run(function()
      local sem = locks.Semaphore(0)
      local t = spawn(4, function() return sem:acquire() end)
      sleep0()
      t[1]:cancel()
      t[2]:cancel()
      sem:release()
      sleep0(2)
      assert.is_true(t[3]:done())
      assert.is_false(t[4]:done())
      t[3]:cancel()
      t[4]:cancel()
      sleep0()
      settle(t)
    end)
  end)

  it("a waiter woken and cancelled at once gives its unit to the next (no hang)", function()
    run(function()
      local sem = locks.Semaphore(0)
      local t1 = asyncio.create_task(sem.acquire, sem)
      local t2 = asyncio.create_task(sem.acquire, sem)
      sleep0()
      sem:release() -- hands the unit to t1 ...
      t1:cancel() -- ... cancelled before it runs
      sleep0(2)
      assert.is_true(sem:locked())
      assert.is_true(t2:done())
      await_cancelled(t1)
      assert.equal(0, sem._value)
    end)
  end)

  it("cancelling a waiter while the holder sleeps does not hang later acquires", function()
    run(function()
      local sem = locks.Semaphore(1)
      local t2
      local t1 = asyncio.create_task(function()
        do
          local _ <close> = sem:acquire()
          asyncio.sleep(0)
        end
        t2:cancel()
      end)
      t2 = asyncio.create_task(function()
        local _ <close> = sem:acquire()
        error("must not get here")
      end)
      assert.is_nil(t1:await())
      await_cancelled(t2)
      assert.is_true(within(1, function() sem:acquire() end))
    end)
  end)

  it("release without waiters unlocks", function()
    run(function()
      local sem = locks.Semaphore()
      sem:acquire()
      assert.is_true(sem:locked())
      sem:release()
      assert.is_false(sem:locked())
    end)
  end)

  it("BoundedSemaphore: over-release raises ValueError", function()
    local sem = locks.BoundedSemaphore()
    local e = err_of(sem.release, sem)
    assert_class(asyncio.ValueError, e)
    assert.equal("ValueError: BoundedSemaphore released too many times", tostring(e))
    run(function()
      local b = locks.BoundedSemaphore(2)
      b:acquire()
      b:acquire()
      assert.is_true(b:locked())
      b:release()
      b:release()
      assert_class(asyncio.ValueError, err_of(b.release, b))
      assert.equal(2, b._value)
    end)
  end)

  it("FIFO: each task re-queues behind the others", function()
    run(function()
      local sem = locks.Semaphore(1)
      local result = {}
      local tasks = spawn(3, function(i)
        sem:acquire()
        result[#result + 1] = ("c%d_1"):format(i)
        asyncio.sleep(0.01)
        sem:release()
        sem:acquire()
        result[#result + 1] = ("c%d_2"):format(i)
        asyncio.sleep(0.01)
        sem:release()
      end)
      results(tasks)
      assert.same({ "c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2" }, result)
    end)
  end)

  it("FIFO: a release does not let the releaser jump the queue", function()
    run(function()
      local sem = locks.Semaphore(1)
      local result = {}
      local t1 = asyncio.create_task(function()
        sem:acquire()
        result[#result + 1] = 1
        return true
      end)
      local t2 = asyncio.create_task(function()
        sem:acquire()
        result[#result + 1] = 2
        sem:release()
        sem:acquire()
        result[#result + 1] = 4
        return true
      end)
      local t3 = asyncio.create_task(function()
        sem:acquire()
        result[#result + 1] = 3
        return true
      end)
      sleep0()
      sem:release()
      sem:release()
      results { t1, t2, t3 }
      assert.same({ 1, 2, 3, 4 }, result)
    end)
  end)

  it("FIFO: a waiter cancelled before any release is skipped", function()
    run(function()
      local sem = locks.Semaphore(0)
      local result = {}
      local tasks = spawn(3, function(i)
        sem:acquire()
        result[#result + 1] = i
        return true
      end)
      sleep0()
      tasks[1]:cancel()
      sleep0()
      sem:release()
      sem:release()
      settle(tasks)
      assert.same({ 2, 3 }, result)
    end)
  end)

  it("a <close> guard releases at scope exit and on error", function()
    run(function()
      local sem = locks.Semaphore(2)
      do
        local _ <close> = sem:acquire()
        local _ <close> = sem:acquire()
        assert.is_true(sem:locked())
      end
      assert.equal(2, sem._value)
      pcall(function()
        local _ <close> = sem:acquire()
        error("boom")
      end)
      assert.equal(2, sem._value)
    end)
  end)

  it("limits concurrency to its value", function()
    run(function()
      local sem = locks.BoundedSemaphore(3)
      local inside, max_inside = 0, 0
      local tasks = spawn(20, function()
        local _ <close> = sem:acquire()
        inside = inside + 1
        if inside > max_inside then max_inside = inside end
        asyncio.sleep(0.001)
        inside = inside - 1
      end)
      results(tasks)
      assert.equal(3, max_inside)
      assert.equal(3, sem._value)
    end)
  end)

  it("waiters cancelled on a semaphore that is never released do not pile up", function()
    run(function()
      local sem = locks.Semaphore(0)
      local keep = asyncio.create_task(sem.acquire, sem)
      for _ = 1, 500 do
        local t = asyncio.create_task(sem.acquire, sem)
        sleep0()
        t:cancel()
        await_cancelled(t)
      end
      local _, last = core.waitlist_slots(sem._waiters)
      assert.is_true(last <= 70, "waiter list grew to " .. last)
      assert.equal("<Semaphore [locked, waiters:1]>", tostring(sem))
      sem:release()
      assert.equal(sem, keep:await())
      assert.equal(0, sem._value)
    end)
  end)

  it("a waiter woken, then cancelled, then waiting again does not keep the unit", function()
    run(function()
      local sem = locks.Semaphore(0)
      local got = {}
      local a = asyncio.create_task(function()
        assert.is_false(pcall(sem.acquire, sem))
        sem:acquire()
        got[#got + 1] = "a"
      end)
      local b = asyncio.create_task(function()
        sem:acquire()
        got[#got + 1] = "b"
      end)
      sleep0()
      sem:release() -- to a
      a:cancel()
      sleep0() -- a passes the unit on to b and waits again
      sleep0()
      assert.same({ "b" }, got)
      sem:release()
      a:await()
      b:await()
      assert.same({ "b", "a" }, got)
      assert.equal(0, sem._value)
    end)
  end)
end)

describe("Barrier", function()
  local N = 5

  local function gather(n, fn)
    local tasks = spawn(n, fn)
    return results(tasks), tasks
  end

  it("has a repr like Python's and validates parties", function()
    run(function()
      local barrier = locks.Barrier(N)
      assert.equal("<Barrier [filling, waiters:0/5]>", tostring(barrier))
      assert.equal(N, barrier.parties)
      local waiters = spawn(2, function() barrier:wait() end)
      sleep0()
      assert.equal("<Barrier [filling, waiters:2/5]>", tostring(barrier))
      for _ = 1, barrier.parties - barrier.n_waiting do
        waiters[#waiters + 1] = asyncio.create_task(function() barrier:wait() end)
      end
      sleep0()
      assert.equal("<Barrier [draining, waiters:0/5]>", tostring(barrier))
      for _ = 1, 2 do waiters[#waiters + 1] = asyncio.create_task(function() barrier:wait() end) end
      sleep0()
      barrier:reset()
      assert.matches("^<Barrier %[resetting, waiters:0/5%]>$", tostring(barrier))
      for _ = 1, 2 do waiters[#waiters + 1] = asyncio.create_task(function() barrier:wait() end) end
      sleep0()
      barrier:abort()
      assert.equal("<Barrier [broken]>", tostring(barrier))
      assert.is_true(barrier.broken)
      settle(waiters)
    end)
    assert_class(asyncio.ValueError, err_of(locks.Barrier, 0))
    assert_class(asyncio.ValueError, err_of(locks.Barrier, -4))
    assert.matches("bad argument #1 to 'Barrier' %(number expected, got no value%)", err_of(locks.Barrier))
  end)

  it("wait() returns a distinct index per party", function()
    run(function()
      local barrier = locks.Barrier(3)
      local res = gather(3, function() return barrier:wait() end)
      table.sort(res)
      assert.same({ 0, 1, 2 }, res)
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("one party passes at once, twice", function()
    run(function()
      local barrier = locks.Barrier(1)
      assert.equal(0, barrier:wait())
      local t1 = asyncio.create_task(barrier.wait, barrier)
      sleep0()
      assert.equal(0, barrier.n_waiting)
      local t2 = asyncio.create_task(barrier.wait, barrier)
      sleep0()
      assert.equal(t1:result(), t2:result())
      assert.is_true(t1:done() and t2:done())
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("fills task by task", function()
    run(function()
      local barrier = locks.Barrier(3)
      local t1 = asyncio.create_task(barrier.wait, barrier)
      sleep0()
      assert.equal(1, barrier.n_waiting)
      assert.matches("filling", tostring(barrier))
      local t2 = asyncio.create_task(barrier.wait, barrier)
      sleep0()
      assert.equal(2, barrier.n_waiting)
      local t3 = asyncio.create_task(barrier.wait, barrier)
      results { t1, t2, t3 }
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("tasks pass it twice in a row", function()
    run(function()
      local barrier = locks.Barrier(N)
      local first, second, indices = 0, 0, {}
      gather(N, function()
        barrier:wait()
        first = first + 1
        local index = barrier:wait()
        indices[#indices + 1] = index
        second = second + 1
      end)
      assert.equal(N, first)
      assert.equal(N, second)
      table.sort(indices)
      assert.same({ 0, 1, 2, 3, 4 }, indices)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("is draining until the last task leaves", function()
    run(function()
      local barrier = locks.Barrier(N)
      local seen = {}
      gather(N, function()
        barrier:wait()
        seen[#seen + 1] = tostring(barrier):find("draining", 1, true) ~= nil
      end)
      assert.same({ true, true, true, true, false }, seen)
    end)
  end)

  it("blocks new arrivals while draining", function()
    run(function()
      local rewait = 2
      local barrier = locks.Barrier(N)
      local barrier_nowaiting = locks.Barrier(N - rewait)
      local rewait_n = rewait
      gather(N, function()
        barrier:wait()
        if rewait_n > 0 then
          rewait_n = rewait_n - 1
          barrier:wait()
        else
          barrier_nowaiting:wait()
          barrier:wait()
        end
      end)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("a cancelled waiter leaves", function()
    run(function()
      local barrier = locks.Barrier(3)
      local passed = 0
      local function coro()
        barrier:wait()
        passed = passed + 1
      end
      local t1 = asyncio.create_task(coro)
      sleep0()
      assert.equal(1, barrier.n_waiting)
      local t2 = asyncio.create_task(coro)
      sleep0()
      assert.equal(2, barrier.n_waiting)
      t1:cancel()
      sleep0()
      assert.equal(1, barrier.n_waiting)
      await_cancelled(t1)
      local t3 = asyncio.create_task(coro)
      sleep0()
      assert.equal(2, barrier.n_waiting)
      local t4 = asyncio.create_task(coro)
      results { t2, t3, t4 }
      assert.equal(3, passed)
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("reset with nobody waiting", function()
    run(function()
      local barrier = locks.Barrier(1)
      asyncio.create_task(barrier.reset, barrier)
      sleep0()
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("reset breaks the current waiters with BrokenBarrierError", function()
    run(function()
      local barrier = locks.Barrier(N)
      local broken = 0
      local tasks = spawn(N - 1, function()
        local ok, e = pcall(barrier.wait, barrier)
        if not ok then
          assert_class(asyncio.BrokenBarrierError, e)
          broken = broken + 1
        end
      end)
      sleep0()
      asyncio.create_task(barrier.reset, barrier)
      results(tasks)
      assert.equal(N - 1, broken)
      assert.equal(0, barrier.n_waiting)
      assert.is_nil(tostring(barrier):find("resetting", 1, true))
      assert.is_false(barrier.broken)
    end)
  end)

  it("reset while half the tasks still drain", function()
    run(function()
      local barrier = locks.Barrier(N)
      local broken = 0
      local rest = N // 2
      gather(N, function()
        local ok, e = pcall(barrier.wait, barrier)
        if not ok then
          assert_class(asyncio.BrokenBarrierError, e)
          broken = broken + 1
        elseif barrier._count == rest then
          barrier:reset()
        end
      end)
      assert.equal(rest, broken)
      assert.equal(0, barrier.n_waiting)
      assert.is_nil(tostring(barrier):find("resetting", 1, true))
      assert.is_false(barrier.broken)
    end)
  end)

  it("reset while half the tasks drain and half block", function()
    run(function()
      local barrier = locks.Barrier(N)
      local results1, results2 = 0, 0
      local blocking = N // 2
      local count = 0
      gather(N, function()
        local ok, e = pcall(barrier.wait, barrier)
        if not ok then
          assert_class(asyncio.BrokenBarrierError, e)
          results1 = results1 + 1
          barrier:wait()
        else
          count = count + 1
          if count > blocking then
            barrier:reset()
            barrier:wait()
          elseif not pcall(barrier.wait, barrier) then
            results2 = results2 + 1
          end
        end
      end)
      assert.equal(blocking, results1)
      assert.equal(0, results2)
      assert.equal(0, barrier.n_waiting)
      assert.is_false(barrier.broken)
    end)
  end)

  it("waiters broken by a reset can wait again", function()
    run(function()
      local barrier = locks.Barrier(N)
      local results1, results2 = 0, 0
      local tasks = spawn(N - 1, function()
        local ok, e = pcall(barrier.wait, barrier)
        if not ok then
          assert_class(asyncio.BrokenBarrierError, e)
          results1 = results1 + 1
        end
        barrier:wait()
        results2 = results2 + 1
      end)
      asyncio.create_task(barrier.reset, barrier)
      sleep0()
      asyncio.create_task(function()
        barrier:wait()
        results2 = results2 + 1
      end)
      results(tasks)
      assert.is_false(barrier.broken)
      assert.equal(N - 1, results1)
      assert.equal(N, results2)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("reset by the last task out while the others wait again", function()
    run(function()
      local barrier = locks.Barrier(N)
      local results1, results2, results3 = 0, 0, 0
      local count = 0
      gather(N, function()
        barrier:wait()
        count = count + 1
        if count == N then
          barrier:reset()
          barrier:wait()
        elseif pcall(barrier.wait, barrier) then
          results1 = results1 + 1
        else
          results2 = results2 + 1
        end
        barrier:wait()
        results3 = results3 + 1
      end)
      assert.is_false(barrier.broken)
      assert.equal(N - 1, results1)
      assert.equal(0, results2)
      assert.equal(N, results3)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("abort with nobody waiting breaks it", function()
    run(function()
      local barrier = locks.Barrier(1)
      asyncio.create_task(barrier.abort, barrier)
      sleep0()
      assert.equal(0, barrier.n_waiting)
      assert.is_true(barrier.broken)
      local e = err_of(barrier.wait, barrier)
      assert_class(asyncio.BrokenBarrierError, e)
      assert.equal("BrokenBarrierError: Barrier aborted", tostring(e))
    end)
  end)

  it("abort while half the tasks drain and half block", function()
    run(function()
      local barrier = locks.Barrier(N)
      local results1, results2 = 0, 0
      local blocking = N // 2
      local count = 0
      gather(N, function()
        if not pcall(barrier.wait, barrier) then
          results1 = results1 + 1
        else
          count = count + 1
          if count > blocking then
            barrier:abort()
          elseif not pcall(barrier.wait, barrier) then
            results2 = results2 + 1
          end
        end
      end)
      assert.is_true(barrier.broken)
      assert.equal(blocking, results1)
      assert.equal(N - blocking - 1, results2)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("abort on an error breaks every other party", function()
    run(function()
      local barrier = locks.Barrier(N)
      local passed, broken = 0, 0
      gather(N, function()
        local ok, e = pcall(function()
          local i = barrier:wait()
          if i == N // 2 then error(asyncio.RuntimeError("boom")) end
          barrier:wait()
          passed = passed + 1
        end)
        if not ok then
          if asyncio.isinstance(e, asyncio.BrokenBarrierError) then
            broken = broken + 1
          else
            barrier:abort()
          end
        end
      end)
      assert.is_true(barrier.broken)
      assert.equal(0, passed)
      assert.equal(N - 1, broken)
      assert.equal(0, barrier.n_waiting)
    end)
  end)

  it("abort then reset makes it usable again", function()
    run(function()
      local barrier1, barrier2 = locks.Barrier(N), locks.Barrier(N)
      local results1, results2, results3 = 0, 0, 0
      gather(N, function()
        local ok, e = pcall(function()
          local i = barrier1:wait()
          if i == N // 2 then error(asyncio.RuntimeError("boom")) end
          barrier1:wait()
          results1 = results1 + 1
        end)
        if not ok then
          if asyncio.isinstance(e, asyncio.BrokenBarrierError) then
            results2 = results2 + 1
          else
            barrier1:abort()
          end
        end
        if barrier2:wait() == N // 2 then barrier1:reset() end
        barrier2:wait()
        barrier1:wait()
        results3 = results3 + 1
      end)
      assert.is_false(barrier1.broken)
      assert.equal(0, results1)
      assert.equal(N - 1, results2)
      assert.equal(N, results3)
      assert.equal(0, barrier1.n_waiting)
    end)
  end)
end)

describe("waitlist (the FIFO of parked waiters under every primitive)", function()
  it("a waiter that leaves takes its slot out: at the head, the tail or in between", function()
    run(function()
      local w = core.waitlist()
      local order, tasks = {}, {}
      for i = 1, 5 do
        tasks[i] = asyncio.create_task(function()
          local ok, err, woken = core.park(w)
          if not ok then return err, woken end
          order[#order + 1] = i
        end)
      end
      sleep0()
      assert.equal(5, helper.check_waitlist(w))
      tasks[3]:cancel()
      sleep0()
      assert.same({ 1, 5, 1 }, { core.waitlist_slots(w) })
      tasks[5]:cancel()
      sleep0()
      assert.same({ 1, 4, 1 }, { core.waitlist_slots(w) })
      tasks[1]:cancel()
      sleep0()
      assert.same({ 2, 4, 1 }, { core.waitlist_slots(w) })
      assert.equal(2, helper.check_waitlist(w))
      for _, i in ipairs({ 1, 3, 5 }) do
        local err, woken = tasks[i]:result()
        helper.assert_class(asyncio.CancelledError, err)
        assert.is_false(woken)
      end
      assert.is_true(core.wake(w))
      assert.is_true(core.wake(w))
      assert.is_false(core.wake(w))
      sleep0()
      assert.same({ 2, 4 }, order)
      assert.same({ 1, 0, 0 }, { core.waitlist_slots(w) })
    end)
  end)

  it("a waiter woken, then cancelled before it runs, says it was woken", function()
    run(function()
      local w = core.waitlist()
      local t = asyncio.create_task(function() return core.park(w) end)
      sleep0()
      assert.is_true(core.any_parked(w))
      assert.is_true(core.wake(w))
      t:cancel()
      local ok, err, woken = t:await()
      assert.is_false(ok)
      helper.assert_class(asyncio.CancelledError, err)
      assert.is_true(woken)
      assert.is_false(core.any_parked(w))
      assert.equal(0, core.waiting(w))
    end)
  end)

  it("entries of tasks whose loop closed are dropped when the list compacts", function()
    local w = core.waitlist()
    helper.with_loop(function(loop)
      loop:run_until_complete(function()
        for _ = 1, 40 do asyncio.create_task(core.park, w) end
        sleep0()
      end)
    end)
    assert.equal(40, core.waiting(w))
    run(function()
      local t = asyncio.create_task(core.park, w)
      sleep0()
      assert.equal(41, core.waiting(w))
      assert.is_true(core.wake(w)) -- skips the 40 that will never run
      assert.is_true(t:await())
    end)
    assert.equal(0, core.waiting(w))
  end)

  it("rejects what is not a waitlist", function()
    assert.has_error(function() core.park({}) end)
    assert.has_error(function() core.wake(locks.Event()) end)
    assert.equal(0, core.waiting(nil))
    assert.is_false(core.wake(nil))
  end)
end)
