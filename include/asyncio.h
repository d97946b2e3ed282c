/* lua-asyncio: the public C interface for hosts that embed Lua.
 *
 * A host opens the module into its lua_State, attaches a loop to a uv_loop_t
 * it owns (or lets the loop own one), and either runs it from Lua or drives it
 * one non-blocking iteration at a time from its own frame loop or poller.
 * Nothing is global: each lua_State has its own loops, and states may run in
 * separate OS threads. Only asyncio_call_threadsafe may be called from a
 * thread other than the one running the loop's state. */
#ifndef ASYNCIO_H
#define ASYNCIO_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The module is built with hidden visibility: only these names are exported,
 * so the core's internal symbols can never collide with a host's. */
#if defined(__GNUC__)
#define ASYNCIO_API __attribute__((visibility("default")))
#else
#define ASYNCIO_API
#endif

typedef struct asyncio_loop asyncio_loop;

/* Called on the loop's thread with the state running the loop; the stack
 * above the callback's own pushes is left as found. */
typedef void (*asyncio_callback)(lua_State *L, void *data);

/* The `asyncio.core` module (what require "asyncio.core" loads). */
ASYNCIO_API int luaopen_asyncio_core(lua_State *L);

/* require "asyncio" (the full module, which needs the Lua files on
 * package.path); pushes the module table. Returns 0, or a Lua status with the
 * error message pushed. */
ASYNCIO_API int asyncio_open(lua_State *L);

/* Creates a loop and pushes its Lua object. uv == NULL: the loop owns a new
 * uv_loop_t; otherwise it attaches to the host's, which must outlive it.
 * The loop is released by loop:close() or when the object is collected. */
ASYNCIO_API asyncio_loop *asyncio_loop_new(lua_State *L, uv_loop_t *uv);

/* The loop object at stack index idx, or NULL. */
ASYNCIO_API asyncio_loop *asyncio_loop_test(lua_State *L, int idx);

/* Pushes the loop's Lua object (nil once it is closed). */
ASYNCIO_API void asyncio_loop_push(lua_State *L, asyncio_loop *loop);

ASYNCIO_API uv_loop_t *asyncio_loop_uv(asyncio_loop *loop);

/* One iteration: poll I/O for at most `timeout` seconds (0: do not block),
 * then run the callbacks that are ready. Runs on L (the state's main thread
 * when called from outside Lua). Returns nonzero while callbacks or timers are
 * pending. Raises a Lua error if the loop is closed or already running. */
ASYNCIO_API int asyncio_loop_run_once(lua_State *L, asyncio_loop *loop, double timeout);

/* For a host poller: the fd to watch for readability, and how long it may
 * sleep in milliseconds (0 while callbacks are ready, -1: no deadline). */
ASYNCIO_API int asyncio_loop_backend_fd(asyncio_loop *loop);
ASYNCIO_API int asyncio_loop_backend_timeout(asyncio_loop *loop);

/* Schedules fn(L, data) on the loop's thread and wakes the loop. Safe from
 * any thread while the loop is open; returns 0 or a negative libuv error
 * (UV_ECANCELED once the loop is closed). */
ASYNCIO_API int asyncio_call_threadsafe(asyncio_loop *loop, asyncio_callback fn, void *data);

/* Futures from C. asyncio_future_new pushes a new pending Future of `loop`.
 * set_result pops n values and resolves the future at idx with them;
 * set_exception pops one error value. Both return 0, or -1 (nothing popped
 * but the values) when the future is already done. */
ASYNCIO_API void asyncio_future_new(lua_State *L, asyncio_loop *loop);
ASYNCIO_API int asyncio_future_set_result(lua_State *L, int idx, int n);
ASYNCIO_API int asyncio_future_set_exception(lua_State *L, int idx);

/* The C function behind asyncio.eager_task_factory. */
ASYNCIO_API int asyncio_eager_task_factory(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
