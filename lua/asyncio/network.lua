-- Loop methods that open stream transports: create_connection (every address
-- in turn, or Happy Eyeballs), create_server and its Server, Unix sockets and
-- pipes. The per-byte work is the C Transport's; this is paid per connection.

--- Transports, protocols and servers: the loop's connection methods (all
-- yield) and Server. A protocol is a table of callbacks (see BaseProtocol);
-- a factory is a function returning one. `opts.sock = fd` (an open socket
-- the transport then owns) may replace host and port. TLS transports have
-- the methods of Transport.
-- @module transports

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local locks = require "asyncio.locks"
local dns = require "asyncio.dns"
local ssl = require "asyncio.ssl"

local Loop = core.Loop
local M = {}

-- Argument checks, shared with streams.lua; errors name the API function.
local function argcheck(cond, n, fname, msg)
  if not cond then error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3) end
end

-- argument 1 of fname, a function or a callable table (`what` in the message)
local function check_callable(f, fname, what)
  local ok = type(f) == "function" or (getmetatable(f) or {}).__call ~= nil
  argcheck(ok, 1, fname, what .. " expected, got " .. type(f))
end

local function check_factory(f, fname) check_callable(f, fname, "protocol factory (function)") end

local function check_opts(opts, n, fname)
  if opts == nil then return {} end
  argcheck(type(opts) == "table", n, fname, "options table expected, got " .. type(opts))
  return opts
end

M.argcheck, M.check_callable, M.check_opts = argcheck, check_callable, check_opts

-- A numeric host needs no resolver (Python's _ipaddr_info fast path).
local function numeric(host, port, family)
  if type(port) == "string" then port = tonumber(port) end
  if math.type(port) ~= "integer" then return nil end
  local fam
  if host:match("^%d+%.%d+%.%d+%.%d+$") then fam = "inet"
  elseif host:find(":", 1, true) and host:match("^[%x:%.]+$") then fam = "inet6"
  else return nil end
  if family ~= nil and family ~= 0 and family ~= "unspec" and family ~= fam
     and family ~= (fam == "inet" and 2 or 10) then
    return {}
  end
  return { { family = fam, addr = { host, port } } }
end

-- Addresses for host (string, list of strings, or nil with `passive`).
local function resolve(loop, host, port, family, passive)
  if type(host) == "string" then
    local infos = numeric(host, port, family)
    if infos then return infos end
  end
  local opts = { family = family, type = dns.SOCK_STREAM, flags = passive and dns.AI_PASSIVE or nil }
  local infos = loop:getaddrinfo(host, port, opts)
  if #infos == 0 then error(errors.OSError("getaddrinfo() returned empty list"), 0) end
  return infos
end

local function is_cancel(e) return errors.isinstance(e, errors.CancelledError) end

-- Connects to one resolved address, binding to a local one of its family.
local function connect_one(loop, info, laddrs)
  if not laddrs then return core.tcp_connect(loop, info.addr):await() end
  local last
  for _, l in ipairs(laddrs) do
    if l.family == info.family then
      local ok, fut = pcall(core.tcp_connect, loop, info.addr, l.addr)
      if ok then return fut:await() end
      last = fut
    end
  end
  error(last or errors.OSError("no matching local address with family=" .. tostring(info.family)
    .. " found"), 0)
end

-- One error from all attempts, as Python: the error itself when they agree.
local function combined(errs)
  if #errs == 1 then return errs[1] end
  local first = tostring(errs[1])
  for i = 2, #errs do
    if tostring(errs[i]) ~= first then
      local parts = {}
      for j, e in ipairs(errs) do parts[j] = tostring(e) end
      return errors.OSError("Multiple exceptions: " .. table.concat(parts, ", "))
    end
  end
  return errs[1]
end

-- Python's interleave: alternate address families, first family first.
local function interleave(infos, count)
  local order, by = {}, {}
  for _, info in ipairs(infos) do
    local f = info.family
    if not by[f] then by[f] = {}; order[#order + 1] = f end
    table.insert(by[f], info)
  end
  local out = {}
  for _, f in ipairs(order) do
    local list = by[f]
    if f == order[1] and count > 1 then
      for i = 1, count - 1 do if list[1] then out[#out + 1] = table.remove(list, 1) end end
    end
  end
  local more = true
  while more do
    more = false
    for _, f in ipairs(order) do
      if by[f][1] then out[#out + 1] = table.remove(by[f], 1); more = true end
    end
  end
  return out
end

-- Happy Eyeballs (RFC 8305), Python's staggered_race: start an attempt, start
-- the next after `delay` or as soon as the last one failed; the first
-- connection wins and the others are cancelled (their sockets closed).
local function staggered(loop, infos, delay, laddrs)
  local winner, errs, running = nil, {}, {}
  local wake = locks.Event()
  local function attempt(info)
    local ok, res = pcall(connect_one, loop, info, laddrs)
    if ok then
      if winner then res:close() else winner = res end
    elseif not is_cancel(res) then
      errs[#errs + 1] = res
    end
    wake:set()
  end
  local ok, err = pcall(function()
    for i, info in ipairs(infos) do
      if winner then break end
      running[#running + 1] = loop:create_task(attempt, info)
      if i < #infos then
        local nfailed = #errs
        local t = loop:call_later(delay, function() wake:set() end)
        while not winner and #errs == nfailed and not running[#running]:done() do
          wake:clear()
          wake:wait()
        end
        t:cancel()
      end
    end
    while not winner do
      local pending = false
      for _, t in ipairs(running) do if not t:done() then pending = true end end
      if not pending then break end
      wake:clear()
      wake:wait()
    end
  end)
  for _, t in ipairs(running) do t:cancel() end
  if not ok then
    if winner then winner:close() end
    error(err, 0)
  end
  return winner, errs
end

-- The transport the caller gets: tp itself, or with ctx the TLS transport
-- over it once the handshake is done (tp is closed when that fails).
local function made(tp, factory, ctx, hostname, opts, server_side)
  local ok, proto = pcall(factory)
  if not ok then tp:close(); error(proto, 0) end
  if not ctx then
    tp:_start(proto)
    return tp, proto
  end
  local t
  ok, t = pcall(ssl._wrap, tp, proto, ctx, {
    server_side = server_side, server_hostname = hostname,
    ssl_handshake_timeout = opts.ssl_handshake_timeout,
    ssl_shutdown_timeout = opts.ssl_shutdown_timeout,
  })
  if not ok then pcall(tp.abort, tp); error(t, 0) end
  return t, proto
end

-- argument n of fname a descriptor number (`what` names it in the message)
local function check_fd(fd, n, fname, what)
  argcheck(math.type(fd) == "integer", n, fname,
    what .. "descriptor number expected, got " .. (math.type(fd) or type(fd)))
  argcheck(fd >= 0 and fd <= 0x7fffffff, n, fname, what .. "invalid file descriptor")
end

-- opts.sock: a descriptor number instead of host and port (Python's sock=).
-- Returns it after checking it can name one; the C side checks the socket.
local function sock_of(opts, host, port, n, fname)
  local fd = opts.sock
  if fd == nil then return nil end
  check_fd(fd, n, fname, "opts.sock: ")
  if host ~= nil or port ~= nil then
    error(errors.ValueError("host/port and sock can not be specified at the same time"), 3)
  end
  return fd
end
M.sock_of = sock_of

-- create_connection and open_connection (fname names the one called, whose
-- argument number `nhost` is host: 2 after the factory, 1 without)
function M.connection(loop, factory, host, port, opts, fname, nhost)
  local ctx = ssl._context_of(opts, fname)
  local hostname = opts.server_hostname
  local nopts = (nhost or 2) + 2
  local fd = sock_of(opts, host, port, nopts, fname)
  if ctx and hostname == nil then
    if type(host) ~= "string" then
      error(errors.ValueError("You must set server_hostname when using ssl without a host"), 3)
    end
    hostname = host
  end
  if fd then return made(core.sock_transport(loop, fd, fname), factory, ctx, hostname, opts) end
  local infos = resolve(loop, host, port, opts.family)
  local laddrs
  if opts.local_addr then
    argcheck(type(opts.local_addr) == "table", nopts, fname, "local_addr must be {host, port}")
    laddrs = resolve(loop, opts.local_addr[1], opts.local_addr[2], opts.family)
  end
  local tp, errs
  if opts.happy_eyeballs_delay ~= nil then
    if opts.interleave == nil or opts.interleave then infos = interleave(infos, opts.interleave or 1) end
    tp, errs = staggered(loop, infos, opts.happy_eyeballs_delay, laddrs)
  else
    if opts.interleave then infos = interleave(infos, opts.interleave) end
    errs = {}
    for _, info in ipairs(infos) do
      local ok, res = pcall(connect_one, loop, info, laddrs)
      if ok then tp = res; break end
      if is_cancel(res) or not errors.isinstance(res, errors.OSError) then error(res, 0) end
      errs[#errs + 1] = res
    end
  end
  if not tp then error(combined(errs), 0) end
  return made(tp, factory, ctx, hostname, opts)
end

--- Connects over TCP, trying each address of `host` (yields).
-- @function Loop:create_connection
-- @python loop.create_connection
-- @tparam function factory
-- @tparam ?string host
-- @tparam ?integer port
-- @tparam[opt] table opts `ssl`, `server_hostname`, `ssl_handshake_timeout`, `ssl_shutdown_timeout`, `local_addr`, `family`, `happy_eyeballs_delay`, `interleave`, `sock`
-- @treturn Transport transport
-- @treturn table protocol
-- @raise OSError (one error per address tried, combined); ValueError for host/port with `sock`; SSLError; RuntimeError outside a task
function Loop:create_connection(factory, host, port, opts)
  check_factory(factory, "create_connection")
  opts = check_opts(opts, 4, "create_connection")
  return M.connection(self, factory, host, port, opts, "create_connection")
end

-- create_unix_connection and open_unix_connection (`npath` as nhost above)
function M.unix_connection(loop, factory, path, opts, fname, npath)
  local ctx = ssl._context_of(opts, fname)
  npath = npath or 2
  local fd = sock_of(opts, path, nil, npath + 1, fname)
  local tp
  if fd then
    tp = core.sock_transport(loop, fd, fname, "unix")
  else
    argcheck(type(path) == "string", npath, fname, "path expected")
    tp = core.unix_connect(loop, path):await()
  end
  return made(tp, factory, ctx, opts.server_hostname, opts)
end

--- Connects to a Unix socket (yields).
-- @function Loop:create_unix_connection
-- @python loop.create_unix_connection
-- @tparam function factory
-- @tparam ?string path
-- @tparam[opt] table opts `ssl`, `server_hostname`, `sock`, ...
-- @treturn Transport transport
-- @treturn table protocol
-- @raise OSError; RuntimeError outside a task
function Loop:create_unix_connection(factory, path, opts)
  check_factory(factory, "create_unix_connection")
  opts = check_opts(opts, 3, "create_unix_connection")
  return M.unix_connection(self, factory, path, opts, "create_unix_connection")
end

--- A transport over a connection accepted elsewhere; with `opts.ssl`, the
-- server side of a TLS handshake, done before it returns (yields).
-- @function Loop:connect_accepted_socket
-- @python loop.connect_accepted_socket
-- @tparam function factory
-- @tparam integer fd
-- @tparam[opt] table opts `ssl`, `ssl_handshake_timeout`, ...
-- @treturn Transport transport
-- @treturn table protocol
-- @raise OSError; SSLError
function Loop:connect_accepted_socket(factory, fd, opts)
  check_factory(factory, "connect_accepted_socket")
  check_fd(fd, 2, "connect_accepted_socket", "")
  opts = check_opts(opts, 3, "connect_accepted_socket")
  local ctx = ssl._context_of(opts, "connect_accepted_socket", true)
  return made(core.sock_transport(self, fd, "connect_accepted_socket"), factory, ctx, nil, opts, true)
end

-- Python's sock_connect: a host name is resolved first, for the socket's
-- own family; the connect itself is C (sock.c).

--- Connects socket `fd`; a host name is resolved first (yields).
-- @function Loop:sock_connect
-- @python loop.sock_connect
-- @tparam integer fd
-- @param addr `{host, port}` or a Unix socket path
-- @raise OSError (ConnectionRefusedError, ...); RuntimeError outside a task
function Loop:sock_connect(fd, addr)
  check_fd(fd, 1, "sock_connect", "")
  argcheck(type(addr) == "table" or type(addr) == "string", 2, "sock_connect",
    "{host, port} or a Unix socket path expected, got " .. type(addr))
  if type(addr) == "table" then
    argcheck(addr[1] == nil or type(addr[1]) == "string", 2, "sock_connect",
      "address host must be a string")
    argcheck(math.type(addr[2]) == "integer" and addr[2] >= 0 and addr[2] <= 65535, 2,
      "sock_connect", "address port must be an integer in 0-65535")
  end
  if type(addr) == "table" and type(addr[1]) == "string" and not numeric(addr[1], 0) then
    local family = addr[1]:find(":", 1, true) and "inet6" or nil
    local ok, name = pcall(core.socket.getsockname, fd)
    if ok and type(name) == "table" then family = name[1]:find(":", 1, true) and "inet6" or "inet" end
    local infos = self:getaddrinfo(addr[1], addr[2], { family = family, type = dns.SOCK_STREAM })
    if #infos == 0 then error(errors.OSError("getaddrinfo() returned empty list"), 2) end
    addr = infos[1].addr
  end
  return self:_sock_connect(fd, addr)
end

--- Upgrades `transport` to TLS once the handshake is done (yields); bytes
-- that arrived before go to TLS, never to the protocol.
-- @function Loop:start_tls
-- @python loop.start_tls
-- @tparam Transport transport
-- @tparam table protocol
-- @tparam SSLContext ctx
-- @tparam[opt] table opts `server_side`, `server_hostname`, `ssl_handshake_timeout`, `ssl_shutdown_timeout`
-- @treturn Transport the TLS transport
-- @raise SSLError, SSLCertVerificationError; TimeoutError on handshake timeout
function Loop:start_tls(transport, protocol, ctx, opts)
  opts = check_opts(opts, 4, "start_tls")
  argcheck(ssl.is_context(ctx), 3, "start_tls", "SSLContext expected")
  return ssl._wrap(transport, protocol, ctx, {
    server_side = opts.server_side, server_hostname = opts.server_hostname,
    ssl_handshake_timeout = opts.ssl_handshake_timeout,
    ssl_shutdown_timeout = opts.ssl_shutdown_timeout, upgrade = true,
  })
end

local function pipe(loop, factory, f, mode, fname)
  check_factory(factory, fname)
  local tp = core.pipe_open(loop, f, mode)
  local ok, proto = pcall(factory)
  if not ok then tp:close(); error(proto, 0) end
  tp:_start(proto)
  return tp, proto
end

--- A read transport over a pipe (yields).
-- @function Loop:connect_read_pipe
-- @python loop.connect_read_pipe
-- @tparam function factory
-- @param f an fd number or a Lua file
-- @treturn Transport transport
-- @treturn table protocol
-- @raise OSError
function Loop:connect_read_pipe(factory, f) return pipe(self, factory, f, "r", "connect_read_pipe") end

--- A write transport over a pipe (yields).
-- @function Loop:connect_write_pipe
-- @python loop.connect_write_pipe
-- @tparam function factory
-- @param f an fd number or a Lua file
-- @treturn Transport transport
-- @treturn table protocol
-- @raise OSError
function Loop:connect_write_pipe(factory, f) return pipe(self, factory, f, "w", "connect_write_pipe") end

-- Sends a file's bytes over a stream transport: Python's fallback path
-- (read a chunk, write it, wait while the write buffer is above its
-- low-water mark). No zero-copy path: libuv's stream handles own their
-- sockets' polling, so a sendfile(2) loop beside them cannot wait for
-- writability. Returns the number of bytes sent.

--- Sends a file's bytes over a stream transport (yields).
-- @function Loop:sendfile
-- @python loop.sendfile
-- @tparam Transport transport
-- @param file an open Lua file
-- @tparam[opt=0] integer offset
-- @tparam[opt] integer count nil: to the end
-- @tparam[opt=true] boolean fallback
-- @treturn integer bytes sent
-- @raise SendfileNotAvailableError for a datagram transport or `fallback = false`; RuntimeError when the transport is closing
function Loop:sendfile(transport, file, offset, count, fallback)
  argcheck(io.type(file) == "file", 2, "sendfile", "open file expected")
  argcheck(offset == nil or (math.type(offset) == "integer" and offset >= 0), 3, "sendfile",
    "offset must be a non-negative integer")
  argcheck(count == nil or (math.type(count) == "integer" and count > 0), 4, "sendfile",
    "count must be a positive integer")
  if not pcall(core.Transport._drain_waiter, transport)
     and not pcall(core.TLSTransport._drain_waiter, transport) and not transport:is_closing() then
    error(errors.SendfileNotAvailableError("not a stream transport"), 2)
  end
  if fallback == false then
    error(errors.SendfileNotAvailableError("there is no zero-copy sendfile; fallback disabled"), 2)
  end
  if transport:is_closing() then error(errors.RuntimeError("Transport is closing"), 2) end
  if offset then assert(file:seek("set", offset)) end
  local total = 0
  while count == nil or total < count do
    local n = count and math.min(65536, count - total) or 65536
    local chunk = file:read(n)
    if not chunk then break end
    transport:write(chunk)
    total = total + #chunk
    local waiter = transport:_drain_waiter()
    if waiter then waiter:await() end
  end
  return total
end

-- ---- Server --------------------------------------------------------------

--- What `start_server` and `create_server` return; closable with `<close>`.
-- @table Server
-- @python asyncio.Server
-- @field sockets list of the listening sockets; `s:getsockname()` -> `{host, port}`

local Server = {}
Server.__index = Server
Server.__name = "asyncio.Server"
M.Server = Server

-- The Server counts its connections but lists none: each one's transport
-- names it (the server it was started with), which is how close_clients
-- finds them among the loop's open objects (core.server_clients), and a
-- table slot less per connection. A stream transport names it through
-- _conns (core.server_conns), with an int in its C record.
local function new_server(loop, listeners, on_connection, backlog)
  local self = setmetatable({
    _loop = loop, _listeners = listeners, sockets = {}, _on_connection = on_connection,
    _backlog = backlog, _serving = false, _nclients = 0, _waiters = {},
    _serving_forever = nil,
  }, Server)
  self._conns = core.server_conns(self)
  for i, ls in ipairs(listeners) do self.sockets[i] = ls end
  return self
end

function Server:__tostring()
  return ("<Server sockets=%d%s>"):format(#self.sockets, self._serving and " serving" or "")
end

--- The server's loop.
-- @function Server:get_loop
-- @python Server.get_loop
-- @treturn Loop
function Server:get_loop() return self._loop end

--- Whether it accepts connections. The field `sockets` lists its listening
-- sockets (`s:getsockname()` -> `{host, port}`).
-- @function Server:is_serving
-- @python Server.is_serving
-- @treturn boolean
function Server:is_serving() return self._serving end

-- A connection counts from just before its transport starts with the Server
-- (tp:_start(protocol, server), or the TLS layer's server option) to its
-- connection_lost, after which the transport calls _detach.
function Server:_attach()
  self._nclients = self._nclients + 1
end

function Server:_detach()
  self._nclients = self._nclients - 1
  if self._nclients == 0 and self._listeners == nil then self:_wakeup() end
end

function Server:_wakeup()
  local waiters = self._waiters
  if not waiters then return end
  self._waiters = nil
  for _, w in ipairs(waiters) do
    if not w:done() then w:set_result() end
  end
end

--- Starts accepting (for `start_serving = false`).
-- @function Server:start_serving
-- @python Server.start_serving
function Server:start_serving()
  if self._serving or self._listeners == nil then return end
  self._serving = true
  local server, handler = self, self._on_connection
  local function accept(tp) handler(server, tp) end
  for _, ls in ipairs(self._listeners) do ls:listen(self._backlog, accept) end
end

--- Stops listening (also by `<close>`); the connections stay open.
-- @function Server:close
-- @python Server.close
function Server:close()
  local listeners = self._listeners
  if listeners == nil then return end
  self._listeners = nil
  self.sockets = {}
  for _, ls in ipairs(listeners) do ls:close() end
  self._serving = false
  local f = self._serving_forever
  if f and not f:done() then f:cancel() end
  self._serving_forever = nil
  if self._nclients == 0 then self:_wakeup() end
end

--- Closes every connection of the server.
-- @function Server:close_clients
-- @python Server.close_clients
function Server:close_clients()
  for _, tp in ipairs(core.server_clients(self._loop, self)) do tp:close() end
end

--- Aborts every connection of the server.
-- @function Server:abort_clients
-- @python Server.abort_clients
function Server:abort_clients()
  for _, tp in ipairs(core.server_clients(self._loop, self)) do tp:abort() end
end

--- Waits until closed and its connections are gone (yields).
-- @function Server:wait_closed
-- @python Server.wait_closed
-- @raise RuntimeError outside a task
function Server:wait_closed()
  if self._waiters == nil then return end
  local w = self._loop:create_future()
  table.insert(self._waiters, w)
  w:await()
end

--- Serves until cancelled; then closes the server (yields).
-- @function Server:serve_forever
-- @python Server.serve_forever
-- @raise RuntimeError when already serving forever or closed; CancelledError
function Server:serve_forever()
  if self._serving_forever then
    error(errors.RuntimeError("server is already being awaited on serve_forever()"), 2)
  end
  if self._listeners == nil then error(errors.RuntimeError("server is closed"), 2) end
  self:start_serving()
  local f = self._loop:create_future()
  self._serving_forever = f
  local ok, err = pcall(f.await, f)
  if not ok then
    self:close()
    self:wait_closed()
    error(err, 0)
  end
end

function Server:__close()
  self:close()
  self:wait_closed()
end

-- Binds every listener (all closed again if one fails) and builds the Server.
local function serve(loop, listeners, on_connection, opts)
  local server = new_server(loop, listeners, on_connection, opts.backlog or 100)
  if opts.start_serving == nil or opts.start_serving then server:start_serving() end
  return server
end

local function bind_all(loop, host, port, opts)
  local hosts = type(host) == "table" and host or { host or "" }
  local listeners = {}
  local ok, err = pcall(function()
    local seen = {}
    for _, h in ipairs(hosts) do
      if h == "" then h = nil end
      for _, info in ipairs(resolve(loop, h, port or 0, opts.family, true)) do
        local key = info.addr[1] .. "|" .. info.addr[2]
        if not seen[key] then
          seen[key] = true
          local reuse = opts.reuse_address
          if reuse == nil then reuse = true end
          local ls = core.tcp_listen(loop, info.addr, reuse, opts.reuse_port)
          listeners[#listeners + 1] = ls
        end
      end
    end
  end)
  if not ok then
    for _, ls in ipairs(listeners) do ls:close() end
    error(err, 0)
  end
  return listeners
end

-- on_connection(server, transport) for a protocol factory; with ctx, the
-- protocol hears connection_made once the handshake is done.
local function protocol_handler(factory, ctx, opts)
  return function(server, tp)
    local ok, proto = pcall(factory)
    if not ok then tp:close(); error(proto, 0) end
    if ctx then
      ssl._serve(tp, proto, ctx, opts, server)
      return
    end
    server:_attach()
    tp:_start(proto, server)
  end
end

-- With opts.sock the server listens on that socket (bound, or listening
-- already: a socket a supervisor such as systemd handed over).
function M.create_server_with(loop, on_connection, host, port, opts, fname)
  local fd = sock_of(opts, host, port, 4, fname)
  local listeners = fd and { core.sock_listener(loop, fd, fname) } or bind_all(loop, host, port, opts)
  return serve(loop, listeners, on_connection, opts)
end

function M.create_unix_server_with(loop, on_connection, path, opts, fname)
  local fd = sock_of(opts, path, nil, 3, fname)
  if fd then return serve(loop, { core.sock_listener(loop, fd, fname, "unix") }, on_connection, opts) end
  argcheck(type(path) == "string", 2, fname, "path expected")
  argcheck(opts.mode == nil or math.type(opts.mode) == "integer", 3, fname, "mode: integer expected")
  local ls = core.unix_listen(loop, path, opts.mode)
  return serve(loop, { ls }, on_connection, opts)
end

--- Listens on TCP (yields).
-- @function Loop:create_server
-- @python loop.create_server
-- @tparam function factory
-- @tparam ?string host nil: every interface
-- @tparam ?integer port 0: a free port
-- @tparam[opt] table opts `backlog`, `reuse_address`, `reuse_port`, `ssl`, `ssl_handshake_timeout`, `start_serving`, `family`, `sock`
-- @treturn Server
-- @raise OSError (EADDRINUSE, ...); RuntimeError outside a task
function Loop:create_server(factory, host, port, opts)
  check_factory(factory, "create_server")
  opts = check_opts(opts, 4, "create_server")
  local ctx = ssl._context_of(opts, "create_server", true)
  return M.create_server_with(self, protocol_handler(factory, ctx, opts), host, port, opts,
    "create_server")
end

--- Listens on a Unix socket (yields).
-- @function Loop:create_unix_server
-- @python loop.create_unix_server
-- @tparam function factory
-- @tparam ?string path
-- @tparam[opt] table opts as `create_server`'s
-- @treturn Server
-- @raise OSError; RuntimeError outside a task
function Loop:create_unix_server(factory, path, opts)
  check_factory(factory, "create_unix_server")
  opts = check_opts(opts, 3, "create_unix_server")
  local ctx = ssl._context_of(opts, "create_unix_server", true)
  return M.create_unix_server_with(self, protocol_handler(factory, ctx, opts), path, opts,
    "create_unix_server")
end

return M
