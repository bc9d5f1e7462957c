rockspec_format = "3.0"
package = "rivya"
version = "scm-1"
source = {
  url = "git+https://github.com/rivya/rivya-lua.git",
}
description = {
  summary = "Rivya Public API v1 (AI video generation) for LuaJIT and Lua 5.1-5.4, with a libcurl C core",
  detailed = [[
    rivya drives the Rivya Public API v1 (wan-2-7-video and friends) from Lua:
    offline validation from schemas as data, idempotent creates with one retry
    policy, polling, safe downloads, coroutine concurrency, and rivya-sim, a
    stateful local simulator of the API.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1",
}
-- libcurl, libmicrohttpd and jansson are found by the Makefile through pkg-config
build = {
  type = "make",
  build_target = "build",
  -- LUA (the interpreter's path) picks the headers' version, the build
  -- folder and the interpreter bin/rivya is installed for
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA = "$(LUA)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_target = "install",
  install_variables = {
    LUA = "$(LUA)",
    PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
test = {
  type = "busted",
}
