-- Contended-lock benchmark: 1,000 tasks share one asyncio.Lock, each taking it
-- 100 times and yielding once inside (so every acquisition queues behind the
-- others); prints one "RESULT bench=lock ..." line in the shape of micro.lua.
-- usage: lua5.4 bench/locks.lua
-- A warm-up round of n/10, then 3 rounds of n acquisitions; the median counts.
local asyncio = require "asyncio"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local now, measure, rate_result = common.now, common.measure, common.rate_result
local TASKS, N = 1000, 100000

-- n acquisitions, n // TASKS per task; the holder check costs little and
-- proves the lock excludes.
local function lock_round(n)
  local per = n // TASKS
  local lock, sleep, create_task = asyncio.Lock(), asyncio.sleep, asyncio.create_task
  local holder, count = nil, 0
  local function worker(id)
    for _ = 1, per do
      local _ <close> = lock:acquire()
      assert(holder == nil, "two holders at once")
      holder = id
      sleep(0)
      holder = nil
      count = count + 1
    end
  end
  local t0 = now()
  local tasks = {}
  for i = 1, TASKS do tasks[i] = create_task(worker, i) end
  for i = 1, TASKS do tasks[i]:await() end
  local dt = now() - t0
  assert(count == per * TASKS)
  return dt
end

asyncio.run(function()
  rate_result("lock", N, measure(lock_round, N), "acquisitions/s", { tasks = TASKS })
end)
