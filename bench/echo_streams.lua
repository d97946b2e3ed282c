-- TCP echo server on 127.0.0.1:PORT with streams: one task per connection
-- reads, writes and drains (the shared echo benchmark's `EXTRA` peer); with
-- --tls, TLS echo on the same address (the benchmarks' TLS mode):
--   lua5.4 bench/echo_streams.lua PORT [--tls CERT KEY]
local asyncio = require "asyncio"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local port, ctx = common.echo_args(arg, "echo_streams.lua")

local function echo(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then break end
    writer:write(data)
    writer:drain()
  end
end

-- a client that resets its connection (or, over TLS, goes without
-- close_notify) is not an error for an echo server
local function serve(reader, writer)
  local ok, err = pcall(echo, reader, writer)
  writer:close()
  if not ok and not common.client_error(err) then error(err, 0) end
end

asyncio.run(function()
  if ctx then common.quiet_client_errors(asyncio.get_running_loop()) end
  local server = asyncio.start_server(serve, "127.0.0.1", port, { backlog = 1024, ssl = ctx })
  server:serve_forever()
end)
