-- add_reader / remove_reader / add_writer / remove_writer (after CPython's
-- test_events.py reader/writer tests and test_selector_events.py). The fds
-- are a FIFO opened read-write in a temp dir (readable once written to,
-- writable while its buffer has room) and io.popen pipes.
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local run = helper.run
local with_loop = helper.with_loop
local err_of = helper.err_of

local dir

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 '" .. dir .. "'"))
  assert(os.execute("mkfifo '" .. dir .. "/fifo'"))
end)

teardown(function()
  os.execute("rm -rf '" .. dir .. "'")
end)

-- a FIFO opened read-write (so the open does not block), closed by the caller
local function fifo()
  return assert(io.open(dir .. "/fifo", "r+"))
end

-- the fd number of the one open fifo(), from the links in /proc/<pid>/fd
local function fifo_fd()
  local fd
  local ls = assert(io.popen("ls -l /proc/" .. helper.pid() .. "/fd"))
  for line in ls:lines() do
    local n, target = line:match("(%d+) %-> (.*)$")
    if target == dir .. "/fifo" then fd = tonumber(n) end
  end
  ls:close()
  return fd
end

local function loop()
  return asyncio.get_running_loop()
end

-- runs the loop until `pred()` or `max` seconds passed
local function run_until(l, pred, max)
  local deadline = l:time() + (max or 2)
  while not pred() and l:time() < deadline do
    l:run_once(0.01)
  end
end

describe("add_reader", function()
  it("calls back with its arguments when the fd is readable", function()
    local f = fifo()
    local got = run(function()
      local l, fut = loop(), loop():create_future()
      l:add_reader(f, function(a, b)
        fut:set_result(a, b, f:read(4))
        l:remove_reader(f)
      end, "x", nil)
      asyncio.sleep(0.02)
      assert.is_false(fut:done()) -- nothing written yet
      f:write("ping")
      f:flush()
      return table.pack(fut:await())
    end)
    f:close()
    assert.same({ "x", nil, "ping", n = 3 }, got)
  end)

  it("reads a pipe from io.popen to its end", function()
    local p = assert(io.popen("printf abc"))
    local data = run(function()
      local l, fut, buf = loop(), loop():create_future(), {}
      l:add_reader(p, function()
        while true do
          local c, err = p:read(1)
          if c then
            buf[#buf + 1] = c
          elseif err then -- no more data yet (libuv made the fd non-blocking)
            return
          else
            l:remove_reader(p)
            fut:set_result(table.concat(buf))
            return
          end
        end
      end)
      return fut:await()
    end)
    p:close()
    assert.equal("abc", data)
  end)

  it("accepts an integer fd and a callable table", function()
    local f = fifo()
    f:write("z")
    f:flush()
    local fd = fifo_fd()
    assert.is_number(fd)
    local calls = 0
    local obj = setmetatable({}, { __call = function(_, arg)
      calls = calls + 1
      asyncio.get_running_loop():remove_reader(arg)
    end })
    run(function()
      loop():add_reader(fd, obj, fd)
      asyncio.sleep(0.05)
    end)
    f:close()
    assert.equal(1, calls)
  end)

  it("keeps calling back while the fd stays readable; remove_reader stops it", function()
    local f = fifo()
    f:write("data")
    f:flush()
    local before, after, removed, again = run(function()
      local l, n = loop(), 0
      l:add_reader(f, function()
        n = n + 1 -- never reads: the fd stays readable
      end)
      while n < 3 do asyncio.sleep(0) end
      local removed = l:remove_reader(f)
      local before = n
      asyncio.sleep(0.05)
      return before, n, removed, l:remove_reader(f)
    end)
    f:close()
    assert.is_true(removed)
    assert.is_false(again)
    assert.equal(before, after)
  end)

  it("replaces the reader of an fd", function()
    local f = fifo()
    f:write("data")
    f:flush()
    local first, second = run(function()
      local l, first, second = loop(), 0, 0
      l:add_reader(f, function()
        first = first + 1
      end)
      l:add_reader(f, function()
        second = second + 1
      end)
      while second < 2 do asyncio.sleep(0) end
      l:remove_reader(f)
      return first, second
    end)
    f:close()
    assert.equal(0, first)
    assert.is_true(second >= 2)
  end)

  it("reports callback errors to the exception handler and keeps running", function()
    local f = fifo()
    f:write("data")
    f:flush()
    local ctx = run(function()
      local l, fut = loop(), loop():create_future()
      l:set_exception_handler(function(_, context)
        if not fut:done() then fut:set_result(context) end
      end)
      l:add_reader(f, function()
        error("boom")
      end)
      local context = fut:await()
      l:remove_reader(f)
      return context
    end)
    f:close()
    assert.matches("Exception in callback", ctx.message)
    assert.matches("boom", tostring(ctx.exception))
    assert.is_not_nil(ctx.handle)
  end)

  it("a cancelled Handle unregisters its callback", function()
    local f = fifo()
    f:write("data")
    f:flush()
    local calls, removed = run(function()
      local l, fut, calls = loop(), loop():create_future(), 0
      l:set_exception_handler(function(_, context)
        context.handle:cancel()
        if not fut:done() then fut:set_result() end
      end)
      l:add_reader(f, function()
        calls = calls + 1
        error("cancel me")
      end)
      fut:await()
      asyncio.sleep(0.05)
      return calls, l:remove_reader(f)
    end)
    f:close()
    assert.equal(1, calls)
    assert.is_false(removed)
  end)

  it("raises OSError for a regular file", function()
    local path = dir .. "/regular"
    local f = assert(io.open(path, "w"))
    local e = run(function()
      local l = loop()
      return err_of(l.add_reader, l, f, print)
    end)
    f:close()
    helper.assert_class(asyncio.OSError, e)
    assert.equal("EPERM", e.errno)
  end)

  it("raises OSError for an fd that is not open", function()
    -- a number no descriptor of this process has (other specs may hold many)
    local open = {}
    local p = io.popen("ls /proc/" .. helper.pid() .. "/fd")
    for name in p:lines() do open[tonumber(name)] = true end
    p:close()
    local fd = 1000
    while open[fd] do fd = fd + 1 end
    local e = run(function()
      local l = loop()
      return err_of(l.add_reader, l, fd, print)
    end)
    helper.assert_class(asyncio.OSError, e)
    assert.equal("EBADF", e.errno)
  end)

  it("raises argument errors for bad arguments", function()
    local f = fifo()
    local closed = fifo()
    closed:close()
    local errs = run(function()
      local l = loop()
      return {
        err_of(l.add_reader, l, "x", print),
        err_of(l.add_reader, l, -1, print),
        err_of(l.add_reader, l, f),
        err_of(l.add_reader, l, f, 42),
        err_of(l.add_writer, l, {}, print),
        err_of(l.add_reader, l, closed, print),
        err_of(l.remove_reader, l, "x"),
        err_of(l.remove_writer, l, nil),
      }
    end)
    f:close()
    assert.equal(8, #errs)
    for _, e in ipairs(errs) do assert.matches("bad argument", tostring(e)) end
  end)

  it("remove_reader and remove_writer take a file closed since", function()
    local f = fifo()
    local r, w, again = run(function()
      local l = loop()
      l:add_reader(f, print)
      l:add_writer(f, print)
      f:close()
      return l:remove_reader(f), l:remove_writer(f), l:remove_reader(f)
    end)
    assert.is_true(r)
    assert.is_true(w)
    assert.is_false(again)
  end)

  it("add_writer on an fd closed since its reader was added raises EBADF", function()
    local f = fifo()
    local fd = fifo_fd()
    local e, removed = run(function()
      local l = loop()
      l:add_reader(fd, print)
      f:close()
      return err_of(l.add_writer, l, fd, print), l:remove_reader(fd)
    end)
    helper.assert_class(asyncio.OSError, e)
    assert.equal("EBADF", e.errno)
    assert.is_true(removed)
  end)

  it("remove_reader of an fd never watched is false", function()
    local f = fifo()
    local r, w = run(function()
      return loop():remove_reader(f), loop():remove_writer(f)
    end)
    f:close()
    assert.is_false(r)
    assert.is_false(w)
  end)
end)

describe("add_writer", function()
  it("calls back when the fd is writable", function()
    local f = fifo()
    local got, removed = run(function()
      local l, fut = loop(), loop():create_future()
      l:add_writer(f, function(...)
        if not fut:done() then fut:set_result(...) end
      end, 1, 2)
      local got = table.pack(fut:await())
      return got, l:remove_writer(f)
    end)
    f:close()
    assert.same({ 1, 2, n = 2 }, got)
    assert.is_true(removed)
  end)

  it("a reader and a writer share the fd; removing one keeps the other", function()
    local f = fifo()
    local reads, writes_after = run(function()
      local l, writes, reads = loop(), 0, {}
      l:add_writer(f, function()
        writes = writes + 1
      end)
      l:add_reader(f, function()
        reads[#reads + 1] = f:read(2)
      end)
      while writes < 2 do asyncio.sleep(0) end
      assert.equal(0, #reads) -- nothing written yet
      assert.is_true(l:remove_writer(f))
      local w = writes
      f:write("ab")
      f:flush()
      while #reads < 1 do asyncio.sleep(0) end
      assert.is_true(l:remove_reader(f))
      return reads, writes - w
    end)
    f:close()
    assert.same({ "ab" }, reads)
    assert.equal(0, writes_after)
  end)
end)

describe("fd watchers and loop close", function()
  it("add_reader on a closed loop raises; remove_reader is false", function()
    local f = fifo()
    local l = helper.new_loop()
    l:close()
    local e = err_of(l.add_reader, l, f, print)
    helper.assert_class(asyncio.RuntimeError, e)
    assert.is_false(l:remove_reader(f))
    assert.is_false(l:remove_writer(f))
    f:close()
  end)

  it("closing the loop releases its watchers and their callbacks", function()
    local f = fifo()
    f:write("x")
    f:flush()
    local weak = setmetatable({}, { __mode = "k" })
    with_loop(function(l)
      local arg = {}
      weak[arg] = true
      local calls = 0
      l:add_reader(f, function()
        calls = calls + 1
      end, arg)
      l:add_writer(f, function() end, arg)
      run_until(l, function() return calls > 0 end)
      assert.is_true(calls > 0)
      l:close()
    end)
    helper.gc()
    assert.is_nil(next(weak))
    -- the fd can be watched again by another loop
    local n = run(function()
      local l, fut = loop(), loop():create_future()
      l:add_reader(f, function()
        l:remove_reader(f)
        fut:set_result(f:read(1))
      end)
      return fut:await()
    end)
    f:close()
    assert.equal("x", n)
  end)
end)
