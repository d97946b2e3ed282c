-- The spawn benchmark's round (micro.lua: n tasks created, then each
-- awaited) with asyncio.create_task and with the two floors of
-- bench/spawn_floor.c, in the same process and the same harness: the least
-- a Lua task runtime does, and that plus what lua-asyncio's design needs
-- (a pcall and message handler in the coroutine, an anchor slot, a C ready
-- ring, the step clock). Prints one RESULT line each, with their ratios to
-- ours. `make bench-floor` builds the module and runs it; by hand, with
-- spawn_floor.so on LUA_CPATH:
--   lua5.4 bench/spawn_floor.lua [N [ROUNDS]]
local asyncio = require "asyncio"
local floor = require "spawn_floor"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local n, rounds = tonumber(arg[1]) or 100000, tonumber(arg[2]) or 15

local function child() return 1 end

-- one round of n tasks: its CPU time
local function round(create_task)
  local t0 = os.clock()
  local tasks = {}
  for i = 1, n do tasks[i] = create_task(child) end
  local sum = 0
  for i = 1, n do sum = sum + tasks[i]:await() end
  assert(sum == n)
  return os.clock() - t0
end

-- The median of `rounds` rounds of each, after a warm-up round of each.
-- The rounds of the three alternate, so that a machine that speeds up or
-- slows down while they run moves all three alike.
local function median(ts)
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end

asyncio.run(function()
  local makers = { asyncio.create_task, floor.create_task, floor.design.create_task }
  local times = { {}, {}, {} }
  for r = 0, rounds do
    for k, create_task in ipairs(makers) do
      local dt = round(create_task)
      if r > 0 then times[k][r] = dt end
    end
  end
  local ours, least, design = median(times[1]), median(times[2]), median(times[3])
  local function report(peer, secs, extra)
    local r = { bench = "spawn", peer = peer, n = n, secs = ("%.4f"):format(secs),
                rate = ("%.0f"):format(n / secs), unit = "tasks/s", rounds = rounds }
    for k, v in pairs(extra or {}) do r[k] = v end
    common.result(r)
  end
  report("lua-asyncio", ours)
  report("floor", least, { x_ours = ("%.2f"):format(ours / least) })
  report("design-floor", design, { x_ours = ("%.2f"):format(ours / design) })
end)
