/*
** api.c — the /api/v1 routes of the API listener: the gate run on the
** headers (public_api_disabled, auth, route, method, scope) and the JSON
** endpoints: models, credits, generations, file metadata. Uploads are in
** upload.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "sim.h"

typedef void (*route_fn)(sim_req *rq, struct MHD_Connection *c, sim_reply *r);

static void get_models(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void get_credits(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void post_generation(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void get_generation(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void get_file(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhooks_create(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhooks_list(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_get(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_patch(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_delete(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_rotate(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_test(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_deliveries(sim_req *rq, struct MHD_Connection *c, sim_reply *r);
static void webhook_events(sim_req *rq, struct MHD_Connection *c, sim_reply *r);

/* the routes as data; a path with `has_id` takes one more segment, then `suffix` */
typedef struct route {
  const char *method;
  const char *path;
  int has_id;
  const char *suffix;
  int auth;           /* needs an API key */
  unsigned scope;     /* the SIM_SCOPE_* bit the key must carry, 0 none */
  int json_body;      /* reads a JSON body */
  int upload;         /* reads a multipart body (upload.c) */
  const char *allow;  /* the Allow header of a 405 */
  route_fn fn;
} route;

static const route routes[] = {
  { "GET", "/api/v1/models", 0, "", 0, 0, 0, 0, "GET, HEAD", get_models },
  { "GET", "/api/v1/credits", 0, "", 1, SIM_SCOPE_CREDITS_READ, 0, 0, "GET, HEAD", get_credits },
  { "POST", "/api/v1/generations", 0, "", 1, SIM_SCOPE_GEN_CREATE, 1, 0, "POST",
    post_generation },
  { "GET", "/api/v1/generations/", 1, "", 1, SIM_SCOPE_GEN_READ, 0, 0, "GET, HEAD",
    get_generation },
  { "POST", "/api/v1/files", 0, "", 1, SIM_SCOPE_FILES_CREATE, 0, 1, "POST", NULL },
  { "GET", "/api/v1/files/", 1, "", 1, SIM_SCOPE_FILES_READ, 0, 0, "GET, HEAD", get_file },
  { "POST", "/api/v1/webhooks", 0, "", 1, SIM_SCOPE_WEBHOOKS, 1, 0, "GET, HEAD, POST",
    webhooks_create },
  { "GET", "/api/v1/webhooks", 0, "", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "GET, HEAD, POST",
    webhooks_list },
  { "GET", "/api/v1/webhooks/", 1, "", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "GET, HEAD, PATCH, DELETE",
    webhook_get },
  { "PATCH", "/api/v1/webhooks/", 1, "", 1, SIM_SCOPE_WEBHOOKS, 1, 0,
    "GET, HEAD, PATCH, DELETE", webhook_patch },
  { "DELETE", "/api/v1/webhooks/", 1, "", 1, SIM_SCOPE_WEBHOOKS, 0, 0,
    "GET, HEAD, PATCH, DELETE", webhook_delete },
  { "POST", "/api/v1/webhooks/", 1, "/rotate-secret", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "POST",
    webhook_rotate },
  { "POST", "/api/v1/webhooks/", 1, "/test", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "POST", webhook_test },
  { "GET", "/api/v1/webhooks/", 1, "/deliveries", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "GET, HEAD",
    webhook_deliveries },
  { "GET", "/api/v1/webhook-events", 0, "", 1, SIM_SCOPE_WEBHOOKS, 0, 0, "GET, HEAD",
    webhook_events },
};
#define NROUTES (sizeof routes / sizeof routes[0])

/* the scope names [API.md], in bit order */
static const char *const scope_names[] = {
  "models:read", "generations:create", "generations:read", "files:create", "files:read",
  "credits:read", "webhooks:manage", "chat:create", "chat:read", NULL
};

/* sim_scope_name: the name of the one scope bit `bit` */
const char *sim_scope_name(unsigned bit) {
  size_t i;
  for (i = 0; scope_names[i]; i++)
    if (bit == 1u << i) return scope_names[i];
  return "?";
}

/*
** sim_scope_parse: a comma-separated scope list into bits *out; 0, or -1
** when a name is unknown (an empty list is no scope at all).
*/
int sim_scope_parse(const char *list, unsigned *out) {
  *out = 0;
  while (*list) {
    size_t n = strcspn(list, ","), i;
    for (i = 0; scope_names[i]; i++)
      if (strlen(scope_names[i]) == n && strncmp(scope_names[i], list, n) == 0) break;
    if (!scope_names[i]) return -1;
    *out |= 1u << i;
    list += n;
    if (*list == ',') list++;
  }
  return 0;
}

/* path_matches: 1 when `path` is route `rt`'s path (plus one id segment and the suffix) */
static int path_matches(const route *rt, const char *path) {
  size_t n = strlen(rt->path), id;
  if (!rt->has_id) return strcmp(path, rt->path) == 0;
  if (strncmp(path, rt->path, n) != 0) return 0;
  id = strcspn(path + n, "/");
  return id > 0 && strcmp(path + n + id, rt->suffix) == 0;
}

/* method_matches: HEAD is served wherever GET is */
static int method_matches(const route *rt, const char *method) {
  return strcmp(rt->method, method) == 0 ||
         (strcmp(rt->method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* key_in: the entry of `list` equal to `key`, or NULL */
static const char *key_in(const sim_keylist *list, const char *key) {
  size_t i;
  for (i = 0; i < list->n; i++)
    if (strcmp(list->v[i], key) == 0) return list->v[i];
  return NULL;
}

/*
** authenticate: check the Authorization header of `c` against the keys on
** the command line; fills rq->caller, or the early reply with the 401.
** Messages never quote the key: logs and bodies must not carry it.
*/
static int authenticate(sim_req *rq, struct MHD_Connection *c) {
  const sim_options *o = rq->s->opt;
  const char *h = sim_header(c, "Authorization");
  const char *key, *hit;
  size_t i;
  if (!h) {
    sim_reply_error(rq, &rq->early, 401, "api_key_missing", "Authorization",
                   "Authorization header missing: send \"Authorization: Bearer <API key>\"");
    return -1;
  }
  if (strncasecmp(h, "Bearer ", 7) != 0) {
    sim_reply_error(rq, &rq->early, 401, "api_key_invalid", "Authorization",
                   "Authorization header must be \"Bearer <API key>\" (scheme Bearer, "
                   "one space, then the key)");
    return -1;
  }
  key = h + 7;
  if ((hit = key_in(&o->api_keys, key)) != NULL) {
    rq->caller.key = hit;
    rq->caller.scopes = SIM_SCOPE_ALL;
    return 0;
  }
  for (i = 0; i < o->nscoped; i++) {
    if (strcmp(o->scoped[i].key, key) == 0) {
      rq->caller.key = o->scoped[i].key;
      rq->caller.scopes = o->scoped[i].scopes;
      return 0;
    }
  }
  if (key_in(&o->revoked_keys, key)) {
    sim_reply_error(rq, &rq->early, 401, "api_key_revoked", "Authorization",
                   "this API key has been revoked");
    return -1;
  }
  if (key_in(&o->expired_keys, key)) {
    sim_reply_error(rq, &rq->early, 401, "api_key_expired", "Authorization",
                   "this API key has expired");
    return -1;
  }
  sim_reply_error(rq, &rq->early, 401, "api_key_invalid", "Authorization",
                 "the API key is not recognized");
  return -1;
}

/*
** sim_api_gate: everything decided from the headers of an API request `rq`
** on `c`: 503 when the public API is disabled, auth (except for models),
** 404 / 405, and the scope of the POST endpoints. Sets rq->route, or
** leaves the error in rq->early.
*/
void sim_api_gate(sim_req *rq, struct MHD_Connection *c) {
  const char *path = rq->path;
  const route *known = NULL;
  size_t i;
  int disabled, hit = -1;
  if (strncmp(path, "/api/v1/", 8) != 0) {
    sim_reply_error(rq, &rq->early, 404, "not_found", NULL,
                   "no such path: %s (the API lives under /api/v1/)", path);
    rq->has_early = 1;
    return;
  }
  sim_lock(rq->s);
  disabled = rq->s->public_api_disabled;
  sim_unlock(rq->s);
  if (disabled) {
    sim_reply_error(rq, &rq->early, 503, "public_api_disabled", NULL,
                   "the public API is disabled right now; retry later");
    rq->has_early = 1;
    return;
  }
  for (i = 0; i < NROUTES; i++) {
    if (!path_matches(&routes[i], path)) continue;
    if (!known) known = &routes[i];
    if (method_matches(&routes[i], rq->method)) {
      hit = (int)i;
      break;
    }
  }
  if (!(known && !known->auth) && authenticate(rq, c) != 0) {
    rq->has_early = 1;
    return;
  }
  if (!known) {
    sim_reply_error(rq, &rq->early, 404, "not_found", NULL, "no such endpoint: %s %s",
                   rq->method, path);
    rq->has_early = 1;
    return;
  }
  if (hit < 0) {
    sim_reply_error(rq, &rq->early, 405, "method_not_allowed", NULL,
                   "%s does not take %s; allowed: %s", path, rq->method, known->allow);
    rq->early.allow = known->allow;
    rq->has_early = 1;
    return;
  }
  if (routes[hit].scope && !(rq->caller.scopes & routes[hit].scope)) {
    sim_reply_error(rq, &rq->early, 403, "api_scope_denied", NULL,
                   "this API key lacks the scope %s, which %s %s needs",
                   sim_scope_name(routes[hit].scope), rq->method, path);
    rq->has_early = 1;
    return;
  }
  rq->route = hit;
}

/* sim_api_takes_body: 1 when the route chosen for `rq` reads a JSON body */
int sim_api_takes_body(const sim_req *rq) {
  return rq->route >= 0 && routes[rq->route].json_body;
}

/* sim_api_is_upload: 1 when the route chosen for `rq` is the upload */
int sim_api_is_upload(const sim_req *rq) {
  return rq->route >= 0 && routes[rq->route].upload;
}

/* sim_api_dispatch: run the route the gate chose for `rq` into `r` */
void sim_api_dispatch(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  if (rq->route < 0 || !routes[rq->route].fn) {
    sim_reply_error(rq, r, 500, "internal_error", NULL, "no handler for %s %s",
                   rq->method, rq->path);
    return;
  }
  routes[rq->route].fn(rq, c, r);
}

/* ---- endpoints ---------------------------------------------------------- */

/* GET /api/v1/models: the catalog document as loaded (read-only, shared) */
static void get_models(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  (void)c;
  r->status = 200;
  r->data = (unsigned char *)rq->s->catalog->text;   /* dumped once at load */
  r->len = strlen(rq->s->catalog->text);
  r->data_static = 1;
}

/* GET /api/v1/credits: the balance, after any refunds now due */
static void get_credits(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  long long credits;
  (void)c;
  sim_lock(rq->s);
  sim_tasks_advance_all_locked(rq->s);
  credits = rq->s->credits;
  sim_unlock(rq->s);
  sim_reply_json(r, 200, json_pack("{s:I}", "current_credits", (json_int_t)credits));
}

/* check_idem_key: 0 when the Idempotency-Key `k` (may be NULL) is absent or valid */
static int check_idem_key(sim_req *rq, sim_reply *r, const char *k) {
  char why[160];
  if (!k || sim_idem_key_check(k, why, sizeof why) == 0) return 0;
  sim_reply_error(rq, r, 400, "validation_failed", "Idempotency-Key", "%s", why);
  return -1;
}

/* find_idem_locked: the task created by `owner` with Idempotency-Key `k` */
static sim_task *find_idem_locked(sim_state *s, const char *owner, const char *k) {
  size_t i;
  for (i = 0; i < s->ntasks; i++) {
    sim_task *t = s->tasks[i];
    if (t->idem_key && strcmp(t->idem_key, k) == 0 && strcmp(t->owner, owner) == 0)
      return t;
  }
  return NULL;
}

/*
** create_locked: after validation, the idempotency and credit rules of a
** create by `rq`: replay, 409, 402, or reserve the price and add the task.
** `canon` is the canonical body; `gen` is consumed.
*/
static void create_locked(sim_req *rq, sim_reply *r, const char *idem, char *canon,
                          sim_gen *gen) {
  sim_state *s = rq->s;
  sim_task *t;
  if (idem && (t = find_idem_locked(s, rq->caller.key, idem)) != NULL) {
    if (strcmp(t->canon, canon) == 0) {
      sim_task_advance_locked(s, t, 0);
      s->idempotent_replays++;
      sim_reply_json(r, 201, sim_task_json_locked(s, t));
      r->replayed = 1;
    } else {
      sim_reply_error(rq, r, 409, "idempotency_conflict", "Idempotency-Key",
                     "Idempotency-Key \"%s\" was already used with a different body "
                     "(task %s); use a new key for a new request", idem, t->id);
    }
    goto out;
  }
  if (s->credits < gen->credits) {
    sim_reply_error(rq, r, 402, "insufficient_credits", NULL,
                   "insufficient credits: this %s run reserves %lld credits, the balance is "
                   "%lld", gen->model->id, gen->credits, s->credits);
    goto out;
  }
  t = sim_task_add_locked(s);
  if (!t || !(t->owner = strdup(rq->caller.key)) || !(t->prompt = strdup(gen->prompt)) ||
      (idem && !(t->idem_key = strdup(idem)))) {
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    if (t) {
      /* keep the half-made task out of sight: it never reserved credits */
      s->ntasks--;
      free(t->owner);
      free(t->prompt);
      free(t);
    }
    goto out;
  }
  t->canon = canon;
  canon = NULL;
  t->model = gen->model;
  t->credits = gen->credits;
  snprintf(t->ext, sizeof t->ext, "%s", sim_result_ext(gen->model, gen->params));
  t->params = gen->params;
  t->warnings = gen->warnings;
  gen->params = gen->warnings = NULL;
  t->fail = strstr(t->prompt, SIM_FAIL_SILENT) ? 2 : strstr(t->prompt, SIM_FAIL_MARKER) ? 1 : 0;
  s->credits -= t->credits;
  s->charges++;
  s->credits_charged += t->credits;
  s->tasks_created++;
  sim_reply_json(r, 201, sim_task_json_locked(s, t));
out:
  free(canon);
  json_decref(gen->params);
  json_decref(gen->warnings);
}

/*
** POST /api/v1/generations: a strict check of the wire form (validate.c),
** then idempotency, credits, and the new task.
*/
static void post_generation(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  const char *ct = sim_header(c, "Content-Type");
  const char *idem = sim_header(c, "Idempotency-Key");
  json_error_t jerr;
  json_t *body;
  sim_gen gen;
  sim_verr verr;
  char *canon;
  if (!sim_media_type_is(ct, "application/json")) {
    sim_reply_error(rq, r, 400, "validation_failed", "Content-Type",
                   "Content-Type: expected application/json; got %s%s%s",
                   ct ? "\"" : "", ct ? ct : "none", ct ? "\"" : "");
    return;
  }
  if (check_idem_key(rq, r, idem) != 0) return;
  if (!rq->body || rq->body_len == 0) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: expected a JSON object; got an empty body");
    return;
  }
  body = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (!body) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: invalid JSON at line %d, column %d: %s", jerr.line,
                   jerr.column, jerr.text);
    return;
  }
  sim_lock(rq->s);
  if (sim_validate_generation_locked(rq->s, body, &gen, &verr) != 0) {
    sim_unlock(rq->s);
    sim_reply_error(rq, r, 400, "validation_failed", verr.field, "%s", verr.msg);
    json_decref(body);
    return;
  }
  canon = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
  if (!canon) {
    sim_unlock(rq->s);
    json_decref(gen.params);
    json_decref(gen.warnings);
    json_decref(body);
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    return;
  }
  create_locked(rq, r, idem, canon, &gen);   /* gen.prompt points into body */
  sim_unlock(rq->s);
  json_decref(body);
}

/* the id segment of a has_id route's path */
static const char *path_id(const sim_req *rq) {
  return rq->path + strlen(routes[rq->route].path);
}

/* path_id_copy: the id segment into `buf` (ids have no '/'); "" when too long */
static const char *path_id_copy(const sim_req *rq, char *buf, size_t size) {
  const char *id = path_id(rq);
  size_t n = strcspn(id, "/");
  if (n >= size) n = 0;
  memcpy(buf, id, n);
  buf[n] = '\0';
  return buf;
}

/* GET /api/v1/generations/{id}: the task, moved on by this poll */
static void get_generation(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  const char *id = path_id(rq);
  sim_task *t;
  (void)c;
  sim_lock(rq->s);
  t = sim_task_find_locked(rq->s, id);
  if (!t || strcmp(t->owner, rq->caller.key) != 0) {
    sim_unlock(rq->s);
    sim_reply_error(rq, r, 404, "not_found", NULL, "no task %s for this API key", id);
    return;
  }
  sim_task_advance_locked(rq->s, t, 1);
  sim_reply_json(r, 200, sim_task_json_locked(rq->s, t));
  sim_unlock(rq->s);
}

/* GET /api/v1/files/{id}: the uploaded file's object */
static void get_file(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  const char *id = path_id(rq);
  sim_file *f;
  (void)c;
  sim_lock(rq->s);
  f = sim_file_find_locked(rq->s, id);
  if (!f || strcmp(f->owner, rq->caller.key) != 0) {
    sim_unlock(rq->s);
    sim_reply_error(rq, r, 404, "not_found", NULL, "no file %s for this API key", id);
    return;
  }
  sim_reply_json(r, 200, sim_file_json(f));
  sim_unlock(rq->s);
}

/* ---- webhooks ------------------------------------------------------------ */

/*
** json_body: the request body of `rq` as a JSON object (Content-Type
** application/json), or NULL with a 400 in `r`.
*/
static json_t *json_body(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  const char *ct = sim_header(c, "Content-Type");
  json_error_t jerr;
  json_t *body;
  char got[128];
  if (!sim_media_type_is(ct, "application/json")) {
    sim_reply_error(rq, r, 400, "validation_failed", "Content-Type",
                   "Content-Type: expected application/json; got %s%s%s",
                   ct ? "\"" : "", ct ? ct : "none", ct ? "\"" : "");
    return NULL;
  }
  if (!rq->body || rq->body_len == 0) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: expected a JSON object; got an empty body");
    return NULL;
  }
  body = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  if (!body) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                   jerr.text);
    return NULL;
  }
  if (!json_is_object(body)) {
    sim_describe(body, got, sizeof got);
    sim_reply_error(rq, r, 400, "validation_failed", "body", "body: expected a JSON object; "
                   "got %s", got);
    json_decref(body);
    return NULL;
  }
  return body;
}

/*
** check_webhook_fields: the fields of a create (`creating`) or PATCH body
** `b`: name (a string of at most 100 characters, or null), url (the URL
** rules: webhook_url_rejected), event_types (known types, no repeats),
** status (PATCH: "active" | "disabled"). 0, or -1 with the error in `r`.
*/
static int check_webhook_fields(sim_req *rq, sim_reply *r, const json_t *b, int creating) {
  static const char *const create_keys[] = { "name", "url", "event_types", NULL };
  static const char *const patch_keys[] = { "name", "url", "event_types", "status", NULL };
  const char *k, *st;
  json_t *v;
  char got[128], why[256];
  long n;
  json_object_foreach((json_t *)b, k, v) {
    if (!sim_listed(creating ? create_keys : patch_keys, k)) {
      sim_reply_error(rq, r, 400, "validation_failed", k, "%s: unknown field; allowed: %s", k,
                     creating ? "name, url, event_types" : "name, url, event_types, status");
      return -1;
    }
  }
  if ((v = json_object_get(b, "name")) && !json_is_null(v)) {
    n = json_is_string(v) ? sim_utf8_count(json_string_value(v), json_string_length(v)) : -1;
    if (n < 1 || n > 100) {
      sim_describe(v, got, sizeof got);
      sim_reply_error(rq, r, 400, "validation_failed", "name", "name: expected a string of 1 "
                     "to 100 characters; got %s", got);
      return -1;
    }
  }
  v = json_object_get(b, "url");
  if (creating && !v) {
    sim_reply_error(rq, r, 400, "validation_failed", "url", "url: required, the https:// URL "
                   "that receives the events");
    return -1;
  }
  if (v && !json_is_string(v)) {
    sim_describe(v, got, sizeof got);
    sim_reply_error(rq, r, 400, "validation_failed", "url", "url: expected a string; got %s", got);
    return -1;
  }
  if (v && sim_webhook_url_check(json_string_value(v), rq->s->opt->allow_loopback_webhooks,
                                 why, sizeof why) != 0) {
    sim_reply_error(rq, r, 400, "webhook_url_rejected", "url", "%s", why);
    return -1;
  }
  if ((v = json_object_get(b, "event_types")) && !sim_webhook_types_ok(v)) {
    sim_describe(v, got, sizeof got);
    sim_reply_error(rq, r, 400, "validation_failed", "event_types", "event_types: expected a "
                   "non-empty array of distinct event types, each \"generation.succeeded\" or "
                   "\"generation.failed\"; got %s", got);
    return -1;
  }
  if ((v = json_object_get(b, "status")) &&
      (!(st = json_string_value(v)) || (strcmp(st, "active") != 0 && strcmp(st, "disabled") != 0))) {
    sim_describe(v, got, sizeof got);
    sim_reply_error(rq, r, 400, "validation_failed", "status", "status: expected \"active\" or "
                   "\"disabled\"; got %s", got);
    return -1;
  }
  return 0;
}

/* apply_webhook_fields: set the fields of checked body `b` on `w`; -1 out of memory */
static int apply_webhook_fields(sim_webhook *w, const json_t *b) {
  const json_t *v;
  if ((v = json_object_get(b, "name"))) {
    char *name = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    if (json_is_string(v) && !name) return -1;
    free(w->name);
    w->name = name;
  }
  if ((v = json_object_get(b, "url"))) {
    char *url = strdup(json_string_value(v));
    if (!url) return -1;
    free(w->url);
    w->url = url;
  }
  if ((v = json_object_get(b, "event_types"))) {
    json_decref(w->event_types);
    w->event_types = json_deep_copy(v);
  }
  if ((v = json_object_get(b, "status"))) {
    int off = strcmp(json_string_value(v), "disabled") == 0;
    if (off && !w->disabled) sim_iso_now(w->disabled_at);
    if (!off) w->disabled_at[0] = '\0';
    w->disabled = off;
  }
  sim_iso_now(w->updated_at);
  return 0;
}

/* POST /api/v1/webhooks: a new endpoint; the signing secret shown this once */
static void webhooks_create(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  json_t *b = json_body(rq, c, r);
  sim_webhook *w;
  if (!b) return;
  if (check_webhook_fields(rq, r, b, 1) != 0) {
    json_decref(b);
    return;
  }
  if (!json_object_get(b, "event_types"))
    json_object_set_new(b, "event_types", json_pack("[s,s]", "generation.succeeded",
                                                     "generation.failed"));
  sim_lock(rq->s);
  w = sim_webhook_add_locked(rq->s, rq->caller.key);
  if (!w || apply_webhook_fields(w, b) != 0) {
    if (w) sim_webhook_remove_locked(rq->s, w);
    sim_unlock(rq->s);
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    json_decref(b);
    return;
  }
  memcpy(w->updated_at, w->created_at, sizeof w->updated_at);
  sim_reply_json(r, 201, sim_webhook_json(w, 1));
  sim_unlock(rq->s);
  json_decref(b);
}

/* GET /api/v1/webhooks: this key's endpoints, oldest first, without secrets */
static void webhooks_list(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  json_t *data = json_array();
  size_t i;
  (void)c;
  sim_lock(rq->s);
  for (i = 0; i < rq->s->nwebhooks; i++)
    if (strcmp(rq->s->webhooks[i]->owner, rq->caller.key) == 0)
      json_array_append_new(data, sim_webhook_json(rq->s->webhooks[i], 0));
  sim_unlock(rq->s);
  sim_reply_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/*
** webhook_locked: lock the state and find the endpoint of the path for
** this key; NULL (unlocked) with a 404 in `r` when there is none.
*/
static sim_webhook *webhook_locked(sim_req *rq, sim_reply *r) {
  char id[48];
  sim_webhook *w;
  path_id_copy(rq, id, sizeof id);
  sim_lock(rq->s);
  w = sim_webhook_find_locked(rq->s, rq->caller.key, id);
  if (!w) {
    sim_unlock(rq->s);
    sim_reply_error(rq, r, 404, "not_found", NULL, "no webhook endpoint %s for this API key",
                   id);
  }
  return w;
}

/* GET /api/v1/webhooks/{id} */
static void webhook_get(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  sim_webhook *w = webhook_locked(rq, r);
  (void)c;
  if (!w) return;
  sim_reply_json(r, 200, sim_webhook_json(w, 0));
  sim_unlock(rq->s);
}

/* PATCH /api/v1/webhooks/{id}: name, url, event_types, status */
static void webhook_patch(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  json_t *b = json_body(rq, c, r);
  sim_webhook *w;
  if (!b) return;
  if (check_webhook_fields(rq, r, b, 0) != 0 || !(w = webhook_locked(rq, r))) {
    json_decref(b);
    return;
  }
  if (apply_webhook_fields(w, b) != 0)
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
  else
    sim_reply_json(r, 200, sim_webhook_json(w, 0));
  sim_unlock(rq->s);
  json_decref(b);
}

/* DELETE /api/v1/webhooks/{id}: gone, with its pending deliveries */
static void webhook_delete(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  sim_webhook *w = webhook_locked(rq, r);
  json_t *o;
  (void)c;
  if (!w) return;
  o = json_pack("{s:s,s:s,s:b}", "id", w->id, "object", "webhook_endpoint", "deleted", 1);
  sim_webhook_remove_locked(rq->s, w);
  sim_unlock(rq->s);
  sim_reply_json(r, 200, o);
}

/* POST /api/v1/webhooks/{id}/rotate-secret: a new secret, shown this once */
static void webhook_rotate(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  sim_webhook *w = webhook_locked(rq, r);
  (void)c;
  if (!w) return;
  sim_webhook_new_secret_locked(rq->s, w);
  sim_iso_now(w->updated_at);
  sim_reply_json(r, 200, sim_webhook_json(w, 1));
  sim_unlock(rq->s);
}

/* POST /api/v1/webhooks/{id}/test: a webhook.test event; 202 with its pending delivery */
static void webhook_test(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  sim_webhook *w = webhook_locked(rq, r);
  sim_delivery *d;
  (void)c;
  if (!w) return;
  d = sim_webhook_test_locked(rq->s, w);
  if (d) sim_reply_json(r, 202, sim_delivery_json(d));
  else sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
  sim_unlock(rq->s);
}

/* GET /api/v1/webhooks/{id}/deliveries: every attempt, newest first */
static void webhook_deliveries(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  sim_webhook *w = webhook_locked(rq, r);
  (void)c;
  if (!w) return;
  sim_reply_json(r, 200, sim_webhook_deliveries_json_locked(rq->s, w->id));
  sim_unlock(rq->s);
}

/* GET /api/v1/webhook-events: this key's events, newest first */
static void webhook_events(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  (void)c;
  sim_lock(rq->s);
  sim_tasks_advance_all_locked(rq->s);
  sim_reply_json(r, 200, sim_webhook_events_json_locked(rq->s, rq->caller.key));
  sim_unlock(rq->s);
}
