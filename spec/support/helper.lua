-- Test helper:  local helper = require "helper"
--
-- helper.run(fn [, timeout]) runs fn as the main task of a fresh event loop,
-- like asyncio.run(fn), and returns what fn returned; errors raised by fn
-- propagate unchanged (so busted assertions still count as failures). If fn
-- has not finished after `timeout` seconds (default helper.timeout), the task
-- is cancelled, the loop closed, and the error "test timed out after N s" is
-- raised, so a hang fails one test instead of blocking the whole suite.
local asyncio = require "asyncio"

local helper = { timeout = 10 }

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
  local closed, close_err = pcall(loop.close, loop)
  asyncio.set_event_loop(nil)
  if hung then
    error(string.format("test timed out after %g s", timeout), 2)
  end
  if not res[1] then
    error(res[2], 0)
  end
  if not closed then
    error(close_err, 0)
  end
  return table.unpack(res, 2, res.n)
end

return helper
