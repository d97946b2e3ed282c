-- The user guides' examples: every ```lua and ```python block of
-- docs/guide/*.md runs in a fresh interpreter (lua5.4: this same executable,
-- with the tree's LUA_PATH/LUA_CPATH and, in the asan pass, the sanitizer
-- preload; python3 outside it) in a fresh directory, under a timeout. A block
-- fails on a non-zero exit, a timeout, or standard output other than the
-- ```text output block that follows it. ```lua norun marks a fragment. The
-- ```c file=NAME.c host programs run in the ctest pass (CMakeLists.txt).
local guide_blocks = require "guide_blocks"
local helper = require "helper"

local TIMEOUT = 60
local LUA = "/proc/" .. helper.pid() .. "/exe"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- timeout(1) and python3 run without the asan pass's preload; lua5.4 keeps it
local SAN_VARS = { "LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS" }
local function keep_env()
  local keep = {}
  for _, name in ipairs(SAN_VARS) do
    local v = os.getenv(name)
    if v then keep[#keep + 1] = name .. "=" .. sh_quote(v) end
  end
  return table.concat(keep, " ")
end
local STRIP = "env -u " .. table.concat(SAN_VARS, " -u ") .. " "

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function run_block(block)
  local dir = helper.tmpdir()
  local name = block.lang == "python" and "block.py" or "block.lua"
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(block.code)
  f:close()
  local interp
  if block.lang == "python" then
    interp = "/usr/bin/python3"
  else
    interp = "env " .. keep_env() .. " " .. sh_quote(LUA)
  end
  local cmd = ("cd %s && %stimeout -k 5 %d %s %s >out.txt 2>err.txt </dev/null"):format(
    sh_quote(dir), STRIP, TIMEOUT, interp, name)
  local ok, how, code = os.execute(cmd)
  local out, err = read_file(dir .. "/out.txt"), read_file(dir .. "/err.txt")
  os.execute("rm -rf " .. sh_quote(dir))
  return ok == true, out, err, how, code
end

describe("docs/guide", function()
  it("has the guides the index links, and blocks of a known kind", function()
    local guides = guide_blocks.guides("docs/guide")
    local index = read_file("docs/guide/README.md")
    local linked = 0
    for name in index:gmatch("%]%(([%w%-]+%.md)%)") do
      linked = linked + 1
      assert.truthy(read_file("docs/guide/" .. name) ~= "", "the index links a missing " .. name)
    end
    assert.equal(#guides - 1, linked) -- every guide but the index itself
    for _, path in ipairs(guides) do
      for _, b in ipairs(guide_blocks.parse(path)) do
        local known = { lua = true, python = true, c = true, sh = true, text = true }
        assert.truthy(known[b.lang], ("%s:%d: block of unknown kind %q"):format(path, b.line, b.lang))
        assert.falsy(b.output and (b.lang ~= "lua" and b.lang ~= "python"),
          ("%s:%d: an output block after a %s block is never checked"):format(path, b.line, b.lang))
      end
    end
  end)
end)

for _, path in ipairs(guide_blocks.guides("docs/guide")) do
  describe(path, function()
    for _, block in ipairs(guide_blocks.parse(path)) do
      local runnable = (block.lang == "lua" or block.lang == "python") and not block.info.norun
      if runnable then
        it(("%s block at line %d"):format(block.lang, block.line), function()
          local ok, out, err, how, code = run_block(block)
          if not ok then
            local why = code == 124 and ("timed out after " .. TIMEOUT .. " s")
              or ("%s %s"):format(how, tostring(code))
            error(("%s:%d: %s\nstdout:\n%s\nstderr:\n%s"):format(path, block.line, why, out, err), 0)
          end
          if block.output then
            assert.equal(block.output, out, ("%s:%d: output differs; stderr:\n%s"):format(path, block.line, err))
          end
        end)
      end
    end
  end)
end
