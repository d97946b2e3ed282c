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
end

-- a client that resets its connection is not an error for an echo server
local function serve(reader, writer)
  local ok, err = pcall(echo, reader, writer)
  writer:close()
  if not ok and not asyncio.isinstance(err, asyncio.ConnectionError) then error(err, 0) end
end

asyncio.run(function()
  local server = asyncio.start_server(serve, "127.0.0.1", port, { backlog = 1024 })
  server:serve_forever()
end)
