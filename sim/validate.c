/*
** validate.c — the strict check of a create body (POST /api/v1/generations)
** in its wire form, interpreting the model tables of model.c. The simulator
** exists to catch client bugs, so nothing is coerced: a number where a
** select string belongs, an unknown key, a null for an optional field are
** all validation_failed, with a message naming the field, what was
** expected and what was given.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const top_keys[] = {
  "model", "prompt", "params", "client_request_id", NULL
};
static const char *const ref_keys[] = {
  "url", "kind", "name", "mimeType", "durationSeconds", "durationToken", NULL
};
static const char *const ref_kinds[] = { "image", "video", NULL };

/* how far a given durationSeconds may be from the uploaded file's */
#define DURATION_SLACK 0.05

/*
** fail: fill `err` with `field` and the message from `fmt`; returns -1 so
** that checks read `return fail(...)`.
*/
static int fail(rv_verr *err, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;
static int fail(rv_verr *err, const char *field, const char *fmt, ...) {
  va_list ap;
  snprintf(err->field, sizeof err->field, "%s", field);
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return -1;
}

/* quoted_list: `"a", "b", "c"` (or a, b, c when !quote) into buf */
static const char *quoted_list(const char *const *list, int quote, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (; *list && used < size; list++) {
    int n = snprintf(buf + used, size - used, "%s%s%s%s", used ? ", " : "",
                     quote ? "\"" : "", *list, quote ? "\"" : "");
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

/* param_keys: the model's parameter names, comma-separated, into buf */
static const char *param_keys(const rv_model *m, char *buf, size_t size) {
  const char *names[32];
  size_t i;
  for (i = 0; m->params[i].key && i < 31; i++) names[i] = m->params[i].key;
  names[i] = NULL;
  return quoted_list(names, 0, buf, size);
}

static const rv_param *find_param(const rv_model *m, const char *key) {
  const rv_param *p;
  for (p = m->params; p->key; p++)
    if (strcmp(p->key, key) == 0) return p;
  return NULL;
}

/*
** check_param: one params entry `v` of `key` against its schema `p`.
*/
static int check_param(const rv_param *p, const char *key, const json_t *v, rv_verr *err) {
  char field[160], got[128], opts[256];
  snprintf(field, sizeof field, "params.%s", key);
  rv_describe(v, got, sizeof got);
  switch (p->type) {
    case RV_PARAM_SELECT:
      quoted_list(p->options, 1, opts, sizeof opts);
      if (!json_is_string(v))
        return fail(err, field, "%s: expected a string, one of %s; got %s", field, opts, got);
      if (!rv_listed(p->options, json_string_value(v)))
        return fail(err, field, "%s: expected one of %s; got %s", field, opts, got);
      return 0;
    case RV_PARAM_TEXT:
      if (!json_is_string(v))
        return fail(err, field, "%s: expected a string; got %s", field, got);
      return 0;
    case RV_PARAM_INTEGER:
      if (!json_is_integer(v) || json_integer_value(v) < p->min ||
          json_integer_value(v) > p->max)
        return fail(err, field, "%s: expected an integer from %lld to %lld; got %s", field,
                    p->min, p->max, got);
      return 0;
    case RV_PARAM_REFERENCES:
      return 0;   /* checked as a whole by check_references */
  }
  return 0;
}

/*
** check_reference: the shape of item `i` of referenceMediaItems for model
** `m`; counts its kind into *images / *videos.
*/
static int check_reference(const rv_model *m, size_t i, const json_t *item,
                           int *images, int *videos, rv_verr *err) {
  char base[96], field[160], got[128], opts[256];
  const char *k, *kind;
  const json_t *v;
  snprintf(base, sizeof base, "params.referenceMediaItems[%zu]", i);
  if (!json_is_object(item)) {
    rv_describe(item, got, sizeof got);
    return fail(err, base, "%s: expected an object {url, kind, name?, mimeType?, "
                "durationSeconds?, durationToken?}; got %s", base, got);
  }
  json_object_foreach((json_t *)item, k, v) {
    if (!rv_listed(ref_keys, k)) {
      snprintf(field, sizeof field, "%s.%s", base, k);
      return fail(err, field, "%s: unknown field%s; allowed: %s", field,
                  strchr(k, '_') ? " (reference items use camelCase)" : "",
                  quoted_list(ref_keys, 0, opts, sizeof opts));
    }
  }
  snprintf(field, sizeof field, "%s.url", base);
  v = json_object_get(item, "url");
  rv_describe(v, got, sizeof got);
  if (!json_is_string(v) || (strncmp(json_string_value(v), "http://", 7) != 0 &&
                             strncmp(json_string_value(v), "https://", 8) != 0))
    return fail(err, field, "%s: required, an http(s) URL string (from POST /api/v1/files); "
                "got %s", field, got);
  snprintf(field, sizeof field, "%s.kind", base);
  v = json_object_get(item, "kind");
  rv_describe(v, got, sizeof got);
  if (!json_is_string(v) || !rv_listed(ref_kinds, json_string_value(v)))
    return fail(err, field, "%s: required, one of %s; got %s", field,
                quoted_list(ref_kinds, 1, opts, sizeof opts), got);
  kind = json_string_value(v);
  if (strcmp(kind, "video") == 0) (*videos)++;
  else (*images)++;
  if ((v = json_object_get(item, "name")) != NULL && !json_is_string(v)) {
    snprintf(field, sizeof field, "%s.name", base);
    rv_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a string; got %s", field, got);
  }
  if ((v = json_object_get(item, "mimeType")) != NULL) {
    const rv_upload_rule *rule = rv_upload_rule_for(m->uploads, kind);
    snprintf(field, sizeof field, "%s.mimeType", base);
    rv_describe(v, got, sizeof got);
    if (!json_is_string(v) || !rule || !rv_listed(rule->mimes, json_string_value(v)))
      return fail(err, field, "%s: expected one of %s for a%s %s; got %s", field,
                  rule ? quoted_list(rule->mimes, 1, opts, sizeof opts) : "(none)",
                  kind[0] == 'i' ? "n" : "", kind, got);
  }
  if ((v = json_object_get(item, "durationSeconds")) != NULL &&
      (!json_is_number(v) || json_number_value(v) < 0)) {
    snprintf(field, sizeof field, "%s.durationSeconds", base);
    rv_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a number of seconds >= 0; got %s", field, got);
  }
  if ((v = json_object_get(item, "durationToken")) != NULL && !json_is_string(v)) {
    snprintf(field, sizeof field, "%s.durationToken", base);
    rv_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a string (the upload's duration_token); got %s",
                field, got);
  }
  return 0;
}

/*
** verify_token_locked: a video reference `item` (index `i`) must carry a
** durationToken this simulator issued for the file at its url.
*/
static int verify_token_locked(rv_state *s, size_t i, const json_t *item, rv_verr *err) {
  char field[160];
  const char *url = json_string_value(json_object_get(item, "url"));
  const json_t *tok = json_object_get(item, "durationToken");
  const json_t *secs = json_object_get(item, "durationSeconds");
  size_t j;
  snprintf(field, sizeof field, "params.referenceMediaItems[%zu].durationToken", i);
  if (!tok)
    return fail(err, field, "%s: required for a video reference; upload the video with "
                "POST /api/v1/files and pass its duration_token", field);
  for (j = 0; j < s->nfiles; j++) {
    const rv_file *f = s->files[j];
    if (f->token[0] && strcmp(f->url, url) == 0 &&
        strcmp(f->token, json_string_value(tok)) == 0) {
      double off = secs ? json_number_value(secs) - f->duration : 0;
      if (off > DURATION_SLACK || off < -DURATION_SLACK) {
        snprintf(field, sizeof field, "params.referenceMediaItems[%zu].durationSeconds", i);
        return fail(err, field, "%s: expected %g (the uploaded video's duration); got %g",
                    field, f->duration, json_number_value(secs));
      }
      return 0;
    }
  }
  return fail(err, field, "%s: does not verify for this url; pass the duration_token that "
              "POST /api/v1/files returned for the same file", field);
}

/*
** check_references: params.referenceMediaItems `v` for model `m`: the
** array, each item, the mode (up to max_images images, or max_videos video
** plus images), then each video's token. *images / *videos get the counts.
*/
static int check_references(rv_state *s, const rv_model *m, const json_t *v,
                            int *images, int *videos, rv_verr *err) {
  const char *field = "params.referenceMediaItems";
  char got[128];
  size_t i, n;
  if (!json_is_array(v)) {
    rv_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected an array of {url, kind, ...} objects; got %s",
                field, got);
  }
  n = json_array_size(v);
  if (n > (size_t)m->max_refs)
    return fail(err, field, "%s: at most %d items for %s; got %zu", field, m->max_refs,
                m->id, n);
  for (i = 0; i < n; i++)
    if (check_reference(m, i, json_array_get(v, i), images, videos, err) != 0) return -1;
  if (*videos > m->max_videos)
    return fail(err, field, "%s: at most %d video (video editing takes 1 video plus at most "
                "1 image); got %d videos", field, m->max_videos, *videos);
  if (*videos == 0 && *images > m->max_images)
    return fail(err, field, "%s: at most %d images; got %d", field, m->max_images, *images);
  for (i = 0; i < n; i++) {
    const json_t *item = json_array_get(v, i);
    if (strcmp(json_string_value(json_object_get(item, "kind")), "video") == 0 &&
        verify_token_locked(s, i, item, err) != 0)
      return -1;
  }
  return 0;
}

/*
** check_params: the params object `params` (may be NULL) for model `m`;
** sets out->params to the normalized copy and out->warnings.
*/
static int check_params(rv_state *s, const rv_model *m, const json_t *params, rv_gen *out,
                        rv_verr *err) {
  char got[128], keys[256];
  const char *k;
  json_t *v, *dur;
  int images = 0, videos = 0;
  if (!params) {
    out->params = json_object();
    return 0;
  }
  if (!json_is_object(params)) {
    rv_describe(params, got, sizeof got);
    return fail(err, "params", "params: expected an object; got %s", got);
  }
  json_object_foreach((json_t *)params, k, v) {
    const rv_param *p = find_param(m, k);
    if (!p) {
      char field[160];
      snprintf(field, sizeof field, "params.%s", k);
      return fail(err, field, "%s: unknown parameter for %s; allowed: %s", field, m->id,
                  param_keys(m, keys, sizeof keys));
    }
    if (check_param(p, k, v, err) != 0) return -1;
    if (p->type == RV_PARAM_REFERENCES &&
        check_references(s, m, v, &images, &videos, err) != 0)
      return -1;
  }
  out->params = json_deep_copy(params);
  dur = json_object_get(out->params, "duration");
  if (videos > 0 && m->edit_max_duration && dur &&
      atol(json_string_value(dur)) > atol(m->edit_max_duration)) {
    char w[128];
    json_object_set_new(out->params, "duration", json_string(m->edit_max_duration));
    snprintf(w, sizeof w, "params.duration clamped to %s in video editing",
             m->edit_max_duration);
    out->warnings = json_pack("[s]", w);
  }
  if (videos == 0 && images > 0 && json_object_get(params, "aspect_ratio")) {
    if (!out->warnings) out->warnings = json_array();
    json_array_append_new(out->warnings,
                          json_string("params.aspect_ratio ignored in image-to-video (the "
                                      "video follows the reference image's geometry)"));
  }
  return 0;
}

/*
** rv_validate_generation_locked: check create body `body` for the models
** of model.c (the files of `s` verify duration tokens). 0 with `out` set
** (params and warnings are new references), or -1 with `err` set.
*/
int rv_validate_generation_locked(rv_state *s, const json_t *body, rv_gen *out,
                                  rv_verr *err) {
  char got[128], keys[128];
  const char *k;
  const json_t *v;
  long count;
  memset(out, 0, sizeof *out);
  if (!json_is_object(body)) {
    rv_describe(body, got, sizeof got);
    return fail(err, "body", "body: expected a JSON object; got %s", got);
  }
  json_object_foreach((json_t *)body, k, v) {
    if (strcmp(k, "files") == 0)
      return fail(err, "files", "files: not accepted at the top level; reference media go "
                  "in params.referenceMediaItems (upload them with POST /api/v1/files)");
    if (!rv_listed(top_keys, k))
      return fail(err, k, "%s: unknown top-level field; allowed: %s (model controls go in "
                  "params)", k, quoted_list(top_keys, 0, keys, sizeof keys));
  }
  v = json_object_get(body, "model");
  rv_describe(v, got, sizeof got);
  if (!v)
    return fail(err, "model", "model: required; expected a model id such as \"%s\"",
                rv_model_at(0)->id);
  if (!json_is_string(v))
    return fail(err, "model", "model: expected a string; got %s", got);
  if (!(out->model = rv_model_find(json_string_value(v))))
    return fail(err, "model", "model: unknown model %s; known: %s", got, rv_model_at(0)->id);
  v = json_object_get(body, "prompt");
  rv_describe(v, got, sizeof got);
  if (!v)
    return fail(err, "prompt", "prompt: required, a non-empty string of at most %zu "
                "characters", out->model->prompt_max);
  if (!json_is_string(v) || json_string_length(v) == 0)
    return fail(err, "prompt", "prompt: expected a non-empty string; got %s", got);
  count = rv_utf8_count(json_string_value(v), json_string_length(v));
  if (count < 0)
    return fail(err, "prompt", "prompt: not valid UTF-8");
  if ((size_t)count > out->model->prompt_max)
    return fail(err, "prompt", "prompt: at most %zu characters (Unicode code points) for "
                "%s; got %ld", out->model->prompt_max, out->model->id, count);
  out->prompt = json_string_value(v);
  if ((v = json_object_get(body, "client_request_id")) != NULL) {
    rv_describe(v, got, sizeof got);
    if (!json_is_string(v))
      return fail(err, "client_request_id", "client_request_id: expected a string; got %s",
                  got);
    count = rv_utf8_count(json_string_value(v), json_string_length(v));
    if (count < 0 || count > RV_CLIENT_ID_MAX)
      return fail(err, "client_request_id", "client_request_id: at most %d characters; "
                  "got %ld", RV_CLIENT_ID_MAX, count);
  }
  if (check_params(s, out->model, json_object_get(body, "params"), out, err) != 0) {
    json_decref(out->params);
    json_decref(out->warnings);
    out->params = out->warnings = NULL;
    return -1;
  }
  return 0;
}
