-- asyncio.logger: where the runtime's warnings go (stderr by default).
local M = {}

local LEVELS = { debug = 10, info = 20, warning = 30, error = 40, critical = 50 }
local threshold = LEVELS.warning

local function default_handler(level, msg)
  io.stderr:write("asyncio ", level, ": ", msg, "\n")
  io.stderr:flush()
end

local handler = default_handler

function M.set_handler(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("bad argument #1 to 'set_handler' (function expected, got " .. type(fn) .. ")", 2)
  end
  handler = fn or default_handler
end

function M.set_level(level)
  local n = LEVELS[level]
  if not n then error("bad argument #1 to 'set_level' (unknown level '" .. tostring(level) .. "')", 2) end
  threshold = n
end

function M.get_level()
  for name, n in pairs(LEVELS) do if n == threshold then return name end end
end

function M.log(level, msg)
  local n = LEVELS[level] or LEVELS.error
  if n >= threshold then handler(level, tostring(msg)) end
end

for name in pairs(LEVELS) do
  M[name] = function(msg) M.log(name, msg) end
end

return M
