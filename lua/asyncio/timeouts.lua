-- asyncio.timeout / asyncio.timeout_at: a deadline for the current task, as a
-- to-be-closed scope (Python's asyncio/timeouts.py; creating one enters it).

--- Deadline scopes.
-- @module asyncio

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local isinstance = errors.isinstance
local CancelledError, TimeoutError, RuntimeError = errors.CancelledError, errors.TimeoutError, errors.RuntimeError

-- states, named as Python's _State values (they show in tostring)
local ENTERED, EXPIRING, EXPIRED, EXITED = "active", "expiring", "expired", "finished"

local Timeout = { __name = "Timeout" }
Timeout.__index = Timeout

local function on_timeout(self)
  self._task:cancel()
  self._state = EXPIRING
  self._handle = nil
end

--- The deadline (loop time), or nil when there is none.
-- @function Timeout:when
-- @python asyncio.Timeout.when
-- @treturn ?number
function Timeout:when()
  return self._when
end

--- True once the deadline passed and the task was cancelled for it.
-- @function Timeout:expired
-- @python asyncio.Timeout.expired
-- @treturn boolean
function Timeout:expired()
  return self._state == EXPIRING or self._state == EXPIRED
end

--- Moves the deadline to loop time `when` (nil: no deadline).
-- @function Timeout:reschedule
-- @python asyncio.Timeout.reschedule
-- @tparam ?number when
-- @raise RuntimeError when the scope has exited
function Timeout:reschedule(when)
  if when ~= nil and type(when) ~= "number" then
    error(("bad argument #1 to 'reschedule' (number expected, got %s)"):format(type(when)), 2)
  end
  if self._state ~= ENTERED then
    error(RuntimeError(("Cannot change state of %s Timeout"):format(self._state)), 2)
  end
  self._when = when
  if self._handle ~= nil then self._handle:cancel() end
  if when == nil then
    self._handle = nil
  elseif when <= self._loop:time() then
    self._handle = self._loop:call_soon(on_timeout, self)
  else
    self._handle = self._loop:call_at(when, on_timeout, self)
  end
end

-- Leaving the scope. A CancelledError that this timeout caused becomes
-- TimeoutError, unless the task got other cancel requests meanwhile (those
-- stay cancellations); that is what comparing uncancel() with the count
-- seen on entry tells.
function Timeout:__close(err)
  if self._handle ~= nil then
    self._handle:cancel()
    self._handle = nil
  end
  if self._state == EXPIRING then
    self._state = EXPIRED
    if self._task:uncancel() <= self._cancelling and isinstance(err, CancelledError) then
      error(TimeoutError(nil, { cause = err }), 0)
    end
  elseif self._state == ENTERED then
    self._state = EXITED
  end
end

function Timeout:__tostring()
  if self._state ~= ENTERED then return ("<Timeout [%s]>"):format(self._state) end
  return ("<Timeout [%s] when=%s>"):format(self._state, self._when == nil and "nil" or ("%.3f"):format(self._when))
end

local function enter(when, level)
  local loop = core.get_running_loop()
  local task = loop and core.current_task(loop)
  if task == nil then error(RuntimeError("Timeout should be used inside a task"), level + 1) end
  local self = setmetatable({
    _loop = loop,
    _task = task,
    _cancelling = task:cancelling(),
    _state = ENTERED,
  }, Timeout)
  self:reschedule(when)
  return self
end

--- A scope that expires `delay` seconds from now:
-- `local t <close> = asyncio.timeout(5)`. When the deadline passes, the
-- task is cancelled and the scope raises TimeoutError on exit.
-- @function timeout
-- @python asyncio.timeout
-- @tparam ?number delay seconds; nil: never
-- @treturn Timeout
-- @raise RuntimeError outside a task; TimeoutError on exit after expiry
local function timeout(delay)
  if delay ~= nil and type(delay) ~= "number" then
    error(("bad argument #1 to 'timeout' (number expected, got %s)"):format(type(delay)), 2)
  end
  if delay == nil then return enter(nil, 2) end
  local loop = core.get_running_loop()
  if loop == nil then error(RuntimeError("Timeout should be used inside a task"), 2) end
  return enter(loop:time() + delay, 2)
end

--- A scope that expires at loop time `when` (as `timeout`).
-- @function timeout_at
-- @python asyncio.timeout_at
-- @tparam ?number when loop time; nil: never
-- @treturn Timeout
-- @raise RuntimeError outside a task; TimeoutError on exit after expiry
local function timeout_at(when)
  if when ~= nil and type(when) ~= "number" then
    error(("bad argument #1 to 'timeout_at' (number expected, got %s)"):format(type(when)), 2)
  end
  return enter(when, 2)
end

--- What `timeout_at` makes, for `isinstance(t, asyncio.Timeout)`.
-- @function Timeout
-- @python asyncio.Timeout
-- @tparam ?number when loop time
-- @treturn Timeout
setmetatable(Timeout, {
  __call = function(_, when)
    if when ~= nil and type(when) ~= "number" then
      error(("bad argument #1 to 'Timeout' (number expected, got %s)"):format(type(when)), 2)
    end
    return enter(when, 2)
  end,
})

return { timeout = timeout, timeout_at = timeout_at, Timeout = Timeout }
