-- Handing sockets to child processes by descriptor number:
--   1. a worker child that talks to its parent over one end of a socketpair
--      (passed with pass_fds; both sides use streams over opts.sock),
--   2. a supervisor that binds a listening socket and lets a child serve on
--      it (as systemd's socket activation does), then connects as a client.
-- usage: lua5.4 examples/socketpair_child.lua
-- (with the project's tree: eval $(luarocks --lua-version 5.4 --tree .build/tree path))
local asyncio = require "asyncio"
local socket = asyncio.socket

local LUA, SCRIPT = arg[-1] or "lua5.4", arg[0]

-- The worker: squares the numbers its parent sends, one per line, until EOF.
local function worker(fd)
  local reader, writer = asyncio.open_connection(nil, nil, { sock = fd })
  for line in reader:lines() do
    local n = tonumber(line)
    writer:write(n and ("%d\n"):format(n * n) or "?\n")
  end
  writer:close()
  writer:wait_closed()
end

-- The served child: one line back per connection, then it stops serving.
local function server(fd, connections)
  local served = 0
  local done = asyncio.Event()
  local srv = asyncio.start_server(function(reader, writer)
    local line = reader:readline()
    writer:write("the child got: " .. line)
    writer:close()
    served = served + 1
    if served == connections then done:set() end
  end, nil, nil, { sock = fd })
  done:wait()
  srv:close()
  srv:wait_closed()
end

local function spawn(args, fd)
  local argv = { LUA, SCRIPT }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local child = asyncio.create_subprocess_exec(argv, { pass_fds = { fd } })
  socket.close(fd) -- the child has its own copy now
  return child
end

local function parent()
  -- 1. the worker over a socketpair
  local mine, theirs = asyncio.socketpair()
  local child = spawn({ "worker", tostring(theirs) }, theirs)
  local reader, writer = asyncio.open_connection(nil, nil, { sock = mine })
  local sum = 0
  for i = 1, 10 do
    writer:write(i .. "\n")
    sum = sum + tonumber(reader:readline())
  end
  writer:write_eof()
  assert(reader:read() == "") -- the worker closed its end
  writer:close()
  print(("1. socketpair worker (pid %d): sum of squares 1..10 = %d, exit code %d"):format(
    child.pid, sum, child:wait()))

  -- 2. a listening socket bound here, served by a child
  local ls = socket.socket("inet")
  socket.bind(ls, { "127.0.0.1", 0 })
  socket.listen(ls)
  local port = socket.getsockname(ls)[2]
  child = spawn({ "server", tostring(ls), "3" }, ls)
  for i = 1, 3 do
    local r, w = asyncio.open_connection("127.0.0.1", port)
    w:write(("hello %d\n"):format(i))
    io.write("2. ", r:readline())
    w:close()
  end
  print(("2. the server child on 127.0.0.1:%d exited with %d"):format(port, child:wait()))
end

local role, fd = arg[1], tonumber(arg[2])
asyncio.run(function()
  if role == "worker" then
    worker(fd)
  elseif role == "server" then
    server(fd, tonumber(arg[3]))
  else
    asyncio.wait_for(parent, 30)
  end
end)
