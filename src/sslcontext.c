/* asyncio.ssl's C side: SSLContext (one SSL_CTX shared by every connection
 * made with it), SSLObject (what get_extra_info("ssl_object") gives), and
 * SSLError objects made from OpenSSL's error queue. */

/***
SSLContext and SSLObject (in C).
@module ssl
*/

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* Python's values */
enum { CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED };

typedef struct sslctx {
  SSL_CTX *ctx;
  unsigned char *alpn; /* wire format, for the server's selection callback */
  unsigned alpn_len;
  uint8_t server;
  uint8_t check_hostname;
  uint8_t verify_mode;
} sslctx;

typedef struct sslobj {
  SSL *ssl;
  aio_state *S;
  uint8_t server_side;
} sslobj;

/* ---- errors -------------------------------------------------------------- */

static const char *lib_name(unsigned long e) {
  switch (ERR_GET_LIB(e)) {
  case ERR_LIB_SSL:
    return "SSL";
  case ERR_LIB_X509:
    return "X509";
  case ERR_LIB_X509V3:
    return "X509V3";
  case ERR_LIB_PEM:
    return "PEM";
  case ERR_LIB_EVP:
    return "EVP";
  case ERR_LIB_ASN1:
    return "ASN1";
  case ERR_LIB_SYS:
    return "SYS";
  case ERR_LIB_BIO:
    return "BIO";
  case ERR_LIB_PKCS12:
    return "PKCS12";
  case ERR_LIB_PROV:
    return "PROV";
  case ERR_LIB_OSSL_DECODER:
    return "DECODER";
  default: {
    const char *s = ERR_lib_error_string(e);
    return s ? s : "UNKNOWN";
  }
  }
}

/* Python's reason names are OpenSSL's reason strings in upper case with
 * underscores: "certificate verify failed" -> CERTIFICATE_VERIFY_FAILED. */
static void push_reason(lua_State *L, unsigned long e) {
  const char *s = ERR_reason_error_string(e);
  luaL_Buffer b;
  if (!s) {
    lua_pushfstring(L, "UNKNOWN_%d", (int)ERR_GET_REASON(e));
    return;
  }
  luaL_buffinit(L, &b);
  for (; *s; s++) luaL_addchar(&b, *s == ' ' ? '_' : (char)toupper((unsigned char)*s));
  luaL_pushresult(&b);
}

static void set_str(lua_State *L, int t, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, t, k);
}

/* The verification failure's message, as Python words a hostname mismatch. */
static void push_verify_message(lua_State *L, SSL *ssl, long code) {
  X509_VERIFY_PARAM *param = ssl ? SSL_get0_param(ssl) : NULL;
  char *ip;
  if (code == X509_V_ERR_HOSTNAME_MISMATCH && param) {
    const char *host = X509_VERIFY_PARAM_get0_host(param, 0);
    lua_pushfstring(L, "Hostname mismatch, certificate is not valid for '%s'.", host ? host : "");
  } else if (code == X509_V_ERR_IP_ADDRESS_MISMATCH && param &&
             (ip = X509_VERIFY_PARAM_get1_ip_asc(param)) != NULL) {
    lua_pushfstring(L, "IP address mismatch, certificate is not valid for '%s'.", ip);
    OPENSSL_free(ip);
  } else {
    lua_pushstring(L, X509_verify_cert_error_string(code));
  }
}

void aio_ssl_push_error(lua_State *L, SSL *ssl, int sslerr, const char *what) {
  unsigned long e = ERR_peek_last_error(), first = ERR_peek_error();
  const char *cls = "SSLError";
  int t, verify = 0;
  long code = 0;
  if (sslerr == SSL_ERROR_ZERO_RETURN) {
    lua_pushliteral(L, "TLS/SSL connection has been closed (EOF)");
    cls = "SSLZeroReturnError";
  } else if (e == 0 && sslerr == SSL_ERROR_SYSCALL) {
    lua_pushliteral(L, "EOF occurred in violation of protocol");
    cls = "SSLEOFError";
  } else if (e == 0) {
    lua_pushstring(L, what ? what : "unknown error");
  } else {
    verify = ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED;
    if (verify) {
      code = ssl ? SSL_get_verify_result(ssl) : 0;
      push_verify_message(L, ssl, code);
      lua_pushfstring(L, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: %s",
                      lua_tostring(L, -1));
      lua_remove(L, -2);
      cls = "SSLCertVerificationError";
    } else {
      /* the first error says why when the last only says where (PEM lib) */
      const char *why = first != e ? ERR_reason_error_string(first) : NULL;
      push_reason(L, e);
      lua_pushfstring(L, "[%s: %s] %s%s%s%s%s", lib_name(e), lua_tostring(L, -1),
                      ERR_reason_error_string(e), why ? " (" : "", why ? why : "", why ? ")" : "",
                      what ? ": " : "");
      if (what) {
        lua_pushstring(L, what);
        lua_concat(L, 2);
      }
      lua_remove(L, -2);
    }
  }
  aio_push_error(L, cls, -1);
  lua_remove(L, -2);
  t = lua_gettop(L);
  if (lua_istable(L, t)) {
    if (e) {
      set_str(L, t, "library", lib_name(e));
      push_reason(L, e);
      lua_setfield(L, t, "reason");
    }
    if (verify) {
      lua_pushinteger(L, code);
      lua_setfield(L, t, "verify_code");
      push_verify_message(L, ssl, code);
      lua_setfield(L, t, "verify_message");
    }
  }
  ERR_clear_error();
}

/* Raises SSLError for a failed call on file `file`. */
static int raise_file(lua_State *L, const char *doing, const char *file) {
  if (access(file, R_OK) != 0) {
    int en = errno;
    ERR_clear_error();
    lua_pushfstring(L, "%s '%s': %s", doing, file, strerror(en));
    aio_push_error(L, "SSLError", -1);
    if (lua_istable(L, -1)) {
      lua_pushinteger(L, en);
      lua_setfield(L, -2, "errno");
    }
    return lua_error(L);
  }
  lua_pushfstring(L, "%s '%s'", doing, file);
  aio_ssl_push_error(L, NULL, SSL_ERROR_SSL, lua_tostring(L, -1));
  return lua_error(L);
}

/* ---- SSLContext ---------------------------------------------------------------- */

static sslctx *check_ctx(lua_State *L, int idx) {
  sslctx *c = aio_checkudata(L, idx, AIO_T_SSLCTX, AIO_T_SSLCTX, "SSLContext");
  if (!c->ctx) luaL_argerror(L, idx, "context is gone");
  return c;
}

SSL_CTX *aio_check_sslctx(lua_State *L, int idx, int *check_hostname) {
  sslctx *c = check_ctx(L, idx);
  if (check_hostname) *check_hostname = c->check_hostname;
  return c->ctx;
}

static void apply_verify(sslctx *c) {
  int mode = SSL_VERIFY_NONE;
  if (c->verify_mode == CERT_REQUIRED)
    mode = SSL_VERIFY_PEER | (c->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
  else if (c->verify_mode == CERT_OPTIONAL)
    mode = SSL_VERIFY_PEER;
  SSL_CTX_set_verify(c->ctx, mode, NULL);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  sslctx *c = arg;
  unsigned char *sel;
  (void)ssl;
  if (!c->alpn) return SSL_TLSEXT_ERR_NOACK;
  /* the server's order decides, as in Python */
  if (SSL_select_next_proto(&sel, outlen, c->alpn, c->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

/* SSLContext("client"|"server"): Python's SSLContext(PROTOCOL_TLS_CLIENT or
 * _SERVER), TLS 1.2 at least, no certificates loaded. */
static int l_ctx_new(lua_State *L) {
  static const char *const purposes[] = {"client", "server", NULL};
  int server = luaL_checkoption(L, 1, "client", purposes);
  sslctx *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  aio_setmetatable(L, aio_state_of(L), AIO_T_SSLCTX);
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) {
    aio_ssl_push_error(L, NULL, SSL_ERROR_SSL, "cannot make an SSL context");
    return lua_error(L);
  }
  c->server = (uint8_t)server;
  c->check_hostname = !server;
  c->verify_mode = server ? CERT_NONE : CERT_REQUIRED;
  apply_verify(c);
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                  SSL_OP_NO_RENEGOTIATION);
  /* an idle connection holds no record buffers */
  SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
  if (server) SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, c);
  return 1;
}

static int ctx_gc(lua_State *L) {
  sslctx *c = lua_touserdata(L, 1);
  SSL_CTX_free(c->ctx); /* connections keep their own reference */
  c->ctx = NULL;
  OPENSSL_free(c->alpn);
  c->alpn = NULL;
  return 0;
}

typedef struct password {
  const char *p;
  size_t n;
  int too_long;
} password;

static int password_cb(char *buf, int size, int rwflag, void *ud) {
  password *pw = ud;
  (void)rwflag;
  if (!pw->p) return -1;
  if (pw->n > (size_t)size) {
    pw->too_long = 1;
    return -1;
  }
  memcpy(buf, pw->p, pw->n);
  return (int)pw->n;
}

/* load_cert_chain(certfile [, keyfile [, password]]): password is a string
 * or a function returning one. */

/***
Loads a certificate chain and its private key (PEM).
@function SSLContext:load_cert_chain
@python SSLContext.load_cert_chain
@tparam string certfile
@tparam[opt] string keyfile default: certfile
@tparam[opt] string password
@raise SSLError when a file cannot be loaded or the key does not match
*/
static int l_load_cert_chain(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  const char *cert = luaL_checkstring(L, 2);
  const char *key = luaL_optstring(L, 3, cert);
  password pw = {NULL, 0, 0};
  int ok;
  lua_settop(L, 4);
  if (lua_isfunction(L, 4)) {
    lua_pushvalue(L, 4);
    lua_call(L, 0, 1);
    if (!lua_isstring(L, -1)) return luaL_error(L, "password callback must return a string");
    lua_replace(L, 4);
  }
  if (!lua_isnil(L, 4)) pw.p = luaL_checklstring(L, 4, &pw.n);
  ERR_clear_error();
  SSL_CTX_set_default_passwd_cb(c->ctx, password_cb);
  SSL_CTX_set_default_passwd_cb_userdata(c->ctx, &pw);
  ok = SSL_CTX_use_certificate_chain_file(c->ctx, cert) == 1;
  if (ok) ok = SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) == 1;
  SSL_CTX_set_default_passwd_cb(c->ctx, NULL);
  SSL_CTX_set_default_passwd_cb_userdata(c->ctx, NULL);
  if (!ok && pw.too_long) {
    ERR_clear_error();
    return aio_raise(L, "ValueError", "password is too long for key file '%s'", key);
  }
  if (!ok && SSL_CTX_get0_certificate(c->ctx) == NULL)
    return raise_file(L, "cannot load certificate chain from", cert);
  if (!ok) return raise_file(L, "cannot load private key from", key);
  if (SSL_CTX_check_private_key(c->ctx) != 1)
    return raise_file(L, "private key does not match the certificate of", cert);
  return 0;
}

/* load_verify_locations([cafile [, capath [, cadata]]]) */

/***
Loads CA certificates to verify peers with.
@function SSLContext:load_verify_locations
@python SSLContext.load_verify_locations
@tparam[opt] string cafile
@tparam[opt] string capath
@tparam[opt] string cadata PEM text
@raise SSLError; ValueError when all are nil
*/
static int l_load_verify_locations(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  const char *cafile = luaL_optstring(L, 2, NULL);
  const char *capath = luaL_optstring(L, 3, NULL);
  size_t n = 0;
  const char *cadata = luaL_optlstring(L, 4, NULL, &n);
  if (!cafile && !capath && !cadata)
    return aio_raise(L, "ValueError", "cafile, capath and cadata cannot be all omitted");
  ERR_clear_error();
  if ((cafile || capath) && SSL_CTX_load_verify_locations(c->ctx, cafile, capath) != 1)
    return raise_file(L, "cannot load verify locations from", cafile ? cafile : capath);
  if (cadata) {
    X509_STORE *store = SSL_CTX_get_cert_store(c->ctx);
    BIO *bio = BIO_new_mem_buf(cadata, (int)n);
    X509 *x;
    int count = 0;
    if (!bio) return luaL_error(L, "not enough memory");
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
      X509_STORE_add_cert(store, x);
      X509_free(x);
      count++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the data shows up as a PEM error */
    if (count == 0) return aio_raise(L, "SSLError", "no certificate found in cadata");
  }
  return 0;
}

/***
Loads the system CA store.
@function SSLContext:load_default_certs
@python SSLContext.load_default_certs
*/
static int l_load_default_certs(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
    aio_ssl_push_error(L, NULL, SSL_ERROR_SSL, "cannot load the system's certificates");
    return lua_error(L);
  }
  return 0;
}

/***
The ALPN protocols to offer, in order of preference.
@function SSLContext:set_alpn_protocols
@python SSLContext.set_alpn_protocols
@tparam {string,...} list
*/
static int l_set_alpn_protocols(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  luaL_Buffer b;
  lua_Integer i, n;
  size_t len;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = luaL_len(L, 2);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    const char *p;
    lua_geti(L, 2, i);
    p = lua_tolstring(L, -1, &len);
    if (!p || lua_type(L, -1) != LUA_TSTRING || len == 0 || len > 255)
      return luaL_argerror(L, 2, "list of protocol names (1 to 255 bytes) expected");
    lua_pop(L, 1);
    luaL_addchar(&b, (char)len);
    luaL_addlstring(&b, p, len);
  }
  luaL_pushresult(&b);
  {
    const char *wire = lua_tolstring(L, -1, &len);
    unsigned char *copy = NULL;
    if (len > 0xFFFF) return luaL_argerror(L, 2, "protocol list too long");
    if (len && (copy = OPENSSL_memdup(wire, len)) == NULL)
      return luaL_error(L, "not enough memory");
    OPENSSL_free(c->alpn);
    c->alpn = copy;
    c->alpn_len = (unsigned)len;
    /* 0 means success here */
    if (!c->server && SSL_CTX_set_alpn_protos(c->ctx, copy, (unsigned)len) != 0)
      return luaL_error(L, "not enough memory");
  }
  return 0;
}

/***
The TLS 1.2 cipher list (OpenSSL syntax).
@function SSLContext:set_ciphers
@python SSLContext.set_ciphers
@tparam string s
@raise SSLError when no cipher can be selected
*/
static int l_set_ciphers(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  const char *list = luaL_checkstring(L, 2);
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(c->ctx, list) != 1) {
    ERR_clear_error();
    return aio_raise(L, "SSLError", "No cipher can be selected.");
  }
  return 0;
}

static int check_version(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v == -2 || v == -1) return 0; /* MINIMUM_SUPPORTED, MAXIMUM_SUPPORTED */
  if (v < TLS1_VERSION || v > TLS1_3_VERSION)
    aio_raise(L, "ValueError", "unknown TLS version %I", v);
  return (int)v;
}

/* For the __index functions of the classes with fields (new_fieldclass):
 * the method k of the object at 1. */
static void push_method(lua_State *L, const char *k) {
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__methods");
  lua_getfield(L, -1, k);
}

/***
The fields of an SSLContext.
@table context
@python ssl.SSLContext
@field check_hostname boolean; setting it true turns verification on
@field verify_mode `CERT_NONE`, `CERT_OPTIONAL` or `CERT_REQUIRED` (`CERT_NONE` with
  `check_hostname` raises ValueError)
@field minimum_version a `TLSVersion` value
@field maximum_version a `TLSVersion` value
@field purpose `"client"` or `"server"` (read only)
*/
static int l_ctx_index(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "check_hostname") == 0) {
    lua_pushboolean(L, c->check_hostname);
  } else if (strcmp(k, "verify_mode") == 0) {
    lua_pushinteger(L, c->verify_mode);
  } else if (strcmp(k, "minimum_version") == 0) {
    int v = SSL_CTX_get_min_proto_version(c->ctx);
    lua_pushinteger(L, v ? v : -2);
  } else if (strcmp(k, "maximum_version") == 0) {
    int v = SSL_CTX_get_max_proto_version(c->ctx);
    lua_pushinteger(L, v ? v : -1);
  } else if (strcmp(k, "purpose") == 0) {
    lua_pushstring(L, c->server ? "server" : "client");
  } else {
    push_method(L, k);
  }
  return 1;
}

/* The field rules are Python's: check_hostname needs verification on. */
static int l_ctx_newindex(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "check_hostname") == 0) {
    c->check_hostname = (uint8_t)lua_toboolean(L, 3);
    if (c->check_hostname && c->verify_mode == CERT_NONE) {
      c->verify_mode = CERT_REQUIRED;
      apply_verify(c);
    }
  } else if (strcmp(k, "verify_mode") == 0) {
    lua_Integer m = luaL_checkinteger(L, 3);
    if (m < CERT_NONE || m > CERT_REQUIRED)
      return aio_raise(L, "ValueError", "invalid value %I for verify_mode", m);
    if (m == CERT_NONE && c->check_hostname)
      return aio_raise(L, "ValueError",
                       "Cannot set verify_mode to CERT_NONE when check_hostname is enabled.");
    c->verify_mode = (uint8_t)m;
    apply_verify(c);
  } else if (strcmp(k, "minimum_version") == 0) {
    SSL_CTX_set_min_proto_version(c->ctx, check_version(L, 3));
  } else if (strcmp(k, "maximum_version") == 0) {
    SSL_CTX_set_max_proto_version(c->ctx, check_version(L, 3));
  } else {
    return luaL_error(L, "SSLContext has no field '%s'", k);
  }
  return 0;
}

static int l_ctx_tostring(lua_State *L) {
  sslctx *c = check_ctx(L, 1);
  lua_pushfstring(L, "<SSLContext %s %p>", c->server ? "server" : "client", (void *)c);
  return 1;
}

/* ---- SSLObject ---------------------------------------------------------------------- */

static sslobj *check_obj(lua_State *L) {
  return aio_checkudata(L, 1, AIO_T_SSLOBJ, AIO_T_SSLOBJ, "SSLObject");
}

void aio_sslobject_push(lua_State *L, SSL *ssl, int server_side, int hostname_idx) {
  aio_state *S = aio_get_state(L);
  sslobj *o;
  hostname_idx = lua_absindex(L, hostname_idx);
  o = lua_newuserdatauv(L, sizeof *o, 1);
  o->ssl = NULL;
  o->S = S;
  o->server_side = (uint8_t)server_side;
  aio_setmetatable(L, S, AIO_T_SSLOBJ);
  lua_pushvalue(L, hostname_idx);
  lua_setiuservalue(L, -2, 1);
  SSL_up_ref(ssl);
  o->ssl = ssl;
  S->tls_live++;
}

static int obj_gc(lua_State *L) {
  sslobj *o = lua_touserdata(L, 1);
  if (o->ssl) {
    SSL_free(o->ssl);
    o->ssl = NULL;
    o->S->tls_live--;
  }
  return 0;
}

/***
The protocol version of the connection, e.g. `"TLSv1.3"`.
@function SSLObject:version
@python SSLObject.version
@treturn string
*/
static int l_version(lua_State *L) {
  sslobj *o = check_obj(L);
  if (!SSL_is_init_finished(o->ssl)) return 0;
  lua_pushstring(L, SSL_get_version(o->ssl));
  return 1;
}

/***
The cipher in use.
@function SSLObject:cipher
@python SSLObject.cipher
@treturn table `{name, protocol, bits}`
*/
static int l_cipher(lua_State *L) {
  sslobj *o = check_obj(L);
  const SSL_CIPHER *ci = SSL_get_current_cipher(o->ssl);
  if (!ci) return 0;
  lua_createtable(L, 3, 0);
  lua_pushstring(L, SSL_CIPHER_get_name(ci));
  lua_rawseti(L, -2, 1);
  lua_pushstring(L, SSL_CIPHER_get_version(ci));
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, SSL_CIPHER_get_bits(ci, NULL));
  lua_rawseti(L, -2, 3);
  return 1;
}

/***
The protocol ALPN agreed on, or nil.
@function SSLObject:selected_alpn_protocol
@python SSLObject.selected_alpn_protocol
@treturn ?string
*/
static int l_selected_alpn_protocol(lua_State *L) {
  sslobj *o = check_obj(L);
  const unsigned char *p;
  unsigned n;
  SSL_get0_alpn_selected(o->ssl, &p, &n);
  if (!p || n == 0) return 0;
  lua_pushlstring(L, (const char *)p, n);
  return 1;
}

static void push_asn1_string(lua_State *L, const ASN1_STRING *s) {
  unsigned char *utf8;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) {
    lua_pushliteral(L, "");
    return;
  }
  lua_pushlstring(L, (const char *)utf8, (size_t)n);
  OPENSSL_free(utf8);
}

/* Python's name tuple: a list of RDNs, each a list of {name, value}. */
static void push_name(lua_State *L, const X509_NAME *name) {
  int i, n = X509_NAME_entry_count(name), set = -1, rdn = 0;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    if (X509_NAME_ENTRY_set(e) != set) {
      if (set != -1) lua_rawseti(L, -2, ++rdn);
      set = X509_NAME_ENTRY_set(e);
      lua_newtable(L);
    }
    lua_createtable(L, 2, 0);
    if (nid != NID_undef)
      lua_pushstring(L, OBJ_nid2ln(nid));
    else {
      char buf[80];
      OBJ_obj2txt(buf, sizeof buf, X509_NAME_ENTRY_get_object(e), 1);
      lua_pushstring(L, buf);
    }
    lua_rawseti(L, -2, 1);
    push_asn1_string(L, X509_NAME_ENTRY_get_data(e));
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  if (set != -1) lua_rawseti(L, -2, ++rdn);
}

static void push_time(lua_State *L, const ASN1_TIME *t) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  if (!b || ASN1_TIME_print(b, t) != 1) {
    BIO_free(b);
    lua_pushliteral(L, "");
    return;
  }
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)n);
  BIO_free(b);
}

/* An IP SAN as Python prints it: dotted IPv4, or eight upper-case groups. */
static void push_ip(lua_State *L, const ASN1_OCTET_STRING *ip) {
  const unsigned char *p = ASN1_STRING_get0_data(ip);
  int n = ASN1_STRING_length(ip);
  if (n == 4) {
    lua_pushfstring(L, "%d.%d.%d.%d", p[0], p[1], p[2], p[3]);
  } else if (n == 16) {
    char buf[48];
    int i, off = 0;
    for (i = 0; i < 16; i += 2)
      off +=
          snprintf(buf + off, sizeof buf - (size_t)off, i ? ":%X" : "%X", (p[i] << 8) | p[i + 1]);
    lua_pushstring(L, buf);
  } else {
    lua_pushliteral(L, "<invalid>");
  }
}

static void push_sans(lua_State *L, X509 *x) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int i, n, k = 0;
  if (!names) return;
  n = sk_GENERAL_NAME_num(names);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    const char *kind;
    switch (g->type) {
    case GEN_DNS:
      kind = "DNS";
      break;
    case GEN_EMAIL:
      kind = "email";
      break;
    case GEN_URI:
      kind = "URI";
      break;
    case GEN_IPADD:
      kind = "IP Address";
      break;
    default:
      continue;
    }
    lua_createtable(L, 2, 0);
    lua_pushstring(L, kind);
    lua_rawseti(L, -2, 1);
    if (g->type == GEN_IPADD)
      push_ip(L, g->d.iPAddress);
    else
      push_asn1_string(L, g->d.ia5);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++k);
  }
  GENERAL_NAMES_free(names);
  lua_setfield(L, -2, "subjectAltName");
}

static void push_cert(lua_State *L, X509 *x) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  lua_createtable(L, 0, 7);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  lua_pushinteger(L, X509_get_version(x) + 1);
  lua_setfield(L, -2, "version");
  if (hex) {
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "serialNumber");
  }
  OPENSSL_free(hex);
  BN_free(bn);
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "notBefore");
  push_time(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "notAfter");
  push_sans(L, x);
}

/* getpeercert([binary]): as Python, {} for a certificate nobody verified. */

/***
The peer's certificate as Python's table (`subject`, `issuer`,
`notAfter`, `subjectAltName`, ...), or nil.
@function SSLObject:getpeercert
@python SSLObject.getpeercert
@treturn ?table
*/
static int l_getpeercert(lua_State *L) {
  sslobj *o = check_obj(L);
  int binary = lua_toboolean(L, 2);
  X509 *x;
  if (!SSL_is_init_finished(o->ssl)) return aio_raise(L, "ValueError", "handshake not done yet");
  x = SSL_get1_peer_certificate(o->ssl);
  if (!x) return 0;
  if (binary) {
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n > 0) lua_pushlstring(L, (const char *)der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    return n > 0;
  }
  if (SSL_get_verify_mode(o->ssl) == SSL_VERIFY_NONE)
    lua_newtable(L);
  else
    push_cert(L, x);
  X509_free(x);
  return 1;
}

/***
The fields of an SSL object (`transport:get_extra_info("ssl_object")`).
@table ssl_object
@python ssl.SSLObject
@field server_side boolean
@field server_hostname ?string
*/
static int l_obj_index(lua_State *L) {
  sslobj *o = check_obj(L);
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "server_side") == 0) {
    lua_pushboolean(L, o->server_side);
  } else if (strcmp(k, "server_hostname") == 0) {
    lua_getiuservalue(L, 1, 1);
  } else {
    push_method(L, k);
  }
  return 1;
}

static int l_obj_tostring(lua_State *L) {
  lua_pushfstring(L, "<SSLObject %p>", (void *)check_obj(L));
  return 1;
}

static int l_live(lua_State *L) {
  lua_pushinteger(L, aio_state_of(L)->tls_live);
  return 1;
}

/* is_sslcontext(v): what asyncio.ssl.is_context asks, without making a
 * context to compare metatables with (an SSL_CTX costs milliseconds). */
static int l_is_ctx(lua_State *L) {
  lua_pushboolean(L, aio_testudata(L, 1, AIO_T_SSLCTX, AIO_T_SSLCTX) != NULL);
  return 1;
}

/* The class's __index is a function (fields live in C); methods are kept
 * under __methods. */
static void new_fieldclass(lua_State *L, aio_state *S, int type, const char *name,
                           const luaL_Reg *methods, const luaL_Reg *meta, lua_CFunction index) {
  aio_newclass(L, S, type, name, methods, meta);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->mt[type]);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__methods");
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 2);
}

void aio_sslcontext_open(lua_State *L, aio_state *S) {
  static const luaL_Reg ctx_methods[] = {{"load_cert_chain", l_load_cert_chain},
                                         {"load_verify_locations", l_load_verify_locations},
                                         {"load_default_certs", l_load_default_certs},
                                         {"set_alpn_protocols", l_set_alpn_protocols},
                                         {"set_ciphers", l_set_ciphers},
                                         {NULL, NULL}};
  static const luaL_Reg ctx_meta[] = {{"__gc", ctx_gc},
                                      {"__newindex", l_ctx_newindex},
                                      {"__tostring", l_ctx_tostring},
                                      {NULL, NULL}};
  static const luaL_Reg obj_methods[] = {{"version", l_version},
                                         {"cipher", l_cipher},
                                         {"selected_alpn_protocol", l_selected_alpn_protocol},
                                         {"getpeercert", l_getpeercert},
                                         {NULL, NULL}};
  static const luaL_Reg obj_meta[] = {
      {"__gc", obj_gc}, {"__tostring", l_obj_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"SSLContext_new", l_ctx_new},
                                   {"is_sslcontext", l_is_ctx},
                                   {"ssl_live", l_live},
                                   {NULL, NULL}};
  new_fieldclass(L, S, AIO_T_SSLCTX, "asyncio.SSLContext", ctx_methods, ctx_meta, l_ctx_index);
  new_fieldclass(L, S, AIO_T_SSLOBJ, "asyncio.SSLObject", obj_methods, obj_meta, l_obj_index);
  aio_setfuncs(L, S, funcs);
}
