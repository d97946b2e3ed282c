-- asyncio.coroutine: a drop-in for the coroutine table whose resume and wrap
-- let a user coroutine inside a task call yielding asyncio APIs.
--
-- Such a call, made in a coroutine that is not the task's own, yields
-- (NESTED, fn, args...) instead of suspending the task; resume makes the call
-- fn(args...) itself, one level up (suspending the task, or climbing further
-- through enclosing asyncio coroutines), then hands the outcome back with
-- (NESTED, ok, results...). Ordinary coroutine.yield values pass through.
-- The plain coroutine table would return NESTED to the caller as if it were
-- a yielded value; the coroutine then raises a RuntimeError saying so.

--- `asyncio.coroutine`: a drop-in for the `coroutine` table whose `resume`
-- and `wrap` let a user coroutine inside a task call yielding asyncio
-- APIs. With the plain table such a call raises RuntimeError. `create`,
-- `status`, `yield`, `isyieldable`, `running` and `close` are the standard ones.
-- @module asyncio.coroutine

local core = require "asyncio.core"

local NESTED = core.NESTED
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close
local pack, unpack = table.pack, table.unpack

--- As `coroutine.create`.
-- @function create
-- @python (none)
-- @tparam function f
-- @treturn thread

--- As `coroutine.status`.
-- @function status
-- @python (none)
-- @tparam thread co
-- @treturn string

--- As `coroutine.yield`.
-- @function yield
-- @python yield
-- @param ...

--- As `coroutine.isyieldable`.
-- @function isyieldable
-- @python (none)
-- @treturn boolean

--- As `coroutine.running`.
-- @function running
-- @python (none)
-- @treturn thread

--- As `coroutine.close`.
-- @function close
-- @python generator.close
-- @tparam thread co

local M = {
  create = coroutine.create,
  status = coroutine.status,
  yield = coroutine.yield,
  isyieldable = coroutine.isyieldable,
  running = coroutine.running,
  close = coroutine.close,
}

-- Serves the asyncio calls the coroutine yields up until it yields a value of
-- its own, returns or fails; r is what coroutine.resume returned, packed.
local function serve(co, r)
  while r[1] and r[2] == NESTED do
    local res = pack(pcall(r[3], unpack(r, 4, r.n)))
    r = pack(co_resume(co, NESTED, unpack(res, 1, res.n)))
  end
  return r
end

--- As `coroutine.resume`; asyncio calls made inside `co` suspend the task.
-- @function resume
-- @python (generators inside a coroutine)
-- @tparam thread co
-- @param ... values passed in
-- @return ... as `coroutine.resume`
function M.resume(co, ...)
  local r = serve(co, pack(co_resume(co, ...)))
  return unpack(r, 1, r.n)
end

--- As `coroutine.wrap`, resuming through `resume`.
-- @function wrap
-- @python (generators inside a coroutine)
-- @tparam function f
-- @treturn function
function M.wrap(f)
  local co = co_create(f)
  return function(...)
    local r = serve(co, pack(co_resume(co, ...)))
    if r[1] then return unpack(r, 2, r.n) end
    co_close(co) -- as coroutine.wrap does: close what is left, then raise
    error(r[2], 2)
  end
end

return M
