-- The control socket and bin/lua-asyncio: a child lua5.4 runs with
-- control = true (or LUA_ASYNCIO_CONTROL=1), the test reads its tasks with
-- `lua-asyncio ps|pstree|top PID`; the socket is 0600 and goes with the loop.
local asyncio = require "asyncio"
local control = require "asyncio.control"
local helper = require "helper"

local run = helper.run
local PIPE = asyncio.subprocess.PIPE
local LUA = os.getenv("LUA") or "lua5.4"

after_each(helper.close_loops)

-- The child: named tasks under a TaskGroup; "cycle" adds two tasks awaiting
-- each other, "fail" makes main raise at the end, "off" passes
-- control = false. SIGUSR1 ends it.
local CHILD = [[
local asyncio = require "asyncio"
local mode = arg[1]
local opts = { control = true }
if mode == "env" then opts = nil elseif mode == "off" then opts = { control = false } end
asyncio.run(function()
  local loop = asyncio.get_running_loop()
  local done = asyncio.Event()
  loop:add_signal_handler("SIGUSR1", function() done:set() end)
  local function idle_worker() asyncio.sleep(60) end
  local tg <close> = asyncio.TaskGroup()
  tg:create_task(function() idle_worker() end):set_name("alpha-worker")
  tg:create_task(function() idle_worker() end):set_name("beta-worker")
  local a, b
  if mode == "cycle" then
    a = asyncio.create_task(function() asyncio.sleep(0) b:await() end)
    b = asyncio.create_task(function() asyncio.sleep(0) a:await() end)
    a:set_name("left")
    b:set_name("right")
  end
  asyncio.sleep(0.01)
  io.stdout:write("ready\n")
  io.stdout:flush()
  done:wait()
  for _, t in ipairs(asyncio.all_tasks()) do
    if t ~= asyncio.current_task() then t:cancel() end
  end
  if mode == "fail" then error("boom") end
end, opts)
]]

local dir = helper.tmpdir()
local script = dir .. "/child.lua"
do
  local f = assert(io.open(script, "w"))
  f:write(CHILD)
  f:close()
end

local function exists(path)
  local f, _, code = io.open(path, "r")
  if f then f:close() end
  return f ~= nil or code ~= 2
end

-- Starts the child (argv prefix e.g. {"env", "X=1"}) and waits for "ready".
local function start_child(mode, prefix)
  local argv = {}
  for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
  for _, a in ipairs { LUA, script, mode or "" } do argv[#argv + 1] = a end
  -- the failing child's error report is expected: kept off the test's output
  local stderr = mode == "fail" and asyncio.subprocess.DEVNULL or nil
  local p = asyncio.create_subprocess_exec(argv, { stdout = PIPE, stderr = stderr })
  assert.equal("ready\n", asyncio.wait_for(function() return p.stdout:readline() end, 5))
  return p
end

local function stop_child(p)
  p:send_signal("SIGUSR1")
  return asyncio.wait_for(function() return p:wait() end, 5)
end

-- bin/lua-asyncio args... -> stdout, stderr, exit status
local function cli(args, prefix)
  local argv = {}
  for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = LUA
  argv[#argv + 1] = "bin/lua-asyncio"
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  local p = asyncio.create_subprocess_exec(argv, { stdout = PIPE, stderr = PIPE })
  local out, err = asyncio.wait_for(function() return p:communicate() end, 10)
  return out, err, p.returncode
end

local function mode_of(path)
  local p = asyncio.create_subprocess_exec({ "stat", "-c", "%a", path }, { stdout = PIPE })
  return (p:communicate():gsub("%s+$", ""))
end

describe("the control socket of a child process", function()
  it("ps and pstree name its tasks; the socket is 0600 and goes with the process", function()
    run(function()
      local p = start_child()
      local path = control.socket_path(p.pid)
      assert.is_true(exists(path))
      assert.equal("600", mode_of(path))

      local out, err, status = cli({ "ps", p.pid })
      assert.equal(0, status, err)
      assert.truthy(out:match("^task id%s+task name%s+state"))
      assert.truthy(out:find("alpha%-worker%s+sleeping%s+1%s+[%d.]+%s+[%d.]+%s+[%d.]+%s+idle_worker"))
      assert.truthy(out:find("beta%-worker%s+sleeping"))
      assert.truthy(out:find("Task%-1%s+parked")) -- main, in done:wait()

      out, err, status = cli({ "pstree", p.pid })
      assert.equal(0, status, err)
      assert.truthy(out:find("└── (T) Task-1\n", 1, true))
      assert.truthy(out:find("├── (T) alpha-worker\n", 1, true))
      assert.truthy(out:find("── (T) beta-worker\n", 1, true))
      assert.truthy(out:find("idle_worker " .. script .. ":", 1, true))

      assert.equal(0, stop_child(p))
      assert.is_false(exists(path))
      out, err, status = cli({ "ps", p.pid })
      assert.equal(1, status)
      assert.equal("", out)
      assert.truthy(err:find("no control socket for process " .. p.pid, 1, true))
    end, 30)
  end)

  it("pstree of two tasks awaiting each other fails naming the cycle; ps still works", function()
    run(function()
      local p = start_child("cycle")
      local out, err, status = cli({ "pstree", p.pid })
      assert.equal(1, status)
      assert.equal("", out)
      assert.truthy(err:find("cycle", 1, true))
      assert.truthy(err:find("left → right → left", 1, true) or err:find("right → left → right", 1, true))
      out, err, status = cli({ "ps", p.pid })
      assert.equal(0, status, err)
      assert.truthy(out:find("left%s+awaiting"))
      assert.truthy(out:find("right%s+awaiting"))
      assert.equal(0, stop_child(p))
    end, 30)
  end)

  it("top -n 2 shows two screens of tasks and exits; top ends cleanly when the program does", function()
    run(function()
      local p = start_child()
      local out, err, status = cli({ "top", "-n", 2, p.pid }, { "env", "TERM=dumb" })
      assert.equal(0, status, err)
      local _, screens = out:gsub("lua%-asyncio top %- pid " .. p.pid, "")
      assert.equal(2, screens)
      assert.truthy(out:find("task id%s+task name%s+state%s+steps%s+busy s%s+idle s%s+wake ms%s+location"))
      assert.truthy(out:find("alpha%-worker%s+sleeping%s+1%s+[%d.]+%s+[%d.]+%s+[%d.]+%s+idle_worker "
        .. script:gsub("%p", "%%%0")))

      local top = asyncio.create_subprocess_exec({ "env", "TERM=dumb", LUA, "bin/lua-asyncio", "top", p.pid },
        { stdout = PIPE, stderr = PIPE })
      assert.truthy(asyncio.wait_for(function() return top.stdout:readline() end, 5):find("lua-asyncio top", 1, true))
      assert.equal(0, stop_child(p))
      out, err = asyncio.wait_for(function() return top:communicate() end, 5)
      assert.equal(0, top.returncode, err)
    end, 30)
  end)

  it("LUA_ASYNCIO_CONTROL=1 turns it on; control = false wins over it", function()
    run(function()
      local p = start_child("env", { "env", "LUA_ASYNCIO_CONTROL=1" })
      local out, err, status = cli({ "ps", p.pid })
      assert.equal(0, status, err)
      assert.truthy(out:find("alpha-worker", 1, true))
      assert.equal(0, stop_child(p))

      p = start_child("off", { "env", "LUA_ASYNCIO_CONTROL=1" })
      assert.is_false(exists(control.socket_path(p.pid)))
      assert.equal(0, stop_child(p))
    end, 30)
  end)

  it("under $XDG_RUNTIME_DIR when set; the file goes also when main fails", function()
    run(function()
      local xdg = helper.tmpdir()
      local env = { "env", "XDG_RUNTIME_DIR=" .. xdg }
      local p = start_child("fail", env)
      local path = control.socket_path(p.pid, xdg)
      assert.is_true(exists(path))
      local out, err, status = cli({ "ps", p.pid }, env)
      assert.equal(0, status, err)
      assert.truthy(out:find("beta-worker", 1, true))
      assert.equal(1, stop_child(p))
      assert.is_false(exists(path))
      os.remove(xdg)
    end, 30)
  end)

  it("usage errors exit with status 2", function()
    run(function()
      local _, err, status = cli({})
      assert.equal(2, status)
      assert.truthy(err:find("usage: lua-asyncio ps PID", 1, true))
      _, err, status = cli({ "frobnicate", 1 })
      assert.equal(2, status)
      assert.truthy(err:find("unknown command frobnicate", 1, true))
      _, err, status = cli({ "ps" })
      assert.equal(2, status)
      assert.truthy(err:find("PID expected", 1, true))
      _, err, status = cli({ "top", "-n", "0", 1 })
      assert.equal(2, status)
      assert.truthy(err:find("-n needs a positive count", 1, true))
    end, 30)
  end)
end)

describe("control.serve in this process", function()
  local function request(path, lines)
    local reader, writer = asyncio.open_unix_connection(path)
    local _ <close> = writer
    writer:write(lines)
    local replies = {}
    while true do
      local head = reader:readline()
      if head == "" then break end
      local status, n = head:match("^(%a+) (%d+)\n$")
      replies[#replies + 1] = { status, reader:readexactly(tonumber(n)) }
      if #replies == select(2, lines:gsub("\n", "")) then break end
    end
    return replies
  end

  it("answers each request line; unknown requests get an error; no task of its own", function()
    run(function()
      local path = helper.tmpdir() .. "/ctl.sock"
      local loop = asyncio.get_running_loop()
      local server = control.serve(loop, path)
      asyncio.current_task():set_name("the-test")
      local before = #asyncio.all_tasks()
      local replies = request(path, "ps\nfrobnicate\npstree\r\n")
      assert.equal(before, #asyncio.all_tasks())
      assert.equal("ok", replies[1][1])
      assert.truthy(replies[1][2]:find("the%-test%s+parked")) -- in reader:readline()
      assert.equal("error", replies[2][1])
      assert.truthy(replies[2][2]:find('unknown request "frobnicate"', 1, true))
      assert.equal("ok", replies[3][1])
      assert.truthy(replies[3][2]:find("(T) the-test", 1, true))
      server:close()
      server:close_clients()
      assert.is_false(exists(path))
    end)
  end)

  it("top adds the columns of counter_columns (ps's counters by default)", function()
    run(function()
      local path = helper.tmpdir() .. "/ctl.sock"
      local server = control.serve(asyncio.get_running_loop(), path)
      local hook = control.counter_columns
      control.counter_columns = function(task)
        return { { "steps", task:get_name() == "counted" and "42" or "-" } }
      end
      local t = asyncio.create_task(function() asyncio.sleep(10) end)
      t:set_name("counted")
      asyncio.sleep(0)
      local ok, replies = pcall(request, path, "top\n")
      control.counter_columns = hook
      assert.is_true(ok, replies)
      local text = replies[1][2]
      assert.truthy(text:find("task id%s+task name%s+state%s+steps%s+location"))
      assert.truthy(text:find("counted%s+sleeping%s+42%s+function <"))
      -- by default: ps's counters, from get_stats()
      local cols = control.counter_columns(t)
      assert.same({ "steps", "busy s", "idle s", "wake ms" }, { cols[1][1], cols[2][1], cols[3][1], cols[4][1] })
      assert.equal("1", cols[1][2])
      t:cancel()
      server:close()
    end)
  end)

  it("asyncio.run with control = true returns when main does and removes the socket", function()
    local path = control.socket_path(helper.pid())
    local seen
    local r = asyncio.run(function()
      seen = exists(path)
      return 7
    end, { control = true })
    assert.equal(7, r)
    assert.is_true(seen)
    assert.is_false(exists(path))
    assert.has_error(function()
      asyncio.run(function() error("main failed") end, { control = true })
    end)
    assert.is_false(exists(path))
  end)
end)
