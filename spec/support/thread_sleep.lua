-- For jobs of the executor specs, in worker threads: blocks the calling OS
-- thread for d seconds (a worker's state has no sleep of its own), with a
-- private loop of asyncio.core made for the purpose.
local core = require "asyncio.core"

return function(d)
  local loop = core.new_event_loop()
  loop:run_until_complete(function() core.sleep(d) end)
  loop:close()
end
