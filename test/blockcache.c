/* blockcache: the cache of freed blocks that asyncio.core puts in front of a
 * state's allocator (src/blockcache.c), seen from the allocator underneath:
 * repeated sizes stop reaching it, small ones come from the slab under it
 * (test/slab.c), no block is handed out for another size,
 * and at lua_close every block it gave comes back to it, also when the host
 * wrapped the allocator again after asyncio did. Stream readers' buffers
 * come from a cache of their own and go back to it whenever they empty. */
#include <unistd.h>

#include "harness.h"

typedef struct {
  long live;   /* blocks given and not yet freed */
  long allocs; /* fresh blocks asked for (ptr == NULL) */
  size_t big;  /* fresh blocks of exactly this size asked for */
  long big_allocs;
  long big_live; /* blocks of that size given and not yet freed */
} counts;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counts *c = ud;
  if (nsize == 0) {
    if (ptr) c->live--;
    if (ptr && osize == c->big) c->big_live--;
    free(ptr);
    return NULL;
  }
  if (!ptr) {
    c->live++;
    c->allocs++;
    if (nsize == c->big) c->big_allocs++, c->big_live++;
  }
  return realloc(ptr, nsize);
}

/* A host allocator installed after asyncio's: it only passes calls on. */
typedef struct {
  lua_Alloc f;
  void *ud;
  long calls;
} outer;

static void *outer_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  outer *o = ud;
  o->calls++;
  return o->f(o->ud, ptr, osize, nsize);
}

static lua_State *new_state(counts *c) {
  return harness_open(lua_newstate(counting_alloc, c));
}

/* Makes `rounds` rounds of `per_round` strings of n bytes, dropping each round
 * before the next, with a full collection in between. */
static void churn(lua_State *L, int n, int rounds, int per_round) {
  lua_pushinteger(L, n);
  lua_pushinteger(L, rounds);
  lua_pushinteger(L, per_round);
  harness_run(L, "churn",
              "local n, rounds, per = ...\n"
              "for r = 1, rounds do\n"
              "  local t = {}\n"
              "  for i = 1, per do t[i] = string.rep(string.char(65 + i % 26), n) end\n"
              "  for i = 1, per do assert(#t[i] == n and t[i]:byte(n) == 65 + i % 26) end\n"
              "  t = nil\n"
              "  collectgarbage()\n"
              "end",
              3, 0);
}

/* churn, counting the blocks of the strings' size asked from underneath */
static long churn_counted(lua_State *L, counts *c, int n, int rounds, int per_round) {
  c->big = 24 + (size_t)n + 1; /* a string's block: its header, n bytes and a NUL */
  c->big_allocs = 0;
  churn(L, n, rounds, per_round);
  return c->big_allocs;
}

static void test_reuse(void) {
  counts c = {0, 0, 0, 0, 0};
  lua_State *L = new_state(&c);
  long n = churn_counted(L, &c, 1500, 50, 20);
  CHECK(n > 0 && n <= 40, "50 rounds of 20 strings of one size: %ld blocks of it from underneath",
        n);
  n = churn_counted(L, &c, 100, 20, 20);
  CHECK(n == 0, "small sizes come from the slab, not the allocator underneath (%ld)", n);
  /* sizes next to each other must never share blocks: each string is
   * checked after all of a round are made (ASan would see an overflow) */
  churn(L, 2000, 10, 10);
  churn(L, 2001, 10, 10);
  churn(L, 1999, 10, 10);
  lua_close(L);
  CHECK(c.live == 0, "after lua_close every block went back (%ld left)", c.live);
}

static void test_outer_wrapper(void) {
  counts c = {0, 0, 0, 0, 0};
  lua_State *L = new_state(&c);
  outer o;
  o.f = lua_getallocf(L, &o.ud);
  o.calls = 0;
  lua_setallocf(L, outer_alloc, &o);
  churn(L, 3000, 10, 10);
  CHECK(o.calls > 0, "a host wrapper installed after asyncio sees the calls");
  lua_close(L);
  CHECK(c.live == 0, "with a host wrapper on top, lua_close still gives every block back (%ld)",
        c.live);
}

static void test_run_gives_back(void) {
  counts c = {0, 0, 0, 0, 0};
  lua_State *L = new_state(&c);
  long before;
  harness_run(L, "warm", "collectgarbage(); collectgarbage()", 0, 0);
  before = c.live;
  harness_run(L, "run",
              "asyncio.run(function()\n"
              "  local t = {}\n"
              "  for i = 1, 30 do t[i] = string.rep('x', 5000 + i % 3) end\n"
              "  t = nil\n"
              "  collectgarbage()\n"
              "end)\n"
              "collectgarbage(); collectgarbage()",
              0, 0);
  CHECK(c.live <= before + 8,
        "blocks cached while a loop ran are given back when it stops (%ld live, %ld before)",
        c.live, before);
  lua_close(L);
  CHECK(c.live == 0, "lua_close gives every block back (%ld)", c.live);
}

/* 200 readers each fed 100,000 bytes and read empty, one after another:
 * one buffer serves them all, and none is held once the run is over, though
 * the readers are still referenced. */
static void test_idle_readers(void) {
  counts c = {0, 0, 0, 0, 0};
  lua_State *L = new_state(&c);
  c.big = 100 * 1024; /* 100,000 bytes in whole 4 KiB pages */
  harness_run(L, "readers",
              "readers = {}\n"
              "asyncio.run(function()\n"
              "  local chunk = string.rep('r', 100000)\n"
              "  for i = 1, 200 do\n"
              "    local r = asyncio.StreamReader()\n"
              "    r:feed_data(chunk)\n"
              "    assert(r:read(200000) == chunk)\n"
              "    readers[i] = r\n"
              "  end\n"
              "end)",
              0, 0);
  CHECK(c.big_allocs == 1, "one reader buffer served 200 readers in turn (%ld asked for)",
        c.big_allocs);
  CHECK(c.big_live == 0, "readers that emptied hold no buffer after the run (%ld held)",
        c.big_live);
  lua_close(L);
  CHECK(c.live == 0, "lua_close gives every block back (%ld)", c.live);
}

int main(void) {
  alarm(HARNESS_ALARM_SECONDS);
  test_reuse();
  test_outer_wrapper();
  test_run_gives_back();
  test_idle_readers();
  return 0;
}
