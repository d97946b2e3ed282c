/* A cache of recently freed memory blocks, by exact size, in front of an
 * allocator. The strings a loop makes for reads repeat a few sizes (a full
 * receive buffer, a fixed-size message), and glibc serves blocks above its
 * 1 KiB thread cache from bins that split and coalesce: a malloc/free pair
 * there cost about 540 instructions, a fifth of a 1 KiB echo request. One
 * cache sits in front of the state's allocator; stream readers have one of
 * their own (made in module.c), so their buffers never compete with strings. */
#include <string.h>

#include "internal.h"

/* Rare paths stay out of line, so the common ones save no registers. */
#if defined(__GNUC__)
#define COLD __attribute__((noinline, cold))
#else
#define COLD
#endif

#define BC_MIN 1025                 /* below this, glibc's tcache is as fast */
#define BC_MAX (AIO_RBUF_SIZE + 64) /* a full receive buffer's string */
#define BC_BUDGET (4 * 1024 * 1024) /* bytes the state's cache holds at most */
#define BC_SLOTS 16
#define BC_DEPTH 128

typedef struct {
  size_t size; /* every block in the slot has this size; any when n == 0 */
  unsigned n;
  void *blk[BC_DEPTH];
} bc_slot;

struct aio_blockcache {
  lua_Alloc f; /* the allocator underneath, which owns every block */
  void *ud;
  size_t bytes;
  size_t budget; /* bytes held at most */
  int on;        /* 0 once removed: the wrapper then only passes calls through */
  void *last;    /* the block lua_close frees last: the main thread's */
  bc_slot slot[BC_SLOTS];
};

static void slot_empty(aio_blockcache *c, bc_slot *s) {
  while (s->n) {
    void *p = s->blk[--s->n];
    AIO_UNPOISON(p, s->size);
    c->bytes -= s->size;
    c->f(c->ud, p, s->size, 0);
  }
}

/* Each size may live in two slots: its own, and the next when its own holds
 * another size. Sizes that differ in their low bits (message lengths do)
 * fall in different slots. */
static bc_slot *slot_of(aio_blockcache *c, size_t size) {
  size_t h = (size ^ (size >> 4) ^ (size >> 8)) % BC_SLOTS;
  bc_slot *b = &c->slot[(h + 1) % BC_SLOTS];
  return b->size == size ? b : &c->slot[h];
}

/* Keeps a freed block of s's size, if depth and budget allow: returns 1. */
static inline int slot_put(aio_blockcache *c, bc_slot *s, void *ptr, size_t osize) {
  if (s->n == BC_DEPTH || c->bytes + osize > c->budget) return 0;
  s->blk[s->n++] = ptr;
  c->bytes += osize;
  AIO_POISON(ptr, osize);
  return 1;
}

/* Removed while a host's allocator wraps ours: calls pass through, and the
 * cache goes with the state's last block, before it (the allocator
 * underneath may be the slab, which goes with that block). */
COLD static void *pass_until_last(aio_blockcache *c, void *ptr, size_t osize) {
  lua_Alloc f = c->f;
  void *ud = c->ud;
  if (ptr == c->last) f(ud, c, sizeof *c, 0);
  return f(ud, ptr, osize, 0);
}

/* A freed block whose size holds no slot takes the second of its two; the
 * blocks there go back underneath (a size that stops recurring must not
 * keep its slot). */
COLD static void *put_claiming(aio_blockcache *c, bc_slot *s, void *ptr, size_t osize) {
  if (s->n) s = s == &c->slot[BC_SLOTS - 1] ? c->slot : s + 1;
  if (s->size != osize) slot_empty(c, s), s->size = osize;
  return slot_put(c, s, ptr, osize) ? NULL : c->f(c->ud, ptr, osize, 0);
}

void *aio_blockcache_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  aio_blockcache *c = ud;
  bc_slot *s;
  if (nsize == 0) {
    if (!c->on) return pass_until_last(c, ptr, osize);
    /* Lua frees with the size it allocated, so a block is reused only for a
     * request of exactly that size: no block is ever handed out too small. */
    if (ptr && osize - BC_MIN <= (size_t)(BC_MAX - BC_MIN)) {
      s = slot_of(c, osize);
      if (s->size != osize) return put_claiming(c, s, ptr, osize);
      if (slot_put(c, s, ptr, osize)) return NULL;
    }
  } else if (!ptr && nsize - BC_MIN <= (size_t)(BC_MAX - BC_MIN)) {
    s = slot_of(c, nsize);
    if (s->n && s->size == nsize) {
      ptr = s->blk[--s->n];
      c->bytes -= nsize;
      AIO_UNPOISON(ptr, nsize);
      return ptr;
    }
  }
  return c->f(c->ud, ptr, osize, nsize);
}

void aio_blockcache_flush(aio_blockcache *c) {
  if (!c) return;
  for (int i = 0; i < BC_SLOTS; i++) slot_empty(c, &c->slot[i]);
}

aio_blockcache *aio_blockcache_new(lua_Alloc f, void *ud, size_t budget) {
  aio_blockcache *c = f(ud, NULL, 0, sizeof *c);
  if (!c) return NULL;
  memset(c, 0, sizeof *c);
  c->f = f;
  c->ud = ud;
  c->budget = budget;
  c->on = 1;
  return c;
}

void aio_blockcache_free(aio_blockcache *c) {
  if (!c) return;
  aio_blockcache_flush(c);
  c->f(c->ud, c, sizeof *c, 0);
}

/* The cache goes in front of the state's allocator, with the slab (small
 * blocks, slab.c) between them unless LUA_ASYNCIO_MALLOC=malloc. */
aio_blockcache *aio_blockcache_install(lua_State *L) {
  void *ud, *last;
  lua_Alloc f = lua_getallocf(L, &ud);
  aio_slab *slab;
  aio_blockcache *c;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  last = lua_getextraspace(lua_tothread(L, -1)); /* where lua_close's last free points */
  lua_pop(L, 1);
  slab = aio_slab_new(f, ud, last);
  c = slab ? aio_blockcache_new(aio_slab_alloc, slab, BC_BUDGET)
           : aio_blockcache_new(f, ud, BC_BUDGET);
  if (!c) {
    if (slab) aio_slab_release(slab);
    return NULL;
  }
  c->last = last;
  if (slab) aio_pin_module();
  lua_setallocf(L, aio_blockcache_alloc, c);
  return c;
}

/* At lua_close, from the state's finalizer: later frees go to the allocator
 * underneath. If a host wrapped the allocator after us, our wrapper stays in
 * its chain, so it must stay valid: it is emptied and passes calls through
 * until the state's own block is freed (see pass_until_last). */
void aio_blockcache_remove(lua_State *L, aio_blockcache *c) {
  void *ud;
  if (!c) return;
  aio_blockcache_flush(c);
  if (lua_getallocf(L, &ud) == aio_blockcache_alloc && ud == c) {
    lua_setallocf(L, c->f, c->ud);
    c->f(c->ud, c, sizeof *c, 0);
  } else {
    c->on = 0;
  }
}
