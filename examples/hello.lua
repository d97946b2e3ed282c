-- examples/hello.lua: lua-asyncio's concurrency at work, in about 1.2 seconds.
--
-- It shows, in order:
--   1. three tasks sleeping at once: the total time is the longest sleep, not
--      the sum; each task returns several values, collected with task:await();
--      meanwhile a timer set with loop:call_later fires between them;
--   2. a task cancelled with a message, catching the CancelledError;
--   3. a timeout written by hand (create_task + call_later + cancel + await),
--      raising asyncio.TimeoutError;
--   4. a to-be-closed variable whose __close awaits while its task fails.
--
-- Run it with `make demo`, or `lua5.4 examples/hello.lua` once the module is
-- on the Lua paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local loop, t0 -- the running loop and the time main started

-- Prints with a timestamp relative to the start, rounded to 0.1 s.
local function log(fmt, ...)
  print(("[%.1f] " .. fmt):format(loop:time() - t0, ...))
end

-- A task body: Python's `async def` is a plain function run inside a task.
local function download(name, seconds)
  asyncio.sleep(seconds)
  log("  %s: done", name)
  return name, math.floor(seconds * 1000 + 0.5) -- several results, no tuple needed
end

-- A hand-made asyncio.wait_for: run fn in its own task and cancel that task
-- when the deadline passes; a task cancelled by the timer means TimeoutError.
local function with_timeout(fn, seconds)
  local task = asyncio.create_task(fn)
  local expired = false
  local timer = loop:call_later(seconds, function()
    expired = true
    task:cancel("deadline passed")
  end)
  local res = table.pack(pcall(task.await, task))
  timer:cancel()
  if res[1] then return table.unpack(res, 2, res.n) end
  if expired and asyncio.isinstance(res[2], asyncio.CancelledError) then
    error(asyncio.TimeoutError(("timed out after %.1f s"):format(seconds)), 2)
  end
  task:cancel() -- we were cancelled (or fn failed): never leave the child behind
  error(res[2], 0)
end

-- Something to close on scope exit, like Python's `async with`: __close may
-- await, and it runs whether the scope ends normally or by an error.
local function open_connection(name)
  log("  %s: open", name)
  return setmetatable({}, {
    __close = function(_, err)
      log("  %s: closing after %s", name, tostring(err))
      asyncio.sleep(0.1) -- a goodbye message, say
      log("  %s: closed", name)
    end,
  })
end

local function main()
  loop = asyncio.get_running_loop()
  t0 = loop:time()

  log("1. three downloads at once (0.3 s, 0.5 s and 0.2 s)")
  loop:call_later(0.4, function() log("  timer: call_later(0.4) fired") end)
  local tasks = {}
  for _, job in ipairs { { "a.txt", 0.3 }, { "b.txt", 0.5 }, { "c.txt", 0.2 } } do
    tasks[#tasks + 1] = asyncio.create_task(download, job[1], job[2])
  end
  for _, task in ipairs(tasks) do
    local name, ms = task:await()
    log("  result: %s after %d ms", name, ms)
  end
  log("  all done in %.1f s: the longest sleep, not the sum (1.0 s)", loop:time() - t0)

  log("2. cancelling a task with a message")
  local sleeper = asyncio.create_task(function()
    local _, err = pcall(asyncio.sleep, 60)
    log("  sleeper caught %s", tostring(err))
    error(err, 0) -- re-raise, as Python code should: the task ends cancelled
  end)
  asyncio.sleep(0.1)
  sleeper:cancel("no longer needed")
  local _, cancelled = pcall(sleeper.await, sleeper)
  log("  sleeper:cancelled() = %s, await raised %s", tostring(sleeper:cancelled()), tostring(cancelled))

  log("3. a timeout by hand (0.3 s)")
  local answer = with_timeout(function()
    asyncio.sleep(0.1)
    return "fast answer"
  end, 0.3)
  log("  quick job: %s", answer)
  local ok, timeout = pcall(with_timeout, function() asyncio.sleep(60) end, 0.3)
  log("  slow job: %s (is a TimeoutError: %s)", ok and "finished?!" or tostring(timeout),
    tostring(asyncio.isinstance(timeout, asyncio.TimeoutError)))

  log("4. a task fails while holding a to-be-closed connection")
  local failing = asyncio.create_task(function()
    local conn <close> = open_connection("db")
    asyncio.sleep(0.1)
    error(asyncio.ValueError("bad reply"))
  end)
  local _, failure = pcall(failing.await, failing)
  log("  the task failed with %s", tostring(failure))

  return loop:time() - t0
end

print(("finished in %.1f s"):format(asyncio.run(main)))
