-- asyncio.isinstance, and Python's abstract classes: the protocol bases a Lua
-- protocol inherits its no-op callbacks from, and BaseTransport and its
-- kinds, AbstractServer, AbstractEventLoop, which the runtime's own objects
-- are instances of. A Lua class is a table reached through __index; a
-- userdata of the core is mapped to its class by its tag.

--- The abstract classes and `asyncio.isinstance`.
-- @module transports

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local kind_of = core.kind_of
local is_error_class, error_isinstance = errors.is_class, errors.isinstance
local getmetatable, rawget, rawequal, type, ipairs = getmetatable, rawget, rawequal, type, ipairs

local M = {}

-- Extra parents of a class, beside the one its metatable's __index names:
-- Transport's second base, and Python's ABC.register for classes of the
-- runtime (Server, Loop) whose method tables should not change.
local bases = setmetatable({}, { __mode = "k" })

function M.register(cls, abstract)
  local list = bases[cls]
  if not list then
    list = {}
    bases[cls] = list
  end
  list[#list + 1] = abstract
end

local MAX_DEPTH = 64 -- a cycle of __index tables must not hang isinstance

local function derives(c, cls, depth)
  while type(c) == "table" and depth < MAX_DEPTH do
    if rawequal(c, cls) then return true end
    local extra = bases[c]
    if extra then
      for _, b in ipairs(extra) do
        if derives(b, cls, depth + 1) then return true end
      end
    end
    local mt = getmetatable(c)
    c = type(mt) == "table" and rawget(mt, "__index") or nil
    depth = depth + 1
  end
  return false
end

-- the class of each kind of core userdata (core.kind_of), filled below
local of_kind = {}

--- True when `value` is an instance of `cls` or of a subclass: error
-- objects, loops, futures, tasks, handles, transports, servers, and tables
-- inheriting through `__index`. False for anything else (strings included).
-- @function isinstance
-- @python isinstance
-- @param value
-- @tparam table cls
-- @treturn boolean
function M.isinstance(value, cls)
  local ct = type(cls)
  if ct ~= "table" and ct ~= "function" then return false end
  if is_error_class(cls) then return error_isinstance(value, cls) end -- error objects only
  local t = type(value)
  if t == "userdata" then
    local kind = kind_of(value)
    if kind then
      local c = of_kind[kind] -- asyncio.StreamReader and Event are their constructors, functions
      return rawequal(c, cls) or derives(c, cls, 0)
    end
  elseif t ~= "table" then
    return false
  end
  local mt = getmetatable(value)
  if type(mt) ~= "table" then return false end
  if rawequal(mt, cls) then return true end
  local up = rawget(mt, "__index")
  return type(up) == "table" and derives(up, cls, 0)
end

-- An abstract method: raises Python's NotImplementedError.
function M.abstract(name)
  return function() error(errors.NotImplementedError(name .. " is abstract"), 2) end
end
local abstract = M.abstract

-- into[name] = a class table that is also the metatable of its instances
-- (setmetatable(obj, Class) or setmetatable(obj, {__index = Class})).
function M.new_class(into, name, parent)
  local cls = { __name = "asyncio." .. name }
  cls.__index = cls
  setmetatable(cls, { __index = parent })
  into[name] = cls
  return cls
end

local function class(name, parent) return M.new_class(M, name, parent) end

-- ---- protocols (Python's asyncio/protocols.py) --------------------------------------
-- A protocol defines only the callbacks it needs, e.g.
--   local Echo = setmetatable({}, { __index = asyncio.Protocol })
-- the transports look each one up through __index, so inherited ones run.

local function noop() end

--- The protocol bases, whose no-op callbacks a protocol inherits:
-- `local Echo = setmetatable({}, {__index = asyncio.Protocol})`. `Protocol`
-- (streams), `DatagramProtocol` and `SubprocessProtocol` derive from
-- `BaseProtocol`; the transports look each callback up through `__index`.
-- @table BaseProtocol
-- @python asyncio.BaseProtocol, asyncio.Protocol, asyncio.DatagramProtocol, asyncio.SubprocessProtocol

local BaseProtocol = class("BaseProtocol")

--- Callback: the connection is made.
-- @function BaseProtocol:connection_made
-- @python BaseProtocol.connection_made
-- @tparam Transport transport
BaseProtocol.connection_made = noop -- (transport)

--- Callback: the connection is lost or closed.
-- @function BaseProtocol:connection_lost
-- @python BaseProtocol.connection_lost
-- @param err nil on a clean close or EOF
BaseProtocol.connection_lost = noop -- (exc): nil on a clean close or EOF

--- Callback: the write buffer went above the high-water mark.
-- @function BaseProtocol:pause_writing
-- @python BaseProtocol.pause_writing
BaseProtocol.pause_writing = noop -- the transport's buffer went over the high-water mark

--- Callback: the write buffer drained to the low-water mark.
-- @function BaseProtocol:resume_writing
-- @python BaseProtocol.resume_writing
BaseProtocol.resume_writing = noop -- and drained below the low-water mark

local Protocol = class("Protocol", BaseProtocol)

--- Callback: bytes arrived.
-- @function Protocol:data_received
-- @python Protocol.data_received
-- @tparam string data
Protocol.data_received = noop -- (data)

--- Callback: the peer closed its write side; a truthy result keeps the
-- transport half-open, else it closes.
-- @function Protocol:eof_received
-- @python Protocol.eof_received
Protocol.eof_received = noop -- (): a false result closes the transport, true keeps it half-open

local DatagramProtocol = class("DatagramProtocol", BaseProtocol)

--- Callback: a datagram arrived.
-- @function DatagramProtocol:datagram_received
-- @python DatagramProtocol.datagram_received
-- @tparam string data
-- @tparam table addr `{host, port}`
DatagramProtocol.datagram_received = noop -- (data, addr)

--- Callback: a send or receive failed (ICMP errors and the like).
-- @function DatagramProtocol:error_received
-- @python DatagramProtocol.error_received
-- @param err an OSError
DatagramProtocol.error_received = noop -- (exc)

local SubprocessProtocol = class("SubprocessProtocol", BaseProtocol)

--- Callback: the child wrote to pipe `fd` (1 or 2).
-- @function SubprocessProtocol:pipe_data_received
-- @python SubprocessProtocol.pipe_data_received
-- @tparam integer fd
-- @tparam string data
SubprocessProtocol.pipe_data_received = noop -- (fd, data)

--- Callback: pipe `fd` closed.
-- @function SubprocessProtocol:pipe_connection_lost
-- @python SubprocessProtocol.pipe_connection_lost
-- @tparam integer fd
-- @param err nil on EOF
SubprocessProtocol.pipe_connection_lost = noop -- (fd, exc)

--- Callback: the child exited.
-- @function SubprocessProtocol:process_exited
-- @python SubprocessProtocol.process_exited
SubprocessProtocol.process_exited = noop -- ()

-- ---- transports (Python's asyncio/transports.py) ------------------------------------

--- The transport kinds, for `asyncio.isinstance`: `BaseTransport`, with
-- `ReadTransport` and `WriteTransport`, both bases of `Transport` (every
-- stream and TLS transport); `DatagramTransport`, `SubprocessTransport`.
-- Also `AbstractServer` (of `Server`) and `AbstractEventLoop` (of `Loop`).
-- Their methods raise NotImplementedError; the runtime's transports have
-- their own (Transport, DatagramTransport).
-- @table BaseTransport
-- @python asyncio.BaseTransport, asyncio.Transport, asyncio.AbstractServer, ...

local BaseTransport = class("BaseTransport")
function BaseTransport:get_extra_info(name, default)
  local extra = rawget(self, "_extra")
  local v = extra and extra[name]
  if v == nil then return default end
  return v
end
BaseTransport.is_closing = abstract("BaseTransport.is_closing")
BaseTransport.close = abstract("BaseTransport.close")
BaseTransport.set_protocol = abstract("BaseTransport.set_protocol")
BaseTransport.get_protocol = abstract("BaseTransport.get_protocol")

local ReadTransport = class("ReadTransport", BaseTransport)
ReadTransport.is_reading = abstract("ReadTransport.is_reading")
ReadTransport.pause_reading = abstract("ReadTransport.pause_reading")
ReadTransport.resume_reading = abstract("ReadTransport.resume_reading")

local WriteTransport = class("WriteTransport", BaseTransport)
WriteTransport.set_write_buffer_limits = abstract("WriteTransport.set_write_buffer_limits")
WriteTransport.get_write_buffer_size = abstract("WriteTransport.get_write_buffer_size")
WriteTransport.get_write_buffer_limits = abstract("WriteTransport.get_write_buffer_limits")
WriteTransport.write = abstract("WriteTransport.write")
WriteTransport.write_eof = abstract("WriteTransport.write_eof")
WriteTransport.can_write_eof = abstract("WriteTransport.can_write_eof")
WriteTransport.abort = abstract("WriteTransport.abort")
-- The default writelines: one write of the concatenation, as Python's.
function WriteTransport:writelines(list)
  self:write(table.concat(list))
end

-- both kinds at once: ReadTransport through __index, WriteTransport beside it
local Transport = class("Transport", ReadTransport)
for k, v in pairs(WriteTransport) do
  if rawget(Transport, k) == nil and rawget(BaseTransport, k) == nil then Transport[k] = v end
end
M.register(Transport, WriteTransport)

local DatagramTransport = class("DatagramTransport", BaseTransport)
DatagramTransport.sendto = abstract("DatagramTransport.sendto")
DatagramTransport.abort = abstract("DatagramTransport.abort")

local SubprocessTransport = class("SubprocessTransport", BaseTransport)
for _, name in ipairs { "get_pid", "get_returncode", "get_pipe_transport", "send_signal", "terminate", "kill" } do
  SubprocessTransport[name] = abstract("SubprocessTransport." .. name)
end

-- ---- the server and the loop (Python's asyncio/events.py) ---------------------------

local AbstractServer = class("AbstractServer")
for _, name in ipairs { "close", "get_loop", "is_serving", "start_serving", "serve_forever",
                        "wait_closed", "close_clients", "abort_clients" } do
  AbstractServer[name] = abstract("AbstractServer." .. name)
end

local AbstractEventLoop = class("AbstractEventLoop")
for _, name in ipairs { "run_forever", "run_until_complete", "stop", "is_running", "is_closed",
                        "close", "call_soon", "call_later", "call_at", "time", "create_future",
                        "create_task", "call_soon_threadsafe", "run_in_executor" } do
  AbstractEventLoop[name] = abstract("AbstractEventLoop." .. name)
end

-- ---- the runtime's own classes ------------------------------------------------------

M.register(core.Loop, AbstractEventLoop)
M.register(core.Task, core.Future)
M.register(core.TimerHandle, core.Handle)
of_kind.Loop = core.Loop
of_kind.Future = core.Future
of_kind.Task = core.Task
of_kind.Handle = core.Handle
of_kind.TimerHandle = core.TimerHandle
of_kind.StreamReader = core.StreamReader
of_kind.Event = core.Event
of_kind.Transport = Transport
of_kind.ReadTransport = ReadTransport
of_kind.WriteTransport = WriteTransport
of_kind.DatagramTransport = DatagramTransport

return M
