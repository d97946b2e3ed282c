-- examples/echo_server.lua: a line echo server on 127.0.0.1 with streams.
--
-- It shows:
--   1. asyncio.start_server: each connection runs cb(reader, writer) as a
--      task of its own; port 0 lets the system pick a free port, read back
--      from server.sockets[1]:getsockname();
--   2. reading lines with `for line in reader:lines()`, writing them back
--      with writer:write and writer:drain (which waits while the client does
--      not read: a slow client cannot make the server buffer without bound);
--   3. writer:get_extra_info("peername") and writer:wait_closed();
--   4. stopping by itself after MAX connections, or on SIGINT (Ctrl-C)
--      through loop:add_signal_handler: the server stops listening, closes
--      the connections left and waits for them (server:wait_closed()).
--
-- Run it with
--   lua5.4 examples/echo_server.lua [PORT [MAX]]
-- PORT 0 (the default) picks a free port; the server prints
-- "listening on 127.0.0.1:PORT" once it accepts connections. Without MAX it
-- serves until Ctrl-C. Talk to it with examples/echo_client.lua PORT (or
-- `nc 127.0.0.1 PORT`). `make demo` runs it with three clients. The module
-- must be on the Lua paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local port = tonumber(arg[1] or "0")
local max = arg[2] and tonumber(arg[2])
if not port or (arg[2] and not max) then
  io.stderr:write("usage: lua5.4 echo_server.lua [PORT [MAX_CONNECTIONS]]\n")
  os.exit(2)
end

local function log(fmt, ...)
  print(("server: " .. fmt):format(...))
  io.stdout:flush() -- stdout may be a pipe: whoever waits for the port sees it now
end

local function main()
  local loop = asyncio.get_running_loop()
  local stop = asyncio.Event()
  local reason
  local served = 0

  -- A task per connection; an error here would reach the loop's exception
  -- handler and close the connection, so it is caught to be counted too.
  local function handle(reader, writer)
    local peer = writer:get_extra_info("peername")
    local who = ("%s:%d"):format(peer[1], peer[2])
    log("%s connected", who)
    local n = 0
    local ok, err = pcall(function()
      for line in reader:lines() do -- ends at the client's EOF
        writer:write(line)
        writer:drain()
        n = n + 1
      end
    end)
    writer:close()
    writer:wait_closed()
    log("%s gone after %d lines%s", who, n, ok and "" or " (" .. tostring(err) .. ")")
    served = served + 1
    if max and served >= max and not stop:is_set() then
      reason = ("served %d connections"):format(served)
      stop:set()
    end
  end

  local server = asyncio.start_server(handle, "127.0.0.1", port)
  loop:add_signal_handler("SIGINT", function()
    reason = "SIGINT"
    stop:set()
  end)
  log("listening on 127.0.0.1:%d", server.sockets[1]:getsockname()[2])

  stop:wait()
  loop:remove_signal_handler("SIGINT")
  log("stopping (%s)", reason)
  server:close()         -- no new connections
  server:close_clients() -- and no waiting for idle ones
  server:wait_closed()
  log("stopped")
end

asyncio.run(main)
