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
-- Both take a third argument, options for new_event_loop: with
-- {clock = "virtual"} the loop has the virtual clock, and the timeout is
-- still real seconds (a C watchdog, loop:_watchdog, since the loop's own
-- timers follow its clock). helper.vrun(fn [, timeout]) and
-- helper.with_vloop(fn [, timeout]) are the short forms.
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
-- yielding, helper.gc() runs full collections, helper.open_fds() counts the
-- process's open file descriptors, helper.tmpdir() makes a fresh directory.
--
-- Shortcuts and assertions shared by the specs: helper.runner(timeout) (run
-- with another timeout), helper.loop(), helper.current(), helper.sleep0(n),
-- helper.sleeper(delay, ...), helper.within(secs, fn),
-- helper.wait_until(pred, secs), helper.is(cls, e),
-- helper.err_of(fn, ...), helper.assert_class(cls, e), helper.stream_echo(_quiet) and
-- helper.await_cancelled(t); each is described where it is defined.
local asyncio = require "asyncio"
local luassert = require "luassert"

-- helper.slowdown: how many times slower than native the process runs (the
-- valgrind pass sets ASYNCIO_TEST_SLOWDOWN); every watchdog is that much longer
local helper = { timeout = 10, slowdown = tonumber(os.getenv("ASYNCIO_TEST_SLOWDOWN")) or 1 }

local function finish(res, timed_out, timeout, close_ok, close_err)
  if timed_out then
    error(string.format("test timed out after %g s", timeout * helper.slowdown), 3)
  end
  if not res[1] then
    error(res[2], 0)
  end
  if not close_ok then
    error(close_err, 0)
  end
  return table.unpack(res, 2, res.n)
end

-- A watchdog that stops `loop` after `timeout` real seconds: a timer of the
-- loop's on the real clock, the C one on a virtual clock. Returns a function
-- that disarms it and tells whether it fired, and the timer (nil for the C one).
local function arm_watchdog(loop, timeout, opts)
  timeout = timeout * helper.slowdown
  if opts and opts.clock == "virtual" then
    loop:_watchdog(timeout)
    return function() return loop:_watchdog(nil) end, nil
  end
  local timed_out = false
  local timer = loop:call_later(timeout, function()
    timed_out = true
    loop:stop()
  end)
  return function()
    if not loop:is_closed() then timer:cancel() end
    return timed_out
  end, timer
end

function helper.run(fn, timeout, opts)
  timeout = timeout or helper.timeout
  local loop = asyncio.new_event_loop(opts)
  asyncio.set_event_loop(loop)
  local disarm = arm_watchdog(loop, timeout, opts)
  local task = loop:create_task(fn)
  local res = table.pack(pcall(loop.run_until_complete, loop, task))
  local timed_out = disarm()
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

-- helper.run with another default timeout: local run = helper.runner(5)
function helper.runner(timeout)
  return function(fn)
    return helper.run(fn, timeout)
  end
end

-- helper.run on a virtual clock
function helper.vrun(fn, timeout)
  return helper.run(fn, timeout, { clock = "virtual" })
end

-- helper.vrun with another default timeout (real seconds)
function helper.vrunner(timeout)
  return function(fn)
    return helper.vrun(fn, timeout)
  end
end

function helper.with_loop(fn, timeout, opts)
  timeout = timeout or helper.timeout
  local loop = asyncio.new_event_loop(opts)
  asyncio.set_event_loop(loop)
  local disarm, watchdog = arm_watchdog(loop, timeout, opts)
  local res = table.pack(pcall(fn, loop, watchdog))
  local timed_out = disarm()
  local closed, close_err = true, nil
  if not loop:is_closed() then
    if loop:is_running() then -- fn escaped from inside the loop: cannot close
      loop:stop()
    else
      closed, close_err = pcall(loop.close, loop)
    end
  end
  asyncio.set_event_loop(nil)
  return finish(res, timed_out, timeout, closed, close_err)
end

-- helper.with_loop on a virtual clock
function helper.with_vloop(fn, timeout)
  return helper.with_loop(fn, timeout, { clock = "virtual" })
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

---------------------------------------------------------------------------
-- Inside a task

function helper.loop()
  return asyncio.get_running_loop()
end

function helper.current()
  return asyncio.current_task()
end

-- `times` turns of the loop (default 1)
function helper.sleep0(times)
  for _ = 1, times or 1 do asyncio.sleep(0) end
end

-- a function that sleeps `delay` then returns its values
function helper.sleeper(delay, ...)
  local values = table.pack(...)
  return function()
    asyncio.sleep(delay)
    return table.unpack(values, 1, values.n)
  end
end

-- Runs fn() in the current task, cancelling it after `secs` as
-- asyncio.timeout does; returns false on timeout, true otherwise.
function helper.within(secs, fn)
  local me = asyncio.current_task()
  local fired = false
  local timer = asyncio.get_running_loop():call_later(secs, function()
    fired = true
    me:cancel()
  end)
  local ok, err = pcall(fn)
  timer:cancel()
  if ok then return true end
  if fired and asyncio.isinstance(err, asyncio.CancelledError) and me:uncancel() == 0 then return false end
  error(err, 0)
end

---------------------------------------------------------------------------
-- Inside a task: sleeps in 1 ms steps until pred() is true; fails the test
-- after `secs` (default 5).
function helper.wait_until(pred, secs)
  local loop = asyncio.get_running_loop()
  local deadline = loop:time() + (secs or 5)
  while not pred() do
    if loop:time() > deadline then error("condition not reached", 2) end
    asyncio.sleep(0.001)
  end
end

-- "fd -> target" for each open descriptor of this process, leaving out the
-- pipe the listing itself comes through: popen's child may list the parent
-- before the parent has closed its copy of the write end (1 listing in 25
-- counts one descriptor too many otherwise).
local function fd_lines()
  local p = io.popen("own=$(readlink /proc/$$/fd/1); ls -l /proc/" .. helper.pid() ..
                     "/fd | grep -F -e ' -> ' | grep -v -F -e \"$own\"")
  local out = {}
  for line in p:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd then out[#out + 1] = fd .. " -> " .. target end
  end
  p:close()
  return out
end

function helper.open_fds()
  return #fd_lines()
end

-- What a leak check shows on failure.
function helper.fd_list()
  return table.concat(fd_lines(), "\n")
end

function helper.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

local function echo_chunks(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data)
    writer:drain()
  end
end

-- A start_server callback that echoes every chunk until EOF, then closes.
function helper.stream_echo(reader, writer)
  echo_chunks(reader, writer)
  writer:close()
end

-- helper.stream_echo for peers that reset or break TLS: a connection error
-- ends it quietly.
function helper.stream_echo_quiet(reader, writer)
  pcall(echo_chunks, reader, writer)
  writer:close()
end

-- Errors

function helper.is(cls, e)
  return asyncio.isinstance(e, cls)
end

-- the error fn(...) raises; fails the test when it raises nothing
function helper.err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok, "expected an error")
  return err
end

function helper.assert_class(cls, e)
  luassert.is_true(asyncio.isinstance(e, cls), "got " .. tostring(e))
end

-- awaits task t, which must end cancelled; returns the CancelledError
function helper.await_cancelled(t)
  local ok, e = pcall(t.await, t)
  luassert.is_false(ok, "task was not cancelled")
  helper.assert_class(asyncio.CancelledError, e)
  luassert.is_true(t:cancelled())
  return e
end

-- Checks a waitlist's table against its layout (core.waitlist_slots): tasks
-- only in the slots head..last, as many as it counts; returns that count.
function helper.check_waitlist(w)
  local core = require "asyncio.core"
  local head, last, holes = core.waitlist_slots(w)
  local n = 0
  for k in pairs(debug.getuservalue(w, 1) or {}) do
    assert(math.type(k) == "integer" and k >= head and k <= last,
      ("waiter at slot %s, outside %d..%d"):format(tostring(k), head, last))
    n = n + 1
  end
  assert(n == last - head + 1 - holes, ("%d waiters in the table, the layout says %d"):format(n, last - head + 1 - holes))
  assert(n == core.waiting(w))
  return n
end

-- helper.recorder([on]): a protocol table recording every callback (events,
-- data, made, lost, err, transport, lost_fut resolved by connection_lost,
-- text()); `on.made/data/eof` add behaviour to those callbacks.
function helper.recorder(on)
  on = on or {}
  local p = { events = {}, data = {}, made = 0, lost = 0 }
  function p:connection_made(t)
    self.made = self.made + 1
    self.transport = t
    self.events[#self.events + 1] = "made"
    if on.made then on.made(self, t) end
  end
  function p:data_received(d)
    self.data[#self.data + 1] = d
    if on.data then on.data(self, d) end
  end
  function p:eof_received()
    self.events[#self.events + 1] = "eof"
    if on.eof then return on.eof(self) end
  end
  function p:connection_lost(e)
    self.lost = self.lost + 1
    self.err = e
    self.events[#self.events + 1] = "lost"
    if self.lost_fut and not self.lost_fut:done() then self.lost_fut:set_result(e) end
  end
  function p:pause_writing() self.events[#self.events + 1] = "pause" end
  function p:resume_writing() self.events[#self.events + 1] = "resume" end
  function p:text() return table.concat(self.data) end
  p.lost_fut = asyncio.get_event_loop():create_future()
  return p
end

return helper
