/*
** text.c — the text phase of validation: UTF-8 checks, values quoted for
** messages, field paths, and the one-line validation_failed errors.
**
** Checks run inside lua_pcall (rv_protect): rv_fail raises the error table
** and the public functions turn it into `nil, err`. Nothing is malloc'ed on
** the way, so the longjmp leaks nothing.
*/
#include <stdio.h>
#include <string.h>

#include "rivya.h"

#define SHOW_BYTES 40      /* how much of a string a message quotes */

/* ---------------------------------------------------------------------- */
/* UTF-8                                                                   */
/* ---------------------------------------------------------------------- */

/*
** Length of the UTF-8 sequence at `s` (with `len` bytes left), or 0 when the
** bytes there are not valid UTF-8: a stray continuation byte, an overlong
** form, a surrogate, a code point above U+10FFFF or a truncated sequence.
*/
size_t rv_utf8_len(const unsigned char *s, size_t len) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  size_t n, i;
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) {
    n = 2;
  } else if (c < 0xF0) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;          /* overlong */
    else if (c == 0xED) hi = 0x9F;     /* surrogates */
  } else if (c < 0xF5) {
    n = 4;
    if (c == 0xF0) lo = 0x90;          /* overlong */
    else if (c == 0xF4) hi = 0x8F;     /* above U+10FFFF */
  } else {
    return 0;
  }
  if (len < n || s[1] < lo || s[1] > hi) return 0;
  for (i = 2; i < n; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return n;
}

/*
** Count the code points of `s` (`len` bytes). Returns 0 when `s` is valid
** UTF-8, else the 1-based offset of the first bad byte; `count` receives the
** code points seen.
*/
size_t rv_utf8_check(const char *s, size_t len, size_t *count) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, n;
  *count = 0;
  while (i < len) {
    n = rv_utf8_len(p + i, len - i);
    if (n == 0) return i + 1;
    i += n;
    (*count)++;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Describing values for messages: one line, short, never a metamethod     */
/* ---------------------------------------------------------------------- */

/*
** Push `s` (`len` bytes) quoted, with control characters, invalid bytes,
** quotes and line separators escaped, cut after SHOW_BYTES bytes.
*/
const char *rv_push_quoted(lua_State *L, const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  luaL_Buffer b;
  size_t i = 0, n;
  char esc[8];
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  while (i < len && i < SHOW_BYTES) {
    n = rv_utf8_len(p + i, len - i);
    if (n == 1 && p[i] >= 0x20 && p[i] < 0x7F) {
      if (p[i] == '"' || p[i] == '\\') luaL_addchar(&b, '\\');
      luaL_addchar(&b, (char)p[i]);
    } else if (n == 1 && (p[i] == '\n' || p[i] == '\t' || p[i] == '\r')) {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, p[i] == '\n' ? 'n' : p[i] == '\t' ? 't' : 'r');
    } else if (n == 0 || n == 1) {
      snprintf(esc, sizeof esc, "\\x%02X", p[i]);
      luaL_addstring(&b, esc);
      n = 1;
    } else if ((n == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0) ||
               (n == 3 && p[i] == 0xE2 && p[i + 1] == 0x80 &&
                (p[i + 2] == 0xA8 || p[i + 2] == 0xA9))) {
      /* C1 controls and U+2028/U+2029 break lines in some viewers */
      unsigned cp = n == 2 ? (unsigned)(p[i + 1] & 0x3F) | 0x80u
                           : 0x2000u | (unsigned)(p[i + 2] & 0x3F);
      snprintf(esc, sizeof esc, "\\u%04X", cp);
      luaL_addstring(&b, esc);
    } else {
      luaL_addlstring(&b, s + i, n);
    }
    i += n;
  }
  luaL_addchar(&b, '"');
  if (i < len) {
    char more[48];
    snprintf(more, sizeof more, "... (%lu bytes)", (unsigned long)len);
    luaL_addstring(&b, more);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/*
** Push a short description of the value at `idx`: numbers as Lua writes
** them, strings quoted, other types by name ("a table"), nil as "nothing".
*/
const char *rv_describe(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
      lua_pushliteral(L, "nothing");
      break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
      break;
    case LUA_TNUMBER: {
      lua_Number x = lua_tonumber(L, idx);
      if (x != x) {                    /* "-nan" on some platforms */
        lua_pushliteral(L, "nan");
      } else {
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);           /* converts the copy in place */
      }
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      rv_push_quoted(L, s, len);
      break;
    }
    default:
      lua_pushfstring(L, "a %s", lua_typename(L, lua_type(L, idx)));
      break;
  }
  return lua_tostring(L, -1);
}

/* is `s` (`len` bytes) a plain name that a field path can show bare? */
static int plain_name(const char *s, size_t len) {
  size_t i;
  if (len == 0 || len > RV_NAME_MAX_LEN) return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

/*
** Push the field path of key `key` inside `prefix` (NULL at the top):
** "prefix.name" for plain string keys, "prefix[\"odd key\"]" or
** "prefix[1]" for the others.
*/
const char *rv_push_key_path(lua_State *L, const char *prefix, int key) {
  size_t len;
  const char *s;
  key = lua_absindex(L, key);
  s = lua_type(L, key) == LUA_TSTRING ? lua_tolstring(L, key, &len) : NULL;
  if (s != NULL && plain_name(s, len)) {
    if (prefix) lua_pushfstring(L, "%s.%s", prefix, s);
    else lua_pushstring(L, s);
  } else {
    rv_describe(L, key);
    lua_pushfstring(L, "%s[%s]", prefix ? prefix : "", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  return lua_tostring(L, -1);
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

/*
** Raise a validation_failed error for `field` (may be NULL). `expected` and
** `got` (may be NULL) become err.expected and err.got; the message is
** formatted from `fmt`. Runs under the lua_pcall of `rv_protect`.
*/
void rv_fail(lua_State *L, const char *field, const char *expected,
             const char *got, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  luaL_checkstack(L, 4, NULL);
  rv_error_push(L, "validation_failed", field, "%s", msg);
  if (expected != NULL) {
    lua_pushstring(L, expected);
    lua_setfield(L, -2, "expected");
  }
  if (got != NULL) {
    lua_pushstring(L, got);
    lua_setfield(L, -2, "got");
  }
  lua_error(L);
}

/* the common shape: "<field>: expected <expected>; got <got>" */
void rv_fail_expected(lua_State *L, const char *field, const char *expected,
                      const char *got) {
  rv_fail(L, field, expected, got, "%s: expected %s; got %s", field, expected,
          got);
}

/* same, describing the value at `idx` as what was given */
void rv_fail_value(lua_State *L, const char *field, const char *expected,
                   int idx) {
  rv_fail_expected(L, field, expected, rv_describe(L, idx));
}

/* true when the value at `idx` is a rivya.Error table */
static int is_error(lua_State *L, int idx) {
  int yes = 0;
  if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
    luaL_getmetatable(L, RV_ERROR_MT);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  return yes;
}

/*
** Call `f` on the top `nargs` values in protected mode. Returns its results
** (`nresults`) or, when it failed with a rivya.Error, nil + the error. Any
** other error (out of memory) is raised again.
*/
int rv_protect(lua_State *L, lua_CFunction f, int nargs, int nresults) {
  luaL_checkstack(L, 2, NULL);
  lua_pushcfunction(L, f);
  lua_insert(L, -(nargs + 1));
  if (lua_pcall(L, nargs, nresults, 0) == LUA_OK) return nresults;
  if (!is_error(L, -1)) return lua_error(L);
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}
