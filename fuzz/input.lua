-- A fuzz input read as a stream of operations by the Lua drivers, as fuzz.h
-- does for the C harnesses: bytes past the end read as 0.
local Input = {}
Input.__index = Input

local function new(s)
  return setmetatable({ s = s, pos = 1 }, Input)
end

function Input:byte()
  local b = self.s:byte(self.pos) or 0
  self.pos = self.pos + 1
  return b
end

-- the next n bytes (fewer at the end)
function Input:bytes(n)
  local s = self.s:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

function Input:more()
  return self.pos <= #self.s
end

return new
