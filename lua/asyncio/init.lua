-- require "asyncio": Python's asyncio for Lua 5.4. The C core (asyncio.core)
-- does everything per event; the Lua modules add what is paid per call.

--- Running programs, tasks and the names of `require "asyncio"`.
-- An awaitable is a Future, a Task or a function (wrapped in a new task).
-- API coroutines (`sleep`, `wait_for`, ...) are just called inside a task;
-- called outside one they raise RuntimeError.
-- @module asyncio

--- Suspends the calling task for `delay` seconds; `sleep(0)` yields once.
-- @function sleep
-- @python asyncio.sleep
-- @tparam number delay seconds (0 or more)
-- @param ... returned when the sleep ends
-- @return ... the extra arguments
-- @raise RuntimeError outside a task; CancelledError when the task is cancelled

--- Starts `fn(...)` as a task of the running loop (through its task factory).
-- @function create_task
-- @python asyncio.create_task
-- @tparam function fn the task's body; its result is every value it returns
-- @param ... arguments of `fn`
-- @treturn Task the new task
-- @raise RuntimeError when no loop is running

--- The task running now.
-- @function current_task
-- @python asyncio.current_task
-- @tparam[opt] Loop loop default: the running loop
-- @treturn ?Task the task, or nil in a callback
-- @raise RuntimeError when no loop is given and none is running

--- The unfinished tasks of a loop.
-- @function all_tasks
-- @python asyncio.all_tasks
-- @tparam[opt] Loop loop default: the running loop
-- @treturn {Task,...} a list
-- @raise RuntimeError when no loop is given and none is running

--- True for a Future or a Task (of this runtime or a subclass).
-- @function isfuture
-- @python asyncio.isfuture
-- @param x any value
-- @treturn boolean

--- A task factory whose tasks run their first step at once, before
-- `create_task` returns: `loop:set_task_factory(asyncio.eager_task_factory)`.
-- @function eager_task_factory
-- @python asyncio.eager_task_factory
-- @tparam Loop loop the loop
-- @tparam function fn the task's body
-- @param ... arguments of `fn`
-- @treturn Task a task that may already be done

--- Submits `fn(...)` as a task to `loop` from another thread (from a job of
-- an executor); nil `loop` means the loop that submitted the job.
-- @function run_coroutine_threadsafe
-- @python asyncio.run_coroutine_threadsafe
-- @tparam ?Loop loop the target loop
-- @tparam function fn copied by `to_thread`'s rules
-- @param ... copied arguments
-- @treturn ConcurrentFuture with `result([timeout])` (blocks the caller's thread), `exception`, `cancel`, `cancelled`, `done`, `running`
-- @raise RuntimeError when the loop is closed; TimeoutError from `result(timeout)`

--- `fut` as it is: the runtime has no concurrent.futures to wrap (a job's
-- future from `ThreadPoolExecutor:submit` is already a Future of the loop).
-- @function wrap_future
-- @python asyncio.wrap_future
-- @tparam Future fut
-- @tparam[opt] Loop loop checked to be a loop
-- @treturn Future
-- @raise an argument error when `fut` is not a Future

--- Two connected Unix stream sockets (descriptor numbers) for `opts.sock`,
-- `sock_*` and child processes.
-- @function socketpair
-- @python socket.socketpair
-- @treturn integer fd1
-- @treturn integer fd2
-- @raise OSError when the system call fails

--- Handle and TimerHandle: what `loop:call_soon` and `call_later` return;
-- see the Loop page for `cancel`, `cancelled`, `when`.
-- @table Handle
-- @python asyncio.Handle, asyncio.TimerHandle

--- The loop class: `asyncio.EventLoop(opts)` makes one (as `new_event_loop`),
-- `asyncio.Loop` and `asyncio.AbstractEventLoop` are for `isinstance`.
-- @table EventLoop
-- @python asyncio.EventLoop, asyncio.AbstractEventLoop

--- The protocol and transport base classes (`BaseProtocol`, `Protocol`,
-- `DatagramProtocol`, `SubprocessProtocol`, `BaseTransport`, `ReadTransport`,
-- `WriteTransport`, `Transport`, `DatagramTransport`, `SubprocessTransport`,
-- `AbstractServer`): see the transports page.
-- @table Protocol
-- @python asyncio.Protocol and the other abstract bases

--- The server class (for `isinstance`); see the transports page.
-- @table Server
-- @python asyncio.Server

--- Logging of the runtime: `set_handler(fn(level, msg))`, `set_level(level)`;
-- see the debug page.
-- @table logger
-- @python logging.getLogger("asyncio")

--- The coroutine table to use inside tasks; see `asyncio.coroutine`.
-- @table coroutine
-- @python (none: Python generators)

--- Socket descriptors for `sock_*` and `opts.sock` (`socket(family, type)`,
-- `bind`, `listen`, `getsockname`, `getpeername`, `shutdown`, `close`).
-- @table socket
-- @python socket.socket

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local logger = require "asyncio.log"
local Loop = require "asyncio.loop"
local runners = require "asyncio.runners"
local classes = require "asyncio.classes"
local policies = require "asyncio.policies"

local M = {}

for name, cls in pairs(errors) do
  if type(cls) == "table" then M[name] = cls end
end
M.isinstance = classes.isinstance
M.logger = logger

local hooks = {
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
core.set_hooks(hooks)

M.Loop = Loop
M.Handle = core.Handle
M.TimerHandle = core.TimerHandle
M.new_event_loop = policies.new_event_loop
M.set_event_loop = policies.set_event_loop
M.sleep = core.sleep
M.create_task = core.create_task
M.current_task = core.current_task
M.all_tasks = core.all_tasks
M.isfuture = core.isfuture
M.eager_task_factory = core.eager_task_factory
M.run = runners.run
M.Runner = runners.Runner
for _, name in ipairs { "get_event_loop_policy", "set_event_loop_policy", "DefaultEventLoopPolicy",
                        "AbstractEventLoopPolicy" } do
  M[name] = policies[name]
end

-- asyncio.EventLoop(opts): the one loop class (Python's alias of its
-- platform's default loop), so isinstance(loop, asyncio.EventLoop) holds.
M.EventLoop = setmetatable(Loop, { __call = function(_, opts) return core.new_event_loop(opts) end })

-- the abstract classes: protocol bases to inherit, transport kinds to test
for _, name in ipairs { "BaseProtocol", "Protocol", "DatagramProtocol", "SubprocessProtocol",
                        "BaseTransport", "ReadTransport", "WriteTransport", "Transport",
                        "DatagramTransport", "SubprocessTransport", "AbstractServer",
                        "AbstractEventLoop" } do
  M[name] = classes[name]
end

--- True for a Lua coroutine.
-- @function iscoroutine
-- @python asyncio.iscoroutine
-- @param x any value
-- @treturn boolean
function M.iscoroutine(x) return type(x) == "thread" end

--- True for a function (any function can be a task's body).
-- @function iscoroutinefunction
-- @python asyncio.iscoroutinefunction
-- @param x any value
-- @treturn boolean
function M.iscoroutinefunction(x) return type(x) == "function" end
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
classes.register(M.Server, classes.AbstractServer)
M.socket = core.socket -- descriptors for sock_* and opts.sock (Lua has no socket library)
M.socketpair = core.socket.socketpair
M.ssl = require "asyncio.ssl"
M.subprocess = require "asyncio.subprocess"
M.create_subprocess_exec = M.subprocess.create_subprocess_exec
M.create_subprocess_shell = M.subprocess.create_subprocess_shell
classes.register(M.subprocess.SubprocessTransport, classes.SubprocessTransport)
local executor = require "asyncio.executor"
M.ThreadPoolExecutor = executor.ThreadPoolExecutor
M.to_thread = executor.to_thread
M.call_soon_threadsafe = executor.call_soon_threadsafe
M.run_coroutine_threadsafe = core.run_coroutine_threadsafe
M.wrap_future = core.wrap_future

require "asyncio.datagram"
local streams = require "asyncio.streams"
for k, v in pairs(streams) do
  if k ~= "new_writer" and k ~= "_task_failed" then M[k] = v end
end
-- a streams server's connection task is the only hooked one (core.create_task_hooked)
hooks.task_failed = streams._task_failed

-- Argument errors name the public function, not the core one.
local loop_is_closed = core.Loop.is_closed
local function check_loop(v, fname, n)
  if not pcall(loop_is_closed, v) then
    local mt = getmetatable(v)
    local got = type(mt) == "table" and type(rawget(mt, "__name")) == "string" and mt.__name or type(v)
    error(("bad argument #%d to '%s' (Loop expected, got %s)"):format(n, fname, got), 3)
  end
end

--- The loop running in this thread.
-- @function get_running_loop
-- @python asyncio.get_running_loop
-- @treturn Loop
-- @raise RuntimeError when none is running
function M.get_running_loop()
  local loop = core.get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 2) end
  return loop
end

--- The running loop, else the current one (set with `set_event_loop`),
-- else a new loop that becomes current.
-- @function get_event_loop
-- @python asyncio.get_event_loop
-- @treturn Loop
function M.get_event_loop()
  local loop = core.get_running_loop() or policies.policy_event_loop() or core._get_event_loop()
  if loop == nil then
    loop = core.new_event_loop()
    core.set_event_loop(loop)
  end
  return loop
end

--- A Future or Task as it is; a function becomes a new task.
-- @function ensure_future
-- @python asyncio.ensure_future
-- @param aw an awaitable
-- @tparam[opt] Loop loop the loop it must belong to (default: `get_event_loop()`)
-- @treturn Future
-- @raise ValueError when `aw` belongs to another loop
function M.ensure_future(aw, loop)
  if core.isfuture(aw) then
    if loop ~= nil and aw:get_loop() ~= loop then
      error(errors.ValueError("The future belongs to a different loop than the one specified as the loop argument"), 2)
    end
    return aw
  end
  if type(aw) ~= "function" then
    error(("bad argument #1 to 'ensure_future' (Future, Task or function expected, got %s)"):format(type(aw)), 2)
  end
  if loop ~= nil then check_loop(loop, "ensure_future", 2) end
  return (loop or M.get_event_loop()):create_task(aw)
end

--- A new pending future; the table also holds the methods (see Future).
-- @function Future
-- @python asyncio.Future
-- @tparam[opt] Loop loop default: `get_event_loop()`
-- @treturn Future
M.Future = setmetatable(core.Future, {
  __call = function(_, loop)
    if loop == nil then return core.Future_new(M.get_event_loop()) end
    check_loop(loop, "Future", 1)
    return core.Future_new(loop)
  end,
})

-- asyncio.Task(loop, fn, ...) builds a task without the loop's task factory
-- (which is what a factory itself calls).
-- (one made inside a factory of create_eager_task_factory starts eagerly).
local eager_next = false
local eager_reset = setmetatable({}, { __close = function() eager_next = false end })

--- A task of `loop` running `fn(...)`, made without the loop's task factory
-- (what a factory calls; inside a factory of `create_eager_task_factory` it
-- starts eagerly); the table also holds the methods (see Task).
-- @function Task
-- @python asyncio.Task
-- @tparam Loop loop the loop
-- @tparam function fn the body
-- @param ... arguments of `fn`
-- @treturn Task
M.Task = setmetatable(core.Task, {
  __call = function(_, loop, fn, ...)
    check_loop(loop, "Task", 1)
    if type(fn) ~= "function" then
      error(("bad argument #2 to 'Task' (function expected, got %s)"):format(type(fn)), 2)
    end
    if eager_next then
      eager_next = false
      return core.eager_task_factory(loop, fn, ...)
    end
    return core.Task_new(loop, fn, ...)
  end,
})

--- A task factory whose tasks start at once; `ctor` is called as
-- `asyncio.Task` is, `(loop, fn, ...)`, and the Task it makes is eager.
-- @function create_eager_task_factory
-- @python asyncio.create_eager_task_factory
-- @tparam function ctor the task constructor
-- @treturn function the factory
function M.create_eager_task_factory(ctor)
  if not (type(ctor) == "function" or (type(ctor) == "table" and getmetatable(ctor) and getmetatable(ctor).__call)) then
    error(("bad argument #1 to 'create_eager_task_factory' (function expected, got %s)"):format(type(ctor)), 2)
  end
  return function(loop, fn, ...)
    eager_next = true
    local _ <close> = eager_reset -- also when ctor raises or makes no asyncio.Task
    return ctor(loop, fn, ...)
  end
end

return M
