-- gather benchmark: asyncio.gather over 100,000 functions that return at once
-- (each becomes a task, as Python's gather(*coros) wraps coroutines); prints one
-- "RESULT bench=gather ..." line in the shape of micro.lua.
-- usage: lua5.4 bench/gather.lua
-- A warm-up round of n/10, then 3 rounds of n tasks; the median counts.
local asyncio = require "asyncio"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local now, measure, rate_result = common.now, common.measure, common.rate_result
local N = 100000

local function child() return 1 end

local function gather_round(n)
  local t0 = now()
  local aws = {}
  for i = 1, n do aws[i] = child end
  local res = asyncio.gather(aws):await()
  local dt = now() - t0
  local sum = 0
  for i = 1, res.n do sum = sum + res[i] end
  assert(res.n == n and sum == n)
  return dt
end

asyncio.run(function()
  rate_result("gather", N, measure(gather_round, N), "tasks/s")
end)
