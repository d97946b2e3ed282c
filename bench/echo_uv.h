/* What the raw libuv echo floors (echo_uv_copy.c, echo_uv_lua.c) share:
 * listening on 127.0.0.1:PORT from the command line, and running. */
#ifndef ECHO_UV_H
#define ECHO_UV_H

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

/* Listens with the server the command line names (argv[1], the port) and
 * runs the loop: main's return value. */
static int echo_serve(const char *name, int argc, char **argv, uv_connection_cb on_connection) {
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t server;
  struct sockaddr_in addr;
  int err;
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 1;
  }
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
  uv_tcp_init(loop, &server);
  err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (!err) err = uv_listen((uv_stream_t *)&server, 1024, on_connection);
  if (err) {
    fprintf(stderr, "%s: %s\n", name, uv_strerror(err));
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}

#endif
