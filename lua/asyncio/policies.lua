-- Event loop policies (Python's asyncio/events.py), deprecated in Python
-- 3.14 and here alike: they work, and each entry point logs a deprecation
-- warning once. The default policy is the runtime's own get_event_loop /
-- set_event_loop / new_event_loop; a policy of the user's, once set, is
-- asked instead by those three functions and by asyncio.run and Runner.

--- Event loop policies, deprecated as in Python 3.14.
-- @module asyncio

local core = require "asyncio.core"
local classes = require "asyncio.classes"
local errors = require "asyncio.errors"
local logger = require "asyncio.log"

local M = {}

local warned = {}
local function deprecated(name)
  if warned[name] then return end
  warned[name] = true
  logger.warning(("asyncio.%s is deprecated, as in Python 3.14 (policies go in 3.16): "
    .. "use asyncio.run, asyncio.Runner or asyncio.new_event_loop"):format(name))
end

local abstract = classes.abstract

local AbstractEventLoopPolicy = classes.new_class(M, "AbstractEventLoopPolicy")
AbstractEventLoopPolicy.get_event_loop = abstract("AbstractEventLoopPolicy.get_event_loop")
AbstractEventLoopPolicy.set_event_loop = abstract("AbstractEventLoopPolicy.set_event_loop")
AbstractEventLoopPolicy.new_event_loop = abstract("AbstractEventLoopPolicy.new_event_loop")

--- The policy classes (deprecated): `DefaultEventLoopPolicy()` makes one
-- (a subclass of `AbstractEventLoopPolicy`)
-- with `get_event_loop()`, `set_event_loop(loop)`, `new_event_loop()`.
-- @table DefaultEventLoopPolicy
-- @python asyncio.DefaultEventLoopPolicy, asyncio.AbstractEventLoopPolicy
local DefaultEventLoopPolicy = classes.new_class(M, "DefaultEventLoopPolicy", AbstractEventLoopPolicy)
getmetatable(DefaultEventLoopPolicy).__call = function(c)
  deprecated("DefaultEventLoopPolicy")
  return setmetatable({}, c)
end

-- The loop set by set_event_loop; Python 3.14's policy no longer makes one.
function DefaultEventLoopPolicy:get_event_loop()
  local loop = core._get_event_loop()
  if loop == nil then error(errors.RuntimeError("There is no current event loop"), 2) end
  return loop
end

function DefaultEventLoopPolicy:set_event_loop(loop)
  core.set_event_loop(loop)
end

function DefaultEventLoopPolicy:new_event_loop(opts)
  return core.new_event_loop(opts)
end

local policy -- the policy in force; nil until get_event_loop_policy or set_event_loop_policy

-- the policy in force when it is the user's (the functions below ask it), else nil
local function custom()
  if policy ~= nil and getmetatable(policy) ~= DefaultEventLoopPolicy then return policy end
  return nil
end

--- The policy in force (deprecated: logs a warning).
-- @function get_event_loop_policy
-- @python asyncio.get_event_loop_policy
-- @treturn AbstractEventLoopPolicy
function M.get_event_loop_policy()
  deprecated("get_event_loop_policy")
  if policy == nil then policy = setmetatable({}, DefaultEventLoopPolicy) end
  return policy
end

--- Sets the policy (deprecated: logs a warning); nil restores the default.
-- @function set_event_loop_policy
-- @python asyncio.set_event_loop_policy
-- @tparam ?AbstractEventLoopPolicy p the policy
function M.set_event_loop_policy(p)
  deprecated("set_event_loop_policy")
  if p ~= nil and not classes.isinstance(p, AbstractEventLoopPolicy) then
    error(("bad argument #1 to 'set_event_loop_policy' (AbstractEventLoopPolicy expected, got %s)")
      :format(type(p)), 2)
  end
  policy = p
end

-- what asyncio's own functions call: the user's policy when there is one

--- A new loop (not running, not current).
-- @function new_event_loop
-- @python asyncio.new_event_loop
-- @tparam[opt] table opts `clock = "virtual"`: a test clock that jumps to the next timer when idle
-- @treturn Loop
function M.new_event_loop(opts)
  local p = custom()
  if p then return p:new_event_loop(opts) end
  return core.new_event_loop(opts)
end

--- Makes `loop` the current loop of this thread (nil: none).
-- @function set_event_loop
-- @python asyncio.set_event_loop
-- @tparam ?Loop loop
function M.set_event_loop(loop)
  local p = custom()
  if p then return p:set_event_loop(loop) end
  return core.set_event_loop(loop)
end

-- The policy's loop, or nil when the default policy is in force (the
-- caller then applies its own rule).
function M.policy_event_loop()
  local p = custom()
  if p then return p:get_event_loop() end
  return nil
end

return M
