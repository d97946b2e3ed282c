/* TLS transport: OpenSSL between a transport below (TCP, Unix socket, pipe,
 * or another TLS transport) and the application's protocol above (a Lua
 * table or a StreamReader). It is the lower transport's protocol, so
 * ciphertext never reaches Lua.
 *
 * A BIO of our own instead of a pair of memory BIOs: OpenSSL reads the
 * ciphertext straight from the buffer the socket read landed in (the loop's
 * receive buffer), and writes records into another of the loop's buffers,
 * sent to the transport below once per step. Memory BIOs would copy every
 * byte once more and keep buffers of their own on every connection. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* Uservalues: the application's protocol and its data_received (as every
 * transport, see aio_transport_head), the transport below, the context, the
 * handshake's future, the queue of plaintext not yet encrypted, the Server,
 * the SSLObject handed out, server_hostname. */
enum {
  UV_PROTO = AIO_UV_PROTO,
  UV_DATACB = AIO_UV_DATACB,
  UV_LOWER,
  UV_CTX,
  UV_WAITER,
  UV_WQ,
  UV_SERVER,
  UV_SSLOBJ,
  UV_HOST,
  UV_N = UV_HOST
};

/* Python 3.11's SSLProtocol states */
enum { ST_HANDSHAKE, ST_WRAPPED, ST_FLUSHING, ST_SHUTDOWN, ST_CLOSED };

/* Plaintext encrypted per step: the ciphertext ahead of the socket stays
 * near the transport's high-water mark plus this, however big a write is. */
#define CHUNK (64 * 1024)

typedef struct tls tls;
struct tls {
  aio_transport_head head; /* first: tag and loop */
  SSL *ssl;                /* NULL once the connection is lost */
  aio_state *S;
  const aio_proto_ops *ops; /* the application's protocol */
  void *proto_ud;
  aio_tp *ltp;      /* the transport below: a stream transport, */
  tls *ltls;        /* or a TLS one; both NULL once lost */
  const char *in_p; /* ciphertext OpenSSL reads through the BIO */
  size_t in_n;
  char *pend; /* ciphertext kept for later (reading paused), malloc'd */
  size_t pend_len;
  uv_buf_t out; /* ciphertext made and not yet sent: one of the loop's buffers */
  size_t out_len;
  lua_Integer wq_head, wq_tail; /* plaintext queue: strings at [head..tail] of UV_WQ */
  size_t wq_off;                /* bytes of the head string already encrypted */
  size_t wq_bytes;              /* bytes queued */
  size_t high, low;
  double hs_timeout, sd_timeout;
  aio_ctimer hs_timer, sd_timer, resume_timer;
  aio_closable cl; /* in the loop's list from wrap to connection lost */
  int ref;         /* registry ref of the userdata from wrap to connection lost */
  unsigned conn_lost;
  uint8_t state;
  uint8_t server_side;
  uint8_t app_made;         /* the application's connection_made ran */
  uint8_t was_made;         /* start_tls: the protocol was connected before, so it hears the loss */
  uint8_t app_paused;       /* pause_reading() */
  uint8_t lower_paused;     /* the transport below asked us to stop writing */
  uint8_t writing_paused;   /* the application was told pause_writing */
  uint8_t eof;              /* write_eof() was called */
  uint8_t got_close_notify; /* the peer's close_notify was read */
  uint8_t got_data;         /* the peer sent something */
  uint8_t wrapped;          /* a TLS layer above owns this one */
  uint8_t aborted;          /* abort() was called: closing, connection_lost to come */
};

static void process(lua_State *L, tls *t, int idx);
static void tls_send(lua_State *L, tls *t, int idx, int s_idx, const char *p, size_t n);
static void tls_close(lua_State *L, tls *t, int idx);
static void tls_abort(lua_State *L, tls *t, int idx, int err_idx);
static void tls_set_paused(lua_State *L, tls *t, int idx, int paused);
static int push_extra(lua_State *L, tls *t, int idx, const char *name);

static tls *check_tls(lua_State *L, int idx) {
  tls *t = aio_check_tagged(L, idx, AIO_T_TLS, "TLS transport");
  if (t->wrapped && t->state == ST_WRAPPED && !t->aborted)
    aio_raise(L, "RuntimeError", "transport was upgraded to TLS: use the transport start_tls gave");
  return t;
}

/* Before every OpenSSL call, so that SSL_get_error and the SSLError made
 * after it see this connection's errors only. Peeking first: clearing the
 * whole queue costs more than the records of a small echo's reads. */
static void clear_errors(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

#define tls_of(ct, field) ((tls *)((char *)(ct)-offsetof(tls, field)))

/* ---- the BIO ---------------------------------------------------------------------- */

static int bio_write(BIO *b, const char *p, size_t n, size_t *written) {
  tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!t->out.base) {
    aio_loop_rbuf_take(t->head.lp, &t->out);
    t->out_len = 0;
    if (!t->out.base) return 0;
  }
  if (n > t->out.len - t->out_len) { /* past the loop's buffer: a bigger one of our own */
    size_t cap = 2 * (t->out_len + n);
    char *q = cap <= UINT_MAX ? malloc(cap) : NULL;
    if (!q) return 0;
    memcpy(q, t->out.base, t->out_len);
    aio_loop_rbuf_give(t->head.lp, &t->out);
    t->out = uv_buf_init(q, (unsigned)cap);
  }
  memcpy(t->out.base + t->out_len, p, n);
  t->out_len += n;
  *written = n;
  return 1;
}

static int bio_read(BIO *b, char *p, size_t n, size_t *got) {
  tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_n == 0) {
    BIO_set_retry_read(b);
    *got = 0;
    return 0;
  }
  if (n > t->in_n) n = t->in_n;
  memcpy(p, t->in_p, n);
  t->in_p += n;
  t->in_n -= n;
  *got = n;
  return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  return cmd == BIO_CTRL_FLUSH; /* the records go out at the end of each step */
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *bio_method(aio_state *S) {
  BIO_METHOD *m = S->bio_method;
  if (m) return m;
  m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "asyncio transport");
  if (!m || !BIO_meth_set_write_ex(m, bio_write) || !BIO_meth_set_read_ex(m, bio_read) ||
      !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create)) {
    BIO_meth_free(m);
    return NULL;
  }
  S->bio_method = m;
  return m;
}

void aio_tls_free_method(aio_state *S) {
  BIO_meth_free(S->bio_method);
  S->bio_method = NULL;
}

/* ---- the transport below ---------------------------------------------------------- */
/* Each pushes the lower transport for the call; idx is absolute. */

static int push_lower(lua_State *L, tls *t, int idx) {
  if (!t->ltp && !t->ltls) return 0;
  lua_getiuservalue(L, idx, UV_LOWER);
  return lua_gettop(L);
}

static size_t wbuf_size(const tls *t) {
  const tls *l;
  size_t n = 0;
  for (l = t; l; l = l->ltls) {
    n += l->wq_bytes;
    if (l->ltp) n += aio_tp_wsize(l->ltp);
  }
  return n;
}

static void lower_write(lua_State *L, tls *t, int idx, const char *p, size_t n) {
  int l = push_lower(L, t, idx);
  if (!l) return;
  if (t->ltp)
    aio_tp_write_buf(L, t->ltp, l, p, n);
  else
    tls_send(L, t->ltls, l, 0, p, n);
  lua_pop(L, 1);
}

static void lower_close(lua_State *L, tls *t, int idx) {
  int l = push_lower(L, t, idx);
  if (!l) return;
  if (t->ltp)
    aio_tp_close(L, t->ltp);
  else
    tls_close(L, t->ltls, l);
  lua_pop(L, 1);
}

/* err_idx: absolute, or 0 */
static void lower_abort(lua_State *L, tls *t, int idx, int err_idx) {
  int l = push_lower(L, t, idx);
  if (!l) return;
  if (t->ltp)
    aio_tp_force_close(L, t->ltp, err_idx);
  else
    tls_abort(L, t->ltls, l, err_idx);
  lua_pop(L, 1);
}

static void lower_set_paused(lua_State *L, tls *t, int idx, int paused) {
  int l = push_lower(L, t, idx);
  if (!l) return;
  if (t->ltp)
    aio_tp_set_paused(t->ltp, paused);
  else
    tls_set_paused(L, t->ltls, l, paused);
  lua_pop(L, 1);
}

/* ---- writing ---------------------------------------------------------------------- */

/* Sends the ciphertext made so far. */
static void flush(lua_State *L, tls *t, int idx) {
  uv_buf_t out = t->out;
  size_t n = t->out_len;
  if (!out.base) return;
  t->out.base = NULL;
  t->out_len = 0;
  if (n) lower_write(L, t, idx, out.base, n);
  aio_loop_rbuf_give(t->head.lp, &out);
}

/* An OpenSSL failure after the handshake: the connection is lost with it. */
static void fatal(lua_State *L, tls *t, int idx, int sslerr) {
  aio_ssl_push_error(L, t->ssl, sslerr, NULL);
  lower_abort(L, t, idx, lua_gettop(L));
  lua_pop(L, 1);
}

/* Encrypts p[0..n) while the transport below takes more; returns the bytes
 * used. */
static size_t encrypt(lua_State *L, tls *t, int idx, const char *p, size_t n) {
  size_t off = 0;
  while (off < n && !t->lower_paused && t->ssl && t->state != ST_CLOSED) {
    size_t chunk = n - off > CHUNK ? CHUNK : n - off, w = 0;
    clear_errors();
    if (!SSL_write_ex(t->ssl, p + off, chunk, &w)) {
      int e = SSL_get_error(t->ssl, 0);
      flush(L, t, idx);
      fatal(L, t, idx, e);
      return n;
    }
    off += w;
    flush(L, t, idx);
  }
  return off;
}

static void maybe_pause_app(lua_State *L, tls *t, int idx) {
  if (t->writing_paused || !t->app_made || wbuf_size(t) <= t->high) return;
  t->writing_paused = 1;
  lua_getiuservalue(L, idx, UV_PROTO);
  t->ops->pause_writing(L, lua_gettop(L), idx);
  lua_pop(L, 1);
}

static void maybe_resume_app(lua_State *L, tls *t, int idx) {
  if (!t->writing_paused || wbuf_size(t) > t->low) return;
  t->writing_paused = 0;
  lua_getiuservalue(L, idx, UV_PROTO);
  t->ops->resume_writing(L, lua_gettop(L), idx);
  lua_pop(L, 1);
}

/* Queues the string at s_idx from offset off. */
static void queue_plain(lua_State *L, tls *t, int idx, int s_idx, size_t off) {
  size_t n;
  lua_tolstring(L, s_idx, &n);
  if (lua_getiuservalue(L, idx, UV_WQ) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, UV_WQ);
  }
  if (t->wq_head > t->wq_tail) t->wq_off = off;
  lua_pushvalue(L, s_idx);
  lua_rawseti(L, -2, ++t->wq_tail);
  lua_pop(L, 1);
  t->wq_bytes += n - off;
}

static void send_close_notify(lua_State *L, tls *t, int idx) {
  clear_errors();
  SSL_shutdown(t->ssl);
  clear_errors();
  flush(L, t, idx);
}

static void do_shutdown(lua_State *L, tls *t, int idx);

/* Encrypts what the queue holds while the transport below takes more. */
static void drain_queue(lua_State *L, tls *t, int idx) {
  if (t->state != ST_WRAPPED && t->state != ST_FLUSHING) return;
  if (t->wq_head <= t->wq_tail) {
    int q;
    lua_getiuservalue(L, idx, UV_WQ);
    q = lua_gettop(L);
    while (t->wq_head <= t->wq_tail && !t->lower_paused && t->ssl && t->state != ST_CLOSED) {
      size_t n, used;
      const char *p;
      lua_rawgeti(L, q, t->wq_head);
      p = lua_tolstring(L, -1, &n);
      used = encrypt(L, t, idx, p + t->wq_off, n - t->wq_off);
      lua_pop(L, 1);
      t->wq_bytes -= used;
      t->wq_off += used;
      if (t->wq_off < n) break;
      lua_pushnil(L);
      lua_rawseti(L, q, t->wq_head++);
      t->wq_off = 0;
    }
    lua_pop(L, 1);
    if (t->wq_head <= t->wq_tail) return;
    t->wq_head = 1;
    t->wq_tail = 0;
    t->wq_bytes = 0;
    lua_pushnil(L);
    lua_setiuservalue(L, idx, UV_WQ);
  }
  if (t->state == ST_FLUSHING)
    do_shutdown(L, t, idx);
  else if (t->eof && t->state == ST_WRAPPED && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
    send_close_notify(L, t, idx);
}

/* write(p[0..n)) from the string at s_idx, or (s_idx 0) from a buffer a
 * copy of whose rest is queued. */
static void tls_send(lua_State *L, tls *t, int idx, int s_idx, const char *p, size_t n) {
  size_t off = 0;
  if (t->state > ST_WRAPPED || t->aborted) {
    if (t->conn_lost++ == 5) {
      aio_push_hook(L, t->S, "log");
      lua_pushliteral(L, "warning");
      lua_pushliteral(L, "SSL transport: write() after close or connection lost.");
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
    return;
  }
  if (t->state == ST_WRAPPED && t->wq_head > t->wq_tail) off = encrypt(L, t, idx, p, n);
  if (off < n) {
    if (s_idx == 0) {
      lua_pushlstring(L, p + off, n - off);
      queue_plain(L, t, idx, lua_gettop(L), 0);
      lua_pop(L, 1);
    } else {
      queue_plain(L, t, idx, s_idx, off);
    }
  }
  maybe_pause_app(L, t, idx);
}

static void tls_write(lua_State *L, tls *t, int idx, int s_idx) {
  size_t n;
  const char *p = lua_tolstring(L, s_idx, &n);
  if (t->eof) aio_raise(L, "RuntimeError", "Cannot call write() after write_eof()");
  if (n) tls_send(L, t, lua_absindex(L, idx), lua_absindex(L, s_idx), p, n);
}

void aio_tls_write(lua_State *L, int idx, int s_idx) {
  tls_write(L, check_tls(L, idx), idx, s_idx);
}

int aio_tls_is_closing(lua_State *L, int idx) {
  tls *t = check_tls(L, idx);
  return t->state != ST_WRAPPED || t->aborted;
}

/* ---- handshake and shutdown --------------------------------------------------------- */

static void settle_waiter(lua_State *L, int idx, int err_idx) {
  if (lua_getiuservalue(L, idx, UV_WAITER) == LUA_TUSERDATA &&
      ((aio_future *)lua_touserdata(L, -1))->state == AIO_PENDING) {
    if (err_idx)
      aio_future_set_exc(L, -1, err_idx);
    else
      aio_future_set_results(L, -1, idx, 1);
  }
  lua_pop(L, 1);
}

static void remove_timers(tls *t) {
  aio_loop_remove_timer(t->head.lp, &t->hs_timer.timer);
  aio_loop_remove_timer(t->head.lp, &t->sd_timer.timer);
  aio_loop_remove_timer(t->head.lp, &t->resume_timer.timer);
}

/* A server's failed handshake goes to the exception handler, so that the
 * server goes on; one with a peer that sent nothing (a port probe, a
 * scanner) is not worth a report, nor a start_tls, whose caller hears it. */
static void report_failure(lua_State *L, tls *t, int idx, int err_idx) {
  aio_loop *lp = t->head.lp;
  if (!t->server_side || t->was_made || !t->got_data || lp->closed) return;
  lua_createtable(L, 0, 4);
  lua_pushstring(L, SSL_get_verify_result(t->ssl) != X509_V_OK
                        ? "SSL handshake failed on verifying the certificate"
                        : "SSL handshake failed");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, err_idx);
  lua_setfield(L, -2, "exception");
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "transport");
  if (push_extra(L, t, idx, "peername")) lua_setfield(L, -2, "peername");
  aio_loop_call_exception_handler(L, lp, lua_gettop(L));
  lua_pop(L, 1);
}

/* The handshake failed with the error at err_idx: the waiter hears it, the
 * connection goes (after the alert, unless `abort`). */
static void handshake_failed(lua_State *L, tls *t, int idx, int err_idx, int abort) {
  if (t->state != ST_HANDSHAKE) return;
  t->state = ST_CLOSED;
  aio_loop_remove_timer(t->head.lp, &t->hs_timer.timer);
  settle_waiter(L, idx, err_idx);
  report_failure(L, t, idx, err_idx);
  if (abort || t->was_made)
    lower_abort(L, t, idx, err_idx);
  else
    lower_close(L, t, idx);
}

static void handshake_done(lua_State *L, tls *t, int idx) {
  aio_loop_remove_timer(t->head.lp, &t->hs_timer.timer);
  t->state = ST_WRAPPED;
  t->app_made = 1;
  lua_getiuservalue(L, idx, UV_PROTO);
  t->ops->connection_made(L, lua_gettop(L), idx);
  lua_pop(L, 1);
  settle_waiter(L, idx, 0);
  drain_queue(L, t, idx);
}

/* close_notify sent; done once the peer's came (else reading goes on, bounded
 * by the shutdown timeout). */
static void do_shutdown(lua_State *L, tls *t, int idx) {
  int r, e = SSL_ERROR_NONE;
  t->state = ST_SHUTDOWN;
  clear_errors();
  r = SSL_shutdown(t->ssl);
  if (r == 0 && (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN)) r = SSL_shutdown(t->ssl);
  if (r < 0) e = SSL_get_error(t->ssl, r);
  clear_errors();
  flush(L, t, idx);
  if (r == 1 || (r < 0 && e != SSL_ERROR_WANT_READ)) {
    lower_close(L, t, idx);
    return;
  }
  if (t->app_paused) {
    t->app_paused = 0;
    lower_set_paused(L, t, idx, 0);
  }
  if (t->pend_len) aio_loop_add_ctimer(t->head.lp, &t->resume_timer, 0);
}

static void on_hs_timeout(lua_State *L, aio_ctimer *ct) {
  tls *t = tls_of(ct, hs_timer);
  int idx;
  if (t->state != ST_HANDSHAKE || t->ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  idx = lua_gettop(L);
  lua_pushfstring(L, "SSL handshake is taking longer than %f seconds: aborting the connection",
                  (lua_Number)t->hs_timeout);
  aio_push_error(L, "ConnectionAbortedError", -1);
  handshake_failed(L, t, idx, lua_gettop(L), 1);
}

static void on_sd_timeout(lua_State *L, aio_ctimer *ct) {
  tls *t = tls_of(ct, sd_timer);
  if ((t->state != ST_FLUSHING && t->state != ST_SHUTDOWN) || t->ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  lua_pushliteral(L, "SSL shutdown timed out");
  aio_push_error(L, "TimeoutError", -1);
  lower_abort(L, t, lua_gettop(L) - 2, lua_gettop(L));
}

/* ---- reading ------------------------------------------------------------------------ */

/* The peer's close_notify: the application's eof_received decides, as for
 * a TCP half-close; we may still write until we close. */
static void peer_closed(lua_State *L, tls *t, int idx) {
  int keep;
  if (t->state == ST_SHUTDOWN) {
    do_shutdown(L, t, idx);
    return;
  }
  if (t->state != ST_WRAPPED) return;
  lua_getiuservalue(L, idx, UV_PROTO);
  keep = t->ops->eof_received(L, lua_gettop(L), idx);
  lua_pop(L, 1);
  if (!keep || (t->eof && t->wq_head > t->wq_tail)) tls_close(L, t, idx);
}

static void deliver(lua_State *L, tls *t, int idx, const char *p, size_t n, int direct) {
  lua_getiuservalue(L, idx, UV_PROTO);
  if (direct)
    t->ops->buffer_updated(L, lua_gettop(L), idx, n);
  else
    t->ops->data_received(L, lua_gettop(L), idx, p, n);
  lua_pop(L, 1);
}

/* Decrypts every record the input holds: into the StreamReader's buffer, or
 * one of the loop's buffers for a Lua protocol, which then hears all of it
 * in one data_received. After close (SHUTDOWN), records are read and
 * dropped until the peer's close_notify. */
static void read_records(lua_State *L, tls *t, int idx) {
  for (;;) {
    int discard = t->state == ST_SHUTDOWN, e = SSL_ERROR_NONE;
    uv_buf_t scratch = {0};
    size_t room = 0, got = 0, k;
    char *p = NULL;
    if ((t->app_paused && !discard) || t->got_close_notify || t->state == ST_CLOSED || !t->ssl ||
        t->aborted)
      break;
    if (!discard && t->ops->get_buffer) p = t->ops->get_buffer(t->proto_ud, &room);
    if (!p) {
      aio_loop_rbuf_take(t->head.lp, &scratch);
      p = scratch.base;
      room = scratch.len;
      if (!p) {
        lua_pushliteral(L, "out of memory decrypting TLS records");
        aio_push_error(L, "RuntimeError", -1);
        lower_abort(L, t, idx, lua_gettop(L));
        lua_pop(L, 2);
        return;
      }
    }
    while (got < room) {
      clear_errors();
      if (!SSL_read_ex(t->ssl, p + got, room - got, &k)) {
        e = SSL_get_error(t->ssl, 0);
        break;
      }
      got += k;
    }
    flush(L, t, idx); /* alerts, key updates */
    if (got && !discard && t->app_made) deliver(L, t, idx, p, got, !scratch.base);
    if (scratch.base) aio_loop_rbuf_give(t->head.lp, &scratch);
    if (e == SSL_ERROR_NONE) continue; /* the room filled: more may wait */
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      clear_errors();
      t->got_close_notify = 1;
      peer_closed(L, t, idx);
    } else if (t->state != ST_CLOSED) {
      fatal(L, t, idx, e);
    }
    break;
  }
}

static void process(lua_State *L, tls *t, int idx) {
  if (t->state == ST_HANDSHAKE) {
    int r, e;
    clear_errors();
    r = SSL_do_handshake(t->ssl);
    e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    flush(L, t, idx);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e != SSL_ERROR_NONE) {
      aio_ssl_push_error(L, t->ssl, e, NULL);
      handshake_failed(L, t, idx, lua_gettop(L), 0);
      lua_pop(L, 1);
      return;
    }
    handshake_done(L, t, idx);
  }
  read_records(L, t, idx);
}

/* Keeps what the BIO did not take of the input. */
static int keep_input(tls *t) {
  char *p;
  if (t->in_n == 0) {
    free(t->pend);
    t->pend = NULL;
    t->pend_len = 0;
  } else if (t->in_p != t->pend) {
    if ((p = malloc(t->in_n)) == NULL) return -1;
    memcpy(p, t->in_p, t->in_n);
    free(t->pend);
    t->pend = p;
    t->pend_len = t->in_n;
  } else {
    memmove(t->pend, t->in_p, t->in_n);
    t->pend_len = t->in_n;
  }
  t->in_p = NULL;
  t->in_n = 0;
  return 0;
}

/* Runs the connection on p[0..n) of new ciphertext, behind what was kept. */
static void feed(lua_State *L, tls *t, int idx, const char *p, size_t n) {
  if (t->pend_len && n) {
    char *q = realloc(t->pend, t->pend_len + n);
    if (!q) goto nomem;
    memcpy(q + t->pend_len, p, n);
    t->pend = q;
    t->pend_len += n;
  }
  if (t->pend_len) {
    t->in_p = t->pend;
    t->in_n = t->pend_len;
  } else {
    t->in_p = p;
    t->in_n = n;
  }
  process(L, t, idx);
  if (keep_input(t) == 0) return;
nomem:
  lua_pushliteral(L, "out of memory buffering TLS records");
  aio_push_error(L, "RuntimeError", -1);
  lower_abort(L, t, idx, lua_gettop(L));
  lua_pop(L, 2);
}

static void on_resume(lua_State *L, aio_ctimer *ct) {
  tls *t = tls_of(ct, resume_timer);
  if (t->state == ST_CLOSED || t->ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
  feed(L, t, lua_gettop(L), NULL, 0);
}

/* ---- the protocol of the transport below ---------------------------------------------- */

/* Never called: the transport below is running already when tls_wrap makes
 * it ours (aio_tp_wrap), and the handshake starts there. */
static void tl_made(lua_State *L, int proto_idx, int tp_idx) {
  (void)L;
  (void)proto_idx;
  (void)tp_idx;
}

static void tl_data(lua_State *L, int proto_idx, int tp_idx, const char *p, size_t n) {
  tls *t = lua_touserdata(L, proto_idx);
  (void)tp_idx;
  if (t->state == ST_CLOSED || !t->ssl) return;
  t->got_data = 1;
  feed(L, t, lua_absindex(L, proto_idx), p, n);
}

/* The peer's FIN. After its close_notify that is the end; without one it
 * is an abrupt EOF, which may be a truncation attack: SSLEOFError. */
static int tl_eof(lua_State *L, int proto_idx, int tp_idx) {
  tls *t = lua_touserdata(L, proto_idx);
  int idx = lua_absindex(L, proto_idx);
  (void)tp_idx;
  if (t->state == ST_CLOSED || !t->ssl) return 0;
  if (t->got_close_notify) return t->state == ST_WRAPPED || t->state == ST_FLUSHING;
  if (t->state == ST_SHUTDOWN) return 0;
  aio_ssl_push_error(L, NULL, SSL_ERROR_SYSCALL, NULL);
  if (t->state == ST_HANDSHAKE)
    handshake_failed(L, t, idx, lua_gettop(L), 1);
  else
    lower_abort(L, t, idx, lua_gettop(L));
  lua_pop(L, 1);
  return 1;
}

/* What a connection holds once it is gone, whichever way it went. */
static void release(lua_State *L, tls *t) {
  t->state = ST_CLOSED;
  remove_timers(t);
  aio_closable_unlink(&t->cl);
  if (t->ssl) {
    SSL_free(t->ssl);
    t->ssl = NULL;
    t->S->tls_live--;
  }
  free(t->pend);
  t->pend = NULL;
  t->pend_len = 0;
  t->ltp = NULL;
  t->ltls = NULL;
  t->wq_head = 1;
  t->wq_tail = 0;
  t->wq_bytes = 0;
  if (L && t->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

/* Loop close: no callback will reach Lua any more. */
static void on_loop_close(aio_closable *c) {
  tls *t = (tls *)((char *)c - offsetof(tls, cl));
  release(aio_loop_thread(t->head.lp), t);
}
static int push_client(lua_State *L, aio_closable *c, int server_idx) {
  return aio_transport_push_client(L, tls_of(c, cl)->ref, UV_SERVER, server_idx);
}

static const aio_closable_type tls_type = {on_loop_close, "transport", "<TLS transport>",
                                           push_client};

/* lost_calls(tls, err or nil): tl_lost's calls out, the handshake's waiter
 * and the application's connection_lost, under lua_pcall of their own: a
 * memory error in them must still let the transport leave its Server
 * (whose wait_closed counts it) and free its SSL objects. */
static int lost_calls(lua_State *L) {
  tls *t = lua_touserdata(L, 1);
  int err_idx = lua_isnil(L, 2) ? 0 : 2;
  if (t->state == ST_HANDSHAKE) {
    if (err_idx)
      lua_pushvalue(L, err_idx);
    else {
      lua_pushliteral(L, "Connection lost during the TLS handshake");
      aio_push_error(L, "ConnectionResetError", -1);
      lua_remove(L, -2);
    }
    settle_waiter(L, 1, lua_gettop(L));
    lua_pop(L, 1);
  }
  t->state = ST_CLOSED;
  if (t->app_made || t->was_made) {
    lua_getiuservalue(L, 1, UV_PROTO);
    t->ops->connection_lost(L, lua_gettop(L), 1, err_idx);
  }
  return 0;
}

static void tl_lost(lua_State *L, int proto_idx, int tp_idx, int err_idx) {
  tls *t = lua_touserdata(L, proto_idx);
  int idx = lua_absindex(L, proto_idx), top = lua_gettop(L), i;
  (void)tp_idx;
  if (t->ref == LUA_NOREF) return;
  if (err_idx) err_idx = lua_absindex(L, err_idx);
  lua_pushcfunction(L, lost_calls);
  lua_pushvalue(L, idx);
  aio_push_opt(L, err_idx);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    t->state = ST_CLOSED;
    lua_writestringerror("asyncio: error closing a TLS transport: %s\n", lua_tostring(L, -1));
  }
  lua_settop(L, top);
  lua_getiuservalue(L, idx, UV_SERVER);
  aio_transport_detach(L, t->head.lp, idx, lua_gettop(L));
  lua_settop(L, top);
  for (i = UV_LOWER; i <= UV_N; i++) {
    if (i == UV_CTX) continue;
    lua_pushnil(L);
    lua_setiuservalue(L, idx, i);
  }
  release(L, t);
}

static void tl_pause_writing(lua_State *L, int proto_idx, int tp_idx) {
  (void)tp_idx;
  ((tls *)lua_touserdata(L, proto_idx))->lower_paused = 1;
}

static void tl_resume_writing(lua_State *L, int proto_idx, int tp_idx) {
  tls *t = lua_touserdata(L, proto_idx);
  int idx = lua_absindex(L, proto_idx);
  (void)tp_idx;
  t->lower_paused = 0;
  if (t->state == ST_CLOSED) return;
  drain_queue(L, t, idx);
  maybe_resume_app(L, t, idx);
}

const aio_proto_ops aio_tls_ops = {tl_made,          tl_data,           tl_eof, tl_lost,
                                   tl_pause_writing, tl_resume_writing, NULL,   NULL};

/* ---- the transport API ------------------------------------------------------------------ */

static void tls_close(lua_State *L, tls *t, int idx) {
  if (t->state == ST_HANDSHAKE) { /* Python aborts a connection not yet made */
    lower_abort(L, t, idx, 0);
    return;
  }
  if (t->state != ST_WRAPPED || t->aborted) return;
  t->state = ST_FLUSHING;
  if (t->sd_timeout > 0) aio_loop_add_ctimer(t->head.lp, &t->sd_timer, t->sd_timeout);
  if (t->wq_head > t->wq_tail) do_shutdown(L, t, idx);
}

static void tls_abort(lua_State *L, tls *t, int idx, int err_idx) {
  if (t->state != ST_CLOSED) t->aborted = 1;
  lower_abort(L, t, idx, err_idx);
}

static void tls_set_paused(lua_State *L, tls *t, int idx, int paused) {
  if (t->state == ST_CLOSED || t->app_paused == paused) return;
  t->app_paused = (uint8_t)paused;
  lower_set_paused(L, t, idx, paused);
  if (!paused && (t->pend_len || (t->ssl && SSL_has_pending(t->ssl))))
    aio_loop_add_ctimer(t->head.lp, &t->resume_timer, 0);
}

static int l_write(lua_State *L) {
  tls *t = check_tls(L, 1);
  luaL_checktype(L, 2, LUA_TSTRING);
  tls_write(L, t, 1, 2);
  return 0;
}

static int l_writelines(lua_State *L) {
  tls *t = check_tls(L, 1);
  aio_push_joined(L, 2);
  tls_write(L, t, 1, lua_gettop(L));
  return 0;
}

/* close_notify once the queue is out; reading goes on (TLS half-close). */
static int l_write_eof(lua_State *L) {
  tls *t = check_tls(L, 1);
  if (t->state != ST_WRAPPED || t->eof) return 0;
  t->eof = 1;
  if (t->wq_head > t->wq_tail) drain_queue(L, t, 1);
  if (t->got_close_notify) tls_close(L, t, 1);
  return 0;
}

static int l_can_write_eof(lua_State *L) {
  check_tls(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  tls_close(L, check_tls(L, 1), 1);
  return 0;
}

static int l_abort(lua_State *L) {
  tls_abort(L, check_tls(L, 1), 1, 0);
  return 0;
}

static int l_force_close(lua_State *L) {
  lua_settop(L, 2);
  tls_abort(L, check_tls(L, 1), 1, lua_isnil(L, 2) ? 0 : 2);
  return 0;
}

static int l_is_closing(lua_State *L) {
  lua_pushboolean(L, aio_tls_is_closing(L, 1));
  return 1;
}

static int l_pause_reading(lua_State *L) {
  tls *t = check_tls(L, 1);
  if (t->state <= ST_FLUSHING) tls_set_paused(L, t, 1, 1);
  return 0;
}

static int l_resume_reading(lua_State *L) {
  tls_set_paused(L, check_tls(L, 1), 1, 0);
  return 0;
}

static int l_is_reading(lua_State *L) {
  tls *t = check_tls(L, 1);
  lua_pushboolean(L, t->state <= ST_FLUSHING && !t->app_paused);
  return 1;
}

static void lower_limit(size_t *high, size_t *low, const tls *t) {
  if (*high > t->high) *high = t->high;
  if (*low > t->low) *low = t->low;
}

/* The layers below pause no later than this one, so its low-water mark is
 * seen when they resume. */
static int l_set_write_buffer_limits(lua_State *L) {
  tls *t = check_tls(L, 1), *l;
  aio_check_write_limits(L, &t->high, &t->low);
  for (l = t; l; l = l->ltls) {
    lower_limit(&l->high, &l->low, t);
    if (l->ltp) {
      aio_tp_wq *q = aio_tp_wq_of(L, l->ltp);
      lower_limit(&q->high, &q->low, t);
    }
  }
  maybe_pause_app(L, t, 1);
  return 0;
}

static int l_get_write_buffer_limits(lua_State *L) {
  tls *t = check_tls(L, 1);
  lua_pushinteger(L, (lua_Integer)t->low);
  lua_pushinteger(L, (lua_Integer)t->high);
  return 2;
}

static int l_get_write_buffer_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)wbuf_size(check_tls(L, 1)));
  return 1;
}

static int call_sslobj(lua_State *L, tls *t, int idx, const char *method) {
  if (!push_extra(L, t, idx, "ssl_object")) return 0;
  lua_getfield(L, -1, method);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

static int push_extra(lua_State *L, tls *t, int idx, const char *name) {
  int l;
  if (strcmp(name, "ssl_object") == 0) {
    if (lua_getiuservalue(L, idx, UV_SSLOBJ) != LUA_TNIL || !t->ssl) return !lua_isnil(L, -1);
    lua_pop(L, 1);
    lua_getiuservalue(L, idx, UV_HOST);
    aio_sslobject_push(L, t->ssl, t->server_side, -1);
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, UV_SSLOBJ);
    return 1;
  }
  if (strcmp(name, "peercert") == 0) return call_sslobj(L, t, idx, "getpeercert");
  if (strcmp(name, "cipher") == 0) return call_sslobj(L, t, idx, "cipher");
  if (strcmp(name, "sslcontext") == 0) {
    lua_getiuservalue(L, idx, UV_CTX);
    return 1;
  }
  if (!(l = push_lower(L, t, idx))) return 0;
  if (t->ltp ? aio_tp_push_extra(L, t->ltp, name) : push_extra(L, t->ltls, l, name)) {
    lua_remove(L, l);
    return 1;
  }
  lua_pop(L, 1);
  return 0;
}

static int l_get_extra_info(lua_State *L) {
  tls *t = check_tls(L, 1);
  const char *name = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  if (t->state != ST_CLOSED && push_extra(L, t, 1, name)) return 1;
  lua_settop(L, 3);
  return 1;
}

static void set_protocol(lua_State *L, tls *t, int idx, const aio_proto_ops *ops, int p_idx) {
  aio_transport_set_protocol(L, idx, p_idx, ops, &t->ops, &t->proto_ud);
}

static int l_get_protocol(lua_State *L) {
  check_tls(L, 1);
  lua_getiuservalue(L, 1, UV_PROTO);
  return 1;
}

static int l_set_protocol(lua_State *L) {
  tls *t = check_tls(L, 1);
  set_protocol(L, t, 1, aio_proto_ops_for(L, 2), 2);
  return 0;
}

/* _drain_waiter() for sendfile: the stream transport's at the bottom. While
 * wrapped, plaintext waits in the queue only while the layer below is above
 * its high-water mark, so that one's low-water mark is the one to wait for. */
static int drain_waiter(lua_State *L, tls *t, int idx) {
  int l;
  if (t->state == ST_CLOSED || !(l = push_lower(L, t, idx)))
    return aio_raise(L, "ConnectionResetError", "Connection lost");
  return t->ltp ? aio_tp_drain_waiter(L, t->ltp) : drain_waiter(L, t->ltls, l);
}

static int l_drain_waiter(lua_State *L) {
  return drain_waiter(L, check_tls(L, 1), 1);
}

/* _waiter() -> the Future the handshake settles, until the connection is lost */
static int l_waiter(lua_State *L) {
  check_tls(L, 1);
  lua_getiuservalue(L, 1, UV_WAITER);
  return 1;
}

static int l_tostring(lua_State *L) {
  static const char *const states[] = {"handshaking", "open", "flushing", "shutting down",
                                       "closed"};
  tls *t = aio_check_tagged(L, 1, AIO_T_TLS, "TLS transport");
  lua_pushfstring(L, "<TLS transport %s%s %p>", states[t->state], t->server_side ? " server" : "",
                  (void *)t);
  return 1;
}

static int tls_gc(lua_State *L) {
  tls *t = lua_touserdata(L, 1);
  release(NULL, t);
  if (t->out.base) aio_loop_rbuf_give(t->head.lp, &t->out);
  t->out.base = NULL;
  return 0;
}

/* ---- wrapping ------------------------------------------------------------------------------ */

static int is_ip(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static double opt_timeout(lua_State *L, const char *name, double def) {
  double v = def;
  if (lua_getfield(L, 4, name) != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "%s must be a number", name);
    v = lua_tonumber(L, -1);
    if (!(v > 0))
      aio_raise(L, "ValueError", "%s should be a positive number, got %f", name, (lua_Number)v);
  }
  lua_pop(L, 1);
  return v;
}

/* Sets up the SSL object: SNI and the name the peer's certificate must hold. */
static void setup_ssl(lua_State *L, tls *t, const char *host, int check_hostname) {
  BIO *bio = NULL;
  int ip, ok;
  BIO_METHOD *m = bio_method(t->S);
  clear_errors();
  if (m) bio = BIO_new(m);
  if (!bio) {
    aio_ssl_push_error(L, NULL, SSL_ERROR_SSL, "cannot make the TLS connection");
    lua_error(L);
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio);
  if (t->server_side) {
    SSL_set_accept_state(t->ssl);
    return;
  }
  SSL_set_connect_state(t->ssl);
  if (!host || !*host) return;
  ip = is_ip(host);
  ok = ip || SSL_set_tlsext_host_name(t->ssl, host);
  if (ok && check_hostname && ip) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
  } else if (ok && check_hostname) {
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = SSL_set1_host(t->ssl, host);
  }
  if (!ok) {
    ERR_clear_error(); /* OpenSSL's reason would not say more */
    aio_raise(L, "ValueError", "invalid server_hostname '%s'", host);
  }
}

/* tls_wrap(lower, protocol, ctx, {server_side =, server_hostname =,
 * handshake_timeout =, shutdown_timeout =, server =, waiter =, upgrade =}) -> TLS
 * transport, handshaking. lower becomes its for good; bytes a StreamReader
 * protocol had buffered and not handed out go into the TLS input. */
static int l_wrap(lua_State *L) {
  aio_tp_box *b = aio_test_tagged(L, 1, AIO_T_TRANSPORT);
  tls *lt = aio_test_tagged(L, 1, AIO_T_TLS), *t;
  const aio_proto_ops *ops = aio_proto_ops_for(L, 2);
  int check_hostname, server_side, idx;
  SSL_CTX *ctx = aio_check_sslctx(L, 3, &check_hostname);
  const char *host;
  size_t hlen = 0;
  double hs, sd;
  aio_loop *lp;
  if (!(b && b->tp) && !lt) return luaL_typeerror(L, 1, "Transport");
  if (b ? b->tp->state != AIO_TP_OPEN || b->tp->wrapped : lt->state != ST_WRAPPED || lt->wrapped)
    return aio_raise(L, "RuntimeError", "transport is closing or already wrapped");
  luaL_checktype(L, 4, LUA_TTABLE);
  lp = b ? b->tp->lp : lt->head.lp;
  aio_loop_check_open(L, lp);
  lua_getfield(L, 4, "server_side");
  server_side = lua_toboolean(L, -1);
  lua_getfield(L, 4, "server_hostname"); /* 6 */
  if (!lua_isnil(L, 6) && lua_type(L, 6) != LUA_TSTRING)
    return luaL_error(L, "server_hostname must be a string");
  host = lua_tolstring(L, 6, &hlen);
  if (host && strlen(host) != hlen)
    return aio_raise(L, "ValueError", "server_hostname contains a NUL byte");
  if (!server_side && check_hostname && !host)
    return aio_raise(L, "ValueError", "check_hostname requires server_hostname");
  hs = opt_timeout(L, "handshake_timeout", 60);
  sd = opt_timeout(L, "shutdown_timeout", 30);
  t = lua_newuserdatauv(L, sizeof *t, UV_N); /* 7 */
  idx = lua_gettop(L);
  memset(t, 0, sizeof *t);
  t->head.tag = &aio_tags[AIO_T_TLS];
  t->cl.next = t->cl.prev = &t->cl;
  t->head.lp = lp;
  t->S = aio_state_of(L);
  t->ref = LUA_NOREF;
  t->wq_head = 1;
  t->high = 64 * 1024;
  t->low = 16 * 1024;
  t->hs_timeout = hs;
  t->sd_timeout = sd;
  t->server_side = (uint8_t)server_side;
  t->hs_timer.cb = on_hs_timeout;
  t->sd_timer.cb = on_sd_timeout;
  t->resume_timer.cb = on_resume;
  aio_setmetatable(L, t->S, AIO_T_TLS);
  clear_errors();
  if ((t->ssl = SSL_new(ctx)) == NULL) {
    aio_ssl_push_error(L, NULL, SSL_ERROR_SSL, "cannot make the TLS connection");
    return lua_error(L);
  }
  t->S->tls_live++;
  setup_ssl(L, t, host, check_hostname);
  set_protocol(L, t, idx, ops, 2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, idx, UV_LOWER);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, idx, UV_CTX);
  lua_pushvalue(L, 6);
  lua_setiuservalue(L, idx, UV_HOST);
  lua_getfield(L, 4, "server");
  lua_setiuservalue(L, idx, UV_SERVER);
  lua_getfield(L, 4, "upgrade");
  t->was_made = (uint8_t)lua_toboolean(L, -1);
  lua_getfield(L, 4, "waiter");
  if (lua_toboolean(L, -1)) {
    aio_future_new(L, lp);
    lua_setiuservalue(L, idx, UV_WAITER);
  }
  lua_settop(L, idx);
  aio_reader_take_buffered(L, 2);
  {
    size_t n;
    const char *p = lua_tolstring(L, -1, &n);
    if (n && (t->pend = malloc(n)) == NULL) return luaL_error(L, "not enough memory");
    if (n) memcpy(t->pend, p, n);
    t->pend_len = n;
    t->got_data = n > 0;
  }
  lua_settop(L, idx);
  lua_pushvalue(L, idx);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  aio_closable_link(lp, &t->cl, &tls_type);
  aio_debug_note_closable(L, lp, &t->cl);
  if (b) {
    t->ltp = b->tp;
    aio_tp_wrap(L, b->tp, 1, &aio_tls_ops, idx);
  } else {
    t->ltls = lt;
    lt->wrapped = 1;
    set_protocol(L, lt, 1, &aio_tls_ops, idx);
    tls_set_paused(L, lt, 1, 0);
  }
  aio_loop_add_ctimer(lp, &t->hs_timer, hs);
  feed(L, t, idx, NULL, 0); /* a client's hello, or the bytes that came first */
  lua_settop(L, idx);
  return 1;
}

void aio_tls_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"write", l_write},
                                     {"writelines", l_writelines},
                                     {"write_eof", l_write_eof},
                                     {"can_write_eof", l_can_write_eof},
                                     {"close", l_close},
                                     {"abort", l_abort},
                                     {"_force_close", l_force_close},
                                     {"is_closing", l_is_closing},
                                     {"pause_reading", l_pause_reading},
                                     {"resume_reading", l_resume_reading},
                                     {"is_reading", l_is_reading},
                                     {"set_write_buffer_limits", l_set_write_buffer_limits},
                                     {"get_write_buffer_limits", l_get_write_buffer_limits},
                                     {"get_write_buffer_size", l_get_write_buffer_size},
                                     {"get_extra_info", l_get_extra_info},
                                     {"get_protocol", l_get_protocol},
                                     {"set_protocol", l_set_protocol},
                                     {"_waiter", l_waiter},
                                     {"_drain_waiter", l_drain_waiter},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", tls_gc}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"tls_wrap", l_wrap}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_TLS, "asyncio.TLSTransport", methods, meta);
  lua_setfield(L, -2, "TLSTransport");
  aio_setfuncs(L, S, funcs);
}
