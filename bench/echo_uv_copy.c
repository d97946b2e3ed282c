/* Raw libuv TCP echo on 127.0.0.1:PORT that makes the one copy a Lua 5.4
 * runtime cannot avoid: each read lands in a per-loop receive buffer and is
 * copied into a block of its own (lua_pushlstring's copy into a new string)
 * before it is written back. Beside raw libuv in `make bench-echo` (peer
 * uv-copy) it shows the ceiling of any server that hands reads to Lua as
 * strings. Nothing else costs more than in raw libuv: the write is tried at
 * once and the block goes back to a LIFO free list, so it stays cache-hot.
 *   cc -O2 -o echo_uv_copy echo_uv_copy.c -luv && ./echo_uv_copy PORT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "echo_uv.h"

#define RBUF_SIZE (256 * 1024) /* the runtime's receive buffer */
#define HEADER 24              /* where a long string's bytes start in its block */
#define BLOCK_SIZE (HEADER + RBUF_SIZE + 1)
#define FREE_MAX 1024

typedef struct {
  uv_write_t req;
  char *block;
} write_req;

static char rbuf[RBUF_SIZE];
static char *free_blocks[FREE_MAX];
static int nfree;

static char *block_get(void) {
  return nfree ? free_blocks[--nfree] : malloc(BLOCK_SIZE);
}

static void block_put(char *b) {
  if (nfree < FREE_MAX)
    free_blocks[nfree++] = b;
  else
    free(b);
}

static void on_close(uv_handle_t *h) {
  free(h);
}

static void close_stream(uv_stream_t *s) {
  if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  block_put(w->block);
  if (status < 0) close_stream(req->handle);
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  char *block;
  uv_buf_t b;
  write_req *w;
  int n;
  if (nread < 0) close_stream(s);
  if (nread <= 0) return;
  if (!(block = block_get())) {
    close_stream(s);
    return;
  }
  memcpy(block + HEADER, buf->base, (size_t)nread);
  b = uv_buf_init(block + HEADER, (unsigned)nread);
  n = uv_try_write(s, &b, 1);
  if (n == nread) {
    block_put(block);
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    block_put(block);
    close_stream(s);
    return;
  }
  if (n > 0) b = uv_buf_init(b.base + n, b.len - (unsigned)n);
  if (!(w = malloc(sizeof *w))) {
    block_put(block);
    close_stream(s);
    return;
  }
  w->block = block;
  if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
    block_put(block);
    free(w);
    close_stream(s);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  uv_tcp_t *c;
  if (status < 0 || !(c = malloc(sizeof *c))) return;
  uv_tcp_init(server->loop, c);
  if (uv_accept(server, (uv_stream_t *)c) != 0) {
    uv_close((uv_handle_t *)c, on_close);
    return;
  }
  uv_tcp_nodelay(c, 1);
  uv_read_start((uv_stream_t *)c, on_alloc, on_read);
}

int main(int argc, char **argv) {
  return echo_serve("echo_uv_copy", argc, argv, on_connection);
}
