/*
** control.c — the simulator's control API on the API listener, /__sim/...,
** no key: the ledger, the request log, reset, runtime config and the fault
** queue. Tests drive the simulator through these; they are never logged
** in /__sim/requests and never hit by faults.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"


/*
** GET /__sim/ledger: counters, balance, tasks and files, after due moves.
** connections / cdn_connections: TCP connections accepted since the reset
** on each listener, not counting those that began with a control request.
*/
static void ledger(sim_req *rq, sim_reply *r) {
  sim_state *s = rq->s;
  json_t *tasks = json_array(), *files = json_array(), *o;
  size_t i;
  sim_lock(s);
  sim_tasks_advance_all_locked(s);
  for (i = 0; i < s->ntasks; i++) {
    const sim_task *t = s->tasks[i];
    json_t *e = json_pack("{s:s,s:s,s:s,s:s?,s:O}", "id", t->id,
                          "status", sim_task_status_name(t->status), "prompt", t->prompt,
                          "idempotency_key", t->idem_key, "params", t->params);
    if (e && t->warnings) json_object_set(e, "warnings", t->warnings);
    json_array_append_new(tasks, e);
  }
  for (i = 0; i < s->nfiles; i++) {
    const sim_file *f = s->files[i];
    json_array_append_new(files, json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "id", f->id,
                                           "name", f->name, "size_bytes", (json_int_t)f->size,
                                           "sha256", f->sha256, "kind", f->kind,
                                           "mime_type", f->mime));
  }
  o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}",
                "tasks_created", (json_int_t)s->tasks_created,
                "charges", (json_int_t)s->charges,
                "credits_charged", (json_int_t)s->credits_charged,
                "credits_refunded", (json_int_t)s->credits_refunded,
                "credits", (json_int_t)s->credits,
                "files", (json_int_t)s->nfiles,
                "requests", (json_int_t)s->requests,
                "cdn_auth_violations", (json_int_t)s->cdn_auth_violations,
                "idempotent_replays", (json_int_t)s->idempotent_replays,
                "connections", (json_int_t)s->connections,
                "cdn_connections", (json_int_t)s->cdn_connections,
                "tasks", tasks, "files_list", files);
  if (o) json_object_set_new(o, "webhook_attempts", json_integer(s->webhook_attempts));
  sim_unlock(s);
  sim_reply_json(r, 200, o);
}

/* config_json_locked: the runtime config as POST /__sim/config answers it */
static json_t *config_json_locked(sim_state *s) {
  return json_pack("{s:I,s:f,s:I,s:b,s:f,s:I,s:f}", "credits", (json_int_t)s->credits,
                   "task_seconds", s->task_seconds, "task_polls", (json_int_t)s->task_polls,
                   "public_api_disabled", s->public_api_disabled,
                   "webhook_retry_seconds", s->webhook_retry_seconds,
                   "webhook_attempts", (json_int_t)s->webhook_max_attempts,
                   "webhook_timeout", s->webhook_timeout);
}

/*
** parse_body: the request body of `rq` as a JSON object (an empty body is
** {}), or NULL with a 400 in `r`.
*/
static json_t *parse_body(sim_req *rq, sim_reply *r) {
  json_error_t e;
  json_t *b;
  if (!rq->body || rq->body_len == 0) return json_object();
  b = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
  if (!b) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: invalid JSON at line %d, column %d: %s", e.line, e.column, e.text);
    return NULL;
  }
  return b;
}

/*
** config: POST /__sim/config applies any of credits, task_seconds,
** task_polls, public_api_disabled (all checked before any is applied);
** GET answers the config.
*/
static void config(sim_req *rq, sim_reply *r, int post) {
  sim_state *s = rq->s;
  json_t *b, *v;
  const char *k;
  char got[128];
  if (!post) {
    sim_lock(s);
    sim_reply_json(r, 200, config_json_locked(s));
    sim_unlock(s);
    return;
  }
  if (!(b = parse_body(rq, r))) return;
  if (!json_is_object(b)) {
    sim_describe(b, got, sizeof got);
    sim_reply_error(rq, r, 400, "validation_failed", "body", "body: expected an object; got %s",
                   got);
    json_decref(b);
    return;
  }
  json_object_foreach(b, k, v) {
    int ok;
    if (strcmp(k, "credits") == 0) ok = json_is_integer(v) && json_integer_value(v) >= 0;
    else if (strcmp(k, "task_seconds") == 0) ok = json_is_number(v) && json_number_value(v) >= 0;
    else if (strcmp(k, "task_polls") == 0) ok = json_is_integer(v) && json_integer_value(v) >= 0;
    else if (strcmp(k, "public_api_disabled") == 0) ok = json_is_boolean(v);
    else if (strcmp(k, "webhook_retry_seconds") == 0)
      ok = json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 3600;
    else if (strcmp(k, "webhook_attempts") == 0)
      ok = json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 20;
    else if (strcmp(k, "webhook_timeout") == 0)
      ok = json_is_number(v) && json_number_value(v) > 0 && json_number_value(v) <= 60;
    else {
      sim_reply_error(rq, r, 400, "validation_failed", k, "%s: unknown config key; allowed: "
                     "credits, task_seconds, task_polls, public_api_disabled, "
                     "webhook_retry_seconds, webhook_attempts, webhook_timeout", k);
      json_decref(b);
      return;
    }
    if (!ok) {
      sim_describe(v, got, sizeof got);
      sim_reply_error(rq, r, 400, "validation_failed", k, "%s: expected %s; got %s", k,
                     strcmp(k, "public_api_disabled") == 0 ? "true or false"
                     : strcmp(k, "task_seconds") == 0 ? "a number >= 0"
                     : strcmp(k, "webhook_retry_seconds") == 0 ? "seconds from 0 to 3600"
                     : strcmp(k, "webhook_attempts") == 0 ? "an integer from 1 to 20"
                     : strcmp(k, "webhook_timeout") == 0 ? "seconds above 0, at most 60"
                     : "an integer >= 0",
                     got);
      json_decref(b);
      return;
    }
  }
  sim_lock(s);
  if ((v = json_object_get(b, "credits"))) s->credits = json_integer_value(v);
  if ((v = json_object_get(b, "task_seconds"))) s->task_seconds = json_number_value(v);
  if ((v = json_object_get(b, "task_polls"))) s->task_polls = (long)json_integer_value(v);
  if ((v = json_object_get(b, "public_api_disabled"))) s->public_api_disabled = json_is_true(v);
  if ((v = json_object_get(b, "webhook_retry_seconds")))
    s->webhook_retry_seconds = json_number_value(v);
  if ((v = json_object_get(b, "webhook_attempts"))) s->webhook_max_attempts = (long)json_integer_value(v);
  if ((v = json_object_get(b, "webhook_timeout"))) s->webhook_timeout = json_number_value(v);
  sim_reply_json(r, 200, config_json_locked(s));
  sim_unlock(s);
  json_decref(b);
}

/*
** faults: POST queues a fault (or an array of them: all are checked
** before any is queued) and answers the number pending; GET lists the
** pending ones; DELETE clears them. fault.c parses each object.
*/
static void faults(sim_req *rq, sim_reply *r, const char *method) {
  sim_state *s = rq->s;
  json_t *b, *list;
  sim_fault **parsed;
  size_t i, n;
  if (strcmp(method, "GET") == 0) {
    sim_lock(s);
    sim_reply_json(r, 200, json_pack("{s:o,s:I}", "data", sim_faults_json_locked(s), "pending",
                                    (json_int_t)s->nfaults));
    sim_unlock(s);
    return;
  }
  if (strcmp(method, "DELETE") == 0) {
    sim_lock(s);
    n = s->nfaults;
    sim_faults_clear_locked(s);
    sim_unlock(s);
    sim_reply_json(r, 200, json_pack("{s:I}", "cleared", (json_int_t)n));
    return;
  }
  if (!(b = parse_body(rq, r))) return;
  list = json_is_array(b) ? json_incref(b) : json_pack("[O]", b);
  json_decref(b);
  parsed = calloc(json_array_size(list) + 1, sizeof *parsed);
  if (!parsed) {
    json_decref(list);
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    return;
  }
  for (i = 0; i < json_array_size(list); i++) {
    char field[64], msg[512];
    if (!(parsed[i] = sim_fault_parse(json_array_get(list, i), field, sizeof field, msg,
                                      sizeof msg))) {
      sim_reply_error(rq, r, 400, "validation_failed", field, "fault %zu: %s", i, msg);
      while (i-- > 0) sim_fault_free(parsed[i]);
      free(parsed);
      json_decref(list);
      return;
    }
  }
  sim_lock(s);
  for (i = 0; i < json_array_size(list); i++) sim_faults_add_locked(s, parsed[i]);
  n = s->nfaults;
  sim_unlock(s);
  free(parsed);
  json_decref(list);
  sim_reply_json(r, 200, json_pack("{s:I}", "queued", (json_int_t)n));
}

/* method_ok: 1 when `method` is one of `allow` (", "-separated) */
static int method_ok(const char *method, const char *allow) {
  size_t n = strlen(method);
  const char *p = allow;
  if (n == 0) return 0;
  while ((p = strstr(p, method)) != NULL) {
    if ((p == allow || p[-1] == ' ') && (p[n] == '\0' || p[n] == ','))
      return 1;
    p += n;
  }
  return 0;
}

/*
** sim_control: answer the control request `rq` (/__sim/...) into `r`.
*/
void sim_control(sim_req *rq, sim_reply *r) {
  static const struct { const char *path, *allow; } eps[] = {
    { "/__sim/ledger", "GET, HEAD" }, { "/__sim/requests", "GET, HEAD" },
    { "/__sim/reset", "POST" }, { "/__sim/config", "GET, HEAD, POST" },
    { "/__sim/faults", "GET, HEAD, POST, DELETE" },
  };
  const char *method = strcmp(rq->method, "HEAD") == 0 ? "GET" : rq->method;
  size_t i;
  for (i = 0; i < sizeof eps / sizeof eps[0]; i++)
    if (strcmp(rq->path, eps[i].path) == 0) break;
  if (i == sizeof eps / sizeof eps[0]) {
    sim_reply_error(rq, r, 404, "not_found", NULL, "no control endpoint %s; known: "
                   "/__sim/ledger, /__sim/requests, /__sim/reset, /__sim/config, "
                   "/__sim/faults", rq->path);
    return;
  }
  if (!method_ok(method, eps[i].allow)) {
    sim_reply_error(rq, r, 405, "method_not_allowed", NULL, "%s does not take %s; allowed: %s",
                   rq->path, rq->method, eps[i].allow);
    r->allow = eps[i].allow;
    return;
  }
  switch (i) {
    case 0:
      ledger(rq, r);
      break;
    case 1:
      sim_lock(rq->s);
      sim_reply_json(r, 200, sim_reqlog_json_locked(rq->s));
      sim_unlock(rq->s);
      break;
    case 2:
      sim_lock(rq->s);
      sim_state_clear_locked(rq->s);
      sim_reply_json(r, 200, json_pack("{s:b,s:o}", "reset", 1, "config",
                                      config_json_locked(rq->s)));
      sim_unlock(rq->s);
      break;
    case 3:
      config(rq, r, strcmp(method, "POST") == 0);
      break;
    default:
      faults(rq, r, method);
      break;
  }
}
