/* Listener: a listening TCP or Unix socket (what Server.sockets lists). Each
 * accepted connection becomes a Transport handed to a Lua callback, which
 * gives it its protocol. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listener.h"

static aio_listener *check_listener(lua_State *L, int idx) {
  aio_listener **b = aio_checkudata(L, idx, AIO_T_LISTENER, AIO_T_LISTENER, "Listener");
  if (!*b) luaL_argerror(L, idx, "listener is gone");
  return *b;
}

static void free_if_done(aio_listener *ls) {
  if (ls->handle_closed && !ls->box) {
    free(ls->path);
    free(ls);
  }
}

static void on_closed(uv_handle_t *h) {
  aio_listener *ls = h->data;
  aio_loop *lp = ls->lp;
  ls->handle_closed = 1;
  free_if_done(ls);
  aio_loop_handle_closed(lp);
}

/* A Unix socket's file goes with its server, unless another has replaced it. */
static void unlink_path(aio_listener *ls) {
  struct stat st;
  if (ls->path && stat(ls->path, &st) == 0 && st.st_ino == ls->ino && st.st_dev == ls->dev)
    unlink(ls->path);
}

void aio_listener_close(lua_State *L, aio_listener *ls) {
  if (ls->closed) return;
  ls->closed = 1;
  unlink_path(ls);
  aio_closable_unlink(&ls->cl);
  aio_loop_remove_timer(ls->lp, &ls->retry.timer);
  if (L && ls->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->ref);
  ls->ref = LUA_NOREF;
  ls->lp->nhandles_open++;
  uv_close(&ls->u.h, on_closed);
}

static void on_loop_close(aio_closable *c) {
  aio_listener *ls = (aio_listener *)((char *)c - offsetof(aio_listener, cl));
  aio_listener_close(aio_loop_thread(ls->lp), ls);
}
static const aio_closable_type tcp_type = {on_loop_close, "server", "<TCP server>", NULL};
static const aio_closable_type unix_type = {on_loop_close, "server", "<Unix server>", NULL};

aio_listener *aio_listener_new(lua_State *L, aio_loop *lp, int kind) {
  aio_listener **b = lua_newuserdatauv(L, sizeof *b, 1);
  aio_listener *ls;
  *b = NULL;
  aio_setmetatable(L, lp->S, AIO_T_LISTENER);
  ls = calloc(1, sizeof *ls);
  if (!ls) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  *b = ls;
  ls->box = b;
  ls->lp = lp;
  ls->kind = (uint8_t)kind;
  ls->ref = LUA_NOREF;
  ls->u.h.data = ls;
  aio_closable_link(lp, &ls->cl, kind == AIO_TP_TCP ? &tcp_type : &unix_type);
  aio_debug_note_closable(L, lp, &ls->cl);
  return ls;
}

void aio_listener_discard(aio_listener *ls) {
  aio_closable_unlink(&ls->cl);
  ls->closed = ls->handle_closed = 1;
}

/* Pushes a new Transport for the connection waiting on ls, or returns a
 * libuv error. *accepted is set once the connection is off the backlog. */
static int accept_one(lua_State *L, aio_listener *ls, aio_tp **accepted) {
  aio_tp *tp = aio_tp_new(L, ls->lp, ls->kind);
  int err;
  /* not where the loop happened to be: whose connection it is */
  if (ls->cl.origin)
    aio_debug_set_origin(&tp->cl, "a connection of the server made at", ls->cl.origin);
  err = ls->kind == AIO_TP_TCP ? uv_tcp_init(ls->lp->uv, &tp->u.tcp)
                               : uv_pipe_init(ls->lp->uv, &tp->u.pipe, 0);
  if (err) {
    aio_tp_discard(tp);
    lua_pop(L, 1);
    return err;
  }
  if ((err = uv_accept(&ls->u.s, &tp->u.s)) != 0) {
    aio_tp_abandon(L, tp);
    lua_pop(L, 1);
    return err;
  }
  *accepted = tp;
  if (ls->kind == AIO_TP_TCP) uv_tcp_nodelay(&tp->u.tcp, 1);
  return 0;
}

/* Seconds between looks for a free descriptor while starved: Python retries
 * accept() after 1 s; a look here is one fcntl, so ten a second cost nothing. */
#define ACCEPT_RETRY_DELAY 0.1

/* 0, or the errno (EMFILE, ENFILE) of a process with no descriptor left. */
static int descriptor_shortage(aio_listener *ls) {
  uv_os_fd_t lfd;
  int fd;
  if (uv_fileno(&ls->u.h, &lfd) != 0) return 0;
  fd = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno == EMFILE || errno == ENFILE ? errno : 0;
}

static void report_accept_error(lua_State *L, aio_loop *lp, int ls_idx, int status,
                                const char *message) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  aio_push_os_error(L, status, "accept");
  lua_setfield(L, -2, "exception");
  lua_pushvalue(L, ls_idx);
  lua_setfield(L, -2, "listener");
  aio_loop_call_exception_handler(L, lp, -1);
}

static void on_connection(uv_stream_t *s, int status);

static void on_retry(lua_State *L, aio_ctimer *ct) {
  aio_listener *ls = (aio_listener *)((char *)ct - offsetof(aio_listener, retry));
  (void)L;
  if (descriptor_shortage(ls)) {
    aio_loop_add_ctimer(ls->lp, &ls->retry, ACCEPT_RETRY_DELAY);
    return;
  }
  on_connection(&ls->u.s, 0);
}

/* What on_connection did so far, for its clean-up after an error. */
typedef struct {
  aio_listener *ls;
  int status;
  int shortage; /* the errno of descriptor_shortage() */
  aio_tp *tp;   /* the accepted connection */
} accepting;

/* on_connection's work, under lua_pcall: a memory error must not unwind
 * through libuv's frames. A connection whose callback failed is closed,
 * or the client would wait for a server that never answers (and the
 * Server's wait_closed for a connection that never ends). */
static int connection_protected(lua_State *L) {
  accepting *a = lua_touserdata(L, 1);
  aio_listener *ls = a->ls;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->ref); /* 2 */
  if (a->shortage) {
    /* the connection stays in libuv: no uv_accept */
    ls->retry.cb = on_retry;
    aio_loop_add_ctimer(ls->lp, &ls->retry, ACCEPT_RETRY_DELAY);
    if (!ls->starved)
      report_accept_error(L, ls->lp, 2, uv_translate_sys_error(a->shortage),
                          "socket.accept() out of system resource");
    ls->starved = 1;
    return 0;
  }
  ls->starved = 0;
  if (a->status == 0) a->status = accept_one(L, ls, &a->tp);
  if (a->status == 0) {
    lua_getiuservalue(L, 2, 1);
    lua_pushvalue(L, 3);
    if (aio_pcall_reporting(L, ls->lp, 4, 0, "connection callback", NULL, "listener", 2)) {
      if (a->tp->ref == LUA_NOREF)
        aio_tp_abandon(L, a->tp);
      else
        aio_tp_force_close(L, a->tp, 4);
    }
  } else if (a->status != UV_EAGAIN) {
    /* failures libuv has no fallback for: report and keep listening, as Python does */
    report_accept_error(L, ls->lp, 2, a->status, "socket.accept() failed");
  }
  return 0;
}

static void on_dropped(uv_handle_t *h) {
  free(h);
}

/* The connection could not be given a Transport: it is taken off the
 * backlog and closed, or libuv would wait for that accept before it
 * accepted anything else. */
static void drop_pending(aio_listener *ls) {
  uv_stream_t *s = malloc(ls->kind == AIO_TP_TCP ? sizeof(uv_tcp_t) : sizeof(uv_pipe_t));
  int err;
  if (!s) return;
  err = ls->kind == AIO_TP_TCP ? uv_tcp_init(ls->lp->uv, (uv_tcp_t *)s)
                               : uv_pipe_init(ls->lp->uv, (uv_pipe_t *)s, 0);
  if (err) {
    free(s);
    return;
  }
  uv_accept(&ls->u.s, s);
  uv_close((uv_handle_t *)s, on_dropped);
}

/* libuv has accepted a connection (status 0) before this runs. Were it handed
 * on when that took the last descriptor, libuv's next accept would fail and
 * its fallback would accept and close every queued peer. So the connection
 * stays in libuv, which stops listening until it is taken, and the backlog
 * waits for a descriptor to come free, reported once per shortage. */
static void on_connection(uv_stream_t *s, int status) {
  aio_listener *ls = s->data;
  aio_loop *lp = ls->lp;
  accepting a = {ls, status, 0, NULL};
  lua_State *L;
  int top, entered;
  if (ls->closed || lp->closed) return;
  if (status == 0) a.shortage = descriptor_shortage(ls);
  entered = aio_loop_enter(lp);
  L = aio_loop_thread(lp);
  top = lua_gettop(L);
  lua_pushcfunction(L, connection_protected);
  lua_pushlightuserdata(L, &a);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_writestringerror("asyncio: error accepting a connection: %s\n", lua_tostring(L, -1));
    if (a.tp)
      aio_tp_abandon(L, a.tp);
    else if (a.status == 0 && !a.shortage)
      drop_pending(ls);
  }
  lua_settop(L, top);
  aio_loop_leave(lp, entered);
}

/* listen(backlog, on_connection(transport)) */
static int l_listen(lua_State *L) {
  aio_listener *ls = check_listener(L, 1);
  lua_Integer backlog = luaL_optinteger(L, 2, 100);
  int err;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (ls->closed) return aio_raise(L, "RuntimeError", "listener is closed");
  if (ls->listening) return 0;
  if (backlog < 1) backlog = 1;
  if (backlog > 65535) backlog = 65535;
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 1, 1);
  if ((err = uv_listen(&ls->u.s, (int)backlog, on_connection)) != 0)
    return aio_raise_os(L, err, "listen");
  ls->listening = 1;
  lua_pushvalue(L, 1);
  ls->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int l_close(lua_State *L) {
  aio_listener_close(L, check_listener(L, 1));
  return 0;
}

static int l_getsockname(lua_State *L) {
  aio_listener *ls = check_listener(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss, err;
  if (ls->closed) return aio_raise_os(L, UV_EBADF, "getsockname");
  if (ls->kind == AIO_TP_PIPE) {
    char path[1024];
    size_t n = sizeof path;
    if ((err = uv_pipe_getsockname(&ls->u.pipe, path, &n)) != 0)
      return aio_raise_os(L, err, "getsockname");
    lua_pushlstring(L, path, n);
    return 1;
  }
  if ((err = uv_tcp_getsockname(&ls->u.tcp, (struct sockaddr *)&ss, &len)) != 0)
    return aio_raise_os(L, err, "getsockname");
  aio_push_sockaddr(L, (struct sockaddr *)&ss);
  return 1;
}

static int l_fileno(lua_State *L) {
  aio_listener *ls = check_listener(L, 1);
  uv_os_fd_t fd;
  if (ls->closed || uv_fileno(&ls->u.h, &fd) != 0) {
    lua_pushinteger(L, -1);
    return 1;
  }
  lua_pushinteger(L, fd);
  return 1;
}

static int l_is_closed(lua_State *L) {
  lua_pushboolean(L, check_listener(L, 1)->closed);
  return 1;
}

static int l_gc(lua_State *L) {
  aio_listener **b = lua_touserdata(L, 1);
  aio_listener *ls = *b;
  if (!ls) return 0;
  *b = NULL;
  ls->box = NULL;
  if (!ls->closed) {
    aio_debug_collected_open(L, ls->lp, &ls->cl);
    aio_listener_close(NULL, ls); /* unreferenced, so it was not listening */
  } else
    free_if_done(ls);
  return 0;
}

static int l_tostring(lua_State *L) {
  aio_listener *ls = check_listener(L, 1);
  lua_pushfstring(L, "<Listener %s%s %p>", ls->kind == AIO_TP_TCP ? "TCP" : "Unix",
                  ls->closed ? " closed" : "", (void *)ls);
  return 1;
}

void aio_listener_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"listen", l_listen},           {"close", l_close},
                                     {"getsockname", l_getsockname}, {"fileno", l_fileno},
                                     {"is_closed", l_is_closed},     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_LISTENER, "asyncio.Listener", methods, meta);
  lua_setfield(L, -2, "Listener");
}
