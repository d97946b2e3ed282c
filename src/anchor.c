/* Anchors: a Lua table that keeps values alive while only C points at them
 * (a queued Handle, a pending Task), with its free slots kept on a C stack,
 * so anchoring or releasing one costs a single table store (luaL_ref pays a
 * hash lookup of its free list and a length computation each time). A slot
 * may hold a second value, at -slot in the same table (a pending Task's done
 * callbacks): the few owners that need one pay a hash entry, the others
 * nothing. */
#include <stdlib.h>

#include "internal.h"

void aio_anchors_init(lua_State *L, aio_anchors *a) {
  lua_newtable(L);
  a->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  a->top = a->nfree = a->cap = 0;
  a->free = NULL;
}

/* Drops every anchor at once (loop close). */
void aio_anchors_free(lua_State *L, aio_anchors *a) {
  luaL_unref(L, LUA_REGISTRYINDEX, a->ref);
  a->ref = LUA_NOREF;
  free(a->free);
  a->free = NULL;
  a->top = a->nfree = a->cap = 0;
}

int aio_anchors_put(lua_State *L, aio_anchors *a, int idx) {
  int slot;
  idx = lua_absindex(L, idx);
  if (a->nfree == 0 && a->top == a->cap) { /* the stack can then hold every slot */
    int cap = a->cap ? a->cap * 2 : 64;
    int *slots = realloc(a->free, (size_t)cap * sizeof *slots);
    if (!slots) return luaL_error(L, "not enough memory");
    a->free = slots;
    a->cap = cap;
  }
  slot = a->nfree > 0 ? a->free[--a->nfree] : ++a->top;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  return slot;
}

void aio_anchors_drop(lua_State *L, aio_anchors *a, int slot) {
  if (a->ref == LUA_NOREF || slot <= 0) return; /* all dropped already */
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  aio_anchors_drop_in(L, a, lua_gettop(L), slot);
  lua_pop(L, 1);
}

/* The same with the table pushed already (aio_anchors_push_table) at tidx:
 * a caller that anchors and releases in one go fetches it once. */
void aio_anchors_drop_in(lua_State *L, aio_anchors *a, int tidx, int slot) {
  lua_pushnil(L);
  lua_rawseti(L, tidx, slot);
  a->free[a->nfree++] = slot;
}

void aio_anchors_push_table(lua_State *L, const aio_anchors *a) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
}

void aio_anchors_push(lua_State *L, aio_anchors *a, int slot) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
}

/* Pushes the second value of `slot`, nil when there is none or the anchors
 * were dropped. */
void aio_anchors_push_aux(lua_State *L, aio_anchors *a, int slot) {
  if (a->ref == LUA_NOREF || slot <= 0) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  lua_rawgeti(L, -1, -(lua_Integer)slot);
  lua_remove(L, -2);
}

/* Pops the value on top into the second value of `slot`; dropped with the
 * slot gone (its owner can no longer use it). */
void aio_anchors_set_aux(lua_State *L, aio_anchors *a, int slot) {
  if (a->ref == LUA_NOREF || slot <= 0) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  lua_insert(L, -2);
  lua_rawseti(L, -2, -(lua_Integer)slot);
  lua_pop(L, 1);
}
