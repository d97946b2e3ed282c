/* Timer min-heap: ordered by deadline, ties broken by insertion order (as
 * libuv does), so a million timers cost one array, not a million uv handles.
 * Four children per node and the keys stored in the array itself keep a
 * sift within a few cache lines instead of chasing a pointer per compare. */
#ifndef AIO_HEAP_H
#define AIO_HEAP_H

#include <stddef.h>
#include <stdint.h>

/* A timer is only its place in the heap: the deadline lives in the heap's
 * entry, where the sifts compare it, so an owner embeds 8 bytes, not 16. */
typedef struct aio_timer {
  uint32_t index; /* position in the heap + 1, 0 when not in it */
  uint8_t kind;   /* what the owner is: a TimerHandle or a sleeping task */
} aio_timer;

typedef struct aio_heap_entry {
  double when;
  uint64_t seq;
  aio_timer *timer;
} aio_heap_entry;

typedef struct aio_heap {
  aio_heap_entry *nodes;
  size_t len, cap;
  uint64_t seq;
} aio_heap;

void aio_heap_init(aio_heap *h);
void aio_heap_free(aio_heap *h);
/* inserts t at `when`; returns 0, or -1 when memory runs out */
int aio_heap_push(aio_heap *h, aio_timer *t, double when);
void aio_heap_remove(aio_heap *h, aio_timer *t);

static inline aio_timer *aio_heap_top(const aio_heap *h) {
  return h->len ? h->nodes[0].timer : NULL;
}

/* the deadline of aio_heap_top's timer; the heap must not be empty */
static inline double aio_heap_top_when(const aio_heap *h) {
  return h->nodes[0].when;
}

#endif
