-- Call graphs, ps and pstree (after CPython 3.14's test_asyncio/test_graph.py
-- where it applies): call stacks of tasks and of the asyncio.coroutine
-- generators they are suspended in, awaited-by edges through await, gather,
-- wait, shield and TaskGroups, Python's layout, the await-graph cycle.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run

after_each(helper.close_loops)

-- A graph as {label, {frame names}, {awaited-by graphs sorted by label}}, as
-- the Python test's walk(): T<name> for a named task, T<anon> for Task-N, F.
local function walk(g)
  local label = "F"
  if g.future.get_name then
    local n = g.future:get_name()
    label = n:match("^Task%-%d+$") and "T<anon>" or ("T<" .. n .. ">")
  end
  local frames = {}
  for _, f in ipairs(g.call_stack) do
    -- Lua names a function by its call site: the entry of a task has none
    if not f.name:match("^function <") then frames[#frames + 1] = (f.generator and "g " or "s ") .. f.name end
  end
  local by = {}
  for _, a in ipairs(g.awaited_by) do by[#by + 1] = walk(a) end
  table.sort(by, function(a, b) return a[1] < b[1] end)
  return { label, frames, by }
end

-- walk() of the current task's graph (seen from the caller of this
-- function's caller at depth 2), and its formatted text
local function capture_test_stack(fut, depth)
  local text = asyncio.format_call_graph(fut, { depth = (depth or 1) + 1 })
  local g = asyncio.capture_call_graph(fut, { depth = depth or 1 })
  return walk(g), text
end

describe("capture_call_graph", function()
  it("a TaskGroup: the child awaited by the group's parent and by two tasks awaiting it", function()
    local stack_for_c5
    run(function()
      local function c5() stack_for_c5 = { capture_test_stack(nil, 2) } end
      local function c4()
        asyncio.sleep(0)
        c5()
      end
      local function c3() c4() end
      local function c2() c3() end
      local function c1(task) task:await() end
      local function main()
        local tg <close> = asyncio.TaskGroup()
        local task = tg:create_task(function() c2() end)
        task:set_name("c2_root")
        tg:create_task(c1, task):set_name("sub_main_1")
        tg:create_task(c1, task):set_name("sub_main_2")
      end
      main()
    end)
    local main_task = { "T<anon>", { "s __close", "s main" }, {} }
    assert.same({ "T<c2_root>", { "s c5", "s c4", "s c3", "s c2" }, {
      main_task,
      { "T<sub_main_1>", {}, { main_task } },
      { "T<sub_main_2>", {}, { main_task } },
    } }, stack_for_c5[1])
    assert.truthy(stack_for_c5[2]:find("in __close()", 1, true))
  end)

  it("an asyncio.coroutine generator: its frames come first, marked as such", function()
    local stack
    run(function()
      local C = asyncio.coroutine
      local function gen_nested_call() stack = { capture_test_stack() } end
      local gen = C.wrap(function()
        for num = 0, 1 do
          C.yield(num)
          if num == 1 then
            asyncio.sleep(0)
            gen_nested_call()
          end
        end
      end)
      local function main()
        for _ = 1, 3 do gen() end
      end
      main()
    end)
    assert.same({ "T<anon>", { "g capture_test_stack", "g gen_nested_call", "s main" }, {} }, stack[1])
    assert.truthy(stack[2]:find("in generator gen_nested_call()", 1, true))
  end)

  it("a task suspended inside a generator shows the generator's frames", function()
    run(function()
      local C = asyncio.coroutine
      local function inner() asyncio.sleep(10) end
      local gen = C.wrap(function() inner() end)
      local function outer() gen() end
      local t = asyncio.create_task(function() outer() end)
      helper.sleep0(2)
      local g = asyncio.capture_call_graph(t)
      assert.same({ "T<anon>", { "g inner", "s outer" }, {} }, walk(g))
      assert.equal("sleeping", (asyncio.ps():match("Task%-%d+%s+(%a+)%s+%d+%s+[%d.]+%s+[%d.]+%s+[%d.]+%s+inner")))
      t:cancel()
    end)
  end)

  it("gather: the children are awaited by the task that gathers", function()
    local stack_for_deep
    run(function()
      local function deep()
        asyncio.sleep(0)
        stack_for_deep = { capture_test_stack() }
      end
      local function c1()
        asyncio.sleep(0)
        deep()
      end
      local function c2() asyncio.sleep(0) end
      local function main() asyncio.gather({ c1, c2 }):await() end
      main()
    end)
    assert.same({ "T<anon>", { "s capture_test_stack", "s deep" }, {
      { "T<anon>", { "s main" }, {} },
    } }, stack_for_deep[1])
  end)

  it("shield: the inner task is awaited by the caller", function()
    local stack
    run(function()
      local function deep()
        asyncio.sleep(0)
        stack = { capture_test_stack() }
      end
      local function c1()
        asyncio.sleep(0)
        deep()
      end
      local function main() asyncio.shield(c1):await() end
      main()
    end)
    assert.same({ "T<anon>", { "s capture_test_stack", "s deep" }, {
      { "T<anon>", { "s main" }, {} },
    } }, stack[1])
  end)

  it("a timeout scope adds no edge of its own", function()
    local stack
    run(function()
      local function inner()
        asyncio.sleep(0)
        stack = { capture_test_stack() }
      end
      local function c1()
        local _ <close> = asyncio.timeout(1)
        asyncio.sleep(0)
        inner()
      end
      local function main() asyncio.shield(c1):await() end
      main()
    end)
    assert.same({ "T<anon>", { "s capture_test_stack", "s inner" }, {
      { "T<anon>", { "s main" }, {} },
    } }, stack[1])
  end)

  it("wait: the futures are awaited by the waiting task, in asyncio.wait", function()
    local stack
    run(function()
      local function inner()
        asyncio.sleep(0)
        stack = { capture_test_stack() }
      end
      local function c1()
        asyncio.sleep(0)
        inner()
      end
      local function c2()
        for _ = 1, 3 do asyncio.sleep(0) end
      end
      local function main(t1, t2)
        while true do
          local _, pending = asyncio.wait({ t1, t2 })
          if #pending == 0 then break end
        end
      end
      main(asyncio.create_task(c1), asyncio.create_task(c2))
    end)
    assert.same({ "T<anon>", { "s capture_test_stack", "s inner" }, {
      { "T<anon>", { "s wait", "s main" }, {} },
    } }, stack[1])
  end)

  it("await of a task", function()
    local stack
    run(function()
      local function inner()
        asyncio.sleep(0)
        stack = { capture_test_stack() }
      end
      local function c1() inner() end
      local function c2()
        local t = asyncio.create_task(c1)
        t:set_name("there there")
        t:await()
      end
      local function main() c2() end
      main()
    end)
    assert.same({ "T<there there>", { "s capture_test_stack", "s inner" }, {
      { "T<anon>", { "s c2", "s main" }, {} },
    } }, stack[1])
  end)

  it("a future awaited by two tasks of a TaskGroup", function()
    local stack
    run(function()
      local function a2(fut) fut:await() end
      local function a1(fut) a2(fut) end
      local function b1(fut) fut:await() end
      local function main()
        local fut = asyncio.Future()
        local g <close> = asyncio.TaskGroup()
        g:create_task(a1, fut):set_name("task A")
        g:create_task(b1, fut):set_name("task B")
        helper.sleep0(5)
        stack = { capture_test_stack(fut) }
        fut:set_result(nil)
      end
      main()
    end)
    assert.same({ "F", {}, {
      { "T<task A>", { "s a2" }, { { "T<anon>", { "s capture_test_stack", "s main" }, {} } } },
      { "T<task B>", {}, { { "T<anon>", { "s capture_test_stack", "s main" }, {} } } },
    } }, stack[1])
    assert.truthy(stack[2]:match("^%* Future%(id=0x%x+%)\n"))
  end)

  it("frames are {name, source, line} innermost first; depth skips callers", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local function here() return asyncio.capture_call_graph(), asyncio.capture_call_graph({ depth = 2 }) end
      local g, g2 = here()
      local f = g.call_stack[1]
      assert.same({ name = "here", source = debug.getinfo(1, "S").source:sub(2), line = line + 1 }, f)
      assert.equal(asyncio.current_task(), g.future)
      assert.same({}, g.awaited_by)
      assert.equal(#g.call_stack - 1, #g2.call_stack)
      assert.equal(line + 2, g2.call_stack[1].line)
    end)
  end)

  it("limit: the innermost N, the outermost -N, none for 0", function()
    run(function()
      local function c() return asyncio.capture_call_graph(nil, { limit = 1 }),
        asyncio.capture_call_graph(nil, { limit = -1 }), asyncio.capture_call_graph(nil, { limit = 0 }),
        asyncio.capture_call_graph() end
      local function b() return c() end
      local function a() local r = table.pack(b()) return table.unpack(r, 1, r.n) end
      local one, last, none, all = a()
      assert.is_true(#all.call_stack >= 2)
      assert.equal(1, #one.call_stack)
      assert.equal(all.call_stack[1].name, one.call_stack[1].name)
      assert.same({ all.call_stack[#all.call_stack] }, last.call_stack)
      assert.same({}, none.call_stack)
    end)
  end)

  it("nil outside a task when no future is given; a future works anywhere", function()
    assert.is_nil(asyncio.capture_call_graph())
    assert.equal("", asyncio.format_call_graph())
    local loop = helper.new_loop()
    local f = loop:create_future()
    local g = asyncio.capture_call_graph(f)
    assert.equal(f, g.future)
    assert.same({}, g.call_stack)
    assert.same({}, g.awaited_by)
    local in_callback = "not run"
    run(function()
      local loop = asyncio.get_running_loop()
      loop:call_soon(function() in_callback = asyncio.capture_call_graph() end)
      asyncio.sleep(0)
    end)
    assert.is_nil(in_callback)
  end)

  it("bad arguments name the function", function()
    local e = helper.err_of(asyncio.capture_call_graph, 42)
    assert.truthy(tostring(e):find("bad argument #1 to 'capture_call_graph'", 1, true))
    e = helper.err_of(asyncio.format_call_graph, nil, 42)
    assert.truthy(tostring(e):find("bad argument #2 to 'format_call_graph'", 1, true))
    e = helper.err_of(asyncio.print_call_graph, nil, { limit = 1.5 })
    assert.truthy(tostring(e):find("limit", 1, true))
    e = helper.err_of(asyncio.capture_call_graph, nil, { depth = 0 })
    assert.truthy(tostring(e):find("depth", 1, true))
  end)

  it("the edges of gather, wait, shield and TaskGroups go when the wait ends", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local function awaiters(t) return #asyncio.capture_call_graph(t).awaited_by end
      local slow = asyncio.create_task(function() asyncio.sleep(10) end)
      local fast = asyncio.create_task(function() asyncio.sleep(0) end)
      asyncio.wait({ slow, fast }, { return_when = asyncio.FIRST_COMPLETED })
      assert.equal(0, awaiters(slow))

      local outer = asyncio.shield(slow)
      local waiter = asyncio.create_task(function() pcall(outer.await, outer) end)
      helper.sleep0(2)
      assert.equal(waiter, asyncio.capture_call_graph(slow).awaited_by[1].future) -- who awaits the shield
      outer:cancel()
      helper.sleep0(2)
      assert.equal(0, awaiters(slow))
      waiter:await()

      local g = asyncio.gather({ slow })
      local gw = asyncio.create_task(function() pcall(g.await, g) end)
      helper.sleep0(2)
      assert.equal(gw, asyncio.capture_call_graph(slow).awaited_by[1].future)
      g:cancel()
      gw:await()
      assert.equal(0, awaiters(slow))

      local child
      do
        local tg <close> = asyncio.TaskGroup()
        child = tg:create_task(function() asyncio.sleep(0) end)
        assert.equal(1, awaiters(child))
      end
      assert.equal(0, #asyncio.capture_call_graph(child).awaited_by)
      assert.is_true(loop:is_running())
    end)
  end)

  it("future_add_to_awaited_by / future_discard_from_awaited_by; other values are ignored", function()
    run(function()
      local f, w1 = asyncio.Future(), asyncio.Future()
      local me = asyncio.current_task()
      asyncio.future_add_to_awaited_by(f, w1)
      asyncio.future_add_to_awaited_by(f, me)
      asyncio.future_add_to_awaited_by(f, me)
      asyncio.future_add_to_awaited_by(f, "not a future")
      asyncio.future_add_to_awaited_by({}, me)
      local g = asyncio.capture_call_graph(f)
      assert.equal(2, #g.awaited_by)
      assert.equal(me, g.awaited_by[1].future) -- tasks first, by creation
      assert.equal(w1, g.awaited_by[2].future)
      asyncio.future_discard_from_awaited_by(f, me)
      asyncio.future_discard_from_awaited_by(f, 42)
      assert.same({ w1 }, { asyncio.capture_call_graph(f).awaited_by[1].future })
      asyncio.future_discard_from_awaited_by(f, w1)
      assert.same({}, asyncio.capture_call_graph(f).awaited_by)
    end)
  end)

  it("FrameCallGraphEntry and FutureCallGraph build the tables", function()
    assert.same({ name = "f", source = "x.lua", line = 3 }, asyncio.FrameCallGraphEntry("f", "x.lua", 3))
    local fut = helper.new_loop():create_future()
    assert.same({ future = fut, call_stack = {}, awaited_by = {} }, asyncio.FutureCallGraph(fut))
  end)
end)

describe("format_call_graph and print_call_graph", function()
  it("Python's layout", function()
    run(function()
      local main = asyncio.current_task()
      main:set_name("main")
      local text
      local t = asyncio.create_task(function()
        local function leaf() text = asyncio.format_call_graph() end
        leaf()
      end)
      t:set_name("it's")
      t:await()
      local src = debug.getinfo(1, "S").source:sub(2)
      local lines = {}
      for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(("* Task(name='it's', id=%p)"):format(t), lines[1])
      assert.equal("  + Call stack:", lines[2])
      assert.truthy(lines[3]:match("^  |   File '" .. src:gsub("%p", "%%%0") .. "', line %d+, in leaf%(%)$"))
      assert.truthy(lines[4]:match("^  |   File '.*', line %d+, in function <.*:%d+>$"))
      assert.equal("  + Awaited by:", lines[5])
      assert.equal(("    * Task(name='main', id=%p)"):format(main), lines[6])
      assert.equal("      + Call stack:", lines[7])
      assert.truthy(lines[8]:match("^      |   File '"))
    end)
  end)

  it("print_call_graph writes the text and a newline to opts.file", function()
    run(function()
      local out = {}
      local file = { write = function(_, ...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end }
      local function here() asyncio.print_call_graph(nil, { file = file }) end
      here()
      local text = table.concat(out)
      assert.truthy(text:match("^%* Task%(name='Task%-%d+', id=0x%x+%)\n"))
      assert.truthy(text:find("in here()\n", 1, true))
      assert.equal("\n", text:sub(-1))
    end)
    local out = {}
    asyncio.print_call_graph(nil, { file = { write = function(_, s) out[#out + 1] = s end } })
    assert.same({}, out)
  end)
end)

describe("ps and pstree", function()
  local function rows_of(text)
    local rows = {}
    for line in text:gmatch("[^\n]+") do rows[#rows + 1] = line end
    return rows
  end

  it("ps: one row per task with id, name, state, stack and awaiters", function()
    run(function()
      local me = asyncio.current_task()
      me:set_name("main")
      local ev = asyncio.Event()
      local function sleeper() asyncio.sleep(10) end
      local tg <close> = asyncio.TaskGroup()
      local s = tg:create_task(function() sleeper() end)
      s:set_name("sleeper")
      local w = tg:create_task(function() ev:wait() end)
      w:set_name("event-waiter")
      local f = asyncio.Future()
      local a = tg:create_task(function() f:await() end)
      a:set_name("awaiter")
      local g = asyncio.create_task(function() asyncio.gather({ s }):await() end)
      g:set_name("gatherer")
      helper.sleep0(2)
      local text = asyncio.ps()
      local rows = rows_of(text)
      assert.truthy(rows[1]:match("^task id%s+task name%s+state%s+steps%s+busy s%s+idle s%s+wake ms%s+coroutine stack%s+awaiter id$"))
      assert.truthy(rows[2]:match("^%-+$"))
      local by_name = {}
      for i = 3, #rows do
        local id, name, state = rows[i]:match("^(0x%x+)%s+(%S+)%s+(%a+)")
        by_name[name] = { id = id, state = state, line = rows[i] }
      end
      assert.equal(5, #rows - 2) -- gather makes no task of its own
      assert.equal("running", by_name.main.state)
      assert.equal(("%p"):format(me), by_name.main.id)
      assert.equal("sleeping", by_name.sleeper.state)
      assert.truthy(by_name.sleeper.line:find("sleeper -> function <", 1, true))
      assert.truthy(by_name.sleeper.line:find(("%p, %p"):format(me, g), 1, true))
      assert.equal("parked", by_name["event-waiter"].state)
      assert.truthy(by_name["event-waiter"].line:find("wait -> ", 1, true))
      assert.equal("awaiting", by_name.awaiter.state)
      assert.truthy(by_name.awaiter.line:match(("%p$"):format(me)))
      assert.equal("awaiting", by_name.gatherer.state)
      ev:set()
      f:set_result()
      s:cancel()
      g:cancel()
      local ok, e = pcall(g.await, g)
      assert.is_false(ok)
      helper.assert_class(asyncio.CancelledError, e)
    end)
  end)

  it("pstree: each task under the frames of its awaiter", function()
    run(function()
      asyncio.current_task():set_name("main")
      local function leaf() asyncio.sleep(10) end
      local function middle()
        local tg <close> = asyncio.TaskGroup()
        tg:create_task(function() leaf() end):set_name("leaf")
      end
      local m = asyncio.create_task(function() middle() end)
      m:set_name("middle")
      helper.sleep0(2)
      local function here()
        local text = asyncio.pstree()
        return text
      end
      local lines = rows_of(here())
      -- main's frames, outermost first
      assert.equal("└── (T) main", lines[1])
      assert.truthy(lines[2]:match("^    └──  function <.*:%d+$"))
      assert.truthy(lines[3]:match("^        └──  here .*:%d+$"))
      local i_middle, i_leaf
      for i, l in ipairs(lines) do
        if l:match("── %(T%) middle$") then i_middle = i end
        if l:match("── %(T%) leaf$") then i_leaf = i end
      end
      -- middle is a root of its own (nothing awaits it); leaf sits under
      -- middle's frames, innermost (__close) last, then its own stack
      assert.equal("└── (T) middle", lines[i_middle])
      assert.truthy(lines[i_middle + 1]:match("^    └──  function <"))
      assert.truthy(lines[i_middle + 2]:match("^        └──  middle "))
      assert.truthy(lines[i_middle + 3]:match("^            └──  __close .*taskgroups%.lua:%d+$"))
      assert.equal(i_middle + 4, i_leaf)
      assert.equal("                └── (T) leaf", lines[i_leaf])
      assert.truthy(lines[i_leaf + 2]:match("^                        └──  leaf "))
      m:cancel()
      pcall(m.await, m)
    end)
  end)

  it("pstree raises an error naming the cycle of two tasks awaiting each other", function()
    run(function()
      local a, b
      a = asyncio.create_task(function()
        asyncio.sleep(0)
        b:await()
      end)
      b = asyncio.create_task(function()
        asyncio.sleep(0)
        a:await()
      end)
      a:set_name("A")
      b:set_name("B")
      helper.sleep0(3)
      local e = helper.err_of(asyncio.pstree)
      helper.assert_class(asyncio.RuntimeError, e)
      assert.truthy(e.message:find("cycle", 1, true))
      assert.truthy(e.message:find("A → B → A", 1, true) or e.message:find("B → A → B", 1, true))
      assert.equal(1, #e.cycles)
      assert.equal(3, #e.cycles[1])
      -- ps still shows both, each awaited by the other
      local text = asyncio.ps()
      assert.truthy(text:find(("A%%s+awaiting.*%p"):format(b)))
      assert.truthy(text:find(("B%%s+awaiting.*%p"):format(a)))
      a:cancel()
      asyncio.wait({ a, b })
    end)
  end)

  it("outside a running loop: an error", function()
    helper.assert_class(asyncio.RuntimeError, helper.err_of(asyncio.ps))
    helper.assert_class(asyncio.RuntimeError, helper.err_of(asyncio.pstree))
  end)

  it("introspection does not keep a task's coroutine from being reused", function()
    run(function()
      local t = asyncio.create_task(function() asyncio.sleep(0) end)
      asyncio.sleep(0)
      asyncio.ps()
      t:await()
      assert.is_nil(t:get_coro())
    end)
  end)
end)
