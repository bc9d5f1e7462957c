/*
** validate.c — the strict check of a create body (POST /api/v1/generations)
** in its wire form, interpreting each model's catalog data (catalog.c):
** its params elements, its reference_media modes and limits. No model's
** rule is written here. The simulator
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

/* how far a given durationSeconds may be from the uploaded file's */
#define DURATION_SLACK 0.05

/*
** fail: fill `err` with `field` and the message from `fmt`; returns -1 so
** that checks read `return fail(...)`.
*/
static int fail(sim_verr *err, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;
static int fail(sim_verr *err, const char *field, const char *fmt, ...) {
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
static const char *param_keys(const sim_model *m, char *buf, size_t size) {
  size_t i, used = 0;
  buf[0] = '\0';
  for (i = 0; i < json_array_size(m->params) && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
                     json_string_value(json_object_get(json_array_get(m->params, i), "key")));
    if (n < 0) break;
    used += (size_t)n;
  }
  if (m->refs && used < size)
    snprintf(buf + used, size - used, "%sreferenceMediaItems", used ? ", " : "");
  return buf;
}

/* json_list: the strings of JSON array `a`, quoted and comma-separated */
static const char *json_list(const json_t *a, char *buf, size_t size) {
  size_t i, used = 0;
  buf[0] = '\0';
  for (i = 0; i < json_array_size(a) && used < size; i++) {
    const json_t *v = json_array_get(a, i);
    int n = json_is_string(v)
            ? snprintf(buf + used, size - used, "%s\"%s\"", used ? ", " : "", json_string_value(v))
            : snprintf(buf + used, size - used, "%s?", used ? ", " : "");
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

/* json_has_string: 1 when array `a` holds the string `s` */
static int json_has_string(const json_t *a, const char *s) {
  size_t i;
  for (i = 0; i < json_array_size(a); i++)
    if (json_is_string(json_array_get(a, i)) && strcmp(json_string_value(json_array_get(a, i)), s) == 0)
      return 1;
  return 0;
}

/* num_text: a catalog bound (integer or real) as text */
static const char *num_text(const json_t *v, char *buf, size_t size) {
  if (json_is_integer(v)) snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else snprintf(buf, size, "%g", json_number_value(v));
  return buf;
}

/*
** check_param: one params entry `v` of `key` against its catalog element
** `p`: select (a string among options), text (a string, max_length code
** points), number (a JSON number, an integer when "integer", within min
** and max), boolean (true or false). A type this simulator does not know
** takes any value but null.
*/
static int check_param(const json_t *p, const char *key, const json_t *v, sim_verr *err) {
  const char *type = json_string_value(json_object_get(p, "type"));
  char field[160], got[128], opts[512], lo[40], hi[40];
  snprintf(field, sizeof field, "params.%s", key);
  sim_describe(v, got, sizeof got);
  if (strcmp(type, "select") == 0) {
    const json_t *options = json_object_get(p, "options");
    json_list(options, opts, sizeof opts);
    if (!json_is_string(v))
      return fail(err, field, "%s: expected a string, one of %s; got %s", field, opts, got);
    if (!json_has_string(options, json_string_value(v)))
      return fail(err, field, "%s: expected one of %s; got %s", field, opts, got);
  } else if (strcmp(type, "text") == 0) {
    const json_t *ml = json_object_get(p, "max_length");
    long n;
    if (!json_is_string(v))
      return fail(err, field, "%s: expected a string; got %s", field, got);
    n = sim_utf8_count(json_string_value(v), json_string_length(v));
    if (n < 0) return fail(err, field, "%s: not valid UTF-8", field);
    if (json_is_integer(ml) && n > json_integer_value(ml))
      return fail(err, field, "%s: at most %" JSON_INTEGER_FORMAT " characters; got %ld", field,
                  json_integer_value(ml), n);
  } else if (strcmp(type, "number") == 0) {
    const json_t *min = json_object_get(p, "min"), *max = json_object_get(p, "max");
    int integer = json_is_true(json_object_get(p, "integer"));
    int below, above;
    snprintf(lo, sizeof lo, "-inf");
    snprintf(hi, sizeof hi, "+inf");
    if (json_is_number(min)) num_text(min, lo, sizeof lo);
    if (json_is_number(max)) num_text(max, hi, sizeof hi);
    if (!json_is_number(v) || (integer && !json_is_integer(v)))
      return fail(err, field, "%s: expected %s from %s to %s; got %s", field,
                  integer ? "an integer" : "a number", lo, hi, got);
    if (json_is_integer(v) && json_is_integer(min)) below = json_integer_value(v) < json_integer_value(min);
    else below = json_is_number(min) && json_number_value(v) < json_number_value(min);
    if (json_is_integer(v) && json_is_integer(max)) above = json_integer_value(v) > json_integer_value(max);
    else above = json_is_number(max) && json_number_value(v) > json_number_value(max);
    if (below || above)
      return fail(err, field, "%s: expected %s from %s to %s; got %s", field,
                  integer ? "an integer" : "a number", lo, hi, got);
  } else if (strcmp(type, "boolean") == 0) {
    if (!json_is_boolean(v))
      return fail(err, field, "%s: expected true or false (a JSON boolean); got %s", field, got);
  } else if (json_is_null(v)) {
    return fail(err, field, "%s: expected a value; got null (leave the key out instead)", field);
  }
  return 0;
}

/* limit_mimes: the mime_types of model `m` for reference `kind`, or NULL */
static const json_t *limit_mimes(const sim_model *m, const char *kind) {
  return json_object_get(json_object_get(json_object_get(m->refs, "limits"), kind), "mime_types");
}

/*
** check_reference: the shape of item `i` of referenceMediaItems for model
** `m`: the keys, a URL, a kind the model takes, a MIME type of its limits.
*/
static int check_reference(const sim_model *m, size_t i, const json_t *item, sim_verr *err) {
  char base[96], field[160], got[128], opts[256];
  const char *k, *kind;
  const json_t *v, *kinds = json_object_get(m->refs, "kinds");
  snprintf(base, sizeof base, "params.referenceMediaItems[%zu]", i);
  if (!json_is_object(item)) {
    sim_describe(item, got, sizeof got);
    return fail(err, base, "%s: expected an object {url, kind, name?, mimeType?, "
                "durationSeconds?, durationToken?}; got %s", base, got);
  }
  json_object_foreach((json_t *)item, k, v) {
    if (!sim_listed(ref_keys, k)) {
      snprintf(field, sizeof field, "%s.%s", base, k);
      return fail(err, field, "%s: unknown field%s; allowed: %s", field,
                  strchr(k, '_') ? " (reference items use camelCase)" : "",
                  quoted_list(ref_keys, 0, opts, sizeof opts));
    }
  }
  snprintf(field, sizeof field, "%s.url", base);
  v = json_object_get(item, "url");
  sim_describe(v, got, sizeof got);
  if (!json_is_string(v) || (strncmp(json_string_value(v), "http://", 7) != 0 &&
                             strncmp(json_string_value(v), "https://", 8) != 0))
    return fail(err, field, "%s: required, an http(s) URL string (from POST /api/v1/files); "
                "got %s", field, got);
  snprintf(field, sizeof field, "%s.kind", base);
  v = json_object_get(item, "kind");
  sim_describe(v, got, sizeof got);
  if (!json_is_string(v) || !json_has_string(kinds, json_string_value(v)))
    return fail(err, field, "%s: required, one of %s for %s; got %s", field,
                json_list(kinds, opts, sizeof opts), m->id, got);
  kind = json_string_value(v);
  if ((v = json_object_get(item, "name")) != NULL && !json_is_string(v)) {
    snprintf(field, sizeof field, "%s.name", base);
    sim_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a string; got %s", field, got);
  }
  if ((v = json_object_get(item, "mimeType")) != NULL) {
    const json_t *mimes = limit_mimes(m, kind);
    snprintf(field, sizeof field, "%s.mimeType", base);
    sim_describe(v, got, sizeof got);
    if (!json_is_string(v) || !json_has_string(mimes, json_string_value(v)))
      return fail(err, field, "%s: expected one of %s for a%s %s; got %s", field,
                  mimes ? json_list(mimes, opts, sizeof opts) : "(none)",
                  strchr("aeiou", kind[0]) ? "n" : "", kind, got);
  }
  if ((v = json_object_get(item, "durationSeconds")) != NULL &&
      (!json_is_number(v) || json_number_value(v) < 0)) {
    snprintf(field, sizeof field, "%s.durationSeconds", base);
    sim_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a number of seconds >= 0; got %s", field, got);
  }
  if ((v = json_object_get(item, "durationToken")) != NULL && !json_is_string(v)) {
    snprintf(field, sizeof field, "%s.durationToken", base);
    sim_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected a string (the upload's duration_token); got %s",
                field, got);
  }
  return 0;
}

/*
** verify_token_locked: a video reference `item` (index `i`) must carry a
** durationToken this simulator issued for the file at its url.
*/
static int verify_token_locked(sim_state *s, size_t i, const json_t *item, sim_verr *err) {
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
    const sim_file *f = s->files[j];
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

/* count_of: how many items of `refs` have kind `kind` */
static long count_of(const json_t *refs, const char *kind) {
  size_t i;
  long n = 0;
  for (i = 0; i < json_array_size(refs); i++)
    if (strcmp(json_string_value(json_object_get(json_array_get(refs, i), "kind")), kind) == 0) n++;
  return n;
}

/* mode_fits: 1 when the items `refs` match mode `mode`'s counts exactly */
static int mode_fits(const json_t *mode, const json_t *refs, const json_t *kinds) {
  const json_t *counts = json_object_get(mode, "counts");
  size_t i;
  for (i = 0; i < json_array_size(kinds); i++) {
    const char *kind = json_string_value(json_array_get(kinds, i));
    const json_t *range = json_object_get(counts, kind);
    long n = count_of(refs, kind);
    if (!range ? n != 0 : (n < json_integer_value(json_array_get(range, 0)) ||
                           n > json_integer_value(json_array_get(range, 1))))
      return 0;
  }
  return 1;
}

/* describe_modes: "image-to-video takes 1-2 image; video-editing takes ..." */
static const char *describe_modes(const json_t *modes, char *buf, size_t size) {
  size_t i, used = 0;
  buf[0] = '\0';
  for (i = 0; i < json_array_size(modes) && used < size; i++) {
    const json_t *m = json_array_get(modes, i);
    const char *k;
    json_t *r;
    int n = snprintf(buf + used, size - used, "%s%s takes", used ? "; " : "",
                     json_string_value(json_object_get(m, "mode")));
    size_t first = 1;
    if (n < 0) break;
    used += (size_t)n;
    json_object_foreach(json_object_get(m, "counts"), k, r) {
      json_int_t lo = json_integer_value(json_array_get(r, 0));
      json_int_t hi = json_integer_value(json_array_get(r, 1));
      if (used >= size) break;
      if (lo == hi)
        n = snprintf(buf + used, size - used, "%s %" JSON_INTEGER_FORMAT " %s%s",
                     first ? "" : " and", lo, k, lo == 1 ? "" : "s");
      else
        n = snprintf(buf + used, size - used, "%s %" JSON_INTEGER_FORMAT " to %"
                     JSON_INTEGER_FORMAT " %ss", first ? "" : " and", lo, hi, k);
      if (n < 0) break;
      used += (size_t)n;
      first = 0;
    }
  }
  return buf;
}

/*
** check_references: params.referenceMediaItems `v` for model `m`: the
** array, at most max_items, each item, then the one mode of
** reference_media.modes whose counts the items match (*mode_out), then
** each video's duration token.
*/
static int check_references(sim_state *s, const sim_model *m, const json_t *v,
                            const json_t **mode_out, sim_verr *err) {
  const char *field = "params.referenceMediaItems";
  const json_t *modes = json_object_get(m->refs, "modes"), *kinds = json_object_get(m->refs, "kinds");
  json_int_t max = json_integer_value(json_object_get(m->refs, "max_items"));
  char got[128], desc[512];
  size_t i, n;
  if (!json_is_array(v)) {
    sim_describe(v, got, sizeof got);
    return fail(err, field, "%s: expected an array of {url, kind, ...} objects; got %s",
                field, got);
  }
  n = json_array_size(v);
  if ((json_int_t)n > max)
    return fail(err, field, "%s: at most %" JSON_INTEGER_FORMAT " items for %s; got %zu",
                field, max, m->id, n);
  for (i = 0; i < n; i++)
    if (check_reference(m, i, json_array_get(v, i), err) != 0) return -1;
  *mode_out = NULL;
  if (n > 0) {
    for (i = 0; i < json_array_size(modes); i++)
      if (mode_fits(json_array_get(modes, i), v, kinds)) {
        *mode_out = json_array_get(modes, i);
        break;
      }
    if (!*mode_out) {
      char counts[160];
      size_t k, used = 0;
      counts[0] = '\0';
      for (k = 0; k < json_array_size(kinds) && used < sizeof counts; k++) {
        const char *kind = json_string_value(json_array_get(kinds, k));
        long c = count_of(v, kind);
        int w;
        if (c == 0) continue;
        w = snprintf(counts + used, sizeof counts - used, "%s%ld %s%s", used ? " and " : "",
                     c, kind, c == 1 ? "" : "s");
        if (w < 0) break;
        used += (size_t)w;
      }
      return fail(err, field, "%s: %s match no mode of %s (%s)", field, counts, m->id,
                  describe_modes(modes, desc, sizeof desc));
    }
  }
  for (i = 0; i < n; i++) {
    const json_t *item = json_array_get(v, i);
    if (strcmp(json_string_value(json_object_get(item, "kind")), "video") == 0 &&
        verify_token_locked(s, i, item, err) != 0)
      return -1;
  }
  return 0;
}

/* add_warning: append `w` to out->warnings */
static void add_warning(sim_gen *out, const char *w) {
  if (!out->warnings) out->warnings = json_array();
  json_array_append_new(out->warnings, json_string(w));
}

/*
** apply_mode: what the matched reference mode `mode` does to the
** normalized params: "param_caps" lowers a larger value to the cap (as the
** service normalizes a video edit's duration), "ignored_params" are kept
** but reported as ignored. Each leaves a warning on the task.
*/
static void apply_mode(const json_t *mode, sim_gen *out) {
  const char *name = json_string_value(json_object_get(mode, "mode")), *k;
  const json_t *ignored = json_object_get(mode, "ignored_params");
  json_t *cap;
  char w[256];
  size_t i;
  json_object_foreach(json_object_get(mode, "param_caps"), k, cap) {
    json_t *given = json_object_get(out->params, k);
    double g, c;
    if (!given) continue;
    g = json_is_string(given) ? atof(json_string_value(given)) : json_number_value(given);
    c = json_is_string(cap) ? atof(json_string_value(cap)) : json_number_value(cap);
    if (g <= c) continue;
    json_object_set(out->params, k, cap);
    snprintf(w, sizeof w, "params.%s clamped to %s in %s", k,
             json_is_string(cap) ? json_string_value(cap) : "its cap", name);
    add_warning(out, w);
  }
  for (i = 0; i < json_array_size(ignored); i++) {
    const char *k2 = json_string_value(json_array_get(ignored, i));
    if (!k2 || !json_object_get(out->params, k2)) continue;
    snprintf(w, sizeof w, "params.%s ignored in %s (the result follows the reference media)",
             k2, name);
    add_warning(out, w);
  }
}

/*
** check_params: the params object `params` (may be NULL) for model `m`;
** sets out->params to the normalized copy and out->warnings.
*/
static int check_params(sim_state *s, const sim_model *m, const json_t *params, sim_gen *out,
                        sim_verr *err) {
  char got[128], keys[512], opts[512];
  const char *k;
  json_t *v;
  const json_t *mode = NULL;
  size_t i;
  if (params && !json_is_object(params)) {
    sim_describe(params, got, sizeof got);
    return fail(err, "params", "params: expected an object; got %s", got);
  }
  json_object_foreach((json_t *)params, k, v) {
    const json_t *p;
    char field[160];
    snprintf(field, sizeof field, "params.%s", k);
    if (strcmp(k, "referenceMediaItems") == 0 && m->refs) {
      if (check_references(s, m, v, &mode, err) != 0) return -1;
      continue;
    }
    if (!(p = sim_model_param(m, k)))
      return fail(err, field, "%s: unknown parameter for %s; allowed: %s", field, m->id,
                  param_keys(m, keys, sizeof keys));
    if (check_param(p, k, v, err) != 0) return -1;
  }
  for (i = 0; i < json_array_size(m->params); i++) {
    const json_t *p = json_array_get(m->params, i);
    const char *key = json_string_value(json_object_get(p, "key"));
    char field[160];
    if (!json_is_true(json_object_get(p, "required")) || json_object_get(params, key)) continue;
    snprintf(field, sizeof field, "params.%s", key);
    if (json_is_array(json_object_get(p, "options")))
      return fail(err, field, "%s: required for %s; expected one of %s", field, m->id,
                  json_list(json_object_get(p, "options"), opts, sizeof opts));
    return fail(err, field, "%s: required for %s", field, m->id);
  }
  out->params = params ? json_deep_copy(params) : json_object();
  if (mode) apply_mode(mode, out);
  return 0;
}

/*
** sim_validate_generation_locked: check create body `body` against the
** catalog of `s` (whose files verify duration tokens). 0 with `out` set
** (params and warnings are new references), or -1 with `err` set.
*/
int sim_validate_generation_locked(sim_state *s, const json_t *body, sim_gen *out,
                                  sim_verr *err) {
  char got[128], keys[128], ids[512];
  const char *k;
  const json_t *v;
  long count;
  memset(out, 0, sizeof *out);
  if (!json_is_object(body)) {
    sim_describe(body, got, sizeof got);
    return fail(err, "body", "body: expected a JSON object; got %s", got);
  }
  json_object_foreach((json_t *)body, k, v) {
    if (strcmp(k, "files") == 0)
      return fail(err, "files", "files: not accepted at the top level; reference media go "
                  "in params.referenceMediaItems (upload them with POST /api/v1/files)");
    if (!sim_listed(top_keys, k))
      return fail(err, k, "%s: unknown top-level field; allowed: %s (model controls go in "
                  "params)", k, quoted_list(top_keys, 0, keys, sizeof keys));
  }
  v = json_object_get(body, "model");
  sim_describe(v, got, sizeof got);
  if (!v)
    return fail(err, "model", "model: required; expected a model id, one of %s",
                sim_model_ids(s->catalog, 1, ids, sizeof ids));
  if (!json_is_string(v))
    return fail(err, "model", "model: expected a string; got %s", got);
  if (!(out->model = sim_model_find(s->catalog, json_string_value(v))))
    return fail(err, "model", "model: unknown model %s; known: %s", got,
                sim_model_ids(s->catalog, 0, ids, sizeof ids));
  if (strcmp(out->model->runtime, "async_task") != 0)
    return fail(err, "model", "model: %s is a %s model (runtime \"%s\"), not a generation "
                "model: use the Chat API (POST /api/v1/chat/completions)", out->model->id,
                out->model->category, out->model->runtime);
  if (strcmp(out->model->api_status, "available") != 0)
    return fail(err, "model", "model: %s is not available in the Public API (api_status "
                "\"%s\")", out->model->id, out->model->api_status);
  v = json_object_get(body, "prompt");
  sim_describe(v, got, sizeof got);
  out->prompt = "";
  if (out->model->prompt_max > 0 || v) {
    if (!v)
      return fail(err, "prompt", "prompt: required, a non-empty string of at most %lld "
                  "characters", out->model->prompt_max);
    if (!json_is_string(v) || json_string_length(v) == 0)
      return fail(err, "prompt", "prompt: expected a non-empty string; got %s", got);
    count = sim_utf8_count(json_string_value(v), json_string_length(v));
    if (count < 0)
      return fail(err, "prompt", "prompt: not valid UTF-8");
    if (count > out->model->prompt_max)
      return fail(err, "prompt", "prompt: at most %lld characters (Unicode code points) for "
                  "%s; got %ld", out->model->prompt_max, out->model->id, count);
    out->prompt = json_string_value(v);
  }
  if ((v = json_object_get(body, "client_request_id")) != NULL) {
    sim_describe(v, got, sizeof got);
    if (!json_is_string(v))
      return fail(err, "client_request_id", "client_request_id: expected a string; got %s",
                  got);
    count = sim_utf8_count(json_string_value(v), json_string_length(v));
    if (count < 0 || count > SIM_CLIENT_ID_MAX)
      return fail(err, "client_request_id", "client_request_id: at most %d characters "
                  "(code points); got %ld", SIM_CLIENT_ID_MAX, count);
  }
  if (check_params(s, out->model, json_object_get(body, "params"), out, err) != 0) {
    json_decref(out->params);
    json_decref(out->warnings);
    out->params = out->warnings = NULL;
    return -1;
  }
  out->credits = sim_model_credits(out->model, out->prompt);
  return 0;
}
