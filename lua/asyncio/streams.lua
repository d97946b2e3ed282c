-- Streams: StreamWriter and the open_connection / start_server family. The
-- StreamReader is C (asyncio.core.StreamReader) and is also the protocol of
-- its transport, so a read costs no Lua call per arriving chunk.

--- Streams: `open_connection`, `start_server`, StreamReader, StreamWriter.
-- The TLS options (`ssl`, `server_hostname`, `ssl_handshake_timeout`,
-- `ssl_shutdown_timeout`) are described on the ssl page.
-- @module streams

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local network = require "asyncio.network"
local ssl = require "asyncio.ssl"
local tasks = require "asyncio.tasks"

local StreamReader = core.StreamReader
local M = { StreamReader = StreamReader }

local DEFAULT_LIMIT = 65536

local check_opts, check_callable = network.check_opts, network.check_callable

local function running_loop()
  local loop = core.get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), 3) end
  return loop
end

-- ---- StreamWriter -----------------------------------------------------------

local StreamWriter = {}
StreamWriter.__index = StreamWriter
StreamWriter.__name = "asyncio.StreamWriter"
M.StreamWriter = StreamWriter

-- [1], the reader, is for the C methods (writer.c); the transport is the
-- one field, so a writer is a table, a one-slot array and one node (the
-- reader keeps whether it is a server's, as Python's protocol does)
function M.new_writer(transport, reader)
  return setmetatable({ reader, transport = transport }, StreamWriter)
end

--- The writer class (`asyncio.StreamWriter`) of `open_connection` and
-- `start_server`; a writer is closable with `<close>`.
-- @table StreamWriter
-- @python asyncio.StreamWriter
-- @field transport the writer's Transport

function StreamWriter:__tostring()
  return "<StreamWriter " .. tostring(self.transport) .. ">"
end

--- Buffers `s` for sending (does not wait; see `drain`).
-- @function StreamWriter:write
-- @python StreamWriter.write
-- @tparam string s
-- @raise RuntimeError after `close`
StreamWriter.write = core.stream_write -- C: the echo loop's hot path

--- Writes every string of `list`.
-- @function StreamWriter:writelines
-- @python StreamWriter.writelines
-- @tparam {string,...} list
function StreamWriter:writelines(list) return self.transport:writelines(list) end

--- Whether `write_eof` is supported.
-- @function StreamWriter:can_write_eof
-- @python StreamWriter.can_write_eof
-- @treturn boolean
function StreamWriter:can_write_eof() return self.transport:can_write_eof() end

--- Closes the write side after the buffered data.
-- @function StreamWriter:write_eof
-- @python StreamWriter.write_eof
function StreamWriter:write_eof() return self.transport:write_eof() end

--- Closes the stream (also by `<close>`).
-- @function StreamWriter:close
-- @python StreamWriter.close
function StreamWriter:close() return self.transport:close() end

--- Whether it is closed or closing.
-- @function StreamWriter:is_closing
-- @python StreamWriter.is_closing
-- @treturn boolean
function StreamWriter:is_closing() return self.transport:is_closing() end

--- Transport information: `"peername"`, `"sockname"`, `"ssl_object"`, ...
-- @function StreamWriter:get_extra_info
-- @python StreamWriter.get_extra_info
-- @tparam string name
-- @param[opt] default returned when there is none
function StreamWriter:get_extra_info(name, default)
  return self.transport:get_extra_info(name, default)
end

-- Shielded: every wait_closed shares one future, which a cancelled waiter
-- would otherwise cancel for all the later ones.

--- Waits until the connection is closed (yields).
-- @function StreamWriter:wait_closed
-- @python StreamWriter.wait_closed
-- @raise RuntimeError outside a task
function StreamWriter:wait_closed()
  tasks.shield(self[1]:_closed_waiter()):await()
end

-- Waits while the transport's buffer is above its high-water mark; raises
-- the connection's error once it is lost (Python's drain). On a closing
-- transport it waits for connection_lost, which comes from libuv's close
-- callback, possibly several loop turns later (Python's single sleep(0)
-- would let write(); drain() in a loop run on without ever seeing the loss),
-- then raises the error the connection was lost with, if any. The C method
-- returns at once when there is nothing to wait for, else runs this.
local function drain(self)
  local exc = self[1]:exception()
  if exc ~= nil then error(exc, 0) end
  if self.transport:is_closing() then
    self:wait_closed()
    exc = self[1]:exception()
    if exc ~= nil then error(exc, 0) end
  end
  local waiter = self[1]:_drain_helper()
  if waiter then waiter:await() end
end

--- Waits while the write buffer is above the high-water mark (yields).
-- @function StreamWriter:drain
-- @python StreamWriter.drain
-- @raise ConnectionResetError (an OSError) when the connection is lost; RuntimeError outside a task
StreamWriter.drain = core.stream_drain(drain)

-- Upgrades the connection to TLS in place: the reader goes on reading, now
-- plaintext, and bytes it held unread go into the TLS input.

--- Upgrades the connection to TLS (yields); bytes that arrived before go
-- to TLS, never to the reader.
-- @function StreamWriter:start_tls
-- @python StreamWriter.start_tls
-- @tparam SSLContext ctx
-- @tparam[opt] table opts `server_hostname`, `ssl_handshake_timeout`
-- @raise SSLError, SSLCertVerificationError; TimeoutError on handshake timeout
function StreamWriter:start_tls(ctx, opts)
  opts = check_opts(opts, 3, "start_tls")
  local server_side = opts.server_side
  if server_side == nil then server_side = self[1]:_server_side() end
  local t = running_loop():start_tls(self.transport, self[1], ctx, {
    server_side = server_side, server_hostname = opts.server_hostname,
    ssl_handshake_timeout = opts.ssl_handshake_timeout,
    ssl_shutdown_timeout = opts.ssl_shutdown_timeout,
  })
  self.transport = t
end

function StreamWriter:__close()
  self:close()
  self:wait_closed()
end

-- ---- opening streams ---------------------------------------------------------

local function reader_factory(loop, limit)
  local reader = StreamReader(limit, loop)
  return reader, function() return reader end
end

--- Connects over TCP (yields).
-- @function open_connection
-- @python asyncio.open_connection
-- @tparam ?string host
-- @tparam ?integer port
-- @tparam[opt] table opts `ssl` (true or an SSLContext), `server_hostname`, `ssl_handshake_timeout`, `limit` (65536), `local_addr = {host, port}`, `family`, `sock`
-- @treturn StreamReader reader
-- @treturn StreamWriter writer
-- @raise OSError (ConnectionRefusedError, ...); SSLError; TimeoutError; RuntimeError outside a task
function M.open_connection(host, port, opts)
  opts = check_opts(opts, 3, "open_connection")
  local loop = running_loop()
  local reader, factory = reader_factory(loop, opts.limit or DEFAULT_LIMIT)
  local tp = network.connection(loop, factory, host, port, opts, "open_connection", 1)
  return reader, M.new_writer(tp, reader)
end

--- Connects to a Unix socket (yields).
-- @function open_unix_connection
-- @python asyncio.open_unix_connection
-- @tparam ?string path
-- @tparam[opt] table opts as `open_connection`'s
-- @treturn StreamReader reader
-- @treturn StreamWriter writer
-- @raise OSError; RuntimeError outside a task
function M.open_unix_connection(path, opts)
  opts = check_opts(opts, 2, "open_unix_connection")
  local loop = running_loop()
  local reader, factory = reader_factory(loop, opts.limit or DEFAULT_LIMIT)
  local tp = network.unix_connection(loop, factory, path, opts, "open_unix_connection", 1)
  return reader, M.new_writer(tp, reader)
end

-- The writer of each connection whose task failed or was cancelled, by that
-- task, until `done` runs: one done callback for them all. A task that goes
-- well never has one: it is hooked (create_task_hooked), and only calls
-- task_failed (the hook, init.lua) when it fails, so an idle connection
-- pays for no map entry and no done callback.
local writers = {}

-- writer.transport, not the first transport: cb may have upgraded it with
-- start_tls
local function done(t)
  local writer = writers[t]
  writers[t] = nil
  if t:cancelled() then
    writer.transport:close()
    return
  end
  local exc = t:exception()
  if exc ~= nil then
    t:get_loop():call_exception_handler {
      message = "Unhandled exception in client_connected_cb",
      exception = exc,
      transport = writer.transport,
      task = t,
    }
    writer.transport:close()
  end
end

local function watch(task, writer)
  writers[task] = writer
  task:add_done_callback(done)
end

-- The hook runs in the task's last step, where nothing else would close the
-- connection: when memory runs out for the map entry or the callback, it
-- closes it without the report.
function M._task_failed(task, writer)
  if not pcall(watch, task, writer) then
    writers[task] = nil
    writer.transport:close()
  end
end

-- Each connection: a reader as the transport's protocol, and cb(reader,
-- writer) in a task of its own; the connection is closed when that task is
-- cancelled or fails, and the error reported (Python's client_connected_cb
-- handling).
local function stream_handler(loop, cb, limit, ctx, opts)
  local function run(tp, reader)
    reader:_server_side(true)
    local writer = M.new_writer(tp, reader)
    if not core.create_task_hooked(loop, writer, cb, reader, writer) then
      watch(loop:create_task(cb, reader, writer), writer) -- the loop's task factory
    end
  end
  return function(server, tp)
    local reader = StreamReader(limit, loop)
    if ctx then
      ssl._serve(tp, reader, ctx, opts, server, function(t) run(t, reader) end)
      return
    end
    server:_attach()
    tp:_start(reader, server)
    run(tp, reader)
  end
end


--- Listens on TCP; `cb(reader, writer)` runs as a task per connection
-- (yields).
-- @function start_server
-- @python asyncio.start_server
-- @tparam function cb
-- @tparam ?string host nil: every interface
-- @tparam ?integer port 0: a free port
-- @tparam[opt] table opts `limit`, `backlog`, `reuse_address`, `reuse_port`, `ssl`, `start_serving` (true), `sock`
-- @treturn Server
-- @raise OSError (EADDRINUSE, ...); RuntimeError outside a task
function M.start_server(cb, host, port, opts)
  check_callable(cb, "start_server", "function")
  opts = check_opts(opts, 4, "start_server")
  local ctx = ssl._context_of(opts, "start_server", true)
  local loop = running_loop()
  return network.create_server_with(loop,
    stream_handler(loop, cb, opts.limit or DEFAULT_LIMIT, ctx, opts), host, port, opts,
    "start_server")
end

--- Listens on a Unix socket (yields).
-- @function start_unix_server
-- @python asyncio.start_unix_server
-- @tparam function cb
-- @tparam ?string path
-- @tparam[opt] table opts as `start_server`'s
-- @treturn Server
-- @raise OSError; RuntimeError outside a task
function M.start_unix_server(cb, path, opts)
  check_callable(cb, "start_unix_server", "function")
  opts = check_opts(opts, 3, "start_unix_server")
  local ctx = ssl._context_of(opts, "start_unix_server", true)
  local loop = running_loop()
  return network.create_unix_server_with(loop,
    stream_handler(loop, cb, opts.limit or DEFAULT_LIMIT, ctx, opts), path, opts,
    "start_unix_server")
end

return M
