-- gather benchmark: asyncio.gather over 100,000 functions that return at once
-- (each becomes a task, as Python's gather(*coros) wraps coroutines); prints one
-- "RESULT bench=gather ..." line in the shape of micro.lua.
-- usage: lua5.4 bench/gather.lua
-- A warm-up round of n/10, then 3 rounds of n tasks; the median counts.
local asyncio = require "asyncio"

local PEER = "lua-asyncio"
local ROUNDS = 3
local N = 100000

local function now() return asyncio.get_running_loop():time() end

local function measure(round_fn, n)
  round_fn(math.max(1, n // 10))
  local ts = {}
  for i = 1, ROUNDS do ts[i] = round_fn(n) end
  table.sort(ts)
  return ts[ROUNDS // 2 + 1]
end

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
  local dt = measure(gather_round, N)
  io.stdout:write(("RESULT bench=gather peer=%s n=%d secs=%.4f rate=%.0f unit=tasks/s rounds=%d\n")
    :format(PEER, N, dt, N / dt, ROUNDS))
end)
