/* Growth of the ready-queue ring; the hot push/shift are inline in ring.h. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

/* see aio_ready */
_Static_assert(sizeof(void *) != 8 || sizeof(aio_ready) == 24, "aio_ready outgrew 24 bytes");

void aio_ring_init(aio_ring *r) {
  r->buf = NULL;
  r->head = r->len = r->cap = 0;
}

void aio_ring_free(aio_ring *r) {
  free(r->buf);
  aio_ring_init(r);
}

/* Moves the entries, unwrapped (head 0), into a buffer of cap entries. */
static int ring_move(aio_ring *r, size_t cap) {
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

int aio_ring_grow(aio_ring *r) {
  return ring_move(r, r->cap ? r->cap * 2 : 256);
}

/* A burst (100,000 tasks created at once) grows the ring to megabytes that
 * the steady state never uses again (24 bytes per task of the burst): once
 * it is mostly empty, it halves, down to 4,096 entries (96 KiB), so the
 * memory of a burst goes back within a few turns. Halving, not dropping to
 * the minimum, keeps a loop with repeated bursts from regrowing far. */
void aio_ring_trim(aio_ring *r) {
  if (r->cap > 4096 && r->len <= r->cap / 16) (void)ring_move(r, r->cap / 2);
}
