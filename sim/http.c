/*
** http.c — one HTTP request through libmicrohttpd: the per-request context,
** collecting the body, matching and applying injected faults, building the
** MHD response and the one-line stderr log. Routes live in api.c, cdn.c,
** control.c and upload.c; they fill an sim_reply and never touch MHD
** responses themselves.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "sim.h"

/* ---- small helpers shared by the routes ------------------------------- */

/* sim_header: request header `name` of `c` (case-insensitive), or NULL */
const char *sim_header(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* sim_reply_json: make `r` a JSON reply with `status`, taking `body` */
void sim_reply_json(sim_reply *r, unsigned status, json_t *body) {
  json_decref(r->json);
  r->json = body;
  r->status = status;
}

/*
** sim_reply_error: make `r` the error reply of request `rq`: `status` and
** {"error":{"code","message","requestId"[,"field"]}}, the message from
** `fmt`. The request id is the one in the X-Request-Id header.
*/
void sim_reply_error(sim_req *rq, sim_reply *r, unsigned status,
                    const char *code, const char *field, const char *fmt, ...) {
  char msg[1200];
  char *clean;
  va_list ap;
  json_t *err;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* a message cut by vsnprintf may end mid-character: keep it valid UTF-8 */
  clean = sim_clean_dup(msg);
  err = json_pack("{s:s,s:s,s:s}", "code", code, "message", clean ? clean : code,
                  "requestId", rq->rid);
  free(clean);
  if (err && field) json_object_set_new(err, "field", json_string(field));
  sim_reply_json(r, status, json_pack("{s:o}", "error", err));
}

/* sim_reply_free: release what `r` owns and zero it */
void sim_reply_free(sim_reply *r) {
  json_decref(r->json);
  if (r->data && !r->data_static) free(r->data);
  memset(r, 0, sizeof *r);
}

/* ---- request context --------------------------------------------------- */

/*
** log_line: the one stderr line of request `rq`: listener, method, path
** and `outcome` (a status, or how the connection ended). No header value
** is ever part of it.
*/
static void log_line(const sim_req *rq, const char *outcome) {
  if (rq->s->opt->quiet) return;
  fprintf(stderr, "%s %s %s -> %s\n", rq->listener == SIM_CDN ? "cdn" : "api",
          rq->method ? rq->method : "?", rq->path ? rq->path : "?", outcome);
}

/* kind_is: 1 when `rq` matched a fault of kind `k` */
static int kind_is(const sim_req *rq, sim_fault_kind k) {
  return rq->fault && rq->fault->kind == k;
}

/* faults that answer without processing the request */
static int fault_preempts(const sim_req *rq) {
  return kind_is(rq, SIM_FAULT_RESPOND) || kind_is(rq, SIM_FAULT_DROP) ||
         kind_is(rq, SIM_FAULT_REDIRECT);
}

/* expects_continue: 1 when the client of `c` waits for 100 Continue */
static int expects_continue(struct MHD_Connection *c) {
  const char *e = sim_header(c, "Expect");
  return e && strncasecmp(e, "100-continue", 12) == 0;
}

/* content_length: the Content-Length header as a number, -1 when absent */
static long long content_length(struct MHD_Connection *c) {
  const char *v = sim_header(c, "Content-Length");
  char *end;
  long long n;
  if (!v) return -1;
  n = strtoll(v, &end, 10);
  return (end == v || n < 0) ? -1 : n;
}

/*
** req_new: the context of a request to listener `l`, id assigned; NULL
** when out of memory.
*/
static sim_req *req_new(sim_listener *l, const char *url, const char *method) {
  sim_req *rq = calloc(1, sizeof *rq);
  if (!rq) return NULL;
  rq->s = l->s;
  rq->listener = l->which;
  rq->route = -1;
  rq->method = sim_clean_dup(method);
  rq->path = sim_clean_dup(url);
  if (!rq->method || !rq->path) {
    free(rq->method);
    free(rq->path);
    free(rq);
    return NULL;
  }
  rq->control = l->which == SIM_API &&
                (strncmp(url, "/__sim/", 7) == 0 || strcmp(url, "/__sim") == 0);
  memcpy(rq->rid, "req_", 4);
  sim_lock(rq->s);
  sim_random_hex_locked(rq->s, rq->rid + 4, 8);
  sim_unlock(rq->s);
  return rq;
}

/* req_free: release the request context `rq` and all it owns */
static void req_free(sim_req *rq) {
  free(rq->method);
  free(rq->path);
  sim_fault_free(rq->fault);
  sim_reply_free(&rq->early);
  free(rq->body);
  if (rq->up) sim_upload_free(rq->up);
  free(rq);
}

/*
** req_begin: what can be decided from the headers alone, before any body
** byte: the request log, the CDN Authorization check, fault matching, the
** API gate (auth, route) and how the body will be read.
*/
static void req_begin(sim_req *rq, struct MHD_Connection *c) {
  sim_state *s = rq->s;
  const char *auth = sim_header(c, "Authorization");
  long long clen = content_length(c);
  if (!rq->control) {
    sim_reqlog e;
    memset(&e, 0, sizeof e);
    e.listener = rq->listener;
    e.method = sim_clean_dup(rq->method);
    e.path = sim_clean_dup(rq->path);
    e.user_agent = sim_clean_dup(sim_header(c, "User-Agent"));
    e.idem_key = sim_clean_dup(sim_header(c, "Idempotency-Key"));
    e.content_type = sim_clean_dup(sim_header(c, "Content-Type"));
    e.auth = auth != NULL;
    e.content_length = clen;
    sim_lock(s);
    s->requests++;
    if (rq->listener == SIM_CDN && auth) s->cdn_auth_violations++;
    sim_reqlog_add_locked(s, &e);
    rq->fault = sim_fault_take_locked(s, rq->listener, rq->method, rq->path);
    sim_unlock(s);
    /* the value never reaches the log: a leaked key is the bug to catch */
    if (rq->listener == SIM_CDN && auth)
      fprintf(stderr, "ERROR cdn request carried Authorization (%s %s)\n",
              rq->method, rq->path);
  }
  if (fault_preempts(rq)) return;   /* body read and discarded */
  if (rq->listener == SIM_API && !rq->control) sim_api_gate(rq, c);
  if (rq->has_early) return;
  if (rq->control || (rq->listener == SIM_API && sim_api_takes_body(rq))) {
    rq->wants_json = 1;
    if (clen > SIM_JSON_BODY_MAX) {
      sim_reply_error(rq, &rq->early, 413, "payload_too_large", "body",
                     "body: at most %lld bytes accepted here; Content-Length is %lld",
                     (long long)SIM_JSON_BODY_MAX, clen);
      rq->has_early = 1;
    }
  } else if (rq->listener == SIM_API && sim_api_is_upload(rq)) {
    if (clen > SIM_UPLOAD_BODY_MAX) {
      sim_reply_error(rq, &rq->early, 413, "payload_too_large", "file",
                     "body: at most %lld bytes accepted for an upload; "
                     "Content-Length is %lld", (long long)SIM_UPLOAD_BODY_MAX, clen);
      rq->has_early = 1;
      return;
    }
    rq->up = sim_upload_new(rq, c);
  }
}

/*
** req_feed: take `size` body bytes at `data`. JSON bodies are kept up to
** SIM_JSON_BODY_MAX; past it they are dropped and the request ends in 413.
** Bodies nobody reads are drained, so the client sees a clean answer.
*/
static void req_feed(sim_req *rq, const char *data, size_t size) {
  rq->body_seen += (long long)size;
  if (rq->up) {
    sim_upload_feed(rq->up, data, size);
    return;
  }
  if (!rq->wants_json || rq->body_over || rq->has_early) return;
  if (rq->body_len + size > (size_t)SIM_JSON_BODY_MAX) {
    rq->body_over = 1;
    free(rq->body);
    rq->body = NULL;
    rq->body_len = rq->body_cap = 0;
    return;
  }
  if (rq->body_len + size + 1 > rq->body_cap) {
    size_t ncap = rq->body_cap ? rq->body_cap : 4096;
    char *nb;
    while (ncap < rq->body_len + size + 1) ncap *= 2;
    nb = realloc(rq->body, ncap);
    if (!nb) {
      rq->body_over = 1;
      return;
    }
    rq->body = nb;
    rq->body_cap = ncap;
  }
  memcpy(rq->body + rq->body_len, data, size);
  rq->body_len += size;
  rq->body[rq->body_len] = '\0';
}

/* ---- responses --------------------------------------------------------- */

/* add_header: set `name` on `resp` unless the fault brings its own */
static void add_header(const sim_req *rq, struct MHD_Response *resp,
                       const char *name, const char *value) {
  if (value && !sim_fault_header(rq->fault, name)) MHD_add_response_header(resp, name, value);
}

/*
** send_reply: queue `r` (consumed) as the answer to `rq` on `c`, the body
** shaped by the matched fault (fault.c), and write the log line.
*/
static enum MHD_Result send_reply(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  struct MHD_Response *resp;
  enum MHD_Result ret;
  unsigned char *body;
  size_t len;
  int body_static = 0, gzip = 0;
  unsigned status = r->status ? r->status : 500;
  const char *ct = r->content_type ? r->content_type : "application/json";
  const char *kind = rq->fault ? sim_fault_kind_name(rq->fault->kind) : NULL;
  char outcome[48], range[64];
  if (r->data) {
    body = r->data;
    len = r->len;
    body_static = r->data_static;
    r->data = NULL;
  } else if (r->json) {
    body = (unsigned char *)json_dumps(r->json, JSON_COMPACT);
    len = body ? strlen((const char *)body) : 0;
  } else {
    body = NULL;
    len = 0;
  }
  if (!body) {
    body = (unsigned char *)"";
    body_static = 1;
    len = 0;
  }
  resp = sim_fault_response(rq->s, rq->fault, body, len, body_static, &status, &ct, range,
                            sizeof range, &gzip);
  if (resp && kind_is(rq, SIM_FAULT_HUGE_HEADER) && sim_fault_pad_header(rq->fault, resp) != 0) {
    MHD_destroy_response(resp);
    resp = NULL;
  }
  if (!resp) {
    sim_reply_free(r);
    log_line(rq, "dropped (out of memory)");
    return MHD_NO;
  }
  add_header(rq, resp, "Content-Type", ct);
  add_header(rq, resp, "X-Request-Id", rq->rid);
  if (gzip) add_header(rq, resp, "Content-Encoding", "gzip");
  if (range[0]) add_header(rq, resp, "Content-Range", range);
  if (r->replayed) add_header(rq, resp, "Idempotent-Replayed", "true");
  add_header(rq, resp, "Allow", r->allow);
  add_header(rq, resp, "Location", r->location);
  if (rq->fault) {
    const char *k;
    json_t *v;
    json_object_foreach(rq->fault->headers, k, v) {
      MHD_add_response_header(resp, k, json_string_value(v));
    }
  }
  ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  snprintf(outcome, sizeof outcome, "%u%s%s", status, kind ? " fault " : "", kind ? kind : "");
  log_line(rq, outcome);
  sim_reply_free(r);
  return ret;
}

/*
** fault_reply: the answer of a `respond` or `redirect` fault into `r`:
** the fault's status, body and content type, or defaults (500 and a JSON
** error body; 302 for a redirect).
*/
static void fault_reply(sim_req *rq, sim_reply *r, int redirect) {
  const sim_fault *f = rq->fault;
  unsigned status = f->status ? f->status : (redirect ? 302 : 500);
  r->content_type = f->content_type;
  if (redirect) r->location = f->location;
  if (f->has_body && (r->data = malloc(f->body_len + 1)) != NULL) {
    memcpy(r->data, f->body, f->body_len);
    r->len = f->body_len;
    r->status = status;
  } else if (redirect) {
    sim_reply_json(r, status, json_pack("{s:s?}", "location", r->location));
  } else {
    const char *code = status == 429 ? "rate_limited"
                       : status == 503 ? "service_unavailable"
                       : status >= 500 ? "internal_error" : "injected_fault";
    sim_reply_error(rq, r, status, code, NULL,
                   "injected fault: %u from the simulator's fault queue", status);
  }
}

/*
** process: run the request's route into `r`: a gate error kept from the
** headers, 413 for an over-long JSON body, or the route itself.
*/
static void process(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  if (rq->has_early) {
    *r = rq->early;
    memset(&rq->early, 0, sizeof rq->early);
    rq->has_early = 0;
    return;
  }
  if (rq->body_over) {
    sim_reply_error(rq, r, 413, "payload_too_large", "body",
                   "body: at most %lld bytes accepted here; got %lld",
                   (long long)SIM_JSON_BODY_MAX, rq->body_seen);
    return;
  }
  if (rq->control) sim_control(rq, r);
  else if (rq->listener == SIM_CDN) sim_cdn(rq, c, r);
  else if (rq->up) sim_upload_finish(rq, rq->up, r);
  else sim_api_dispatch(rq, c, r);
}

/*
** req_finish: the whole request has arrived: apply the fault, if any,
** around processing, and answer (or close the connection without one).
*/
static enum MHD_Result req_finish(sim_req *rq, struct MHD_Connection *c) {
  sim_reply r;
  memset(&r, 0, sizeof r);
  rq->done = 1;
  if (kind_is(rq, SIM_FAULT_DROP)) {
    log_line(rq, "dropped (fault drop)");
    return MHD_NO;
  }
  if (kind_is(rq, SIM_FAULT_RESPOND) || kind_is(rq, SIM_FAULT_REDIRECT)) {
    fault_reply(rq, &r, kind_is(rq, SIM_FAULT_REDIRECT));
    return send_reply(rq, c, &r);
  }
  if (kind_is(rq, SIM_FAULT_DELAY))
    sim_sleep_ms(rq->s, rq->fault->delay_ms >= 0 ? rq->fault->delay_ms : 1000);
  process(rq, c, &r);
  if (kind_is(rq, SIM_FAULT_DROP_AFTER_COMMIT)) {
    char outcome[64];
    snprintf(outcome, sizeof outcome, "dropped after %u (fault drop_after_commit)", r.status);
    sim_reply_free(&r);
    log_line(rq, outcome);
    return MHD_NO;
  }
  return send_reply(rq, c, &r);
}

/* what the simulator keeps about one TCP connection (MHD's socket context) */
typedef struct sim_conn {
  unsigned long epoch;          /* s->conn_epoch when it was accepted */
  long requests;                /* requests begun on it */
} sim_conn;

/*
** on_connection: MHD's connection notifier; `cls` is the sim_listener. A
** connection is counted when accepted (before any TLS handshake, so one
** refused by the client counts too) and its context freed when it closes.
*/
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  sim_listener *l = cls;
  (void)c;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    sim_conn *conn = calloc(1, sizeof *conn);
    sim_lock(l->s);
    if (l->which == SIM_CDN) l->s->cdn_connections++;
    else l->s->connections++;
    if (conn) conn->epoch = l->s->conn_epoch;
    sim_unlock(l->s);
    *socket_context = conn;
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    free(*socket_context);
    *socket_context = NULL;
  }
}

/*
** note_first_request: request `rq` begins on connection `c`. A connection
** whose first request is to the control API belongs to the test harness,
** not to a client: it leaves the count (unless a reset came in between).
*/
static void note_first_request(sim_req *rq, struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *info =
    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  sim_conn *conn = info ? info->socket_context : NULL;
  if (!conn || conn->requests++ > 0 || !rq->control) return;
  sim_lock(rq->s);
  if (conn->epoch == rq->s->conn_epoch && rq->s->connections > 0) rq->s->connections--;
  sim_unlock(rq->s);
}

/*
** on_request: MHD's access handler; `cls` is the sim_listener. The first
** call (headers only) sets up the context, later ones carry body bytes,
** the last one (no bytes) answers.
*/
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  sim_req *rq = *con_cls;
  (void)version;
  if (!rq) {
    rq = req_new(cls, url, method);
    if (!rq) return MHD_NO;
    *con_cls = rq;
    note_first_request(rq, c);
    req_begin(rq, c);
    /* a client waiting for 100 Continue can take the refusal right away;
       others are drained first, or closing early could reset the answer */
    if (rq->has_early && expects_continue(c)) {
      sim_reply r = rq->early;
      memset(&rq->early, 0, sizeof rq->early);
      rq->has_early = 0;
      rq->done = 1;
      return send_reply(rq, c, &r);
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    if (!rq->done) req_feed(rq, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (rq->done) return MHD_YES;
  return req_finish(rq, c);
}

/* on_completed: MHD's request-completed callback: free the context */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  if (*con_cls) req_free(*con_cls);
  *con_cls = NULL;
}

/*
** sim_http_start: start a daemon for listener `l` bound to `addr` (an IPv6
** address when `ipv6`), or NULL. Thread per connection, because handlers
** sleep for delays and stalls; poll() because select() stops at 1024 fds.
** With a certificate and key in the options it serves HTTPS (GnuTLS); MHD
** keeps pointers to the PEM buffers, so they outlive the daemon.
*/
struct MHD_Daemon *sim_http_start(sim_listener *l, const struct sockaddr *addr, int ipv6) {
  const sim_options *o = l->s->opt;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_POLL;
  struct MHD_OptionItem tls[3] = {
    { MHD_OPTION_END, 0, NULL }, { MHD_OPTION_END, 0, NULL }, { MHD_OPTION_END, 0, NULL }
  };
  if (ipv6) flags |= MHD_USE_IPv6;
  if (o->tls_cert_pem && o->tls_key_pem) {
    flags |= MHD_USE_TLS;
    tls[0].option = MHD_OPTION_HTTPS_MEM_CERT;
    tls[0].ptr_value = o->tls_cert_pem;
    tls[1].option = MHD_OPTION_HTTPS_MEM_KEY;
    tls[1].ptr_value = o->tls_key_pem;
  }
  return MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
                          MHD_OPTION_SOCK_ADDR, addr,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)600,
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SIM_CONN_MEMORY,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
                          MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                          MHD_OPTION_ARRAY, tls,
                          MHD_OPTION_END);
}
