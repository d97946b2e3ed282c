-- ThreadPoolExecutor, to_thread and the loop's executor methods. The pool,
-- the copies and the completions are C (executor.c); this adds the option
-- checks, the per-loop default executor and the shutdown waits.
--
-- A job runs in a worker thread, in a Lua state of the worker's own (kept
-- between its jobs); the function, its arguments and its results are
-- copied (nil, booleans, numbers, strings, tables of those; the function
-- may share no upvalue but _ENV). Cancelling a job's future cancels a job
-- not started yet; a running one runs to its end and its result is dropped.
-- An initializer that fails breaks the pool (Python's BrokenThreadPool):
-- its jobs fail with a BrokenThreadPool error carrying the message and the
-- worker's traceback, and submit raises it.
--
-- Errors of a job carry the worker's traceback: a string (or number,
-- boolean) comes as a RuntimeError whose message it is, the value itself in
-- its `value` field; a plain table is copied and gets the traceback as its
-- `traceback` field if it has none; an asyncio error object is rebuilt in
-- the loop's state (same class, message and copyable fields, `traceback`
-- the worker's); any other value is taken by its tostring.

--- Threads: `to_thread`, `ThreadPoolExecutor` and the loop's executor
-- methods. A job runs in a worker thread with a Lua state of its own, kept
-- between jobs. The function may share no upvalue but `_ENV`; it, its
-- arguments and its results are copied and must be nil, booleans, numbers,
-- strings or tables of those, else a clear error is raised before the thread
-- starts. An error in the worker is re-raised with the worker's traceback.
-- @module executor

--- Runs `fn(...)` in a worker (the values copied).
-- @function ThreadPoolExecutor:submit
-- @python concurrent.futures.ThreadPoolExecutor.submit
-- @tparam function fn
-- @param ... its arguments
-- @treturn Future a future of the running loop
-- @raise RuntimeError after `shutdown` or with no running loop; BrokenThreadPool when the initializer failed

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local logger = require "asyncio.log"
local tasks = require "asyncio.tasks"

local Loop = core.Loop
local Executor = core.ThreadPoolExecutor
local new_executor = core.ThreadPoolExecutor_new
local get_running_loop, current_task = core.get_running_loop, core.current_task

local M = {}

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

--- A pool of OS threads (workers start on demand), named `prefix_N`, cut
-- to 15 bytes (the kernel's limit).
-- @function ThreadPoolExecutor
-- @python concurrent.futures.ThreadPoolExecutor
-- @tparam[opt] table opts `max_workers` (default `min(32, ncpu + 4)`), `initializer`, `initargs`, `thread_name_prefix`
-- @treturn ThreadPoolExecutor
-- @raise an argument error when `max_workers` is not an integer > 0
function M.ThreadPoolExecutor(opts)
  local fname = "ThreadPoolExecutor"
  if opts == nil then return new_executor() end
  if type(opts) ~= "table" then argerror(1, fname, "options table expected, got " .. type(opts)) end
  local max, init, args, prefix = opts.max_workers, opts.initializer, opts.initargs, opts.thread_name_prefix
  if max ~= nil and (math.type(max) ~= "integer" or max <= 0) then
    argerror(1, fname, "max_workers must be an integer greater than 0")
  end
  if init ~= nil and type(init) ~= "function" then argerror(1, fname, "initializer must be a function") end
  if args ~= nil and type(args) ~= "table" then argerror(1, fname, "initargs must be a list") end
  if prefix ~= nil and type(prefix) ~= "string" then argerror(1, fname, "thread_name_prefix must be a string") end
  return new_executor(max, prefix, init, args)
end

--- No new jobs; `cancel_futures` cancels the jobs not started. `wait`
-- blocks until the threads are gone when no loop runs; in a task it awaits
-- this loop's jobs instead; in a callback it does not wait.
-- @function ThreadPoolExecutor:shutdown
-- @python concurrent.futures.ThreadPoolExecutor.shutdown
-- @tparam[opt] table opts `wait = true`, `cancel_futures = false`
function Executor:shutdown(opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(1, "shutdown", "options table expected, got " .. type(opts))
  end
  opts = opts or {}
  self:_shutdown(opts.cancel_futures == true)
  if opts.wait == false then return end
  local loop = get_running_loop()
  if loop == nil then
    self:_join()
  elseif current_task(loop) ~= nil then
    self:_drain():await()
  end
end

-- ---- the default executor of each loop ------------------------------------------------

local defaults = setmetatable({}, { __mode = "k" })
local shut = setmetatable({}, { __mode = "k" })

local function default_executor(loop)
  local ex = defaults[loop]
  if ex then return ex end
  if shut[loop] then error(errors.RuntimeError("Executor shutdown has been called"), 3) end
  ex = new_executor()
  defaults[loop] = ex
  return ex
end

--- Runs `fn(...)` in the running loop's default executor and returns its
-- values; cancelling the task cancels a job not yet started.
-- @function to_thread
-- @python asyncio.to_thread
-- @tparam function fn
-- @param ... its arguments
-- @return ... the values of `fn(...)`
-- @raise what `fn` raised (with the worker's traceback); RuntimeError outside a task or for a value that cannot be copied
function M.to_thread(fn, ...)
  local loop = get_running_loop()
  if loop == nil or current_task(loop) == nil then
    error(errors.RuntimeError("to_thread called outside a task"), 2)
  end
  return (defaults[loop] or default_executor(loop)):_submit("to_thread", fn, ...):await()
end

local job_call_soon = core.job_call_soon_threadsafe

--- In a job of an executor: schedules `fn(...)` (copied) on the loop that
-- submitted the job; elsewhere, the running loop's `call_soon_threadsafe`.
-- @function call_soon_threadsafe
-- @python loop.call_soon_threadsafe
-- @tparam function fn
-- @param ... its arguments
-- @raise RuntimeError when there is no such loop
function M.call_soon_threadsafe(fn, ...)
  if job_call_soon(fn, ...) then return end
  local loop = get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 2) end
  return loop:call_soon_threadsafe(fn, ...)
end

--- Runs `fn(...)` in `executor` (nil: the loop's default one, made on first use).
-- @function Loop:run_in_executor
-- @python loop.run_in_executor
-- @tparam ?ThreadPoolExecutor executor
-- @tparam function fn
-- @param ... its arguments
-- @treturn Future
-- @raise as `ThreadPoolExecutor:submit`
function Loop:run_in_executor(executor, fn, ...)
  if get_running_loop() ~= self then
    error(errors.RuntimeError("run_in_executor: the loop is not the running one"), 2)
  end
  if executor == nil then executor = defaults[self] or default_executor(self) end
  return executor:_submit("run_in_executor", fn, ...)
end

--- Sets the executor `run_in_executor(nil, ...)` and `to_thread` use.
-- @function Loop:set_default_executor
-- @python loop.set_default_executor
-- @tparam ThreadPoolExecutor executor
function Loop:set_default_executor(executor)
  if not core.isexecutor(executor) then
    argerror(1, "set_default_executor", "ThreadPoolExecutor expected, got " .. type(executor))
  end
  defaults[self] = executor
end

-- Logs each job of the executor still running (or queued) in this loop.
local function warn_running(executor, timeout)
  for _, job in ipairs(executor:_running()) do
    if job.secs then
      logger.warning(("the default executor did not finish within %g s: a job of %s is still running (for %.1f s)")
        :format(timeout, job.source, job.secs))
    else
      logger.warning(("the default executor did not finish within %g s: a job of %s is still queued")
        :format(timeout, job.source))
    end
  end
end

--- Shuts the default executor down and waits (in a task) for its jobs of
-- this loop, at most `timeout` seconds; then warns naming each job still
-- running (its function's source:line and how long it has run). Their
-- threads exit when the jobs end; the loop is never blocked.
-- @function Loop:shutdown_default_executor
-- @python loop.shutdown_default_executor
-- @tparam[opt] number timeout seconds; nil: no limit
function Loop:shutdown_default_executor(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    argerror(1, "shutdown_default_executor", "number expected, got " .. type(timeout))
  end
  shut[self] = true
  local ex = defaults[self]
  if ex == nil then return end
  ex:_shutdown(false)
  local drained = ex:_drain()
  if not drained:done() then
    if timeout == nil then
      drained:await()
    else
      tasks.wait({ drained }, { timeout = timeout })
    end
  end
  if not drained:done() then warn_running(ex, timeout) end
end

-- Python's close(): the default executor is shut down without waiting.
local close = Loop.close
function Loop:close()
  close(self)
  local ex = defaults[self]
  if ex then
    defaults[self] = nil
    ex:_shutdown(false)
  end
end

-- For asyncio.run: whether the loop has made its default executor.
function M.has_default_executor(loop)
  return defaults[loop] ~= nil
end

return M
