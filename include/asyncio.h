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

/***
The C host API (`#include <asyncio.h>`, link with the module's `core.so`): open
the module, attach a loop to a `uv_loop_t`, drive it one non-blocking
iteration at a time, create and resolve futures, post callbacks from other
threads. Each `lua_State` has its own loops; only `asyncio_call_threadsafe`
may be called from a thread other than the loop's. Types: `asyncio_loop`
(opaque) and `asyncio_callback`, `void (*)(lua_State *L, void *data)`,
called on the loop's thread with the state running the loop.
@module asyncio.h
*/

typedef struct asyncio_loop asyncio_loop;

/* Called on the loop's thread with the state running the loop; the stack
 * above the callback's own pushes is left as found. */
typedef void (*asyncio_callback)(lua_State *L, void *data);

/***
The `asyncio.core` module (what require "asyncio.core" loads).
@function luaopen_asyncio_core
@python (none)
@tparam lua_State* L
@treturn int 1: the module table is pushed
*/
ASYNCIO_API int luaopen_asyncio_core(lua_State *L);

/***
require "asyncio" (the full module, which needs the Lua files on
package.path); pushes the module table. Returns 0, or a Lua status with the
error message pushed.
@function asyncio_open
@python import asyncio
@tparam lua_State* L
@treturn int 0 or a Lua status (`LUA_ERRRUN`, ...)
*/
ASYNCIO_API int asyncio_open(lua_State *L);

/***
Creates a loop and pushes its Lua object. `uv == NULL`: the loop owns a new
`uv_loop_t`; otherwise it attaches to the host's, which must outlive it.
The loop is released by loop:close() or when the object is collected.
@function asyncio_loop_new
@python asyncio.new_event_loop
@tparam lua_State* L
@tparam uv_loop_t* uv the host's libuv loop, or NULL
@treturn asyncio_loop* the loop (a Lua error on failure)
*/
ASYNCIO_API asyncio_loop *asyncio_loop_new(lua_State *L, uv_loop_t *uv);

/***
The loop object at stack index idx, or NULL.
@function asyncio_loop_test
@python isinstance(x, asyncio.AbstractEventLoop)
@tparam lua_State* L
@tparam int idx
@treturn asyncio_loop*
*/
ASYNCIO_API asyncio_loop *asyncio_loop_test(lua_State *L, int idx);

/***
Pushes the loop's Lua object (nil once it is closed).
@function asyncio_loop_push
@python (none)
@tparam lua_State* L
@tparam asyncio_loop* loop
*/
ASYNCIO_API void asyncio_loop_push(lua_State *L, asyncio_loop *loop);

/***
The libuv loop the loop runs on (its own or the host's).
@function asyncio_loop_uv
@python (none)
@tparam asyncio_loop* loop
@treturn uv_loop_t*
*/
ASYNCIO_API uv_loop_t *asyncio_loop_uv(asyncio_loop *loop);

/***
One iteration: poll I/O for at most `timeout` seconds (0: do not block),
then run the callbacks that are ready. Runs on L (the state's main thread
when called from outside Lua). Returns nonzero while callbacks or timers are
pending. Raises a Lua error if the loop is closed or already running.
@function asyncio_loop_run_once
@python loop.run_once (Lua)
@tparam lua_State* L
@tparam asyncio_loop* loop
@tparam double timeout seconds
@treturn int nonzero while work is pending
@raise RuntimeError (a Lua error) when the loop is closed or running
*/
ASYNCIO_API int asyncio_loop_run_once(lua_State *L, asyncio_loop *loop, double timeout);

/***
For a host poller: the fd to watch for readability.
@function asyncio_loop_backend_fd
@python (none)
@tparam asyncio_loop* loop
@treturn int the fd
*/
ASYNCIO_API int asyncio_loop_backend_fd(asyncio_loop *loop);
/***
For a host poller: how long it may sleep in milliseconds (0 while callbacks
are ready, -1: no deadline).
@function asyncio_loop_backend_timeout
@python (none)
@tparam asyncio_loop* loop
@treturn int milliseconds
*/
ASYNCIO_API int asyncio_loop_backend_timeout(asyncio_loop *loop);

/***
Schedules fn(L, data) on the loop's thread and wakes the loop. Safe from
any thread while the loop is open; returns 0 or a negative libuv error
(`UV_ECANCELED` once the loop is closed).
@function asyncio_call_threadsafe
@python loop.call_soon_threadsafe
@tparam asyncio_loop* loop
@tparam asyncio_callback fn called as `fn(L, data)` on the loop's thread
@tparam void* data
@treturn int 0 or a negative libuv error
*/
ASYNCIO_API int asyncio_call_threadsafe(asyncio_loop *loop, asyncio_callback fn, void *data);

/***
Futures from C: pushes a new pending Future of `loop`.
@function asyncio_future_new
@python loop.create_future
@tparam lua_State* L
@tparam asyncio_loop* loop
*/
ASYNCIO_API void asyncio_future_new(lua_State *L, asyncio_loop *loop);
/***
Pops n values and resolves the future at idx with them. Returns 0, or -1
(nothing popped but the values) when the future is already done.
@function asyncio_future_set_result
@python Future.set_result
@tparam lua_State* L
@tparam int idx the future's stack index
@tparam int n how many values
@treturn int 0 or -1
*/
ASYNCIO_API int asyncio_future_set_result(lua_State *L, int idx, int n);
/***
Pops one error value and fails the future at idx with it. Returns 0, or -1
(nothing popped but the value) when the future is already done.
@function asyncio_future_set_exception
@python Future.set_exception
@tparam lua_State* L
@tparam int idx the future's stack index
@treturn int 0 or -1
*/
ASYNCIO_API int asyncio_future_set_exception(lua_State *L, int idx);

/***
The C function behind `asyncio.eager_task_factory`.
@function asyncio_eager_task_factory
@python asyncio.eager_task_factory
@tparam lua_State* L
@treturn int 1: the task is pushed
*/
ASYNCIO_API int asyncio_eager_task_factory(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
