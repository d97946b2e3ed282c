-- busted output handler: a stock handler for people (BUSTED_OUTPUT, default
-- utfTerminal) plus a tally for spec/support/run-tests.sh, written to the file
-- named by $ASYNCIO_TEST_COUNTS as "passed failed pending" (failed = failures
-- + errors). The file is rewritten after every test, so a run that crashes
-- still leaves what it counted.
--   busted -o spec/support/tally_output.lua
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers." .. (os.getenv("BUSTED_OUTPUT") or "utfTerminal"))(options)
  local path = os.getenv("ASYNCIO_TEST_COUNTS")
  if not path or path == "" then
    return handler
  end
  local file = assert(io.open(path, "w"))
  local function tally()
    -- fixed width, so a rewrite always covers the previous contents
    file:seek("set")
    file:write(string.format("%10d %10d %10d\n", handler.successesCount,
                             handler.failuresCount + handler.errorsCount, handler.pendingsCount))
    file:flush()
    return nil, true
  end
  local subscribe = handler.subscribe
  handler.subscribe = function(self, opts)
    subscribe(self, opts) -- the base handler counts first (priority 1)
    busted.subscribe({ "test", "end" }, tally)
    busted.subscribe({ "failure" }, tally)
    busted.subscribe({ "error" }, tally)
    busted.subscribe({ "suite", "end" }, tally)
  end
  tally()
  return handler
end
