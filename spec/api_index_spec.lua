-- Every public name of Python 3.14's asyncio has a counterpart in
-- require "asyncio", or a reason why it does not apply. README's section
-- "Python's names" is made from the data below (`make api-index` runs this
-- file as a script), and a test keeps the two equal.

-- asyncio.__all__ of Python 3.11, as /usr/bin/python3 prints it here
local PYTHON_3_11 = {
  "ALL_COMPLETED", "AbstractChildWatcher", "AbstractEventLoop", "AbstractEventLoopPolicy",
  "AbstractServer", "Barrier", "BaseEventLoop", "BaseProtocol", "BaseTransport",
  "BoundedSemaphore", "BrokenBarrierError", "BufferedProtocol", "CancelledError", "Condition",
  "DatagramProtocol", "DatagramTransport", "DefaultEventLoopPolicy", "Event", "FIRST_COMPLETED",
  "FIRST_EXCEPTION", "FastChildWatcher", "Future", "Handle", "IncompleteReadError",
  "InvalidStateError", "LifoQueue", "LimitOverrunError", "Lock", "MultiLoopChildWatcher",
  "PidfdChildWatcher", "PriorityQueue", "Protocol", "Queue", "QueueEmpty", "QueueFull",
  "ReadTransport", "Runner", "SafeChildWatcher", "SelectorEventLoop", "Semaphore",
  "SendfileNotAvailableError", "Server", "StreamReader", "StreamReaderProtocol", "StreamWriter",
  "SubprocessProtocol", "SubprocessTransport", "Task", "ThreadedChildWatcher", "Timeout",
  "TimeoutError", "TimerHandle", "Transport", "WriteTransport", "_enter_task",
  "_get_running_loop", "_leave_task", "_register_task", "_set_running_loop", "_unregister_task",
  "all_tasks", "as_completed", "create_subprocess_exec", "create_subprocess_shell",
  "create_task", "current_task", "ensure_future", "gather", "get_child_watcher",
  "get_event_loop", "get_event_loop_policy", "get_running_loop", "iscoroutine",
  "iscoroutinefunction", "isfuture", "new_event_loop", "open_connection",
  "open_unix_connection", "run", "run_coroutine_threadsafe", "set_child_watcher",
  "set_event_loop", "set_event_loop_policy", "shield", "sleep", "start_server",
  "start_unix_server", "timeout", "timeout_at", "to_thread", "wait", "wait_for", "wrap_future",
}

-- what Python 3.12, 3.13 and 3.14 added to it
local PYTHON_ADDED = {
  "eager_task_factory", "create_eager_task_factory", "QueueShutDown", "EventLoop",
  "capture_call_graph", "format_call_graph", "print_call_graph", "FrameCallGraphEntry",
  "FutureCallGraph", "future_add_to_awaited_by", "future_discard_from_awaited_by",
}

local CHILD_WATCHERS = "Python 3.14 removed the child watchers; libuv reaps the children itself"
local INTERNAL = "internal: the task step and the loop's run are C (asyncio.current_task "
  .. "and asyncio.get_running_loop are the public forms)"

-- names with no counterpart, and why
local NOT_APPLICABLE = {
  AbstractChildWatcher = CHILD_WATCHERS,
  FastChildWatcher = CHILD_WATCHERS,
  MultiLoopChildWatcher = CHILD_WATCHERS,
  PidfdChildWatcher = CHILD_WATCHERS,
  SafeChildWatcher = CHILD_WATCHERS,
  ThreadedChildWatcher = CHILD_WATCHERS,
  get_child_watcher = CHILD_WATCHERS,
  set_child_watcher = CHILD_WATCHERS,
  BaseEventLoop = "the base of Python's loop implementations; the runtime has one loop, "
    .. "asyncio.EventLoop (asyncio.AbstractEventLoop for type checks)",
  SelectorEventLoop = "the runtime has one loop, on libuv, not a selector loop: asyncio.EventLoop",
  BufferedProtocol = "Lua strings are immutable, so there is no buffer to lend a transport; "
    .. "Protocol.data_received gets each read as one string",
  StreamReaderProtocol = "a StreamReader is itself the protocol its transport feeds: pass the "
    .. "reader where Python passes StreamReaderProtocol(reader)",
  _enter_task = INTERNAL,
  _leave_task = INTERNAL,
  _register_task = INTERNAL,
  _unregister_task = INTERNAL,
  _get_running_loop = INTERNAL,
  _set_running_loop = INTERNAL,
}

-- the names present whose Lua form is worth a word
local NOTES = {
  run_coroutine_threadsafe = "from a job in the executor (loop nil): runs fn on the job's loop",
  iscoroutine = "a Lua coroutine",
  iscoroutinefunction = "a function",
  EventLoop = "asyncio.Loop",
  get_event_loop_policy = "deprecated, as in Python 3.14",
  set_event_loop_policy = "deprecated, as in Python 3.14",
  DefaultEventLoopPolicy = "deprecated, as in Python 3.14",
  AbstractEventLoopPolicy = "deprecated, as in Python 3.14",
}

local function all_names()
  local names = {}
  for _, n in ipairs(PYTHON_3_11) do names[#names + 1] = n end
  for _, n in ipairs(PYTHON_ADDED) do names[#names + 1] = n end
  table.sort(names, function(a, b)
    local la, lb = a:gsub("^_", ""):lower(), b:gsub("^_", ""):lower()
    if la ~= lb then return la < lb end
    return a < b
  end)
  return names
end

-- spec/docs_spec.lua loads this file with the argument "names": the names
-- present in require "asyncio", which the API reference must document
if ... == "names" then
  local present = {}
  for _, name in ipairs(all_names()) do
    if not NOT_APPLICABLE[name] then present[#present + 1] = name end
  end
  return present
end

local BEGIN = "<!-- api-index: made by `make api-index` from spec/api_index_spec.lua -->"
local END = "<!-- api-index end -->"

-- The README section: the names present, then the others, one row per reason.
local function markdown()
  local present, by_reason, reasons, absent = {}, {}, {}, 0
  for _, name in ipairs(all_names()) do
    local why = NOT_APPLICABLE[name]
    if why then
      absent = absent + 1
      if not by_reason[why] then
        by_reason[why] = {}
        reasons[#reasons + 1] = why
      end
      table.insert(by_reason[why], ("`%s`"):format(name))
    elseif NOTES[name] then
      present[#present + 1] = ("`%s` (%s)"):format(name, NOTES[name])
    else
      present[#present + 1] = ("`%s`"):format(name)
    end
  end
  local out = { BEGIN, "",
    ("Of the %d public names of Python's asyncio (`asyncio.__all__` of 3.11 and the names 3.12 "
      .. "to 3.14 added), %d are in `require \"asyncio\"` under the same name:"):format(#present + absent, #present),
    "", table.concat(present, ", ") .. ".", "",
    ("The other %d do not apply:"):format(absent), "",
    "| Python | why not |", "|---|---|" }
  for _, why in ipairs(reasons) do
    out[#out + 1] = ("| %s | %s |"):format(table.concat(by_reason[why], ", "), why)
  end
  out[#out + 1] = ""
  out[#out + 1] = END
  return table.concat(out, "\n") .. "\n"
end

local function readme_path()
  local dir = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."
  return dir .. "/README.md"
end

-- run as a script (make api-index): rewrite the section in README.md
if not describe then
  local path = readme_path()
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  local s, e = text:find(BEGIN, 1, true), select(2, text:find(END .. "\n", 1, true))
  assert(s and e, "README.md has no api-index section")
  f = assert(io.open(path, "w"))
  f:write(text:sub(1, s - 1), markdown(), text:sub(e + 1))
  f:close()
  return
end

local asyncio = require "asyncio"

describe("Python's asyncio names", function()
  it("each is in require \"asyncio\" or in the table of names that do not apply", function()
    local missing, both = {}, {}
    for _, name in ipairs(all_names()) do
      local has = asyncio[name] ~= nil
      if not has and not NOT_APPLICABLE[name] then missing[#missing + 1] = name end
      if has and NOT_APPLICABLE[name] then both[#both + 1] = name end
    end
    assert.same({}, missing)
    assert.same({}, both)
  end)

  it("the table of names that do not apply names only Python's, each with a reason", function()
    local known = {}
    for _, name in ipairs(all_names()) do known[name] = true end
    for name, why in pairs(NOT_APPLICABLE) do
      assert.is_true(known[name], name)
      assert.is_true(#why > 20, name)
    end
    for name in pairs(NOTES) do assert.is_true(known[name] and not NOT_APPLICABLE[name], name) end
  end)

  it("the 3.11 list is what Python 3.11 prints", function()
    local p = io.popen("/usr/bin/python3 -c 'import sys, asyncio; "
      .. "print(\"%d.%d\" % sys.version_info[:2]); print(\" \".join(sorted(asyncio.__all__)))' 2>/dev/null")
    local version, line = p:read("l"), p:read("l")
    p:close()
    if version ~= "3.11" then
      pending("needs /usr/bin/python3 3.11, found " .. tostring(version))
      return
    end
    local sorted = {}
    for _, n in ipairs(PYTHON_3_11) do sorted[#sorted + 1] = n end
    table.sort(sorted)
    assert.equal(line, table.concat(sorted, " "))
  end)

  it("README's section is made from this data (make api-index)", function()
    local f = assert(io.open(readme_path()))
    local text = f:read("a")
    f:close()
    assert.truthy(text:find(markdown(), 1, true), "README.md is stale: run make api-index")
  end)
end)
