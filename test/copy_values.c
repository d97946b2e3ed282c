/* copy_values: src/copy.c, values copied from one lua_State to another
 * through a byte buffer: round trips keep types, sharing and cycles; refused
 * values are named by their exact path; decoding truncated or corrupted
 * blocks raises and never reads out of bounds (ASan checks that). */
#include <stdint.h>
#include <unistd.h>

#include "copy.h"
#include "harness.h"

/* State A's allocator counts calls: encoding scalars, strings and a lone
 * table must not allocate in Lua. */
static long a_allocs;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  a_allocs++;
  return realloc(ptr, nsize);
}

static lua_State *A, *B; /* the encoding state and the decoding one */
static aio_copybuf cbuf;
static char msg[1024]; /* the last refusal message */

/* Runs code in A for nres values, encodes them onto cbuf as "to_thread"
 * arguments from 1; on refusal keeps the message in msg. A's stack is left
 * as it was, and the checks of the stack effects are made here. */
static int encode_code(const char *code, int nres, int flags) {
  int top = lua_gettop(A), rc;
  harness_run(A, "@encoded.lua", code, 0, nres);
  rc = aio_copy_encode(A, top + 1, nres, &cbuf, "to_thread", 1, flags);
  if (rc == 0) {
    assert(lua_gettop(A) == top + nres);
  } else {
    assert(lua_gettop(A) == top + nres + 1 && lua_type(A, -1) == LUA_TSTRING);
    snprintf(msg, sizeof msg, "%s", lua_tostring(A, -1));
  }
  lua_settop(A, top);
  return rc;
}

static int l_decode(lua_State *L) {
  const char *data = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  lua_settop(L, 3);
  return aio_copy_decode(L, data, len, lua_isnil(L, 3) ? 0 : 3);
}

/* Decodes data[0..len) in B under pcall (with B's table at cache, if not
 * 0): the number of values left on B's stack, or -1 with the error there. */
static int decode_pcall(const char *data, size_t len, int cache) {
  int top = lua_gettop(B);
  if (cache) cache = lua_absindex(B, cache);
  lua_pushcfunction(B, l_decode);
  lua_pushlightuserdata(B, (void *)data);
  lua_pushinteger(B, (lua_Integer)len);
  if (cache)
    lua_pushvalue(B, cache);
  else
    lua_pushnil(B);
  if (lua_pcall(B, 3, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(B) - top;
}

/* Decodes the block of cbuf from `from` into B and runs check there with
 * the values as `...`; the check raises (and the program aborts) on a
 * mismatch. */
static void decode_check(size_t from, const char *check) {
  int n = decode_pcall(cbuf.data + from, cbuf.len - from, 0);
  if (n < 0) {
    fprintf(stderr, "decode failed: %s\n", lua_tostring(B, -1));
    abort();
  }
  harness_run(B, "@check.lua", check, n, 0);
}

/* The same values, built by the same code in both states, compared deeply
 * (math.type included) by B's global `same`. */
static void round_trip(const char *what, const char *code) {
  char check[4096];
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code(code, 1, 0) == 0, "%s: encoded", what);
  snprintf(check, sizeof check,
           "local got = ...\nlocal want = (function() %s end)()\n"
           "assert(same(got, want), 'differs')",
           code);
  decode_check(0, check);
  CHECK(1, "%s: decoded equal in the other state", what);
}

static const char *same_code =
    "function same(a, b, seen)\n"
    "  seen = seen or {}\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    if a ~= a then return b ~= b end\n"
    "    return a == b and (a ~= 0 or 1/a == 1/b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if seen[a] then return seen[a] == b end\n"
    "  seen[a] = b\n"
    "  for k, v in pairs(a) do\n"
    "    if type(k) ~= 'table' and not same(v, b[k], seen) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do if type(k) ~= 'table' and a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n";

static void test_scalars(void) {
  long before;
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return nil, true, false, 0, -1, math.maxinteger, math.mininteger, 3, 3.0,"
                    " 1.5, -0.0, 0/0, math.huge, -math.huge, 2^63, 5e-324, '', 'a\\0b\\0',"
                    " string.rep('x\\0y', 349526), nil",
                    20, 0) == 0,
        "scalars: 20 values encoded");
  decode_check(0, "local t = table.pack(...)\n"
                  "assert(t.n == 20, t.n)\n"
                  "assert(t[1] == nil and t[2] == true and t[3] == false and t[20] == nil)\n"
                  "local ints = {0, -1, math.maxinteger, math.mininteger, 3}\n"
                  "for i = 1, 5 do\n"
                  "  assert(math.type(t[i + 3]) == 'integer' and t[i + 3] == ints[i], i)\n"
                  "end\n"
                  "for i = 9, 16 do assert(math.type(t[i]) == 'float', i) end\n"
                  "assert(t[9] == 3.0 and t[10] == 1.5)\n"
                  "assert(t[11] == 0 and 1/t[11] == -math.huge, 'minus zero')\n"
                  "assert(t[12] ~= t[12], 'nan')\n"
                  "assert(t[13] == math.huge and t[14] == -math.huge and t[15] == 2^63)\n"
                  "assert(t[16] == 5e-324)\n"
                  "assert(t[17] == '' and t[18] == 'a\\0b\\0' and #t[19] == 3 * 349526)\n");
  CHECK(1, "scalars: integers and floats kept apart, -0.0, NaN, inf, min/maxinteger, "
           "strings with zeros");
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return string.rep('x\\0y', 349526)", 1, 0) == 0, "1 MiB string encoded");
  decode_check(0, "local s = ...\n"
                  "assert(#s == 3 * 349526 and s == string.rep('x\\0y', 349526))");
  CHECK(1, "1 MiB string with zeros decoded equal (%zu bytes of buffer)", cbuf.len);

  lua_settop(A, 0);
  lua_pushinteger(A, 7);
  lua_pushliteral(A, "a string");
  lua_pushnumber(A, 2.5);
  lua_pushboolean(A, 1);
  lua_createtable(A, 0, 0);
  lua_pushinteger(A, 1);
  lua_rawseti(A, -2, 1);
  lua_pushliteral(A, "k");
  lua_pushliteral(A, "v");
  lua_rawset(A, -3);
  aio_copybuf_reset(&cbuf);
  aio_copy_encode(A, 1, 5, &cbuf, "to_thread", 1, 0); /* the buffer has grown */
  aio_copybuf_reset(&cbuf);
  before = a_allocs;
  CHECK(aio_copy_encode(A, 1, 5, &cbuf, "to_thread", 1, 0) == 0 && lua_gettop(A) == 5,
        "scalars, strings and one table encoded, stack balanced");
  CHECK(a_allocs == before, "encoding them made no Lua allocation (%ld)", a_allocs - before);
  lua_settop(A, 0);

  /* two blocks in one buffer, each decoded from its own start */
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return 'first'", 1, 0) == 0, "block 1 encoded");
  {
    size_t second = cbuf.len;
    CHECK(encode_code("return 'second', 2", 2, 0) == 0, "block 2 appended");
    decode_check(second, "local a, b = ...; assert(a == 'second' and b == 2)");
    CHECK(decode_pcall(cbuf.data, second, 0) == 1 && strcmp(lua_tostring(B, -1), "first") == 0,
          "block 1 decodes alone");
    lua_settop(B, 0);
    CHECK(decode_pcall(cbuf.data, cbuf.len, 0) < 0 &&
              strstr(lua_tostring(B, -1), "trailing bytes") != NULL,
          "two blocks at once are refused: %s", lua_tostring(B, -1));
    lua_settop(B, 0);
  }
}

static void test_tables(void) {
  round_trip("nested tables",
             "return {1, 2.0, 'three', {4, {5, {6}}}, a = {b = {c = {d = 'deep'}}},"
             " [10] = 'ten', [-1] = -1, [1.5] = 1.5, [true] = false, [''] = 'empty',"
             " ['a\\0b'] = 'zero', [math.maxinteger] = 'max'}");
  round_trip("array with holes", "return {1, nil, 3, nil, nil, 6}");
  round_trip("empty table", "return {}");
  round_trip("200 levels deep",
             "local t = {} local top = t for i = 2, 200 do t[1] = {} t = t[1] end return top");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("local s = {'shared'} return {x = s, y = s, {s}}, s", 2, 0) == 0,
        "shared subtable encoded");
  decode_check(0, "local t, s = ...\n"
                  "assert(t.x == t.y and t.x == t[1][1] and t.x == s and s[1] == 'shared')");
  CHECK(1, "a subtable met four times (also as a second argument) decodes as one table");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("local t = {name = 't'} t.self = t t[1] = t return t", 1, 0) == 0,
        "self-cycle encoded");
  decode_check(0, "local t = ... assert(t.self == t and t[1] == t and t.name == 't')");
  CHECK(1, "self-cycle decoded");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("local a, b, c = {n = 'a'}, {n = 'b'}, {n = 'c'}\n"
                    "a.next, b.next, c.next = b, c, a\n"
                    "b.back, c.back = a, b\n"
                    "return b, a",
                    2, 0) == 0,
        "cycle of three encoded");
  decode_check(0, "local b, a = ...\n"
                  "local c = b.next\n"
                  "assert(a.n == 'a' and b.n == 'b' and c.n == 'c')\n"
                  "assert(a.next == b and c.next == a and b.back == a and c.back == b)\n");
  CHECK(1, "cycle of three decoded, entered from its middle");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("local k1, k2 = {1}, {2}\n"
                    "local t = {[k1] = k1, [k2] = 'two', list = {k1, k2}}\n"
                    "t[t] = t\n"
                    "return t",
                    1, 0) == 0,
        "tables as keys encoded");
  decode_check(0, "local t = ...\n"
                  "local k1, k2 = t.list[1], t.list[2]\n"
                  "assert(k1[1] == 1 and k2[1] == 2)\n"
                  "assert(t[k1] == k1 and t[k2] == 'two' and t[t] == t)\n"
                  "local n = 0 for _ in pairs(t) do n = n + 1 end assert(n == 4, n)\n");
  CHECK(1, "tables as keys decoded, sharing the values' identity");
}

static void expect_refusal(const char *what, const char *code, int nres, int flags,
                           const char *want) {
  size_t len;
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return 'before'", 1, 0) == 0, "%s: a block already in the buffer", what);
  len = cbuf.len;
  msg[0] = 0;
  CHECK(encode_code(code, nres, flags) == -1 && strcmp(msg, want) == 0,
        "%s: refused as \"%s\" (got \"%s\")", what, want, msg);
  CHECK(cbuf.len == len, "%s: buffer length restored (%zu, was %zu)", what, cbuf.len, len);
}

static void test_refusals(void) {
  expect_refusal("userdata", "return io.stdout", 1, 0, "to_thread: argument 1: userdata");
  expect_refusal("thread", "return 1, coroutine.create(print)", 2, 0,
                 "to_thread: argument 2: thread");
  expect_refusal("function without the flag", "return function() end", 1, 0,
                 "to_thread: argument 1: function");
  expect_refusal("metatable", "return 1, 2, setmetatable({}, {})", 3, 0,
                 "to_thread: argument 3: table with a metatable");
  expect_refusal("nested .name", "return function() end, {opts = {cb = function() end}}", 2,
                 AIO_COPY_FUNCTION, "to_thread: argument 2 .opts.cb: function");
  expect_refusal("[\"a b\"]", "return {['a b'] = io.stdout}", 1, 0,
                 "to_thread: argument 1 [\"a b\"]: userdata");
  expect_refusal("reserved word", "return {x = {['end'] = io.stdout}}", 1, 0,
                 "to_thread: argument 1 .x[\"end\"]: userdata");
  expect_refusal("binary key", "return {['a\\0\"b\\\\\\n\\r\\255'] = io.stdout}", 1, 0,
                 "to_thread: argument 1 [\"a\\000\\\"b\\\\\\n\\013\\255\"]: userdata");
  expect_refusal("long key", "return {[string.rep('k ', 25)] = io.stdout}", 1, 0,
                 "to_thread: argument 1 [\"k k k k k k k k k k k k k k k k k k k k \"...]: "
                 "userdata");
  expect_refusal("[3] in the array part", "return {1, 2, io.stdout}", 1, 0,
                 "to_thread: argument 1 [3]: userdata");
  expect_refusal("[3] in the hash part", "return {[3] = io.stdout}", 1, 0,
                 "to_thread: argument 1 [3]: userdata");
  expect_refusal("[1.5]", "return {a = {[1.5] = {io.stdout}}}", 1, 0,
                 "to_thread: argument 1 .a[1.5][1]: userdata");
  expect_refusal("[2.0e20]", "return {[2^70] = io.stdout}", 1, 0,
                 "to_thread: argument 1 [1.1805916207174e+21]: userdata");
  expect_refusal("[true]", "return {[true] = {[false] = coroutine.create(print)}}", 1, 0,
                 "to_thread: argument 1 [true][false]: thread");
  expect_refusal("[table]", "return {k = {[{1, io.stdout}] = 1}}", 1, 0,
                 "to_thread: argument 1 .k[table][2]: userdata");
  expect_refusal("value under a table key", "local k = {} return {[k] = {x = io.stdout}, k}", 1, 0,
                 "to_thread: argument 1 [table].x: userdata");
  expect_refusal("bad key", "return {[io.stdout] = 1}", 1, 0,
                 "to_thread: argument 1: userdata (as a table key)");
  expect_refusal("nested bad key", "return {a = {[print] = 1}}", 1, 0,
                 "to_thread: argument 1 .a: function (as a table key)");
  expect_refusal("key with a metatable", "return {a = {[setmetatable({}, {})] = 1}}", 1, 0,
                 "to_thread: argument 1 .a: table with a metatable (as a table key)");
  expect_refusal("nested metatable", "return {x = {y = setmetatable({}, {})}}", 1, 0,
                 "to_thread: argument 1 .x.y: table with a metatable");
  expect_refusal("C function", "return print", 1, AIO_COPY_FUNCTION,
                 "to_thread: argument 1: C function");
  expect_refusal("function not first", "return 1, function() end", 2, AIO_COPY_FUNCTION,
                 "to_thread: argument 2: function");
  expect_refusal("upvalue", "local x = 1 return function() return x end", 1, AIO_COPY_FUNCTION,
                 "to_thread: argument 1: function with upvalue 'x' (only _ENV may be shared)");
  expect_refusal("_ENV and another upvalue", "local up = 1 return function() return print(up) end",
                 1, AIO_COPY_FUNCTION,
                 "to_thread: argument 1: function with upvalue 'up' (only _ENV may be shared)");
  expect_refusal("stripped upvalue names",
                 "return load(string.dump(function() return print end, true), 's', 'b')", 1,
                 AIO_COPY_FUNCTION,
                 "to_thread: argument 1: function with an upvalue of unknown name (debug info "
                 "stripped)");
  expect_refusal("201 levels deep",
                 "local t = {} local top = t for i = 2, 201 do t.x = {} t = t.x end return 1, top",
                 2, 0, "to_thread: argument 2: tables nested more than 200 deep");

  lua_settop(A, 0);
  lua_pushlightuserdata(A, &cbuf);
  aio_copybuf_reset(&cbuf);
  CHECK(aio_copy_encode(A, 1, 1, &cbuf, "to_thread", 1, 0) == -1 && lua_gettop(A) == 2 &&
            strcmp(lua_tostring(A, -1), "to_thread: argument 1: userdata") == 0 && cbuf.len == 0,
        "light userdata refused, one message pushed, nothing left in the buffer");
  lua_settop(A, 0);
}

static void test_functions(void) {
  lua_settop(B, 0);
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return function(a, b) return a + b end, 2, 3", 3, AIO_COPY_FUNCTION) == 0,
        "plain function encoded with its arguments");
  decode_check(0, "local f, a, b = ... assert(f(a, b) == 5)");
  CHECK(1, "plain function runs in the other state");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("marker = 'A'\n"
                    "return function() return marker, print == _G.print end",
                    1, AIO_COPY_FUNCTION) == 0,
        "function using globals encoded");
  decode_check(0, "marker = 'B' local f = ...\n"
                  "local m, p = f() assert(m == 'B' and p, m)");
  CHECK(1, "its globals are the decoding state's");

  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("return function(x)\n"
                    "  error('boom ' .. x)\n"
                    "end",
                    1, AIO_COPY_FUNCTION) == 0,
        "function raising encoded");
  decode_check(0, "local f = ...\n"
                  "local ok, e = pcall(f, 1)\n"
                  "assert(not ok and e == 'encoded.lua:2: boom 1', e)\n"
                  "assert(debug.getinfo(f, 'S').source == '@encoded.lua')");
  CHECK(1, "the copy keeps its debug info: errors name the file and line");

  /* the cache: one bytecode, one function per state */
  {
    int n1, n2;
    lua_newtable(B);
    n1 = decode_pcall(cbuf.data, cbuf.len, 1);
    n2 = decode_pcall(cbuf.data, cbuf.len, 1);
    CHECK(n1 == 1 && n2 == 1 && lua_rawequal(B, 2, 3), "the cache gives the same function twice");
    lua_pushnil(B);
    n1 = 0;
    while (lua_next(B, 1)) {
      n1 += lua_rawequal(B, -1, 2) && lua_type(B, -2) == LUA_TSTRING;
      lua_pop(B, 1);
    }
    CHECK(n1 == 1, "the cache holds it under its bytecode");
    n2 = decode_pcall(cbuf.data, cbuf.len, 0);
    CHECK(n2 == 1 && !lua_rawequal(B, 2, 4), "without the cache, a new function");
    lua_settop(B, 0);
  }
}

/* A block with every kind of value, a function first. */
static const char *full_code =
    "local s = {'shared', 1.5}\n"
    "local t = {1, 2, 3, s, s, name = 'x', [2.5] = true, [false] = 0, deep = {{{s}}}}\n"
    "t.self = t t[s] = 'key'\n"
    "return function(x) return x end, t, 'str\\0ing', math.mininteger, 0/0, nil, false";

static void test_truncated(void) {
  size_t i, len, failed = 0;
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code(full_code, 7, AIO_COPY_FUNCTION) == 0, "full block encoded (%zu bytes)",
        cbuf.len);
  len = cbuf.len;
  for (i = 0; i < len; i++) {
    char *part = malloc(i ? i : 1); /* exactly i bytes: a read past them is an ASan report */
    memcpy(part, cbuf.data, i);
    if (decode_pcall(part, i, 0) < 0) failed++;
    lua_settop(B, 0);
    free(part);
  }
  CHECK(failed == len, "every one of the %zu truncations raises (%zu did)", len, failed);
  CHECK(decode_pcall(cbuf.data, len, 0) == 7, "the whole block decodes");
  lua_settop(B, 0);
}

static void test_corrupt(void) {
  static const struct {
    const char *what, *bytes;
    size_t len;
    const char *error;
  } cases[] = {
      {"bad tag", "\x01\x63", 2, "bad tag"},
      {"nil key", "\x01\x06\0\0\0\0\x01\0\0\0\0\0", 12, "nil key"},
      {"reference to no table", "\x01\x07\x01", 3, "bad table reference"},
      {"function nested", "\x01\x06\x01\0\0\0\0\0\0\0\x08", 11, "misplaced function"},
      {"count larger than the data", "\x05\x00", 2, "truncated"},
      {"endless varint", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11, "bad number"},
  };
  size_t i;
  uint32_t seed = 12345;
  int ok = 0, raised = 0, k;
  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    int n = decode_pcall(cases[i].bytes, cases[i].len, 0);
    CHECK(n < 0 && strstr(lua_tostring(B, -1), cases[i].error) != NULL, "%s: %s", cases[i].what,
          n < 0 ? lua_tostring(B, -1) : "decoded");
    lua_settop(B, 0);
  }

  /* No function in this block: flipped bytecode is beyond what lua_load
   * checks. Its layout follows pairs() order, which moves with Lua's random
   * string hash seed, so the counts below differ from run to run. */
  aio_copybuf_reset(&cbuf);
  CHECK(encode_code("local s = {'shared', 1.5}\n"
                    "local t = {1, 2, s, s, name = 'x', [2.5] = true, deep = {{{s}}}}\n"
                    "t.self = t t[s] = 'key'\n"
                    "return t, 'str\\0ing', math.mininteger, 0/0, nil, false, {[-1] = -1}",
                    7, 0) == 0,
        "block for byte flips encoded (%zu bytes)", cbuf.len);
  for (k = 0; k < 2000; k++) {
    char *copy = malloc(cbuf.len);
    int flips = 1 + k % 3, f;
    memcpy(copy, cbuf.data, cbuf.len);
    for (f = 0; f < flips; f++) {
      seed = seed * 1103515245u + 12345u;
      copy[(seed >> 8) % cbuf.len] ^= (char)(1u << ((seed >> 4) & 7));
    }
    if (decode_pcall(copy, cbuf.len, 0) < 0)
      raised++;
    else
      ok++;
    lua_settop(B, 0);
    free(copy);
  }
  CHECK(ok + raised == 2000, "2000 blocks with flipped bits: %d decoded, %d raised, no crash", ok,
        raised);
}

static void test_rounds(void) {
  int i, top = lua_gettop(A);
  double t0 = harness_now();
  harness_run(A, "@mid.lua",
              "local s = {}\n"
              "local t = {shared = s, again = s, list = {}}\n"
              "for i = 1, 50 do t.list[i] = i * 1.5 end\n"
              "for i = 1, 20 do t['key' .. i] = string.rep('v', i) end\n"
              "t.sub = {a = 1, b = {c = 'd'}}\n"
              "return t",
              0, 1);
  for (i = 0; i < 10000; i++) {
    aio_copybuf_reset(&cbuf);
    if (aio_copy_encode(A, -1, 1, &cbuf, "to_thread", 1, 0) != 0) break;
    if (decode_pcall(cbuf.data, cbuf.len, 0) != 1) break;
    if (i == 9999)
      harness_run(B, "@mid_check.lua",
                  "local t = ...\n"
                  "assert(t.shared == t.again and #t.list == 50 and t.key20 ==\n"
                  "       string.rep('v', 20) and t.sub.b.c == 'd')",
                  1, 0);
    lua_settop(B, 0);
  }
  CHECK(i == 10000 && lua_gettop(A) == top + 1,
        "10,000 rounds of a mid-size table (%zu bytes) in %.3f s", cbuf.len, harness_now() - t0);
  lua_settop(A, top);
}

int main(void) {
  alarm(HARNESS_ALARM_SECONDS);
  A = lua_newstate(counting_alloc, NULL);
  B = luaL_newstate();
  luaL_openlibs(A);
  luaL_openlibs(B);
  harness_run(B, "same", same_code, 0, 0);
  test_scalars();
  test_tables();
  test_refusals();
  test_functions();
  test_truncated();
  test_corrupt();
  test_rounds();
  aio_copybuf_free(&cbuf);
  lua_close(A);
  lua_close(B);
  printf("copy_values: all checks passed\n");
  return 0;
}
