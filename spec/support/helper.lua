-- Test helper:  local helper = require "helper"
--
-- helper.run(fn [, timeout]) runs fn as the main task of a fresh event loop,
-- like asyncio.run(fn), and returns every value fn returned; errors raised by
-- fn propagate unchanged (so busted assertions still count as failures). If
-- fn has not finished after `timeout` seconds (default helper.timeout), the
-- task is cancelled, the loop closed, and the error "test timed out after N s"
-- is raised, so a hang fails one test instead of blocking the whole suite.
--
-- helper.with_loop(fn [, timeout]) is for tests that drive a loop by hand:
-- it calls fn(loop) with a fresh loop (also set as the current event loop)
-- that has a watchdog: after `timeout` seconds the watchdog stops the loop,
-- so a run_forever/run_until_complete that would hang returns. The loop is
-- closed afterwards whatever happened (unless fn closed it), and a timeout is
-- reported as "test timed out after N s". Returns what fn returned.
--
-- helper.capture_log([fn]) installs an asyncio.logger handler that records
-- every message as {level = , msg = } and returns the list. With fn, it runs
-- fn(list) and restores the default handler afterwards (also on error), and
-- returns what fn returned; without fn, call helper.restore_log() yourself.
--
-- helper.new_loop() makes a loop that helper.close_loops() (an after_each
-- hook) closes, for loops made outside with_loop.
--
-- helper.pid() is the process id (from /proc/self/stat), helper.now() the
-- loop clock outside any loop, helper.busy(s) spins for s seconds without
-- yielding, helper.gc() runs full collections.
local asyncio = require "asyncio"

local helper = { timeout = 10 }

local function finish(res, timed_out, timeout, close_ok, close_err)
  if timed_out then
    error(string.format("test timed out after %g s", timeout), 3)
  end
  if not res[1] then
    error(res[2], 0)
  end
  if not close_ok then
    error(close_err, 0)
  end
  return table.unpack(res, 2, res.n)
end

function helper.run(fn, timeout)
  timeout = timeout or helper.timeout
  local loop = asyncio.new_event_loop()
  asyncio.set_event_loop(loop)
  local timed_out = false
  local timer = loop:call_later(timeout, function()
    timed_out = true
    loop:stop()
  end)
  local task = loop:create_task(fn)
  local res = table.pack(pcall(loop.run_until_complete, loop, task))
  timer:cancel()
  local hung = timed_out and not task:done()
  if hung then
    task:cancel()
  end
  local closed, close_err = true, nil
  if not loop:is_closed() then
    closed, close_err = pcall(loop.close, loop)
  end
  asyncio.set_event_loop(nil)
  return finish(res, hung, timeout, closed, close_err)
end

function helper.with_loop(fn, timeout)
  timeout = timeout or helper.timeout
  local loop = asyncio.new_event_loop()
  asyncio.set_event_loop(loop)
  local timed_out = false
  local watchdog = loop:call_later(timeout, function()
    timed_out = true
    loop:stop()
  end)
  local res = table.pack(pcall(fn, loop, watchdog))
  local closed, close_err = true, nil
  if not loop:is_closed() then
    watchdog:cancel()
    if loop:is_running() then -- fn escaped from inside the loop: cannot close
      loop:stop()
    else
      closed, close_err = pcall(loop.close, loop)
    end
  end
  asyncio.set_event_loop(nil)
  return finish(res, timed_out, timeout, closed, close_err)
end

local extra_loops = {}

-- a new loop that helper.close_loops() closes (use after_each(helper.close_loops)),
-- so a test that fails half-way leaves no open loop behind
function helper.new_loop()
  local loop = asyncio.new_event_loop()
  extra_loops[#extra_loops + 1] = loop
  return loop
end

function helper.close_loops()
  for i = #extra_loops, 1, -1 do
    local loop = extra_loops[i]
    extra_loops[i] = nil
    if not loop:is_closed() and not loop:is_running() then
      pcall(loop.close, loop)
    end
  end
  asyncio.set_event_loop(nil)
end

function helper.capture_log(fn)
  local records = {}
  asyncio.logger.set_handler(function(level, msg)
    records[#records + 1] = { level = level, msg = msg }
  end)
  if not fn then
    return records
  end
  local res = table.pack(pcall(fn, records))
  asyncio.logger.set_handler(nil)
  if not res[1] then
    error(res[2], 0)
  end
  return table.unpack(res, 2, res.n)
end

function helper.restore_log()
  asyncio.logger.set_handler(nil)
end

-- the records whose message contains `needle` (plain text)
function helper.grep(records, needle)
  local found = {}
  for _, r in ipairs(records) do
    if tostring(r.msg):find(needle, 1, true) then
      found[#found + 1] = r
    end
  end
  return found
end

function helper.pid()
  local f = assert(io.open("/proc/self/stat"))
  local line = f:read("l")
  f:close()
  return assert(tonumber(line:match("^(%d+)")))
end

-- monotonic seconds (the loop clock), usable outside any loop
function helper.now()
  local loop = asyncio.new_event_loop()
  local t = loop:time()
  loop:close()
  return t
end

function helper.busy(seconds)
  local t0 = os.clock()
  local deadline = os.time() + seconds + 2 -- wall-clock cap, in case of a stopped clock
  while os.clock() - t0 < seconds and os.time() <= deadline do
  end
end

function helper.gc()
  for _ = 1, 4 do
    collectgarbage("collect")
  end
end

return helper
