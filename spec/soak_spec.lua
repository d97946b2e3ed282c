-- bench/soak.lua in short (2,000 connections for 10 s, plain and TLS) as
-- part of the suite; `make soak` runs the long version. The script checks
-- every echo and that descriptors, references and memory come back, and
-- exits non-zero otherwise; its report is shown when it fails.
local asyncio = require "asyncio"
local helper = require "helper"

local LUA = os.getenv("LUA") or "lua5.4"
local CONNS, SECS = 2000, 10

-- the soft descriptor limit raised to the hard one (each process needs one
-- per connection), glibc's mmap threshold fixed as in `make soak`
local CMD = 'ulimit -n "$(ulimit -Hn)" && MALLOC_MMAP_THRESHOLD_=131072 exec "$0" "$@"'

local function soak(extra)
  return helper.run(function()
    local argv = { "sh", "-c", CMD, LUA, "bench/soak.lua", "--conns", tostring(CONNS), "--seconds", tostring(SECS) }
    for _, a in ipairs(extra) do argv[#argv + 1] = a end
    local PIPE = asyncio.subprocess.PIPE
    local p = asyncio.create_subprocess_exec(argv, { stdout = PIPE, stderr = asyncio.subprocess.STDOUT })
    local ok, out = pcall(asyncio.wait_for, function() return p:communicate() end, 170)
    if not ok then
      p:kill()
      p:wait()
      error(out, 0)
    end
    return out, p.returncode
  end, 180)
end

describe("bench/soak.lua, 2,000 connections for 10 s", function()
  for _, tls in ipairs { false, true } do
    it(tls and "over TLS" or "plain", function()
      local out, code = soak(tls and { "--tls" } or {})
      assert.equal(0, code, out)
      local result = out:match("RESULT ([^\n]*)")
      assert.is_string(result, out)
      assert.is_truthy(result:find("ok=1", 1, true), out)
      assert.is_truthy(result:find("errors=0", 1, true), out)
      local echoes = tonumber(result:match("echoes=(%d+)"))
      assert.is_true(echoes >= CONNS, out)
      for _, k in ipairs { "resets", "half_closes", "slow" } do
        assert.is_true(tonumber(result:match(k .. "=(%d+)")) > 0, k .. "\n" .. out)
      end
    end)
  end
end)
