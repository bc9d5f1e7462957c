/*
** rivya.h — types, limits and cross-file functions of rivya's C core.
** Everything that crosses files has the rv_ prefix; the rest is static.
*/
#ifndef RIVYA_H
#define RIVYA_H

#include <stddef.h>
#include <stdarg.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"     /* the 5.4 API on LuaJIT and Lua 5.1-5.3 */

#define RV_VERSION "0.1.0"

/* metatable names, one per userdata type */
#define RV_ERROR_MT    "rivya.Error"
#define RV_SESSION_MT  "rivya.Session"
#define RV_TRANSFER_MT "rivya.Transfer"

/*
** Register the metatable `name` (luaL_newmetatable: __name is set) with the
** metamethods `meta` and, unless NULL, `methods` as its __index table; leaves
** the metatable on the stack. Every type of the core is registered here, as
** cqueues does with cqs_newmetatable.
*/
static inline void rv_newmetatable(lua_State *L, const char *name,
                                   const luaL_Reg *methods, const luaL_Reg *meta) {
  if (!luaL_newmetatable(L, name)) return;   /* registered by an earlier open */
  luaL_setfuncs(L, meta, 0);
  if (methods != NULL) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
}

/* growable byte buffer (buf.c) */
typedef struct rv_buf {
  char *data;
  size_t len;
  size_t cap;
} rv_buf;

void rv_buf_init(rv_buf *b);
int rv_buf_add(rv_buf *b, const void *p, size_t n);     /* 0 ok, -1 no memory */
void rv_buf_free(rv_buf *b);

/*
** Errors (error.c). An error is a Lua table with metatable RV_ERROR_MT:
** code, message and, when known, field, status, request_id, retry_after.
** rv_error_push leaves the new table on the stack top.
*/
void rv_error_push(lua_State *L, const char *code, const char *field,
                   const char *fmt, ...);
/* push nil + error table, return 2: the `nil, err` idiom */
int rv_error_return(lua_State *L, const char *code, const char *field,
                    const char *fmt, ...);
int rv_error_open(lua_State *L);     /* registers RV_ERROR_MT; pushes core.error */

/* validate.c / schema.c / sniff.c */
/*
** Model schemas as data (schema.c), interpreted by validate.c: adding a
** model is adding data. Lists of strings end with NULL; arrays of structs
** end with an entry whose first field is NULL.
*/
typedef enum rv_param_type {
  RV_PARAM_SELECT,                   /* one of `options`, sent as a string */
  RV_PARAM_TEXT,                     /* free UTF-8 text */
  RV_PARAM_NUMBER                    /* a number in [min, max] */
} rv_param_type;

typedef struct rv_param {
  const char *name;
  rv_param_type type;
  const char *def;                   /* default, wire form; NULL when none */
  const char *const *options;        /* select: allowed wire strings */
  lua_Integer min, max;              /* number: inclusive range */
  int integer;                       /* number: whole numbers only */
  size_t max_code_points;            /* text: 0 means no limit */
  const char *description;
} rv_param;

/* what the Files API takes for one kind: size limit and MIME types */
typedef struct rv_upload_rule {
  const char *kind;                  /* "image", "video", "audio" */
  lua_Integer max_bytes;             /* MB = 1,000,000 bytes */
  const char *const *mime;
} rv_upload_rule;

/* how many references of one kind a mode takes; unlisted kinds: none */
typedef struct rv_kind_count {
  const char *kind;
  int min, max;
} rv_kind_count;

typedef enum rv_rule_action {
  RV_RULE_CLAMP_MAX,                 /* larger numeric values become `value` */
  RV_RULE_IGNORED                    /* kept in the body, reported as ignored */
} rv_rule_action;

/* what a reference mode does to a param; each firing adds a warning */
typedef struct rv_mode_rule {
  const char *param;
  rv_rule_action action;
  const char *value;                 /* CLAMP_MAX: the largest value kept */
  const char *note;                  /* CLAMP_MAX: unit; IGNORED: the reason */
} rv_mode_rule;

typedef struct rv_mode {
  const char *name;                  /* "image-to-video" */
  const char *summary;               /* "up to 2 images", for messages */
  const rv_kind_count *counts;
  const rv_mode_rule *rules;
} rv_mode;

typedef struct rv_references {
  const char *key;                   /* params key: "referenceMediaItems" */
  int max_items;
  const char *const *kinds;
  const char *const *token_kinds;    /* kinds that must carry durationToken */
  const rv_mode *modes;              /* the first that fits the items wins */
} rv_references;

typedef struct rv_model {
  const char *id;
  const char *name;
  const char *kind;                  /* what it makes: "video" */
  const char *const *inputs;         /* "text", "file" */
  const char *pricing;               /* "FIXED" */
  lua_Integer credits;               /* reserved per run */
  int prompt_required;
  size_t prompt_max_code_points;
  const rv_param *params;
  const rv_references *references;   /* NULL: takes no reference media */
  const rv_upload_rule *uploads;     /* the Files API rules with `model` */
} rv_model;

extern const rv_model *const rv_schema_models[];   /* NULL-terminated */
extern const rv_upload_rule rv_default_uploads[];  /* Files API without model */

const rv_model *rv_schema_find(const char *id);     /* NULL when unknown */
const rv_upload_rule *rv_schema_upload(const rv_upload_rule *rules,
                                       const char *kind);
void rv_schema_push_uploads(lua_State *L, const rv_upload_rule *rules);

/* Lua functions of the offline helpers */
int rv_validate(lua_State *L);       /* core.validate(req) -> body, warnings | nil, err */
int rv_estimate(lua_State *L);       /* core.estimate(req) -> credits | nil, err */
int rv_models(lua_State *L);         /* core.models() -> array of schema tables */
int rv_upload_rules(lua_State *L);   /* core.upload_rules(model?) -> rules | nil, err */
int rv_check_upload(lua_State *L);   /* core.check_upload(model?, kind, mime?, size) -> true | nil, err */
int rv_sniff(lua_State *L);          /* core.sniff(bytes) -> kind, mime | nil */
const char *rv_sniff_bytes(const unsigned char *s, size_t len, const char **mime);
/* reads up to n bytes at off into buf; returns how many (fewer only at the end) */
typedef size_t (*rv_media_reader)(void *ctx, unsigned long long off, unsigned char *buf, size_t n);
const char *rv_media_verify(rv_media_reader read, void *ctx, unsigned long long size, int *exact);
/* end of validate.c / schema.c / sniff.c */

/* local files for uploads (file.c) */
int rv_file_open(lua_State *L);      /* pushes core.stat, core.read_head */
int rv_tidy_open(lua_State *L);      /* pushes core.json_tidy (tidy.c) */

/* HTTP on libcurl (session.c, transfer.c, download.c, trust.c, system.c; http.h) */
int rv_http_open(lua_State *L);      /* registers metatables; pushes core.session, now, sleep, poll, random_hex */

#endif
