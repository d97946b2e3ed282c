-- Descriptors handed to the loop: opts.sock, connect_accepted_socket,
-- asyncio.socketpair and asyncio.socket, and loop:sock_* (after CPython's
-- test_sock_lowlevel.py and the sock= cases of test_base_events.py and
-- test_events.py). Loopback only.
local asyncio = require "asyncio"
local helper = require "helper"
local certs = require "tlscerts"

after_each(helper.close_loops)

local run, err_of, assert_class = helper.run, helper.err_of, helper.assert_class
local socket, ssl = asyncio.socket, asyncio.ssl

local function loop() return asyncio.get_running_loop() end

-- a listening TCP socket on a free loopback port: fd, port
local function listening(family)
  local host = family == "inet6" and "::1" or "127.0.0.1"
  local fd = socket.socket(family or "inet")
  socket.bind(fd, { host, 0 })
  socket.listen(fd)
  return fd, socket.getsockname(fd)[2], host
end

-- a connected TCP pair made with sock_connect and sock_accept
local function tcp_pair()
  local ls, port = listening()
  local accepting = asyncio.create_task(function() return loop():sock_accept(ls) end)
  local c = socket.socket("inet")
  loop():sock_connect(c, { "127.0.0.1", port })
  local s, peer = accepting:await()
  socket.close(ls)
  return c, s, peer
end

-- reads fd until EOF
local function recv_all(fd, chunk)
  local parts = {}
  while true do
    local d = loop():sock_recv(fd, chunk or 65536)
    if d == "" then return table.concat(parts) end
    parts[#parts + 1] = d
  end
end

-- the fd number of a Lua file, from /proc/self/fd
local function file_fd(path)
  local ls = assert(io.popen("ls -l /proc/" .. helper.pid() .. "/fd"))
  local fd
  for line in ls:lines() do
    local n, target = line:match("(%d+) %-> (.*)$")
    if target == path then fd = tonumber(n) end
  end
  ls:close()
  return fd
end

local function closed_fd()
  local a, b = asyncio.socketpair()
  socket.close(a)
  socket.close(b)
  return a
end

local function proto_recorder()
  local p = { data = {}, lost = asyncio.Future() }
  function p.connection_made(_, t) p.transport = t end
  function p.data_received(_, d) p.data[#p.data + 1] = d end
  function p.connection_lost(_, e) if not p.lost:done() then p.lost:set_result(e or false) end end
  return p
end

describe("asyncio.socket and socketpair", function()
  it("socketpair gives two connected stream sockets, close-on-exec", function()
    run(function()
      local a, b = asyncio.socketpair()
      assert.is_true(math.type(a) == "integer" and math.type(b) == "integer" and a ~= b)
      loop():sock_sendall(a, "ping")
      assert.equal("ping", loop():sock_recv(b, 10))
      loop():sock_sendall(b, "pong")
      assert.equal("pong", loop():sock_recv(a, 10))
      -- close-on-exec: a shell started now does not see them
      local p = asyncio.create_subprocess_exec({ "sh", "-c", "test -e /proc/self/fd/" .. a },
        { close_fds = false })
      assert.equal(1, p:wait())
      socket.close(a)
      assert.equal("", loop():sock_recv(b, 10))
      socket.close(b)
    end)
  end)

  it("socket, bind, listen, getsockname, getpeername, shutdown", function()
    run(function()
      local ls, port = listening()
      assert.is_true(port > 0)
      local c = socket.socket()
      local accepting = asyncio.create_task(function() return loop():sock_accept(ls) end)
      loop():sock_connect(c, { "127.0.0.1", port })
      local s, peer = accepting:await()
      assert.same(socket.getsockname(c), peer)
      assert.same({ "127.0.0.1", port }, socket.getpeername(c))
      socket.shutdown(c, "write")
      assert.equal("", loop():sock_recv(s, 10))
      loop():sock_sendall(s, "still open that way")
      assert.equal("still open that way", loop():sock_recv(c, 100))
      for _, fd in ipairs { ls, c, s } do socket.close(fd) end
    end)
  end)

  it("bad arguments and descriptors raise errors naming the function", function()
    run(function()
      local bad = closed_fd()
      assert.matches("bad argument #1 to 'close'", err_of(function() socket.close(-1) end))
      assert.matches("bad argument #1 to 'close'", err_of(function() socket.close("3") end))
      assert.matches("bad argument #1 to 'bind'", err_of(function() socket.bind(1 << 40, { "127.0.0.1", 0 }) end))
      local e = err_of(socket.close, bad)
      assert_class(asyncio.OSError, e)
      assert.matches("close: file descriptor " .. bad, tostring(e))
      e = err_of(socket.listen, bad)
      assert.matches("listen: file descriptor %d+: bad file descriptor", tostring(e))
      assert.matches("bad argument #1 to 'socket'", err_of(function() socket.socket("appletalk") end))
      -- the loop's own descriptors are not the program's to close
      local server = asyncio.start_server(function() end, "127.0.0.1", 0)
      e = err_of(socket.close, server.sockets[1]:fileno())
      assert_class(asyncio.RuntimeError, e)
      assert.matches("belongs to an event loop", tostring(e))
      assert_class(asyncio.RuntimeError, err_of(socket.close, loop():backend_fd()))
      server:close()
      assert.matches("bad argument #2 to 'shutdown'", err_of(function() socket.shutdown(0, "sideways") end))
    end)
  end)
end)

describe("loop:sock_*", function()
  it("a client: sock_connect, sock_sendall, sock_recv (test_sock_client_ops)", function()
    run(function()
      local server = asyncio.start_server(function(reader, writer)
        local line = reader:readline()
        writer:write("HTTP/1.0 200 OK\r\n\r\n" .. line)
        writer:close()
      end, "127.0.0.1", 0)
      local port = server.sockets[1]:getsockname()[2]
      local c = socket.socket()
      loop():sock_connect(c, { "127.0.0.1", port })
      loop():sock_sendall(c, "GET / HTTP/1.0\r\n\r\n")
      local data = recv_all(c, 1024)
      assert.equal("HTTP/1.0 200 OK\r\n\r\nGET / HTTP/1.0\r\n", data)
      socket.close(c)
      server:close()
    end)
  end)

  it("sock_connect resolves host names for the socket's family", function()
    run(function()
      local ls, port = listening()
      local accepting = asyncio.create_task(function() return loop():sock_accept(ls) end)
      local c = socket.socket("inet")
      loop():sock_connect(c, { "localhost", port })
      local s = accepting:await()
      assert.same({ "127.0.0.1", port }, socket.getpeername(c))
      for _, fd in ipairs { ls, c, s } do socket.close(fd) end
    end)
  end)

  it("sock_connect to a port nobody listens on raises ConnectionRefusedError", function()
    run(function()
      local ls, port = listening()
      socket.close(ls)
      local c = socket.socket()
      local e = err_of(loop().sock_connect, loop(), c, { "127.0.0.1", port })
      assert_class(asyncio.ConnectionRefusedError, e)
      assert.matches("sock_connect", tostring(e))
      socket.close(c)
    end)
  end)

  it("huge content: sendall of 8 MB to a reader that takes small chunks", function()
    run(function()
      local c, s = tcp_pair()
      local data = {}
      for i = 1, 8 * 1024 do data[i] = string.char(65 + i % 26):rep(1024) end
      data = table.concat(data)
      local reading = asyncio.create_task(function() return recv_all(s, 4096) end)
      loop():sock_sendall(c, data)
      socket.shutdown(c, "write")
      local got = reading:await()
      assert.equal(#data, #got)
      assert.is_true(got == data)
      socket.close(c)
      socket.close(s)
    end, 60)
  end)

  it("huge content: sendall ahead of a reader that starts late, recv bigger than the loop's buffer", function()
    run(function()
      local c, s = tcp_pair()
      local data = ("0123456789abcdef"):rep(256 * 1024) -- 4 MiB
      local sending = asyncio.create_task(function()
        loop():sock_sendall(c, data)
        socket.shutdown(c, "write")
      end)
      asyncio.sleep(0.05)
      assert.is_false(sending:done()) -- blocked on a full socket buffer
      assert.equal(data, recv_all(s, 1024 * 1024))
      sending:await()
      socket.close(c)
      socket.close(s)
    end, 60)
  end)

  it("a cancelled sock_recv leaves the descriptor usable and loses nothing", function()
    run(function()
      local a, b = asyncio.socketpair()
      for _ = 1, 3 do
        local t = asyncio.create_task(function() return loop():sock_recv(b, 100) end)
        helper.sleep0(2)
        t:cancel()
        helper.await_cancelled(t)
      end
      -- cancelled once the data is there, before the task could read it
      local t = asyncio.create_task(function() return loop():sock_recv(b, 100) end)
      helper.sleep0(2)
      loop():sock_sendall(a, "first")
      t:cancel()
      helper.await_cancelled(t)
      assert.equal("first", loop():sock_recv(b, 100))
      loop():sock_sendall(a, "second")
      assert.equal("second", loop():sock_recv(b, 100))
      socket.close(a)
      socket.close(b)
    end)
  end)

  it("a cancelled sock_accept leaves the listening socket usable (test_cancel_sock_accept)", function()
    run(function()
      local ls, port = listening()
      local t = asyncio.create_task(function() return loop():sock_accept(ls) end)
      helper.sleep0(2)
      t:cancel()
      helper.await_cancelled(t)
      local c = socket.socket()
      local accepting = asyncio.create_task(function() return loop():sock_accept(ls) end)
      loop():sock_connect(c, { "127.0.0.1", port })
      local s, peer = accepting:await()
      assert.same(socket.getsockname(c), peer)
      for _, fd in ipairs { ls, c, s } do socket.close(fd) end
    end)
  end)

  it("a sendall cancelled while blocked can be followed by more sends", function()
    run(function()
      local c, s = tcp_pair()
      local big = ("x"):rep(16 * 1024 * 1024)
      local t = asyncio.create_task(function() loop():sock_sendall(c, big) end)
      asyncio.sleep(0.05)
      assert.is_false(t:done())
      t:cancel()
      helper.await_cancelled(t)
      -- the watcher let go of the fd: a second sendall may wait on it
      local t2 = asyncio.create_task(function() loop():sock_sendall(c, "tail") end)
      local got = 0
      while not t2:done() do got = got + #loop():sock_recv(s, 1 << 20) end
      t2:await()
      socket.close(c)
      got = got + #recv_all(s)
      assert.is_true(got >= 4 and got < #big + 4)
      socket.close(s)
    end, 60)
  end)

  it("Unix sockets: bind to a path, sock_connect, sock_accept", function()
    run(function()
      local dir = helper.tmpdir()
      local path = dir .. "/s"
      local ls = socket.socket("unix")
      socket.bind(ls, path)
      socket.listen(ls)
      assert.equal(path, socket.getsockname(ls))
      local accepting = asyncio.create_task(function() return loop():sock_accept(ls) end)
      local c = socket.socket("unix")
      loop():sock_connect(c, path)
      local s, peer = accepting:await()
      assert.equal("", peer) -- an unnamed peer
      loop():sock_sendall(c, "over unix")
      assert.equal("over unix", loop():sock_recv(s, 100))
      for _, fd in ipairs { ls, c, s } do socket.close(fd) end
      os.execute("rm -rf '" .. dir .. "'")
    end)
  end)

  it("UDP: sock_sendto and sock_recvfrom (test_sock_sendto_recvfrom)", function()
    run(function()
      local a, b = socket.socket("inet", "dgram"), socket.socket("inet", "dgram")
      socket.bind(a, { "127.0.0.1", 0 })
      socket.bind(b, { "127.0.0.1", 0 })
      local addr_a, addr_b = socket.getsockname(a), socket.getsockname(b)
      local receiving = asyncio.create_task(function() return loop():sock_recvfrom(b, 4096) end)
      helper.sleep0(2)
      assert.equal(5, loop():sock_sendto(a, "hello", addr_b))
      local data, from = receiving:await()
      assert.equal("hello", data)
      assert.same(addr_a, from)
      assert.equal(1000, loop():sock_sendto(b, ("z"):rep(1000), from))
      data, from = loop():sock_recvfrom(a, 4096)
      assert.equal(("z"):rep(1000), data)
      assert.same(addr_b, from)
      socket.close(a)
      socket.close(b)
    end)
  end)

  it("one receiver at a time, and not beside add_reader", function()
    run(function()
      local a, b = asyncio.socketpair()
      local t = asyncio.create_task(function() return loop():sock_recv(b, 10) end)
      helper.sleep0(2)
      local e = err_of(loop().sock_recv, loop(), b, 10)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("another task is already receiving", tostring(e))
      e = err_of(loop().add_reader, loop(), b, function() end)
      assert_class(asyncio.RuntimeError, e)
      -- the other direction is free
      loop():sock_sendall(b, "x")
      assert.equal("x", loop():sock_recv(a, 10))
      loop():sock_sendall(a, "y")
      assert.equal("y", t:await())
      loop():add_reader(b, function() end)
      e = err_of(loop().sock_recv, loop(), b, 10)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("reader callback", tostring(e))
      loop():remove_reader(b)
      socket.close(a)
      socket.close(b)
    end)
  end)

  it("refuses the descriptor of a transport of the loop", function()
    run(function()
      local server = asyncio.start_server(function(_, w) w:close() end, "127.0.0.1", 0)
      local fd = server.sockets[1]:fileno()
      local e = err_of(loop().sock_accept, loop(), fd)
      assert_class(asyncio.RuntimeError, e)
      server:close()
    end)
  end)

  it("must be called from a task; bad descriptors name the function", function()
    local lp = helper.new_loop()
    local a, b = asyncio.socketpair()
    assert.matches("sock_recv called outside a task", tostring(err_of(function() return lp:sock_recv(a, 1) end)))
    run(function()
      local l = loop()
      local path = os.tmpname()
      local f = assert(io.open(path))
      local regular = file_fd(path)
      local bad = closed_fd() -- last: no descriptor made after it takes its number
      local calls = { -- as programs call them: errors name the method
        { "sock_recv", function(fd) return l:sock_recv(fd, 10) end },
        { "sock_recvfrom", function(fd) return l:sock_recvfrom(fd, 10) end },
        { "sock_sendall", function(fd) return l:sock_sendall(fd, "x") end },
        { "sock_sendto", function(fd) return l:sock_sendto(fd, "x", { "127.0.0.1", 9 }) end },
        { "sock_accept", function(fd) return l:sock_accept(fd) end },
        { "sock_connect", function(fd) return l:sock_connect(fd, { "127.0.0.1", 9 }) end },
      }
      for _, c in ipairs(calls) do
        local name, call = c[1], c[2]
        for _, v in ipairs { -1, 1 << 40, "3" } do
          assert.matches("bad argument #1 to '" .. name .. "'", err_of(call, v))
        end
        local e = err_of(call, bad)
        assert_class(asyncio.OSError, e)
        assert.matches(name .. ": file descriptor " .. bad, tostring(e))
        e = err_of(call, regular)
        assert_class(asyncio.OSError, e)
        assert.matches(name .. ": file descriptor " .. regular, tostring(e))
      end
      assert.matches("bad argument #2 to 'sock_recv'", err_of(function() return l:sock_recv(a, -1) end))
      assert.matches("bad argument #2 to 'sock_sendall'", err_of(function() return l:sock_sendall(a, {}) end))
      assert.matches("bad argument #3 to 'sock_sendto'", err_of(function() return l:sock_sendto(a, "x", 5) end))
      f:close()
      os.remove(path)
    end)
    socket.close(a)
    socket.close(b)
  end)

  it("a task parked in sock_recv when the loop closes leaves nothing behind", function()
    local a, b = asyncio.socketpair()
    local lp = helper.new_loop()
    local t = lp:create_task(function() return lp:sock_recv(b, 10) end)
    lp:run_until_complete(function() asyncio.sleep(0.01) end)
    assert.is_false(t:done())
    lp:close()
    helper.gc()
    -- the descriptor is still the program's, and not watched
    socket.close(a)
    socket.close(b)
  end)
end)

describe("opts.sock", function()
  it("create_connection over a connected socket; the transport owns it (test_create_connection_sock)", function()
    run(function()
      local c, s = tcp_pair()
      local p = proto_recorder()
      local tp, proto = loop():create_connection(function() return p end, nil, nil, { sock = c })
      assert.equal(p, proto)
      assert.same(socket.getpeername(s), tp:get_extra_info("sockname"))
      assert.equal(c, tp:get_extra_info("socket"))
      loop():sock_sendall(s, "to the transport")
      helper.wait_until(function() return #p.data > 0 end, 5)
      assert.equal("to the transport", table.concat(p.data))
      tp:write("from it")
      assert.equal("from it", loop():sock_recv(s, 100))
      tp:close()
      p.lost:await()
      assert.equal("", loop():sock_recv(s, 100))
      -- closed with the transport
      assert_class(asyncio.OSError, err_of(socket.getpeername, c))
      socket.close(s)
    end)
  end)

  it("open_connection and start_server over sockets handed over", function()
    run(function()
      local ls, port = listening()
      local server = asyncio.start_server(function(reader, writer)
        writer:write("echo: " .. reader:readline())
        writer:close()
      end, nil, nil, { sock = ls })
      assert.equal(port, server.sockets[1]:getsockname()[2])
      local c = socket.socket()
      loop():sock_connect(c, { "127.0.0.1", port })
      local reader, writer = asyncio.open_connection(nil, nil, { sock = c })
      writer:write("hi\n")
      assert.equal("echo: hi\n", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
      assert_class(asyncio.OSError, err_of(socket.getsockname, ls))
    end)
  end)

  it("create_server over a socket that is bound but not listening, IPv6 too", function()
    run(function()
      for _, family in ipairs { "inet", "inet6" } do
        local host = family == "inet" and "127.0.0.1" or "::1"
        local fd = socket.socket(family)
        local ok = pcall(socket.bind, fd, { host, 0 })
        if ok then
          local port = socket.getsockname(fd)[2]
          local got = asyncio.Future()
          local server = loop():create_server(function()
            return { data_received = function(_, d) got:set_result(d) end }
          end, nil, nil, { sock = fd, backlog = 5 })
          assert.is_true(server:is_serving())
          local r, w = asyncio.open_connection(host, port)
          w:write("hello " .. family)
          assert.equal("hello " .. family, got:await())
          w:close()
          server:close()
          server:wait_closed()
          local _ = r
        else
          socket.close(fd) -- no IPv6 on this machine
        end
      end
    end)
  end)

  it("Unix: create_unix_connection, open_unix_connection and start_unix_server with sock", function()
    run(function()
      local a, b = asyncio.socketpair()
      local r1, w1 = asyncio.open_unix_connection(nil, { sock = a })
      local p = proto_recorder()
      local tp = loop():create_unix_connection(function() return p end, nil, { sock = b })
      w1:write("over a pair")
      helper.wait_until(function() return #p.data > 0 end, 5)
      assert.equal("over a pair", table.concat(p.data))
      tp:write("back")
      assert.equal("back", r1:read(4))
      tp:close()
      w1:close()

      local dir = helper.tmpdir()
      local ls = socket.socket("unix")
      socket.bind(ls, dir .. "/srv")
      local server = asyncio.start_unix_server(function(reader, writer)
        writer:write(reader:readline():upper())
        writer:close()
      end, nil, { sock = ls })
      local r, w = asyncio.open_unix_connection(dir .. "/srv")
      w:write("shout\n")
      assert.equal("SHOUT\n", r:read())
      w:close()
      server:close()
      server:wait_closed()
      -- the socket file was not ours to remove
      assert.is_truthy(io.open(dir .. "/srv") or os.execute("test -S '" .. dir .. "/srv'"))
      os.execute("rm -rf '" .. dir .. "'")
    end)
  end)

  it("the wrong kind of descriptor is a clear error, and the caller keeps it", function()
    run(function()
      local l = loop()
      local function factory() return {} end
      local udp = socket.socket("inet", "dgram")
      local ls = listening()
      local a, b = asyncio.socketpair()
      local tcp = socket.socket("inet")
      local path = os.tmpname()
      local f = assert(io.open(path))
      local regular = file_fd(path)
      local bad = closed_fd() -- last: no descriptor made after it takes its number

      local e = err_of(l.create_connection, l, factory, nil, nil, { sock = udp })
      assert_class(asyncio.ValueError, e)
      assert.matches("create_connection: a stream socket was expected, file descriptor " .. udp
        .. " is a datagram socket", tostring(e))
      e = err_of(l.create_connection, l, factory, nil, nil, { sock = ls })
      assert_class(asyncio.ValueError, e)
      assert.matches("is a listening socket", tostring(e))
      e = err_of(l.create_server, l, factory, nil, nil, { sock = udp })
      assert_class(asyncio.ValueError, e)
      assert.matches("create_server:", tostring(e))
      e = err_of(asyncio.start_server, function() end, nil, nil, { sock = udp })
      assert.matches("start_server:", tostring(e))
      e = err_of(asyncio.open_connection, nil, nil, { sock = udp })
      assert.matches("open_connection:", tostring(e))
      e = err_of(l.create_datagram_endpoint, l, factory, { sock = tcp })
      assert_class(asyncio.ValueError, e)
      assert.matches("create_datagram_endpoint: a datagram socket was expected", tostring(e))
      e = err_of(l.create_unix_connection, l, factory, nil, { sock = tcp })
      assert_class(asyncio.ValueError, e)
      assert.matches("not AF_UNIX", tostring(e))
      e = err_of(l.create_unix_server, l, factory, nil, { sock = tcp })
      assert.matches("create_unix_server: .*not AF_UNIX", tostring(e))
      e = err_of(l.create_connection, l, factory, nil, nil, { sock = bad })
      assert_class(asyncio.OSError, e)
      assert.matches("create_connection: file descriptor " .. bad .. ": bad file descriptor", tostring(e))
      e = err_of(l.create_connection, l, factory, nil, nil, { sock = regular })
      assert_class(asyncio.OSError, e)
      assert.matches("file descriptor " .. regular .. ": socket operation on non%-socket", tostring(e))
      e = err_of(l.create_datagram_endpoint, l, factory, { sock = regular })
      assert.matches("create_datagram_endpoint: file descriptor " .. regular, tostring(e))
      e = err_of(l.connect_accepted_socket, l, factory, udp)
      assert.matches("connect_accepted_socket: a stream socket was expected", tostring(e))
      for _, v in ipairs { -1, 1 << 40, "5", 2.5, true } do
        assert.matches("bad argument #4 to 'create_connection' %(opts.sock",
          err_of(l.create_connection, l, factory, nil, nil, { sock = v }))
        assert.matches("bad argument #4 to 'start_server' %(opts.sock",
          err_of(asyncio.start_server, factory, nil, nil, { sock = v }))
        assert.matches("bad argument #2 to 'create_datagram_endpoint' %(opts.sock",
          err_of(l.create_datagram_endpoint, l, factory, { sock = v }))
        assert.matches("bad argument #2 to 'connect_accepted_socket'",
          err_of(l.connect_accepted_socket, l, factory, v))
      end
      e = err_of(l.create_connection, l, factory, "127.0.0.1", 80, { sock = a })
      assert_class(asyncio.ValueError, e)
      assert.matches("host/port and sock can not be specified at the same time", tostring(e))
      e = err_of(l.create_datagram_endpoint, l, factory, { sock = udp, local_addr = { "127.0.0.1", 0 } })
      assert_class(asyncio.ValueError, e)
      assert.matches("local_addr", tostring(e))
      -- every refused descriptor is still open and the caller's
      for _, fd in ipairs { udp, ls, a, b, tcp } do socket.close(fd) end
      f:close()
      os.remove(path)
    end)
  end)

  it("a descriptor a transport of the loop owns is refused, even while the transport is paused", function()
    run(function()
      local a, b = asyncio.socketpair()
      local tp = loop():create_connection(function() return {} end, nil, nil, { sock = a })
      tp:pause_reading()
      local e = err_of(loop().create_connection, loop(), function() return {} end, nil, nil, { sock = a })
      assert_class(asyncio.RuntimeError, e)
      e = err_of(loop().connect_accepted_socket, loop(), function() return {} end, a)
      assert_class(asyncio.RuntimeError, e)
      e = err_of(loop().sock_recv, loop(), a, 10)
      assert_class(asyncio.RuntimeError, e)
      tp:close()
      socket.close(b)
    end)
  end)

  it("create_datagram_endpoint over a connected UDP socket sends to its peer", function()
    run(function()
      local peer = socket.socket("inet", "dgram")
      socket.bind(peer, { "127.0.0.1", 0 })
      local fd = socket.socket("inet", "dgram")
      loop():sock_connect(fd, socket.getsockname(peer))
      local got = asyncio.Future()
      local tp = loop():create_datagram_endpoint(function()
        return { datagram_received = function(_, d, addr) got:set_result(d, addr) end }
      end, { sock = fd })
      assert.same(socket.getsockname(peer), tp:get_extra_info("peername"))
      tp:sendto("to the peer")
      local data, from = loop():sock_recvfrom(peer, 100)
      assert.equal("to the peer", data)
      loop():sock_sendto(peer, "reply", from)
      local d, addr = got:await()
      assert.equal("reply", d)
      assert.same(socket.getsockname(peer), addr)
      tp:close()
      socket.close(peer)
    end)
  end)

  it("create_datagram_endpoint over a bound UDP socket receives", function()
    run(function()
      local fd = socket.socket("inet", "dgram")
      socket.bind(fd, { "127.0.0.1", 0 })
      local addr = socket.getsockname(fd)
      local got = asyncio.Future()
      local tp = loop():create_datagram_endpoint(function()
        return { datagram_received = function(_, d) got:set_result(d) end }
      end, { sock = fd })
      assert.same(addr, tp:get_extra_info("sockname"))
      local other = socket.socket("inet", "dgram")
      loop():sock_sendto(other, "dgram", addr)
      assert.equal("dgram", got:await())
      tp:close()
      socket.close(other)
    end)
  end)

  it("a factory that fails closes the descriptor it was given", function()
    run(function()
      local a, b = asyncio.socketpair()
      local e = err_of(loop().create_connection, loop(), function() error("no protocol") end, nil, nil,
        { sock = a })
      assert.matches("no protocol", tostring(e))
      assert.equal("", loop():sock_recv(b, 10)) -- a was closed
      socket.close(b)
    end)
  end)
end)

describe("connect_accepted_socket", function()
  it("wraps a connection accepted with sock_accept", function()
    run(function()
      local c, s = tcp_pair()
      local p = proto_recorder()
      local tp, proto = loop():connect_accepted_socket(function() return p end, s)
      assert.equal(p, proto)
      assert.equal(tp, p.transport)
      loop():sock_sendall(c, "accepted elsewhere")
      helper.wait_until(function() return #p.data > 0 end, 5)
      assert.equal("accepted elsewhere", table.concat(p.data))
      socket.close(c)
      p.lost:await()
    end)
  end)

  it("with ssl: the server side of the handshake", function()
    run(function()
      local c, s = tcp_pair()
      local sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      sctx:load_cert_chain(certs.server_cert, certs.server_key)
      local cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
      cctx:load_verify_locations(certs.ca)
      local serving = asyncio.create_task(function()
        local p = proto_recorder()
        local tp = loop():connect_accepted_socket(function() return p end, s, { ssl = sctx })
        return tp, p
      end)
      local reader, writer = asyncio.open_connection(nil, nil,
        { sock = c, ssl = cctx, server_hostname = "localhost" })
      local tp, p = serving:await()
      assert.is_truthy(tp:get_extra_info("ssl_object"))
      writer:write("secret")
      helper.wait_until(function() return #p.data > 0 end, 5)
      assert.equal("secret", table.concat(p.data))
      tp:write("reply")
      assert.equal("reply", reader:read(5))
      writer:close()
      tp:close()
    end)
  end)
end)
