-- Streams: StreamWriter and the open_connection / start_server family. The
-- StreamReader is C (asyncio.core.StreamReader) and is also the protocol of
-- its transport, so a read costs no Lua call per arriving chunk.
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

-- [1] and [2] are for the C methods (writer.c), [3] is server_side; only
-- the public transport is a field, so a writer is one array and one node
function M.new_writer(transport, reader, server_side)
  return setmetatable({ transport, reader, server_side, transport = transport }, StreamWriter)
end

function StreamWriter:__tostring()
  return "<StreamWriter " .. tostring(self.transport) .. ">"
end

StreamWriter.write = core.stream_write -- C: the echo loop's hot path
function StreamWriter:writelines(list) return self.transport:writelines(list) end
function StreamWriter:can_write_eof() return self.transport:can_write_eof() end
function StreamWriter:write_eof() return self.transport:write_eof() end
function StreamWriter:close() return self.transport:close() end
function StreamWriter:is_closing() return self.transport:is_closing() end
function StreamWriter:get_extra_info(name, default)
  return self.transport:get_extra_info(name, default)
end

-- Shielded: every wait_closed shares one future, which a cancelled waiter
-- would otherwise cancel for all the later ones.
function StreamWriter:wait_closed()
  tasks.shield(self[2]:_closed_waiter()):await()
end

-- Waits while the transport's buffer is above its high-water mark; raises
-- the connection's error once it is lost (Python's drain). On a closing
-- transport it waits for connection_lost, which comes from libuv's close
-- callback, possibly several loop turns later (Python's single sleep(0)
-- would let write(); drain() in a loop run on without ever seeing the loss),
-- then raises the error the connection was lost with, if any. The C method
-- returns at once when there is nothing to wait for, else runs this.
local function drain(self)
  local exc = self[2]:exception()
  if exc ~= nil then error(exc, 0) end
  if self.transport:is_closing() then
    self:wait_closed()
    exc = self[2]:exception()
    if exc ~= nil then error(exc, 0) end
  end
  local waiter = self[2]:_drain_helper()
  if waiter then waiter:await() end
end
StreamWriter.drain = core.stream_drain(drain)

-- Upgrades the connection to TLS in place: the reader goes on reading, now
-- plaintext, and bytes it held unread go into the TLS input.
function StreamWriter:start_tls(ctx, opts)
  opts = check_opts(opts, 3, "start_tls")
  local server_side = opts.server_side
  if server_side == nil then server_side = self[3] or false end
  local t = running_loop():start_tls(self.transport, self[2], ctx, {
    server_side = server_side, server_hostname = opts.server_hostname,
    ssl_handshake_timeout = opts.ssl_handshake_timeout,
    ssl_shutdown_timeout = opts.ssl_shutdown_timeout,
  })
  self.transport, self[1] = t, t
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

function M.open_connection(host, port, opts)
  opts = check_opts(opts, 3, "open_connection")
  local loop = running_loop()
  local reader, factory = reader_factory(loop, opts.limit or DEFAULT_LIMIT)
  local tp = network.connection(loop, factory, host, port, opts, "open_connection", 1)
  return reader, M.new_writer(tp, reader)
end

function M.open_unix_connection(path, opts)
  opts = check_opts(opts, 2, "open_unix_connection")
  local loop = running_loop()
  local reader, factory = reader_factory(loop, opts.limit or DEFAULT_LIMIT)
  local tp = network.unix_connection(loop, factory, path, opts, "open_unix_connection", 1)
  return reader, M.new_writer(tp, reader)
end

-- Each connection: a reader as the transport's protocol, and cb(reader,
-- writer) in a task of its own; the connection is closed when that task is
-- cancelled or fails, and the error reported (Python's client_connected_cb
-- handling).
local function stream_handler(loop, cb, limit, ctx, opts)
  -- each connection's writer by its task: one done callback for them all
  -- costs a table slot per connection where a closure would cost two objects
  local writers = {}
  -- writer.transport, not tp: cb may have upgraded it with start_tls
  local function done(t)
    local writer = writers[t]
    writers[t] = nil
    if t:cancelled() then
      writer.transport:close()
      return
    end
    local exc = t:exception()
    if exc ~= nil then
      loop:call_exception_handler {
        message = "Unhandled exception in client_connected_cb",
        exception = exc,
        transport = writer.transport,
        task = t,
      }
      writer.transport:close()
    end
  end
  local function run(tp, reader)
    local writer = M.new_writer(tp, reader, true)
    local task = loop:create_task(cb, reader, writer)
    writers[task] = writer
    task:add_done_callback(done)
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


function M.start_server(cb, host, port, opts)
  check_callable(cb, "start_server", "function")
  opts = check_opts(opts, 4, "start_server")
  local ctx = ssl._context_of(opts, "start_server", true)
  local loop = running_loop()
  return network.create_server_with(loop,
    stream_handler(loop, cb, opts.limit or DEFAULT_LIMIT, ctx, opts), host, port, opts,
    "start_server")
end

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
