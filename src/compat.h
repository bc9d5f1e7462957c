/*
** compat.h — the Lua 5.4 C API rivya uses, on Lua 5.1 (and LuaJIT 2.1),
** 5.2 and 5.3. Include it after lua.h and lauxlib.h; on 5.4 it adds nothing.
**
** What differs between versions is made to behave as 5.4 does, or fails
** loudly; nothing is silently different:
** - Integers. 5.1 and 5.2 have no integer subtype: a number is a double. There
**   an "integer" is a whole number within +-(2^53 - 1) (RV_MAXINTEGER), the range a
**   double holds exactly: lua_isinteger, lua_tointegerx and lua_tointeger
**   follow 5.3 (10.0 is an integer, 10.5 is not and converts to 0 with
**   isnum = 0, where 5.1/5.2 would truncate), luaL_checkinteger and
**   luaL_optinteger raise "number has no integer representation" for 10.5 as
**   5.3 does, and a whole number beyond 2^53 is no integer (it may not be the
**   one that was written; 2^53 + 1 reads as 2^53). lua_pushfstring, lua_pushvfstring and luaL_error
**   take 5.3's "%I" (a LUAI_UACINT).
** - lua_getfield, lua_gettable, lua_rawget and lua_rawgeti return the type
**   of the value pushed (5.3).
** - lua_resume takes 5.4's (L, from, nargs, &nresults).
** - Uservalues: lua_newuserdatauv and lua_[sg]etiuservalue. 5.1 and 5.2
**   keep them in a table set as the userdata's environment/uservalue; 5.3
**   has one plain uservalue (n must be 1: more raise).
** - luaL_setfuncs, luaL_newlib, luaL_setmetatable, luaL_tolstring (with
**   __name), luaL_len (with __len), luaL_typeerror, lua_rawlen,
**   lua_absindex, lua_stringtonumber, lua_numbertointeger, LUA_OK.
** - __close exists from 5.4 on only: RV_HAS_CLOSE says whether it does.
** All helpers are static inline and named rv_compat_*; the 5.4 names are
** macros over them, so the C files are written against 5.4 alone.
*/
#ifndef RIVYA_COMPAT_H
#define RIVYA_COMPAT_H

#include <stdio.h>
#include <string.h>
#include <stdarg.h>

#include "lua.h"
#include "lauxlib.h"

#define RV_HAS_CLOSE (LUA_VERSION_NUM >= 504)
#define RV_HAS_INTEGERS (LUA_VERSION_NUM >= 503)

/* luaL_typeerror (5.4): "T expected, got U", U from __name when set */
#if LUA_VERSION_NUM < 504
static inline int rv_compat_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") && lua_type(L, -1) == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return luaL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}
#define luaL_typeerror rv_compat_typeerror
#endif

/* ---- 5.1 (PUC; LuaJIT 2.1 has these) ------------------------------------ */
#if LUA_VERSION_NUM == 501 && !defined(LUA_OK)
#define LUA_OK 0

static inline void rv_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs rv_compat_setfuncs

#define luaL_setmetatable(L, tname) \
  (luaL_getmetatable((L), (tname)), lua_setmetatable((L), -2))
#endif

#if LUA_VERSION_NUM == 501
#ifndef luaL_newlib
#define luaL_newlib(L, l) \
  (lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1)), luaL_setfuncs((L), (l), 0))
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define lua_absindex(L, i) \
  ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)

/* luaL_len: the length with __len, as 5.2 (5.1's # ignores it on tables) */
static inline lua_Integer rv_compat_len(lua_State *L, int i) {
  lua_Integer n;
  if (luaL_callmeta(L, i, "__len")) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "object length is not a number");
    n = (lua_Integer)lua_tonumber(L, -1);
    lua_pop(L, 1);
    return n;
  }
  return (lua_Integer)lua_objlen(L, i);
}
#define luaL_len rv_compat_len

/* luaL_tolstring as 5.4: __tostring, then __name, then the plain form */
static inline const char *rv_compat_tolstring(lua_State *L, int i, size_t *len) {
  i = lua_absindex(L, i);
  if (luaL_callmeta(L, i, "__tostring")) {
    if (!lua_isstring(L, -1)) luaL_error(L, "'__tostring' must return a string");
  } else {
    switch (lua_type(L, i)) {
      case LUA_TNUMBER:
      case LUA_TSTRING:
        lua_pushvalue(L, i);
        lua_tolstring(L, -1, NULL);    /* a number becomes its string */
        break;
      case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
        break;
      case LUA_TNIL:
        lua_pushliteral(L, "nil");
        break;
      default: {
        const char *kind = luaL_typename(L, i);
        if (luaL_getmetafield(L, i, "__name")) {
          if (lua_type(L, -1) == LUA_TSTRING) kind = lua_tostring(L, -1);
          lua_pushfstring(L, "%s: %p", kind, lua_topointer(L, i));
          lua_remove(L, -2);
        } else {
          lua_pushfstring(L, "%s: %p", kind, lua_topointer(L, i));
        }
        break;
      }
    }
  }
  return lua_tolstring(L, -1, len);
}
#define luaL_tolstring rv_compat_tolstring
#endif

/* ---- 5.1 and 5.2: no integer subtype ------------------------------------ */
#if LUA_VERSION_NUM < 503
#define LUAI_UACINT long long
#define RV_MAXINTEGER 9007199254740991LL        /* 2^53 - 1 */
#define LUA_MAXINTEGER RV_MAXINTEGER
#define LUA_MININTEGER (-RV_MAXINTEGER)

#define lua_numbertointeger(n, p) \
  ((n) >= -9007199254740991.0 && (n) <= 9007199254740991.0 && \
   (*(p) = (lua_Integer)(n), 1))

/* 1 when the value at i is a number with a whole value within +-2^53 */
static inline int rv_compat_isinteger(lua_State *L, int i) {
  lua_Number x;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  x = lua_tonumber(L, i);
  return x >= -9007199254740991.0 && x <= 9007199254740991.0 &&
         (lua_Number)(lua_Integer)x == x;
}
#define lua_isinteger rv_compat_isinteger

/* 5.3's lua_tointegerx: numbers and numeric strings with a whole value */
static inline lua_Integer rv_compat_tointegerx(lua_State *L, int i, int *isnum) {
  int ok = 0;
  lua_Integer n = 0;
  if (lua_isnumber(L, i)) {
    lua_Number x = lua_tonumber(L, i);
    if (x >= -9007199254740991.0 && x <= 9007199254740991.0 &&
        (lua_Number)(lua_Integer)x == x) {
      n = (lua_Integer)x;
      ok = 1;
    }
  }
  if (isnum != NULL) *isnum = ok;
  return n;
}
#undef lua_tointeger
#define lua_tointegerx rv_compat_tointegerx
#define lua_tointeger(L, i) rv_compat_tointegerx((L), (i), NULL)

static inline lua_Integer rv_compat_checkinteger(lua_State *L, int arg) {
  int ok;
  lua_Integer n = rv_compat_tointegerx(L, arg, &ok);
  if (!ok) {
    if (lua_isnumber(L, arg)) luaL_argerror(L, arg, "number has no integer representation");
    else luaL_typeerror(L, arg, "number");
  }
  return n;
}
#define luaL_checkinteger rv_compat_checkinteger
#undef luaL_optinteger
#define luaL_optinteger(L, arg, def) \
  (lua_isnoneornil((L), (arg)) ? (lua_Integer)(def) : rv_compat_checkinteger((L), (arg)))

/* 5.3's lua_stringtonumber: pushes the number, returns strlen + 1, or 0 */
static inline size_t rv_compat_stringtonumber(lua_State *L, const char *s) {
  lua_pushstring(L, s);
  if (lua_type(L, -1) == LUA_TSTRING && lua_isnumber(L, -1)) {
    lua_Number x = lua_tonumber(L, -1);
    lua_pop(L, 1);
    lua_pushnumber(L, x);
    return strlen(s) + 1;
  }
  lua_pop(L, 1);
  return 0;
}
#define lua_stringtonumber rv_compat_stringtonumber

/* lua_pushvfstring with 5.3's conversions, "%I" included */
static inline const char *rv_compat_pushvfstring(lua_State *L, const char *fmt,
                                                 va_list ap) {
  luaL_Buffer b;
  char num[64];
  const char *e;
  luaL_buffinit(L, &b);
  while ((e = strchr(fmt, '%')) != NULL) {
    luaL_addlstring(&b, fmt, (size_t)(e - fmt));
    switch (e[1]) {
      case 's': {
        const char *s = va_arg(ap, const char *);
        luaL_addstring(&b, s != NULL ? s : "(null)");
        break;
      }
      case 'c':
        luaL_addchar(&b, (char)va_arg(ap, int));
        break;
      case 'd':
        snprintf(num, sizeof num, "%d", va_arg(ap, int));
        luaL_addstring(&b, num);
        break;
      case 'I':
        snprintf(num, sizeof num, "%lld", va_arg(ap, LUAI_UACINT));
        luaL_addstring(&b, num);
        break;
      case 'f':
        snprintf(num, sizeof num, LUA_NUMBER_FMT, (double)va_arg(ap, lua_Number));
        luaL_addstring(&b, num);
        break;
      case 'p':
        snprintf(num, sizeof num, "%p", va_arg(ap, void *));
        luaL_addstring(&b, num);
        break;
      case '%':
        luaL_addchar(&b, '%');
        break;
      default:
        luaL_pushresult(&b);
        return luaL_error(L, "invalid option '%%%c' to 'lua_pushfstring'", e[1]), (const char *)NULL;
    }
    fmt = e + 2;
  }
  luaL_addstring(&b, fmt);
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

static inline const char *rv_compat_pushfstring(lua_State *L, const char *fmt, ...) {
  const char *s;
  va_list ap;
  va_start(ap, fmt);
  s = rv_compat_pushvfstring(L, fmt, ap);
  va_end(ap);
  return s;
}

static inline int rv_compat_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  luaL_where(L, 1);
  va_start(ap, fmt);
  rv_compat_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}
#define lua_pushvfstring rv_compat_pushvfstring
#define lua_pushfstring rv_compat_pushfstring
#define luaL_error rv_compat_error

/* the getters return the type pushed, as in 5.3 */
static inline int rv_compat_getfield(lua_State *L, int i, const char *k) {
  (lua_getfield)(L, i, k);
  return lua_type(L, -1);
}
static inline int rv_compat_gettable(lua_State *L, int i) {
  (lua_gettable)(L, i);
  return lua_type(L, -1);
}
static inline int rv_compat_rawget(lua_State *L, int i) {
  (lua_rawget)(L, i);
  return lua_type(L, -1);
}
static inline int rv_compat_rawgeti(lua_State *L, int i, lua_Integer n) {
  (lua_rawgeti)(L, i, (int)n);
  return lua_type(L, -1);
}
#define lua_getfield rv_compat_getfield
#define lua_gettable rv_compat_gettable
#define lua_rawget rv_compat_rawget
#define lua_rawgeti rv_compat_rawgeti

/* uservalues live in a table: the environment (5.1) or uservalue (5.2) */
#if LUA_VERSION_NUM == 501
#define rv_compat_getuv(L, i) lua_getfenv((L), (i))
#define rv_compat_setuv(L, i) lua_setfenv((L), (i))
#else
#define rv_compat_getuv(L, i) lua_getuservalue((L), (i))
#define rv_compat_setuv(L, i) lua_setuservalue((L), (i))
#endif

static inline void *rv_compat_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    rv_compat_setuv(L, -2);
  }
  return p;
}

/* pops the value into uservalue n; 0 when the userdata has no such slot */
static inline int rv_compat_setiuservalue(lua_State *L, int i, int n) {
  i = lua_absindex(L, i);
  rv_compat_getuv(L, i);
  if (lua_type(L, -1) != LUA_TTABLE || n < 1) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}

static inline int rv_compat_getiuservalue(lua_State *L, int i, int n) {
  rv_compat_getuv(L, i);
  if (lua_type(L, -1) != LUA_TTABLE || n < 1) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNONE;
  }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
#define lua_newuserdatauv rv_compat_newuserdatauv
#define lua_setiuservalue rv_compat_setiuservalue
#define lua_getiuservalue rv_compat_getiuservalue
#endif

/* ---- 5.3: one uservalue of any type ------------------------------------- */
#if LUA_VERSION_NUM == 503
static inline void *rv_compat_newuserdatauv(lua_State *L, size_t size, int nuv) {
  if (nuv > 1) luaL_error(L, "rivya compat: Lua 5.3 userdata hold 1 uservalue, %d asked", nuv);
  return lua_newuserdata(L, size);
}
static inline int rv_compat_setiuservalue(lua_State *L, int i, int n) {
  if (n != 1) {
    lua_pop(L, 1);
    return 0;
  }
  lua_setuservalue(L, i);
  return 1;
}
static inline int rv_compat_getiuservalue(lua_State *L, int i, int n) {
  if (n != 1) {
    lua_pushnil(L);
    return LUA_TNONE;
  }
  return lua_getuservalue(L, i);
}
#define lua_newuserdatauv rv_compat_newuserdatauv
#define lua_setiuservalue rv_compat_setiuservalue
#define lua_getiuservalue rv_compat_getiuservalue
#endif

/* ---- before 5.4 ---------------------------------------------------------- */
#if LUA_VERSION_NUM < 504

/* lua_resume(L, from, nargs, &nres): the values on the thread's stack */
static inline int rv_compat_resume(lua_State *L, lua_State *from, int nargs, int *nres) {
#if LUA_VERSION_NUM == 501
  int status = (lua_resume)(L, nargs);
  (void)from;
#else
  int status = (lua_resume)(L, from, nargs);
#endif
  *nres = lua_gettop(L);
  return status;
}
#define lua_resume rv_compat_resume
#endif

#endif
