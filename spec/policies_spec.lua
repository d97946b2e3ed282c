-- Event loop policies (deprecated in Python 3.14, as here): they work, each
-- entry point warns once, and a policy of the user's is what
-- get_event_loop, set_event_loop, new_event_loop, asyncio.run and Runner ask.
local asyncio = require "asyncio"
local helper = require "helper"

-- runs fn with asyncio.logger's messages recorded; returns them
local function quietly(fn)
  return helper.capture_log(function(log)
    fn()
    return log
  end)
end

after_each(function()
  quietly(function() asyncio.set_event_loop_policy(nil) end)
  asyncio.set_event_loop(nil)
  helper.close_loops()
end)

describe("event loop policies", function()
  it("the default policy: get_event_loop, set_event_loop, new_event_loop", function()
    quietly(function()
      local policy = asyncio.get_event_loop_policy()
      assert.equal(policy, asyncio.get_event_loop_policy())
      assert.is_true(asyncio.isinstance(policy, asyncio.DefaultEventLoopPolicy))
      assert.is_true(asyncio.isinstance(policy, asyncio.AbstractEventLoopPolicy))
      asyncio.set_event_loop(nil)
      local ok, e = pcall(policy.get_event_loop, policy) -- Python 3.14: no loop made
      assert.is_false(ok)
      helper.assert_class(asyncio.RuntimeError, e)
      local loop = policy:new_event_loop()
      assert.is_false(loop:is_closed())
      policy:set_event_loop(loop)
      assert.equal(loop, policy:get_event_loop())
      assert.equal(loop, asyncio.get_event_loop())
      policy:set_event_loop(nil)
      loop:close()
    end)
  end)

  it("warn once per name through asyncio.logger", function()
    local log = quietly(function()
      for _ = 1, 3 do
        asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(nil)
        asyncio.DefaultEventLoopPolicy()
      end
    end)
    -- this process may have warned already in an earlier test: at most once each
    local seen = {}
    for _, rec in ipairs(log) do
      assert.equal("warning", rec.level)
      local name = rec.msg:match("^asyncio%.([%w_]+) is deprecated")
      assert.is_not_nil(name, rec.msg)
      assert.is_nil(seen[name], name)
      seen[name] = true
    end
  end)

  it("a user's policy is asked by get/set/new_event_loop and by asyncio.run", function()
    quietly(function()
      local My = setmetatable({}, { __index = asyncio.DefaultEventLoopPolicy })
      My.__index = My
      local calls = {}
      function My:new_event_loop(opts)
        calls[#calls + 1] = "new"
        return asyncio.DefaultEventLoopPolicy.new_event_loop(self, opts)
      end
      function My:set_event_loop(loop)
        calls[#calls + 1] = loop and "set" or "unset"
        self.loop = loop
      end
      function My:get_event_loop()
        calls[#calls + 1] = "get"
        return self.loop
      end
      local policy = setmetatable({}, My)
      asyncio.set_event_loop_policy(policy)
      assert.equal(policy, asyncio.get_event_loop_policy())
      local inner = asyncio.run(function() return asyncio.get_running_loop() end)
      assert.same({ "new", "set", "unset" }, calls)
      assert.is_true(inner:is_closed())
      calls = {}
      local loop = asyncio.new_event_loop()
      asyncio.set_event_loop(loop)
      assert.equal(loop, asyncio.get_event_loop())
      assert.same({ "new", "set", "get" }, calls)
      loop:close()
      asyncio.set_event_loop_policy(nil) -- back to the default
      calls = {}
      asyncio.new_event_loop():close()
      assert.same({}, calls)
    end)
  end)

  it("AbstractEventLoopPolicy's methods are abstract; set_event_loop_policy checks its argument", function()
    quietly(function()
      local P = setmetatable({}, { __index = asyncio.AbstractEventLoopPolicy })
      helper.assert_class(asyncio.NotImplementedError, helper.err_of(P.new_event_loop, P))
      asyncio.set_event_loop_policy(P) -- a subclass is accepted
      for _, bad in ipairs { 1, "x", {}, print } do
        local ok, e = pcall(asyncio.set_event_loop_policy, bad)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'set_event_loop_policy' %(AbstractEventLoopPolicy expected", e)
      end
    end)
  end)
end)
