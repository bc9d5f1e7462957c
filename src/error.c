/*
** error.c — rivya's one error type: a table with metatable "rivya.Error".
** Fields: code, message and, when known, field, status, request_id,
** retry_after, task. tostring(err) is one readable line.
*/
#include <stdio.h>

#include "rivya.h"

/*
** Push a new error table. `code` is a stable string (the API's error.code or
** one of rivya's own); `field` may be NULL; the message is formatted with
** printf rules (unlike lua_pushfstring, so %zu and %.3f work).
*/
static void push_verror(lua_State *L, const char *code, const char *field,
                        const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  if (field != NULL) {
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
  }
  luaL_setmetatable(L, RV_ERROR_MT);
}

void rv_error_push(lua_State *L, const char *code, const char *field,
                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_verror(L, code, field, fmt, ap);
  va_end(ap);
}

int rv_error_return(lua_State *L, const char *code, const char *field,
                    const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  push_verror(L, code, field, fmt, ap);
  va_end(ap);
  return 2;
}

/* add ", name=value" to the line when the field is present */
static void add_part(lua_State *L, luaL_Buffer *b, int t, const char *name,
                     int *first) {
  if (lua_getfield(L, t, name) != LUA_TNIL) {
    const char *s = luaL_tolstring(L, -1, NULL);
    lua_pushfstring(L, "%s%s=%s", *first ? " (" : ", ", name, s);
    lua_remove(L, -2);   /* the tolstring copy */
    lua_remove(L, -2);   /* the raw value */
    luaL_addvalue(b);
    *first = 0;
  } else {
    lua_pop(L, 1);
  }
}

/*
** Push the string at `idx` with control characters escaped (\n, \r, \t,
** \xHH), so that what a server put in a message cannot break the line.
*/
static void push_one_line(lua_State *L, int idx) {
  size_t len, i;
  const char *s = lua_tolstring(L, idx, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c >= 0x20 && c != 0x7F) {
      luaL_addchar(&b, (char)c);
      continue;
    }
    if (c == '\n') snprintf(esc, sizeof esc, "\\n");
    else if (c == '\r') snprintf(esc, sizeof esc, "\\r");
    else if (c == '\t') snprintf(esc, sizeof esc, "\\t");
    else snprintf(esc, sizeof esc, "\\x%02X", c);
    luaL_addstring(&b, esc);
  }
  luaL_pushresult(&b);
}

/*
** __tostring: "rivya: <code>: <message> (field=..., status=..., request_id=...)".
** Only fields the client itself filled are shown; none can hold the API key.
** Always one line: control characters from the server are escaped.
** While the buffer is open, a value is pushed only right before
** luaL_addvalue: a code or message longer than the buffer's first block
** must find the buffer's box at the top when it grows.
*/
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  int first = 1, has_message;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "message");
  has_message = lua_isstring(L, -1);
  lua_pop(L, 1);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "rivya: ");
  lua_getfield(L, 1, "code");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "error");
  }
  luaL_addvalue(&b);
  if (has_message) {
    luaL_addstring(&b, ": ");
    lua_getfield(L, 1, "message");
    luaL_addvalue(&b);
  }
  add_part(L, &b, 1, "field", &first);
  add_part(L, &b, 1, "status", &first);
  add_part(L, &b, 1, "request_id", &first);
  add_part(L, &b, 1, "retry_after", &first);
  if (!first) luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  push_one_line(L, -1);
  return 1;
}

/* core.error(t): give a Lua-built table the error metatable; returns t */
static int error_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "code");
  luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1, "error needs a string code");
  lua_pop(L, 1);
  lua_settop(L, 1);
  luaL_setmetatable(L, RV_ERROR_MT);
  return 1;
}

/* core.is_error(v): true when v carries the error metatable */
static int error_is(lua_State *L) {
  int yes = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, RV_ERROR_MT);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

static const luaL_Reg error_meta[] = {
  {"__tostring", error_tostring},
  {NULL, NULL}
};

int rv_error_open(lua_State *L) {
  rv_newmetatable(L, RV_ERROR_MT, NULL, error_meta);   /* a table type: no methods */
  lua_pop(L, 1);
  lua_pushcfunction(L, error_new);
  lua_setfield(L, -2, "error");
  lua_pushcfunction(L, error_is);
  lua_setfield(L, -2, "is_error");
  return 0;
}
