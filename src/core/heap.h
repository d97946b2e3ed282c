/* Timer min-heap: ordered by deadline, ties broken by insertion order (as
 * libuv does), so a million timers cost one array, not a million uv handles. */
#ifndef AIO_HEAP_H
#define AIO_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct aio_timer {
  double when;
  uint64_t seq;
  int32_t index; /* position in the heap, -1 when not in it */
  uint8_t kind;  /* what the owner is: a TimerHandle or a sleeping task */
} aio_timer;

typedef struct aio_heap {
  aio_timer **nodes;
  size_t len, cap;
} aio_heap;

void aio_heap_init(aio_heap *h);
void aio_heap_free(aio_heap *h);
/* returns 0, or -1 when memory runs out */
int aio_heap_push(aio_heap *h, aio_timer *t);
void aio_heap_remove(aio_heap *h, aio_timer *t);

static inline aio_timer *aio_heap_top(const aio_heap *h) { return h->len ? h->nodes[0] : NULL; }

#endif
