-- examples/chat_server.lua: a line-based chat room over TCP with streams.
--
-- A client's first line is its name; every line it sends after that goes to
-- all the other clients as "<name> line"; the others hear "* name joined" /
-- "* name left", and a newcomer hears who is there.
--
-- It shows:
--   1. asyncio.start_server with a task per client, all sharing one table of
--      members (no locks needed: tasks switch only where they await);
--   2. one bounded asyncio.Queue per member and a sender task draining it
--      into the member's writer: a broadcast never waits for a slow reader,
--      and a member whose queue fills up is dropped instead of growing the
--      server's memory (QueueFull);
--   3. reader:readline() / reader:lines() ending at EOF, and cleanup on every
--      path (a to-be-closed writer, the sender task cancelled);
--   4. in --demo, three scripted clients (open_connection) talking in the
--      same process, each printing what it receives, then checked.
--
-- Run it with
--   lua5.4 examples/chat_server.lua [PORT]    serve until Ctrl-C (default port 7000)
--   lua5.4 examples/chat_server.lua --demo    the scripted conversation, ~1 s
-- and chat with `nc 127.0.0.1 PORT` from a few terminals. The module must be
-- on the Lua paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local OUTBOX = 100 -- lines queued for one member before it counts as too slow

-- The room: name -> member ({queue =, writer =}).
local function new_room()
  local room = { members = {} }

  function room.broadcast(from, text)
    for name, m in pairs(room.members) do
      if name ~= from then
        local ok, err = pcall(m.queue.put_nowait, m.queue, text)
        if not ok and asyncio.isinstance(err, asyncio.QueueFull) then
          m.writer.transport:abort() -- too slow: its handler sees the loss and leaves
        end
      end
    end
  end

  -- cb(reader, writer) for start_server
  function room.handle(reader, w)
    local writer <close> = w
    writer:write("name? ")
    local name = (reader:readline():gsub("%s+$", ""))
    if name == "" or room.members[name] then
      writer:write("* that name is taken or empty, bye\n")
      return
    end
    local member = { queue = asyncio.Queue(OUTBOX), writer = writer }
    local sender = asyncio.create_task(pcall, function() -- ends at the loss or the cancel
      while true do
        writer:write(member.queue:get())
        writer:drain()
      end
    end)
    local here = {}
    for other in pairs(room.members) do here[#here + 1] = other end
    table.sort(here)
    member.queue:put_nowait(("* welcome %s; here: %s\n"):format(name,
      #here > 0 and table.concat(here, ", ") or "nobody yet"))
    room.members[name] = member
    room.broadcast(name, ("* %s joined\n"):format(name))
    pcall(function()
      for line in reader:lines() do
        room.broadcast(name, ("<%s> %s\n"):format(name, (line:gsub("%s+$", ""))))
      end
    end)
    room.members[name] = nil
    room.broadcast(name, ("* %s left\n"):format(name))
    sender:cancel()
  end

  return room
end

-- ---- the demo -----------------------------------------------------------------

-- A scripted client: joins as `name`, prints and records every line it
-- receives, and runs `script(say)` where say(text) sends a line.
local function client(port, name, script, transcripts)
  local reader, w = asyncio.open_connection("127.0.0.1", port)
  local writer <close> = w
  local seen = {}
  transcripts[name] = seen
  reader:readexactly(#"name? ")
  writer:write(name .. "\n")
  local listener = asyncio.create_task(function()
    for line in reader:lines() do
      line = line:gsub("\n$", "")
      seen[#seen + 1] = line
      print(("  %-6s| %s"):format(name, line))
    end
  end)
  script(function(text)
    print(("  %-6s> %s"):format(name, text))
    writer:write(text .. "\n")
  end)
  writer:write_eof() -- leaving: the server sees EOF
  listener:await()   -- and closes our connection, which ends lines()
end

local function demo()
  local room = new_room()
  local server <close> = asyncio.start_server(room.handle, "127.0.0.1", 0)
  local port = server.sockets[1]:getsockname()[2]
  print(("chat server on 127.0.0.1:%d; three clients join, talk and leave"):format(port))
  -- the timeline, in steps of 0.1 s: alice, bob and carol join at 0, 0.5
  -- and 1; carol talks at 2 and leaves at 3, alice talks at 4 and 7 and
  -- leaves at 8, bob talks at 5.5 and leaves at 10.5
  local step = 0.1
  local transcripts = {}
  local people = {
    alice = function(say)
      asyncio.sleep(4 * step)
      say("hi all")
      asyncio.sleep(3 * step)
      say("see you")
      asyncio.sleep(step)
    end,
    bob = function(say)
      asyncio.sleep(5 * step)
      say("hello alice")
      asyncio.sleep(5 * step)
    end,
    carol = function(say)
      asyncio.sleep(step)
      say("hey, I must go")
      asyncio.sleep(step)
    end,
  }
  local tasks = {}
  for i, name in ipairs { "alice", "bob", "carol" } do
    tasks[i] = asyncio.create_task(function()
      asyncio.sleep((i - 1) * step / 2) -- join in this order
      client(port, name, people[name], transcripts)
    end)
  end
  asyncio.gather(tasks):await()

  -- bob was there from before carol came until after alice left
  local want = { "* welcome bob; here: alice", "* carol joined", "<carol> hey, I must go", "* carol left", "<alice> hi all",
                 "<alice> see you", "* alice left" }
  local got = table.concat(transcripts.bob, "\n")
  if got ~= table.concat(want, "\n") then
    error(("bob heard:\n%s\nexpected:\n%s"):format(got, table.concat(want, "\n")))
  end
  print("the conversation went as scripted")
end

local function serve(port)
  local room = new_room()
  local server <close> = asyncio.start_server(room.handle, "127.0.0.1", port)
  print(("chat server on 127.0.0.1:%d (Ctrl-C stops it)"):format(server.sockets[1]:getsockname()[2]))
  io.stdout:flush()
  local ok, err = pcall(server.serve_forever, server) -- SIGINT cancels asyncio.run's main task
  server:close_clients()
  if not ok and not asyncio.isinstance(err, asyncio.CancelledError) then error(err, 0) end
  print("chat server stopped")
end

if arg[1] == "--demo" then
  asyncio.run(demo)
else
  local port = tonumber(arg[1] or "7000")
  if not port then
    io.stderr:write("usage: lua5.4 chat_server.lua [PORT | --demo]\n")
    os.exit(2)
  end
  asyncio.run(function() serve(port) end)
end
