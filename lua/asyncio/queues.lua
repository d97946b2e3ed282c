-- Python's asyncio queues (Queue, PriorityQueue, LifoQueue): a woken getter or
-- putter is unparked (a waitlist, src/waitlist.c), and the item stays queued until it
-- runs. Like the locks, a queue is tied to no loop.

--- Queues: Queue (FIFO), PriorityQueue (smallest first: items compare with
-- `<`, `{priority, value}` pairs by `[1]`), LifoQueue. Every queue has the
-- methods of Queue and the field `maxsize`. `nil` is not a valid item.
-- @module queues

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local locks = require "asyncio.locks"

local new_event = locks.Event
local QueueEmpty = errors.QueueEmpty
local QueueFull = errors.QueueFull
local QueueShutDown = errors.QueueShutDown
local ValueError = errors.ValueError
local waitlist, park, wake, wake_all, count = core.waitlist, core.park, core.wake, core.wake_all, core.waiting

local error, setmetatable, getmetatable, tostring, type = error, setmetatable, getmetatable, tostring, type
local pairs, ipairs = pairs, ipairs
local concat, table_move, huge, min = table.concat, table.move, math.huge, math.min

local function nil_item(fname, level)
  error(("bad argument #1 to '%s' (item expected, got nil)"):format(fname), level + 1)
end

-- ------------------------------------------------------------------------
-- State shared by every kind of queue. The fast paths of put() and get() test
-- one field each: put() runs inline while _n < _limit, get() while _n > _floor.
-- Anything else (full, shut down, someone waiting on the other side, the ring
-- about to grow) sends them to the slow paths, which call retune() after any
-- change.

local function retune(self)
  if self._shutdown or count(self._getters) > 0 then
    self._limit = -1
  else
    self._limit = min(self._room, self._cap)
  end
  self._floor = count(self._putters) > 0 and huge or 0
end

local function stored(self)
  self._unfinished = self._unfinished + 1
  wake(self._getters)
  retune(self)
end

local function taken(self)
  wake(self._putters)
  retune(self)
end

-- The slow paths wait inline: a function more on the stack of a blocked
-- putter would also double its Lua stack.

-- Waits for room (raising QueueShutDown once shut down), then stores.
local function put_slow(self, item)
  if item == nil then nil_item("put", 2) end
  while self._n >= self._room do
    if self._shutdown then error(QueueShutDown(), 2) end
    local q = self._putters
    self._floor = huge
    local ok, err, woken = park(q)
    if not ok then
      -- woken by a get but leaving: the room goes to the next putter
      if woken and self._n < self._room then wake(q) end
      retune(self)
      error(err, 0)
    end
  end
  if self._shutdown then error(QueueShutDown(), 2) end
  self:_put(item)
  stored(self)
end

-- Waits for an item (raising QueueShutDown when shut down and empty), then takes it.
local function get_slow(self)
  while self._n == 0 do
    if self._shutdown then error(QueueShutDown(), 2) end
    local q = self._getters
    self._limit = -1
    local ok, err, woken = park(q)
    if not ok then
      -- woken by a put but leaving: the item goes to the next getter
      if woken and self._n > 0 then wake(q) end
      retune(self)
      error(err, 0)
    end
  end
  local item = self:_get()
  taken(self)
  return item
end

-- ------------------------------------------------------------------------
-- Methods common to every kind of queue; `_put` and `_get` store and take.

local Base = {}

function Base:put(item)
  if self._n >= self._limit or item == nil then return put_slow(self, item) end
  self:_put(item)
  self._unfinished = self._unfinished + 1
end

function Base:get()
  if self._n <= self._floor then return get_slow(self) end
  return self:_get()
end

--- Adds `item` without waiting.
-- @function Queue:put_nowait
-- @python Queue.put_nowait
-- @param item not nil
-- @raise QueueFull when full; QueueShutDown after `shutdown`
function Base:put_nowait(item)
  if item == nil then nil_item("put_nowait", 2) end
  if self._shutdown then error(QueueShutDown(), 2) end
  if self._n >= self._room then error(QueueFull(), 2) end
  self:_put(item)
  stored(self)
end

--- Takes an item without waiting.
-- @function Queue:get_nowait
-- @python Queue.get_nowait
-- @return the item
-- @raise QueueEmpty when empty; QueueShutDown when shut down and empty
function Base:get_nowait()
  if self._n == 0 then
    if self._shutdown then error(QueueShutDown(), 2) end
    error(QueueEmpty(), 2)
  end
  local item = self:_get()
  taken(self)
  return item
end

--- The number of items.
-- @function Queue:qsize
-- @python Queue.qsize
-- @treturn integer
function Base:qsize()
  return self._n
end

--- Whether the queue is empty.
-- @function Queue:empty
-- @python Queue.empty
-- @treturn boolean
function Base:empty()
  return self._n == 0
end

--- Whether the queue holds `maxsize` items (never when `maxsize` is 0).
-- @function Queue:full
-- @python Queue.full
-- @treturn boolean
function Base:full()
  return self._n >= self._room
end

local function finish(self)
  local finished = self._finished
  if finished ~= nil then
    self._finished = nil
    finished:set()
  end
end

--- Marks one taken item as processed (for `join`).
-- @function Queue:task_done
-- @python Queue.task_done
-- @raise ValueError when called more often than items were put
function Base:task_done()
  local left = self._unfinished - 1
  if left < 0 then error(ValueError("task_done() called too many times"), 2) end
  self._unfinished = left
  if left == 0 then finish(self) end
end

-- join() waiters share one Event, made when the first one blocks and set
-- when the count of unfinished items drops to zero.

--- Waits until every item put was marked done (yields).
-- @function Queue:join
-- @python Queue.join
-- @raise RuntimeError outside a task; CancelledError when cancelled
function Base:join()
  if self._unfinished > 0 then
    local finished = self._finished
    if finished == nil then
      finished = new_event()
      self._finished = finished
    end
    finished:wait()
  end
end

--- Shuts the queue down: `put` raises QueueShutDown, and so does `get` once
-- empty (at once with `immediate`, which also drops the items).
-- @function Queue:shutdown
-- @python Queue.shutdown
-- @tparam[opt=false] boolean immediate
function Base:shutdown(immediate)
  self._shutdown = true
  if immediate then
    while self._n > 0 do
      self:_get()
      if self._unfinished > 0 then self._unfinished = self._unfinished - 1 end
    end
    if self._unfinished == 0 then finish(self) end
  end
  -- blocked getters and putters re-check the state, and raise
  wake_all(self._getters)
  wake_all(self._putters)
  retune(self)
end

function Base:__tostring()
  local parts = { getmetatable(self).__name, "maxsize=" .. tostring(self.maxsize) }
  if self._n > 0 then
    local items = {}
    for i, item in self:_iter() do items[i] = tostring(item) end
    parts[#parts + 1] = "_queue=[" .. concat(items, ", ") .. "]"
  end
  local ng, np = count(self._getters), count(self._putters)
  if ng > 0 then parts[#parts + 1] = ("_getters[%d]"):format(ng) end
  if np > 0 then parts[#parts + 1] = ("_putters[%d]"):format(np) end
  if self._unfinished > 0 then parts[#parts + 1] = "tasks=" .. self._unfinished end
  if self._shutdown then parts[#parts + 1] = "shutdown" end
  return "<" .. concat(parts, " ") .. ">"
end

local function class(name)
  local cls = { __name = name }
  for k, v in pairs(Base) do cls[k] = v end
  cls.__index = cls
  return cls
end

-- The items live in the array part of the queue object itself.
local function init(cls, maxsize, fname)
  if maxsize == nil then
    maxsize = 0
  elseif type(maxsize) ~= "number" then
    error(("bad argument #1 to '%s' (number expected, got %s)"):format(fname, type(maxsize)), 3)
  end
  return setmetatable({
    maxsize = maxsize,
    _room = maxsize > 0 and maxsize or huge, -- full at this many items
    _cap = huge,
    _n = 0,
    _unfinished = 0,
    _shutdown = false,
    _getters = waitlist(),
    _putters = waitlist(),
  }, cls)
end

-- ------------------------------------------------------------------------
-- Queue: FIFO in a ring buffer (slots 1.._cap from _head, _n of them) that
-- doubles when full; put() and get() inline it, being the hot paths.

local Queue = class("Queue")

local function grow(self)
  local cap, head = self._cap, self._head
  -- unwrap: the slots before head move after the old end
  table_move(self, 1, head - 1, cap + 1)
  for i = 1, head - 1 do self[i] = nil end
  self._cap = 2 * cap
  return 2 * cap
end

function Queue:_put(item)
  local n, cap = self._n, self._cap
  if n == cap then cap = grow(self) end
  local i = self._head + n
  if i > cap then i = i - cap end
  self[i] = item
  self._n = n + 1
end

function Queue:_get()
  local h = self._head
  local item = self[h]
  self[h] = nil
  if h == self._cap then self._head = 1 else self._head = h + 1 end
  self._n = self._n - 1
  return item
end

--- Adds `item`, waiting while the queue is full (yields).
-- @function Queue:put
-- @python Queue.put
-- @param item not nil
-- @raise QueueShutDown after `shutdown`; RuntimeError outside a task when full; CancelledError
function Queue:put(item)
  local n = self._n
  if n >= self._limit or item == nil then return put_slow(self, item) end
  local i = self._head + n
  local cap = self._cap
  if i > cap then i = i - cap end
  self[i] = item
  self._n = n + 1
  self._unfinished = self._unfinished + 1
end

--- Takes an item, waiting while the queue is empty (yields).
-- @function Queue:get
-- @python Queue.get
-- @return the item
-- @raise QueueShutDown when shut down and empty; RuntimeError outside a task when empty; CancelledError
function Queue:get()
  local n = self._n
  if n <= self._floor then return get_slow(self) end
  local h = self._head
  local item = self[h]
  self[h] = nil
  if h == self._cap then self._head = 1 else self._head = h + 1 end
  self._n = n - 1
  return item
end

function Queue:_iter()
  local head, cap, i = self._head, self._cap, 0
  return function()
    if i >= self._n then return nil end
    i = i + 1
    local slot = head + i - 1
    if slot > cap then slot = slot - cap end
    return i, self[slot]
  end
end

--- A FIFO queue.
-- @function Queue
-- @python asyncio.Queue
-- @tparam[opt=0] number maxsize 0: unbounded
-- @treturn Queue
local function new_queue(maxsize)
  local self = init(Queue, maxsize, "Queue")
  self._head, self._cap = 1, 16
  -- put and get are copied into the object: a call then skips the metatable
  -- lookup, a tenth of the cost of an item
  self.put, self.get = Queue.put, Queue.get
  retune(self)
  return self
end

-- ------------------------------------------------------------------------
-- LifoQueue: a stack.

local LifoQueue = class("LifoQueue")

function LifoQueue:_put(item)
  local n = self._n + 1
  self[n] = item
  self._n = n
end

function LifoQueue:_get()
  local n = self._n
  local item = self[n]
  self[n] = nil
  self._n = n - 1
  return item
end

function LifoQueue:_iter()
  return ipairs(self)
end

--- A LIFO queue (last in, first out).
-- @function LifoQueue
-- @python asyncio.LifoQueue
-- @tparam[opt=0] number maxsize
-- @treturn LifoQueue
local function new_lifo_queue(maxsize)
  local self = init(LifoQueue, maxsize, "LifoQueue")
  retune(self)
  return self
end

-- ------------------------------------------------------------------------
-- PriorityQueue: a binary heap of items (self[1..n]) with their keys and
-- insertion numbers (which keep equal keys in FIFO order) in parallel arrays.

local PriorityQueue = class("PriorityQueue")

-- The sort key: the item itself, or item[1] for a table without `<` of its own
-- (a {priority, value} pair).
local function key_of(item)
  if type(item) == "table" then
    local mt = getmetatable(item)
    if mt == nil or mt.__lt == nil then
      local key = item[1]
      if key == nil then error("bad argument #1 to 'put' (priority expected at [1], got nil)", 4) end
      return key
    end
  end
  return item
end

function PriorityQueue:_put(item)
  local key = key_of(item)
  local keys, seqs = self._keys, self._seqs
  local n = self._n + 1
  -- Find the slot before moving anything, so that keys that cannot be
  -- compared raise with the heap intact.
  local i = n
  while i > 1 do
    local p = i // 2
    if key < keys[p] then i = p else break end
  end
  local j = n
  while j > i do
    local p = j // 2
    self[j], keys[j], seqs[j] = self[p], keys[p], seqs[p]
    j = p
  end
  local seq = self._seq + 1
  self._seq = seq
  self[i], keys[i], seqs[i] = item, key, seq
  self._n = n
end

function PriorityQueue:_get()
  local keys, seqs = self._keys, self._seqs
  local n = self._n
  local top = self[1]
  local item, key, seq = self[n], keys[n], seqs[n]
  local m = n - 1
  -- Walk down first, recording the path (one bit per level), then move: keys
  -- that cannot be compared raise with the heap intact.
  local i, path, depth = 1, 0, 0
  while true do
    local c = 2 * i
    if c > m then break end
    if c < m then
      local kc, kd = keys[c], keys[c + 1]
      if kd < kc or (not (kc < kd) and seqs[c + 1] < seqs[c]) then c = c + 1 end
    end
    local kc = keys[c]
    if kc < key or (not (key < kc) and seqs[c] < seq) then
      path = path * 2 + (c - 2 * i)
      depth = depth + 1
      i = c
    else
      break
    end
  end
  local j = 1
  for level = depth - 1, 0, -1 do
    local c = 2 * j + (path >> level) % 2
    self[j], keys[j], seqs[j] = self[c], keys[c], seqs[c]
    j = c
  end
  self[n], keys[n], seqs[n] = nil, nil, nil
  if m > 0 then self[i], keys[i], seqs[i] = item, key, seq end
  self._n = m
  return top
end

function PriorityQueue:_iter()
  return ipairs(self)
end

--- A priority queue (smallest first).
-- @function PriorityQueue
-- @python asyncio.PriorityQueue
-- @tparam[opt=0] number maxsize
-- @treturn PriorityQueue
local function new_priority_queue(maxsize)
  local self = init(PriorityQueue, maxsize, "PriorityQueue")
  self._keys, self._seqs, self._seq = {}, {}, 0
  retune(self)
  return self
end

return {
  Queue = new_queue,
  LifoQueue = new_lifo_queue,
  PriorityQueue = new_priority_queue,
}
