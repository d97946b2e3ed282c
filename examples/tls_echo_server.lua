-- examples/tls_echo_server.lua: a line echo server over TLS on 127.0.0.1.
--
-- It shows:
--   1. a server context: asyncio.ssl.create_default_context("server") with
--      load_cert_chain(CERT, KEY), passed as start_server's `ssl`; cb runs
--      only once a connection's handshake is done, and
--      ssl_handshake_timeout bounds how long a silent client may hold a
--      connection before it;
--   2. a failed handshake (a plain TCP client, a client that does not
--      trust the certificate, one that connects and goes) reaching the
--      loop's exception handler, with the server going on;
--   3. the TLS details of a connection from writer:get_extra_info:
--      "ssl_object" (version(), cipher()), "peername";
--   4. TLS half-close: a client's writer:write_eof() sends close_notify and
--      keeps reading; the server's reader:lines() ends there, the server
--      writes the rest back and closes;
--   5. in --demo, a throwaway self-signed certificate made with the openssl
--      CLI in a temporary directory (removed afterwards), and clients in the
--      same process whose context trusts it (load_verify_locations), checked
--      by name (server_hostname = "localhost") and by address (127.0.0.1).
--
-- Run it with
--   lua5.4 examples/tls_echo_server.lua CERT KEY [PORT [MAX]]
--   lua5.4 examples/tls_echo_server.lua --demo
-- CERT and KEY are PEM files, e.g. from
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
--     -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
--     -keyout key.pem -out cert.pem
-- PORT 0 (the default) picks a free port; the server prints
-- "listening on 127.0.0.1:PORT" once it accepts connections. Without MAX it
-- serves until Ctrl-C. Talk to it with
--   openssl s_client -connect 127.0.0.1:PORT -CAfile cert.pem -verify_hostname localhost
-- The module must be on the Lua paths:
-- eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"
local ssl = asyncio.ssl

local HANDSHAKE_TIMEOUT = 10

local function log(fmt, ...)
  print(("server: " .. fmt):format(...))
  io.stdout:flush() -- stdout may be a pipe: whoever waits for the port sees it now
end

-- serve(cert, key, port, max [, on_listening]): runs until MAX connections
-- were served (nil: until SIGINT); on_listening(port), when given, runs as
-- a task of its own once the server listens.
local function serve(cert, key, port, max, on_listening)
  local loop = asyncio.get_running_loop()
  local stop = asyncio.Event()
  local reason
  local served = 0

  -- load_cert_chain raises SSLError naming the file when a file is missing
  -- or the key does not match the certificate
  local ctx = ssl.create_default_context("server")
  ctx:load_cert_chain(cert, key)

  -- A handshake that fails never reaches handle(): it goes to the loop's
  -- exception handler, one line here instead of the default report.
  loop:set_exception_handler(function(lp, context)
    local exc = context.exception
    if asyncio.isinstance(exc, ssl.SSLError) or asyncio.isinstance(exc, asyncio.ConnectionError) then
      local peer = context.peername
      log("handshake with %s failed: %s", peer and ("%s:%d"):format(peer[1], peer[2]) or "?", tostring(exc))
    else
      lp:default_exception_handler(context)
    end
  end)

  local function handle(reader, writer)
    local peer = writer:get_extra_info("peername")
    local who = ("%s:%d"):format(peer[1], peer[2])
    local tls = writer:get_extra_info("ssl_object")
    log("%s connected (%s, %s)", who, tls:version(), tls:cipher()[1])
    local n = 0
    local ok, err = pcall(function()
      for line in reader:lines() do -- ends at the client's close_notify
        writer:write(line)
        writer:drain()
        n = n + 1
      end
    end)
    writer:close() -- close_notify, then the TCP close
    pcall(writer.wait_closed, writer) -- a client gone without close_notify: SSLEOFError
    log("%s gone after %d lines%s", who, n, ok and "" or " (" .. tostring(err) .. ")")
    served = served + 1
    if max and served >= max and not stop:is_set() then
      reason = ("served %d connections"):format(served)
      stop:set()
    end
  end

  local server = asyncio.start_server(handle, "127.0.0.1", port,
    { ssl = ctx, ssl_handshake_timeout = HANDSHAKE_TIMEOUT })
  loop:add_signal_handler("SIGINT", function()
    reason = "SIGINT"
    stop:set()
  end)
  local bound = server.sockets[1]:getsockname()[2]
  log("listening on 127.0.0.1:%d", bound)
  local extra = on_listening and asyncio.create_task(on_listening, bound)
  if extra then -- its failure stops the server too, rather than leave it waiting
    extra:add_done_callback(function(t)
      if not stop:is_set() and (t:cancelled() or t:exception() ~= nil) then
        reason = "on_listening failed"
        stop:set()
      end
    end)
  end

  stop:wait()
  loop:remove_signal_handler("SIGINT")
  log("stopping (%s)", reason)
  server:close()
  server:close_clients()
  server:wait_closed()
  log("stopped")
  if extra then return extra:await() end
end

-- ---- the demo --------------------------------------------------------------

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Before the loop starts (os.execute blocks): a self-signed certificate
-- for localhost and 127.0.0.1 in a temporary directory.
local function make_cert()
  local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/tls_echo.XXXXXX\""))
  local dir = p:read("l")
  p:close()
  if not dir or dir == "" then error("mktemp -d failed") end
  local cert, key, logfile = dir .. "/cert.pem", dir .. "/key.pem", dir .. "/openssl.log"
  local cmd = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
    .. " -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
    .. " -keyout %s -out %s >%s 2>&1"):format(shell_quote(key), shell_quote(cert), shell_quote(logfile))
  if os.execute(cmd) ~= true then
    local f = io.open(logfile)
    local text = f and f:read("a") or ""
    if f then f:close() end
    os.execute("rm -rf " .. shell_quote(dir))
    error("openssl failed: " .. cmd .. "\n" .. text, 0)
  end
  return dir, cert, key
end

local function say(fmt, ...) print(("client: " .. fmt):format(...)) end

-- A TLS client: sends `lines`, half-closes when `half_close`, reads every
-- echo back, then expects the server's close; returns the lines' count.
local function tls_client(port, ctx, server_hostname, lines, half_close)
  local reader, w = asyncio.open_connection("127.0.0.1", port,
    { ssl = ctx, server_hostname = server_hostname })
  local writer <close> = w
  local tls = writer:get_extra_info("ssl_object")
  local cert = tls:getpeercert()
  say("connected as %s to %s: %s, %s, certificate for %s", writer:get_extra_info("sockname")[2],
    server_hostname or "127.0.0.1", tls:version(), tls:cipher()[1], cert.subject[1][1][2])
  local sender = asyncio.create_task(function()
    writer:writelines(lines)
    writer:drain()
    if half_close then writer:write_eof() end -- close_notify; we go on reading
  end)
  for i, sent in ipairs(lines) do
    local back = reader:readline()
    if back ~= sent then error(("line %d came back as %q"):format(i, back)) end
  end
  sender:await()
  if half_close then
    local rest = reader:read() -- "" at the server's close_notify
    if rest ~= "" then error(("unexpected extra data %q"):format(rest)) end
  end
  say("%d lines echoed intact%s", #lines, half_close and ", then write_eof and the server's close" or "")
  return #lines
end

local function numbered(n, width)
  local t = {}
  for i = 1, n do t[i] = ("line %d of %d %s\n"):format(i, n, ("*"):rep(width or i % 40)) end
  return t
end

-- Runs once the server listens: the clients that fail first (they are not
-- counted as served), then three TLS clients at once; the server stops
-- after those three.
local function demo_clients(cert, port)
  -- a plain TCP client: its bytes are no ClientHello
  local r, w = asyncio.open_connection("127.0.0.1", port)
  w:write("hello in plain text\r\n")
  local ok, got = pcall(r.read, r) -- up to the server's close
  w:close()
  pcall(w.wait_closed, w)
  say("plain TCP client: the server closed the connection (%s)",
    ok and ("%d bytes came back"):format(#got) or tostring(got))

  -- connect and close without a handshake (what a port probe does)
  local _, w2 = asyncio.open_connection("127.0.0.1", port)
  w2:close()
  pcall(w2.wait_closed, w2)
  say("connected and closed at once")

  -- a client with the default context: the system store does not know
  -- the throwaway certificate
  local ok2, err = pcall(asyncio.open_connection, "127.0.0.1", port, { ssl = true, server_hostname = "localhost" })
  if ok2 or not asyncio.isinstance(err, ssl.SSLCertVerificationError) then
    error("expected SSLCertVerificationError, got " .. tostring(ok2 or err))
  end
  say("{ssl = true} refused the self-signed certificate: %s", err.verify_message)
  asyncio.sleep(0.1) -- the server logs its side of it

  -- trust exactly that certificate
  local ctx = ssl.create_default_context()
  ctx:load_verify_locations(cert)
  local counts = asyncio.gather({
    asyncio.create_task(tls_client, port, ctx, "localhost", numbered(5), true),
    asyncio.create_task(tls_client, port, ctx, "localhost", numbered(2000, 60), true), -- ~150 KB: drain at work
    asyncio.create_task(tls_client, port, ctx, nil, numbered(3), false), -- the address, no SNI
  }):await()
  say("all three TLS clients done (%d lines)", counts[1] + counts[2] + counts[3])
  return true
end

local function usage()
  io.stderr:write("usage: lua5.4 tls_echo_server.lua CERT KEY [PORT [MAX_CONNECTIONS]] | --demo\n")
  os.exit(2)
end

if arg[1] == "--demo" then
  local dir, cert, key = make_cert()
  local ok, err = pcall(asyncio.run, function()
    return asyncio.wait_for(function()
      return serve(cert, key, 0, 3, function(port) return demo_clients(cert, port) end)
    end, 30)
  end)
  os.execute("rm -rf " .. shell_quote(dir))
  if not ok then
    io.stderr:write("tls_echo_server --demo: ", tostring(err), "\n")
    os.exit(1)
  end
  print("demo done; removed the throwaway certificate (" .. dir .. ")")
else
  local cert, key = arg[1], arg[2]
  local port = tonumber(arg[3] or "0")
  local max = arg[4] and tonumber(arg[4])
  if not cert or not key or not port or (arg[4] and not max) then usage() end
  asyncio.run(function() serve(cert, key, port, max) end)
end
