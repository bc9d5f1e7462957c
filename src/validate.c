/*
** validate.c — the request phase of validation: checks a request against
** its model in a compiled catalog (catalog.c) and builds the JSON-ready body
** of POST /api/v1/generations; also the Files API's upload checks. These
** are the methods of rivya.Catalog.
**
** Everything inside a request is data: a problem with it is a
** `validation_failed` error (`nil, err`), never a crash or a raise. Only
** the arguments' own types are misuse and raise. Values are read with raw
** access only, so no metamethod of the caller's tables ever runs.
**
** The checks run inside lua_pcall (rv_protect, text.c): rv_fail raises the
** error table, the public functions turn it into `nil, err`.
*/
#include <stdio.h>
#include <string.h>

#include "rivya.h"

#define FIELD_LEN 200      /* room for "params.referenceMediaItems[n].x" */
#define PREFIX_LEN 128     /* room for "params.referenceMediaItems[n]" */
#define MAX_KINDS RV_MAX_KINDS

#define CLIENT_REQUEST_ID_MAX 128   /* API.md: at most 128 characters */
#define IDEMPOTENCY_KEY_MAX 255     /* a header value; printable ASCII */

static const char *const request_keys[] = {
  "model", "prompt", "params", "client_request_id", "idempotency_key", NULL
};

/* ---------------------------------------------------------------------- */
/* Names: lists for messages and "did you mean" suggestions                */
/* ---------------------------------------------------------------------- */

/* a list of names from up to four sources, walked with name_at */
typedef struct names {
  const char *const *list;       /* NULL-terminated, or NULL */
  const rv_param *params;        /* their names, or NULL */
  const rv_model *models;        /* their ids, or NULL */
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
  if (n->models != NULL) {
    for (k = 0; n->models[k].id != NULL; k++)
      if (k == i) return n->models[k].id;
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
  names n = {NULL, NULL, NULL, NULL};
  n.list = list;
  return push_names(L, &n);
}
/* rv_name_at over a `names` */
static const char *names_at(const void *list, size_t i) {
  return name_at((const names *)list, i);
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
  field = rv_push_key_path(L, prefix, key);
  expected = lua_pushfstring(L, "one of %s", push_names(L, n));
  got = rv_describe(L, key);
  if (lua_type(L, key) != LUA_TSTRING)
    rv_fail(L, field, expected, got,
         "unknown field %s: the keys of %s are names (%s); got the %s key %s",
         field, what, expected, luaL_typename(L, key), got);
  {
    size_t len;
    const char *s = lua_tolstring(L, key, &len);
    best = rv_suggest(s, len, names_at, n, RV_SUGGEST_MAX);
  }
  if (best != NULL)
    rv_fail(L, field, expected, got,
         "unknown field \"%s\"; did you mean \"%s%s%s\"?", field,
         prefix ? prefix : "", prefix ? "." : "", best);
  rv_fail(L, field, expected, got, "unknown field \"%s\"; expected %s", field,
       expected);
}

/* ---------------------------------------------------------------------- */
/* Models                                                                  */
/* ---------------------------------------------------------------------- */

/*
** The model of catalog `cat` named by the value at `idx`; fails (field
** "model") when it is not a string or not a known id, suggesting the
** closest id.
*/
static const rv_model *find_model(lua_State *L, const rv_catalog *cat,
                                  int idx) {
  names ids = {NULL, NULL, NULL, NULL};
  const char *expected, *got, *best;
  const rv_model *m;
  size_t len = 0;
  const char *s = NULL;
  ids.models = cat->models;
  if (lua_type(L, idx) == LUA_TSTRING) {
    s = lua_tolstring(L, idx, &len);
    for (m = cat->models; m->id != NULL; m++)
      if (same(s, len, m->id)) return m;
  }
  expected = lua_pushfstring(L, "a model id, one of %s", push_names(L, &ids));
  got = rv_describe(L, idx);
  if (lua_type(L, idx) != LUA_TSTRING)
    rv_fail_expected(L, "model", expected, got);
  best = rv_suggest(s, len, names_at, &ids, RV_SUGGEST_MAX);
  if (best != NULL)
    rv_fail(L, "model", expected, got,
            "model: unknown model %s; did you mean \"%s\"?", got, best);
  rv_fail(L, "model", expected, got, "model: unknown model %s; expected %s",
          got, expected);
  return NULL;
}

/*
** The model for a generation: known, `available` through the API and run
** as an async task. Anything else fails naming what the catalog says.
*/
static const rv_model *check_model(lua_State *L, const rv_catalog *cat,
                                   int idx) {
  const rv_model *m = find_model(L, cat, idx);
  if (m->api_status != NULL && strcmp(m->api_status, "available") != 0) {
    rv_error_push(L, "validation_failed", "model",
                  "model: %s is %s, not available through the API "
                  "(api_status %s)", m->id, m->api_status, m->api_status);
    lua_pushstring(L, m->api_status);
    lua_setfield(L, -2, "api_status");
    lua_error(L);
  }
  if (m->runtime != NULL && strcmp(m->runtime, "async_task") != 0) {
    rv_error_push(L, "validation_failed", "model",
                  "model: %s has runtime %s: it is not a generation model "
                  "(runtime async_task)", m->id, m->runtime);
    lua_pushstring(L, m->runtime);
    lua_setfield(L, -2, "runtime");
    lua_error(L);
  }
  return m;
}

/* the Files API rules that apply to model `m` (NULL: none) */
static const rv_upload_rule *uploads_of(const rv_catalog *cat,
                                        const rv_model *m) {
  /* a model's rules are its reference_media limits: none, no uploads
     (docs/api-contract.md, "Files") */
  static const rv_upload_rule none[] = {{NULL, 0, NULL}};
  if (m == NULL) return cat->defaults;
  return m->uploads != NULL ? m->uploads : none;
}

/* the rule for `kind` in `rules`, or NULL when that kind is not accepted */
static const rv_upload_rule *upload_rule(const rv_upload_rule *rules,
                                         const char *kind) {
  for (; rules->kind != NULL; rules++)
    if (strcmp(rules->kind, kind) == 0) return rules;
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
    rv_fail_value(L, field, nonempty ? "a non-empty string" : "a string", idx);
  s = lua_tolstring(L, idx, &len);
  if (nonempty && len == 0)
    rv_fail_expected(L, field, "a non-empty string", "\"\"");
  if ((bad = rv_utf8_check(s, len, &count)) != 0) {
    snprintf(got, sizeof got, "invalid UTF-8 at byte %lu", (unsigned long)bad);
    rv_fail_expected(L, field, "valid UTF-8 text", got);
  }
  if (max > 0 && count > max) {
    snprintf(expected, sizeof expected,
             "at most %lu characters (Unicode code points)",
             (unsigned long)max);
    snprintf(got, sizeof got, "%lu", (unsigned long)count);
    rv_fail_expected(L, field, expected, got);
  }
}

/* check the optional idempotency_key at `idx`: printable ASCII, <= 255, trimmed */
static void check_idempotency_key(lua_State *L, int idx) {
  static const char *const field = "idempotency_key";
  static const char *const expected =
      "a non-empty string of at most 255 printable ASCII characters, no space at either end";
  size_t len, i;
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING) rv_fail_value(L, field, expected, idx);
  s = lua_tolstring(L, idx, &len);
  if (len == 0 || len > IDEMPOTENCY_KEY_MAX) {
    char got[64];
    snprintf(got, sizeof got, "%lu characters", (unsigned long)len);
    rv_fail_expected(L, field, expected, got);
  }
  for (i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7E)
      rv_fail_value(L, field, expected, idx);
  /* HTTP drops a leading or trailing space in transit (docs/api-contract.md) */
  if (s[0] == ' ' || s[len - 1] == ' ') rv_fail_value(L, field, expected, idx);
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
    rv_fail_value(L, field, lua_pushfstring(L, "one of %s", list), v);
  }
}

/* push `s` and return it (lua_pushstring returns nothing before 5.3) */
static const char *push_string(lua_State *L, const char *s) {
  lua_pushstring(L, s);
  return lua_tostring(L, -1);
}

/* push bound `x` as Lua writes it: integers without a decimal point */
static const char *push_bound(lua_State *L, lua_Number x) {
  if (x == (lua_Number)(lua_Integer)x && x > -9e15 && x < 9e15)
    return lua_pushfstring(L, "%I", (LUAI_UACINT)(lua_Integer)x);
  return lua_pushfstring(L, "%f", x);
}

/* push what number param `p` takes: "an integer from 0 to 2147483647" */
static const char *push_number_expected(lua_State *L, const rv_param *p) {
  const char *what = p->integer ? "an integer" : "a number";
  if (p->has_min && p->has_max) {
    const char *lo = push_bound(L, p->min), *hi = push_bound(L, p->max);
    return lua_pushfstring(L, "%s from %s to %s", what, lo, hi);
  }
  if (p->has_min)
    return lua_pushfstring(L, "%s of at least %s", what, push_bound(L, p->min));
  if (p->has_max)
    return lua_pushfstring(L, "%s of at most %s", what, push_bound(L, p->max));
  return push_string(L, what);
}

/* is `x` inside the bounds of `p`? */
static int in_range(const rv_param *p, lua_Number x) {
  return (!p->has_min || x >= p->min) && (!p->has_max || x <= p->max);
}

/*
** Push the number param `p` for the value at `v`: a Lua integer, an integral
** float or a string of decimal digits, inside [min, max]. Non-integer
** params also take finite floats.
*/
static void convert_number(lua_State *L, const rv_param *p, int v,
                           const char *field) {
  int isint = 0;
  lua_Integer n = 0;
  v = lua_absindex(L, v);
  if (lua_type(L, v) == LUA_TNUMBER) {
    n = lua_tointegerx(L, v, &isint);
    if (!isint && !p->integer) {
      lua_Number x = lua_tonumber(L, v);
      if (x - x == 0 && in_range(p, x)) {
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
  if (!isint || !in_range(p, (lua_Number)n))
    rv_fail_value(L, field, push_number_expected(L, p), v);
  lua_pushinteger(L, n);
}

/* push boolean param `p` for the value at `v`: a boolean or "true"/"false" */
static void convert_boolean(lua_State *L, int v, const char *field) {
  static const char *const expected = "true or false";
  v = lua_absindex(L, v);
  if (lua_type(L, v) == LUA_TBOOLEAN) {
    lua_pushvalue(L, v);
    return;
  }
  if (lua_type(L, v) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, v, &len);
    if (same(s, len, "true") || same(s, len, "false")) {
      lua_pushboolean(L, s[0] == 't');
      return;
    }
  }
  rv_fail_value(L, field, expected, v);
}

/* what a required param `p` expects, for "got nothing" */
static const char *push_param_expected(lua_State *L, const rv_param *p) {
  switch (p->type) {
    case RV_PARAM_SELECT:
      return lua_pushfstring(L, "one of %s", push_list(L, p->options));
    case RV_PARAM_NUMBER:
      return push_number_expected(L, p);
    case RV_PARAM_BOOLEAN:
      return push_string(L, "true or false");
    case RV_PARAM_TEXT:
      return push_string(L, "a non-empty string");
    default:
      return push_string(L, "a value");
  }
}

/*
** Check params table `in` against the model's parameter rows and fill `out`
** with the wire form of each given value. Unknown keys fail with a
** suggestion; referenceMediaItems is left to check_references. A param of
** a type rivya does not know is copied as given.
*/
static void check_params(lua_State *L, const rv_model *m, int in, int out) {
  names valid = {NULL, NULL, NULL, NULL};
  const rv_param *p;
  char field[FIELD_LEN];
  valid.params = m->params;
  valid.extra = m->references ? RV_REFERENCES_KEY : NULL;
  if (in != 0) {
    lua_pushnil(L);
    while (lua_next(L, in) != 0) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING || !known(L, -1, &valid))
        fail_unknown_key(L, "params", -1, &valid, "params");
    }
  }
  for (p = m->params; p->name != NULL; p++) {
    snprintf(field, sizeof field, "params.%s", p->name);
    if (in == 0) {
      lua_pushnil(L);
    } else {
      lua_pushstring(L, p->name);
      lua_rawget(L, in);
    }
    if (lua_isnil(L, -1)) {
      if (p->required)
        rv_fail_expected(L, field, push_param_expected(L, p), "nothing");
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
        check_text(L, -1, field, p->max_code_points, p->required);
        lua_pushvalue(L, -1);
        break;
      case RV_PARAM_BOOLEAN:
        convert_boolean(L, -1, field);
        break;
      default:
        lua_pushvalue(L, -1);            /* not understood: passed through */
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
    a = rv_describe(L, -2);
    b = rv_describe(L, -2);
    rv_fail(L, field, "one value", lua_pushfstring(L, "%s and %s", a, b),
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
  names n = {NULL, NULL, NULL, NULL};
  list[0] = name;
  list[1] = NULL;
  n.list = list;
  lua_pushnil(L);
  while (lua_next(L, item) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (!same(s, len, name) && rv_suggest(s, len, names_at, &n, 2) != NULL)
        rv_fail(L, field, expected, "nothing",
             "%s: expected %s; got nothing (is %s a typo of %s?)", field,
             expected, rv_describe(L, -1), name);
    }
  }
  rv_fail_expected(L, field, expected, "nothing");
}

/*
** The value at `idx` must be a table (`expected` says which); a string is
** taken for a local path, which only client:create and client:generate
** upload, and the message says so.
*/
static void need_table(lua_State *L, int idx, const char *field,
                       const char *expected) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *got = rv_describe(L, idx);
    rv_fail(L, field, expected, got,
         "%s: expected %s; got %s: local paths are uploaded by client:create "
         "and client:generate, while rivya.validate needs file tables",
         field, expected, got);
  }
  if (lua_type(L, idx) != LUA_TTABLE) rv_fail_value(L, field, expected, idx);
}

/*
** Check reference `i` (at `item`) of model `m` and push it in the form the
** API takes: {url, kind, name?, mimeType?, durationSeconds?, durationToken?}.
** Counts it in `counts` by kind.
*/
static void check_item(lua_State *L, const rv_catalog *cat, const rv_model *m,
                       int item, int i, int *counts) {
  const rv_references *r = m->references;
  const rv_upload_rule *rule;
  char prefix[PREFIX_LEN], field[FIELD_LEN];
  int f, kind = -1, out;
  snprintf(prefix, sizeof prefix, "params.%s[%d]", RV_REFERENCES_KEY, i);
  need_table(L, item, prefix, "a file table from client:upload");
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
        if (lua_type(L, v) != LUA_TSTRING) rv_fail_value(L, field, expected, v);
        s = lua_tolstring(L, v, &len);
        k = (len > 7 && strncmp(s, "http://", 7) == 0) ? 7
          : (len > 8 && strncmp(s, "https://", 8) == 0) ? 8 : 0;
        if (k == 0) rv_fail_value(L, field, expected, v);
        for (; k < len; k++)
          if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] == 0x7F)
            rv_fail_value(L, field, expected, v);
        break;
      }
      case ITEM_KIND: {
        const char *expected = lua_pushfstring(L, "one of %s",
                                               push_list(L, r->kinds));
        if (lua_isnil(L, v)) fail_missing(L, item, field, name, expected);
        if (lua_type(L, v) != LUA_TSTRING ||
            (kind = list_index(L, v, r->kinds)) < 0 || kind >= MAX_KINDS)
          rv_fail_value(L, field, expected, v);
        counts[kind]++;
        break;
      }
      case ITEM_TEXT:
        check_text(L, v, field, 0, 0);
        break;
      case ITEM_MIME:
        rule = upload_rule(uploads_of(cat, m), r->kinds[kind]);
        if (lua_type(L, v) != LUA_TSTRING ||
            (rule != NULL && !is_option(L, v, rule->mime))) {
          const char *list = rule ? push_list(L, rule->mime) : "a MIME type";
          rv_fail_value(L, field,
                     lua_pushfstring(L, "one of %s (%s references of %s)",
                                     list, r->kinds[kind], m->id), v);
        }
        break;
      case ITEM_SECONDS: {
        lua_Number x = lua_tonumber(L, v);
        if (lua_type(L, v) != LUA_TNUMBER || !(x >= 0) || x - x != 0)
          rv_fail_value(L, field, "a number of seconds, 0 or more", v);
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
          lua_pushfstring(L, "params.%s: %s tops out at %s%s%s; %s was "
                          "clamped to %s", rule->param, mode->name,
                          rule->value, rule->note ? " " : "",
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
static void check_references(lua_State *L, const rv_catalog *cat,
                             const rv_model *m, int in, int out, int warnings) {
  const rv_references *r = m->references;
  const rv_mode *mode;
  char field[FIELD_LEN];
  int counts[MAX_KINDS] = {0};
  lua_Integer n = 0, maxkey = 0, i;
  int list, items;
  if (r == NULL) return;
  snprintf(field, sizeof field, "params.%s", RV_REFERENCES_KEY);
  lua_pushstring(L, RV_REFERENCES_KEY);
  lua_rawget(L, in);
  list = lua_gettop(L);
  if (lua_isnil(L, list)) {
    lua_pop(L, 1);
    return;
  }
  need_table(L, list, field, "an array of file tables from client:upload");
  /* a sequence: keys 1..n and nothing else */
  lua_pushnil(L);
  while (lua_next(L, list) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      if (lua_type(L, -1) == LUA_TSTRING)
        rv_fail(L, field, "an array of file tables", "a table with named keys",
             "%s: expected an array of file tables; got a table with the key "
             "%s (wrap a single file in { })", field, rv_describe(L, -1));
      rv_fail(L, field, "an array of file tables", "a table with other keys",
           "%s: expected an array of file tables; got a table with the key "
           "%s", field, rv_describe(L, -1));
    }
    n++;
    if (lua_tointeger(L, -1) > maxkey) maxkey = lua_tointeger(L, -1);
  }
  if (maxkey != n)
    rv_fail(L, field, "an array of file tables", "a table with holes",
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
    rv_fail_expected(L, field, expected, got);
  }
  lua_createtable(L, (int)n, 0);
  items = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    check_item(L, cat, m, lua_gettop(L), (int)i, counts);
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
    rv_fail_expected(L, field, expected, got);
  }
  lua_setfield(L, out, RV_REFERENCES_KEY);
  lua_pop(L, 1);
  apply_mode_rules(L, mode, out, warnings);
}

/* ---------------------------------------------------------------------- */
/* The request                                                             */
/* ---------------------------------------------------------------------- */

/*
** Check the request at index 1 against catalog `cat` and push body,
** warnings. Returns the model. Runs under lua_pcall (see rv_protect).
*/
static const rv_model *build_body(lua_State *L, const rv_catalog *cat) {
  names keys = {NULL, NULL, NULL, NULL};
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
        rv_fail(L, "files", "params.referenceMediaItems",
                "a top-level files field",
                "files: a top-level files field is rejected by the API; put "
                "uploaded files in params.referenceMediaItems");
      if (known(L, -1, &keys)) continue;
    }
    fail_unknown_key(L, NULL, -1, &keys, "the request");
  }
  lua_pushstring(L, "model");
  lua_rawget(L, 1);
  m = check_model(L, cat, 2);
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
  if (!lua_isnil(L, in) && lua_type(L, in) != LUA_TTABLE)
    rv_fail_value(L, "params", "a table of model parameters", in);
  check_params(L, m, lua_isnil(L, in) ? 0 : in, out);
  if (!lua_isnil(L, in)) check_references(L, cat, m, in, out, warnings);
  lua_settop(L, out);
  lua_setfield(L, body, "params");
  return m;
}

/* the catalog at index 1 of a protected run, taken off the stack */
static const rv_catalog *take_catalog(lua_State *L) {
  const rv_catalog *cat = (const rv_catalog *)lua_touserdata(L, 1);
  lua_remove(L, 1);              /* the caller's frame still holds it */
  return cat;
}

/* lua_pcall'ed body of cat:validate: body, warnings */
static int validate_run(lua_State *L) {
  const rv_catalog *cat = take_catalog(L);
  build_body(L, cat);
  return 2;
}

/* lua_pcall'ed body of cat:estimate: credits */
static int estimate_run(lua_State *L) {
  const rv_catalog *cat = take_catalog(L);
  const rv_model *m = build_body(L, cat);
  if (m->billing == NULL || strcmp(m->billing, "FIXED") != 0 || !m->has_credits) {
    rv_error_push(L, "unknown", NULL, "unknown: %s is billed %s; only FIXED "
                  "billing is known before a run (the task's final_credits "
                  "tell afterwards)", m->id,
                  m->billing ? m->billing : "without a billing_type");
    lua_error(L);
  }
  lua_pushinteger(L, m->credits);
  return 1;
}

/*
** cat:validate(req) -> body, warnings | nil, err. `req` must be a table
** (else raises); body is the JSON-ready create body, warnings an array of
** strings (empty when none).
*/
/* cat:method(req): the arguments checked, then `run` protected */
static int catalog_call(lua_State *L, lua_CFunction run, int nresults) {
  rv_catalog_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return rv_protect(L, run, 2, nresults);
}

int rv_validate(lua_State *L) {
  return catalog_call(L, validate_run, 2);
}

/*
** cat:estimate(req) -> credits | nil, err: validates `req` like
** cat:validate, then gives the credits a run reserves (an integer): the
** model's base_credits when its billing is FIXED, else nil and an error
** with code "unknown".
*/
int rv_estimate(lua_State *L) {
  return catalog_call(L, estimate_run, 1);
}

/* ---------------------------------------------------------------------- */
/* Uploads                                                                 */
/* ---------------------------------------------------------------------- */

/* push a list of strings as a Lua array */
static void push_strings(lua_State *L, const char *const *list) {
  lua_Integer i;
  lua_newtable(L);
  for (i = 0; list[i] != NULL; i++) {
    lua_pushstring(L, list[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/*
** Push the upload rules `rules` as {kind = {max_bytes = n, mime = {...}}}.
*/
void rv_push_uploads(lua_State *L, const rv_upload_rule *rules) {
  luaL_checkstack(L, 4, NULL);
  lua_newtable(L);
  for (; rules->kind != NULL; rules++) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, rules->max_bytes);
    lua_setfield(L, -2, "max_bytes");
    push_strings(L, rules->mime);
    lua_setfield(L, -2, "mime");
    lua_setfield(L, -2, rules->kind);
  }
}

/* raise unless argument `arg` is nil, absent or a string (a model id) */
static void check_model_arg(lua_State *L, int arg) {
  if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TSTRING)
    luaL_typeerror(L, arg, "nil or model id");
}

/* lua_pcall'ed body of cat:upload_rules(model?) */
static int upload_rules_run(lua_State *L) {
  const rv_catalog *cat = take_catalog(L);
  const rv_model *m = lua_isnil(L, 1) ? NULL : find_model(L, cat, 1);
  rv_push_uploads(L, uploads_of(cat, m));
  return 1;
}

/*
** cat:upload_rules(model?) -> {image = {max_bytes, mime}, ...} | nil, err:
** the Files API's limits for `model`, or its defaults when nil.
*/
int rv_upload_rules(lua_State *L) {
  rv_catalog_check(L, 1);
  check_model_arg(L, 2);
  lua_settop(L, 2);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return rv_protect(L, upload_rules_run, 2, 1);
}

/* lua_pcall'ed body of cat:check_upload(model?, kind, mime?, size) */
static int check_upload_run(lua_State *L) {
  const rv_catalog *cat = take_catalog(L);
  const rv_model *m = lua_isnil(L, 1) ? NULL : find_model(L, cat, 1);
  const rv_upload_rule *rules = uploads_of(cat, m), *rule;
  const char *whose = m ? lua_pushfstring(L, " (%s)", m->id)
                        : " (no model: the Files API defaults)";
  lua_Integer size = lua_tointeger(L, 4);
  names kinds = {NULL, NULL, NULL, NULL};
  const char *kind_list[RV_MAX_KINDS + 1];
  size_t i;
  for (i = 0; rules[i].kind != NULL && i < RV_MAX_KINDS; i++)
    kind_list[i] = rules[i].kind;
  kind_list[i] = NULL;
  kinds.list = kind_list;
  if (m != NULL && i == 0)
    rv_fail(L, "file", "a model that takes reference media", m->id,
            "file: %s takes no reference media, so no uploads for it: upload "
            "without a model, or name a model whose reference_media lists %s "
            "files", m->id, lua_tostring(L, 2));
  if (!known(L, 2, &kinds)) {
    const char *list = push_names(L, &kinds);
    rv_fail_value(L, "file",
                  lua_pushfstring(L, "kind one of %s%s", list, whose), 2);
  }
  rule = upload_rule(rules, lua_tostring(L, 2));
  if (!lua_isnil(L, 3) && !is_option(L, 3, rule->mime)) {
    const char *list = push_list(L, rule->mime);
    rv_fail_value(L, "file",
                  lua_pushfstring(L, "a MIME type of %s for %s files%s", list,
                                  rule->kind, whose), 3);
  }
  if (size > rule->max_bytes) {
    const char *expected = lua_pushfstring(L,
        "at most %I bytes (%I MB) for %s files%s", (LUAI_UACINT)rule->max_bytes,
        (LUAI_UACINT)(rule->max_bytes / 1000000), rule->kind, whose);
    rv_fail_expected(L, "file", expected,
                     lua_pushfstring(L, "%I bytes", (LUAI_UACINT)size));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** cat:check_upload(model?, kind, mime?, size) -> true | nil, err: whether
** the Files API takes a file of `kind` ("image", "video", "audio"), MIME
** type `mime` (nil: not known, not checked) and `size` bytes, for `model`
** or without one. Failures have code validation_failed, field "file".
*/
int rv_check_upload(lua_State *L) {
  rv_catalog_check(L, 1);
  check_model_arg(L, 2);
  luaL_checkstring(L, 3);
  if (!lua_isnoneornil(L, 4)) luaL_checkstring(L, 4);
  luaL_argcheck(L, luaL_checkinteger(L, 5) >= 0, 5, "size must be >= 0");
  lua_settop(L, 5);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  lua_pushvalue(L, 5);
  return rv_protect(L, check_upload_run, 5, 1);
}
