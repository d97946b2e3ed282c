/* What tls.c and sslcontext.c share: contexts, SSL objects and errors. */
#ifndef AIO_TLS_H
#define AIO_TLS_H

#include <openssl/ssl.h>

#include "stream.h"

SSL_CTX *aio_check_sslctx(lua_State *L, int idx, int *check_hostname);
/* pushes an SSLObject sharing ssl (SSL_up_ref); its server_hostname is the
 * value at hostname_idx */
void aio_sslobject_push(lua_State *L, SSL *ssl, int server_side, int hostname_idx);
/* pushes the SSLError for OpenSSL's error queue (then cleared) after a
 * failed call whose SSL_get_error was sslerr; ssl may be NULL */
void aio_ssl_push_error(lua_State *L, SSL *ssl, int sslerr, const char *what);

#endif
