-- CPU work in worker threads while the loop stays responsive: Adler-32
-- checksums of a few files (written to a temporary directory first), each
-- computed by asyncio.to_thread in a Lua state of its own, while a timer in
-- the loop keeps ticking every 50 ms. The same sums computed in the loop's
-- own thread would stop the ticks for as long.
-- usage: lua5.4 examples/to_thread.lua
-- (with the project's tree: eval $(luarocks --lua-version 5.4 --tree .build/tree path))
local asyncio = require "asyncio"

local SIZES = { 2, 4, 6, 8 } -- MiB

-- Runs in a worker: it can share no local of this file, so it gets what it
-- needs as arguments (the path) and uses only globals (io, string).
local function adler32(path)
  local f = assert(io.open(path, "rb"))
  local a, b, len = 1, 0, 0
  while true do
    local chunk = f:read(4096)
    if not chunk then break end
    len = len + #chunk
    for i = 1, #chunk do
      a = (a + chunk:byte(i)) % 65521
      b = (b + a) % 65521
    end
  end
  f:close()
  return (b << 16) | a, len
end

local function write_files(dir)
  local paths = {}
  for i, mib in ipairs(SIZES) do
    paths[i] = ("%s/file%d.bin"):format(dir, i)
    local f = assert(io.open(paths[i], "wb"))
    local block = {}
    for k = 1, 1024 do block[k] = string.char((k * 7 + i) % 256) end
    block = table.concat(block)
    for _ = 1, mib * 1024 do f:write(block) end
    f:close()
  end
  return paths
end

asyncio.run(function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  local paths = write_files(dir)
  local loop = asyncio.get_running_loop()
  local ticks, longest, last = 0, 0, loop:time()
  local function tick()
    local t = loop:time()
    longest = math.max(longest, t - last)
    last, ticks = t, ticks + 1
  end
  local ticker = asyncio.create_task(function()
    while true do
      asyncio.sleep(0.05)
      tick()
    end
  end)
  local t0 = loop:time()
  local jobs = {}
  for i, path in ipairs(paths) do
    jobs[i] = asyncio.create_task(function() return asyncio.to_thread(adler32, path) end)
  end
  for i, job in ipairs(jobs) do
    local sum, len = job:await()
    print(("%s  %8d bytes  adler32 %08x"):format(paths[i]:match("[^/]+$"), len, sum))
  end
  local dt = loop:time() - t0
  ticker:cancel()
  print(("%d files summed in %.2f s in worker threads; meanwhile the loop ticked %d times,"
    .. " never more than %.0f ms apart"):format(#paths, dt, ticks, longest * 1e3))
  for _, p in ipairs(paths) do os.remove(p) end
  os.remove(dir)
end)
