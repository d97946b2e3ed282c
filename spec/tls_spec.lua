-- TLS (asyncio.ssl): contexts, TLS streams and transports, start_tls,
-- verification failures, half-close, timeouts, abrupt EOF, load and leaks.
-- Loopback only; the certificates come from spec/support/tlscerts.lua (a
-- throwaway PKI made with the openssl CLI). Interop with programs written
-- elsewhere (openssl s_server/s_client, Python's ssl, curl) is in
-- tls_interop_spec.lua.
local asyncio = require "asyncio"
local ssl = require "asyncio.ssl"
local helper = require "helper"
local certs = require "tlscerts"

local run, vrun = helper.run, helper.vrun
local wait_for, open_fds = helper.wait_until, helper.open_fds

local function port_of(server)
  return server.sockets[1]:getsockname()[2]
end

local function server_ctx(cert, key)
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx:load_cert_chain(cert or certs.server_cert, key or certs.server_key)
  return ctx
end

-- verifies peers against `cafile` (default: the test CA), no system store
local function client_ctx(cafile)
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  ctx:load_verify_locations(cafile or certs.ca)
  return ctx
end

-- accepts any certificate
local function insecure_ctx()
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  ctx.check_hostname = false
  ctx.verify_mode = ssl.CERT_NONE
  return ctx
end

local echo = helper.stream_echo_quiet

-- a TLS stream echo server on 127.0.0.1; returns server, port
local function tls_echo_server(ctx, opts)
  opts = opts or {}
  opts.ssl = ctx or server_ctx()
  local server = asyncio.start_server(echo, "127.0.0.1", 0, opts)
  return server, port_of(server)
end

-- open_connection to 127.0.0.1:port over TLS; server_hostname "localhost"
-- unless opts says otherwise
local function connect(port, ctx, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.ssl == nil then o.ssl = ctx or client_ctx() end
  if o.server_hostname == nil then o.server_hostname = "localhost" end
  return asyncio.open_connection("127.0.0.1", port, o)
end

-- records every context the loop's exception handler gets
local function record_exceptions()
  local contexts = {}
  asyncio.get_running_loop():set_exception_handler(function(_, ctx) contexts[#contexts + 1] = ctx end)
  return contexts
end

local function close_both(writer, server)
  writer:close()
  pcall(writer.wait_closed, writer)
  server:close()
  server:wait_closed()
end

local recorder = helper.recorder

-- the message of an error object (or the string itself)
local function msg_of(e)
  if type(e) == "table" and e.message ~= nil then return tostring(e.message) end
  return tostring(e)
end

local function contains(haystack, needle)
  return tostring(haystack):find(needle, 1, true) ~= nil
end

-- the error an open_connection to a TLS server raises
local function connect_error(port, ctx, opts)
  return helper.err_of(connect, port, ctx, opts)
end

-- the descriptor limit of this process
local function fd_limit()
  local p = io.popen("ulimit -n")
  local s = p:read("l")
  p:close()
  return tonumber(s) or 1e6
end

-- keeps polling pred (with full collections) for at most `secs`; the caller
-- asserts afterwards, so a failure shows the values
local function settle(pred, secs)
  local loop = asyncio.get_running_loop()
  local deadline = loop:time() + (secs or 2)
  repeat
    helper.gc()
    if pred() then return true end
    asyncio.sleep(0.01)
  until loop:time() > deadline
  return false
end

-- pcall that lets a CancelledError through, so helper.within still sees its timeout
local function try(fn, ...)
  local res = table.pack(pcall(fn, ...))
  if not res[1] and asyncio.isinstance(res[2], asyncio.CancelledError) then error(res[2], 0) end
  return table.unpack(res, 1, res.n)
end

local function registry_size()
  helper.gc()
  local n = 0
  for _ in pairs(debug.getregistry()) do n = n + 1 end
  return n
end

-- A TCP proxy in front of 127.0.0.1:target (plain bytes both ways), for
-- the tests that need a misbehaving peer under a TLS connection:
--   px.port            where clients connect
--   px.hold = true     bytes from the client are kept back (not forwarded)
--   px:release()       forwards what was kept back and stops holding
--   px:cut()           closes every client-side TCP connection (a FIN, no
--                      close_notify), after flushing what was forwarded
--   px:close()
local function tcp_proxy(target_port)
  local px = { hold = false, queue = {}, conns = {}, tasks = {} }
  px.server = asyncio.start_server(function(creader, cwriter)
    local ok, sreader, swriter = pcall(asyncio.open_connection, "127.0.0.1", target_port)
    if not ok then
      cwriter:close()
      return
    end
    local c = { cwriter = cwriter, swriter = swriter }
    px.conns[#px.conns + 1] = c
    -- server -> client
    px.tasks[#px.tasks + 1] = asyncio.create_task(function()
      while true do
        local rok, d = pcall(sreader.read, sreader, 65536)
        if not rok or d == "" or c.cut then break end
        cwriter:write(d)
      end
      cwriter:close()
    end)
    -- client -> server
    while true do
      local rok, d = pcall(creader.read, creader, 65536)
      if not rok or d == "" then break end
      if px.hold then
        px.queue[#px.queue + 1] = { swriter, d }
      else
        swriter:write(d)
      end
    end
    swriter:close()
  end, "127.0.0.1", 0)
  px.port = port_of(px.server)
  function px.release()
    px.hold = false
    for _, item in ipairs(px.queue) do item[1]:write(item[2]) end
    px.queue = {}
  end
  function px.cut()
    for _, c in ipairs(px.conns) do
      c.cut = true
      c.cwriter:close()
    end
  end
  function px.close()
    for _, c in ipairs(px.conns) do
      c.cwriter.transport:abort()
      c.swriter.transport:abort()
    end
    for _, t in ipairs(px.tasks) do t:cancel() end
    px.server:close()
  end
  return px
end

---------------------------------------------------------------------------

describe("asyncio.ssl contexts", function()
  it("exposes the constants, error classes and module as specified", function()
    assert.equal(ssl, asyncio.ssl)
    assert.equal(0, ssl.CERT_NONE)
    assert.equal(1, ssl.CERT_OPTIONAL)
    assert.equal(2, ssl.CERT_REQUIRED)
    assert.equal(0x0303, ssl.TLSVersion.TLSv1_2)
    assert.equal(0x0304, ssl.TLSVersion.TLSv1_3)
    assert.is_not_nil(ssl.TLSVersion.MINIMUM_SUPPORTED)
    assert.is_not_nil(ssl.TLSVersion.MAXIMUM_SUPPORTED)
    assert.equal("client", ssl.Purpose.SERVER_AUTH)
    assert.equal("server", ssl.Purpose.CLIENT_AUTH)
    assert.equal("client", ssl.PROTOCOL_TLS_CLIENT)
    assert.equal("server", ssl.PROTOCOL_TLS_SERVER)
    for _, name in ipairs { "SSLError", "SSLCertVerificationError", "SSLEOFError", "SSLZeroReturnError" } do
      assert.is_not_nil(ssl[name], name)
      assert.equal(ssl[name], asyncio[name], name)
    end
    local e = ssl.SSLCertVerificationError("bad cert")
    assert.is_true(asyncio.isinstance(e, ssl.SSLError))
    assert.is_true(asyncio.isinstance(e, asyncio.OSError))
    assert.is_true(asyncio.isinstance(ssl.SSLEOFError("eof"), ssl.SSLError))
    assert.is_true(asyncio.isinstance(ssl.SSLZeroReturnError("zero"), ssl.SSLError))
    assert.is_false(asyncio.isinstance(ssl.SSLError("x"), ssl.SSLCertVerificationError))
    assert.equal("SSLError: boom", tostring(ssl.SSLError("boom")))
  end)

  it("create_default_context and SSLContext defaults follow Python", function()
    local c = ssl.create_default_context()
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    assert.is_true(c.check_hostname)
    assert.equal(ssl.TLSVersion.TLSv1_2, c.minimum_version)
    assert.equal(ssl.TLSVersion.MAXIMUM_SUPPORTED, c.maximum_version)
    local c2 = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    assert.equal(ssl.CERT_REQUIRED, c2.verify_mode)
    assert.is_true(c2.check_hostname)
    local s = ssl.create_default_context("server")
    assert.equal(ssl.CERT_NONE, s.verify_mode)
    assert.is_false(s.check_hostname)
    local s2 = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert.equal(ssl.CERT_NONE, s2.verify_mode)
    assert.is_false(s2.check_hostname)
    local pc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert.equal(ssl.CERT_REQUIRED, pc.verify_mode)
    assert.is_true(pc.check_hostname)
    local ps = ssl.SSLContext("server")
    assert.equal(ssl.CERT_NONE, ps.verify_mode)
    assert.is_false(ps.check_hostname)
    -- loading the system store again is allowed
    pc:load_default_certs()
  end)

  it("verify_mode and check_hostname keep Python's rules", function()
    local c = ssl.SSLContext("client")
    local err = helper.err_of(function() c.verify_mode = ssl.CERT_NONE end)
    helper.assert_class(asyncio.ValueError, err)
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    assert.is_true(c.check_hostname)
    -- CERT_OPTIONAL is fine with check_hostname
    c.verify_mode = ssl.CERT_OPTIONAL
    assert.equal(ssl.CERT_OPTIONAL, c.verify_mode)
    c.check_hostname = false
    assert.is_false(c.check_hostname)
    assert.equal(ssl.CERT_OPTIONAL, c.verify_mode)
    c.verify_mode = ssl.CERT_NONE
    assert.equal(ssl.CERT_NONE, c.verify_mode)
    -- check_hostname on a CERT_NONE context switches it to CERT_REQUIRED
    c.check_hostname = true
    assert.is_true(c.check_hostname)
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
    -- a server context may ask for client certificates
    local s = ssl.SSLContext("server")
    s.verify_mode = ssl.CERT_REQUIRED
    assert.equal(ssl.CERT_REQUIRED, s.verify_mode)
    s.verify_mode = ssl.CERT_OPTIONAL
    assert.equal(ssl.CERT_OPTIONAL, s.verify_mode)
    -- invalid values are refused and change nothing
    assert.has_error(function() c.verify_mode = 3 end)
    assert.has_error(function() c.verify_mode = -1 end)
    assert.has_error(function() c.verify_mode = "required" end)
    assert.has_error(function() c.verify_mode = {} end)
    assert.equal(ssl.CERT_REQUIRED, c.verify_mode)
  end)

  it("minimum_version and maximum_version read back what was set", function()
    local c = ssl.SSLContext("client")
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    assert.equal(ssl.TLSVersion.TLSv1_3, c.minimum_version)
    c.minimum_version = ssl.TLSVersion.TLSv1_2
    assert.equal(ssl.TLSVersion.TLSv1_2, c.minimum_version)
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    assert.equal(ssl.TLSVersion.TLSv1_2, c.maximum_version)
    c.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert.equal(ssl.TLSVersion.MAXIMUM_SUPPORTED, c.maximum_version)
    c.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert.has_error(function() c.minimum_version = 0x9999 end)
    assert.has_error(function() c.minimum_version = "TLSv1_3" end)
    assert.has_error(function() c.maximum_version = {} end)
  end)

  it("load_cert_chain: PEM pairs, one combined file, encrypted keys with a password or a callback", function()
    local c = ssl.SSLContext("server")
    c:load_cert_chain(certs.server_cert, certs.server_key)
    c:load_cert_chain(certs.server_combined)
    c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, "secret")
    local calls = 0
    c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, function()
      calls = calls + 1
      return "secret"
    end)
    assert.is_true(calls >= 1, "the password callback was not called")
    -- a server loaded from the encrypted key serves
    run(function()
      local server, port = tls_echo_server(c)
      local reader, writer = connect(port)
      writer:write("through an encrypted key\n")
      assert.equal("through an encrypted key\n", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("load_cert_chain failures raise SSLError naming the file", function()
    local function fails(...)
      local c = ssl.SSLContext("server")
      local err = helper.err_of(c.load_cert_chain, c, ...)
      helper.assert_class(ssl.SSLError, err)
      helper.assert_class(asyncio.OSError, err)
      return err
    end
    local e = fails(certs.missing, certs.server_key)
    assert.is_true(contains(msg_of(e), certs.missing), msg_of(e))
    e = fails(certs.server_cert, certs.missing)
    assert.is_true(contains(msg_of(e), certs.missing), msg_of(e))
    e = fails(certs.garbage, certs.server_key)
    assert.is_true(contains(msg_of(e), certs.garbage), msg_of(e))
    e = fails(certs.server_cert, certs.garbage)
    assert.is_true(contains(msg_of(e), certs.garbage), msg_of(e))
    e = fails(certs.server_cert, certs.server_key_encrypted, "not the password")
    assert.is_true(contains(msg_of(e), certs.server_key_encrypted), msg_of(e))
    e = fails(certs.server_cert, certs.server_key_encrypted, function() return "still wrong" end)
    assert.is_true(contains(msg_of(e), certs.server_key_encrypted), msg_of(e))
    -- a key that does not belong to the certificate
    e = fails(certs.server_cert, certs.wrong_key)
    assert.is_true(contains(msg_of(e), certs.server_cert) or contains(msg_of(e), certs.wrong_key), msg_of(e))
    -- a certificate file without a key, and no keyfile
    e = fails(certs.server_cert)
    assert.is_true(contains(msg_of(e), certs.server_cert), msg_of(e))
  end)

  it("an encrypted key without a password fails without prompting", function()
    -- in a child without a controlling terminal or stdin: a prompt would hang there, not here
    local script = ([[
      local asyncio = require "asyncio"
      local ssl = require "asyncio.ssl"
      local c = ssl.SSLContext("server")
      local ok, e = pcall(c.load_cert_chain, c, %q, %q)
      io.write(ok and "loaded" or (asyncio.isinstance(e, ssl.SSLError) and "SSLError" or ("other: " .. tostring(e))))
    ]]):format(certs.server_cert, certs.server_key_encrypted)
    local exe = "/proc/" .. helper.pid() .. "/exe"
    -- timeout and setsid run outside the asan pass's preload; the interpreter keeps it
    local keep = {}
    for _, name in ipairs { "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" } do
      local v = os.getenv(name)
      if v then keep[#keep + 1] = name .. "='" .. v:gsub("'", "'\\''") .. "'" end
    end
    local errfile = os.tmpname()
    local p = assert(io.popen(("%stimeout 10 setsid env %s %s -e %q </dev/null 2>%s")
      :format(certs.env, table.concat(keep, " "), exe, script, errfile)))
    local out = p:read("a")
    p:close()
    local f = io.open(errfile)
    local err = f and f:read("a") or ""
    if f then f:close() end
    os.remove(errfile)
    assert.equal("SSLError", out, err)
  end)

  it("load_verify_locations: cafile, capath, cadata; bad input raises", function()
    run(function()
      record_exceptions()
      local server, port = tls_echo_server()
      local by_path = ssl.SSLContext("client")
      by_path:load_verify_locations(nil, certs.capath)
      local by_data = ssl.SSLContext("client")
      by_data:load_verify_locations(nil, nil, certs.read(certs.ca))
      for _, ctx in ipairs { client_ctx(), by_path, by_data } do
        local reader, writer = connect(port, ctx)
        writer:write("verified\n")
        assert.equal("verified\n", reader:readline())
        writer:close()
        pcall(writer.wait_closed, writer)
      end
      -- nothing loaded: the test CA is unknown
      local err = connect_error(port, ssl.SSLContext("client"))
      helper.assert_class(ssl.SSLCertVerificationError, err)
      server:close()
      server:wait_closed()
    end)
    local c = ssl.SSLContext("client")
    helper.assert_class(asyncio.OSError, helper.err_of(c.load_verify_locations, c, certs.missing))
    helper.assert_class(ssl.SSLError, helper.err_of(c.load_verify_locations, c, certs.garbage))
    helper.assert_class(ssl.SSLError, helper.err_of(c.load_verify_locations, c, nil, nil, "no PEM in here"))
    assert.has_error(function() c:load_verify_locations() end)
  end)

  it("set_ciphers and set_alpn_protocols check their input", function()
    local c = ssl.SSLContext("client")
    c:set_ciphers("ECDHE+AESGCM")
    helper.assert_class(ssl.SSLError, helper.err_of(c.set_ciphers, c, "NO-SUCH-CIPHER"))
    c:set_alpn_protocols { "h2", "http/1.1" }
    c:set_alpn_protocols {}
    assert.has_error(function() c:set_alpn_protocols("h2") end)
    assert.has_error(function() c:set_alpn_protocols() end)
    assert.has_error(function() c:set_alpn_protocols { "" } end)
    assert.has_error(function() c:set_alpn_protocols { string.rep("x", 256) } end)
    assert.has_error(function() c:set_alpn_protocols { {} } end)
    assert.has_error(function() c:set_alpn_protocols { true } end)
  end)

  it("bad argument types raise errors, never crash", function()
    assert.has_error(function() ssl.SSLContext("bogus") end)
    assert.has_error(function() ssl.SSLContext({}) end)
    assert.has_error(function() ssl.create_default_context("bogus") end)
    assert.has_error(function() ssl.create_default_context({}) end)
    local c = ssl.SSLContext("server")
    assert.has_error(function() c:load_cert_chain() end)
    assert.has_error(function() c:load_cert_chain(nil, certs.server_key) end)
    assert.has_error(function() c:load_cert_chain({}, certs.server_key) end)
    assert.has_error(function() c:load_cert_chain(certs.server_cert, {}) end)
    assert.has_error(function() c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, {}) end)
    assert.has_error(function() c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, true) end)
    assert.has_error(function()
      c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, function() return {} end)
    end)
    assert.has_error(function()
      c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, function() return nil end)
    end)
    assert.has_error(function()
      c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, string.rep("p", 100000))
    end)
    assert.has_error(function()
      c:load_cert_chain(certs.server_cert, certs.server_key_encrypted, function() return string.rep("p", 100000) end)
    end)
    -- an error raised by the password callback propagates
    local err = helper.err_of(c.load_cert_chain, c, certs.server_cert, certs.server_key_encrypted,
      function() error("no password for you") end)
    assert.is_true(contains(err, "no password for you") or contains(msg_of(err), "no password for you"),
      tostring(err))
    -- wrong self
    assert.has_error(function() c.load_cert_chain(nil, certs.server_cert, certs.server_key) end)
    assert.has_error(function() c.load_cert_chain({}, certs.server_cert, certs.server_key) end)
    assert.has_error(function() c.load_verify_locations("x", certs.ca) end)
    assert.has_error(function() c.set_ciphers(42, "ECDHE+AESGCM") end)
    assert.has_error(function() c.set_alpn_protocols(io.stdout, { "h2" }) end)
    assert.has_error(function() c:load_verify_locations({}) end)
    assert.has_error(function() c:load_verify_locations(nil, nil, {}) end)
    assert.has_error(function() c:set_ciphers() end)
    assert.has_error(function() c:set_ciphers({}) end)
    -- a callback that tries to yield: an error (or a load), not a crash
    run(function()
      pcall(c.load_cert_chain, c, certs.server_cert, certs.server_key_encrypted, function()
        asyncio.sleep(0)
        return "secret"
      end)
    end)
    -- the context still works after all that
    c:load_cert_chain(certs.server_cert, certs.server_key)
    -- many contexts collected
    for _ = 1, 200 do ssl.SSLContext("client") end
    helper.gc()
  end)

  it("connection options: ssl must be a context or true; TLS-only options need ssl", function()
    run(function()
      local plain = asyncio.start_server(echo, "127.0.0.1", 0)
      local port = port_of(plain)
      local loop = asyncio.get_running_loop()
      assert.has_error(function() asyncio.open_connection("127.0.0.1", port, { ssl = 42 }) end)
      assert.has_error(function() asyncio.open_connection("127.0.0.1", port, { ssl = "yes" }) end)
      assert.has_error(function() asyncio.open_connection("127.0.0.1", port, { ssl = {} }) end)
      assert.has_error(function() loop:create_connection(recorder, "127.0.0.1", port, { ssl = 42 }) end)
      assert.has_error(function() asyncio.start_server(echo, "127.0.0.1", 0, { ssl = 42 }) end)
      assert.has_error(function() asyncio.start_server(echo, "127.0.0.1", 0, { ssl = true }) end)
      assert.has_error(function() loop:create_server(recorder, "127.0.0.1", 0, { ssl = {} }) end)
      -- as Python: these are only meaningful with ssl
      helper.assert_class(asyncio.ValueError, helper.err_of(asyncio.open_connection, "127.0.0.1", port,
        { server_hostname = "localhost" }))
      helper.assert_class(asyncio.ValueError, helper.err_of(asyncio.open_connection, "127.0.0.1", port,
        { ssl_handshake_timeout = 5 }))
      helper.assert_class(asyncio.ValueError, helper.err_of(loop.create_connection, loop, recorder,
        "127.0.0.1", port, { ssl_shutdown_timeout = 5 }))
      helper.assert_class(asyncio.ValueError, helper.err_of(asyncio.start_server, echo, "127.0.0.1", 0,
        { ssl_handshake_timeout = 5 }))
      -- timeouts must be positive
      helper.assert_class(asyncio.ValueError, helper.err_of(connect, port, nil, { ssl_handshake_timeout = 0 }))
      helper.assert_class(asyncio.ValueError, helper.err_of(connect, port, nil, { ssl_handshake_timeout = -1 }))
      helper.assert_class(asyncio.ValueError, helper.err_of(connect, port, nil, { ssl_shutdown_timeout = -1 }))
      assert.has_error(function() connect(port, nil, { ssl_handshake_timeout = "soon" }) end)
      assert.has_error(function() connect(port, nil, { server_hostname = {} }) end)
      -- a NUL would cut the name OpenSSL checks short; an overlong name is no name
      helper.assert_class(asyncio.ValueError, helper.err_of(connect, port, nil, { server_hostname = "localhost\0.evil" }))
      helper.assert_class(asyncio.ValueError, helper.err_of(connect, port, nil, { server_hostname = string.rep("a", 300) }))
      plain:close()
      plain:wait_closed()
    end)
  end)
end)

---------------------------------------------------------------------------

describe("TLS streams", function()
  it("echo: open_connection + start_server; the callback runs after the handshake", function()
    run(function()
      local contexts = record_exceptions()
      local sctx, cctx = server_ctx(), client_ctx()
      local seen = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        local so = writer:get_extra_info("ssl_object")
        seen:set_result { so ~= nil, so and so:version(), so and so:cipher(), writer:get_extra_info("sslcontext") }
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = sctx })
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server),
        { ssl = cctx, server_hostname = "localhost" })
      -- returned after the handshake
      local so = writer:get_extra_info("ssl_object")
      assert.is_not_nil(so)
      assert.equal("TLSv1.3", so:version())
      assert.is_table(so:cipher())
      writer:write("hello TLS\n")
      assert.equal("hello TLS\n", reader:readline())
      writer:writelines { "a", "b", "c\n" }
      assert.equal("abc\n", reader:readline())
      writer:write("")
      local big = string.rep("z", 100000) .. "\n"
      writer:write(big)
      assert.is_true(reader:readexactly(#big) == big)
      local info = seen:await()
      assert.is_true(info[1])
      assert.equal("TLSv1.3", info[2])
      assert.is_table(info[3])
      assert.equal(sctx, info[4])
      close_both(writer, server)
      assert.same({}, contexts)
    end)
  end)

  it("echo through protocols: create_server + create_connection", function()
    run(function()
      local contexts = record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local sp, made_after_handshake
      local server = loop:create_server(function()
        sp = recorder {
          made = function(_, t)
            local so = t:get_extra_info("ssl_object")
            made_after_handshake = so ~= nil and so:cipher() ~= nil
          end,
          data = function(self, d) self.transport:write(d) end,
        }
        return sp
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local client_made_ok
      local tp, p = loop:create_connection(function()
        return recorder {
          made = function(_, t)
            local so = t:get_extra_info("ssl_object")
            client_made_ok = so ~= nil and so:cipher() ~= nil
          end,
        }
      end, "127.0.0.1", port, { ssl = client_ctx(), server_hostname = "localhost" })
      assert.equal(1, p.made)
      assert.equal(tp, p.transport)
      assert.equal(p, tp:get_protocol())
      assert.is_true(client_made_ok)
      assert.is_true(tp:can_write_eof())
      -- writes of awkward sizes around the 16 KiB record size
      local sizes = { 1, 2, 16383, 16384, 16385, 65536, 1024 * 1024 + 3, 7 }
      local want = {}
      for i, n in ipairs(sizes) do
        local chunk = string.rep(string.char(64 + i), n)
        want[#want + 1] = chunk
        tp:write(chunk)
      end
      tp:writelines { "x", "y", "z" }
      want = table.concat(want) .. "xyz"
      wait_for(function() return #p:text() >= #want end)
      assert.is_true(p:text() == want, "the echo differs")
      assert.is_true(made_after_handshake)
      tp:close()
      assert.is_true(tp:is_closing())
      assert.is_nil(p.lost_fut:await())
      assert.equal(1, p.lost)
      assert.equal("made", p.events[1])
      assert.equal("lost", p.events[#p.events])
      -- the server saw the close_notify as EOF, then lost the connection cleanly
      wait_for(function() return sp.lost == 1 end)
      assert.same({ "made", "eof", "lost" }, sp.events)
      assert.is_nil(sp.err)
      server:close()
      server:wait_closed()
      assert.same({}, contexts)
    end)
  end)

  it("carries 64 MiB both ways intact", function()
    run(function()
      local server, port = tls_echo_server()
      local parts = {}
      for i = 1, 1024 do parts[i] = string.rep(string.char(i % 251), 65536 - 7) .. ("%07d"):format(i) end
      local payload = table.concat(parts)
      assert.equal(64 * 1024 * 1024, #payload)
      local reader, writer = connect(port)
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
      for _, i in ipairs { 1, 2, 511, 512, 1023, 1024 } do
        local from = (i - 1) * 65536 + 1
        assert.equal(parts[i], back:sub(from, from + 65535), "block " .. i)
      end
      assert.is_true(back == payload, "the echo differs from the payload")
      close_both(writer, server)
    end, 60)
  end)

  it("flow control: a paused peer stalls the writer; pause_writing and resume_writing", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local sp
      local server = loop:create_server(function()
        sp = recorder { made = function(_, t) t:pause_reading() end }
        return sp
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port_of(server),
        { ssl = client_ctx(), server_hostname = "localhost" })
      assert.same({ 16384, 65536 }, { tp:get_write_buffer_limits() })
      tp:set_write_buffer_limits(100000)
      assert.same({ 25000, 100000 }, { tp:get_write_buffer_limits() })
      tp:set_write_buffer_limits()
      local chunk = string.rep("y", 65536)
      local written = 0
      while p.events[#p.events] ~= "pause" do
        tp:write(chunk)
        written = written + #chunk
        assert.is_true(written < 64 * 1024 * 1024, "never paused: the paused peer buffers without bound")
        asyncio.sleep(0)
      end
      local size = tp:get_write_buffer_size()
      assert.is_true(size > 65536, "buffer " .. size)
      assert.is_true(size <= 8 * 65536, "buffer grew to " .. size)
      wait_for(function() return sp and sp.transport end)
      assert.is_false(sp.transport:is_reading())
      local before = #sp:text()
      asyncio.sleep(0.05)
      assert.equal(before, #sp:text())
      sp.transport:resume_reading()
      assert.is_true(sp.transport:is_reading())
      wait_for(function() return p.events[#p.events] == "resume" end)
      wait_for(function() return #sp:text() == written end)
      assert.is_true(tp:get_write_buffer_size() <= 16384)
      tp:close()
      p.lost_fut:await()
      server:close()
      server:wait_closed()
    end, 30)
  end)

  it("set_protocol on a TLS transport switches where data goes", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local server = loop:create_server(function()
        return recorder { data = function(self, d) self.transport:write(d) end }
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local tp, p1 = loop:create_connection(recorder, "127.0.0.1", port_of(server),
        { ssl = client_ctx(), server_hostname = "localhost" })
      tp:write("to p1")
      wait_for(function() return p1:text() == "to p1" end)
      local p2 = recorder()
      tp:set_protocol(p2)
      assert.equal(p2, tp:get_protocol())
      tp:write("to p2")
      wait_for(function() return p2:text() == "to p2" end)
      assert.equal("to p1", p1:text())
      tp:close()
      p2.lost_fut:await()
      server:close()
      server:wait_closed()
    end)
  end)

  it("an unknown CA: SSLCertVerificationError with verify_code and verify_message", function()
    run(function()
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local server, port = tls_echo_server(server_ctx(certs.other_cert, certs.other_key))
      local err = connect_error(port)
      helper.assert_class(ssl.SSLCertVerificationError, err)
      helper.assert_class(ssl.SSLError, err)
      helper.assert_class(asyncio.OSError, err)
      assert.equal(20, err.verify_code)
      assert.equal("unable to get local issuer certificate", err.verify_message)
      assert.equal("SSL", err.library)
      assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      assert.is_true(contains(msg_of(err), "certificate verify failed"), msg_of(err))
      assert.is_true(contains(msg_of(err), err.verify_message), msg_of(err))
      -- the same through create_connection; connection_made is never called
      local made = 0
      local err2 = helper.err_of(loop.create_connection, loop, function()
        return recorder { made = function() made = made + 1 end }
      end, "127.0.0.1", port, { ssl = client_ctx(), server_hostname = "localhost" })
      helper.assert_class(ssl.SSLCertVerificationError, err2)
      assert.equal(20, err2.verify_code)
      assert.equal(0, made)
      -- ssl = true: the system store does not know the test CA either
      local err3 = helper.err_of(asyncio.open_connection, "127.0.0.1", port, { ssl = true, server_hostname = "localhost" })
      helper.assert_class(ssl.SSLCertVerificationError, err3)
      -- trusting the right CA works
      local reader, writer = connect(port, client_ctx(certs.ca2))
      writer:write("other CA\n")
      assert.equal("other CA\n", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("an expired certificate fails verification", function()
    run(function()
      record_exceptions()
      local server, port = tls_echo_server(server_ctx(certs.expired_cert, certs.expired_key))
      local err = connect_error(port)
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(10, err.verify_code)
      assert.equal("certificate has expired", err.verify_message)
      assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      server:close()
      server:wait_closed()
    end)
  end)

  it("a hostname mismatch fails verification; the right name passes", function()
    run(function()
      record_exceptions()
      local server, port = tls_echo_server(server_ctx(certs.wrong_cert, certs.wrong_key))
      local err = connect_error(port, nil, { server_hostname = "localhost" })
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(62, err.verify_code)
      assert.equal("Hostname mismatch, certificate is not valid for 'localhost'.", err.verify_message)
      assert.equal("CERTIFICATE_VERIFY_FAILED", err.reason)
      local reader, writer = connect(port, nil, { server_hostname = "wrong.example" })
      assert.equal("wrong.example", writer:get_extra_info("ssl_object").server_hostname)
      writer:write("right name\n")
      assert.equal("right name\n", reader:readline())
      close_both(writer, server)
    end)
  end)

  it("connecting by 127.0.0.1 checks the certificate's IP SAN", function()
    run(function()
      record_exceptions()
      local server, port = tls_echo_server()
      local cctx = client_ctx()
      local reader, writer = asyncio.open_connection("127.0.0.1", port, { ssl = cctx })
      writer:write("by address\n")
      assert.equal("by address\n", reader:readline())
      writer:close()
      pcall(writer.wait_closed, writer)
      -- by name too
      local reader2, writer2 = asyncio.open_connection("localhost", port, { ssl = cctx })
      writer2:write("by name\n")
      assert.equal("by name\n", reader2:readline())
      close_both(writer2, server)
      -- a certificate without that IP
      local wrong, wport = tls_echo_server(server_ctx(certs.wrong_cert, certs.wrong_key))
      local err = helper.err_of(asyncio.open_connection, "127.0.0.1", wport, { ssl = cctx })
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(64, err.verify_code)
      assert.is_true(contains(err.verify_message, "127.0.0.1"), tostring(err.verify_message))
      wrong:close()
      wrong:wait_closed()
    end)
  end)

  it("a CERT_NONE client accepts any certificate; getpeercert() is {} then", function()
    run(function()
      record_exceptions()
      for _, pair in ipairs {
        { certs.other_cert, certs.other_key },
        { certs.expired_cert, certs.expired_key },
        { certs.wrong_cert, certs.wrong_key },
        { certs.server_cert, certs.server_key },
      } do
        local server, port = tls_echo_server(server_ctx(pair[1], pair[2]))
        local reader, writer = connect(port, insecure_ctx())
        writer:write("anything goes\n")
        assert.equal("anything goes\n", reader:readline())
        local so = writer:get_extra_info("ssl_object")
        assert.same({}, so:getpeercert())
        local der = so:getpeercert(true)
        assert.is_string(der)
        assert.equal(0x30, der:byte(1)) -- a DER SEQUENCE
        if pair[1] == certs.server_cert then
          assert.equal(certs.read(certs.server_der), der)
        end
        close_both(writer, server)
      end
    end)
  end)

  it("server_hostname = '' turns off the hostname check, not the chain check", function()
    run(function()
      record_exceptions()
      local wrong, port = tls_echo_server(server_ctx(certs.wrong_cert, certs.wrong_key))
      local reader, writer = connect(port, nil, { server_hostname = "" })
      writer:write("no name\n")
      assert.equal("no name\n", reader:readline())
      close_both(writer, wrong)
      local other, oport = tls_echo_server(server_ctx(certs.other_cert, certs.other_key))
      local err = connect_error(oport, nil, { server_hostname = "" })
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(20, err.verify_code)
      other:close()
      other:wait_closed()
    end)
  end)

  it("ALPN: both sides see the protocol chosen; no overlap gives nil", function()
    run(function()
      local sctx = server_ctx()
      sctx:set_alpn_protocols { "h2", "http/1.1" }
      local server_saw = {}
      local server = asyncio.start_server(function(reader, writer)
        server_saw[#server_saw + 1] = writer:get_extra_info("ssl_object"):selected_alpn_protocol() or "none"
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local cases = {
        { { "spdy/1", "http/1.1" }, "http/1.1" },
        { { "h2" }, "h2" },
        { { "spdy/1" }, nil },
        { nil, nil },
      }
      for i, case in ipairs(cases) do
        local cctx = client_ctx()
        if case[1] then cctx:set_alpn_protocols(case[1]) end
        local reader, writer = connect(port, cctx)
        assert.equal(case[2], writer:get_extra_info("ssl_object"):selected_alpn_protocol(), "case " .. i)
        writer:write("alpn\n")
        assert.equal("alpn\n", reader:readline())
        assert.equal(case[2] or "none", server_saw[i], "server side, case " .. i)
        writer:close()
        pcall(writer.wait_closed, writer)
      end
      server:close()
      server:wait_closed()
    end)
  end)

  it("get_extra_info: ssl_object, peercert, cipher, sslcontext, peername, sockname, socket", function()
    run(function()
      local sctx, cctx = server_ctx(), client_ctx()
      local infos = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        local so = writer:get_extra_info("ssl_object")
        infos:set_result {
          server_side = so.server_side,
          peercert = writer:get_extra_info("peercert"),
          sopeercert = so:getpeercert(),
          cipher = writer:get_extra_info("cipher"),
          version = so:version(),
          sslcontext = writer:get_extra_info("sslcontext"),
          peername = writer:get_extra_info("peername"),
          sockname = writer:get_extra_info("sockname"),
        }
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local reader, writer = connect(port, cctx)
      local so = writer:get_extra_info("ssl_object")
      assert.is_false(so.server_side)
      assert.equal("localhost", so.server_hostname)
      local pc = writer:get_extra_info("peercert")
      assert.is_table(pc)
      assert.same(so:getpeercert(), pc)
      local cipher = writer:get_extra_info("cipher")
      assert.same(so:cipher(), cipher)
      assert.is_string(cipher[1])
      assert.equal("TLSv1.3", cipher[2])
      assert.is_true(math.type(cipher[3]) == "integer" and cipher[3] >= 128, tostring(cipher[3]))
      assert.equal(cctx, writer:get_extra_info("sslcontext"))
      assert.same({ "127.0.0.1", port }, writer:get_extra_info("peername"))
      local sockname = writer:get_extra_info("sockname")
      assert.equal("127.0.0.1", sockname[1])
      assert.is_true(math.type(writer:get_extra_info("socket")) == "integer")
      assert.equal("dflt", writer:get_extra_info("no such info", "dflt"))
      assert.is_nil(writer:get_extra_info("no such info"))
      assert.equal(so, writer.transport:get_extra_info("ssl_object"))
      local s = infos:await()
      assert.is_true(s.server_side)
      assert.is_nil(s.peercert) -- no client certificate was asked for
      assert.is_nil(s.sopeercert)
      assert.same(cipher, s.cipher)
      assert.equal("TLSv1.3", s.version)
      assert.equal(sctx, s.sslcontext)
      assert.same(sockname, s.peername)
      assert.same({ "127.0.0.1", port }, s.sockname)
      -- SSL object methods check self
      assert.has_error(function() so.version(nil) end)
      assert.has_error(function() so.cipher({}) end)
      assert.has_error(function() so.getpeercert(42) end)
      assert.has_error(function() so.selected_alpn_protocol("x") end)
      close_both(writer, server)
      -- after the close: answers or errors, no crash
      for _ = 1, 2 do
        helper.gc()
        pcall(so.version, so)
        pcall(so.cipher, so)
        pcall(so.getpeercert, so)
        pcall(so.getpeercert, so, true)
        pcall(so.selected_alpn_protocol, so)
        pcall(writer.get_extra_info, writer, "peercert")
        pcall(writer.get_extra_info, writer, "cipher")
      end
    end)
  end)

  it("getpeercert: Python's table shape, and the DER form", function()
    run(function()
      local server, port = tls_echo_server()
      local reader, writer = connect(port)
      local so = writer:get_extra_info("ssl_object")
      assert.same({
        subject = {
          { { "countryName", "ZZ" } },
          { { "organizationName", "lua-asyncio tests" } },
          { { "commonName", "localhost" } },
        },
        issuer = { { { "commonName", "lua-asyncio test CA" } } },
        version = 3,
        serialNumber = certs.server_serial,
        notBefore = certs.server_not_before,
        notAfter = certs.server_not_after,
        subjectAltName = { { "DNS", "localhost" }, { "IP Address", "127.0.0.1" } },
      }, so:getpeercert())
      assert.equal(certs.read(certs.server_der), so:getpeercert(true))
      writer:write("x\n")
      reader:readline()
      close_both(writer, server)
    end)
  end)

  it("mutual TLS: the server sees the client certificate; a client without one fails", function()
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      sctx.verify_mode = ssl.CERT_REQUIRED
      sctx:load_verify_locations(certs.ca)
      local seen = {}
      local server = asyncio.start_server(function(reader, writer)
        local so = writer:get_extra_info("ssl_object")
        seen[#seen + 1] = { peercert = writer:get_extra_info("peercert"), der = so:getpeercert(true) }
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local with_cert = client_ctx()
      with_cert:load_cert_chain(certs.client_cert, certs.client_key)
      local reader, writer = connect(port, with_cert)
      writer:write("it is me\n")
      assert.equal("it is me\n", reader:readline())
      assert.equal(1, #seen)
      local pc = seen[1].peercert
      assert.same({ { { "commonName", "client" } } }, pc.subject)
      assert.same({ { { "commonName", "lua-asyncio test CA" } } }, pc.issuer)
      assert.equal("5E1F2A3E", pc.serialNumber)
      assert.is_nil(pc.subjectAltName)
      assert.is_string(seen[1].der)
      writer:close()
      pcall(writer.wait_closed, writer)
      -- without a certificate: the handshake (or, in TLS 1.3, the first read) fails
      local ok, err = pcall(function()
        local r, w = connect(port, client_ctx())
        w:write("anonymous\n")
        local line = r:readline()
        w:close()
        return line
      end)
      assert.is_false(ok, "a client without a certificate was served: " .. tostring(err))
      helper.assert_class(asyncio.OSError, err)
      assert.equal(1, #seen)
      wait_for(function() return #contexts >= 1 end)
      helper.assert_class(ssl.SSLError, contexts[1].exception)
      -- CERT_OPTIONAL: no certificate is fine, and peercert is nil
      local opt = server_ctx()
      opt.verify_mode = ssl.CERT_OPTIONAL
      opt:load_verify_locations(certs.ca)
      local oseen = asyncio.get_running_loop():create_future()
      local oserver = asyncio.start_server(function(r, w)
        oseen:set_result(w:get_extra_info("peercert") == nil)
        echo(r, w)
      end, "127.0.0.1", 0, { ssl = opt })
      local r2, w2 = connect(port_of(oserver), client_ctx())
      w2:write("optional\n")
      assert.equal("optional\n", r2:readline())
      assert.is_true(oseen:await())
      close_both(w2, oserver)
      server:close()
      server:wait_closed()
    end)
  end)

  it("versions and ciphers: maximum_version, minimum_version, set_ciphers take effect", function()
    run(function()
      record_exceptions()
      local sctx = server_ctx()
      local vseen = {}
      local server = asyncio.start_server(function(reader, writer)
        vseen[#vseen + 1] = writer:get_extra_info("ssl_object"):version()
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local c12 = client_ctx()
      c12.maximum_version = ssl.TLSVersion.TLSv1_2
      local reader, writer = connect(port, c12)
      local so = writer:get_extra_info("ssl_object")
      assert.equal("TLSv1.2", so:version())
      assert.equal("TLSv1.2", so:cipher()[2])
      writer:write("v12\n")
      assert.equal("v12\n", reader:readline())
      assert.equal("TLSv1.2", vseen[1])
      writer:close()
      pcall(writer.wait_closed, writer)
      local cc = client_ctx()
      cc.maximum_version = ssl.TLSVersion.TLSv1_2
      cc:set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
      reader, writer = connect(port, cc)
      local cipher = writer:get_extra_info("cipher")
      assert.equal("ECDHE-ECDSA-AES128-GCM-SHA256", cipher[1])
      assert.equal(128, cipher[3])
      writer:close()
      pcall(writer.wait_closed, writer)
      local c13 = client_ctx()
      c13.minimum_version = ssl.TLSVersion.TLSv1_3
      reader, writer = connect(port, c13)
      assert.equal("TLSv1.3", writer:get_extra_info("ssl_object"):version())
      close_both(writer, server)
      -- no common version: an SSLError that is no verification error
      local s13 = server_ctx()
      s13.minimum_version = ssl.TLSVersion.TLSv1_3
      local strict, sport = tls_echo_server(s13)
      local err = connect_error(sport, c12)
      helper.assert_class(ssl.SSLError, err)
      assert.is_false(asyncio.isinstance(err, ssl.SSLCertVerificationError))
      assert.is_string(err.reason)
      strict:close()
      strict:wait_closed()
    end)
  end)

  it("a context may be collected while its connections live", function()
    run(function()
      local server = asyncio.start_server(echo, "127.0.0.1", 0, { ssl = server_ctx() })
      local port = port_of(server)
      helper.gc() -- the server keeps its context
      local reader, writer = connect(port, client_ctx())
      helper.gc()
      writer:write("still here\n")
      assert.equal("still here\n", reader:readline())
      local ctx = writer:get_extra_info("sslcontext")
      assert.equal(ssl.CERT_REQUIRED, ctx.verify_mode)
      local r2, w2 = connect(port, client_ctx())
      w2:write("again\n")
      assert.equal("again\n", r2:readline())
      w2:close()
      close_both(writer, server)
    end)
  end)

  it("TLS over Unix sockets: streams and protocols", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local dir = helper.tmpdir()
      local path = dir .. "/tls.sock"
      local server = asyncio.start_unix_server(echo, path, { ssl = server_ctx() })
      local reader, writer = asyncio.open_unix_connection(path, { ssl = client_ctx(), server_hostname = "localhost" })
      assert.equal("TLSv1.3", writer:get_extra_info("ssl_object"):version())
      writer:write("over a unix socket\n")
      assert.equal("over a unix socket\n", reader:readline())
      writer:close()
      pcall(writer.wait_closed, writer)
      local tp, p = loop:create_unix_connection(recorder, path, { ssl = client_ctx(), server_hostname = "localhost" })
      tp:write("proto")
      wait_for(function() return p:text() == "proto" end)
      tp:close()
      p.lost_fut:await()
      server:close()
      server:wait_closed()
      local path2 = dir .. "/tls2.sock"
      local server2 = loop:create_unix_server(function()
        return recorder { data = function(self, d) self.transport:write(d:upper()) end }
      end, path2, { ssl = server_ctx() })
      local r3, w3 = asyncio.open_unix_connection(path2, { ssl = client_ctx(), server_hostname = "localhost" })
      w3:write("shout\n")
      assert.equal("SHOUT\n", r3:readline())
      close_both(w3, server2)
      os.remove(path)
      os.remove(path2)
      os.remove(dir)
    end)
  end)

  it("TLS transport methods check their arguments, and act as closed once the connection is gone", function()
    run(function()
      local core = require "asyncio.core"
      local server, port = tls_echo_server()
      local _, writer = connect(port)
      local t = writer.transport
      assert.has_error(function() t:write(42) end)
      assert.has_error(function() t:write() end)
      assert.has_error(function() t:writelines("abc") end)
      assert.has_error(function() t:writelines({ "a", 1 }) end)
      assert.has_error(function() t:get_extra_info() end)
      assert.has_error(function() t:set_write_buffer_limits(1, 2) end)
      assert.has_error(function() t:set_protocol(42) end)
      assert.has_error(function() t.write(io.stdout, "x") end)
      assert.has_error(function() core.TLSTransport.close({}) end)
      -- the internal wrap refuses what is not a transport, a protocol, a context
      assert.has_error(function() core.tls_wrap({}, {}, client_ctx(), {}) end)
      assert.has_error(function() core.tls_wrap(t, 42, client_ctx(), {}) end)
      assert.has_error(function() core.tls_wrap(t, {}, "ctx", {}) end)
      assert.equal("x", t:get_extra_info("no such thing", "x"))
      t:abort()
      assert.is_true(t:is_closing())
      pcall(writer.wait_closed, writer)
      -- all of these after connection_lost: no error, no effect
      t:write("late")
      t:writelines({ "late" })
      t:write_eof()
      t:pause_reading()
      t:resume_reading()
      t:close()
      t:abort()
      t:set_write_buffer_limits(100)
      assert.is_false(t:is_reading())
      assert.equal(0, t:get_write_buffer_size())
      assert.is_nil(t:get_extra_info("ssl_object"))
      assert.equal("d", t:get_extra_info("peername", "d"))
      assert.has_error(function() t:_drain_waiter() end)
      assert.is_string(tostring(t))
      server:close()
      server:wait_closed()
    end)
  end)

  it("loop:sendfile over a TLS transport sends the file's bytes from an offset (Python's fallback)", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local dir = helper.tmpdir()
      local path = dir .. "/payload.bin"
      local parts = {}
      for i = 1, 40000 do parts[i] = ("%07d\n"):format(i) end
      local payload = table.concat(parts) -- 320,000 bytes: several chunks, flow control between them
      local f = assert(io.open(path, "wb"))
      f:write(payload)
      f:close()
      local received = loop:create_future()
      local server = asyncio.start_server(function(reader, writer)
        received:set_result(reader:read())
        writer:close()
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local _, writer = connect(port_of(server))
      local fh = assert(io.open(path, "rb"))
      assert.equal(#payload - 17, loop:sendfile(writer.transport, fh, 17))
      fh:close()
      writer:write_eof()
      local got = received:await()
      assert.equal(#payload - 17, #got)
      assert.is_true(got == payload:sub(18), "the bytes differ")
      close_both(writer, server)
      os.remove(path)
      os.remove(dir)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("start_tls", function()
  it("writer:start_tls on both sides with the ClientHello pipelined behind STARTTLS", function()
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      for _, delay in ipairs { 0.1, 0 } do
        local result = asyncio.get_running_loop():create_future()
        local server = asyncio.start_server(function(reader, writer)
          local ok, err = pcall(function()
            -- with the delay, the ClientHello is already in the reader's buffer
            if delay > 0 then asyncio.sleep(delay) end
            local line = reader:readline()
            local plain = writer.transport
            writer:start_tls(sctx)
            local so = writer:get_extra_info("ssl_object")
            local got = reader:readline()
            writer:write(got:upper())
            writer:drain()
            local old_ok, old_err = pcall(plain.write, plain, "x")
            result:set_result {
              line = line, got = got, same = writer.transport == plain,
              server_side = so and so.server_side, old_ok = old_ok, old_err = old_err,
            }
            reader:read()
          end)
          if not ok and not result:done() then result:set_result { err = err } end
          writer:close()
        end, "127.0.0.1", 0)
        local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
        local plain = writer.transport
        writer:write("STARTTLS\r\n")
        writer:start_tls(client_ctx(), { server_hostname = "localhost" }) -- no waiting for a reply
        assert.are_not.equal(plain, writer.transport)
        local so = writer:get_extra_info("ssl_object")
        assert.is_not_nil(so)
        assert.equal("TLSv1.3", so:version())
        assert.is_false(so.server_side)
        assert.equal("localhost", so:getpeercert().subject[3][1][2])
        writer:write("secret line\n")
        assert.equal("SECRET LINE\n", reader:readline())
        local r = result:await()
        assert.is_nil(r.err)
        assert.equal("STARTTLS\r\n", r.line)
        assert.equal("secret line\n", r.got)
        assert.is_false(r.same)
        assert.is_true(r.server_side)
        assert.is_false(r.old_ok)
        helper.assert_class(asyncio.RuntimeError, r.old_err)
        local e = helper.err_of(plain.write, plain, "x")
        helper.assert_class(asyncio.RuntimeError, e)
        close_both(writer, server)
      end
      assert.same({}, contexts)
    end)
  end)

  it("plaintext injected after STARTTLS never reaches the application", function()
    run(function()
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local result = loop:create_future()
      local server = asyncio.start_server(function(reader, writer)
        asyncio.sleep(0.05) -- "INJECTED" and the ClientHello behind it are buffered
        local line = reader:readline()
        local ok, err = pcall(writer.start_tls, writer, sctx, { ssl_handshake_timeout = 5 })
        local data
        if ok then -- must not happen: see what the application would get
          local rok, d = pcall(asyncio.wait_for, function() return reader:read(100) end, 1)
          data = rok and d or ("read raised " .. tostring(d))
        end
        result:set_result { line = line, ok = ok, err = err, data = data }
        pcall(function() writer.transport:abort() end)
      end, "127.0.0.1", 0)
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      writer:write("STARTTLS\r\nINJECTED")
      local t0 = loop:time()
      local ok, err = pcall(writer.start_tls, writer, client_ctx(),
        { server_hostname = "localhost", ssl_handshake_timeout = 5 })
      assert.is_false(ok, "the client's handshake succeeded")
      helper.assert_class(asyncio.OSError, err)
      assert.is_true(loop:time() - t0 < 4, "the server did not drop the connection")
      local r = result:await()
      assert.equal("STARTTLS\r\n", r.line)
      assert.is_false(r.ok, "the server's handshake succeeded, read: " .. tostring(r.data))
      helper.assert_class(ssl.SSLError, r.err)
      assert.is_false(contains(r.data or "", "INJECTED"))
      pcall(reader.read, reader)
      pcall(function() writer.transport:abort() end)
      server:close()
      server:wait_closed()
    end)
  end)

  it("a failed writer:start_tls raises to the caller and leaves a closed writer", function()
    run(function()
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local result = loop:create_future()
      local server = asyncio.start_server(function(reader, writer)
        local line = reader:readline()
        if line == "STARTTLS\r\n" then
          -- the client sends plaintext instead of a ClientHello
          local ok, err = pcall(writer.start_tls, writer, sctx)
          local cok, cerr = pcall(writer.close, writer)
          local iok, closing = pcall(writer.is_closing, writer)
          result:set_result { ok = ok, err = err, cok = cok, cerr = cerr, iok = iok, closing = closing }
        else
          -- the client upgrades against a certificate it does not trust
          pcall(writer.start_tls, writer, server_ctx(certs.other_cert, certs.other_key))
          pcall(writer.close, writer)
        end
      end, "127.0.0.1", 0)
      local port = port_of(server)
      local reader, writer = asyncio.open_connection("127.0.0.1", port)
      writer:write("STARTTLS\r\n")
      asyncio.sleep(0.1)
      writer:write("this is no ClientHello\r\n")
      local r = result:await()
      assert.is_false(r.ok, "start_tls succeeded")
      helper.assert_class(ssl.SSLError, r.err)
      assert.is_true(r.cok, "writer:close() after the failed upgrade raised " .. tostring(r.cerr))
      assert.is_true(r.iok, "writer:is_closing() after the failed upgrade raised " .. tostring(r.closing))
      assert.is_true(r.closing)
      pcall(reader.read, reader)
      writer:close()
      -- client side
      local reader2, writer2 = asyncio.open_connection("127.0.0.1", port)
      writer2:write("UPGRADE\r\n")
      local err = helper.err_of(writer2.start_tls, writer2, client_ctx(), { server_hostname = "localhost" })
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(20, err.verify_code)
      local cok, cerr = pcall(writer2.close, writer2)
      assert.is_true(cok, "writer:close() after the failed upgrade raised " .. tostring(cerr))
      local iok, closing = pcall(writer2.is_closing, writer2)
      assert.is_true(iok, tostring(closing))
      assert.is_true(closing)
      pcall(reader2.read, reader2)
      server:close()
      server:wait_closed()
    end)
  end)

  it("loop:start_tls on both sides (protocols, STARTTLS then GO)", function()
    run(function()
      local contexts = record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local upgraded = loop:create_future()
      local server = loop:create_server(function()
        local p = { buf = "" }
        function p.connection_made(_, t) p.t = t end
        function p.data_received(_, d)
          p.buf = p.buf .. d
          if p.buf == "STARTTLS\r\n" then
            p.t:pause_reading()
            p.t:write("GO\r\n")
            loop:create_task(function()
              local inner = recorder()
              local ok, tls = pcall(loop.start_tls, loop, p.t, inner, sctx, { server_side = true })
              if ok then
                wait_for(function() return inner:text():find("\n", 1, true) ~= nil end)
                tls:write(inner:text():upper())
              end
              upgraded:set_result { ok = ok, tls = tls, inner = inner }
            end)
          end
        end
        function p.connection_lost() end
        return p
      end, "127.0.0.1", 0)
      local got_go = loop:create_future()
      local tp, p = loop:create_connection(function()
        return recorder {
          data = function(self)
            if self:text():find("GO\r\n", 1, true) and not got_go:done() then got_go:set_result(true) end
          end,
        }
      end, "127.0.0.1", port_of(server))
      tp:write("STARTTLS\r\n")
      got_go:await()
      local inner = recorder()
      local tls = loop:start_tls(tp, inner, client_ctx(), { server_hostname = "localhost" })
      assert.are_not.equal(tp, tls)
      assert.equal(inner, tls:get_protocol())
      local so = tls:get_extra_info("ssl_object")
      assert.equal("TLSv1.3", so:version())
      assert.is_false(so.server_side)
      tls:write("over tls\n")
      wait_for(function() return inner:text() == "OVER TLS\n" end)
      local u = upgraded:await()
      assert.is_true(u.ok, tostring(u.tls))
      assert.is_true(u.tls:get_extra_info("ssl_object").server_side)
      assert.equal("over tls\n", u.inner:text())
      -- TLS records never reached the plain protocol
      assert.equal("GO\r\n", p:text())
      tls:close()
      assert.is_nil(inner.lost_fut:await())
      server:close()
      server:wait_closed()
      assert.same({}, contexts)
    end)
  end)

  it("loop:start_tls with a pipelined ClientHello against writer:start_tls", function()
    run(function()
      local contexts = record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local server = asyncio.start_server(function(reader, writer)
        pcall(function()
          asyncio.sleep(0.05)
          assert(reader:readline() == "STARTTLS\r\n")
          writer:start_tls(sctx)
          local line = reader:readline()
          writer:write("got " .. line)
          writer:drain()
          reader:read()
        end)
        writer:close()
      end, "127.0.0.1", 0)
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port_of(server))
      tp:write("STARTTLS\r\n")
      local inner = recorder()
      local tls = loop:start_tls(tp, inner, client_ctx(), { server_hostname = "localhost",
                                                            ssl_handshake_timeout = 5 })
      tls:write("pipelined\n")
      wait_for(function() return inner:text() == "got pipelined\n" end)
      assert.equal("", p:text())
      tls:close()
      inner.lost_fut:await()
      server:close()
      server:wait_closed()
      assert.same({}, contexts)
    end)
  end)

  it("TLS inside TLS: start_tls over a TLS connection", function()
    run(function()
      local contexts = record_exceptions()
      local inner_sctx = server_ctx(certs.wrong_cert, certs.wrong_key)
      local server = asyncio.start_server(function(reader, writer)
        pcall(function()
          assert(reader:readline() == "STARTTLS\r\n")
          writer:start_tls(inner_sctx)
        end)
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local reader, writer = connect(port_of(server))
      local outer = writer:get_extra_info("ssl_object")
      assert.equal("localhost", outer:getpeercert().subject[3][1][2])
      writer:write("STARTTLS\r\n")
      writer:start_tls(client_ctx(), { server_hostname = "wrong.example" })
      local inner = writer:get_extra_info("ssl_object")
      assert.are_not.equal(outer, inner)
      assert.same({ { { "commonName", "wrong.example" } } }, inner:getpeercert().subject)
      assert.equal("TLSv1.3", inner:version())
      local payload = {}
      for i = 1, 64 do payload[i] = string.rep(string.char(i), 16384 - 1) .. "\n" end
      payload = table.concat(payload)
      local sender = asyncio.create_task(function()
        writer:write(payload)
        writer:drain()
      end)
      local back = reader:readexactly(#payload)
      sender:await()
      assert.is_true(back == payload, "the echo differs")
      close_both(writer, server)
      assert.same({}, contexts)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("TLS close, EOF and timeouts", function()
  it("half-close: write_eof sends close_notify; the peer reads '' and still replies", function()
    run(function()
      local contexts = record_exceptions()
      local result = asyncio.get_running_loop():create_future()
      local server = asyncio.start_server(function(reader, writer)
        local ok, err = pcall(function()
          local data = reader:read()
          local eof = reader:at_eof()
          local again = reader:read()
          writer:write(data:upper())
          writer:drain()
          result:set_result { data = data, eof = eof, again = again }
        end)
        if not ok then result:set_result { err = err } end
        writer:close()
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local reader, writer = connect(port_of(server))
      assert.is_true(writer:can_write_eof())
      writer:write("shout")
      writer:write_eof()
      assert.is_false(writer:is_closing())
      helper.assert_class(asyncio.RuntimeError, helper.err_of(writer.write, writer, "more"))
      assert.equal("SHOUT", reader:read())
      assert.is_true(reader:at_eof())
      local r = result:await()
      assert.is_nil(r.err)
      assert.equal("shout", r.data)
      assert.is_true(r.eof)
      assert.equal("", r.again)
      close_both(writer, server)
      assert.same({}, contexts)
    end)
  end)

  it("half-close through protocols: eof_received returning true keeps the transport writable", function()
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
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local tp, p = loop:create_connection(function()
        return recorder { eof = function() return true end }
      end, "127.0.0.1", port_of(server), { ssl = client_ctx(), server_hostname = "localhost" })
      tp:write("shout")
      tp:write_eof()
      wait_for(function() return p.events[2] == "eof" end)
      assert.equal("SHOUT", p:text())
      tp:close()
      assert.is_nil(p.lost_fut:await())
      assert.same({ "made", "eof", "lost" }, p.events)
      server:close()
      server:wait_closed()
    end)
  end)

  it("handshake timeout: a peer that never answers gives ConnectionAbortedError", function()
    vrun(function() -- the virtual clock: timeouts of a silent peer in microseconds
      local loop = asyncio.get_running_loop()
      local silent = asyncio.start_server(function(reader, writer)
        pcall(reader.read, reader)
        writer:close()
      end, "127.0.0.1", 0)
      local port = port_of(silent)
      local t0 = loop:time()
      local err = helper.err_of(connect, port, nil, { ssl_handshake_timeout = 0.3 })
      local dt = loop:time() - t0
      helper.assert_class(asyncio.ConnectionAbortedError, err)
      assert.is_true(contains(msg_of(err), "SSL handshake is taking longer than 0.3 seconds: aborting the connection"),
        msg_of(err))
      assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt .. " s")
      -- through create_connection too
      t0 = loop:time()
      err = helper.err_of(loop.create_connection, loop, recorder, "127.0.0.1", port,
        { ssl = client_ctx(), server_hostname = "localhost", ssl_handshake_timeout = 0.3 })
      dt = loop:time() - t0
      helper.assert_class(asyncio.ConnectionAbortedError, err)
      assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt .. " s")
      silent:close()
      silent:wait_closed()
    end)
  end)

  it("handshake timeout on a server: a client that never speaks is dropped", function()
    vrun(function() -- the virtual clock: timeouts of a silent peer in microseconds
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local served = 0
      local server = asyncio.start_server(function(_, writer)
        served = served + 1
        writer:close()
      end, "127.0.0.1", 0, { ssl = server_ctx(), ssl_handshake_timeout = 0.3 })
      local reader, writer = asyncio.open_connection("127.0.0.1", port_of(server))
      local t0 = loop:time()
      local ok = helper.within(3, function() try(reader.read, reader) end)
      local dt = loop:time() - t0
      assert.is_true(ok, "the server kept the silent client")
      assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt .. " s")
      assert.equal(0, served)
      writer:close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("shutdown timeout: a peer that never answers close_notify is aborted", function()
    vrun(function() -- the virtual clock: timeouts of a silent peer in microseconds
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local server, port = tls_echo_server()
      local px = tcp_proxy(port)
      -- awaits wait_closed for at most `secs`; true when it returned (or raised)
      local function closed_within(writer, secs)
        return helper.within(secs, function() try(writer.wait_closed, writer) end)
      end
      -- 1. ssl_shutdown_timeout = 0.3: the close_notify is held back forever
      local reader, writer = connect(px.port, nil, { ssl_shutdown_timeout = 0.3 })
      writer:write("ping\n")
      assert.equal("ping\n", reader:readline())
      px.hold = true
      local t0 = loop:time()
      writer:close()
      local closed = closed_within(writer, 3)
      local dt = loop:time() - t0
      assert.is_true(closed, "the transport was still open 3 s after close()")
      assert.is_true(dt >= 0.2 and dt < 1.5, "closed after " .. dt .. " s")
      px.close()
      -- 2. a longer timeout: close() waits for the peer's close_notify, then ends at once
      px = tcp_proxy(port)
      reader, writer = connect(px.port, nil, { ssl_shutdown_timeout = 10 })
      writer:write("ping\n")
      assert.equal("ping\n", reader:readline())
      px.hold = true
      writer:close()
      local waiter = asyncio.create_task(function() pcall(writer.wait_closed, writer) end)
      asyncio.sleep(0.5)
      assert.is_false(waiter:done(), "close() did not wait for the peer's close_notify")
      t0 = loop:time()
      px.release()
      assert.is_true(helper.within(3, function() waiter:await() end), "still open after the close_notify")
      assert.is_true(loop:time() - t0 < 1, "took " .. (loop:time() - t0) .. " s")
      px.close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("abrupt EOF: data, then a TCP close without close_notify gives SSLEOFError", function()
    run(function()
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local sctx = server_ctx()
      local server = asyncio.start_server(function(reader, writer)
        writer:write("last words")
        writer:drain()
        pcall(reader.read, reader)
        writer.transport:abort()
      end, "127.0.0.1", 0, { ssl = sctx })
      local px = tcp_proxy(port_of(server))
      -- streams
      local reader, writer = connect(px.port)
      assert.equal("last words", reader:readexactly(10))
      px.cut()
      local err = helper.err_of(reader.read, reader)
      helper.assert_class(ssl.SSLEOFError, err)
      helper.assert_class(ssl.SSLError, err)
      writer:close()
      pcall(writer.wait_closed, writer)
      px.close()
      -- protocols
      px = tcp_proxy(port_of(server))
      local tp, p = loop:create_connection(recorder, "127.0.0.1", px.port,
        { ssl = client_ctx(), server_hostname = "localhost" })
      wait_for(function() return p:text() == "last words" end)
      px.cut()
      local lost = p.lost_fut:await()
      helper.assert_class(ssl.SSLEOFError, lost)
      assert.same({ "made", "lost" }, p.events)
      assert.is_true(tp:is_closing())
      px.close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("abort(): closing at once, connection_lost(nil), queued data dropped; the peer sees SSLEOFError", function()
    run(function()
      record_exceptions()
      local loop = asyncio.get_running_loop()
      local sp
      local server = loop:create_server(function()
        sp = recorder()
        return sp
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local tp, p = loop:create_connection(recorder, "127.0.0.1", port_of(server),
        { ssl = client_ctx(), server_hostname = "localhost" })
      tp:write(string.rep("x", 4 * 1024 * 1024))
      tp:abort()
      assert.is_true(tp:is_closing(), "is_closing() is false right after abort()")
      assert.equal(0, p.lost) -- not from inside abort()
      assert.is_nil(p.lost_fut:await())
      assert.equal(1, p.lost)
      assert.equal(0, tp:get_write_buffer_size())
      wait_for(function() return sp and sp.lost == 1 end)
      helper.assert_class(ssl.SSLEOFError, sp.err)
      assert.is_true(#sp:text() < 4 * 1024 * 1024)
      tp:abort()
      tp:close()
      asyncio.sleep(0.01)
      assert.equal(1, p.lost)
      server:close()
      server:wait_closed()
    end)
  end)

  it("Server:close_clients sends close_notify; abort_clients does not", function()
    vrun(function() -- virtual clock: its sleeps let the I/O settle, then jump
      record_exceptions()
      local server = asyncio.start_server(function(reader, writer)
        pcall(reader.read, reader)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local port = port_of(server)
      local r1, w1 = connect(port)
      asyncio.sleep(0.05)
      server:close_clients()
      assert.equal("", r1:read()) -- a clean TLS EOF
      w1:close()
      local r2, w2 = connect(port)
      asyncio.sleep(0.05)
      server:abort_clients()
      local ok, err = pcall(r2.read, r2)
      assert.is_false(ok, "read returned " .. tostring(err))
      assert.is_true(asyncio.isinstance(err, ssl.SSLEOFError) or asyncio.isinstance(err, asyncio.ConnectionResetError),
        tostring(err))
      w2:close()
      server:close()
      server:wait_closed()
    end)
  end)

  it("a peer closing during the handshake fails the connection at once", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local rude = asyncio.start_server(function(_, writer) writer:close() end, "127.0.0.1", 0)
      local t0 = loop:time()
      local err = connect_error(port_of(rude))
      helper.assert_class(asyncio.OSError, err)
      assert.is_true(loop:time() - t0 < 2)
      -- a peer answering with plaintext
      local chatty = asyncio.start_server(function(_, writer)
        writer:write("220 hello, this is not TLS\r\n")
        writer:close()
      end, "127.0.0.1", 0)
      err = connect_error(port_of(chatty))
      helper.assert_class(asyncio.OSError, err)
      rude:close()
      chatty:close()
      rude:wait_closed()
      chatty:wait_closed()
    end)
  end)

  it("a failing server handshake reaches the exception handler; the server goes on", function()
    run(function()
      local contexts = record_exceptions()
      local served = 0
      local server = asyncio.start_server(function(reader, writer)
        served = served + 1
        echo(reader, writer)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local port = port_of(server)
      -- 1. plaintext
      local r1, w1 = asyncio.open_connection("127.0.0.1", port)
      w1:write("GET / HTTP/1.0\r\n\r\n")
      pcall(r1.read, r1)
      wait_for(function() return #contexts >= 1 end)
      local c1 = contexts[1]
      assert.is_string(c1.message)
      helper.assert_class(ssl.SSLError, c1.exception)
      assert.is_not_nil(c1.transport)
      assert.same(w1:get_extra_info("sockname"), c1.peername)
      w1:close()
      -- 2. a TLS client that rejects the server's certificate
      local err = connect_error(port, client_ctx(certs.ca2))
      helper.assert_class(ssl.SSLCertVerificationError, err)
      wait_for(function() return #contexts >= 2 end)
      helper.assert_class(ssl.SSLError, contexts[2].exception)
      assert.is_table(contexts[2].peername)
      assert.equal("127.0.0.1", contexts[2].peername[1])
      -- 3. still serving
      local r3, w3 = connect(port)
      w3:write("still there\n")
      assert.equal("still there\n", r3:readline())
      assert.equal(1, served)
      close_both(w3, server)
      assert.equal(2, #contexts)
    end)
  end)

  it("cancelling a connection during its handshake leaves nothing open", function()
    vrun(function() -- virtual clock: its sleeps let the I/O settle, then jump
      local silent = asyncio.start_server(function(reader, writer)
        pcall(reader.read, reader)
        writer:close()
      end, "127.0.0.1", 0)
      local port = port_of(silent)
      helper.gc()
      local before, live0 = open_fds(), ssl._live()
      for _ = 1, 10 do
        local t = asyncio.create_task(function() return connect(port) end)
        asyncio.sleep(0.02)
        t:cancel()
        helper.await_cancelled(t)
      end
      local err = helper.err_of(asyncio.wait_for, function() return connect(port) end, 0.05)
      helper.assert_class(asyncio.TimeoutError, err)
      settle(function() return open_fds() <= before and ssl._live() == live0 end, 3)
      assert.equal(live0, ssl._live())
      assert.equal(before, open_fds(), "open descriptors now:\n" .. helper.fd_list())
      silent:close()
      silent:wait_closed()
    end)
  end)
end)

---------------------------------------------------------------------------

describe("TLS under load", function()
  it("serves 1,000 concurrent TLS clients", function()
    run(function()
      local n = math.min(1000, math.floor((fd_limit() - 200) / 2))
      assert.is_true(n >= 100, "descriptor limit too low")
      local sctx, cctx = server_ctx(), client_ctx()
      local server = asyncio.start_server(function(reader, writer)
        pcall(function()
          for line in reader:lines() do
            writer:write(line)
            writer:drain()
          end
        end)
        writer:close()
      end, "127.0.0.1", 0, { ssl = sctx, backlog = 1024 })
      local port = port_of(server)
      local loop = asyncio.get_running_loop()
      local t0 = loop:time()
      local tasks, echoed, all_open = {}, 0, asyncio.Event()
      for i = 1, n do
        tasks[i] = asyncio.create_task(function()
          local want = ("client %d\n"):format(i)
          local ok, reader, writer = pcall(connect, port, cctx)
          local back
          if ok then
            writer:write(want)
            ok, back = pcall(reader.readline, reader)
          end
          -- every connection stays open until all of them have echoed (or failed)
          echoed = echoed + 1
          if echoed == n then all_open:set() end
          all_open:wait()
          if writer then
            writer:close()
            pcall(writer.wait_closed, writer)
          end
          return back == want or tostring(back or reader)
        end)
      end
      local res = asyncio.gather(tasks, { return_exceptions = true }):await()
      local bad = {}
      for i = 1, n do
        if res[i] ~= true then bad[#bad + 1] = i .. ": " .. tostring(res[i]) end
      end
      assert.same({}, { table.unpack(bad, 1, math.min(#bad, 5)) })
      assert.is_true(loop:time() - t0 < 30, "took " .. (loop:time() - t0) .. " s")
      server:close()
      server:wait_closed()
    end, 60)
  end)

  it("leaks no descriptors, SSL objects or registry entries over 2,000 connections", function()
    run(function()
      local loop = asyncio.get_running_loop()
      local failures = 0
      loop:set_exception_handler(function() failures = failures + 1 end)
      local sctx, cctx = server_ctx(), client_ctx()
      local server, port = tls_echo_server(sctx)
      local bad_server, bad_port = tls_echo_server(server_ctx(certs.other_cert, certs.other_key))
      local plain = asyncio.start_server(function(reader, writer)
        pcall(function()
          if reader:readline() ~= "STARTTLS\r\n" then return end
          writer:start_tls(sctx)
          local line = reader:readline()
          writer:write(line)
          writer:drain()
          reader:read()
        end)
        writer:close()
      end, "127.0.0.1", 0)
      local plain_port = port_of(plain)
      -- warm up (lazily made objects), then measure
      local r0, w0 = connect(port, cctx)
      w0:write("warm\n")
      r0:readline()
      w0:close()
      pcall(w0.wait_closed, w0)
      settle(function() return ssl._live() == 0 end, 1)
      local refs_before = registry_size()
      local fds_before = open_fds()
      local live_before = ssl._live()
      local function batch(count, fn)
        local tasks = {}
        for j = 1, count do tasks[j] = asyncio.create_task(fn, j) end
        local res = asyncio.gather(tasks, { return_exceptions = true }):await()
        for j = 1, count do
          if res[j] ~= true then error("connection " .. j .. " failed: " .. tostring(res[j]), 0) end
        end
      end
      -- 1,000 stream connections, half closed, half aborted
      for _ = 1, 10 do
        batch(100, function(j)
          local reader, writer = connect(port, cctx)
          writer:write("ping\n")
          assert(reader:readline() == "ping\n")
          if j % 2 == 0 then
            writer:close()
          else
            writer.transport:abort()
          end
          pcall(writer.wait_closed, writer)
          return true
        end)
      end
      -- 500 protocol connections
      for _ = 1, 5 do
        batch(100, function()
          local done = loop:create_future()
          local tp = loop:create_connection(function()
            return recorder { data = function() if not done:done() then done:set_result(true) end end }
          end, "127.0.0.1", port, { ssl = cctx, server_hostname = "localhost" })
          tp:write("ping")
          done:await()
          tp:close()
          tp:get_protocol().lost_fut:await()
          return true
        end)
      end
      -- 300 failed verifications
      for _ = 1, 3 do
        batch(100, function()
          local ok, err = pcall(connect, bad_port, cctx)
          return not ok and asyncio.isinstance(err, ssl.SSLCertVerificationError)
        end)
      end
      -- 200 STARTTLS upgrades
      for _ = 1, 4 do
        batch(50, function()
          local reader, writer = asyncio.open_connection("127.0.0.1", plain_port)
          writer:write("STARTTLS\r\n")
          writer:start_tls(cctx, { server_hostname = "localhost" })
          writer:write("up\n")
          assert(reader:readline() == "up\n")
          writer:close()
          pcall(writer.wait_closed, writer)
          return true
        end)
      end
      for _, s in ipairs { server, bad_server, plain } do
        s:close_clients()
        s:close()
        s:wait_closed()
      end
      settle(function() return ssl._live() == live_before and open_fds() <= fds_before - 3 end, 3)
      assert.equal(live_before, ssl._live())
      assert.equal(fds_before - 3, open_fds(), -- the three listening sockets went too
        "open descriptors now:\n" .. helper.fd_list())
      local refs_after = registry_size()
      assert.is_true(refs_after <= refs_before + 10,
        ("registry grew from %d to %d entries"):format(refs_before, refs_after))
      assert.is_true(failures <= 300 + 10, "exception handler called " .. failures .. " times")
    end, 120)
  end)
end)
