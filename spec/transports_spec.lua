-- Stream transports and protocols over TCP, Unix sockets and pipes
-- (after CPython's test_events.py, test_selector_events.py and
-- test_unix_events.py transport tests). Loopback only.
local asyncio = require "asyncio"
local helper = require "helper"

local run = helper.run

local recorder = helper.recorder

-- an echo server on 127.0.0.1; returns server, port
local function echo_server(loop, opts)
  local server = loop:create_server(function()
    return recorder { data = function(self, d) self.transport:write(d) end }
  end, "127.0.0.1", 0, opts)
  return server, server.sockets[1]:getsockname()[2]
end

local wait_for, open_fds, tmpdir = helper.wait_until, helper.open_fds, helper.tmpdir

describe("TCP transports", function()
  it("echo: connection_made once, data both ways, connection_lost once", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      assert.equal(1, p.made)
      assert.equal(tp, p.transport)
      assert.equal(p, tp:get_protocol())
      tp:write("hello ")
      tp:writelines { "wor", "ld" }
      wait_for(function() return p:text() == "hello world" end)
      tp:close()
      assert.is_true(tp:is_closing())
      assert.is_nil(p.lost_fut:await())
      assert.equal(1, p.lost)
      assert.same({ "made", "lost" }, p.events)
      server:close()
      server:wait_closed()
    end)
  end)

  it("reports peername, sockname and the socket fd", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      assert.same({ "127.0.0.1", port }, tp:get_extra_info("peername"))
      assert.equal("127.0.0.1", tp:get_extra_info("sockname")[1])
      assert.is_true(math.type(tp:get_extra_info("socket")) == "integer")
      assert.equal("dflt", tp:get_extra_info("nonsense", "dflt"))
      tp:close()
      server:close()
    end)
  end)

  it("connection_lost is not called from inside close()", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      tp:close()
      assert.equal(0, p.lost)
      tp:close()
      p.lost_fut:await()
      assert.equal(1, p.lost)
      server:close()
    end)
  end)

  it("close() waits for queued data; abort() discards it", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local got = {}
      local eof = loop:create_future()
      local server = loop:create_server(function()
        return recorder {
          data = function(_, d) got[#got + 1] = d end,
          eof = function() eof:set_result(true) end,
        }
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      local big = string.rep("x", 8 * 1024 * 1024)
      tp:write(big)
      tp:close()
      eof:await()
      assert.equal(#big, #table.concat(got))
      local tp2, p2 = loop:create_connection(recorder, "127.0.0.1", port)
      tp2:write(big)
      tp2:abort()
      assert.is_nil(p2.lost_fut:await())
      assert.equal(0, tp2:get_write_buffer_size())
      server:close()
    end)
  end)

  it("carries a 64 MiB payload intact", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local parts = {}
      for i = 1, 1024 do parts[i] = string.rep(string.char(i % 251), 65536 - 7) .. ("%07d"):format(i) end
      local payload = table.concat(parts)
      assert.equal(64 * 1024 * 1024, #payload)
      local n, done = 0, loop:create_future()
      local tp = loop:create_connection(function()
        return recorder {
          data = function(self, d)
            n = n + #d
            if n >= #payload then done:set_result(self:text()) end
          end,
        }
      end, "127.0.0.1", port)
      tp:write(payload)
      local back = done:await()
      assert.is_true(back == payload)
      tp:close()
      server:close()
    end, 60)
  end)

  it("half-close: eof_received returning true keeps the transport writable", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(function()
        local buf = {}
        return recorder {
          data = function(_, d) buf[#buf + 1] = d end,
          eof = function(self)
            self.transport:write(table.concat(buf):upper())
            self.transport:close()
            return true
          end,
        }
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(function()
        return recorder { eof = function() return true end }
      end, "127.0.0.1", port)
      assert.is_true(tp:can_write_eof())
      tp:write("shout")
      tp:write_eof()
      assert.has_error(function() tp:write("more") end)
      wait_for(function() return p.events[2] == "eof" end)
      assert.equal("SHOUT", p:text())
      assert.equal(0, p.lost)
      tp:close()
      p.lost_fut:await()
      assert.same({ "made", "eof", "lost" }, p.events)
      server:close()
    end)
  end)

  it("eof_received returning nothing closes the transport", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local sp
      local server = loop:create_server(function()
        sp = recorder()
        return sp
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      tp:write_eof()
      wait_for(function() return sp and sp.lost == 1 end)
      assert.same({ "made", "eof", "lost" }, sp.events)
      tp:close()
      server:close()
    end)
  end)

  it("pauses and resumes the protocol around the write-buffer limits", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local sp
      local server = loop:create_server(function()
        sp = recorder { made = function(_, t) t:pause_reading() end }
        return sp
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      assert.same({ 16384, 65536 }, { tp:get_write_buffer_limits() })
      tp:set_write_buffer_limits(100000)
      assert.same({ 25000, 100000 }, { tp:get_write_buffer_limits() })
      local err = helper.err_of(tp.set_write_buffer_limits, tp, 10, 20)
      helper.assert_class(asyncio.ValueError, err)
      tp:set_write_buffer_limits()
      local chunk = string.rep("y", 65536)
      local written = 0
      -- a slow reader: write until the protocol is paused
      while p.events[#p.events] ~= "pause" do
        tp:write(chunk)
        written = written + #chunk
        assert.is_true(written < 256 * 1024 * 1024, "never paused")
        asyncio.sleep(0)
      end
      assert.is_true(tp:get_write_buffer_size() > 65536)
      -- memory stays bounded: the buffer is what the kernel refused, no more
      assert.is_true(tp:get_write_buffer_size() <= 2 * 65536 + #chunk)
      wait_for(function() return sp and sp.transport end)
      assert.is_false(sp.transport:is_reading())
      sp.transport:resume_reading()
      assert.is_true(sp.transport:is_reading())
      wait_for(function() return p.events[#p.events] == "resume" end)
      assert.is_true(tp:get_write_buffer_size() <= 16384)
      wait_for(function() return #sp:text() == written end)
      tp:close()
      server:close()
    end, 30)
  end)

  it("serves 1,000 concurrent clients", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop, { backlog = 1024 })
      local tasks = {}
      for i = 1, 1000 do
        tasks[i] = loop:create_task(function()
          local done = loop:create_future()
          local want = "client " .. i
          local tp = loop:create_connection(function()
            return recorder {
              data = function(self) if self:text() == want then done:set_result(true) end end,
            }
          end, "127.0.0.1", port)
          tp:write(want)
          done:await()
          tp:close()
          return true
        end)
      end
      local res = asyncio.gather(tasks):await()
      assert.equal(1000, #res)
      server:close()
      server:wait_closed()
    end, 60)
  end)

  it("a peer reset mid-transfer reaches connection_lost, not the loop", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local sp
      local server = loop:create_server(function()
        sp = recorder { data = function(self) self.transport:abort() end }
        return sp
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      local chunk = string.rep("z", 1024 * 1024)
      for _ = 1, 64 do
        tp:write(chunk)
        if tp:is_closing() then break end
        asyncio.sleep(0.001)
      end
      local err = p.lost_fut:await()
      if err ~= nil then helper.assert_class(asyncio.ConnectionError, err) end
      assert.equal(1, p.lost)
      local log = helper.capture_log(function(records)
        for _ = 1, 10 do tp:write("ignored after the loss") end
        return records
      end)
      assert.equal(1, #helper.grep(log, "socket.send() raised exception"))
      server:close()
    end)
  end)

  it("connection refused raises ConnectionRefusedError", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      server:close()
      server:wait_closed()
      local err = helper.err_of(loop.create_connection, loop, recorder, "127.0.0.1", port)
      helper.assert_class(asyncio.ConnectionRefusedError, err)
      assert.equal("ECONNREFUSED", err.errno)
      assert.is_string(err.strerror)
    end)
  end)

  it("binding a port in use raises OSError EADDRINUSE", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local err = helper.err_of(loop.create_server, loop, recorder, "127.0.0.1", port,
        { reuse_address = false })
      helper.assert_class(asyncio.OSError, err)
      assert.equal("EADDRINUSE", err.errno)
      server:close()
    end)
  end)

  it("reuse_port lets two servers bind one port", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local s1 = loop:create_server(recorder, "127.0.0.1", 0, { reuse_port = true })
      local port = s1.sockets[1]:getsockname()[2]
      local s2 = loop:create_server(recorder, "127.0.0.1", port, { reuse_port = true })
      assert.equal(port, s2.sockets[1]:getsockname()[2])
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      tp:close()
      p.lost_fut:await()
      s1:close()
      s2:close()
    end)
  end)

  it("works over IPv6 loopback", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local ok, server = pcall(loop.create_server, loop, function()
        return recorder { data = function(self, d) self.transport:write(d) end }
      end, "::1", 0)
      if not ok then
        assert.equal("EADDRNOTAVAIL", server.errno) -- no IPv6 on this machine
        return
      end
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(recorder, "::1", port)
      assert.same({ "::1", port, 0, 0 }, tp:get_extra_info("peername"))
      tp:write("six")
      wait_for(function() return p:text() == "six" end)
      tp:close()
      server:close()
    end)
  end)

  -- each read takes one of the loop's few receive buffers: one not given
  -- back leaks a buffer a read from then on (LeakSanitizer, asan pass)
  it("a protocol without data_received drops the bytes and still sees the EOF", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local eof = loop:create_future()
      local server = loop:create_server(function()
        return { eof_received = function() eof:set_result(true) end }
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      for i = 1, 12 do
        tp:write("chunk " .. i)
        asyncio.sleep(0.002) -- a read of its own each
      end
      tp:write_eof()
      assert.is_true(asyncio.wait_for(eof, 5))
      tp:close()
      server:close()
    end)
  end)

  it("protocol callback errors reach the exception handler and close the transport", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local contexts = {}
      loop:set_exception_handler(function(_, ctx) contexts[#contexts + 1] = ctx end)
      local sp
      local server = loop:create_server(function()
        sp = recorder { data = function() error("boom in data_received") end }
        return sp
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      tp:write("x")
      p.lost_fut:await()
      wait_for(function() return #contexts >= 1 end)
      assert.equal("Fatal error: protocol.data_received() call failed.", contexts[1].message)
      assert.matches("boom in data_received", tostring(contexts[1].exception))
      assert.matches("transports_spec.lua:%d+: in field 'data'", contexts[1].traceback)
      assert.equal(sp, contexts[1].protocol)
      -- Python's _fatal_error: the protocol loses the connection with that error
      assert.equal(contexts[1].exception, sp.lost_fut:await())
      assert.same({ "x" }, sp.data)
      server:close()
    end)
  end)

  it("errors in connection_made and connection_lost are reported; the loop goes on", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local contexts = {}
      loop:set_exception_handler(function(_, ctx) contexts[#contexts + 1] = ctx end)
      local server, port = echo_server(loop)
      local tp = loop:create_connection(function()
        return {
          connection_made = function() error("made failed") end,
          connection_lost = function() error("lost failed") end,
        }
      end, "127.0.0.1", port)
      tp:close()
      wait_for(function() return #contexts == 2 end)
      assert.matches("connection_made", contexts[1].message)
      assert.matches("connection_lost", contexts[2].message)
      server:close()
    end)
  end)

  it("set_protocol switches where data goes", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local tp, p1 = loop:create_connection(recorder, "127.0.0.1", port)
      local p2 = recorder()
      tp:set_protocol(p2)
      assert.equal(p2, tp:get_protocol())
      tp:write("to p2")
      wait_for(function() return p2:text() == "to p2" end)
      assert.equal("", p1:text())
      tp:close()
      server:close()
    end)
  end)

  it("does not leak file descriptors or Lua references over 2,000 connections", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local function refs()
        helper.gc()
        local n = 0
        for _ in pairs(debug.getregistry()) do n = n + 1 end
        return n
      end
      local refs_before = refs()
      local before = open_fds()
      for _ = 1, 20 do
        local batch = {}
        for j = 1, 100 do
          batch[j] = loop:create_task(function()
            local done = loop:create_future()
            local tp = loop:create_connection(function()
              return recorder { data = function() done:set_result(true) end }
            end, "127.0.0.1", port)
            tp:write("ping")
            done:await()
            if j % 2 == 0 then tp:close() else tp:abort() end
          end)
        end
        asyncio.gather(batch):await()
      end
      server:close_clients()
      server:close()
      server:wait_closed()
      helper.gc()
      assert.equal(before - 1, open_fds(), -- the listening socket went too
                   "open descriptors now:\n" .. helper.fd_list())
      assert.is_true(refs() <= refs_before, "registry references leaked")
    end, 60)
  end)

  it("lets go of what a connection queued, its drain future and its loss error", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(function()
        return recorder { made = function(_, t) t:pause_reading() end }
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local function refs()
        helper.gc()
        local n = 0
        for _ in pairs(debug.getregistry()) do n = n + 1 end
        return n
      end
      local big = string.rep("x", 4 * 1024 * 1024) -- more than loopback takes at once
      local refs_before = refs()
      for _ = 1, 50 do
        local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
        tp:write(big)
        assert.is_true(tp:get_write_buffer_size() > 0)
        local waiter = tp:_drain_waiter()
        tp:_force_close(asyncio.ConnectionResetError("gone"))
        assert.equal("gone", tostring(p.lost_fut:await()):match("gone"))
        helper.assert_class(asyncio.ConnectionResetError, waiter:exception())
      end
      server:close_clients()
      server:close()
      server:wait_closed()
      assert.is_true(refs() <= refs_before, "registry references leaked")
    end, 60)
  end)

  it("sendfile sends a file, or a slice of it, through the transport", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local got, eof = {}, loop:create_future()
      local server = loop:create_server(function()
        return recorder {
          data = function(_, d) got[#got + 1] = d end,
          eof = function() eof:set_result(table.concat(got)) end,
        }
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local name = os.tmpname()
      local parts = {}
      for i = 1, 50000 do parts[i] = ("%06d\n"):format(i) end
      local content = table.concat(parts) -- 350,000 bytes
      local f = assert(io.open(name, "wb"))
      f:write(content)
      f:close()
      f = assert(io.open(name, "rb"))
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      tp:set_write_buffer_limits(4096)
      assert.equal(#content, loop:sendfile(tp, f))
      assert.equal(1000, loop:sendfile(tp, f, 7, 1000))
      assert.equal(7 + 1000, f:seek())
      helper.assert_class(asyncio.SendfileNotAvailableError,
        helper.err_of(loop.sendfile, loop, tp, f, 0, 10, false))
      assert.has_error(function() loop:sendfile(tp, "not a file") end)
      tp:write_eof()
      local all = eof:await()
      assert.equal(content .. content:sub(8, 1007), all)
      f:close()
      os.remove(name)
      tp:close()
      server:close()
    end)
  end)

  it("Server: serve_forever, close, wait_closed, close_clients, abort_clients", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(recorder, "127.0.0.1", 0, { start_serving = false })
      assert.is_false(server:is_serving())
      assert.equal(loop, server:get_loop())
      local port = server.sockets[1]:getsockname()[2]
      local forever = loop:create_task(function() server:serve_forever() end)
      asyncio.sleep(0)
      assert.is_true(server:is_serving())
      local tp1, p1 = loop:create_connection(recorder, "127.0.0.1", port)
      local tp2, p2 = loop:create_connection(recorder, "127.0.0.1", port)
      wait_for(function() return server._nclients == 2 end)
      -- as in Python 3.12, a cancelled serve_forever closes the server and
      -- waits for its connections to go
      forever:cancel()
      local closed = loop:create_task(function() server:wait_closed() end)
      asyncio.sleep(0.01)
      assert.is_false(server:is_serving())
      assert.same({}, server.sockets)
      assert.is_false(closed:done())
      assert.is_false(forever:done())
      server:close_clients()
      p1.lost_fut:await()
      p2.lost_fut:await()
      closed:await()
      helper.await_cancelled(forever)
      assert.is_true(tp1:is_closing() and tp2:is_closing())
      -- abort_clients
      local server2 = loop:create_server(recorder, "127.0.0.1", 0)
      local port2 = server2.sockets[1]:getsockname()[2]
      local _, p3 = loop:create_connection(recorder, "127.0.0.1", port2)
      wait_for(function() return server2._nclients == 1 end)
      server2:abort_clients()
      p3.lost_fut:await()
      do
        local s <close> = server2
      end
      assert.is_false(server2:is_serving())
    end)
  end)

  it("a closed Server lives while it has connections, and goes with them or with the loop", function()
    local alive = setmetatable({}, { __mode = "k" })
    local function count()
      helper.gc()
      local n = 0
      for _ in pairs(alive) do n = n + 1 end
      return n
    end
    run(function()
      local loop = asyncio.get_running_loop()
      local clients = {}
      for i = 1, 4 do
        local server = loop:create_server(recorder, "127.0.0.1", 0)
        alive[server] = true
        local tp = loop:create_connection(recorder, "127.0.0.1", server.sockets[1]:getsockname()[2])
        wait_for(function() return server._nclients == 1 end)
        server:close()
        if i % 2 == 0 then
          server:close_clients()
          server:wait_closed()
        end
        clients[i] = tp
      end
      assert.equal(2, count())
    end)
    assert.equal(0, count())
  end)

  it("binds every address of a host; nil host binds all interfaces", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(recorder, nil, 0)
      assert.is_true(#server.sockets >= 1)
      local port = server.sockets[1]:getsockname()[2]
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port)
      tp:close()
      p.lost_fut:await()
      server:close()
    end)
  end)

  it("honours local_addr", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local tp = loop:create_connection(recorder, "127.0.0.1", port,
        { local_addr = { "127.0.0.1", 0 } })
      assert.equal("127.0.0.1", tp:get_extra_info("sockname")[1])
      tp:close()
      server:close()
    end)
  end)

  it("Happy Eyeballs: a refused address is skipped for the next one", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local dead, dead_port = echo_server(loop)
      dead:close()
      dead:wait_closed()
      -- "localhost" resolves to a refused address first, then the live one
      local getaddrinfo = asyncio.Loop.getaddrinfo
      asyncio.Loop.getaddrinfo = function()
        return { { family = "inet", addr = { "127.0.0.1", dead_port } },
                 { family = "inet", addr = { "127.0.0.1", port } } }
      end
      local ok, err = pcall(function()
        local t0 = loop:time()
        local tp = loop:create_connection(recorder, "localhost", port, { happy_eyeballs_delay = 5 })
        assert.equal(port, tp:get_extra_info("peername")[2])
        assert.is_true(loop:time() - t0 < 2, "the next attempt starts when one fails")
        tp:close()
        local tp2 = loop:create_connection(recorder, "localhost", port)
        assert.equal(port, tp2:get_extra_info("peername")[2])
        tp2:close()
      end)
      asyncio.Loop.getaddrinfo = getaddrinfo
      assert(ok, err)
      server:close()
    end)
  end)

  it("cancelling create_connection while it connects leaves nothing open", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server, port = echo_server(loop)
      local before = open_fds()
      local t = loop:create_task(loop.create_connection, loop, recorder, "127.0.0.1", port)
      asyncio.sleep(0)
      t:cancel()
      helper.await_cancelled(t)
      asyncio.sleep(0.01)
      helper.gc()
      asyncio.sleep(0.01)
      assert.is_true(open_fds() <= before)
      server:close()
    end)
  end)

  it("checks its arguments", function()
    run(function()
      local loop = asyncio.get_running_loop()
      assert.has_error(function() loop:create_connection(42, "127.0.0.1", 1) end)
      assert.has_error(function() loop:create_server(recorder, "127.0.0.1", 0, 5) end)
      local server, port = echo_server(loop)
      local tp = loop:create_connection(recorder, "127.0.0.1", port)
      assert.has_error(function() tp:write(42) end)
      assert.has_error(function() tp:write({}) end)
      assert.has_error(function() tp:writelines({ 1, 2 }) end)
      assert.has_error(function() tp:set_protocol(42) end)
      assert.has_error(function() tp.write(nil, "x") end)
      assert.has_error(function() tp.write(server, "x") end)
      tp:close()
      server:close()
    end)
  end)
end)

describe("Unix socket transports", function()
  it("echo over a socket in a temp dir; the file goes with the server", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local dir = tmpdir()
      local path = dir .. "/echo.sock"
      local server = loop:create_unix_server(function()
        return recorder { data = function(self, d) self.transport:write(d) end }
      end, path)
      assert.equal(path, server.sockets[1]:getsockname())
      local tp, p = loop:create_unix_connection(recorder, path)
      tp:write("over unix")
      wait_for(function() return p:text() == "over unix" end)
      assert.equal(path, tp:get_extra_info("peername"))
      tp:close()
      p.lost_fut:await()
      server:close()
      server:wait_closed()
      assert.is_nil(io.open(path))
      os.remove(dir)
    end)
  end)

  it("connecting to a missing path raises OSError", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local err = helper.err_of(loop.create_unix_connection, loop, recorder, "/nonexistent/x.sock")
      helper.assert_class(asyncio.OSError, err)
      assert.equal("ENOENT", err.errno)
    end)
  end)
end)

describe("pipe transports", function()
  it("reads a pipe to EOF with connect_read_pipe", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local f = io.popen("printf 'from a pipe'", "r")
      local tp, p = loop:connect_read_pipe(recorder, f)
      assert.is_false(tp:can_write_eof())
      assert.is_nil(p.lost_fut:await())
      assert.equal("from a pipe", p:text())
      assert.same({ "made", "eof", "lost" }, p.events)
      f:close()
    end)
  end)

  it("writes a pipe with connect_write_pipe", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local dir = tmpdir()
      local out = dir .. "/out.txt"
      local f = io.popen("cat > " .. out, "w")
      local tp, p = loop:connect_write_pipe(recorder, f)
      tp:write("into ")
      tp:write("a pipe")
      tp:close()
      p.lost_fut:await()
      f:close()
      local r = assert(io.open(out))
      assert.equal("into a pipe", r:read("a"))
      r:close()
      os.remove(out)
      os.remove(dir)
    end)
  end)

  it("refuses regular files and bad modes", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local name = os.tmpname()
      local f = assert(io.open(name))
      local err = helper.err_of(loop.connect_read_pipe, loop, recorder, f)
      helper.assert_class(asyncio.ValueError, err)
      f:close()
      os.remove(name)
      assert.has_error(function() loop:connect_read_pipe(recorder, "nope") end)
    end)
  end)
end)

describe("loop close", function()
  it("releases open transports and servers", function()
    helper.with_loop(function(loop)
      local tp
      loop:run_until_complete(loop:create_task(function()
        local server = loop:create_server(recorder, "127.0.0.1", 0)
        local port = server.sockets[1]:getsockname()[2]
        tp = loop:create_connection(recorder, "127.0.0.1", port)
        tp:write(string.rep("q", 4 * 1024 * 1024))
      end))
      loop:close()
      assert.is_true(tp:is_closing())
      tp:write("after close")
      tp:close()
    end)
  end)
end)
