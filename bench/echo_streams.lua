-- TCP echo server on 127.0.0.1:PORT with streams: one task per connection
-- reads, writes and drains (the shared echo benchmark's `EXTRA` peer):
--   lua5.4 bench/echo_streams.lua PORT
local asyncio = require "asyncio"

local port = tonumber(arg[1]) or error("usage: lua5.4 echo_streams.lua PORT")

local function echo(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data)
    writer:drain()
  end
  writer:close()
end

asyncio.run(function()
  local server = asyncio.start_server(echo, "127.0.0.1", port, { backlog = 1024 })
  server:serve_forever()
end)
