-- Helpers shared by the benches in this folder (micro.lua, gather.lua, errors.lua,
-- locks.lua): timing, the median of rounds and the "RESULT ..." line; and
-- the command line of the echo servers (echo_protocol.lua, echo_streams.lua).
-- Each bench loads it relative to its own path:
--   local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local asyncio = require "asyncio"

local M = {}

M.PEER = "lua-asyncio"
M.ROUNDS = 3
local PEER, ROUNDS = M.PEER, M.ROUNDS

-- The running loop's clock, in seconds.
function M.now() return asyncio.get_running_loop():time() end

-- A field of /proc/self/status in kB (VmRSS, VmHWM, ...); -1 if unknown.
function M.status_kb(key)
  local f = io.open("/proc/self/status", "r")
  if not f then return -1 end
  for line in f:lines() do
    local k, v = line:match("^(%w+):%s*(%d+)")
    if k == key then f:close(); return tonumber(v) end
  end
  f:close()
  return -1
end

-- Prints "RESULT k=v ...": the keys of ORDER first, then the others sorted.
local ORDER = { "bench", "peer", "n", "secs", "rate", "unit" }
function M.result(t)
  local parts, seen = {}, {}
  for _, k in ipairs(ORDER) do
    if t[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(t[k]); seen[k] = true end
  end
  local rest = {}
  for k in pairs(t) do if not seen[k] then rest[#rest + 1] = k end end
  table.sort(rest)
  for _, k in ipairs(rest) do parts[#parts + 1] = k .. "=" .. tostring(t[k]) end
  io.stdout:write("RESULT ", table.concat(parts, " "), "\n")
  io.stdout:flush()
end

-- A warm-up round of n/10, then ROUNDS rounds of n; returns the median secs.
function M.measure(round_fn, n)
  round_fn(math.max(1, n // 10))
  local ts = {}
  for i = 1, ROUNDS do ts[i] = round_fn(n) end
  table.sort(ts)
  return ts[ROUNDS // 2 + 1]
end

-- The RESULT line of a throughput bench: n in dt seconds, counted in unit;
-- extra holds more fields (e.g. tasks = 1000).
function M.rate_result(bench, n, dt, unit, extra)
  local t = { bench = bench, peer = PEER, n = n, secs = ("%.4f"):format(dt),
              rate = ("%.0f"):format(n / dt), unit = unit, rounds = ROUNDS }
  if extra then for k, v in pairs(extra) do t[k] = v end end
  M.result(t)
end

-- The echo servers' command line, `PORT [--tls CERT KEY]`: the shared
-- echo and idle benchmarks append " --tls CERT KEY" to every peer's command
-- in TLS mode (../shared/bench/README.md, "TLS mode"). Returns the port and,
-- with --tls, a server context holding that certificate, else nil. The
-- context is Python's ssl.SSLContext(PROTOCOL_TLS_SERVER), what the asyncio
-- and uvloop peers use: OpenSSL's defaults (TLS 1.3 with
-- TLS_AES_128_GCM_SHA256 among its suites), no trust store loaded.
function M.echo_args(args, script)
  local port = tonumber(args[1])
  local n = #args
  if not port or not (n == 1 or (n == 4 and args[2] == "--tls")) then
    io.stderr:write(("usage: lua5.4 %s PORT [--tls CERT KEY]\n"):format(script))
    os.exit(2)
  end
  if n == 1 then return port, nil end
  local ssl = asyncio.ssl
  local ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  ctx:load_cert_chain(args[3], args[4])
  return port, ctx
end

-- True for the errors a client causes: a reset, a handshake that fails or
-- never starts, a close without close_notify. An echo server goes on.
function M.client_error(err)
  return asyncio.isinstance(err, asyncio.ConnectionError) or asyncio.isinstance(err, asyncio.SSLError)
end

-- A TLS server reports a failed handshake to the loop's exception handler
-- (the benchmarks' readiness probe, a TCP connect and close that sends
-- nothing, makes none; a load generator stopped in mid-handshake may).
-- Those are dropped here, anything else goes to the default handler. The
-- handler runs per error, never per request.
function M.quiet_client_errors(loop)
  loop:set_exception_handler(function(lp, context)
    if not M.client_error(context.exception) then lp:default_exception_handler(context) end
  end)
end

return M
