/* What the executor (executor.c) shares with run_coroutine_threadsafe from a
 * job (threadsafe.c): the calls a running job posts to its loop, and the
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
  AIO_OUT_NOMEM,  /* nothing: out of memory while encoding the outcome */
  AIO_OUT_CLOSED  /* nothing: the loop closed before the outcome was known */
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

/* The job that the worker thread running L is running, or NULL. */
aio_job *aio_job_current(lua_State *L);

/* Posts the values from `first` to the top (a function and its arguments,
 * popped; copy errors name `what`) to the loop of j: called there, or with
 * rf, handed to aio_rfut_run. Returns 0 once posted (the post holds a
 * reference to rf, which the caller counted), UV_ECANCELED once the loop is
 * closed, -1 with the error pushed when a value does not copy or memory ran
 * out. */
int aio_job_post(lua_State *L, aio_job *j, int first, const char *what, aio_rfut *rf);

/* threadsafe.c: the loop's side of a job's run_coroutine_threadsafe. Each
 * takes over the reference of the request's post. */
/* The request has arrived: fn, nil (the loop argument) and the arguments,
 * encoded in b, become a task of lp. */
void aio_rfut_run(lua_State *L, aio_loop *lp, aio_rfut *rf, const aio_copybuf *b);
/* The request will never arrive (its loop is closing): the worker's result()
 * raises RuntimeError. Any thread. */
void aio_rfut_drop(aio_rfut *rf);
/* Loop close: the tasks of requests go with the loop, and their workers'
 * result() raises RuntimeError. */
void aio_rfut_loop_close(lua_State *L, aio_loop *lp);

#endif
