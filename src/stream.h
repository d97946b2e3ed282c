/* The stream transport shared by stream.c (the Transport), listener.c and the
 * per-family files that open one (tcp.c, pipe.c). */
#ifndef AIO_STREAM_H
#define AIO_STREAM_H

#include "internal.h"

enum { AIO_TP_TCP, AIO_TP_PIPE };
/* aio_tp.state: OPEN until close() or an error; CLOSING while close() waits
 * for queued writes; CLOSED once uv_close was called. */
enum { AIO_TP_OPEN, AIO_TP_CLOSING, AIO_TP_CLOSED };

typedef struct aio_wreq aio_wreq;
typedef struct aio_tp aio_tp;

/* A Transport's write queue, made by the first write the socket does not
 * take whole at once, or by set_write_buffer_limits: a connection whose
 * writes all went out at once, as an idle one's did, has none. */
typedef struct aio_tp_wq {
  aio_wreq *free_reqs; /* write requests kept for reuse */
  size_t wsize;        /* bytes in the requests in flight */
  size_t high, low;    /* write-buffer limits */
  int nreqs;           /* write requests allocated (slots 1..nreqs) */
  int inflight;        /* write requests in libuv's queue */
} aio_tp_wq;

/* The libuv handle of a Transport or a Listener. */
typedef union aio_stream_handle {
  uv_handle_t h;
  uv_stream_t s;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} aio_stream_handle;

/* The Lua object; the C record outlives it while libuv still holds the
 * handle, and it outlives the handle so methods keep working after close.
 * tp is NULL only once it is collected. */
typedef struct aio_tp_box {
  const char *tag; /* first: aio_test_tagged */
  aio_tp *tp;
} aio_tp_box;

/* One record per connection: the flags are bits, and the handle comes last,
 * so that a TCP transport's record ends with its uv_tcp_t, 16 bytes short of
 * the union (aio_tp_new). */
struct aio_tp {
  aio_closable cl;
  aio_loop *lp;
  const aio_proto_ops *ops;    /* NULL until started */
  void *proto_ud;              /* the protocol's C record, for ops->get_buffer */
  aio_tp_wq *wq;               /* NULL until needed (aio_tp_wq_of) */
  int ref;                     /* registry ref of the box from start to close */
  int server;                  /* registry ref of its Server's connections (stream.c), or none */
  int aux;                     /* registry ref of the aux table (stream.c), made on need */
  uint8_t conn_lost;           /* writes dropped after the connection was lost, up to 255 */
  unsigned kind : 1;           /* AIO_TP_TCP, AIO_TP_PIPE */
  unsigned state : 2;          /* AIO_TP_OPEN, ... */
  unsigned collected : 1;      /* the Lua object is gone */
  unsigned handle_closed : 1;  /* the close callback ran */
  unsigned reading : 1;        /* uv_read_start is in effect */
  unsigned paused : 1;         /* pause_reading() */
  unsigned at_eof : 1;         /* the peer's EOF was read */
  unsigned eof : 1;            /* write_eof() was called */
  unsigned writing_paused : 1; /* the protocol was told pause_writing */
  unsigned readable : 1, writable : 1;
  unsigned direct : 1;  /* the read in progress goes to the protocol's buffer */
  unsigned wrapped : 1; /* a TLS layer owns it (start_tls): its methods refuse */
  aio_stream_handle u;
};

/* Pushes a new Transport around a C record whose handle the caller then
 * initialises (uv_tcp_init, uv_pipe_init) on lp->uv; the record joins the
 * loop's closables. */
aio_tp *aio_tp_new(lua_State *L, aio_loop *lp, int kind);
/* For a record whose handle init failed: frees it with its Lua object. */
void aio_tp_discard(aio_tp *tp);
/* Closes a Transport that was never started: no protocol hears. */
void aio_tp_abandon(lua_State *L, aio_tp *tp);

/* tp's write queue, made if need be (raises when out of memory). */
aio_tp_wq *aio_tp_wq_of(lua_State *L, aio_tp *tp);
static inline size_t aio_tp_wsize(const aio_tp *tp) {
  return tp->wq ? tp->wq->wsize : 0;
}

/* For the TLS layer over a Transport (tls.c), which drives it from C. */
void aio_tp_write_buf(lua_State *L, aio_tp *tp, int tp_idx, const char *p, size_t n);
void aio_tp_close(lua_State *L, aio_tp *tp); /* once queued writes are out */
void aio_tp_force_close(lua_State *L, aio_tp *tp, int err_idx);
void aio_tp_set_paused(aio_tp *tp, int paused);
void aio_check_write_limits(lua_State *L, size_t *high, size_t *low);
void aio_push_joined(lua_State *L, int idx);
int aio_tp_push_extra(lua_State *L, aio_tp *tp, const char *name); /* 0: nothing pushed */
int aio_tp_drain_waiter(lua_State *L, aio_tp *tp);                 /* 0, or 1 Future pushed */
/* Makes the protocol at proto_idx (ops) the transport's, for good: starts it
 * if it was not, without connection_made, and reads. */
void aio_tp_wrap(lua_State *L, aio_tp *tp, int tp_idx, const aio_proto_ops *ops, int proto_idx);

/* A connect in progress (tcp.c, pipe.c): the Future it resolves with the
 * Transport, both kept by registry refs until aio_tp_on_connect. */
typedef struct aio_connect {
  uv_connect_t req;
  aio_loop *lp;
  int fut_ref, tp_ref;
} aio_connect;

/* Takes the refs: the Transport on top (popped) and the Future at fut_idx. */
void aio_connect_hold(lua_State *L, aio_connect *c, int fut_idx);
void aio_tp_on_connect(uv_connect_t *req, int status);

#endif
