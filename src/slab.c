/* The Lua state's small blocks (up to AIO_SLAB_MAX bytes) in 16 KiB pages,
 * each of one size class in 8-byte steps, with no header per block. glibc
 * puts 8 bytes before every block and rounds it up to 16: a 64-byte CallInfo
 * takes 80, and an idle streams connection's eleven Lua blocks carry 168
 * bytes of it. Lua passes a block's size when it frees or resizes it, so a
 * block needs no header to find its class; whether a block is ours at all
 * (blocks made before asyncio was loaded are not) is one lookup of its page
 * in a hash of our pages. A page whose blocks are all freed goes back to the
 * free pages, for any class; the regions go back with the state. The design
 * is CPython's pymalloc, which PYTHONMALLOC=malloc turns off for debugging:
 * LUA_ASYNCIO_MALLOC=malloc does the same here. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define GRAIN 8
#define NCLASS (AIO_SLAB_MAX / GRAIN)
#define PAGE_SHIFT 14
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
#define REGION_PAGES 16
/* one page more than the region holds, to align it: the slack is never
 * touched, so it is never resident */
#define REGION_BYTES ((REGION_PAGES + 1) * PAGE_SIZE)

typedef struct page page;
struct page {
  page *next, *prev; /* in its class's pages with room, or the free pages */
  void *free;        /* freed blocks, linked through their first word */
  unsigned live;     /* blocks handed out */
  unsigned carved;   /* blocks carved from the page so far */
  unsigned cap;      /* blocks it holds */
  unsigned size;     /* its blocks' size, 0 while free; a page in use is on
                        its class's list while live < cap */
};
/* where a page's blocks start: past its header, at a cache line, so that a
 * block whose size is a multiple of 64 (a 128-byte Task) spans as many lines
 * as it must and no more: the collector reads every live Task's header */
#define HDR 64
_Static_assert(sizeof(page) <= HDR, "the page header outgrew its line");

struct aio_slab {
  lua_Alloc f; /* the allocator underneath */
  void *ud;
  void *last;          /* the block lua_close frees last: then everything goes */
  page *avail[NCLASS]; /* per class, pages with room */
  page *free_pages;    /* pages with no block, linked by next */
  uintptr_t *set;      /* open-addressing set of our pages' addresses (0: empty) */
  size_t set_cap, npages;
  void **regions; /* what the allocator underneath gave, to give back */
  size_t nregions, regions_cap;
};

static size_t hash_page(uintptr_t p, size_t cap) {
  return (size_t)((p >> PAGE_SHIFT) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static int owns(const aio_slab *s, const void *ptr) {
  uintptr_t p = (uintptr_t)ptr & ~(uintptr_t)(PAGE_SIZE - 1);
  size_t i;
  if (!s->set) return 0;
  for (i = hash_page(p, s->set_cap); s->set[i]; i = (i + 1) & (s->set_cap - 1))
    if (s->set[i] == p) return 1;
  return 0;
}

static void set_put(uintptr_t *set, size_t cap, uintptr_t p) {
  size_t i = hash_page(p, cap);
  while (set[i]) i = (i + 1) & (cap - 1);
  set[i] = p;
}

/* Room in the page set and in the region list for one region more. */
static int reserve(aio_slab *s) {
  if ((s->npages + REGION_PAGES) * 2 > s->set_cap) {
    size_t cap = s->set_cap ? s->set_cap * 2 : 256, i;
    uintptr_t *set;
    while ((s->npages + REGION_PAGES) * 2 > cap) cap *= 2;
    set = s->f(s->ud, NULL, 0, cap * sizeof *set);
    if (!set) return -1;
    memset(set, 0, cap * sizeof *set);
    for (i = 0; i < s->set_cap; i++)
      if (s->set[i]) set_put(set, cap, s->set[i]);
    if (s->set) s->f(s->ud, s->set, s->set_cap * sizeof *s->set, 0);
    s->set = set;
    s->set_cap = cap;
  }
  if (s->nregions == s->regions_cap) {
    size_t cap = s->regions_cap ? s->regions_cap * 2 : 16;
    void **r = s->f(s->ud, s->regions, s->regions_cap * sizeof *r, cap * sizeof *r);
    if (!r) return -1;
    s->regions = r;
    s->regions_cap = cap;
  }
  return 0;
}

/* Adds a region's pages to the free pages; -1 when memory runs out. */
static int grow(aio_slab *s) {
  char *r, *first;
  int i;
  if (reserve(s) != 0) return -1;
  r = s->f(s->ud, NULL, 0, REGION_BYTES);
  if (!r) return -1;
  s->regions[s->nregions++] = r;
  first = (char *)(((uintptr_t)r + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1));
  for (i = REGION_PAGES - 1; i >= 0; i--) {
    page *pg = (page *)(first + (size_t)i * PAGE_SIZE);
    set_put(s->set, s->set_cap, (uintptr_t)pg);
    s->npages++;
    pg->size = 0;
    pg->next = s->free_pages;
    s->free_pages = pg;
  }
  return 0;
}

static void unlink_page(page **head, page *pg) {
  if (pg->prev)
    pg->prev->next = pg->next;
  else
    *head = pg->next;
  if (pg->next) pg->next->prev = pg->prev;
}

static void link_page(page **head, page *pg) {
  pg->prev = NULL;
  pg->next = *head;
  if (*head) (*head)->prev = pg;
  *head = pg;
}

static void *slab_alloc(aio_slab *s, size_t n) {
  size_t c = (n - 1) / GRAIN;
  page *pg = s->avail[c];
  void *b;
  if (!pg) {
    if (!s->free_pages && grow(s) != 0) return NULL;
    pg = s->free_pages;
    s->free_pages = pg->next;
    pg->size = (unsigned)((c + 1) * GRAIN);
    pg->cap = (unsigned)((PAGE_SIZE - HDR) / pg->size);
    pg->live = pg->carved = 0;
    pg->free = NULL;
    AIO_POISON((char *)pg + HDR, PAGE_SIZE - HDR);
    link_page(&s->avail[c], pg);
  }
  if (pg->free) {
    b = pg->free;
    AIO_UNPOISON(b, pg->size);
    pg->free = *(void **)b;
  } else {
    b = (char *)pg + HDR + (size_t)pg->carved++ * pg->size;
    AIO_UNPOISON(b, pg->size);
  }
  if (++pg->live == pg->cap) unlink_page(&s->avail[c], pg);
  return b;
}

static void slab_free(aio_slab *s, void *b) {
  page *pg = (page *)((uintptr_t)b & ~(uintptr_t)(PAGE_SIZE - 1));
  page **head = &s->avail[pg->size / GRAIN - 1];
  *(void **)b = pg->free;
  pg->free = b;
  AIO_POISON(b, pg->size);
  if (pg->live == pg->cap) link_page(head, pg); /* it was full: room again */
  /* an empty page serves any class again, unless it is its class's only
   * one (a block made and freed in turn must not cycle a page) */
  if (--pg->live == 0 && (pg->next || pg->prev)) {
    unlink_page(head, pg);
    pg->size = 0;
    pg->next = s->free_pages;
    s->free_pages = pg;
  }
}

void aio_slab_release(aio_slab *s) {
  lua_Alloc f = s->f;
  void *ud = s->ud;
  size_t i;
  for (i = 0; i < s->nregions; i++) {
    AIO_UNPOISON(s->regions[i], REGION_BYTES);
    f(ud, s->regions[i], REGION_BYTES, 0);
  }
  if (s->regions) f(ud, s->regions, s->regions_cap * sizeof *s->regions, 0);
  if (s->set) f(ud, s->set, s->set_cap * sizeof *s->set, 0);
  f(ud, s, sizeof *s, 0);
}

void *aio_slab_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  aio_slab *s = ud;
  void *b;
  if (!ptr)
    return nsize && nsize <= AIO_SLAB_MAX ? slab_alloc(s, nsize) : s->f(s->ud, NULL, osize, nsize);
  if (osize > AIO_SLAB_MAX || !owns(s, ptr)) {
    if (nsize == 0 && ptr == s->last) {
      s->f(s->ud, ptr, osize, 0);
      aio_slab_release(s);
      return NULL;
    }
    return s->f(s->ud, ptr, osize, nsize);
  }
  if (nsize == 0) {
    slab_free(s, ptr);
    return NULL;
  }
  /* Lua assumes a shrink cannot fail: the block stays, freed later by its page */
  if (nsize <= ((page *)((uintptr_t)ptr & ~(uintptr_t)(PAGE_SIZE - 1)))->size) return ptr;
  b = nsize <= AIO_SLAB_MAX ? slab_alloc(s, nsize) : s->f(s->ud, NULL, 0, nsize);
  if (!b) return NULL;
  memcpy(b, ptr, osize);
  slab_free(s, ptr);
  return b;
}

aio_slab *aio_slab_new(lua_Alloc f, void *ud, void *last) {
  const char *env = getenv("LUA_ASYNCIO_MALLOC");
  aio_slab *s;
  if (env && strcmp(env, "malloc") == 0) return NULL;
  s = f(ud, NULL, 0, sizeof *s);
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->f = f;
  s->ud = ud;
  s->last = last;
  return s;
}
