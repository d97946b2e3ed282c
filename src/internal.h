/* Declarations shared by the C files of the core; nothing here is public.
 * Internal names carry the aio_ prefix; public ones (include/asyncio.h) asyncio_. */
#ifndef AIO_INTERNAL_H
#define AIO_INTERNAL_H

#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "asyncio.h"
#include "core/heap.h"
#include "core/ring.h"

#define AIO_LOOP_MT "asyncio.Loop"
#define AIO_FUTURE_MT "asyncio.Future"
#define AIO_TASK_MT "asyncio.Task"
#define AIO_HANDLE_MT "asyncio.Handle"
#define AIO_TIMER_MT "asyncio.TimerHandle"

/* Types of our userdata. Each metatable holds its type's tag at [1]: the
 * address of aio_tags[type], which Lua code cannot forge, so a type check is
 * one array read instead of a registry lookup by name. */
enum {
  AIO_T_LOOP,
  AIO_T_FUTURE,
  AIO_T_TASK,
  AIO_T_HANDLE,
  AIO_T_TIMER,
  AIO_T_UNRETRIEVED,
  AIO_T_TRANSPORT, /* stream.c: TCP, Unix socket, pipe */
  AIO_T_LISTENER,  /* listener.c */
  AIO_T_CONNS,     /* stream.c: the connections of a Server */
  AIO_T_READER,    /* reader.c: StreamReader */
  AIO_T_DATAGRAM,  /* udp.c */
  AIO_T_TLS,       /* tls.c: TLS transport */
  AIO_T_SSLCTX,    /* sslcontext.c: SSLContext */
  AIO_T_SSLOBJ,    /* sslcontext.c: SSLObject */
  AIO_T_PROCESS,   /* process.c: a child process */
  AIO_T_EXECUTOR,  /* executor.c: ThreadPoolExecutor */
  AIO_T_EVENT,     /* event.c */
  AIO_T_CFUTURE,   /* threadsafe.c: a job's future of run_coroutine_threadsafe */
  AIO_T_WAITLIST,  /* waitlist.c: the Lua primitives' FIFO of waiters */
  AIO_T_N
};
extern const char aio_tags[AIO_T_N];

/* The I/O types checked on every read and write (Transport, StreamReader)
 * begin with their tag, so the check is one compare instead of a metatable
 * lookup. Lua code cannot write a userdata's bytes: the tag is unforgeable. */
static inline void *aio_test_tagged(lua_State *L, int idx, int type) {
  void *p = lua_touserdata(L, idx);
  /* a light userdata's raw length is 0: only a full one that can hold a tag passes */
  if (!p || lua_rawlen(L, idx) < sizeof(const char *)) return NULL;
  return *(const char **)p == &aio_tags[type] ? p : NULL;
}

typedef struct aio_state aio_state;
typedef struct asyncio_loop aio_loop;
typedef struct aio_future aio_future;
typedef struct aio_task aio_task;
typedef struct aio_handle aio_handle;
typedef struct aio_sigwatch aio_sigwatch;
typedef struct aio_blockcache aio_blockcache;
typedef struct aio_procs aio_procs;
typedef struct aio_job aio_job;
typedef struct aio_rfut aio_rfut;

/* Per-lua_State data, one userdata in the registry. Every C function of the
 * module gets it as upvalue 1, so no lookup is needed on hot paths. */
struct aio_state {
  aio_loop *running; /* loop running in this state, or NULL */
  int hooks;         /* registry ref: table of Lua functions the C side calls */
  int extras;        /* registry ref: weak-keyed table of rarely used fields */
  int event_loop;    /* registry ref: loop set by set_event_loop, or LUA_NOREF */
  int cancelled_cls; /* registry ref: the CancelledError class table */
  uint32_t task_counter;
  aio_loop *loops;          /* every loop of the state, freed when the state closes */
  int mt[AIO_T_N];          /* registry refs of the metatables */
  const void *mtp[AIO_T_N]; /* their addresses, for checks that cannot afford the tag's lookup */
  int mt_debug_task;        /* the Task metatable plus a __gc that reports pending tasks */
  aio_blockcache *blocks;   /* in front of the state's allocator, or NULL */
  aio_blockcache *buffers;  /* stream readers' buffers, or NULL */
  void *bio_method;         /* tls.c: the BIO_METHOD of TLS transports, made on first use */
  int tls_live;             /* SSL objects this state holds a reference to */
};

#define aio_state_of(L) ((aio_state *)lua_touserdata((L), lua_upvalueindex(1)))

/* A ready-queue entry: what the loop runs on its next turn. */
enum { AIO_RUN_HANDLE, AIO_RUN_STEP, AIO_RUN_DONECB, AIO_RUN_CFUNC };

enum { AIO_PENDING, AIO_FINISHED, AIO_CANCELLED };

/* aio_timer.kind */
enum { AIO_TIMER_HANDLE, AIO_TIMER_TASK, AIO_TIMER_CFUNC };

/* A timer of C code (a TLS connection's handshake and shutdown deadlines):
 * cb runs from the loop's timer phase with the loop's thread, once, under a
 * lua_pcall of its own (its error is reported). The owner embeds it and
 * removes it (aio_loop_remove_timer) before it goes. */
typedef struct aio_ctimer aio_ctimer;
struct aio_ctimer {
  aio_timer timer; /* first */
  void (*cb)(lua_State *L, aio_ctimer *ct);
};

/* Future flags */
#define AIO_F_EXC 0x01      /* uv1 holds an exception */
#define AIO_F_MULTI 0x02    /* uv1 holds a table {n=, ...} of results */
#define AIO_F_CBLIST 0x04   /* the callbacks are a list, not a single one */
#define AIO_F_SENTINEL 0x08 /* uv1 holds an unretrieved-exception sentinel */
#define AIO_F_TASK 0x10
#define AIO_F_HASCB 0x20 /* callbacks may be stored (see below) */
#define AIO_F_JOB 0x40   /* pending: an executor job's, uv1 holds the job (light userdata) */
/* pending: uv1 holds the function cancel() calls instead (gather's) */
#define AIO_F_CANCELHOOK 0x80

/* Uservalues of a Future: 1 = result, exception or cancel message; 2 = done
 * callbacks: nil, one callback (function, or light userdata for a waiting
 * task) or a list. A Task has uservalue 1 only (see struct aio_task). */
struct aio_future {
  /* first: a Task's block starts at a cache line (slab.c), and its first
   * line holds the header, uservalue 1 and these 8 bytes, so awaiting a
   * done task reads one line (cachegrind: 13.0 -> 12.0 LL misses a task) */
  uint8_t state;
  uint8_t flags;
  uint8_t nres; /* result count when not AIO_F_MULTI */
  uint8_t hook; /* a Task's AIO_HOOK_* (task.c), in padding a Future has anyway */
  uint32_t id;  /* a Task's number (Task-N), in the same padding; 0 in a Future */
  aio_loop *loop;
};

/* aio_future.hook of a Task made by create_task_hooked: its hook is still to
 * run if it fails, or ran */
enum { AIO_HOOK_NONE, AIO_HOOK_SET, AIO_HOOK_RAN };

/* How a suspended task waits: what cancel() has to undo. */
enum { AIO_WAIT_NONE, AIO_WAIT_FUTURE, AIO_WAIT_TIMER, AIO_WAIT_SOON, AIO_WAIT_PARK };

/* A Task is made by the 100,000 (one per request of a server): 72 bytes
 * and one uservalue, a 128-byte block with Lua's userdata header (the
 * slab's class of that size), two cache lines: the step flags are bit-fields
 * and the id sits in the Future's padding for that. Uservalue 1 holds the
 * function (or {fn, args..., n=}) until the first step, then the coroutine
 * while pending, then the result. The done callbacks of a pending task sit
 * beside its anchor (aio_anchors_push_aux), where few tasks need room: only
 * pending tasks have callbacks, and every pending task has an anchor. */
struct aio_task {
  aio_future f;
  uint8_t wait : 3;        /* AIO_WAIT_* */
  uint8_t must_cancel : 2; /* deliver CancelledError at the next step */
  uint8_t started : 1;
  uint8_t co_exposed : 1; /* get_coro() handed it out */
  uint8_t packed : 1;     /* uv1 is {fn, args..., n=} until the first step */
  uint8_t named;          /* set_name() was called: the watchdog copies the name */
  uint16_t cancels;       /* cancel() requests not yet uncancel()ed */
  int slot;               /* index in the loop's anchor table while pending */
  /* get_stats(), in nanoseconds on the loop's step clock (aio_clock_ns) */
  uint32_t steps;
  uint32_t delay_max_ns; /* queued to run, saturating at 4.29 s */
  lua_State *co;
  /* never both: a parked task waits for no deadline, a sleeping one is on
   * no wait list (aio_timer is 8 bytes: its deadline is the heap's) */
  union {
    const void *parked_on; /* the wait list of park(), while AIO_WAIT_PARK */
    aio_timer timer;       /* sleep() deadline, in the loop's heap, while AIO_WAIT_TIMER */
  };
  uint64_t run_ns;  /* sum of step durations */
  uint64_t last_ns; /* end of the last step (creation before the first) */
  uint64_t delay_sum_ns;
};

struct aio_handle {
  aio_loop *loop;
  aio_timer timer; /* TimerHandle only */
  double when;     /* TimerHandle only: its deadline, kept once it fired */
  int slot;        /* TimerHandle in the heap: its slot in loop->handles */
  uint8_t cancelled;
  uint8_t scheduled;
  uint8_t is_timer;
  uint8_t nargs;
};

/* A callback posted to the loop from another thread (aio_loop_post). The
 * loop frees the node after running it, unless it is embedded in the
 * poster's own record (an executor job's completion: no malloc per job). */
typedef struct aio_post aio_post;
struct aio_post {
  aio_post *next;
  asyncio_callback fn;
  void *data;
  int slot; /* Lua-side call_soon_threadsafe: the Handle's anchor in loop->handles */
  uint8_t embedded;
};

#define AIO_RBUF_SLOTS 4

/* An open libuv handle of the loop's that loop close must shut: each I/O
 * object links one while its handle is open; close() starts uv_close and
 * unlinks it (aio_closable_unlink) before returning. */
typedef struct aio_closable aio_closable;
/* What is the same for every closable of a kind, kept once (static) rather
 * than in each: how loop close shuts it and, for debug mode's unclosed
 * warning, what it is ("transport", "<TCP transport>"; a NULL kind is never
 * reported). */
typedef struct aio_closable_type {
  void (*close)(aio_closable *c);
  const char *kind, *what;
  /* a transport's, for Server.close_clients (the Server holds no list of
   * its connections): pushes it and returns 1 when it is a connection of
   * the Server at server_idx, else pushes nothing and returns 0 */
  int (*push_client)(lua_State *L, aio_closable *c, int server_idx);
} aio_closable_type;
struct aio_closable {
  aio_closable *next, *prev;
  const aio_closable_type *type;
  char *origin; /* debug mode: where the user's code made it (malloc'd "file:line"), or NULL */
};

/* Values kept alive for C (anchor.c): slots of a Lua table, free slots on a
 * C stack. */
typedef struct aio_anchors {
  int ref;   /* registry ref of the table, LUA_NOREF once dropped */
  int top;   /* slots ever used */
  int *free; /* free slots below top */
  int nfree, cap;
} aio_anchors;

struct asyncio_loop {
  uv_loop_t *uv;
  uv_loop_t own_uv;
  uv_check_t check;
  uv_idle_t idle;
  uv_timer_t timer;
  uv_timer_t deadline;  /* bounds run_once(timeout) */
  uv_prepare_t prepare; /* virtual clock: decides before each poll whether time jumps */
  uv_timer_t watchdog;  /* _watchdog(): stops the loop after real seconds */
  uv_async_t async;
  uv_mutex_t post_mutex;
  aio_post *posted; /* callbacks posted from other threads */
  aio_sigwatch *signals;
  aio_closable closables;       /* list head of open I/O objects */
  struct aio_fdwatch **fdwatch; /* poll.c: watchers by fd number, nfdwatch slots */
  int nfdwatch;
  aio_procs *procs;           /* process.c: running children, the SIGCHLD watcher */
  aio_job *jobs;              /* executor.c: this loop's jobs not completed yet */
  int job_waiters;            /* executor.c: registry ref of {[future] = pool}, or LUA_NOREF */
  aio_rfut *rfuts;            /* threadsafe.c: jobs' run_coroutine_threadsafe not settled */
  char *rbuf[AIO_RBUF_SLOTS]; /* receive buffers kept for reuse (aio_loop_rbuf_take) */
  uint8_t rbuf_busy;          /* bit i: rbuf[i] is taken */
  aio_state *S;
  lua_State *L;        /* thread running callbacks during a run */
  lua_State *mainL;    /* main thread of the owning state */
  int self_ref;        /* registry ref to the Loop userdata while open */
  aio_loop *next;      /* in S->loops */
  aio_anchors tasks;   /* pending tasks */
  aio_anchors handles; /* scheduled Handles */
  int pool;            /* registry ref: coroutines ready for reuse (array) */
  int npool;
  int spare_ref;         /* registry slot of the spare coroutine */
  lua_State *spare;      /* the coroutine given back last, or NULL */
  lua_State *spare_held; /* what spare_ref refers to: the spare or the last one taken */
  int ntasks;            /* pending tasks */
  int exc_handler;       /* registry ref or LUA_NOREF */
  int task_factory;      /* registry ref or LUA_NOREF */
  aio_ring ready;
  aio_heap timers;
  double armed_when; /* deadline the uv timer is armed for, or -1 */
  double slow_callback_duration;
  double vnow;    /* virtual clock: loop:time() */
  uint64_t vsync; /* virtual clock, while vflow: the uv_hrtime vnow was last brought to */
  aio_task *current;
  aio_task *settling; /* started or finished unprotected right now (task.c) */
  aio_future *until;  /* run_until_complete's future */
  /* the step clock (aio_clock_ns): its last reading, whether that reading is
   * still "now" (a step just ended and only the queue ran since: the next
   * step starts from it without reading the clock again), the tick's start */
  uint64_t stamp, tick_ns;
  uint8_t stamp_ok;
  uv_thread_t owner;       /* thread running the loop, while running */
  struct aio_watchdog *wd; /* debug.c: the stall watchdog, or NULL */
  char *origin;            /* debug mode: where the loop was made, malloc'd */
  int turn_budget;         /* ready-queue turns per I/O poll */
  int nhandles_open;
  uint8_t owns_uv;
  uint8_t orphan; /* the state is gone: the last close callback frees the loop */
  uint8_t running;
  uint8_t stopping;
  uint8_t closed;
  uint8_t debug;
  uint8_t eager;
  uint8_t ticking;
  uint8_t virtual_clock; /* opts.clock = "virtual" */
  uint8_t vflow;         /* virtual clock: running at real speed until the next poll */
  uint8_t vpending;      /* virtual clock: polls in a row that found events waiting */
  uint8_t watchdog_fired;
};

/* Where a transport delivers its events: the protocol's operations. A Lua
 * protocol table is one implementation (stream.c), the StreamReader another
 * (reader.c), a TLS layer a third. Each gets the protocol object at
 * proto_idx and the transport userdata at tp_idx; they must not raise (a
 * Lua protocol's errors go to the exception handler). */
typedef struct aio_proto_ops {
  void (*connection_made)(lua_State *L, int proto_idx, int tp_idx);
  void (*data_received)(lua_State *L, int proto_idx, int tp_idx, const char *p, size_t n);
  int (*eof_received)(lua_State *L, int proto_idx, int tp_idx); /* 1: stay half-open */
  void (*connection_lost)(lua_State *L, int proto_idx, int tp_idx, int err_idx); /* 0: none */
  void (*pause_writing)(lua_State *L, int proto_idx, int tp_idx);
  void (*resume_writing)(lua_State *L, int proto_idx, int tp_idx);
  /* Optional (NULL for Lua protocols), Python's BufferedProtocol: where the
   * transport may read into (NULL: use the loop's buffer and data_received),
   * then how many bytes it read there. */
  char *(*get_buffer)(void *proto, size_t *len);
  void (*buffer_updated)(lua_State *L, int proto_idx, int tp_idx, size_t n);
} aio_proto_ops;

/* Every transport userdata begins with its type's tag (see aio_test_tagged);
 * a TLS transport's goes on with its loop (a stream transport's with its
 * record, which has the loop: stream.h). Each keeps its protocol, and a Lua
 * protocol's data_received (looked up when the protocol is set, as uvloop
 * does), in these uservalues. */
typedef struct aio_transport_head {
  const char *tag;
  aio_loop *lp;
} aio_transport_head;
#define AIO_UV_PROTO 1
#define AIO_UV_DATACB 2

/* reader.c: the StreamReader is also the protocol of its stream */
extern const aio_proto_ops aio_reader_ops;
void aio_reader_open(lua_State *L, aio_state *S);
int aio_reader_drain_pending(lua_State *L, int idx);
/* pushes the bytes buffered and not read yet, and forgets them */
void aio_reader_take_buffered(lua_State *L, int idx);

/* stream.c: any transport, ours or not */
extern const aio_proto_ops aio_lua_proto_ops;
const aio_proto_ops *aio_proto_ops_for(lua_State *L, int idx);
/* Makes the protocol at idx (ops) the one of the transport at tp_idx:
 * AIO_UV_PROTO, AIO_UV_DATACB, and the transport's record's ops and protocol
 * record (for ops->get_buffer) through the slots given. */
void aio_transport_set_protocol(lua_State *L, int tp_idx, int idx, const aio_proto_ops *ops,
                                const aio_proto_ops **ops_slot, void **ud_slot);
/* server._detach(transport) for the Server at server_idx (or nil there) */
void aio_transport_detach(lua_State *L, aio_loop *lp, int tp_idx, int server_idx);
/* push_client (aio_closable_type) of a transport held by registry ref `ref`
 * (LUA_NOREF: not started) whose uservalue uv_server holds its Server */
int aio_transport_push_client(lua_State *L, int ref, int uv_server, int server_idx);
void aio_transport_write(lua_State *L, int tp_idx, int s_idx);
int aio_transport_is_closing(lua_State *L, int tp_idx);
void aio_writer_open(lua_State *L, aio_state *S);

/* tls.c: the TLS transport, the protocol of the transport it wraps */
extern const aio_proto_ops aio_tls_ops;
void aio_tls_open(lua_State *L, aio_state *S);
void aio_tls_write(lua_State *L, int idx, int s_idx);
int aio_tls_is_closing(lua_State *L, int idx);
void aio_tls_free_method(aio_state *S);

/* sslcontext.c: SSLContext, SSLObject (the rest in tls.h) */
void aio_sslcontext_open(lua_State *L, aio_state *S);

/* The thread to call Lua in from a libuv callback. */
#define aio_loop_thread(lp) ((lp)->L ? (lp)->L : (lp)->mainL)

#define AIO_RBUF_SIZE (256 * 1024)

/* Reads land at a multiple of this from the start of the loop's receive
 * buffers (and of an emptied StreamReader buffer, core/buffer.c): the kernel
 * copies a read into an address that is not 32-byte aligned far more slowly
 * (rep movsb, AMD EPYC: a 64 KiB echo through a receive buffer at 16 mod 64
 * took 85 us of server CPU per request, 32 to 35 us at 0, 32 or 64 mod 64),
 * and malloc's blocks are only 16-byte aligned. */
#define AIO_READ_ALIGN 64

/* Blocks an allocator of ours holds free (blockcache.c, slab.c) are
 * poisoned in the ASan build: a use of one is a report. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define AIO_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define AIO_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define AIO_POISON(p, n) ((void)(p), (void)(n))
#define AIO_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* slab.c: the state's small blocks without a header each, under its block
 * cache (aio_blockcache_install); it stays in the allocator chain until the
 * block `last` (lua_close's last free) goes, then gives everything back. */
#define AIO_SLAB_MAX 256
typedef struct aio_slab aio_slab;
/* NULL: off (LUA_ASYNCIO_MALLOC=malloc), or no memory */
aio_slab *aio_slab_new(lua_Alloc f, void *ud, void *last);
void *aio_slab_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void aio_slab_release(aio_slab *s); /* the slab and every region */

/* blockcache.c: freed blocks reused by exact size, in front of an allocator:
 * a cache of its own (new/alloc/free), or the state's (install/remove) */
aio_blockcache *aio_blockcache_new(lua_Alloc f, void *ud, size_t budget);
void *aio_blockcache_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void aio_blockcache_flush(aio_blockcache *c);
void aio_blockcache_free(aio_blockcache *c);
aio_blockcache *aio_blockcache_install(lua_State *L);
void aio_blockcache_remove(lua_State *L, aio_blockcache *c);

/* anchor.c */
void aio_anchors_init(lua_State *L, aio_anchors *a);
void aio_anchors_free(lua_State *L, aio_anchors *a);
int aio_anchors_put(lua_State *L, aio_anchors *a, int idx);
void aio_anchors_drop(lua_State *L, aio_anchors *a, int slot);
void aio_anchors_drop_in(lua_State *L, aio_anchors *a, int tidx, int slot);
void aio_anchors_push_table(lua_State *L, const aio_anchors *a);
void aio_anchors_push(lua_State *L, aio_anchors *a, int slot);
void aio_anchors_push_aux(lua_State *L, aio_anchors *a, int slot);
void aio_anchors_set_aux(lua_State *L, aio_anchors *a, int slot);

/* Pushes the value at idx, or nil when idx is 0 (an optional index). */
static inline void aio_push_opt(lua_State *L, int idx) {
  if (idx)
    lua_pushvalue(L, idx);
  else
    lua_pushnil(L);
}

/* module.c */
aio_state *aio_get_state(lua_State *L);
void aio_push_hook(lua_State *L, aio_state *S, const char *name);
void aio_pin_module(void);
int aio_raise(lua_State *L, const char *cls, const char *fmt, ...);
void aio_push_error(lua_State *L, const char *cls, int msg_idx);
int aio_is_cancelled_error(lua_State *L, aio_state *S, int idx);
void aio_push_extras(lua_State *L, aio_state *S, int obj_idx, int create);
void aio_setfuncs(lua_State *L, aio_state *S, const luaL_Reg *l);
void aio_newclass(lua_State *L, aio_state *S, int type, const char *name, const luaL_Reg *methods,
                  const luaL_Reg *meta);
void *aio_testudata(lua_State *L, int idx, int type1, int type2);
/* aio_testudata first by the address of the object's metatable, for a
 * caller with S at hand: the tag's lookup costs as much as the rest of an
 * await of a done future. Other metatables with the tag (a debug-mode
 * Task's, a Loop subclass's) take the tag's way. */
static inline void *aio_testudata_in(lua_State *L, aio_state *S, int idx, int type1, int type2) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_getmetatable(L, idx)) {
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    /* a light userdata has no metatable of its own: rule it out last */
    if ((mt == S->mtp[type1] || mt == S->mtp[type2]) && lua_type(L, idx) == LUA_TUSERDATA) return p;
  }
  return aio_testudata(L, idx, type1, type2);
}
void *aio_check_tagged(lua_State *L, int idx, int type, const char *name);
void *aio_checkudata(lua_State *L, int idx, int type1, int type2, const char *name);
void aio_setmetatable(lua_State *L, aio_state *S, int type);
void aio_copy_metatable(lua_State *L, aio_state *S, int type);
void aio_push_aux(lua_State *L, int idx, int uv);
int aio_get_aux(lua_State *L, int idx, int uv, const char *name);

/* loop.c */
void aio_loop_free_all(aio_state *S);
void aio_loop_handle_closed(aio_loop *lp);
void aio_loop_open(lua_State *L, aio_state *S);
aio_loop *aio_check_loop(lua_State *L, int idx);
aio_loop *aio_loop_of(lua_State *L, aio_state *S); /* running or error */
/* The loop's clock, which timers, sleep(), timeouts and call_later follow:
 * monotonic real seconds, or the virtual clock's time. */
double aio_loop_time(aio_loop *lp);
/* Real monotonic seconds, for what measures the process, not the program
 * (how long a job has run; steps and callbacks use aio_clock_ns): a virtual
 * clock stands still while callbacks run. */
static inline double aio_real_time(void) {
  return (double)uv_hrtime() / 1e9;
}
void aio_loop_push(aio_loop *lp, uint8_t kind, void *p, int ref, int ref2);
void aio_loop_add_timer(aio_loop *lp, aio_timer *tm, double when);
void aio_loop_remove_timer(aio_loop *lp, aio_timer *tm);
/* (re)arms ct to fire after delay seconds */
void aio_loop_add_ctimer(aio_loop *lp, aio_ctimer *ct, double delay);
void aio_loop_call_exception_handler(lua_State *L, aio_loop *lp, int ctx_idx);
int aio_loop_wrong_thread(lua_State *L);
void aio_loop_check_open(lua_State *L, aio_loop *lp);
void aio_loop_push_self(lua_State *L, aio_loop *lp);
int aio_loop_enter(aio_loop *lp);
void aio_loop_leave(aio_loop *lp, int entered);
/* Runs f(ud) (ud a light userdata) under lua_pcall in the loop's thread,
 * entered for the call when nothing runs it: for the Lua part of a libuv
 * callback, where an error (out of memory) must not unwind through libuv's
 * frames. An error is reported to the loop's exception handler as
 * "Exception in <what>" (on stderr when even that fails), or dropped when
 * what is NULL. Returns 1 when f raised, for the caller to settle what f
 * left undone, or 0. */
int aio_loop_pcall(aio_loop *lp, lua_CFunction f, void *ud, const char *what);
void aio_loop_rbuf_take(aio_loop *lp, uv_buf_t *buf);
void aio_loop_rbuf_give(aio_loop *lp, const uv_buf_t *buf);
/* Links p (fn, data set) into the loop's posted list and wakes the loop;
 * UV_ECANCELED, p not linked, once the loop is closed. Any thread. */
int aio_loop_post(aio_loop *lp, aio_post *p);
void aio_closable_link(aio_loop *lp, aio_closable *c, const aio_closable_type *type);
void aio_closable_unlink(aio_closable *c);

/* addr.c: {host, port} tables and sockaddrs, OS errors */
int aio_to_sockaddr(lua_State *L, int idx, struct sockaddr_storage *ss);
void aio_push_sockaddr(lua_State *L, const struct sockaddr *sa);
void aio_push_os_error(lua_State *L, int uverr, const char *what);
int aio_raise_os(lua_State *L, int uverr, const char *what);
int aio_check_fd(lua_State *L, int idx);

/* traceback.c: luaL_traceback's layout, each frame named from its call site */
void aio_traceback(lua_State *L, lua_State *L1, const char *msg, int level);
void aio_traceback_open(lua_State *L, aio_state *S);

/* handle.c */
void aio_handle_open(lua_State *L, aio_state *S);
aio_handle *aio_handle_new(lua_State *L, aio_loop *lp, int fn_idx, int nargs, int is_timer);
void aio_handle_run(lua_State *L, aio_loop *lp, aio_handle *h, int slot);
void aio_handle_schedule(lua_State *L, aio_loop *lp, aio_handle *h, int idx);
int aio_call_reporting(lua_State *L, aio_loop *lp, int base, const char *what, const char *key,
                       int key_idx);
int aio_callback_msgh(lua_State *L);
void aio_report_callback_error(lua_State *L, aio_loop *lp, int err_idx, const char *msg,
                               const char *key, int key_idx);
int aio_pcall_reporting(lua_State *L, aio_loop *lp, int base, int nres, const char *what,
                        const char *msg, const char *key, int key_idx);

/* future.c */
void aio_future_open(lua_State *L, aio_state *S);
aio_future *aio_future_new(lua_State *L, aio_loop *lp);
aio_future *aio_check_future(lua_State *L, int idx);
aio_future *aio_check_future_in(lua_State *L, aio_state *S, int idx);
aio_future *aio_test_future(lua_State *L, int idx);
void aio_future_finish(lua_State *L, int idx, uint8_t state);
int aio_future_set_results(lua_State *L, int idx, int first, int n);
void aio_future_set_exc(lua_State *L, int idx, int err_idx);
/* After settling the future at idx raised (out of memory): fails it with the
 * error at err_idx, or, when its outcome was stored already, queues the
 * done callbacks not queued yet (none twice). */
void aio_future_settle_failed(lua_State *L, int idx, int err_idx);
int aio_future_cancel(lua_State *L, int idx, int msg_idx);
int aio_future_push_results(lua_State *L, int idx);
/* The same for f, the future at the absolute index idx: one result (most
 * futures and tasks) without the call */
static inline int aio_future_push_done(lua_State *L, const aio_future *f, int idx) {
  if (f->state == AIO_FINISHED && !(f->flags & (AIO_F_EXC | AIO_F_MULTI)) && f->nres == 1) {
    lua_getiuservalue(L, idx, 1);
    return 1;
  }
  return aio_future_push_results(L, idx);
}
/* t waits for the future at idx, an absolute index (the task is pushed
 * above it), or no longer does */
void aio_future_add_waiter(lua_State *L, int idx, aio_task *t);
void aio_future_remove_waiter(lua_State *L, int idx, aio_task *t);
void aio_future_run_donecb(lua_State *L, aio_loop *lp, int fn_ref, int fut_ref);
void aio_future_methods(lua_State *L, aio_state *S);
void aio_future_note_source(lua_State *L, aio_state *S, int idx);

/* task.c */
void aio_task_open(lua_State *L, aio_state *S);
int aio_await(lua_State *L);
/* woke: when it was queued (0: outside a tick, count from the tick's start;
 * UINT64_MAX: no delay, an eager step); anchors: for a step the tick runs
 * itself, straight under its lua_pcall (see aio_task_settle), where the tick
 * keeps the tasks' anchor table on its stack (0 until a step pushed it);
 * NULL otherwise */
int aio_task_step(lua_State *L, aio_loop *lp, aio_task *t, uint64_t woke, int *anchors);
int aio_task_settle(lua_State *L, aio_loop *lp);
int aio_task_cancel(lua_State *L, int idx, int msg_idx);
/* fn_idx: an absolute index, with the nargs arguments after it */
int aio_task_create(lua_State *L, aio_loop *lp, int fn_idx, int nargs);
void aio_task_push(lua_State *L, aio_loop *lp, aio_task *t);
aio_task *aio_current_task(lua_State *L, aio_state *S, const char *api);
int aio_nested_yield(lua_State *L);
int aio_task_park(lua_State *L, aio_task *t, const void *on, lua_KContext ctx, lua_KFunction k);
void aio_task_unparked(lua_State *L, aio_task *t);
/* wakes t if it is still parked on `on`; its parked_on is then NULL */
int aio_task_wake(aio_task *t, const void *on);
/* t waits in aio_task_park on `on` (t may be NULL: no) */
int aio_task_is_parked_on(const aio_task *t, const void *on);
/* a cancellation is to be delivered at t's next step */
int aio_task_cancel_pending(const aio_task *t);
/* pushes the CancelledError of t's pending cancellation, which it consumes */
void aio_task_push_cancelled(lua_State *L, aio_task *t);

/* waitlist.c: a FIFO of parked tasks. The owner keeps the tasks in a Lua
 * table, passed at stack index `list`: slots head..n, nil where a waiter
 * left. The tasks are parked on the aio_waitlist's address. */
typedef struct aio_waitlist {
  int head, n, holes;
} aio_waitlist;
static inline void aio_waitlist_init(aio_waitlist *wl) {
  wl->head = 1;
  wl->n = wl->holes = 0;
}
/* appends t (the caller then parks it on wl) and returns its slot */
int aio_waitlist_add(lua_State *L, aio_waitlist *wl, int list, aio_task *t);
/* a waiter woken by a cancellation takes its entry out */
void aio_waitlist_leave(lua_State *L, aio_waitlist *wl, int list, aio_task *t, int slot);
/* wakes the first task still parked, taking it out; 0 when there is none */
int aio_waitlist_wake(lua_State *L, aio_waitlist *wl, int list);
void aio_waitlist_wake_all(lua_State *L, aio_waitlist *wl, int list);
/* how many tasks are still parked on wl, counting up to max */
int aio_waitlist_parked(lua_State *L, const aio_waitlist *wl, int list, int max);
void aio_waitlist_open(lua_State *L, aio_state *S);

/* event.c */
void aio_event_open(lua_State *L, aio_state *S);

/* stream.c, listener.c, tcp.c, pipe.c */
void aio_stream_open(lua_State *L, aio_state *S);
void aio_listener_open(lua_State *L, aio_state *S);
void aio_tcp_open(lua_State *L, aio_state *S);
void aio_pipe_open(lua_State *L, aio_state *S);
void aio_udp_open(lua_State *L, aio_state *S);
void aio_dns_open(lua_State *L, aio_state *S);
void aio_poll_open(lua_State *L, aio_state *S);
void aio_sock_open(lua_State *L, aio_state *S);
/* sock.c: the family of socket fd, checked to be of `type` (SOCK_STREAM,
 * SOCK_DGRAM) and a family the loop has transports for (or just `family`
 * unless AF_UNSPEC), and not listening unless `listening`; raises, naming
 * api, for a closed fd, a non-socket or one of the wrong kind. */
int aio_sock_probe(lua_State *L, int fd, const char *api, int type, int family, int listening);
/* sock.c: whether a transport or server (any handle but a watcher) of the
 * loop has fd, polled or not. */
int aio_fd_owned(aio_loop *lp, int fd);

/* poll.c: the current task t waits for fd to be readable (writable 0) or
 * writable; returns the token to park it on. The task stays registered,
 * across wake-ups, until aio_fdwatch_unpark. Raises RuntimeError when a
 * callback (add_reader) or another task has that direction, or a transport
 * the fd. */
const void *aio_fdwatch_park(lua_State *L, aio_loop *lp, int fd, int writable, aio_task *t,
                             const char *api);
void aio_fdwatch_unpark(lua_State *L, aio_loop *lp, int fd, int writable, const aio_task *t);

/* process.c */
void aio_process_open(lua_State *L, aio_state *S);
void aio_process_close_all(aio_loop *lp);
void aio_process_loop_free(aio_loop *lp);
int aio_process_running(const aio_loop *lp); /* a child not reaped yet */

/* executor.c */
void aio_executor_open(lua_State *L, aio_state *S);
void aio_executor_cancel(lua_State *L, int fut_idx);
void aio_executor_loop_close(lua_State *L, aio_loop *lp);

/* threadsafe.c */
void aio_threadsafe_open(lua_State *L, aio_state *S);

/* The clock of task statistics and slow-callback checks: real time (never
 * a virtual clock), nanoseconds. Outside debug mode the coarse clock, read
 * from the vDSO without the TSC (a few ns, resolution a kernel tick, 1-4 ms:
 * sums over many steps stay unbiased); in debug mode the precise one. Both
 * count from the same origin. */
#include <time.h>
static inline uint64_t aio_clock_ns(const aio_loop *lp) {
#ifdef CLOCK_MONOTONIC_COARSE
  if (!lp->debug) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  }
#else
  (void)lp;
#endif
  return uv_hrtime();
}

/* Loop methods that are not thread-safe (call_soon, create_task, ...) raise
 * RuntimeError when called, while the loop runs, from another thread than
 * the one running it: one pthread_self() and a compare. */
static inline void aio_loop_check_thread(lua_State *L, aio_loop *lp) {
  if (lp->running) {
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &lp->owner)) aio_loop_wrong_thread(L);
  }
}

/* debug.c: the stall watchdog, slow-callback warnings, unclosed resources.
 * aio_debug_enter/leave bracket a callback or task step in debug mode; the
 * frame saves the watch of an enclosing one (an eager task's first step runs
 * inside another step or a callback). */
typedef struct aio_watch {
  uint64_t started; /* 0: nothing running */
  lua_State *co;    /* the thread running it, to hook */
  uint32_t id;      /* task id, 0 for a callback */
  lua_Hook prev_hook;
  int prev_mask, prev_count;
  char name[64]; /* task name or callback's "file:line" */
} aio_watch;
typedef struct aio_debug_frame {
  struct aio_watchdog *wd; /* the watchdog entered, if any */
  uint64_t t0;
  aio_watch saved;
  char where[64]; /* a callback's "file:line" (of the function at fn_idx) */
} aio_debug_frame;
/* t NULL: a callback, the function at fn_idx (0: unknown); t0: its start
 * on aio_clock_ns */
void aio_debug_enter(lua_State *L, aio_loop *lp, lua_State *co, aio_task *t, int fn_idx,
                     uint64_t t0, aio_debug_frame *fr);
/* Warns when it ran longer than slow_callback_duration. t1: its end (0:
 * now); t: the task whose step it was (done: its body returned), else the
 * callback named `what`. */
void aio_debug_leave(lua_State *L, aio_loop *lp, aio_debug_frame *fr, uint64_t t1, const char *what,
                     aio_task *t, int done);
void aio_debug_start(aio_loop *lp);
void aio_debug_stop(aio_loop *lp);
/* "file:line" of the first caller outside asyncio's own Lua files, malloc'd */
char *aio_debug_origin(lua_State *L);
/* after aio_closable_link: in debug mode, where the user's code made c */
void aio_debug_note_closable(lua_State *L, aio_loop *lp, aio_closable *c);
/* c's origin becomes "<prefix> <origin>", or none when origin is NULL */
void aio_debug_set_origin(aio_closable *c, const char *prefix, const char *origin);
/* From a __gc: warns about the object of c, collected while open */
void aio_debug_collected_open(lua_State *L, aio_loop *lp, aio_closable *c);
void aio_debug_report_unclosed(lua_State *L, aio_state *S, const char *kind, const char *what,
                               const char *origin);

/* signal.c */
void aio_signal_open(lua_State *L, aio_state *S);
void aio_signal_close_all(aio_loop *lp);
void aio_signal_ignore_sigpipe(void);

#endif
