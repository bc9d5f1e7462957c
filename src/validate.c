/*
** validate.c — checks a request against its model's schema (schema.c) and
** builds the JSON-ready body of POST /api/v1/generations. Also the upload
** checks of the Files API rules.
**
** Everything inside a request is data: a problem with it is a
** `validation_failed` error (`nil, err`), never a crash or a raise. Only
** the arguments' own types are misuse and raise. Values are read with raw
** access only, so no metamethod of the caller's tables ever runs.
**
** The checks run inside lua_pcall: `fail` raises the error table, and the
** public functions turn it into `nil, err`. Nothing is malloc'ed on the
** way, so the longjmp leaks nothing.
*/
#include <stdio.h>
#include <string.h>

#include "rivya.h"

#define SHOW_BYTES 40      /* how much of a string a message quotes */
#define NAME_MAX_LEN 64    /* longer names get no "did you mean" */
#define SUGGEST_MAX 3      /* largest edit distance worth suggesting */
#define FIELD_LEN 200      /* room for "params.referenceMediaItems[n].x" */
#define PREFIX_LEN 128     /* room for "params.referenceMediaItems[n]" */
#define MAX_KINDS 8        /* reference kinds a model may list */

#define CLIENT_REQUEST_ID_MAX 128   /* API.md: at most 128 characters */
#define IDEMPOTENCY_KEY_MAX 255     /* a header value; printable ASCII */

static const char *const request_keys[] = {
  "model", "prompt", "params", "client_request_id", "idempotency_key", NULL
};

/* ---------------------------------------------------------------------- */
/* UTF-8                                                                   */
/* ---------------------------------------------------------------------- */

/*
** Length of the UTF-8 sequence at `s` (with `len` bytes left), or 0 when the
** bytes there are not valid UTF-8: a stray continuation byte, an overlong
** form, a surrogate, a code point above U+10FFFF or a truncated sequence.
*/
static size_t utf8_len(const unsigned char *s, size_t len) {
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
static size_t utf8_check(const char *s, size_t len, size_t *count) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0, n;
  *count = 0;
  while (i < len) {
    n = utf8_len(p + i, len - i);
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
static const char *push_quoted(lua_State *L, const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  luaL_Buffer b;
  size_t i = 0, n;
  char esc[8];
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  while (i < len && i < SHOW_BYTES) {
    n = utf8_len(p + i, len - i);
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
static const char *describe(lua_State *L, int idx) {
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
      push_quoted(L, s, len);
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
  if (len == 0 || len > NAME_MAX_LEN) return 0;
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
static const char *push_key_path(lua_State *L, const char *prefix, int key) {
  size_t len;
  const char *s;
  key = lua_absindex(L, key);
  s = lua_type(L, key) == LUA_TSTRING ? lua_tolstring(L, key, &len) : NULL;
  if (s != NULL && plain_name(s, len)) {
    if (prefix) lua_pushfstring(L, "%s.%s", prefix, s);
    else lua_pushstring(L, s);
  } else {
    describe(L, key);
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
** formatted from `fmt`. Runs under the lua_pcall of `protect`.
*/
static void fail(lua_State *L, const char *field, const char *expected,
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
static void fail_expected(lua_State *L, const char *field,
                          const char *expected, const char *got) {
  fail(L, field, expected, got, "%s: expected %s; got %s", field, expected,
       got);
}

/* same, describing the value at `idx` as what was given */
static void fail_value(lua_State *L, const char *field, const char *expected,
                       int idx) {
  fail_expected(L, field, expected, describe(L, idx));
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
static int protect(lua_State *L, lua_CFunction f, int nargs, int nresults) {
  luaL_checkstack(L, 2, NULL);
  lua_pushcfunction(L, f);
  lua_insert(L, -(nargs + 1));
  if (lua_pcall(L, nargs, nresults, 0) == LUA_OK) return nresults;
  if (!is_error(L, -1)) return lua_error(L);
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* ---------------------------------------------------------------------- */
/* Names: lists for messages and "did you mean" suggestions                */
/* ---------------------------------------------------------------------- */

/* a list of names from up to three sources, walked with name_at */
typedef struct names {
  const char *const *list;       /* NULL-terminated, or NULL */
  const rv_param *params;        /* their names, or NULL */
  const char *extra;             /* one more name, or NULL */
} names;

/* the `i`-th name of `n`, or NULL past the end */
static const char *name_at(const names *n, size_t i) {
  size_t k;
  if (n->list != NULL) {
    for (k = 0; n->list[k] != NULL; k++)
      if (k == i) return n->list[k];
    i -= k;
  }
  if (n->params != NULL) {
    for (k = 0; n->params[k].name != NULL; k++)
      if (k == i) return n->params[k].name;
    i -= k;
  }
  return i == 0 ? n->extra : NULL;
}

/* push the names of `n` joined by ", " */
static const char *push_names(lua_State *L, const names *n) {
  luaL_Buffer b;
  const char *s;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; (s = name_at(n, i)) != NULL; i++) {
    if (i > 0) luaL_addstring(&b, ", ");
    luaL_addstring(&b, s);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* push the NULL-terminated `list` joined by ", " */
static const char *push_list(lua_State *L, const char *const *list) {
  names n = {NULL, NULL, NULL};
  n.list = list;
  return push_names(L, &n);
}

/*
** Fold `s` (`len` bytes) for comparing names: lower case, without '_' and
** '-', so "aspectRatio" and "aspect-ratio" meet "aspect_ratio". Returns the
** folded length, or -1 when longer than NAME_MAX_LEN.
*/
static int fold(const char *s, size_t len, char *out) {
  size_t i;
  int n = 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (c == '_' || c == '-') continue;
    if (n == NAME_MAX_LEN) return -1;
    out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  return n;
}

/*
** Damerau-Levenshtein distance (optimal string alignment) between `a`
** (`n` chars) and `b` (`m` chars), both at most NAME_MAX_LEN.
*/
static int distance(const char *a, int n, const char *b, int m) {
  int rows[3][NAME_MAX_LEN + 1];
  int *prev2 = rows[0], *prev = rows[1], *cur = rows[2], *t;
  int i, j;
  for (j = 0; j <= m; j++) prev[j] = j;
  for (i = 1; i <= n; i++) {
    cur[0] = i;
    for (j = 1; j <= m; j++) {
      int cost = a[i - 1] != b[j - 1];
      int d = prev[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      if (prev[j - 1] + cost < d) d = prev[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          prev2[j - 2] + 1 < d)
        d = prev2[j - 2] + 1;
      cur[j] = d;
    }
    t = prev2; prev2 = prev; prev = cur; cur = t;
  }
  return prev[m];
}

/*
** The name of `n` closest to `s` (`len` bytes), or NULL when none is within
** SUGGEST_MAX edits (and fewer edits than `s` has characters, so "id" does
** not become "seed"). `limit` lowers SUGGEST_MAX for noisy places.
*/
static const char *suggest(const char *s, size_t len, const names *n,
                           int limit) {
  char a[NAME_MAX_LEN], b[NAME_MAX_LEN];
  const char *best = NULL, *name;
  int la, lb, d, bestd = limit + 1;
  size_t i;
  if ((la = fold(s, len, a)) <= 0) return NULL;
  for (i = 0; (name = name_at(n, i)) != NULL; i++) {
    if ((lb = fold(name, strlen(name), b)) < 0) continue;
    if (la - lb > limit || lb - la > limit) continue;
    d = distance(a, la, b, lb);
    if (d < bestd && d < la) {
      bestd = d;
      best = name;
    }
  }
  return best;
}

/* do `s` (`len` bytes, maybe with NULs) and the C string `name` match? */
static int same(const char *s, size_t len, const char *name) {
  return strlen(name) == len && memcmp(s, name, len) == 0;
}

/* is the string at `idx` one of the names of `n`? */
static int known(lua_State *L, int idx, const names *n) {
  size_t len, i;
  const char *s = lua_tolstring(L, idx, &len), *name;
  for (i = 0; (name = name_at(n, i)) != NULL; i++)
    if (same(s, len, name)) return 1;
  return 0;
}

/*
** Fail on the unknown key at `key` inside `prefix` (NULL at the top),
** suggesting the closest of the valid names `n`. `what` names the table
** for keys that are not strings ("the request", "params").
*/
static void fail_unknown_key(lua_State *L, const char *prefix, int key,
                             const names *n, const char *what) {
  const char *field, *expected, *got, *best = NULL;
  key = lua_absindex(L, key);
  field = push_key_path(L, prefix, key);
  expected = lua_pushfstring(L, "one of %s", push_names(L, n));
  got = describe(L, key);
  if (lua_type(L, key) != LUA_TSTRING)
    fail(L, field, expected, got,
         "unknown field %s: the keys of %s are names (%s); got the %s key %s",
         field, what, expected, luaL_typename(L, key), got);
  {
    size_t len;
    const char *s = lua_tolstring(L, key, &len);
    best = suggest(s, len, n, SUGGEST_MAX);
  }
  if (best != NULL)
    fail(L, field, expected, got,
         "unknown field \"%s\"; did you mean \"%s%s%s\"?", field,
         prefix ? prefix : "", prefix ? "." : "", best);
  fail(L, field, expected, got, "unknown field \"%s\"; expected %s", field,
       expected);
}

/* ---------------------------------------------------------------------- */
/* Models                                                                  */
/* ---------------------------------------------------------------------- */

/*
** The model named by the value at `idx`; fails (field "model") when it is
** not a string or not a known id, suggesting the closest id.
*/
static const rv_model *check_model(lua_State *L, int idx) {
  names ids = {NULL, NULL, NULL};
  const char *expected, *got, *best;
  size_t len = 0, i;
  const char *s = NULL;
  const char *id_list[16];
  for (i = 0; rv_schema_models[i] != NULL && i < 15; i++)
    id_list[i] = rv_schema_models[i]->id;
  id_list[i] = NULL;
  ids.list = id_list;
  if (lua_type(L, idx) == LUA_TSTRING) {
    s = lua_tolstring(L, idx, &len);
    for (i = 0; rv_schema_models[i] != NULL; i++)
      if (same(s, len, rv_schema_models[i]->id)) return rv_schema_models[i];
  }
  expected = lua_pushfstring(L, "a model id, one of %s", push_names(L, &ids));
  got = describe(L, idx);
  if (lua_type(L, idx) != LUA_TSTRING) fail_expected(L, "model", expected, got);
  best = suggest(s, len, &ids, SUGGEST_MAX);
  if (best != NULL)
    fail(L, "model", expected, got,
         "model: unknown model %s; did you mean \"%s\"?", got, best);
  fail(L, "model", expected, got, "model: unknown model %s; expected %s", got,
       expected);
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* Strings                                                                 */
/* ---------------------------------------------------------------------- */

/*
** Check that the value at `idx` is text for `field`: a string, valid UTF-8,
** not empty when `nonempty`, at most `max` code points (0: no limit).
*/
static void check_text(lua_State *L, int idx, const char *field,
                       size_t max, int nonempty) {
  size_t len, count, bad;
  const char *s;
  char expected[96], got[64];
  if (lua_type(L, idx) != LUA_TSTRING)
    fail_value(L, field, nonempty ? "a non-empty string" : "a string", idx);
  s = lua_tolstring(L, idx, &len);
  if (nonempty && len == 0)
    fail_expected(L, field, "a non-empty string", "\"\"");
  if ((bad = utf8_check(s, len, &count)) != 0) {
    snprintf(got, sizeof got, "invalid UTF-8 at byte %lu", (unsigned long)bad);
    fail_expected(L, field, "valid UTF-8 text", got);
  }
  if (max > 0 && count > max) {
    snprintf(expected, sizeof expected,
             "at most %lu characters (Unicode code points)",
             (unsigned long)max);
    snprintf(got, sizeof got, "%lu", (unsigned long)count);
    fail_expected(L, field, expected, got);
  }
}

/* check the optional idempotency_key at `idx`: printable ASCII, <= 255 */
static void check_idempotency_key(lua_State *L, int idx) {
  static const char *const field = "idempotency_key";
  static const char *const expected =
      "a non-empty string of at most 255 printable ASCII characters";
  size_t len, i;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) fail_value(L, field, expected, idx);
  s = lua_tolstring(L, idx, &len);
  if (len == 0 || len > IDEMPOTENCY_KEY_MAX) {
    char got[64];
    snprintf(got, sizeof got, "%lu characters", (unsigned long)len);
    fail_expected(L, field, expected, got);
  }
  for (i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7E)
      fail_value(L, field, expected, idx);
}

/* ---------------------------------------------------------------------- */
/* Params                                                                  */
/* ---------------------------------------------------------------------- */

/* is the string at `idx` one of `options`? */
static int is_option(lua_State *L, int idx, const char *const *options) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  for (; *options != NULL; options++)
    if (same(s, len, *options)) return 1;
  return 0;
}

/*
** Push the wire string of select param `p` for the value at `v`: the option
** itself, an integral number whose decimal form is an option, or a boolean
** for true/false options.
*/
static void convert_select(lua_State *L, const rv_param *p, int v,
                           const char *field) {
  int isint;
  lua_Integer n;
  v = lua_absindex(L, v);
  switch (lua_type(L, v)) {
    case LUA_TSTRING:
      lua_pushvalue(L, v);
      break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, v) ? "true" : "false");
      break;
    case LUA_TNUMBER:
      n = lua_tointegerx(L, v, &isint);  /* 10 and 10.0, not 10.5 */
      if (isint) {
        lua_pushfstring(L, "%I", (LUAI_UACINT)n);
        break;
      }
      /* fall through */
    default:
      lua_pushliteral(L, "");            /* matches no option */
      break;
  }
  if (!is_option(L, -1, p->options)) {
    const char *list = push_list(L, p->options);
    fail_value(L, field, lua_pushfstring(L, "one of %s", list), v);
  }
}

/*
** Push the number param `p` for the value at `v`: a Lua integer, an integral
** float or a string of decimal digits, inside [min, max]. Non-integer
** params also take finite floats.
*/
static void convert_number(lua_State *L, const rv_param *p, int v,
                           const char *field) {
  const char *expected;
  int isint = 0;
  lua_Integer n = 0;
  v = lua_absindex(L, v);
  expected = lua_pushfstring(L, "%s from %I to %I",
                             p->integer ? "an integer" : "a number",
                             (LUAI_UACINT)p->min, (LUAI_UACINT)p->max);
  if (lua_type(L, v) == LUA_TNUMBER) {
    n = lua_tointegerx(L, v, &isint);
    if (!isint && !p->integer) {
      lua_Number x = lua_tonumber(L, v);
      if (x >= (lua_Number)p->min && x <= (lua_Number)p->max) {
        lua_pop(L, 1);
        lua_pushnumber(L, x);
        return;
      }
    }
  } else if (lua_type(L, v) == LUA_TSTRING) {
    size_t len, i;
    const char *s = lua_tolstring(L, v, &len);
    isint = len > 0;
    for (i = 0; i < len && isint; i++) {
      int d = s[i] - '0';
      if (d < 0 || d > 9 || n > (LUA_MAXINTEGER - d) / 10) isint = 0;
      else n = n * 10 + d;
    }
  }
  if (!isint || n < p->min || n > p->max) fail_value(L, field, expected, v);
  lua_pop(L, 1);
  lua_pushinteger(L, n);
}

/*
** Check params table `in` against the model's parameter rows and fill `out`
** with the wire form of each given value. Unknown keys fail with a
** suggestion; referenceMediaItems is left to check_references.
*/
static void check_params(lua_State *L, const rv_model *m, int in, int out) {
  names valid = {NULL, NULL, NULL};
  const rv_param *p;
  char field[FIELD_LEN];
  valid.params = m->params;
  valid.extra = m->references ? m->references->key : NULL;
  lua_pushnil(L);
  while (lua_next(L, in) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || !known(L, -1, &valid))
      fail_unknown_key(L, "params", -1, &valid, "params");
  }
  for (p = m->params; p->name != NULL; p++) {
    snprintf(field, sizeof field, "params.%s", p->name);
    lua_pushstring(L, p->name);
    if (lua_rawget(L, in) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    switch (p->type) {
      case RV_PARAM_SELECT:
        convert_select(L, p, -1, field);
        break;
      case RV_PARAM_NUMBER:
        convert_number(L, p, -1, field);
        break;
      case RV_PARAM_TEXT:
        check_text(L, -1, field, p->max_code_points, 0);
        lua_pushvalue(L, -1);
        break;
    }
    lua_setfield(L, out, p->name);
    lua_pop(L, 1);
  }
}

/* ---------------------------------------------------------------------- */
/* Reference media                                                         */
/* ---------------------------------------------------------------------- */

/* how a reference field is checked */
typedef enum item_check {
  ITEM_URL, ITEM_KIND, ITEM_TEXT, ITEM_MIME, ITEM_SECONDS, ITEM_TOKEN
} item_check;

/*
** The fields of a reference as sent, with the names an upload returns.
** Every other key of a file table (id, file_id, size_bytes, ...) is dropped.
** `kind` comes before mimeType and durationToken, which depend on it.
*/
static const struct {
  const char *name;            /* camelCase, as sent */
  const char *alias;           /* snake_case, from the upload; or NULL */
  item_check check;
  int required;                /* durationToken: by kind, see check_item */
} item_fields[] = {
  {"url", NULL, ITEM_URL, 1},
  {"kind", NULL, ITEM_KIND, 1},
  {"name", NULL, ITEM_TEXT, 0},
  {"mimeType", "mime_type", ITEM_MIME, 0},
  {"durationSeconds", "duration_seconds", ITEM_SECONDS, 0},
  {"durationToken", "duration_token", ITEM_TOKEN, 0},
  {NULL, NULL, ITEM_TEXT, 0}
};

/* index of the string at `idx` in `list`, or -1 */
static int list_index(lua_State *L, int idx, const char *const *list) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  int i;
  for (i = 0; list[i] != NULL; i++)
    if (same(s, len, list[i])) return i;
  return -1;
}

/*
** Push "2 videos", "1 video, 1 image": the references by kind, `counts[i]`
** of `kinds[i]`.
*/
static const char *push_counts(lua_State *L, const char *const *kinds,
                               const int *counts) {
  luaL_Buffer b;
  int i, first = 1;
  luaL_buffinit(L, &b);
  for (i = 0; kinds[i] != NULL && i < MAX_KINDS; i++) {
    char part[64];
    if (counts[i] == 0) continue;
    if (strcmp(kinds[i], "audio") == 0)   /* "audios" is not a word */
      snprintf(part, sizeof part, "%d audio file%s", counts[i],
               counts[i] == 1 ? "" : "s");
    else
      snprintf(part, sizeof part, "%d %s%s", counts[i], kinds[i],
               counts[i] == 1 ? "" : "s");
    if (!first) luaL_addstring(&b, ", ");
    luaL_addstring(&b, part);
    first = 0;
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/*
** Push the value of reference field `f` of the item at `item` (nil when
** absent), taking the camelCase or the snake_case name; both given and
** different is an error.
*/
static void get_item_field(lua_State *L, int item, int f, const char *prefix) {
  lua_pushstring(L, item_fields[f].name);
  lua_rawget(L, item);
  if (item_fields[f].alias == NULL) return;
  lua_pushstring(L, item_fields[f].alias);
  lua_rawget(L, item);
  if (lua_isnil(L, -2)) {
    lua_remove(L, -2);
  } else if (!lua_isnil(L, -1) && !lua_rawequal(L, -1, -2)) {
    char field[FIELD_LEN];
    const char *a, *b;
    snprintf(field, sizeof field, "%s.%s", prefix, item_fields[f].name);
    a = describe(L, -2);
    b = describe(L, -2);
    fail(L, field, "one value", lua_pushfstring(L, "%s and %s", a, b),
         "%s: %s and %s disagree (%s and %s); give one",
         field, item_fields[f].name, item_fields[f].alias, a, b);
  } else {
    lua_pop(L, 1);
  }
}

/*
** Fail for the missing field `name` of the item at `item`; when the item
** has a key that looks like a typo of it, say so.
*/
static void fail_missing(lua_State *L, int item, const char *field,
                         const char *name, const char *expected) {
  const char *list[2];
  names n = {NULL, NULL, NULL};
  list[0] = name;
  list[1] = NULL;
  n.list = list;
  lua_pushnil(L);
  while (lua_next(L, item) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (!same(s, len, name) && suggest(s, len, &n, 2) != NULL)
        fail(L, field, expected, "nothing",
             "%s: expected %s; got nothing (is %s a typo of %s?)", field,
             expected, describe(L, -1), name);
    }
  }
  fail_expected(L, field, expected, "nothing");
}

/*
** Check reference `i` (at `item`) of model `m` and push it in the form the
** API takes: {url, kind, name?, mimeType?, durationSeconds?, durationToken?}.
** Counts it in `counts` by kind.
*/
static void check_item(lua_State *L, const rv_model *m, int item, int i,
                       int *counts) {
  const rv_references *r = m->references;
  const rv_upload_rule *rule;
  char prefix[PREFIX_LEN], field[FIELD_LEN];
  int f, kind = -1, out;
  snprintf(prefix, sizeof prefix, "params.%s[%d]", r->key, i);
  if (lua_type(L, item) == LUA_TSTRING) {
    const char *got = describe(L, item);
    fail(L, prefix, "a file table from client:upload", got,
         "%s: expected a file table from client:upload; got %s: local paths "
         "are uploaded by client:create and client:generate, while "
         "rivya.validate needs file tables", prefix, got);
  }
  if (lua_type(L, item) != LUA_TTABLE)
    fail_value(L, prefix, "a file table from client:upload", item);
  lua_createtable(L, 0, 6);
  out = lua_gettop(L);
  for (f = 0; item_fields[f].name != NULL; f++) {
    const char *name = item_fields[f].name;
    int v;
    snprintf(field, sizeof field, "%s.%s", prefix, name);
    get_item_field(L, item, f, prefix);
    v = lua_gettop(L);
    if (lua_isnil(L, v) && !item_fields[f].required) {
      lua_settop(L, out);                /* optional and absent */
      continue;
    }
    switch (item_fields[f].check) {
      case ITEM_URL: {
        static const char *const expected = "an http:// or https:// URL";
        size_t len, k;
        const char *s;
        if (lua_isnil(L, v)) fail_missing(L, item, field, name, expected);
        if (lua_type(L, v) != LUA_TSTRING) fail_value(L, field, expected, v);
        s = lua_tolstring(L, v, &len);
        k = (len > 7 && strncmp(s, "http://", 7) == 0) ? 7
          : (len > 8 && strncmp(s, "https://", 8) == 0) ? 8 : 0;
        if (k == 0) fail_value(L, field, expected, v);
        for (; k < len; k++)
          if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] == 0x7F)
            fail_value(L, field, expected, v);
        break;
      }
      case ITEM_KIND: {
        const char *expected = lua_pushfstring(L, "one of %s",
                                               push_list(L, r->kinds));
        if (lua_isnil(L, v)) fail_missing(L, item, field, name, expected);
        if (lua_type(L, v) != LUA_TSTRING ||
            (kind = list_index(L, v, r->kinds)) < 0 || kind >= MAX_KINDS)
          fail_value(L, field, expected, v);
        counts[kind]++;
        break;
      }
      case ITEM_TEXT:
        check_text(L, v, field, 0, 0);
        break;
      case ITEM_MIME:
        rule = rv_schema_upload(m->uploads, r->kinds[kind]);
        if (lua_type(L, v) != LUA_TSTRING ||
            (rule != NULL && !is_option(L, v, rule->mime))) {
          const char *list = rule ? push_list(L, rule->mime) : "a MIME type";
          fail_value(L, field,
                     lua_pushfstring(L, "one of %s (%s references of %s)",
                                     list, r->kinds[kind], m->id), v);
        }
        break;
      case ITEM_SECONDS: {
        lua_Number x = lua_tonumber(L, v);
        if (lua_type(L, v) != LUA_TNUMBER || !(x >= 0) || x - x != 0)
          fail_value(L, field, "a number of seconds, 0 or more", v);
        break;
      }
      case ITEM_TOKEN:
        check_text(L, v, field, 0, 1);
        break;
    }
    lua_pushvalue(L, v);
    lua_setfield(L, out, name);
    lua_settop(L, out);
  }
  /* kinds that prove their duration must carry the upload's token */
  lua_getfield(L, out, "durationToken");
  if (lua_isnil(L, -1) && r->token_kinds != NULL) {
    const char *const *k;
    for (k = r->token_kinds; *k != NULL; k++)
      if (strcmp(*k, r->kinds[kind]) == 0) {
        snprintf(field, sizeof field, "%s.durationToken", prefix);
        fail_missing(L, item, field, "durationToken",
                     lua_pushfstring(L, "the durationToken that client:upload "
                                     "returned for this %s", *k));
      }
  }
  lua_pop(L, 1);
}

/*
** Apply the rules of reference mode `mode` to the wire params at `out`,
** adding a warning to the array at `warnings` for each rule that fires.
*/
static void apply_mode_rules(lua_State *L, const rv_mode *mode, int out,
                             int warnings) {
  const rv_mode_rule *rule;
  for (rule = mode->rules; rule->param != NULL; rule++) {
    int top = lua_gettop(L);
    lua_getfield(L, out, rule->param);       /* `out` is ours: no metatable */
    if (lua_isnil(L, top + 1)) {
      lua_settop(L, top);
      continue;
    }
    switch (rule->action) {
      case RV_RULE_CLAMP_MAX:
        if (lua_stringtonumber(L, lua_tostring(L, top + 1)) != 0 &&
            lua_stringtonumber(L, rule->value) != 0 &&
            lua_tonumber(L, -2) > lua_tonumber(L, -1)) {
          lua_pushfstring(L, "params.%s: %s tops out at %s%s; %s was clamped "
                          "to %s", rule->param, mode->name, rule->value,
                          rule->note ? rule->note : "",
                          lua_tostring(L, top + 1), rule->value);
          lua_rawseti(L, warnings, (lua_Integer)lua_rawlen(L, warnings) + 1);
          lua_pushstring(L, rule->value);
          lua_setfield(L, out, rule->param);
        }
        break;
      case RV_RULE_IGNORED:
        lua_pushfstring(L, "params.%s: ignored in %s; %s", rule->param,
                        mode->name, rule->note ? rule->note : "");
        lua_rawseti(L, warnings, (lua_Integer)lua_rawlen(L, warnings) + 1);
        break;
    }
    lua_settop(L, top);
  }
}

/*
** Check params.referenceMediaItems of the request params at `in`; put the
** converted list into the wire params at `out` (omitted when empty) and the
** mode's warnings into `warnings`.
*/
static void check_references(lua_State *L, const rv_model *m, int in, int out,
                             int warnings) {
  const rv_references *r = m->references;
  const rv_mode *mode;
  char field[FIELD_LEN];
  int counts[MAX_KINDS] = {0};
  lua_Integer n = 0, maxkey = 0, i;
  int list, items;
  if (r == NULL) return;
  snprintf(field, sizeof field, "params.%s", r->key);
  lua_pushstring(L, r->key);
  lua_rawget(L, in);
  list = lua_gettop(L);
  if (lua_isnil(L, list)) {
    lua_pop(L, 1);
    return;
  }
  if (lua_type(L, list) == LUA_TSTRING) {
    const char *got = describe(L, list);
    fail(L, field, "an array of file tables from client:upload", got,
         "%s: expected an array of file tables from client:upload; got %s: "
         "local paths are uploaded by client:create and client:generate, "
         "while rivya.validate needs file tables", field, got);
  }
  if (lua_type(L, list) != LUA_TTABLE)
    fail_value(L, field, "an array of file tables from client:upload", list);
  /* a sequence: keys 1..n and nothing else */
  lua_pushnil(L);
  while (lua_next(L, list) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      if (lua_type(L, -1) == LUA_TSTRING)
        fail(L, field, "an array of file tables", "a table with named keys",
             "%s: expected an array of file tables; got a table with the key "
             "%s (wrap a single file in { })", field, describe(L, -1));
      fail(L, field, "an array of file tables", "a table with other keys",
           "%s: expected an array of file tables; got a table with the key "
           "%s", field, describe(L, -1));
    }
    n++;
    if (lua_tointeger(L, -1) > maxkey) maxkey = lua_tointeger(L, -1);
  }
  if (maxkey != n)
    fail(L, field, "an array of file tables", "a table with holes",
         "%s: expected an array of file tables; got a table with holes "
         "(%ld items, last key %ld)", field, (long)n, (long)maxkey);
  if (n == 0) {
    lua_pop(L, 1);
    return;
  }
  if (n > r->max_items) {
    char expected[64], got[32];
    snprintf(expected, sizeof expected, "at most %d items", r->max_items);
    snprintf(got, sizeof got, "%ld", (long)n);
    fail_expected(L, field, expected, got);
  }
  lua_createtable(L, (int)n, 0);
  items = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    check_item(L, m, lua_gettop(L), (int)i, counts);
    lua_rawseti(L, items, i);
    lua_pop(L, 1);
  }
  /* the first mode whose counts fit */
  for (mode = r->modes; mode->name != NULL; mode++) {
    int k, fits = 1;
    for (k = 0; r->kinds[k] != NULL && k < MAX_KINDS && fits; k++) {
      const rv_kind_count *c;
      int lo = 0, hi = 0;
      for (c = mode->counts; c->kind != NULL; c++)
        if (strcmp(c->kind, r->kinds[k]) == 0) {
          lo = c->min;
          hi = c->max;
        }
      fits = counts[k] >= lo && counts[k] <= hi;
    }
    if (fits) break;
  }
  if (mode->name == NULL) {
    luaL_Buffer b;
    const char *expected, *got;
    luaL_buffinit(L, &b);
    for (mode = r->modes; mode->name != NULL; mode++) {
      if (mode != r->modes) luaL_addstring(&b, ", or ");
      luaL_addstring(&b, mode->summary);
      luaL_addstring(&b, " (");
      luaL_addstring(&b, mode->name);
      luaL_addstring(&b, ")");
    }
    luaL_pushresult(&b);
    expected = lua_tostring(L, -1);
    got = push_counts(L, r->kinds, counts);
    fail_expected(L, field, expected, got);
  }
  lua_setfield(L, out, r->key);
  lua_pop(L, 1);
  apply_mode_rules(L, mode, out, warnings);
}

/* ---------------------------------------------------------------------- */
/* The request                                                             */
/* ---------------------------------------------------------------------- */

/*
** Check the request at index 1 and push body, warnings. Returns the model.
** Runs under lua_pcall (see protect).
*/
static const rv_model *build_body(lua_State *L) {
  names keys = {NULL, NULL, NULL};
  const rv_model *m;
  int body, warnings, out, in;
  keys.list = request_keys;
  luaL_checkstack(L, 30, NULL);
  lua_settop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (same(s, len, "files"))
        fail(L, "files", "params.referenceMediaItems",
             "a top-level files field",
             "files: a top-level files field is rejected by the API; put "
             "uploaded files in params.referenceMediaItems");
      if (known(L, -1, &keys)) continue;
    }
    fail_unknown_key(L, NULL, -1, &keys, "the request");
  }
  lua_pushstring(L, "model");
  lua_rawget(L, 1);
  m = check_model(L, 2);
  lua_createtable(L, 0, 4);                  /* the body */
  body = lua_gettop(L);
  lua_pushvalue(L, 2);
  lua_setfield(L, body, "model");
  lua_newtable(L);
  warnings = lua_gettop(L);
  lua_newtable(L);
  out = lua_gettop(L);

  lua_pushstring(L, "prompt");
  if (lua_rawget(L, 1) != LUA_TNIL || m->prompt_required) {
    check_text(L, -1, "prompt", m->prompt_max_code_points,
               m->prompt_required);
    lua_setfield(L, body, "prompt");
  } else {
    lua_pop(L, 1);
  }

  lua_pushstring(L, "client_request_id");
  if (lua_rawget(L, 1) != LUA_TNIL) {
    check_text(L, -1, "client_request_id", CLIENT_REQUEST_ID_MAX, 1);
    lua_setfield(L, body, "client_request_id");
  } else {
    lua_pop(L, 1);
  }

  lua_pushstring(L, "idempotency_key");       /* a header: not in the body */
  if (lua_rawget(L, 1) != LUA_TNIL) check_idempotency_key(L, -1);
  lua_pop(L, 1);

  lua_pushstring(L, "params");
  lua_rawget(L, 1);
  in = lua_gettop(L);
  if (!lua_isnil(L, in)) {
    if (lua_type(L, in) != LUA_TTABLE)
      fail_value(L, "params", "a table of model parameters", in);
    check_params(L, m, in, out);
    check_references(L, m, in, out, warnings);
  }
  lua_settop(L, out);
  lua_setfield(L, body, "params");
  return m;
}

/* lua_pcall'ed body of core.validate: body, warnings */
static int validate_run(lua_State *L) {
  build_body(L);
  return 2;
}

/* lua_pcall'ed body of core.estimate: credits */
static int estimate_run(lua_State *L) {
  const rv_model *m = build_body(L);
  lua_pushinteger(L, m->credits);
  return 1;
}

/*
** core.validate(req) -> body, warnings | nil, err. `req` must be a table
** (else raises); body is the JSON-ready create body, warnings an array of
** strings (empty when none).
*/
int rv_validate(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return protect(L, validate_run, 1, 2);
}

/*
** core.estimate(req) -> credits | nil, err: validates `req` like
** core.validate, then gives the credits a run reserves (an integer).
*/
int rv_estimate(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return protect(L, estimate_run, 1, 1);
}

/* ---------------------------------------------------------------------- */
/* Uploads                                                                 */
/* ---------------------------------------------------------------------- */

/* raise unless argument `arg` is nil, absent or a string (a model id) */
static void check_model_arg(lua_State *L, int arg) {
  if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TSTRING)
    luaL_typeerror(L, arg, "nil or model id");
}

/* lua_pcall'ed body of core.upload_rules(model?) */
static int upload_rules_run(lua_State *L) {
  const rv_model *m = lua_isnil(L, 1) ? NULL : check_model(L, 1);
  rv_schema_push_uploads(L, m ? m->uploads : rv_default_uploads);
  return 1;
}

/*
** core.upload_rules(model?) -> {image = {max_bytes, mime}, ...} | nil, err:
** the Files API's limits for `model`, or its defaults when nil.
*/
int rv_upload_rules(lua_State *L) {
  check_model_arg(L, 1);
  lua_settop(L, 1);
  return protect(L, upload_rules_run, 1, 1);
}

/* lua_pcall'ed body of core.check_upload(model?, kind, mime?, size) */
static int check_upload_run(lua_State *L) {
  const rv_model *m = lua_isnil(L, 1) ? NULL : check_model(L, 1);
  const rv_upload_rule *rules = m ? m->uploads : rv_default_uploads, *rule;
  const char *whose = m ? lua_pushfstring(L, " (%s)", m->id)
                        : " (no model: the Files API defaults)";
  lua_Integer size = lua_tointeger(L, 4);
  names kinds = {NULL, NULL, NULL};
  const char *kind_list[8];
  size_t i;
  for (i = 0; rules[i].kind != NULL && i < 7; i++) kind_list[i] = rules[i].kind;
  kind_list[i] = NULL;
  kinds.list = kind_list;
  if (!known(L, 2, &kinds)) {
    const char *list = push_names(L, &kinds);
    fail_value(L, "file", lua_pushfstring(L, "kind one of %s%s", list, whose),
               2);
  }
  rule = rv_schema_upload(rules, lua_tostring(L, 2));
  if (!lua_isnil(L, 3) && !is_option(L, 3, rule->mime)) {
    const char *list = push_list(L, rule->mime);
    fail_value(L, "file", lua_pushfstring(L, "a MIME type of %s for %s files%s",
                                          list, rule->kind, whose), 3);
  }
  if (size > rule->max_bytes) {
    const char *expected = lua_pushfstring(L,
        "at most %I bytes (%I MB) for %s files%s", (LUAI_UACINT)rule->max_bytes,
        (LUAI_UACINT)(rule->max_bytes / 1000000), rule->kind, whose);
    fail_expected(L, "file", expected,
                  lua_pushfstring(L, "%I bytes", (LUAI_UACINT)size));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** core.check_upload(model?, kind, mime?, size) -> true | nil, err: whether
** the Files API takes a file of `kind` ("image", "video", "audio"), MIME
** type `mime` (nil: not known, not checked) and `size` bytes, for `model`
** or without one. Failures have code validation_failed, field "file".
*/
int rv_check_upload(lua_State *L) {
  check_model_arg(L, 1);
  luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checkstring(L, 3);
  luaL_argcheck(L, luaL_checkinteger(L, 4) >= 0, 4, "size must be >= 0");
  lua_settop(L, 4);
  return protect(L, check_upload_run, 4, 1);
}
