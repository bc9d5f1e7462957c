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
#include <string.h>

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

/*
** core.json_object(text) -> table | nil: the common shapes of an API answer
** decoded in one pass, straight into tables of their exact size, with what
** json_tidy would give for cjson's decode of the same text. It takes objects
** and arrays of strings without escapes or control bytes, integers of at most
** 15 digits, true, false, and null as an object member's value (dropped);
** anything else (fractions, exponents, escapes, null in an array, nesting
** past 64, text after the object, invalid JSON) returns nil, and the caller
** decodes with cjson instead. Values wait on the Lua stack until their
** container's size is known, so no table ever grows.
*/
typedef struct {
  const char *p, *end;
} rv_scan;

#define FAST_MAX_DEPTH 64

static int fast_value(lua_State *L, rv_scan *s, int depth);

static void skip_space(rv_scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

/* a string without escapes or control bytes: push it */
static int fast_string(lua_State *L, rv_scan *s) {
  const char *start = ++s->p;   /* past the opening quote */
  while (s->p < s->end) {
    unsigned char c = (unsigned char)*s->p;
    if (c == '"') {
      lua_pushlstring(L, start, (size_t)(s->p - start));
      s->p++;
      return 1;
    }
    if (c == '\\' || c < 0x20) return 0;
    s->p++;
  }
  return 0;
}

/* -?(0|[1-9][0-9]*) of at most 15 digits, not followed by '.', 'e' or 'E' */
static int fast_integer(lua_State *L, rv_scan *s) {
  int neg = 0, digits = 0;
  lua_Integer v = 0;
  if (*s->p == '-') {
    neg = 1;
    s->p++;
  }
  if (s->p >= s->end || *s->p < '0' || *s->p > '9') return 0;
  if (*s->p == '0' && s->p + 1 < s->end && s->p[1] >= '0' && s->p[1] <= '9') return 0;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
    if (++digits > 15) return 0;
    v = v * 10 + (*s->p - '0');
    s->p++;
  }
  if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return 0;
  lua_pushinteger(L, neg ? -v : v);
  return 1;
}

static int fast_literal(rv_scan *s, const char *word, size_t n) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return 0;
  s->p += n;
  return 1;
}

/* members pushed as key, value pairs above `base` (m of them, n not null);
   the table, sized for n, replaces them */
static int fast_object(lua_State *L, rv_scan *s, int depth) {
  int base = lua_gettop(L), n = 0, m = 0, i, t;
  s->p++;   /* '{' */
  skip_space(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    lua_createtable(L, 0, 0);
    return 1;
  }
  for (;;) {
    if (!lua_checkstack(L, 4)) return 0;
    skip_space(s);
    if (s->p >= s->end || *s->p != '"' || !fast_string(L, s)) return 0;
    skip_space(s);
    if (s->p >= s->end || *s->p != ':') return 0;
    s->p++;
    skip_space(s);
    if (s->p < s->end && *s->p == 'n') {
      /* a null member is dropped: nil as its value removes an earlier
         member of the same name, as cjson's last-wins and json_tidy do */
      if (!fast_literal(s, "null", 4)) return 0;
      lua_pushnil(L);
    } else {
      if (!fast_value(L, s, depth + 1)) return 0;
      n++;
    }
    m++;
    skip_space(s);
    if (s->p >= s->end) return 0;
    if (*s->p == '}') break;
    if (*s->p != ',') return 0;
    s->p++;
  }
  s->p++;
  if (!lua_checkstack(L, 3)) return 0;
  lua_createtable(L, 0, n);
  t = lua_gettop(L);
  for (i = 0; i < m; i++) {   /* in order: a repeated key keeps its last value, as in cjson */
    lua_pushvalue(L, base + 2 * i + 1);
    lua_pushvalue(L, base + 2 * i + 2);
    lua_rawset(L, t);
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 1;
}

static int fast_array(lua_State *L, rv_scan *s, int depth) {
  int base = lua_gettop(L), n = 0, i;
  s->p++;   /* '[' */
  skip_space(s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    lua_createtable(L, 0, 0);
    return 1;
  }
  for (;;) {
    if (!lua_checkstack(L, 3)) return 0;
    skip_space(s);
    if (!fast_value(L, s, depth + 1)) return 0;
    n++;
    skip_space(s);
    if (s->p >= s->end) return 0;
    if (*s->p == ']') break;
    if (*s->p != ',') return 0;
    s->p++;
  }
  s->p++;
  lua_createtable(L, n, 0);
  lua_insert(L, base + 1);
  for (i = n; i >= 1; i--) lua_rawseti(L, base + 1, i);
  return 1;
}

static int fast_value(lua_State *L, rv_scan *s, int depth) {
  if (depth > FAST_MAX_DEPTH || s->p >= s->end) return 0;
  switch (*s->p) {
    case '{': return fast_object(L, s, depth);
    case '[': return fast_array(L, s, depth);
    case '"': return fast_string(L, s);
    case 't':
      if (!fast_literal(s, "true", 4)) return 0;
      lua_pushboolean(L, 1);
      return 1;
    case 'f':
      if (!fast_literal(s, "false", 5)) return 0;
      lua_pushboolean(L, 0);
      return 1;
    default:
      return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && fast_integer(L, s);
  }
}

static int json_object(lua_State *L) {
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  rv_scan s;
  s.p = text;
  s.end = text + n;
  lua_settop(L, 1);
  skip_space(&s);
  if (s.p < s.end && *s.p == '{' && fast_object(L, &s, 1)) {
    skip_space(&s);
    if (s.p == s.end) return 1;
  }
  lua_settop(L, 1);
  lua_pushnil(L);
  return 1;
}

int rv_tidy_open(lua_State *L) {
  lua_pushcfunction(L, json_tidy);
  lua_setfield(L, -2, "json_tidy");
  lua_pushcfunction(L, json_object);
  lua_setfield(L, -2, "json_object");
  return 0;
}
