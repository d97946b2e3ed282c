/* 4-ary min-heap of timer entries; each timer knows its slot, so cancelling
 * is O(log n) instead of leaving tombstones. */
#include "heap.h"

#include <stdlib.h>

#define ARITY 4

static int less(const aio_heap_entry *a, const aio_heap_entry *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(aio_heap *h, size_t i, const aio_heap_entry *e) {
  h->nodes[i] = *e;
  e->timer->index = (uint32_t)i + 1;
}

static void sift_up(aio_heap *h, size_t i, const aio_heap_entry *e) {
  while (i > 0) {
    size_t parent = (i - 1) / ARITY;
    if (!less(e, &h->nodes[parent])) break;
    place(h, i, &h->nodes[parent]);
    i = parent;
  }
  place(h, i, e);
}

static void sift_down(aio_heap *h, size_t i, const aio_heap_entry *e) {
  for (;;) {
    size_t first = i * ARITY + 1, best, c, end;
    if (first >= h->len) break;
    end = first + ARITY < h->len ? first + ARITY : h->len;
    best = first;
    for (c = first + 1; c < end; c++)
      if (less(&h->nodes[c], &h->nodes[best])) best = c;
    if (!less(&h->nodes[best], e)) break;
    place(h, i, &h->nodes[best]);
    i = best;
  }
  place(h, i, e);
}

void aio_heap_init(aio_heap *h) {
  h->nodes = NULL;
  h->len = h->cap = 0;
  h->seq = 0;
}

void aio_heap_free(aio_heap *h) {
  free(h->nodes);
  aio_heap_init(h);
}

int aio_heap_push(aio_heap *h, aio_timer *t, double when) {
  aio_heap_entry e;
  if (h->len == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    aio_heap_entry *nodes = realloc(h->nodes, cap * sizeof *nodes);
    if (!nodes) return -1;
    h->nodes = nodes;
    h->cap = cap;
  }
  e.when = when;
  e.seq = h->seq++;
  e.timer = t;
  sift_up(h, h->len++, &e);
  return 0;
}

void aio_heap_remove(aio_heap *h, aio_timer *t) {
  size_t i = t->index - 1;
  aio_heap_entry last = h->nodes[--h->len];
  t->index = 0;
  if (last.timer == t) return;
  if (i > 0 && less(&last, &h->nodes[(i - 1) / ARITY]))
    sift_up(h, i, &last);
  else
    sift_down(h, i, &last);
}
