/* Debug mode: slow-callback warnings, the stall watchdog, and where the
 * resources that were never closed came from.
 *
 * The watchdog is one thread per debug loop, started the first time the loop
 * runs in debug mode and stopped by set_debug(false) or close. The loop's
 * thread publishes, under a mutex, what runs now (a task step or a callback)
 * and since when; the watchdog wakes now and then, and when one has run
 * longer than slow_callback_duration it installs a count hook on the Lua
 * thread running it (lua_sethook is the one Lua API meant to be called
 * asynchronously, as lua.c does from its SIGINT handler). The hook runs at
 * the next Lua instruction in the loop's thread, where it may use the Lua
 * state: it logs where the code is stuck through asyncio.logger, puts back
 * the hook it replaced (debug.sethook's), and is gone.
 *
 * A step blocked in C (a blocking system call, os.execute) executes no Lua
 * instruction, so the hook cannot run. When it has not run a grace period
 * later, the watchdog writes one plain line to stderr itself, with the name
 * the loop thread copied at the step's start: it cannot touch the Lua state,
 * so this line does not go through asyncio.logger. The hook's own report
 * follows once the code gets back to Lua. A task stuck in a coroutine of its
 * own (asyncio.coroutine) is in the same case: hooks are per Lua thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct aio_watchdog {
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  int stop;
  aio_watch w;         /* what runs now */
  uint32_t seq;        /* changes with every enter and leave */
  uint32_t armed_seq;  /* the hook was installed for this seq */
  uint32_t hooked_seq; /* the hook reported this seq */
  uint32_t warned_seq; /* the watchdog wrote its stderr line for this seq */
  uint64_t armed_at;
  uint64_t threshold_ns;
};

static uint64_t clamp_ns(uint64_t v, uint64_t lo, uint64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

static void watch_label(const aio_watch *w, char *buf, size_t n) {
  if (w->id && w->name[0])
    snprintf(buf, n, "Task '%s'", w->name);
  else if (w->id)
    snprintf(buf, n, "Task 'Task-%u'", (unsigned)w->id);
  else if (w->name[0])
    snprintf(buf, n, "Callback defined at %s", w->name);
  else
    snprintf(buf, n, "Callback");
}

/* ---- the hook (loop thread) ---------------------------------------------- */

static void stall_hook(lua_State *L, lua_Debug *ar) {
  aio_state *S = aio_get_state(L);
  aio_loop *lp = S ? S->running : NULL;
  struct aio_watchdog *wd = lp ? lp->wd : NULL;
  char label[96], where[LUA_IDSIZE + 16];
  double elapsed = 0;
  int valid = 0;
  if (!wd) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  uv_mutex_lock(&wd->mu);
  if (wd->w.co == L) {
    valid = wd->w.started && wd->armed_seq == wd->seq && wd->hooked_seq != wd->seq;
    if (valid) {
      wd->hooked_seq = wd->seq;
      elapsed = (double)(uv_hrtime() - wd->w.started) / 1e9;
      watch_label(&wd->w, label, sizeof label);
    }
    lua_sethook(L, wd->w.prev_hook, wd->w.prev_mask, wd->w.prev_count);
  } else {
    lua_sethook(L, NULL, 0, 0); /* armed for a watch gone since: a lost race */
  }
  uv_mutex_unlock(&wd->mu);
  if (!valid) return;
  if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
    snprintf(where, sizeof where, " at %s:%d", ar->short_src, ar->currentline);
  else
    where[0] = 0;
  if (!lua_checkstack(L, 8)) return;
  aio_push_hook(L, S, "log");
  lua_pushliteral(L, "warning");
  {
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", elapsed);
    lua_pushfstring(L, "%s is still running after %s seconds%s", label, secs, where);
  }
  aio_traceback(L, L, lua_tostring(L, -1), 0);
  lua_remove(L, -2);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* ---- the watchdog thread ---------------------------------------------- */

static void watchdog_main(void *arg) {
  struct aio_watchdog *wd = arg;
  uv_mutex_lock(&wd->mu);
  while (!wd->stop) {
    uint64_t now = uv_hrtime(), thr = wd->threshold_ns;
    uint64_t grace = clamp_ns(thr, 10000000u, 1000000000u);
    uint64_t wait = clamp_ns(thr / 2, 1000000u, 100000000u);
    if (wd->w.started && wd->hooked_seq != wd->seq && wd->warned_seq != wd->seq) {
      uint64_t elapsed = now > wd->w.started ? now - wd->w.started : 0;
      if (wd->armed_seq != wd->seq) {
        if (elapsed >= thr) {
          /* the loop thread may run Lua meanwhile: lua_sethook only stores
           * the hook and sets the trap flags of the running frames */
          wd->armed_seq = wd->seq;
          wd->armed_at = now;
          lua_sethook(wd->w.co, stall_hook, LUA_MASKCOUNT, 1);
          wait = grace;
        } else {
          wait = thr - elapsed;
        }
      } else if (now - wd->armed_at >= grace) {
        char label[96];
        watch_label(&wd->w, label, sizeof label);
        wd->warned_seq = wd->seq;
        fprintf(stderr,
                "asyncio warning: %s is still running after %.3f seconds outside Lua code (in a "
                "C function, a system call or another coroutine); where will be logged when it "
                "gets back to Lua\n",
                label, (double)elapsed / 1e9);
        fflush(stderr);
      } else {
        wait = grace - (now - wd->armed_at);
      }
    }
    uv_cond_timedwait(&wd->cv, &wd->mu, wait);
  }
  uv_mutex_unlock(&wd->mu);
}

static uint64_t threshold_ns(aio_loop *lp) {
  double s = lp->slow_callback_duration;
  return s <= 0 ? 0 : s >= 1e6 ? (uint64_t)1e15 : (uint64_t)(s * 1e9);
}

void aio_debug_start(aio_loop *lp) {
  struct aio_watchdog *wd;
  if (lp->wd || lp->closed) return;
  wd = calloc(1, sizeof *wd);
  if (!wd) return; /* no watchdog: the slow-callback warnings still come */
  if (uv_mutex_init(&wd->mu) != 0) {
    free(wd);
    return;
  }
  if (uv_cond_init(&wd->cv) != 0) {
    uv_mutex_destroy(&wd->mu);
    free(wd);
    return;
  }
  wd->threshold_ns = threshold_ns(lp);
  if (uv_thread_create(&wd->thread, watchdog_main, wd) != 0) {
    uv_cond_destroy(&wd->cv);
    uv_mutex_destroy(&wd->mu);
    free(wd);
    return;
  }
  lp->wd = wd;
}

/* Loop thread, outside any watched call (set_debug, close). */
void aio_debug_stop(aio_loop *lp) {
  struct aio_watchdog *wd = lp->wd;
  if (!wd) return;
  uv_mutex_lock(&wd->mu);
  wd->stop = 1;
  uv_cond_signal(&wd->cv);
  uv_mutex_unlock(&wd->mu);
  uv_thread_join(&wd->thread);
  if (wd->w.co && wd->armed_seq == wd->seq && wd->hooked_seq != wd->seq)
    lua_sethook(wd->w.co, wd->w.prev_hook, wd->w.prev_mask, wd->w.prev_count);
  uv_cond_destroy(&wd->cv);
  uv_mutex_destroy(&wd->mu);
  free(wd);
  lp->wd = NULL;
}

/* ---- entering and leaving a watched call (loop thread) ------------------ */

void aio_debug_enter(lua_State *L, aio_loop *lp, lua_State *co, aio_task *t, int fn_idx,
                     uint64_t t0, aio_debug_frame *fr) {
  struct aio_watchdog *wd;
  aio_watch w;
  fr->t0 = t0;
  fr->where[0] = 0;
  fr->wd = NULL;
  if (!t && fn_idx) {
    lua_Debug ar;
    lua_pushvalue(L, fn_idx);
    if (lua_getinfo(L, ">S", &ar) && ar.what[0] != 'C')
      snprintf(fr->where, sizeof fr->where, "%s:%d", ar.short_src, ar.linedefined);
  }
  wd = fr->wd = lp->wd;
  if (!wd) return;
  memset(&w, 0, sizeof w);
  w.started = t0 ? t0 : 1;
  w.co = co;
  w.prev_hook = lua_gethook(co);
  w.prev_mask = lua_gethookmask(co);
  w.prev_count = lua_gethookcount(co);
  if (t) {
    w.id = t->f.id;
    if (t->named) {
      int top = lua_gettop(L);
      aio_task_push(L, lp, t);
      aio_push_extras(L, lp->S, -1, 0);
      if (lua_istable(L, -1) && lua_getfield(L, -1, "name") == LUA_TSTRING)
        snprintf(w.name, sizeof w.name, "%s", lua_tostring(L, -1));
      lua_settop(L, top);
    }
  } else {
    memcpy(w.name, fr->where, sizeof w.name);
  }
  uv_mutex_lock(&wd->mu);
  fr->saved = wd->w;
  wd->w = w;
  wd->seq++;
  wd->threshold_ns = threshold_ns(lp);
  uv_mutex_unlock(&wd->mu);
}

/* Describes a task after its step, as Python's Task repr does: its state,
 * name, and where its coroutine is suspended now. */
static void task_label(aio_task *t, const aio_watch *w, int done, char *buf, size_t n) {
  char name[80];
  lua_Debug ar;
  if (w->name[0])
    snprintf(name, sizeof name, "%s", w->name);
  else
    snprintf(name, sizeof name, "Task-%u", (unsigned)t->f.id);
  if (!done && t->co) {
    for (int level = 0; lua_getstack(t->co, level, &ar); level++) {
      if (lua_getinfo(t->co, "Sl", &ar) && ar.currentline > 0) {
        snprintf(buf, n, "<Task pending name='%s' suspended at %s:%d>", name, ar.short_src,
                 ar.currentline);
        return;
      }
    }
  }
  snprintf(buf, n, "<Task %s name='%s'>", done ? "finished" : "pending", name);
}

void aio_debug_leave(lua_State *L, aio_loop *lp, aio_debug_frame *fr, uint64_t t1, const char *what,
                     aio_task *t, int done) {
  /* not the one entered: started or stopped by set_debug since */
  struct aio_watchdog *wd = fr->wd == lp->wd ? fr->wd : NULL;
  aio_watch w;
  double dt;
  memset(&w, 0, sizeof w);
  if (wd) {
    uv_mutex_lock(&wd->mu);
    w = wd->w;
    /* armed but the hook never ran: take it off before the thread runs
     * anything else */
    if (wd->w.co && wd->armed_seq == wd->seq && wd->hooked_seq != wd->seq)
      lua_sethook(wd->w.co, wd->w.prev_hook, wd->w.prev_mask, wd->w.prev_count);
    wd->w = fr->saved;
    wd->seq++;
    uv_mutex_unlock(&wd->mu);
  }
  if (!t1) t1 = aio_clock_ns(lp);
  dt = t1 > fr->t0 ? (double)(t1 - fr->t0) / 1e9 : 0;
  if (dt < lp->slow_callback_duration) return;
  {
    char label[256], secs[32];
    if (t) {
      if (!wd && t->named) w.name[0] = 0; /* no copy without the watchdog: the id then */
      task_label(t, &w, done, label, sizeof label);
    } else if (fr->where[0]) {
      snprintf(label, sizeof label, "<%s defined at %s>", what, fr->where);
    } else {
      snprintf(label, sizeof label, "<%s>", what);
    }
    snprintf(secs, sizeof secs, "%.3f", dt);
    aio_push_hook(L, lp->S, "log");
    lua_pushliteral(L, "warning");
    lua_pushfstring(L, "Executing %s took %s seconds", label, secs);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
}

/* ---- where resources were made ------------------------------------------ */

/* asyncio's own Lua modules: .../asyncio/<name>.lua */
static int is_ours(const char *src) {
  const char *p = strstr(src, "/asyncio/");
  size_t n;
  if (!p) return 0;
  p += 9;
  if (strchr(p, '/')) return 0;
  n = strlen(p);
  return n > 4 && strcmp(p + n - 4, ".lua") == 0;
}

char *aio_debug_origin(lua_State *L) {
  lua_Debug ar;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
    if (ar.source[0] == '@' && is_ours(ar.source + 1)) continue;
    {
      size_t n = strlen(ar.short_src) + 16;
      char *s = malloc(n);
      if (s) snprintf(s, n, "%s:%d", ar.short_src, ar.currentline);
      return s;
    }
  }
  return NULL;
}

void aio_debug_note_closable(lua_State *L, aio_loop *lp, aio_closable *c) {
  c->origin = lp->debug ? aio_debug_origin(L) : NULL;
}

void aio_debug_set_origin(aio_closable *c, const char *prefix, const char *origin) {
  free(c->origin);
  c->origin = NULL;
  if (origin) {
    size_t n = strlen(prefix) + strlen(origin) + 2;
    if ((c->origin = malloc(n)) != NULL) snprintf(c->origin, n, "%s %s", prefix, origin);
  }
}

void aio_debug_collected_open(lua_State *L, aio_loop *lp, aio_closable *c) {
  if (lp->debug && c->type->kind && !lp->closed)
    aio_debug_report_unclosed(L, lp->S, c->type->kind, c->type->what, c->origin);
}

void aio_debug_report_unclosed(lua_State *L, aio_state *S, const char *kind, const char *what,
                               const char *origin) {
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 6)) return;
  aio_push_hook(L, S, "log");
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    return;
  }
  lua_pushliteral(L, "warning");
  if (origin)
    lua_pushfstring(L, "unclosed %s %s created at %s", kind, what, origin);
  else
    lua_pushfstring(L, "unclosed %s %s", kind, what);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  lua_settop(L, top);
}
