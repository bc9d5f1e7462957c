/*
** core.c — luaopen_rivya_core: registers the C core's functions, nothing else.
*/
#include <curl/curl.h>

#include "rivya.h"

LUALIB_API int luaopen_rivya_core(lua_State *L);

static const luaL_Reg core_funcs[] = {
  {"sniff", rv_sniff},
  {"suggest", rv_suggest_lua},
  {NULL, NULL}
};

LUALIB_API int luaopen_rivya_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  rv_error_open(L);
  rv_catalog_open(L);
  rv_http_open(L);
  rv_file_open(L);
  rv_tidy_open(L);
  lua_pushliteral(L, RV_VERSION);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  return 1;
}
