/* Values copied between Lua states (the executor's jobs: a function, its
 * arguments, its results and errors): encoded in one state into a flat byte
 * buffer that belongs to no state, decoded in another. */
#ifndef AIO_COPY_H
#define AIO_COPY_H

#include <stddef.h>

#include <lua.h>

typedef struct aio_copybuf {
  char *data;
  size_t len, cap;
} aio_copybuf;

/* Appends the n values at stack indices first..first+n-1 of L to b.
 * Copyable: nil, booleans, integers and floats (kept apart), strings (any
 * bytes), tables of those (nested; shared references and cycles are kept:
 * the decoded tables share and cycle the same way); with AIO_COPY_FUNCTION,
 * the first value may also be a Lua function whose only upvalue, if any, is
 * _ENV (stored as its bytecode, debug info kept for tracebacks).
 * Anything else (another function, a C function, userdata, a thread, a
 * table with a metatable: its behaviour could not come along, tables nested
 * more than 200 deep) is refused: returns -1 with a message pushed on L that
 * names the place, as "<what>: argument <argbase + k> .opts.cb: function"
 * (k from 0 for the value at `first`; the path is the keys walked down to
 * the bad value: .name for identifier strings, ["str"] for other strings,
 * [3] for integers, [1.5] for floats, [true] for booleans, [table] for the
 * inside of a table key; a bad key itself ends in "(as a table key)") and b
 * left as it was before the call. Returns 0 on success. Never raises except
 * on memory errors (a Lua error; b is then partly written but still valid
 * to free). Stack balanced. The bytes appended, from the old b->len on, form
 * one block that aio_copy_decode takes whole. */
#define AIO_COPY_FUNCTION 1
int aio_copy_encode(lua_State *L, int first, int n, aio_copybuf *b, const char *what, int argbase,
                    int flags);

/* Pushes the values of the block in data[0..len) onto L and returns how many.
 * Data not made by aio_copy_encode (truncated, corrupt) raises a Lua error,
 * never reads out of bounds. A function is loaded with lua_load (mode "b")
 * and its _ENV upvalue, if it has one, set to L's globals; `cache`, if not
 * 0, is a stack index of a table of functions keyed by their bytecode
 * string, so one function is loaded once per state. */
int aio_copy_decode(lua_State *L, const char *data, size_t len, int cache);

void aio_copybuf_reset(aio_copybuf *b); /* len = 0, memory kept */
void aio_copybuf_free(aio_copybuf *b);

#endif
