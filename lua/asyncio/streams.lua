-- Streams: StreamWriter and the open_connection / start_server family. The
-- StreamReader is C (asyncio.core.StreamReader) and is also the protocol of
-- its transport, so a read costs no Lua call per arriving chunk.
local core = require "asyncio.core"
local errors = require "asyncio.errors"
local network = require "asyncio.network"
local tasks = require "asyncio.tasks"

local StreamReader = core.StreamReader
local M = { StreamReader = StreamReader }

local DEFAULT_LIMIT = 65536

local check_opts, check_callable, no_ssl = network.check_opts, network.check_callable, network.no_ssl

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

function M.new_writer(transport, reader)
  -- [1] and [2] are for the C methods (writer.c)
  return setmetatable({ transport, reader, transport = transport, _reader = reader }, StreamWriter)
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
  tasks.shield(self._reader:_closed_waiter()):await()
end

-- Waits while the transport's buffer is above its high-water mark; raises
-- the connection's error once it is lost (Python's drain). On a closing
-- transport it waits for connection_lost, which comes from libuv's close
-- callback, possibly several loop turns later (Python's single sleep(0)
-- would let write(); drain() in a loop run on without ever seeing the loss),
-- then raises the error the connection was lost with, if any. The C method
-- returns at once when there is nothing to wait for, else runs this.
local function drain(self)
  local exc = self._reader:exception()
  if exc ~= nil then error(exc, 0) end
  if self.transport:is_closing() then
    self:wait_closed()
    exc = self._reader:exception()
    if exc ~= nil then error(exc, 0) end
  end
  local waiter = self._reader:_drain_helper()
  if waiter then waiter:await() end
end
StreamWriter.drain = core.stream_drain(drain)

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
  local tp = loop:create_connection(factory, host, port, opts)
  return reader, M.new_writer(tp, reader)
end

function M.open_unix_connection(path, opts)
  opts = check_opts(opts, 2, "open_unix_connection")
  local loop = running_loop()
  local reader, factory = reader_factory(loop, opts.limit or DEFAULT_LIMIT)
  local tp = loop:create_unix_connection(factory, path, opts)
  return reader, M.new_writer(tp, reader)
end

-- Each connection: a reader as the transport's protocol, and cb(reader,
-- writer) in a task of its own; the connection is closed when that task is
-- cancelled or fails, and the error reported (Python's client_connected_cb
-- handling).
local function stream_handler(loop, cb, limit)
  return function(server, tp)
    local reader = StreamReader(limit, loop)
    server:_attach(tp)
    tp:_start(reader, server)
    local task = loop:create_task(cb, reader, M.new_writer(tp, reader))
    task:add_done_callback(function(t)
      if t:cancelled() then
        tp:close()
        return
      end
      local exc = t:exception()
      if exc ~= nil then
        loop:call_exception_handler {
          message = "Unhandled exception in client_connected_cb",
          exception = exc,
          transport = tp,
          task = t,
        }
        tp:close()
      end
    end)
  end
end


function M.start_server(cb, host, port, opts)
  check_callable(cb, "start_server", "function")
  opts = check_opts(opts, 4, "start_server")
  no_ssl(opts)
  local loop = running_loop()
  return network.create_server_with(loop, stream_handler(loop, cb, opts.limit or DEFAULT_LIMIT),
    host, port, opts)
end

function M.start_unix_server(cb, path, opts)
  check_callable(cb, "start_unix_server", "function")
  opts = check_opts(opts, 3, "start_unix_server")
  no_ssl(opts)
  local loop = running_loop()
  return network.create_unix_server_with(loop, stream_handler(loop, cb, opts.limit or DEFAULT_LIMIT),
    path, opts)
end

return M
