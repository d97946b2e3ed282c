-- Call graphs of tasks (Python 3.14's asyncio.graph) and the ps/pstree views
-- of every task of a loop (python -m asyncio ps/pstree), read from live tasks.
--
-- Who awaits whom is worked out when someone looks, from what is there
-- anyway, so awaiting costs nothing: a task blocked in fut:await() is found
-- from what the C step records (core.task_suspension); gather, wait and
-- shield register once per call the future their caller awaits in place of
-- the children (a proxy: whoever awaits it awaits each pending child), and a
-- TaskGroup registers itself once (its parent awaits each of its tasks).
-- Only the public future_add_to_awaited_by keeps edges one by one.

--- Debug mode and introspection. Debug mode
-- (`asyncio.run(main, {debug = true})`, `loop:set_debug(true)` or
-- `LUA_ASYNCIO_DEBUG=1`) logs callbacks
-- slower than `loop.slow_callback_duration`, tasks collected while pending,
-- futures whose error was never retrieved (with where they were created),
-- and yielding APIs misused from callbacks. Call graphs follow Python 3.14's
-- `asyncio.graph`; `ps` and `pstree` follow `python -m asyncio ps/pstree`.
-- @module debug

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local acoroutine = require "asyncio.coroutine"

local isfuture, suspension, all_tasks = core.isfuture, core.task_suspension, core.all_tasks
local fut_done = core.Future.done
local getinfo, getlocal, getupvalue = debug.getinfo, debug.getlocal, debug.getupvalue
local concat, sort = table.concat, table.sort

local M = {}

-- ------------------------------------------------------------------------
-- Edges

-- Weak keys throughout: a registration nobody undoes goes with its object.
-- proxy future -> its children: a list {f1, f2, ..., n =} or one future
local proxies = setmetatable({}, { __mode = "k" })
-- TaskGroup -> true (its _parent awaits each task of its _tasks set)
local groups = setmetatable({}, { __mode = "k" })
-- future -> {[waiter] = true}: future_add_to_awaited_by's edges
local explicit = setmetatable({}, { __mode = "k" })

--- Records that `waiter` awaits `fut` (for awaits the runtime cannot see).
-- Anything but two futures is ignored, as Python does with foreign ones.
-- @function future_add_to_awaited_by
-- @python asyncio.future_add_to_awaited_by
-- @tparam Future fut
-- @tparam Future waiter
function M.future_add_to_awaited_by(fut, waiter)
  if not (isfuture(fut) and isfuture(waiter)) then return end
  local set = explicit[fut]
  if set == nil then
    set = {}
    explicit[fut] = set
  end
  set[waiter] = true
end

--- The wait recorded by `future_add_to_awaited_by` has ended.
-- @function future_discard_from_awaited_by
-- @python asyncio.future_discard_from_awaited_by
-- @tparam Future fut
-- @tparam Future waiter
function M.future_discard_from_awaited_by(fut, waiter)
  local set = explicit[fut]
  if set == nil then return end
  set[waiter] = nil
  if next(set) == nil then explicit[fut] = nil end
end

-- For gather (proxy: the gathering future), wait (the future it waits on)
-- and shield (the outer future): while `proxy` is pending, its awaiters
-- await each pending future of `children`.
function M._proxy(proxy, children)
  proxies[proxy] = children
end

function M._group(tg)
  groups[tg] = true
end

-- ------------------------------------------------------------------------
-- Frames

local function is_task(f) return f.get_coro ~= nil end

-- asyncio.coroutine's own frames (resume, wrap, serve) are plumbing: left out,
-- but the generator each serves is walked in their place.
local plumbing = getinfo(acoroutine.resume, "S").source

-- C functions that stand for a coroutine of Python's asyncio keep their frame
-- (C frames are otherwise left out): Event.wait (src/event.c).
local c_frames = { [core.Event().wait] = true }

--- A frame of a call graph: `{name =, source =, line =}`.
-- @function FrameCallGraphEntry
-- @python asyncio.FrameCallGraphEntry
-- @tparam string name
-- @tparam string source
-- @tparam integer line
-- @treturn table
function M.FrameCallGraphEntry(name, source, line)
  return { name = name, source = source, line = line }
end

--- A call graph: `{future =, call_stack =, awaited_by =}`.
-- @function FutureCallGraph
-- @python asyncio.FutureCallGraph
-- @tparam Future future
-- @tparam table call_stack frames, innermost first
-- @tparam table awaited_by the graphs of the tasks awaiting `future`
-- @treturn table
function M.FutureCallGraph(future, call_stack, awaited_by)
  return { future = future, call_stack = call_stack or {}, awaited_by = awaited_by or {} }
end

local function frame_of(info, generator)
  local name = info.name
  if name ~= nil and info.namewhat == "metamethod" then
    name = "__" .. name -- as it is spelt in the metatable (TaskGroup's __close)
  elseif name == nil then
    name = info.what == "main" and "main chunk" or ("function <%s:%d>"):format(info.short_src, info.linedefined)
  end
  local source = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  local frame = M.FrameCallGraphEntry(name, source, info.currentline)
  if generator then frame.generator = true end
  return frame
end

-- The generator a plumbing frame drives: its local or upvalue `co`.
local function driven_thread(co, level, fn)
  for i = 1, 8 do
    local name, v = getlocal(co, level, i)
    if name == nil then break end
    if name == "co" and type(v) == "thread" then return v end
  end
  for i = 1, 8 do
    local name, v = getupvalue(fn, i)
    if name == nil then break end
    if name == "co" and type(v) == "thread" then return v end
  end
end

-- Appends the frames of thread `co`, innermost first, to ctx.out; the
-- running thread starts at the caller of ctx.entry (plus ctx.depth - 1).
local function walk(co, generator, ctx)
  ctx.seen[co] = true
  local level = 0
  if co == ctx.running then
    while true do
      local info = getinfo(co, level, "f")
      if info == nil then level = 1 break end
      level = level + 1
      if info.func == ctx.entry then
        level = level + ctx.depth - 1
        break
      end
    end
  end
  while true do
    local info = getinfo(co, level, "Slnf")
    if info == nil then break end
    if info.source == plumbing then
      local inner = driven_thread(co, level, info.func)
      if inner ~= nil and not ctx.seen[inner] then walk(inner, true, ctx) end
    elseif info.what ~= "C" or c_frames[info.func] then
      ctx.out[#ctx.out + 1] = frame_of(info, generator)
    end
    level = level + 1
  end
end

local function limited(frames, limit)
  if limit == nil then return frames end
  local n, out = #frames, {}
  if limit >= 0 then
    for i = 1, math.min(limit, n) do out[i] = frames[i] end
  else
    for i = math.max(1, n + limit + 1), n do out[#out + 1] = frames[i] end
  end
  return out
end

-- The call stack of a task: where its coroutine is suspended (or, for the
-- running task, where the introspecting call was made).
local function task_stack(task, ctx)
  local _, _, co = suspension(task)
  ctx.out, ctx.seen = {}, {}
  if co ~= nil then walk(co, false, ctx) end
  if co ~= nil and ctx.running ~= co and not ctx.seen[ctx.running] and ctx.current == task then
    -- running in a coroutine the task's own stack does not lead to (a plain
    -- coroutine.wrap): its frames are still the innermost
    local outer = ctx.out
    ctx.out = {}
    walk(ctx.running, true, ctx)
    for _, f in ipairs(outer) do ctx.out[#ctx.out + 1] = f end
  end
  return limited(ctx.out, ctx.limit)
end

-- ------------------------------------------------------------------------
-- Awaited-by

local function task_id(f)
  if not is_task(f) then return math.huge end
  local _, id = suspension(f)
  return id
end

local function by_id(a, b)
  local ia, ib = task_id(a), task_id(b)
  if ia ~= ib then return ia < ib end
  return ("%p"):format(a) < ("%p"):format(b)
end

local function add_to(map, key, v)
  local list = map[key]
  if list == nil then
    map[key] = { v }
  else
    list[#list + 1] = v
  end
end

-- What awaiters_of reads: {await = {[future] = {task...}}, via = {[child] =
-- {proxy...}}, parent = {[task] = {TaskGroup parent...}}} for `loop`.
local function edge_index(loop)
  local index = { await = {}, via = {}, parent = {} }
  if loop == nil or loop:is_closed() then return index end
  for _, t in ipairs(all_tasks(loop)) do
    local _, _, _, fut = suspension(t)
    if fut ~= nil then add_to(index.await, fut, t) end
  end
  for proxy, children in pairs(proxies) do
    if not fut_done(proxy) then
      if isfuture(children) then
        add_to(index.via, children, proxy)
      else
        for i = 1, children.n or #children do add_to(index.via, children[i], proxy) end
      end
    end
  end
  for tg in pairs(groups) do
    local parent = tg._parent
    if parent ~= nil then
      for t in pairs(tg._tasks) do add_to(index.parent, t, parent) end
    end
  end
  return index
end

-- The futures awaiting `fut`, tasks first in creation order.
local function awaiters_of(fut, index)
  local list, seen = {}, {}
  local function add(w)
    if not seen[w] then
      seen[w] = true
      list[#list + 1] = w
    end
  end
  local function collect(f, visiting)
    for _, w in ipairs(index.await[f] or {}) do add(w) end
    for _, w in ipairs(index.parent[f] or {}) do add(w) end
    for w in pairs(explicit[f] or {}) do add(w) end
    if fut_done(f) then return end
    visiting[f] = true
    for _, proxy in ipairs(index.via[f] or {}) do
      if not visiting[proxy] then collect(proxy, visiting) end
    end
    visiting[f] = nil
  end
  collect(fut, {})
  sort(list, by_id)
  return list
end

local function build(fut, ctx, path)
  local stack = {}
  if is_task(fut) and ctx.limit ~= 0 then stack = task_stack(fut, ctx) end
  local graph = M.FutureCallGraph(fut, stack, {})
  path[fut] = true
  for _, w in ipairs(awaiters_of(fut, ctx.index)) do
    -- a cycle in the await graph ends where it closes
    if not path[w] then graph.awaited_by[#graph.awaited_by + 1] = build(w, ctx, path) end
  end
  path[fut] = nil
  return graph
end

local function check_args(future, opts, fname)
  if opts == nil and type(future) == "table" then future, opts = nil, future end
  if future ~= nil and not isfuture(future) then
    error(("bad argument #1 to '%s' (Future expected, got %s)"):format(fname, type(future)), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(fname, type(opts)), 3)
  end
  opts = opts or {}
  if opts.limit ~= nil and math.type(opts.limit) ~= "integer" then
    error(("bad argument #2 to '%s' (limit: integer expected)"):format(fname), 3)
  end
  if opts.depth ~= nil and (math.type(opts.depth) ~= "integer" or opts.depth < 1) then
    error(("bad argument #2 to '%s' (depth: positive integer expected)"):format(fname), 3)
  end
  return future, opts
end

local function context(entry, depth, limit, loop)
  return {
    running = coroutine.running(),
    current = loop and not loop:is_closed() and core.current_task(loop) or nil,
    entry = entry,
    depth = depth or 1,
    limit = limit,
    index = edge_index(loop),
  }
end

--- The call graph of `future` (default: the current task): its frames,
-- innermost first, and the graphs of the tasks awaiting it, through
-- `await`, `gather`, `wait`, `shield` and TaskGroups. For the current
-- task the stack starts at the caller (`depth = 1`), or `depth - 1` frames
-- further out.
-- @function capture_call_graph
-- @python asyncio.capture_call_graph
-- @tparam[opt] Future future
-- @tparam[opt] table opts `depth`, `limit`
-- @treturn ?FutureCallGraph nil outside a task when no future is given
function M.capture_call_graph(future, opts)
  future, opts = check_args(future, opts, "capture_call_graph")
  local loop = core.get_running_loop()
  if future == nil then
    future = loop and core.current_task(loop)
    if future == nil then return nil end
  end
  local ctx = context(M.capture_call_graph, opts.depth, opts.limit, future:get_loop())
  local graph = build(future, ctx, {})
  return graph
end

-- ------------------------------------------------------------------------
-- Python's layout

local function callable_name(name)
  if name:match("^[%a_][%w_.:]*$") then return name .. "()" end
  return name
end

local function render(graph, buf, level)
  local indent = ("    "):rep(level)
  local fut = graph.future
  if is_task(fut) then
    buf[#buf + 1] = ("%s* Task(name='%s', id=%p)"):format(indent, fut:get_name(), fut)
  else
    buf[#buf + 1] = ("%s* Future(id=%p)"):format(indent, fut)
  end
  if #graph.call_stack > 0 then
    buf[#buf + 1] = indent .. "  + Call stack:"
    for _, f in ipairs(graph.call_stack) do
      buf[#buf + 1] = ("%s  |   File '%s', line %d, in %s%s"):format(indent, f.source, f.line,
        f.generator and "generator " or "", callable_name(f.name))
    end
  end
  if #graph.awaited_by > 0 then
    buf[#buf + 1] = indent .. "  + Awaited by:"
    for _, g in ipairs(graph.awaited_by) do render(g, buf, level + 1) end
  end
end

--- The call graph in Python's layout (`* Task(name='main', id=0x...)`,
-- `+ Call stack:`, `+ Awaited by:`); "" when there is none.
-- @function format_call_graph
-- @python asyncio.format_call_graph
-- @tparam[opt] Future future
-- @tparam[opt] table opts `depth`, `limit`
-- @treturn string
function M.format_call_graph(future, opts)
  future, opts = check_args(future, opts, "format_call_graph")
  local sub = { depth = (opts.depth or 1) + 1, limit = opts.limit }
  local graph = M.capture_call_graph(future, sub)
  if graph == nil then return "" end
  local buf = {}
  render(graph, buf, 0)
  return concat(buf, "\n")
end

--- Writes `format_call_graph` to `opts.file` (default `io.stdout`).
-- @function print_call_graph
-- @python asyncio.print_call_graph
-- @tparam[opt] Future future
-- @tparam[opt] table opts `depth`, `limit`, `file`
function M.print_call_graph(future, opts)
  future, opts = check_args(future, opts, "print_call_graph")
  local sub = { depth = (opts.depth or 1) + 1, limit = opts.limit }
  local text = M.format_call_graph(future, sub)
  if text ~= "" then (opts.file or io.stdout):write(text, "\n") end
end

-- ------------------------------------------------------------------------
-- ps and pstree: every task of the loop

local function running_loop(loop, fname)
  loop = loop or core.get_running_loop()
  if loop == nil then error(errors.RuntimeError(fname .. "() called with no running event loop"), 3) end
  return loop
end

-- snapshot([loop [, entry]]) -> list of {task =, id =, name =, state =,
-- stack =, awaiters = {task...}} for every task of the loop, in creation
-- order: what ps, pstree and the control socket's top show. `entry` is the
-- public function whose caller a running task's stack starts at.
function M.snapshot(loop, entry)
  loop = running_loop(loop, "snapshot")
  local ctx = context(entry or M.snapshot, 1, nil, loop)
  local rows = {}
  for _, t in ipairs(all_tasks(loop)) do
    local state, id = suspension(t)
    rows[#rows + 1] = { task = t, id = id, state = state, name = t:get_name(),
                        stack = task_stack(t, ctx), awaiters = {} }
  end
  sort(rows, function(a, b) return a.id < b.id end)
  local row_of = {}
  for _, r in ipairs(rows) do row_of[r.task] = r end
  for _, r in ipairs(rows) do
    for _, w in ipairs(awaiters_of(r.task, ctx.index)) do
      if row_of[w] then r.awaiters[#r.awaiters + 1] = w end
    end
  end
  return rows, row_of
end

-- s as a column of at least width characters (ps here, top in control.lua)
local function pad(s, width)
  s = tostring(s)
  return #s >= width and s or s .. (" "):rep(width - #s)
end
M._pad = pad

local function stack_names(stack)
  local names = {}
  for i, f in ipairs(stack) do names[i] = f.name end
  return concat(names, " -> ")
end

-- The counters of task:get_stats() that ps and top show, as {header,
-- field, scale to the header's unit}: steps taken, seconds spent running,
-- seconds since it last ran, mean milliseconds from wake-up to run.
local STAT_COLUMNS = {
  { "steps", "steps" },
  { "busy s", "run_time", 1 },
  { "idle s", "since_run", 1 },
  { "wake ms", "sched_delay", 1000 },
}

-- stat_columns(task) -> list of {header, value}: the counter columns of
-- ps and top, from task:get_stats().
function M.stat_columns(task)
  local stats = task:get_stats()
  local cols = {}
  for i, c in ipairs(STAT_COLUMNS) do
    local v = stats[c[2]]
    cols[i] = { c[1], c[3] and ("%.3f"):format(v * c[3]) or tostring(v) }
  end
  return cols
end

--- A table of every task: id, name, state, counters, where it is suspended
-- (innermost frame first) and the ids of the tasks awaiting it.
-- @function ps
-- @python python -m asyncio ps
-- @tparam[opt] Loop loop default: the running loop
-- @treturn string
-- @raise RuntimeError with no loop
function M.ps(loop)
  local rows = M.snapshot(running_loop(loop, "ps"), M.ps)
  local head = { pad("task id", 18), pad("task name", 20), pad("state", 9) }
  for _, c in ipairs(STAT_COLUMNS) do head[#head + 1] = pad(c[1], 8) end
  head[#head + 1] = pad("coroutine stack", 50)
  head[#head + 1] = "awaiter id"
  local buf = { concat(head, " "), ("-"):rep(156) }
  for _, r in ipairs(rows) do
    local ids = {}
    for i, w in ipairs(r.awaiters) do ids[i] = ("%p"):format(w) end
    local cells = { pad(("%p"):format(r.task), 18), pad(r.name, 20), pad(r.state, 9) }
    for _, c in ipairs(M.stat_columns(r.task)) do cells[#cells + 1] = pad(c[2], 8) end
    cells[#cells + 1] = pad(stack_names(r.stack), 50)
    cells[#cells + 1] = concat(ids, ", ")
    buf[#buf + 1] = concat(cells, " "):gsub("%s+$", "")
  end
  return concat(buf, "\n") .. "\n"
end

-- Cycles of the graph {[awaiter] = {awaited...}}, each a list of tasks that
-- starts and ends with the same one (a depth-first search for back edges).
local function find_cycles(graph, order)
  local WHITE, GREY, BLACK = nil, 1, 2
  local color, path, cycles = {}, {}, {}
  local function dfs(v)
    color[v] = GREY
    path[#path + 1] = v
    for _, w in ipairs(graph[v] or {}) do
      if color[w] == WHITE then
        dfs(w)
      elseif color[w] == GREY then
        local cycle, on = {}, false
        for _, p in ipairs(path) do
          if p == w then on = true end
          if on then cycle[#cycle + 1] = p end
        end
        cycle[#cycle + 1] = w
        cycles[#cycles + 1] = cycle
      end
    end
    color[v] = BLACK
    path[#path] = nil
  end
  for _, v in ipairs(order) do
    if color[v] == WHITE then dfs(v) end
  end
  return cycles
end

local function frame_label(f)
  return ("%s %s:%d"):format(f.name, f.source, f.line)
end
M._frame_label = frame_label

--- The tasks as a tree, each under the frames of the task awaiting it.
-- @function pstree
-- @python python -m asyncio pstree
-- @tparam[opt] Loop loop default: the running loop
-- @treturn string
-- @raise RuntimeError with no loop, or naming the cycle (field `cycles`) when the await graph has one
function M.pstree(loop)
  local rows, row_of = M.snapshot(running_loop(loop, "pstree"), M.pstree)
  local graph, order = {}, {}
  for _, r in ipairs(rows) do
    for _, w in ipairs(r.awaiters) do
      if graph[w] == nil then
        graph[w] = {}
        order[#order + 1] = w
      end
      local kids = graph[w]
      kids[#kids + 1] = r.task
    end
  end
  local cycles = find_cycles(graph, order)
  if #cycles > 0 then
    local names = {}
    for i, c in ipairs(cycles) do
      local n = {}
      for j, t in ipairs(c) do n[j] = row_of[t].name end
      names[i] = "cycle: " .. concat(n, " → ")
    end
    error(errors.RuntimeError("await-graph contains cycles - cannot print a tree: " .. concat(names, "; "),
      { cycles = cycles }), 2)
  end

  -- nodes: a task's row, or a frame under its parent node
  local children, frame_nodes = {}, {}
  local function frame_node(parent, f)
    local label = frame_label(f)
    local nodes = frame_nodes[parent]
    if nodes == nil then
      nodes = {}
      frame_nodes[parent] = nodes
    end
    local node = nodes[label]
    if node == nil then
      node = { label = " " .. label }
      nodes[label] = node
      children[parent] = children[parent] or {}
      table.insert(children[parent], node)
    end
    return node
  end
  local function chain(from, stack) -- outermost frame first
    local cur = from
    for i = #stack, 1, -1 do cur = frame_node(cur, stack[i]) end
    return cur
  end
  local node_of, awaited = {}, {}
  for _, r in ipairs(rows) do node_of[r] = { label = "(T) " .. r.name } end
  for _, r in ipairs(rows) do
    for _, w in ipairs(r.awaiters) do
      awaited[r] = true
      local at = chain(node_of[row_of[w]], row_of[w].stack)
      children[at] = children[at] or {}
      table.insert(children[at], node_of[r])
    end
  end
  for _, r in ipairs(rows) do
    if graph[r.task] == nil then chain(node_of[r], r.stack) end
  end

  local buf = {}
  local function draw(node, prefix, last)
    buf[#buf + 1] = prefix .. (last and "└── " or "├── ") .. node.label
    local kids = children[node] or {}
    local sub = prefix .. (last and "    " or "│   ")
    for i, k in ipairs(kids) do draw(k, sub, i == #kids) end
  end
  for _, r in ipairs(rows) do
    if not awaited[r] then draw(node_of[r], "", true) end
  end
  return #buf == 0 and "" or concat(buf, "\n") .. "\n"
end

return M
