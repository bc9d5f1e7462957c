/*
** catalog.c — a model catalog compiled once into C structures.
**
** core.catalog(models, defaults) takes the catalog as Lua data (the
** documented objects of GET /api/v1/models, or the snapshot rivya ships)
** and builds the rv_model array that validate.c interprets, so validating a
** request never walks Lua tables of the catalog. The result is a
** rivya.Catalog userdata; every array and string it points to is anchored
** in its user value (a table), so nothing is freed by hand and nothing moves.
**
** The catalog is data from the network: anything malformed is skipped or
** read as "not said", never an error. A model without a string id is left
** out; a param whose type rivya does not know is kept, unchecked.
*/
#include <string.h>

#include "rivya.h"

/* the compile state: where to anchor what we allocate */
typedef struct compiler {
  lua_State *L;
  int anchor;                        /* the table anchoring everything */
} compiler;

/* Allocate `size` zeroed bytes that live as long as the catalog. */
static void *alloc(compiler *c, size_t size) {
  void *p = lua_newuserdatauv(c->L, size ? size : 1, 0);
  memset(p, 0, size ? size : 1);
  lua_rawseti(c->L, c->anchor, (lua_Integer)lua_rawlen(c->L, c->anchor) + 1);
  return p;
}

/* Anchor the string at `idx` and return it (NULL when not a string). */
static const char *keep(compiler *c, int idx) {
  if (lua_type(c->L, idx) != LUA_TSTRING) return NULL;
  lua_pushvalue(c->L, idx);
  lua_rawseti(c->L, c->anchor, (lua_Integer)lua_rawlen(c->L, c->anchor) + 1);
  return lua_tostring(c->L, idx);
}

/* Anchor a formatted string (lua_pushfstring rules). */
static const char *keepf(compiler *c, const char *fmt, ...) {
  const char *s;
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(c->L, fmt, ap);
  va_end(ap);
  s = keep(c, -1);
  lua_pop(c->L, 1);
  return s;
}

/* the string field `key` of the table at `t`, anchored, or NULL */
static const char *get_string(compiler *c, int t, const char *key) {
  const char *s;
  lua_getfield(c->L, t, key);
  s = keep(c, -1);
  lua_pop(c->L, 1);
  return s;
}

/* the number field `key` of the table at `t` into *out; 0 when not a number */
static int get_number(lua_State *L, int t, const char *key, lua_Number *out) {
  int ok;
  lua_getfield(L, t, key);
  ok = lua_type(L, -1) == LUA_TNUMBER;
  if (ok) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return ok;
}

static int get_bool(lua_State *L, int t, const char *key) {
  int yes;
  lua_getfield(L, t, key);
  yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* push field `key` of the table at `t` when it is a table; 0 (nothing pushed) else */
static int get_table(lua_State *L, int t, const char *key) {
  if (lua_getfield(L, t, key) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  return 0;
}

/*
** The array of strings at `idx` as a NULL-terminated list. Numbers become
** their decimal form and booleans "true"/"false" (select options sent as
** strings); other items are skipped.
*/
static const char *const *string_list(compiler *c, int idx) {
  lua_State *L = c->L;
  size_t n = lua_istable(L, idx) ? lua_rawlen(L, idx) : 0, i, k = 0;
  const char **list = (const char **)alloc(c, (n + 1) * sizeof *list);
  idx = lua_absindex(L, idx);
  for (i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, (lua_Integer)i);
    if (t == LUA_TNUMBER && lua_isinteger(L, -1))
      list[k++] = keepf(c, "%I", (LUAI_UACINT)lua_tointeger(L, -1));
    else if (t == LUA_TNUMBER)
      list[k++] = keepf(c, "%f", lua_tonumber(L, -1));
    else if (t == LUA_TBOOLEAN)
      list[k++] = lua_toboolean(L, -1) ? "true" : "false";
    else if (t == LUA_TSTRING)
      list[k++] = keep(c, -1);
    lua_pop(L, 1);
  }
  list[k] = NULL;
  return list;
}

/* the strings list field `key` of the table at `t` (empty when absent) */
static const char *const *get_list(compiler *c, int t, const char *key) {
  const char *const *list;
  lua_getfield(c->L, t, key);
  list = string_list(c, -1);
  lua_pop(c->L, 1);
  return list;
}

/* ---- params ---- */

static const char *const param_types[] = {
  "select", "text", "number", "boolean", NULL
};

/* compile the param object at `t` into `p`; 0 when it has no key */
static int compile_param(compiler *c, int t, rv_param *p) {
  lua_State *L = c->L;
  const char *type;
  lua_Number x;
  int i;
  if ((p->name = get_string(c, t, "key")) == NULL) return 0;
  type = get_string(c, t, "type");
  p->type = RV_PARAM_OTHER;
  for (i = 0; type != NULL && param_types[i] != NULL; i++)
    if (strcmp(type, param_types[i]) == 0) p->type = (rv_param_type)i;
  p->required = get_bool(L, t, "required");
  switch (p->type) {
    case RV_PARAM_SELECT:
      p->options = get_list(c, t, "options");
      if (p->options[0] == NULL) p->type = RV_PARAM_OTHER;  /* nothing to check */
      break;
    case RV_PARAM_NUMBER:
      p->has_min = get_number(L, t, "min", &p->min);
      p->has_max = get_number(L, t, "max", &p->max);
      p->integer = get_bool(L, t, "integer");
      break;
    case RV_PARAM_TEXT:
      if (get_number(L, t, "max_length", &x) && x >= 1 && x < 1e15)
        p->max_code_points = (size_t)x;
      break;
    default:
      break;
  }
  return 1;
}

static const rv_param *compile_params(compiler *c, int model) {
  lua_State *L = c->L;
  size_t n = 0, i, k = 0;
  rv_param *params;
  int list = get_table(L, model, "params");
  if (list) n = lua_rawlen(L, -1);
  params = (rv_param *)alloc(c, (n + 1) * sizeof *params);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TTABLE &&
        compile_param(c, lua_gettop(L), &params[k]))
      k++;
    lua_pop(L, 1);
  }
  if (list) lua_pop(L, 1);
  params[k].name = NULL;
  return params;
}

/* ---- upload limits ---- */

/* the order kinds are listed in messages: image, video, audio, the rest */
static int kind_rank(const char *kind) {
  if (strcmp(kind, "image") == 0) return 0;
  if (strcmp(kind, "video") == 0) return 1;
  if (strcmp(kind, "audio") == 0) return 2;
  return 3;
}

static int kind_before(const char *a, const char *b) {
  int ra = kind_rank(a), rb = kind_rank(b);
  return ra != rb ? ra < rb : strcmp(a, b) < 0;
}

/*
** The limits table at `t` ({kind = {max_bytes, mime_types}}) as rules in a
** stable order; NULL when it names no kind.
*/
static const rv_upload_rule *compile_limits(compiler *c, int t) {
  lua_State *L = c->L;
  size_t n = 0, i;
  rv_upload_rule *rules;
  t = lua_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) n++;
    lua_pop(L, 1);
  }
  if (n == 0) return NULL;
  rules = (rv_upload_rule *)alloc(c, (n + 1) * sizeof *rules);
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0 && i < n) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      rv_upload_rule r;
      lua_Number x;
      size_t j;
      int v = lua_gettop(L);
      r.kind = keep(c, -2);
      r.max_bytes = get_number(L, v, "max_bytes", &x) && x >= 0 && x < 9e15
                        ? (lua_Integer)x : LUA_MAXINTEGER;
      lua_getfield(L, v, "mime_types");
      if (!lua_istable(L, -1)) {              /* rivya's older spelling */
        lua_pop(L, 1);
        lua_getfield(L, v, "mime");
      }
      r.mime = string_list(c, -1);
      lua_pop(L, 1);
      for (j = i; j > 0 && kind_before(r.kind, rules[j - 1].kind); j--)
        rules[j] = rules[j - 1];
      rules[j] = r;
      i++;
    }
    lua_pop(L, 1);
  }
  rules[i].kind = NULL;
  return rules;
}

/* ---- reference media ---- */

/* push `s` and return it (lua_pushstring returns nothing before 5.3) */
static const char *push_string(lua_State *L, const char *s) {
  lua_pushstring(L, s);
  return lua_tostring(L, -1);
}

/* "image" -> "images", "audio" -> "audio files" */
static const char *plural(lua_State *L, const char *kind, int n) {
  if (n == 1) return push_string(L, kind);
  if (strcmp(kind, "audio") == 0) return push_string(L, "audio files");
  return lua_pushfstring(L, "%ss", kind);
}

/*
** "up to 2 images", "1 video plus at most 1 image": what the counts of a
** mode take, kinds that must be present first.
*/
static const char *summarize(compiler *c, const rv_kind_count *counts) {
  lua_State *L = c->L;
  luaL_Buffer b;
  const char *s;
  int pass, first = 1;
  luaL_buffinit(L, &b);
  for (pass = 0; pass < 2; pass++) {
    const rv_kind_count *k;
    for (k = counts; k->kind != NULL; k++) {
      if ((pass == 0) != (k->min > 0) || k->max == 0) continue;
      if (!first) luaL_addstring(&b, " plus ");
      first = 0;
      if (k->min == k->max)
        lua_pushfstring(L, "%d %s", k->max, plural(L, k->kind, k->max));
      else if (k->min == 0)
        lua_pushfstring(L, "at most %d %s", k->max, plural(L, k->kind, k->max));
      else if (k->min == 1)
        lua_pushfstring(L, "up to %d %s", k->max, plural(L, k->kind, k->max));
      else
        lua_pushfstring(L, "%d to %d %s", k->min, k->max,
                        plural(L, k->kind, k->max));
      lua_remove(L, -2);
      luaL_addvalue(&b);
    }
  }
  luaL_pushresult(&b);
  s = keep(c, -1);
  lua_pop(L, 1);
  return s;
}

/* an int from a Lua number, clamped to [0, 1000] */
static int small_int(lua_State *L, int idx) {
  lua_Number x = lua_tonumber(L, idx);
  return x > 1000 ? 1000 : x >= 0 ? (int)x : 0;
}

/*
** The counts table at `t` ({kind = [min, max]}) of a mode. Kinds listed in
** `kinds` only, in their order.
*/
static const rv_kind_count *compile_counts(compiler *c, int t,
                                           const char *const *kinds) {
  lua_State *L = c->L;
  size_t n = 0, k = 0, i;
  rv_kind_count *counts;
  while (kinds[n] != NULL) n++;
  counts = (rv_kind_count *)alloc(c, (n + 1) * sizeof *counts);
  for (i = 0; i < n; i++) {
    lua_getfield(L, t, kinds[i]);
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      counts[k].kind = kinds[i];
      counts[k].min = small_int(L, -2);
      counts[k].max = small_int(L, -1);
      if (counts[k].max >= counts[k].min) k++;
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  counts[k].kind = NULL;
  return counts;
}

/*
** rivya's notes on a mode (the model pages' prose, kept as data in the
** snapshot): an array of {param, clamp_max, unit} or {param, ignored}.
*/
static const rv_mode_rule *compile_notes(compiler *c, int mode) {
  lua_State *L = c->L;
  size_t n = 0, i, k = 0;
  rv_mode_rule *rules;
  int list = get_table(L, mode, "rivya_notes");
  if (list) n = lua_rawlen(L, -1);
  rules = (rv_mode_rule *)alloc(c, (n + 1) * sizeof *rules);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TTABLE) {
      int t = lua_gettop(L);
      rv_mode_rule *r = &rules[k];
      r->param = get_string(c, t, "param");
      if ((r->value = get_string(c, t, "clamp_max")) != NULL) {
        r->action = RV_RULE_CLAMP_MAX;
        r->note = get_string(c, t, "unit");
      } else {
        r->action = RV_RULE_IGNORED;
        r->note = get_string(c, t, "ignored");
      }
      if (r->param != NULL && (r->value != NULL || r->note != NULL)) k++;
    }
    lua_pop(L, 1);
  }
  if (list) lua_pop(L, 1);
  rules[k].param = NULL;
  return rules;
}

/* the kinds whose references must carry a durationToken by default */
static const char *const *default_token_kinds(compiler *c,
                                              const char *const *kinds) {
  size_t n = 0, k = 0, i;
  const char **list;
  while (kinds[n] != NULL) n++;
  list = (const char **)alloc(c, (n + 1) * sizeof *list);
  for (i = 0; i < n; i++)
    if (strcmp(kinds[i], "video") == 0 || strcmp(kinds[i], "audio") == 0)
      list[k++] = kinds[i];
  list[k] = NULL;
  return list;
}

/* the reference_media object at `t`, or NULL when it takes none */
static const rv_references *compile_references(compiler *c, int t) {
  lua_State *L = c->L;
  rv_references *r;
  rv_mode *modes;
  lua_Number x;
  size_t n = 0, i, k = 0, nkinds = 0;
  const char *const *kinds = get_list(c, t, "kinds");
  while (kinds[nkinds] != NULL) nkinds++;
  if (nkinds == 0 || nkinds > RV_MAX_KINDS) return NULL;
  r = (rv_references *)alloc(c, sizeof *r);
  r->kinds = kinds;
  if (get_number(L, t, "max_items", &x) && x >= 0) r->max_items = x > 1000 ? 1000 : (int)x;
  else r->max_items = 1000;
  if (get_table(L, t, "duration_token_kinds")) {
    r->token_kinds = string_list(c, -1);
    lua_pop(L, 1);
  } else {
    r->token_kinds = default_token_kinds(c, kinds);
  }
  if (get_table(L, t, "modes")) n = lua_rawlen(L, -1);
  modes = (rv_mode *)alloc(c, (n + 1) * sizeof *modes);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TTABLE) {
      int m = lua_gettop(L);
      modes[k].name = get_string(c, m, "mode");
      if (modes[k].name != NULL && get_table(L, m, "counts")) {
        modes[k].counts = compile_counts(c, lua_gettop(L), kinds);
        lua_pop(L, 1);
        modes[k].summary = summarize(c, modes[k].counts);
        modes[k].rules = compile_notes(c, m);
        k++;
      }
    }
    lua_pop(L, 1);
  }
  if (n > 0) lua_pop(L, 1);
  modes[k].name = NULL;
  r->modes = modes;
  return r;
}

/* ---- models ---- */

static int has_string(const char *const *list, const char *s) {
  for (; *list != NULL; list++)
    if (strcmp(*list, s) == 0) return 1;
  return 0;
}

/* compile the model object at `t` into `m`; 0 when it has no id */
static int compile_model(compiler *c, int t, rv_model *m) {
  lua_State *L = c->L;
  lua_Number x;
  if ((m->id = get_string(c, t, "id")) == NULL) return 0;
  m->api_status = get_string(c, t, "api_status");
  m->runtime = get_string(c, t, "runtime");
  m->billing = get_string(c, t, "billing_type");
  if (get_number(L, t, "base_credits", &x) && x >= 0 && x < 9e15 &&
      x == (lua_Number)(lua_Integer)x) {
    m->has_credits = 1;
    m->credits = (lua_Integer)x;
  }
  /* a prompt is required by models that take text: a prompt length or a "text" input */
  if (get_number(L, t, "max_prompt_length", &x) && x >= 1) {
    m->prompt_required = 1;
    m->prompt_max_code_points = x < 1e15 ? (size_t)x : 0;
  } else {
    m->prompt_required = has_string(get_list(c, t, "supported_api_inputs"), "text");
  }
  m->params = compile_params(c, t);
  if (get_table(L, t, "reference_media")) {
    int r = lua_gettop(L);
    m->references = compile_references(c, r);
    if (get_table(L, r, "limits")) {
      m->uploads = compile_limits(c, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return 1;
}

static int catalog_tostring(lua_State *L) {
  const rv_catalog *cat = rv_catalog_check(L, 1);
  int n = 0;
  while (cat->models[n].id != NULL) n++;
  lua_pushfstring(L, "rivya.Catalog(%d models)", n);
  return 1;
}

/*
** core.catalog(models, defaults) -> a rivya.Catalog. `models` is an array
** of catalog model objects; `defaults` the Files API rules without a model
** ({kind = {max_bytes, mime_types}}). Compiled once; the tables may change
** afterwards without effect.
*/
static int catalog_new(lua_State *L) {
  compiler c;
  rv_catalog *cat;
  rv_model *models;
  size_t n, i, k = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checkstack(L, 20, NULL);
  lua_settop(L, 2);
  cat = (rv_catalog *)lua_newuserdatauv(L, sizeof *cat, 1);   /* 3 */
  memset(cat, 0, sizeof *cat);
  luaL_setmetatable(L, RV_CATALOG_MT);
  lua_newtable(L);                                            /* 4 */
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 3, 1);
  c.L = L;
  c.anchor = 4;
  n = lua_rawlen(L, 1);
  models = (rv_model *)alloc(&c, (n + 1) * sizeof *models);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 1, (lua_Integer)i) == LUA_TTABLE &&
        compile_model(&c, lua_gettop(L), &models[k]))
      k++;
    lua_pop(L, 1);
  }
  models[k].id = NULL;
  cat->models = models;
  cat->defaults = compile_limits(&c, 2);
  if (cat->defaults == NULL)
    cat->defaults = (const rv_upload_rule *)alloc(&c, sizeof(rv_upload_rule));
  lua_settop(L, 3);
  return 1;
}

/* the rivya.Catalog at `idx`, or raise */
const rv_catalog *rv_catalog_check(lua_State *L, int idx) {
  return (const rv_catalog *)luaL_checkudata(L, idx, RV_CATALOG_MT);
}

static const luaL_Reg catalog_methods[] = {
  {"validate", rv_validate},
  {"estimate", rv_estimate},
  {"upload_rules", rv_upload_rules},
  {"check_upload", rv_check_upload},
  {NULL, NULL}
};

static const luaL_Reg catalog_meta[] = {
  {"__tostring", catalog_tostring},
  {NULL, NULL}
};

/* register RV_CATALOG_MT and set core.catalog in the table on top */
int rv_catalog_open(lua_State *L) {
  rv_newmetatable(L, RV_CATALOG_MT, catalog_methods, catalog_meta);
  lua_pop(L, 1);
  lua_pushcfunction(L, catalog_new);
  lua_setfield(L, -2, "catalog");
  return 0;
}
