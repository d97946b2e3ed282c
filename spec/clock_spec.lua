-- The virtual clock (opts.clock = "virtual"): loop:time() starts at 0 and
-- jumps to the next timer whenever nothing is ready and nothing is in
-- flight; work in flight (a job, a child, a libuv request) makes it run at
-- real speed; loop:advance(s) moves it by hand.
local asyncio = require "asyncio"
local helper = require "helper"

local vrun, with_vloop = helper.vrun, helper.with_vloop
local assert_class, err_of = helper.assert_class, helper.err_of
local loop = helper.loop

-- real seconds fn() takes, and what it returned
local function timed(fn)
  local t0 = helper.now()
  local r = table.pack(fn())
  return helper.now() - t0, table.unpack(r, 1, r.n)
end

local function job_sleep(d)
  require("thread_sleep")(d)
  return d
end

describe("virtual clock", function()
  it("starts at 0 and jumps through an hour's sleep at once", function()
    local real, t_start, t_end = timed(function()
      return vrun(function()
        local t0 = loop():time()
        asyncio.sleep(3600)
        return t0, loop():time()
      end)
    end)
    assert.equal(0, t_start)
    assert.equal(3600, t_end)
    assert.is_true(real < 0.5, "took " .. real .. " s")
  end)

  it("runs a thousand sleeps of a minute in well under a second", function()
    local real, t = timed(function()
      return vrun(function()
        for _ = 1, 1000 do asyncio.sleep(60) end
        return loop():time()
      end)
    end)
    assert.equal(60000, t)
    assert.is_true(real < 0.5, "took " .. real .. " s")
  end)

  it("works through asyncio.run", function()
    local t = asyncio.run(function()
      asyncio.sleep(7200)
      return asyncio.get_running_loop():time()
    end, { clock = "virtual" })
    assert.equal(7200, t)
  end)

  it("fires call_later and call_at in deadline order, each at its deadline", function()
    vrun(function()
      local l, fired = loop(), {}
      local function rec(name) return function() fired[#fired + 1] = name .. "@" .. l:time() end end
      l:call_later(3, rec("c"))
      l:call_later(1, rec("a"))
      l:call_at(2, rec("b"))
      l:call_later(2, rec("b2")) -- same deadline: in the order scheduled
      local h = l:call_later(1.5, rec("cancelled"))
      h:cancel()
      asyncio.sleep(10)
      assert.same({ "a@1.0", "b@2.0", "b2@2.0", "c@3.0" }, fired)
      assert.equal(10, l:time())
    end)
  end)

  it("runs what is ready before it jumps", function()
    vrun(function()
      local l, order = loop(), {}
      l:call_later(5, function() order[#order + 1] = "timer@" .. l:time() end)
      l:call_soon(function() order[#order + 1] = "soon@" .. l:time() end)
      local t = asyncio.create_task(function()
        for i = 1, 3 do
          order[#order + 1] = "step" .. i .. "@" .. l:time()
          asyncio.sleep(0)
        end
      end)
      t:await()
      asyncio.sleep(5)
      assert.same({ "soon@0.0", "step1@0.0", "step2@0.0", "step3@0.0", "timer@5.0" }, order)
    end)
  end)

  it("stands still while callbacks run", function()
    vrun(function()
      local t0 = loop():time()
      helper.busy(0.05)
      assert.equal(t0, loop():time())
    end)
  end)

  it("wait_for times out at its virtual deadline", function()
    vrun(function()
      local e = err_of(asyncio.wait_for, function() asyncio.sleep(3600) end, 600)
      assert_class(asyncio.TimeoutError, e)
      assert.equal(600, loop():time())
      -- and returns the values when the awaitable is quicker
      assert.equal("v", asyncio.wait_for(helper.sleeper(599, "v"), 600))
      assert.equal(1199, loop():time())
    end)
  end)

  it("asyncio.timeout and timeout_at expire at their virtual deadlines", function()
    vrun(function()
      local cm
      assert_class(asyncio.TimeoutError, err_of(function()
        local t <close> = asyncio.timeout(30)
        cm = t
        asyncio.sleep(3600)
      end))
      assert.is_true(cm:expired())
      assert.equal(30, loop():time())
      assert_class(asyncio.TimeoutError, err_of(function()
        local t <close> = asyncio.timeout_at(100)
        asyncio.sleep(3600)
      end))
      assert.equal(100, loop():time())
    end)
  end)

  it("a retry loop with backoff runs in virtual time", function()
    local real, attempts, t = timed(function()
      return vrun(function()
        local n, delay = 0, 1
        while true do
          n = n + 1
          local ok = pcall(asyncio.wait_for, function() asyncio.sleep(1e6) end, 5)
          if ok or n == 10 then break end
          asyncio.sleep(delay)
          delay = delay * 2
        end
        return n, loop():time()
      end)
    end)
    assert.equal(10, attempts)
    assert.equal(10 * 5 + (2 ^ 9 - 1), t) -- ten timeouts, nine backoffs 1 + 2 + ... + 256
    assert.is_true(real < 0.5, "took " .. real .. " s")
  end)

  it("a deadlock with no timer left stops at the watchdog, not at a jump", function()
    local e = err_of(helper.vrun, function()
      asyncio.get_running_loop():create_future():await()
    end, 0.2)
    assert.truthy(tostring(e):find("timed out", 1, true))
  end)

  describe("loop:advance", function()
    it("moves time forward; due timers fire in the next iteration", function()
      with_vloop(function(l)
        local fired = {}
        l:call_later(10, function() fired[#fired + 1] = l:time() end)
        l:call_later(20, function() fired[#fired + 1] = l:time() end)
        l:advance(15)
        assert.equal(15, l:time())
        assert.same({}, fired)
        l:run_once()
        assert.same({ 15 }, fired)
        l:advance(0)
        assert.equal(15, l:time())
      end)
    end)

    it("from a task, with a job in flight, fires the timer it makes due", function()
      vrun(function()
        local l = loop()
        local fired = asyncio.Future()
        l:call_later(3600, function() fired:set_result(l:time()) end)
        local job = asyncio.create_task(asyncio.to_thread, job_sleep, 0.3)
        asyncio.sleep(0.01) -- real time: the job is in flight
        l:advance(3600)
        assert.is_true(asyncio.wait_for(fired, 1) >= 3600)
        assert.is_false(job:done())
        job:await()
      end)
    end)

    it("rejects negative, infinite, NaN and non-number arguments", function()
      with_vloop(function(l)
        for _, bad in ipairs({ -1, math.huge, -math.huge, 0 / 0 }) do
          local e = err_of(l.advance, l, bad)
          assert.truthy(tostring(e):find("seconds must be a finite number >= 0", 1, true), tostring(e))
        end
        local e = err_of(l.advance, l, "soon")
        assert.truthy(tostring(e):find("number expected", 1, true), tostring(e))
        e = err_of(l.advance, l)
        assert.truthy(tostring(e):find("number expected", 1, true), tostring(e))
        assert.equal(0, l:time())
      end)
    end)

    it("is a RuntimeError on a real-clock loop", function()
      helper.with_loop(function(l)
        local e = err_of(l.advance, l, 1)
        assert_class(asyncio.RuntimeError, e)
        assert.truthy(tostring(e):find('clock = "virtual"', 1, true))
      end)
    end)

    it("is a RuntimeError on a closed loop", function()
      local l = asyncio.new_event_loop({ clock = "virtual" })
      l:close()
      assert_class(asyncio.RuntimeError, err_of(l.advance, l, 1))
    end)
  end)

  describe("work in flight", function()
    it("an executor job holds the clock to real time", function()
      vrun(function()
        local l = loop()
        local late = false
        l:call_later(1000, function() late = true end)
        local real, v = timed(function() return asyncio.wait_for(function() return asyncio.to_thread(job_sleep, 0.2) end, 30) end)
        assert.equal(0.2, v)
        assert.is_false(late)
        assert.is_true(real >= 0.19)
        -- the clock ran at real speed, no faster
        assert.is_true(l:time() >= 0.19 and l:time() <= real + 0.05, "time " .. l:time())
      end)
    end)

    it("a timeout on a job is a real one", function()
      vrun(function()
        local l = loop()
        local f = asyncio.create_task(asyncio.to_thread, job_sleep, 0.3)
        local real, ok, e = timed(function() return pcall(asyncio.wait_for, asyncio.shield(f), 0.1) end)
        assert.is_false(ok)
        assert_class(asyncio.TimeoutError, e)
        assert.is_true(real >= 0.09 and real < 0.29, "took " .. real)
        assert.is_true(l:time() < 0.29)
        f:await()
      end)
    end)

    it("a child process holds the clock to real time", function()
      vrun(function()
        local l = loop()
        local late = false
        l:call_later(1000, function() late = true end)
        local p = asyncio.create_subprocess_exec({ "sleep", "0.2" })
        assert.equal(0, asyncio.wait_for(function() return p:wait() end, 30))
        assert.is_false(late)
        assert.is_true(l:time() >= 0.19 and l:time() < 30, "time " .. l:time())
      end)
    end)

    it("a child's output is read before a pending timer fires", function()
      vrun(function()
        local p = asyncio.create_subprocess_shell("echo hello; sleep 0.1; echo world",
          { stdout = asyncio.subprocess.PIPE })
        local out = asyncio.wait_for(function() return p.stdout:read() end, 30)
        assert.equal("hello\nworld\n", out)
        p:wait()
      end)
    end)

    it("a DNS lookup holds the clock", function()
      vrun(function()
        local late = false
        loop():call_later(1000, function() late = true end)
        local res = asyncio.wait_for(function() return loop():getaddrinfo("127.0.0.1", 80) end, 30)
        assert.is_true(#res > 0)
        assert.is_false(late)
      end)
    end)

    it("a callback posted from another thread holds the clock", function()
      vrun(function()
        local l = loop()
        local f = l:create_future()
        l:call_soon_threadsafe(function() f:set_result("posted") end)
        assert.equal("posted", asyncio.wait_for(f, 3600))
        assert.is_true(l:time() < 1)
      end)
    end)
  end)

  describe("I/O", function()
    local function echo_server()
      local server = asyncio.start_server(function(r, w)
        while true do
          local line = r:readline()
          if line == "" then break end
          w:write(line)
          w:drain()
        end
        w:close()
      end, "127.0.0.1", 0)
      return server, server.sockets[1]:getsockname()[2]
    end

    it("a TCP echo over loopback works while a timer is pending", function()
      vrun(function()
        local l = loop()
        local fired = false
        l:call_later(10, function() fired = true end)
        local server, port = echo_server()
        local r, w = asyncio.open_connection("127.0.0.1", port)
        for i = 1, 200 do
          w:write("line " .. i .. "\n")
          -- each read is bounded by 5 virtual seconds: a jump past the
          -- echo on its way would fail it
          assert.equal("line " .. i .. "\n", asyncio.wait_for(function() return r:readline() end, 5))
        end
        assert.is_false(fired)
        assert.is_true(l:time() < 5, "time " .. l:time())
        w:close()
        w:wait_closed()
        server:close()
        server:wait_closed()
      end)
    end)

    it("a big transfer is not overtaken by a timeout", function()
      vrun(function()
        local server, port = echo_server()
        local r, w = asyncio.open_connection("127.0.0.1", port)
        local chunk = string.rep("x", 1023) .. "\n"
        local n = 4096 -- 4 MB through the echo, with writes and drains in flight
        local reader = asyncio.create_task(function()
          local got = 0
          for _ = 1, n do
            assert.equal(chunk, r:readline())
            got = got + 1
          end
          return got
        end)
        for _ = 1, n do w:write(chunk) end
        w:drain()
        assert.equal(n, asyncio.wait_for(reader, 1))
        w:close()
        server:close()
        server:wait_closed()
      end)
    end)

    it("an idle connection does not hold the clock (a silent peer times out at once)", function()
      local real = timed(function()
        vrun(function()
          local server = asyncio.start_server(function(r, w)
            r:read()
            w:close()
          end, "127.0.0.1", 0)
          local port = server.sockets[1]:getsockname()[2]
          local r, w = asyncio.open_connection("127.0.0.1", port)
          assert_class(asyncio.TimeoutError, err_of(asyncio.wait_for, function() return r:read(1) end, 3600))
          assert.equal(3600, math.floor(loop():time()))
          w:close()
          server:close()
          server:wait_closed()
        end)
      end)
      assert.is_true(real < 1, "took " .. real)
    end)

    it("a listening server does not hold the clock", function()
      vrun(function()
        local server = echo_server()
        asyncio.sleep(3600)
        assert.is_true(loop():time() >= 3600 and loop():time() < 3601)
        server:close()
        server:wait_closed()
      end, 2)
    end)
  end)

  describe("embedding", function()
    it("backend_timeout is 0 while a jump is due", function()
      with_vloop(function(l)
        assert.is_nil(l:backend_timeout())
        local fired = false
        l:call_later(100, function() fired = true end)
        -- a host polls as long as backend_timeout says, then runs one
        -- iteration (the first only registers the loop's own watchers)
        for _ = 1, 3 do
          if fired then break end
          assert.equal(0, l:backend_timeout())
          l:run_once()
        end
        assert.is_true(fired)
        assert.equal(100, l:time())
      end)
    end)
  end)

  describe("options", function()
    it("clock = 'real' and nil are the real clock", function()
      for _, opts in ipairs({ { clock = "real" }, {}, nil }) do
        local l = asyncio.new_event_loop(opts)
        assert.is_true(l:time() > 0)
        assert.is_nil(tostring(l):find("virtual", 1, true))
        l:close()
      end
      assert.equal("r", asyncio.run(function() return "r" end, { clock = "real" }))
    end)

    it("another clock is an error naming the option", function()
      for _, bad in ipairs({ "fast", 1, true, "Virtual" }) do
        local e = err_of(asyncio.new_event_loop, { clock = bad })
        assert.truthy(tostring(e):find('opts.clock must be "real" or "virtual"', 1, true), tostring(e))
        e = err_of(asyncio.run, function() end, { clock = bad })
        assert.truthy(tostring(e):find("bad argument #2 to 'run' (opts.clock", 1, true), tostring(e))
      end
      assert.truthy(tostring(err_of(asyncio.new_event_loop, "virtual")):find("table expected", 1, true))
    end)

    it("tostring names a virtual clock", function()
      local l = asyncio.new_event_loop({ clock = "virtual" })
      assert.truthy(tostring(l):find("clock=virtual", 1, true))
      l:close()
    end)
  end)

  it("debug mode still warns of slow callbacks, in real time", function()
    local records = helper.capture_log(function(records)
      vrun(function()
        local l = loop()
        l:set_debug(true)
        l.slow_callback_duration = 0.02
        local f = l:create_future()
        l:call_soon(function()
          helper.busy(0.05)
          f:set_result()
        end)
        f:await()
      end)
      return records
    end)
    assert.is_true(#helper.grep(records, "took") > 0)
  end)
end)
