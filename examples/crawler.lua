-- examples/crawler.lua: a bounded crawler-style fan-out over a simulated site
-- (no network: fetch is an asyncio.sleep), in about a second.
--
-- It shows:
--   1. fan-out: a task per page discovered, all owned by one TaskGroup, whose
--      scope ends only once the last of them is done;
--   2. an asyncio.Semaphore bounding how many fetches run at once; the site
--      counts open connections, and the peak is checked against the bound;
--   3. asyncio.wait_for giving each fetch 0.25 s, and per-page errors caught
--      where they happen, so one bad page does not cancel the whole crawl;
--   4. asyncio.timeout bounding the whole crawl: a second crawl with a budget
--      of 0.3 s is cut off; the TaskGroup cancels the tasks still running and
--      the scope raises TimeoutError, with no connection left open.
--
-- Run it with `lua5.4 examples/crawler.lua` once the module is on the Lua
-- paths: eval $(luarocks --lua-version 5.4 --tree .build/tree path)
local asyncio = require "asyncio"

local PAGES = 30           -- /p1 .. /p30, plus the root /
local MAX_FETCHES = 5      -- the Semaphore's bound
local FETCH_TIMEOUT = 0.25 -- per fetch, through wait_for
local BUDGET, SHORT_BUDGET = 1.5, 0.3 -- for a whole crawl: plenty, then too little

local loop, t0

local function log(fmt, ...)
  print(("[%.2f] " .. fmt):format(loop:time() - t0, ...))
end

---------------------------------------------------------------------------
-- The simulated site: a fixed random link graph (with cycles and a few dead
-- links) and a fetch that takes 30 to 150 ms, fails on some pages and never
-- answers on others.

local site = {}
do
  math.randomseed(2024) -- the same site on every run
  local function page(i) return i == 0 and "/" or "/p" .. i end
  for i = 0, PAGES do
    local links = {}
    for k = 1, math.random(2, 4) do
      links[k] = page(math.random(1, PAGES))
    end
    if i % 7 == 3 then links[#links + 1] = "/gone" .. i end
    site[page(i)] = {
      links = links,
      delay = 0.03 + 0.12 * math.random(),
      flaky = i % 9 == 5,      -- the connection drops midway
      tarpit = i % 13 == 12,   -- accepts, then never answers
    }
  end
end

local open, peak = 0, 0 -- connections open on the site now, and at most

-- Counts the connection as open until the variable holding it is closed,
-- which happens even when the fetch is cancelled.
local function connect()
  open = open + 1
  if open > peak then peak = open end
  return setmetatable({}, { __close = function() open = open - 1 end })
end

-- Returns the links of the page at url.
local function fetch(url)
  local _ <close> = connect()
  local page = site[url]
  if not page then
    asyncio.sleep(0.02)
    error(("404 Not Found: %s"):format(url), 0) -- plain Lua errors travel too
  end
  asyncio.sleep(page.tarpit and 60 or page.delay)
  if page.flaky then error(asyncio.ConnectionResetError("connection reset by peer")) end
  return page.links
end

---------------------------------------------------------------------------
-- The crawler

-- Crawls the site from "/" within budget seconds; fills report with the
-- pages fetched and the errors met, in order, and the count of tasks
-- started, even when cut off.
local function crawl(budget, report)
  local sem = asyncio.Semaphore(MAX_FETCHES)
  local seen = {}

  local function visit(tg, url)
    local ok, res
    do
      local _ <close> = sem:acquire()
      ok, res = pcall(asyncio.wait_for, function() return fetch(url) end, FETCH_TIMEOUT)
    end
    if not ok then
      -- a cancellation is the crawl ending: let it end this task too
      if asyncio.isinstance(res, asyncio.CancelledError) then error(res, 0) end
      if asyncio.isinstance(res, asyncio.TimeoutError) then
        res = ("TimeoutError: no answer within %.2f s"):format(FETCH_TIMEOUT)
      end
      report.errors[#report.errors + 1] = ("%s: %s"):format(url, tostring(res))
      return
    end
    report.fetched[#report.fetched + 1] = url
    for _, link in ipairs(res) do
      if not seen[link] then
        seen[link] = true
        report.tasks = report.tasks + 1
        tg:create_task(visit, tg, link)
      end
    end
  end

  -- closed in reverse order: the TaskGroup awaits its tasks inside the deadline
  local _ <close> = asyncio.timeout(budget)
  local tg <close> = asyncio.TaskGroup()
  seen["/"] = true
  report.tasks = 1
  tg:create_task(visit, tg, "/")
end

-- Prints the words of list after a label, wrapped to lines of about 78 characters.
local function print_list(label, list)
  local line = label
  for _, word in ipairs(list) do
    if #line + #word >= 78 then
      print(line)
      line = (" "):rep(#label - 1)
    end
    line = line .. " " .. word
  end
  print(line)
end

local function run_crawl(budget)
  local report = { fetched = {}, errors = {}, tasks = 0 }
  peak = 0
  local start = loop:time()
  local ok, err = pcall(crawl, budget, report)
  local outcome = "finished"
  if not ok then
    if not asyncio.isinstance(err, asyncio.TimeoutError) then error(err, 0) end
    outcome = "cut off (TimeoutError)"
  end
  log("crawl with a %.1f s budget: %s after %.2f s", budget, outcome, loop:time() - start)
  print_list(("  fetched %d pages:"):format(#report.fetched), report.fetched)
  print(("  %d errors:"):format(#report.errors))
  for _, e in ipairs(report.errors) do print("    " .. e) end
  local unfinished = report.tasks - #report.fetched - #report.errors
  if unfinished > 0 then
    print(("  %d tasks still waiting or fetching at the deadline were cancelled"):format(unfinished))
  end
  print(("  peak concurrent fetches: %d (bound %d); connections still open: %d"):format(
    peak, MAX_FETCHES, open))
  assert(peak <= MAX_FETCHES, "the semaphore let too many fetches through")
  assert(open == 0, "a fetch outlived the crawl")
end

local function main()
  loop = asyncio.get_running_loop()
  t0 = loop:time()
  run_crawl(BUDGET)
  run_crawl(SHORT_BUDGET)
  log("done")
end

asyncio.run(main)
