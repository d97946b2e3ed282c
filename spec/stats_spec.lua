-- task:get_stats(): per-task counters kept by the C step (steps, run time,
-- time since it last ran, wake-up to run delay). Outside debug mode they are
-- read on the coarse clock (a kernel tick, up to 4 ms), so the bounds below
-- leave that much room.
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local TICK = 0.005 -- the coarse clock's resolution, and some

local function stats_of(fn, debug)
  return helper.run(function()
    asyncio.get_running_loop():set_debug(debug)
    local t = asyncio.create_task(fn)
    t:await()
    return t:get_stats()
  end)
end

for _, debug in ipairs { false, true } do
  describe("task:get_stats() (debug " .. tostring(debug) .. ")", function()
    it("has every field, zero before the first step", function()
      helper.run(function()
        asyncio.get_running_loop():set_debug(debug)
        local t = asyncio.create_task(function() end)
        local s = t:get_stats()
        assert.equal(0, s.steps)
        assert.equal(0, s.run_time)
        assert.equal(0, s.sched_delay)
        assert.equal(0, s.sched_delay_max)
        assert.equal(0, s.sched_delay_total)
        assert.is_false(s.running)
        assert.is_number(s.since_run)
        t:await()
      end)
    end)

    it("counts steps: one per resume", function()
      local s = stats_of(function()
        for _ = 1, 9 do
          asyncio.sleep(0)
        end
      end, debug)
      assert.equal(10, s.steps)
    end)

    it("run_time is the sum of the step durations", function()
      local s = stats_of(function()
        helper.busy(0.03)
        asyncio.sleep(0)
        helper.busy(0.03)
      end, debug)
      assert.equal(2, s.steps)
      assert.is_true(s.run_time >= 0.06 - 2 * TICK, s.run_time)
      assert.is_true(s.run_time < 1, s.run_time)
    end)

    it("waiting is not running: a sleep does not count", function()
      local s = stats_of(function()
        asyncio.sleep(0.05)
      end, debug)
      assert.is_true(s.run_time < 0.05 - TICK, s.run_time)
    end)

    it("since_run grows while it waits, and is 0 for the running task", function()
      helper.run(function()
        asyncio.get_running_loop():set_debug(debug)
        assert.equal(0, asyncio.current_task():get_stats().since_run)
        assert.is_true(asyncio.current_task():get_stats().running)
        local t = asyncio.create_task(function()
          asyncio.sleep(10)
        end)
        asyncio.sleep(0) -- t runs up to its sleep
        asyncio.sleep(0.05)
        local s = t:get_stats()
        assert.equal(1, s.steps)
        assert.is_true(s.since_run >= 0.05 - TICK, s.since_run)
        assert.is_true(s.since_run < 5, s.since_run)
        t:cancel()
        assert.is_false(pcall(t.await, t))
      end)
    end)

    it("sched_delay: from the wake-up to the step, last, max and total", function()
      helper.run(function()
        asyncio.get_running_loop():set_debug(debug)
        local t = asyncio.create_task(function()
          asyncio.sleep(0)
        end)
        -- t is ready; a slow callback runs before it
        asyncio.get_running_loop():call_soon(helper.busy, 0.04)
        t:await()
        local s = t:get_stats()
        assert.is_true(s.sched_delay_max >= 0.04 - TICK, s.sched_delay_max)
        assert.is_true(s.sched_delay_max < 1, s.sched_delay_max)
        assert.is_true(s.sched_delay_total >= s.sched_delay_max)
        assert.is_true(s.sched_delay <= s.sched_delay_max)
      end)
    end)

    it("a task woken by I/O counts from the tick, not from before the poll", function()
      helper.run(function()
        asyncio.get_running_loop():set_debug(debug)
        local server = asyncio.start_server(function(_, w)
          asyncio.sleep(0.1) -- the reader waits in the poll meanwhile
          w:write("x")
          w:close()
        end, "127.0.0.1", 0)
        local r, w = asyncio.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
        local t = asyncio.create_task(function()
          return r:read(1)
        end)
        assert.equal("x", t:await())
        local s = t:get_stats()
        assert.is_true(s.steps >= 2)
        assert.is_true(s.sched_delay_max < 0.05, s.sched_delay_max)
        w:close()
        server:close()
      end)
    end)
  end)
end

describe("task:get_stats() arguments", function()
  it("refuses what is not a Task", function()
    helper.run(function()
      local f = asyncio.get_running_loop():create_future()
      local Task = getmetatable(asyncio.current_task()).__index
      assert.has_error(function()
        Task.get_stats(f)
      end)
      assert.has_error(function()
        Task.get_stats({})
      end)
    end)
  end)
end)
