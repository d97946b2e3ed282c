-- Combinators over futures and tasks: gather, wait, wait_for, as_completed,
-- shield (the behaviour of Python's asyncio/tasks.py, 3.12).

--- Combinators: `gather`, `wait`, `wait_for`, `as_completed`, `shield`.
-- @module asyncio

--- `return_when` values of `wait`: the strings of their names.
-- @table FIRST_COMPLETED
-- @python asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION, asyncio.ALL_COMPLETED
-- @field FIRST_COMPLETED when any awaitable finishes or is cancelled
-- @field FIRST_EXCEPTION when any fails, else when all finish
-- @field ALL_COMPLETED when all finish (the default)

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local timeouts = require "asyncio.timeouts"
local graph = require "asyncio.graph"

local isfuture, on_cancel = core.isfuture, core.Future_on_cancel
local isinstance = errors.isinstance
local CancelledError, TimeoutError = errors.CancelledError, errors.TimeoutError

-- Future methods work on tasks too; locals spare a lookup per child.
local Future = core.Future
local fut_done, fut_result, fut_exception = Future.done, Future.result, Future.exception
local fut_cancel, fut_get_loop, fut_add_done_callback = Future.cancel, Future.get_loop, Future.add_done_callback

local FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED = "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"

local function typename(v)
  if isfuture(v) then return "Future" end
  return type(v)
end

local function check_list(v, fname)
  if type(v) ~= "table" then
    error(("bad argument #1 to '%s' (list expected, got %s)"):format(fname, typename(v)), 3)
  end
  return v.n or #v
end

local function check_opts(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  return opts or {}
end

local function check_timeout(timeout, fname, narg)
  if timeout ~= nil and type(timeout) ~= "number" then
    error(("bad argument #%d to '%s' (timeout: number expected, got %s)"):format(narg, fname, type(timeout)), 3)
  end
end

-- The loop of a call made outside any task (gather, as_completed, shield):
-- the running loop, else the current one.
local function event_loop()
  local loop = core.get_running_loop() or core._get_event_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 3) end
  return loop
end

-- For the functions that suspend: checked before they create anything.
local function task_loop(api)
  local loop = core.get_running_loop()
  if loop == nil or core.current_task(loop) == nil then
    error(errors.RuntimeError(api .. " called outside a task"), 3)
  end
  return loop
end

-- The loop of the first future in the list, as Python's gather picks it.
local function loop_of(aws, n)
  for i = 1, n do
    if isfuture(aws[i]) then return fut_get_loop(aws[i]) end
  end
  return event_loop()
end

-- An awaitable as a future of `loop`: a function becomes a new task. `i`
-- is its place in the argument list, if it came in one.
local function ensure_future(aw, loop, fname, i)
  if isfuture(aw) then
    if fut_get_loop(aw) ~= loop then
      error(errors.ValueError("The future belongs to a different loop than the one specified as the loop argument"), 3)
    end
    return aw
  elseif type(aw) == "function" then
    return loop:create_task(aw)
  end
  local where = i and ("item %d: "):format(i) or ""
  error(("bad argument #1 to '%s' (%sFuture, Task or function expected, got %s)"):format(fname, where, type(aw)), 3)
end

-- ------------------------------------------------------------------------
-- gather

-- The first value of each child, in order; with return_exceptions a failed
-- or cancelled child gives its error instead.
local function collect(children, n, return_exceptions)
  local res = { n = n }
  if return_exceptions then
    for i = 1, n do
      local _, v = pcall(fut_result, children[i])
      res[i] = v
    end
  else
    for i = 1, n do res[i] = fut_result(children[i]) end
  end
  return res
end

-- The message of a CancelledError, as cancel() takes it.
local function cancel_message(err)
  if isinstance(err, CancelledError) and err.message ~= "" then return err.message end
end

-- Ends a future that has a cancel hook as cancelled: without the hook,
-- cancel() is the plain one.
local function end_cancelled(fut, msg)
  on_cancel(fut, nil)
  fut_cancel(fut, msg)
end

-- Python's _GatheringFuture: a plain Future whose cancel() (a hook the core
-- calls instead of cancelling it, also when a task awaiting it is cancelled)
-- cancels the children; it returns whether any child was cancelled, and the
-- future ends once the children tell: at the first child to fail or be
-- cancelled, or after all of them with return_exceptions. Where Python's
-- gathering future would hold a child's CancelledError as its exception,
-- this one ends cancelled. One done callback serves every child.

--- A future of every child's first value, in the order given:
-- `{r1, r2, ..., n = N}`. Cancelling it cancels all children.
-- @function gather
-- @python asyncio.gather
-- @tparam {Future|function,...} aws the awaitables (one list)
-- @tparam[opt] table opts `return_exceptions = true`: a failed child gives its error instead
-- @treturn Future
-- @raise ValueError when the futures belong to different loops; the first child's error when its result is taken
local function gather(aws, opts)
  local n = check_list(aws, "gather")
  local return_exceptions = check_opts(opts, "gather").return_exceptions and true or false
  local loop = loop_of(aws, n)
  local outer = loop:create_future()
  if n == 0 then
    outer:set_result({ n = 0 })
    return outer
  end

  local children = {}
  local nfinished = 0
  local cancel_requested, cancel_msg = false, nil
  local settled = false -- the outcome is decided; later children are only looked at

  local function child_done(child)
    nfinished = nfinished + 1
    -- also marks the exception as retrieved: gather reports it, or drops it
    local ok, exc = pcall(fut_exception, child)
    if settled then return end
    local failed = not return_exceptions and (not ok or exc ~= nil)
    if not failed and nfinished < n then return end
    settled = true
    if fut_done(outer) then return end -- its user finished it
    if failed and not ok then -- cancelled: exc is its CancelledError
      end_cancelled(outer, cancel_message(exc))
    elseif failed then
      outer:set_exception(exc)
    elseif cancel_requested then
      end_cancelled(outer, cancel_msg)
    else
      outer:set_result(collect(children, n, return_exceptions))
    end
  end

  -- A child's outcome that cannot be handled (out of memory) fails the
  -- gather: nothing else would end it, and its awaiter would wait forever.
  -- A to-be-closed guard rather than a pcall: calling pcall may be what
  -- runs out of memory.
  local guard = setmetatable({}, { __close = function(_, err)
    if err ~= nil then
      settled = true
      if not fut_done(outer) then outer:set_exception(err) end
    end
  end })
  local function on_child_done(child)
    local _ <close> = guard
    child_done(child)
  end

  for i = 1, n do
    local child = ensure_future(aws[i], loop, "gather", i)
    children[i] = child
    if fut_done(child) then
      on_child_done(child)
    else
      fut_add_done_callback(child, on_child_done)
    end
  end
  if settled then return outer end

  on_cancel(outer, function(_, msg)
    local any = false
    for i = 1, n do
      if fut_cancel(children[i], msg) then any = true end
    end
    -- it then ends cancelled, even with return_exceptions (bpo-32684)
    if any then cancel_requested, cancel_msg = true, msg end
    return any
  end)
  graph._proxy(outer, children) -- for call graphs: its awaiters await the children
  return outer
end

-- ------------------------------------------------------------------------
-- wait

local function release(waiter)
  if not fut_done(waiter) then waiter:set_result() end
end

--- Waits for the awaitables; cancels nothing.
-- @function wait
-- @python asyncio.wait
-- @tparam {Future|function,...} aws the awaitables (not empty)
-- @tparam[opt] table opts `timeout` (seconds), `return_when` (`FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`)
-- @treturn {Future,...} done
-- @treturn {Future,...} pending
-- @raise ValueError for an empty list or a bad `return_when`; RuntimeError outside a task
local function wait(aws, opts)
  local n = check_list(aws, "wait")
  opts = check_opts(opts, "wait")
  local timeout, return_when = opts.timeout, opts.return_when or ALL_COMPLETED
  check_timeout(timeout, "wait", 2)
  if n == 0 then error(errors.ValueError("Set of Tasks/Futures is empty."), 2) end
  if return_when ~= FIRST_COMPLETED and return_when ~= FIRST_EXCEPTION and return_when ~= ALL_COMPLETED then
    error(errors.ValueError("Invalid return_when value: " .. tostring(return_when)), 2)
  end
  local loop = task_loop("asyncio.wait")

  local fs, seen = {}, {}
  for i = 1, n do
    local f = ensure_future(aws[i], loop, "wait", i)
    if not seen[f] then
      seen[f] = true
      fs[#fs + 1] = f
    end
  end

  local waiter = loop:create_future()
  local counter = #fs
  local handle
  local function on_completion(f)
    counter = counter - 1
    if counter <= 0 or return_when == FIRST_COMPLETED
        or (return_when == FIRST_EXCEPTION and not f:cancelled() and f:exception() ~= nil) then
      if handle ~= nil then handle:cancel() end
      release(waiter)
    end
  end
  for _, f in ipairs(fs) do fut_add_done_callback(f, on_completion) end
  if timeout ~= nil then handle = loop:call_later(timeout, release, waiter) end
  graph._proxy(waiter, fs)

  local ok, err = pcall(waiter.await, waiter)
  if handle ~= nil then handle:cancel() end
  for _, f in ipairs(fs) do f:remove_done_callback(on_completion) end
  if not ok then error(err, 0) end

  local done, pending = {}, {}
  for _, f in ipairs(fs) do
    if fut_done(f) then done[#done + 1] = f else pending[#pending + 1] = f end
  end
  return done, pending
end

-- ------------------------------------------------------------------------
-- wait_for

-- Cancels fut and waits until it is done, without awaiting fut itself, so
-- the caller stays cancellable even when fut ignores the cancellation.
local function cancel_and_wait(fut, loop)
  local waiter = loop:create_future()
  local function cb() release(waiter) end
  fut_add_done_callback(fut, cb)
  fut:cancel()
  local ok, err = pcall(waiter.await, waiter)
  fut:remove_done_callback(cb)
  if not ok then error(err, 0) end
end

--- The values of `aw`; on timeout cancels `aw`, waits for it and raises.
-- A result `aw` delivers while being cancelled for the timeout (it caught
-- the cancellation) is returned, as in Python 3.12.
-- @function wait_for
-- @python asyncio.wait_for
-- @param aw an awaitable
-- @tparam ?number timeout seconds; nil waits forever
-- @return ... the values of `aw`
-- @raise TimeoutError on timeout; RuntimeError outside a task; what `aw` raised
local function wait_for(aw, timeout)
  check_timeout(timeout, "wait_for", 2)
  local loop = task_loop("asyncio.wait_for")
  local fut = ensure_future(aw, loop, "wait_for")
  if timeout == nil then return fut:await() end

  if timeout <= 0 then
    if fut_done(fut) then return fut_result(fut) end
    cancel_and_wait(fut, loop)
    local res = table.pack(pcall(fut_result, fut))
    if res[1] then return table.unpack(res, 2, res.n) end
    if isinstance(res[2], CancelledError) then error(TimeoutError(nil, { cause = res[2] }), 2) end
    error(res[2], 0)
  end

  local _ <close> = timeouts.timeout(timeout)
  return fut:await()
end

-- ------------------------------------------------------------------------
-- as_completed

--- An iterator of futures in completion order:
-- `for f in asyncio.as_completed(list) do local v = f:await() end`.
-- @function as_completed
-- @python asyncio.as_completed
-- @tparam {Future|function,...} aws the awaitables
-- @tparam[opt] table opts `timeout` (seconds)
-- @treturn function the iterator
-- @raise TimeoutError from each step after the timeout passed
local function as_completed(aws, opts)
  local n = check_list(aws, "as_completed")
  local timeout = check_opts(opts, "as_completed").timeout
  check_timeout(timeout, "as_completed", 2)
  local loop = loop_of(aws, n)

  local order, todo, ntodo = {}, {}, 0
  for i = 1, n do
    local f = ensure_future(aws[i], loop, "as_completed", i)
    if not todo[f] then
      todo[f] = true
      ntodo = ntodo + 1
      order[ntodo] = f
    end
  end

  -- finished futures in completion order; false marks a timeout
  local queue, head, tail = {}, 1, 0
  local waiters = {}
  local handle

  local function push(v)
    tail = tail + 1
    queue[tail] = v
    for i = 1, #waiters do
      release(waiters[i])
      waiters[i] = nil
    end
  end

  local function on_completion(f)
    if not todo[f] then return end -- the timeout came first
    todo[f] = nil
    ntodo = ntodo - 1
    push(f)
    if ntodo == 0 and handle ~= nil then handle:cancel() end
  end

  local function on_timeout()
    for _, f in ipairs(order) do
      if todo[f] then
        todo[f] = nil
        f:remove_done_callback(on_completion)
        push(false)
      end
    end
    ntodo = 0
  end

  for _, f in ipairs(order) do fut_add_done_callback(f, on_completion) end
  if #order > 0 and timeout ~= nil then handle = loop:call_later(timeout, on_timeout) end

  local left = #order
  return function()
    if left == 0 then return nil end
    while head > tail do
      local w = loop:create_future()
      waiters[#waiters + 1] = w
      w:await()
    end
    local f = queue[head]
    queue[head] = nil
    head = head + 1
    left = left - 1
    if f == false then error(TimeoutError(), 2) end
    return f
  end
end

-- ------------------------------------------------------------------------
-- shield

--- A future mirroring `aw` whose cancellation does not cancel `aw`.
-- @function shield
-- @python asyncio.shield
-- @param aw an awaitable
-- @treturn Future
local function shield(aw)
  local inner
  if isfuture(aw) then
    inner = aw
  elseif type(aw) == "function" then
    inner = event_loop():create_task(aw)
  else
    error(("bad argument #1 to 'shield' (Future, Task or function expected, got %s)"):format(type(aw)), 2)
  end
  if fut_done(inner) then return inner end

  local outer = fut_get_loop(inner):create_future()
  graph._proxy(outer, inner)
  local function inner_done()
    if outer:cancelled() then
      if not inner:cancelled() then fut_exception(inner) end -- nobody will look at it
      return
    end
    if inner:cancelled() then
      outer:cancel()
    else
      local exc = fut_exception(inner)
      if exc ~= nil then outer:set_exception(exc) else outer:set_result(fut_result(inner)) end
    end
  end
  fut_add_done_callback(inner, inner_done)
  fut_add_done_callback(outer, function()
    if not fut_done(inner) then inner:remove_done_callback(inner_done) end
  end)
  return outer
end

return {
  gather = gather,
  wait = wait,
  wait_for = wait_for,
  as_completed = as_completed,
  shield = shield,
  FIRST_COMPLETED = FIRST_COMPLETED,
  FIRST_EXCEPTION = FIRST_EXCEPTION,
  ALL_COMPLETED = ALL_COMPLETED,
}
