/*
** validate_fuzz.c — libFuzzer target for the offline validator:
** the methods validate, estimate, upload_rules and check_upload of the
** catalog snapshot rivya ships compiled by core.catalog (src/catalog.c,
** src/validate.c, lua/rivya/catalog_snapshot.lua), driven through a real
** lua_State.
**
** The fuzzer's bytes decode into Lua values (decode_value): nil, booleans,
** integers, floats of any bit pattern (NaN, infinities, -0.0), strings from
** the model schema's own names (so the fuzzer reaches deep checks at once),
** near misses of them, raw bytes, tables nested a few levels, tables with
** metatables whose every metamethod raises, functions and userdata.
**
** Properties checked beyond "no crash, no sanitizer report":
** - validate/estimate never raise for a table, nor upload_rules and
**   check_upload for arguments of the documented types;
** - a failure is `nil, err` with a rivya.Error whose code is
**   validation_failed and whose message is one line of valid UTF-8;
** - no metamethod of the caller's tables ever runs;
** - a body that passes validates again to the same body (the wire form
**   is a fixed point) and encodes as JSON (lua-cjson).
*/
#include <math.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "../src/rivya.h"
#include "fuzz.h"

#define MAX_DEPTH 5
#define MAX_ENTRIES 8
#define MAX_DICT 512

#ifndef RV_ROOT
#define RV_ROOT "."
#endif

static lua_State *L;
static const rv_catalog *fcat;        /* the compiled snapshot */
static const char *dict[MAX_DICT];
static size_t dict_len[MAX_DICT];
static int ndict;
static int metamethod_ran;

/* the metamethods of hostile tables: record and raise */
static int hostile(lua_State *L1) {
  metamethod_ran = 1;
  return luaL_error(L1, "a metamethod of the caller's table ran");
}

static int a_function(lua_State *L1) {
  (void)L1;
  return 0;
}

/*
** Collect every string of the table at `idx` (keys and values, nested)
** into dict; each is anchored in the table at `words` so it stays alive.
*/
static void collect_strings(int idx, int words, int depth) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int k;
    for (k = -2; k <= -1; k++) {
      if (lua_type(L, k) == LUA_TSTRING && ndict < MAX_DICT) {
        size_t len;
        const char *s = lua_tolstring(L, k, &len);
        int i, dup = 0;
        for (i = 0; i < ndict && !dup; i++)
          dup = dict_len[i] == len && memcmp(dict[i], s, len) == 0;
        if (!dup) {
          lua_pushvalue(L, k);
          lua_rawseti(L, words, ndict + 1);
          dict[ndict] = s;
          dict_len[ndict] = len;
          ndict++;
        }
      }
    }
    if (lua_type(L, -1) == LUA_TTABLE && depth < 8)
      collect_strings(-1, words, depth + 1);
    lua_pop(L, 1);
  }
}

static void add_word(const char *s) {
  lua_pushstring(L, s);
  lua_setfield(L, -2, s);
}

static void setup(void) {
  static const char *const extra[] = {
    "model", "prompt", "params", "client_request_id", "idempotency_key",
    "files", "referenceMediaItems", "url", "kind", "name", "mimeType",
    "mime_type", "durationSeconds", "duration_seconds", "durationToken",
    "duration_token", "id", "file_id", "image", "video", "audio",
    "http://cdn.example/a.png", "https://cdn.example/b.mp4", "http://",
    "https://", "dt_0123456789abcdef", "image/png", "image/jpeg",
    "video/mp4", "video/quicktime", "audio/mpeg", "audio/wav", "10", "5",
    "15", "1080p", "720p", "true", "false", "0", "-1", "2147483648", "",
    "aspectRatio", "aspect-ratio", "Duration", "wan-2-7", "\xC3\xA9",
    "\xE2\x80\xA8", "\xF0\x9F\x8E\xA5", "\xED\xA0\x80", "\xC0\xAF", NULL
  };
  int i;
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);                       /* the core functions under test */
  rv_error_open(L);
  rv_catalog_open(L);
  lua_setglobal(L, "core");
  /* the snapshot, compiled; core.validate etc. call its methods */
  if (luaL_dofile(L, RV_ROOT "/lua/rivya/catalog_snapshot.lua") != LUA_OK) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_setglobal(L, "SNAPSHOT");
  if (luaL_dostring(L,
      "CATALOG = core.catalog(SNAPSHOT.models, SNAPSHOT.files_defaults)\n"
      "for _, f in ipairs{'validate', 'estimate', 'upload_rules', 'check_upload'} do\n"
      "  core[f] = function(...) return CATALOG[f](CATALOG, ...) end\n"
      "end\n") != LUA_OK) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_getglobal(L, "CATALOG");
  fcat = rv_catalog_check(L, -1);
  lua_pop(L, 1);
  /* the words: the catalog's strings plus the request's own names */
  lua_newtable(L);                       /* anchors the words */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.words");
  lua_getglobal(L, "SNAPSHOT");
  lua_newtable(L);
  for (i = 0; extra[i] != NULL; i++) add_word(extra[i]);
  collect_strings(-1, lua_absindex(L, -3), 0);
  collect_strings(-2, lua_absindex(L, -3), 0);
  lua_pop(L, 3);
  /* the hostile metatable: every metamethod raises */
  lua_newtable(L);
  {
    static const char *const events[] = {
      "__index", "__newindex", "__len", "__pairs", "__eq", "__lt", "__le",
      "__concat", "__call", "__tostring", "__close", "__add", "__unm", NULL
    };
    for (i = 0; events[i] != NULL; i++) {
      lua_pushcfunction(L, hostile);
      lua_setfield(L, -2, events[i]);
    }
    lua_pushliteral(L, "hostile");
    lua_setfield(L, -2, "__name");
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.hostile");
  /* the Lua side of the properties: deep equality and JSON encoding */
  if (luaL_dostring(L,
      "local cjson = require 'cjson.safe'\n"
      "local function same(a, b)\n"
      "  if type(a) ~= 'table' or type(b) ~= 'table' then\n"
      "    return a == b and math.type(a) == math.type(b)\n"
      "  end\n"
      "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
      "  for k in pairs(b) do if a[k] == nil then return false end end\n"
      "  return true\n"
      "end\n"
      "fuzz_same = same\n"
      "fuzz_encode = function(v) return cjson.encode(v) end\n") != LUA_OK) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    abort();
  }
}

/* push a string near one of the dictionary's: a byte changed, cut or added */
static void push_near(fz_reader *r) {
  int i = (int)(fz_byte(r) % ndict);
  const char *s = dict[i];
  size_t len = dict_len[i], pos;
  char buf[300];
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  memcpy(buf, s, len);
  pos = len ? fz_byte(r) % (len + 1) : 0;
  switch (fz_byte(r) % 4) {
    case 0:                               /* change a byte */
      if (pos < len) buf[pos] = (char)fz_byte(r);
      break;
    case 1:                               /* cut */
      len = pos;
      break;
    case 2:                               /* insert a byte */
      memmove(buf + pos + 1, buf + pos, len - pos);
      buf[pos] = (char)fz_byte(r);
      len++;
      break;
    default:                              /* swap two neighbours */
      if (pos + 1 < len) {
        char c = buf[pos];
        buf[pos] = buf[pos + 1];
        buf[pos + 1] = c;
      }
      break;
  }
  lua_pushlstring(L, buf, len);
}

static void decode_value(fz_reader *r, int depth);

/* fill the table on top with up to MAX_ENTRIES decoded pairs */
static void fill_table(fz_reader *r, int depth, int array) {
  int t = lua_gettop(L), n = (int)(fz_byte(r) % (MAX_ENTRIES + 1)), i;
  for (i = 1; i <= n; i++) {
    if (array) {
      decode_value(r, depth + 1);
      lua_rawseti(L, t, i);
      continue;
    }
    decode_value(r, depth + 1);            /* the key */
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER &&
                              isnan(lua_tonumber(L, -1)))) {
      lua_pop(L, 1);                        /* not a valid key */
      continue;
    }
    decode_value(r, depth + 1);
    lua_rawset(L, t);
  }
}

/* push one Lua value decoded from the reader */
static void decode_value(fz_reader *r, int depth) {
  unsigned tag = fz_byte(r) % 16;
  luaL_checkstack(L, 8, NULL);
  if (depth >= MAX_DEPTH && (tag >= 10 && tag <= 13)) tag = 6;
  switch (tag) {
    case 0:
      lua_pushnil(L);
      break;
    case 1:
      lua_pushboolean(L, (int)(fz_byte(r) & 1));
      break;
    case 2:
      lua_pushinteger(L, (lua_Integer)(int8_t)fz_byte(r));
      break;
    case 3:
      lua_pushinteger(L, (lua_Integer)fz_u64(r));
      break;
    case 4: {
      uint64_t bits = fz_u64(r);
      double x;
      memcpy(&x, &bits, sizeof x);
      lua_pushnumber(L, (lua_Number)x);
      break;
    }
    case 5:                                 /* 10.0, 2.5, -0.0 ... */
      lua_pushnumber(L, (lua_Number)(int8_t)fz_byte(r) / (lua_Number)(1 + fz_byte(r) % 4));
      break;
    case 6:
    case 7:
    case 8: {
      int i = (int)(fz_byte(r) % ndict);
      lua_pushlstring(L, dict[i], dict_len[i]);
      break;
    }
    case 9: {                               /* raw bytes, up to 255 + 255 */
      const uint8_t *p;
      size_t want = fz_byte(r);
      if (want == 255) want += fz_byte(r) * 20;
      want = fz_take(r, want, &p);
      lua_pushlstring(L, (const char *)p, want);
      break;
    }
    case 10:
    case 11:
      lua_newtable(L);
      fill_table(r, depth, 0);
      break;
    case 12:
      lua_newtable(L);
      fill_table(r, depth, 1);
      break;
    case 13:
      lua_newtable(L);
      fill_table(r, depth, fz_byte(r) & 1);
      lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.hostile");
      lua_setmetatable(L, -2);
      break;
    case 14:
      push_near(r);
      break;
    default:
      switch (fz_byte(r) % 3) {
        case 0: lua_pushcfunction(L, a_function); break;
        case 1: lua_newuserdatauv(L, 8, 0); break;
        default: lua_pushlightuserdata(L, (void *)&ndict); break;
      }
      break;
  }
}

/* push a value meant for schema param `p`: mostly a plausible one */
static void decode_param_value(fz_reader *r, const rv_param *p) {
  unsigned how = fz_byte(r) % 8;
  if (how == 0) {
    decode_value(r, 2);
  } else if (p->type == RV_PARAM_SELECT && how < 6) {
    int n = 0;
    while (p->options[n] != NULL) n++;
    lua_pushstring(L, p->options[fz_byte(r) % n]);
    if (how == 5 && lua_stringtonumber(L, lua_tostring(L, -1)) != 0) lua_remove(L, -2);
    else if (how == 4 && (strcmp(lua_tostring(L, -1), "true") == 0 ||
                          strcmp(lua_tostring(L, -1), "false") == 0)) {
      int yes = strcmp(lua_tostring(L, -1), "true") == 0;
      lua_pop(L, 1);
      lua_pushboolean(L, yes);
    }
  } else if (p->type == RV_PARAM_NUMBER) {
    lua_Integer lo = (lua_Integer)p->min, hi = (lua_Integer)p->max;
    lua_Integer edges[] = {lo, hi, lo - 1, hi + 1, 0, 42};
    lua_Integer v = edges[fz_byte(r) % 6];
    if (how < 4) lua_pushinteger(L, v);
    else if (how < 6) lua_pushnumber(L, (lua_Number)v);
    else lua_pushfstring(L, "%I", (LUAI_UACINT)v);
  } else {
    push_near(r);
  }
}

/* push one reference item: a table with the reference fields, mostly plausible */
static void decode_item(fz_reader *r, const rv_model *m) {
  static const char *const fields[] = {
    "url", "kind", "name", "mimeType", "durationSeconds", "durationToken",
    "mime_type", "duration_seconds", "duration_token", "id", NULL
  };
  int t, i;
  lua_newtable(L);
  t = lua_gettop(L);
  for (i = 0; fields[i] != NULL; i++) {
    unsigned how = fz_byte(r) % 6;
    if (how == 0 || (i >= 6 && how < 5)) continue;
    lua_pushstring(L, fields[i]);
    if (how == 1) {
      decode_value(r, 3);
    } else if (i == 0) {
      lua_pushstring(L, fz_byte(r) & 1 ? "https://cdn.example/a.png" : "http://127.0.0.1:1/v.mp4");
    } else if (i == 1) {
      int n = 0;
      while (m->references->kinds[n] != NULL) n++;
      lua_pushstring(L, m->references->kinds[fz_byte(r) % n]);
    } else if (i == 3 || i == 6) {
      const rv_upload_rule *u = &m->uploads[fz_byte(r) % 2];
      int n = 0;
      while (u->mime[n] != NULL) n++;
      lua_pushstring(L, u->mime[fz_byte(r) % n]);
    } else if (i == 4 || i == 7) {
      lua_pushnumber(L, (lua_Number)fz_byte(r) / 8.0);
    } else {
      push_near(r);
    }
    lua_rawset(L, t);
  }
}

/* push a params table for model `m`, keys mostly from its schema */
static void decode_params(fz_reader *r, const rv_model *m) {
  int t, n = (int)(fz_byte(r) % 10), i, nparams = 0;
  while (m->params[nparams].name != NULL) nparams++;
  lua_newtable(L);
  t = lua_gettop(L);
  for (i = 0; i < n; i++) {
    unsigned pick = fz_byte(r) % (unsigned)(nparams + 3);
    if (pick < (unsigned)nparams) {
      lua_pushstring(L, m->params[pick].name);
      decode_param_value(r, &m->params[pick]);
    } else if (pick == (unsigned)nparams && m->references != NULL) {
      int k, items = (int)(fz_byte(r) % 4);
      lua_pushstring(L, RV_REFERENCES_KEY);
      lua_newtable(L);
      for (k = 1; k <= items; k++) {
        if (fz_byte(r) % 8 == 0) decode_value(r, 3);
        else decode_item(r, m);
        lua_rawseti(L, -2, k);
      }
    } else {
      decode_value(r, 2);
      if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))) {
        lua_pop(L, 1);
        continue;
      }
      decode_value(r, 2);
    }
    lua_rawset(L, t);
  }
}

/* a request: always a table, most often one with the request's own keys */
static void decode_request(fz_reader *r) {
  static const char *const keys[] = {
    "model", "prompt", "params", "client_request_id", "idempotency_key"
  };
  const rv_model *m = &fcat->models[0];
  unsigned shape = fz_byte(r) % 4;
  int t, i;
  if (shape == 0) {
    lua_newtable(L);
    fill_table(r, 0, 0);
    return;
  }
  lua_newtable(L);
  t = lua_gettop(L);
  lua_pushstring(L, m->id);
  lua_setfield(L, t, "model");
  lua_pushliteral(L, "a paper boat");
  lua_setfield(L, t, "prompt");
  for (i = 0; i < 5; i++) {
    unsigned what = fz_byte(r) % 4;
    if (what == 0) continue;               /* keep the default */
    lua_pushstring(L, keys[i]);
    if (what == 1) lua_pushnil(L);
    else if (i == 2 && what == 2) decode_params(r, m);
    else if (what == 2) push_near(r);
    else decode_value(r, 1);
    lua_rawset(L, t);
  }
  if (shape == 3) fill_table(r, 0, 0);      /* stray keys on top */
}

/* check the `nil, err` shape of a validation failure at `idx` (the err) */
static void check_error(int idx, const char *what) {
  size_t len;
  const char *msg;
  idx = lua_absindex(L, idx);
  FZ_CHECK(lua_type(L, idx) == LUA_TTABLE, "%s: err is a %s", what, luaL_typename(L, idx));
  FZ_CHECK(lua_getmetatable(L, idx), "%s: err has no metatable", what);
  luaL_getmetatable(L, RV_ERROR_MT);
  FZ_CHECK(lua_rawequal(L, -1, -2), "%s: err is not a rivya.Error", what);
  lua_pop(L, 2);
  lua_getfield(L, idx, "code");
  FZ_CHECK(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "validation_failed") == 0,
           "%s: code %s", what, lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, idx, "message");
  FZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "%s: message is a %s", what, luaL_typename(L, -1));
  msg = lua_tolstring(L, -1, &len);
  FZ_CHECK(len > 0 && memchr(msg, '\n', len) == NULL && memchr(msg, '\r', len) == NULL,
           "%s: message is not one line: %s", what, msg);
  FZ_CHECK(fz_utf8_ok(msg, len), "%s: message is not UTF-8: %s", what, msg);
  lua_pop(L, 1);
  lua_getfield(L, idx, "field");
  FZ_CHECK(lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING, "%s: field is a %s", what,
           luaL_typename(L, -1));
  if (lua_type(L, -1) == LUA_TSTRING) {
    msg = lua_tolstring(L, -1, &len);
    FZ_CHECK(fz_utf8_ok(msg, len), "%s: field is not UTF-8", what);
  }
  lua_pop(L, 1);
}

/* call core.<fn> on the `nargs` values on top; returns the pcall status */
static int call(const char *fn, int nargs, int nresults) {
  lua_getglobal(L, "core");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 1));
  return lua_pcall(L, nargs, nresults, 0);
}

static void run_validate(fz_reader *r, int estimate) {
  int req, st;
  decode_request(r);
  req = lua_gettop(L);
  lua_pushvalue(L, req);
  st = call(estimate ? "estimate" : "validate", 1, 2);
  FZ_CHECK(!metamethod_ran, "a metamethod ran");
  FZ_CHECK(st == LUA_OK, "validate raised: %s", luaL_tolstring(L, -1, NULL));
  if (lua_isnil(L, -2)) {
    check_error(-1, estimate ? "estimate" : "validate");
    return;
  }
  if (estimate) {
    FZ_CHECK(lua_isinteger(L, -2) && lua_tointeger(L, -2) > 0, "estimate: credits");
    return;
  }
  FZ_CHECK(lua_type(L, -2) == LUA_TTABLE && lua_type(L, -1) == LUA_TTABLE,
           "validate: body, warnings are %s, %s", luaL_typename(L, -2), luaL_typename(L, -1));
  /* JSON-ready */
  lua_getglobal(L, "fuzz_encode");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 2);
  FZ_CHECK(lua_type(L, -2) == LUA_TSTRING, "the body does not encode as JSON: %s",
           lua_tostring(L, -1));
  lua_pop(L, 2);
  /* a fixed point: the body validates to itself */
  lua_pushvalue(L, -2);
  st = call("validate", 1, 2);
  FZ_CHECK(st == LUA_OK && !lua_isnil(L, -2), "the body does not validate again: %s",
           luaL_tolstring(L, -1, NULL));
  lua_getglobal(L, "fuzz_same");
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -6);
  lua_call(L, 2, 1);
  FZ_CHECK(lua_toboolean(L, -1), "the body validates to a different body");
}

static void run_upload_rules(fz_reader *r) {
  int st, typed;
  decode_value(r, 0);
  typed = lua_isnil(L, -1) || lua_type(L, -1) == LUA_TSTRING;
  st = call("upload_rules", 1, 2);
  FZ_CHECK(!metamethod_ran, "a metamethod ran");
  if (!typed) return;                       /* misuse may raise */
  FZ_CHECK(st == LUA_OK, "upload_rules raised: %s", lua_tostring(L, -1));
  if (lua_isnil(L, -2)) check_error(-1, "upload_rules");
  else FZ_CHECK(lua_type(L, -2) == LUA_TTABLE, "upload_rules: rules");
}

static void run_check_upload(fz_reader *r) {
  const rv_model *m = &fcat->models[0];
  const rv_upload_rule *rules = fcat->defaults;
  int st, typed, n;
  /* model: nil, the model id, or anything */
  switch (fz_byte(r) % 4) {
    case 0: lua_pushnil(L); break;
    case 1: case 2: lua_pushstring(L, m->id); rules = m->uploads; break;
    default: decode_value(r, 2); break;
  }
  /* kind, mime: mostly names from the rules, else anything */
  for (n = 0; rules[n].kind != NULL; n++) {}
  if (fz_byte(r) % 4 != 0) {
    const rv_upload_rule *u = &rules[fz_byte(r) % n];
    int k = 0;
    lua_pushstring(L, u->kind);
    while (u->mime[k] != NULL) k++;
    if (fz_byte(r) % 4 != 0) lua_pushstring(L, u->mime[fz_byte(r) % k]);
    else decode_value(r, 2);
  } else {
    decode_value(r, 2);
    decode_value(r, 2);
  }
  /* size: around the limits, or any integer */
  switch (fz_byte(r) % 4) {
    case 0: lua_pushinteger(L, rules[fz_byte(r) % n].max_bytes + (int8_t)fz_byte(r)); break;
    case 1: lua_pushinteger(L, (lua_Integer)(fz_u64(r) >> (fz_byte(r) % 64))); break;
    case 2: lua_pushinteger(L, (lua_Integer)fz_u64(r)); break;
    default: decode_value(r, 2); break;
  }
  typed = (lua_isnil(L, -4) || lua_type(L, -4) == LUA_TSTRING) &&
          lua_type(L, -3) == LUA_TSTRING &&
          (lua_isnil(L, -2) || lua_type(L, -2) == LUA_TSTRING) &&
          lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0;
  st = call("check_upload", 4, 2);
  FZ_CHECK(!metamethod_ran, "a metamethod ran");
  if (!typed) return;
  FZ_CHECK(st == LUA_OK, "check_upload raised: %s", lua_tostring(L, -1));
  if (lua_isnil(L, -2)) check_error(-1, "check_upload");
  else FZ_CHECK(lua_toboolean(L, -2), "check_upload: true");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_reader r;
  if (L == NULL) setup();
  r.p = data;
  r.n = size;
  metamethod_ran = 0;
  switch (fz_byte(&r) % 8) {
    case 0: case 1: case 2: case 3: run_validate(&r, 0); break;
    case 4: run_validate(&r, 1); break;
    case 5: run_upload_rules(&r); break;
    default: run_check_upload(&r); break;
  }
  lua_settop(L, 0);
  /* every garbage freed before the run ends: libFuzzer counts mallocs
     against frees, and an imbalance costs a leak scan of the whole heap */
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
