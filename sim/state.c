/*
** state.c — rivya-sim's server state: runtime config, ledger counters, tasks
** and their lifecycle, stored files, the request log, clocks and ids.
** All of it lives in one sim_state behind one mutex.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

/*
** seed_rng: a 64-bit seed from /dev/urandom, falling back to the clock and
** pid so that ids still differ between runs when urandom is unreadable.
*/
static uint64_t seed_rng(void) {
  uint64_t seed = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (f) {
    if (fread(&seed, sizeof seed, 1, f) != 1) seed = 0;
    fclose(f);
  }
  if (seed == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 16);
  }
  return seed ? seed : 0x9e3779b97f4a7c15ULL;
}

/*
** sim_state_new: fresh state for the options `opt` (kept by pointer), or NULL
** when out of memory.
*/
sim_state *sim_state_new(const sim_options *opt) {
  sim_state *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    free(s);
    return NULL;
  }
  if (pthread_cond_init(&s->wake, NULL) != 0) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
  }
  if (pthread_cond_init(&s->webhook_cv, NULL) != 0) {
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return NULL;
  }
  s->opt = opt;
  if (opt->catalog) {
    s->catalog = opt->catalog;
  } else {
    char err[512];
    s->own_catalog = sim_catalog_load(NULL, err, sizeof err);
    if (!s->own_catalog) {
      pthread_cond_destroy(&s->webhook_cv);
      pthread_cond_destroy(&s->wake);
      pthread_mutex_destroy(&s->mu);
      free(s);
      return NULL;
    }
    s->catalog = s->own_catalog;
  }
  s->rng = seed_rng();
  s->credits = opt->credits;
  s->task_seconds = opt->task_seconds;
  s->task_polls = opt->task_polls;
  s->webhook_retry_seconds = 1;
  s->webhook_max_attempts = 5;
  s->webhook_timeout = 5;
  return s;
}

/* task_free: release task `t` and what it owns */
static void task_free(sim_task *t) {
  free(t->owner);
  free(t->prompt);
  free(t->idem_key);
  free(t->canon);
  json_decref(t->params);
  json_decref(t->warnings);
  free(t);
}

/* file_free: release file `f` and its bytes */
static void file_free(sim_file *f) {
  free(f->owner);
  free(f->idem_key);
  free(f->name);
  free(f->url);
  free(f->data);
  free(f);
}

/* reqlog_entry_free: release the strings of log entry `e` and zero it */
static void reqlog_entry_free(sim_reqlog *e) {
  free(e->method);
  free(e->path);
  free(e->user_agent);
  free(e->idem_key);
  free(e->content_type);
  memset(e, 0, sizeof *e);
}

/*
** sim_state_clear_locked: back to the start-up state of `s`: balance and
** config from the command line, no tasks, files, faults, idempotency records
** (they live on the tasks) or logged requests, counters at zero.
*/
void sim_state_clear_locked(sim_state *s) {
  size_t i;
  for (i = 0; i < s->ntasks; i++) task_free(s->tasks[i]);
  for (i = 0; i < s->nfiles; i++) file_free(s->files[i]);
  free(s->tasks);
  free(s->files);
  s->tasks = NULL;
  s->files = NULL;
  s->ntasks = s->cap_tasks = s->nfiles = s->cap_files = 0;
  for (i = 0; i < SIM_REQLOG_MAX; i++) reqlog_entry_free(&s->reqlog[i]);
  s->reqlog_start = s->reqlog_count = 0;
  sim_faults_clear_locked(s);
  sim_webhooks_clear_locked(s);
  s->webhook_retry_seconds = 1;
  s->webhook_max_attempts = 5;
  s->webhook_timeout = 5;
  s->webhook_attempts = 0;
  s->credits = s->opt->credits;
  s->task_seconds = s->opt->task_seconds;
  s->task_polls = s->opt->task_polls;
  s->public_api_disabled = 0;
  s->tasks_created = s->charges = s->credits_charged = 0;
  s->credits_refunded = s->requests = s->cdn_auth_violations = 0;
  s->idempotent_replays = 0;
  s->connections = s->cdn_connections = 0;
  s->conn_epoch++;              /* connections open now are not counted again */
}

/*
** sim_state_free: release `s` and everything it holds; the daemons must be
** stopped already.
*/
void sim_state_free(sim_state *s) {
  if (!s) return;
  sim_state_clear_locked(s);
  free(s->faults);
  sim_catalog_free(s->own_catalog);
  pthread_cond_destroy(&s->webhook_cv);
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* sim_lock, sim_unlock: take and release the one mutex of `s` */
void sim_lock(sim_state *s) { pthread_mutex_lock(&s->mu); }
void sim_unlock(sim_state *s) { pthread_mutex_unlock(&s->mu); }

/*
** sim_sleep_ms: wait `ms` milliseconds, or less when the server is stopping,
** so that delays and stalls never hold up a clean SIGTERM exit.
*/
void sim_sleep_ms(sim_state *s, long ms) {
  struct timespec until;
  if (ms <= 0) return;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  sim_lock(s);
  while (!s->stopping) {
    if (pthread_cond_timedwait(&s->wake, &s->mu, &until) == ETIMEDOUT) break;
  }
  sim_unlock(s);
}

/* sim_stopping: 1 once the server is stopping (read under the lock) */
int sim_stopping(sim_state *s) {
  int stop;
  sim_lock(s);
  stop = s->stopping;
  sim_unlock(s);
  return stop;
}

/* sim_mono_now: monotonic seconds, for task ages immune to clock changes */
double sim_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
** sim_iso_now: the current UTC time into `out` as ISO-8601 with
** milliseconds, e.g. 2026-05-11T00:00:00.000Z.
*/
void sim_iso_now(char out[32]) {
  struct timespec ts;
  struct tm tm;
  size_t n;
  char buf[96];   /* roomier than needed: the compiler cannot bound tm's fields */
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           ts.tv_nsec / 1000000L);
  n = strlen(buf);
  if (n > 31) n = 31;
  memcpy(out, buf, n);
  out[n] = '\0';
}

/*
** sim_random_hex_locked: `nbytes` random bytes as 2*nbytes lower-case hex
** digits into `out` (which must hold 2*nbytes+1). xorshift64* is plenty:
** ids need to be unique, not secret.
*/
void sim_random_hex_locked(sim_state *s, char *out, size_t nbytes) {
  static const char hex[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < nbytes; i++) {
    uint64_t x = s->rng;
    unsigned byte;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    byte = (unsigned)((x * 0x2545F4914F6CDD1DULL) >> 56);
    out[2 * i] = hex[byte >> 4];
    out[2 * i + 1] = hex[byte & 15];
  }
  out[2 * nbytes] = '\0';
}

/*
** grow: make room for one more pointer in the array *v of *n used and *cap
** allocated slots; 0 on success, -1 when out of memory.
*/
static int grow(void ***v, size_t *n, size_t *cap) {
  if (*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    void **nv = realloc(*v, ncap * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    *cap = ncap;
  }
  return 0;
}

/*
** sim_task_add_locked: a new zeroed task appended to `s` with a fresh id and
** timestamps (status queued), or NULL when out of memory.
*/
sim_task *sim_task_add_locked(sim_state *s) {
  sim_task *t;
  void **v = (void **)s->tasks;
  if (grow(&v, &s->ntasks, &s->cap_tasks) != 0) return NULL;
  s->tasks = (sim_task **)v;
  t = calloc(1, sizeof *t);
  if (!t) return NULL;
  memcpy(t->id, "task_", 5);
  sim_random_hex_locked(s, t->id + 5, 12);
  t->status = SIM_QUEUED;
  t->created_mono = sim_mono_now();
  sim_iso_now(t->created_at);
  memcpy(t->updated_at, t->created_at, sizeof t->updated_at);
  s->tasks[s->ntasks++] = t;
  return t;
}

/* sim_task_find_locked: the task with id `id`, or NULL */
sim_task *sim_task_find_locked(sim_state *s, const char *id) {
  size_t i;
  for (i = 0; i < s->ntasks; i++)
    if (strcmp(s->tasks[i]->id, id) == 0) return s->tasks[i];
  return NULL;
}

/*
** time_stage, poll_stage: how far a task has come by each rule, 0 queued,
** 1 processing, 2 final. Time: queued for the first third of task_seconds,
** final at task_seconds. Polls (when task_polls > 0): processing from the
** 2nd GET, final on the task_polls-th.
** time_stage: the stage of a task `age` seconds old in a `seconds` lifetime.
*/
static int time_stage(double age, double seconds) {
  if (age >= seconds) return 2;
  if (age >= seconds / 3.0) return 1;
  return 0;
}

/* poll_stage: the stage after `polls` GETs when `limit` GETs finish it */
static int poll_stage(long polls, long limit) {
  if (limit <= 0) return 0;
  if (polls >= limit) return 2;
  if (polls >= 2) return 1;
  return 0;
}

/*
** sim_task_advance_locked: move task `t` of `s` forward to where the clock
** and its poll count say it is (`is_poll`: this is a GET of the task). A
** task never moves back, even when the config changes, and a failure
** refunds the reservation the moment it happens.
*/
void sim_task_advance_locked(sim_state *s, sim_task *t, int is_poll) {
  int now_stage, by_time, by_polls, stage;
  if (is_poll) t->polls++;
  if (t->status == SIM_SUCCEEDED || t->status == SIM_FAILED) return;
  now_stage = t->status == SIM_PROCESSING ? 1 : 0;
  by_time = time_stage(sim_mono_now() - t->created_mono, s->task_seconds);
  by_polls = poll_stage(t->polls, s->task_polls);
  stage = by_time > by_polls ? by_time : by_polls;
  if (stage <= now_stage) return;
  if (stage == 2) {
    t->status = t->fail ? SIM_FAILED : SIM_SUCCEEDED;
    if (t->fail) {
      s->credits += t->credits;
      s->credits_refunded += t->credits;
    }
  } else {
    t->status = SIM_PROCESSING;
  }
  sim_iso_now(t->updated_at);
  if (stage == 2) sim_webhook_task_final_locked(s, t);
}

/* sim_tasks_advance_all_locked: advance every task by the clock */
void sim_tasks_advance_all_locked(sim_state *s) {
  size_t i;
  for (i = 0; i < s->ntasks; i++) sim_task_advance_locked(s, s->tasks[i], 0);
}

/* sim_task_status_name: the wire name of status `st` */
const char *sim_task_status_name(sim_task_status st) {
  switch (st) {
    case SIM_QUEUED: return "queued";
    case SIM_PROCESSING: return "processing";
    case SIM_SUCCEEDED: return "succeeded";
    case SIM_FAILED: return "failed";
  }
  return "queued";
}

/*
** sim_task_json_locked: the public task object of `t` (a new reference),
** with the result URL on the CDN listener of `s`.
*/
json_t *sim_task_json_locked(sim_state *s, const sim_task *t) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(t->id));
  json_object_set_new(o, "status", json_string(sim_task_status_name(t->status)));
  json_object_set_new(o, "model", json_string(t->model->id));
  json_object_set_new(o, "reserved_credits", json_integer(t->credits));
  json_object_set_new(o, "final_credits",
                      json_integer(t->status == SIM_SUCCEEDED ? t->credits : 0));
  json_object_set_new(o, "created_at", json_string(t->created_at));
  json_object_set_new(o, "updated_at", json_string(t->updated_at));
  if (t->status == SIM_SUCCEEDED) {
    char url[160];
    json_t *res = json_object();
    snprintf(url, sizeof url, "%s/%s/%s.%s", s->cdn_base, sim_result_dir(t->ext), t->id,
             t->ext);
    json_object_set_new(res, "primary_url", json_string(url));
    json_object_set_new(res, "urls", json_pack("[s]", url));
    json_object_set_new(o, "result", res);
  } else {
    json_object_set_new(o, "result", json_null());
  }
  if (t->status == SIM_FAILED && t->fail == 1) {
    json_object_set_new(o, "error",
                        json_pack("{s:s,s:s}", "code", "generation_failed",
                                  "message",
                                  "the generation failed (the prompt carries the "
                                  "simulator's " SIM_FAIL_MARKER " marker); the "
                                  "reserved credits were refunded"));
  } else {
    json_object_set_new(o, "error", json_null());
  }
  if (t->warnings && json_array_size(t->warnings) > 0)
    json_object_set(o, "warnings", t->warnings);
  return o;
}

/*
** sim_file_add_locked: a new zeroed file record appended to `s` with a fresh
** id, or NULL when out of memory.
*/
sim_file *sim_file_add_locked(sim_state *s) {
  sim_file *f;
  void **v = (void **)s->files;
  if (grow(&v, &s->nfiles, &s->cap_files) != 0) return NULL;
  s->files = (sim_file **)v;
  f = calloc(1, sizeof *f);
  if (!f) return NULL;
  memcpy(f->id, "file_", 5);
  sim_random_hex_locked(s, f->id + 5, 12);
  f->duration = -1;
  s->files[s->nfiles++] = f;
  return f;
}

/* sim_file_find_locked: the file with id `id`, or NULL */
sim_file *sim_file_find_locked(sim_state *s, const char *id) {
  size_t i;
  for (i = 0; i < s->nfiles; i++)
    if (strcmp(s->files[i]->id, id) == 0) return s->files[i];
  return NULL;
}

/*
** sim_file_json: the public file object of `f` (a "PublicApiFile"); the
** duration fields only for videos whose duration is known.
*/
json_t *sim_file_json(const sim_file *f) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(f->id));
  json_object_set_new(o, "url", json_string(f->url));
  json_object_set_new(o, "kind", json_string(f->kind));
  json_object_set_new(o, "name", json_string(f->name));
  json_object_set_new(o, "mime_type", json_string(f->mime));
  json_object_set_new(o, "size_bytes", json_integer((json_int_t)f->size));
  if (strcmp(f->kind, "video") == 0 && f->duration >= 0) {
    json_object_set_new(o, "duration_seconds", json_real(f->duration));
    json_object_set_new(o, "duration_token", json_string(f->token));
  }
  return o;
}

/*
** sim_reqlog_add_locked: append `e` to the ring of the last SIM_REQLOG_MAX
** requests; the ring takes ownership of e's strings.
*/
void sim_reqlog_add_locked(sim_state *s, const sim_reqlog *e) {
  size_t slot;
  if (s->reqlog_count < SIM_REQLOG_MAX) {
    slot = (s->reqlog_start + s->reqlog_count) % SIM_REQLOG_MAX;
    s->reqlog_count++;
  } else {
    slot = s->reqlog_start;
    s->reqlog_start = (s->reqlog_start + 1) % SIM_REQLOG_MAX;
    reqlog_entry_free(&s->reqlog[slot]);
  }
  s->reqlog[slot] = *e;
}

/* str_or_null: a JSON string, or null for NULL */
static json_t *str_or_null(const char *v) {
  return v ? json_string(v) : json_null();
}

/*
** sim_reqlog_json_locked: the logged requests, oldest first, as the body of
** GET /__sim/requests. Only whether Authorization was present is kept.
*/
json_t *sim_reqlog_json_locked(sim_state *s) {
  json_t *data = json_array();
  size_t i;
  for (i = 0; i < s->reqlog_count; i++) {
    const sim_reqlog *e = &s->reqlog[(s->reqlog_start + i) % SIM_REQLOG_MAX];
    json_t *o = json_object();
    json_object_set_new(o, "listener", json_string(e->listener == SIM_CDN ? "cdn" : "api"));
    json_object_set_new(o, "method", str_or_null(e->method));
    json_object_set_new(o, "path", str_or_null(e->path));
    json_object_set_new(o, "user_agent", str_or_null(e->user_agent));
    json_object_set_new(o, "idempotency_key", str_or_null(e->idem_key));
    json_object_set_new(o, "authorization", json_string(e->auth ? "present" : "absent"));
    json_object_set_new(o, "content_type", str_or_null(e->content_type));
    json_object_set_new(o, "content_length",
                        e->content_length >= 0 ? json_integer(e->content_length) : json_null());
    json_array_append_new(data, o);
  }
  return json_pack("{s:o}", "data", data);
}
