/* buffer: the stream reader's byte buffer (src/core/buffer.c) on its own:
 * contents through appends and consumes, lazy compaction and growth, giving
 * memory back when a large buffer empties, and resumable separator search. */
#include "core/buffer.h"
#include "harness.h"

/* The buffer's allocator: counts live blocks, and fails on request. */
static struct {
  long live;
  int fail;
} mem;

static void *test_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    if (ptr) mem.live--;
    free(ptr);
    return NULL;
  }
  if (mem.fail) return NULL;
  if (!ptr) mem.live++;
  return realloc(ptr, nsize);
}

static int holds(const aio_buf *b, const char *s) {
  size_t n = strlen(s);
  return b->len == n && (n == 0 || memcmp(aio_buf_bytes(b), s, n) == 0);
}

static void test_append_consume(void) {
  aio_buf b;
  aio_buf_init(&b, test_alloc, &mem);
  CHECK(b.len == 0 && b.cap == 0 && aio_buf_bytes(&b) == NULL, "a new buffer holds nothing");
  CHECK(aio_buf_append(&b, "", 0) == 0 && b.cap == 0, "appending nothing allocates nothing");
  CHECK(aio_buf_append(&b, "hello ", 6) == 0 && aio_buf_append(&b, "world", 5) == 0,
        "appends succeed");
  CHECK(holds(&b, "hello world"), "bytes are kept in order");
  aio_buf_consume(&b, 6);
  CHECK(holds(&b, "world") && b.consumed == 6, "consume drops bytes from the front");
  aio_buf_consume(&b, 100);
  CHECK(b.len == 0 && b.consumed == 11 && b.start == 0, "consuming past the end empties it");
  CHECK(b.cap == 0 && aio_buf_bytes(&b) == NULL, "an emptied buffer gives its memory back");
  aio_buf_append(&b, "ab", 2);
  CHECK(aio_buf_append(&b, "x", SIZE_MAX - 1) == -1 && holds(&b, "ab"),
        "a size that overflows fails cleanly");
  aio_buf_free(&b);
}

/* A stream read as it arrives: the allocation must not grow with the total
 * bytes that went through, only with what is buffered at once. */
static void test_steady_stream(void) {
  aio_buf b;
  char chunk[1000];
  size_t i, maxcap = 0;
  unsigned next_in = 0, next_out = 0;
  int ok = 1;
  aio_buf_init(&b, test_alloc, &mem);
  for (i = 0; i < 20000; i++) {
    size_t j, take;
    for (j = 0; j < sizeof chunk; j++) chunk[j] = (char)(next_in++ % 251);
    ok &= aio_buf_append(&b, chunk, sizeof chunk) == 0;
    take = b.len > 1500 ? b.len - 700 : 300; /* keeps a few hundred bytes live */
    for (j = 0; j < take && j < b.len; j++) ok &= aio_buf_bytes(&b)[j] == (char)(next_out++ % 251);
    aio_buf_consume(&b, take);
    if (b.cap > maxcap) maxcap = b.cap;
  }
  CHECK(ok, "20 MB streamed through arrive intact and in order");
  CHECK(maxcap <= 8192, "the allocation stays small (%zu bytes)", maxcap);
  aio_buf_free(&b);
}

static void test_growth_and_shrink(void) {
  aio_buf b;
  static char piece[1024];
  size_t i;
  memset(piece, 'a', sizeof piece);
  aio_buf_init(&b, test_alloc, &mem);
  for (i = 0; i < 64 * 1024; i++) aio_buf_append(&b, piece, sizeof piece);
  CHECK(b.len == 64u << 20, "64 MiB appended in 1 KiB pieces");
  CHECK(b.cap >= b.len && b.cap <= 2 * b.len, "capacity grew by doubling (%zu)", b.cap);
  aio_buf_consume(&b, b.len - 10);
  CHECK(b.len == 10 && b.cap >= 64u << 20, "no shrink while bytes remain");
  aio_buf_consume(&b, 10);
  CHECK(b.cap == 0 && aio_buf_bytes(&b) == NULL, "the big allocation is given back when empty");
  CHECK(aio_buf_append(&b, "again", 5) == 0 && holds(&b, "again"), "and it is usable again");
  aio_buf_free(&b);
}

/* The live bytes move to the front only when that copies no more bytes
 * than were consumed; otherwise the buffer grows. */
static void test_compaction(void) {
  aio_buf b;
  static char block[3000];
  size_t cap;
  memset(block, 'b', sizeof block);
  aio_buf_init(&b, test_alloc, &mem);
  aio_buf_append(&b, block, sizeof block);
  cap = b.cap;
  aio_buf_consume(&b, 2500); /* 500 live, 2500 consumed */
  aio_buf_append(&b, block, 1500);
  CHECK(b.cap == cap && b.start == 0 && b.len == 2000, "compacted in place (start %zu)", b.start);
  aio_buf_consume(&b, 100);        /* 1900 live, 100 consumed */
  aio_buf_append(&b, block, 2100); /* would fit after a move of 1900 bytes */
  CHECK(b.cap > cap && b.len == 4000, "grew instead of moving many bytes for few");
  aio_buf_free(&b);
}

/* A read straight into the buffer: reserve, write in place, commit. */
static void test_reserve(void) {
  aio_buf b;
  size_t avail;
  char *to;
  aio_buf_init(&b, test_alloc, &mem);
  to = aio_buf_reserve(&b, 100, &avail);
  CHECK(to != NULL && avail >= 100 && b.len == 0, "reserve offers room and adds nothing");
  memcpy(to, "chunk", 5);
  aio_buf_commit(&b, 5);
  CHECK(holds(&b, "chunk"), "commit adds what was written in place");
  to = aio_buf_reserve(&b, 300000, &avail);
  CHECK(to == aio_buf_bytes(&b) + 5 && avail >= 300000 && holds(&b, "chunk"),
        "growing for a big reserve keeps the bytes (room %zu)", avail);
  memcpy(to, "!", 1);
  aio_buf_commit(&b, 1);
  CHECK(holds(&b, "chunk!"), "and the next bytes follow them");
  mem.fail = 1;
  CHECK(aio_buf_reserve(&b, 1u << 20, &avail) == NULL && holds(&b, "chunk!"),
        "when memory runs out, reserve fails and the buffer is unchanged");
  mem.fail = 0;
  aio_buf_consume(&b, 6);
  CHECK(b.cap == 0, "a big allocation is given back when the buffer empties");
  aio_buf_free(&b);
}

/* Reads into an empty buffer land aligned, whatever the allocator's blocks
 * are aligned to, and a first allocation stays in whole pages. */
static void test_aligned_start(void) {
  size_t sizes[] = {1, 100, 4096 - (AIO_BUF_ALIGN - 1), 5000, 65536, 120 * 1024 - 63};
  size_t i, avail;
  int ok = 1;
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    aio_buf b;
    char *to;
    aio_buf_init(&b, test_alloc, &mem);
    to = aio_buf_reserve(&b, sizes[i], &avail);
    ok &= to != NULL && (uintptr_t)to % AIO_BUF_ALIGN == 0 && avail >= sizes[i];
    ok &= b.cap % 4096 == 0 && b.cap < sizes[i] + AIO_BUF_ALIGN + 4096;
    aio_buf_free(&b);
  }
  CHECK(ok, "an empty buffer's room starts at a multiple of %d", AIO_BUF_ALIGN);
}

static void test_find(void) {
  aio_buf b;
  aio_sep nl = {"\n", 1}, two[2] = {{"DEF", 3}, {"BCDE", 4}}, tie[2] = {{"ome dataA", 9}, {"A", 1}};
  aio_sep longsep[2] = {{"A", 1}, {"long sep", 8}}, aaa = {"aaa", 3};
  uint64_t pos;
  size_t s, e;
  aio_buf_init(&b, test_alloc, &mem);

  pos = b.consumed;
  CHECK(aio_buf_find(&b, &nl, 1, &pos, &s, &e) == 0 && pos == 0, "nothing found in nothing");
  aio_buf_append(&b, "abc\ndef\n", 8);
  CHECK(aio_buf_find(&b, &nl, 1, &pos, &s, &e) == 1 && s == 3 && e == 4, "finds the first one");

  aio_buf_consume(&b, b.len);
  aio_buf_append(&b, "ABCDEFG", 7);
  pos = b.consumed;
  CHECK(aio_buf_find(&b, two, 2, &pos, &s, &e) == 1 && s == 1 && e == 5,
        "the match that ends first wins, even a longer one");

  aio_buf_consume(&b, b.len);
  aio_buf_append(&b, "some dataA", 10);
  pos = b.consumed;
  CHECK(aio_buf_find(&b, tie, 2, &pos, &s, &e) == 1 && s == 9 && e == 10,
        "of two ending together the shorter wins");

  aio_buf_consume(&b, b.len);
  aio_buf_append(&b, "data", 4);
  pos = b.consumed;
  CHECK(aio_buf_find(&b, longsep, 2, &pos, &s, &e) == 0 && aio_buf_offset(&b, pos) == 0,
        "the resume offset does not go below 0");
  aio_buf_append(&b, "ZAaaa", 5);
  CHECK(aio_buf_find(&b, longsep, 2, &pos, &s, &e) == 1 && e == 6, "then finds the short one");

  /* a separator split across appends is found, and a miss resumes past
   * what was searched (minus len - 1) */
  aio_buf_consume(&b, b.len);
  pos = b.consumed;
  aio_buf_append(&b, "QWEaa", 5);
  CHECK(aio_buf_find(&b, &aaa, 1, &pos, &s, &e) == 0 && aio_buf_offset(&b, pos) == 3,
        "a miss resumes at len - seplen + 1");
  aio_buf_append(&b, "XYaa", 4);
  CHECK(aio_buf_find(&b, &aaa, 1, &pos, &s, &e) == 0 && aio_buf_offset(&b, pos) == 7,
        "and moves on with the next miss");
  aio_buf_append(&b, "a", 1);
  CHECK(aio_buf_find(&b, &aaa, 1, &pos, &s, &e) == 1 && s == 7 && e == 10, "then finds it");

  /* a position survives bytes consumed by someone else */
  aio_buf_consume(&b, b.len);
  pos = b.consumed;
  aio_buf_append(&b, "0123456789", 10);
  aio_buf_find(&b, &nl, 1, &pos, &s, &e);
  aio_buf_consume(&b, 4);
  CHECK(aio_buf_offset(&b, pos) == 6, "a position moves with consumed bytes");
  aio_buf_consume(&b, 6);
  CHECK(aio_buf_offset(&b, pos) == 0, "and clamps at 0 once they are gone");
  aio_buf_free(&b);
}

int main(void) {
  test_append_consume();
  test_steady_stream();
  test_growth_and_shrink();
  test_compaction();
  test_reserve();
  test_aligned_start();
  test_find();
  CHECK(mem.live == 0, "every block went back to the allocator (%ld left)", mem.live);
  return 0;
}
