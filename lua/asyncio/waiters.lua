-- A FIFO of parked tasks, shared by the locks (asyncio.locks) and the queues
-- (asyncio.queues): a wait costs a slot of a table, not a Future. The tasks
-- sit in slots h..#q; a slot below h, or one whose task left, holds false, so
-- that #q stays exact for core.try_park, which appends at #q + 1; q.holes
-- counts the false slots in h..#q. A woken task is taken out at once; a
-- cancelled one takes its entry out when it runs. Like Event, a FIFO is tied
-- to no loop: unpark schedules a task on its own loop.
local core = require "asyncio.core"

local unpark, is_parked, current_task = core.unpark, core.is_parked, core.current_task
local rawequal = rawequal

local M = {}

function M.fifo() return { h = 1, holes = 0 } end

-- Moves the tasks down to slots 1..n once the false slots outnumber them (and
-- 32): the head's slots after wake-ups, holes left by timed-out waiters
-- behind one that never wakes.
local function compact(q, h, t)
  local free = h - 1 + q.holes
  if free <= 32 or 2 * free <= t then return end
  local j = 0
  for i = h, t do
    local task = q[i]
    if task then
      j = j + 1
      q[j] = task
    end
  end
  for i = j + 1, t do q[i] = nil end
  q.h, q.holes = 1, 0
end

-- The waiters park themselves at the tail (`local ok, err, woken, slot =
-- core.try_park(q)`, inline, as a function more on the stack of each blocked
-- task would cost it a CallInfo). A cancelled one that was not woken then
-- takes its entry out: drop(q, slot).
function M.drop(q, slot)
  local h, t, me = q.h, #q, current_task()
  if slot > t or not rawequal(q[slot], me) then
    -- compacted meanwhile: the entry moved down, unless a wake-up skipped it
    if slot > t then slot = t end
    while slot >= h and not rawequal(q[slot], me) do slot = slot - 1 end
    if slot < h then return end
  end
  q[slot] = false
  if slot == h then q.h = h + 1 else q.holes = q.holes + 1 end
  compact(q, q.h, t)
end

-- Wakes the first task still parked, taking it out (and the cancelled ones
-- before it); returns whether there was one.
function M.wake(q)
  local h, t = q.h, #q
  while h <= t do
    local task = q[h]
    q[h] = false
    h = h + 1
    if not task then
      q.holes = q.holes - 1
    elseif unpark(task, q) then
      q.h = h
      if h > 33 then compact(q, h, t) end
      return true
    end
  end
  q.h = h
  if h > 33 then compact(q, h, t) end
  return false
end

-- Wakes every task parked; the FIFO is empty afterwards.
function M.wake_all(q)
  for i = 1, #q do
    local task = q[i]
    if task then unpark(task, q) end
    q[i] = nil
  end
  q.h, q.holes = 1, 0
end

-- Whether a task is parked (a cancelled one that has not run yet is not).
function M.any_parked(q)
  if q == nil then return false end
  for i = q.h, #q do
    local task = q[i]
    if task and is_parked(task, q) then return true end
  end
  return false
end

-- How many tasks are in the FIFO; 0 for no FIFO (nil).
function M.count(q)
  if q == nil then return 0 end
  return #q - q.h + 1 - q.holes
end

return M
