-- Running other programs without blocking the loop:
--   1. a pipeline of two programs whose bytes pass through the loop
--      (seq 1 100000 | <the loop> | grep -c 7),
--   2. communicate() with input (sort),
--   3. a child that outlives its timeout and is killed,
--   4. a subprocess protocol hearing a shell's output as it comes.
-- usage: lua5.4 examples/subprocess.lua
-- (with the project's tree: eval $(luarocks --lua-version 5.4 --tree .build/tree path))
local asyncio = require "asyncio"
local sp = asyncio.subprocess
local PIPE = sp.PIPE

local function pipeline()
  local producer = asyncio.create_subprocess_exec({ "seq", "1", "100000" }, { stdout = PIPE })
  local consumer = asyncio.create_subprocess_exec({ "grep", "-c", "7" }, { stdin = PIPE, stdout = PIPE })
  local copied = 0
  while true do
    local chunk = producer.stdout:read(65536)
    if chunk == "" then break end
    copied = copied + #chunk
    consumer.stdin:write(chunk)
    consumer.stdin:drain() -- waits while grep is behind
  end
  consumer.stdin:close()
  local count = consumer.stdout:read()
  consumer:wait()
  print(("1. seq | loop | grep -c 7: %s numbers contain a 7 (%d bytes through the loop);"
    .. " exit codes %d, %d"):format(count:match("%d+"), copied, producer:wait(), consumer.returncode))
end

local function sorting()
  local p = asyncio.create_subprocess_exec({ "sort" }, { stdin = PIPE, stdout = PIPE })
  local out = p:communicate("pear\napple\nfig\n")
  print(("2. communicate with sort: %q, exit %d"):format(out, p.returncode))
end

local function timeout()
  local p = asyncio.create_subprocess_exec({ "sleep", "30" })
  local ok, err = pcall(asyncio.wait_for, function() return p:wait() end, 0.2)
  assert(not ok and asyncio.isinstance(err, asyncio.TimeoutError))
  p:kill()
  print(("3. sleep 30 outlived its 0.2 s timeout: killed, returncode %d"):format(p:wait()))
end

local function protocol()
  local loop = asyncio.get_running_loop()
  local done = loop:create_future()
  local P = {}
  function P.pipe_data_received(_, fd, data)
    for line in data:gmatch("[^\n]+") do print(("   fd %d: %s"):format(fd, line)) end
  end
  function P.process_exited() print("   process_exited") end
  function P.connection_lost() done:set_result() end
  print("4. a subprocess protocol:")
  local transport = loop:subprocess_shell(function() return P end,
    "echo to stdout; sleep 0.1; echo to stderr >&2; exit 4", { stdout = PIPE, stderr = PIPE })
  done:await()
  print(("   pid %d exited with %d"):format(transport:get_pid(), transport:get_returncode()))
end

asyncio.run(function()
  pipeline()
  sorting()
  timeout()
  protocol()
end)
