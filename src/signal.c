/* Unix signal handlers on the loop: one uv_signal_t per signal number, which
 * queues the registered Handle on the ready queue each time it fires. */

/***
Signal handlers.
@classmod Loop
*/

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct aio_sigwatch {
  uv_signal_t h;
  aio_loop *lp;
  aio_handle *handle;
  int ref; /* the Handle to run */
  aio_sigwatch *next;
};

static const struct {
  const char *name;
  int num;
} signames[] = {{"SIGHUP", SIGHUP},
                {"SIGINT", SIGINT},
                {"SIGQUIT", SIGQUIT},
                {"SIGUSR1", SIGUSR1},
                {"SIGUSR2", SIGUSR2},
                {"SIGPIPE", SIGPIPE},
                {"SIGALRM", SIGALRM},
                {"SIGTERM", SIGTERM},
                {"SIGCHLD", SIGCHLD},
                {"SIGCONT", SIGCONT},
                {"SIGTSTP", SIGTSTP},
                {"SIGTTIN", SIGTTIN},
                {"SIGTTOU", SIGTTOU},
                {"SIGWINCH", SIGWINCH},
                {"SIGKILL", SIGKILL},
                {"SIGSTOP", SIGSTOP},
                {NULL, 0}};

/* A write to a socket or pipe whose reader is gone raises SIGPIPE, and its
 * default action kills the process before the write can return EPIPE.
 * Python ignores it at startup; so does this module, unless the host has
 * a disposition of its own. libuv puts the default back when the last
 * handler of a signal goes, so removing a SIGPIPE handler calls this too. */
void aio_signal_ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL) return;
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGPIPE, &sa, NULL);
}

static int check_signal(lua_State *L, int idx) {
  int num;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *name = lua_tostring(L, idx);
    int i;
    for (i = 0; signames[i].name; i++)
      if (strcmp(signames[i].name, name) == 0) return signames[i].num;
    return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
  }
  num = (int)luaL_checkinteger(L, idx);
  if (num <= 0 || num >= 65) aio_raise(L, "ValueError", "invalid signal number %d", num);
  return num;
}

/* on_signal's work, under lua_pcall: scheduling the Handle stores it in the
 * loop's anchors, which may run out of memory. That delivery is lost then
 * (reported to the exception handler); the handler stays for the next. */
static int signal_protected(lua_State *L) {
  aio_sigwatch *w = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref);
  aio_handle_schedule(L, w->lp, w->handle, -1);
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  aio_sigwatch *w = h->data;
  (void)signum;
  if (w->lp->closed) return;
  aio_loop_pcall(w->lp, signal_protected, w, "a signal handler's delivery");
}

static void on_close(uv_handle_t *h) {
  aio_sigwatch *w = h->data;
  aio_loop *lp = w->lp;
  free(w);
  aio_loop_handle_closed(lp);
}

static void release(lua_State *L, aio_sigwatch *w) {
  if (L) luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
  w->lp->nhandles_open++;
  uv_close((uv_handle_t *)&w->h, on_close);
}

void aio_signal_close_all(aio_loop *lp) {
  aio_sigwatch *w = lp->signals, *next;
  lua_State *L = lp->L ? lp->L : lp->mainL;
  lp->signals = NULL;
  for (; w; w = next) {
    next = w->next;
    release(L, w);
  }
}

static int remove_handler(lua_State *L, aio_loop *lp, int num) {
  aio_sigwatch **pw = &lp->signals;
  for (; *pw; pw = &(*pw)->next) {
    if ((*pw)->h.signum == num) {
      aio_sigwatch *w = *pw;
      *pw = w->next;
      uv_signal_stop(&w->h);
      release(L, w);
      if (num == SIGPIPE) aio_signal_ignore_sigpipe();
      return 1;
    }
  }
  return 0;
}

/***
Calls `cb(...)` in the loop when signal `sig` arrives.
@function Loop:add_signal_handler
@python loop.add_signal_handler
@param sig a number or a name such as `"SIGINT"`
@tparam function cb
@param ... its arguments
@raise ValueError for an unknown signal; RuntimeError for SIGCHLD, SIGKILL, SIGSTOP
*/
static int l_add_signal_handler(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int num = check_signal(L, 2), err;
  aio_sigwatch *w;
  aio_handle *h;
  if (num == SIGCHLD)
    return aio_raise(L, "RuntimeError", "SIGCHLD is the runtime's: it watches child processes");
  if (num == SIGKILL || num == SIGSTOP) /* Python's words */
    return aio_raise(L, "RuntimeError", "sig %d cannot be caught", num);
  if (!lua_isfunction(L, 3) && luaL_getmetafield(L, 3, "__call") == LUA_TNIL)
    luaL_typeerror(L, 3, "callable");
  aio_loop_check_open(L, lp);
  h = aio_handle_new(L, lp, 3, lua_gettop(L) - 3, 0);
  w = malloc(sizeof *w);
  if (!w) return luaL_error(L, "not enough memory");
  uv_signal_init(lp->uv, &w->h);
  w->h.data = w;
  w->lp = lp;
  w->handle = h;
  if ((err = uv_signal_start(&w->h, on_signal, num)) != 0) {
    w->ref = LUA_NOREF;
    release(NULL, w);
    return aio_raise(L, "RuntimeError", "sig %d cannot be caught: %s", num, uv_strerror(err));
  }
  uv_unref((uv_handle_t *)&w->h);
  remove_handler(L, lp, num);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->next = lp->signals;
  lp->signals = w;
  return 0;
}

/***
Removes the handler of `sig`.
@function Loop:remove_signal_handler
@python loop.remove_signal_handler
@param sig a number or a name
@treturn boolean whether one was set
@raise ValueError for an unknown signal
*/
static int l_remove_signal_handler(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  int num = check_signal(L, 2);
  lua_pushboolean(L, !lp->closed && remove_handler(L, lp, num));
  return 1;
}

void aio_signal_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"add_signal_handler", l_add_signal_handler},
                                     {"remove_signal_handler", l_remove_signal_handler},
                                     {NULL, NULL}};
  lua_getfield(L, -1, "Loop");
  aio_setfuncs(L, S, methods);
  lua_pop(L, 1);
}
