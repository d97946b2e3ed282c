/* StreamReader (src/reader.c) fed random chunks and asked for random reads,
 * under the Lua driver fuzz/streamreader.lua: bytes fed must come out of the
 * reads exactly once, in order, whatever is cancelled. */
#define FUZZ_DRIVER "streamreader"
#include "lua_driver.h"
