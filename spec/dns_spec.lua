-- loop:getaddrinfo and loop:getnameinfo (after CPython's test_base_events.py
-- getaddrinfo tests and test_socket.py's GeneralModuleTests), loopback and
-- numeric names only, plus "nonexistent.invalid", which never resolves.
local asyncio = require "asyncio"
local helper = require "helper"

after_each(helper.close_loops)

local run = helper.run
local err_of = helper.err_of

local function loop()
  return asyncio.get_running_loop()
end

-- the entries of `infos` whose `key` equals `value`
local function where(infos, key, value)
  local found = {}
  for _, ai in ipairs(infos) do
    if ai[key] == value then found[#found + 1] = ai end
  end
  return found
end

describe("getaddrinfo", function()
  it("exports the socket constants", function()
    for _, name in ipairs { "AF_INET", "AF_INET6", "AF_UNSPEC", "AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM",
                            "AI_PASSIVE", "AI_CANONNAME", "AI_NUMERICHOST", "NI_NUMERICHOST",
                            "NI_NUMERICSERV", "NI_NAMEREQD" } do
      assert.is_number(asyncio[name], name)
    end
    assert.are_not.equal(asyncio.AF_INET, asyncio.AF_INET6)
    assert.are_not.equal(asyncio.SOCK_STREAM, asyncio.SOCK_DGRAM)
  end)

  it("resolves a numeric IPv4 address and port", function()
    local infos = run(function()
      return loop():getaddrinfo("127.0.0.1", 80)
    end)
    assert.is_true(#infos >= 1)
    for _, ai in ipairs(infos) do
      assert.equal("inet", ai.family)
      assert.same({ "127.0.0.1", 80 }, ai.addr)
      assert.is_number(ai.type)
      assert.is_number(ai.proto)
      assert.equal("", ai.canonname)
    end
    local stream = where(infos, "type", asyncio.SOCK_STREAM)
    assert.equal(1, #stream)
  end)

  it("resolves localhost and a service name", function()
    local infos = run(function()
      return loop():getaddrinfo("localhost", "http", { type = asyncio.SOCK_STREAM })
    end)
    assert.is_true(#infos >= 1)
    for _, ai in ipairs(infos) do
      assert.equal(80, ai.addr[2])
      assert.equal(asyncio.SOCK_STREAM, ai.type)
      assert.is_true(ai.addr[1] == "127.0.0.1" or ai.addr[1] == "::1", ai.addr[1])
    end
  end)

  it("takes a numeric string port", function()
    local infos = run(function()
      return loop():getaddrinfo("127.0.0.1", "8080", { type = asyncio.SOCK_DGRAM })
    end)
    assert.equal(1, #infos)
    assert.same({ "127.0.0.1", 8080 }, infos[1].addr)
    assert.equal(asyncio.SOCK_DGRAM, infos[1].type)
  end)

  it("gives the wildcard addresses for a nil host with AI_PASSIVE", function()
    local v4, any = run(function()
      local l = loop()
      return l:getaddrinfo(nil, 8000, { family = asyncio.AF_INET, type = asyncio.SOCK_STREAM,
                                        flags = asyncio.AI_PASSIVE }),
             l:getaddrinfo(nil, 8000, { flags = asyncio.AI_PASSIVE, type = asyncio.SOCK_STREAM })
    end)
    assert.equal(1, #v4)
    assert.same({ "0.0.0.0", 8000 }, v4[1].addr)
    assert.equal("inet", v4[1].family)
    for _, ai in ipairs(any) do
      local host = ai.addr[1]
      assert.is_true(host == "0.0.0.0" or host == "::", host)
    end
  end)

  it("gives loopback addresses for a nil host without AI_PASSIVE", function()
    local infos = run(function()
      return loop():getaddrinfo(nil, 8000, { family = "inet" })
    end)
    assert.is_true(#infos >= 1)
    for _, ai in ipairs(infos) do assert.same({ "127.0.0.1", 8000 }, ai.addr) end
  end)

  it("filters by family, given as a string or a number", function()
    local v6, v4, e = run(function()
      local l = loop()
      local flags = asyncio.AI_NUMERICHOST
      return l:getaddrinfo("::1", 443, { family = "inet6", flags = flags }),
             l:getaddrinfo("localhost", 443, { family = asyncio.AF_INET }),
             err_of(l.getaddrinfo, l, "127.0.0.1", 443, { family = asyncio.AF_INET6, flags = flags })
    end)
    assert.is_true(#v6 >= 1)
    for _, ai in ipairs(v6) do
      assert.equal("inet6", ai.family)
      assert.same({ "::1", 443, 0, 0 }, ai.addr)
    end
    assert.is_true(#v4 >= 1)
    for _, ai in ipairs(v4) do
      assert.equal("inet", ai.family)
      assert.equal(443, ai.addr[2])
    end
    helper.assert_class(asyncio.OSError, e)
    assert.matches("^EAI_", e.errno)
  end)

  it("fills canonname with AI_CANONNAME", function()
    local infos = run(function()
      return loop():getaddrinfo("localhost", 80, { flags = asyncio.AI_CANONNAME, family = "inet" })
    end)
    assert.is_true(#infos[1].canonname > 0)
  end)

  it("raises OSError with the EAI_ name for a name that does not resolve", function()
    local e = run(function()
      local l = loop()
      return err_of(l.getaddrinfo, l, "nonexistent.invalid", 80)
    end)
    helper.assert_class(asyncio.OSError, e)
    assert.matches("^EAI_", e.errno)
    assert.matches("getaddrinfo", tostring(e))
  end)

  it("raises OSError for an unknown service name", function()
    local e = run(function()
      local l = loop()
      return err_of(l.getaddrinfo, l, "127.0.0.1", "no-such-service-xyz")
    end)
    helper.assert_class(asyncio.OSError, e)
    assert.matches("^EAI_", e.errno)
  end)

  it("runs several resolutions concurrently", function()
    local results = run(function()
      local tasks = {}
      for i = 1, 8 do
        tasks[i] = asyncio.create_task(function()
          return loop():getaddrinfo("127.0.0.1", 1000 + i, { type = asyncio.SOCK_STREAM })
        end)
      end
      return asyncio.gather(tasks):await()
    end)
    for i = 1, 8 do assert.same({ "127.0.0.1", 1000 + i }, results[i][1].addr) end
  end)

  it("works from a nested coroutine inside a task", function()
    local infos = run(function()
      local co = asyncio.coroutine.wrap(function()
        return loop():getaddrinfo("127.0.0.1", 22, { type = asyncio.SOCK_STREAM })
      end)
      return co()
    end)
    assert.same({ "127.0.0.1", 22 }, infos[1].addr)
  end)

  it("a task cancelled while it resolves ends cancelled", function()
    local after = run(function()
      local t = asyncio.create_task(function()
        return loop():getaddrinfo("localhost", 80)
      end)
      asyncio.sleep(0) -- the request is in flight
      assert.is_false(t:done())
      t:cancel()
      helper.await_cancelled(t)
      -- the loop goes on; a later resolution still works
      return loop():getaddrinfo("127.0.0.1", 80, { type = asyncio.SOCK_STREAM })
    end)
    assert.same({ "127.0.0.1", 80 }, after[1].addr)
  end)

  it("cancelling many queued requests frees them all", function()
    local n = run(function()
      local tasks = {}
      for i = 1, 200 do
        tasks[i] = asyncio.create_task(function()
          return loop():getaddrinfo("localhost", i)
        end)
      end
      asyncio.sleep(0)
      for _, t in ipairs(tasks) do t:cancel() end
      local cancelled = 0
      for _, t in ipairs(tasks) do
        pcall(t.await, t)
        if t:cancelled() then cancelled = cancelled + 1 end
      end
      asyncio.sleep(0.05) -- results of requests that ran anyway are dropped
      return cancelled
    end)
    assert.equal(200, n)
  end)

  it("closing the loop with a request in flight drops its result", function()
    helper.with_loop(function(l)
      local t = l:create_task(function()
        return l:getaddrinfo("localhost", 80)
      end)
      l:run_once(0)
      assert.is_false(t:done())
      l:close()
      assert.is_false(t:done())
    end)
  end)

  it("raises argument errors for bad arguments", function()
    local errs = run(function()
      local l = loop()
      return {
        err_of(l.getaddrinfo, l, {}, 80),
        err_of(l.getaddrinfo, l, "127.0.0.1", true),
        err_of(l.getaddrinfo, l, "127.0.0.1", 70000),
        err_of(l.getaddrinfo, l, "127.0.0.1", -1),
        err_of(l.getaddrinfo, l, "127.0.0.1", 80, "inet"),
        err_of(l.getaddrinfo, l, "127.0.0.1", 80, { family = "bogus" }),
        err_of(l.getaddrinfo, l, "127.0.0.1", 80, { flags = "x" }),
        err_of(l.getaddrinfo, l, "127.0.0.1", 80, { type = 1.5 }),
      }
    end)
    assert.equal(8, #errs)
    for _, e in ipairs(errs) do assert.matches("bad argument", tostring(e)) end
    assert.matches("#1", tostring(errs[1]))
    assert.matches("#2", tostring(errs[2]))
    assert.matches("#3", tostring(errs[6]))
  end)

  it("must be called inside a task", function()
    local l = helper.new_loop()
    local e = err_of(l.getaddrinfo, l, "127.0.0.1", 80)
    helper.assert_class(asyncio.RuntimeError, e)
    assert.matches("outside a task", tostring(e))
  end)
end)

describe("getnameinfo", function()
  it("gives numeric host and service with NI_NUMERICHOST | NI_NUMERICSERV", function()
    local host, service = run(function()
      return loop():getnameinfo({ "127.0.0.1", 80 }, asyncio.NI_NUMERICHOST | asyncio.NI_NUMERICSERV)
    end)
    assert.equal("127.0.0.1", host)
    assert.equal("80", service)
  end)

  it("names 127.0.0.1", function()
    local host, service = run(function()
      return loop():getnameinfo { "127.0.0.1", 80 }
    end)
    assert.is_string(host)
    assert.is_true(#host > 0)
    assert.is_true(service == "http" or service == "80", service)
  end)

  it("handles IPv6 addresses", function()
    local host, service = run(function()
      return loop():getnameinfo({ "::1", 443 }, asyncio.NI_NUMERICHOST | asyncio.NI_NUMERICSERV)
    end)
    assert.equal("::1", host)
    assert.equal("443", service)
  end)

  -- fuzz/addr.c found both: the C parsers stopped at a NUL byte, and an
  -- IPv6 address lost its scope id on the way back to Lua
  it("fuzz addr: a host with a NUL byte is not the host before it", function()
    for _, host in ipairs { "127.0.0.1\0evil", "\0", "::1\0" } do
      local e = run(function()
        local l = loop()
        return err_of(l.getnameinfo, l, { host, 80 }, asyncio.NI_NUMERICHOST)
      end)
      helper.assert_class(asyncio.OSError, e)
    end
  end)

  it("fuzz addr: IPv6 addresses carry flowinfo and scope_id, as Python's 4-tuples", function()
    local NUM = asyncio.NI_NUMERICHOST | asyncio.NI_NUMERICSERV
    local scoped, by_zone, infos, e1, e2 = run(function()
      local l = loop()
      local scoped = l:getnameinfo({ "fe80::1", 80, 0, 1 }, NUM) -- fe80::1%<name of interface 1>
      return scoped, l:getnameinfo({ scoped, 80 }, NUM),
        l:getaddrinfo(scoped, 80, { family = "inet6", flags = asyncio.AI_NUMERICHOST }),
        err_of(l.getnameinfo, l, { "::1", 80, -1, 0 }), err_of(l.getnameinfo, l, { "::1", 80, 0, 1 << 32 })
    end)
    assert.matches("^fe80::1%%.", scoped)
    assert.equal(scoped, by_zone)
    assert.same({ "fe80::1", 80, 0, 1 }, infos[1].addr)
    assert.matches("flowinfo", tostring(e1))
    assert.matches("scope_id", tostring(e2))
  end)

  it("raises OSError for an address that is not numeric", function()
    local e = run(function()
      local l = loop()
      return err_of(l.getnameinfo, l, { "localhost", 80 })
    end)
    helper.assert_class(asyncio.OSError, e)
  end)

  it("raises argument errors for bad arguments", function()
    local errs = run(function()
      local l = loop()
      return {
        err_of(l.getnameinfo, l, "127.0.0.1"),
        err_of(l.getnameinfo, l, { "127.0.0.1", "x" }),
        err_of(l.getnameinfo, l, { "127.0.0.1", 80 }, "flags"),
      }
    end)
    for _, e in ipairs(errs) do assert.matches("bad argument", tostring(e)) end
  end)
end)
