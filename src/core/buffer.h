/* Byte buffer of a stream reader: appended at the end, consumed at the front,
 * searched for separators without rescanning what an earlier search saw. */
#ifndef AIO_BUFFER_H
#define AIO_BUFFER_H

#include <stddef.h>
#include <stdint.h>

/* The allocator the buffer's memory comes from, with lua_Alloc's contract:
 * (ud, NULL, 0, n) allocates, (ud, p, old, n) reallocates, n == 0 frees. */
typedef void *(*aio_buf_alloc)(void *ud, void *ptr, size_t osize, size_t nsize);

/* An empty buffer's bytes start at a multiple of this, where a read into
 * it then lands (why: AIO_READ_ALIGN in internal.h); the first allocation
 * leaves room for it. */
#define AIO_BUF_ALIGN 64

typedef struct aio_buf {
  aio_buf_alloc alloc;
  void *ud;
  char *data;
  size_t start;      /* offset of the first live byte in data */
  size_t len;        /* live bytes */
  size_t cap;        /* bytes allocated */
  uint64_t consumed; /* bytes consumed so far: with it a position outlives a consume */
} aio_buf;

typedef struct aio_sep {
  const char *p;
  size_t len; /* > 0 */
} aio_sep;

void aio_buf_init(aio_buf *b, aio_buf_alloc alloc, void *ud);
void aio_buf_free(aio_buf *b);
/* returns 0, or -1 when memory runs out (the buffer is unchanged then) */
int aio_buf_append(aio_buf *b, const char *p, size_t n);
/* Room for at least n more bytes at the end, to be filled in place (a read
 * straight into the buffer): returns where they go and, in *avail, how many
 * fit; NULL when memory runs out. aio_buf_commit then adds what was written. */
char *aio_buf_reserve(aio_buf *b, size_t n, size_t *avail);
static inline void aio_buf_commit(aio_buf *b, size_t n) {
  b->len += n;
}
/* Free bytes after the live ones. */
static inline size_t aio_buf_room(const aio_buf *b) {
  return b->cap - b->start - b->len;
}
/* Drops n bytes from the front; the memory goes back to the allocator when
 * the buffer empties, so an idle buffer holds none (the allocator should
 * keep freed blocks for reuse: one is taken again per message). */
void aio_buf_consume(aio_buf *b, size_t n);

/* NULL while nothing is allocated (no offset is applied to a null pointer) */
static inline const char *aio_buf_bytes(const aio_buf *b) {
  return b->data ? b->data + b->start : NULL;
}

/* Looks for the separator of seps whose match ends first (the shorter one
 * when two end at the same byte). *pos is an absolute position (counted in
 * bytes ever appended) before which no separator starts: the search starts
 * there, and on a miss *pos moves past what was searched, minus the longest
 * separator's length - 1. Start it at b->consumed. On a match returns 1 with
 * [*mstart, *mend) the separator's bytes relative to the live start. */
int aio_buf_find(const aio_buf *b, const aio_sep *seps, int nseps, uint64_t *pos, size_t *mstart,
                 size_t *mend);

/* The offset of *pos in the live bytes (0 once those bytes were consumed). */
static inline size_t aio_buf_offset(const aio_buf *b, uint64_t pos) {
  return pos > b->consumed ? (size_t)(pos - b->consumed) : 0;
}

#endif
