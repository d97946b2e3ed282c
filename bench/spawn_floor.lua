-- The spawn benchmark's round (micro.lua: n tasks created, then each
-- awaited) with asyncio.create_task and with bench/spawn_floor.c, the least
-- a Lua task runtime does, in the same process and the same harness; prints
-- one RESULT line each and their ratio. `make bench-floor` builds the
-- module and runs it; by hand, with spawn_floor.so on LUA_CPATH:
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
  local ours, least = measure(asyncio.create_task), measure(floor.create_task)
  common.result { bench = "spawn", peer = "lua-asyncio", n = n, secs = ("%.4f"):format(ours),
                  rate = ("%.0f"):format(n / ours), unit = "tasks/s", rounds = rounds }
  common.result { bench = "spawn", peer = "floor", n = n, secs = ("%.4f"):format(least),
                  rate = ("%.0f"):format(n / least), unit = "tasks/s", rounds = rounds,
                  x_ours = ("%.2f"):format(ours / least) }
end)
