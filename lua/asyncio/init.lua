-- require "asyncio": Python's asyncio for Lua 5.4. The C core (asyncio.core)
-- does everything per event; the Lua modules add what is paid per call.
local core = require "asyncio.core"
local errors = require "asyncio.errors"
local logger = require "asyncio.log"
local Loop = require "asyncio.loop"
local runners = require "asyncio.runners"

local M = {}

for name, cls in pairs(errors) do
  if type(cls) == "table" then M[name] = cls end
end
M.isinstance = errors.isinstance
M.logger = logger

core.set_hooks {
  new_error = errors.new_by_name,
  os_error = errors.os_error,
  CancelledError = errors.CancelledError,
  log = logger.log,
  call_exception_handler = function(loop, context)
    loop:call_exception_handler(context)
  end,
  unretrieved = function(sentinel)
    local exc, loop, kind = sentinel[1], sentinel[2], sentinel[3]
    local context = { message = kind .. " exception was never retrieved", exception = exc,
                      source_traceback = sentinel[4] }
    if loop and not loop:is_closed() then
      loop:call_exception_handler(context)
    else
      Loop.default_exception_handler(nil, context)
    end
  end,
}

M.Loop = Loop
M.Handle = core.Handle
M.TimerHandle = core.TimerHandle
M.new_event_loop = core.new_event_loop
M.set_event_loop = core.set_event_loop
M.sleep = core.sleep
M.create_task = core.create_task
M.current_task = core.current_task
M.all_tasks = core.all_tasks
M.isfuture = core.isfuture
M.eager_task_factory = core.eager_task_factory
M.run = runners.run
M.coroutine = require "asyncio.coroutine"
for k, v in pairs(require "asyncio.dns") do M[k] = v end

-- the Lua-level layers: combinators, scopes, synchronization, queues
for _, name in ipairs { "tasks", "timeouts", "taskgroups", "locks", "queues" } do
  for k, v in pairs(require("asyncio." .. name)) do M[k] = v end
end

-- introspection: call graphs, ps and pstree (asyncio.graph)
local graph = require "asyncio.graph"
for _, name in ipairs { "capture_call_graph", "format_call_graph", "print_call_graph", "ps", "pstree",
                        "future_add_to_awaited_by", "future_discard_from_awaited_by",
                        "FrameCallGraphEntry", "FutureCallGraph" } do
  M[name] = graph[name]
end

-- transports and servers: Loop methods; M.Server for type checks
M.Server = require("asyncio.network").Server
M.socket = core.socket -- descriptors for sock_* and opts.sock (Lua has no socket library)
M.socketpair = core.socket.socketpair
M.ssl = require "asyncio.ssl"
M.subprocess = require "asyncio.subprocess"
M.create_subprocess_exec = M.subprocess.create_subprocess_exec
M.create_subprocess_shell = M.subprocess.create_subprocess_shell
local executor = require "asyncio.executor"
M.ThreadPoolExecutor = executor.ThreadPoolExecutor
M.to_thread = executor.to_thread
M.call_soon_threadsafe = executor.call_soon_threadsafe
M.run_coroutine_threadsafe = core.run_coroutine_threadsafe
M.wrap_future = core.wrap_future

require "asyncio.datagram"
for k, v in pairs(require "asyncio.streams") do
  if k ~= "new_writer" then M[k] = v end
end

function M.get_running_loop()
  local loop = core.get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 2) end
  return loop
end

function M.get_event_loop()
  local loop = core.get_running_loop() or core._get_event_loop()
  if loop == nil then
    loop = core.new_event_loop()
    core.set_event_loop(loop)
  end
  return loop
end

-- asyncio.Future([loop]) builds a future; the table also holds the methods.
-- Argument errors name the public constructor, not the core function.
local loop_is_closed = core.Loop.is_closed
local function check_loop(v, fname)
  if not pcall(loop_is_closed, v) then
    local mt = getmetatable(v)
    local got = type(mt) == "table" and type(rawget(mt, "__name")) == "string" and mt.__name or type(v)
    error(("bad argument #1 to '%s' (Loop expected, got %s)"):format(fname, got), 3)
  end
end

M.Future = setmetatable(core.Future, {
  __call = function(_, loop)
    if loop == nil then return core.Future_new(M.get_event_loop()) end
    check_loop(loop, "Future")
    return core.Future_new(loop)
  end,
})

-- asyncio.Task(loop, fn, ...) builds a task without the loop's task factory
-- (which is what a factory itself calls).
M.Task = setmetatable(core.Task, {
  __call = function(_, loop, fn, ...)
    check_loop(loop, "Task")
    if type(fn) ~= "function" then
      error(("bad argument #2 to 'Task' (function expected, got %s)"):format(type(fn)), 2)
    end
    return core.Task_new(loop, fn, ...)
  end,
})

return M
