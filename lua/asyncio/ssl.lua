-- asyncio.ssl: TLS contexts and errors, in Python's ssl module's terms. The
-- contexts and the TLS transports are C (sslcontext.c, tls.c).

--- TLS (`asyncio.ssl`, OpenSSL). Streams and `create_connection`/`create_server`
-- take `ssl` (true or an SSLContext), `server_hostname` (SNI and the
-- hostname check; defaults to `host`, no SNI for an IP address),
-- `ssl_handshake_timeout` (60 s) and `ssl_shutdown_timeout` (30 s). The
-- errors `SSLError` (an OSError; fields `library`, `reason`),
-- `SSLCertVerificationError` (`verify_code`, `verify_message`), `SSLEOFError`
-- and `SSLZeroReturnError` are on the errors page and in `asyncio.ssl`.
-- @module ssl

--- `verify_mode` values: `CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`.
-- Also `PROTOCOL_TLS_CLIENT`, `PROTOCOL_TLS_SERVER`, `Purpose`
-- (`SERVER_AUTH`, `CLIENT_AUTH`) and `TLSVersion` (`TLSv1_2`, `TLSv1_3`,
-- `MINIMUM_SUPPORTED`, ...), as Python's.
-- @table CERT_NONE
-- @python ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED

local core = require "asyncio.core"
local errors = require "asyncio.errors"

local M = {
  CERT_NONE = 0,
  CERT_OPTIONAL = 1,
  CERT_REQUIRED = 2,
  PROTOCOL_TLS_CLIENT = "client",
  PROTOCOL_TLS_SERVER = "server",
  Purpose = { SERVER_AUTH = "client", CLIENT_AUTH = "server" },
  -- OpenSSL's version numbers, as Python's TLSVersion
  TLSVersion = {
    MINIMUM_SUPPORTED = -2, MAXIMUM_SUPPORTED = -1,
    TLSv1 = 0x0301, TLSv1_1 = 0x0302, TLSv1_2 = 0x0303, TLSv1_3 = 0x0304,
  },
  SSLError = errors.SSLError,
  SSLCertVerificationError = errors.SSLCertVerificationError,
  SSLEOFError = errors.SSLEOFError,
  SSLZeroReturnError = errors.SSLZeroReturnError,
}

--- True when `v` is an SSLContext.
-- @function is_context
-- @python isinstance(v, ssl.SSLContext)
-- @param v
-- @treturn boolean
M.is_context = core.is_sslcontext

--- A context of TLS 1.2 or later with no certificates loaded.
-- @function SSLContext
-- @python ssl.SSLContext
-- @tparam[opt="client"] string protocol `"client"` or `"server"`
-- @treturn SSLContext
function M.SSLContext(protocol)
  if protocol ~= nil and protocol ~= "client" and protocol ~= "server" then
    error(("bad argument #1 to 'SSLContext' (\"client\" or \"server\" expected, got %s)")
      :format(tostring(protocol)), 2)
  end
  return core.SSLContext_new(protocol)
end

--- A client context verifies peers and hostnames against the system CA
-- store; a server context asks for no client certificate.
-- @function create_default_context
-- @python ssl.create_default_context
-- @tparam[opt="client"] string purpose `"client"` or `"server"`
-- @treturn SSLContext
function M.create_default_context(purpose)
  purpose = purpose or "client"
  if purpose ~= "client" and purpose ~= "server" then
    error(("bad argument #1 to 'create_default_context' (\"client\" or \"server\" expected, got %s)")
      :format(tostring(purpose)), 2)
  end
  local ctx = core.SSLContext_new(purpose)
  if purpose == "client" then ctx:load_default_certs() end
  return ctx
end

-- SSL objects this Lua state holds (connections and SSLObjects not yet
-- collected): for leak checks.
M._live = core.ssl_live

-- Option checks shared by the stream and transport functions. `opts.ssl`
-- is true or a context; returns the context or nil.
function M._context_of(opts, fname, server)
  local ctx = opts.ssl
  if ctx == nil or ctx == false then
    for _, k in ipairs { "server_hostname", "ssl_handshake_timeout", "ssl_shutdown_timeout" } do
      if opts[k] ~= nil and not (server and k == "server_hostname") then
        error(errors.ValueError(k .. " is only meaningful with ssl"), 3)
      end
    end
    return nil
  end
  if ctx == true then
    if server then error(errors.ValueError(fname .. ": ssl=true needs a server SSLContext"), 3) end
    return M.create_default_context("client")
  end
  if not M.is_context(ctx) then
    error(("bad argument to '%s' (ssl: SSLContext or true expected, got %s)"):format(fname,
      type(ctx)), 3)
  end
  return ctx
end

-- Wraps `lower` in TLS with `protocol` above and waits for the handshake;
-- on failure or cancellation the connection is aborted and the error raised.
-- o.upgrade (start_tls): the protocol was connected before, and hears
-- connection_lost even when the handshake fails.
function M._wrap(lower, protocol, ctx, o)
  local t = core.tls_wrap(lower, protocol, ctx, {
    server_side = o.server_side, server_hostname = o.server_hostname,
    handshake_timeout = o.ssl_handshake_timeout, shutdown_timeout = o.ssl_shutdown_timeout,
    waiter = true, upgrade = o.upgrade,
  })
  local waiter = t:_waiter()
  local done, err = pcall(waiter.await, waiter)
  if not done then
    t:abort()
    error(err, 0)
  end
  return t
end

local function ready_if_done(f, t, on_ready)
  if not f:cancelled() and f:exception() == nil then on_ready(t) end
end

-- A server connection: the handshake runs on its own; on_ready(t) once it
-- succeeded (a failure is reported by the C side). When on_ready fails (out
-- of memory making the connection's task), the connection is aborted: nobody
-- would serve it, and the Server's wait_closed would wait for it forever.
function M._serve(lower, protocol, ctx, o, server, on_ready)
  local t = core.tls_wrap(lower, protocol, ctx, {
    server_side = true, handshake_timeout = o.ssl_handshake_timeout,
    shutdown_timeout = o.ssl_shutdown_timeout, server = server, waiter = on_ready ~= nil,
  })
  server:_attach()
  if on_ready then
    t:_waiter():add_done_callback(function(f)
      local ok, err = pcall(ready_if_done, f, t, on_ready)
      if not ok then
        t:abort()
        error(err, 0)
      end
    end)
  end
  return t
end

return M
