/* Sockets the program hands the loop by descriptor number: transports and
 * servers opened on them (opts.sock, connect_accepted_socket), the
 * low-level loop:sock_* calls, and the few socket(2) helpers Lua lacks. */

/***
Socket operations on descriptors (all yield).
@module transports
*/

#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listener.h"

/* ---- descriptors -------------------------------------------------------- */

/* A descriptor number at idx: an integer that can name one (not a string
 * that converts to one: a descriptor is no text). */
static int check_fd(lua_State *L, int idx) {
  lua_Integer fd;
  if (!lua_isinteger(L, idx)) luaL_typeerror(L, idx, "descriptor number");
  fd = lua_tointeger(L, idx);
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, idx, "invalid file descriptor");
  return (int)fd;
}

static int raise_errno(lua_State *L, const char *api, int fd) {
  char what[96];
  int err = errno;
  snprintf(what, sizeof what, "%s: file descriptor %d", api, fd);
  return aio_raise_os(L, uv_translate_sys_error(err), what);
}

static const char *type_name(int type) {
  switch (type) {
  case SOCK_STREAM:
    return "stream";
  case SOCK_DGRAM:
    return "datagram";
  case SOCK_SEQPACKET:
    return "seqpacket";
  case SOCK_RAW:
    return "raw";
  default:
    return "packet";
  }
}

int aio_sock_probe(lua_State *L, int fd, const char *api, int type, int family, int listening) {
  struct stat st;
  int got, domain, acc = 0;
  socklen_t len = sizeof got;
  if (fstat(fd, &st) != 0) return raise_errno(L, api, fd);
  if (!S_ISSOCK(st.st_mode)) {
    errno = ENOTSOCK;
    return raise_errno(L, api, fd);
  }
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) != 0) return raise_errno(L, api, fd);
  len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return raise_errno(L, api, fd);
  if (got != type)
    return aio_raise(L, "ValueError",
                     "%s: a %s socket was expected, file descriptor %d is a %s socket", api,
                     type_name(type), fd, type_name(got));
  if (family != AF_UNSPEC
          ? domain != family
          : domain != AF_INET && domain != AF_INET6 && (domain != AF_UNIX || type != SOCK_STREAM))
    return aio_raise(L, "ValueError", "%s: file descriptor %d is a socket of family %d, not %s",
                     api, fd, domain,
                     family == AF_UNIX     ? "AF_UNIX"
                     : type == SOCK_STREAM ? "AF_INET, AF_INET6 or AF_UNIX"
                                           : "AF_INET or AF_INET6");
  len = sizeof acc;
  if (type == SOCK_STREAM && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0)
    return raise_errno(L, api, fd);
  if (acc && !listening)
    return aio_raise(L, "ValueError", "%s: file descriptor %d is a listening socket", api, fd);
  return domain;
}

/* libuv's own check (UV_EEXIST from uv_*_open, uv_poll_init) sees only the
 * fds it is polling: a transport that is paused with nothing to write, or
 * a server that is not serving, would go unnoticed, and two owners of one
 * fd close it twice. So every handle of the loop is asked. */
typedef struct {
  int fd, found;
} fd_search;

static void find_owner(uv_handle_t *h, void *arg) {
  fd_search *s = arg;
  uv_os_fd_t fd;
  /* a closing handle has no fd any more (UV_EBADF); watchers are poll.c's */
  if (h->type != UV_POLL && uv_fileno(h, &fd) == 0 && fd == s->fd) s->found = 1;
}

int aio_fd_owned(aio_loop *lp, int fd) {
  fd_search s;
  s.fd = fd;
  s.found = 0;
  uv_walk(lp->uv, find_owner, &s);
  return s.found;
}

static int opt_family(lua_State *L, int idx) {
  static const char *const names[] = {"any", "unix", NULL};
  return luaL_checkoption(L, idx, "any", names) == 1 ? AF_UNIX : AF_UNSPEC;
}

/* libuv refuses an fd one of its handles has: say which kind of user. */
static int raise_open(lua_State *L, int err, const char *api, int fd) {
  if (err == UV_EEXIST)
    return aio_raise(L, "RuntimeError", "%s: file descriptor %d is already watched by the loop",
                     api, fd);
  errno = -err;
  return raise_errno(L, api, fd);
}

/* Checks fd is a stream socket (a listening one only if `listening`) no
 * handle of the loop has; returns its family. */
static int check_stream(lua_State *L, aio_loop *lp, int fd, const char *api, int listening) {
  int domain;
  aio_loop_check_open(L, lp);
  domain = aio_sock_probe(L, fd, api, SOCK_STREAM, opt_family(L, 4), listening);
  if (aio_fd_owned(lp, fd)) raise_open(L, UV_EEXIST, api, fd);
  return domain;
}

/* Initialises u on lp for the family and opens fd in it: 0, or a libuv
 * error with *inited telling whether u needs closing. */
static int init_open(aio_loop *lp, aio_stream_handle *u, int domain, int fd, int *inited) {
  int err = domain == AF_UNIX ? uv_pipe_init(lp->uv, &u->pipe, 0) : uv_tcp_init(lp->uv, &u->tcp);
  if ((*inited = err == 0) == 0) return err;
  return domain == AF_UNIX ? uv_pipe_open(&u->pipe, fd) : uv_tcp_open(&u->tcp, fd);
}

/* sock_transport(loop, fd, api [, "unix"]) -> Transport over a connected
 * stream socket, not started. From here on the transport owns fd; when this
 * raises, fd is still the caller's. */
static int l_sock_transport(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int fd = check_fd(L, 2), inited, err;
  const char *api = luaL_checkstring(L, 3);
  int domain = check_stream(L, lp, fd, api, 0);
  aio_tp *tp;
  lua_settop(L, 3);
  tp = aio_tp_new(L, lp, domain == AF_UNIX ? AIO_TP_PIPE : AIO_TP_TCP);
  if ((err = init_open(lp, &tp->u, domain, fd, &inited)) != 0) {
    if (inited)
      aio_tp_abandon(L, tp);
    else
      aio_tp_discard(tp);
    return raise_open(L, err, api, fd);
  }
  if (domain != AF_UNIX) uv_tcp_nodelay(&tp->u.tcp, 1);
  return 1;
}

/* sock_listener(loop, fd, api [, "unix"]) -> Listener on a stream socket,
 * bound or listening already (listen() is called again with the server's
 * backlog). A Unix socket's file stays: whoever bound it removes it. */
static int l_sock_listener(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int fd = check_fd(L, 2), inited, err;
  const char *api = luaL_checkstring(L, 3);
  int domain = check_stream(L, lp, fd, api, 1);
  aio_listener *ls;
  lua_settop(L, 3);
  ls = aio_listener_new(L, lp, domain == AF_UNIX ? AIO_TP_PIPE : AIO_TP_TCP);
  if ((err = init_open(lp, &ls->u, domain, fd, &inited)) != 0) {
    if (inited)
      aio_listener_close(L, ls);
    else
      aio_listener_discard(ls);
    return raise_open(L, err, api, fd);
  }
  return 1;
}

/* ---- addresses ------------------------------------------------------------ */

/* {host, port} with a numeric host, or a Unix socket path; returns the
 * length, 0 for an address that does not parse. */
static socklen_t to_addr(lua_State *L, int idx, struct sockaddr_storage *ss) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t n;
    const char *path = lua_tolstring(L, idx, &n);
    luaL_argcheck(L, n < sizeof un->sun_path, idx, "Unix socket path too long");
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    /* a leading NUL is Linux's abstract namespace: its length is exact */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (n && path[0] ? 1 : 0));
  }
  if (!lua_istable(L, idx)) luaL_typeerror(L, idx, "{host, port} or a Unix socket path");
  if (aio_to_sockaddr(L, idx, ss) != 0) return 0;
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static socklen_t check_addr(lua_State *L, int idx, struct sockaddr_storage *ss) {
  socklen_t len = to_addr(L, idx, ss);
  if (!len) luaL_argerror(L, idx, "numeric host expected");
  return len;
}

/* A received address; an unnamed Unix peer is "", none at all (a datagram
 * from a socketpair end) nil. With len 0 nothing of ss was written. */
static void push_addr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len) {
  if (len == 0)
    lua_pushnil(L);
  else if (len <= offsetof(struct sockaddr_un, sun_path) && ss->ss_family == AF_UNIX)
    lua_pushliteral(L, "");
  else
    aio_push_sockaddr(L, (const struct sockaddr *)ss);
}

/* ---- loop:sock_* ------------------------------------------------------------
 * Each call tries its system call at once; when that would block, the task
 * parks on the fd's watcher (poll.c) and retries when woken, with no Future
 * and no allocation. A cancel wakes it: the watcher lets go of the fd, which
 * stays usable, and nothing was read or written by the call that was not
 * returned (sock_sendall excepted, as in Python: what went out went out). */

enum { OP_RECV, OP_RECVFROM, OP_SENDALL, OP_SENDTO, OP_ACCEPT, OP_CONNECT };

typedef struct sockop {
  const char *api;
  int writable; /* the direction it waits for */
  /* n >= 0 results pushed, -1: would block; raises on an error */
  int (*try)(lua_State *L, int fd);
} sockop;

static int op_k(lua_State *L, int status, lua_KContext ctx);

static int would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

/* recv into the loop's receive buffer (one copy, into the string); a bigger
 * request reads into a Lua buffer of its size */
static int try_recv(lua_State *L, int fd, int from) {
  aio_loop *lp = aio_check_loop(L, 1);
  size_t n = (size_t)lua_tointeger(L, 3);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  luaL_Buffer b;
  uv_buf_t buf = uv_buf_init(NULL, 0);
  char *p;
  ssize_t got;
  if (n <= AIO_RBUF_SIZE) {
    aio_loop_rbuf_take(lp, &buf);
    if ((p = buf.base) == NULL) return luaL_error(L, "not enough memory");
  } else {
    p = luaL_buffinitsize(L, &b, n);
  }
  do
    got =
        recvfrom(fd, p, n, MSG_DONTWAIT, from ? (struct sockaddr *)&ss : NULL, from ? &len : NULL);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    int err = errno;
    if (buf.base) aio_loop_rbuf_give(lp, &buf);
    if (would_block(err)) return -1;
    errno = err;
    return raise_errno(L, from ? "sock_recvfrom" : "sock_recv", fd);
  }
  if (buf.base) {
    lua_pushlstring(L, p, (size_t)got);
    aio_loop_rbuf_give(lp, &buf);
  } else {
    luaL_pushresultsize(&b, (size_t)got);
  }
  if (!from) return 1;
  push_addr(L, &ss, len);
  return 2;
}

static int try_recv_only(lua_State *L, int fd) {
  return try_recv(L, fd, 0);
}

static int try_recvfrom(lua_State *L, int fd) {
  return try_recv(L, fd, 1);
}

/* sendall: the bytes sent so far are kept at stack index 4 */
static int try_sendall(lua_State *L, int fd) {
  size_t len, off = (size_t)lua_tointeger(L, 4);
  const char *p = lua_tolstring(L, 3, &len);
  while (off < len) {
    ssize_t n = send(fd, p + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!would_block(errno)) return raise_errno(L, "sock_sendall", fd);
      lua_pushinteger(L, (lua_Integer)off);
      lua_replace(L, 4);
      return -1;
    }
    off += (size_t)n;
  }
  return 0;
}

static int try_sendto(lua_State *L, int fd) {
  struct sockaddr_storage ss;
  socklen_t alen = check_addr(L, 4, &ss);
  size_t len;
  const char *p = lua_tolstring(L, 3, &len);
  ssize_t n;
  do n = sendto(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&ss, alen);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (would_block(errno)) return -1;
    return raise_errno(L, "sock_sendto", fd);
  }
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* The new connection's descriptor is non-blocking and close-on-exec, as
 * Python's sock_accept gives it. */
static int try_accept(lua_State *L, int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int c;
  for (;;) {
    c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (would_block(errno)) return -1;
    return raise_errno(L, "sock_accept", fd);
  }
  lua_pushinteger(L, c);
  push_addr(L, &ss, len);
  return 2;
}

/* Woken once the connect in progress is done: its outcome is SO_ERROR. */
static int try_connect_done(lua_State *L, int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    return raise_errno(L, "sock_connect", fd);
  if (err == EINPROGRESS || err == EALREADY) return -1;
  if (err == 0) {
    /* a spurious wake-up before the handshake is done reports no error */
    struct sockaddr_storage ss;
    socklen_t n = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &n) == 0) return 0;
    if (errno == ENOTCONN) return -1;
    return raise_errno(L, "sock_connect", fd);
  }
  errno = err;
  return raise_errno(L, "sock_connect", fd);
}

static const sockop ops[] = {
    {"sock_recv", 0, try_recv_only},  {"sock_recvfrom", 0, try_recvfrom},
    {"sock_sendall", 1, try_sendall}, {"sock_sendto", 1, try_sendto},
    {"sock_accept", 0, try_accept},   {"sock_connect", 1, try_connect_done},
};

/* Runs op until it is done, parking the task in between. */
static int run_op(lua_State *L, int op, aio_task *t) {
  aio_loop *lp = t->f.loop;
  int top = lua_gettop(L), fd = (int)lua_tointeger(L, 2), n = ops[op].try(L, fd);
  if (n >= 0) {
    aio_fdwatch_unpark(L, lp, fd, ops[op].writable, t);
    return n;
  }
  lua_settop(L, top);
  return aio_task_park(L, t, aio_fdwatch_park(L, lp, fd, ops[op].writable, t, ops[op].api), op,
                       op_k);
}

static int op_k(lua_State *L, int status, lua_KContext ctx) {
  aio_task *t = aio_state_of(L)->running->current;
  (void)status;
  if (t->must_cancel) /* the fd is left as it was, unwatched */
    aio_fdwatch_unpark(L, t->f.loop, (int)lua_tointeger(L, 2), ops[ctx].writable, t);
  aio_task_unparked(L, t);
  return run_op(L, (int)ctx, t);
}

/* Checks loop and fd and finds the task, which every call needs, even one
 * that does not wait: they all yield, as Python's are coroutines. Returns
 * NULL when the call goes through a coroutine of the user's
 * (aio_nested_yield). */
static aio_task *start(lua_State *L, int op, int nargs) {
  aio_loop *lp = aio_check_loop(L, 1);
  aio_task *t;
  (void)check_fd(L, 2);
  aio_loop_check_open(L, lp);
  lua_settop(L, nargs);
  t = aio_current_task(L, lp->S, ops[op].api);
  if (t && t->f.loop != lp)
    aio_raise(L, "RuntimeError", "%s: the task belongs to another loop", ops[op].api);
  return t;
}

static void check_count(lua_State *L, int idx) {
  lua_Integer n = luaL_checkinteger(L, idx);
  luaL_argcheck(L, n >= 0, idx, "negative buffer size");
}

/* loop:sock_recv(fd, n) -> up to n bytes, "" at EOF */

/***
Up to `n` bytes from socket `fd` ("" at EOF).
@function Loop:sock_recv
@python loop.sock_recv
@tparam integer fd
@tparam integer n
@treturn string
@raise OSError; RuntimeError outside a task
*/
static int l_sock_recv(lua_State *L) {
  aio_task *t;
  check_count(L, 3);
  if ((t = start(L, OP_RECV, 3)) == NULL) return aio_nested_yield(L);
  return run_op(L, OP_RECV, t);
}

/* loop:sock_recvfrom(fd, n) -> data, address */

/***
A datagram and its sender.
@function Loop:sock_recvfrom
@python loop.sock_recvfrom
@tparam integer fd
@tparam integer n
@treturn string data
@treturn table addr `{host, port}`
@raise OSError; RuntimeError outside a task
*/
static int l_sock_recvfrom(lua_State *L) {
  aio_task *t;
  check_count(L, 3);
  if ((t = start(L, OP_RECVFROM, 3)) == NULL) return aio_nested_yield(L);
  return run_op(L, OP_RECVFROM, t);
}

/* loop:sock_sendall(fd, data): returns once every byte is sent */

/***
Sends all of `data`.
@function Loop:sock_sendall
@python loop.sock_sendall
@tparam integer fd
@tparam string data
@raise OSError (BrokenPipeError, ...); RuntimeError outside a task
*/
static int l_sock_sendall(lua_State *L) {
  aio_task *t;
  luaL_checkstring(L, 3);
  if ((t = start(L, OP_SENDALL, 3)) == NULL) return aio_nested_yield(L);
  lua_pushinteger(L, 0);
  return run_op(L, OP_SENDALL, t);
}

/* loop:sock_sendto(fd, data, address) -> bytes sent */

/***
Sends a datagram to `addr`.
@function Loop:sock_sendto
@python loop.sock_sendto
@tparam integer fd
@tparam string data
@tparam table addr `{host, port}`
@treturn integer bytes sent
@raise OSError; RuntimeError outside a task
*/
static int l_sock_sendto(lua_State *L) {
  struct sockaddr_storage ss;
  aio_task *t;
  luaL_checkstring(L, 3);
  (void)check_addr(L, 4, &ss);
  if ((t = start(L, OP_SENDTO, 4)) == NULL) return aio_nested_yield(L);
  return run_op(L, OP_SENDTO, t);
}

static int set_nonblocking(lua_State *L, int fd, const char *api) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0))
    return raise_errno(L, api, fd);
  return 0;
}

/* loop:sock_accept(fd) -> connection fd, peer address. accept(2) has no
 * per-call non-blocking flag, so the listening fd is made non-blocking. */

/***
Accepts a connection on listening socket `fd`.
@function Loop:sock_accept
@python loop.sock_accept
@tparam integer fd
@treturn integer the new fd
@treturn table addr `{host, port}`
@raise OSError; RuntimeError outside a task
*/
static int l_sock_accept(lua_State *L) {
  aio_task *t;
  if ((t = start(L, OP_ACCEPT, 2)) == NULL) return aio_nested_yield(L);
  set_nonblocking(L, (int)lua_tointeger(L, 2), "sock_accept");
  return run_op(L, OP_ACCEPT, t);
}

/* loop:_sock_connect(fd, address) with a numeric or Unix address (the Lua
 * sock_connect resolves names first). The fd is made non-blocking: the
 * connect then goes on while the task waits for writability. */
static int l_sock_connect(lua_State *L) {
  struct sockaddr_storage ss;
  socklen_t len;
  aio_task *t;
  int fd;
  len = check_addr(L, 3, &ss);
  if ((t = start(L, OP_CONNECT, 3)) == NULL) return aio_nested_yield(L);
  fd = (int)lua_tointeger(L, 2);
  set_nonblocking(L, fd, "sock_connect");
  if (connect(fd, (struct sockaddr *)&ss, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN)
    return raise_errno(L, "sock_connect", fd);
  return aio_task_park(L, t, aio_fdwatch_park(L, t->f.loop, fd, 1, t, "sock_connect"), OP_CONNECT,
                       op_k);
}

/* ---- socket(2) and friends ---------------------------------------------------
 * Lua has no socket library: these make the descriptors sock_* and opts.sock
 * take, named after Python's socket module. */

static int check_domain(lua_State *L, int idx) {
  static const char *const names[] = {"inet", "inet6", "unix", NULL};
  static const int domains[] = {AF_INET, AF_INET6, AF_UNIX};
  return domains[luaL_checkoption(L, idx, "inet", names)];
}

static int check_type(lua_State *L, int idx) {
  static const char *const names[] = {"stream", "dgram", NULL};
  return luaL_checkoption(L, idx, "stream", names) == 0 ? SOCK_STREAM : SOCK_DGRAM;
}

/* socket.socket([family="inet" [, type="stream"]]) -> fd, non-blocking and
 * close-on-exec */
static int l_socket(lua_State *L) {
  int fd = socket(check_domain(L, 1), check_type(L, 2) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return aio_raise_os(L, uv_translate_sys_error(errno), "socket");
  lua_pushinteger(L, fd);
  return 1;
}

/* socketpair() -> fd1, fd2: a connected pair of Unix stream sockets,
 * close-on-exec and blocking (as Python's), so an end passed to a child
 * with pass_fds works for any program there; sock_* and transports do not
 * need them non-blocking. */
static int l_socketpair(lua_State *L) {
  int sv[2];
  if (socketpair(AF_UNIX, check_type(L, 1) | SOCK_CLOEXEC, 0, sv) != 0)
    return aio_raise_os(L, uv_translate_sys_error(errno), "socketpair");
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

/* The loop's own descriptors (its epoll fd, its transports' and servers')
 * are not the program's to close: libuv would abort on the next poll. */
static void check_not_loops(lua_State *L, int fd) {
  aio_loop *lp;
  for (lp = aio_state_of(L)->loops; lp; lp = lp->next)
    if (!lp->closed && (fd == uv_backend_fd(lp->uv) || aio_fd_owned(lp, fd)))
      aio_raise(L, "RuntimeError", "close: file descriptor %d belongs to an event loop", fd);
}

static int l_close(lua_State *L) {
  int fd = check_fd(L, 1);
  check_not_loops(L, fd);
  /* Linux releases the descriptor even when close reports EINTR: no retry */
  if (close(fd) != 0 && errno != EINTR) return raise_errno(L, "close", fd);
  return 0;
}

static int l_bind(lua_State *L) {
  int fd = check_fd(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = check_addr(L, 2, &ss);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) return raise_errno(L, "bind", fd);
  return 0;
}

static int l_listen(lua_State *L) {
  int fd = check_fd(L, 1);
  lua_Integer backlog = luaL_optinteger(L, 2, 128);
  if (listen(fd, backlog < 0 ? 0 : backlog > 65535 ? 65535 : (int)backlog) != 0)
    return raise_errno(L, "listen", fd);
  return 0;
}

static int name_of(lua_State *L, int peer) {
  int fd = check_fd(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&ss, &len) != 0)
    return raise_errno(L, peer ? "getpeername" : "getsockname", fd);
  push_addr(L, &ss, len);
  return 1;
}

static int l_getsockname(lua_State *L) {
  return name_of(L, 0);
}

static int l_getpeername(lua_State *L) {
  return name_of(L, 1);
}

/* shutdown(fd, "read" | "write" | "both") */
static int l_shutdown(lua_State *L) {
  static const char *const names[] = {"read", "write", "both", NULL};
  static const int how[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  int fd = check_fd(L, 1);
  if (shutdown(fd, how[luaL_checkoption(L, 2, NULL, names)]) != 0)
    return raise_errno(L, "shutdown", fd);
  return 0;
}

void aio_sock_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"sock_recv", l_sock_recv},
                                     {"sock_recvfrom", l_sock_recvfrom},
                                     {"sock_sendall", l_sock_sendall},
                                     {"sock_sendto", l_sock_sendto},
                                     {"sock_accept", l_sock_accept},
                                     {"_sock_connect", l_sock_connect},
                                     {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"sock_transport", l_sock_transport}, {"sock_listener", l_sock_listener}, {NULL, NULL}};
  static const luaL_Reg socket_funcs[] = {{"socket", l_socket},
                                          {"socketpair", l_socketpair},
                                          {"close", l_close},
                                          {"bind", l_bind},
                                          {"listen", l_listen},
                                          {"getsockname", l_getsockname},
                                          {"getpeername", l_getpeername},
                                          {"shutdown", l_shutdown},
                                          {NULL, NULL}};
  lua_getfield(L, -1, "Loop");
  aio_setfuncs(L, S, methods);
  lua_pop(L, 1);
  aio_setfuncs(L, S, funcs);
  lua_newtable(L);
  aio_setfuncs(L, S, socket_funcs);
  lua_setfield(L, -2, "socket");
}
