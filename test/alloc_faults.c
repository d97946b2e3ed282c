/* alloc_faults: a Lua allocator that fails the Nth allocation after it is
 * armed, swept over N across scenarios of the core (see scenarios[]).
 * Each run is a forked child of a parent that already opened asyncio
 * (ASYNCIO_FAULT_NOFORK=1 with ASYNCIO_FAULT_N: in the process, for a
 * debugger; injected_failure is where to break): the failure must come back
 * as a Lua error (or be absorbed), the loop must stay usable, and lua_close
 * must free everything (LeakSanitizer checks the child at its exit, and the
 * allocator's own count of live bytes must be 0); a hang is a SIGALRM.
 *
 * ASYNCIO_FAULT_FULL=1 sweeps every N; by default every N up to DENSE, then
 * a stride that keeps each scenario at about MAX_RUNS runs.
 * ASYNCIO_FAULT_SCENARIO=name runs one scenario; ASYNCIO_FAULT_N=n one N.
 *
 * Every scenario is swept twice: with LUA_ASYNCIO_MALLOC=malloc, where each of
 * Lua's allocations reaches this allocator, and then with the slab
 * (src/slab.c), where small blocks only fail when the slab needs a region
 * (LUA_ASYNCIO_MALLOC set by the caller: that mode only). */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define DENSE 60
#define MAX_RUNS 100
#define RUN_ALARM_SECONDS 8
/* Each scenario's own deadline, far below the alarm. A failure often
 * leaves a task waiting for one that died, so faulted runs get a short one
 * (a TimeoutError is as good as any error there); a run that may see no
 * fault, and must then pass, gets a long one. The deadline bounds the
 * scenario's waits, not the clean-up after it fired: so a client's streams
 * are <close> variables, closed before the Server's <close> waits for its
 * connections (a server handler draining to a client that was cancelled
 * mid-read would otherwise wait for good; under ThreadSanitizer a
 * scenario can outlast 0.25 s with no fault at all). */
#define FAULTED_TIMEOUT 0.25
#define CLEAN_TIMEOUT 5.0
/* The tls server's ssl_shutdown_timeout in faulted runs (nil, the default
 * 30 s, in the clean one): a TLS connection the server closed waits for the
 * client's close_notify, which a client cancelled by the deadline before its
 * w:close() never sends (a StreamReader keeps a TLS stream open at EOF, for
 * half-close), and `server <close>` waits for that connection. Under
 * ThreadSanitizer the scenario takes 400 ms to 500 ms, so the 0.25 s
 * deadline often falls inside it. */
#define FAULTED_SSL_SHUTDOWN_TIMEOUT 1.0

/* ---- the failing allocator ---------------------------------------------- */

typedef struct {
  long long countdown; /* growths left before the one that fails; <0 unarmed */
  long long growths;   /* growth requests seen while armed */
  size_t live;         /* bytes held by the state */
  int injected;        /* a failure was returned */
  /* Lua retries a failed allocation once after an emergency collection:
   * the retry (same block, same new size) fails too, or nothing would ever
   * reach the program. */
  void *fail_ptr;
  size_t fail_nsize;
  int fail_retry;
} fault_alloc;

static fault_alloc fa;

/* A place for a debugger's breakpoint: where a failure is injected. */
__attribute__((noinline)) static void *injected_failure(void) {
  __asm__ volatile("");
  return NULL;
}

static void *fault_realloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  fault_alloc *a = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    a->live -= old;
    return NULL;
  }
  if (nsize > old) {
    if (a->fail_retry && ptr == a->fail_ptr && nsize == a->fail_nsize) {
      a->fail_retry = 0;
      return NULL;
    }
    a->fail_retry = 0;
    if (a->countdown >= 0) {
      a->growths++;
      if (a->countdown-- == 0) {
        a->injected = 1;
        a->fail_ptr = ptr;
        a->fail_nsize = nsize;
        a->fail_retry = 1;
        return injected_failure();
      }
    }
  }
  p = realloc(ptr, nsize);
  if (p) a->live = a->live - old + nsize;
  return p;
}

/* ---- scenarios ---------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *code; /* a chunk returning "ok" when everything went through */
} scenario;

/* Every scenario bounds itself with asyncio.timeout: a wake-up lost to a
 * failed callback is a TimeoutError (a Lua error), not a hang. */
static const scenario scenarios[] = {
    {"tasks", "return asyncio.run(function()\n"
              "  local t <close> = asyncio.timeout(TIMEOUT)\n"
              "  local loop = asyncio.get_running_loop()\n"
              "  local fut = loop:create_future()\n"
              "  loop:call_soon(fut.set_result, fut, 'f')\n"
              "  local ts = {}\n"
              "  for i = 1, 4 do\n"
              "    ts[i] = asyncio.create_task(function(x) asyncio.sleep(0) return x * 2 end, i)\n"
              "  end\n"
              "  local r = asyncio.gather(ts):await()\n"
              "  assert(r[4] == 8 and r.n == 4)\n"
              "  assert(fut:await() == 'f')\n"
              "  local slow = asyncio.create_task(asyncio.sleep, 60)\n"
              "  asyncio.sleep(0)\n"
              "  slow:cancel('enough')\n"
              "  assert(not pcall(slow.await, slow))\n"
              "  local f2 = asyncio.Future()\n"
              "  f2:add_done_callback(function() end)\n"
              "  f2:set_exception(asyncio.ValueError('v'))\n"
              "  assert(not pcall(f2.await, f2))\n"
              "  do\n"
              "    local tg <close> = asyncio.TaskGroup()\n"
              "    tg:create_task(asyncio.sleep, 0)\n"
              "    tg:create_task(function() return 1 end)\n"
              "  end\n"
              "  return 'ok'\n"
              "end)\n"},
    {"timers",
     "return asyncio.run(function()\n"
     "  local t <close> = asyncio.timeout(TIMEOUT)\n"
     "  local loop = asyncio.get_running_loop()\n"
     "  local fired = loop:create_future()\n"
     "  loop:call_later(0.002, fired.set_result, fired, 'late')\n"
     "  local h = loop:call_later(10, error, 'never')\n"
     "  local h2 = loop:call_at(loop:time() + 0.001, function() end)\n"
     "  asyncio.sleep(0.003)\n"
     "  h:cancel()\n"
     "  assert(fired:await() == 'late' and h2:when() > 0)\n"
     "  assert(not pcall(asyncio.wait_for, asyncio.create_task(asyncio.sleep, 1), 0.002))\n"
     "  assert(asyncio.wait_for(asyncio.create_task(asyncio.sleep, 0.001, 'y'), 1) == 'y')\n"
     "  do\n"
     "    local inner <close> = asyncio.timeout(1)\n"
     "    asyncio.sleep(0.001)\n"
     "  end\n"
     "  return 'ok'\n"
     "end)\n"},
    {"sync", "return asyncio.run(function()\n"
             "  local t <close> = asyncio.timeout(TIMEOUT)\n"
             "  local q = asyncio.Queue(2)\n"
             "  local lock = asyncio.Lock()\n"
             "  local ev = asyncio.Event()\n"
             "  local sem = asyncio.Semaphore(1)\n"
             "  local got = {}\n"
             "  local consumer = asyncio.create_task(function()\n"
             "    for i = 1, 4 do\n"
             "      got[#got + 1] = q:get()\n"
             "      q:task_done()\n"
             "    end\n"
             "    ev:set()\n"
             "  end)\n"
             "  local workers = {}\n"
             "  for i = 1, 2 do\n"
             "    workers[i] = asyncio.create_task(function()\n"
             "      local g <close> = lock:acquire()\n"
             "      local s <close> = sem:acquire()\n"
             "      q:put(i)\n"
             "      q:put(i + 10)\n"
             "    end)\n"
             "  end\n"
             "  assert(ev:wait())\n"
             "  q:join()\n"
             "  asyncio.gather(workers):await()\n"
             "  consumer:await()\n"
             "  local c = asyncio.Condition()\n"
             "  local waiter = asyncio.create_task(function()\n"
             "    local g <close> = c:acquire()\n"
             "    return c:wait_for(function() return #got == 4 end)\n"
             "  end)\n"
             "  asyncio.sleep(0)\n"
             "  do local g <close> = c:acquire() c:notify_all() end\n"
             "  assert(waiter:await())\n"
             "  assert(#got == 4)\n"
             "  return 'ok'\n"
             "end)\n"},
    {"unix", "return asyncio.run(function()\n"
             "  local t <close> = asyncio.timeout(TIMEOUT)\n"
             "  os.remove(SOCK_PATH)\n"
             "  local server <close> = asyncio.start_unix_server(function(r, w)\n"
             "    w:write(r:readexactly(5))\n"
             "    w:close()\n"
             "  end, SOCK_PATH)\n"
             "  local r, w <close> = asyncio.open_unix_connection(SOCK_PATH)\n"
             "  w:write('abcde')\n"
             "  assert(r:read() == 'abcde')\n"
             "  w:close()\n"
             "  return 'ok'\n"
             "end)\n"},
    {"tcp", "return asyncio.run(function()\n"
            "  local t <close> = asyncio.timeout(TIMEOUT)\n"
            "  local server <close> = asyncio.start_server(function(r, w)\n"
            "    local line = r:readline()\n"
            "    w:write(line)\n"
            "    w:drain()\n"
            "    w:close()\n"
            "  end, '127.0.0.1', 0)\n"
            "  local port = server.sockets[1]:getsockname()[2]\n"
            "  for i = 1, 2 do\n"
            "    local r, w <close> = asyncio.open_connection('127.0.0.1', port)\n"
            "    w:write('hello ' .. i .. '\\n')\n"
            "    w:drain()\n"
            "    assert(r:readline() == 'hello ' .. i .. '\\n')\n"
            "    w:close()\n"
            "    w:wait_closed()\n"
            "  end\n"
            "  return 'ok'\n"
            "end)\n"},
    /* writes the socket cannot take at once: queued, completed in on_written */
    {"deferred", "return asyncio.run(function()\n"
                 "  local t <close> = asyncio.timeout(TIMEOUT)\n"
                 "  local chunk = string.rep('x', 1 << 20)\n"
                 "  local server <close> = asyncio.start_server(function(r, w)\n"
                 "    for _ = 1, 4 do w:write(chunk) end\n"
                 "    w:drain()\n"
                 "    w:close()\n"
                 "  end, '127.0.0.1', 0)\n"
                 "  local port = server.sockets[1]:getsockname()[2]\n"
                 "  local r, w <close> = asyncio.open_connection('127.0.0.1', port)\n"
                 "  assert(#r:readexactly(4 << 20) == 4 << 20)\n"
                 "  w:close()\n"
                 "  w:wait_closed()\n"
                 "  return 'ok'\n"
                 "end)\n"},
    /* Lua protocols: data_received under on_read's own lua_pcall, and one
     * that raises (reported, its connection closed with the error) */
    {"protocol",
     "return asyncio.run(function()\n"
     "  local t <close> = asyncio.timeout(TIMEOUT)\n"
     "  local loop = asyncio.get_running_loop()\n"
     "  local reports = 0\n"
     "  loop:set_exception_handler(function() reports = reports + 1 end)\n"
     "  local Echo = {}\n"
     "  Echo.__index = Echo\n"
     "  function Echo:connection_made(tp) self.tp = tp end\n"
     "  function Echo:data_received(d)\n"
     "    if d:find('boom', 1, true) then error('boom') end\n"
     "    self.tp:write(d)\n"
     "  end\n"
     "  local server <close> = loop:create_server(function() return setmetatable({}, Echo) end,\n"
     "    '127.0.0.1', 0)\n"
     "  local port = server.sockets[1]:getsockname()[2]\n"
     "  local clients = {}\n"
     "  local _ <close> = setmetatable({}, {__close = function()\n"
     "    for _, tp in ipairs(clients) do tp:close() end\n"
     "  end})\n"
     "  local function send(msg)\n"
     "    local got, lost = {}, loop:create_future()\n"
     "    local tp = loop:create_connection(function() return {\n"
     "      data_received = function(_, d) got[#got + 1] = d end,\n"
     "      connection_lost = function(_, e) lost:set_result(e) end,\n"
     "    } end, '127.0.0.1', port)\n"
     "    clients[#clients + 1] = tp\n"
     "    tp:write(msg)\n"
     "    return tp, got, lost\n"
     "  end\n"
     "  local tp, got = send('hello')\n"
     "  while table.concat(got) ~= 'hello' do asyncio.sleep(0.001) end\n"
     "  tp:close()\n"
     "  local _, _, lost = send('boom')\n"
     "  lost:await()\n"
     "  assert(reports == 1)\n"
     "  return 'ok'\n"
     "end)\n"},
    {"tls", "return asyncio.run(function()\n"
            "  local t <close> = asyncio.timeout(TIMEOUT)\n"
            "  local sctx = asyncio.ssl.create_default_context('server')\n"
            "  sctx:load_cert_chain(CERT, KEY)\n"
            "  local cctx = asyncio.ssl.create_default_context()\n"
            "  cctx:load_verify_locations(CERT)\n"
            "  local server <close> = asyncio.start_server(function(r, w)\n"
            "    w:write(r:readline())\n"
            "    w:close()\n"
            "  end, '127.0.0.1', 0, {ssl = sctx, ssl_shutdown_timeout = SSL_SHUTDOWN_TIMEOUT})\n"
            "  local port = server.sockets[1]:getsockname()[2]\n"
            "  local r, w = asyncio.open_connection('127.0.0.1', port,\n"
            "    {ssl = cctx, server_hostname = 'localhost'})\n"
            "  w:write('secret\\n')\n"
            "  assert(r:readline() == 'secret\\n')\n"
            "  w:close()\n"
            "  w:wait_closed()\n"
            "  return 'ok'\n"
            "end)\n"},
    /* a client that never starts its handshake: the server's handshake
     * timeout, a C timer, aborts the connection */
    {"tls_timeout",
     "return asyncio.run(function()\n"
     "  local t <close> = asyncio.timeout(TIMEOUT)\n"
     "  local sctx = asyncio.ssl.create_default_context('server')\n"
     "  sctx:load_cert_chain(CERT, KEY)\n"
     "  local server <close> = asyncio.start_server(function() end, '127.0.0.1', 0,\n"
     "    {ssl = sctx, ssl_handshake_timeout = 0.02})\n"
     "  local port = server.sockets[1]:getsockname()[2]\n"
     "  local r, w <close> = asyncio.open_connection('127.0.0.1', port)\n"
     "  local ok, data = pcall(r.read, r)\n"
     "  assert(not ok or data == '')\n"
     "  return 'ok'\n"
     "end)\n"},
    {"refused", "return asyncio.run(function()\n"
                "  local t <close> = asyncio.timeout(TIMEOUT)\n"
                "  local server = asyncio.start_server(function() end, '127.0.0.1', 0)\n"
                "  local port = server.sockets[1]:getsockname()[2]\n"
                "  server:close()\n"
                "  server:wait_closed()\n"
                "  local ok, err = pcall(asyncio.open_connection, '127.0.0.1', port)\n"
                "  assert(not ok and asyncio.isinstance(err, asyncio.ConnectionRefusedError))\n"
                "  ok, err = pcall(asyncio.open_unix_connection, SOCK_PATH .. '.missing')\n"
                "  assert(not ok)\n"
                "  return 'ok'\n"
                "end)\n"},
    {"udp", "return asyncio.run(function()\n"
            "  local t <close> = asyncio.timeout(TIMEOUT)\n"
            "  local loop = asyncio.get_running_loop()\n"
            "  local got = loop:create_future()\n"
            "  local server = loop:create_datagram_endpoint(function() return {\n"
            "    datagram_received = function(_, data) if not got:done() then got:set_result(data) "
            "end end,\n"
            "  } end, {local_addr = {'127.0.0.1', 0}})\n"
            "  local addr = server:get_extra_info('sockname')\n"
            "  local client = loop:create_datagram_endpoint(function() return {} end,\n"
            "    {remote_addr = addr})\n"
            "  client:sendto('ping')\n"
            "  assert(got:await() == 'ping')\n"
            "  client:close()\n"
            "  server:close()\n"
            "  return 'ok'\n"
            "end)\n"},
    /* children: pipes both ways, a shell pipeline (stderr into stdout), a
     * few exits waited for (the exit comes through the loop's pidfd set),
     * one by two tasks, a child terminated, two through a
     * subprocess protocol (process_exited, from the exit future), the
     * second reaped by someone else (REAP) before the loop hears its exit:
     * the exit future then fails with an OSError made in the pidfd's
     * callback */
    {"process",
     "return asyncio.run(function()\n"
     "  local t <close> = asyncio.timeout(TIMEOUT)\n"
     "  local loop = asyncio.get_running_loop()\n"
     "  local PIPE = asyncio.subprocess.PIPE\n"
     "  local p = asyncio.create_subprocess_exec({'cat'}, {stdin = PIPE, stdout = PIPE})\n"
     "  assert(p:communicate('hello') == 'hello' and p.returncode == 0)\n"
     "  local q = asyncio.create_subprocess_shell('echo a | tr a b; echo e >&2; exit 3',\n"
     "    {stdout = PIPE, stderr = asyncio.subprocess.STDOUT})\n"
     "  assert(q.stdout:read() == 'b\\ne\\n' and q:wait() == 3)\n"
     "  local ps = {}\n"
     "  for i = 1, 3 do ps[i] = asyncio.create_subprocess_exec({'sh', '-c', 'exit ' .. i}) "
     "end\n"
     "  local second = asyncio.create_task(ps[1].wait, ps[1])\n"
     "  for i = 3, 1, -1 do assert(ps[i]:wait() == i) end\n"
     "  assert(second:await() == 1)\n"
     "  local s = asyncio.create_subprocess_exec({'sleep', '10'})\n"
     "  s:terminate()\n"
     "  assert(s:wait() == -15)\n"
     "  local exited = loop:create_future()\n"
     "  local tr = loop:subprocess_exec(function() return {\n"
     "    process_exited = function() exited:set_result(true) end,\n"
     "  } end, {'true'})\n"
     "  assert(exited:await())\n"
     "  tr:close()\n"
     "  local lost = loop:create_future()\n"
     "  tr = loop:subprocess_exec(function() return {\n"
     "    process_exited = function() lost:set_result(true) end,\n"
     "  } end, {'sleep', '10'})\n"
     "  REAP(tr:get_pid())\n"
     "  assert(lost:await() and tr:get_returncode() == 255)\n"
     "  tr:close()\n"
     "  return 'ok'\n"
     "end)\n"},
    /* add_writer / add_reader callbacks on a FIFO (two handles, both
     * opened read-write so neither open blocks), and a task parked on a
     * socketpair by sock_recv */
    {"poll", "return asyncio.run(function()\n"
             "  local t <close> = asyncio.timeout(TIMEOUT)\n"
             "  local loop = asyncio.get_running_loop()\n"
             "  local rf = assert(io.open(FIFO_PATH, 'r+'))\n"
             "  local wf = assert(io.open(FIFO_PATH, 'r+'))\n"
             "  local got = loop:create_future()\n"
             "  loop:add_reader(rf, function(n)\n"
             "    local s = rf:read(n)\n"
             "    loop:remove_reader(rf)\n"
             "    got:set_result(s)\n"
             "  end, 4)\n"
             "  loop:add_writer(wf, function()\n"
             "    wf:write('ping')\n"
             "    wf:flush()\n"
             "    loop:remove_writer(wf)\n"
             "  end)\n"
             "  assert(got:await() == 'ping')\n"
             "  rf:close()\n"
             "  wf:close()\n"
             "  local a, b = asyncio.socketpair()\n"
             "  local recv = asyncio.create_task(function() return loop:sock_recv(b, 10) end)\n"
             "  asyncio.sleep(0)\n"
             "  loop:sock_sendall(a, 'pong')\n"
             "  assert(recv:await() == 'pong')\n"
             "  local big = string.rep('y', 1 << 20)\n"
             "  local send = asyncio.create_task(function() return loop:sock_sendall(a, big) end)\n"
             "  local n = 0\n"
             "  while n < #big do n = n + #loop:sock_recv(b, 1 << 18) end\n"
             "  send:await()\n"
             "  asyncio.socket.close(a)\n"
             "  asyncio.socket.close(b)\n"
             "  return 'ok'\n"
             "end)\n"},
    /* SIGUSR1 handlers (one replaced by another) fed by kill(getpid()) */
    {"signal", "return asyncio.run(function()\n"
               "  local t <close> = asyncio.timeout(TIMEOUT)\n"
               "  local loop = asyncio.get_running_loop()\n"
               "  local n, ev = 0, asyncio.Event()\n"
               "  loop:add_signal_handler('SIGUSR1', error, 'replaced')\n"
               "  loop:add_signal_handler('SIGUSR1', function(x) n = n + x; ev:set() end, 1)\n"
               "  for i = 1, 3 do\n"
               "    ev:clear()\n"
               "    KILL_SELF()\n"
               "    ev:wait()\n"
               "  end\n"
               "  assert(n == 3)\n"
               "  assert(loop:remove_signal_handler('SIGUSR1'))\n"
               "  return 'ok'\n"
               "end)\n"},
};

#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

/* After a faulted run, unarmed: a new loop must run to completion. */
static const char *after_code = "return asyncio.run(function()\n"
                                "  local t = asyncio.create_task(asyncio.sleep, 0.001, 7)\n"
                                "  return t:await()\n"
                                "end)\n";

/* ---- one run, in a child ------------------------------------------------ */

typedef struct {
  int status;        /* lua_pcall's */
  int injected;      /* the failure happened */
  int result_ok;     /* status OK and the result was "ok" */
  int after_ok;      /* the loop ran again afterwards */
  long long growths; /* growths while armed */
  size_t live_after; /* bytes the allocator still held after lua_close */
  char message[200]; /* the error, when there was one */
} run_result;

static const scenario *current;
static long long current_n;
static long long clean_growths; /* of the current scenario's run without faults */

static int on_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC in %s at N=%lld: %s\n", current->name, current_n, msg ? msg : "?");
  fflush(stderr);
  abort();
  return 0;
}

static const char *cert_path, *key_path, *sock_path, *fifo_path;

/* Where a child is, for the report of a hang. */
static const char *volatile phase = "start";

static void on_alarm(int sig) {
  char msg[160];
  int len = snprintf(msg, sizeof msg, "# %s N=%lld: hang in %s\n", current->name, current_n,
                     (const char *)phase);
  (void)sig;
  if (write(2, msg, (size_t)len) < 0) _exit(4);
  abort();
}

/* KILL_SELF(): SIGUSR1 to this process (the forked child running the
 * scenario), caught by libuv's handler before kill returns */
static int kill_self(lua_State *L) {
  (void)L;
  kill(getpid(), SIGUSR1);
  return 0;
}

/* REAP(pid): kills the child and reaps it as a host's own waitpid would;
 * the loop then finds its pidfd readable and nothing left to reap */
static int reap(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int status;
  kill(pid, SIGKILL);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return 0;
}

static lua_State *open_state(void) {
  lua_State *L = lua_newstate(fault_realloc, &fa);
  assert(L != NULL);
  lua_atpanic(L, on_panic);
  harness_open(L);
  lua_pushstring(L, cert_path);
  lua_setglobal(L, "CERT");
  lua_pushstring(L, key_path);
  lua_setglobal(L, "KEY");
  lua_pushstring(L, sock_path);
  lua_setglobal(L, "SOCK_PATH");
  lua_pushstring(L, fifo_path);
  lua_setglobal(L, "FIFO_PATH");
  lua_pushcfunction(L, kill_self);
  lua_setglobal(L, "KILL_SELF");
  lua_pushcfunction(L, reap);
  lua_setglobal(L, "REAP");
  return L;
}

static run_result run_child(lua_State *L, long long n) {
  run_result r;
  const char *s;
  int faulted;
  memset(&r, 0, sizeof r);
  signal(SIGALRM, on_alarm);
  alarm(getenv("ASYNCIO_FAULT_ALARM") ? (unsigned)atoi(getenv("ASYNCIO_FAULT_ALARM"))
                                      : RUN_ALARM_SECONDS);
  phase = "the scenario";
  if (luaL_loadbufferx(L, current->code, strlen(current->code), current->name, "t") != LUA_OK) {
    fprintf(stderr, "%s does not compile: %s\n", current->name, lua_tostring(L, -1));
    abort();
  }
  faulted = n >= 0 && n < clean_growths;
  lua_pushnumber(L, faulted ? FAULTED_TIMEOUT : CLEAN_TIMEOUT);
  lua_setglobal(L, "TIMEOUT");
  if (faulted)
    lua_pushnumber(L, FAULTED_SSL_SHUTDOWN_TIMEOUT);
  else
    lua_pushnil(L);
  lua_setglobal(L, "SSL_SHUTDOWN_TIMEOUT");
  fa.growths = 0;
  fa.injected = 0;
  fa.countdown = n < 0 ? 1LL << 60 : n; /* a counting run never reaches its failure */
  r.status = lua_pcall(L, 0, 1, 0);
  fa.countdown = -1;
  fa.fail_retry = 0;
  r.injected = fa.injected;
  r.growths = fa.growths;
  s = lua_tostring(L, -1);
  if (r.status == LUA_OK) {
    r.result_ok = s && strcmp(s, "ok") == 0;
  } else {
    s = luaL_tolstring(L, -1, NULL); /* an error object's "Class: message"; no faults now */
    snprintf(r.message, sizeof r.message, "%s", s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  phase = "a collection after the scenario";
  lua_gc(L, LUA_GCCOLLECT);
  phase = "a new loop after the scenario";
  if (luaL_loadstring(L, after_code) == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK)
    r.after_ok = lua_tointeger(L, -1) == 7;
  else if (!r.message[0])
    snprintf(r.message, sizeof r.message, "after: %s", lua_tostring(L, -1));
  else
    fprintf(stderr, "%s N=%lld: the loop after the error: %s\n", current->name, n,
            lua_tostring(L, -1));
  phase = "lua_close";
  lua_close(L);
  r.live_after = fa.live;
  alarm(0);
  return r;
}

/* Forks a child that runs the scenario with the failure at growth n (or
 * counts growths when n < 0); the child's exit status includes LSan's. */
static int run_is_good(const run_result *r, long long n);

static int run_once(lua_State *L, long long n, run_result *out) {
  int fds[2], status;
  pid_t pid;
  ssize_t got;
  if (getenv("ASYNCIO_FAULT_NOFORK") && n >= 0) { /* one run, for a debugger */
    current_n = n;
    *out = run_child(L, n);
    exit(run_is_good(out, n) ? 0 : 1);
  }
  if (pipe(fds) != 0) abort();
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    run_result r;
    close(fds[0]);
    current_n = n;
    r = run_child(L, n);
    if (write(fds[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(3);
    close(fds[1]);
    exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
  }
  close(fds[1]);
  got = read(fds[0], out, sizeof *out);
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0) {
  }
  if (WIFSIGNALED(status)) {
    printf("# %s N=%lld: killed by signal %d%s\n", current->name, n, WTERMSIG(status),
           WTERMSIG(status) == SIGALRM ? " (hang)" : "");
    return 0;
  }
  if (WEXITSTATUS(status) != 0 || got != (ssize_t)sizeof *out) {
    printf("# %s N=%lld: child exit status %d\n", current->name, n, WEXITSTATUS(status));
    return 0;
  }
  return 1;
}

static int run_is_good(const run_result *r, long long n) {
  int good = (r->status == LUA_OK && r->result_ok) ||
             ((r->status == LUA_ERRRUN || r->status == LUA_ERRMEM) && r->injected);
  if (!r->after_ok) good = 0;
  if (r->live_after != 0) good = 0;
  /* a failure is the error of what failed: never the loop's own stop
   * ("error in the event loop"), which would end a server's run */
  if (strstr(r->message, "Event loop stopped before Future completed")) good = 0;
  if (!good)
    printf("# %s N=%lld: status %d injected %d result_ok %d after_ok %d live %zu: %s\n",
           current->name, n, r->status, r->injected, r->result_ok, r->after_ok, r->live_after,
           r->message);
  return good;
}

static const char *mode = ""; /* which allocation the sweep fails: see main */

static void sweep(lua_State *L, const scenario *sc, int full, long long only_n) {
  run_result r;
  long long total, n, stride, runs = 0, errors = 0, absorbed = 0, bad = 0;
  double t0 = harness_now();
  current = sc;
  CHECK(run_once(L, -1, &r) && r.status == LUA_OK && r.result_ok,
        "%s%s: the scenario passes without faults (%lld growths): %s", sc->name, mode, r.growths,
        r.message);
  total = clean_growths = r.growths;
  stride = full || total <= MAX_RUNS ? 1 : (total - DENSE) / (MAX_RUNS - DENSE) + 1;
  for (n = only_n >= 0 ? only_n : 0;; n += n < DENSE ? 1 : stride) {
    int ok = run_once(L, n, &r) && run_is_good(&r, n);
    runs++;
    if (!ok) {
      bad++;
    } else if (r.injected) {
      if (r.status == LUA_OK)
        absorbed++;
      else
        errors++;
    }
    if (only_n >= 0 || (ok && !r.injected) || n > total + 1000) break;
  }
  CHECK(bad == 0,
        "%s%s: %lld runs (N = 0..%lld of %lld growths, every N to %d then stride %lld): "
        "%lld Lua errors, %lld absorbed, %lld bad, %.1f s",
        sc->name, mode, runs, n, total, DENSE, stride, errors, absorbed, bad, harness_now() - t0);
}

/* A throwaway self-signed certificate for localhost / 127.0.0.1. */
static char tmpdir[] = "/tmp/asyncio-faults-XXXXXX";
static char cert_buf[128], key_buf[128], sock_buf[128], fifo_buf[128];

static void make_cert(void) {
  char cmd[1024];
  CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
  snprintf(cert_buf, sizeof cert_buf, "%s/cert.pem", tmpdir);
  snprintf(key_buf, sizeof key_buf, "%s/key.pem", tmpdir);
  snprintf(sock_buf, sizeof sock_buf, "%s/sock", tmpdir);
  snprintf(fifo_buf, sizeof fifo_buf, "%s/fifo", tmpdir);
  CHECK(mkfifo(fifo_buf, 0600) == 0, "mkfifo");
  snprintf(cmd, sizeof cmd,
           "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS openssl req -x509 -newkey ec "
           "-pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost "
           "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s "
           ">/dev/null 2>&1",
           key_buf, cert_buf);
  CHECK(system(cmd) == 0, "openssl makes a throwaway certificate");
  cert_path = cert_buf;
  key_path = key_buf;
  sock_path = sock_buf;
  fifo_path = fifo_buf;
}

static void remove_tmp(void) {
  unlink(cert_buf);
  unlink(key_buf);
  unlink(sock_buf);
  unlink(fifo_buf);
  rmdir(tmpdir);
}

int main(void) {
  const char *only = getenv("ASYNCIO_FAULT_SCENARIO");
  const char *only_n = getenv("ASYNCIO_FAULT_N");
  const char *full = getenv("ASYNCIO_FAULT_FULL");
  int pass, passes = getenv("LUA_ASYNCIO_MALLOC") ? 1 : 2;
  signal(SIGPIPE, SIG_IGN);
  make_cert();
  for (pass = 0; pass < passes; pass++) {
    lua_State *L;
    size_t i;
    if (passes == 2) {
      if (pass == 0)
        setenv("LUA_ASYNCIO_MALLOC", "malloc", 1);
      else
        unsetenv("LUA_ASYNCIO_MALLOC");
      mode = pass == 0 ? "" : " (slab)";
    }
    fa.countdown = -1;
    L = open_state();
    for (i = 0; i < NSCENARIOS; i++) {
      if (only && strcmp(only, scenarios[i].name) != 0) continue;
      sweep(L, &scenarios[i], full && strcmp(full, "1") == 0, only_n ? atoll(only_n) : -1);
    }
    lua_close(L);
    CHECK(fa.live == 0, "the parent's state freed everything%s (%zu bytes left)", mode, fa.live);
  }
  remove_tmp();
  return 0;
}
