-- asyncio.isinstance and Python's abstract classes: the protocol bases a Lua
-- protocol inherits its no-op callbacks from (through real transports), and
-- the transport, server and loop classes the runtime's own objects are
-- instances of.
local asyncio = require "asyncio"
local ssl = require "asyncio.ssl"
local helper = require "helper"
local certs = require "tlscerts"

local run, isinstance = helper.run, asyncio.isinstance

after_each(helper.close_loops)

local function port_of(server) return server.sockets[1]:getsockname()[2] end

-- what each runtime transport is, as Python's classes would say
local function kinds(tp)
  local out = {}
  for _, name in ipairs { "BaseTransport", "ReadTransport", "WriteTransport", "Transport",
                          "DatagramTransport", "SubprocessTransport" } do
    if isinstance(tp, asyncio[name]) then out[#out + 1] = name end
  end
  return table.concat(out, " ")
end

local STREAM = "BaseTransport ReadTransport WriteTransport Transport"

describe("the protocol base classes", function()
  it("hold Python's no-op defaults, inherited through __index", function()
    local P = setmetatable({}, { __index = asyncio.Protocol })
    for _, name in ipairs { "connection_made", "connection_lost", "pause_writing", "resume_writing",
                            "data_received", "eof_received" } do
      assert.is_function(P[name], name)
      assert.is_nil(P[name](P))
    end
    local D = setmetatable({}, { __index = asyncio.DatagramProtocol })
    assert.is_function(D.datagram_received)
    assert.is_function(D.error_received)
    assert.is_function(D.connection_made)
    local S = setmetatable({}, asyncio.SubprocessProtocol) -- the class is also a metatable
    assert.is_function(S.pipe_data_received)
    assert.is_function(S.pipe_connection_lost)
    assert.is_function(S.process_exited)
    assert.is_nil(rawget(asyncio.Protocol, "datagram_received"))
  end)

  it("a TCP echo whose protocols define only data_received", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local Echo = setmetatable({}, { __index = asyncio.Protocol })
      Echo.__index = Echo
      function Echo:connection_made(tp) self.tp = tp end
      function Echo:data_received(data) self.tp:write(data) end
      local server = loop:create_server(function() return setmetatable({}, Echo) end, "127.0.0.1", 0)
      local got, lost = {}, loop:create_future()
      local Client = setmetatable({
        data_received = function(_, data) got[#got + 1] = data end,
        connection_lost = function(_, exc) lost:set_result(exc) end,
      }, { __index = asyncio.Protocol })
      local tp, proto = loop:create_connection(function() return Client end, "127.0.0.1", port_of(server))
      assert.equal(Client, proto)
      tp:write("ping")
      helper.wait_until(function() return table.concat(got) == "ping" end, 5)
      tp:write_eof() -- the server's inherited eof_received returns nil: it closes
      assert.is_nil(lost:await())
      assert.is_true(isinstance(proto, asyncio.Protocol))
      assert.is_true(isinstance(proto, asyncio.BaseProtocol))
      assert.is_false(isinstance(proto, asyncio.DatagramProtocol))
      server:close()
      server:wait_closed()
    end)
  end)

  it("a datagram protocol with only datagram_received", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local got = loop:create_future()
      local P = setmetatable({ datagram_received = function(_, data) got:set_result(data) end },
        { __index = asyncio.DatagramProtocol })
      local rx = loop:create_datagram_endpoint(function() return P end, { local_addr = { "127.0.0.1", 0 } })
      local tx = loop:create_datagram_endpoint(function() return setmetatable({}, asyncio.DatagramProtocol) end,
        { remote_addr = rx:get_extra_info("sockname") })
      tx:sendto("dgram")
      assert.equal("dgram", got:await())
      assert.equal("BaseTransport DatagramTransport", kinds(tx))
      tx:close()
      rx:close()
    end)
  end)

  it("a subprocess protocol with only process_exited", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local exited = loop:create_future()
      local P = setmetatable({ process_exited = function() exited:set_result(true) end },
        { __index = asyncio.SubprocessProtocol })
      local tr = loop:subprocess_exec(function() return P end, { "sh", "-c", "echo out; echo err >&2" },
        { stdout = asyncio.subprocess.PIPE, stderr = asyncio.subprocess.PIPE })
      assert.is_true(exited:await())
      assert.equal("BaseTransport SubprocessTransport", kinds(tr))
      tr:close()
    end)
  end)
end)

describe("the runtime's objects are instances of Python's classes", function()
  it("TCP, Unix and TLS transports are Transports, pipes one direction", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(function() return {} end, "127.0.0.1", 0)
      local tcp = loop:create_connection(function() return {} end, "127.0.0.1", port_of(server))
      assert.equal(STREAM, kinds(tcp))
      tcp:close()
      assert.equal(STREAM, kinds(tcp)) -- still one once closed
      assert.is_true(isinstance(server, asyncio.AbstractServer))
      assert.is_true(isinstance(server, asyncio.Server))
      server:close()
      local a, b = asyncio.socketpair()
      local unix = loop:create_connection(function() return {} end, nil, nil, { sock = a })
      assert.equal(STREAM, kinds(unix))
      unix:close()
      asyncio.socket.close(b)

      local sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      sctx:load_cert_chain(certs.server_cert, certs.server_key)
      local cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
      cctx:load_verify_locations(certs.ca)
      local tls_server = loop:create_server(function() return {} end, "127.0.0.1", 0, { ssl = sctx })
      local tls = loop:create_connection(function() return {} end, "127.0.0.1", port_of(tls_server),
        { ssl = cctx, server_hostname = "localhost" })
      assert.equal(STREAM, kinds(tls))
      tls:close()
      tls_server:close()

      local r = io.popen("true", "r")
      local rp = loop:connect_read_pipe(function() return {} end, r)
      assert.equal("BaseTransport ReadTransport", kinds(rp))
      rp:close()
      r:close()
      local w = io.popen("cat > /dev/null", "w")
      local wp = loop:connect_write_pipe(function() return {} end, w)
      assert.equal("BaseTransport WriteTransport", kinds(wp))
      wp:close()
      w:close()
    end)
  end)

  it("loops, futures, tasks, handles, readers and writers", function()
    run(function()
      local loop = asyncio.get_running_loop()
      assert.is_true(isinstance(loop, asyncio.AbstractEventLoop))
      assert.is_true(isinstance(loop, asyncio.EventLoop))
      assert.equal(asyncio.Loop, asyncio.EventLoop)
      local f, t = loop:create_future(), asyncio.current_task()
      assert.is_true(isinstance(f, asyncio.Future))
      assert.is_false(isinstance(f, asyncio.Task))
      assert.is_true(isinstance(t, asyncio.Task))
      assert.is_true(isinstance(t, asyncio.Future))
      local h, th = loop:call_soon(print), loop:call_later(10, print)
      assert.is_true(isinstance(h, asyncio.Handle))
      assert.is_false(isinstance(h, asyncio.TimerHandle))
      assert.is_true(isinstance(th, asyncio.TimerHandle))
      assert.is_true(isinstance(th, asyncio.Handle))
      h:cancel()
      th:cancel()
      assert.is_true(isinstance(asyncio.Event(), asyncio.Event))
      assert.is_false(isinstance(asyncio.Event(), asyncio.Future))
      local server = asyncio.start_server(function(_, w) w:close() end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      assert.is_true(isinstance(reader, asyncio.StreamReader))
      assert.is_true(isinstance(writer, asyncio.StreamWriter))
      assert.equal(STREAM, kinds(writer.transport))
      assert.is_false(isinstance(writer, asyncio.Transport))
      writer:close()
      server:close()
      local tm = asyncio.timeout(5)
      assert.is_true(isinstance(tm, asyncio.Timeout))
      tm:__close()
      local tm2 = asyncio.Timeout(loop:time() + 5)
      assert.is_true(isinstance(tm2, asyncio.Timeout))
      assert.equal(math.type(tm2:when()), "float")
      tm2:__close()
    end)
  end)

  it("error objects as before, and values that are instances of nothing", function()
    assert.is_true(isinstance(asyncio.ConnectionResetError("x"), asyncio.OSError))
    assert.is_false(isinstance(asyncio.ValueError("x"), asyncio.OSError))
    assert.is_true(isinstance(asyncio.NotImplementedError("x"), asyncio.RuntimeError))
    for _, v in ipairs { "str", 1, true, print, coroutine.create(print), {}, setmetatable({}, {}) } do
      assert.is_false(isinstance(v, asyncio.Protocol), tostring(v))
      assert.is_false(isinstance(v, asyncio.Exception), tostring(v))
    end
    assert.is_false(isinstance({}, "Protocol"))
    assert.is_false(isinstance({}, nil))
    -- a cycle of __index tables ends
    local a, b = {}, {}
    setmetatable(a, { __index = b })
    setmetatable(b, { __index = a })
    assert.is_false(isinstance(setmetatable({}, { __index = a }), asyncio.Protocol))
  end)
end)

describe("the abstract classes", function()
  it("raise NotImplementedError for what a subclass must define", function()
    local T = setmetatable({}, { __index = asyncio.Transport })
    for _, name in ipairs { "close", "is_closing", "write", "pause_reading", "abort", "get_protocol" } do
      local ok, e = pcall(T[name], T)
      assert.is_false(ok, name)
      helper.assert_class(asyncio.NotImplementedError, e)
      assert.matches(name, e.message)
    end
    local S = setmetatable({}, { __index = asyncio.AbstractServer })
    helper.assert_class(asyncio.NotImplementedError, helper.err_of(S.serve_forever, S))
    local L = setmetatable({}, { __index = asyncio.AbstractEventLoop })
    helper.assert_class(asyncio.NotImplementedError, helper.err_of(L.run_forever, L))
    local D = setmetatable({}, { __index = asyncio.DatagramTransport })
    helper.assert_class(asyncio.NotImplementedError, helper.err_of(D.sendto, D, "x"))
  end)

  it("a user's transport inherits writelines and get_extra_info", function()
    local written = {}
    local T = setmetatable({ _extra = { peername = { "h", 1 } } }, { __index = asyncio.Transport })
    function T:write(data) written[#written + 1] = data end
    T:writelines { "a", "b", "c" }
    assert.same({ "abc" }, written)
    assert.same({ "h", 1 }, T:get_extra_info("peername"))
    assert.equal("dflt", T:get_extra_info("sockname", "dflt"))
    assert.is_true(isinstance(T, asyncio.Transport))
    assert.is_true(isinstance(T, asyncio.WriteTransport))
    assert.is_true(isinstance(T, asyncio.ReadTransport))
    assert.is_false(isinstance(T, asyncio.DatagramTransport))
  end)
end)
