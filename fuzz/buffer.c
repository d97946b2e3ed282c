/* The stream reader's byte buffer (src/core/buffer.c) against a plain byte
 * array: appends (some with the allocator failing), consumes, reads in
 * place, and separator searches resumed across appends, each compared with
 * a naive search of the whole buffer. */
#include <string.h>

#include "core/buffer.h"
#include "fuzz.h"

#define MODEL_MAX (1 << 17)

static struct {
  long live; /* blocks allocated and not freed */
  int fail;  /* the next allocation fails */
} mem;

static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    if (ptr) mem.live--;
    free(ptr);
    return NULL;
  }
  if (mem.fail) {
    mem.fail = 0;
    return NULL;
  }
  if (!ptr) mem.live++;
  return realloc(ptr, nsize);
}

static uint8_t model[MODEL_MAX];
static size_t mlen;

static int same(const aio_buf *b) {
  return b->len == mlen && (mlen == 0 || memcmp(aio_buf_bytes(b), model, mlen) == 0);
}

/* the separator that ends first in the model (the shorter on a tie) */
static int naive_find(const aio_sep *seps, int nseps, size_t *mstart, size_t *mend) {
  size_t best = SIZE_MAX, bestlen = 0;
  int i;
  for (i = 0; i < nseps; i++) {
    size_t at;
    for (at = 0; at + seps[i].len <= mlen; at++) {
      if (memcmp(model + at, seps[i].p, seps[i].len) == 0) {
        size_t end = at + seps[i].len;
        if (end < best || (end == best && seps[i].len < bestlen)) best = end, bestlen = seps[i].len;
        break;
      }
    }
  }
  if (best == SIZE_MAX) return 0;
  *mstart = best - bestlen;
  *mend = best;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_in in = {data, size};
  aio_buf b;
  char sepbytes[3][4];
  aio_sep seps[3];
  int nseps = 0;
  uint64_t pos = 0;
  aio_buf_init(&b, fuzz_alloc, NULL);
  mlen = 0;
  mem.live = 0;
  while (in.n > 0) {
    uint8_t op = fuzz_byte(&in);
    switch (op % 6) {
    case 0: { /* append, the allocator failing now and then */
      size_t want = fuzz_u16(&in) % 4096, got;
      const uint8_t *p = fuzz_bytes(&in, want, &got);
      int rc;
      if (mlen + got > MODEL_MAX) break;
      mem.fail = (op & 0x80) != 0;
      rc = aio_buf_append(&b, (const char *)p, got);
      if (rc == 0) {
        memcpy(model + mlen, p, got);
        mlen += got;
      }
      FUZZ_CHECK(rc == 0 || (got > 0 && (op & 0x80)),
                 "append failed without an allocation failure");
      mem.fail = 0;
      FUZZ_CHECK(same(&b), "append");
      break;
    }
    case 1: { /* consume, possibly more than is there */
      size_t n = fuzz_u16(&in) % 8192;
      aio_buf_consume(&b, n);
      n = n < mlen ? n : mlen;
      memmove(model, model + n, mlen - n);
      mlen -= n;
      FUZZ_CHECK(same(&b), "consume");
      FUZZ_CHECK(mlen > 0 || b.cap == 0, "an empty buffer holds memory");
      nseps = 0;
      break;
    }
    case 2: { /* a read straight into the buffer */
      size_t want = fuzz_u16(&in) % (op & 0x40 ? 65536 : 2048) + 1, avail, k;
      char *to;
      if (mlen + want > MODEL_MAX) break;
      to = aio_buf_reserve(&b, want, &avail);
      FUZZ_CHECK(to != NULL && avail >= want, "reserve");
      FUZZ_CHECK(b.len > 0 || ((uintptr_t)to % AIO_BUF_ALIGN) == 0, "an empty buffer is aligned");
      k = fuzz_byte(&in) * want / 255;
      memset(to, (int)op, k);
      memset(model + mlen, (int)op, k);
      aio_buf_commit(&b, k);
      mlen += k;
      FUZZ_CHECK(same(&b), "reserve and commit");
      break;
    }
    case 3: { /* new separators: a new search */
      int i;
      nseps = fuzz_byte(&in) % 3 + 1;
      for (i = 0; i < nseps; i++) {
        size_t len = fuzz_byte(&in) % 4 + 1, got, j;
        const uint8_t *p = fuzz_bytes(&in, len, &got);
        for (j = 0; j < len; j++) sepbytes[i][j] = (char)(j < got ? p[j] % 4 + 'a' : 'a');
        seps[i].p = sepbytes[i];
        seps[i].len = len;
      }
      pos = b.consumed;
      break;
    }
    case 4: { /* search, resumed from where the last miss left off */
      size_t ms = 0, me = 0, ns = 0, ne = 0;
      int hit, want;
      if (nseps == 0) break;
      hit = aio_buf_find(&b, seps, nseps, &pos, &ms, &me);
      want = naive_find(seps, nseps, &ns, &ne);
      FUZZ_CHECK(hit == want, "find: match or miss");
      if (hit) {
        FUZZ_CHECK(ms == ns && me == ne, "find: where");
        nseps = 0;
      } else {
        FUZZ_CHECK(aio_buf_offset(&b, pos) <= mlen, "find: position past the end");
      }
      break;
    }
    default: { /* append bytes of the separators' alphabet, to make matches likely */
      size_t want = fuzz_byte(&in) % 64, got, i;
      const uint8_t *p = fuzz_bytes(&in, want, &got);
      char tmp[64];
      if (mlen + got > MODEL_MAX) break;
      for (i = 0; i < got; i++) tmp[i] = (char)(p[i] % 4 + 'a');
      FUZZ_CHECK(aio_buf_append(&b, tmp, got) == 0, "append");
      memcpy(model + mlen, tmp, got);
      mlen += got;
      break;
    }
    }
  }
  aio_buf_free(&b);
  FUZZ_CHECK(mem.live == 0, "a block leaked");
  return 0;
}
