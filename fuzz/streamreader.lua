-- The StreamReader fuzz driver (run by fuzz/streamreader.c): one input is a
-- stream of operations on one reader, fed chunks and asked for reads of
-- every kind, at most one of them waiting at a time (in its own task, which
-- the driver may cancel). Whatever the reads return, and the `partial` of
-- their IncompleteReadErrors, must be exactly the bytes fed, in order, none
-- lost or doubled, once the rest is read after EOF; each result must keep
-- its method's contract.
local asyncio = require "asyncio"
local Input = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "input.lua")
local StreamReader = require("asyncio.streams").StreamReader

local IncompleteReadError, LimitOverrunError = asyncio.IncompleteReadError, asyncio.LimitOverrunError
local CancelledError, ValueError = asyncio.CancelledError, asyncio.ValueError
local isinstance = asyncio.isinstance

local loop = asyncio.new_event_loop()

local function fail(what, ...)
  error(("streamreader: " .. what):format(...), 0)
end

-- one read: returns the bytes it consumed, or nil when a readline past the
-- limit dropped some (as Python's: through the next newline, or all that is
-- buffered when there is none); errors the contract does not allow are
-- failures
local function do_read(r, kind, n, sep)
  local ok, res = pcall(function()
    if kind == 0 then
      local s = r:read(n)
      if n >= 0 and #s > n then fail("read(%d) returned %d bytes", n, #s) end
      return s
    elseif kind == 1 then
      local s = r:readexactly(n)
      if #s ~= n then fail("readexactly(%d) returned %d bytes", n, #s) end
      return s
    elseif kind == 2 then
      local s = r:readuntil(sep)
      local hit = false
      for _, p in ipairs(type(sep) == "table" and sep or { sep }) do
        if s:sub(-#p) == p then hit = true end
      end
      if not hit then fail("readuntil returned %q, which ends in no separator", s) end
      return s
    else
      local s = r:readline()
      if s ~= "" and s:sub(-1) ~= "\n" and not r:at_eof() then fail("readline returned %q before EOF", s) end
      return s
    end
  end)
  if ok then return res end
  if isinstance(res, IncompleteReadError) then
    if kind == 1 and #res.partial >= n then fail("IncompleteReadError with all %d bytes", n) end
    return res.partial
  end
  if isinstance(res, LimitOverrunError) then return "" end -- the data stays in the buffer
  if kind == 3 and isinstance(res, ValueError) then return nil end
  if isinstance(res, CancelledError) then return "" end -- nothing was taken
  error(res, 0)
end

local function run(input)
  local inp = Input(input)
  local function byte() return inp:byte() end
  local limit = 1 << (byte() % 8 + 3)
  local r = StreamReader(limit, loop)
  local fed, got = {}, {}
  local eof, pending = false, nil
  local function collect()
    if pending and pending:done() then
      local s = pending:result()
      if s == nil then -- what readline dropped: the buffer is what was fed and not read
        local buffered = table.concat(fed):sub(#table.concat(got) + 1)
        s = buffered:match("^[^\n]*\n") or buffered
      end
      got[#got + 1] = s
      pending = nil
    end
  end
  while inp:more() do
    local op = byte()
    local k = op % 8
    if k <= 2 then -- feed a chunk (bytes of a small alphabet: separators match)
      local n = byte() % (k == 0 and 200 or 24)
      local chunk = inp:bytes(n):gsub(".", function(c)
        return ("ab\n\r"):sub(c:byte() % 4 + 1, c:byte() % 4 + 1)
      end)
      if not eof then
        r:feed_data(chunk)
        fed[#fed + 1] = chunk
      end
    elseif k == 3 then
      if not eof then
        r:feed_eof()
        eof = true
      end
    elseif k <= 5 then -- a read, waiting in its task when it must
      if not pending then
        local kind, n = byte() % 4, byte() % 40 - (op & 0x80 ~= 0 and 1 or 0)
        if kind == 1 and n < 0 then n = 0 end
        local sep
        if byte() % 3 == 0 then
          sep = { ("ab\n"):sub(1, byte() % 3 + 1), "\r" }
        else
          sep = ("\na"):sub(1, byte() % 2 + 1)
        end
        pending = asyncio.create_task(do_read, r, kind, n, sep)
      end
    elseif k == 6 then
      if pending then pending:cancel() end
    end
    asyncio.sleep(0)
    collect()
  end
  if not eof then r:feed_eof() end
  while pending do
    asyncio.sleep(0)
    collect()
  end
  got[#got + 1] = r:read(-1)
  if not r:at_eof() then fail("not at EOF after read(-1)") end
  local want, have = table.concat(fed), table.concat(got)
  if want ~= have then fail("fed %d bytes, read %d: %q vs %q", #want, #have, want, have) end
end

return function(input)
  loop:run_until_complete(function() run(input) end)
end
