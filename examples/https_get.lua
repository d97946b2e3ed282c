-- examples/https_get.lua: an HTTPS GET client over open_connection with TLS.
--
-- It shows:
--   1. asyncio.open_connection(host, port, {ssl = true}): TLS with the
--      default client context (the system's trust store, certificate and
--      hostname verification, TLS 1.2 or later); open_connection returns
--      once the handshake is done, and a failed verification raises
--      asyncio.ssl.SSLCertVerificationError there;
--   2. the connection's TLS details from writer:get_extra_info("ssl_object"):
--      version(), cipher(), selected_alpn_protocol(), getpeercert();
--   3. closing a TLS stream: writer:close() sends close_notify and
--      wait_closed() waits for the server's answer. Many servers close TCP
--      without close_notify; that surfaces as asyncio.ssl.SSLEOFError, which
--      is harmless once the response is complete (the body's length was
--      known and all of it arrived), and a warning when the body ran up to
--      the connection's end (it may have been cut short);
--   4. in --demo, a whole local PKI: a throwaway CA and a certificate for
--      localhost / 127.0.0.1 made with the openssl CLI in a temporary
--      directory (removed afterwards), an HTTPS server of our own
--      (asyncio.start_server with a server context: load_cert_chain,
--      set_alpn_protocols), and clients whose context trusts that CA
--      (load_verify_locations), including the failures that verification
--      must produce: an unknown CA and a hostname that does not match.
--
-- Run it with
--   lua5.4 examples/https_get.lua https://HOST[:PORT]/PATH          status, headers, body size
--   lua5.4 examples/https_get.lua --cafile CA.pem https://HOST/PATH  trust CA.pem, not the system store
--   lua5.4 examples/https_get.lua --demo                            no network beyond 127.0.0.1
-- --demo needs the openssl command. The module must be on the Lua paths:
-- eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"
local ssl = asyncio.ssl
local http1 = dofile((arg[0]:match("^(.*)/") or ".") .. "/http1.lua")

local TIMEOUT = 15

-- A body without Content-Length or chunking ends where the connection does.
-- Over TLS only the server's close_notify marks that end for sure: a TCP
-- close without it (SSLEOFError) may be an attacker cutting the body short,
-- so the body is kept but flagged.
local function read_to_eof(reader, res)
  local parts = {}
  while true do
    local ok, data = pcall(reader.read, reader, 65536)
    if not ok then
      if not asyncio.isinstance(data, ssl.SSLEOFError) then error(data, 0) end
      res.ragged_eof = true
      break
    end
    if data == "" then break end
    parts[#parts + 1] = data
  end
  return table.concat(parts)
end

local function tls_info(writer)
  local obj = writer:get_extra_info("ssl_object")
  local cipher = obj:cipher()
  return {
    version = obj:version(),
    cipher = cipher and ("%s (%s, %s bits)"):format(cipher[1], cipher[2], cipher[3]),
    alpn = obj:selected_alpn_protocol(),
    peercert = obj:getpeercert(),
  }
end

local function read_response(reader, writer)
  local res = http1.read_head(reader)
  res.tls = tls_info(writer)
  return http1.read_body(reader, res, read_to_eof)
end

-- close() sends close_notify; wait_closed() waits until the connection is
-- gone. Once the response is complete, a server that closed TCP without
-- close_notify (the reader holds an SSLEOFError) or reset is no error: the
-- error is returned, to be shown. Anything else (a cancellation) goes on.
local function is_connection_error(err)
  return asyncio.isinstance(err, ssl.SSLError) or asyncio.isinstance(err, asyncio.ConnectionError)
end

local function close_quietly(reader, writer)
  writer:close()
  local ok, err = pcall(writer.wait_closed, writer)
  if not ok and not is_connection_error(err) then error(err, 0) end
  return not ok and err or reader:exception()
end

-- GET url -> {status =, reason =, headers =, nheaders =, body =, chunks =,
-- tls = {version, cipher, alpn, peercert}, ragged_eof =, close_error =}.
-- opts: ssl (a context; default true: the default client context) and
-- server_hostname (default: the URL's host) for open_connection.
--
-- The request asks for no "Connection: close": the server then has no
-- reason to close first, and its response is read to its end (Content-Length
-- or the last chunk) before our close. A server that closes right after
-- the response anyway, without close_notify, makes the SSLEOFError arrive
-- together with the last bytes: the StreamReader raises it as Python's
-- does, at the next read, even with data still buffered.
local function get(url, opts)
  opts = opts or {}
  local host, port, path = http1.parse_url(url, "https", 443)
  local reader, writer = asyncio.open_connection(host, port, {
    ssl = opts.ssl or true,
    server_hostname = opts.server_hostname,
    ssl_handshake_timeout = TIMEOUT,
    ssl_shutdown_timeout = 5, -- a server that never answers close_notify
  })
  -- not `local writer <close>`: its wait_closed would raise the server's
  -- SSLEOFError over a complete response
  local ok, res = pcall(function()
    writer:write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lua-asyncio https_get\r\n"
      .. "Accept: */*\r\nAccept-Encoding: identity\r\n\r\n")
      :format(path, port == 443 and host or host .. ":" .. port))
    return read_response(reader, writer)
  end)
  local close_error = close_quietly(reader, writer)
  if not ok then error(res, 0) end
  res.close_error = close_error
  return res
end

local function fetch(url, opts)
  return asyncio.wait_for(function() return get(url, opts) end, TIMEOUT)
end

-- {{{"commonName", "localhost"}}, ...} -> "commonName=localhost, ..."
local function dn(name)
  local parts = {}
  for _, rdn in ipairs(name or {}) do
    for _, attr in ipairs(rdn) do parts[#parts + 1] = attr[1] .. "=" .. attr[2] end
  end
  return table.concat(parts, ", ")
end

local SHOWN_HEADERS = { "content-type", "content-length", "transfer-encoding", "server", "date", "location" }

local function show(url, res)
  print(("GET %s -> %s %d %s"):format(url, res.version, res.status, res.reason))
  local t = res.tls
  print(("  TLS: %s, %s, ALPN %s"):format(t.version, t.cipher, t.alpn or "none"))
  if t.peercert and t.peercert.subject then
    print(("  certificate: %s, issued by %s, valid until %s"):format(dn(t.peercert.subject),
      dn(t.peercert.issuer), t.peercert.notAfter))
  end
  print(("  %d headers, among them:"):format(res.nheaders))
  for _, name in ipairs(SHOWN_HEADERS) do
    local v = res.headers[name]
    if v then print(("    %s: %s"):format(name, #v > 70 and v:sub(1, 67) .. "..." or v)) end
  end
  print(("  body: %d bytes%s"):format(#res.body, res.chunks and " in " .. res.chunks .. " chunks" or ""))
  if res.ragged_eof then
    print("  warning: the server closed without close_notify; the body may be truncated")
  elseif res.close_error then
    print(("  closing: %s (ignored: the response was complete)"):format(tostring(res.close_error)))
  end
end

-- ---- the demo: a throwaway PKI ------------------------------------------

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- openssl's configuration for both certificates, so that the result does
-- not depend on the system's openssl.cnf. The server certificate names
-- localhost and 127.0.0.1; the CA may only sign.
local OPENSSL_CNF = [[
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
]]

-- Runs before the loop starts (os.execute blocks): a temporary directory
-- with ca.pem, server.pem, server.key. Returns the directory and the paths.
local function make_pki()
  local p = assert(io.popen("mktemp -d \"${TMPDIR:-/tmp}/https_get.XXXXXX\""))
  local dir = p:read("l")
  p:close()
  if not dir or dir == "" then error("mktemp -d failed") end
  local f = {
    cnf = dir .. "/openssl.cnf", log = dir .. "/openssl.log", ca = dir .. "/ca.pem", ca_key = dir .. "/ca.key",
    csr = dir .. "/server.csr", cert = dir .. "/server.pem", key = dir .. "/server.key", srl = dir .. "/ca.srl",
  }
  local q = {}
  for k, v in pairs(f) do q[k] = shell_quote(v) end
  local out = assert(io.open(f.cnf, "w"))
  out:write(OPENSSL_CNF)
  out:close()
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  local steps = {
    ("openssl req -x509 -config %s -extensions ca_ext %s -days 2 -subj '/CN=lua-asyncio demo CA'"
      .. " -keyout %s -out %s"):format(q.cnf, ec, q.ca_key, q.ca),
    ("openssl req -new -config %s %s -subj /CN=localhost -keyout %s -out %s"):format(q.cnf, ec, q.key, q.csr),
    ("openssl x509 -req -in %s -CA %s -CAkey %s -CAserial %s -CAcreateserial -days 2 -extfile %s"
      .. " -extensions server_ext -out %s"):format(q.csr, q.ca, q.ca_key, q.srl, q.cnf, q.cert),
  }
  for _, cmd in ipairs(steps) do
    if os.execute(cmd .. " >>" .. q.log .. " 2>&1") ~= true then
      local log = io.open(f.log)
      local text = log and log:read("a") or ""
      if log then log:close() end
      os.execute("rm -rf " .. shell_quote(dir))
      error("openssl failed: " .. cmd .. "\n" .. text, 0)
    end
  end
  return dir, f
end

-- ---- the demo server -----------------------------------------------------

local PAGES = {
  ["/hello"] = "Hello over TLS from lua-asyncio!\n",
  ["/chunked"] = { "This body ", "arrives in ", "several TLS records, ", "written with drain.\n" },
  ["/ragged"] = "This server does not answer close_notify.\n",
}

local function respond(writer, status, headers, body)
  local head = { "HTTP/1.1 " .. status }
  for _, h in ipairs(headers) do head[#head + 1] = h end
  head[#head + 1] = "Connection: close\r\n"
  writer:write(table.concat(head, "\r\n") .. "\r\n")
  if body then writer:write(body) end
end

-- One request per connection.
local function handle(reader, writer)
  local head = reader:readuntil("\r\n\r\n")
  local method, path = head:match("^(%u+) (%S+) HTTP/1%.%d\r\n")
  local page = PAGES[path]
  if method ~= "GET" then
    respond(writer, "405 Method Not Allowed", { "Content-Length: 0" })
  elseif path == "/ragged" then
    -- the response, then wait for the client's close_notify (read() returns
    -- "") and drop TCP without answering it, as many servers do
    respond(writer, "200 OK", { "Content-Type: text/plain", "Content-Length: " .. #page }, page)
    writer:drain()
    reader:read()
    writer.transport:abort()
    return
  elseif type(page) == "string" then
    respond(writer, "200 OK", { "Content-Type: text/plain", "Content-Length: " .. #page }, page)
  elseif page then
    respond(writer, "200 OK", { "Content-Type: text/plain", "Transfer-Encoding: chunked" })
    for _, piece in ipairs(page) do
      writer:write(("%x\r\n%s\r\n"):format(#piece, piece))
      writer:drain()
      asyncio.sleep(0.02) -- each chunk in a TLS record of its own
    end
    writer:write("0\r\n\r\n")
  else
    local body = "no page at " .. tostring(path) .. "\n"
    respond(writer, "404 Not Found", { "Content-Type: text/plain", "Content-Length: " .. #body }, body)
  end
  writer:drain()
end

-- cb(reader, writer) of start_server; it runs once the handshake is done.
-- Not `local writer <close>`: after the abort of /ragged, wait_closed may
-- raise what the connection was lost with, which is expected there.
local function serve_https(reader, writer)
  local ok, err = pcall(handle, reader, writer)
  writer:close() -- sends close_notify, unless aborted
  pcall(writer.wait_closed, writer)
  if not ok then error(err, 0) end
end

-- A fetch that must fail verification: returns the error.
local function expect_verify_failure(what, url, opts)
  local ok, err = pcall(fetch, url, opts)
  if ok then error(what .. ": the fetch succeeded, it should have failed verification") end
  if not asyncio.isinstance(err, ssl.SSLCertVerificationError) then
    error(what .. ": expected SSLCertVerificationError, got " .. tostring(err), 0)
  end
  print(("%s -> refused as it should be:\n  %s\n  verify_code %s: %s"):format(what, tostring(err),
    tostring(err.verify_code), tostring(err.verify_message)))
  return err
end

local function demo(files)
  local loop = asyncio.get_running_loop()
  -- The failed handshakes below reach the server's side as well: shown in
  -- one line each instead of the default handler's report.
  local failed_handshakes = 0
  loop:set_exception_handler(function(lp, context)
    local exc = context.exception
    if asyncio.isinstance(exc, ssl.SSLError) or asyncio.isinstance(exc, asyncio.ConnectionError) then
      failed_handshakes = failed_handshakes + 1
      print(("  (server side: %s: %s)"):format(context.message, tostring(exc)))
    else
      lp:default_exception_handler(context)
    end
  end)

  local server_ctx = ssl.create_default_context("server")
  server_ctx:load_cert_chain(files.cert, files.key)
  server_ctx:set_alpn_protocols({ "http/1.1" })
  local server <close> = asyncio.start_server(serve_https, "127.0.0.1", 0, { ssl = server_ctx })
  local base = ("https://127.0.0.1:%d"):format(server.sockets[1]:getsockname()[2])
  print("an HTTPS server on " .. base .. " with a certificate for localhost and 127.0.0.1")

  -- the client trusts only the throwaway CA (a PROTOCOL_TLS_CLIENT context
  -- verifies certificate and hostname, and has no certificates loaded); it
  -- offers h2 first, the server speaks http/1.1 only, so ALPN settles on that
  local client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  client_ctx:load_verify_locations(files.ca)
  client_ctx:set_alpn_protocols({ "h2", "http/1.1" })

  local checks = {
    -- server_hostname "localhost": sent as SNI, checked against DNS:localhost
    { "/hello", 200, PAGES["/hello"], "localhost" },
    -- no server_hostname: the IP address, checked against IP:127.0.0.1, no SNI
    { "/chunked", 200, table.concat(PAGES["/chunked"]) },
    { "/ragged", 200, PAGES["/ragged"], "localhost" },
    { "/missing", 404, "no page at /missing\n", "localhost" },
  }
  for _, c in ipairs(checks) do
    local res = fetch(base .. c[1], { ssl = client_ctx, server_hostname = c[4] })
    show(base .. c[1] .. (c[4] and " (server_hostname " .. c[4] .. ")" or ""), res)
    if res.status ~= c[2] or res.body ~= c[3] then
      error(("%s: got %d %q, expected %d %q"):format(c[1], res.status, res.body, c[2], c[3]))
    end
    if res.tls.alpn ~= "http/1.1" then error(c[1] .. ": ALPN gave " .. tostring(res.tls.alpn)) end
    if not (res.tls.version or ""):match("^TLSv1%.[23]$") then
      error(c[1] .. ": TLS version " .. tostring(res.tls.version))
    end
  end

  -- verification at work; both fail in the client's handshake, so
  -- open_connection raises and no request is sent
  expect_verify_failure("GET /hello with {ssl = true} (the system store does not know our CA)",
    base .. "/hello", { ssl = true, server_hostname = "localhost" })
  expect_verify_failure("GET /hello with server_hostname \"www.example.com\"",
    base .. "/hello", { ssl = client_ctx, server_hostname = "www.example.com" })

  asyncio.sleep(0.1) -- the server's side of those handshakes
  print(("4 responses checked, 2 verification failures as expected (%d failed handshakes seen by the server)")
    :format(failed_handshakes))
end

-- ---- command line ----------------------------------------------------------

local function usage()
  io.stderr:write("usage: lua5.4 https_get.lua [--cafile CA.pem] https://HOST[:PORT]/PATH | --demo\n")
  os.exit(2)
end

if arg[1] == "--demo" then
  local dir, files = make_pki()
  local ok, err = pcall(asyncio.run, function() demo(files) end)
  os.execute("rm -rf " .. shell_quote(dir))
  if not ok then
    io.stderr:write("https_get --demo: ", tostring(err), "\n")
    os.exit(1)
  end
  print("removed the throwaway CA and certificate (" .. dir .. ")")
else
  local cafile, url = nil, arg[1]
  if arg[1] == "--cafile" then cafile, url = arg[2], arg[3] end
  if not url or not url:match("^https://") then usage() end
  local ok, res = pcall(asyncio.run, function()
    local ctx = true -- open_connection's default client context: the system store
    if cafile then
      ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) -- verifies, trusts nothing yet
      ctx:load_verify_locations(cafile)
    end
    return fetch(url, { ssl = ctx })
  end)
  if not ok then
    io.stderr:write("https_get: ", tostring(res), "\n")
    if asyncio.isinstance(res, ssl.SSLCertVerificationError) then
      io.stderr:write(("  verify_code %s: %s\n"):format(tostring(res.verify_code), tostring(res.verify_message)))
    end
    os.exit(1)
  end
  show(url, res)
end
