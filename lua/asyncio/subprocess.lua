-- Subprocesses: create_subprocess_exec/shell and Process, loop:subprocess_exec
-- and subprocess_shell with subprocess protocols. Spawning and exit watching
-- are C (process.c); the pipes are the stream transports of pipe.c, with a
-- C StreamReader as the protocol of stdout and stderr, so reading a child's
-- output costs no Lua call per chunk.

--- Subprocesses (`asyncio.subprocess`): `create_subprocess_exec`,
-- `create_subprocess_shell`, `Process`, and the loop's protocol forms. Pipes
-- are real pipes. No zombies are left: a child is reaped even when its
-- Process was dropped, and closing the loop settles every child.
-- @module subprocess

--- Values of the `stdin`, `stdout`, `stderr` options: `PIPE`, `STDOUT`
-- (stderr only: into stdout), `DEVNULL`; an fd number or nil (inherit) also do.
-- @table PIPE
-- @python asyncio.subprocess.PIPE, STDOUT, DEVNULL

local core = require "asyncio.core"
local errors = require "asyncio.errors"
local network = require "asyncio.network"
local streams = require "asyncio.streams"
local tasks = require "asyncio.tasks"

local Loop = core.Loop
local argcheck, check_opts = network.argcheck, network.check_opts

-- Python's values
local M = { PIPE = -1, STDOUT = -2, DEVNULL = -3 }

local DEFAULT_LIMIT = 65536

-- Linux's numbers, for send_signal("SIGTERM")
local SIGNALS = {
  SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGKILL = 9, SIGUSR1 = 10, SIGUSR2 = 12, SIGPIPE = 13,
  SIGALRM = 14, SIGTERM = 15, SIGCONT = 18, SIGSTOP = 19, SIGTSTP = 20,
}

local function signum(sig, fname)
  local n = SIGNALS[sig] or sig
  argcheck(math.type(n) == "integer", 1, fname, "signal number or name expected")
  return n
end

local function running_loop(level)
  local loop = core.get_running_loop()
  if loop == nil then error(errors.RuntimeError("no running event loop"), level) end
  return loop
end

-- {NAME = value} -> {"NAME=value", ...}, in a stable order
local function env_list(env, fname)
  if env == nil then return nil end
  argcheck(type(env) == "table", 2, fname, "env must be a table")
  local list = {}
  for k, v in pairs(env) do
    argcheck(type(k) == "string" and (type(v) == "string" or type(v) == "number"), 2, fname,
      "env must map names to strings")
    argcheck(not k:find("=", 1, true), 2, fname, "env names must not contain '='")
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

local function spawn(loop, argv, opts, fname)
  argcheck(type(argv) == "table" and #argv > 0, 1, fname, "non-empty argv list expected")
  return core.spawn(loop, argv, opts, env_list(opts.env, fname))
end

-- The pipe ends spawn gave that no transport took (any of them nil); the
-- child is killed, as its pipes are gone.
local function abandon(handle, fin, fout, ferr)
  for _, fd in pairs { fin, fout, ferr } do pcall(core.close_fd, fd) end
  handle:send_signal(9)
end

-- A pipe end as a started transport with `protocol`; the fd is closed when
-- that fails.
local function open_pipe(loop, fd, mode, protocol)
  local ok, tp = pcall(core.pipe_open, loop, fd, mode)
  if not ok then
    pcall(core.close_fd, fd)
    error(tp, 0)
  end
  tp:_start(protocol)
  return tp
end

-- ---- Process ------------------------------------------------------------------------

--- What `create_subprocess_exec` and `create_subprocess_shell` return. A
-- process whose transport is closed while it runs is killed.
-- @table Process
-- @python asyncio.subprocess.Process
-- @field pid integer
-- @field returncode nil while running; `-signum` when killed by a signal
-- @field stdin a StreamWriter with `stdin = PIPE`, else nil
-- @field stdout a StreamReader with `stdout = PIPE`, else nil
-- @field stderr a StreamReader with `stderr = PIPE`, else nil

local Process = {}
Process.__name = "asyncio.Process"
M.Process = Process

-- returncode is the C handle's, so it is set the moment the exit is known,
-- with no callback per process
function Process.__index(self, k)
  if k == "returncode" then return self._handle:returncode() end
  return Process[k]
end

function Process:__tostring()
  return ("<Process %d%s>"):format(self.pid,
    self.returncode and (" returncode=" .. self.returncode) or "")
end

--- Waits for the exit, even while a grandchild holds the pipes (yields).
-- @function Process:wait
-- @python Process.wait
-- @treturn integer the returncode
-- @raise RuntimeError outside a task
function Process:wait()
  return self._handle:wait()
end

--- Sends a signal (nothing once the child is reaped).
-- @function Process:send_signal
-- @python Process.send_signal
-- @param sig a number or a name such as `"SIGTERM"`
function Process:send_signal(sig)
  self._handle:send_signal(signum(sig, "send_signal"))
end

--- Sends SIGTERM.
-- @function Process:terminate
-- @python Process.terminate
function Process:terminate() self._handle:send_signal(15) end

--- Sends SIGKILL.
-- @function Process:kill
-- @python Process.kill
function Process:kill() self._handle:send_signal(9) end

-- Reads a StreamReader to EOF into `into` (a list), in a task of its own:
-- a cancelled communicate() leaves it running, and the next one finds all
-- that was read.
local function drain_to(loop, reader, into)
  return loop:create_task(function()
    while true do
      local data = reader:read(65536)
      if data == "" then return end
      into[#into + 1] = data
    end
  end)
end

local function feed(loop, writer, input)
  return loop:create_task(function()
    if input ~= nil and #input > 0 then
      writer:write(input)
      -- a child that exits without reading its input is no error (Python)
      local ok, err = pcall(writer.drain, writer)
      if not ok and not errors.isinstance(err, errors.ConnectionError) then error(err, 0) end
    end
    writer:close()
  end)
end

--- Writes `input` and closes stdin, reads stdout and stderr to EOF, waits
-- for the exit (yields). Cancelled, it loses nothing: the next call returns
-- what was read.
-- @function Process:communicate
-- @python Process.communicate
-- @tparam[opt] string input
-- @treturn ?string stdout_data nil when stdout is not a pipe
-- @treturn ?string stderr_data
-- @raise RuntimeError outside a task
function Process:communicate(input)
  argcheck(input == nil or type(input) == "string", 1, "communicate", "string expected")
  local c = self._comm
  if not c then
    local loop = self._loop
    if input ~= nil and not self.stdin then
      error(errors.ValueError("communicate(input) needs stdin = PIPE"), 2)
    end
    c = { out = {}, err = {}, jobs = {} }
    if self.stdin then c.jobs[#c.jobs + 1] = feed(loop, self.stdin, input) end
    if self.stdout then c.jobs[#c.jobs + 1] = drain_to(loop, self.stdout, c.out) end
    if self.stderr then c.jobs[#c.jobs + 1] = drain_to(loop, self.stderr, c.err) end
    self._comm = c
  end
  for _, job in ipairs(c.jobs) do tasks.shield(job):await() end
  self:wait()
  return self.stdout and table.concat(c.out) or nil, self.stderr and table.concat(c.err) or nil
end

local function new_process(loop, opts, handle, pid, fin, fout, ferr)
  local limit = opts.limit or DEFAULT_LIMIT
  local p = setmetatable({ pid = pid, _handle = handle, _loop = loop }, Process)
  if not (fin or fout or ferr) then return p end
  local ok, err = pcall(function()
    if fin then
      local r = streams.StreamReader(limit, loop) -- drain's flow control and loss
      p.stdin = streams.new_writer(open_pipe(loop, fin, "w", r), r)
      fin = nil
    end
    if fout then
      p.stdout = streams.StreamReader(limit, loop)
      open_pipe(loop, fout, "r", p.stdout)
      fout = nil
    end
    if ferr then
      p.stderr = streams.StreamReader(limit, loop)
      open_pipe(loop, ferr, "r", p.stderr)
      ferr = nil
    end
  end)
  if not ok then
    abandon(handle, fin, fout, ferr)
    error(err, 0)
  end
  return p
end

--- Starts `argv[1]` with the arguments `argv[2..]` (yields).
-- @function create_subprocess_exec
-- @python asyncio.create_subprocess_exec
-- @tparam {string,...} argv
-- @tparam[opt] table opts `stdin`, `stdout`, `stderr`, `cwd`, `env`, `limit`, `close_fds` (true), `pass_fds`, `start_new_session`, `process_group`, `umask`
-- @treturn Process
-- @raise OSError (ENOENT, ...); RuntimeError with no running loop
function M.create_subprocess_exec(argv, opts)
  opts = check_opts(opts, 2, "create_subprocess_exec")
  local loop = running_loop(2)
  return new_process(loop, opts, spawn(loop, argv, opts, "create_subprocess_exec"))
end

--- Runs `cmd` with `/bin/sh -c` (yields).
-- @function create_subprocess_shell
-- @python asyncio.create_subprocess_shell
-- @tparam string cmd
-- @tparam[opt] table opts as `create_subprocess_exec`'s
-- @treturn Process
-- @raise OSError; RuntimeError with no running loop
function M.create_subprocess_shell(cmd, opts)
  argcheck(type(cmd) == "string", 1, "create_subprocess_shell", "command string expected")
  opts = check_opts(opts, 2, "create_subprocess_shell")
  local loop = running_loop(2)
  return new_process(loop, opts, spawn(loop, { "/bin/sh", "-c", cmd }, opts,
    "create_subprocess_shell"))
end

-- ---- subprocess protocols -------------------------------------------------------------

local SubprocessTransport = {}
SubprocessTransport.__index = SubprocessTransport
SubprocessTransport.__name = "asyncio.SubprocessTransport"
M.SubprocessTransport = SubprocessTransport

--- The child's pid.
-- @function SubprocessTransport:get_pid
-- @python SubprocessTransport.get_pid
-- @treturn integer
function SubprocessTransport:get_pid() return self._pid end

--- The exit status, nil while running.
-- @function SubprocessTransport:get_returncode
-- @python SubprocessTransport.get_returncode
-- @treturn ?integer
function SubprocessTransport:get_returncode() return self._returncode end

--- The transport of pipe `fd` (0, 1, 2), or nil.
-- @function SubprocessTransport:get_pipe_transport
-- @python SubprocessTransport.get_pipe_transport
-- @tparam integer fd
-- @treturn ?Transport
function SubprocessTransport:get_pipe_transport(fd) return self._pipes[fd] end

--- Whether it is closed.
-- @function SubprocessTransport:is_closing
-- @python BaseTransport.is_closing
-- @treturn boolean
function SubprocessTransport:is_closing() return self._closed end

--- Sends a signal.
-- @function SubprocessTransport:send_signal
-- @python SubprocessTransport.send_signal
-- @param sig a number or a name
function SubprocessTransport:send_signal(sig)
  self._handle:send_signal(signum(sig, "send_signal"))
end

--- Sends SIGTERM.
-- @function SubprocessTransport:terminate
-- @python SubprocessTransport.terminate
function SubprocessTransport:terminate() self._handle:send_signal(15) end

--- Sends SIGKILL.
-- @function SubprocessTransport:kill
-- @python SubprocessTransport.kill
function SubprocessTransport:kill() self._handle:send_signal(9) end

--- Closes the pipes; a child still running is killed.
-- @function SubprocessTransport:close
-- @python BaseTransport.close
function SubprocessTransport:close()
  if self._closed then return end
  self._closed = true
  for _, tp in pairs(self._pipes) do tp:close() end
  if self._returncode == nil then self._handle:send_signal(9) end
end

function SubprocessTransport:_call(name, ...)
  local fn = self._protocol[name]
  if not fn then return end
  local ok, err = pcall(fn, self._protocol, ...)
  if not ok then
    self._loop:call_exception_handler { message = "Exception in protocol." .. name .. "() call",
      exception = err, protocol = self._protocol, transport = self }
  end
end

-- connection_lost once the child has exited and every pipe is closed
function SubprocessTransport:_try_finish()
  if self._finished or self._returncode == nil or self._open_pipes > 0 then return end
  self._finished = true
  self._closed = true
  self:_call("connection_lost", nil)
end

local function pipe_protocol(st, fd)
  local p = {}
  function p.data_received(_, data) st:_call("pipe_data_received", fd, data) end
  function p.connection_lost(_, exc)
    st._open_pipes = st._open_pipes - 1
    st:_call("pipe_connection_lost", fd, exc)
    st:_try_finish()
  end
  return p
end

local function subprocess(loop, factory, argv, opts, fname)
  network.check_callable(factory, fname, "protocol factory (function)")
  local handle, pid, fin, fout, ferr = spawn(loop, argv, opts, fname)
  local ok, protocol = pcall(factory)
  if not ok then
    abandon(handle, fin, fout, ferr)
    error(protocol, 0)
  end
  local st = setmetatable({ _loop = loop, _handle = handle, _pid = pid, _protocol = protocol,
                            _pipes = {}, _open_pipes = 0, _closed = false }, SubprocessTransport)
  st:_call("connection_made", st)
  for fd, pfd in pairs { [0] = fin, [1] = fout, [2] = ferr } do
    st._pipes[fd] = open_pipe(loop, pfd, fd == 0 and "w" or "r", pipe_protocol(st, fd))
    st._open_pipes = st._open_pipes + 1
  end
  -- the exit is heard from the ready queue, after the pipe data this loop
  -- turn read
  handle:exit_future():add_done_callback(function(f)
    if f:cancelled() then return end
    st._returncode = f:exception() == nil and f:result() or 255
    st:_call("process_exited")
    st:_try_finish()
  end)
  return st, protocol
end

--- Starts a child with a SubprocessProtocol (yields).
-- @function Loop:subprocess_exec
-- @python loop.subprocess_exec
-- @tparam function factory
-- @tparam {string,...} argv
-- @tparam[opt] table opts as `create_subprocess_exec`'s
-- @treturn SubprocessTransport transport
-- @treturn table protocol
-- @raise OSError; RuntimeError outside a task
function Loop:subprocess_exec(factory, argv, opts)
  opts = check_opts(opts, 3, "subprocess_exec")
  return subprocess(self, factory, argv, opts, "subprocess_exec")
end

--- Runs `cmd` with `/bin/sh -c` and a SubprocessProtocol (yields).
-- @function Loop:subprocess_shell
-- @python loop.subprocess_shell
-- @tparam function factory
-- @tparam string cmd
-- @tparam[opt] table opts as `create_subprocess_exec`'s
-- @treturn SubprocessTransport transport
-- @treturn table protocol
-- @raise OSError; RuntimeError outside a task
function Loop:subprocess_shell(factory, cmd, opts)
  argcheck(type(cmd) == "string", 2, "subprocess_shell", "command string expected")
  opts = check_opts(opts, 3, "subprocess_shell")
  return subprocess(self, factory, { "/bin/sh", "-c", cmd }, opts, "subprocess_shell")
end

return M
