/* post_close_race: asyncio_call_threadsafe from another thread racing
 * loop:close() on a loop that owns its uv loop. The header promises that a
 * post is safe while the loop is open and returns UV_ECANCELED once it is
 * closed; a post that starts while the loop is open and meets a close halfway
 * must end either way, never crash.
 *
 * The race window (between the core's "closed?" check and its uv_async_send)
 * is a few instructions wide, so this program widens it deterministically: it
 * defines uv_async_send itself, which the core's objects then call instead of
 * libuv's, and stalls one chosen call before forwarding it to libuv. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"

static int (*real_uv_async_send)(uv_async_t *);
static atomic_int stall_next_send;
static sem_t send_stalled;

int uv_async_send(uv_async_t *async) {
  if (atomic_exchange(&stall_next_send, 0)) {
    sem_post(&send_stalled);
    usleep(100 * 1000); /* the loop thread closes the loop meanwhile */
  }
  return real_uv_async_send(async);
}

static asyncio_loop *loop;
static int post_rc = 1;
static atomic_int callback_ran;

static void on_post(lua_State *L, void *data) {
  (void)L;
  (void)data;
  atomic_store(&callback_ran, 1);
}

static void *poster_main(void *arg) {
  (void)arg;
  atomic_store(&stall_next_send, 1);
  post_rc = asyncio_call_threadsafe(loop, on_post, NULL);
  return NULL;
}

int main(void) {
  lua_State *L;
  pthread_t poster;
  int rc;

  alarm(HARNESS_ALARM_SECONDS);
  setvbuf(stdout, NULL, _IOLBF, 0);
  *(void **)&real_uv_async_send = dlsym(RTLD_NEXT, "uv_async_send");
  CHECK(real_uv_async_send != NULL && real_uv_async_send != uv_async_send,
        "libuv's uv_async_send found behind this program's");
  sem_init(&send_stalled, 0, 0);

  L = harness_state();
  loop = asyncio_loop_new(L, NULL);
  lua_setglobal(L, "loop");
  /* a post with nothing in the way goes through the wrapper and runs */
  CHECK(asyncio_call_threadsafe(loop, on_post, NULL) == 0, "a plain post returns 0");
  harness_run(L, "first", "loop:run_once(0.001)\n", 0, 0);
  CHECK(atomic_exchange(&callback_ran, 0) == 1, "the plain post ran");

  rc = pthread_create(&poster, NULL, poster_main, NULL);
  assert(rc == 0);
  sem_wait(&send_stalled);
  /* The poster has passed the "closed?" check: the post was accepted while
   * the loop was open. Close the loop before its uv_async_send goes out. */
  harness_run(L, "close", "loop:close()\nassert(loop:is_closed())\n", 0, 0);
  printf("# loop closed; the stalled uv_async_send goes out now\n");
  rc = pthread_join(poster, NULL);
  assert(rc == 0);
  CHECK(post_rc == 0 || post_rc == UV_ECANCELED,
        "a post racing loop:close() returns 0 or UV_ECANCELED (%d) and does not crash", post_rc);
  CHECK(!atomic_load(&callback_ran), "nothing ran on the closed loop");
  CHECK(asyncio_call_threadsafe(loop, on_post, NULL) == UV_ECANCELED,
        "a post after the close returns UV_ECANCELED");

  lua_close(L);
  sem_destroy(&send_stalled);
  printf("post_close_race: all checks passed\n");
  return 0;
}
