/* Unix sockets (connect, bind) and pipes opened on a file descriptor, all as
 * uv_pipe_t Transports and Listeners. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listener.h"

/* unix_connect(loop, path) -> Future of a Transport */
static int l_unix_connect(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  const char *path = luaL_checkstring(L, 2);
  aio_connect *c;
  aio_tp *tp;
  int err;
  aio_loop_check_open(L, lp);
  lua_settop(L, 2);
  aio_future_new(L, lp);               /* 3 */
  tp = aio_tp_new(L, lp, AIO_TP_PIPE); /* 4 */
  if ((err = uv_pipe_init(lp->uv, &tp->u.pipe, 0)) != 0) {
    aio_tp_discard(tp);
    return aio_raise_os(L, err, "socket");
  }
  c = malloc(sizeof *c);
  if (!c) {
    aio_tp_abandon(L, tp);
    return luaL_error(L, "not enough memory");
  }
  c->lp = lp;
  uv_pipe_connect(&c->req, &tp->u.pipe, path, aio_tp_on_connect);
  aio_connect_hold(L, c, 3);
  return 1;
}

/* unix_listen(loop, path [, mode]) -> Listener, bound, not yet listening. A
 * stale socket file in the way is removed first, as Python does. The mode is
 * set before listen(): until then a connect is refused whatever the bits, so
 * no one connects through the umask's wider mode in between. */
static int l_unix_listen(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  const char *path = luaL_checkstring(L, 2);
  lua_Integer mode = luaL_optinteger(L, 3, -1);
  aio_listener *ls;
  struct stat st;
  int err;
  luaL_argcheck(L, mode >= -1 && mode <= 07777, 3, "mode out of range");
  aio_loop_check_open(L, lp);
  if (path[0] != '\0' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
  ls = aio_listener_new(L, lp, AIO_TP_PIPE);
  if ((err = uv_pipe_init(lp->uv, &ls->u.pipe, 0)) != 0) {
    aio_listener_discard(ls);
    return aio_raise_os(L, err, "socket");
  }
  err = uv_pipe_bind(&ls->u.pipe, path);
  if (err == 0 && stat(path, &st) == 0) {
    ls->path = strdup(path);
    ls->dev = st.st_dev;
    ls->ino = st.st_ino;
  }
  if (err == 0 && mode >= 0 && path[0] != '\0' && chmod(path, (mode_t)mode) != 0)
    err = uv_translate_sys_error(errno); /* the close below still removes the file */
  if (err) {
    aio_listener_close(L, ls);
    return aio_raise_os(L, err, "error while attempting to bind on address");
  }
  return 1;
}

/* pipe_open(loop, fd_or_file, mode) -> Transport over a pipe, socket or
 * character device; mode "r" or "w" (connect_read_pipe/connect_write_pipe).
 * An integer fd is the transport's to close; a Lua file's fd is duplicated,
 * the file stays the caller's. */
static int l_pipe_open(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int fd = aio_check_fd(L, 2), err;
  const char *mode = luaL_checkstring(L, 3);
  struct stat st;
  aio_tp *tp;
  luaL_argcheck(L, (mode[0] == 'r' || mode[0] == 'w') && mode[1] == '\0', 3,
                "\"r\" or \"w\" expected");
  aio_loop_check_open(L, lp);
  if (fstat(fd, &st) != 0) return aio_raise_os(L, uv_translate_sys_error(errno), "fstat");
  if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode))
    return aio_raise(L, "ValueError",
                     "Pipe transport is only for pipes, sockets and character devices");
  if (!lua_isinteger(L, 2) && (fd = dup(fd)) < 0)
    return aio_raise_os(L, uv_translate_sys_error(errno), "dup");
  tp = aio_tp_new(L, lp, AIO_TP_PIPE);
  if ((err = uv_pipe_init(lp->uv, &tp->u.pipe, 0)) != 0) {
    aio_tp_discard(tp);
    if (!lua_isinteger(L, 2)) close(fd);
    return aio_raise_os(L, err, "pipe");
  }
  if ((err = uv_pipe_open(&tp->u.pipe, fd)) != 0) {
    if (!lua_isinteger(L, 2)) close(fd);
    aio_tp_abandon(L, tp);
    return aio_raise_os(L, err, "pipe");
  }
  tp->readable = mode[0] == 'r';
  tp->writable = mode[0] == 'w';
  return 1;
}

void aio_pipe_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {{"unix_connect", l_unix_connect},
                                   {"unix_listen", l_unix_listen},
                                   {"pipe_open", l_pipe_open},
                                   {NULL, NULL}};
  aio_setfuncs(L, S, funcs);
}
