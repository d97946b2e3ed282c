-- Faults that come from peers: a server out of descriptors, resets in the
-- middle of a TLS handshake or of a large write, a peer that stops reading,
-- one that trickles a byte at a time. Loopback only. A reset is made the way
-- a real peer makes one: closing a socket with unread data in its receive
-- buffer (a transport paused before it read anything, then aborted) makes
-- the kernel answer with RST.
local asyncio = require "asyncio"
local ssl = require "asyncio.ssl"
local core = require "asyncio.core"
local helper = require "helper"
local certs = require "tlscerts"

local run, wait_until = helper.run, helper.wait_until
local LUA = os.getenv("LUA") or "lua5.4"

after_each(helper.close_loops)

local function port_of(server)
  return server.sockets[1]:getsockname()[2]
end

local function server_ctx()
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx:load_cert_chain(certs.server_cert, certs.server_key)
  return ctx
end

local function client_ctx()
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  ctx:load_verify_locations(certs.ca)
  return ctx
end

local echo = helper.stream_echo_quiet

-- one line through a fresh connection to port; the server must echo it
local function echo_once(port, opts)
  local reader, writer = asyncio.open_connection("127.0.0.1", port, opts)
  writer:write("still there?\n")
  local line = asyncio.wait_for(function() return reader:readline() end, 5)
  writer:close()
  writer:wait_closed()
  return line
end

-- A raw TCP server whose connections never read: their transports are
-- paused before the first read, so what the peer sends stays unread in the
-- kernel, and abort() then resets the connection. Returns server, port and
-- the list of its transports.
local function unread_server()
  local transports = {}
  local server = asyncio.get_running_loop():create_server(function()
    return {
      connection_made = function(_, t)
        t:pause_reading()
        transports[#transports + 1] = t
      end,
    }
  end, "127.0.0.1", 0)
  return server, port_of(server), transports
end

-- the same as a client: connects, pauses, writes `data`; returns the transport
local function unread_client(port, data)
  local t = asyncio.get_running_loop():create_connection(function()
    return { connection_made = function(_, tp) tp:pause_reading() end }
  end, "127.0.0.1", port)
  t:write(data)
  return t
end

local function assert_reset(err)
  assert.is_true(helper.is(asyncio.ConnectionError, err), "got " .. tostring(err))
  assert.is_truthy(({ ECONNRESET = true, EPIPE = true })[err.errno], err.errno)
end

-- descriptors and TLS objects after a full collection, and what they were
local function assert_nothing_leaked(fds, live)
  helper.gc()
  local ok = pcall(wait_until, function()
    helper.gc()
    return helper.open_fds() <= fds and core.ssl_live() <= live
  end, 5)
  assert.is_true(ok, ("%d descriptors (%d before), %d TLS objects (%d before)\n%s"):format(
    helper.open_fds(), fds, core.ssl_live(), live, helper.fd_list()))
end

describe("a server out of file descriptors", function()
  -- The server runs in a child with `ulimit -n` low; it echoes lines and
  -- logs to stderr through asyncio.logger (the default handler).
  local SERVER = [[
    local asyncio = require "asyncio"
    asyncio.run(function()
      local server = asyncio.start_server(function(reader, writer)
        pcall(function()
          while true do
            local line = reader:readline()
            if line == "" then break end
            writer:write(line)
            writer:drain()
          end
        end)
        writer:close()
      end, "127.0.0.1", 0)
      io.stdout:write(server.sockets[1]:getsockname()[2], "\n")
      io.stdout:flush()
      asyncio.sleep(30)
    end)
  ]]

  it("keeps serving, accepts again once descriptors come free, and logs the shortage once", function()
    run(function()
      local PIPE = asyncio.subprocess.PIPE
      local p = asyncio.create_subprocess_exec({ "sh", "-c", 'ulimit -n 32 && exec "$0" -e "$1"', LUA, SERVER },
        { stdout = PIPE, stderr = PIPE })
      local port = tonumber(asyncio.wait_for(function() return p.stdout:readline() end, 5))
      assert.is_number(port)
      local function ask(c, text)
        c.writer:write(text .. "\n")
        return asyncio.wait_for(function() return c.reader:readline() end, 1)
      end
      -- connections until one is not served: the descriptors are all taken
      local served, waiting = {}, nil
      for i = 1, 64 do
        local reader, writer = asyncio.open_connection("127.0.0.1", port)
        local c = { reader = reader, writer = writer }
        local ok, line = pcall(ask, c, "hello " .. i)
        if not ok then
          helper.assert_class(asyncio.TimeoutError, line)
          waiting = c
          break
        end
        assert.equal("hello " .. i .. "\n", line)
        served[#served + 1] = c
      end
      assert.is_not_nil(waiting, "the server never ran out of descriptors")
      assert.is_true(#served >= 10, #served)
      -- the connections it has are still served
      for i, c in ipairs(served) do
        assert.equal("again " .. i .. "\n", ask(c, "again " .. i))
      end
      -- descriptors come free: the waiting connection (not dropped) is served
      for i = 1, 3 do
        served[i].writer:close()
      end
      local line = asyncio.wait_for(function() return waiting.reader:readline() end, 5)
      assert.equal("hello " .. (#served + 1) .. "\n", line)
      assert.equal("later\n", ask(waiting, "later"))
      -- and a new one is accepted
      assert.equal("still there?\n", echo_once(port))
      for i = 4, #served do
        served[i].writer:close()
      end
      waiting.writer:close()
      p:terminate()
      local _, log = asyncio.wait_for(function() return p:communicate() end, 5)
      local n = select(2, log:gsub("socket%.accept%(%) out of system resource", "%0"))
      assert.equal(1, n, log)
      assert.is_truthy(log:find("too many open files", 1, true), log)
    end, 20)
  end)
end)

describe("a peer that resets in the middle of a TLS handshake", function()
  it("client side: open_connection raises ConnectionResetError, nothing leaks", function()
    run(function()
      local server, port, transports = unread_server()
      local fds, live = helper.open_fds(), core.ssl_live()
      local client = asyncio.create_task(function()
        return pcall(asyncio.open_connection, "127.0.0.1", port, { ssl = client_ctx(), server_hostname = "localhost" })
      end)
      wait_until(function() return #transports == 1 end)
      asyncio.sleep(0.1) -- the ClientHello is in the server's receive queue, unread
      transports[1]:abort()
      local ok, err = asyncio.wait_for(client, 5)
      assert.is_false(ok)
      helper.assert_class(asyncio.ConnectionResetError, err)
      assert.equal("ECONNRESET", err.errno)
      server:close()
      server:wait_closed()
      assert_nothing_leaked(fds, live)
    end)
  end)

  it("server side: the connection goes unreported and without a callback, the server goes on", function()
    run(function()
      local loop = asyncio.get_running_loop()
      -- a real ClientHello, from a TLS client to a server that only listens
      local hello
      local capture = loop:create_server(function()
        return {
          data_received = function(self, data)
            hello = hello or data
            self.t:abort()
          end,
          connection_made = function(self, t) self.t = t end,
        }
      end, "127.0.0.1", 0)
      pcall(asyncio.open_connection, "127.0.0.1", port_of(capture), { ssl = client_ctx(), server_hostname = "localhost" })
      capture:close()
      assert.is_string(hello)
      local fds, live = helper.open_fds(), core.ssl_live()
      local reports, callbacks = {}, 0
      loop:set_exception_handler(function(_, ctx) reports[#reports + 1] = ctx end)
      local server = asyncio.start_server(function(reader, writer)
        callbacks = callbacks + 1
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local port = port_of(server)
      -- the server answers the ClientHello and waits for the client's
      -- Finished; its answer stays unread, so the abort resets
      local t = unread_client(port, hello)
      asyncio.sleep(0.2)
      t:abort()
      -- the handshake ends at once, not at its 60 s timeout: the TLS object goes
      wait_until(function()
        helper.gc()
        return core.ssl_live() <= live
      end)
      -- as Python, an OS error of a handshake is not reported
      assert.same({}, reports)
      assert.equal(0, callbacks)
      assert.equal("still there?\n", echo_once(port, { ssl = client_ctx(), server_hostname = "localhost" }))
      assert.equal(1, callbacks)
      server:close()
      server:wait_closed()
      loop:set_exception_handler(nil)
      assert_nothing_leaked(fds, live)
    end)
  end)
end)

describe("a peer that resets in the middle of a large write", function()
  local BIG = string.rep("x", 8 * 1024 * 1024)

  it("plain: drain raises ConnectionResetError or BrokenPipeError, the server goes on", function()
    run(function()
      local server, port, transports = unread_server()
      local fds = helper.open_fds()
      local reader, writer = asyncio.open_connection("127.0.0.1", port)
      writer:write(BIG)
      local drain = asyncio.create_task(function() return pcall(writer.drain, writer) end)
      wait_until(function() return #transports == 1 end)
      asyncio.sleep(0.1)
      assert.is_false(drain:done(), "8 MiB went through a peer that does not read")
      transports[1]:abort()
      local ok, err = asyncio.wait_for(drain, 5)
      assert.is_false(ok)
      assert_reset(err)
      assert_reset(helper.err_of(reader.read, reader))
      writer:close()
      server:close()
      server:wait_closed()
      assert_nothing_leaked(fds, core.ssl_live())
    end)
  end)

  it("TLS: drain raises ConnectionResetError or BrokenPipeError, the server goes on", function()
    run(function()
      local stalled = {}
      local server = asyncio.start_server(function(reader, writer)
        if #stalled == 0 then
          writer.transport:pause_reading()
          stalled[1] = writer
          return
        end
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local port = port_of(server)
      local fds, live = helper.open_fds(), core.ssl_live()
      local opts = { ssl = client_ctx(), server_hostname = "localhost" }
      local _, writer = asyncio.open_connection("127.0.0.1", port, opts)
      writer:write(BIG)
      local drain = asyncio.create_task(function() return pcall(writer.drain, writer) end)
      wait_until(function() return #stalled == 1 end)
      asyncio.sleep(0.1)
      assert.is_false(drain:done())
      stalled[1].transport:abort()
      local ok, err = asyncio.wait_for(drain, 5)
      assert.is_false(ok)
      assert_reset(err)
      writer:close()
      assert.equal("still there?\n", echo_once(port, opts))
      server:close()
      server:wait_closed()
      stalled[1] = nil
      assert_nothing_leaked(fds, live)
    end)
  end)
end)

describe("a peer that stops reading", function()
  it("drain blocks at the high-water mark; the write buffer and the heap stay bounded", function()
    run(function()
      local CHUNK = string.rep("y", 65536)
      local peer = {}
      local server = asyncio.start_server(function(reader, writer)
        peer.reader, peer.writer = reader, writer
        asyncio.sleep(30) -- reads nothing
      end, "127.0.0.1", 0)
      local _, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local _, high = writer.transport:get_write_buffer_limits()
      helper.gc()
      local heap0 = collectgarbage("count")
      local sent, blocked, max_buffered = 0, false, 0
      for _ = 1, 4096 do -- 256 MiB at most: far more than the kernel buffers hold
        writer:write(CHUNK)
        sent = sent + #CHUNK
        max_buffered = math.max(max_buffered, writer.transport:get_write_buffer_size())
        if not helper.within(0.2, function() writer:drain() end) then
          blocked = true
          break
        end
      end
      assert.is_true(blocked, "drain never blocked")
      assert.is_true(max_buffered <= high + #CHUNK, max_buffered .. " buffered, high " .. high)
      assert.is_true(writer.transport:get_write_buffer_size() > high - #CHUNK)
      -- the blocked drain holds no copies: the heap grew by less than the buffer and a chunk
      helper.gc()
      local grown = (collectgarbage("count") - heap0) * 1024
      assert.is_true(grown < high + 4 * #CHUNK, grown)
      -- the peer reads again: everything arrives, drain returns
      local got = 0
      local reading = asyncio.create_task(function()
        while got < sent do
          got = got + #peer.reader:read(1024 * 1024)
        end
      end)
      assert.is_true(helper.within(10, function() writer:drain() end))
      asyncio.wait_for(reading, 10)
      assert.equal(sent, got)
      writer:close()
      server:close()
      server:close_clients()
    end, 30)
  end)
end)

describe("a peer that sends one byte at a time", function()
  it("readuntil and readexactly assemble the pieces; the process does not spin", function()
    run(function()
      local got = {}
      local server = asyncio.start_server(function(reader, writer)
        got.name = reader:readuntil(":")
        got.body = reader:readexactly(6)
        got.tail = reader:readuntil({ "\r\n", "\n" })
        writer:write("ok\n")
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local message = "name:abcdefrest\n"
      local cpu0, t0 = os.clock(), asyncio.get_running_loop():time()
      for i = 1, #message do
        writer:write(message:sub(i, i))
        writer:drain()
        asyncio.sleep(0.05)
      end
      assert.equal("ok\n", asyncio.wait_for(function() return reader:readline() end, 5))
      local cpu, wall = os.clock() - cpu0, asyncio.get_running_loop():time() - t0
      assert.equal("name:", got.name)
      assert.equal("abcdef", got.body)
      assert.equal("rest\n", got.tail)
      assert.is_true(wall >= 0.05 * #message, wall)
      -- 16 wake-ups of each side cost microseconds; a spinning loop costs the whole wall time
      assert.is_true(cpu < 0.1 * wall, ("%.3f s CPU in %.3f s"):format(cpu, wall))
      writer:close()
      server:close()
      server:wait_closed()
    end)
  end)
end)
