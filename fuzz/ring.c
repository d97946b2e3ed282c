/* The ready-queue ring (src/core/ring.c) against a plain FIFO: pushes and
 * shifts in bursts that make it grow, wrap and trim, the order and every
 * entry's contents checked. */
#include "core/ring.h"
#include "fuzz.h"

#define MODEL_MAX (1 << 16)

static uint64_t model[MODEL_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  aio_ring r;
  size_t head = 0, len = 0;
  uint64_t next = 1;
  aio_ring_init(&r);
  while (in.n > 0) {
    uint8_t op = fuzz_byte(&in);
    size_t count = (size_t)fuzz_u16(&in) % (op & 0x80 ? 8192 : 64), i;
    switch (op % 3) {
    case 0: /* a burst of pushes */
      for (i = 0; i < count && len < MODEL_MAX; i++) {
        aio_ready *e = aio_ring_push(&r);
        FUZZ_CHECK(e != NULL, "push");
        e->p = NULL;
        e->stamp = next;
        e->ref = (int)(next & 0x7fffffff);
        e->kind = (uint8_t)next;
        model[(head + len++) % MODEL_MAX] = next++;
      }
      break;
    case 1: /* shifts */
      for (i = 0; i < count && len > 0; i++) {
        aio_ready *e = aio_ring_shift(&r);
        uint64_t want = model[head];
        FUZZ_CHECK(e->stamp == want && e->ref == (int)(want & 0x7fffffff) &&
                       e->kind == (uint8_t)want,
                   "FIFO order");
        head = (head + 1) % MODEL_MAX;
        len--;
      }
      break;
    default:
      aio_ring_trim(&r);
      break;
    }
    FUZZ_CHECK(r.len == len, "length");
    FUZZ_CHECK(r.cap == 0 || (r.cap & (r.cap - 1)) == 0, "capacity not a power of two");
    FUZZ_CHECK(r.len <= r.cap, "more entries than room");
  }
  aio_ring_free(&r);
  return 0;
}
