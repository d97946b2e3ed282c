/* Copies of Lua values between states (copy.h): a flat, self-delimiting byte
 * format written by one state and read back by another, never trusted. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "copy.h"

/* Format, all in native byte order (both states live in one process):
 *   block := count value*          count: varint, the number of values
 *   value := NIL | FALSE | TRUE | INT i64 | FLT f64 | STR varint bytes
 *          | TABLE u32:narr u32:npairs value*narr (key value)*npairs
 *          | REF varint            the k-th table met (from 1), a shared one
 *          | FUNC u64 bytecode     only as the block's first value
 * narr counts the leading non-nil t[1..narr]; the pairs are every other
 * entry. Lua caps a table at 2^31 array and 2^30 hash slots, so neither
 * count overflows its u32. Counts are exact, so any strict prefix of a block
 * fails to decode. */
enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_FUNC };

#define AIO_COPY_MAXDEPTH 200

/* ---------------------------------------------------------------------------
 * Buffer */

static int buf_grow(aio_copybuf *b, size_t need) {
  size_t cap;
  char *data;
  if (b->cap - b->len >= need) return 0;
  if (need > SIZE_MAX / 2 - b->len) return -1;
  cap = b->cap ? b->cap : 256;
  while (cap - b->len < need) cap *= 2;
  data = realloc(b->data, cap);
  if (!data) return -1;
  b->data = data;
  b->cap = cap;
  return 0;
}

static void buf_need(lua_State *L, aio_copybuf *b, size_t need) {
  if (b->cap - b->len < need && buf_grow(b, need) != 0) luaL_error(L, "not enough memory");
}

/* The caller has reserved room for the bytes. */
static void put_bytes(aio_copybuf *b, const void *p, size_t n) {
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_varint(aio_copybuf *b, uint64_t v) {
  while (v >= 0x80) {
    b->data[b->len++] = (char)((v & 0x7f) | 0x80);
    v >>= 7;
  }
  b->data[b->len++] = (char)v;
}

void aio_copybuf_reset(aio_copybuf *b) {
  b->len = 0;
}

void aio_copybuf_free(aio_copybuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---------------------------------------------------------------------------
 * Encoding */

/* How one step of the path to the value being encoded was taken. */
enum { P_INDEX, P_KEY, P_KEYOF };
typedef struct {
  int kind;
  int key;         /* P_KEY: stack index of the key (lua_next's) */
  lua_Integer idx; /* P_INDEX: t[idx] */
} enc_step;

typedef struct {
  lua_State *L;
  aio_copybuf *b;
  const char *what;
  int arg;     /* argbase + k of the top-level value being encoded */
  int flags;   /* AIO_COPY_FUNCTION while the first value is encoded */
  int scratch; /* stack slot: nil, or the table -> number table */
  uint64_t ntables;
  const void *first_table; /* the first table met, known without the scratch */
  int npath;
  enc_step path[AIO_COPY_MAXDEPTH];
} aio_encoder;

static int is_reserved(const char *s, size_t n) {
  static const char *const words[] = {"and",   "break", "do",       "else", "elseif", "end",
                                      "false", "for",   "function", "goto", "if",     "in",
                                      "local", "nil",   "not",      "or",   "repeat", "return",
                                      "then",  "true",  "until",    "while"};
  size_t i;
  for (i = 0; i < sizeof words / sizeof *words; i++)
    if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0) return 1;
  return 0;
}

static int is_name(const char *s, size_t n) {
  size_t i;
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  return !is_reserved(s, n);
}

/* ["..."] with Lua escapes, cut after 40 bytes: a key may be any binary. */
static void add_quoted(luaL_Buffer *B, const char *s, size_t n) {
  size_t i;
  luaL_addstring(B, "[\"");
  for (i = 0; i < n && i < 40; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      luaL_addchar(B, '\\');
      luaL_addchar(B, (char)c);
    } else if (c == '\n') {
      luaL_addstring(B, "\\n");
    } else if (c < 0x20 || c >= 0x7f) {
      snprintf(esc, sizeof esc, "\\%03u", (unsigned)c); /* 3 digits: a digit may follow */
      luaL_addstring(B, esc);
    } else {
      luaL_addchar(B, (char)c);
    }
  }
  luaL_addstring(B, i < n ? "\"...]" : "\"]");
}

static void add_step(lua_State *L, luaL_Buffer *B, const enc_step *s) {
  size_t n;
  const char *str;
  if (s->kind == P_INDEX) {
    lua_pushfstring(L, "[%I]", (LUAI_UACINT)s->idx);
    luaL_addvalue(B);
    return;
  }
  if (s->kind == P_KEYOF) {
    luaL_addstring(B, "[table]");
    return;
  }
  switch (lua_type(L, s->key)) {
  case LUA_TSTRING:
    str = lua_tolstring(L, s->key, &n);
    if (is_name(str, n)) {
      luaL_addchar(B, '.');
      luaL_addlstring(B, str, n);
    } else {
      add_quoted(B, str, n);
    }
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, s->key))
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, s->key));
    else
      lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, s->key));
    luaL_addvalue(B);
    break;
  case LUA_TBOOLEAN:
    luaL_addstring(B, lua_toboolean(L, s->key) ? "[true]" : "[false]");
    break;
  default: /* a key that was encoded already: a table */
    luaL_addstring(B, "[table]");
    break;
  }
}

/* Pushes "<what>: argument <n> <path>: <why>" and returns -1; the keys the
 * path names are still on the stack. A refused key is named by the path to
 * its table, not by the P_KEYOF step that stands for it. */
static int enc_refuse(aio_encoder *e, int iskey, const char *why) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int i, np = e->npath - (iskey ? 1 : 0);
  luaL_checkstack(L, 4, NULL);
  luaL_buffinit(L, &B);
  lua_pushfstring(L, "%s: argument %d", e->what, e->arg);
  luaL_addvalue(&B);
  if (np > 0) luaL_addchar(&B, ' ');
  for (i = 0; i < np; i++) add_step(L, &B, &e->path[i]);
  luaL_addstring(&B, ": ");
  luaL_addstring(&B, why);
  if (iskey) luaL_addstring(&B, " (as a table key)");
  luaL_pushresult(&B);
  return -1;
}

static int enc_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  aio_copybuf *b = ud;
  (void)L;
  if (buf_grow(b, sz) != 0) return 1;
  put_bytes(b, p, sz);
  return 0;
}

/* Only _ENV may be shared: the decoder rebinds it to the other state's
 * globals (whatever table it was here), and nothing else could come along. */
static int enc_function(aio_encoder *e, int idx) {
  lua_State *L = e->L;
  aio_copybuf *b = e->b;
  const char *name;
  size_t at;
  uint64_t n;
  int i;
  if (lua_iscfunction(L, idx)) return enc_refuse(e, 0, "C function");
  for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
    lua_pop(L, 1);
    if (i == 1 && strcmp(name, "_ENV") == 0) continue;
    if (strcmp(name, "(no name)") == 0)
      return enc_refuse(e, 0, "function with an upvalue of unknown name (debug info stripped)");
    lua_pushfstring(L, "function with upvalue '%s' (only _ENV may be shared)", name);
    return enc_refuse(e, 0, lua_tostring(L, -1));
  }
  buf_need(L, b, 1 + sizeof n);
  b->data[b->len++] = T_FUNC;
  at = b->len;
  b->len += sizeof n;
  lua_pushvalue(L, idx);
  if (lua_dump(L, enc_writer, b, 0) != 0) luaL_error(L, "not enough memory");
  lua_pop(L, 1);
  n = b->len - at - sizeof n;
  memcpy(b->data + at, &n, sizeof n);
  return 0;
}

static int enc_value(aio_encoder *e, int idx, int iskey);

/* Numbers tables in the order they are met; the scratch table exists only
 * once a second table is met, so a lone table costs no Lua allocation.
 * Returns the number of a table met before, or 0 after numbering this one. */
static uint64_t enc_seen(aio_encoder *e, int idx) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  if (e->ntables == 0) {
    e->first_table = p;
    e->ntables = 1;
    return 0;
  }
  if (p == e->first_table) return 1;
  if (lua_type(L, e->scratch) == LUA_TNIL) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, 1);
    lua_rawsetp(L, -2, e->first_table);
    lua_replace(L, e->scratch);
  }
  if (lua_rawgetp(L, e->scratch, p) == LUA_TNUMBER) {
    uint64_t k = (uint64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return k;
  }
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)++e->ntables);
  lua_rawsetp(L, e->scratch, p);
  return 0;
}

static int enc_table(aio_encoder *e, int idx, int iskey) {
  lua_State *L = e->L;
  aio_copybuf *b = e->b;
  uint64_t ref;
  uint32_t narr = 0, npairs = 0;
  size_t at;
  /* Refused rather than dropped: the copy would behave otherwise (__index,
   * __eq, __gc...), and a metatable can hold anything. */
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return enc_refuse(e, iskey, "table with a metatable");
  }
  if ((ref = enc_seen(e, idx)) != 0) {
    buf_need(L, b, 11);
    b->data[b->len++] = T_REF;
    put_varint(b, ref);
    return 0;
  }
  if (e->npath >= AIO_COPY_MAXDEPTH) {
    e->npath = 0; /* 200 steps would say little more than the count */
    return enc_refuse(e, 0, "tables nested more than 200 deep");
  }
  luaL_checkstack(L, 6, NULL);
  buf_need(L, b, 1 + 2 * sizeof narr);
  b->data[b->len++] = T_TABLE;
  at = b->len;
  b->len += 2 * sizeof narr;
  e->path[e->npath].kind = P_INDEX;
  e->npath++;
  while (lua_rawgeti(L, idx, (lua_Integer)narr + 1) != LUA_TNIL) {
    e->path[e->npath - 1].idx = (lua_Integer)++narr;
    if (enc_value(e, lua_gettop(L), 0) != 0) return -1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int key = lua_gettop(L) - 1;
    if (lua_isinteger(L, key) && (lua_Unsigned)lua_tointeger(L, key) - 1 < narr) {
      lua_pop(L, 1);
      continue;
    }
    e->path[e->npath - 1].kind = P_KEYOF;
    if (enc_value(e, key, 1) != 0) return -1;
    e->path[e->npath - 1].kind = P_KEY;
    e->path[e->npath - 1].key = key;
    if (enc_value(e, key + 1, 0) != 0) return -1;
    lua_pop(L, 1);
    npairs++;
  }
  e->npath--;
  memcpy(b->data + at, &narr, sizeof narr);
  memcpy(b->data + at + sizeof narr, &npairs, sizeof npairs);
  return 0;
}

static int enc_value(aio_encoder *e, int idx, int iskey) {
  lua_State *L = e->L;
  aio_copybuf *b = e->b;
  int t = lua_type(L, idx);
  switch (t) {
  case LUA_TNIL:
    buf_need(L, b, 1);
    b->data[b->len++] = T_NIL;
    return 0;
  case LUA_TBOOLEAN:
    buf_need(L, b, 1);
    b->data[b->len++] = lua_toboolean(L, idx) ? T_TRUE : T_FALSE;
    return 0;
  case LUA_TNUMBER:
    buf_need(L, b, 9);
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      b->data[b->len++] = T_INT;
      put_bytes(b, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(L, idx);
      b->data[b->len++] = T_FLT;
      put_bytes(b, &d, sizeof d);
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (n > SIZE_MAX - 11) luaL_error(L, "not enough memory");
    buf_need(L, b, 11 + n);
    b->data[b->len++] = T_STR;
    put_varint(b, n);
    put_bytes(b, s, n);
    return 0;
  }
  case LUA_TTABLE:
    return enc_table(e, idx, iskey);
  case LUA_TFUNCTION:
    if (e->flags & AIO_COPY_FUNCTION) return enc_function(e, idx);
    return enc_refuse(e, iskey, "function");
  default:
    return enc_refuse(e, iskey, lua_typename(L, t));
  }
}

int aio_copy_encode(lua_State *L, int first, int n, aio_copybuf *b, const char *what, int argbase,
                    int flags) {
  aio_encoder e;
  size_t old = b->len;
  int k;
  first = lua_absindex(L, first);
  luaL_checkstack(L, 4, NULL);
  lua_pushnil(L);
  e.L = L;
  e.b = b;
  e.what = what;
  e.scratch = lua_gettop(L);
  e.first_table = NULL;
  e.ntables = 0;
  e.npath = 0;
  buf_need(L, b, 10);
  put_varint(b, (uint64_t)n);
  for (k = 0; k < n; k++) {
    e.arg = argbase + k;
    e.flags = k == 0 ? flags & AIO_COPY_FUNCTION : 0;
    if (enc_value(&e, first + k, 0) != 0) {
      b->len = old;
      lua_replace(L, e.scratch);
      lua_settop(L, e.scratch);
      return -1;
    }
  }
  lua_settop(L, e.scratch - 1);
  return 0;
}

/* ---------------------------------------------------------------------------
 * Decoding: every read checked against the end, every count against the
 * bytes left (each value takes at least one), so corrupt data can neither
 * read out of bounds nor make a large allocation. */

typedef struct {
  lua_State *L;
  const char *data;
  size_t len, pos;
  int scratch; /* stack slot: nil, or the number -> table sequence */
  int first;   /* stack index of the first table (a top-level one) */
  int cache;
  int depth;
  uint64_t ntables;
} aio_decoder;

static int dec_fail(aio_decoder *d, const char *why) {
  return luaL_error(d->L, "cannot decode copied values: %s", why);
}

static size_t dec_left(const aio_decoder *d) {
  return d->len - d->pos;
}

static void dec_bytes(aio_decoder *d, void *p, size_t n) {
  if (dec_left(d) < n) dec_fail(d, "truncated data");
  memcpy(p, d->data + d->pos, n);
  d->pos += n;
}

static uint64_t dec_varint(aio_decoder *d) {
  uint64_t v = 0;
  int shift;
  for (shift = 0; shift < 64; shift += 7) {
    unsigned char c;
    if (d->pos >= d->len) dec_fail(d, "truncated data");
    c = (unsigned char)d->data[d->pos++];
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  dec_fail(d, "bad number");
  return 0;
}

static void dec_value(aio_decoder *d, int first);

static void dec_function(aio_decoder *d) {
  lua_State *L = d->L;
  uint64_t n;
  const char *code;
  dec_bytes(d, &n, sizeof n);
  if (n > dec_left(d)) dec_fail(d, "truncated data");
  code = d->data + d->pos;
  d->pos += (size_t)n;
  if (d->cache) {
    lua_pushlstring(L, code, (size_t)n);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, d->cache) == LUA_TFUNCTION) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 1);
  }
  if (luaL_loadbufferx(L, code, (size_t)n, "=copied function", "b") != LUA_OK) lua_error(L);
  if (d->cache) { /* key fn -> fn, with cache[key] = fn */
    lua_pushvalue(L, -1);
    lua_insert(L, -3);
    lua_rawset(L, d->cache);
  }
}

static void dec_table(aio_decoder *d) {
  lua_State *L = d->L;
  uint32_t narr, npairs, i;
  int t;
  dec_bytes(d, &narr, sizeof narr);
  dec_bytes(d, &npairs, sizeof npairs);
  if (narr > dec_left(d) || npairs > dec_left(d) / 2) dec_fail(d, "truncated data");
  if (d->depth >= AIO_COPY_MAXDEPTH) dec_fail(d, "tables nested too deep");
  luaL_checkstack(L, 6, NULL);
  lua_createtable(L, narr > INT_MAX ? INT_MAX : (int)narr,
                  npairs > INT_MAX ? INT_MAX : (int)npairs);
  t = lua_gettop(L);
  if (++d->ntables == 1) {
    d->first = t;
  } else {
    if (d->ntables == 2) {
      lua_createtable(L, 4, 0);
      lua_pushvalue(L, d->first);
      lua_rawseti(L, -2, 1);
      lua_replace(L, d->scratch);
    }
    lua_pushvalue(L, t);
    lua_rawseti(L, d->scratch, (lua_Integer)d->ntables);
  }
  d->depth++;
  for (i = 1; i <= narr; i++) {
    dec_value(d, 0);
    lua_rawseti(L, t, i);
  }
  for (i = 0; i < npairs; i++) {
    dec_value(d, 0);
    if (lua_isnil(L, -1)) dec_fail(d, "nil key");
    dec_value(d, 0);
    lua_rawset(L, t);
  }
  d->depth--;
}

/* Pushes one value; `first` is set for the block's first value only, the
 * one place the encoder writes a function. */
static void dec_value(aio_decoder *d, int first) {
  lua_State *L = d->L;
  unsigned char tag;
  dec_bytes(d, &tag, 1);
  switch (tag) {
  case T_NIL:
    lua_pushnil(L);
    break;
  case T_FALSE:
  case T_TRUE:
    lua_pushboolean(L, tag == T_TRUE);
    break;
  case T_INT: {
    lua_Integer i;
    dec_bytes(d, &i, sizeof i);
    lua_pushinteger(L, i);
    break;
  }
  case T_FLT: {
    lua_Number n;
    dec_bytes(d, &n, sizeof n);
    lua_pushnumber(L, n);
    break;
  }
  case T_STR: {
    uint64_t n = dec_varint(d);
    if (n > dec_left(d)) dec_fail(d, "truncated data");
    lua_pushlstring(L, d->data + d->pos, (size_t)n);
    d->pos += (size_t)n;
    break;
  }
  case T_TABLE:
    dec_table(d);
    break;
  case T_REF: {
    uint64_t k = dec_varint(d);
    if (k == 0 || k > d->ntables) dec_fail(d, "bad table reference");
    if (k == 1)
      lua_pushvalue(L, d->first);
    else
      lua_rawgeti(L, d->scratch, (lua_Integer)k);
    break;
  }
  case T_FUNC:
    if (!first) dec_fail(d, "misplaced function");
    dec_function(d);
    break;
  default:
    dec_fail(d, "bad tag");
  }
}

int aio_copy_decode(lua_State *L, const char *data, size_t len, int cache) {
  aio_decoder d;
  uint64_t n, k;
  d.L = L;
  d.data = data;
  d.len = len;
  d.pos = 0;
  d.first = 0;
  d.cache = cache ? lua_absindex(L, cache) : 0;
  d.depth = 0;
  d.ntables = 0;
  n = dec_varint(&d);
  if (n > dec_left(&d) || n > INT_MAX - 8) dec_fail(&d, "truncated data");
  luaL_checkstack(L, (int)n + 4, "too many values");
  lua_pushnil(L);
  d.scratch = lua_gettop(L);
  for (k = 0; k < n; k++) dec_value(&d, k == 0);
  if (d.pos != d.len) dec_fail(&d, "trailing bytes");
  lua_remove(L, d.scratch);
  return (int)n;
}
