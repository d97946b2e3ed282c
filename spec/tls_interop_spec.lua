-- TLS interop with programs nobody here wrote: openssl s_server and
-- s_client, Python's ssl module (/usr/bin/python3) as client and server,
-- and curl against a tiny HTTP/1.1 server of ours. Everything runs on
-- 127.0.0.1 with ports the kernel picks. Each child runs in the background
-- under `timeout 20` (there is no subprocess API yet), its output goes to
-- files, a task polls for it with asyncio.sleep, and after_each kills every
-- child that is still running.
local asyncio = require "asyncio"
local ssl = require "asyncio.ssl"
local helper = require "helper"
local certs = require "tlscerts"

local run = helper.run

local PYTHON = "/usr/bin/python3"
-- children run without the sanitizer runtime of the asan pass
local ENV = certs.env

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local workdir = certs.dir .. "/interop"
assert(os.execute(ENV .. "mkdir -p " .. q(workdir)))

---------------------------------------------------------------------------
-- Children

local children = {}
local seq = 0

-- starts `cmd` (a shell command line) in the background under timeout 20,
-- stdin from `input` (a string) or /dev/null; returns the child
local function spawn(cmd, input)
  seq = seq + 1
  local base = ("%s/child%d"):format(workdir, seq)
  local c = {
    cmd = cmd, out = base .. ".out", err = base .. ".err",
    rcfile = base .. ".rc", pidfile = base .. ".pid",
  }
  local stdin = "/dev/null"
  if input then
    stdin = base .. ".in"
    write_file(stdin, input)
  end
  local line = ("( %stimeout -k 2 20 %s <%s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s ) </dev/null >/dev/null 2>&1 &")
    :format(ENV, cmd, q(stdin), q(c.out), q(c.err), q(c.pidfile), q(c.rcfile))
  assert(os.execute(line))
  children[#children + 1] = c
  return c
end

local function child_rc(c)
  local s = read_file(c.rcfile)
  return s and tonumber(s:match("%d+"))
end

local function child_pid(c)
  local s = read_file(c.pidfile)
  return s and tonumber(s:match("%d+"))
end

local function describe_child(c)
  return ("command: %s\nexit: %s\nstdout:\n%s\nstderr:\n%s"):format(c.cmd, tostring(child_rc(c)),
    read_file(c.out) or "", read_file(c.err) or "")
end

local function kill(c)
  local pid = child_pid(c)
  if pid and not child_rc(c) then
    os.execute(ENV .. "kill -TERM " .. pid .. " 2>/dev/null")
  end
end

local function kill_all()
  for _, c in ipairs(children) do kill(c) end
  children = {}
end

-- Inside a task: waits until the child exits (at most `secs`); returns
-- exit status, stdout, stderr.
local function wait_child(c, secs)
  local loop = asyncio.get_running_loop()
  local deadline = loop:time() + (secs or 15)
  while not child_rc(c) do
    if loop:time() > deadline then
      kill(c)
      error("child still running after " .. (secs or 15) .. " s\n" .. describe_child(c), 2)
    end
    asyncio.sleep(0.02)
  end
  return child_rc(c), read_file(c.out) or "", read_file(c.err) or ""
end

-- Inside a task: waits until the child's stdout matches `pattern`; returns
-- the captures. Fails when the child exits first or after `secs`.
local function wait_output(c, pattern, secs)
  local loop = asyncio.get_running_loop()
  local deadline = loop:time() + (secs or 10)
  while true do
    local caps = table.pack((read_file(c.out) or ""):match(pattern))
    if caps[1] ~= nil then return table.unpack(caps, 1, caps.n) end
    if child_rc(c) then
      error("child exited before printing " .. pattern .. "\n" .. describe_child(c), 2)
    end
    if loop:time() > deadline then
      error("child never printed " .. pattern .. "\n" .. describe_child(c), 2)
    end
    asyncio.sleep(0.02)
  end
end

local function have(program)
  return os.execute("command -v " .. program .. " >/dev/null 2>&1") == true
end

---------------------------------------------------------------------------
-- Our side

local function port_of(server)
  return server.sockets[1]:getsockname()[2]
end

local function server_ctx(cert, key)
  local ctx = ssl.SSLContext("server")
  ctx:load_cert_chain(cert or certs.server_cert, key or certs.server_key)
  return ctx
end

local function client_ctx(cafile)
  local ctx = ssl.SSLContext("client")
  ctx:load_verify_locations(cafile or certs.ca)
  return ctx
end

local function record_exceptions()
  local contexts = {}
  asyncio.get_running_loop():set_exception_handler(function(_, ctx) contexts[#contexts + 1] = ctx end)
  return contexts
end

local function contains(s, needle)
  return tostring(s):find(needle, 1, true) ~= nil
end

-- zlib's Adler-32 (Python: zlib.adler32)
local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s, 4096 do
    local bytes = { s:byte(i, math.min(i + 4095, #s)) }
    for j = 1, #bytes do
      a = a + bytes[j]
      b = b + a
    end
    a, b = a % 65521, b % 65521
  end
  return b * 65536 + a
end

-- n bytes of a fixed pattern
local function pattern_bytes(n)
  local block = {}
  for i = 0, 250 do block[#block + 1] = string.char((i * 7 + 3) % 256) end
  block = table.concat(block)
  return string.rep(block, n // #block + 1):sub(1, n)
end

-- waits for wait_closed at most `secs`; true when it returned (or raised)
local function closed_within(writer, secs)
  return helper.within(secs, function()
    local ok, e = pcall(writer.wait_closed, writer)
    if not ok and asyncio.isinstance(e, asyncio.CancelledError) then error(e, 0) end
  end)
end

---------------------------------------------------------------------------

describe("TLS interop: openssl s_server", function()
  after_each(kill_all)

  it("our client verifies s_server (-rev) with the test CA, negotiates ALPN, closes cleanly", function()
    assert.is_true(have("openssl"), "openssl is not installed")
    local srv = spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -naccept 1 -rev -alpn h2,http/1.1")
      :format(q(certs.server_cert), q(certs.server_key)))
    run(function()
      local port = tonumber(wait_output(srv, "ACCEPT 127%.0%.0%.1:(%d+)"))
      local cctx = client_ctx()
      cctx:set_alpn_protocols { "http/1.1" }
      local reader, writer = asyncio.open_connection("127.0.0.1", port, { ssl = cctx, server_hostname = "localhost" })
      local so = writer:get_extra_info("ssl_object")
      assert.equal("TLSv1.3", so:version())
      assert.equal("http/1.1", so:selected_alpn_protocol())
      assert.equal("localhost", so:getpeercert().subject[3][1][2])
      writer:write("hello openssl\n")
      assert.equal(("hello openssl"):reverse() .. "\n", reader:readline())
      writer:write("second line\n")
      assert.equal(("second line"):reverse() .. "\n", reader:readline())
      -- close_notify both ways: s_server answers ours and ends (-naccept 1)
      writer:close()
      assert.is_true(closed_within(writer, 5), "no close_notify exchange with s_server")
      local rc, out = wait_child(srv, 10)
      assert.equal(0, rc, describe_child(srv))
      assert.is_true(contains(out, "ALPN protocols selected: http/1.1"), out)
    end, 20)
  end)

  it("s_server asking for a client certificate (TLS 1.2 only) accepts ours", function()
    assert.is_true(have("openssl"), "openssl is not installed")
    local srv = spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -naccept 1 -rev -tls1_2 -Verify 1 -CAfile %s -verify_return_error")
      :format(q(certs.server_cert), q(certs.server_key), q(certs.ca)))
    run(function()
      local port = tonumber(wait_output(srv, "ACCEPT 127%.0%.0%.1:(%d+)"))
      local cctx = client_ctx()
      cctx:load_cert_chain(certs.client_cert, certs.client_key)
      local reader, writer = asyncio.open_connection("127.0.0.1", port, { ssl = cctx, server_hostname = "localhost" })
      local so = writer:get_extra_info("ssl_object")
      assert.equal("TLSv1.2", so:version())
      assert.equal("TLSv1.2", so:cipher()[2])
      writer:write("mutual\n")
      assert.equal("lautum\n", reader:readline())
      writer:close()
      closed_within(writer, 5)
      local rc, _, err = wait_child(srv, 10)
      assert.equal(0, rc, describe_child(srv))
      assert.is_true(contains(err, "CN = client"), err)
    end, 20)
  end)

  it("our client refuses s_server's certificate from an unknown CA", function()
    assert.is_true(have("openssl"), "openssl is not installed")
    local srv = spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s -key %s -naccept 1 -rev")
      :format(q(certs.other_cert), q(certs.other_key)))
    run(function()
      local port = tonumber(wait_output(srv, "ACCEPT 127%.0%.0%.1:(%d+)"))
      local err = helper.err_of(asyncio.open_connection, "127.0.0.1", port,
        { ssl = client_ctx(), server_hostname = "localhost" })
      helper.assert_class(ssl.SSLCertVerificationError, err)
      assert.equal(20, err.verify_code)
      wait_child(srv, 10)
    end, 20)
  end)
end)

describe("TLS interop: openssl s_client", function()
  after_each(kill_all)

  it("s_client verifies our server, negotiates ALPN and gets our reply", function()
    assert.is_true(have("openssl"), "openssl is not installed")
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      sctx:set_alpn_protocols { "http/1.1" }
      local server = asyncio.start_server(function(reader, writer)
        pcall(function()
          local line = reader:readline()
          local so = writer:get_extra_info("ssl_object")
          writer:write(("pong %s %s %s"):format(so:version(), tostring(so:selected_alpn_protocol()), line))
          writer:drain()
        end)
        writer:close()
      end, "127.0.0.1", 0, { ssl = sctx })
      local c = spawn(("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s -verify_return_error -verify_hostname localhost -alpn h2,http/1.1 -ign_eof")
        :format(port_of(server), q(certs.ca)), "ping\n")
      local rc, out = wait_child(c, 15)
      assert.equal(0, rc, describe_child(c))
      assert.is_true(contains(out, "pong TLSv1.3 http/1.1 ping\n"), describe_child(c))
      assert.is_true(contains(out, "Verify return code: 0 (ok)"), describe_child(c))
      assert.is_true(contains(out, "ALPN protocol: http/1.1"), describe_child(c))
      server:close()
      server:wait_closed()
      assert.same({}, contexts)
    end, 20)
  end)

  it("s_client with a client certificate over TLS 1.2 against our server that requires one", function()
    assert.is_true(have("openssl"), "openssl is not installed")
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      sctx.verify_mode = ssl.CERT_REQUIRED
      sctx:load_verify_locations(certs.ca)
      local served = 0
      local server = asyncio.start_server(function(reader, writer)
        served = served + 1
        pcall(function()
          reader:readline()
          local cert = writer:get_extra_info("peercert")
          local so = writer:get_extra_info("ssl_object")
          writer:write(("hello %s over %s\n"):format(cert.subject[1][1][2], so:version()))
          writer:drain()
        end)
        writer:close()
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local c = spawn(("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s -verify_return_error -cert %s -key %s -tls1_2 -ign_eof")
        :format(port, q(certs.ca), q(certs.client_cert), q(certs.client_key)), "hi\n")
      local rc, out = wait_child(c, 15)
      assert.equal(0, rc, describe_child(c))
      assert.is_true(contains(out, "hello client over TLSv1.2\n"), describe_child(c))
      -- without a certificate: refused, and the failure reaches the exception handler
      local c2 = spawn(("openssl s_client -connect 127.0.0.1:%d -servername localhost -CAfile %s -ign_eof")
        :format(port, q(certs.ca)), "hi\n")
      local _, out2 = wait_child(c2, 15)
      assert.is_false(contains(out2, "hello"), describe_child(c2))
      helper.wait_until(function() return #contexts >= 1 end)
      helper.assert_class(ssl.SSLError, contexts[1].exception)
      assert.equal(1, served)
      server:close()
      server:wait_closed()
    end, 30)
  end)
end)

---------------------------------------------------------------------------

local PY_CLIENT = [=[
import socket, ssl, sys, zlib
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["x-unknown", "http/1.1"])
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="localhost")
buf = b""
def fill():
    global buf
    d = s.recv(65536)
    if not d:
        raise EOFError("unexpected EOF")
    buf += d
def readline():
    global buf
    while b"\n" not in buf:
        fill()
    i = buf.index(b"\n") + 1
    line, buf = buf[:i], buf[i:]
    return line.decode()
def readexactly(k):
    global buf
    while len(buf) < k:
        fill()
    data, buf = buf[:k], buf[k:]
    return data
print("version", s.version())
print("alpn", s.selected_alpn_protocol())
print("peer", s.getpeercert()["subject"][-1][0][1])
s.sendall(b"HELLO python\n")
print("reply", readline().strip())
data = bytes((i * 13 + 5) % 256 for i in range(n))
s.sendall(b"UP %d\n" % n + data)
print("up", readline().strip(), n, zlib.adler32(data))
s.sendall(b"DOWN %d\n" % n)
got = readexactly(n)
print("down", len(got), zlib.adler32(got))
s.unwrap()
print("unwrapped", flush=True)
raw.close()
]=]

local PY_SERVER = [=[
import socket, ssl, sys
cert, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2", "http/1.1"])
seen = {}
def on_sni(sslobj, name, c):
    seen["sni"] = name
ctx.sni_callback = on_sni
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
ls.settimeout(15)
print("PORT", ls.getsockname()[1], flush=True)
for i in range(count):
    raw, _ = ls.accept()
    raw.settimeout(10)
    seen.clear()
    try:
        s = ctx.wrap_socket(raw, server_side=True)
    except Exception as e:
        print("handshake failed", e, flush=True)
        continue
    buf = b""
    while b"\n" not in buf:
        d = s.recv(1024)
        if not d:
            break
        buf += d
    cmd = buf.split(b"\n")[0].decode()
    if cmd == "INFO":
        s.sendall(("sni=%s alpn=%s version=%s\n" % (seen.get("sni"), s.selected_alpn_protocol(), s.version())).encode())
        while s.recv(1024):
            pass
        s.unwrap()
        print("served INFO", flush=True)
    elif cmd == "RAGGED":
        s.sendall(b"bye\n")
        s.shutdown(socket.SHUT_RDWR)  # a FIN, no close_notify
        s.close()
        print("served RAGGED", flush=True)
    elif cmd == "HALF":
        rest = buf.split(b"\n", 1)[1]
        while True:
            d = s.recv(1024)
            if not d:
                break
            rest += d
        s.sendall(b"after eof " + rest + b"\n")
        s.unwrap()
        print("served HALF", flush=True)
    else:
        print("unknown command", repr(cmd), flush=True)
        s.close()
print("done", flush=True)
]=]

describe("TLS interop: Python's ssl module", function()
  after_each(kill_all)

  it("a Python client against our server: verification, ALPN, 2 MiB up and down, unwrap", function()
    assert.is_true(have(PYTHON), PYTHON .. " is missing")
    local script = workdir .. "/client.py"
    write_file(script, PY_CLIENT)
    local n = 2 * 1024 * 1024
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      sctx:set_alpn_protocols { "h2", "http/1.1" }
      local ends = {}
      local server = asyncio.start_server(function(reader, writer)
        local ok, err = pcall(function()
          while true do
            local line = reader:readline()
            if line == "" then
              ends[#ends + 1] = "clean EOF"
              break
            end
            local cmd, arg = line:match("^(%u+) ?(.-)\n$")
            if cmd == "HELLO" then
              writer:write(("hi %s, %s %s\n"):format(arg, writer:get_extra_info("ssl_object"):version(),
                tostring(writer:get_extra_info("ssl_object"):selected_alpn_protocol())))
            elseif cmd == "UP" then
              local data = reader:readexactly(tonumber(arg))
              writer:write(("%d %d\n"):format(#data, adler32(data)))
            elseif cmd == "DOWN" then
              writer:write(pattern_bytes(tonumber(arg)))
            end
            writer:drain()
          end
        end)
        if not ok then ends[#ends + 1] = tostring(err) end
        writer:close()
      end, "127.0.0.1", 0, { ssl = sctx })
      local c = spawn(("%s %s %d %s %d"):format(PYTHON, q(script), port_of(server), q(certs.ca), n))
      local rc, out = wait_child(c, 20)
      assert.equal(0, rc, describe_child(c))
      assert.is_true(contains(out, "version TLSv1.3\n"), out)
      assert.is_true(contains(out, "alpn http/1.1\n"), out)
      assert.is_true(contains(out, "peer localhost\n"), out)
      assert.is_true(contains(out, "reply hi python, TLSv1.3 http/1.1\n"), out)
      local got_n, got_sum, sent_n, sent_sum = out:match("\nup (%d+) (%d+) (%d+) (%d+)\n")
      assert.is_not_nil(got_n, out)
      assert.equal(sent_n, got_n)
      assert.equal(sent_sum, got_sum)
      assert.equal(tostring(n), got_n)
      local down_n, down_sum = out:match("\ndown (%d+) (%d+)\n")
      assert.equal(tostring(n), down_n)
      assert.equal(tostring(adler32(pattern_bytes(n))), down_sum)
      assert.is_true(contains(out, "unwrapped\n"), out)
      helper.wait_until(function() return #ends >= 1 end)
      assert.same({ "clean EOF" }, ends)
      server:close()
      server:wait_closed()
      assert.same({}, contexts)
    end, 30)
  end)

  it("our client against a Python server: SNI, ALPN, clean and ragged EOF, half-close", function()
    assert.is_true(have(PYTHON), PYTHON .. " is missing")
    local script = workdir .. "/server.py"
    write_file(script, PY_SERVER)
    local srv = spawn(("%s -u %s %s %s 5"):format(PYTHON, q(script), q(certs.server_cert), q(certs.server_key)))
    run(function()
      local port = tonumber(wait_output(srv, "PORT (%d+)"))
      local cctx = client_ctx()
      cctx:set_alpn_protocols { "http/1.1" }
      local function info(host, opts)
        opts.ssl = cctx
        local reader, writer = asyncio.open_connection(host, port, opts)
        writer:write("INFO\n")
        local line = reader:readline()
        writer:close() -- close_notify; Python answers with its own (unwrap)
        assert.is_true(closed_within(writer, 5), "no close_notify exchange with Python")
        return line
      end
      -- SNI is the host name; no SNI for an address or for server_hostname = ""
      assert.equal("sni=localhost alpn=http/1.1 version=TLSv1.3\n", info("127.0.0.1", { server_hostname = "localhost" }))
      assert.equal("sni=None alpn=http/1.1 version=TLSv1.3\n", info("127.0.0.1", {}))
      assert.equal("sni=None alpn=http/1.1 version=TLSv1.3\n", info("127.0.0.1", { server_hostname = "" }))
      -- ragged EOF: Python shuts the socket down without close_notify
      local reader, writer = asyncio.open_connection("127.0.0.1", port, { ssl = cctx, server_hostname = "localhost" })
      writer:write("RAGGED\n")
      assert.equal("bye\n", reader:readline())
      local err = helper.err_of(reader.read, reader)
      helper.assert_class(ssl.SSLEOFError, err)
      writer:close()
      -- half-close: our close_notify, then Python still writes, then sends its own
      reader, writer = asyncio.open_connection("127.0.0.1", port, { ssl = cctx, server_hostname = "localhost" })
      writer:write("HALF\nsome data")
      writer:write_eof()
      assert.equal("after eof some data\n", reader:readline())
      assert.equal("", reader:read())
      assert.is_true(reader:at_eof())
      writer:close()
      local rc, out = wait_child(srv, 10)
      assert.equal(0, rc, describe_child(srv))
      for _, want in ipairs { "served INFO", "served RAGGED", "served HALF", "done" } do
        assert.is_true(contains(out, want), describe_child(srv))
      end
      assert.is_false(contains(out, "handshake failed"), describe_child(srv))
    end, 30)
  end)
end)

---------------------------------------------------------------------------

describe("TLS interop: curl", function()
  after_each(kill_all)

  it("curl GETs (on one kept-alive connection) and POSTs over HTTPS from our HTTP/1.1 server", function()
    assert.is_true(have("curl"), "curl is not installed")
    local upload = workdir .. "/upload.bin"
    local body = pattern_bytes(1024 * 1024 + 17)
    write_file(upload, body)
    run(function()
      local contexts = record_exceptions()
      local sctx = server_ctx()
      sctx:set_alpn_protocols { "http/1.1" }
      local requests, connections = {}, 0
      local server = asyncio.start_server(function(reader, writer)
        connections = connections + 1
        local alpn = writer:get_extra_info("ssl_object"):selected_alpn_protocol()
        pcall(function()
          while true do
            local reqline = reader:readline()
            if reqline == "" then break end
            local method, target = reqline:match("^(%u+) (%S+) HTTP/1%.1\r\n$")
            local headers = {}
            while true do
              local h = reader:readline()
              if h == "\r\n" or h == "" then break end
              local k, v = h:match("^([^:]+):%s*(.-)\r\n$")
              if k then headers[k:lower()] = v end
            end
            if (headers.expect or ""):lower() == "100-continue" then
              writer:write("HTTP/1.1 100 Continue\r\n\r\n")
            end
            local len = tonumber(headers["content-length"] or "0")
            local data = len > 0 and reader:readexactly(len) or ""
            requests[#requests + 1] = { method = method, target = target, alpn = alpn, host = headers.host }
            local reply = ("%s %s %d %d\n"):format(method, target, #data, adler32(data))
            writer:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #reply ..
              "\r\n\r\n" .. reply)
            writer:drain()
          end
        end)
        writer:close()
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = port_of(server)
      local base = ("https://localhost:%d"):format(port)
      local common = ("curl -sS --cacert %s --resolve localhost:%d:127.0.0.1 -w 'code=%%{http_code} verify=%%{ssl_verify_result} http=%%{http_version}\\n'")
        :format(q(certs.ca), port)
      local c = spawn(("%s %s %s"):format(common, q(base .. "/hello"), q(base .. "/second?x=1")))
      local rc, out = wait_child(c, 15)
      assert.equal(0, rc, describe_child(c))
      assert.equal("GET /hello 0 1\ncode=200 verify=0 http=1.1\nGET /second?x=1 0 1\ncode=200 verify=0 http=1.1\n",
        out)
      assert.equal(1, connections, "curl did not keep the connection alive")
      assert.equal(2, #requests)
      assert.equal("http/1.1", requests[1].alpn)
      assert.equal(("localhost:%d"):format(port), requests[1].host)
      local c2 = spawn(("%s --data-binary @%s -H 'Content-Type: application/octet-stream' %s")
        :format(common, q(upload), q(base .. "/upload")))
      local rc2, out2 = wait_child(c2, 15)
      assert.equal(0, rc2, describe_child(c2))
      assert.equal(("POST /upload %d %d\ncode=200 verify=0 http=1.1\n"):format(#body, adler32(body)), out2)
      -- curl refuses our server without the test CA
      local c3 = spawn(("curl -sS --resolve localhost:%d:127.0.0.1 %s"):format(port, q(base .. "/nope")))
      local rc3 = wait_child(c3, 15)
      assert.equal(60, rc3, describe_child(c3))
      server:close()
      server:wait_closed()
      local handshake_failures = 0
      for _, ctx in ipairs(contexts) do
        if asyncio.isinstance(ctx.exception, ssl.SSLError) then handshake_failures = handshake_failures + 1 end
      end
      assert.equal(#contexts, handshake_failures) -- only the refused connection
      assert.is_true(handshake_failures <= 1)
    end, 40)
  end)
end)
