/* Listening sockets, shared by listener.c and the files that bind one
 * (tcp.c, pipe.c). */
#ifndef AIO_LISTENER_H
#define AIO_LISTENER_H

#include <sys/types.h>

#include "stream.h"

typedef struct aio_listener aio_listener;
struct aio_listener {
  aio_stream_handle u;
  aio_closable cl;
  aio_loop *lp;
  aio_ctimer retry;   /* while starved: when to look for a free descriptor again */
  aio_listener **box; /* the Lua object, NULL once collected */
  char *path;         /* a Unix socket's file, removed on close */
  dev_t dev;
  ino_t ino;
  int ref; /* registry ref of the box while listening */
  uint8_t kind;
  uint8_t listening;
  uint8_t closed;
  uint8_t handle_closed;
  uint8_t starved; /* a connection waits in libuv for a free descriptor */
};

/* Pushes a new Listener; the caller initialises and binds ls->u on lp->uv. */
aio_listener *aio_listener_new(lua_State *L, aio_loop *lp, int kind);
/* For a listener whose handle init failed. */
void aio_listener_discard(aio_listener *ls);
void aio_listener_close(lua_State *L, aio_listener *ls);

#endif
