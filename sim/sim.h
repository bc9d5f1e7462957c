/*
** sim.h — shared types, limits and cross-file functions of rivya-sim, the
** local simulator of the Rivya Public API v1 (docs/api-contract.md).
** Everything that crosses files has the sim_ prefix (the core's is rv_; the
** one file both link, src/sha256.c, keeps it); the rest is static.
**
** One sim_state holds all mutable server state behind one mutex; it reaches
** the handlers through the daemon's closure pointer, so there are no mutable
** globals. Functions whose name ends in _locked expect that mutex held.
*/
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <jansson.h>

/* limits; MB means 1,000,000 bytes throughout, as API.md assumes */
#define SIM_MB              1000000LL
#define SIM_JSON_BODY_MAX   (1 * SIM_MB)     /* JSON request bodies, else 413 */
#define SIM_UPLOAD_BODY_MAX (100 * SIM_MB)   /* whole multipart body, else 413 */
#define SIM_FIELD_MAX       1024            /* a multipart text field */
#define SIM_REQLOG_MAX      2000            /* entries kept by /__sim/requests */
#define SIM_CLIENT_ID_MAX   128             /* client_request_id, code points */
#define SIM_IDEM_KEY_MAX    255             /* Idempotency-Key: printable ASCII, inner spaces */
#define SIM_FAIL_MARKER     "[[fail]]"      /* in a prompt: the task fails */
#define SIM_FAIL_SILENT     "[[fail-silent]]"  /* ... and its error is null */

#define SIM_PAD_MAX        (600 * 1000)    /* huge_header: the largest pad */
#define SIM_CONN_MEMORY    (1024 * 1024)   /* MHD's per-connection pool: room for the pad */

enum { SIM_API = 0, SIM_CDN = 1 };

/* ---- scripted faults (fault.c) ----------------------------------------- */

typedef enum sim_fault_kind {
  SIM_FAULT_RESPOND, SIM_FAULT_DROP, SIM_FAULT_DROP_AFTER_COMMIT, SIM_FAULT_DELAY,
  SIM_FAULT_STALL, SIM_FAULT_TRUNCATE, SIM_FAULT_INVALID_JSON, SIM_FAULT_WRONG_CONTENT_TYPE,
  SIM_FAULT_OVERSIZED, SIM_FAULT_REDIRECT, SIM_FAULT_DRIP, SIM_FAULT_HUGE_HEADER,
  SIM_FAULT_GZIP, SIM_FAULT_PARTIAL
} sim_fault_kind;

/* one fault, parsed once from its JSON object */
typedef struct sim_fault {
  sim_fault_kind kind;
  int listener;                 /* SIM_API | SIM_CDN */
  char *method;                 /* NULL: any method */
  char *path;                   /* a path prefix */
  long times;                   /* requests it still applies to */
  unsigned status;              /* 0: the kind's default */
  json_t *headers;              /* object of strings added to the answer, or NULL */
  unsigned char *body;          /* respond / redirect: the body given */
  size_t body_len;
  int has_body;
  char *content_type, *location;
  long delay_ms;                /* -1: the kind's default */
  long long size;               /* -1: the kind's default */
  json_t *json;                 /* the object, normalized, as listed */
} sim_fault;

/* ---- the model catalog as data (catalog.c) ------------------------------ */

/* one model of the catalog; the strings and JSON belong to the catalog */
typedef struct sim_model {
  const char *id, *category, *runtime, *api_status, *billing_type;
  long long base_credits;
  long long prompt_max;         /* max_prompt_length, code points */
  const json_t *obj;            /* the whole catalog element */
  const json_t *params;         /* its params array */
  const json_t *refs;           /* its reference_media object, or NULL */
} sim_model;

typedef struct sim_catalog {
  json_t *root;                 /* the catalog document, read-only once loaded */
  char *text;                   /* root as compact JSON: GET /api/v1/models */
  sim_model *models;
  size_t n;
} sim_catalog;

#define SIM_MIMES_MAX 16

/* what the Files API accepts for one kind, by default or for a model */
typedef struct sim_upload_rule {
  long long max_bytes;
  const char *mimes[SIM_MIMES_MAX];
  size_t nmimes;
} sim_upload_rule;

sim_catalog *sim_catalog_load(const char *path, char *err, size_t size);
void sim_catalog_free(sim_catalog *c);
const sim_model *sim_model_find(const sim_catalog *c, const char *id);
const json_t *sim_model_param(const sim_model *m, const char *key);
int sim_model_callable(const sim_model *m);
int sim_upload_rule_get(const sim_model *m, const char *kind, sim_upload_rule *out);
long long sim_upload_max(const sim_catalog *c, const sim_model *m, const char *kind);
int sim_mime_listed(const sim_upload_rule *r, const char *mime);
long long sim_model_credits(const sim_model *m, const char *prompt);
const char *sim_model_ids(const sim_catalog *c, int callable, char *buf, size_t size);
int sim_listed(const char *const *list, const char *s);

/* ---- command line (read-only once the daemons run) -------------------- */

typedef struct sim_keylist {
  const char **v;    /* points into argv */
  size_t n;
} sim_keylist;

/* the scopes a key may carry [API.md], one bit each */
enum {
  SIM_SCOPE_MODELS_READ = 1 << 0,
  SIM_SCOPE_GEN_CREATE = 1 << 1,
  SIM_SCOPE_GEN_READ = 1 << 2,
  SIM_SCOPE_FILES_CREATE = 1 << 3,
  SIM_SCOPE_FILES_READ = 1 << 4,
  SIM_SCOPE_CREDITS_READ = 1 << 5,
  SIM_SCOPE_WEBHOOKS = 1 << 6,
  SIM_SCOPE_CHAT_CREATE = 1 << 7,
  SIM_SCOPE_CHAT_READ = 1 << 8,
  SIM_SCOPE_ALL = (1 << 9) - 1,
  /* --scoped-key KEY without a list: the read scopes */
  SIM_SCOPE_READ = SIM_SCOPE_MODELS_READ | SIM_SCOPE_GEN_READ | SIM_SCOPE_FILES_READ |
                   SIM_SCOPE_CREDITS_READ | SIM_SCOPE_CHAT_READ
};

/* a --scoped-key: the key (own copy) and its scope bits */
typedef struct sim_scoped_key {
  char *key;
  unsigned scopes;
} sim_scoped_key;

const char *sim_scope_name(unsigned bit);
int sim_scope_parse(const char *list, unsigned *out);

typedef struct sim_options {
  const char *host;
  int port, cdn_port;
  sim_keylist api_keys, revoked_keys, expired_keys;
  sim_scoped_key *scoped;       /* --scoped-key, nscoped of them */
  size_t nscoped;
  const char *catalog_path;     /* --catalog FILE, or NULL: built in */
  sim_catalog *catalog;         /* loaded by main; NULL: sim_state_new loads */
  int allow_loopback_webhooks;
  long long credits;
  double task_seconds;
  long task_polls;
  double max_lifetime;
  int quiet;
  const char *tls_cert, *tls_key;   /* --tls-cert / --tls-key paths, or NULL */
  char *tls_cert_pem, *tls_key_pem; /* their contents (NUL-terminated): HTTPS */
} sim_options;

/* ---- server state (state.c) ------------------------------------------- */

typedef enum sim_task_status {
  SIM_QUEUED, SIM_PROCESSING, SIM_SUCCEEDED, SIM_FAILED
} sim_task_status;

typedef struct sim_task {
  char id[32];
  char *owner;                  /* the API key; never shown or logged */
  char *prompt;
  char *idem_key;               /* NULL without Idempotency-Key */
  char *canon;                  /* canonical body, for idempotency */
  json_t *params;               /* normalized params (clamped duration) */
  json_t *warnings;             /* array of strings, or NULL */
  const sim_model *model;
  long long credits;            /* reserved at create, by the billing type */
  char ext[8];                  /* result media: "mp4", "png", "mp3", "wav" */
  sim_task_status status;
  int fail;                     /* 1: [[fail]], 2: [[fail-silent]] (error null) */
  double created_mono;          /* monotonic seconds */
  long polls;                   /* GETs of this task */
  char created_at[32], updated_at[32];
} sim_task;

typedef struct sim_file {
  char id[32];
  char *owner;
  char *name;
  char *url;
  char kind[8];
  const char *mime;             /* static string */
  unsigned char *data;
  size_t size;
  double duration;              /* seconds; < 0 when unknown */
  char token[48];               /* duration token, "" when none */
  char sha256[65];
  char *idem_key;               /* the upload's Idempotency-Key, or NULL */
} sim_file;

/* ---- webhooks (webhook.c) ---------------------------------------------- */

typedef struct sim_webhook {
  char id[40];
  char *owner;                  /* the API key; never shown or logged */
  char *name;                   /* NULL when not given */
  char *url;
  json_t *event_types;          /* array of strings */
  int disabled;
  char secret[48];              /* "whsec_<32 hex>" */
  char created_at[32], updated_at[32], disabled_at[32];
  char last_success_at[32], last_failure_at[32];   /* "" when never */
  long failure_count;
} sim_webhook;

typedef struct sim_event {
  char id[40];
  char *owner;
  char type[32];
  char created_at[32];
  json_t *data;                 /* the task as the status endpoint shows it */
} sim_event;

enum {
  SIM_DELIVERY_PENDING, SIM_DELIVERY_SENDING, SIM_DELIVERY_SUCCEEDED, SIM_DELIVERY_FAILED
};

/* one delivery attempt: pending until the worker sends it */
typedef struct sim_delivery {
  char id[40];
  char endpoint_id[40], event_id[40], event_type[32];
  int attempt;                  /* 1 for the first */
  int state;                    /* SIM_DELIVERY_* */
  double due;                   /* monotonic seconds */
  long response_status;         /* 0 when none */
  char *error;                  /* NULL when it succeeded */
  long duration_ms;
  char created_at[32], attempted_at[32];
} sim_delivery;

typedef struct sim_reqlog {
  int listener;
  char *method, *path, *user_agent, *idem_key, *content_type;
  int auth;                     /* Authorization header present */
  long long content_length;     /* -1 when the header is absent */
} sim_reqlog;

typedef struct sim_state {
  pthread_mutex_t mu;
  pthread_cond_t wake;          /* broadcast at shutdown: sleepers return */
  int stopping;
  const sim_options *opt;
  const sim_catalog *catalog;
  sim_catalog *own_catalog;     /* loaded by sim_state_new, freed with it */
  char cdn_base[96];            /* "http://127.0.0.1:PORT" (https with TLS) */
  /* runtime config (POST /__sim/config) */
  long long credits;
  double task_seconds;
  long task_polls;
  int public_api_disabled;
  /* ledger counters */
  long long tasks_created, charges, credits_charged, credits_refunded;
  long long requests, cdn_auth_violations, idempotent_replays;
  /* TCP connections accepted since the reset, by listener; on the API one,
     a connection whose first request is /__sim/... is taken back out */
  long long connections, cdn_connections;
  unsigned long conn_epoch;     /* bumped by each reset */
  sim_task **tasks;
  size_t ntasks, cap_tasks;
  sim_file **files;
  size_t nfiles, cap_files;
  sim_fault **faults;           /* pending faults, in the order posted */
  size_t nfaults, cap_faults;
  /* webhooks: endpoints, events, delivery attempts; the worker thread */
  sim_webhook **webhooks;
  size_t nwebhooks, cap_webhooks;
  sim_event **events;
  size_t nevents, cap_events;
  sim_delivery **deliveries;
  size_t ndeliveries, cap_deliveries;
  pthread_cond_t webhook_cv;    /* new work for the worker, or stopping */
  pthread_t webhook_thread;
  int webhook_running;
  double webhook_retry_seconds; /* backoff before the 2nd attempt, doubling */
  long webhook_max_attempts;
  double webhook_timeout;       /* seconds per attempt */
  long long webhook_attempts;   /* attempts made since the reset */
  sim_reqlog reqlog[SIM_REQLOG_MAX];
  size_t reqlog_start, reqlog_count;
  uint64_t rng;
} sim_state;

sim_state *sim_state_new(const sim_options *opt);
void sim_state_free(sim_state *s);
void sim_state_clear_locked(sim_state *s);     /* back to start-up state */
void sim_lock(sim_state *s);
void sim_unlock(sim_state *s);
void sim_sleep_ms(sim_state *s, long ms);      /* returns early at shutdown */
int sim_stopping(sim_state *s);                /* 1 once the server is stopping */

double sim_mono_now(void);
void sim_iso_now(char out[32]);
void sim_random_hex_locked(sim_state *s, char *out, size_t nbytes);

sim_task *sim_task_add_locked(sim_state *s);
sim_task *sim_task_find_locked(sim_state *s, const char *id);
void sim_task_advance_locked(sim_state *s, sim_task *t, int is_poll);
void sim_tasks_advance_all_locked(sim_state *s);
json_t *sim_task_json_locked(sim_state *s, const sim_task *t);
const char *sim_task_status_name(sim_task_status st);

sim_file *sim_file_add_locked(sim_state *s);
sim_file *sim_file_find_locked(sim_state *s, const char *id);
json_t *sim_file_json(const sim_file *f);

void sim_reqlog_add_locked(sim_state *s, const sim_reqlog *e);  /* takes e's strings */
json_t *sim_reqlog_json_locked(sim_state *s);

int sim_webhook_url_check(const char *url, int allow_loopback, char *why, size_t size);
json_t *sim_webhook_json(const sim_webhook *w, int with_secret);
json_t *sim_delivery_json(const sim_delivery *d);
json_t *sim_event_json(const sim_event *e);
sim_webhook *sim_webhook_find_locked(sim_state *s, const char *owner, const char *id);
sim_webhook *sim_webhook_add_locked(sim_state *s, const char *owner);
void sim_webhook_new_secret_locked(sim_state *s, sim_webhook *w);
void sim_webhook_remove_locked(sim_state *s, sim_webhook *w);
void sim_webhook_task_final_locked(sim_state *s, const sim_task *t);
sim_delivery *sim_webhook_test_locked(sim_state *s, const sim_webhook *w);
int sim_webhook_types_ok(const json_t *v);
json_t *sim_webhook_events_json_locked(sim_state *s, const char *owner);
json_t *sim_webhook_deliveries_json_locked(sim_state *s, const char *id);
void sim_webhooks_clear_locked(sim_state *s);
int sim_webhooks_start(sim_state *s);
void sim_webhooks_stop(sim_state *s);

/* ---- one HTTP request (http.c) ---------------------------------------- */

/* a reply a route produces; http.c sends it, applying any fault */
typedef struct sim_reply {
  unsigned status;
  json_t *json;                 /* owned; the body when data is NULL */
  unsigned char *data;          /* raw body: malloc'd unless data_static */
  size_t len;
  int data_static;
  const char *content_type;     /* default application/json */
  const char *allow;            /* 405: the Allow header */
  const char *location;
  int replayed;                 /* Idempotent-Replayed: true */
} sim_reply;

/* what the gate learned about the caller before the body arrived */
typedef struct sim_caller {
  const char *key;              /* authenticated API key, or NULL */
  unsigned scopes;              /* SIM_SCOPE_* bits of the key */
} sim_caller;

struct sim_upload;

typedef struct sim_req {
  sim_state *s;
  int listener;
  int control;                  /* /__sim/...: no faults, not in the log */
  char rid[24];                 /* "req_<hex>" */
  char *method, *path;
  sim_fault *fault;             /* matched fault (own copy), or NULL */
  int route;                    /* route index chosen by the gate, or -1 */
  sim_caller caller;
  sim_reply early;               /* a gate error waiting for the body's end */
  int has_early;
  int done;
  /* JSON body */
  int wants_json;
  char *body;
  size_t body_len, body_cap;
  long long body_seen;
  int body_over;
  /* multipart body */
  struct sim_upload *up;
} sim_req;

struct MHD_Connection;
struct MHD_Daemon;
struct MHD_Response;
struct sockaddr;

/* the closure of one daemon: the state and which listener it plays */
typedef struct sim_listener {
  sim_state *s;
  int which;                    /* SIM_API | SIM_CDN */
} sim_listener;

struct MHD_Daemon *sim_http_start(sim_listener *l, const struct sockaddr *addr,
                                 int ipv6);
const char *sim_header(struct MHD_Connection *c, const char *name);
void sim_reply_error(sim_req *rq, sim_reply *r, unsigned status,
                    const char *code, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 6, 7)))
#endif
  ;
void sim_reply_json(sim_reply *r, unsigned status, json_t *body);
void sim_reply_free(sim_reply *r);

/* text.c */
size_t sim_describe(const json_t *v, char *buf, size_t size);
long sim_utf8_count(const char *s, size_t n);   /* -1 when not UTF-8 */
char *sim_clean_dup(const char *s);             /* valid UTF-8, no controls */
int sim_media_type_is(const char *header, const char *type);
int sim_idem_key_check(const char *k, char *why, size_t size);

const char *sim_fault_kind_name(sim_fault_kind k);
sim_fault *sim_fault_parse(const json_t *o, char *field, size_t fsize, char *msg, size_t msize);
void sim_fault_free(sim_fault *f);
sim_fault *sim_fault_take_locked(sim_state *s, int which, const char *method, const char *path);
void sim_faults_clear_locked(sim_state *s);
int sim_faults_add_locked(sim_state *s, sim_fault *f);
json_t *sim_faults_json_locked(sim_state *s);
const char *sim_fault_header(const sim_fault *f, const char *name);
struct MHD_Response *sim_fault_response(sim_state *s, const sim_fault *f, unsigned char *body,
                                        size_t len, int body_static, unsigned *status,
                                        const char **ct, char *range, size_t range_size,
                                        int *gzip);
int sim_fault_pad_header(const sim_fault *f, struct MHD_Response *resp);

/* ---- routes ----------------------------------------------------------- */

/* api.c: gate (auth, route) before the body; dispatch after it */
void sim_api_gate(sim_req *rq, struct MHD_Connection *c);
int sim_api_is_upload(const sim_req *rq);
int sim_api_takes_body(const sim_req *rq);
void sim_api_dispatch(sim_req *rq, struct MHD_Connection *c, sim_reply *r);

/* validate.c: a create body against its model's schema */
typedef struct sim_verr {
  char field[160];
  char msg[640];
} sim_verr;

typedef struct sim_gen {
  const sim_model *model;
  const char *prompt;           /* borrowed from the body ("" when none) */
  json_t *params;               /* new reference: normalized params */
  json_t *warnings;             /* new reference or NULL */
  long long credits;            /* what the run reserves */
} sim_gen;

int sim_validate_generation_locked(sim_state *s, const json_t *body, sim_gen *out,
                                  sim_verr *err);

/* upload.c: POST /api/v1/files, streamed through MHD's post processor */
struct sim_upload *sim_upload_new(sim_req *rq, struct MHD_Connection *c);
void sim_upload_feed(struct sim_upload *up, const char *data, size_t size);
void sim_upload_finish(sim_req *rq, struct sim_upload *up, sim_reply *r);
void sim_upload_free(struct sim_upload *up);

/* media.c: the real type and duration of uploaded bytes */
const char *sim_sniff(const unsigned char *p, size_t n, const char **kind);
double sim_mp4_duration(const unsigned char *p, size_t n);
double sim_webm_duration(const unsigned char *p, size_t n);

/* control.c: /__sim/... */
void sim_control(sim_req *rq, sim_reply *r);

/* cdn.c: the CDN listener */
void sim_cdn(sim_req *rq, struct MHD_Connection *c, sim_reply *r);

/* src/sha256.c, shared with the C core: rv_sha256_hex (stored files) */
#include "../src/sha256.h"

/* result.c: the media a succeeded task returns, by its model's category */
const char *sim_result_ext(const sim_model *m, const json_t *params);
const char *sim_result_dir(const char *ext);
int sim_result_media(const sim_task *t, unsigned char **data, size_t *len, int *is_static,
                     const char **mime);

/* sample_mp4.c: the result video */
extern const unsigned char sim_sample_mp4[];
extern const unsigned int sim_sample_mp4_len;

#endif
