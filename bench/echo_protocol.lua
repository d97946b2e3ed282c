-- TCP echo server on 127.0.0.1:PORT with a protocol whose data_received
-- writes the bytes back (the shared echo benchmark's `EXTRA` peer); with
-- --tls, TLS echo on the same address (the benchmarks' TLS mode):
--   lua5.4 bench/echo_protocol.lua PORT [--tls CERT KEY]
local asyncio = require "asyncio"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local port, ctx = common.echo_args(arg, "echo_protocol.lua")

local Echo = {}
Echo.__index = Echo

-- over TLS, connection_made runs once the handshake is done, and
-- data_received gets the plaintext
function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end

asyncio.run(function()
  local loop = asyncio.get_running_loop()
  if ctx then common.quiet_client_errors(loop) end
  local server = loop:create_server(function() return setmetatable({}, Echo) end,
    "127.0.0.1", port, { backlog = 1024, ssl = ctx })
  server:serve_forever()
end)
