-- TCP echo server on 127.0.0.1:PORT with a protocol whose data_received
-- writes the bytes back (the shared echo benchmark's `EXTRA` peer):
--   lua5.4 bench/echo_protocol.lua PORT
local asyncio = require "asyncio"

local port = tonumber(arg[1]) or error("usage: lua5.4 echo_protocol.lua PORT")

local Echo = {}
Echo.__index = Echo

function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end

asyncio.run(function()
  local loop = asyncio.get_running_loop()
  local server = loop:create_server(function() return setmetatable({}, Echo) end,
    "127.0.0.1", port, { backlog = 1024 })
  server:serve_forever()
end)
