/* Child processes: spawned with glibc's posix_spawn, their exit watched
 * through a pidfd the loop polls (a SIGCHLD watcher that reaps only this
 * loop's pids where the kernel has no pidfd).
 *
 * posix_spawn, not uv_spawn: Debian's libuv (1.44) forks, and a fork copies
 * the parent's page tables, so every spawn slows down as the parent grows
 * (../shared/bench: ~1,200 spawns/s falling to ~57 with 512 MB touched);
 * glibc's posix_spawn is clone(CLONE_VM | CLONE_VFORK), whose cost stays
 * flat, and reports a failed exec (ENOENT, EACCES) as its result. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* stdio specs, Python's values */
enum { IO_INHERIT = 0, IO_PIPE = -1, IO_STDOUT = -2, IO_DEVNULL = -3 };

typedef struct proc proc;
struct proc {
  aio_closable cl;
  aio_loop *lp;
  proc **box;        /* the Lua object, NULL once collected */
  proc *next, *prev; /* the loop's running children (the SIGCHLD path, loop close) */
  pid_t pid;
  int pidfd;        /* -1 without one, or once reaped */
  aio_task *waiter; /* the task parked in wait(); more in `waiters` */
  aio_waitlist waiters;
  int waiters_ref; /* registry ref of the waitlist's table, made by the second wait() */
  int fut_ref;     /* registry ref of the exit future, once asked for, until the exit */
  int returncode;
  int reap_err; /* nobody was left to reap: a libuv error code */
  uint8_t exited;
  uint8_t finishing; /* finish is telling the waiters: p stays */
};

/* The loop's running children hang off lp->procs, allocated on the first
 * spawn, with the two exit watchers. The pidfds go into an epoll set of the
 * loop's own, which the loop polls as one descriptor: a child then costs one
 * epoll_ctl, and closing its pidfd takes it out. A uv_poll_t per pidfd costs
 * five epoll_ctl and an ioctl (libuv probes, stops and restarts each new
 * fd), a third of the parent's system time per spawn. */
struct aio_procs {
  proc head;
  uv_poll_t pidfds; /* on epfd */
  uv_signal_t chld;
  aio_loop *lp;
  int epfd;         /* -1 until a pidfd needs it */
  int npidfds;      /* in the set: pidfds keeps the loop alive while > 0 */
  uint8_t polling;  /* pidfds is an open handle */
  uint8_t watching; /* chld is an open handle */
};
typedef aio_procs procs;

extern char **environ;

static void free_if_done(proc *p) {
  if (!p->box && p->exited && !p->finishing) free(p);
}

static void unlink_proc(proc *p) {
  if (p->next) {
    p->next->prev = p->prev;
    p->prev->next = p->next;
    p->next = p->prev = NULL;
  }
  aio_closable_unlink(&p->cl);
  if (p->pidfd >= 0) {
    procs *ps = p->lp->procs;
    close(p->pidfd); /* leaves the epoll set with it */
    if (--ps->npidfds == 0 && ps->polling) uv_unref((uv_handle_t *)&ps->pidfds);
  }
  p->pidfd = -1;
}

static int decode(int status) {
  return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

/* Pushes the exit: the returncode (returns 1), or the OSError of a child
 * someone else reaped (returns 0). */
static int push_exit(lua_State *L, const proc *p) {
  if (!p->reap_err) {
    lua_pushinteger(L, p->returncode);
    return 1;
  }
  aio_push_os_error(L, p->reap_err, "the child was reaped by someone else");
  return 0;
}

/* Settles the pending future at idx with the exit. */
static void settle(lua_State *L, const proc *p, int idx) {
  if (push_exit(L, p))
    aio_future_set_results(L, idx, lua_gettop(L), 1);
  else
    aio_future_set_exc(L, idx, lua_gettop(L));
}

/* settle_protected(p, future) */
static int settle_protected(lua_State *L) {
  settle(L, lua_touserdata(L, 1), 2);
  return 0;
}

/* finish's Lua part, under lua_pcall (aio_loop_pcall): it runs in the
 * pidfd's or SIGCHLD's callback, where a memory error must not unwind
 * through libuv's frames. The exit future's outcome (an OSError to make
 * for a child someone else reaped, its done callbacks to queue) has a
 * lua_pcall of its own: when that runs out of memory, the future fails
 * with the error, or, settled already, queues the callbacks it had not,
 * so no process_exited is lost. */
static int exit_protected(lua_State *L) {
  proc *p = lua_touserdata(L, 1);
  aio_loop *lp = p->lp;
  if (p->waiter && !lp->closed) aio_task_wake(p->waiter, p);
  p->waiter = NULL;
  if (p->waiters_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->waiters_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p->waiters_ref);
    p->waiters_ref = LUA_NOREF;
    if (!lp->closed) aio_waitlist_wake_all(L, &p->waiters, -1);
    lua_pop(L, 1);
  }
  if (p->fut_ref != LUA_NOREF) {
    aio_future *f;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->fut_ref); /* 2 */
    f = lua_touserdata(L, 2);
    if (!lp->closed && f->state == AIO_PENDING) {
      lua_pushcfunction(L, settle_protected);
      lua_pushlightuserdata(L, p);
      lua_pushvalue(L, 2);
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) aio_future_settle_failed(L, 2, 3);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, p->fut_ref);
    p->fut_ref = LUA_NOREF;
  }
  return 0;
}

/* The child is gone (status, or err: nobody left to reap); its waiters and
 * exit future hear it. A closed loop runs no task or callback any more:
 * they are only dropped. */
static void finish(proc *p, int status, int err) {
  aio_loop *lp = p->lp;
  p->exited = 1;
  p->reap_err = err;
  p->returncode = err ? 255 : decode(status);
  unlink_proc(p);
  /* what exit_protected makes (the OSError of a child someone else
   * reaped) can run a GC step, and the finalizer of a dropped handle then:
   * p is freed below, not there */
  p->finishing = 1;
  if (p->waiter || p->waiters_ref != LUA_NOREF || p->fut_ref != LUA_NOREF) {
    if (aio_loop_pcall(lp, exit_protected, p, "a child's exit")) {
      /* even the fallback ran out of memory: the refs go (an unref
       * allocates nothing) */
      lua_State *L = aio_loop_thread(lp);
      p->waiter = NULL;
      luaL_unref(L, LUA_REGISTRYINDEX, p->waiters_ref);
      luaL_unref(L, LUA_REGISTRYINDEX, p->fut_ref);
      p->waiters_ref = p->fut_ref = LUA_NOREF;
    }
  }
  p->finishing = 0;
  free_if_done(p);
}

/* Reaps p if it has exited; returns 1 then. */
static int try_reap(proc *p) {
  int status = 0;
  pid_t r;
  do r = waitpid(p->pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  finish(p, status, r < 0 ? uv_translate_sys_error(errno) : 0);
  return 1;
}

/* Through the pidfd where there is one, so a reaped and reused pid is
 * never hit. */
static int signal_child(proc *p, int sig) {
  return p->pidfd >= 0 ? (int)pidfd_send_signal(p->pidfd, sig, NULL, 0) : kill(p->pid, sig);
}

/* Every ready pidfd of the set. Reaping runs no Lua code (waiters and
 * futures are only scheduled), so no proc of a batch goes away under it. */
static void on_pidfds(uv_poll_t *h, int status, int events) {
  procs *ps = h->data;
  struct epoll_event ev[64];
  int i, n;
  (void)status;
  (void)events;
  do {
    do n = epoll_wait(ps->epfd, ev, 64, 0);
    while (n < 0 && errno == EINTR);
    for (i = 0; i < n; i++) try_reap(ev[i].data.ptr);
  } while (n == 64);
}

static void on_sigchld(uv_signal_t *h, int signum) {
  procs *ps = h->data;
  proc *p, *next;
  (void)signum;
  for (p = ps->head.next; p != &ps->head; p = next) {
    next = p->next;
    try_reap(p);
  }
}

/* Loop close: no child is left a zombie or running unwatched. */
static void on_loop_close(aio_closable *c) {
  proc *p = (proc *)((char *)c - offsetof(proc, cl));
  int status = 0;
  pid_t r;
  signal_child(p, SIGKILL);
  do r = waitpid(p->pid, &status, 0);
  while (r < 0 && errno == EINTR);
  finish(p, status, r < 0 ? uv_translate_sys_error(errno) : 0);
}
static const aio_closable_type proc_type = {on_loop_close, NULL, NULL, NULL};

static procs *loop_procs(aio_loop *lp) {
  procs *ps = lp->procs;
  if (ps) return ps;
  if ((ps = calloc(1, sizeof *ps)) == NULL) return NULL;
  ps->head.next = ps->head.prev = &ps->head;
  ps->lp = lp;
  ps->epfd = -1;
  lp->procs = ps;
  return ps;
}

void aio_process_loop_free(aio_loop *lp) {
  free(lp->procs);
  lp->procs = NULL;
}

int aio_process_running(const aio_loop *lp) {
  return lp->procs && lp->procs->head.next != &lp->procs->head;
}

static void on_chld_closed(uv_handle_t *h) {
  aio_loop_handle_closed(((procs *)h->data)->lp);
}

static void on_pidfds_closed(uv_handle_t *h) {
  procs *ps = h->data;
  close(ps->epfd);
  ps->epfd = -1;
  aio_loop_handle_closed(ps->lp);
}

void aio_process_close_all(aio_loop *lp) {
  procs *ps = lp->procs;
  if (!ps) return;
  if (ps->watching) {
    ps->watching = 0;
    lp->nhandles_open++;
    uv_close((uv_handle_t *)&ps->chld, on_chld_closed);
  }
  if (ps->polling) {
    ps->polling = 0;
    lp->nhandles_open++;
    uv_close((uv_handle_t *)&ps->pidfds, on_pidfds_closed);
  } else if (ps->epfd >= 0) {
    close(ps->epfd);
    ps->epfd = -1;
  }
}

/* Adds p's pidfd to the loop's set, made on first use; 0 or -1. */
static int watch_pidfd(procs *ps, proc *p) {
  struct epoll_event ev;
  if (ps->epfd < 0 && (ps->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) return -1;
  if (!ps->polling) {
    if (uv_poll_init(ps->lp->uv, &ps->pidfds, ps->epfd) != 0) return -1;
    ps->pidfds.data = ps;
    ps->polling = 1;
    uv_poll_start(&ps->pidfds, UV_READABLE, on_pidfds);
  }
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = p;
  if (epoll_ctl(ps->epfd, EPOLL_CTL_ADD, p->pidfd, &ev) != 0) return -1;
  if (ps->npidfds++ == 0) uv_ref((uv_handle_t *)&ps->pidfds);
  return 0;
}

/* Exit watching: the pidfd, or (no pidfd: Linux < 5.3, or forced for tests
 * by LUA_ASYNCIO_NO_PIDFD=1) the loop's SIGCHLD watcher. */
static int no_pidfd;
static uv_once_t no_pidfd_once = UV_ONCE_INIT;

/* read once: the environment is the process's, and loops in several threads
 * spawn at once (ThreadSanitizer saw the unguarded form race) */
static void read_no_pidfd(void) {
  const char *no = getenv("LUA_ASYNCIO_NO_PIDFD");
  no_pidfd = no && *no == '1';
}

static int watch(proc *p) {
  procs *ps = loop_procs(p->lp);
  if (!ps) return UV_ENOMEM;
  uv_once(&no_pidfd_once, read_no_pidfd);
  p->next = ps->head.next;
  p->prev = &ps->head;
  p->next->prev = p;
  ps->head.next = p;
  p->pidfd = no_pidfd ? -1 : pidfd_open(p->pid, 0); /* close-on-exec, as every pidfd */
  if (p->pidfd >= 0) {
    if (watch_pidfd(ps, p) == 0) return 0;
    close(p->pidfd);
    p->pidfd = -1;
  }
  if (!ps->watching) {
    uv_signal_init(p->lp->uv, &ps->chld);
    ps->chld.data = ps;
    if (uv_signal_start(&ps->chld, on_sigchld, SIGCHLD) != 0) return UV_EINVAL;
    ps->watching = 1;
  }
  try_reap(p); /* it may have exited before the watcher was there */
  return 0;
}

/* ---- spawning --------------------------------------------------------------- */

/* spawn's options table: a Lua program's own opts, read as they are */
#define OPTS 3
/* argv and env of at most this many entries need no allocation */
#define STRINGS_SMALL 64

typedef struct spawn_spec {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int parent[3]; /* our ends of the pipes, -1 */
  int child[3];  /* their ends, closed after the spawn */
  char *argv_small[STRINGS_SMALL], *env_small[STRINGS_SMALL];
} spawn_spec;

/* A pipe end of ours at a number >= 3, so a child's dup2 onto 0-2 never
 * finds it in place (dup2(fd, fd) would keep close-on-exec). */
static int high_fd(int fd) {
  int h;
  if (fd >= 3) return fd;
  h = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return h;
}

static int make_pipe(spawn_spec *s, int i) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  fds[0] = high_fd(fds[0]);
  fds[1] = high_fd(fds[1]);
  if (fds[0] < 0 || fds[1] < 0) return errno;
  /* stdin: the child reads; stdout, stderr: the child writes */
  s->child[i] = fds[i == 0 ? 0 : 1];
  s->parent[i] = fds[i == 0 ? 1 : 0];
  return posix_spawn_file_actions_adddup2(&s->fa, s->child[i], i);
}

/* The stdio option `key` (for fd i) into *v, checked; 0 when not given.
 * Read with every other option before the spawn's file actions and pipes
 * exist: a Lua error there (out of memory interning the key) would leak
 * them. */
static int stdio_opt(lua_State *L, int i, const char *key, lua_Integer *v) {
  int t = lua_getfield(L, OPTS, key);
  if (t != LUA_TNIL) *v = luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return 0;
  if (*v == IO_PIPE || *v == IO_DEVNULL) return 1;
  if (*v == IO_STDOUT) {
    if (i != 2) luaL_error(L, "STDOUT is for stderr only");
    return 1;
  }
  if (*v < 0 || *v > 0x7fffffff || fcntl((int)*v, F_GETFD) < 0)
    luaL_error(L, "%s: not an open file descriptor: %d", key, (int)*v);
  return 1;
}

/* the file action of the stdio spec v for fd i */
static int add_stdio(spawn_spec *s, int i, lua_Integer v) {
  if (v == IO_PIPE) return make_pipe(s, i);
  if (v == IO_DEVNULL)
    return posix_spawn_file_actions_addopen(&s->fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY,
                                            0);
  if (v == IO_STDOUT) return posix_spawn_file_actions_adddup2(&s->fa, 1, 2);
  return v == i ? 0 : posix_spawn_file_actions_adddup2(&s->fa, (int)v, i);
}

/* The strings of the list at idx as a NULL-terminated array: in `small`
 * (STRINGS_SMALL entries) with the strings left on the stack, or, for a
 * longer list, in a userdata pushed with a table that keeps them. A spawn
 * then allocates nothing for a usual argv. */
static char **string_list(lua_State *L, int idx, const char *what, char **small) {
  lua_Integer n, i;
  char **v = small;
  int keep;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = luaL_len(L, idx);
  if (n < 0 || n > 1 << 20) luaL_error(L, "%s: too many entries", what);
  if (n < STRINGS_SMALL) {
    luaL_checkstack(L, (int)n + 1, what);
  } else {
    v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 1);
    lua_createtable(L, (int)n, 0);
  }
  keep = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "%s: entry %d is not a string", what, (int)i);
    p = lua_tolstring(L, -1, &len);
    if (strlen(p) != len) luaL_error(L, "%s: entry %d contains a NUL byte", what, (int)i);
    v[i - 1] = (char *)p;
    if (v != small) lua_rawseti(L, keep, i);
  }
  v[n] = NULL;
  if (v != small) lua_setiuservalue(L, -2, 1);
  return v;
}

/* close_fds: every descriptor but 0-2 and pass_fds closed in the child,
 * whether or not it is close-on-exec (Lua's io.open files are not). The
 * pass_fds are made inheritable around the spawn. */
static int add_close_fds(spawn_spec *s, int close_fds, const int *pass, int npass) {
  int i, fd, top = 2;
  for (i = 0; i < npass; i++)
    if (pass[i] > top) top = pass[i];
  if (!close_fds) return 0;
  for (fd = 3; fd <= top; fd++) {
    int keep = 0;
    for (i = 0; i < npass; i++) keep |= pass[i] == fd;
    if (!keep && fcntl(fd, F_GETFD) >= 0 && posix_spawn_file_actions_addclose(&s->fa, fd) != 0)
      return errno;
  }
  return posix_spawn_file_actions_addclosefrom_np(&s->fa, top + 1);
}

static void spec_free(spawn_spec *s, int failed) {
  int i;
  for (i = 0; i < 3; i++) {
    if (s->child[i] >= 0) close(s->child[i]);
    if (failed && s->parent[i] >= 0) close(s->parent[i]);
  }
  posix_spawn_file_actions_destroy(&s->fa);
  posix_spawnattr_destroy(&s->attr);
}

static int opt_int(lua_State *L, const char *key, int *out) {
  int present = lua_getfield(L, OPTS, key) != LUA_TNIL;
  if (present) *out = (int)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return present;
}

static int opt_bool(lua_State *L, const char *key, int def) {
  int v = lua_getfield(L, OPTS, key) == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* posix_spawn has no umask action: the child inherits the parent's, set for
 * the moment of the spawn. Loops in other threads spawn too: one at a time,
 * or one would restore the mask another had set. */
static pthread_mutex_t umask_lock = PTHREAD_MUTEX_INITIALIZER;

/* spawn(loop, argv, opts [, env]) -> Process, pid, stdin fd, stdout fd,
 * stderr fd (our pipe ends, or nil). opts: stdin, stdout, stderr, cwd,
 * close_fds, pass_fds, start_new_session, process_group, umask; env: a list
 * of "NAME=value" (nil: the parent's). */
static int l_spawn(lua_State *L) {
  aio_loop *lp = aio_check_loop(L, 1);
  spawn_spec s;
  char **argv, **envp = environ, *cwd = NULL;
  int pass[64], npass = 0, err = 0, i, pgroup = 0, mask = 0, has_mask, flags, close_fds;
  int given[3];
  lua_Integer io[3] = {0, 0, 0};
  mode_t old_mask = 0;
  sigset_t dfl, none;
  proc **box, *p;
  pid_t pid;
  luaL_checktype(L, OPTS, LUA_TTABLE);
  aio_loop_check_open(L, lp);
  lua_settop(L, 4);
  argv = string_list(L, 2, "argv", s.argv_small);
  if (!argv[0]) return aio_raise(L, "ValueError", "argv must not be empty");
  if (!lua_isnil(L, 4)) envp = string_list(L, 4, "env", s.env_small);
  if (lua_getfield(L, OPTS, "cwd") != LUA_TNIL) cwd = (char *)luaL_checkstring(L, -1);
  if (lua_getfield(L, OPTS, "pass_fds") != LUA_TNIL) {
    lua_Integer n = luaL_len(L, -1), k;
    if (n > (lua_Integer)(sizeof pass / sizeof pass[0])) return luaL_error(L, "too many pass_fds");
    for (k = 1; k <= n; k++) {
      lua_geti(L, -1, k);
      pass[npass] = aio_check_fd(L, -1);
      if (fcntl(pass[npass], F_GETFD) < 0) luaL_error(L, "pass_fds: %d is not open", pass[npass]);
      npass++;
      lua_pop(L, 1);
    }
  }
  has_mask = opt_int(L, "umask", &mask);
  flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (opt_bool(L, "start_new_session", 0)) flags |= POSIX_SPAWN_SETSID;
  if (opt_int(L, "process_group", &pgroup)) flags |= POSIX_SPAWN_SETPGROUP;
  close_fds = opt_bool(L, "close_fds", 1);
  given[0] = stdio_opt(L, 0, "stdin", &io[0]);
  given[1] = stdio_opt(L, 1, "stdout", &io[1]);
  given[2] = stdio_opt(L, 2, "stderr", &io[2]);
  box = lua_newuserdatauv(L, sizeof *box, 1);
  *box = NULL;
  aio_setmetatable(L, lp->S, AIO_T_PROCESS);
  /* no Lua error from here until spec_free */
  for (i = 0; i < 3; i++) s.parent[i] = s.child[i] = -1;
  posix_spawn_file_actions_init(&s.fa);
  posix_spawnattr_init(&s.attr);
  /* the child starts with no signal blocked and the ignored ones Python
   * restores at their default: SIGPIPE (which this module ignores) and
   * SIGXFSZ. glibc's child puts every caught signal back to its default
   * anyway; naming all 64 here would cost it a sigaction each. */
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGPIPE);
  sigaddset(&dfl, SIGXFSZ);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&s.attr, &dfl);
  posix_spawnattr_setsigmask(&s.attr, &none);
  posix_spawnattr_setflags(&s.attr, (short)flags);
  if (flags & POSIX_SPAWN_SETPGROUP) posix_spawnattr_setpgroup(&s.attr, pgroup);
  for (i = 0; i < 3 && !err; i++)
    if (given[i]) err = add_stdio(&s, i, io[i]);
  if (!err) err = add_close_fds(&s, close_fds, pass, npass);
  if (!err && cwd) err = posix_spawn_file_actions_addchdir_np(&s.fa, cwd);
  if (!err && (p = calloc(1, sizeof *p)) == NULL) err = ENOMEM;
  if (err) {
    spec_free(&s, 1);
    return aio_raise_os(L, uv_translate_sys_error(err), "spawn");
  }
  for (i = 0; i < npass; i++) fcntl(pass[i], F_SETFD, 0);
  if (has_mask) {
    pthread_mutex_lock(&umask_lock);
    old_mask = umask((mode_t)mask);
  }
  err = strchr(argv[0], '/') ? posix_spawn(&pid, argv[0], &s.fa, &s.attr, argv, envp)
                             : posix_spawnp(&pid, argv[0], &s.fa, &s.attr, argv, envp);
  if (has_mask) {
    umask(old_mask);
    pthread_mutex_unlock(&umask_lock);
  }
  for (i = 0; i < npass; i++) fcntl(pass[i], F_SETFD, FD_CLOEXEC);
  spec_free(&s, err != 0);
  if (err) {
    free(p);
    lua_pushfstring(L, "%s", argv[0]);
    aio_push_os_error(L, uv_translate_sys_error(err), lua_tostring(L, -1));
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, -2);
      lua_setfield(L, -2, "filename");
    }
    return lua_error(L);
  }
  p->lp = lp;
  p->pid = pid;
  p->pidfd = -1;
  p->box = box;
  p->waiters_ref = p->fut_ref = LUA_NOREF;
  aio_waitlist_init(&p->waiters);
  p->waiter = NULL;
  *box = p;
  aio_closable_link(lp, &p->cl, &proc_type);
  if ((err = watch(p)) != 0) return aio_raise_os(L, err, "watching the child");
  lua_pushinteger(L, pid);
  for (i = 0; i < 3; i++) {
    if (s.parent[i] >= 0)
      lua_pushinteger(L, s.parent[i]);
    else
      lua_pushnil(L);
  }
  return 5;
}

/* ---- the Process object ------------------------------------------------------- */

static proc *check_proc(lua_State *L) {
  proc **b = aio_checkudata(L, 1, AIO_T_PROCESS, AIO_T_PROCESS, "Process");
  if (!*b) luaL_argerror(L, 1, "process is gone");
  return *b;
}

/* returncode() -> the returncode, or nothing while the child runs. Asks
 * the kernel, so a child that has exited shows it before the loop polls. */
static int l_returncode(lua_State *L) {
  proc *p = check_proc(L);
  if (!p->exited) try_reap(p);
  if (!p->exited) return 0;
  lua_pushinteger(L, p->returncode);
  return 1;
}

static int return_exit(lua_State *L, const proc *p) {
  return push_exit(L, p) ? 1 : lua_error(L);
}

/* stack: process[, the waitlist's table, slot] */
static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  proc *p = check_proc(L);
  aio_task *t = (aio_task *)ctx;
  (void)status;
  if (p->waiter == t) p->waiter = NULL; /* woken by a cancel */
  if (t->parked_on == &p->waiters && lua_gettop(L) == 3)
    aio_waitlist_leave(L, &p->waiters, 2, t, (int)lua_tointeger(L, 3));
  aio_task_unparked(L, t);
  lua_settop(L, 1);
  return return_exit(L, p);
}

/* wait() -> returncode. The task is parked on the child, with no Future:
 * a cancelled wait() leaves the child watched and the next wait() works. */
static int l_wait(lua_State *L) {
  proc *p = check_proc(L);
  aio_task *t;
  int slot;
  if (p->exited) return return_exit(L, p);
  if ((t = aio_current_task(L, p->lp->S, "wait")) == NULL) return aio_nested_yield(L);
  if (t->f.loop != p->lp) return aio_raise(L, "RuntimeError", "process belongs to another loop");
  lua_settop(L, 1);
  if (!p->waiter) {
    p->waiter = t; /* the usual case: one waiter, kept with no Lua object */
    return aio_task_park(L, t, p, (lua_KContext)t, wait_k);
  }
  if (p->waiters_ref == LUA_NOREF) {
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    p->waiters_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->waiters_ref);
  }
  slot = aio_waitlist_add(L, &p->waiters, 2, t);
  lua_pushinteger(L, slot);
  return aio_task_park(L, t, &p->waiters, (lua_KContext)t, wait_k);
}

/* exit_future() -> a Future resolved with the returncode, made on the
 * first call (Process.wait needs none) */
static int l_exit_future(lua_State *L) {
  proc *p = check_proc(L);
  if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) return 1;
  aio_future_new(L, p->lp);
  if (p->exited) {
    settle(L, p, 3);
    lua_settop(L, 3);
  } else {
    lua_pushvalue(L, 3);
    p->fut_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

/* send_signal(sig): a child already gone is no error (as Python). */
static int l_send_signal(lua_State *L) {
  proc *p = check_proc(L);
  int sig = (int)luaL_checkinteger(L, 2), r;
  if (sig < 0 || sig > 64) return luaL_argerror(L, 2, "invalid signal number");
  if (p->exited) return 0;
  r = signal_child(p, sig);
  if (r != 0 && errno != ESRCH) return aio_raise_os(L, uv_translate_sys_error(errno), "kill");
  return 0;
}

/* close_fd(fd): a pipe end spawn gave that no transport took */
static int l_close_fd(lua_State *L) {
  int fd = aio_check_fd(L, 1);
  if (fd > 2) close(fd);
  return 0;
}

static int l_proc_gc(lua_State *L) {
  proc **b = lua_touserdata(L, 1), *p = *b;
  if (!p) return 0;
  *b = NULL;
  p->box = NULL;
  /* a running child stays watched: it is reaped when it exits */
  if (p->exited) free_if_done(p);
  return 0;
}

static int l_proc_tostring(lua_State *L) {
  proc *p = check_proc(L);
  if (p->exited)
    lua_pushfstring(L, "<Process %d returncode=%d>", (int)p->pid, p->returncode);
  else
    lua_pushfstring(L, "<Process %d running>", (int)p->pid);
  return 1;
}

/* getpid() -> this process's id (the control socket is named by it) */
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

void aio_process_open(lua_State *L, aio_state *S) {
  static const luaL_Reg methods[] = {{"returncode", l_returncode},
                                     {"wait", l_wait},
                                     {"exit_future", l_exit_future},
                                     {"send_signal", l_send_signal},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__gc", l_proc_gc}, {"__tostring", l_proc_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn}, {"close_fd", l_close_fd}, {"getpid", l_getpid}, {NULL, NULL}};
  aio_newclass(L, S, AIO_T_PROCESS, "asyncio.ProcessHandle", methods, meta);
  lua_setfield(L, -2, "ProcessHandle");
  aio_setfuncs(L, S, funcs);
}
