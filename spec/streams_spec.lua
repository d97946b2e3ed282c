-- Streams (open_connection / start_server, StreamReader over a transport,
-- StreamWriter) over real loopback connections, after CPython's
-- test_asyncio/test_streams.py. The StreamReader fed by hand is
-- streamreader_spec.lua's.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run

local function port_of(server)
  return server.sockets[1]:getsockname()[2]
end

local echo = helper.stream_echo

-- a stream echo server on 127.0.0.1; returns server, port
local function echo_server(opts)
  local server = asyncio.start_server(echo, "127.0.0.1", 0, opts)
  return server, port_of(server)
end

-- records every context the loop's exception handler gets
local function record_exceptions()
  local contexts = {}
  asyncio.get_running_loop():set_exception_handler(function(_, ctx) contexts[#contexts + 1] = ctx end)
  return contexts
end

local wait_for, open_fds, tmpdir = helper.wait_until, helper.open_fds, helper.tmpdir

-- the end of most tests: a client writer and its server, both closed
local function close_both(writer, server)
  writer:close()
  writer:wait_closed()
  server:close()
  server:wait_closed()
end

-- A child interpreter (this same executable) writes to a peer that reset
-- the connection: "survived" unless SIGPIPE killed it. Python ignores
-- SIGPIPE; an OS error must reach the transport, not end the process. A
-- SIGPIPE handler added and removed first (libuv then restores the default
-- action) must not change that.
local SIGPIPE_PROBE = [[
local asyncio = require "asyncio"
asyncio.run(function()
  local loop = asyncio.get_running_loop()
  loop:add_signal_handler("SIGPIPE", function() end)
  loop:remove_signal_handler("SIGPIPE")
  local server = asyncio.start_server(function(_, w) w.transport:abort() end, "127.0.0.1", 0)
  local _, writer = asyncio.open_connection("127.0.0.1", server.sockets[1]:getsockname()[2])
  asyncio.sleep(0.05)
  for _ = 1, 50 do
    writer:write("foo")
    asyncio.sleep(0.002)
  end
  io.write("survived")
end)
]]

local sigpipe_survived
local function survives_sigpipe()
  if sigpipe_survived == nil then
    local exe = "/proc/" .. helper.pid() .. "/exe"
    local p = assert(io.popen(("timeout 20 %s -e %q 2>/dev/null"):format(exe, SIGPIPE_PROBE)))
    local out = p:read("a")
    sigpipe_survived = p:close() and out == "survived" or false
  end
  return sigpipe_survived
end

-- the tests that write into a reset connection would kill busted itself
local function needs_sigpipe_ignored()
  assert(survives_sigpipe(), "writing to a reset connection kills the process (SIGPIPE); test not run")
end

describe("streams over TCP", function()
  it("writing to a reset connection does not kill the process (SIGPIPE)", function()
    assert.is_true(survives_sigpipe())
  end)

  it("start_server + open_connection: readline, write, drain, close, wait_closed", function()
    run(function()
      local contexts = record_exceptions()
      local server = asyncio.start_server(function(reader, writer)
        local line = reader:readline()
        writer:write(line)
        writer:drain()
        writer:close()
        writer:wait_closed()
      end, "127.0.0.1", 0)
      assert.is_true(server:is_serving())
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      writer:write("hello world!\n")
      assert.equal("hello world!\n", reader:readline())
      close_both(writer, server)
      assert.same({}, contexts)
    end)
  end)

  it("echo: read, readline, readexactly, readuntil with separators, lines()", function()
    run(function()
      local server, port = echo_server()
      local reader, writer = asyncio.open_connection("127.0.0.1", port)
      -- read(n) returns what is there, at most n bytes
      writer:write("hello")
      local got = {}
      while #table.concat(got) < 5 do
        local chunk = reader:read(3)
        assert.is_true(#chunk >= 1 and #chunk <= 3)
        got[#got + 1] = chunk
      end
      assert.equal("hello", table.concat(got))
      writer:writelines { "line1\nline2\r\nabcdefghij", "partAAAmoreBBrest\n", "x\ny\nz" }
      assert.equal("line1\n", reader:readline())
      assert.equal("line2\r\n", reader:readuntil { "\r\n", "\n" })
      assert.equal("abcdefghij", reader:readexactly(10))
      -- the separator whose match ends first wins
      assert.equal("partAAA", reader:readuntil { "BB", "AAA" })
      assert.equal("moreBB", reader:readuntil { "BB", "AAA" })
      assert.equal("rest", reader:readexactly(4))
      assert.equal("\n", reader:readline())
      writer:write_eof()
      local lines = {}
      for line in reader:lines() do lines[#lines + 1] = line end
      assert.same({ "x\n", "y\n", "z" }, lines)
      assert.is_true(reader:at_eof())
      assert.equal("", reader:read())
      assert.equal("", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("echoes a 64 MiB payload intact through reader and writer with drain", function()
    run(function()
      local server, port = echo_server()
      local parts = {}
      for i = 1, 1024 do parts[i] = string.rep(string.char(i % 251), 65536 - 7) .. ("%07d"):format(i) end
      local payload = table.concat(parts)
      assert.equal(64 * 1024 * 1024, #payload)
      local reader, writer = asyncio.open_connection("127.0.0.1", port)
      local sender = asyncio.create_task(function()
        for _, part in ipairs(parts) do
          writer:write(part)
          writer:drain()
        end
        writer:write_eof()
      end)
      local back = {}
      while true do
        local data = reader:read(1024 * 1024)
        if data == "" then break end
        back[#back + 1] = data
      end
      sender:await()
      back = table.concat(back)
      assert.equal(#payload, #back)
      assert.is_true(back == payload, "the echo differs from the payload")
      close_both(writer, server)
    end, 60)
  end)

  it("backpressure: drain blocks while the peer does not read, then resumes", function()
    run(function()
      local release = asyncio.Event()
      local received = 0
      local server_done = asyncio.Event()
      local server = asyncio.start_server(function(reader, writer)
        release:wait()
        while true do
          local data = reader:read(65536)
          if data == "" then break end
          received = received + #data
        end
        writer:close()
        server_done:set()
      end, "127.0.0.1", 0)
      local _, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local high = select(2, writer.transport:get_write_buffer_limits())
      local chunk = string.rep("b", 65536)
      local nchunks = 1024 -- 64 MiB: more than the socket buffers take
      local written, draining, max_size = 0, false, 0
      local sender = asyncio.create_task(function()
        for _ = 1, nchunks do
          writer:write(chunk)
          written = written + #chunk
          max_size = math.max(max_size, writer.transport:get_write_buffer_size())
          draining = true
          writer:drain()
          draining = false
        end
        writer:write_eof()
      end)
      -- wait until the sender sits in drain() and makes no progress
      local last, still = -1, 0
      wait_for(function()
        asyncio.sleep(0.05)
        if draining and written == last then still = still + 1 else still = 0 end
        last = written
        return still >= 4
      end, 20)
      assert.is_false(sender:done())
      assert.is_true(written < nchunks * #chunk)
      assert.equal(0, received)
      -- the writer's buffer stays bounded: past the high-water mark by one write at most
      local size = writer.transport:get_write_buffer_size()
      assert.is_true(size > high, "drain blocks above the high-water mark")
      assert.is_true(size <= high + #chunk, "buffer grew to " .. size)
      assert.is_true(max_size <= high + #chunk, "buffer grew to " .. max_size)
      -- every concurrent drain waits, and all resume together (CPython's test_multiple_drain)
      local drainers = {}
      for i = 1, 5 do drainers[i] = asyncio.create_task(function() writer:drain() end) end
      asyncio.sleep(0.05)
      for _, t in ipairs(drainers) do assert.is_false(t:done()) end
      release:set()
      asyncio.gather(drainers):await()
      sender:await()
      server_done:wait()
      assert.equal(nchunks * #chunk, received)
      close_both(writer, server)
    end, 60)
  end)

  it("a drain waiting when its own transport aborts raises ConnectionResetError", function()
    run(function()
      local release = asyncio.Event()
      local server = asyncio.start_server(function(_, writer)
        release:wait()
        writer:close()
      end, "127.0.0.1", 0)
      local _, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local chunk = string.rep("d", 65536)
      local draining = false
      local sender = asyncio.create_task(function()
        for _ = 1, 1024 do -- 64 MiB: more than the socket buffers take
          writer:write(chunk)
          draining = true
          writer:drain()
          draining = false
        end
      end)
      wait_for(function()
        asyncio.sleep(0.05)
        return draining and writer.transport:get_write_buffer_size() > 0
      end, 20)
      writer.transport:abort() -- connection_lost(nil): the drain fails with an error of its own
      local ok, err = pcall(sender.await, sender)
      assert.is_false(ok)
      helper.assert_class(asyncio.ConnectionResetError, err)
      assert.matches("Connection lost", tostring(err))
      release:set()
      close_both(writer, server)
    end, 30)
  end)

  it("half-close: write_eof, the peer reads '' at EOF and can still write back", function()
    run(function()
      local server = asyncio.start_server(function(reader, writer)
        local data = reader:read()
        assert.is_true(reader:at_eof())
        assert.equal("", reader:read())
        assert.equal("", reader:read(10))
        writer:write(data:upper())
        writer:drain()
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      assert.is_true(writer:can_write_eof())
      writer:write("shout")
      writer:write_eof()
      assert.is_false(writer:is_closing())
      local err = helper.err_of(writer.write, writer, "more")
      helper.assert_class(asyncio.RuntimeError, err)
      assert.equal("SHOUT", reader:read())
      assert.is_true(reader:at_eof())
      close_both(writer, server)
    end)
  end)

  it("IncompleteReadError carries partial and expected", function()
    run(function()
      local replies = { "abc", "tail without separator" }
      local n = 0
      local server = asyncio.start_server(function(_, writer)
        n = n + 1
        writer:write(replies[n])
        writer:close()
      end, "127.0.0.1", 0)
      local port = port_of(server)
      local reader, writer = asyncio.open_connection("127.0.0.1", port)
      local err = helper.err_of(reader.readexactly, reader, 10)
      helper.assert_class(asyncio.IncompleteReadError, err)
      assert.equal("abc", err.partial)
      assert.equal(10, err.expected)
      assert.equal("IncompleteReadError: 3 bytes read on a total of 10 expected bytes", tostring(err))
      assert.is_true(reader:at_eof())
      writer:close()
      local reader2, writer2 = asyncio.open_connection("127.0.0.1", port)
      err = helper.err_of(reader2.readuntil, reader2, "\n")
      helper.assert_class(asyncio.IncompleteReadError, err)
      assert.equal("tail without separator", err.partial)
      assert.is_nil(err.expected)
      assert.matches("undefined expected bytes", err.message)
      writer2:close()
      writer2:wait_closed()
      writer:wait_closed()
      server:close()
      server:wait_closed()
    end)
  end)

  it("LimitOverrunError carries consumed and leaves the data to read", function()
    run(function()
      local line = "0123456789abcdef\n"
      local server = asyncio.start_server(function(reader, writer)
        writer:write(line .. "next\n")
        reader:read() -- until the client is done
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server), { limit = 8 })
      local err = helper.err_of(reader.readuntil, reader, "\n")
      helper.assert_class(asyncio.LimitOverrunError, err)
      assert.matches("limit", err.message)
      assert.is_true(math.type(err.consumed) == "integer" and err.consumed > 8, tostring(err.consumed))
      assert.is_true(err.consumed < #line)
      -- nothing was consumed: the bytes are still there
      local head = reader:readexactly(err.consumed)
      assert.equal(line:sub(1, err.consumed), head)
      assert.equal(line:sub(err.consumed + 1), reader:readexactly(#line - err.consumed))
      assert.equal("next\n", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("honours the limit option of start_server", function()
    run(function()
      local results = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        local out = {}
        while true do
          local ok, l = pcall(reader.readline, reader)
          if not ok then
            out[#out + 1] = asyncio.isinstance(l, asyncio.ValueError) and "ValueError" or tostring(l)
          elseif l == "" then
            break
          else
            out[#out + 1] = l
          end
        end
        results:set_result(out)
        writer:close()
      end, "127.0.0.1", 0, { limit = 16 })
      local _, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local exact = string.rep("s", 16) .. "\n"
      writer:write(string.rep("L", 39) .. "\n" .. "short\n" .. exact .. string.rep("t", 17) .. "\n")
      writer:write_eof()
      -- a line whose separator starts past the limit is dropped (ValueError);
      -- the next ones still read
      assert.same({ "ValueError", "short\n", exact, "ValueError" }, results:await())
      close_both(writer, server)
    end)
  end)

  it("a writer closes with <close>; wait_closed, is_closing, EOF on the reader", function()
    run(function()
      local got = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        local data = reader:read()
        if not got:done() then got:set_result(data) end
        writer:close()
      end, "127.0.0.1", 0)
      local reader, w = asyncio.open_connection("127.0.0.1", port_of(server))
      do
        local writer <close> = w
        assert.is_false(writer:is_closing())
        writer:write("bye")
      end
      -- __close waited for connection_lost
      assert.is_true(w:is_closing())
      w:wait_closed()
      assert.equal("bye", got:await())
      -- CPython's test_eof_feed_when_closing_writer
      assert.is_true(reader:at_eof())
      assert.equal("", reader:read())
      -- after the loss, drain raises ConnectionResetError
      w:write("ignored")
      local err = helper.err_of(w.drain, w)
      helper.assert_class(asyncio.ConnectionResetError, err)
      -- a task failing inside the scope closes the writer too
      local _, w2 = asyncio.open_connection("127.0.0.1", port_of(server))
      local t = asyncio.create_task(function()
        local writer <close> = w2
        error("fails with the writer open")
      end)
      local ok, e = pcall(t.await, t)
      assert.is_false(ok)
      assert.matches("fails with the writer open", tostring(e))
      assert.is_true(w2:is_closing())
      server:close()
      server:wait_closed()
    end)
  end)

  it("drain right after close() raises ConnectionResetError", function()
    run(function()
      local server, port = echo_server()
      local _, writer = asyncio.open_connection("127.0.0.1", port)
      writer:write("data")
      writer:close()
      assert.is_true(writer:is_closing())
      local err = helper.err_of(function()
        writer:write("data")
        writer:drain()
      end)
      helper.assert_class(asyncio.ConnectionResetError, err)
      server:close()
      server:wait_closed()
    end)
  end)

  it("a cancelled wait_closed does not break a later one", function()
    run(function()
      local server, port = echo_server()
      local _, writer = asyncio.open_connection("127.0.0.1", port)
      local t = asyncio.create_task(function() writer:wait_closed() end)
      asyncio.sleep(0.01)
      t:cancel()
      helper.await_cancelled(t)
      close_both(writer, server)
    end)
  end)

  it("get_extra_info: peername and sockname on both ends", function()
    run(function()
      local infos = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        infos:set_result { writer:get_extra_info("sockname"), writer:get_extra_info("peername") }
        reader:read()
        writer:close()
      end, "127.0.0.1", 0)
      local port = port_of(server)
      local _, writer = asyncio.open_connection("127.0.0.1", port)
      assert.same({ "127.0.0.1", port }, writer:get_extra_info("peername"))
      local sockname = writer:get_extra_info("sockname")
      assert.equal("127.0.0.1", sockname[1])
      local server_side = infos:await()
      assert.same({ "127.0.0.1", port }, server_side[1])
      assert.same(sockname, server_side[2])
      assert.equal("dflt", writer:get_extra_info("no such info", "dflt"))
      assert.is_nil(writer:get_extra_info("no such info"))
      close_both(writer, server)
    end)
  end)

  it("a peer reset mid-transfer: reader and drain raise, nothing crashes", function()
    needs_sigpipe_ignored()
    run(function()
      local contexts = record_exceptions()
      local server = asyncio.start_server(function(reader, writer)
        reader:readexactly(1024 * 1024)
        writer.transport:abort() -- unread data left: the kernel resets
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local chunk = string.rep("r", 1024 * 1024)
      local ok, err
      for _ = 1, 256 do
        ok, err = pcall(function()
          writer:write(chunk)
          writer:drain()
        end)
        if not ok then break end
      end
      assert.is_false(ok, "drain never saw the reset")
      helper.assert_class(asyncio.ConnectionError, err)
      assert.is_string(err.errno)
      -- the reader sees the reset, or EOF when it came as a FIN first
      local rok, data = pcall(reader.read, reader)
      if rok then
        assert.equal("", data)
      else
        helper.assert_class(asyncio.ConnectionError, data)
      end
      writer:wait_closed()
      -- after the loss: drain keeps raising, writes are dropped
      local err2 = helper.err_of(writer.drain, writer)
      helper.assert_class(asyncio.ConnectionError, err2)
      helper.capture_log(function()
        for _ = 1, 10 do writer:write("after the loss") end
      end)
      writer:close()
      assert.same({}, contexts)
      server:close()
      server:wait_closed()
    end, 30)
  end)

  it("drain raises when the peer closed without reading (CPython's test_drain_raises)", function()
    needs_sigpipe_ignored()
    run(function()
      local contexts = record_exceptions()
      local server = asyncio.start_server(function(_, writer) writer.transport:abort() end,
        "127.0.0.1", 0)
      local _, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local err = helper.err_of(function()
        while true do
          writer:write("foo\n")
          writer:drain()
        end
      end)
      helper.assert_class(asyncio.ConnectionError, err)
      writer:close()
      assert.same({}, contexts)
      server:close()
      server:wait_closed()
    end)
  end)

  it("serves 1,000 concurrent stream clients", function()
    run(function()
      local server = asyncio.start_server(function(reader, writer)
        for line in reader:lines() do
          writer:write(line)
          writer:drain()
        end
        writer:close()
      end, "127.0.0.1", 0, { backlog = 1024 })
      local port = port_of(server)
      local tasks = {}
      for i = 1, 1000 do
        tasks[i] = asyncio.create_task(function()
          local reader, writer = asyncio.open_connection("127.0.0.1", port)
          local want = ("client %d\n"):format(i)
          writer:write(want)
          local back = reader:readline()
          writer:close()
          writer:wait_closed()
          return back == want
        end)
      end
      local res = asyncio.gather(tasks):await()
      assert.equal(1000, #res)
      for i = 1, 1000 do assert.is_true(res[i], "client " .. i) end
      server:close()
      server:wait_closed()
    end, 60)
  end)

  -- a server whose handler raises once it read a line: the report, and the
  -- connection closed
  local function check_failing_handler()
    local contexts = record_exceptions()
    local server = asyncio.start_server(function(reader)
      reader:readline()
      error(asyncio.ValueError("handler failed"))
    end, "127.0.0.1", 0)
    local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
    writer:write("go\n")
    assert.equal("", reader:read()) -- the server closed its end
    wait_for(function() return #contexts >= 1 end)
    assert.equal(1, #contexts)
    assert.equal("Unhandled exception in client_connected_cb", contexts[1].message)
    helper.assert_class(asyncio.ValueError, contexts[1].exception)
    assert.equal("handler failed", contexts[1].exception.message)
    assert.is_not_nil(contexts[1].transport)
    close_both(writer, server)
  end

  it("an error escaping client_connected_cb is reported and closes the connection", function()
    run(check_failing_handler)
  end)

  it("a cancelled client_connected_cb task closes its connection", function()
    run(function()
      local contexts = record_exceptions()
      local handler
      local server = asyncio.start_server(function(reader)
        handler = asyncio.current_task()
        reader:read()
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      wait_for(function() return handler ~= nil end)
      handler:cancel()
      assert.equal("", reader:read())
      assert.same({}, contexts)
      writer:close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("a client_connected_cb task cancelled as its body returns closes its connection", function()
    run(function()
      local contexts = record_exceptions()
      local handler
      local server = asyncio.start_server(function()
        handler = asyncio.current_task()
        handler:cancel() -- nothing awaits after: the task ends cancelled all the same
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      assert.equal("", reader:read())
      assert.is_true(handler:cancelled())
      assert.same({}, contexts)
      close_both(writer, server)
    end)
  end)

  it("with a task factory, a failing client_connected_cb is still reported and closes", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local made = 0
      loop:set_task_factory(function(l, fn, ...)
        made = made + 1
        return asyncio.Task(l, fn, ...)
      end)
      check_failing_handler()
      loop:set_task_factory(nil)
      assert.is_true(made >= 1)
    end)
  end)

  -- The connection tasks' hook (core.create_task_hooked), driven directly
  -- with a stand-in writer: what the server's cases above cannot reach.
  describe("hooked tasks", function()
    local core = require "asyncio.core"

    local function fake_writer()
      local w = { closed = 0 }
      w.transport = { close = function() w.closed = w.closed + 1 end }
      return w
    end

    it("a task cancelled before its first step calls the hook", function()
      run(function()
        local w, ran = fake_writer(), false
        local t = core.create_task_hooked(asyncio.get_running_loop(), w, function() ran = true end)
        t:cancel()
        wait_for(function() return w.closed > 0 end)
        assert.is_true(t:cancelled())
        assert.is_false(ran)
        assert.equal(1, w.closed)
      end)
    end)

    it("a task that returns, or raises and is cancelled, calls it only when it should", function()
      run(function()
        local contexts = record_exceptions()
        local loop = asyncio.get_running_loop()
        local ok_w, err_w, cancel_w = fake_writer(), fake_writer(), fake_writer()
        local t1 = core.create_task_hooked(loop, ok_w, function(a, b) return a + b end, 1, 2)
        local t2 = core.create_task_hooked(loop, err_w, function() error("plain") end)
        local t3 = core.create_task_hooked(loop, cancel_w, function() asyncio.sleep(10) end)
        asyncio.sleep(0)
        t3:cancel()
        wait_for(function() return err_w.closed > 0 and cancel_w.closed > 0 end)
        assert.equal(3, t1:result())
        assert.equal(0, ok_w.closed)
        assert.equal(1, #contexts)
        assert.equal("Unhandled exception in client_connected_cb", contexts[1].message)
        assert.equal(t2, contexts[1].task)
        assert.is_true(t3:cancelled())
      end)
    end)

    it("checks its arguments and defers to a task factory", function()
      run(function()
        local loop = asyncio.get_running_loop()
        assert.has_error(function() core.create_task_hooked(loop, {}) end)
        assert.has_error(function() core.create_task_hooked({}, {}, print) end)
        loop:set_task_factory(function(l, fn, ...) return asyncio.Task(l, fn, ...) end)
        assert.is_nil(core.create_task_hooked(loop, {}, print))
        loop:set_task_factory(nil)
      end)
    end)
  end)

  it("connection refused raises ConnectionRefusedError", function()
    run(function()
      local server, port = echo_server()
      server:close()
      server:wait_closed()
      local err = helper.err_of(asyncio.open_connection, "127.0.0.1", port)
      helper.assert_class(asyncio.ConnectionRefusedError, err)
      helper.assert_class(asyncio.OSError, err)
      assert.equal("ECONNREFUSED", err.errno)
      assert.is_string(err.strerror)
    end)
  end)

  it("open_connection('localhost', port) resolves the name", function()
    run(function()
      local server, port = echo_server()
      local reader, writer = asyncio.open_connection("localhost", port)
      assert.equal("127.0.0.1", writer:get_extra_info("peername")[1])
      writer:write("by name\n")
      assert.equal("by name\n", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("a Server closes with <close>", function()
    run(function()
      local port, srv
      do
        local server <close> = asyncio.start_server(echo, "127.0.0.1", 0)
        srv, port = server, port_of(server)
        local reader, writer = asyncio.open_connection("127.0.0.1", port)
        writer:write("ping\n")
        assert.equal("ping\n", reader:readline())
        writer:close()
        writer:wait_closed()
      end
      assert.is_false(srv:is_serving())
      assert.same({}, srv.sockets)
      local err = helper.err_of(asyncio.open_connection, "127.0.0.1", port)
      helper.assert_class(asyncio.ConnectionRefusedError, err)
    end)
  end)

  it("serve_forever serves until cancelled; start_serving = false waits", function()
    run(function()
      local server = asyncio.start_server(echo, "127.0.0.1", 0, { start_serving = false })
      assert.is_false(server:is_serving())
      local forever = asyncio.create_task(function() server:serve_forever() end)
      asyncio.sleep(0)
      assert.is_true(server:is_serving())
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      writer:write("served\n")
      assert.equal("served\n", reader:readline())
      writer:close()
      writer:wait_closed()
      forever:cancel()
      helper.await_cancelled(forever)
      assert.is_false(server:is_serving())
    end)
  end)

  it("does not leak file descriptors over 500 stream connections", function()
    run(function()
      local server, port = echo_server()
      local before = open_fds()
      for _ = 1, 5 do
        local batch = {}
        for j = 1, 100 do
          batch[j] = asyncio.create_task(function()
            local reader, writer = asyncio.open_connection("127.0.0.1", port)
            writer:write("ping\n")
            assert.equal("ping\n", reader:readline())
            if j % 2 == 0 then
              writer:close()
            else
              writer.transport:abort()
            end
            writer:wait_closed()
          end)
        end
        asyncio.gather(batch):await()
      end
      server:close()
      server:wait_closed()
      helper.gc()
      assert.equal(before - 1, open_fds(), -- the listening socket went too
                   "open descriptors now:\n" .. helper.fd_list())
    end, 60)
  end)

  it("checks its arguments", function()
    run(function()
      assert.has_error(function() asyncio.start_server(42, "127.0.0.1", 0) end)
      assert.has_error(function() asyncio.start_server(echo, "127.0.0.1", 0, 5) end)
      assert.has_error(function() asyncio.open_connection("127.0.0.1", 1, "opts") end)
      assert.has_error(function() asyncio.start_unix_server(echo, 42) end)
      local err = helper.err_of(asyncio.open_connection, "127.0.0.1", 1, { limit = 0 })
      helper.assert_class(asyncio.ValueError, err)
    end)
    -- outside a loop
    local err = helper.err_of(asyncio.open_connection, "127.0.0.1", 1)
    helper.assert_class(asyncio.RuntimeError, err)
  end)
end)

describe("streams over Unix sockets", function()
  it("start_unix_server + open_unix_connection in a temp dir", function()
    run(function()
      local contexts = record_exceptions()
      local dir = tmpdir()
      local path = dir .. "/streams.sock"
      local server = asyncio.start_unix_server(function(reader, writer)
        local line = reader:readline()
        writer:write(line)
        writer:drain()
        writer:close()
        writer:wait_closed()
      end, path)
      assert.equal(path, server.sockets[1]:getsockname())
      local reader, writer = asyncio.open_unix_connection(path)
      assert.equal(path, writer:get_extra_info("peername"))
      writer:write("hello world!\n")
      assert.equal("hello world!\n", reader:readline())
      assert.equal("", reader:read())
      close_both(writer, server)
      assert.is_nil(io.open(path))
      os.remove(dir)
      assert.same({}, contexts)
    end)
  end)

  it("honours the limit option and a missing path raises OSError", function()
    run(function()
      local dir = tmpdir()
      local path = dir .. "/limit.sock"
      local server = asyncio.start_unix_server(function(_, writer)
        writer:write("0123456789\n")
        writer:close()
      end, path)
      local reader, writer = asyncio.open_unix_connection(path, { limit = 4 })
      local err = helper.err_of(reader.readline, reader)
      helper.assert_class(asyncio.ValueError, err)
      close_both(writer, server)
      err = helper.err_of(asyncio.open_unix_connection, path)
      helper.assert_class(asyncio.OSError, err)
      assert.equal("ENOENT", err.errno)
      os.remove(dir)
    end)
  end)
end)
