-- Sockets handed to the loop by descriptor number: the asyncio.socket
-- helpers and asyncio.socketpair, the low-level loop:sock_* calls (after
-- CPython's test_asyncio/test_sock_lowlevel.py), opts.sock for connections,
-- servers and datagram endpoints, and connect_accepted_socket. Loopback and
-- Unix sockets in a temp dir only.
local asyncio = require "asyncio"
local ssl = require "asyncio.ssl"
local helper = require "helper"

after_each(helper.close_loops)

local run, with_loop = helper.run, helper.with_loop
local err_of, assert_class = helper.err_of, helper.assert_class
local wait_for, tmpdir = helper.wait_until, helper.tmpdir
local recorder = helper.recorder
local S = asyncio.socket

local O_NONBLOCK, O_CLOEXEC = 2048, 524288 -- 04000, 02000000 (Linux)

local function loop()
  return asyncio.get_running_loop()
end

-- the open flags of fd, from /proc/self/fdinfo
local function fd_flags(fd)
  local f = assert(io.open("/proc/self/fdinfo/" .. fd))
  local text = f:read("a")
  f:close()
  return assert(tonumber(text:match("flags:%s*(%d+)"), 8))
end

local function is_nonblocking(fd) return fd_flags(fd) & O_NONBLOCK ~= 0 end
local function is_cloexec(fd) return fd_flags(fd) & O_CLOEXEC ~= 0 end

-- whether fd is an open descriptor (one that getsockname does not call EBADF)
local function is_open(fd)
  local ok, e = pcall(S.getsockname, fd)
  return ok or e.errno ~= "EBADF"
end

-- a listening TCP socket on 127.0.0.1; returns fd, {host, port}
local function listener(backlog)
  local fd = S.socket()
  S.bind(fd, { "127.0.0.1", 0 })
  S.listen(fd, backlog)
  return fd, S.getsockname(fd)
end

-- a connected pair over TCP loopback: client fd, server fd
local function tcp_pair()
  local l, addr = listener()
  local c = S.socket()
  loop():sock_connect(c, addr)
  local s = loop():sock_accept(l)
  S.close(l)
  return c, s
end

-- a port of 127.0.0.1 nothing listens on (was bound a moment ago)
local function refused_port()
  local fd = S.socket()
  S.bind(fd, { "127.0.0.1", 0 })
  local port = S.getsockname(fd)[2]
  S.close(fd)
  return port
end

-- a number that names no open descriptor: a socket's, just closed
local function closed_fd()
  local fd = S.socket()
  S.close(fd)
  return fd
end

-- a regular file opened with io.open and its descriptor number, found
-- through the links in /proc/<pid>/fd
local function regular_file(dir)
  local path = dir .. "/regular"
  local f = assert(io.open(path, "w+"))
  local fd
  local ls = assert(io.popen("ls -l /proc/" .. helper.pid() .. "/fd"))
  for line in ls:lines() do
    local n, target = line:match("(%d+) %-> (.*)$")
    if target == path then fd = tonumber(n) end
  end
  ls:close()
  return f, assert(fd, "fd of the regular file not found")
end

-- recv until EOF; returns everything
local function recv_all(fd, n)
  local parts = {}
  while true do
    local d = loop():sock_recv(fd, n or 65536)
    if d == "" then return table.concat(parts) end
    parts[#parts + 1] = d
  end
end

-- A tiny HTTP/1.0 responder (run_test_server's stand-in): reads the
-- request head, answers "200 OK" with a body and closes.
local BODY = ("lua-asyncio "):rep(100)
local function http(reader, writer)
  reader:readuntil("\r\n\r\n")
  writer:write("HTTP/1.0 200 OK\r\nContent-Length: " .. #BODY .. "\r\n\r\n" .. BODY)
  writer:drain()
  writer:close()
end

local echo = helper.stream_echo

-- Python's MyProto: INITIAL -> CONNECTED (sends a request) -> EOF -> CLOSED
local function my_proto()
  local p = { state = "INITIAL", nbytes = 0, done = loop():create_future(), errors = {} }
  local function expect(...)
    for _, s in ipairs { ... } do if p.state == s then return end end
    p.errors[#p.errors + 1] = "unexpected state " .. p.state
  end
  function p:connection_made(t)
    expect("INITIAL")
    self.state = "CONNECTED"
    self.transport = t
    t:write("GET / HTTP/1.0\r\nHost: example.com\r\n\r\n")
  end
  function p:data_received(d)
    expect("CONNECTED")
    self.nbytes = self.nbytes + #d
  end
  function p:eof_received()
    expect("CONNECTED")
    self.state = "EOF"
  end
  function p:connection_lost()
    expect("CONNECTED", "EOF")
    self.state = "CLOSED"
    self.done:set_result(true)
  end
  return p
end

-- Checks an argument error: a Lua error (not an error object) naming
-- function `name` (perhaps qualified by its module) and argument `argn`.
local function assert_argerror(name, argn, e)
  local msg = tostring(e)
  assert.is_string(e, msg)
  local n, fname = msg:match("bad argument #(%d+) to '([%w_.]*)'")
  assert.is_truthy(n, msg)
  assert.equal(argn, tonumber(n), msg)
  assert.is_true(fname == name or fname:sub(-#name - 1) == "." .. name, msg)
end

-- Checks an OSError of errno `errno` whose message names function `name`.
local function assert_oserror(errno, name, e)
  assert_class(asyncio.OSError, e)
  assert.equal(errno, e.errno)
  assert.is_truthy(tostring(e):find(name .. ":", 1, true), tostring(e))
end

---------------------------------------------------------------------------

describe("asyncio.socket", function()
  it("socket() makes non-blocking close-on-exec descriptors of each family and type", function()
    for _, kind in ipairs { { "inet", "stream" }, { "inet", "dgram" }, { "unix", "stream" },
                            { "unix", "dgram" } } do
      local fd = S.socket(kind[1], kind[2])
      assert.equal("integer", math.type(fd))
      assert.is_true(is_nonblocking(fd))
      assert.is_true(is_cloexec(fd))
      S.close(fd)
      assert.is_false(is_open(fd))
    end
    local fd = S.socket() -- inet stream by default
    S.bind(fd, { "127.0.0.1", 0 })
    local name = S.getsockname(fd)
    assert.equal("127.0.0.1", name[1])
    assert.is_true(name[2] > 0)
    S.close(fd)
  end)

  it("socketpair() gives two connected blocking close-on-exec Unix stream sockets", function()
    local a, b = asyncio.socketpair()
    assert.is_true(a ~= b)
    for _, fd in ipairs { a, b } do
      assert.is_false(is_nonblocking(fd))
      assert.is_true(is_cloexec(fd))
      assert.equal("", S.getpeername(fd)) -- an unnamed Unix peer
    end
    run(function()
      loop():sock_sendall(a, "ping")
      assert.equal("ping", loop():sock_recv(b, 100))
      loop():sock_sendall(b, "pong")
      assert.equal("pong", loop():sock_recv(a, 100))
      -- sock_* need no non-blocking descriptor and leave it as it was
      assert.is_false(is_nonblocking(a))
    end)
    S.close(a)
    S.close(b)
  end)

  it("socketpair('dgram') keeps message boundaries", function()
    local a, b = S.socketpair("dgram")
    run(function()
      loop():sock_sendall(a, "one")
      loop():sock_sendall(a, "two")
      local d, addr = loop():sock_recvfrom(b, 100)
      assert.equal("one", d)
      assert.is_nil(addr) -- no address at all, as Python's None
      assert.equal("two", loop():sock_recv(b, 100))
    end)
    S.close(a)
    S.close(b)
  end)

  it("bind, listen, getsockname, getpeername and shutdown over TCP", function()
    run(function()
      local l, laddr = listener(1)
      local c = S.socket()
      loop():sock_connect(c, laddr)
      local s, peer = loop():sock_accept(l)
      assert.same(S.getsockname(c), peer)
      assert.same(laddr, S.getpeername(c))
      assert.same(S.getsockname(s), S.getpeername(c))
      S.shutdown(c, "write")
      assert.equal("", loop():sock_recv(s, 10)) -- EOF, the other way still works
      loop():sock_sendall(s, "still")
      assert.equal("still", loop():sock_recv(c, 10))
      S.shutdown(s, "both")
      assert.equal("", loop():sock_recv(c, 10))
      for _, fd in ipairs { c, s, l } do S.close(fd) end
    end)
  end)

  it("getpeername of a socket that is not connected is ENOTCONN", function()
    local fd = S.socket()
    assert_oserror("ENOTCONN", "getpeername", err_of(S.getpeername, fd))
    S.close(fd)
  end)

  it("binds a Unix socket to a path; bind to a busy address is EADDRINUSE", function()
    local dir = tmpdir()
    local path = dir .. "/s.sock"
    local fd = S.socket("unix")
    S.bind(fd, path)
    assert.equal(path, S.getsockname(fd))
    local other = S.socket("unix")
    assert_oserror("EADDRINUSE", "bind", err_of(S.bind, other, path))
    S.close(fd)
    S.close(other)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("functions on a closed descriptor raise OSError EBADF naming themselves", function()
    local fd = closed_fd()
    assert_oserror("EBADF", "close", err_of(S.close, fd))
    assert_oserror("EBADF", "bind", err_of(S.bind, fd, { "127.0.0.1", 0 }))
    assert_oserror("EBADF", "listen", err_of(S.listen, fd))
    assert_oserror("EBADF", "getsockname", err_of(S.getsockname, fd))
    assert_oserror("EBADF", "getpeername", err_of(S.getpeername, fd))
    assert_oserror("EBADF", "shutdown", err_of(S.shutdown, fd, "both"))
  end)

  it("functions on a regular file raise OSError ENOTSOCK", function()
    local dir = tmpdir()
    local f, fd = regular_file(dir)
    local e = err_of(S.getsockname, fd)
    assert_oserror("ENOTSOCK", "getsockname", e)
    assert.matches("socket operation on non%-socket", tostring(e))
    assert_oserror("ENOTSOCK", "listen", err_of(S.listen, fd))
    assert_oserror("ENOTSOCK", "shutdown", err_of(S.shutdown, fd, "read"))
    f:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("raise Lua argument errors naming the function for bad arguments", function()
    local a, b = asyncio.socketpair()
    local cases = {
      { "socket", 1, function() S.socket("bogus") end },
      { "socket", 2, function() S.socket("inet", "raw") end },
      { "socketpair", 1, function() S.socketpair("seqpacket") end },
      { "close", 1, function() S.close(-1) end },
      { "close", 1, function() S.close(1 << 40) end },
      { "close", 1, function() S.close("x") end },
      { "close", 1, function() S.close(2.5) end },
      { "bind", 1, function() S.bind(-1, { "127.0.0.1", 0 }) end },
      { "bind", 1, function() S.bind(nil, { "127.0.0.1", 0 }) end },
      { "bind", 2, function() S.bind(a, 42) end },
      { "bind", 2, function() S.bind(a, { "127.0.0.1", 70000 }) end },
      { "bind", 2, function() S.bind(a, { "localhost", 0 }) end }, -- numeric hosts only
      { "bind", 2, function() S.bind(a, ("x"):rep(200)) end },     -- too long a path
      { "listen", 1, function() S.listen(1 << 40) end },
      { "listen", 2, function() S.listen(a, "many") end },
      { "getsockname", 1, function() S.getsockname({}) end },
      { "getpeername", 1, function() S.getpeername(-5) end },
      { "shutdown", 1, function() S.shutdown(-5, "read") end },
      { "shutdown", 2, function() S.shutdown(a, "sideways") end },
      { "shutdown", 2, function() S.shutdown(a) end },
    }
    for _, c in ipairs(cases) do
      assert_argerror(c[1], c[2], err_of(c[3]))
    end
    -- nothing happened to the descriptors passed
    assert.is_true(is_open(a) and is_open(b))
    S.close(a)
    S.close(b)
  end)
end)

---------------------------------------------------------------------------

describe("loop:sock_*", function()
  -- test_sock_client_ops: connect, send a request, read the answer to EOF
  local function client_ops(server, fd, addr)
    local l = loop()
    assert.is_nil(l:sock_connect(fd, addr))
    assert.is_nil(l:sock_sendall(fd, "GET / HTTP/1.0\r\n\r\n"))
    local data = recv_all(fd, 1024)
    assert.equal("HTTP/1.0 200 OK\r\n", data:sub(1, 17))
    assert.equal(BODY, data:sub(-#BODY))
    assert.equal("", l:sock_recv(fd, 1024)) -- EOF stays EOF
    S.close(fd)
    server:close()
    server:wait_closed()
  end

  it("client ops over TCP: sock_connect, sock_sendall, sock_recv to EOF", function()
    run(function()
      local server = asyncio.start_server(http, "127.0.0.1", 0)
      client_ops(server, S.socket(), server.sockets[1]:getsockname())
    end)
  end)

  it("client ops over a Unix socket", function()
    local dir = tmpdir()
    run(function()
      local path = dir .. "/http.sock"
      local server = asyncio.start_unix_server(http, path)
      client_ops(server, S.socket("unix"), path)
    end)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("client ops over IPv6 ::1", function()
    run(function()
      local ok, server = pcall(asyncio.start_server, http, "::1", 0)
      if not ok then
        assert_class(asyncio.OSError, server)
        pending("IPv6 loopback unavailable: " .. tostring(server))
        return
      end
      client_ops(server, S.socket("inet6"), server.sockets[1]:getsockname())
    end)
  end)

  it("sock_connect resolves a host name for the socket's family", function()
    run(function()
      local server = asyncio.start_server(http, "127.0.0.1", 0)
      client_ops(server, S.socket(), { "localhost", server.sockets[1]:getsockname()[2] })
    end)
  end)

  it("sock_connect to a port nobody listens on raises ConnectionRefusedError", function()
    run(function()
      local fd = S.socket()
      local e = err_of(loop().sock_connect, loop(), fd, { "127.0.0.1", refused_port() })
      assert_class(asyncio.ConnectionRefusedError, e)
      assert.equal("ECONNREFUSED", e.errno)
      assert.matches("sock_connect", tostring(e))
      S.close(fd)
    end)
  end)

  it("sock_accept gives a non-blocking close-on-exec fd and the client's address", function()
    run(function()
      local l, laddr = listener(1)
      local c = S.socket()
      local accepting = loop():create_task(function() return table.pack(loop():sock_accept(l)) end)
      loop():sock_connect(c, laddr)
      local res = accepting:await()
      local conn, addr = res[1], res[2]
      assert.equal("integer", math.type(conn))
      assert.is_true(is_nonblocking(conn))
      assert.is_true(is_cloexec(conn))
      assert.same(S.getsockname(c), addr)
      assert.same(laddr, S.getpeername(c))
      for _, fd in ipairs { c, conn, l } do S.close(fd) end
    end)
  end)

  it("sock_accept of a Unix socket reports an unnamed client as ''", function()
    local dir = tmpdir()
    run(function()
      local path = dir .. "/l.sock"
      local l = S.socket("unix")
      S.bind(l, path)
      S.listen(l)
      local c = S.socket("unix")
      loop():sock_connect(c, path)
      local conn, addr = loop():sock_accept(l)
      assert.equal("", addr)
      assert.equal(path, S.getpeername(c))
      loop():sock_sendall(c, "via unix")
      assert.equal("via unix", loop():sock_recv(conn, 100))
      for _, fd in ipairs { c, conn, l } do S.close(fd) end
    end)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  -- test_huge_content: a big sendall against an echo server, read back with
  -- one recv size, checked byte for byte
  local DATA_SIZE = 1000000
  local CHUNK = ("0123456789"):rep(DATA_SIZE // 10)

  local function huge_content(recv_size)
    run(function()
      local server = asyncio.start_server(echo, "127.0.0.1", 0)
      local fd = S.socket()
      loop():sock_connect(fd, server.sockets[1]:getsockname())
      local sending = loop():create_task(function()
        loop():sock_sendall(fd, CHUNK)
        S.shutdown(fd, "write")
      end)
      local parts, got = {}, 0
      while true do
        local d = loop():sock_recv(fd, recv_size)
        if d == "" then break end
        assert.is_true(#d <= recv_size)
        -- each piece is the pattern from where the last one stopped
        assert.is_true(d == CHUNK:sub(got + 1, got + #d), "wrong bytes at offset " .. got)
        got = got + #d
        parts[#parts + 1] = d
      end
      sending:await()
      assert.equal(DATA_SIZE, got)
      assert.is_true(table.concat(parts) == CHUNK)
      S.close(fd)
      server:close()
      server:wait_closed()
    end)
  end

  it("huge content: 1 MB through an echo server, recv of the whole size", function()
    huge_content(DATA_SIZE) -- more than the loop's receive buffer: a buffer of its own
  end)

  it("huge content: 1 MB through an echo server, recv of small chunks", function()
    huge_content(1000)
  end)

  it("sock_sendall of 4 MB waits for a slow reader and delivers every byte in order", function()
    local a, b = asyncio.socketpair()
    run(function()
      local size = 4 * 1024 * 1024
      local data = ("abcdefghijklmnopqrstuvwxyz012345"):rep(size // 32)
      local sending = loop():create_task(function() return loop():sock_sendall(a, data) end)
      helper.sleep0(3)
      -- a socket buffer holds far less than 4 MB: the sender waits for the reader
      assert.is_false(sending:done())
      local parts, got = {}, 0
      while got < size do
        local d = loop():sock_recv(b, 8192)
        assert.is_true(#d > 0)
        parts[#parts + 1] = d
        got = got + #d
        if #parts % 16 == 0 then asyncio.sleep(0.001) end -- slow
      end
      assert.is_nil(sending:await())
      assert.equal(size, got)
      assert.is_true(table.concat(parts) == data)
    end)
    S.close(a)
    S.close(b)
  end)

  it("a cancelled sock_recv leaves the fd usable; the next recv gets the data", function()
    local a, b = asyncio.socketpair()
    run(function()
      -- test_sock_client_racing's _basetest_sock_recv_racing
      local receiving = loop():create_task(function() return loop():sock_recv(a, 1024) end)
      asyncio.sleep(0)
      receiving:cancel()
      helper.await_cancelled(receiving)
      local sending = loop():create_task(function() loop():sock_sendall(b, "after cancel") end)
      assert.equal("after cancel", loop():sock_recv(a, 1024))
      sending:await()
      -- the watcher let go of the fd: a reader callback can have it now
      local fut = loop():create_future()
      loop():add_reader(a, function()
        loop():remove_reader(a)
        fut:set_result(true)
      end)
      loop():sock_sendall(b, "x")
      assert.is_true(fut:await())
      assert.equal("x", loop():sock_recv(a, 10))
    end)
    S.close(a)
    S.close(b)
  end)

  it("a sock_recv cancelled as its data arrives reads nothing: the next recv gets it all", function()
    local a, b = asyncio.socketpair()
    run(function()
      local tp = loop():create_connection(recorder, nil, nil, { sock = b })
      local receiving = loop():create_task(function() return loop():sock_recv(a, 1024) end)
      asyncio.sleep(0)
      tp:write("in flight") -- a transport writes at once, without yielding
      receiving:cancel()
      helper.await_cancelled(receiving)
      assert.equal("in flight", loop():sock_recv(a, 1024))
      tp:close()
      tp:get_protocol().lost_fut:await()
    end)
    S.close(a)
  end)

  it("a cancelled sock_recv by a timeout: TimeoutError, then the fd works", function()
    local a, b = asyncio.socketpair()
    run(function()
      local e = err_of(asyncio.wait_for, function() return loop():sock_recv(a, 10) end, 0.05)
      assert_class(asyncio.TimeoutError, e)
      loop():sock_sendall(b, "late")
      assert.equal("late", loop():sock_recv(a, 10))
    end)
    S.close(a)
    S.close(b)
  end)

  it("a cancelled sock_sendall on a full buffer: the next sendall goes through", function()
    local a, b = asyncio.socketpair()
    run(function()
      -- fill a's buffer: a sendall that cannot finish, cancelled once parked
      local filling = loop():create_task(function()
        loop():sock_sendall(a, (" "):rep(8 * 1024 * 1024))
      end)
      helper.sleep0(3)
      assert.is_false(filling:done())
      filling:cancel()
      helper.await_cancelled(filling)
      -- _basetest_sock_send_racing: a blocked sendall cancelled
      local hello = loop():create_task(function() loop():sock_sendall(a, "hello") end)
      asyncio.sleep(0)
      assert.is_false(hello:done())
      hello:cancel()
      helper.await_cancelled(hello)
      -- everything that is not a space, until EOF
      local reading = loop():create_task(function()
        local parts = {}
        while true do
          local d = loop():sock_recv(b, 65536)
          if d == "" then return table.concat(parts) end
          parts[#parts + 1] = (d:gsub(" ", ""))
        end
      end)
      loop():sock_sendall(a, "world")
      S.shutdown(a, "write")
      local got = reading:await()
      -- what of "hello" went out before the cancel went out; "world" is whole
      assert.equal("world", got:sub(-5))
      assert.equal(("hello"):sub(1, #got - 5), got:sub(1, -6))
    end)
    S.close(a)
    S.close(b)
  end)

  it("a cancelled sock_accept leaves the listener usable", function()
    run(function()
      local l, addr = listener(1)
      -- test_cancel_sock_accept
      local e = err_of(asyncio.wait_for, function() return loop():sock_accept(l) end, 0.05)
      assert_class(asyncio.TimeoutError, e)
      local c = S.socket()
      loop():sock_connect(c, addr)
      local conn, peer = loop():sock_accept(l)
      assert.same(S.getsockname(c), peer)
      S.close(conn)
      S.close(c)
      -- once the listener is closed, nothing is there to connect to
      S.close(l)
      local c2 = S.socket()
      assert_class(asyncio.ConnectionRefusedError, err_of(loop().sock_connect, loop(), c2, addr))
      S.close(c2)
    end)
  end)

  it("sock_sendto and sock_recvfrom with a UDP echo server", function()
    run(function()
      local echo_tp = loop():create_datagram_endpoint(function()
        return { datagram_received = function(self, d, from) self.transport:sendto(d, from) end,
                 connection_made = function(self, t) self.transport = t end }
      end, { local_addr = { "127.0.0.1", 0 } })
      local server_addr = echo_tp:get_extra_info("sockname")
      local fd = S.socket("inet", "dgram")
      local data = ("\1"):rep(4096)
      assert.equal(4096, loop():sock_sendto(fd, data, server_addr))
      local got, from = loop():sock_recvfrom(fd, 4096)
      assert.is_true(got == data)
      assert.same(server_addr, from)
      -- a datagram bigger than n is cut to n
      loop():sock_sendto(fd, "0123456789", server_addr)
      got, from = loop():sock_recvfrom(fd, 4)
      assert.equal("0123", got)
      assert.same(server_addr, from)
      -- an empty datagram is one too
      assert.equal(0, loop():sock_sendto(fd, "", server_addr))
      assert.equal("", (loop():sock_recvfrom(fd, 100)))
      S.close(fd)
      echo_tp:close()
    end)
  end)

  it("sock_recvfrom waits for a datagram, from a task of its own", function()
    run(function()
      local a, b = S.socket("inet", "dgram"), S.socket("inet", "dgram")
      S.bind(a, { "127.0.0.1", 0 })
      S.bind(b, { "127.0.0.1", 0 })
      local receiving = loop():create_task(function() return table.pack(loop():sock_recvfrom(a, 100)) end)
      helper.sleep0(2)
      assert.is_false(receiving:done())
      loop():sock_sendto(b, "late datagram", S.getsockname(a))
      local res = receiving:await()
      assert.equal("late datagram", res[1])
      assert.same(S.getsockname(b), res[2])
      -- a cancelled one loses no datagram
      receiving = loop():create_task(function() return loop():sock_recvfrom(a, 100) end)
      asyncio.sleep(0)
      receiving:cancel()
      helper.await_cancelled(receiving)
      loop():sock_sendto(b, "kept", S.getsockname(a))
      assert.equal("kept", (loop():sock_recvfrom(a, 100)))
      S.close(a)
      S.close(b)
    end)
  end)

  it("two tasks receiving on one fd at once: the second raises RuntimeError", function()
    local a, b = asyncio.socketpair()
    run(function()
      local first = loop():create_task(function() return loop():sock_recv(a, 10) end)
      asyncio.sleep(0)
      local e = err_of(loop().sock_recv, loop(), a, 10)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("sock_recv", tostring(e))
      assert_class(asyncio.RuntimeError, err_of(loop().sock_recvfrom, loop(), a, 10))
      -- the first one is unharmed
      loop():sock_sendall(b, "first")
      assert.equal("first", first:await())
    end)
    S.close(a)
    S.close(b)
  end)

  it("two tasks sending on one full fd at once: the second raises RuntimeError", function()
    local a, b = asyncio.socketpair()
    run(function()
      local size = 8 * 1024 * 1024
      local first = loop():create_task(function() loop():sock_sendall(a, ("y"):rep(size)) end)
      helper.sleep0(3)
      assert.is_false(first:done())
      local e = err_of(loop().sock_sendall, loop(), a, "second")
      assert_class(asyncio.RuntimeError, e)
      assert.matches("sock_sendall", tostring(e))
      local n = 0
      while n < size do n = n + #loop():sock_recv(b, 65536) end
      assert.equal(size, n)
      first:await()
    end)
    S.close(a)
    S.close(b)
  end)

  it("add_reader on an fd a task waits on in sock_recv raises RuntimeError, and vice versa", function()
    local a, b = asyncio.socketpair()
    run(function()
      local l = loop()
      local receiving = l:create_task(function() return l:sock_recv(a, 10) end)
      asyncio.sleep(0)
      local e = err_of(l.add_reader, l, a, function() end)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("add_reader", tostring(e))
      -- the other direction is free
      l:add_writer(a, function() end)
      assert.is_true(l:remove_writer(a))
      l:sock_sendall(b, "r")
      assert.equal("r", receiving:await())
      -- a reader callback keeps sock_recv and sock_accept out
      l:add_reader(a, function() end)
      e = err_of(l.sock_recv, l, a, 10)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("sock_recv", tostring(e))
      assert_class(asyncio.RuntimeError, err_of(l.sock_recvfrom, l, a, 10))
      assert.is_true(l:remove_reader(a))
      -- and a writer callback keeps a blocked sock_sendall out
      l:add_writer(a, function() end)
      local filling = l:create_task(function() l:sock_sendall(a, ("z"):rep(8 * 1024 * 1024)) end)
      e = err_of(filling.await, filling)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("sock_sendall", tostring(e))
      assert.is_true(l:remove_writer(a))
    end)
    S.close(a)
    S.close(b)
  end)

  it("sock_* on the fd of a transport raise RuntimeError, also while it is paused", function()
    local a, b = asyncio.socketpair()
    run(function()
      local l = loop()
      local tp, p = l:create_connection(recorder, nil, nil, { sock = a })
      assert_class(asyncio.RuntimeError, err_of(l.sock_recv, l, a, 10))
      tp:pause_reading()
      local e = err_of(l.sock_recv, l, a, 10)
      assert_class(asyncio.RuntimeError, e)
      assert.matches("transport", tostring(e))
      assert_class(asyncio.RuntimeError, err_of(l.add_reader, l, a, function() end))
      -- the transport still has its data
      l:sock_sendall(b, "for the transport")
      tp:resume_reading()
      wait_for(function() return p:text() == "for the transport" end)
      tp:close()
      p.lost_fut:await()
    end)
    S.close(b)
  end)

  it("must be called from a task", function()
    with_loop(function(l)
      local a, b = asyncio.socketpair()
      for _, call in ipairs {
        function() return l:sock_recv(a, 10) end,
        function() return l:sock_sendall(a, "x") end,
        function() return l:sock_accept(a) end,
      } do
        local e = err_of(call)
        assert_class(asyncio.RuntimeError, e)
        assert.matches("outside a task", tostring(e))
      end
      S.close(a)
      S.close(b)
    end)
  end)

  it("a sock_recv parked when the loop closes crashes nothing and leaves the fd open", function()
    local a, b = asyncio.socketpair()
    local parked
    helper.capture_log(function()
      with_loop(function(l)
        parked = l:create_task(function() return l:sock_recv(a, 10) end)
        l:run_until_complete(function() helper.sleep0(3) end)
        assert.is_false(parked:done())
        l:close()
      end)
      helper.gc()
    end)
    assert.is_true(is_open(a))
    -- a new loop can use the fd
    run(function()
      loop():sock_sendall(b, "next loop")
      assert.equal("next loop", loop():sock_recv(a, 100))
    end)
    helper.capture_log(function()
      parked = nil
      helper.gc()
    end)
    S.close(a)
    S.close(b)
  end)

  it("on a closed fd raise OSError EBADF naming themselves", function()
    run(function()
      local l = loop()
      local fd = closed_fd()
      assert_oserror("EBADF", "sock_recv", err_of(l.sock_recv, l, fd, 10))
      assert_oserror("EBADF", "sock_recvfrom", err_of(l.sock_recvfrom, l, fd, 10))
      assert_oserror("EBADF", "sock_sendall", err_of(l.sock_sendall, l, fd, "x"))
      assert_oserror("EBADF", "sock_sendto", err_of(l.sock_sendto, l, fd, "x", { "127.0.0.1", 9 }))
      assert_oserror("EBADF", "sock_accept", err_of(l.sock_accept, l, fd))
      assert_oserror("EBADF", "sock_connect", err_of(l.sock_connect, l, fd, { "127.0.0.1", 9 }))
    end)
  end)

  it("on a regular file raise OSError ENOTSOCK", function()
    local dir = tmpdir()
    local f, fd = regular_file(dir)
    run(function()
      local l = loop()
      for _, c in ipairs {
        { "sock_recv", function() return l:sock_recv(fd, 10) end },
        { "sock_recvfrom", function() return l:sock_recvfrom(fd, 10) end },
        { "sock_sendall", function() return l:sock_sendall(fd, "x") end },
        { "sock_sendto", function() return l:sock_sendto(fd, "x", { "127.0.0.1", 9 }) end },
        { "sock_accept", function() return l:sock_accept(fd) end },
        { "sock_connect", function() return l:sock_connect(fd, { "127.0.0.1", 9 }) end },
      } do
        local e = err_of(c[2])
        assert_oserror("ENOTSOCK", c[1], e)
        assert.matches("socket operation on non%-socket", tostring(e))
      end
    end)
    f:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("on the wrong kind of socket raise the system's OSError", function()
    run(function()
      local l = loop()
      local u = S.socket("inet", "dgram")
      assert_oserror("ENOTSUP", "sock_accept", err_of(l.sock_accept, l, u))
      local c = S.socket()
      -- not connected: recv has nothing to wait for
      assert_oserror("ENOTCONN", "sock_recv", err_of(l.sock_recv, l, c, 10))
      S.close(u)
      S.close(c)
    end)
  end)

  it("raise Lua argument errors naming the function for bad arguments", function()
    run(function()
      local l = loop()
      local a, b = asyncio.socketpair()
      local cases = {
        { "sock_recv", 1, function() l:sock_recv(-1, 10) end },
        { "sock_recv", 1, function() l:sock_recv(1 << 40, 10) end },
        { "sock_recv", 1, function() l:sock_recv("x", 10) end },
        { "sock_recv", 1, function() l:sock_recv(1.5, 10) end },
        { "sock_recv", 2, function() l:sock_recv(a, -1) end },
        { "sock_recv", 2, function() l:sock_recv(a) end },
        { "sock_recvfrom", 1, function() l:sock_recvfrom(-1, 10) end },
        { "sock_recvfrom", 1, function() l:sock_recvfrom(nil, 10) end },
        { "sock_recvfrom", 2, function() l:sock_recvfrom(a, "ten") end },
        { "sock_sendall", 1, function() l:sock_sendall(1 << 40, "x") end },
        { "sock_sendall", 1, function() l:sock_sendall({}, "x") end },
        { "sock_sendall", 2, function() l:sock_sendall(a, nil) end },
        { "sock_sendto", 1, function() l:sock_sendto(-2, "x", { "127.0.0.1", 9 }) end },
        { "sock_sendto", 2, function() l:sock_sendto(a, {}, { "127.0.0.1", 9 }) end },
        { "sock_sendto", 3, function() l:sock_sendto(a, "x") end },
        { "sock_sendto", 3, function() l:sock_sendto(a, "x", { "localhost", 9 }) end },
        { "sock_sendto", 3, function() l:sock_sendto(a, "x", { "127.0.0.1", 1 << 20 }) end },
        { "sock_accept", 1, function() l:sock_accept(-1) end },
        { "sock_accept", 1, function() l:sock_accept(1 << 40) end },
        { "sock_accept", 1, function() l:sock_accept(true) end },
        { "sock_connect", 1, function() l:sock_connect(-1, { "127.0.0.1", 9 }) end },
        { "sock_connect", 1, function() l:sock_connect(1 << 40, { "127.0.0.1", 9 }) end },
        { "sock_connect", 1, function() l:sock_connect(-1, { "localhost", 9 }) end },
        { "sock_connect", 1, function() l:sock_connect("x", { "localhost", 9 }) end },
        { "sock_connect", 1, function() l:sock_connect(2.5, "/tmp/x.sock") end },
        { "sock_connect", 2, function() l:sock_connect(a, 42) end },
        { "sock_connect", 2, function() l:sock_connect(a, { "127.0.0.1", 70000 }) end },
        { "sock_connect", 2, function() l:sock_connect(a, { "127.0.0.1" }) end },
        { "sock_connect", 2, function() l:sock_connect(a, { 127, 9 }) end },
      }
      for _, c in ipairs(cases) do
        assert_argerror(c[1], c[2], err_of(c[3]))
      end
      -- nothing was left waiting on the descriptors
      loop():sock_sendall(b, "ok")
      assert.equal("ok", loop():sock_recv(a, 10))
      S.close(a)
      S.close(b)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("opts.sock", function()
  it("create_connection over a connected socket (test_create_connection_sock)", function()
    run(function()
      local server = asyncio.start_server(http, "127.0.0.1", 0)
      local fd = S.socket()
      loop():sock_connect(fd, server.sockets[1]:getsockname())
      local tp, p = loop():create_connection(my_proto, nil, nil, { sock = fd })
      assert.equal(p, tp:get_protocol())
      assert.equal(fd, tp:get_extra_info("socket"))
      assert.same(server.sockets[1]:getsockname(), tp:get_extra_info("peername"))
      p.done:await()
      assert.is_true(p.nbytes > 0)
      assert.same({}, p.errors)
      assert.equal("CLOSED", p.state)
      tp:close()
      -- the transport owned the fd: it is closed with it
      assert.is_false(is_open(fd))
      server:close()
      server:wait_closed()
    end)
  end)

  it("create_connection over a socketpair end gives a Unix stream transport", function()
    local a, b = asyncio.socketpair()
    run(function()
      local tp, p = loop():create_connection(recorder, nil, nil, { sock = a })
      tp:write("to b")
      assert.equal("to b", loop():sock_recv(b, 100))
      loop():sock_sendall(b, "to a")
      wait_for(function() return p:text() == "to a" end)
      S.close(b)
      p.lost_fut:await()
      assert.same({ "made", "eof", "lost" }, p.events)
      assert.is_false(is_open(a))
    end)
  end)

  it("open_connection and open_unix_connection over sockets", function()
    local a, b = asyncio.socketpair()
    run(function()
      local c, s = tcp_pair()
      local reader, writer = asyncio.open_connection(nil, nil, { sock = c })
      writer:write("abc")
      writer:drain()
      assert.equal("abc", loop():sock_recv(s, 10))
      loop():sock_sendall(s, "def")
      assert.equal("def", reader:readexactly(3))
      writer:close()
      writer:wait_closed()
      assert.is_false(is_open(c))
      assert.equal("", loop():sock_recv(s, 10))
      S.close(s)

      local ureader, uwriter = asyncio.open_unix_connection(nil, { sock = a })
      loop():sock_sendall(b, "line\n")
      assert.equal("line\n", ureader:readline())
      uwriter:write("back")
      uwriter:write_eof()
      assert.equal("back", recv_all(b))
      uwriter:close()
      uwriter:wait_closed()
      assert.is_false(is_open(a))
    end)
    S.close(b)
  end)

  it("create_unix_connection over a connected Unix socket", function()
    local dir = tmpdir()
    run(function()
      local path = dir .. "/echo.sock"
      local server = asyncio.start_unix_server(echo, path)
      local fd = S.socket("unix")
      loop():sock_connect(fd, path)
      local tp, p = loop():create_unix_connection(recorder, nil, { sock = fd })
      assert.equal(path, tp:get_extra_info("peername"))
      tp:write("echo me")
      wait_for(function() return p:text() == "echo me" end)
      tp:close()
      p.lost_fut:await()
      server:close()
      server:wait_closed()
    end)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("create_server on a listening socket handed over (as systemd does)", function()
    run(function()
      local l, addr = listener()
      local server = loop():create_server(function()
        return recorder { data = function(self, d) self.transport:write(d:upper()) end }
      end, nil, nil, { sock = l })
      assert.is_true(server:is_serving())
      assert.equal(1, #server.sockets)
      assert.same(addr, server.sockets[1]:getsockname())
      assert.equal(l, server.sockets[1]:fileno())
      for i = 1, 3 do
        local tp, p = loop():create_connection(recorder, addr[1], addr[2])
        tp:write("client " .. i)
        wait_for(function() return p:text() == "CLIENT " .. i end)
        tp:close()
      end
      server:close()
      server:wait_closed()
      assert.is_false(is_open(l)) -- the server owned it
    end)
  end)

  it("create_server listens on a socket that is only bound", function()
    run(function()
      local fd = S.socket()
      S.bind(fd, { "127.0.0.1", 0 })
      local addr = S.getsockname(fd)
      local server = loop():create_server(recorder, nil, nil, { sock = fd, backlog = 5 })
      local c = S.socket()
      loop():sock_connect(c, addr)
      assert.same(addr, S.getpeername(c))
      S.close(c)
      server:close()
      server:wait_closed()
    end)
  end)

  it("start_server on a listening socket, start_serving = false until asked", function()
    run(function()
      local l, addr = listener()
      local server = asyncio.start_server(echo, nil, nil, { sock = l, start_serving = false })
      assert.is_false(server:is_serving())
      server:start_serving()
      local reader, writer = asyncio.open_connection(addr[1], addr[2])
      writer:write("ping")
      writer:write_eof()
      assert.equal("ping", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("create_unix_server and start_unix_server on a bound Unix socket; its file stays", function()
    local dir = tmpdir()
    run(function()
      for i, start in ipairs {
        function(fd)
          return loop():create_unix_server(function()
            return recorder { data = function(self, d) self.transport:write(d) end }
          end, nil, { sock = fd })
        end,
        function(fd) return asyncio.start_unix_server(echo, nil, { sock = fd }) end,
      } do
        local path = dir .. "/srv" .. i .. ".sock"
        local fd = S.socket("unix")
        S.bind(fd, path)
        S.listen(fd)
        local server = start(fd)
        assert.equal(path, server.sockets[1]:getsockname())
        local reader, writer = asyncio.open_unix_connection(path)
        writer:write("unix " .. i)
        writer:write_eof()
        assert.equal("unix " .. i, reader:read())
        writer:close()
        server:close()
        server:wait_closed()
        assert.is_false(is_open(fd))
        -- whoever bound the socket removes its file
        assert.is_true(os.execute("test -S '" .. path .. "'"))
      end
    end)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("create_datagram_endpoint over a connected UDP socket sends to the peer without an address", function()
    run(function()
      local peer = S.socket("inet", "dgram")
      S.bind(peer, { "127.0.0.1", 0 })
      local peer_addr = S.getsockname(peer)
      local fd = S.socket("inet", "dgram")
      S.bind(fd, { "127.0.0.1", 0 })
      loop():sock_connect(fd, peer_addr)
      local got = loop():create_future()
      local tp, p = loop():create_datagram_endpoint(function()
        return { datagram_received = function(_, d, from) got:set_result(d, from) end }
      end, { sock = fd })
      assert.equal(p, tp:get_protocol())
      assert.same(peer_addr, tp:get_extra_info("peername"))
      assert.same(S.getsockname(fd), tp:get_extra_info("sockname"))
      tp:sendto("to the peer")
      local d, from = loop():sock_recvfrom(peer, 100)
      assert.equal("to the peer", d)
      assert.same(S.getsockname(fd), from)
      loop():sock_sendto(peer, "back", S.getsockname(fd))
      local back, back_from = got:await()
      assert.equal("back", back)
      assert.same(peer_addr, back_from)
      tp:close()
      helper.sleep0(2)
      assert.is_false(is_open(fd))
      S.close(peer)
    end)
  end)

  it("create_datagram_endpoint over an unconnected UDP socket sends to given addresses", function()
    run(function()
      local fd = S.socket("inet", "dgram")
      S.bind(fd, { "127.0.0.1", 0 })
      local other = S.socket("inet", "dgram")
      S.bind(other, { "127.0.0.1", 0 })
      local tp = loop():create_datagram_endpoint(function() return {} end, { sock = fd })
      assert.is_nil(tp:get_extra_info("peername"))
      tp:sendto("addressed", S.getsockname(other))
      local d, from = loop():sock_recvfrom(other, 100)
      assert.equal("addressed", d)
      assert.same(S.getsockname(fd), from)
      tp:close()
      S.close(other)
    end)
  end)

  it("refuses host/port, a path or socket options together with sock (ValueError)", function()
    run(function()
      local l = loop()
      local a, b = asyncio.socketpair()
      local u = S.socket("inet", "dgram")
      local f = function() return {} end
      for _, call in ipairs {
        function() l:create_connection(f, "127.0.0.1", 80, { sock = a }) end,
        function() l:create_connection(f, nil, 80, { sock = a }) end,
        function() l:create_server(f, "127.0.0.1", nil, { sock = a }) end,
        function() asyncio.open_connection("127.0.0.1", 80, { sock = a }) end,
        function() asyncio.start_server(f, nil, 0, { sock = a }) end,
        function() l:create_unix_connection(f, "/x.sock", { sock = a }) end,
        function() l:create_unix_server(f, "/x.sock", { sock = a }) end,
        function() asyncio.open_unix_connection("/x.sock", { sock = a }) end,
        function() asyncio.start_unix_server(f, "/x.sock", { sock = a }) end,
        function() l:create_datagram_endpoint(f, { sock = u, local_addr = { "127.0.0.1", 0 } }) end,
        function() l:create_datagram_endpoint(f, { sock = u, remote_addr = { "127.0.0.1", 9 } }) end,
        function() l:create_datagram_endpoint(f, { sock = u, family = "inet" }) end,
      } do
        assert_class(asyncio.ValueError, err_of(call))
      end
      -- the descriptors are still the caller's
      assert.is_true(is_open(a) and is_open(u))
      for _, fd in ipairs { a, b, u } do S.close(fd) end
    end)
  end)

  it("refuses a socket of the wrong kind with a ValueError naming the function", function()
    run(function()
      local l = loop()
      local f = function() return {} end
      local a, b = asyncio.socketpair()
      local u = S.socket("inet", "dgram")
      local ud = S.socket("unix", "dgram")
      local lis = listener()
      local tcp = S.socket()
      local cases = {
        { "create_connection", function() l:create_connection(f, nil, nil, { sock = u }) end },
        { "create_connection", function() l:create_connection(f, nil, nil, { sock = lis }) end },
        { "open_connection", function() asyncio.open_connection(nil, nil, { sock = lis }) end },
        { "create_server", function() l:create_server(f, nil, nil, { sock = u }) end },
        { "start_server", function() asyncio.start_server(f, nil, nil, { sock = ud }) end },
        { "create_datagram_endpoint", function() l:create_datagram_endpoint(f, { sock = a }) end },
        { "create_datagram_endpoint", function() l:create_datagram_endpoint(f, { sock = lis }) end },
        { "create_datagram_endpoint", function() l:create_datagram_endpoint(f, { sock = ud }) end },
        { "create_unix_connection", function() l:create_unix_connection(f, nil, { sock = tcp }) end },
        { "open_unix_connection", function() asyncio.open_unix_connection(nil, { sock = u }) end },
        { "create_unix_server", function() l:create_unix_server(f, nil, { sock = lis }) end },
        { "start_unix_server", function() asyncio.start_unix_server(f, nil, { sock = tcp }) end },
        { "connect_accepted_socket", function() l:connect_accepted_socket(f, lis) end },
        { "connect_accepted_socket", function() l:connect_accepted_socket(f, u) end },
      }
      for _, c in ipairs(cases) do
        local e = err_of(c[2])
        assert_class(asyncio.ValueError, e)
        assert.is_truthy(tostring(e):find(c[1] .. ":", 1, true), tostring(e))
      end
      -- none of them took the descriptor
      for _, fd in ipairs { a, b, u, ud, lis, tcp } do
        assert.is_true(is_open(fd))
        S.close(fd)
      end
    end)
  end)

  it("a closed descriptor is OSError EBADF, a regular file ENOTSOCK, naming the function", function()
    local dir = tmpdir()
    local file, file_fd = regular_file(dir)
    run(function()
      local l = loop()
      local f = function() return {} end
      local opening = {
        { "create_connection", function(fd) l:create_connection(f, nil, nil, { sock = fd }) end },
        { "open_connection", function(fd) asyncio.open_connection(nil, nil, { sock = fd }) end },
        { "create_server", function(fd) l:create_server(f, nil, nil, { sock = fd }) end },
        { "start_server", function(fd) asyncio.start_server(f, nil, nil, { sock = fd }) end },
        { "create_unix_connection", function(fd) l:create_unix_connection(f, nil, { sock = fd }) end },
        { "open_unix_connection", function(fd) asyncio.open_unix_connection(nil, { sock = fd }) end },
        { "create_unix_server", function(fd) l:create_unix_server(f, nil, { sock = fd }) end },
        { "start_unix_server", function(fd) asyncio.start_unix_server(f, nil, { sock = fd }) end },
        { "create_datagram_endpoint", function(fd) l:create_datagram_endpoint(f, { sock = fd }) end },
        { "connect_accepted_socket", function(fd) l:connect_accepted_socket(f, fd) end },
      }
      for _, c in ipairs(opening) do
        assert_oserror("EBADF", c[1], err_of(c[2], closed_fd()))
        local e = err_of(c[2], file_fd)
        assert_oserror("ENOTSOCK", c[1], e)
        assert.matches("socket operation on non%-socket", tostring(e))
      end
    end)
    assert.is_truthy(file:write("still open"))
    file:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("a descriptor that is not a number in range is a Lua argument error naming the function", function()
    run(function()
      local l = loop()
      local f = function() return {} end
      local cases = {}
      for _, bad in ipairs { -1, 1 << 40, "3", 2.5, {}, true } do
        for _, c in ipairs {
          { "create_connection", 4, function() l:create_connection(f, nil, nil, { sock = bad }) end },
          { "open_connection", 3, function() asyncio.open_connection(nil, nil, { sock = bad }) end },
          { "create_server", 4, function() l:create_server(f, nil, nil, { sock = bad }) end },
          { "start_server", 4, function() asyncio.start_server(f, nil, nil, { sock = bad }) end },
          { "create_unix_connection", 3, function() l:create_unix_connection(f, nil, { sock = bad }) end },
          { "open_unix_connection", 2, function() asyncio.open_unix_connection(nil, { sock = bad }) end },
          { "create_unix_server", 3, function() l:create_unix_server(f, nil, { sock = bad }) end },
          { "start_unix_server", 3, function() asyncio.start_unix_server(f, nil, { sock = bad }) end },
          { "create_datagram_endpoint", 2, function() l:create_datagram_endpoint(f, { sock = bad }) end },
          { "connect_accepted_socket", 2, function() l:connect_accepted_socket(f, bad) end },
        } do
          cases[#cases + 1] = c
        end
      end
      for _, c in ipairs(cases) do
        assert_argerror(c[1], c[2], err_of(c[3]))
      end
      assert.is_true(#cases == 60)
    end)
  end)

  it("an fd a transport or server of the loop owns is a RuntimeError; the owner goes on", function()
    local a, b = asyncio.socketpair()
    run(function()
      local l = loop()
      local f = function() return {} end
      local tp, p = l:create_connection(recorder, nil, nil, { sock = a })
      local function refused(fd)
        for _, call in ipairs {
          function() l:create_connection(f, nil, nil, { sock = fd }) end,
          function() l:create_unix_connection(f, nil, { sock = fd }) end,
          function() l:connect_accepted_socket(f, fd) end,
        } do
          assert_class(asyncio.RuntimeError, err_of(call))
        end
      end
      refused(a)
      tp:pause_reading() -- the loop no longer polls it: still the transport's
      refused(a)
      tp:resume_reading()
      l:sock_sendall(b, "still mine")
      wait_for(function() return p:text() == "still mine" end)
      tp:close()
      p.lost_fut:await()

      -- a server, serving or not yet
      local server = l:create_server(recorder, "127.0.0.1", 0, { start_serving = false })
      local lfd = server.sockets[1]:fileno()
      local e = err_of(l.create_server, l, f, nil, nil, { sock = lfd })
      assert_class(asyncio.RuntimeError, e)
      assert.matches("create_server", tostring(e))
      server:start_serving()
      assert_class(asyncio.RuntimeError, err_of(asyncio.start_server, f, nil, nil, { sock = lfd }))
      local c = S.socket()
      l:sock_connect(c, server.sockets[1]:getsockname())
      S.close(c)
      server:close()
      server:wait_closed()

      -- a datagram endpoint
      local dt = l:create_datagram_endpoint(f, { local_addr = { "127.0.0.1", 0 } })
      local dfd = dt:get_extra_info("socket")
      e = err_of(l.create_datagram_endpoint, l, f, { sock = dfd })
      assert_class(asyncio.RuntimeError, e)
      assert.matches("create_datagram_endpoint", tostring(e))
      dt:close()
    end)
    S.close(b)
  end)

  it("an fd an add_reader callback watches is a RuntimeError", function()
    local a, b = asyncio.socketpair()
    run(function()
      local l = loop()
      l:add_reader(a, function() end)
      local e = err_of(l.create_connection, l, recorder, nil, nil, { sock = a })
      assert_class(asyncio.RuntimeError, e)
      assert.matches("create_connection", tostring(e))
      assert.is_true(l:remove_reader(a))
    end)
    S.close(a)
    S.close(b)
  end)

  it("leaves no descriptor behind: what a transport or server took goes with it", function()
    local before = helper.open_fds()
    run(function()
      local l = loop()
      local lfd, addr = listener()
      local server = l:create_server(function()
        return recorder { data = function(self, d) self.transport:write(d) end }
      end, nil, nil, { sock = lfd })
      for _ = 1, 3 do
        local fd = S.socket()
        l:sock_connect(fd, addr)
        local tp, p = l:create_connection(recorder, nil, nil, { sock = fd })
        tp:write("x")
        wait_for(function() return p:text() == "x" end)
        tp:close()
        p.lost_fut:await()
      end
      local u = S.socket("inet", "dgram")
      S.bind(u, { "127.0.0.1", 0 })
      local dt = l:create_datagram_endpoint(function() return {} end, { sock = u })
      dt:close()
      -- refused ones stay the caller's, who closes them
      local a, b = asyncio.socketpair()
      pcall(l.create_datagram_endpoint, l, function() return {} end, { sock = a })
      S.close(a)
      S.close(b)
      server:close()
      server:wait_closed()
      helper.sleep0(2)
    end)
    assert.equal(before, helper.open_fds(), helper.fd_list())
  end)
end)

---------------------------------------------------------------------------

describe("connect_accepted_socket", function()
  it("makes a transport over a connection accepted with sock_accept", function()
    run(function()
      local l, addr = listener()
      local client, cp = loop():create_connection(recorder, addr[1], addr[2])
      local conn, peer = loop():sock_accept(l)
      local tp, p = loop():connect_accepted_socket(function()
        return recorder { data = function(self, d) self.transport:write("echo:" .. d) end }
      end, conn)
      assert.equal(p, tp:get_protocol())
      assert.equal(1, p.made)
      assert.same(peer, tp:get_extra_info("peername"))
      client:write("hi")
      wait_for(function() return cp:text() == "echo:hi" end)
      client:close()
      p.lost_fut:await()
      assert.same({ "made", "eof", "lost" }, p.events)
      assert.is_false(is_open(conn))
      S.close(l)
    end)
  end)

  it("with opts.ssl does the server side of a TLS handshake", function()
    local certs = require "tlscerts"
    run(function()
      local sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      sctx:load_cert_chain(certs.server_cert, certs.server_key)
      local cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
      cctx:load_verify_locations(certs.ca)
      local l, addr = listener()
      local accepting = loop():create_task(function()
        local conn = loop():sock_accept(l)
        return table.pack(loop():connect_accepted_socket(function()
          return recorder { data = function(self, d) self.transport:write("tls:" .. d) end }
        end, conn, { ssl = sctx }))
      end)
      local client, cp = loop():create_connection(recorder, addr[1], addr[2],
        { ssl = cctx, server_hostname = "localhost" })
      local res = accepting:await()
      local stp, sp = res[1], res[2]
      assert.is_truthy(stp:get_extra_info("ssl_object"))
      assert.is_truthy(client:get_extra_info("ssl_object"))
      assert.equal(1, sp.made)
      client:write("secret")
      wait_for(function() return cp:text() == "tls:secret" end)
      assert.equal("secret", sp:text())
      client:close()
      sp.lost_fut:await()
      cp.lost_fut:await()
      S.close(l)
    end)
  end)

  it("closes the fd when the protocol factory fails", function()
    run(function()
      local c, s = tcp_pair()
      local e = err_of(loop().connect_accepted_socket, loop(), function() error("no protocol") end, s)
      assert.matches("no protocol", tostring(e))
      helper.sleep0(2)
      assert.is_false(is_open(s))
      assert.equal("", loop():sock_recv(c, 10))
      S.close(c)
    end)
  end)
end)

describe("descriptor numbers", function()
  it("close refuses the loop's own descriptors (libuv would abort on its next poll)", function()
    helper.run(function()
      local socket = asyncio.socket
      local server = asyncio.start_server(function() end, "127.0.0.1", 0)
      local ok, e = pcall(socket.close, server.sockets[1]:fileno())
      assert.is_false(ok)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      assert.matches("belongs to an event loop", tostring(e))
      ok, e = pcall(socket.close, asyncio.get_running_loop():backend_fd())
      assert.is_false(ok)
      assert.is_true(asyncio.isinstance(e, asyncio.RuntimeError), tostring(e))
      server:close()
    end)
  end)

  it("are integers: a numeric string is refused, not converted", function()
    helper.run(function()
      local socket, loop = asyncio.socket, asyncio.get_running_loop()
      assert.matches("bad argument #1 to 'close' %(descriptor number expected, got string%)",
        select(2, pcall(function() socket.close("3") end)))
      assert.matches("bad argument #1 to 'sock_recv' %(descriptor number expected, got string%)",
        select(2, pcall(function() return loop:sock_recv("3", 1) end)))
    end)
  end)
end)
