-- asyncio.TaskGroup: structured concurrency as a to-be-closed scope whose exit
-- awaits every child (Python 3.13's asyncio/taskgroups.py; creating one enters it).

--- Structured concurrency.
-- @module asyncio

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local graph = require "asyncio.graph"

local isinstance = errors.isinstance
local CancelledError, RuntimeError = errors.CancelledError, errors.RuntimeError

local TaskGroup = { __name = "TaskGroup" }
TaskGroup.__index = TaskGroup

-- Errors that end the group at once instead of joining the ExceptionGroup
-- (Python: SystemExit, KeyboardInterrupt).
local function is_base_error(e)
  return isinstance(e, errors.KeyboardInterrupt)
end

local function abort(self)
  self._aborting = true
  for t in pairs(self._tasks) do
    if not t:done() then t:cancel() end
  end
end

local function on_task_done(self, task)
  if self._tasks[task] then
    self._tasks[task] = nil
    self._ntasks = self._ntasks - 1
  end
  local on_completed = self._on_completed
  if on_completed ~= nil and self._ntasks == 0 and not on_completed:done() then
    on_completed:set_result(true)
  end
  if task:cancelled() then return end
  local exc = task:exception()
  if exc == nil then return end

  self._errors[#self._errors + 1] = exc
  if is_base_error(exc) and self._base_error == nil then self._base_error = exc end
  if self._parent:done() then
    self._loop:call_exception_handler({
      message = ("Task %s has errored out but its parent task %s is already completed"):format(
        tostring(task), tostring(self._parent)),
      exception = exc,
      task = task,
    })
    return
  end
  if not self._aborting and not self._parent_cancel_requested then
    -- Stop the body wherever it waits; the scope's exit takes this
    -- cancel back (uncancel) so that it does not leak out of the group.
    abort(self)
    self._parent_cancel_requested = true
    self._parent:cancel()
  end
end

--- Starts `fn(...)` as a child of the group.
-- @function TaskGroup:create_task
-- @python asyncio.TaskGroup.create_task
-- @tparam function fn
-- @param ... arguments of `fn`
-- @treturn Task
-- @raise RuntimeError when the group has finished or is shutting down
function TaskGroup:create_task(fn, ...)
  if type(fn) ~= "function" then
    error(("bad argument #1 to 'create_task' (function expected, got %s)"):format(type(fn)), 2)
  end
  if self._exiting and self._ntasks == 0 then error(RuntimeError(("%s is finished"):format(tostring(self))), 2) end
  if self._aborting then error(RuntimeError(("%s is shutting down"):format(tostring(self))), 2) end
  local task = self._loop:create_task(fn, ...)
  self._tasks[task] = true
  self._ntasks = self._ntasks + 1
  -- even when the task finished eagerly: its failure must not cancel the
  -- parent before create_task returns
  task:add_done_callback(self._on_task_done)
  return task
end

-- Leaving the scope (err: the error propagating out of the body, if any).
-- Raising here replaces that error: a Lua __close cannot swallow one, and
-- Python's __aexit__ never needs to either.
function TaskGroup:__close(err)
  self._exiting = true
  local loop, parent = self._loop, self._parent
  if err ~= nil and is_base_error(err) and self._base_error == nil then self._base_error = err end
  local body_cancelled = isinstance(err, CancelledError)
  local propagate_cancel = body_cancelled and err or nil
  if err ~= nil and not self._aborting then
    -- the body failed or its task is being cancelled: stop the children
    abort(self)
  end

  -- a loop: the wait is cancelled again each time the parent is
  while self._ntasks > 0 do
    if self._on_completed == nil then self._on_completed = loop:create_future() end
    local ok, exc = pcall(self._on_completed.await, self._on_completed)
    if not ok then
      if not isinstance(exc, CancelledError) then error(exc, 0) end
      if not self._aborting then
        -- the parent is cancelled from outside while the children run
        propagate_cancel = exc
        abort(self)
      end
    end
    self._on_completed = nil
  end

  local errs = self._errors
  self._parent, self._errors = nil, nil
  if self._base_error ~= nil then error(self._base_error, 0) end

  if self._parent_cancel_requested and parent:uncancel() == 0 then
    -- the only cancellation was ours
    propagate_cancel = nil
  end
  if propagate_cancel ~= nil and #errs == 0 then error(propagate_cancel, 0) end

  if err ~= nil and not body_cancelled then errs[#errs + 1] = err end
  if #errs > 0 then
    -- keep a cancellation from outside pending, with a stable count
    if parent:cancelling() > 0 then
      parent:uncancel()
      parent:cancel()
    end
    error(errors.ExceptionGroup(("unhandled errors in a TaskGroup (%d sub-exception%s)"):format(
      #errs, #errs == 1 and "" or "s"), { exceptions = errs }), 0)
  end
end

function TaskGroup:__tostring()
  local info = {}
  if self._ntasks > 0 then info[#info + 1] = "tasks=" .. self._ntasks end
  if self._errors and #self._errors > 0 then info[#info + 1] = "errors=" .. #self._errors end
  if self._aborting then
    info[#info + 1] = "cancelling"
  elseif not self._exiting then
    info[#info + 1] = "entered"
  end
  return #info == 0 and "<TaskGroup>" or "<TaskGroup " .. table.concat(info, " ") .. ">"
end

--- A group whose parent is the current task:
-- `local tg <close> = asyncio.TaskGroup()`. On scope exit it awaits every
-- child; the first failure cancels the rest and the body, and the scope
-- raises an ExceptionGroup of every failure.
-- @function TaskGroup
-- @python asyncio.TaskGroup
-- @treturn TaskGroup
-- @raise RuntimeError outside a task; ExceptionGroup (field `exceptions`) on exit when children failed
local function new()
  local loop = core.get_running_loop()
  local parent = loop and core.current_task(loop)
  if parent == nil then error(RuntimeError("TaskGroup cannot determine the parent task"), 2) end
  local self = setmetatable({
    _loop = loop,
    _parent = parent,
    _tasks = {},
    _ntasks = 0,
    _errors = {},
    _aborting = false,
    _exiting = false,
    _parent_cancel_requested = false,
  }, TaskGroup)
  self._on_task_done = function(task) on_task_done(self, task) end
  graph._group(self) -- for call graphs: the parent awaits each task of the group
  return self
end

return { TaskGroup = new }
