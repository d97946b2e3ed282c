/* Entry point of asyncio.core: the per-state record, the bridge to the Lua
 * side (error classes, exception handler) and the registration of each type. */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"
#include "stream.h"

static const char state_key = 0; /* its address keys the registry slot */
const char aio_tags[AIO_T_N];

aio_state *aio_get_state(lua_State *L) {
  aio_state *S;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  S = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return S;
}

static void pin(void) {
  static const char anchor = 0;
  Dl_info info;
  if (dladdr(&anchor, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Keeps this module mapped for the rest of the process: lua_close unloads
 * it (package's CLIBS finalizer) before it frees the state's objects, and
 * code of ours that must run after that (the slab, which frees them; a
 * detached executor worker) must not be unloaded from under it. */
void aio_pin_module(void) {
  static pthread_once_t pinned = PTHREAD_ONCE_INIT;
  pthread_once(&pinned, pin);
}

void aio_push_hook(lua_State *L, aio_state *S, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->hooks);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Pushes a new error object of class `cls` whose message is at msg_idx. Falls
 * back to a "Class: message" string until the Lua side installed its hooks. */
void aio_push_error(lua_State *L, const char *cls, int msg_idx) {
  aio_state *S = aio_get_state(L);
  msg_idx = lua_absindex(L, msg_idx);
  aio_push_hook(L, S, "new_error");
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, cls);
    lua_pushvalue(L, msg_idx);
    lua_call(L, 2, 1);
  } else {
    lua_pop(L, 1);
    lua_pushfstring(L, "%s: %s", cls, luaL_optstring(L, msg_idx, ""));
  }
}

int aio_raise(lua_State *L, const char *cls, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  aio_push_error(L, cls, -1);
  return lua_error(L);
}

int aio_is_cancelled_error(lua_State *L, aio_state *S, int idx) {
  int yes;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->cancelled_cls);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return yes;
}

/* extras[obj]: fields few objects need (a task's name, a pending cancel
 * message), kept out of every object's own memory. */
void aio_push_extras(lua_State *L, aio_state *S, int obj_idx, int create) {
  obj_idx = lua_absindex(L, obj_idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->extras);
  lua_pushvalue(L, obj_idx);
  if (lua_rawget(L, -2) == LUA_TNIL && create) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, obj_idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

void aio_setfuncs(lua_State *L, aio_state *S, const luaL_Reg *l) {
  for (; l->name; l++) {
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, l->func, 1);
    lua_setfield(L, -2, l->name);
  }
}

void *aio_testudata(lua_State *L, int idx, int type1, int type2) {
  void *p = lua_touserdata(L, idx);
  const void *tag;
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  lua_rawgeti(L, -1, 1);
  tag = lua_touserdata(L, -1);
  lua_pop(L, 2);
  /* a light userdata has no metatable of its own: rule it out last */
  return (tag == &aio_tags[type1] || tag == &aio_tags[type2]) && lua_type(L, idx) == LUA_TUSERDATA
             ? p
             : NULL;
}

void *aio_checkudata(lua_State *L, int idx, int type1, int type2, const char *name) {
  void *p = aio_testudata(L, idx, type1, type2);
  if (!p) luaL_typeerror(L, idx, name);
  return p;
}

void *aio_check_tagged(lua_State *L, int idx, int type, const char *name) {
  void *p = aio_test_tagged(L, idx, type);
  if (!p) luaL_typeerror(L, idx, name);
  return p;
}

/* Pushes a shallow copy of the metatable of `type` (tag included). */
void aio_copy_metatable(lua_State *L, aio_state *S, int type) {
  lua_newtable(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->mt[type]);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
}

void aio_setmetatable(lua_State *L, aio_state *S, int type) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->mt[type]);
  lua_setmetatable(L, -2);
}

/* Creates the metatable of `type` with __index = a methods table; leaves the
 * methods table on the stack so callers can extend or export it. */
void aio_newclass(lua_State *L, aio_state *S, int type, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta) {
  luaL_newmetatable(L, name);
  lua_pushlightuserdata(L, (void *)&aio_tags[type]);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -1);
  S->mtp[type] = lua_topointer(L, -1);
  S->mt[type] = luaL_ref(L, LUA_REGISTRYINDEX);
  if (meta) aio_setfuncs(L, S, meta);
  lua_newtable(L);
  if (methods) aio_setfuncs(L, S, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2);
}

/* Uservalue uv of the userdata at idx: a table of fields few objects ever
 * need, made on first use (so an idle object carries none). */
void aio_push_aux(lua_State *L, int idx, int uv) {
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, uv) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, uv);
}

/* Pushes field `name` of that table (nil when there is none yet); returns its type. */
int aio_get_aux(lua_State *L, int idx, int uv, const char *name) {
  if (lua_getiuservalue(L, idx, uv) != LUA_TTABLE) return lua_type(L, -1);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

/* kind_of(v) -> the name of the runtime class of a userdata of the core, or
 * nil: what asyncio.isinstance (classes.lua) maps onto Python's classes. A
 * pipe transport open in one direction is a ReadTransport or WriteTransport
 * only, as Python's pipe transports are. */
static int kind_of(lua_State *L) {
  static const struct {
    int type;
    const char *name;
  } kinds[] = {{AIO_T_LOOP, "Loop"},
               {AIO_T_FUTURE, "Future"},
               {AIO_T_TASK, "Task"},
               {AIO_T_HANDLE, "Handle"},
               {AIO_T_TIMER, "TimerHandle"},
               {AIO_T_TLS, "Transport"},
               {AIO_T_DATAGRAM, "DatagramTransport"},
               {AIO_T_READER, "StreamReader"},
               {AIO_T_EVENT, "Event"}};
  aio_tp_box *b;
  size_t i;
  for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (aio_testudata(L, 1, kinds[i].type, kinds[i].type)) {
      lua_pushstring(L, kinds[i].name);
      return 1;
    }
  }
  if ((b = aio_testudata(L, 1, AIO_T_TRANSPORT, AIO_T_TRANSPORT)) != NULL) {
    const aio_tp *tp = b->tp;
    lua_pushstring(L, tp && !tp->writable   ? "ReadTransport"
                      : tp && !tp->readable ? "WriteTransport"
                                            : "Transport");
    return 1;
  }
  return 0;
}

static int set_hooks(lua_State *L) {
  aio_state *S = aio_state_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_rawseti(L, LUA_REGISTRYINDEX, S->hooks);
  lua_getfield(L, 1, "CancelledError");
  luaL_argcheck(L, lua_istable(L, -1), 1, "CancelledError class expected");
  lua_rawseti(L, LUA_REGISTRYINDEX, S->cancelled_cls);
  return 0;
}

/* lua_close: every loop's C record goes with the state, and both block
 * caches. The readers' finalizers, which give their buffers back, have run
 * by then: Lua finalizes in the reverse order of marking, and the state's
 * record is marked first. */
static int state_gc(lua_State *L) {
  aio_state *S = lua_touserdata(L, 1);
  aio_loop_free_all(S);
  aio_blockcache_free(S->buffers);
  aio_blockcache_remove(L, S->blocks);
  aio_tls_free_method(S);
  return 0;
}

static aio_state *state_new(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  aio_state *S = lua_newuserdatauv(L, sizeof *S, 0);
  memset(S, 0, sizeof *S);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  lua_newtable(L);
  S->hooks = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  S->cancelled_cls = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  S->extras = luaL_ref(L, LUA_REGISTRYINDEX);
  S->event_loop = LUA_NOREF;
  /* Readers free their buffer whenever it empties and take one again for
   * the next read: their cache is sized for a burst on every connection of
   * a busy server at once (100 x 120 KiB), and sits on the host's allocator
   * beside the state's cache, not behind it, so strings never crowd it out. */
  S->buffers = aio_blockcache_new(f, ud, 16 * 1024 * 1024);
  S->blocks = aio_blockcache_install(L);
  return S;
}

int luaopen_asyncio_core(lua_State *L) {
  static const luaL_Reg funcs[] = {{"set_hooks", set_hooks}, {"kind_of", kind_of}, {NULL, NULL}};
  aio_state *S = aio_get_state(L);
  if (!S) S = state_new(L);
  aio_signal_ignore_sigpipe();
  lua_newtable(L);
  aio_setfuncs(L, S, funcs);
  aio_traceback_open(L, S);
  aio_loop_open(L, S);
  aio_handle_open(L, S);
  aio_future_open(L, S);
  aio_task_open(L, S);
  aio_event_open(L, S);
  aio_waitlist_open(L, S);
  aio_signal_open(L, S);
  aio_stream_open(L, S);
  aio_listener_open(L, S);
  aio_tcp_open(L, S);
  aio_pipe_open(L, S);
  aio_udp_open(L, S);
  aio_dns_open(L, S);
  aio_poll_open(L, S);
  aio_sock_open(L, S);
  aio_reader_open(L, S);
  aio_writer_open(L, S);
  aio_sslcontext_open(L, S);
  aio_tls_open(L, S);
  aio_process_open(L, S);
  aio_executor_open(L, S);
  aio_threadsafe_open(L, S);
  return 1;
}
