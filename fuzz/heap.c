/* The timer heap (src/core/heap.c) against a list scanned for its minimum:
 * pushes with colliding deadlines (ties go by insertion order), removals
 * from anywhere, and pops of the top, with every timer's index checked. */
#include "core/heap.h"
#include "fuzz.h"

#define NTIMERS 512

static aio_timer timers[NTIMERS];
static double when_of[NTIMERS];
static uint64_t seq_of[NTIMERS];

/* the timer the heap must have on top: least deadline, then first pushed */
static int model_top(void) {
  int i, best = -1;
  for (i = 0; i < NTIMERS; i++) {
    if (!timers[i].index) continue;
    if (best < 0 || when_of[i] < when_of[best] ||
        (when_of[i] == when_of[best] && seq_of[i] < seq_of[best]))
      best = i;
  }
  return best;
}

static void check(const aio_heap *h, size_t n) {
  int top = model_top();
  size_t i;
  FUZZ_CHECK(h->len == n, "length");
  FUZZ_CHECK(top < 0 ? aio_heap_top(h) == NULL : aio_heap_top(h) == &timers[top], "top");
  if (top >= 0) FUZZ_CHECK(aio_heap_top_when(h) == when_of[top], "top deadline");
  for (i = 0; i < h->len; i++) FUZZ_CHECK(h->nodes[i].timer->index == i + 1, "a timer's index");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  aio_heap h;
  size_t n = 0;
  uint64_t seq = 0;
  int i;
  aio_heap_init(&h);
  for (i = 0; i < NTIMERS; i++) timers[i].index = 0;
  while (in.n > 0) {
    uint8_t op = fuzz_byte(&in);
    int k = fuzz_u16(&in) % NTIMERS;
    switch (op % 4) {
    case 0:
    case 1: /* push (a timer in the heap is removed first, as the loop re-arms one) */
      if (timers[k].index) {
        aio_heap_remove(&h, &timers[k]);
        n--;
      }
      when_of[k] = (double)(fuzz_byte(&in) % 32) / 4;
      seq_of[k] = seq++;
      FUZZ_CHECK(aio_heap_push(&h, &timers[k], when_of[k]) == 0, "push");
      n++;
      break;
    case 2: /* remove from anywhere */
      if (timers[k].index) {
        aio_heap_remove(&h, &timers[k]);
        FUZZ_CHECK(timers[k].index == 0, "a removed timer keeps an index");
        n--;
      }
      break;
    default: /* pop the top */
      if (aio_heap_top(&h)) {
        aio_heap_remove(&h, aio_heap_top(&h));
        n--;
      }
      break;
    }
    check(&h, n);
  }
  while (aio_heap_top(&h)) { /* drains in order */
    int top = model_top();
    FUZZ_CHECK(aio_heap_top(&h) == &timers[top], "drain order");
    aio_heap_remove(&h, aio_heap_top(&h));
  }
  aio_heap_free(&h);
  return 0;
}
