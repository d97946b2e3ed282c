-- A FIFO of waiters (one-shot futures) in slots h..t of a table, shared by the
-- locks (asyncio.locks) and the queues (asyncio.queues). Slots below h are free;
-- an empty FIFO is { h = 1, t = 0 }.
local table_move = table.move

local M = {}

function M.fifo() return { h = 1, t = 0 } end

-- Appends fut; returns how many wait. Slides the waiters down to slot 1 once
-- the free slots below h outnumber half of them: indices stay small, so the
-- slots stay in the table's array part when waiters never run out.
function M.push(q, fut)
  local h, t = q.h, q.t + 1
  if h > 32 and 2 * (h - 1) > t - h then
    table_move(q, h, t - 1, 1)
    local live = t - h
    for i = live + 1, t - 1 do q[i] = nil end
    q.h, h, t = 1, 1, live + 1
  end
  q[t] = fut
  q.t = t
  return t - h + 1
end

-- Removes fut if it is still there (a woken waiter usually is at the head);
-- returns how many are left.
function M.remove(q, fut)
  local h, t = q.h, q.t
  if q[h] == fut then
    q[h] = nil
    if h == t then
      q.h, q.t = 1, 0
      return 0
    end
    q.h = h + 1
    return t - h
  end
  for i = h + 1, t do
    if q[i] == fut then
      table_move(q, i + 1, t, i)
      q[t] = nil
      t = t - 1
      q.t = t
      break
    end
  end
  return t - h + 1
end

-- How many wait; 0 for no FIFO (nil).
function M.count(q)
  if q == nil then return 0 end
  return q.t - q.h + 1
end

return M
