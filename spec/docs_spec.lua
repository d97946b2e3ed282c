-- The API reference (make docs, config.ld) stays complete: ldoc builds it
-- without a warning, and every public name of the runtime, every method of
-- its classes and every function of include/asyncio.h has an entry.
local helper = require "helper"
local asyncio = require "asyncio"

local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function have_ldoc()
  local p = io.popen("command -v ldoc 2>/dev/null")
  local path = p:read("l")
  p:close()
  return path ~= nil and path ~= ""
end

-- Runs ldoc into a fresh directory; returns its output (stdout and stderr),
-- whether it succeeded, and the pages as {[relative path] = html}.
local function build()
  local dir = helper.tmpdir()
  -- ldoc runs on lua5.1: the sanitizer runtimes of the ASan pass stay out of it
  local cmd = ("cd %s && env -u LD_PRELOAD timeout 60 ldoc --fatalwarnings -d %s . 2>&1")
    :format(sh_quote(root), sh_quote(dir))
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok = p:close()
  local pages = {}
  local list = io.popen("cd " .. sh_quote(dir) .. " && find . -name '*.html'")
  for path in list:lines() do
    local f = assert(io.open(dir .. "/" .. path))
    pages[path:gsub("^%./", "")] = f:read("a")
    f:close()
  end
  list:close()
  os.execute("rm -rf " .. sh_quote(dir))
  return out, ok, pages
end

-- The entries (anchors) and the code spans of every page, and each page's anchors.
local function index(pages)
  local anchors, code, by_page = {}, {}, {}
  for path, html in pairs(pages) do
    by_page[path] = {}
    for name in html:gmatch('<a name%s*=%s*"([^"]+)"') do
      anchors[name] = true
      by_page[path][name] = true
    end
    for name in html:gmatch("<code>([^<]+)</code>") do code[name] = true end
  end
  return anchors, code, by_page
end

-- The public functions of an object's class: the string keys not starting
-- with "_" of the tables on its __index chain (or of the class table itself).
local function methods_of(obj)
  local names, t, seen = {}, obj, {}
  local mt = getmetatable(obj)
  if type(mt) == "table" then
    -- an __index function (Barrier's computed fields) looks in the metatable
    t = type(mt.__index) == "table" and mt.__index or type(mt.__index) == "function" and mt or obj
  end
  while type(t) == "table" and not seen[t] do
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and not k:match("^_") and type(v) == "function" then names[k] = true end
    end
    local up = getmetatable(t)
    t = type(up) == "table" and type(up.__index) == "table" and up.__index or nil
  end
  return names
end

describe("the API reference (make docs)", function()
  local out, ok, pages, anchors, code, by_page

  setup(function()
    if not have_ldoc() then return end
    out, ok, pages = build()
    anchors, code, by_page = index(pages)
  end)

  local function need_ldoc()
    if out == nil then
      pending("needs ldoc (Debian package lua-ldoc; make test installs it)")
      return false
    end
    return true
  end

  it("is built by ldoc without a warning or an error", function()
    if not need_ldoc() then return end
    local problems = {}
    for line in out:gmatch("[^\n]+") do
      if line:match(":%d+: ") or line:lower():match("error") or line:lower():match("warning")
         or line:match("not found") then
        problems[#problems + 1] = line
      end
    end
    assert.same({}, problems)
    assert.is_true(ok, out)
    assert.truthy(pages["index.html"], "no index.html")
  end)

  it("has an entry for each Python name the runtime has (spec/api_index_spec.lua)", function()
    if not need_ldoc() then return end
    local names = assert(loadfile(root .. "/spec/api_index_spec.lua"))("names")
    assert.is_true(#names > 50)
    local missing = {}
    for _, name in ipairs(names) do
      if not anchors[name] and not code[name] and not code["asyncio." .. name] then
        missing[#missing + 1] = name
      end
    end
    assert.same({}, missing)
  end)

  it("has an entry for every public name of asyncio, asyncio.ssl and asyncio.subprocess", function()
    if not need_ldoc() then return end
    local missing = {}
    for prefix, t in pairs { [""] = asyncio, ["ssl."] = asyncio.ssl, ["subprocess."] = asyncio.subprocess } do
      for k in pairs(t) do
        if type(k) == "string" and not k:match("^_") and not anchors[k] and not code[k]
           and not code[prefix .. k] and not code["asyncio." .. prefix .. k] then
          missing[#missing + 1] = prefix .. k
        end
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("documents every method of the runtime's classes as Class:method", function()
    if not need_ldoc() then return end
    local missing = {}
    helper.run(function()
      local loop = asyncio.get_running_loop()
      local r, w = asyncio.socketpair()
      local transport = loop:connect_accepted_socket(function() return asyncio.Protocol end, r)
      local dgram = loop:create_datagram_endpoint(function() return asyncio.DatagramProtocol end,
                                                  { local_addr = { "127.0.0.1", 0 } })
      local reader, writer = asyncio.open_connection(nil, nil, { sock = w })
      local server = asyncio.start_server(function() end, "127.0.0.1", 0)
      local proc = asyncio.create_subprocess_exec({ "true" })
      local tg <close> = asyncio.TaskGroup()
      local executor = asyncio.ThreadPoolExecutor({ max_workers = 1 })
      -- {name in the reference, an instance, classes whose entries it shares}
      local classes = {
        { "Loop", loop }, { "Future", asyncio.Future() }, { "Task", asyncio.current_task(), { "Future" } },
        { "Handle", loop:call_soon(function() end) },
        { "TimerHandle", loop:call_later(60, function() end), { "Handle" } },
        { "Transport", transport }, { "DatagramTransport", dgram },
        { "StreamReader", reader }, { "StreamWriter", writer }, { "Server", server },
        { "Process", proc }, { "TaskGroup", tg }, { "Timeout", asyncio.timeout(nil) },
        { "Runner", asyncio.Runner }, { "ThreadPoolExecutor", executor },
        { "Lock", asyncio.Lock() }, { "Event", asyncio.Event() }, { "Condition", asyncio.Condition() },
        { "Semaphore", asyncio.Semaphore() }, { "BoundedSemaphore", asyncio.BoundedSemaphore(), { "Semaphore" } },
        { "Barrier", asyncio.Barrier(2) },
        { "Queue", asyncio.Queue() }, { "PriorityQueue", asyncio.PriorityQueue(), { "Queue" } },
        { "LifoQueue", asyncio.LifoQueue(), { "Queue" } },
        { "SSLContext", asyncio.ssl.create_default_context() },
      }
      -- tables documented as modules of their own: entries without a class name
      local modules = { ["asyncio.logger"] = asyncio.logger, ["asyncio.coroutine"] = asyncio.coroutine }
      for _, c in ipairs(classes) do
        local name, obj, parents = c[1], c[2], c[3] or {}
        for m in pairs(methods_of(obj)) do
          local found = anchors[name .. ":" .. m] or anchors[name .. "." .. m]
          for _, p in ipairs(parents) do found = found or anchors[p .. ":" .. m] end
          if not found then missing[#missing + 1] = name .. ":" .. m end
        end
      end
      for name, t in pairs(modules) do
        local page = by_page["modules/" .. name .. ".html"] or {}
        for m in pairs(methods_of(t)) do
          if not page[m] then missing[#missing + 1] = name .. "." .. m end
        end
      end
      proc:kill()
      proc:wait()
      server:close()
      writer:close()
      transport:close()
      dgram:close()
      executor:shutdown()
    end)
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("has a page for include/asyncio.h with each function it exports", function()
    if not need_ldoc() then return end
    local f = assert(io.open(root .. "/include/asyncio.h"))
    local header = f:read("a")
    f:close()
    local page = by_page["modules/asyncio.h.html"]
    assert.truthy(page, "no page modules/asyncio.h.html")
    local missing, n = {}, 0
    for line in header:gmatch("[^\n]+") do
      local name = line:match("^ASYNCIO_API [^(]-([%w_]+)%s*%(")
      if name then n = n + 1 end
      if name and not page[name] then missing[#missing + 1] = name end
    end
    assert.is_true(n >= 10)
    assert.same({}, missing)
  end)
end)
