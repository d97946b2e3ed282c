-- loop:getaddrinfo and loop:getnameinfo, awaiting the Futures of the C side
-- (src/dns.c, libuv's thread pool); returns the AF_/SOCK_/AI_/NI_ constants.
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

function Loop:getaddrinfo(host, port, opts)
  check_task(self, "getaddrinfo")
  return getaddrinfo(host, port, opts, self):await()
end

function Loop:getnameinfo(addr, flags)
  check_task(self, "getnameinfo")
  return getnameinfo(addr, flags, self):await()
end

local M = {}
for k, v in pairs(dns) do
  if type(v) == "number" then M[k] = v end
end
return M
