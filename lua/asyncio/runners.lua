-- asyncio.Runner and asyncio.run: a fresh loop for one or more main
-- functions, with Python's Runner behaviour (SIGINT cancels main; closing
-- cancels the leftover tasks, shuts the executor down, closes the loop).

--- Running a program: `asyncio.run` and `asyncio.Runner`.
-- @module asyncio

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local executor = require "asyncio.executor"
local policies = require "asyncio.policies"

-- How long asyncio.run waits for the default executor's jobs at the end
-- (Python waits 300 s, silently): past it, a warning names each job still
-- running and the loop closes; those threads end with their jobs.
local EXECUTOR_TIMEOUT = 5

local M = {}

-- Runs the loop until every task in `tasks` is done.
local function wait_all(loop, tasks)
  if #tasks == 0 then return end
  local left = #tasks
  local all = loop:create_future()
  for _, t in ipairs(tasks) do
    t:add_done_callback(function()
      left = left - 1
      if left == 0 then all:set_result() end
    end)
  end
  loop:run_until_complete(all)
end

local function cancel_all_tasks(loop)
  local tasks = core.all_tasks(loop)
  if #tasks == 0 then return end
  for _, t in ipairs(tasks) do t:cancel() end
  wait_all(loop, tasks)
  for _, t in ipairs(tasks) do
    if not t:cancelled() then
      local exc = t:exception()
      if exc ~= nil then
        loop:call_exception_handler({
          message = "unhandled exception during asyncio.run() shutdown",
          exception = exc,
          task = t,
        })
      end
    end
  end
end

-- The message of what is wrong with Runner's or run's options at argument n, or nil.
local function bad_opts(opts, n, fname)
  local why
  if type(opts) ~= "table" then
    why = "table expected, got " .. type(opts)
  elseif opts.loop_factory ~= nil and type(opts.loop_factory) ~= "function" then
    why = "opts.loop_factory must be a function"
  elseif opts.clock ~= nil and opts.clock ~= "real" and opts.clock ~= "virtual" then
    why = "opts.clock must be \"real\" or \"virtual\", got " .. tostring(opts.clock)
  else
    return nil
  end
  return ("bad argument #%d to '%s' (%s)"):format(n, fname, why)
end

local Runner = { __name = "asyncio.Runner" }
Runner.__index = Runner
M.Runner = Runner

--- A runner: its loop is made at the first `run()` or `get_loop()` (by
-- `loop_factory()`, else a new loop that is current until `close()`).
-- `local r <close> = asyncio.Runner()` closes it.
-- @function Runner
-- @python asyncio.Runner
-- @tparam[opt] table opts `debug`, `loop_factory`, `clock` (as `new_event_loop`'s)
-- @treturn Runner
setmetatable(Runner, {
  __call = function(_, opts)
    opts = opts or {}
    local bad = bad_opts(opts, 1, "Runner")
    if bad then error(bad, 2) end
    return setmetatable({ _debug = opts.debug, _factory = opts.loop_factory, _clock = opts.clock,
                          _state = "created", _interrupts = 0 }, Runner)
  end,
})

local function lazy_init(self)
  if self._state == "closed" then error(errors.RuntimeError("Runner is closed"), 3) end
  if self._state == "initialized" then return end
  local loop
  if self._factory then
    loop = self._factory()
    if not pcall(core.Loop.is_closed, loop) then
      error(errors.RuntimeError("Runner: loop_factory did not return a Loop"), 3)
    end
  else
    loop = policies.new_event_loop(self._clock and { clock = self._clock })
    policies.set_event_loop(loop)
    self._set_event_loop = true
  end
  if self._debug ~= nil then loop:set_debug(self._debug) end
  self._loop = loop
  self._state = "initialized"
end

--- The runner's loop, made now if need be.
-- @function Runner:get_loop
-- @python asyncio.Runner.get_loop
-- @treturn Loop
-- @raise RuntimeError when the runner is closed
function Runner:get_loop()
  lazy_init(self)
  return self._loop
end

--- Runs `main(...)` as a task of the runner's loop (or waits for a future).
-- A SIGINT cancels that task, a second one stops the loop.
-- @function Runner:run
-- @python asyncio.Runner.run
-- @param main a function or a Future
-- @param ... arguments of `main`
-- @return ... what `main` returned
-- @raise KeyboardInterrupt on SIGINT; RuntimeError when closed or inside a running loop; whatever `main` raised
function Runner:run(main, ...)
  if type(main) ~= "function" and not core.isfuture(main) then
    error("bad argument #1 to 'run' (function or Future expected, got " .. type(main) .. ")", 2)
  end
  if core.get_running_loop() then
    error(errors.RuntimeError("Runner.run() cannot be called from a running event loop"), 2)
  end
  lazy_init(self)
  local loop = self._loop
  local task = type(main) == "function" and loop:create_task(main, ...) or main
  self._interrupts = 0
  local sigint = pcall(loop.add_signal_handler, loop, "SIGINT", function()
    self._interrupts = self._interrupts + 1
    if self._interrupts == 1 and not task:done() then
      task:cancel()
    else
      loop:stop()
    end
  end)
  local res = table.pack(pcall(loop.run_until_complete, loop, task))
  if sigint then loop:remove_signal_handler("SIGINT") end
  if not res[1] then
    local err = res[2]
    if self._interrupts > 0
       and (errors.isinstance(err, errors.CancelledError) or errors.isinstance(err, errors.RuntimeError)) then
      error(errors.KeyboardInterrupt("interrupted"), 0)
    end
    error(err, 0)
  end
  return table.unpack(res, 2, res.n)
end

--- Cancels the leftover tasks, waits for the default executor (a warning
-- names each job still running after 5 s) and closes the loop; closing
-- again does nothing. The clean-up's own error is raised after the loop is
-- closed.
-- @function Runner:close
-- @python asyncio.Runner.close
function Runner:close()
  if self._state ~= "initialized" then return end -- as Python: a runner never used stays usable
  local loop = self._loop
  local ok_cleanup, cleanup_err = pcall(cancel_all_tasks, loop)
  if executor.has_default_executor(loop) then
    local ok, err = pcall(loop.run_until_complete, loop, function()
      loop:shutdown_default_executor(EXECUTOR_TIMEOUT)
    end)
    if ok_cleanup and not ok then ok_cleanup, cleanup_err = false, err end
  end
  if self._set_event_loop then policies.set_event_loop(nil) end
  loop:close()
  self._loop = nil
  self._state = "closed"
  if not ok_cleanup then error(cleanup_err, 0) end
end

Runner.__close = Runner.close

function Runner:__tostring()
  return ("<Runner %s>"):format(self._state)
end

--- Runs `main` as the task of a new loop, then cancels leftover tasks,
-- shuts the executor down and closes the loop. A SIGINT cancels the main
-- task; a second one interrupts at once.
-- @function run
-- @python asyncio.run
-- @param main a function (or a Future)
-- @tparam[opt] table opts `debug` (also env `LUA_ASYNCIO_DEBUG=1`), `loop_factory`, `clock = "virtual"`, `control`
-- @return ... the values `main` returned
-- @raise RuntimeError inside a running loop; KeyboardInterrupt on SIGINT; whatever `main` raised
function M.run(main, opts)
  if type(main) ~= "function" and not core.isfuture(main) then
    error("bad argument #1 to 'run' (function expected, got " .. type(main) .. ")", 2)
  end
  opts = opts or {}
  local bad = bad_opts(opts, 2, "run")
  if bad then error(bad, 2) end
  if core.get_running_loop() then
    error(errors.RuntimeError("asyncio.run() cannot be called from a running event loop"), 2)
  end
  local runner = Runner { debug = opts.debug, loop_factory = opts.loop_factory, clock = opts.clock }
  -- the control socket (asyncio.control, loaded only then) lives as long as main runs
  local want_control = opts.control
  if want_control == nil then
    local v = os.getenv("LUA_ASYNCIO_CONTROL")
    want_control = v ~= nil and v ~= "" and v ~= "0"
  end
  local control = want_control and require "asyncio.control" or nil
  local control_server = control and control.start(runner:get_loop())
  local res = table.pack(pcall(runner.run, runner, main))
  if control then control.stop(control_server) end
  -- not a to-be-closed variable: main's error must win over one of the clean-up's
  local closed, close_err = pcall(runner.close, runner)
  if not res[1] then error(res[2], 0) end
  if not closed then error(close_err, 0) end
  return table.unpack(res, 2, res.n)
end

return M
