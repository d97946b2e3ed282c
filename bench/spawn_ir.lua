-- Instructions per spawned task, for callgrind: R rounds of N tasks created
-- and then awaited, as the spawn micro benchmark does. Run with R=1 and R=3;
-- (Ir(3) - Ir(1)) / (2 N) is the cost of one task without start-up:
--   valgrind --tool=callgrind lua5.4 bench/spawn_ir.lua 100000 3
local asyncio = require "asyncio"
local n, rounds = tonumber(arg[1]) or 100000, tonumber(arg[2]) or 1
local function child() return 1 end
asyncio.run(function()
  for _ = 1, rounds do
    local tasks = {}
    for i = 1, n do tasks[i] = asyncio.create_task(child) end
    local sum = 0
    for i = 1, n do sum = sum + tasks[i]:await() end
    assert(sum == n)
  end
end)
