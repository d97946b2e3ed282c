/* Tracebacks for error objects and error reports: luaL_traceback's layout,
 * without its search of package.loaded for a global name of each frame's
 * function. With asyncio loaded that search walks some thousand fields a
 * frame (about 150,000 instructions), so an error object cost 80 us; here a
 * frame's name comes from its call site, as Lua names any function that no
 * loaded module holds. */

#include <string.h>

#include "internal.h"

/* Frames shown from the top and from the bottom of a deeper stack, as
 * lauxlib shows them. */
#define TB_TOP 10
#define TB_BOTTOM 11

/* The deepest level of L1. lua_getstack walks from the top, so probing
 * levels 1, 2, 4... then bisecting costs O(n log n) where counting them one
 * by one would cost O(n^2) on a stack that overflowed. */
static int deepest_level(lua_State *L1) {
  lua_Debug ar;
  int has = 0, lacks = 1; /* level `has` exists, level `lacks` does not */
  while (lua_getstack(L1, lacks, &ar)) {
    has = lacks;
    lacks *= 2;
  }
  while (lacks - has > 1) {
    int mid = has + (lacks - has) / 2;
    if (lua_getstack(L1, mid, &ar))
      has = mid;
    else
      lacks = mid;
  }
  return has;
}

/* The pieces go straight into the buffer: lua_pushfstring would intern
 * each short one and format numbers through snprintf, half of the cost. */
#define add_literal(b, s) luaL_addlstring((b), "" s, sizeof(s) - 1)

static void add_uint(luaL_Buffer *b, unsigned n) {
  char d[12], *p = d + sizeof d;
  do *--p = (char)('0' + n % 10);
  while ((n /= 10) != 0);
  luaL_addlstring(b, p, (size_t)(d + sizeof d - p));
}

static void add_quoted(luaL_Buffer *b, const char *what, const char *name) {
  luaL_addstring(b, what);
  add_literal(b, " '");
  luaL_addstring(b, name);
  luaL_addchar(b, '\'');
}

static void add_frame_name(luaL_Buffer *b, const lua_Debug *ar) {
  if (strcmp(ar->namewhat, "global") == 0) { /* lauxlib finds it in _G, by that name */
    add_quoted(b, "function", ar->name);
  } else if (*ar->namewhat != '\0') {
    add_quoted(b, ar->namewhat, ar->name);
  } else if (*ar->what == 'm') {
    add_literal(b, "main chunk");
  } else if (*ar->what != 'C') {
    add_literal(b, "function <");
    luaL_addstring(b, ar->short_src);
    luaL_addchar(b, ':');
    add_uint(b, (unsigned)ar->linedefined);
    luaL_addchar(b, '>');
  } else {
    luaL_addchar(b, '?');
  }
}

void aio_traceback(lua_State *L, lua_State *L1, const char *msg, int level) {
  luaL_Buffer b;
  lua_Debug ar;
  int last = deepest_level(L1);
  int skip = last - level > TB_TOP + TB_BOTTOM ? TB_TOP : -1; /* frames before the gap */
  luaL_buffinit(L, &b);
  if (msg) {
    luaL_addstring(&b, msg);
    luaL_addchar(&b, '\n');
  }
  add_literal(&b, "stack traceback:");
  while (lua_getstack(L1, level++, &ar)) {
    if (skip-- == 0) { /* level is one past the frame skipped first */
      int gap = last - TB_BOTTOM - level + 2;
      add_literal(&b, "\n\t...\t(skipping ");
      add_uint(&b, (unsigned)gap);
      add_literal(&b, " levels)");
      level += gap - 1;
      continue;
    }
    lua_getinfo(L1, "Slnt", &ar);
    add_literal(&b, "\n\t");
    luaL_addstring(&b, ar.short_src);
    if (ar.currentline > 0) {
      luaL_addchar(&b, ':');
      add_uint(&b, (unsigned)ar.currentline);
    }
    add_literal(&b, ": in ");
    add_frame_name(&b, &ar);
    if (ar.istailcall) add_literal(&b, "\n\t(...tail calls...)");
  }
  luaL_pushresult(&b);
}

/* core.traceback([message [, level]]) -> string: debug.traceback's, for the
 * running thread (errors.lua builds every error object's with it) */
static int l_traceback(lua_State *L) {
  const char *msg = luaL_optstring(L, 1, NULL);
  int level = (int)luaL_optinteger(L, 2, 1);
  aio_traceback(L, L, msg, level);
  return 1;
}

void aio_traceback_open(lua_State *L, aio_state *S) {
  static const luaL_Reg funcs[] = {{"traceback", l_traceback}, {NULL, NULL}};
  aio_setfuncs(L, S, funcs);
}
