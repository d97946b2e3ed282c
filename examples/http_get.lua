-- examples/http_get.lua: a small HTTP/1.1 GET client over open_connection.
--
-- It shows:
--   1. asyncio.open_connection and a request written in one writer:write;
--   2. parsing a response with the StreamReader: the status line and headers
--      with reader:readuntil("\r\n"), a Content-Length body with
--      reader:readexactly(n), a chunked body chunk by chunk, else the body
--      up to EOF with reader:read(); a response cut short surfaces as
--      asyncio.IncompleteReadError;
--   3. asyncio.wait_for bounding the whole fetch;
--   4. in --demo, a tiny HTTP server made with asyncio.start_server in the
--      same process on 127.0.0.1 (a plain page, a chunked page written
--      piece by piece with drain, a 404), fetched and checked.
--
-- Run it with
--   lua5.4 examples/http_get.lua http://127.0.0.1:PORT/path   status, headers, body
--   lua5.4 examples/http_get.lua --demo                       no network beyond 127.0.0.1
-- Only http:// URLs (no TLS). The module must be on the Lua paths:
-- eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"
local http1 = dofile((arg[0]:match("^(.*)/") or ".") .. "/http1.lua")

local TIMEOUT = 10

-- GET url -> {status =, reason =, headers = {lowercase name = value}, body =, chunks =}
local function get(url)
  local host, port, path = http1.parse_url(url, "http", 80)
  local reader, w = asyncio.open_connection(host, port)
  local writer <close> = w
  writer:write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lua-asyncio http_get\r\n"
    .. "Accept: */*\r\nConnection: close\r\n\r\n"):format(path, port == 80 and host or host .. ":" .. port))
  local res = http1.read_head(reader)
  return http1.read_body(reader, res, function() return reader:read() end) -- up to EOF (Connection: close)
end

local function fetch(url)
  return asyncio.wait_for(function() return get(url) end, TIMEOUT)
end

-- ---- the demo server -----------------------------------------------------

local PAGES = {
  ["/hello"] = "Hello from lua-asyncio!\n",
  ["/chunked"] = { "This body ", "arrives in ", "several chunks, ", "written with drain.\n" },
}

local function respond(writer, status, headers, body)
  local head = { "HTTP/1.1 " .. status }
  for _, h in ipairs(headers) do head[#head + 1] = h end
  head[#head + 1] = "Connection: close\r\n"
  writer:write(table.concat(head, "\r\n") .. "\r\n")
  if body then writer:write(body) end
end

-- cb(reader, writer): one request per connection
local function serve_http(reader, w)
  local writer <close> = w
  local head = reader:readuntil("\r\n\r\n")
  local method, path = head:match("^(%u+) (%S+) HTTP/1%.%d\r\n")
  local page = PAGES[path]
  if method ~= "GET" then
    respond(writer, "405 Method Not Allowed", { "Content-Length: 0" })
  elseif type(page) == "string" then
    respond(writer, "200 OK", { "Content-Type: text/plain", "Content-Length: " .. #page }, page)
  elseif page then
    respond(writer, "200 OK", { "Content-Type: text/plain", "Transfer-Encoding: chunked" })
    for _, piece in ipairs(page) do
      writer:write(("%x\r\n%s\r\n"):format(#piece, piece))
      writer:drain()
      asyncio.sleep(0.02) -- the client reads each chunk as it comes
    end
    writer:write("0\r\n\r\n")
  else
    local body = "no page at " .. tostring(path) .. "\n"
    respond(writer, "404 Not Found", { "Content-Type: text/plain", "Content-Length: " .. #body }, body)
  end
  writer:drain()
end

-- Prints the status and headers, then a summary of the body, or the body
-- itself when `raw`.
local function show(url, res, raw)
  print(("GET %s -> %d %s"):format(url, res.status, res.reason))
  local names = {}
  for name in pairs(res.headers) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do print(("  %s: %s"):format(name, res.headers[name])) end
  if raw then
    print()
    io.write(res.body)
  else
    local shown = res.body:gsub("[%c\\\"]", function(c)
      return ({ ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" })[c] or ("\\%03d"):format(c:byte())
    end)
    print(("  body (%d bytes%s): \"%s\""):format(#res.body, res.chunks and ", " .. res.chunks .. " chunks" or "",
      shown))
  end
end

local function demo()
  local server <close> = asyncio.start_server(serve_http, "127.0.0.1", 0)
  local base = ("http://127.0.0.1:%d"):format(server.sockets[1]:getsockname()[2])
  print("a tiny HTTP server on " .. base)
  local checks = {
    { "/hello", 200, PAGES["/hello"] },
    { "/chunked", 200, table.concat(PAGES["/chunked"]) },
    { "/missing", 404, "no page at /missing\n" },
  }
  for _, c in ipairs(checks) do
    local res = fetch(base .. c[1])
    show(base .. c[1], res)
    if res.status ~= c[2] or res.body ~= c[3] then
      error(("%s: got %d %q, expected %d %q"):format(c[1], res.status, res.body, c[2], c[3]))
    end
  end
  print("all three responses parsed as expected")
end

if arg[1] == "--demo" then
  asyncio.run(demo)
elseif arg[1] and arg[1]:match("^http://") then
  local ok, res = pcall(asyncio.run, function() return fetch(arg[1]) end)
  if not ok then
    io.stderr:write("http_get: ", tostring(res), "\n")
    os.exit(1)
  end
  show(arg[1], res, true)
else
  io.stderr:write("usage: lua5.4 http_get.lua http://HOST[:PORT]/PATH | --demo\n")
  os.exit(2)
end
