-- asyncio.run: a fresh loop for one main function, with Python's Runner
-- behaviour (SIGINT cancels main, leftover tasks are cancelled at the end).
local core = require "asyncio.core"
local errors = require "asyncio.errors"
local executor = require "asyncio.executor"

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

function M.run(main, opts)
  if type(main) ~= "function" and not core.isfuture(main) then
    error("bad argument #1 to 'run' (function expected, got " .. type(main) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'run' (table expected, got " .. type(opts) .. ")", 2)
  end
  if core.get_running_loop() then
    error(errors.RuntimeError("asyncio.run() cannot be called from a running event loop"), 2)
  end
  local clock = opts and opts.clock
  if clock ~= nil and clock ~= "real" and clock ~= "virtual" then
    error("bad argument #2 to 'run' (opts.clock must be \"real\" or \"virtual\", got " .. tostring(clock) .. ")", 2)
  end
  local loop = core.new_event_loop(clock and { clock = clock })
  if opts and opts.debug ~= nil then loop:set_debug(opts.debug) end
  core.set_event_loop(loop)
  local task = type(main) == "function" and loop:create_task(main) or main
  -- the control socket (asyncio.control, loaded only then) lives as long as main runs
  local want_control = opts and opts.control
  if want_control == nil then
    local v = os.getenv("LUA_ASYNCIO_CONTROL")
    want_control = v ~= nil and v ~= "" and v ~= "0"
  end
  local control = want_control and require "asyncio.control" or nil
  local control_server = control and control.start(loop)
  local interrupts = 0
  local sigint = pcall(loop.add_signal_handler, loop, "SIGINT", function()
    interrupts = interrupts + 1
    if interrupts == 1 and not task:done() then
      task:cancel()
    else
      loop:stop()
    end
  end)
  local res = table.pack(pcall(loop.run_until_complete, loop, task))
  if sigint then loop:remove_signal_handler("SIGINT") end
  if control then control.stop(control_server) end
  local ok_cleanup, cleanup_err = pcall(cancel_all_tasks, loop)
  if executor.has_default_executor(loop) then
    local ok, err = pcall(loop.run_until_complete, loop, function()
      loop:shutdown_default_executor(EXECUTOR_TIMEOUT)
    end)
    if ok_cleanup and not ok then ok_cleanup, cleanup_err = false, err end
  end
  core.set_event_loop(nil)
  loop:close()
  if not res[1] then
    if interrupts > 0 and (errors.isinstance(res[2], errors.CancelledError) or errors.isinstance(res[2], errors.RuntimeError)) then
      error(errors.KeyboardInterrupt("interrupted"), 0)
    end
    error(res[2], 0)
  end
  if not ok_cleanup then error(cleanup_err, 0) end
  return table.unpack(res, 2, res.n)
end

return M
