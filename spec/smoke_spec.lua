describe("asyncio", function()
  it("loads", function()
    local asyncio = require "asyncio"
    assert.is_table(asyncio)
  end)
end)
