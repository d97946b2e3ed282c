-- Error paths: building an error object, a task cancelled at its await, a
-- wait_for that times out. Each builds one error object with its traceback,
-- which is what these cost most; bench/errors.py runs the same in Python.
-- usage: lua5.4 bench/errors.lua [error|cancel|timeout]  (default: all three)
local asyncio = require "asyncio"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local now, measure, rate_result = common.now, common.measure, common.rate_result

local function error_round(n)
  local ValueError = asyncio.ValueError
  local t0 = now()
  for _ = 1, n do ValueError("x") end
  return now() - t0
end

local function cancel_round(n)
  local create_task, sleep = asyncio.create_task, asyncio.sleep
  local function body() sleep(10) end
  local t0 = now()
  for _ = 1, n do
    local t = create_task(body)
    sleep(0)
    t:cancel()
    assert(not pcall(t.await, t))
  end
  return now() - t0
end

local function timeout_round(n)
  local loop, wait_for = asyncio.get_running_loop(), asyncio.wait_for
  local t0 = now()
  for _ = 1, n do
    local ok, e = pcall(wait_for, loop:create_future(), 0)
    assert(not ok and asyncio.isinstance(e, asyncio.TimeoutError))
  end
  return now() - t0
end

local BENCHES = {
  { "error", error_round, 100000, "errors/s" },
  { "cancel", cancel_round, 20000, "tasks/s" },
  { "timeout", timeout_round, 20000, "timeouts/s" },
}

asyncio.run(function()
  for _, b in ipairs(BENCHES) do
    if not arg[1] or arg[1] == b[1] then rate_result(b[1], b[3], measure(b[2], b[3]), b[4]) end
  end
end)
