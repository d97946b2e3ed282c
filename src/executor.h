/* What the executor (executor.c) shares with the rest of the core: the
 * outcomes (values or an error) that cross from one Lua state to another. */
#ifndef AIO_EXECUTOR_H
#define AIO_EXECUTOR_H

#include "copy.h"
#include "internal.h"

/* What an outcome's buffer holds */
enum {
  AIO_OUT_OK,     /* the results */
  AIO_OUT_VALUE,  /* error value, traceback */
  AIO_OUT_CLASS,  /* class name, message, fields (with the traceback): an asyncio error object */
  AIO_OUT_CANCEL, /* nothing: cancel_futures */
  AIO_OUT_BROKEN, /* nothing: the pool's initializer failed */
  AIO_OUT_NOMEM   /* nothing: out of memory while encoding the outcome */
};

/* Encodes the n values at first into b: AIO_OUT_OK, or AIO_OUT_VALUE when
 * one does not copy (b then holds the error "<what>: result k ..."). May
 * leave values above first + n - 1. */
uint8_t aio_outcome_encode_results(lua_State *L, int first, int n, aio_copybuf *b,
                                   const char *what);
/* Encodes the error at err, its traceback (a string, or nil) at err + 1,
 * into b: an asyncio error object by class name, message and copyable
 * fields; another copyable value as it is; anything else by its tostring.
 * Returns AIO_OUT_CLASS or AIO_OUT_VALUE; may leave values above err + 1. */
uint8_t aio_outcome_encode_error(lua_State *L, int err, aio_copybuf *b, const char *what);
/* Pushes the outcome `out` in b (neither AIO_OUT_CANCEL nor AIO_OUT_BROKEN):
 * returns how many results it pushed, or -1 with the error on top (an
 * asyncio error object rebuilt by class; a string as a RuntimeError whose
 * `value` it is; a plain table with the traceback added if it has none). */
int aio_outcome_push(lua_State *L, uint8_t out, const aio_copybuf *b);

#endif
