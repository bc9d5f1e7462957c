/*
** catalog.c — the model catalog rivya-sim serves and obeys, as data: the
** JSON of sim/catalog.json (built into the binary) or of --catalog FILE.
** GET /api/v1/models answers it as loaded; validate.c, upload.c and
** state.c read each model's rules from it. Loading checks every field the
** simulator relies on, so a broken catalog stops the start-up with a
** message naming the field, never a request later.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* the built-in catalog (generated from sim/catalog.json by the Makefile) */
extern const unsigned char sim_catalog_json[];
extern const unsigned int sim_catalog_json_len;

/* the Files API's own rules when an upload names no model [API.md] */
static const char *const image_mimes[] = {
  "image/jpeg", "image/png", "image/webp", NULL
};
static const char *const video_mimes[] = {
  "video/mp4", "video/quicktime", "video/webm", NULL
};
static const char *const audio_mimes[] = {
  "audio/mpeg", "audio/mp4", "audio/wav", "audio/x-wav", "audio/aac", "audio/ogg", NULL
};
static const struct {
  const char *kind;
  long long max_bytes;
  const char *const *mimes;
} default_rules[] = {
  { "image", 10 * SIM_MB, image_mimes },
  { "video", 50 * SIM_MB, video_mimes },
  { "audio", 10 * SIM_MB, audio_mimes },
};
#define NDEFAULT (sizeof default_rules / sizeof default_rules[0])

/* bad: the message of a rejected catalog into `err`; returns -1 */
static int bad(char *err, size_t size, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;
static int bad(char *err, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, size, fmt, ap);
  va_end(ap);
  return -1;
}

/* strings_ok: `v` is an array of strings (NULL allowed when `opt`) */
static int strings_ok(const json_t *v, int opt) {
  size_t i;
  if (!v) return opt;
  if (!json_is_array(v)) return 0;
  for (i = 0; i < json_array_size(v); i++)
    if (!json_is_string(json_array_get(v, i))) return 0;
  return 1;
}

/* check_param: params[j] of model `id` */
static int check_param(const char *id, size_t j, const json_t *p, char *err, size_t size) {
  const json_t *min = json_object_get(p, "min"), *max = json_object_get(p, "max");
  const json_t *ml = json_object_get(p, "max_length");
  const char *type = json_string_value(json_object_get(p, "type"));
  if (!json_is_object(p) || !json_is_string(json_object_get(p, "key")) || !type)
    return bad(err, size, "%s: params[%zu]: expected an object with string key and type", id, j);
  if (strcmp(type, "select") == 0 && (!strings_ok(json_object_get(p, "options"), 0) ||
                                      json_array_size(json_object_get(p, "options")) == 0))
    return bad(err, size, "%s: params[%zu]: a select needs a non-empty options array of "
               "strings", id, j);
  if ((min && !json_is_number(min) && !json_is_null(min)) ||
      (max && !json_is_number(max) && !json_is_null(max)) ||
      (ml && !json_is_integer(ml) && !json_is_null(ml)))
    return bad(err, size, "%s: params[%zu]: min and max must be numbers, max_length an "
               "integer", id, j);
  return 0;
}

/* check_counts: one mode's counts object {kind: [min, max]} */
static int check_counts(const json_t *counts) {
  const char *k;
  json_t *v;
  if (!json_is_object(counts) || json_object_size(counts) == 0) return 0;
  json_object_foreach((json_t *)counts, k, v) {
    if (!json_is_array(v) || json_array_size(v) != 2 ||
        !json_is_integer(json_array_get(v, 0)) || !json_is_integer(json_array_get(v, 1)) ||
        json_integer_value(json_array_get(v, 0)) < 0 ||
        json_integer_value(json_array_get(v, 0)) > json_integer_value(json_array_get(v, 1)))
      return 0;
  }
  return 1;
}

/* check_refs: the reference_media object of model `id` */
static int check_refs(const char *id, const json_t *r, char *err, size_t size) {
  const json_t *modes = json_object_get(r, "modes"), *limits = json_object_get(r, "limits");
  const char *k;
  json_t *v;
  size_t i;
  if (!json_is_object(r) || !json_is_integer(json_object_get(r, "max_items")) ||
      !strings_ok(json_object_get(r, "kinds"), 0) || !json_is_array(modes) ||
      !json_is_object(limits))
    return bad(err, size, "%s: reference_media: expected null or an object with max_items, "
               "kinds, modes and limits", id);
  for (i = 0; i < json_array_size(modes); i++) {
    const json_t *m = json_array_get(modes, i);
    if (!json_is_string(json_object_get(m, "mode")) || !check_counts(json_object_get(m, "counts")))
      return bad(err, size, "%s: reference_media.modes[%zu]: expected {\"mode\": name, "
                 "\"counts\": {kind: [min, max]}}", id, i);
  }
  json_object_foreach((json_t *)limits, k, v) {
    if (!json_is_integer(json_object_get(v, "max_bytes")) ||
        !strings_ok(json_object_get(v, "mime_types"), 0))
      return bad(err, size, "%s: reference_media.limits.%s: expected {\"max_bytes\": n, "
                 "\"mime_types\": [...]}", id, k);
  }
  return 0;
}

/*
** check_model: element `i` of data into `m` (borrowing the JSON), or -1
** with the reason in `err`.
*/
static int check_model(size_t i, const json_t *o, sim_model *m, char *err, size_t size) {
  static const char *const strs[] = {
    "id", "display_name", "category", "runtime", "billing_type", "api_status",
    "api_input_status", NULL
  };
  const char *const *s;
  const json_t *params;
  size_t j;
  if (!json_is_object(o)) return bad(err, size, "data[%zu]: expected an object", i);
  for (s = strs; *s; s++)
    if (!json_is_string(json_object_get(o, *s)))
      return bad(err, size, "data[%zu].%s: expected a string", i, *s);
  m->obj = o;
  m->id = json_string_value(json_object_get(o, "id"));
  m->category = json_string_value(json_object_get(o, "category"));
  m->runtime = json_string_value(json_object_get(o, "runtime"));
  m->billing_type = json_string_value(json_object_get(o, "billing_type"));
  m->api_status = json_string_value(json_object_get(o, "api_status"));
  if (!json_is_integer(json_object_get(o, "base_credits")) ||
      json_integer_value(json_object_get(o, "base_credits")) < 0)
    return bad(err, size, "%s: base_credits: expected an integer >= 0", m->id);
  m->base_credits = json_integer_value(json_object_get(o, "base_credits"));
  if (!json_is_integer(json_object_get(o, "max_prompt_length")) ||
      json_integer_value(json_object_get(o, "max_prompt_length")) < 0)
    return bad(err, size, "%s: max_prompt_length: expected an integer >= 0", m->id);
  m->prompt_max = json_integer_value(json_object_get(o, "max_prompt_length"));
  if (!strings_ok(json_object_get(o, "supported_modes"), 0))
    return bad(err, size, "%s: supported_modes: expected an array of strings", m->id);
  params = json_object_get(o, "params");
  if (!json_is_array(params))
    return bad(err, size, "%s: params: expected an array", m->id);
  for (j = 0; j < json_array_size(params); j++)
    if (check_param(m->id, j, json_array_get(params, j), err, size) != 0) return -1;
  m->params = params;
  m->refs = json_object_get(o, "reference_media");
  if (json_is_null(m->refs)) m->refs = NULL;
  if (m->refs && check_refs(m->id, m->refs, err, size) != 0) return -1;
  return 0;
}

/*
** sim_catalog_parse: the catalog in the `len` bytes at `text`, or NULL
** with the reason in `err` (`where` names the source in it).
*/
static sim_catalog *sim_catalog_parse(const char *text, size_t len, const char *where,
                                      char *err, size_t size) {
  json_error_t je;
  sim_catalog *c;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je), *data;
  size_t i, j;
  if (!root) {
    bad(err, size, "%s: invalid JSON at line %d, column %d: %s", where, je.line, je.column,
        je.text);
    return NULL;
  }
  data = json_object_get(root, "data");
  if (!json_is_array(data) || json_array_size(data) == 0) {
    bad(err, size, "%s: expected {\"object\": \"list\", \"data\": [models...]}", where);
    json_decref(root);
    return NULL;
  }
  c = calloc(1, sizeof *c);
  if (c) c->models = calloc(json_array_size(data), sizeof *c->models);
  if (!c || !c->models) {
    bad(err, size, "out of memory");
    free(c);
    json_decref(root);
    return NULL;
  }
  c->root = root;
  if (!(c->text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER))) {
    bad(err, size, "out of memory");
    sim_catalog_free(c);
    return NULL;
  }
  for (i = 0; i < json_array_size(data); i++) {
    char why[400];
    if (check_model(i, json_array_get(data, i), &c->models[i], why, sizeof why) != 0) {
      bad(err, size, "%s: %s", where, why);
      sim_catalog_free(c);
      return NULL;
    }
    for (j = 0; j < i; j++)
      if (strcmp(c->models[j].id, c->models[i].id) == 0) {
        bad(err, size, "%s: model id \"%s\" appears twice", where, c->models[i].id);
        sim_catalog_free(c);
        return NULL;
      }
    c->n++;
  }
  return c;
}

/*
** sim_catalog_load: the catalog of file `path`, or the built-in one when
** `path` is NULL; NULL with the reason in `err` (`size` bytes).
*/
sim_catalog *sim_catalog_load(const char *path, char *err, size_t size) {
  FILE *f;
  char *buf;
  long n;
  size_t got;
  sim_catalog *c;
  if (!path)
    return sim_catalog_parse((const char *)sim_catalog_json, sim_catalog_json_len,
                             "built-in catalog", err, size);
  if (!(f = fopen(path, "rb"))) {
    bad(err, size, "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > 16 * SIM_MB ||
      fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    bad(err, size, "%s: not a regular file of at most 16 MB", path);
    return NULL;
  }
  buf = malloc((size_t)n + 1);
  got = buf ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  if (!buf || got != (size_t)n) {
    free(buf);
    bad(err, size, "cannot read %s", path);
    return NULL;
  }
  c = sim_catalog_parse(buf, got, path, err, size);
  free(buf);
  return c;
}

/* sim_catalog_free: release `c` (NULL is fine) */
void sim_catalog_free(sim_catalog *c) {
  if (!c) return;
  json_decref(c->root);
  free(c->text);
  free(c->models);
  free(c);
}

/* sim_model_find: the model of catalog `c` whose id is `id`, or NULL */
const sim_model *sim_model_find(const sim_catalog *c, const char *id) {
  size_t i;
  for (i = 0; i < c->n; i++)
    if (strcmp(c->models[i].id, id) == 0) return &c->models[i];
  return NULL;
}

/* sim_model_param: the params element of `m` whose key is `key`, or NULL */
const json_t *sim_model_param(const sim_model *m, const char *key) {
  size_t i;
  for (i = 0; i < json_array_size(m->params); i++) {
    const json_t *p = json_array_get(m->params, i);
    if (strcmp(json_string_value(json_object_get(p, "key")), key) == 0) return p;
  }
  return NULL;
}

/*
** sim_model_credits: what one run of `m` with `prompt` reserves, by its
** billing_type: FIXED is base_credits; PER_1K_CHARACTERS is base_credits
** per started 1,000 code points of the prompt (at least one); any other
** type reserves base_credits (the client cannot know it: "unknown").
*/
long long sim_model_credits(const sim_model *m, const char *prompt) {
  if (strcmp(m->billing_type, "PER_1K_CHARACTERS") == 0) {
    long n = sim_utf8_count(prompt, strlen(prompt));
    long units = n > 0 ? (n + 999) / 1000 : 1;
    return m->base_credits * units;
  }
  return m->base_credits;
}

/* sim_model_callable: 1 when a create may name `m` (available, async) */
int sim_model_callable(const sim_model *m) {
  return strcmp(m->api_status, "available") == 0 && strcmp(m->runtime, "async_task") == 0;
}

/*
** sim_upload_rule_get: what the Files API accepts for `kind` in uploads
** for model `m` (NULL: no model named) into `out`; 0, or -1 when that
** kind is not accepted there. A model's rules are its reference_media
** limits; a model without reference media takes no uploads.
*/
int sim_upload_rule_get(const sim_model *m, const char *kind, sim_upload_rule *out) {
  size_t i, n = 0;
  memset(out, 0, sizeof *out);
  if (!m) {
    for (i = 0; i < NDEFAULT; i++) {
      const char *const *p;
      if (strcmp(default_rules[i].kind, kind) != 0) continue;
      out->max_bytes = default_rules[i].max_bytes;
      for (p = default_rules[i].mimes; *p && n < SIM_MIMES_MAX; p++) out->mimes[n++] = *p;
      out->nmimes = n;
      return 0;
    }
    return -1;
  } else {
    const json_t *lim = m->refs ? json_object_get(json_object_get(m->refs, "limits"), kind) : NULL;
    const json_t *list = json_object_get(lim, "mime_types");
    if (!lim) return -1;
    out->max_bytes = json_integer_value(json_object_get(lim, "max_bytes"));
    for (i = 0; i < json_array_size(list) && n < SIM_MIMES_MAX; i++)
      out->mimes[n++] = json_string_value(json_array_get(list, i));
    out->nmimes = n;
    return 0;
  }
}

/*
** sim_upload_max: the largest upload limit for `kind` (any kind when NULL)
** over the defaults and, when `m` is NULL, every model of `c`; for the
** provisional limit of an upload whose fields have not all arrived.
*/
long long sim_upload_max(const sim_catalog *c, const sim_model *m, const char *kind) {
  static const char *const kinds[] = { "image", "video", "audio", NULL };
  const char *const *k;
  long long best = 0;
  sim_upload_rule r;
  size_t i;
  for (k = kinds; *k; k++) {
    if (kind && strcmp(kind, *k) != 0) continue;
    if (m) {
      if (sim_upload_rule_get(m, *k, &r) == 0 && r.max_bytes > best) best = r.max_bytes;
      continue;
    }
    if (sim_upload_rule_get(NULL, *k, &r) == 0 && r.max_bytes > best) best = r.max_bytes;
    for (i = 0; i < c->n; i++)
      if (sim_upload_rule_get(&c->models[i], *k, &r) == 0 && r.max_bytes > best)
        best = r.max_bytes;
  }
  return best;
}

/* sim_mime_listed: 1 when `mime` is one of rule `r`'s types */
int sim_mime_listed(const sim_upload_rule *r, const char *mime) {
  size_t i;
  for (i = 0; i < r->nmimes; i++)
    if (strcmp(r->mimes[i], mime) == 0) return 1;
  return 0;
}

/*
** sim_model_ids: the ids of `c` as `a, b, c` into `buf` (for messages);
** `callable` lists only the models a create may name.
*/
const char *sim_model_ids(const sim_catalog *c, int callable, char *buf, size_t size) {
  size_t i, used = 0;
  buf[0] = '\0';
  for (i = 0; i < c->n && used < size; i++) {
    int n;
    if (callable && !sim_model_callable(&c->models[i])) continue;
    n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", c->models[i].id);
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

/*
** sim_listed: 1 when `s` is in the NULL-terminated string list `list`
** (allowed keys, fault kinds, form kinds).
*/
int sim_listed(const char *const *list, const char *s) {
  for (; *list; list++)
    if (strcmp(*list, s) == 0) return 1;
  return 0;
}
