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

/* ---- the catalog and the validator: text.c, suggest.c, catalog.c, validate.c ---- */
#define RV_CATALOG_MT  "rivya.Catalog"
#define RV_REFERENCES_KEY "referenceMediaItems"   /* params key of reference media */
#define RV_MAX_KINDS 8                            /* reference kinds a model may list */

/*
** A catalog model compiled to C (catalog.c) from the documented catalog
** object, interpreted by validate.c. Lists of strings end with NULL; arrays
** of structs end with an entry whose first field is NULL. Every pointer
** lives as long as the rivya.Catalog userdata that owns it.
*/
typedef enum rv_param_type {
  RV_PARAM_SELECT,                   /* one of `options`, sent as a string */
  RV_PARAM_TEXT,                     /* free UTF-8 text */
  RV_PARAM_NUMBER,                   /* a number in [min, max] */
  RV_PARAM_BOOLEAN,                  /* true or false, sent as a JSON boolean */
  RV_PARAM_OTHER                     /* a type rivya does not know: unchecked */
} rv_param_type;

typedef struct rv_param {
  const char *name;                  /* the catalog's "key" */
  rv_param_type type;
  int required;
  const char *const *options;        /* select: allowed wire strings */
  int has_min, has_max;              /* number: bounds given */
  lua_Number min, max;               /* number: inclusive range */
  int integer;                       /* number: whole numbers only */
  size_t max_code_points;            /* text: 0 means no limit */
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

/* what a reference mode does to a param (rivya's notes); each firing warns */
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
  int max_items;
  const char *const *kinds;
  const char *const *token_kinds;    /* kinds that must carry durationToken */
  const rv_mode *modes;              /* the first that fits the items wins */
} rv_references;

typedef struct rv_model {
  const char *id;
  const char *api_status;            /* NULL when the catalog does not say */
  const char *runtime;               /* NULL when the catalog does not say */
  const char *billing;               /* billing_type, or NULL */
  int has_credits;
  lua_Integer credits;               /* base_credits */
  int prompt_required;
  size_t prompt_max_code_points;     /* 0: no limit */
  const rv_param *params;
  const rv_references *references;   /* NULL: takes no reference media */
  const rv_upload_rule *uploads;     /* NULL: takes no uploads (no limits) */
} rv_model;

typedef struct rv_catalog {
  const rv_model *models;            /* ends with id == NULL */
  const rv_upload_rule *defaults;    /* the Files API rules without a model */
} rv_catalog;

/* text.c: UTF-8, quoting, one-line validation messages */
size_t rv_utf8_len(const unsigned char *s, size_t len);
size_t rv_utf8_check(const char *s, size_t len, size_t *count);
const char *rv_push_quoted(lua_State *L, const char *s, size_t len);
const char *rv_describe(lua_State *L, int idx);
const char *rv_push_key_path(lua_State *L, const char *prefix, int key);
void rv_fail(lua_State *L, const char *field, const char *expected,
             const char *got, const char *fmt, ...);
void rv_fail_expected(lua_State *L, const char *field, const char *expected,
                      const char *got);
void rv_fail_value(lua_State *L, const char *field, const char *expected,
                   int idx);
int rv_protect(lua_State *L, lua_CFunction f, int nargs, int nresults);

/* suggest.c: "did you mean" */
#define RV_NAME_MAX_LEN 64           /* longer names get no suggestion */
#define RV_SUGGEST_MAX 3             /* largest edit distance worth suggesting */
typedef const char *(*rv_name_at)(const void *list, size_t i);
const char *rv_suggest(const char *s, size_t len, rv_name_at at,
                       const void *list, int limit);
int rv_suggest_lua(lua_State *L);    /* core.suggest(word, names [, limit]) -> name | nil */

/* catalog.c */
int rv_catalog_open(lua_State *L);   /* registers RV_CATALOG_MT; sets core.catalog */
const rv_catalog *rv_catalog_check(lua_State *L, int idx);

/* validate.c: the catalog's methods */
int rv_validate(lua_State *L);       /* cat:validate(req) -> body, warnings | nil, err */
int rv_estimate(lua_State *L);       /* cat:estimate(req) -> credits | nil, err */
int rv_upload_rules(lua_State *L);   /* cat:upload_rules(model?) -> rules | nil, err */
int rv_check_upload(lua_State *L);   /* cat:check_upload(model?, kind, mime?, size) -> true | nil, err */
void rv_push_uploads(lua_State *L, const rv_upload_rule *rules);

/* sniff.c */
int rv_sniff(lua_State *L);          /* core.sniff(bytes) -> kind, mime | nil */
const char *rv_sniff_bytes(const unsigned char *s, size_t len, const char **mime);
/* reads up to n bytes at off into buf; returns how many (fewer only at the end) */
typedef size_t (*rv_media_reader)(void *ctx, unsigned long long off, unsigned char *buf, size_t n);
const char *rv_media_verify(rv_media_reader read, void *ctx, unsigned long long size, int *exact);

/* local files for uploads (file.c) */
struct stat;
int rv_file_open(lua_State *L);      /* pushes core.stat, core.read_head */
int rv_open_regular(lua_State *L, const char *path, struct stat *st);
int rv_tidy_open(lua_State *L);      /* pushes core.json_tidy (tidy.c) */
int rv_term_open(lua_State *L);      /* pushes core.isatty, core.term_size (term.c) */

/* durable state (db.c): pushes core.db_open (SQLite), core.lock, core.sha256_file */
int rv_db_open(lua_State *L);

/* HTTP on libcurl (session.c, transfer.c, download.c, trust.c, system.c; http.h) */
int rv_http_open(lua_State *L);      /* registers metatables; pushes core.session, now, sleep, poll, random_hex */

#endif
