-- Subprocesses (after CPython's test_asyncio/test_subprocess.py where it
-- applies): create_subprocess_exec/shell, Process, subprocess protocols,
-- exit watching, descriptors and zombies. Children are coreutils and sh.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run
local sp = asyncio.subprocess
local PIPE, STDOUT, DEVNULL = sp.PIPE, sp.STDOUT, sp.DEVNULL

local function sh(cmd, opts) return asyncio.create_subprocess_shell(cmd, opts) end
local function exec(argv, opts) return asyncio.create_subprocess_exec(argv, opts) end

-- children of this process that are zombies (state Z in /proc/PID/stat);
-- the listing is read and its own child reaped before the scan
local function zombies()
  local me, n = helper.pid(), 0
  local ls = io.popen("ls /proc")
  local names = ls:read("a")
  ls:close()
  for name in names:gmatch("%d+") do
    local f = io.open("/proc/" .. name .. "/stat")
    local stat = f and f:read("a")
    if f then f:close() end
    -- pid (comm) state ppid ...; comm may hold spaces
    local state, ppid = (stat or ""):match("%) (%a) (%d+)")
    if state == "Z" and tonumber(ppid) == me then n = n + 1 end
  end
  return n
end

describe("create_subprocess_exec and _shell", function()
  it("communicate writes input, reads stdout to EOF and waits for the exit", function()
    run(function()
      local p = exec({ "cat" }, { stdin = PIPE, stdout = PIPE })
      assert.is_true(math.type(p.pid) == "integer" and p.pid > 0)
      local out, err = p:communicate("hello world")
      assert.equal("hello world", out)
      assert.is_nil(err)
      assert.equal(0, p.returncode)
    end)
  end)

  it("stdout and stderr apart, the exit status, stderr = STDOUT, DEVNULL", function()
    run(function()
      local p = sh("echo out; echo err >&2; exit 3", { stdout = PIPE, stderr = PIPE })
      local out, err = p:communicate()
      assert.equal("out\n", out)
      assert.equal("err\n", err)
      assert.equal(3, p:wait())
      assert.equal(3, p.returncode)
      local q = sh("echo one; echo two >&2", { stdout = PIPE, stderr = STDOUT })
      assert.equal("one\ntwo\n", (q:communicate()))
      local r = sh("cat; echo done", { stdin = DEVNULL, stdout = PIPE, stderr = DEVNULL })
      assert.equal("done\n", (r:communicate()))
    end)
  end)

  it("a child killed by a signal has returncode -signum", function()
    run(function()
      local p = exec({ "sleep", "30" })
      assert.is_nil(p.returncode)
      p:kill()
      assert.equal(-9, p:wait())
      local q = exec({ "sleep", "30" })
      q:terminate()
      assert.equal(-15, q:wait())
      local r = exec({ "sleep", "30" })
      r:send_signal("SIGINT")
      assert.equal(-2, r:wait())
      r:send_signal(9) -- gone: no error
    end)
  end)

  it("a missing program is ENOENT, a non-executable one EACCES", function()
    run(function()
      local err = helper.err_of(exec, { "/nonexistent/program" })
      helper.assert_class(asyncio.OSError, err)
      assert.equal("ENOENT", err.errno)
      err = helper.err_of(exec, { "no-such-program-anywhere" })
      assert.equal("ENOENT", err.errno)
      local dir = helper.tmpdir()
      local f = assert(io.open(dir .. "/notexec", "w"))
      f:write("#!/bin/sh\n")
      f:close()
      err = helper.err_of(exec, { dir .. "/notexec" })
      assert.equal("EACCES", err.errno)
      err = helper.err_of(exec, { "true" }, { cwd = dir .. "/missing" })
      assert.equal("ENOENT", err.errno)
      os.remove(dir .. "/notexec")
      os.remove(dir)
    end)
  end)

  it("cwd, env, umask and start_new_session reach the child", function()
    run(function()
      local dir = helper.tmpdir()
      local p = sh("pwd; echo $FOO; umask; awk '{print $6}' /proc/$$/stat",
        { stdout = PIPE, cwd = dir, env = { FOO = "bar", PATH = os.getenv("PATH") }, umask = 63,
          start_new_session = true })
      local out = p:communicate()
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.equal(dir, lines[1])
      assert.equal("bar", lines[2])
      assert.equal("0077", lines[3])
      assert.equal(tostring(p.pid), lines[4]) -- a session of its own: sid = its pid
      os.remove(dir)
    end)
  end)

  it("5 MB through communicate and 64 MiB through the pipes intact", function()
    run(function()
      local five = string.rep("0123456789abcdef", 5 * 65536)
      local p = exec({ "cat" }, { stdin = PIPE, stdout = PIPE })
      local out = p:communicate(five)
      assert.equal(#five, #out)
      assert.is_true(out == five)
      local q = exec({ "head", "-c", tostring(64 * 1024 * 1024), "/dev/zero" }, { stdout = PIPE })
      local n = 0
      while true do
        local chunk = q.stdout:read(65536)
        if chunk == "" then break end
        assert.is_nil(chunk:find("[^%z]"))
        n = n + #chunk
      end
      assert.equal(64 * 1024 * 1024, n)
      assert.equal(0, q:wait())
    end, 60)
  end)

  it("wait() returns at the exit while a grandchild still holds the pipe", function()
    run(function()
      local p = sh("sleep 3 & echo started", { stdout = PIPE })
      assert.equal("started\n", p.stdout:readline())
      local t0 = asyncio.get_running_loop():time()
      assert.equal(0, p:wait())
      assert.is_true(asyncio.get_running_loop():time() - t0 < 2)
    end)
  end)

  it("a cancelled communicate loses nothing: the next one returns it all", function()
    run(function()
      local p = sh("echo first; sleep 0.5; echo second", { stdout = PIPE })
      local err = helper.err_of(asyncio.wait_for, function() return p:communicate() end, 0.2)
      helper.assert_class(asyncio.TimeoutError, err)
      assert.is_nil(p.returncode)
      local out = p:communicate()
      assert.equal("first\nsecond\n", out)
      assert.equal(0, p.returncode)
      -- wait() cancelled leaves the exit to a later wait()
      local q = exec({ "sleep", "0.3" })
      helper.assert_class(asyncio.TimeoutError,
        helper.err_of(asyncio.wait_for, function() return q:wait() end, 0.05))
      assert.equal(0, q:wait())
    end)
  end)

  it("several tasks wait() on one Process; a cancelled waiter leaves the others waiting", function()
    run(function()
      local p = exec({ "sleep", "0.3" })
      local a = asyncio.create_task(function() return p:wait() end)
      local b = asyncio.create_task(function() return p:wait() end)
      local c = asyncio.create_task(function() return p:wait() end)
      asyncio.sleep(0.05)
      a:cancel() -- the first waiter, kept apart from the others
      b:cancel()
      local d = asyncio.create_task(function() return p:wait() end)
      local res = asyncio.gather({ a, b, c, d }, { return_exceptions = true }):await()
      helper.assert_class(asyncio.CancelledError, res[1])
      helper.assert_class(asyncio.CancelledError, res[2])
      assert.equal(0, res[3])
      assert.equal(0, res[4])
      assert.equal(0, p:wait())
    end)
  end)

  it("wait() cancelled around the moment of the exit: the next wait() has the exit", function()
    run(function()
      for i = 1, 40 do
        local p = exec({ "sleep", ("0.0%d"):format(i % 4) })
        local ok, err = pcall(asyncio.wait_for, function() return p:wait() end, (i % 5) * 0.005)
        if not ok then helper.assert_class(asyncio.TimeoutError, err) end
        assert.equal(0, p:wait())
      end
      assert.equal(0, zombies())
    end, 30)
  end)

  it("communicate ignores a child that exits without reading its input", function()
    run(function()
      -- CPython's test_communicate_ignore_broken_pipe
      local p = exec({ "true" }, { stdin = PIPE, stdout = PIPE })
      local out = p:communicate(string.rep("x", 4 << 20))
      assert.equal("", out)
      assert.equal(0, p.returncode)
    end)
  end)

  it("stdout can be read after the exit; closing an exited child's transport kills nothing", function()
    run(function()
      -- CPython's test_read_stdout_after_process_exit and test_close_dont_kill_finished
      local p = sh("printf done", { stdout = PIPE })
      assert.equal(0, p:wait())
      asyncio.sleep(0.05)
      assert.equal("done", p.stdout:read())
      local loop = asyncio.get_running_loop()
      local exited = loop:create_future()
      local tr = loop:subprocess_exec(function()
        return { process_exited = function() exited:set_result() end }
      end, { "true" })
      exited:await()
      tr:close()
      assert.equal(0, tr:get_returncode())
    end)
  end)

  it("close_fds: descriptors the child was not given stay out of it; pass_fds get in", function()
    run(function()
      local name = os.tmpname()
      local f = assert(io.open(name, "w")) -- Lua's files are not close-on-exec
      local function child_fds(opts)
        opts.stdout = PIPE
        local out = sh("ls /proc/self/fd", opts):communicate()
        local n = 0
        for _ in out:gmatch("%d+") do n = n + 1 end
        return n
      end
      -- 0, 1, 2 and the descriptor ls reads the directory with
      assert.equal(4, child_fds {})
      assert.equal(5, child_fds { pass_fds = { f } })
      assert.is_true(child_fds { close_fds = false } >= 5)
      f:close()
      os.remove(name)
    end)
  end)

  it("200 children at once, all reaped, no zombie left", function()
    run(function()
      local list = {}
      for i = 1, 200 do list[i] = exec({ "sleep", "0.2" }) end
      local t0 = asyncio.get_running_loop():time()
      for _, p in ipairs(list) do assert.equal(0, p:wait()) end
      assert.is_true(asyncio.get_running_loop():time() - t0 < 10)
      assert.equal(0, zombies())
    end, 30)
  end)

  it("1,000 spawns leave no descriptor behind", function()
    run(function()
      -- a first spawn opens what stays for good (libuv keeps a /dev/null)
      exec({ "true" }, { stdout = PIPE, stderr = PIPE, stdin = PIPE }):communicate()
      helper.gc()
      asyncio.sleep(0.05)
      local before = helper.open_fds()
      for _ = 1, 1000 do
        local p = exec({ "true" }, { stdout = PIPE, stderr = PIPE, stdin = PIPE })
        p:communicate()
      end
      helper.gc()
      -- the last pipes close in libuv's close callbacks, a loop turn later
      helper.wait_until(function() return helper.open_fds() <= before end, 2)
      assert.equal(before, helper.open_fds(), helper.fd_list())
      assert.equal(0, zombies())
    end, 60)
  end)

  it("a parent holding 500 MB still spawns quickly (posix_spawn copies no page tables)", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local function hundred()
        local t0 = loop:time()
        for _ = 1, 100 do assert.equal(0, exec({ "true" }):wait()) end
        return loop:time() - t0
      end
      -- relative to this run's own small-parent cost: under a sanitizer every
      -- child loads the preloaded runtime, and 100 spawns take seconds anyway
      local base = hundred()
      local heap = string.rep("x", 500 * 1024 * 1024) -- touched
      local big = hundred()
      -- a fork copying 500 MB of page tables adds ~30 ms a spawn (~3 s here)
      assert.is_true(big < 2 * base + 1.0, ("100 spawns: %.3f s small, %.3f s with 500 MB"):format(base, big))
      assert.equal(500 * 1024 * 1024, #heap)
    end, 60)
  end)

  it("a dropped Process is still reaped; closing the loop settles a running child", function()
    local pid
    run(function()
      exec({ "true" })
      helper.gc()
      asyncio.sleep(0.3)
      assert.equal(0, zombies())
      pid = exec({ "sleep", "30" }).pid
    end)
    -- the loop of run() is closed: the child was killed and reaped
    assert.is_nil(io.open("/proc/" .. pid .. "/stat"))
    assert.equal(0, zombies())
  end)

  it("the SIGCHLD watcher reaps this loop's children where there is no pidfd", function()
    run(function()
      local script = [[
        local asyncio = require "asyncio"
        asyncio.run(function()
          local p = asyncio.create_subprocess_exec({"sh", "-c", "echo hi; exit 7"},
            {stdout = asyncio.subprocess.PIPE})
          local out = p:communicate()
          local q = asyncio.create_subprocess_exec({"sleep", "30"})
          q:kill()
          io.write(out, p.returncode, " ", q:wait(), "\n")
        end)
      ]]
      local env = { LUA_ASYNCIO_NO_PIDFD = "1" }
      for _, k in ipairs { "PATH", "LUA_PATH", "LUA_CPATH", "LUA_PATH_5_4", "LUA_CPATH_5_4",
                           "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" } do
        env[k] = os.getenv(k)
      end
      local p = exec({ "lua5.4", "-e", script }, { stdout = PIPE, stderr = PIPE, env = env })
      local out, err = p:communicate()
      assert.equal(0, p.returncode, err)
      assert.equal("hi\n7 -9\n", out)
    end, 30)
  end)

  it("bad arguments raise, never crash", function()
    run(function()
      assert.has_error(function() exec("ls") end)
      assert.has_error(function() exec({}) end)
      assert.has_error(function() exec({ "ls", {} }) end)
      assert.has_error(function() exec({ "ls\0x" }) end)
      assert.has_error(function() exec({ "ls" }, { env = { 1, 2 } }) end)
      assert.has_error(function() exec({ "ls" }, { env = { ["A=B"] = "c" } }) end)
      assert.has_error(function() exec({ "ls" }, { stdin = 987654 }) end)
      assert.has_error(function() exec({ "ls" }, { stdout = STDOUT }) end)
      assert.has_error(function() exec({ "ls" }, { pass_fds = { 987654 } }) end)
      assert.has_error(function() exec({ "ls" }, { cwd = {} }) end)
      assert.has_error(function() sh(42) end)
      local p = exec({ "true" })
      assert.has_error(function() p:send_signal("SIGNOPE") end)
      assert.has_error(function() p:communicate(42) end)
      p:wait()
      assert.has_error(function() asyncio.get_running_loop():add_signal_handler("SIGCHLD", print) end)
    end)
  end)
end)

describe("subprocess protocols", function()
  it("pipe data, process_exited, pipe losses, then connection_lost", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local events, done = {}, loop:create_future()
      local P = {}
      function P.connection_made(_, t) events[#events + 1] = "made " .. tostring(t:get_pid() > 0) end
      function P.pipe_data_received(_, fd, d) events[#events + 1] = fd .. ":" .. d end
      function P.pipe_connection_lost(_, fd) events[#events + 1] = "lost " .. fd end
      function P.process_exited() events[#events + 1] = "exited" end
      function P.connection_lost(_, e)
        events[#events + 1] = "connection_lost"
        done:set_result(e)
      end
      local tr = loop:subprocess_shell(function() return P end, "printf out; printf err >&2",
        { stdout = PIPE, stderr = PIPE })
      assert.is_nil(done:await())
      assert.equal(0, tr:get_returncode())
      assert.equal("made true", events[1])
      assert.equal("connection_lost", events[#events])
      local seen = table.concat(events, ",")
      assert.is_truthy(seen:find("1:out", 1, true))
      assert.is_truthy(seen:find("2:err", 1, true))
      assert.is_truthy(seen:find("exited", 1, true))
      assert.is_truthy(seen:find("lost 1", 1, true) and seen:find("lost 2", 1, true))
    end)
  end)

  it("closing the transport of a running child kills it", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local done = loop:create_future()
      local tr = loop:subprocess_exec(function()
        return { connection_lost = function() done:set_result() end }
      end, { "sleep", "30" }, { stdin = PIPE })
      assert.is_not_nil(tr:get_pipe_transport(0))
      tr:close()
      assert.is_true(tr:is_closing())
      done:await()
      assert.equal(-9, tr:get_returncode())
    end)
  end)
end)
