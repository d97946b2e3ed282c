-- asyncio.logger: where the runtime's warnings go (stderr by default).

--- `asyncio.logger`: where the runtime's warnings go (default: stderr,
-- level `"warning"`). Levels: `"debug"`, `"info"`, `"warning"`, `"error"`,
-- `"critical"`; each is also a function, `logger.warning(msg)`.
-- @module asyncio.logger

--- Logs `msg` at level debug (`info`, `warning`, `error`, `critical` likewise).
-- @function debug
-- @python logging.Logger.debug
-- @param msg

--- Logs `msg` at level info.
-- @function info
-- @python logging.Logger.info
-- @param msg

--- Logs `msg` at level warning.
-- @function warning
-- @python logging.Logger.warning
-- @param msg

--- Logs `msg` at level error.
-- @function error
-- @python logging.Logger.error
-- @param msg

--- Logs `msg` at level critical.
-- @function critical
-- @python logging.Logger.critical
-- @param msg

local M = {}

local LEVELS = { debug = 10, info = 20, warning = 30, error = 40, critical = 50 }
local threshold = LEVELS.warning

local function default_handler(level, msg)
  io.stderr:write("asyncio ", level, ": ", msg, "\n")
  io.stderr:flush()
end

local handler = default_handler

--- Sends messages to `fn(level, msg)` (nil: back to stderr).
-- @function set_handler
-- @python logging.Logger.addHandler
-- @tparam ?function fn
function M.set_handler(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("bad argument #1 to 'set_handler' (function expected, got " .. type(fn) .. ")", 2)
  end
  handler = fn or default_handler
end

--- Drops messages below `level`.
-- @function set_level
-- @python logging.Logger.setLevel
-- @tparam string level
function M.set_level(level)
  local n = LEVELS[level]
  if not n then error("bad argument #1 to 'set_level' (unknown level '" .. tostring(level) .. "')", 2) end
  threshold = n
end

--- The level in force.
-- @function get_level
-- @python logging.Logger.getEffectiveLevel
-- @treturn string
function M.get_level()
  for name, n in pairs(LEVELS) do if n == threshold then return name end end
end

--- Logs `msg` at `level` (an unknown level counts as error).
-- @function log
-- @python logging.Logger.log
-- @tparam string level
-- @param msg
function M.log(level, msg)
  local n = LEVELS[level] or LEVELS.error
  if n >= threshold then handler(level, tostring(msg)) end
end

for name in pairs(LEVELS) do
  M[name] = function(msg) M.log(name, msg) end
end

return M
