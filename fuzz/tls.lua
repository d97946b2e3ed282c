-- The TLS fuzz driver (run by fuzz/tls.c): a client and a server TLS stream
-- talk through a relay of two socket pairs. After a real handshake, one
-- input is a stream of operations: the client writes, and the relay passes
-- its records to the server as they are, with bytes flipped, cut short,
-- dropped or with random bytes put in, or closes. TLS lets no altered byte
-- through, so whatever the server reads must be a prefix of what the client
-- wrote (all of it when nothing was altered), and every failure must be one
-- of the errors API.md names; after each input every transport is closed and
-- no task is left.
local asyncio = require "asyncio"
local Input = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "input.lua")
local ssl = require "asyncio.ssl"

local isinstance = asyncio.isinstance

local function fail(what, ...)
  error(("tls: " .. what):format(...), 0)
end

-- one EC P-256 certificate for the whole run, made by the openssl CLI
local dir = os.tmpname()
os.remove(dir)
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
if not os.execute(("mkdir -p %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
      .. "-nodes -subj /CN=localhost -days 2 -keyout %s -out %s 2>/dev/null"):format(dir, key, cert)) then
  error("tls: the openssl CLI could not make a certificate", 0)
end
local sctx = ssl.create_default_context("server")
sctx:load_cert_chain(cert, key)
os.remove(cert)
os.remove(key)
os.remove(dir)
local cctx = ssl.create_default_context()
cctx.check_hostname = false
cctx.verify_mode = ssl.CERT_NONE

-- the errors a broken TLS stream may raise to the reader
local function allowed(err)
  return isinstance(err, ssl.SSLError) or isinstance(err, asyncio.ConnectionError)
    or isinstance(err, asyncio.IncompleteReadError) or isinstance(err, asyncio.TimeoutError)
end

local function pump(reader, writer) -- everything the server sends goes to the client as is
  while true do
    local ok, data = pcall(reader.read, reader, 65536)
    if not ok or data == "" then break end
    writer:write(data)
  end
  writer:close()
end

local function run(input)
  local inp = Input(input)
  local function byte() return inp:byte() end
  local ca, ra = asyncio.socketpair() -- client <-> relay
  local rb, sb = asyncio.socketpair() -- relay <-> server
  local cr, cw = asyncio.open_connection(nil, nil, { sock = ca })
  local r1, w1 = asyncio.open_connection(nil, nil, { sock = ra })
  local r2, w2 = asyncio.open_connection(nil, nil, { sock = rb })
  local sr, sw = asyncio.open_connection(nil, nil, { sock = sb })
  local back = asyncio.create_task(pump, r2, w1)
  -- the handshake: the relay passes the client's flight through untouched
  local fwd = asyncio.create_task(function()
    while true do
      local data = r1:read(65536)
      if data == "" then return end
      w2:write(data)
    end
  end)
  local server_tls = asyncio.create_task(function() sw:start_tls(sctx, { server_side = true }) end)
  cw:start_tls(cctx, { server_hostname = "localhost" })
  server_tls:await()
  fwd:cancel()
  asyncio.wait({ fwd })

  local received, sent, altered = {}, {}, false
  local server_err
  local server = asyncio.create_task(function()
    while true do
      local ok, data = pcall(sr.read, sr, 65536)
      if not ok then
        server_err = data
        break
      end
      if data == "" then break end
      received[#received + 1] = data
    end
    sw:close()
  end)
  -- the records the client wrote and the relay has not passed on yet,
  -- whole (a 5-byte header: type, version, length)
  local function take()
    local data = ""
    repeat
      local more = r1:read(65536)
      if more == "" then return data end
      data = data .. more
      local at = 1
      while at + 4 <= #data do at = at + 5 + (data:byte(at + 3) << 8 | data:byte(at + 4)) end
    until at == #data + 1
    return data
  end
  local closed = false
  while inp:more() and not closed and not server:done() do
    local op = byte() % 8
    if op <= 2 then -- the client writes; the relay passes it on (op 0) or alters it
      local n = 1 + byte() * 64 + byte()
      local chunk = ("%d:"):format(#sent):rep(n // 3 + 1):sub(1, n)
      cw:write(chunk)
      cw:drain()
      sent[#sent + 1] = chunk
      local data = take()
      if op == 1 and #data > 0 then -- flip one byte
        local at = (byte() << 8 | byte()) % #data + 1
        data = data:sub(1, at - 1) .. string.char(data:byte(at) ~ (byte() | 1)) .. data:sub(at + 1)
        altered = true
      elseif op == 2 then -- cut short, or drop it all
        data = data:sub(1, (byte() << 8 | byte()) % (#data + 1))
        altered = true
      end
      w2:write(data)
    elseif op <= 4 then -- random bytes from the input, alone or before a real record
      local n = byte() % 64
      w2:write(inp:bytes(n))
      altered = true
    elseif op == 5 then -- the client closes (close_notify), the relay passes it on
      cw:close()
      w2:write(take())
      closed = true
    elseif op == 6 then -- the relay goes: the server sees EOF without close_notify
      closed, altered = true, true
    else
      asyncio.sleep(0)
    end
    asyncio.sleep(0)
  end
  if not closed then cw:close() end
  w2:close()
  w1:close()
  local done = asyncio.wait({ server }, { timeout = 5 })
  if #done == 0 then fail("the server did not finish") end
  cw:close()
  asyncio.wait({ back }, { timeout = 5 })
  if server_err ~= nil and not allowed(server_err) then
    error(server_err, 0)
  end
  local want, have = table.concat(sent), table.concat(received)
  if have ~= want:sub(1, #have) then fail("the server read bytes the client never wrote") end
  if not altered and server_err == nil and closed and have ~= want then
    fail("unaltered: the client wrote %d bytes, the server read %d", #want, #have)
  end
  for _, w in ipairs({ cw, w1, w2, sw }) do w:wait_closed() end
  asyncio.sleep(0)
  if #asyncio.all_tasks() ~= 1 then fail("%d tasks left", #asyncio.all_tasks() - 1) end
end

local loop = asyncio.new_event_loop()

return function(input)
  loop:run_until_complete(function() run(input) end)
end
