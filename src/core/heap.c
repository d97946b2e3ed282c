/* Binary min-heap of timer nodes; each node knows its index so cancelling is
 * O(log n) instead of leaving tombstones. */
#include "heap.h"

#include <stdlib.h>

static int less(const aio_timer *a, const aio_timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(aio_heap *h, size_t i, aio_timer *t) {
  h->nodes[i] = t;
  t->index = (int32_t)i;
}

static void sift_up(aio_heap *h, size_t i, aio_timer *t) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!less(t, h->nodes[parent])) break;
    place(h, i, h->nodes[parent]);
    i = parent;
  }
  place(h, i, t);
}

static void sift_down(aio_heap *h, size_t i, aio_timer *t) {
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= h->len) break;
    if (child + 1 < h->len && less(h->nodes[child + 1], h->nodes[child])) child++;
    if (!less(h->nodes[child], t)) break;
    place(h, i, h->nodes[child]);
    i = child;
  }
  place(h, i, t);
}

void aio_heap_init(aio_heap *h) {
  h->nodes = NULL;
  h->len = h->cap = 0;
}

void aio_heap_free(aio_heap *h) {
  free(h->nodes);
  aio_heap_init(h);
}

int aio_heap_push(aio_heap *h, aio_timer *t) {
  if (h->len == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    aio_timer **nodes = realloc(h->nodes, cap * sizeof *nodes);
    if (!nodes) return -1;
    h->nodes = nodes;
    h->cap = cap;
  }
  sift_up(h, h->len++, t);
  return 0;
}

void aio_heap_remove(aio_heap *h, aio_timer *t) {
  size_t i = (size_t)t->index;
  aio_timer *last = h->nodes[--h->len];
  t->index = -1;
  if (last == t) return;
  if (i > 0 && less(last, h->nodes[(i - 1) / 2]))
    sift_up(h, i, last);
  else
    sift_down(h, i, last);
}
