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
local n, rounds = tonumber(arg[1]) or 100000, tonumber(arg[2]) or 7

local function child() return 1 end

-- the median CPU time of `rounds` rounds of n tasks, after a warm-up round
local function measure(create_task)
  local ts = {}
  for r = 0, rounds do
    local t0 = os.clock()
    local tasks = {}
    for i = 1, n do tasks[i] = create_task(child) end
    local sum = 0
    for i = 1, n do sum = sum + tasks[i]:await() end
    assert(sum == n)
    if r > 0 then ts[r] = os.clock() - t0 end
  end
  table.sort(ts)
  return ts[(rounds + 1) // 2]
end

asyncio.run(function()
  local ours = measure(asyncio.create_task)
  local least, design = measure(floor.create_task), measure(floor.design.create_task)
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
