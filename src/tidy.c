/*
** tidy.c — core.json_tidy(v, null): a value decoded by lua-cjson made
** Lua-shaped in one pass. Each table is rebuilt at its exact size (cjson
** grows tables by doubling, and a dropped null leaves its slot behind), JSON
** null (`null`, cjson.null) is dropped, and whole floats within 2^53 become
** integers (cjson decodes every number as a float). With 10,000 tasks in
** flight the exact sizes matter: a decoded task shrinks from 16 hash nodes
** to 8.
*/
#include <limits.h>

#include "rivya.h"

#define TIDY_MAX_DEPTH 200      /* cjson stops at 64: this is a safety net */
#define INT_LIMIT 9007199254740992.0    /* 2^53 */

/* push the tidy form of the value at stack index `v` */
static void tidy_value(lua_State *L, int v, int null, int depth);

static void push_number(lua_State *L, int v) {
  if (lua_isinteger(L, v)) {
    lua_pushvalue(L, v);
    return;
  }
  lua_Number x = lua_tonumber(L, v);
  lua_Integer i;
  if (x > -INT_LIMIT && x < INT_LIMIT && lua_numbertointeger(x, &i) && (lua_Number)i == x)
    lua_pushinteger(L, i);
  else
    lua_pushvalue(L, v);
}

static void tidy_table(lua_State *L, int t, int null, int depth) {
  if (depth > TIDY_MAX_DEPTH) luaL_error(L, "json_tidy: nested deeper than %d", TIDY_MAX_DEPTH);
  luaL_checkstack(L, 6, "json_tidy");
  /* count what is kept: the 1..n run of integer keys goes to the array part */
  lua_Integer len = (lua_Integer)lua_rawlen(L, t);
  int narr = 0, nhash = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (!lua_rawequal(L, -1, null)) {
      lua_Integer k;
      int isnum;
      k = lua_tointegerx(L, -2, &isnum);
      if (isnum && lua_type(L, -2) == LUA_TNUMBER && k >= 1 && k <= len && narr < INT_MAX) narr++;
      else if (nhash < INT_MAX) nhash++;
    }
    lua_pop(L, 1);
  }
  lua_createtable(L, narr, nhash);
  int out = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (!lua_rawequal(L, -1, null)) {
      lua_pushvalue(L, -2);                     /* key */
      tidy_value(L, lua_gettop(L) - 1, null, depth + 1);
      lua_rawset(L, out);
    }
    lua_pop(L, 1);
  }
}

static void tidy_value(lua_State *L, int v, int null, int depth) {
  switch (lua_type(L, v)) {
    case LUA_TTABLE: tidy_table(L, v, null, depth); break;
    case LUA_TNUMBER: push_number(L, v); break;
    default: lua_pushvalue(L, v); break;
  }
}

/* core.json_tidy(v, null) -> the tidy copy of v (nil when v is null) */
static int json_tidy(lua_State *L) {
  lua_settop(L, 2);
  if (lua_rawequal(L, 1, 2)) {
    lua_pushnil(L);
    return 1;
  }
  tidy_value(L, 1, 2, 0);
  return 1;
}

int rv_tidy_open(lua_State *L) {
  lua_pushcfunction(L, json_tidy);
  lua_setfield(L, -2, "json_tidy");
  return 0;
}
