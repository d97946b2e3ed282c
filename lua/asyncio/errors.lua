-- Error classes: each class is a table that is the metatable of its
-- instances; `Class(message [, fields])` builds one, `isinstance` walks parents.
local M = {}

local classes = {}

local function instance_tostring(e)
  local cls = getmetatable(e)
  if e.message == nil or e.message == "" then return cls.__name end
  return cls.__name .. ": " .. tostring(e.message)
end

local function new(cls, message, fields)
  local e = {}
  if fields ~= nil then
    if type(fields) ~= "table" then
      error(("bad argument #2 to '%s' (table expected, got %s)"):format(cls.__name, type(fields)), 2)
    end
    for k, v in pairs(fields) do e[k] = v end
  end
  if message ~= nil then e.message = tostring(message) else e.message = e.message or "" end
  e.traceback = e.traceback or debug.traceback(nil, 2)
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

--- True when `value` is an error object of class `cls` or of a subclass.
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

--- True when `cls` is one of the error classes.
function M.is_class(cls)
  return type(cls) == "table" and classes[rawget(cls, "__name")] == cls
end

function M.is_error(value)
  if type(value) ~= "table" then return false end
  local c = getmetatable(value)
  return type(c) == "table" and classes[rawget(c, "__name")] == c
end

--- Builds an error of the class called `name` (the C core's entry point).
function M.new_by_name(name, message, fields)
  local cls = classes[name] or classes.RuntimeError
  return new(cls, message, fields)
end

local Exception = class("Exception")
class("CancelledError")           -- like Python's, not an Exception: `except Exception` misses it
class("KeyboardInterrupt")
class("InvalidStateError", Exception)
class("ValueError", Exception)
local RuntimeError = class("RuntimeError", Exception)
class("SendfileNotAvailableError", RuntimeError)
class("NotImplementedError", RuntimeError) -- the abstract methods of asyncio.classes
class("BrokenBarrierError", RuntimeError)
class("BrokenThreadPool", RuntimeError) -- Python's BrokenExecutor subclass: an initializer failed
class("IncompleteReadError", class("EOFError", Exception))
class("LimitOverrunError", Exception)
class("QueueEmpty", Exception)
class("QueueFull", Exception)
class("QueueShutDown", Exception)
class("ExceptionGroup", Exception)
local OSError = class("OSError", Exception)
class("TimeoutError", OSError)
local ConnectionError = class("ConnectionError", OSError)
class("ConnectionRefusedError", ConnectionError)
class("ConnectionResetError", ConnectionError)
class("ConnectionAbortedError", ConnectionError)
class("BrokenPipeError", ConnectionError)
-- TLS (asyncio.ssl): `library` and `reason` as Python's ssl module names them
local SSLError = class("SSLError", OSError)
class("SSLCertVerificationError", SSLError)
class("SSLEOFError", SSLError)
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

--- The OSError for a failed system call (the C core's entry point):
--- `errno` is the libuv error name, `strerror` its text.
function M.os_error(errno, strerror, what)
  local cls = classes[by_errno[errno]] or OSError
  local msg = what and what ~= "" and (what .. ": " .. strerror) or strerror
  return new(cls, msg, { errno = errno, strerror = strerror })
end

return M
