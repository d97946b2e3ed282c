-- Python's asyncio synchronization primitives (Lock, Condition, Semaphore,
-- BoundedSemaphore, Barrier; Event is in C, src/event.c): a waiter is a parked
-- task in a waitlist (src/waitlist.c), with no Future, so no primitive is tied
-- to one loop.

--- Synchronization primitives: Lock, Event, Condition, Semaphore,
-- BoundedSemaphore, Barrier. Waiters are woken in FIFO order; a waiter
-- cancelled while being woken passes the wake-up on. A primitive is not
-- tied to one loop.
-- @module locks

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local isinstance = errors.isinstance
local CancelledError = errors.CancelledError
local RuntimeError = errors.RuntimeError
local ValueError = errors.ValueError
local BrokenBarrierError = errors.BrokenBarrierError
-- park(q) -> true | false, err, woken: a cancelled waiter has left q, unless
-- it was woken first (it then holds a wake-up to pass on)
local waitlist, park, wake, any_parked, count = core.waitlist, core.park, core.wake, core.any_parked, core.waiting

local error, pcall, setmetatable, getmetatable, type = error, pcall, setmetatable, getmetatable, type
local math_type, tointeger = math.type, math.tointeger

local function argerror(i, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(i, fname, msg), level + 1)
end

-- Lock and Semaphore make their FIFO of waiters when a task first blocks:
-- `local q = self._waiters or add_waiters(self)`.
local function add_waiters(self)
  local q = waitlist()
  self._waiters = q
  return q
end

local function waiters_suffix(n)
  if n > 0 then return ", waiters:" .. n end
  return ""
end

-- The guard that acquire() returns is the primitive itself: its __close is
-- release(). The methods of the hot paths are also copied into each object,
-- which spares a metatable lookup per call.
local function class(name)
  local cls = { __name = name }
  cls.__index = cls
  return cls
end

-- ------------------------------------------------------------------------
-- Lock: a woken waiter leaves the FIFO at once, and _woken holds its claim
-- until it runs (Python keeps its done future in the queue meanwhile).

local Lock = class("Lock")

-- Wakes the head waiter unless one is already woken; it takes the lock when it runs.
local function wake_up_first(self)
  local q = self._waiters
  if not self._woken and q ~= nil and wake(q) then self._woken = true end
end

--- Takes the lock, waiting while it is held (yields).
-- `local _ <close> = lock:acquire()` releases at scope exit.
-- @function Lock:acquire
-- @python Lock.acquire (async with lock)
-- @treturn Lock the lock itself, a guard for `<close>`
-- @raise RuntimeError outside a task; CancelledError when cancelled
function Lock:acquire()
  -- Fair: jump the queue only when every waiter gave up.
  if not self._locked and not self._woken and not any_parked(self._waiters) then
    self._locked = true
    return self
  end
  local q = self._waiters or add_waiters(self)
  local ok, err, woken = park(q)
  if ok then
    self._woken = false
    self._locked = true
    return self
  end
  if woken then self._woken = false end
  -- Woken and cancelled at once: hand the wake-up to the next waiter.
  if not self._locked then wake_up_first(self) end
  error(err, 0)
end

--- Releases the lock.
-- @function Lock:release
-- @python Lock.release
-- @raise RuntimeError when it is not locked
function Lock:release()
  if not self._locked then error(RuntimeError("Lock is not acquired."), 2) end
  self._locked = false
  wake_up_first(self)
end

Lock.__close = Lock.release

--- Whether the lock is held.
-- @function Lock:locked
-- @python Lock.locked
-- @treturn boolean
function Lock:locked()
  return self._locked
end

function Lock:__tostring()
  local n = count(self._waiters) + (self._woken and 1 or 0)
  return ("<Lock [%s%s]>"):format(self._locked and "locked" or "unlocked", waiters_suffix(n))
end

--- A new unlocked lock.
-- @function Lock
-- @python asyncio.Lock
-- @treturn Lock
local function new_lock()
  return setmetatable({ _locked = false, _woken = false, acquire = Lock.acquire, release = Lock.release }, Lock)
end

-- ------------------------------------------------------------------------
-- Condition

local Condition = class("Condition")

-- Python's notify(n): wakes the first n waiters still parked.
local function notify_waiters(self, n)
  local q = self._waiters
  for _ = 1, n do
    if not wake(q) then return end
  end
end

--- Acquires the underlying lock (yields).
-- @function Condition:acquire
-- @python Condition.acquire (async with cond)
-- @treturn Condition a guard for `<close>`
-- @raise RuntimeError outside a task; CancelledError when cancelled
function Condition:acquire()
  self._lock:acquire()
  return self
end

--- Releases the underlying lock.
-- @function Condition:release
-- @python Condition.release
-- @raise RuntimeError when it is not locked
function Condition:release()
  self._lock:release()
end

Condition.__close = Condition.release

--- Whether the underlying lock is held.
-- @function Condition:locked
-- @python Condition.locked
-- @treturn boolean
function Condition:locked()
  return self._lock:locked()
end

--- Releases the lock, waits for a notify, re-acquires the lock (yields).
-- @function Condition:wait
-- @python Condition.wait
-- @treturn boolean true
-- @raise RuntimeError when the lock is not held or outside a task; CancelledError when cancelled
function Condition:wait()
  local lock = self._lock
  if not lock:locked() then error(RuntimeError("cannot wait on un-acquired lock"), 2) end
  lock:release()
  -- under pcall: outside a task, park refuses and the lock is taken back below
  local q = self._waiters
  local parked, ok, err = pcall(park, q)
  if not parked then ok, err = false, ok end
  -- The lock is re-acquired even when the wait was cancelled; a cancellation
  -- meanwhile is retried and the latest one raised afterwards.
  while true do
    local got, e = pcall(lock.acquire, lock)
    if got then break end
    ok, err = false, e
    if not isinstance(e, CancelledError) then break end
  end
  if ok then return true end
  -- This task may have been notified before it failed: pass the notification
  -- on (a spurious wake-up is allowed for condition variables).
  notify_waiters(self, 1)
  error(err, 0)
end

--- Waits until `predicate()` is truthy (yields).
-- @function Condition:wait_for
-- @python Condition.wait_for
-- @tparam function predicate
-- @return the predicate's last value
-- @raise as `wait`
function Condition:wait_for(predicate)
  local result = predicate()
  while not result do
    self:wait()
    result = predicate()
  end
  return result
end

--- Wakes up to `n` waiters.
-- @function Condition:notify
-- @python Condition.notify
-- @tparam[opt=1] integer n
-- @raise RuntimeError when the lock is not held
function Condition:notify(n)
  if n == nil then n = 1 elseif type(n) ~= "number" then argerror(1, "notify", "number expected, got " .. type(n), 2) end
  if not self._lock:locked() then error(RuntimeError("cannot notify on un-acquired lock"), 2) end
  notify_waiters(self, n)
end

--- Wakes every waiter.
-- @function Condition:notify_all
-- @python Condition.notify_all
-- @raise RuntimeError when the lock is not held
function Condition:notify_all()
  if not self._lock:locked() then error(RuntimeError("cannot notify on un-acquired lock"), 2) end
  notify_waiters(self, count(self._waiters))
end

function Condition:__tostring()
  return ("<Condition [%s%s]>"):format(self._lock:locked() and "locked" or "unlocked",
    waiters_suffix(count(self._waiters)))
end

--- A new condition.
-- @function Condition
-- @python asyncio.Condition
-- @tparam[opt] Lock lock default: a new Lock
-- @treturn Condition
local function new_condition(lock)
  if lock == nil then
    lock = new_lock()
  elseif getmetatable(lock) ~= Lock then
    argerror(1, "Condition", "Lock expected, got " .. type(lock), 2)
  end
  return setmetatable({ _lock = lock, _waiters = waitlist() }, Condition)
end

-- ------------------------------------------------------------------------
-- Semaphore and BoundedSemaphore

local Semaphore = class("Semaphore")
local BoundedSemaphore = class("BoundedSemaphore")
setmetatable(BoundedSemaphore, { __index = Semaphore })

-- Like Lock's, a woken waiter leaves the FIFO at once: _woken counts the
-- ones that were handed a unit and have not run yet.
local function any_waiting(self)
  return self._woken > 0 or any_parked(self._waiters)
end

-- Hands one unit to the first waiter still parked.
local function wake_up_next(self)
  local q = self._waiters
  if q == nil or not wake(q) then return false end
  self._value = self._value - 1
  self._woken = self._woken + 1
  return true
end

--- Takes a unit, waiting while there is none (yields).
-- @function Semaphore:acquire
-- @python Semaphore.acquire (async with sem)
-- @treturn Semaphore a guard for `<close>`
-- @raise RuntimeError outside a task; CancelledError when cancelled
function Semaphore:acquire()
  local value = self._value
  if value > 0 and not any_waiting(self) then
    self._value = value - 1
    return self
  end
  local q = self._waiters or add_waiters(self)
  local ok, err, woken = park(q)
  if ok or woken then self._woken = self._woken - 1 end
  -- Woken (a unit was handed over) but cancelled: give the unit back.
  if woken then self._value = self._value + 1 end
  -- Waiters that arrived while units were free had to queue (FIFO): wake as many as allowed.
  while self._value > 0 and wake_up_next(self) do end
  if not ok then error(err, 0) end
  return self
end

--- Gives a unit back.
-- @function Semaphore:release
-- @python Semaphore.release
function Semaphore:release()
  self._value = self._value + 1
  wake_up_next(self)
end

Semaphore.__close = Semaphore.release

--- Whether `acquire` would wait.
-- @function Semaphore:locked
-- @python Semaphore.locked
-- @treturn boolean
function Semaphore:locked()
  return self._value == 0 or any_waiting(self)
end

function Semaphore:__tostring()
  local state = self:locked() and "locked" or ("unlocked, value:" .. self._value)
  return ("<%s [%s%s]>"):format(getmetatable(self).__name, state, waiters_suffix(count(self._waiters) + self._woken))
end
BoundedSemaphore.__tostring = Semaphore.__tostring

--- Gives a unit back.
-- @function BoundedSemaphore:release
-- @python BoundedSemaphore.release
-- @raise ValueError when released more often than acquired
function BoundedSemaphore:release()
  if self._value >= self._bound then error(ValueError("BoundedSemaphore released too many times"), 2) end
  Semaphore.release(self)
end
BoundedSemaphore.__close = BoundedSemaphore.release

local function check_count(v, default, fname)
  if v == nil then
    if default == nil then argerror(1, fname, "number expected, got no value", 3) end
    return default
  end
  local n = tointeger(v)
  if n == nil then
    argerror(1, fname, math_type(v) and "number has no integer representation"
      or ("number expected, got " .. type(v)), 3)
  end
  return n
end

--- A semaphore of `value` units.
-- @function Semaphore
-- @python asyncio.Semaphore
-- @tparam[opt=1] integer value
-- @treturn Semaphore
-- @raise ValueError for a negative value
local function new_semaphore(value)
  value = check_count(value, 1, "Semaphore")
  if value < 0 then error(ValueError("Semaphore initial value must be >= 0"), 2) end
  return setmetatable({ _value = value, _woken = 0, acquire = Semaphore.acquire, release = Semaphore.release }, Semaphore)
end

--- A semaphore that may not be released above `value` units.
-- @function BoundedSemaphore
-- @python asyncio.BoundedSemaphore
-- @tparam[opt=1] integer value
-- @treturn BoundedSemaphore
-- @raise ValueError for a negative value
local function new_bounded_semaphore(value)
  value = check_count(value, 1, "BoundedSemaphore")
  if value < 0 then error(ValueError("Semaphore initial value must be >= 0"), 2) end
  return setmetatable({ _value = value, _bound = value, _woken = 0,
                        acquire = Semaphore.acquire, release = BoundedSemaphore.release }, BoundedSemaphore)
end

-- ------------------------------------------------------------------------
-- Barrier: a Condition guards the state; tasks that arrive while the barrier
-- drains (or resets) wait until it fills again.

local FILLING, DRAINING, RESETTING, BROKEN = "filling", "draining", "resetting", "broken"

local Barrier = { __name = "Barrier" }

Barrier.__index = function(self, key)
  if key == "n_waiting" then
    if self._state == FILLING then return self._count end
    return 0
  elseif key == "broken" then
    return self._state == BROKEN
  end
  return Barrier[key]
end

local function barrier_exit(self)
  if self._count == 0 then
    local state = self._state
    if state == RESETTING or state == DRAINING then self._state = FILLING end
    self._cond:notify_all()
  end
end

local function barrier_pass(self, index)
  if index + 1 == self.parties then
    self._state = DRAINING
    self._cond:notify_all()
  else
    self._cond:wait_for(self._released)
    local state = self._state
    if state == BROKEN or state == RESETTING then error(BrokenBarrierError("Abort or reset of barrier"), 0) end
  end
end

--- Waits until `parties` tasks wait (yields).
-- @function Barrier:wait
-- @python Barrier.wait
-- @treturn integer this task's index, 0 to parties - 1
-- @raise BrokenBarrierError when aborted or reset; RuntimeError outside a task
function Barrier:wait()
  local cond <close> = self._cond:acquire()
  cond:wait_for(self._open)
  if self._state == BROKEN then error(BrokenBarrierError("Barrier aborted"), 2) end
  local index = self._count
  self._count = index + 1
  local ok, err = pcall(barrier_pass, self, index)
  self._count = self._count - 1
  barrier_exit(self)
  if not ok then error(err, 0) end
  return index
end

--- Back to the empty state; current waiters get BrokenBarrierError.
-- @function Barrier:reset
-- @python Barrier.reset
function Barrier:reset()
  local _ <close> = self._cond:acquire()
  if self._count > 0 then
    self._state = RESETTING
  else
    self._state = FILLING
  end
  self._cond:notify_all()
end

--- Breaks the barrier: waiters, now and later, get BrokenBarrierError.
-- @function Barrier:abort
-- @python Barrier.abort
function Barrier:abort()
  local _ <close> = self._cond:acquire()
  self._state = BROKEN
  self._cond:notify_all()
end

function Barrier:__tostring()
  local extra = self._state
  if extra ~= BROKEN then extra = ("%s, waiters:%d/%d"):format(extra, self.n_waiting, self.parties) end
  return ("<Barrier [%s]>"):format(extra)
end

--- A barrier for `parties` tasks; fields `parties`, `n_waiting`, `broken`.
-- @function Barrier
-- @python asyncio.Barrier
-- @tparam integer parties 1 or more
-- @treturn Barrier
-- @raise ValueError when parties < 1
local function new_barrier(parties)
  parties = check_count(parties, nil, "Barrier")
  if parties < 1 then error(ValueError("parties must be >= 1"), 2) end
  local self = { parties = parties, _cond = new_condition(), _state = FILLING, _count = 0 }
  self._open = function()
    local state = self._state
    return state ~= DRAINING and state ~= RESETTING
  end
  self._released = function() return self._state ~= FILLING end
  return setmetatable(self, Barrier)
end

return {
  Lock = new_lock,
  Event = core.Event, -- in C: src/event.c
  Condition = new_condition,
  Semaphore = new_semaphore,
  BoundedSemaphore = new_bounded_semaphore,
  Barrier = new_barrier,
}
