/* Growth of the ready-queue ring; the hot push/shift are inline in ring.h. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

void aio_ring_init(aio_ring *r) {
  r->buf = NULL;
  r->head = r->len = r->cap = 0;
}

void aio_ring_free(aio_ring *r) {
  free(r->buf);
  aio_ring_init(r);
}

int aio_ring_grow(aio_ring *r) {
  size_t cap = r->cap ? r->cap * 2 : 256;
  aio_ready *buf = malloc(cap * sizeof *buf);
  if (!buf) return -1;
  /* unwrap into the new buffer so head starts at 0 */
  for (size_t i = 0; i < r->len; i++) buf[i] = r->buf[(r->head + i) & (r->cap - 1)];
  free(r->buf);
  r->buf = buf;
  r->head = 0;
  r->cap = cap;
  return 0;
}
