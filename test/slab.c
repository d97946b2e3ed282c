/* slab: the small-block allocator asyncio.core puts under a state's block
 * cache (src/slab.c), seen from the allocator underneath: small blocks come
 * in regions, an emptied page serves another size, blocks made before
 * asyncio was loaded go back where they came from, a block that grows out of
 * or shrinks inside the slab keeps its bytes, LUA_ASYNCIO_MALLOC=malloc
 * leaves every block to the allocator underneath, and at lua_close every
 * region goes back, also when the host wrapped the allocator after asyncio.
 * The ASan build runs it with the slab's poisoning: a use of a freed block
 * fails it. */
#include <unistd.h>

#include "harness.h"

#define REGION_BYTES (17 * 16384) /* slab.c's REGION_BYTES */

typedef struct {
  long live;    /* blocks given and not yet freed */
  long small;   /* fresh blocks of 256 bytes or less asked for */
  long regions; /* fresh regions asked for */
} counts;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counts *c = ud;
  (void)osize;
  if (nsize == 0) {
    if (ptr) c->live--;
    free(ptr);
    return NULL;
  }
  if (!ptr) {
    c->live++;
    if (nsize <= 256) c->small++;
    if (nsize == REGION_BYTES) c->regions++;
  }
  return realloc(ptr, nsize);
}

typedef struct {
  lua_Alloc f;
  void *ud;
} outer;

static void *outer_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  outer *o = ud;
  return o->f(o->ud, ptr, osize, nsize);
}

/* Before asyncio is opened, a table of small strings the script frees
 * later: blocks the slab must hand back to the allocator they came from. */
static lua_State *new_state(counts *c) {
  lua_State *L = lua_newstate(counting_alloc, c);
  luaL_openlibs(L);
  harness_run(L, "early",
              "early = {}\n"
              "for i = 1, 2000 do early[i] = ('e'):rep(i % 200 + 1) .. i end",
              0, 0);
  return harness_open(L);
}

static void close_counted(lua_State *L, const counts *c, const char *what) {
  lua_close(L);
  CHECK(c->live == 0, "%s: after lua_close every block and region went back (%ld left)", what,
        c->live);
}

static void test_small_blocks(void) {
  counts c = {0, 0, 0};
  lua_State *L = new_state(&c);
  long small;
  harness_run(L, "tables",
              "local t = {}\n"
              "for i = 1, 20000 do t[i] = {i, tostring(i)} end\n"
              "for i = 1, 20000 do assert(t[i][1] == i and t[i][2] == tostring(i)) end\n"
              "t, early = nil, nil\n"
              "collectgarbage(); collectgarbage()",
              0, 0);
  small = c.small;
  CHECK(c.regions > 0, "small blocks come in regions (%ld of them)", c.regions);
  harness_run(L, "again",
              "local t = {}\n"
              "for i = 1, 20000 do t[i] = {i, tostring(i)} end\n"
              "t = nil; collectgarbage(); collectgarbage()",
              0, 0);
  CHECK(c.small - small < 50, "no small block is asked for underneath any more (%ld)",
        c.small - small);
  close_counted(L, &c, "small blocks");
}

/* Blocks of one size fill pages, are freed, and another size takes the
 * pages: no new region for it. */
static void test_pages_change_size(void) {
  counts c = {0, 0, 0};
  lua_State *L = new_state(&c);
  long regions;
  harness_run(L, "fill",
              "local t, a = {}, ('a'):rep(40)\n"
              "for i = 1, 50000 do t[i] = a .. i end\n"
              "t = nil; collectgarbage(); collectgarbage()",
              0, 0);
  regions = c.regions;
  harness_run(L, "other size",
              "local t, b = {}, ('b'):rep(150)\n"
              "for i = 1, 15000 do t[i] = b .. i end\n"
              "for i = 1, 15000 do assert(#t[i] == 150 + #tostring(i)) end\n"
              "t = nil; collectgarbage(); collectgarbage()",
              0, 0);
  CHECK(c.regions == regions, "freed pages serve another size (%ld regions, %ld before)", c.regions,
        regions);
  close_counted(L, &c, "pages of another size");
}

/* A table's array part grows from slab blocks into the allocator
 * underneath and back; a coroutine's stack does too. */
static void test_resize(void) {
  counts c = {0, 0, 0};
  lua_State *L = new_state(&c);
  harness_run(
      L, "resize",
      "for round = 1, 20 do\n"
      "  local t = {}\n"
      "  for i = 1, 300 do t[i] = i * round; assert(t[i // 2 + 1] == (i // 2 + 1) * round) end\n"
      "  for i = 300, 1, -1 do t[i] = nil end\n"
      "  t.x = 1; t.y = 2\n"
      "  for i = 1, 40 do t[i] = -i end\n"
      "  for i = 1, 40 do assert(t[i] == -i) end\n"
      "  local co = coroutine.wrap(function(n)\n"
      "    local function deep(k) if k == 0 then return coroutine.yield(n) end return deep(k - 1) "
      "+ 1 end\n"
      "    return deep(n)\n"
      "  end)\n"
      "  assert(co(round * 10) == round * 10)\n"
      "  assert(co(5) == 5 + round * 10)\n"
      "end\n"
      "collectgarbage()",
      0, 0);
  close_counted(L, &c, "resized blocks");
}

static void test_malloc_mode(void) {
  counts c = {0, 0, 0};
  lua_State *L;
  long small;
  setenv("LUA_ASYNCIO_MALLOC", "malloc", 1);
  L = new_state(&c);
  unsetenv("LUA_ASYNCIO_MALLOC");
  small = c.small;
  harness_run(L, "tables", "local t = {} for i = 1, 1000 do t[i] = {i} end", 0, 0);
  CHECK(c.small - small >= 1000 && c.regions == 0,
        "LUA_ASYNCIO_MALLOC=malloc: small blocks from the allocator underneath (%ld, %ld regions)",
        c.small - small, c.regions);
  close_counted(L, &c, "malloc mode");
}

static void test_outer_wrapper(void) {
  counts c = {0, 0, 0};
  lua_State *L = new_state(&c);
  outer o;
  o.f = lua_getallocf(L, &o.ud);
  lua_setallocf(L, outer_alloc, &o);
  harness_run(L, "tables",
              "local t = {} for i = 1, 20000 do t[i] = {i} end\n"
              "early = nil; collectgarbage()",
              0, 0);
  close_counted(L, &c, "a host wrapper on top");
}

int main(void) {
  alarm(HARNESS_ALARM_SECONDS);
  test_small_blocks();
  test_pages_change_size();
  test_resize();
  test_malloc_mode();
  test_outer_wrapper();
  return 0;
}
