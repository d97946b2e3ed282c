/* The stream reader's byte buffer: contiguous live bytes after a start
 * offset; compaction and shrinking are lazy so each byte is copied O(1) times. */
#include "buffer.h"

#include <string.h>

#define MIN_CAP 4096

void aio_buf_init(aio_buf *b, aio_buf_alloc alloc, void *ud) {
  b->alloc = alloc;
  b->ud = ud;
  b->data = NULL;
  b->start = b->len = b->cap = 0;
  b->consumed = 0;
}

void aio_buf_free(aio_buf *b) {
  if (b->data) b->alloc(b->ud, b->data, b->cap, 0);
  b->data = NULL;
  b->start = b->len = b->cap = 0;
}

/* Moves the live bytes to the front. */
static void compact(aio_buf *b) {
  if (b->start == 0) return;
  memmove(b->data, b->data + b->start, b->len);
  b->start = 0;
}

char *aio_buf_reserve(aio_buf *b, size_t n, size_t *avail) {
  size_t need;
  if (n > SIZE_MAX - b->len) return NULL;
  need = b->len + n;
  if (b->start + need > b->cap) {
    /* Compacting moves len bytes; doing it only when at least as many were
     * consumed since the last move keeps the copying linear overall. */
    if (need <= b->cap && b->start >= b->len) {
      compact(b);
    } else {
      size_t cap = b->cap;
      char *data;
      if (!cap) { /* a first allocation is what was asked for, aligned, in whole pages */
        if (need > SIZE_MAX - (AIO_BUF_ALIGN - 1)) return NULL;
        cap = need + (AIO_BUF_ALIGN - 1);
        if (cap < MIN_CAP) cap = MIN_CAP;
        if (cap <= SIZE_MAX - (MIN_CAP - 1)) cap = (cap + MIN_CAP - 1) & ~(size_t)(MIN_CAP - 1);
      } else {
        do {
          if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
          }
          cap *= 2;
        } while (cap < need);
      }
      compact(b);
      data = b->alloc(b->ud, b->data, b->data ? b->cap : 0, cap);
      if (!data) return NULL;
      if (!b->data) b->start = (size_t)(-(uintptr_t)data & (AIO_BUF_ALIGN - 1));
      b->data = data;
      b->cap = cap;
    }
  }
  *avail = aio_buf_room(b);
  return b->data + b->start + b->len;
}

int aio_buf_append(aio_buf *b, const char *p, size_t n) {
  size_t avail;
  char *to;
  if (n == 0) return 0;
  if (!(to = aio_buf_reserve(b, n, &avail))) return -1;
  memcpy(to, p, n);
  aio_buf_commit(b, n);
  return 0;
}

void aio_buf_consume(aio_buf *b, size_t n) {
  if (n > b->len) n = b->len;
  b->start += n;
  b->len -= n;
  b->consumed += n;
  if (b->len == 0) aio_buf_free(b);
}

/* First occurrence of sep in hay[0, hlen), or SIZE_MAX. */
static size_t find(const char *hay, size_t hlen, const aio_sep *sep) {
  size_t i = 0;
  if (sep->len > hlen) return SIZE_MAX;
  while (i + sep->len <= hlen) {
    const char *q = memchr(hay + i, (unsigned char)sep->p[0], hlen - sep->len + 1 - i);
    if (!q) return SIZE_MAX;
    i = (size_t)(q - hay);
    if (memcmp(q + 1, sep->p + 1, sep->len - 1) == 0) return i;
    i++;
  }
  return SIZE_MAX;
}

int aio_buf_find(const aio_buf *b, const aio_sep *seps, int nseps, uint64_t *pos, size_t *mstart,
                 size_t *mend) {
  const char *bytes = aio_buf_bytes(b);
  size_t offset = aio_buf_offset(b, *pos), minlen = SIZE_MAX, maxlen = 0, best = SIZE_MAX,
         bestlen = 0;
  int i;
  if (offset > b->len) offset = b->len;
  for (i = 0; i < nseps; i++) {
    if (seps[i].len < minlen) minlen = seps[i].len;
    if (seps[i].len > maxlen) maxlen = seps[i].len;
  }
  if (b->len - offset < minlen) return 0;
  for (i = 0; i < nseps; i++) {
    /* only a match ending before the best one so far can win */
    size_t hlen = best == SIZE_MAX ? b->len - offset : best - offset;
    size_t at = find(bytes + offset, hlen, &seps[i]);
    if (at != SIZE_MAX) {
      size_t end = offset + at + seps[i].len;
      if (end < best || (end == best && seps[i].len < bestlen)) {
        best = end;
        bestlen = seps[i].len;
      }
    }
  }
  if (best != SIZE_MAX) {
    *mstart = best - bestlen;
    *mend = best;
    return 1;
  }
  offset = b->len + 1 > maxlen ? b->len + 1 - maxlen : 0;
  *pos = b->consumed + offset;
  return 0;
}
