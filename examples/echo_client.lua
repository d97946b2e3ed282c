-- examples/echo_client.lua: sends lines to an echo server and checks that
-- each comes back intact.
--
-- It shows:
--   1. asyncio.open_connection -> reader, writer;
--   2. a writer task and the main task reading at the same time: the lines
--      go out with writer:writelines and writer:drain while reader:readline
--      takes the echoes back;
--   3. writer:write_eof() (half-close: "no more lines"), then reading to EOF,
--      which the server's close produces, with reader:read() returning "";
--   4. asyncio.wait_for bounding the whole exchange, and the writer closed
--      by a to-be-closed variable (`local writer <close>`) on every path.
--
-- Run it against examples/echo_server.lua:
--   lua5.4 examples/echo_client.lua PORT [LINES [HOST]]
-- It sends LINES lines (default 5) to HOST (default 127.0.0.1), prints what
-- came back and exits with status 1 when an echo differs. The module must be
-- on the Lua paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local port, nlines, host = tonumber(arg[1]), tonumber(arg[2] or "5"), arg[3] or "127.0.0.1"
if not port or not nlines then
  io.stderr:write("usage: lua5.4 echo_client.lua PORT [LINES [HOST]]\n")
  os.exit(2)
end

local function exchange()
  local reader, w = asyncio.open_connection(host, port)
  local writer <close> = w
  local me = writer:get_extra_info("sockname")
  local lines = {}
  for i = 1, nlines do
    lines[i] = ("line %d of %d from port %d: %s\n"):format(i, nlines, me[2], ("*"):rep(i))
  end
  local sender = asyncio.create_task(function()
    writer:writelines(lines)
    writer:drain()
    writer:write_eof()
  end)
  local bad = 0
  for i, sent in ipairs(lines) do
    local back = reader:readline()
    if back ~= sent then
      bad = bad + 1
      print(("client: line %d came back as %q"):format(i, back))
    end
  end
  sender:await()
  local rest = reader:read() -- "" once the server closed its end
  if rest ~= "" then
    bad = bad + 1
    print(("client: unexpected extra data %q"):format(rest))
  end
  return bad
end

local bad = asyncio.run(function()
  return asyncio.wait_for(exchange, 10)
end)
if bad > 0 then
  print(("client: %d of %d lines wrong"):format(bad, nlines))
  os.exit(1)
end
print(("client: %d lines echoed back intact by %s:%d"):format(nlines, host, port))
