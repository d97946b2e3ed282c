-- busted's entry point, run by an explicit interpreter whatever the `busted`
-- command is (Debian's script starts with `#!/usr/bin/env lua`, which may be
-- Lua 5.1; a LuaRocks-installed one is a shell wrapper):
--   lua5.4 spec/support/busted_main.lua --ignore-lua [busted args]
require "busted.runner"({ standalone = false })
