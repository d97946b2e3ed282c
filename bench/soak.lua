-- Soak: N concurrent echo connections (plain or TLS) held for D seconds,
-- with random resets, half-closes and slow readers, every echo verified;
-- afterwards descriptors, Lua references, the Lua heap and RSS must be back
-- where they started, in the client and in the server.
--   lua5.4 bench/soak.lua [--conns N] [--seconds D] [--tls] [--seed S]
-- The server is a second process (this script with --serve): each side then
-- needs one descriptor per connection, so 10,000 connections fit under a
-- 20,000-descriptor limit that one process holding both ends would exceed.
-- Exit status 0 when every check passed; the last line is "RESULT ...".
local asyncio = require "asyncio"
local core = require "asyncio.core"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local LUA = os.getenv("LUA") or "lua5.4"
-- The baselines are taken after a warm-up round at full scale (WARM x N
-- connections opened, each echoing once, held until all are open, closed;
-- a little more than N since connections that reconnect overlap):
-- what grows with the number of connections at once and is kept for reuse
-- (the registry's array part, the anchor tables, the pool of coroutines,
-- malloc's arenas) is then in the baseline, and what the soak adds is a
-- leak. Tolerances of the after/before comparison, after full collections:
-- descriptors, references, TLS objects and tasks exactly; the Lua heap
-- within HEAP_SLACK_KB and HEAP_SLACK_PER_CONN.
-- RSS does not come back down: glibc keeps the heap that the peak took
-- (mostly garbage of the Lua heap: the client's burst of closes at the end
-- of the hold takes it up by half again) and Lua cannot call malloc_trim.
-- So RSS afterwards must only stay within RSS_SLACK of the peak's growth
-- above the baseline plus RSS_SLACK_KB: the budgets of the two block
-- caches, which keep freed blocks until the loop's run ends (4 MiB,
-- src/blockcache.c; reader buffers 16 MiB, src/module.c), and 4 MiB. The
-- memory check that can catch a leak is the plateau below (glibc's heap
-- fragments under a long soak, so `make soak` runs on jemalloc; see the
-- Makefile).
local WARM = 1.25
local HEAP_SLACK_KB = 256
-- and per connection: a table with a slot per connection at once (the
-- registry's array, the anchors) may still double its capacity past the
-- warm-up's, 16 bytes a slot, a few slots a connection
local HEAP_SLACK_PER_CONN = 64
local RSS_SLACK, RSS_SLACK_KB = 1.0, (4 + 16 + 4) * 1024
-- Under load, RSS must level off: what it gains between the middle and
-- the end of the hold (both after a full collection) stays within
-- PLATEAU_SLACK of the first plus PLATEAU_SLACK_KB, the block caches'
-- budgets (which fill as the traffic varies) and 4 MiB. In `make soak`
-- (some 200,000 operations in the second half) a leak of 200 bytes an
-- operation would go past it.
local PLATEAU_SLACK, PLATEAU_SLACK_KB = 0.05, (4 + 16 + 4) * 1024
-- Under AddressSanitizer (make test's ASan pass preloads it) freed memory
-- sits in its quarantine, so RSS says nothing; its leak check at exit does.
local RSS_CHECKED = not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
local POOL_MAX = 256 + 2 -- the pool, its spare and the spare's registry slot
-- per operation of a connection: reset, half-close, slow reader; the rest are echoes
local P_RESET, P_HALF, P_SLOW = 0.01, 0.01, 0.005
local SLOW_BYTES = 256 * 1024
local CONNECTING = 256 -- connections being opened at once

local function usage()
  io.stderr:write("usage: lua5.4 bench/soak.lua [--conns N] [--seconds D] [--tls] [--seed S]\n")
  os.exit(2)
end

local opts = { conns = 1000, seconds = 10, tls = false, seed = os.time() }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--tls" then
      opts.tls = true
    elseif a == "--serve" then
      opts.serve = true
    elseif a == "--conns" or a == "--seconds" or a == "--seed" then
      opts[a:sub(3)] = tonumber(arg[i + 1]) or usage()
      i = i + 1
    elseif a == "--cert" then -- the server's certificate and key (--serve --tls)
      opts.cert, opts.key = arg[i + 1], arg[i + 2]
      i = i + 2
    else
      usage()
    end
    i = i + 1
  end
end

---------------------------------------------------------------------------
-- What each process measures

local function pid()
  local f = assert(io.open("/proc/self/stat"))
  local p = f:read("n")
  f:close()
  return p
end

-- the open descriptors, leaving out the pipe the listing comes through (the
-- listing may run before this process has closed its copy of the write end)
local function open_fds()
  local p = assert(io.popen("own=$(readlink /proc/$$/fd/1); ls -l /proc/" .. pid() ..
                            "/fd | grep -F -e ' -> ' | grep -v -F -e \"$own\""))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- Registry entries and the entries of the tables it holds directly: the
-- luaL_ref slots of transports, listeners, servers, and the loop's anchor
-- tables (pending tasks, queued handles). A freed luaL_ref slot holds an
-- integer (the free list): not a reference. Coroutines are counted apart:
-- the loop pools up to 256 of its tasks' coroutines for reuse (src/task.c).
local function refs()
  local n, threads = 0, 0
  local function count(v)
    if type(v) == "thread" then
      threads = threads + 1
    elseif math.type(v) ~= "integer" then
      n = n + 1
    end
  end
  for _, v in pairs(debug.getregistry()) do
    count(v)
    if type(v) == "table" then
      for _, w in pairs(v) do count(w) end
    end
  end
  return n, threads
end

-- Full collections until the heap stops shrinking: each cycle halves at
-- most the string table (it grows with the short strings of the traffic).
local function full_gc()
  local last = math.huge
  for _ = 1, 12 do
    collectgarbage("collect")
    local now = collectgarbage("count")
    if now >= last then break end
    last = now
  end
end

local function snapshot()
  full_gc()
  local tasks = 0
  for _ in pairs(asyncio.all_tasks()) do tasks = tasks + 1 end
  local n, threads = refs()
  return { fds = open_fds(), refs = n, pooled = threads, heap_kb = math.floor(collectgarbage("count")),
           rss_kb = common.status_kb("VmRSS"), ssl = core.ssl_live(), tasks = tasks }
end

-- A closed transport's descriptor may go a little after its close returned
-- (a TLS connection waiting for the peer's close_notify): the after-snapshot
-- waits up to 10 s for the count to come down to the baseline.
local function settled_snapshot(base)
  local t0 = asyncio.get_running_loop():time()
  while open_fds() > base.fds and asyncio.get_running_loop():time() - t0 < 10 do asyncio.sleep(0.2) end
  local s = snapshot()
  s.settle = ("%.1f"):format(asyncio.get_running_loop():time() - t0)
  return s
end

local function encode(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, " ")
end

local function decode(line)
  local t = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

-- the problems of an after/before pair, as a list of strings
local function compare(who, before, after, peak_rss, conns)
  local bad = {}
  for _, k in ipairs { "fds", "refs", "ssl", "tasks" } do
    if after[k] > before[k] then bad[#bad + 1] = ("%s: %s %d -> %d"):format(who, k, before[k], after[k]) end
  end
  if after.pooled > math.max(before.pooled, POOL_MAX) then bad[#bad + 1] = ("%s: %d pooled coroutines"):format(who, after.pooled) end
  if after.heap_kb > before.heap_kb + HEAP_SLACK_KB + conns * HEAP_SLACK_PER_CONN / 1024 then
    bad[#bad + 1] = ("%s: Lua heap %d kB -> %d kB"):format(who, before.heap_kb, after.heap_kb)
  end
  if not RSS_CHECKED then return bad end
  local rss_limit = before.rss_kb + RSS_SLACK * math.max(0, peak_rss - before.rss_kb) + RSS_SLACK_KB
  if after.rss_kb > rss_limit then
    bad[#bad + 1] = ("%s: RSS %d kB -> %d kB (peak %d kB, limit %d kB)"):format(
      who, before.rss_kb, after.rss_kb, peak_rss, math.floor(rss_limit))
  end
  return bad
end

local function is_reset(err)
  return asyncio.isinstance(err, asyncio.ConnectionError) or asyncio.isinstance(err, asyncio.ssl.SSLError)
end

---------------------------------------------------------------------------
-- The server: echoes until EOF. A second port takes "BASE\n" and "END\n",
-- each answered once every echo connection is gone, with a snapshot (and,
-- for END, the counters and peak RSS, after which the process exits).

local function serve()
  local ctx
  if opts.tls then
    ctx = asyncio.ssl.SSLContext(asyncio.ssl.PROTOCOL_TLS_SERVER)
    ctx:load_cert_chain(opts.cert, opts.key)
  end
  asyncio.run(function()
    local loop = asyncio.get_running_loop()
    local live, stats, peak_rss, peak_heap = 0, { accepted = 0, eofs = 0, resets = 0, errors = 0 }, 0, 0
    local first_error
    local gone = asyncio.Event()
    loop:set_exception_handler(function(lp, context)
      if not is_reset(context.exception) then
        stats.errors = stats.errors + 1
        lp:default_exception_handler(context)
      end
    end)
    local function echo(reader, writer)
      live = live + 1
      stats.accepted = stats.accepted + 1
      local ok, err = pcall(function()
        while true do
          local data = reader:read(65536)
          if data == "" then break end
          writer:write(data)
          writer:drain()
        end
      end)
      if ok then
        stats.eofs = stats.eofs + 1
      elseif is_reset(err) then
        stats.resets = stats.resets + 1
      else
        stats.errors = stats.errors + 1
        first_error = first_error or tostring(err)
      end
      writer:close()
      pcall(writer.wait_closed, writer)
      live = live - 1
      if live == 0 then gone:set() end
    end
    local done, base = loop:create_future(), nil
    local function control(reader, writer)
      while true do
        local line = reader:readline()
        if line == "" then break end
        local s
        if line == "MID\n" or line == "LATE\n" then -- under load: RSS after a full collection
          full_gc()
          s = { rss_kb = common.status_kb("VmRSS") }
        else
          while live > 0 do
            gone:clear()
            gone:wait()
          end
          s = line == "END\n" and settled_snapshot(base) or snapshot()
        end
        if line == "BASE\n" then base = s end
        s.cpu = ("%.2f"):format(os.clock())
        if line == "END\n" then
          for k, v in pairs(stats) do s[k] = v end
          s.peak_rss_kb, s.peak_heap_kb = peak_rss, math.floor(peak_heap)
          if first_error then io.stderr:write("server: first error: ", first_error, "\n") end
        end
        writer:write(encode(s) .. "\n")
        writer:drain()
        if line == "END\n" then break end
      end
      writer:close()
      if not done:done() then done:set_result(true) end
    end
    local server = asyncio.start_server(echo, "127.0.0.1", 0, { ssl = ctx, backlog = 4096 })
    local cserver = asyncio.start_server(control, "127.0.0.1", 0)
    local sampler = asyncio.create_task(function()
      while true do
        peak_rss = math.max(peak_rss, common.status_kb("VmRSS"))
        peak_heap = math.max(peak_heap, collectgarbage("count"))
        asyncio.sleep(0.5)
      end
    end)
    io.stdout:write(server.sockets[1]:getsockname()[2], " ", cserver.sockets[1]:getsockname()[2], "\n")
    io.stdout:flush()
    done:await()
    sampler:cancel()
    server:close()
    cserver:close()
  end)
end

---------------------------------------------------------------------------
-- The client

-- a throwaway self-signed certificate for 127.0.0.1 / localhost; returns
-- cert, key and the directory
local function make_cert()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  -- outside the sanitizer runtime of make test's ASan pass, whose leak
  -- report would fail the openssl CLI
  local cmd = ("env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u OPENSSL_CONF openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 " ..
               "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 " ..
               "-keyout %s -out %s >/dev/null 2>&1"):format(key, cert)
  if not os.execute(cmd) then error("openssl failed: " .. cmd) end
  return cert, key, dir
end

local function soft_fd_limit()
  local f = io.open("/proc/self/limits")
  if not f then return math.huge end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("Max open files%s+(%d+)")) or math.huge
end

local function client()
  math.randomseed(opts.seed)
  -- the load generator's garbage (messages, their echoes) dies young: the
  -- generational collector keeps its heap's peak, and so its RSS, near the
  -- live size
  collectgarbage("generational")
  local need = math.ceil(WARM * opts.conns) + 64
  if soft_fd_limit() < need then
    io.stderr:write(("soak: %d connections need %d descriptors per process, the limit is %d (ulimit -n)\n")
      :format(opts.conns, need, soft_fd_limit()))
    os.exit(2)
  end
  local cert, key, dir
  if opts.tls then cert, key, dir = make_cert() end
  local ok, failures = pcall(asyncio.run, function()
    local loop = asyncio.get_running_loop()
    local PIPE = asyncio.subprocess.PIPE
    local argv = { LUA, arg[0], "--serve" }
    if opts.tls then
      for _, a in ipairs { "--tls", "--cert", cert, key } do argv[#argv + 1] = a end
    end
    local proc = asyncio.create_subprocess_exec(argv, { stdout = PIPE })
    -- a failure kills the server, which would otherwise wait for END
    local ok_body, res = pcall(function()
    local ports = asyncio.wait_for(function() return proc.stdout:readline() end, 30)
    local port, cport = ports:match("(%d+) (%d+)")
    assert(port, "the server did not start")
    local creader, cwriter = asyncio.open_connection("127.0.0.1", cport)
    local function ask(what)
      cwriter:write(what .. "\n")
      return decode(asyncio.wait_for(function() return creader:readline() end, 120))
    end
    local cctx
    if opts.tls then
      cctx = asyncio.ssl.SSLContext(asyncio.ssl.PROTOCOL_TLS_CLIENT)
      cctx:load_verify_locations(cert)
    end
    local copts = { ssl = cctx, server_hostname = cctx and "localhost" or nil }

    local n = { opened = 0, echoes = 0, bytes = 0, resets = 0, half_closes = 0, slow = 0, errors = 0 }
    local errors = {}
    local open, min_open, max_open, holding = 0, math.huge, 0, false
    local stopping = false
    local function fail(msg)
      n.errors = n.errors + 1
      if #errors < 10 then errors[#errors + 1] = msg end
    end

    -- A message: a header naming the connection and its count, then a slice
    -- at a random place of one random megabyte (made once: generating fresh
    -- bytes per message would cost the client most of its CPU and fill its
    -- heap with garbage), so that a message delivered to the wrong
    -- connection, twice or out of order does not compare equal.
    local POOL = {}
    for i = 1, (1024 * 1024 + SLOW_BYTES) // 8 do POOL[i] = string.pack("<i8", math.random(math.mininteger, math.maxinteger)) end
    POOL = table.concat(POOL)
    local sent = 0
    local function payload(len)
      sent = sent + 1
      local head = ("%x:"):format(sent)
      local off = math.random(1, #POOL - len)
      return head .. POOL:sub(off, off + len - 1 - #head)
    end

    local function echo(reader, writer, len)
      local msg = payload(len)
      writer:write(msg)
      local back = reader:readexactly(#msg)
      if back ~= msg then fail("echo mismatch") end
      n.echoes = n.echoes + 1
      n.bytes = n.bytes + #msg
    end

    -- the echo of a message lands in the kernel, unread, so the abort resets
    local function reset(_, writer)
      writer.transport:pause_reading()
      writer:write(payload(math.random(16, 1024)))
      asyncio.sleep(0.05)
      writer.transport:abort()
      n.resets = n.resets + 1
    end

    local function half_close(reader, writer)
      local msg = payload(math.random(1, 8192))
      writer:write(msg)
      writer:write_eof()
      local parts = {}
      while true do
        local d = reader:read(65536)
        if d == "" then break end
        parts[#parts + 1] = d
      end
      if table.concat(parts) ~= msg then fail("half-close: the echo before EOF differs") end
      n.half_closes = n.half_closes + 1
      writer:close()
      writer:wait_closed()
    end

    -- SLOW_BYTES sent at once, their echo read 8 KiB every 10 ms
    local function slow(reader, writer)
      local msg = payload(SLOW_BYTES)
      writer:write(msg)
      local parts, got = {}, 0
      while got < #msg do
        local d = reader:read(math.min(8192, #msg - got))
        if d == "" then error("EOF in a slow read") end
        parts[#parts + 1] = d
        got = got + #d
        asyncio.sleep(0.01)
      end
      writer:drain()
      if table.concat(parts) ~= msg then fail("slow reader: the echo differs") end
      n.slow = n.slow + 1
    end

    local deadline
    local function pause()
      local d = math.random() * 1.5 + 0.25
      if deadline then d = math.min(d, deadline - loop:time()) end
      if d > 0 then asyncio.sleep(d) end
    end

    local gate = asyncio.Semaphore(CONNECTING)
    local function connect()
      gate:acquire()
      local _ <close> = gate
      return asyncio.open_connection("127.0.0.1", port, copts)
    end

    local function connection()
      while not stopping do
        local reader, writer = connect()
        n.opened = n.opened + 1
        open = open + 1
        max_open = math.max(max_open, open)
        local ended = false
        local okc, err = pcall(function()
          echo(reader, writer, math.random(1, 4096))
          while not stopping and not ended do
            pause()
            if stopping then break end
            local r = math.random()
            if r < P_RESET then
              reset(reader, writer)
              ended = true
            elseif r < P_RESET + P_HALF then
              half_close(reader, writer)
              ended = true
            elseif r < P_RESET + P_HALF + P_SLOW then
              slow(reader, writer)
            else
              echo(reader, writer, math.random(1, 4096))
            end
          end
        end)
        if not okc then fail(tostring(err)) end
        if not ended then
          writer:close()
          pcall(writer.wait_closed, writer)
        end
        open = open - 1
        if holding then min_open = math.min(min_open, open) end
      end
    end

    -- the warm-up round (see the top of the file); its first 8 connections
    -- also read slowly, then half-close or reset
    do
      local t, opened, all_open = {}, 0, asyncio.Event()
      local warm = math.ceil(WARM * opts.conns)
      for i = 1, warm do
        t[i] = asyncio.create_task(function()
          local reader, writer = connect()
          echo(reader, writer, math.random(1, 4096))
          opened = opened + 1
          if opened == warm then all_open:set() end
          all_open:wait()
          if i > 8 then
            writer:close()
            pcall(writer.wait_closed, writer)
            return
          end
          slow(reader, writer)
          if i % 2 == 0 then
            half_close(reader, writer)
          else
            reset(reader, writer)
          end
        end)
      end
      asyncio.wait_for(asyncio.gather(t), 300)
      for k in pairs(n) do n[k] = 0 end
    end
    local server_before = ask("BASE")
    local before = snapshot()
    local cpu0 = os.clock()
    local peak_rss, peak_heap = 0, 0

    local t0 = loop:time()
    local tasks = {}
    for i = 1, opts.conns do tasks[i] = asyncio.create_task(connection) end
    while open < opts.conns do
      if loop:time() - t0 > 300 then error(("only %d of %d connections open after 300 s"):format(open, opts.conns)) end
      if n.errors > 0 then error("failed while opening: " .. errors[1]) end
      asyncio.sleep(0.05)
    end
    local ramp = loop:time() - t0
    holding, min_open = true, open
    deadline = loop:time() + opts.seconds
    local mid, late -- {client RSS, server RSS} half-way and at the end of the hold
    local function rss_now()
      full_gc()
      return { common.status_kb("VmRSS"), ask(mid and "LATE" or "MID").rss_kb }
    end
    while loop:time() < deadline do
      if not mid and loop:time() >= deadline - opts.seconds / 2 then mid = rss_now() end
      if not late and loop:time() >= deadline - 1 then late = rss_now() end
      peak_rss = math.max(peak_rss, common.status_kb("VmRSS"))
      peak_heap = math.max(peak_heap, collectgarbage("count"))
      asyncio.sleep(math.min(0.5, math.max(0, deadline - loop:time())))
    end
    holding, stopping = false, true
    local t1 = loop:time()
    asyncio.wait_for(asyncio.gather(tasks), 120)
    local teardown = loop:time() - t1
    tasks = nil
    peak_rss = math.max(peak_rss, common.status_kb("VmRSS"))
    local after = settled_snapshot(before)
    local cpu = os.clock() - cpu0
    local server_after = ask("END")
    cwriter:close()
    asyncio.wait_for(function() return proc:wait() end, 30)
    if proc.returncode ~= 0 then fail("the server exited with " .. tostring(proc.returncode)) end

    local bad = compare("client", before, after, peak_rss, opts.conns)
    for _, b in ipairs(compare("server", server_before, server_after, server_after.peak_rss_kb, opts.conns)) do bad[#bad + 1] = b end
    if server_after.errors > 0 then bad[#bad + 1] = ("server: %d errors"):format(server_after.errors) end
    if n.resets > 10 and server_after.resets < n.resets / 2 then
      bad[#bad + 1] = ("server saw %d resets of the %d made"):format(server_after.resets, n.resets)
    end
    for i, who in ipairs(RSS_CHECKED and { "client", "server" } or {}) do
      if late[i] > mid[i] * (1 + PLATEAU_SLACK) + PLATEAU_SLACK_KB then
        bad[#bad + 1] = ("%s: RSS grew from %d kB to %d kB in the second half of the hold"):format(who, mid[i], late[i])
      end
    end
    if min_open < opts.conns * 0.95 then
      bad[#bad + 1] = ("only %d connections open at the lowest"):format(min_open)
    end

    print(("soak %s: %d connections held for %g s (opened in %.1f s, closed in %.1f s; open at least %d, at most %d)")
      :format(opts.tls and "TLS" or "plain", opts.conns, opts.seconds, ramp, teardown, min_open, max_open))
    print(("  %d connections opened, %d echoes verified (%.1f MB), %d resets, %d half-closes, %d slow readers, %d errors")
      :format(n.opened, n.echoes, n.bytes / 1e6, n.resets, n.half_closes, n.slow, n.errors))
    print(("  server: %d accepted, %d ended by EOF, %d by a reset, %d errors")
      :format(server_after.accepted, server_after.eofs, server_after.resets, server_after.errors))
    local function row(who, b, a, peak)
      print(("  %-6s fds %d -> %d, refs %d -> %d, pooled coroutines %d -> %d, TLS objects %d -> %d, tasks %d -> %d, Lua heap %d -> %d kB, RSS %d -> %d kB (peak %d kB; Lua heap's peak %d kB), CPU %s s, settled in %s s")
        :format(who, b.fds, a.fds, b.refs, a.refs, b.pooled, a.pooled, b.ssl, a.ssl, b.tasks, a.tasks, b.heap_kb, a.heap_kb,
                b.rss_kb, a.rss_kb, peak, a.peak_heap_kb, a.cpu, a.settle))
    end
    after.cpu, after.peak_heap_kb = ("%.2f"):format(cpu), math.floor(peak_heap)
    server_after.cpu = ("%.2f"):format(server_after.cpu - server_before.cpu)
    row("client", before, after, peak_rss)
    row("server", server_before, server_after, server_after.peak_rss_kb)
    print(("  RSS under load after a full collection, half-way / at the end of the hold: client %d / %d kB, server %d / %d kB")
      :format(mid[1], late[1], mid[2], late[2]))
    if not RSS_CHECKED then print("  RSS not checked: AddressSanitizer's quarantine keeps freed memory") end
    for _, e in ipairs(errors) do print("  error: " .. e) end
    for _, b in ipairs(bad) do print("  FAILED: " .. b) end
    common.result({ bench = "soak", peer = common.PEER, n = opts.conns, secs = opts.seconds,
                    tls = opts.tls and 1 or 0, seed = opts.seed, echoes = n.echoes, resets = n.resets,
                    half_closes = n.half_closes, slow = n.slow, errors = n.errors, opened = n.opened,
                    ok = (#bad == 0 and n.errors == 0) and 1 or 0 })
    return #bad + n.errors
    end)
    if not ok_body then
      pcall(proc.kill, proc)
      error(res, 0)
    end
    return res
  end)
  if dir then os.execute("rm -rf " .. dir) end
  if not ok then
    io.stderr:write("soak: ", tostring(failures), "\n")
    os.exit(1)
  end
  os.exit(failures == 0 and 0 or 1)
end

if opts.serve then serve() else client() end
