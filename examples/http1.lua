-- The HTTP/1.1 message parts examples/http_get.lua and https_get.lua share:
-- URLs, the response head, chunked bodies. Each loads it beside itself:
--   local http1 = dofile((arg[0]:match("^(.*)/") or ".") .. "/http1.lua")
local asyncio = require "asyncio"

local M = {}

-- scheme://host[:port][/path] -> host, port, path
function M.parse_url(url, scheme, default_port)
  local host, port, path = url:match("^" .. scheme .. "://([^/:]+):?(%d*)(/?.*)$")
  if not host then error(asyncio.ValueError(("not an %s:// URL: %s"):format(scheme, url)), 0) end
  return host, tonumber(port) or default_port, path ~= "" and path or "/"
end

function M.readline(reader)
  return (reader:readuntil("\r\n"):sub(1, -3))
end

-- The status line and the headers -> {version =, status =, reason =,
-- headers = {lowercase name = value}, nheaders =}
function M.read_head(reader)
  local version, status, reason = M.readline(reader):match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
  if not version then error(asyncio.ValueError("not an HTTP response"), 0) end
  local res = { version = version, status = tonumber(status), reason = reason, headers = {}, nheaders = 0 }
  while true do
    local line = M.readline(reader)
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      res.headers[name:lower()] = value
      res.nheaders = res.nheaders + 1
    end
  end
  return res
end

-- Chunked transfer coding: "<hex size>[;ext]\r\n<data>\r\n"..., "0\r\n", trailers, "\r\n".
function M.read_chunked(reader)
  local parts = {}
  while true do
    local size = tonumber(M.readline(reader):match("^%s*(%x+)"), 16)
    if not size then error(asyncio.ValueError("bad chunk size line"), 0) end
    if size == 0 then break end
    parts[#parts + 1] = reader:readexactly(size)
    reader:readexactly(2) -- the CRLF after the data
  end
  repeat until M.readline(reader) == "" -- trailers
  return table.concat(parts), #parts
end

-- The body the head announces; read_to_eof(reader, res) reads one that
-- ends with the connection.
function M.read_body(reader, res, read_to_eof)
  local te, length = res.headers["transfer-encoding"], res.headers["content-length"]
  if res.status == 204 or res.status == 304 then
    res.body = ""
  elseif te and te:lower():find("chunked", 1, true) then
    res.body, res.chunks = M.read_chunked(reader)
  elseif length then
    res.body = reader:readexactly(assert(tonumber(length), "bad Content-Length"))
  else
    res.body = read_to_eof(reader, res)
  end
  return res
end

return M
