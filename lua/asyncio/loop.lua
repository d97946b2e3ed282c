-- The Lua half of the event loop: exception handling, whose cost is per
-- error, not per event. Installed into the C Loop's method table.

--- The event loop: `asyncio.get_running_loop()`, `asyncio.new_event_loop()`.
-- Callbacks run in the loop, not in a task: they must not call yielding
-- APIs. An error in a callback goes to the exception handler. Field
-- `slow_callback_duration` (seconds, default 0.1): debug mode logs callbacks
-- slower than that. The transport, socket, subprocess and executor methods
-- are on their pages.
-- Python: `asyncio.AbstractEventLoop`.
-- @classmod Loop

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local logger = require "asyncio.log"

local Loop = core.Loop

-- An address {host, port} (peername, sockname) reads as Python prints its
-- tuple; anything else as tostring gives it.
local function describe(v)
  if type(v) == "table" and getmetatable(v) == nil and #v == 2 and type(v[1]) == "string"
     and math.type(v[2]) == "integer" then
    return ("('%s', %d)"):format(v[1], v[2])
  end
  local ok, s = pcall(tostring, v)
  return ok and s or "<unprintable>"
end

--- Logs `context` (its `message`, the other keys, the exception and its traceback).
-- @function Loop:default_exception_handler
-- @python loop.default_exception_handler
-- @tparam table context `message`, `exception`, `future`, `task`, `handle`, ...
function Loop:default_exception_handler(context)
  if type(context) ~= "table" then
    error("bad argument #1 to 'default_exception_handler' (table expected, got " .. type(context) .. ")", 2)
  end
  local lines = { context.message or "Unhandled exception in event loop" }
  local keys = {}
  for k in pairs(context) do
    if k ~= "message" and k ~= "exception" and k ~= "traceback" then keys[#keys + 1] = tostring(k) end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = k .. ": " .. describe(context[k]) end
  local exc = context.exception
  if exc ~= nil then
    lines[#lines + 1] = "exception: " .. describe(exc)
    local tb = errors.is_error(exc) and exc.traceback or context.traceback
    if tb then lines[#lines + 1] = tostring(tb) end
  end
  logger.error(table.concat(lines, "\n"))
end

--- Calls the handler set by `set_exception_handler` (else the default one);
-- an error in the handler is logged.
-- @function Loop:call_exception_handler
-- @python loop.call_exception_handler
-- @tparam table context as `default_exception_handler`'s
function Loop:call_exception_handler(context)
  if type(context) ~= "table" then
    error("bad argument #1 to 'call_exception_handler' (table expected, got " .. type(context) .. ")", 2)
  end
  local handler = self:get_exception_handler()
  if handler == nil then
    local ok, err = pcall(self.default_exception_handler, self, context)
    if not ok then io.stderr:write("asyncio: exception in default exception handler: ", describe(err), "\n") end
    return
  end
  local ok, err = pcall(handler, self, context)
  if not ok then
    pcall(self.default_exception_handler, self, {
      message = "Unhandled error in exception event handler",
      exception = err,
      context = context,
    })
  end
end

return Loop
