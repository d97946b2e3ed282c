-- The control socket: a live view of a running program's tasks for another
-- process with no special rights (bin/lua-asyncio ps|pstree|top PID).
--
-- asyncio.run(main, {control = true}) (or LUA_ASYNCIO_CONTROL=1) serves a
-- Unix socket of mode 0600 named by the pid. A request is one line, "ps",
-- "pstree" or "top"; the reply is "ok N\n" or "error N\n" followed by N bytes
-- of text. The server is a protocol, not a task, so it never shows in its own
-- ps, and it does not keep asyncio.run from returning.
local core = require "asyncio.core"
local errors = require "asyncio.errors"
local graph = require "asyncio.graph"
local log = require "asyncio.log"

local M = {}

local MAX_REQUEST = 256 -- a longer line is no request of ours: drop the client

--- socket_path(pid [, dir]) -> where process pid serves its control socket:
-- under $XDG_RUNTIME_DIR when set, else /tmp.
function M.socket_path(pid, dir)
  if dir == nil then
    dir = os.getenv("XDG_RUNTIME_DIR")
    if dir == nil or dir == "" then dir = "/tmp" end
  end
  return ("%s/lua-asyncio-%d.sock"):format(dir, pid)
end

---------------------------------------------------------------------------
-- top

local pad = graph._pad

--- counter_columns(task) -> list of {header, value}: the columns top adds
-- after id, name and state; by default ps's counters (graph.stat_columns:
-- steps, busy s, idle s, wake ms). Replace it to show something else.
M.counter_columns = graph.stat_columns

local function location(stack)
  return stack[1] and graph._frame_label(stack[1]) or ""
end

--- top([loop]) -> one screen: a line about the process, then a row per
-- task (id, name, state, where it is suspended, the counter columns).
function M.top(loop)
  local rows = graph.snapshot(loop, M.top)
  local headers, seen, extra = { "task id", "task name", "state" }, {}, {}
  for _, r in ipairs(rows) do
    r.counters = {}
    for _, c in ipairs(M.counter_columns(r.task)) do
      if not seen[c[1]] then
        seen[c[1]] = true
        extra[#extra + 1] = c[1]
      end
      r.counters[c[1]] = c[2]
    end
  end
  local function line(id, name, state, counters, where)
    local cells = { pad(id, 18), pad(name, 20), pad(state, 9) }
    for _, h in ipairs(extra) do cells[#cells + 1] = pad(counters[h] or "", math.max(#h, 10)) end
    cells[#cells + 1] = where
    return (table.concat(cells, " "):gsub("%s+$", ""))
  end
  local header_counters = {}
  for _, h in ipairs(extra) do header_counters[h] = h end
  local buf = {
    ("lua-asyncio top - pid %d - %d task%s - %s"):format(core.getpid(), #rows, #rows == 1 and "" or "s",
      os.date("%H:%M:%S")),
    "",
    line(headers[1], headers[2], headers[3], header_counters, "location"),
  }
  for _, r in ipairs(rows) do
    buf[#buf + 1] = line(("%p"):format(r.task), r.name, r.state, r.counters, location(r.stack))
  end
  return table.concat(buf, "\n") .. "\n"
end

---------------------------------------------------------------------------
-- The server side

local commands = { ps = graph.ps, pstree = graph.pstree, top = M.top }

local function reply(loop, request)
  local command = commands[request]
  local ok, text
  if command == nil then
    ok, text = false, ("unknown request %q (ps, pstree or top)"):format(request)
  else
    ok, text = pcall(command, loop)
    if not ok then text = tostring(errors.is_error(text) and text.message or text) .. "\n" end
  end
  return ("%s %d\n%s"):format(ok and "ok" or "error", #text, text)
end

local function protocol(loop)
  local transport, buffer = nil, ""
  return {
    connection_made = function(_, tp) transport = tp end,
    data_received = function(_, data)
      buffer = buffer .. data
      while true do
        local request, rest = buffer:match("^([^\n]*)\n(.*)$")
        if request == nil then break end
        buffer = rest
        transport:write(reply(loop, (request:gsub("\r$", ""))))
      end
      if #buffer > MAX_REQUEST then transport:close() end
    end,
  }
end

--- serve(loop [, path]) -> Server on the control socket of this process
-- (socket_path(getpid()) by default), mode 0600. Close it with
-- server:close() and server:close_clients(), or close the loop: either way
-- the socket file goes.
function M.serve(loop, path)
  path = path or M.socket_path(core.getpid())
  return loop:create_unix_server(function() return protocol(loop) end, path, { mode = 384 })
end

-- For asyncio.run: the server, or nil (with a warning) when the socket
-- cannot be made; a program is not stopped for want of introspection.
function M.start(loop)
  local ok, server = pcall(M.serve, loop)
  if ok then return server end
  log.warning("asyncio: no control socket: " .. tostring(server))
  return nil
end

function M.stop(server)
  if server == nil then return end
  server:close()
  server:close_clients()
end

---------------------------------------------------------------------------
-- The client side (bin/lua-asyncio)

local USAGE = [[
usage: lua-asyncio ps PID
       lua-asyncio pstree PID
       lua-asyncio top [-n COUNT] PID

Shows the tasks of a running lua-asyncio program started with
asyncio.run(main, {control = true}) or LUA_ASYNCIO_CONTROL=1.
  ps       a table: task id, name, state, where it is suspended, awaiters
  pstree   the tasks as a tree of who awaits whom
  top      ps refreshed every second (COUNT times; Ctrl-C stops it)
]]

-- The socket of pid: in this process's $XDG_RUNTIME_DIR, else /tmp.
local function find_socket(pid)
  local tried = {}
  for _, dir in ipairs { os.getenv("XDG_RUNTIME_DIR") or "", "/tmp" } do
    if dir ~= "" then
      local path = M.socket_path(pid, dir)
      tried[#tried + 1] = path
      -- a socket cannot be opened as a file, but ENXIO rather than ENOENT says it is there
      local f, _, code = io.open(path, "r")
      if f then f:close() end
      if f or code ~= 2 then return path end
    end
  end
  return nil, tried
end

-- Reads one reply; nil when the other side closed.
local function read_reply(reader)
  local head = reader:readline()
  if head == "" then return nil end
  local status, n = head:match("^(%a+) (%d+)\n$")
  if status == nil then error("lua-asyncio: malformed reply: " .. head, 0) end
  return status, reader:readexactly(tonumber(n))
end

local function parse_args(args)
  local command, count, pid = args[1], nil, nil
  local i = 2
  while args[i] ~= nil do
    local a = args[i]
    if a == "-n" and command == "top" then
      count = math.tointeger(tonumber(args[i + 1] or ""))
      if count == nil or count < 1 then return nil, "-n needs a positive count" end
      i = i + 2
    elseif pid == nil and a:match("^%d+$") then
      pid = tonumber(a)
      i = i + 1
    else
      return nil, "unexpected argument " .. a
    end
  end
  if commands[command] == nil then return nil, command and ("unknown command " .. command) or nil end
  if pid == nil then return nil, "PID expected" end
  return { command = command, count = count, pid = pid }
end

--- main(args [, out, err]) -> exit status: the command line of bin/lua-asyncio.
function M.main(args, out, err)
  out, err = out or io.stdout, err or io.stderr
  local opts, problem = parse_args(args)
  if opts == nil then
    if problem then err:write("lua-asyncio: ", problem, "\n") end
    err:write(USAGE)
    return 2
  end
  local path, tried = find_socket(opts.pid)
  if path == nil then
    err:write(("lua-asyncio: no control socket for process %d (tried %s); is it running "
      .. "with asyncio.run(main, {control = true}) or LUA_ASYNCIO_CONTROL=1?\n"):format(
      opts.pid, table.concat(tried, ", ")))
    return 1
  end
  local asyncio = require "asyncio"
  local status, n = 0, 0
  local ok, e = pcall(asyncio.run, function()
    local reader, writer = asyncio.open_unix_connection(path)
    local _ <close> = writer
    while true do
      writer:write(opts.command .. "\n")
      local st, text = read_reply(reader)
      if st == nil then
        if n == 0 then
          err:write("lua-asyncio: process ", opts.pid, " closed the connection\n")
          status = 1
        end
        return
      end
      if opts.command == "top" and os.getenv("TERM") and os.getenv("TERM") ~= "dumb" then
        out:write("\27[H\27[2J")
      end
      if st == "ok" then
        out:write(text)
      else
        err:write("lua-asyncio: ", text)
        status = 1
      end
      out:flush()
      n = n + 1
      if opts.command ~= "top" or (opts.count and n >= opts.count) then return end
      asyncio.sleep(1)
    end
  end)
  if ok then return status end
  if errors.isinstance(e, errors.KeyboardInterrupt) then return 0 end -- Ctrl-C ends top
  if n > 0 and errors.isinstance(e, errors.ConnectionError) then return 0 end -- top outlived the program
  err:write("lua-asyncio: ", tostring(e), "\n")
  return 1
end

return M
