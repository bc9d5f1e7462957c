/*
** schema.c — the models rivya knows, described once as data, and the Files
** API's upload rules. validate.c interprets these tables; core.models()
** hands them to Lua. Adding a model is adding data here: no code changes.
** Source of truth for wan-2-7-video: the model page (shared/seed).
*/
#include <string.h>

#include "rivya.h"

#define MB 1000000

/* ---- Files API rules without a model (API.md, Files table) ---- */

static const char *const image_mime[] = {
  "image/jpeg", "image/png", "image/webp", NULL
};
static const char *const video_mime_default[] = {
  "video/mp4", "video/quicktime", "video/webm", NULL
};
static const char *const audio_mime[] = {
  "audio/mpeg", "audio/mp4", "audio/wav", "audio/x-wav", "audio/aac",
  "audio/ogg", NULL
};

const rv_upload_rule rv_default_uploads[] = {
  {"image", 10 * MB, image_mime},
  {"video", 50 * MB, video_mime_default},
  {"audio", 10 * MB, audio_mime},
  {NULL, 0, NULL}
};

/* ---- wan-2-7-video ---- */

static const char *const wan27_inputs[] = {"text", "file", NULL};

static const char *const wan27_resolution[] = {"720p", "1080p", NULL};
static const char *const wan27_duration[] = {"5", "10", "15", NULL};
static const char *const wan27_aspect[] = {
  "16:9", "9:16", "1:1", "4:3", "3:4", NULL
};
static const char *const true_false[] = {"true", "false", NULL};
static const char *const false_true[] = {"false", "true", NULL};
static const char *const wan27_audio[] = {"auto", "origin", NULL};

static const rv_param wan27_params[] = {
  {"resolution", RV_PARAM_SELECT, "720p", wan27_resolution, 0, 0, 0, 0,
   "Resolution"},
  {"duration", RV_PARAM_SELECT, "5", wan27_duration, 0, 0, 0, 0,
   "Text and image runs can use 5, 10, or 15 seconds. Video editing "
   "currently tops out at 10 seconds, and Rivya normalizes longer "
   "selections automatically in that mode."},
  {"aspect_ratio", RV_PARAM_SELECT, "16:9", wan27_aspect, 0, 0, 0, 0,
   "Text-to-video and video-editing runs use this directly. Image-to-video "
   "currently follows the uploaded frame geometry instead of exposing a "
   "separate aspect-ratio switch."},
  {"negative_prompt", RV_PARAM_TEXT, NULL, NULL, 0, 0, 0, 0,
   "Negative prompt"},
  {"prompt_extend", RV_PARAM_SELECT, "true", true_false, 0, 0, 0, 0,
   "Controls whether the model rewrites your prompt before generation. "
   "Keep it on for convenience, or turn it off when you already have a "
   "very precise prompt."},
  {"watermark", RV_PARAM_SELECT, "false", false_true, 0, 0, 0, 0,
   "Watermark"},
  {"audio_setting", RV_PARAM_SELECT, "auto", wan27_audio, 0, 0, 0, 0,
   "Controls how audio is handled in the video-edit path. Auto lets the "
   "model decide, while Keep original tries to preserve the source "
   "video's audio."},
  {"seed", RV_PARAM_NUMBER, NULL, NULL, 0, 2147483647, 1, 0,
   "Leave it empty for a new random result each time. Reusing the same "
   "integer makes it easier to reproduce or fine-tune a previous result. "
   "It stays closer only when the prompt and other key settings also "
   "remain similar, and it is not a guaranteed 1:1 match."},
  {NULL, RV_PARAM_TEXT, NULL, NULL, 0, 0, 0, 0, NULL}
};

static const char *const wan27_ref_kinds[] = {"image", "video", NULL};
static const char *const wan27_token_kinds[] = {"video", NULL};

static const rv_kind_count wan27_i2v_counts[] = {
  {"image", 1, 2},
  {NULL, 0, 0}
};
static const rv_mode_rule wan27_i2v_rules[] = {
  {"aspect_ratio", RV_RULE_IGNORED, NULL, "the output follows the image"},
  {NULL, RV_RULE_IGNORED, NULL, NULL}
};
static const rv_kind_count wan27_edit_counts[] = {
  {"video", 1, 1},
  {"image", 0, 1},
  {NULL, 0, 0}
};
static const rv_mode_rule wan27_edit_rules[] = {
  {"duration", RV_RULE_CLAMP_MAX, "10", " s"},
  {NULL, RV_RULE_IGNORED, NULL, NULL}
};
static const rv_mode wan27_modes[] = {
  {"image-to-video", "up to 2 images", wan27_i2v_counts, wan27_i2v_rules},
  {"video editing", "1 video plus at most 1 image", wan27_edit_counts,
   wan27_edit_rules},
  {NULL, NULL, NULL, NULL}
};

static const rv_references wan27_references = {
  "referenceMediaItems", 2, wan27_ref_kinds, wan27_token_kinds, wan27_modes
};

static const char *const wan27_video_mime[] = {
  "video/mp4", "video/quicktime", NULL
};
static const rv_upload_rule wan27_uploads[] = {
  {"image", 20 * MB, image_mime},
  {"video", 95 * MB, wan27_video_mime},
  {NULL, 0, NULL}
};

static const rv_model wan27 = {
  "wan-2-7-video", "Wan 2.7 Video", "video", wan27_inputs,
  "FIXED", 80,
  1, 5000,
  wan27_params, &wan27_references, wan27_uploads
};

/* ---- the catalog ---- */

const rv_model *const rv_schema_models[] = {&wan27, NULL};

/*
** Find a model by id; `id` is a NUL-terminated string. NULL when unknown.
*/
const rv_model *rv_schema_find(const char *id) {
  size_t i;
  for (i = 0; rv_schema_models[i] != NULL; i++)
    if (strcmp(rv_schema_models[i]->id, id) == 0) return rv_schema_models[i];
  return NULL;
}

/*
** The rule for `kind` in the rule list `rules`, or NULL when that kind is
** not accepted.
*/
const rv_upload_rule *rv_schema_upload(const rv_upload_rule *rules,
                                       const char *kind) {
  for (; rules->kind != NULL; rules++)
    if (strcmp(rules->kind, kind) == 0) return rules;
  return NULL;
}

/* ---- data to Lua tables (fresh tables on each call: callers may edit) ---- */

/* push the NULL-terminated string list `list` as a Lua array */
static void push_strings(lua_State *L, const char *const *list) {
  lua_Integer i;
  lua_newtable(L);
  for (i = 0; list[i] != NULL; i++) {
    lua_pushstring(L, list[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* set t[key] = s on the table at the top; nothing when `s` is NULL */
static void set_string(lua_State *L, const char *key, const char *s) {
  if (s == NULL) return;
  lua_pushstring(L, s);
  lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, lua_Integer n) {
  lua_pushinteger(L, n);
  lua_setfield(L, -2, key);
}

/*
** Push the upload rules `rules` as {kind = {max_bytes = n, mime = {...}}}.
*/
void rv_schema_push_uploads(lua_State *L, const rv_upload_rule *rules) {
  luaL_checkstack(L, 4, NULL);
  lua_newtable(L);
  for (; rules->kind != NULL; rules++) {
    lua_createtable(L, 0, 2);
    set_integer(L, "max_bytes", rules->max_bytes);
    push_strings(L, rules->mime);
    lua_setfield(L, -2, "mime");
    lua_setfield(L, -2, rules->kind);
  }
}

static const char *const param_type_names[] = {"select", "text", "number"};

/* push one parameter row `p` as a table */
static void push_param(lua_State *L, const rv_param *p) {
  lua_createtable(L, 0, 6);
  set_string(L, "name", p->name);
  set_string(L, "type", param_type_names[p->type]);
  set_string(L, "default", p->def);
  set_string(L, "description", p->description);
  switch (p->type) {
    case RV_PARAM_SELECT:
      push_strings(L, p->options);
      lua_setfield(L, -2, "options");
      break;
    case RV_PARAM_NUMBER:
      set_integer(L, "min", p->min);
      set_integer(L, "max", p->max);
      lua_pushboolean(L, p->integer);
      lua_setfield(L, -2, "integer");
      break;
    case RV_PARAM_TEXT:
      if (p->max_code_points > 0)
        set_integer(L, "max_code_points", (lua_Integer)p->max_code_points);
      break;
  }
}

/* push the reference-media rules `r`: key, max_items, kinds, modes */
static void push_references(lua_State *L, const rv_references *r) {
  const rv_mode *m;
  lua_Integer i;
  lua_createtable(L, 0, 5);
  set_string(L, "key", r->key);
  set_integer(L, "max_items", r->max_items);
  push_strings(L, r->kinds);
  lua_setfield(L, -2, "kinds");
  push_strings(L, r->token_kinds);
  lua_setfield(L, -2, "duration_token_kinds");
  lua_newtable(L);
  for (m = r->modes, i = 1; m->name != NULL; m++, i++) {
    const rv_kind_count *c;
    lua_createtable(L, 0, 3);
    set_string(L, "name", m->name);
    set_string(L, "summary", m->summary);
    lua_newtable(L);
    for (c = m->counts; c->kind != NULL; c++) {
      lua_createtable(L, 0, 2);
      set_integer(L, "min", c->min);
      set_integer(L, "max", c->max);
      lua_setfield(L, -2, c->kind);
    }
    lua_setfield(L, -2, "counts");
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "modes");
}

/* push the whole schema of model `m` */
static void push_model(lua_State *L, const rv_model *m) {
  const rv_param *p;
  lua_Integer i;
  lua_createtable(L, 0, 10);
  set_string(L, "id", m->id);
  set_string(L, "name", m->name);
  set_string(L, "kind", m->kind);
  push_strings(L, m->inputs);
  lua_setfield(L, -2, "inputs");
  lua_createtable(L, 0, 2);
  set_string(L, "type", m->pricing);
  set_integer(L, "credits", m->credits);
  lua_setfield(L, -2, "pricing");
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, m->prompt_required);
  lua_setfield(L, -2, "required");
  set_integer(L, "max_code_points", (lua_Integer)m->prompt_max_code_points);
  lua_setfield(L, -2, "prompt");
  lua_newtable(L);
  for (p = m->params, i = 1; p->name != NULL; p++, i++) {
    push_param(L, p);
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "params");
  if (m->references != NULL) {
    push_references(L, m->references);
    lua_setfield(L, -2, "references");
  }
  rv_schema_push_uploads(L, m->uploads);
  lua_setfield(L, -2, "uploads");
}

/*
** core.models() -> array of schema tables, one per known model, as plain
** Lua data (see push_model for the fields).
*/
int rv_models(lua_State *L) {
  lua_Integer i;
  luaL_checkstack(L, 10, NULL);
  lua_newtable(L);
  for (i = 0; rv_schema_models[i] != NULL; i++) {
    push_model(L, rv_schema_models[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}
