-- Micro benchmarks of the runtime, in the shape of ../shared/bench/run_micro.sh
-- peers: prints one "RESULT bench=... peer=... ..." line.
-- usage: lua5.4 bench/micro.lua spawn|yield|pingpong|timers|mem_sleep|mem_wait|queue
-- Throughput benches run a warm-up round of n/10, then 3 rounds of n, and
-- report the median round.
local asyncio = require "asyncio"

local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local PEER = common.PEER
local now, status_kb, result = common.now, common.status_kb, common.result
local measure, rate_result = common.measure, common.rate_result
local N_SPAWN, N_SWITCH, N_TIMERS, N_MEM, N_QUEUE = 100000, 1000000, 1000000, 100000, 1000000

local B = {}

local function child() return 1 end

local function spawn_round(n)
  local create_task = asyncio.create_task
  local t0 = now()
  local tasks = {}
  for i = 1, n do tasks[i] = create_task(child) end
  local sum = 0
  for i = 1, n do sum = sum + tasks[i]:await() end
  local dt = now() - t0
  assert(sum == n)
  return dt
end

function B.spawn() rate_result("spawn", N_SPAWN, measure(spawn_round, N_SPAWN), "tasks/s") end

local function yield_round(n)
  local sleep = asyncio.sleep
  local t0 = now()
  for _ = 1, n do sleep(0) end
  return now() - t0
end

function B.yield() rate_result("yield", N_SWITCH, measure(yield_round, N_SWITCH), "switches/s") end

-- Two tasks hand control back and forth through a pair of asyncio.Event, as
-- the peers do (n counts handoffs).
local function pingpong_round(n)
  local rounds = n // 2
  local a, b = asyncio.Event(), asyncio.Event()
  local pong = asyncio.create_task(function()
    for _ = 1, rounds do
      a:wait()
      a:clear()
      b:set()
    end
  end)
  local t0 = now()
  for _ = 1, rounds do
    a:set()
    b:wait()
    b:clear()
  end
  pong:await()
  return now() - t0
end

function B.pingpong() rate_result("pingpong", N_SWITCH, measure(pingpong_round, N_SWITCH), "switches/s") end

-- One producer and one consumer through a bounded queue.
local function queue_round(n)
  local q = asyncio.Queue(100)
  local producer = asyncio.create_task(function()
    local put = q.put
    for i = 1, n do put(q, i) end
  end)
  local get, sum = q.get, 0
  local t0 = now()
  for _ = 1, n do sum = sum + get(q) end
  producer:await()
  local dt = now() - t0
  assert(sum == n * (n + 1) // 2)
  return dt
end

function B.queue() rate_result("queue", N_QUEUE, measure(queue_round, N_QUEUE), "items/s") end

function B.timers()
  local n = N_TIMERS
  local loop = asyncio.get_running_loop()
  local done = loop:create_future()
  local fired = 0
  local function cb()
    fired = fired + 1
    if fired == n then done:set_result(now()) end
  end
  math.randomseed(12345)
  local rnd = math.random
  local base = status_kb("VmRSS")
  local t0 = now()
  for _ = 1, n do loop:call_later(rnd(), cb) end
  local t_sched = now()
  local t_last = done:await()
  result { bench = "timers", peer = PEER, n = n, secs = ("%.3f"):format(t_last - t0),
           rate = ("%.0f"):format(n / (t_last - t0)), unit = "timers/s",
           total_s = ("%.3f"):format(t_last - t0), sched_s = ("%.3f"):format(t_sched - t0),
           peak_rss_kb = status_kb("VmHWM"), base_rss_kb = base }
end

local function mem(mode)
  local n = N_MEM
  local loop = asyncio.get_running_loop()
  local ev = loop:create_future()
  local started = 0
  local body
  if mode == "sleep" then
    body = function() started = started + 1; asyncio.sleep(10) end
  else
    body = function() started = started + 1; ev:await() end
  end
  collectgarbage("collect"); collectgarbage("collect")
  local before, heap0 = status_kb("VmRSS"), collectgarbage("count")
  local t0 = now()
  local tasks = {}
  for i = 1, n do tasks[i] = asyncio.create_task(body) end
  while started < n do asyncio.sleep(0) end
  asyncio.sleep(0)
  local dt = now() - t0
  collectgarbage("collect"); collectgarbage("collect")
  local after, heap1 = status_kb("VmRSS"), collectgarbage("count")
  result { bench = "mem_" .. mode, peer = PEER, n = n, secs = ("%.3f"):format(dt),
           rate = ("%.0f"):format(n / dt), unit = "tasks/s",
           rss_bytes_per_task = ("%.0f"):format((after - before) * 1024 / n),
           heap_bytes_per_task = ("%.0f"):format((heap1 - heap0) * 1024 / n),
           rss_before_kb = before, rss_after_kb = after, peak_rss_kb = status_kb("VmHWM") }
  assert(#tasks == n)
  os.exit(0) -- do not wait 10 s or tear down 100k tasks
end

function B.mem_sleep() mem("sleep") end
function B.mem_wait() mem("wait") end

local bench = B[arg[1] or ""]
if not bench then
  io.stderr:write("usage: micro.lua spawn|yield|pingpong|timers|mem_sleep|mem_wait|queue\n")
  os.exit(2)
end
asyncio.run(bench)
