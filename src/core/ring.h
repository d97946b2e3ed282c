/* The ready queue: a growable ring of fixed-size entries. Pushing allocates
 * only when the ring must grow, so the steady state costs no malloc. */
#ifndef AIO_RING_H
#define AIO_RING_H

#include <stddef.h>
#include <stdint.h>

/* 24 bytes: a burst of 100,000 tasks queues 100,000 of them at once */
typedef struct aio_ready {
  void *p; /* task, handle or C data */
  union {
    void *q;        /* C function for AIO_RUN_CFUNC */
    uint64_t stamp; /* AIO_RUN_STEP: when it was queued (see aio_task_step) */
    int ref2;       /* AIO_RUN_DONECB: the second registry ref */
  };
  int ref; /* a registry ref anchoring a Lua value; for a Handle, its anchor slot */
  uint8_t kind;
} aio_ready;

typedef struct aio_ring {
  aio_ready *buf;
  size_t head, len, cap; /* cap is a power of two */
} aio_ring;

void aio_ring_init(aio_ring *r);
void aio_ring_free(aio_ring *r);
int aio_ring_grow(aio_ring *r);
void aio_ring_trim(aio_ring *r);

/* returns the slot to fill, or NULL when memory runs out */
static inline aio_ready *aio_ring_push(aio_ring *r) {
  if (r->len == r->cap && aio_ring_grow(r) != 0) return NULL;
  return &r->buf[(r->head + r->len++) & (r->cap - 1)];
}

static inline aio_ready *aio_ring_shift(aio_ring *r) {
  aio_ready *e = &r->buf[r->head];
  r->head = (r->head + 1) & (r->cap - 1);
  r->len--;
  return e;
}

#endif
