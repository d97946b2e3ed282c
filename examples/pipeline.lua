-- examples/pipeline.lua: a producer/consumer pipeline over bounded queues, in
-- about half a second.
--
-- Order lines flow reader -> parse (3 workers) -> price (2 workers) -> store
-- (1 worker), each stage joined to the next by an asyncio.Queue of 3 items.
-- It shows:
--   1. back-pressure: the reader is faster than the parsers, so it waits in
--      put() whenever the queue is full instead of piling up work;
--   2. several workers draining one queue, and a bad item failing alone: its
--      worker logs it, calls task_done() all the same, and goes on;
--   3. an orderly stop: join() each queue in stage order, then end the idle
--      workers: shutdown() makes a blocked get() raise QueueShutDown (Python
--      3.13); the store worker is cancelled instead, the older idiom;
--   4. a TaskGroup owning the workers, so a crashing worker would fail the
--      whole pipeline instead of leaving join() waiting forever.
--
-- Run it with `lua5.4 examples/pipeline.lua` once the module is on the Lua
-- paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local LINES = {
  "order 1: 3 x widget", "order 2: 1 x gizmo", "order 3: 12 x sprocket",
  "order 4: 2 x gizmo", "order 5 4 x widget", "order 6: 1 x sprocket",
  "order 7: 5 x doohickey", "order 8: 2 x widget", "order 9: 7 x sprocket",
  "order 10: 1 x widget", "order 11: 3 x gizmo", "order 12: 6 x widget",
}
local PRICES = { widget = 2.50, gizmo = 9.99, sprocket = 0.75 }
local PARSE_S, PRICE_S, STORE_S = 0.09, 0.06, 0.02 -- simulated work per item

local loop, t0

local function log(fmt, ...)
  print(("[%.2f] " .. fmt):format(loop:time() - t0, ...))
end

-- The steps of the stages; `worker` is the name of the worker running one.
local function parse(line, worker)
  asyncio.sleep(PARSE_S)
  local id, qty, item = line:match("^order (%d+): (%d+) x (%a+)$")
  if not id then error(asyncio.ValueError(("malformed line %q"):format(line))) end
  return { id = tonumber(id), qty = tonumber(qty), item = item, parsed_by = worker }
end

local function price(order, worker)
  asyncio.sleep(PRICE_S)
  local each = PRICES[order.item]
  if not each then error(asyncio.ValueError(("no price for %q in order %d"):format(order.item, order.id))) end
  order.total, order.priced_by = order.qty * each, worker
  return order
end

local stored, total = 0, 0

local function store(order)
  asyncio.sleep(STORE_S)
  stored, total = stored + 1, total + order.total
  log("stored order %2d: %2d x %-8s = %6.2f  (%s, %s)", order.id, order.qty, order.item,
    order.total, order.parsed_by, order.priced_by)
end

local handled = {} -- items handled per worker name, for the summary

-- A worker: takes items from inbox, hands each result to outbox (if any),
-- until get() raises QueueShutDown or the worker is cancelled. The result
-- is queued before task_done(), so that once inbox:join() returns every
-- item is counted by the next queue's join().
local function worker(name, inbox, step, outbox)
  handled[name] = 0
  while true do
    local got, item = pcall(inbox.get, inbox)
    if not got then
      if asyncio.isinstance(item, asyncio.QueueShutDown) then return end
      error(item, 0)
    end
    local ok, res = pcall(step, item, name)
    if ok then
      handled[name] = handled[name] + 1
      if outbox then outbox:put(res) end
    end
    inbox:task_done() -- failed or not, the item is finished: join() counts on it
    if not ok then
      -- pcall caught it, but a cancellation must still end the worker
      if asyncio.isinstance(res, asyncio.CancelledError) then error(res, 0) end
      log("%s dropped an item: %s", name, tostring(res))
    end
  end
end

local function main()
  loop = asyncio.get_running_loop()
  t0 = loop:time()
  local lines, orders, priced = asyncio.Queue(3), asyncio.Queue(3), asyncio.Queue(3)
  do
    local tg <close> = asyncio.TaskGroup()
    for i = 1, 3 do tg:create_task(worker, "parse-" .. i, lines, parse, orders) end
    for i = 1, 2 do tg:create_task(worker, "price-" .. i, orders, price, priced) end
    local storer = tg:create_task(worker, "store", priced, store)

    local blocked = 0 -- time the reader spent waiting for room
    for _, line in ipairs(LINES) do
      local before = loop:time()
      lines:put(line)
      blocked = blocked + (loop:time() - before)
    end
    log("reader: all %d lines queued, after waiting %.2f s in put() for room", #LINES, blocked)

    lines:join()
    lines:shutdown()
    log("parse stage drained: its workers end on QueueShutDown")
    orders:join()
    orders:shutdown()
    log("price stage drained: its workers end on QueueShutDown")
    priced:join()
    storer:cancel()
    log("store stage drained: its worker is cancelled")
  end -- leaving the TaskGroup's scope awaits every worker; a cancelled one is no failure

  local counts = {}
  for _, name in ipairs { "parse-1", "parse-2", "parse-3", "price-1", "price-2", "store" } do
    counts[#counts + 1] = ("%s %d"):format(name, handled[name])
  end
  log("stored %d of %d orders, worth %.2f", stored, #LINES, total)
  log("items per worker: %s", table.concat(counts, ", "))
  log("done: one item at a time would have taken %.2f s", #LINES * (PARSE_S + PRICE_S + STORE_S))
end

asyncio.run(main)
