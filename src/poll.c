/* add_reader / add_writer: callbacks run whenever a file descriptor is
 * readable or writable, and the tasks of loop:sock_* waiting for the same
 * (sock.c). libuv allows one uv_poll_t per fd, so each watched fd has one
 * watcher holding both directions. */

/***
Watching file descriptors.
@classmod Loop
*/

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { READER, WRITER };

static const int uv_events[] = {UV_READABLE, UV_WRITABLE};
static const char *const names[] = {"add_reader", "add_writer"};

/* Lives in the loop's closables list while its poll handle is open, and in
 * lp->fdwatch[fd], which is how add/remove and sock_* find it. A direction
 * has a callback or a waiting task, never both. */
typedef struct aio_fdwatch fdwatch;
struct aio_fdwatch {
  aio_closable link;
  uv_poll_t h;
  aio_loop *lp;
  int fd;
  aio_handle *cb[2]; /* READER, WRITER; NULL when not set */
  int ref[2];        /* registry refs of those Handles */
  int file_ref;      /* the Lua file given for fd, so the GC cannot close it */
  aio_task *task[2]; /* a sock_* call parked on the watcher, or NULL */
};

static void watch_close(aio_closable *c);
static const aio_closable_type watch_type = {watch_close, NULL, NULL, NULL};
static void on_poll(uv_poll_t *h, int status, int events);

static fdwatch *find(aio_loop *lp, int fd) {
  return fd < lp->nfdwatch ? lp->fdwatch[fd] : NULL;
}

/* The watcher holding the Lua file at idx: remove_reader(f) after f:close(),
 * when the fd number is gone. */
static fdwatch *find_file(lua_State *L, aio_loop *lp, int idx) {
  int fd;
  for (fd = 0; fd < lp->nfdwatch; fd++) {
    fdwatch *w = lp->fdwatch[fd];
    int same;
    if (!w || w->file_ref == LUA_NOREF) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->file_ref);
    same = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    if (same) return w;
  }
  return NULL;
}

static void on_close(uv_handle_t *h) {
  fdwatch *w = h->data;
  aio_loop *lp = w->lp;
  free(w);
  aio_loop_handle_closed(lp);
}

static void watch_free(lua_State *L, fdwatch *w) {
  luaL_unref(L, LUA_REGISTRYINDEX, w->ref[READER]);
  luaL_unref(L, LUA_REGISTRYINDEX, w->ref[WRITER]);
  luaL_unref(L, LUA_REGISTRYINDEX, w->file_ref);
  w->lp->fdwatch[w->fd] = NULL;
  aio_closable_unlink(&w->link);
  w->lp->nhandles_open++;
  uv_close((uv_handle_t *)&w->h, on_close);
}

/* Loop close: its queued Handles are gone already, so they need no cancel. */
static void watch_close(aio_closable *c) {
  fdwatch *w = (fdwatch *)((char *)c - offsetof(fdwatch, link));
  watch_free(aio_loop_thread(w->lp), w);
}

/* Drops callback i: cancels its Handle, which may be queued already. */
static void drop(lua_State *L, fdwatch *w, int i) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref[i]);
  lua_getfield(L, -1, "cancel");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, w->ref[i]);
  w->ref[i] = LUA_NOREF;
  w->cb[i] = NULL;
}

/* Polls for the events whose callbacks are set; frees the watcher when none
 * is. Returns 0 or a libuv error. */
static int update(lua_State *L, fdwatch *w) {
  int events = (w->cb[READER] || w->task[READER] ? UV_READABLE : 0) |
               (w->cb[WRITER] || w->task[WRITER] ? UV_WRITABLE : 0);
  if (events == 0) {
    watch_free(L, w);
    return 0;
  }
  /* libuv aborts if epoll refuses the fd: check it was not closed meanwhile */
  if (fcntl(w->fd, F_GETFD) == -1) {
    uv_poll_stop(&w->h);
    return UV_EBADF;
  }
  return uv_poll_start(&w->h, events, on_poll);
}

/* Makes room in lp->fdwatch for fd, grown as libuv grows its own table. */
static void reserve(lua_State *L, aio_loop *lp, int fd) {
  fdwatch **a;
  int n;
  if (fd < lp->nfdwatch) return;
  for (n = lp->nfdwatch ? lp->nfdwatch : 64; n <= fd; n *= 2) {
  }
  if ((a = realloc(lp->fdwatch, (size_t)n * sizeof *a)) == NULL) luaL_error(L, "not enough memory");
  memset(a + lp->nfdwatch, 0, (size_t)(n - lp->nfdwatch) * sizeof *a);
  lp->fdwatch = a;
  lp->nfdwatch = n;
}

static fdwatch *watch_new(lua_State *L, aio_loop *lp, int fd, const char *what) {
  fdwatch *w;
  int err;
  reserve(L, lp, fd);
  if ((w = malloc(sizeof *w)) == NULL) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  /* fails for what epoll cannot watch: a regular file (EPERM), a closed fd,
   * one a transport or server of the loop has (EEXIST; libuv tells only
   * while that one is polled, aio_fd_owned also when it is paused) */
  if ((err = aio_fd_owned(lp, fd) ? UV_EEXIST : uv_poll_init(lp->uv, &w->h, fd)) != 0) {
    free(w);
    if (err == UV_EEXIST)
      aio_raise(L, "RuntimeError", "%s: file descriptor %d is used by a transport or server", what,
                fd);
    aio_raise_os(L, err, what);
    return NULL;
  }
  w->h.data = w;
  w->lp = lp;
  w->fd = fd;
  w->cb[READER] = w->cb[WRITER] = NULL;
  w->ref[READER] = w->ref[WRITER] = w->file_ref = LUA_NOREF;
  w->task[READER] = w->task[WRITER] = NULL;
  aio_closable_link(lp, &w->link, &watch_type);
  lp->fdwatch[fd] = w;
  return w;
}

typedef struct {
  fdwatch *w;
  int status, events;
} polled;

/* on_poll's work, under lua_pcall: scheduling a callback's Handle stores
 * it in the loop's anchors, which may run out of memory. The poll is level
 * triggered: a callback that could not be scheduled is tried again on the
 * next poll. */
static int poll_protected(lua_State *L) {
  polled *e = lua_touserdata(L, 1);
  fdwatch *w = e->w;
  aio_loop *lp = w->lp;
  int i, cancelled = 0, events = e->events;
  /* an error (POLLERR: libuv has stopped polling) goes to both callbacks,
   * whose next read or write sees it, as a selector reports both events */
  if (e->status < 0) events = UV_READABLE | UV_WRITABLE;
  for (i = READER; i <= WRITER; i++) {
    if (!(events & uv_events[i])) continue;
    /* the task stays registered until its call is done: a wake-up that finds
     * nothing to do parks it again without an epoll_ctl */
    if (w->task[i]) (void)aio_task_wake(w->task[i], w);
    if (!w->cb[i]) continue;
    if (w->cb[i]->cancelled) { /* as in Python, a cancelled Handle unregisters */
      drop(L, w, i);
      cancelled = 1;
      continue;
    }
    if (w->cb[i]->scheduled) continue; /* queued by the last poll: one run serves both */
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref[i]);
    aio_handle_schedule(L, lp, w->cb[i], -1);
    lua_pop(L, 1);
  }
  if (cancelled) (void)update(L, w);
  return 0;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  polled e;
  e.w = h->data;
  e.status = status;
  e.events = events;
  aio_loop_pcall(e.w->lp, poll_protected, &e, "a file descriptor's callback");
}

/* A task parked on w for direction i; one that was woken by a cancel and
 * has not run yet no longer counts. */
static int waiting(fdwatch *w, int i) {
  aio_task *t = w->task[i];
  return t && t->f.state == AIO_PENDING && t->wait == AIO_WAIT_PARK && t->parked_on == w;
}

const void *aio_fdwatch_park(lua_State *L, aio_loop *lp, int fd, int writable, aio_task *t,
                             const char *api) {
  fdwatch *w = find(lp, fd);
  int err;
  if (w && w->cb[writable])
    aio_raise(L, "RuntimeError", "%s: file descriptor %d has a %s callback (%s)", api, fd,
              writable ? "writer" : "reader", names[writable]);
  if (w && w->task[writable] != t && waiting(w, writable))
    aio_raise(L, "RuntimeError", "%s: another task is already %s file descriptor %d", api,
              writable ? "sending on" : "receiving from", fd);
  if (!w) w = watch_new(L, lp, fd, api);
  if (w->task[writable] == t) return w;
  w->task[writable] = t;
  if ((err = update(L, w)) != 0) {
    w->task[writable] = NULL;
    (void)update(L, w);
    aio_raise_os(L, err, api);
  }
  return w;
}

void aio_fdwatch_unpark(lua_State *L, aio_loop *lp, int fd, int writable, const aio_task *t) {
  fdwatch *w = find(lp, fd);
  if (!w || w->task[writable] != t) return;
  w->task[writable] = NULL;
  (void)update(L, w);
}

static int add(lua_State *L, int i) {
  aio_loop *lp = aio_check_loop(L, 1);
  int fd = aio_check_fd(L, 2), err;
  fdwatch *w;
  aio_handle *h;
  if (!lua_isfunction(L, 3) && luaL_getmetafield(L, 3, "__call") == LUA_TNIL)
    luaL_typeerror(L, 3, "callable");
  aio_loop_check_open(L, lp);
  w = find(lp, fd);
  if (w && waiting(w, i))
    return aio_raise(L, "RuntimeError", "%s: a task waits in %s on file descriptor %d", names[i],
                     i == READER ? "a sock_* receive" : "a sock_* send", fd);
  h = aio_handle_new(L, lp, 3, lua_gettop(L) - 3, 0);
  if (!w) w = watch_new(L, lp, fd, names[i]);
  if (w->cb[i]) drop(L, w, i);
  w->ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  w->cb[i] = h;
  if (w->file_ref == LUA_NOREF && lua_type(L, 2) == LUA_TUSERDATA) {
    lua_pushvalue(L, 2);
    w->file_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if ((err = update(L, w)) != 0) {
    drop(L, w, i);
    (void)update(L, w);
    return aio_raise_os(L, err, names[i]);
  }
  return 0;
}

static int remove_cb(lua_State *L, int i) {
  aio_loop *lp = aio_check_loop(L, 1);
  luaL_Stream *file = luaL_testudata(L, 2, LUA_FILEHANDLE);
  /* a closed loop has no watchers left in its closables list */
  fdwatch *w = file && !file->closef ? find_file(L, lp, 2) : find(lp, aio_check_fd(L, 2));
  if (!w || !w->cb[i]) {
    lua_pushboolean(L, 0);
    return 1;
  }
  drop(L, w, i);
  (void)update(L, w); /* fails only for a closed fd, which it stops polling */
  lua_pushboolean(L, 1);
  return 1;
}

/***
Calls `cb(...)` whenever `fd` is readable (replaces an earlier reader).
@function Loop:add_reader
@python loop.add_reader
@tparam integer fd
@tparam function cb
@param ... its arguments
@raise RuntimeError when a transport or a waiting task uses `fd`
*/
static int l_add_reader(lua_State *L) {
  return add(L, READER);
}

/***
Calls `cb(...)` whenever `fd` is writable.
@function Loop:add_writer
@python loop.add_writer
@tparam integer fd
@tparam function cb
@param ... its arguments
@raise RuntimeError when a transport or a waiting task uses `fd`
*/
static int l_add_writer(lua_State *L) {
  return add(L, WRITER);
}

/***
Stops watching `fd` for reading.
@function Loop:remove_reader
@python loop.remove_reader
@tparam integer fd
@treturn boolean whether a reader was registered
*/
static int l_remove_reader(lua_State *L) {
  return remove_cb(L, READER);
}

/***
Stops watching `fd` for writing.
@function Loop:remove_writer
@python loop.remove_writer
@tparam integer fd
@treturn boolean whether a writer was registered
*/
static int l_remove_writer(lua_State *L) {
  return remove_cb(L, WRITER);
}

void aio_poll_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"add_reader", l_add_reader},
                                     {"add_writer", l_add_writer},
                                     {"remove_reader", l_remove_reader},
                                     {"remove_writer", l_remove_writer},
                                     {NULL, NULL}};
  lua_getfield(L, -1, "Loop");
  aio_setfuncs(L, S, methods);
  lua_pop(L, 1);
}
