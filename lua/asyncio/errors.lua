-- Error classes: each class is a table that is the metatable of its
-- instances; `Class(message [, fields])` builds one, `isinstance` walks parents.

--- Error classes, as tables of `asyncio`. `Class(message [, fields])`
-- builds an error object, `error(asyncio.ValueError("bad"))` raises it and
-- `asyncio.isinstance(err, asyncio.ValueError)` is `except ValueError`. An
-- error object has `message`, `traceback` (where it was built) and the
-- fields of its class; `tostring(e)` is `"ClassName: message"`. Plain Lua
-- errors (strings, tables) travel through futures unchanged. Bad arguments
-- to any API raise a Lua error naming the function and the argument.
-- @module errors

--- Builds an error object of the class `Class` (every class below is callable so).
-- @function Class
-- @python Class(message)
-- @tparam[opt] string message
-- @tparam[opt] table fields copied into the object
-- @treturn table the error object

local traceback = require("asyncio.core").traceback

local M = {}

local classes = {}

local function instance_tostring(e)
  local cls = getmetatable(e)
  if e.message == nil or e.message == "" then return cls.__name end
  return cls.__name .. ": " .. tostring(e.message)
end

-- Without fields (the runtime's own errors), one constructor sizes the
-- table for its two fields at once.
local function new(cls, message, fields)
  if message ~= nil and type(message) ~= "string" then message = tostring(message) end
  if fields == nil then
    return setmetatable({ message = message or "", traceback = traceback(nil, 2) }, cls)
  end
  if type(fields) ~= "table" then
    error(("bad argument #2 to '%s' (table expected, got %s)"):format(cls.__name, type(fields)), 2)
  end
  local e = {}
  for k, v in pairs(fields) do e[k] = v end
  e.message = message or e.message or ""
  e.traceback = e.traceback or traceback(nil, 2)
  return setmetatable(e, cls)
end

local class_mt = {
  __call = new,
  __tostring = function(cls) return "<class '" .. cls.__name .. "'>" end,
}

local function class(name, super)
  local cls = { __name = name, __super = super, __tostring = instance_tostring }
  cls.__index = cls
  if super then setmetatable(cls, { __index = super, __call = new, __tostring = class_mt.__tostring })
  else setmetatable(cls, class_mt) end
  classes[name] = cls
  M[name] = cls
  return cls
end

-- True when `value` is an error object of class `cls` or of a subclass.
function M.isinstance(value, cls)
  if type(value) ~= "table" then return false end
  local c = getmetatable(value)
  if type(c) ~= "table" or classes[rawget(c, "__name")] ~= c then return false end
  while c do
    if c == cls then return true end
    c = rawget(c, "__super")
  end
  return false
end

-- True when `cls` is one of the error classes.
function M.is_class(cls)
  return type(cls) == "table" and classes[rawget(cls, "__name")] == cls
end

function M.is_error(value)
  if type(value) ~= "table" then return false end
  local c = getmetatable(value)
  return type(c) == "table" and classes[rawget(c, "__name")] == c
end

-- Builds an error of the class called `name` (the C core's entry point).
function M.new_by_name(name, message, fields)
  local cls = classes[name] or classes.RuntimeError
  return new(cls, message, fields)
end

--- The base of every class but CancelledError and KeyboardInterrupt.
-- @table Exception
-- @python Exception
local Exception = class("Exception")

--- A task or future was cancelled; `message` is the cancel message. Not an
-- Exception, as in Python.
-- @table CancelledError
-- @python asyncio.CancelledError
class("CancelledError")           -- like Python's, not an Exception: `except Exception` misses it

--- SIGINT interrupted `asyncio.run` or `Runner:run`.
-- @table KeyboardInterrupt
-- @python KeyboardInterrupt
class("KeyboardInterrupt")

--- A future's result asked too early, or set twice.
-- @table InvalidStateError
-- @python asyncio.InvalidStateError
class("InvalidStateError", Exception)

--- An argument with a wrong value.
-- @table ValueError
-- @python ValueError
class("ValueError", Exception)

--- A call in the wrong state (no running loop, outside a task, loop closed, ...).
-- @table RuntimeError
-- @python RuntimeError
local RuntimeError = class("RuntimeError", Exception)

--- `loop:sendfile` cannot send (a RuntimeError).
-- @table SendfileNotAvailableError
-- @python asyncio.SendfileNotAvailableError
class("SendfileNotAvailableError", RuntimeError)

--- An abstract method was called (a RuntimeError).
-- @table NotImplementedError
-- @python NotImplementedError
class("NotImplementedError", RuntimeError) -- the abstract methods of asyncio.classes

--- A Barrier was aborted or reset (a RuntimeError).
-- @table BrokenBarrierError
-- @python asyncio.BrokenBarrierError
class("BrokenBarrierError", RuntimeError)

--- An executor's initializer failed: its jobs fail with this (a RuntimeError).
-- @table BrokenThreadPool
-- @python concurrent.futures.thread.BrokenThreadPool
class("BrokenThreadPool", RuntimeError) -- Python's BrokenExecutor subclass: an initializer failed

--- EOF before `readexactly`/`readuntil` got its bytes (an `EOFError`, itself
-- an Exception); fields `partial` (the bytes read), `expected` (nil: any).
-- @table IncompleteReadError
-- @python asyncio.IncompleteReadError, EOFError
-- @field partial string
-- @field expected ?integer
class("IncompleteReadError", class("EOFError", Exception))

--- `readuntil` went past the reader's `limit`; field `consumed`.
-- @table LimitOverrunError
-- @python asyncio.LimitOverrunError
-- @field consumed integer
class("LimitOverrunError", Exception)

--- `get_nowait` on an empty queue.
-- @table QueueEmpty
-- @python asyncio.QueueEmpty
class("QueueEmpty", Exception)

--- `put_nowait` on a full queue.
-- @table QueueFull
-- @python asyncio.QueueFull
class("QueueFull", Exception)

--- A queue was shut down.
-- @table QueueShutDown
-- @python asyncio.QueueShutDown
class("QueueShutDown", Exception)

--- What a TaskGroup raises; field `exceptions`, the list of failures.
-- @table ExceptionGroup
-- @python ExceptionGroup
-- @field exceptions table
class("ExceptionGroup", Exception)

--- A system call failed; fields `errno` (the libuv name, `"ECONNREFUSED"`)
-- and `strerror`. `TimeoutError` (ETIMEDOUT, and every timeout of the API)
-- is one, and so is `ConnectionError` with `ConnectionRefusedError`,
-- `ConnectionResetError`, `ConnectionAbortedError`, `BrokenPipeError`
-- (EPIPE, ESHUTDOWN).
-- @table OSError
-- @python OSError
-- @field errno string
-- @field strerror string
local OSError = class("OSError", Exception)

--- A deadline passed (`wait_for`, `timeout`, handshakes; an OSError).
-- @table TimeoutError
-- @python TimeoutError
class("TimeoutError", OSError)

--- The base of the connection errors (an OSError).
-- @table ConnectionError
-- @python ConnectionError
local ConnectionError = class("ConnectionError", OSError)

--- ECONNREFUSED.
-- @table ConnectionRefusedError
-- @python ConnectionRefusedError
class("ConnectionRefusedError", ConnectionError)

--- ECONNRESET, or a stream whose connection was lost.
-- @table ConnectionResetError
-- @python ConnectionResetError
class("ConnectionResetError", ConnectionError)

--- ECONNABORTED.
-- @table ConnectionAbortedError
-- @python ConnectionAbortedError
class("ConnectionAbortedError", ConnectionError)

--- EPIPE or ESHUTDOWN.
-- @table BrokenPipeError
-- @python BrokenPipeError
class("BrokenPipeError", ConnectionError)
-- TLS (asyncio.ssl): `library` and `reason` as Python's ssl module names them

--- A TLS failure (an OSError); fields `library`, `reason` as Python's.
-- Also `asyncio.ssl.SSLError`, as the three below.
-- @table SSLError
-- @python ssl.SSLError
-- @field library string
-- @field reason string
local SSLError = class("SSLError", OSError)

--- The peer's certificate or hostname did not verify.
-- @table SSLCertVerificationError
-- @python ssl.SSLCertVerificationError
-- @field verify_code integer
-- @field verify_message string
class("SSLCertVerificationError", SSLError)

--- The peer closed without `close_notify`.
-- @table SSLEOFError
-- @python ssl.SSLEOFError
class("SSLEOFError", SSLError)

--- The peer closed the TLS session.
-- @table SSLZeroReturnError
-- @python ssl.SSLZeroReturnError
class("SSLZeroReturnError", SSLError)

-- errno names (libuv's) with a class of their own; every other one is OSError
local by_errno = {
  ECONNREFUSED = "ConnectionRefusedError",
  ECONNRESET = "ConnectionResetError",
  ECONNABORTED = "ConnectionAbortedError",
  EPIPE = "BrokenPipeError",
  ESHUTDOWN = "BrokenPipeError",
  ETIMEDOUT = "TimeoutError",
}

-- The OSError for a failed system call (the C core's entry point):
-- `errno` is the libuv error name, `strerror` its text.
function M.os_error(errno, strerror, what)
  local cls = classes[by_errno[errno]] or OSError
  local msg = what and what ~= "" and (what .. ": " .. strerror) or strerror
  return new(cls, msg, { errno = errno, strerror = strerror })
end

return M
