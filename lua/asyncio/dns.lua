-- loop:getaddrinfo and loop:getnameinfo, awaiting the Futures of the C side
-- (src/dns.c, libuv's thread pool); returns the AF_/SOCK_/AI_/NI_ constants.

--- Name resolution (libuv's thread pool).
-- @classmod Loop

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local Loop = core.Loop
local dns = core.dns
local current_task = core.current_task
-- the loop is their last argument, so that argument errors count from the
-- first argument of the method
local getaddrinfo, getnameinfo = dns.getaddrinfo, dns.getnameinfo

-- before starting a request nobody could wait for
local function check_task(self, what)
  if current_task(self) == nil then error(errors.RuntimeError(what .. " called outside a task"), 3) end
end

--- Resolves `host`, `port` (yields).
-- @function Loop:getaddrinfo
-- @python loop.getaddrinfo
-- @tparam ?string host
-- @param port a number, a service name or nil
-- @tparam[opt] table opts `family`, `type`, `proto`, `flags` (`asyncio.AF_*`, `SOCK_*`, `IPPROTO_*`, `AI_*`)
-- @treturn {table,...} `{family=, type=, proto=, canonname=, addr={host, port}}` entries
-- @raise OSError (`errno` such as `"EAI_NONAME"`); RuntimeError outside a task
function Loop:getaddrinfo(host, port, opts)
  check_task(self, "getaddrinfo")
  return getaddrinfo(host, port, opts, self):await()
end

--- The host and service names of an address (yields).
-- @function Loop:getnameinfo
-- @python loop.getnameinfo
-- @tparam table addr `{host, port}`
-- @tparam[opt] integer flags `asyncio.NI_*`
-- @treturn string host
-- @treturn string service
-- @raise OSError; RuntimeError outside a task
function Loop:getnameinfo(addr, flags)
  check_task(self, "getnameinfo")
  return getnameinfo(addr, flags, self):await()
end

local M = {}
for k, v in pairs(dns) do
  if type(v) == "number" then M[k] = v end
end
--- Constants of `getaddrinfo` and `getnameinfo`, as fields of `asyncio`:
-- `AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_UNSPEC`, `SOCK_STREAM`, `SOCK_DGRAM`,
-- `SOCK_RAW`, `IPPROTO_TCP`, `IPPROTO_UDP`, `AI_ADDRCONFIG`, `AI_ALL`,
-- `AI_CANONNAME`, `AI_NUMERICHOST`, `AI_NUMERICSERV`, `AI_PASSIVE`,
-- `AI_V4MAPPED`, `NI_DGRAM`, `NI_NAMEREQD`, `NI_NOFQDN`, `NI_NUMERICHOST`,
-- `NI_NUMERICSERV`.
-- @table constants
-- @python socket.AF_INET, socket.AI_PASSIVE, ...

return M
