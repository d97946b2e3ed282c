-- Datagram endpoints: loop:create_datagram_endpoint and the UDP transport
-- (after CPython's test_events.py datagram tests and the
-- create_datagram_endpoint tests of test_base_events.py). Loopback only.
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local run = helper.run
local err_of = helper.err_of
local assert_class = helper.assert_class

local LOCAL = { "127.0.0.1", 0 }

-- a protocol recording every event; `on` overrides its methods
local function recorder(on)
  local p = { events = {}, data = {}, addrs = {}, errors = {}, lost = 0, made = 0 }
  function p:connection_made(t)
    self.made = self.made + 1
    self.transport = t
    self.events[#self.events + 1] = "made"
  end
  function p:datagram_received(data, addr)
    self.data[#self.data + 1] = data
    self.addrs[#self.addrs + 1] = addr
    if self.on_data then self:on_data(data, addr) end
  end
  function p:error_received(err)
    self.errors[#self.errors + 1] = err
  end
  function p:connection_lost(err)
    self.lost = self.lost + 1
    self.lost_err = err
    self.events[#self.events + 1] = "lost"
  end
  for k, v in pairs(on or {}) do p[k] = v end
  return p
end

local function factory_of(p)
  return function() return p end
end

local function endpoint(opts, on)
  local p = recorder(on)
  local t, p2 = helper.loop():create_datagram_endpoint(factory_of(p), opts)
  assert.equal(p, p2)
  return t, p
end

-- an echo server: sends every datagram back to where it came from
local function echo_server(addr)
  return endpoint({ local_addr = addr or LOCAL }, {
    on_data = function(self, data, from) self.transport:sendto(data, from) end,
  })
end

-- waits (bounded) until pred() holds
local function wait_for(pred, secs)
  local deadline = helper.loop():time() + (secs or 3)
  while not pred() do
    assert(helper.loop():time() < deadline, "condition not reached in time")
    asyncio.sleep(0.001)
  end
end

local function same_addr(a, b)
  return a[1] == b[1] and a[2] == b[2]
end

describe("create_datagram_endpoint", function()
  it("echoes through a server endpoint and a connected client", function()
    run(function()
      local st, sp = echo_server()
      local saddr = st:get_extra_info("sockname")
      assert.equal("127.0.0.1", saddr[1])
      assert.is_true(saddr[2] > 0)
      local ct, cp = endpoint({ remote_addr = saddr })
      for i = 1, 5 do ct:sendto("ping " .. i) end
      wait_for(function() return #cp.data == 5 end)
      for i = 1, 5 do
        assert.equal("ping " .. i, cp.data[i])
        assert.is_true(same_addr(saddr, cp.addrs[i]))
      end
      -- the server saw the client's address
      assert.is_true(same_addr(ct:get_extra_info("sockname"), sp.addrs[1]))
      ct:close()
      st:close()
      wait_for(function() return cp.lost == 1 and sp.lost == 1 end)
    end)
  end)

  it("follows Python's protocol states: made once, then lost once, with no error", function()
    run(function()
      local states = {}
      local proto = {
        state = "INITIAL",
        connection_made = function(self)
          states[#states + 1] = self.state
          self.state = "INITIALIZED"
        end,
        connection_lost = function(self, err)
          states[#states + 1] = self.state
          states[#states + 1] = tostring(err)
          self.state = "CLOSED"
        end,
      }
      local t, p = helper.loop():create_datagram_endpoint(function() return proto end,
        { local_addr = LOCAL })
      assert.equal(proto, p)
      assert.equal(proto, t:get_protocol())
      assert.equal("INITIALIZED", proto.state) -- made ran before the call returned
      t:close()
      assert.is_true(t:is_closing())
      assert.equal("INITIALIZED", proto.state) -- lost is scheduled, not called by close()
      helper.sleep0(2)
      assert.same({ "INITIAL", "INITIALIZED", "nil" }, states)
      assert.equal("CLOSED", proto.state)
    end)
  end)

  it("connection_lost runs once whatever mix of close() and abort()", function()
    run(function()
      local t1, p1 = endpoint({ local_addr = LOCAL })
      t1:close()
      t1:close()
      t1:abort()
      local t2, p2 = endpoint({ local_addr = LOCAL })
      t2:abort()
      t2:abort()
      t2:close()
      assert.is_true(t2:is_closing())
      helper.sleep0(3)
      assert.same({ "made", "lost" }, p1.events)
      assert.same({ "made", "lost" }, p2.events)
      assert.is_nil(p1.lost_err)
      assert.is_nil(t1:get_protocol()) -- forgotten after connection_lost, as in Python
    end)
  end)

  it("sends to an explicit address from an unconnected endpoint", function()
    run(function()
      local at, ap = endpoint({ local_addr = LOCAL })
      local bt, bp = endpoint({ local_addr = LOCAL })
      local baddr = bt:get_extra_info("sockname")
      at:sendto("to b", baddr)
      at:sendto("", baddr) -- an empty datagram is one too
      wait_for(function() return #bp.data == 2 end)
      assert.same({ "to b", "" }, bp.data)
      assert.is_true(same_addr(at:get_extra_info("sockname"), bp.addrs[1]))
      assert.equal(0, #ap.data)
      assert.is_nil(at:get_extra_info("peername"))
      at:close()
      bt:close()
    end)
  end)

  it("without an address an unconnected sendto reports EDESTADDRREQ to error_received", function()
    run(function()
      local t, p = endpoint({ local_addr = LOCAL })
      t:sendto("nowhere")
      assert.equal(1, #p.errors)
      assert_class(asyncio.OSError, p.errors[1])
      assert.equal("EDESTADDRREQ", p.errors[1].errno)
      t:close()
    end)
  end)

  it("resolves names: localhost works for both ends", function()
    run(function()
      local st = echo_server({ "localhost", 0 })
      local port = st:get_extra_info("sockname")[2]
      local ct, cp = endpoint({ remote_addr = { "localhost", port } })
      ct:sendto("by name")
      wait_for(function() return #cp.data == 1 end)
      assert.equal("by name", cp.data[1])
      ct:close()
      st:close()
    end)
  end)

  it("reports the addresses with get_extra_info", function()
    run(function()
      local st = echo_server()
      local saddr = st:get_extra_info("sockname")
      local ct = endpoint({ local_addr = LOCAL, remote_addr = saddr })
      assert.is_true(same_addr(saddr, ct:get_extra_info("peername")))
      assert.equal("127.0.0.1", ct:get_extra_info("sockname")[1])
      assert.is_nil(st:get_extra_info("peername"))
      assert.equal("dflt", st:get_extra_info("peername", "dflt"))
      assert.equal("dflt", st:get_extra_info("no such thing", "dflt"))
      assert.equal("integer", math.type(st:get_extra_info("socket")))
      assert.matches("DatagramTransport fd=%d+", tostring(st))
      st:close()
      -- the addresses stay known after close
      assert.is_true(same_addr(saddr, st:get_extra_info("sockname")))
      assert.is_nil(st:get_extra_info("socket"))
      ct:close()
      helper.sleep0()
      assert.matches("closed", tostring(st))
    end)
  end)

  it("delivers 1,000 datagrams intact and in order", function()
    run(function()
      local st = echo_server()
      local ct, cp = endpoint({ remote_addr = st:get_extra_info("sockname") })
      local sent = {}
      local window = 50 -- stay well inside the socket buffers: UDP may drop
      for base = 0, 999, window do
        for i = base + 1, base + window do
          sent[i] = ("%d:"):format(i) .. string.rep(string.char(i % 256), i % 700)
          ct:sendto(sent[i])
        end
        wait_for(function() return #cp.data == base + window end)
      end
      assert.equal(1000, #cp.data)
      for i = 1, 1000 do assert.equal(sent[i], cp.data[i]) end
      assert.equal(0, ct:get_write_buffer_size())
      ct:close()
      st:close()
    end)
  end)

  it("carries a 60 KB datagram", function()
    run(function()
      local st = echo_server()
      local ct, cp = endpoint({ remote_addr = st:get_extra_info("sockname") })
      local big = string.rep("0123456789", 6000)
      ct:sendto(big)
      wait_for(function() return #cp.data == 1 end)
      assert.equal(big, cp.data[1])
      ct:close()
      st:close()
    end)
  end)

  it("works over IPv6 ::1", function()
    run(function()
      local ok, st = pcall(echo_server, { "::1", 0 })
      if not ok then
        assert_class(asyncio.OSError, st)
        pending("IPv6 loopback unavailable: " .. tostring(st))
        return
      end
      local saddr = st:get_extra_info("sockname")
      assert.equal("::1", saddr[1])
      local ct, cp = endpoint({ remote_addr = saddr })
      ct:sendto("six")
      wait_for(function() return #cp.data == 1 end)
      assert.equal("six", cp.data[1])
      assert.is_true(same_addr(saddr, cp.addrs[1]))
      ct:close()
      st:close()
    end)
  end)

  it("family selects the addresses; without any address it is required", function()
    run(function()
      local loop = helper.loop()
      local t = endpoint({ family = "inet" })
      assert.equal("0.0.0.0", t:get_extra_info("sockname")[1])
      t:close()
      local e = err_of(loop.create_datagram_endpoint, loop, factory_of(recorder()), {})
      assert_class(asyncio.ValueError, e)
      assert.matches("unexpected address family", e.message)
      e = err_of(loop.create_datagram_endpoint, loop, factory_of(recorder()),
        { local_addr = LOCAL, family = "inet6" })
      assert_class(asyncio.ValueError, e)
      assert.matches("can not get address information", e.message)
      -- no family both ends share
      e = err_of(loop.create_datagram_endpoint, loop, factory_of(recorder()),
        { local_addr = LOCAL, remote_addr = { "::1", 9 } })
      assert_class(asyncio.ValueError, e)
    end)
  end)

  it("refuses reuse_address as Python 3.11 does", function()
    run(function()
      local loop = helper.loop()
      local called = false
      local e = err_of(loop.create_datagram_endpoint, loop, function() called = true end,
        { local_addr = LOCAL, reuse_address = true })
      assert_class(asyncio.ValueError, e)
      assert.is_false(called)
    end)
  end)

  it("raises the OSError of a bind that fails, without calling the factory", function()
    run(function()
      local loop = helper.loop()
      local t = endpoint({ local_addr = LOCAL })
      local called = false
      local e = err_of(loop.create_datagram_endpoint, loop, function() called = true end,
        { local_addr = t:get_extra_info("sockname") })
      assert_class(asyncio.OSError, e)
      assert.equal("EADDRINUSE", e.errno)
      assert.is_false(called)
      t:close()
    end)
  end)

  it("reuse_port lets two endpoints share a port", function()
    run(function()
      local t1 = endpoint({ local_addr = LOCAL, reuse_port = true })
      local addr = t1:get_extra_info("sockname")
      local t2 = endpoint({ local_addr = addr, reuse_port = true })
      assert.is_true(same_addr(addr, t2:get_extra_info("sockname")))
      t1:close()
      t2:close()
    end)
  end)

  it("allow_broadcast with remote_addr sends there without connecting", function()
    run(function()
      local st, sp = endpoint({ local_addr = LOCAL })
      local saddr = st:get_extra_info("sockname")
      local ct = endpoint({ remote_addr = saddr, allow_broadcast = true })
      assert.is_nil(ct:get_extra_info("peername"))
      ct:sendto("bcast")
      ct:sendto("again", saddr)
      wait_for(function() return #sp.data == 2 end)
      assert.same({ "bcast", "again" }, sp.data)
      assert.has_error(function() ct:sendto("x", { "127.0.0.1", saddr[2] + 1 }) end)
      ct:close()
      st:close()
    end)
  end)

  it("closes the transport when the factory fails", function()
    run(function()
      local loop = helper.loop()
      local t0, p0 = endpoint({ local_addr = LOCAL })
      local addr = t0:get_extra_info("sockname")
      t0:close()
      wait_for(function() return p0.lost == 1 end)
      local ok, err = pcall(loop.create_datagram_endpoint, loop, function() error("no protocol") end,
        { local_addr = addr })
      assert.is_false(ok)
      assert.matches("no protocol", tostring(err))
      local t = endpoint({ local_addr = addr }) -- the port was released
      t:close()
    end)
  end)

  it("closes the transport when the waiting task is cancelled", function()
    run(function()
      local loop = helper.loop()
      local p = recorder()
      local t = loop:create_task(function()
        return loop:create_datagram_endpoint(factory_of(p), { local_addr = LOCAL })
      end)
      helper.sleep0() -- the task is waiting for connection_made now
      t:cancel()
      helper.await_cancelled(t)
      helper.sleep0(2)
      assert.same({ "made", "lost" }, p.events)
      assert.is_true(p.transport:is_closing())
    end)
  end)
end)

describe("DatagramTransport:sendto", function()
  it("raises ValueError for another address on a connected endpoint", function()
    run(function()
      local st, sp = echo_server()
      local saddr = st:get_extra_info("sockname")
      local ct, cp = endpoint({ remote_addr = saddr })
      local e = err_of(ct.sendto, ct, "x", { "127.0.0.1", saddr[2] + 1 })
      assert_class(asyncio.ValueError, e)
      assert.matches("Invalid address", e.message)
      e = err_of(ct.sendto, ct, "x", { "not-numeric.example", saddr[2] })
      assert_class(asyncio.ValueError, e)
      ct:sendto("same", { "127.0.0.1", saddr[2] }) -- the remote address itself is fine
      wait_for(function() return #cp.data == 1 end)
      assert.equal("same", cp.data[1])
      assert.equal(1, #sp.data)
      ct:close()
      st:close()
    end)
  end)

  it("checks its arguments", function()
    run(function()
      local t = endpoint({ local_addr = LOCAL })
      assert.has_error(function() t:sendto({}, LOCAL) end)
      assert.has_error(function() t:sendto("x", "127.0.0.1") end)
      assert.has_error(function() t:sendto("x", { "127.0.0.1", 70000 }) end)
      assert.has_error(function() t.sendto(nil, "x") end)
      assert.has_error(function() t.sendto(helper.loop(), "x") end)
      t:close()
    end)
  end)

  it("drops data once the transport is closing", function()
    run(function()
      local st, sp = endpoint({ local_addr = LOCAL })
      local ct, cp = endpoint({ remote_addr = st:get_extra_info("sockname") })
      ct:close()
      ct:sendto("late")
      helper.sleep0(3)
      asyncio.sleep(0.02)
      assert.equal(0, #sp.data)
      assert.equal(0, #cp.errors)
      st:close()
    end)
  end)

  it("reports ECONNREFUSED on a connected endpoint to error_received", function()
    run(function()
      local dead, dp = endpoint({ local_addr = LOCAL })
      local addr = dead:get_extra_info("sockname")
      dead:close()
      wait_for(function() return dp.lost == 1 end)
      local ct, cp = endpoint({ remote_addr = addr })
      -- Linux reports the ICMP error on the next send or receive
      wait_for(function()
        ct:sendto("anyone?")
        asyncio.sleep(0.005)
        return #cp.errors > 0
      end)
      assert_class(asyncio.ConnectionRefusedError, cp.errors[1])
      assert.equal("ECONNREFUSED", cp.errors[1].errno)
      assert.is_false(ct:is_closing()) -- not fatal
      ct:close()
      wait_for(function() return cp.lost == 1 end)
      assert.is_nil(cp.lost_err)
    end)
  end)
end)

describe("DatagramTransport", function()
  it("sends an error of a protocol method to the exception handler and keeps going", function()
    run(function()
      local loop = helper.loop()
      local contexts = {}
      loop:set_exception_handler(function(_, context) contexts[#contexts + 1] = context end)
      local st, sp = endpoint({ local_addr = LOCAL }, {
        on_data = function(self, data)
          if data == "bad" then error("boom in datagram_received") end
        end,
      })
      local ct = endpoint({ remote_addr = st:get_extra_info("sockname") })
      ct:sendto("bad")
      ct:sendto("good")
      wait_for(function() return #sp.data == 2 end)
      assert.equal(1, #contexts)
      assert.matches("boom in datagram_received", tostring(contexts[1].exception))
      assert.matches("datagram_received", contexts[1].message)
      assert.equal(sp, contexts[1].protocol)
      ct:close()
      st:close()
    end)
  end)

  it("reports errors of connection_made and connection_lost too", function()
    run(function()
      local loop = helper.loop()
      local msgs = {}
      loop:set_exception_handler(function(_, context)
        msgs[#msgs + 1] = tostring(context.exception)
      end)
      local t = endpoint({ local_addr = LOCAL }, {
        connection_made = function() error("made failed") end,
        connection_lost = function() error("lost failed") end,
      })
      t:close()
      helper.sleep0(2)
      assert.equal(2, #msgs)
      assert.matches("made failed", msgs[1])
      assert.matches("lost failed", msgs[2])
    end)
  end)

  it("can be closed from inside datagram_received", function()
    run(function()
      local st, sp = endpoint({ local_addr = LOCAL }, {
        on_data = function(self) self.transport:close() end,
      })
      local ct = endpoint({ remote_addr = st:get_extra_info("sockname") })
      for i = 1, 5 do ct:sendto("d" .. i) end
      wait_for(function() return sp.lost == 1 end)
      asyncio.sleep(0.02)
      assert.same({ "d1" }, sp.data)
      assert.same({ "made", "lost" }, sp.events)
      ct:close()
    end)
  end)

  it("set_protocol redirects what comes next", function()
    run(function()
      local st, sp = endpoint({ local_addr = LOCAL })
      local other = recorder()
      st:set_protocol(other)
      assert.equal(other, st:get_protocol())
      local ct = endpoint({ remote_addr = st:get_extra_info("sockname") })
      ct:sendto("for other")
      wait_for(function() return #other.data == 1 end)
      assert.equal(0, #sp.data)
      st:close()
      wait_for(function() return other.lost == 1 end)
      assert.equal(0, sp.lost)
      ct:close()
    end)
  end)

  it("has Python's write buffer limits", function()
    run(function()
      local t = endpoint({ local_addr = LOCAL })
      assert.equal(0, t:get_write_buffer_size())
      local low, high = t:get_write_buffer_limits()
      assert.equal(16384, low)
      assert.equal(65536, high)
      t:set_write_buffer_limits(1000)
      assert.same({ 250, 1000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(nil, 100)
      assert.same({ 100, 400 }, { t:get_write_buffer_limits() })
      assert_class(asyncio.ValueError, err_of(t.set_write_buffer_limits, t, 10, 20))
      assert_class(asyncio.ValueError, err_of(t.set_write_buffer_limits, t, 10, -1))
      t:close()
    end)
  end)

  it("an unreferenced open endpoint is kept by the loop and goes on serving", function()
    run(function()
      local weak = setmetatable({}, { __mode = "v" })
      local addr
      local p = recorder()
      do
        local t = helper.loop():create_datagram_endpoint(factory_of(p), { local_addr = LOCAL })
        addr = t:get_extra_info("sockname")
        weak[1] = t
      end
      p.transport = nil
      helper.gc()
      assert.is_not_nil(weak[1])
      local c = endpoint({ remote_addr = addr })
      c:sendto("still here")
      helper.wait_until(function() return #p.data == 1 end)
      assert.equal("still here", p.data[1])
      c:close()
      weak[1]:close()
      helper.sleep0(2)
      assert.equal(1, p.lost)
      helper.gc()
      assert.is_nil(weak[1])
    end)
  end)

  it("a transport in a cycle with its protocol is collected once closed", function()
    run(function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local t, p = endpoint({ local_addr = LOCAL }) -- p.transport = t
        weak[1], weak[2] = t, p
      end
      helper.gc()
      assert.is_not_nil(weak[1])
      weak[1]:close()
      helper.sleep0(2)
      helper.gc()
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
    end)
  end)

  it("a closing transport waits in the loop, not in the GC, for connection_lost", function()
    run(function()
      local p = recorder()
      do
        local t = helper.loop():create_datagram_endpoint(factory_of(p), { local_addr = LOCAL })
        t:close()
      end
      p.transport = nil
      helper.gc()
      helper.sleep0(2)
      assert.equal(1, p.lost)
    end)
  end)
end)

describe("loop close with datagram endpoints", function()
  it("releases an open endpoint; the transport stays safe to use", function()
    helper.with_loop(function(loop)
      local t, p = loop:run_until_complete(function()
        return endpoint({ local_addr = LOCAL })
      end)
      t:sendto("x", { "127.0.0.1", 9 })
      loop:close()
      assert.is_true(t:is_closing())
      t:sendto("y", { "127.0.0.1", 9 })
      t:close()
      t:abort()
      assert.is_table(t:get_extra_info("sockname"))
      assert.equal(0, t:get_write_buffer_size())
      assert.equal(0, p.lost)
    end)
  end)

  it("releases a name resolution and a connection_made still pending", function()
    helper.with_loop(function(loop)
      local p = recorder()
      loop:create_task(function()
        loop:create_datagram_endpoint(factory_of(p), { local_addr = { "localhost", 0 } })
      end)
      loop:create_task(function()
        loop:create_datagram_endpoint(factory_of(p), { local_addr = LOCAL })
      end)
      loop:run_once(0)
      loop:run_once(0)
      loop:close()
      assert.is_true(loop:is_closed())
    end)
  end)

  it("refuses to start on a closed loop", function()
    local loop = helper.new_loop()
    loop:close()
    local core = require "asyncio.core"
    for _, call in ipairs {
      function() return core._udp_resolve(loop, "127.0.0.1", 0) end,
      function() return core._udp_open(loop, LOCAL) end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("closed", tostring(err))
    end
  end)
end)

describe("create_datagram_endpoint arguments", function()
  it("names itself in argument errors", function()
    run(function()
      local loop = helper.loop()
      local f = factory_of(recorder())
      local cases = {
        { 42, {} },
        { f, 42 },
        { f, { local_addr = "127.0.0.1" } },
        { f, { local_addr = { "127.0.0.1", "x" } } },
        { f, { local_addr = { "127.0.0.1", 65536 } } },
        { f, { local_addr = { 7, 0 } } },
        { f, { remote_addr = true } },
        { f, { local_addr = LOCAL, family = "ipx" } },
        { f, { local_addr = LOCAL, bogus = 1 } },
      }
      for i, c in ipairs(cases) do
        local e = err_of(loop.create_datagram_endpoint, loop, c[1], c[2])
        assert.matches("create_datagram_endpoint", tostring(e), 1, true, "case " .. i)
      end
    end)
  end)
end)
