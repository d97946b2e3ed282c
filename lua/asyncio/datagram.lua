-- loop:create_datagram_endpoint, as Python's: resolve the addresses, open the
-- first local/remote pair of one family that works, then start the protocol.
-- The transport itself is C (udp.c).

--- UDP endpoints.
-- @module transports

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local Loop = core.Loop
local resolve_addr, udp_open, udp_adopt, udp_start =
  core._udp_resolve, core._udp_open, core._udp_adopt, core._udp_start

local FNAME = "create_datagram_endpoint"
local OPTIONS = { local_addr = true, remote_addr = true, family = true, reuse_port = true,
                  allow_broadcast = true, reuse_address = true, sock = true }

local FAMILIES = { inet = true, inet6 = true, AF_INET = true, AF_INET6 = true, unspec = true,
                   AF_UNSPEC = true }

local function argerror(n, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, FNAME, msg), 3)
end

-- nil, or what is wrong with addr
local function addr_problem(addr, name)
  if addr == nil then return nil end
  if type(addr) ~= "table" then return name .. " must be a {host, port} table" end
  local host, port = addr[1], addr[2]
  if host ~= nil and type(host) ~= "string" then return name .. " host must be a string" end
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    return name .. " port must be an integer in 0-65535"
  end
end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

local function family_of(addr)
  return addr[1]:find(":", 1, true) and "inet6" or "inet"
end

-- the first address of each family, in the order the families come
local function by_family(list, order, seen)
  local first = {}
  for _, a in ipairs(list) do
    local f = family_of(a)
    if not first[f] then
      first[f] = a
      if not seen[f] then
        seen[f] = true
        order[#order + 1] = f
      end
    end
  end
  return first
end

local function resolve(loop, addr, family)
  if addr == nil then return nil end
  local list = resolve_addr(loop, addr[1], addr[2], family):await()
  if #list == 0 then error(errors.ValueError("can not get address information"), 0) end
  return list
end

-- {local, remote} candidates: one per family both sides have
local function address_pairs(locs, rems)
  if not (locs or rems) then return { {} } end
  local order, seen = {}, {}
  local l = locs and by_family(locs, order, seen)
  local r = rems and by_family(rems, order, seen)
  local out = {}
  for _, f in ipairs(order) do
    if (not locs or l[f]) and (not rems or r[f]) then out[#out + 1] = { l and l[f], r and r[f] } end
  end
  if #out == 0 then error(errors.ValueError("can not get address information"), 0) end
  return out
end

-- gives the transport its protocol; closes it when that fails
local function start(transport, factory)
  local ok, protocol = pcall(factory)
  if not ok then
    transport:close()
    error(protocol, 0)
  end
  local waiter = udp_start(transport, protocol)
  local done, err = pcall(waiter.await, waiter)
  if not done then
    transport:close()
    error(err, 0)
  end
  return transport, protocol
end

--- A UDP endpoint (yields).
-- @function Loop:create_datagram_endpoint
-- @python loop.create_datagram_endpoint
-- @tparam function factory
-- @tparam[opt] table opts `local_addr`, `remote_addr` (`{host, port}`), `family`, `reuse_port`, `allow_broadcast`, `sock`
-- @treturn DatagramTransport transport
-- @treturn table protocol
-- @raise OSError; ValueError for conflicting options; RuntimeError outside a task
function Loop:create_datagram_endpoint(factory, opts)
  if not is_callable(factory) then argerror(1, "callable expected, got " .. type(factory)) end
  if opts ~= nil and type(opts) ~= "table" then argerror(2, "table expected, got " .. type(opts)) end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(2, "unknown option '" .. tostring(k) .. "'") end
  end
  if opts.reuse_address then
    error(errors.ValueError("Passing `reuse_address=True` is no longer supported, as the usage of " ..
      "SO_REUSEPORT in UDP poses a significant security concern."), 2)
  end
  if opts.sock ~= nil then
    local fd = opts.sock
    if math.type(fd) ~= "integer" then
      argerror(2, "opts.sock: descriptor number expected, got " .. (math.type(fd) or type(fd)))
    end
    if fd < 0 or fd > 0x7fffffff then argerror(2, "opts.sock: invalid file descriptor") end
    local given = {}
    for _, k in ipairs { "local_addr", "remote_addr", "family", "reuse_port", "allow_broadcast" } do
      if opts[k] ~= nil then given[#given + 1] = k end
    end
    if #given > 0 then
      error(errors.ValueError("socket modifier keyword arguments can not be used when sock is " ..
        "specified. (" .. table.concat(given, ", ") .. ")"), 2)
    end
    return start(udp_adopt(self, fd, FNAME), factory)
  end
  local problem = addr_problem(opts.local_addr, "local_addr")
    or addr_problem(opts.remote_addr, "remote_addr")
  if problem then argerror(2, problem) end
  local family = opts.family
  if family ~= nil and not FAMILIES[family] and math.type(family) ~= "integer" then
    argerror(2, "family must be \"inet\", \"inet6\" or nil")
  end
  local candidates = address_pairs(resolve(self, opts.local_addr, family),
    resolve(self, opts.remote_addr, family))
  local transport, first_err
  for _, p in ipairs(candidates) do
    local ok, res = pcall(udp_open, self, p[1], p[2], family, opts.reuse_port, opts.allow_broadcast)
    if ok then
      transport = res
      break
    end
    first_err = first_err or res
  end
  if not transport then error(first_err, 0) end
  return start(transport, factory)
end

return Loop
