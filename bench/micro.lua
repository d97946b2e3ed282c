-- Micro benchmarks of the runtime, in the shape of ../shared/bench/run_micro.sh
-- peers: prints one "RESULT bench=... peer=... ..." line.
-- usage: lua5.4 bench/micro.lua spawn|yield|pingpong|timers|mem_sleep|mem_wait|queue|
--   proc_spawn|proc_spawn_heap|proc_concurrent|pipe_read|thread_roundtrip|thread_parallel
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

-- ---- subprocesses (../shared/bench/README.md: proc_spawn, proc_spawn_heap,
-- proc_concurrent, pipe_read) -------------------------------------------------
local N_PROC, HEAP_MB, N_CONC, PIPE_BYTES = 2000, 512, 200, 512 * 1024 * 1024
local cpu_now = os.clock -- CPU time of this process (all threads), children excluded
local exec = asyncio.create_subprocess_exec

local function median3(t) table.sort(t); return t[2] end

-- n sequential spawn + wait of /bin/true; children inherit fds 0-2
local function proc_round(n)
  local t0 = now()
  for _ = 1, n do assert(exec({ "/bin/true" }):wait() == 0, "child failed") end
  return now() - t0
end

local function proc_spawn(heap)
  local keep, extra = nil, {}
  if heap then
    keep = string.rep("x", HEAP_MB << 20) -- touched by string.rep
    collectgarbage("collect")
    extra.heap_mb, extra.heap_rss_kb = HEAP_MB, status_kb("VmRSS")
  end
  proc_round(N_PROC // 10)
  local c0 = cpu_now()
  local dt = proc_round(N_PROC)
  local cpu = cpu_now() - c0
  local r = { bench = heap and "proc_spawn_heap" or "proc_spawn", peer = PEER, n = N_PROC,
              secs = ("%.4f"):format(dt), rate = ("%.0f"):format(N_PROC / dt), unit = "spawns/s",
              rounds = 1, self_cpu_s = ("%.3f"):format(cpu),
              self_us_per_op = ("%.1f"):format(cpu / N_PROC * 1e6) }
  for k, v in pairs(extra) do r[k] = v end
  if keep then r.check = #keep end
  result(r)
end
function B.proc_spawn() proc_spawn(false) end
function B.proc_spawn_heap() proc_spawn(true) end

local function conc_round(n)
  local t0 = now()
  local list = {}
  for i = 1, n do list[i] = exec({ "/bin/sleep", "0.2" }) end
  for i = 1, n do assert(list[i]:wait() == 0, "child failed") end
  return now() - t0
end

function B.proc_concurrent()
  conc_round(N_CONC // 10)
  local ts, cs = {}, {}
  for r = 1, 3 do
    local c0 = cpu_now()
    ts[r] = conc_round(N_CONC)
    cs[r] = cpu_now() - c0
  end
  local dt, cpu = median3(ts), median3(cs)
  result { bench = "proc_concurrent", peer = PEER, n = N_CONC, secs = ("%.4f"):format(dt),
           rate = ("%.0f"):format(N_CONC / dt), unit = "children/s", rounds = 3, child = "sleep_0.2",
           self_cpu_s = ("%.3f"):format(cpu), self_us_per_op = ("%.1f"):format(cpu / N_CONC * 1e6) }
end

local function pipe_round(nbytes)
  local t0 = now()
  local p = exec({ "/bin/head", "-c", tostring(nbytes), "/dev/zero" },
    { stdout = asyncio.subprocess.PIPE })
  local total, chunks = 0, 0
  while true do
    local chunk = p.stdout:read(65536)
    if chunk == "" then break end
    total, chunks = total + #chunk, chunks + 1
  end
  assert(p:wait() == 0 and total == nbytes, "short read")
  return now() - t0, chunks
end

function B.pipe_read()
  pipe_round(PIPE_BYTES // 8)
  local c0 = cpu_now()
  local dt, chunks = pipe_round(PIPE_BYTES)
  local cpu = cpu_now() - c0
  local mbps = PIPE_BYTES / 1048576 / dt
  result { bench = "pipe_read", peer = PEER, n = PIPE_BYTES, secs = ("%.4f"):format(dt),
           mbps = ("%.0f"):format(mbps), rate = ("%.0f"):format(mbps), unit = "MiB/s", rounds = 1,
           bytes = PIPE_BYTES, chunks = chunks, avg_chunk = ("%.0f"):format(PIPE_BYTES / chunks),
           chan = "pipe", self_cpu_s = ("%.3f"):format(cpu) }
end

-- ---- threads (../shared/bench/README.md: thread_roundtrip, thread_parallel) --------
local N_RT, PAR_JOBS, PAR_ITERS = 20000, 8, 30000000 -- ~0.25 s per job in Lua 5.4 here
-- the default executor's width, min(32, ncpu + 4), ncpu ignoring affinity
local function default_workers()
  local p = io.popen("nproc --all")
  local n = tonumber(p:read("a")) or 1
  p:close()
  return math.min(32, n + 4)
end

-- x -> x + 1 in the default executor, one at a time
local function rt_round(n)
  local to_thread = asyncio.to_thread
  local t0 = now()
  for i = 1, n do
    if to_thread(function(x) return x + 1 end, i) ~= i + 1 then error("bad result") end
  end
  return now() - t0
end

function B.thread_roundtrip()
  local dt = measure(rt_round, N_RT)
  common.rate_result("thread_roundtrip", N_RT, dt, "roundtrips/s",
    { us_per_op = ("%.2f"):format(dt / N_RT * 1e6), workers = default_workers(), note = "to_thread" })
end

-- the CPU-bound job (same recurrence in every peer)
local function cpu_job(n)
  local s = 0
  for i = 0, n - 1 do s = (s * 31 + i) & 0xFFFFFFF end
  return s
end

-- k jobs at once in the default executor (as to_thread uses): wall secs and one result
local function par_round(k, n)
  local loop = asyncio.get_running_loop()
  local t0 = now()
  local futs = {}
  for i = 1, k do futs[i] = loop:run_in_executor(nil, cpu_job, n) end
  local r
  for i = 1, k do r = futs[i]:await() end
  return now() - t0, r
end

function B.thread_parallel()
  local n = PAR_ITERS
  par_round(PAR_JOBS, n // 20)
  local single = math.min((par_round(1, n)), (par_round(1, n)), (par_round(1, n)))
  local wall, check = par_round(PAR_JOBS, n)
  result { bench = "thread_parallel", peer = PEER, n = n, jobs = PAR_JOBS, secs = ("%.4f"):format(wall),
           job_s = ("%.4f"):format(single), speedup = ("%.2f"):format(PAR_JOBS * single / wall),
           unit = "x", workers = default_workers(), check = check, note = "default-executor" }
end

local bench = B[arg[1] or ""]
if not bench then
  io.stderr:write("usage: micro.lua spawn|yield|pingpong|timers|mem_sleep|mem_wait|queue|"
    .. "proc_spawn|proc_spawn_heap|proc_concurrent|pipe_read|thread_roundtrip|thread_parallel\n")
  os.exit(2)
end
asyncio.run(bench)
