/*
** core.c — luaopen_rivya_core: registers the C core's functions, nothing else.
*/
#include <curl/curl.h>

#include "rivya.h"
#include "sha256.h"

LUALIB_API int luaopen_rivya_core(lua_State *L);

/* core.sha256(s) -> the SHA-256 of s as 64 lowercase hex digits */
static int core_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[65];
  rv_sha256_hex((const unsigned char *)s, n, hex);
  lua_pushlstring(L, hex, 64);
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"sniff", rv_sniff},
  {"suggest", rv_suggest_lua},
  {"sha256", core_sha256},
  {NULL, NULL}
};

LUALIB_API int luaopen_rivya_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  rv_error_open(L);
  rv_catalog_open(L);
  rv_http_open(L);
  rv_file_open(L);
  rv_tidy_open(L);
  rv_term_open(L);
  rv_db_open(L);
  lua_pushliteral(L, RV_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  return 1;
}
