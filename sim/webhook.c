/*
** webhook.c — webhook endpoints, events and their deliveries.
**
** Endpoints are registered through /api/v1/webhooks (api.c routes here).
** When a task of a key becomes final, an event (generation.succeeded or
** generation.failed, its data the task as GET /api/v1/generations/{id}
** shows it) is queued for each active endpoint of that key subscribed to
** the type. One worker thread advances tasks by the clock (so no poll is
** needed for an event) and POSTs due deliveries with libcurl: JSON, no
** custom headers, no redirects followed, a short timeout, every address
** checked again at connect time. A failed attempt is retried with
** exponential backoff; every attempt is recorded as a delivery.
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "sim.h"

#define API_VERSION "2026-05-11"

static const char *const event_types[] = { "generation.succeeded", "generation.failed", NULL };

/* ---- URL rules ------------------------------------------------------------- */

/* v4_refused: why the IPv4 address `a` (network order) is refused, or NULL */
static const char *v4_refused(const struct in_addr *a, int allow_loopback) {
  unsigned long ip = ntohl(a->s_addr);
  unsigned b0 = (unsigned)(ip >> 24), b1 = (unsigned)((ip >> 16) & 0xFF);
  unsigned b2 = (unsigned)((ip >> 8) & 0xFF);
  if (b0 == 127) return allow_loopback && ip == 0x7F000001UL ? NULL : "a loopback address";
  if (b0 == 10 || (b0 == 172 && (b1 & 0xF0) == 16) || (b0 == 192 && b1 == 168))
    return "a private address";
  if (b0 == 169 && b1 == 254) return "a link-local address";
  if (b0 == 100 && (b1 & 0xC0) == 64) return "a shared (carrier-grade NAT) address";
  if (b0 == 0 || b0 >= 224 || (b0 == 192 && b1 == 0 && (b2 == 0 || b2 == 2)) ||
      (b0 == 198 && (b1 & 0xFE) == 18) || (b0 == 198 && b1 == 51 && b2 == 100) ||
      (b0 == 203 && b1 == 0 && b2 == 113))
    return "a reserved address";
  return NULL;
}

/* v6_refused: why the IPv6 address `a` is refused, or NULL */
static const char *v6_refused(const struct in6_addr *a, int allow_loopback) {
  static const unsigned char loop[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
  static const unsigned char zero[16] = { 0 };
  static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
  const unsigned char *b = a->s6_addr;
  if (memcmp(b, loop, 16) == 0) return allow_loopback ? NULL : "a loopback address";
  if (memcmp(b, zero, 16) == 0) return "a reserved address";
  if (memcmp(b, mapped, 12) == 0) {
    struct in_addr v4;
    memcpy(&v4.s_addr, b + 12, 4);
    return v4_refused(&v4, 0) ? v4_refused(&v4, 0) : "an IPv4-mapped address";
  }
  if ((b[0] & 0xFE) == 0xFC) return "a private address";
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return "a link-local address";
  if (b[0] == 0xFF || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) ||
      memcmp(b, zero, 12) == 0)
    return "a reserved address";
  return NULL;
}

/*
** numeric_last_label: 1 when the last label of the `n` bytes of `h` is a
** number (decimal, or 0x hex): 2130706433, 0x7f.1 and 127.1 are addresses
** to a resolver, and no top-level domain is numeric.
*/
static int numeric_last_label(const char *h, size_t n) {
  size_t start = n, i;
  while (start > 0 && h[start - 1] != '.') start--;
  if (start == n) return 0;
  if (n - start > 2 && h[start] == '0' && h[start + 1] == 'x') {
    for (i = start + 2; i < n; i++)
      if (!strchr("0123456789abcdef", h[i])) return 0;
    return 1;
  }
  for (i = start; i < n; i++)
    if (h[i] < '0' || h[i] > '9') return 0;
  return 1;
}

/* host_refused: why the host name `h` (lower-cased, no brackets) is refused */
static const char *host_refused(const char *h, int allow_loopback) {
  static const char *const local_suffixes[] = {
    ".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain", NULL
  };
  const char *const *sfx;
  struct in_addr v4;
  struct in6_addr v6;
  size_t n = strlen(h);
  if (n == 0) return "no host";
  if (inet_pton(AF_INET, h, &v4) == 1) return v4_refused(&v4, allow_loopback);
  if (inet_pton(AF_INET6, h, &v6) == 1) return v6_refused(&v6, allow_loopback);
  if (h[n - 1] == '.') n--;
  if (numeric_last_label(h, n)) return "an IP address in a non-standard form";
  if ((n == 9 && strncmp(h, "localhost", 9) == 0) || strncmp(h, "localhost.", 10) == 0)
    return "a localhost name";
  for (sfx = local_suffixes; *sfx; sfx++) {
    size_t k = strlen(*sfx);
    if (n >= k && strncmp(h + n - k, *sfx, k) == 0) return "a local network name";
  }
  if (!memchr(h, '.', n)) return "a local network name (no dot)";
  return NULL;
}

/*
** sim_webhook_url_check: 0 when `url` is a webhook endpoint the service
** takes: https, a host that is no localhost name, no loopback, private,
** link-local or reserved address, no credentials, no fragment. Under
** --allow-loopback-webhooks, http(s)://127.0.0.1[:port] and [::1] pass
** too. Else -1 with the reason in `why`.
*/
int sim_webhook_url_check(const char *url, int allow_loopback, char *why, size_t size) {
  const char *p, *auth, *end, *reason;
  char host[256];
  size_t i, n;
  int https = strncasecmp(url, "https://", 8) == 0, http = strncasecmp(url, "http://", 7) == 0;
  if (strlen(url) > 2048) {
    snprintf(why, size, "url: at most 2048 characters");
    return -1;
  }
  for (p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7F) {
      snprintf(why, size, "url: spaces and control characters are not allowed");
      return -1;
    }
  if (!https && !http) {
    snprintf(why, size, "url: must use https://");
    return -1;
  }
  if (strchr(url, '#')) {
    snprintf(why, size, "url: a fragment (#...) is not allowed");
    return -1;
  }
  auth = url + (https ? 8 : 7);
  end = auth + strcspn(auth, "/?");
  if (memchr(auth, '@', (size_t)(end - auth))) {
    snprintf(why, size, "url: credentials (user:password@) are not allowed");
    return -1;
  }
  if (*auth == '[') {
    const char *close = memchr(auth, ']', (size_t)(end - auth));
    if (!close) {
      snprintf(why, size, "url: unterminated IPv6 address");
      return -1;
    }
    n = (size_t)(close - auth - 1);
    p = auth + 1;
  } else {
    p = auth;
    n = strcspn(auth, ":/?");
    if (p + n > end) n = (size_t)(end - p);
  }
  if (n >= sizeof host) {
    snprintf(why, size, "url: the host name is too long");
    return -1;
  }
  for (i = 0; i < n; i++) host[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
  host[n] = '\0';
  reason = host_refused(host, allow_loopback);
  if (reason) {
    snprintf(why, size, "url: the host %s is %s", host, reason);
    return -1;
  }
  if (http && !(allow_loopback && (strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0))) {
    snprintf(why, size, "url: must use https:// (plain http only for 127.0.0.1 with "
             "--allow-loopback-webhooks)");
    return -1;
  }
  return 0;
}

/* ---- records --------------------------------------------------------------- */

/* iso_or_null: a timestamp field, null when empty */
static json_t *iso_or_null(const char *ts) {
  return ts[0] ? json_string(ts) : json_null();
}

/*
** sim_webhook_json: the public object of endpoint `w`; the signing secret
** only when `with_secret` (create and rotate-secret answers).
*/
json_t *sim_webhook_json(const sim_webhook *w, int with_secret) {
  char preview[32];
  size_t n = strlen(w->secret);
  json_t *o = json_object();
  snprintf(preview, sizeof preview, "%.8s...%s", w->secret, n > 6 ? w->secret + n - 6 : "");
  json_object_set_new(o, "id", json_string(w->id));
  json_object_set_new(o, "object", json_string("webhook_endpoint"));
  json_object_set_new(o, "name", w->name ? json_string(w->name) : json_null());
  json_object_set_new(o, "url", json_string(w->url));
  json_object_set(o, "event_types", w->event_types);
  json_object_set_new(o, "status", json_string(w->disabled ? "disabled" : "active"));
  json_object_set_new(o, "secret_preview", json_string(preview));
  if (with_secret) json_object_set_new(o, "signing_secret", json_string(w->secret));
  json_object_set_new(o, "last_success_at", iso_or_null(w->last_success_at));
  json_object_set_new(o, "last_failure_at", iso_or_null(w->last_failure_at));
  json_object_set_new(o, "failure_count", json_integer(w->failure_count));
  json_object_set_new(o, "created_at", json_string(w->created_at));
  json_object_set_new(o, "updated_at", json_string(w->updated_at));
  json_object_set_new(o, "disabled_at", iso_or_null(w->disabled_at));
  json_object_set_new(o, "revoked_at", json_null());
  return o;
}

/* delivery_state_name: the wire name of a delivery state */
static const char *delivery_state_name(int st) {
  switch (st) {
    case SIM_DELIVERY_SUCCEEDED: return "succeeded";
    case SIM_DELIVERY_FAILED: return "failed";
    case SIM_DELIVERY_SENDING: return "sending";
    default: return "pending";
  }
}

/* sim_delivery_json: the public object of delivery attempt `d` */
json_t *sim_delivery_json(const sim_delivery *d) {
  json_t *o = json_object();
  json_object_set_new(o, "id", json_string(d->id));
  json_object_set_new(o, "object", json_string("webhook_delivery"));
  json_object_set_new(o, "endpoint_id", json_string(d->endpoint_id));
  json_object_set_new(o, "event_id", json_string(d->event_id));
  json_object_set_new(o, "event_type", json_string(d->event_type));
  json_object_set_new(o, "attempt", json_integer(d->attempt));
  json_object_set_new(o, "status", json_string(delivery_state_name(d->state)));
  json_object_set_new(o, "response_status",
                      d->response_status > 0 ? json_integer(d->response_status) : json_null());
  json_object_set_new(o, "error", d->error ? json_string(d->error) : json_null());
  json_object_set_new(o, "duration_ms", d->state >= SIM_DELIVERY_SUCCEEDED
                      ? json_integer(d->duration_ms) : json_null());
  json_object_set_new(o, "created_at", json_string(d->created_at));
  json_object_set_new(o, "attempted_at", iso_or_null(d->attempted_at));
  return o;
}

/* sim_event_json: the event `e` as delivered and as listed */
json_t *sim_event_json(const sim_event *e) {
  return json_pack("{s:s,s:s,s:s,s:s,s:O}", "id", e->id, "type", e->type, "api_version",
                   API_VERSION, "created_at", e->created_at, "data", e->data);
}

/* push: append pointer `p` to the array *v (*n used, *cap allocated) */
static int push(void ***v, size_t *n, size_t *cap, void *p) {
  if (*n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    void **nv = realloc(*v, ncap * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    *cap = ncap;
  }
  (*v)[(*n)++] = p;
  return 0;
}

/* sim_webhook_find_locked: the live endpoint `id` of `owner`, or NULL */
sim_webhook *sim_webhook_find_locked(sim_state *s, const char *owner, const char *id) {
  size_t i;
  for (i = 0; i < s->nwebhooks; i++) {
    sim_webhook *w = s->webhooks[i];
    if (strcmp(w->id, id) == 0 && (!owner || strcmp(w->owner, owner) == 0)) return w;
  }
  return NULL;
}

/*
** sim_webhook_add_locked: a new endpoint of `owner` with a fresh id and
** secret (strings still to be set by the caller), or NULL.
*/
sim_webhook *sim_webhook_add_locked(sim_state *s, const char *owner) {
  sim_webhook *w = calloc(1, sizeof *w);
  void **v = (void **)s->webhooks;
  if (!w || !(w->owner = strdup(owner)) ||
      push(&v, &s->nwebhooks, &s->cap_webhooks, w) != 0) {
    if (w) free(w->owner);
    free(w);
    return NULL;
  }
  s->webhooks = (sim_webhook **)v;
  memcpy(w->id, "whend_", 6);
  sim_random_hex_locked(s, w->id + 6, 12);
  sim_webhook_new_secret_locked(s, w);
  sim_iso_now(w->created_at);
  memcpy(w->updated_at, w->created_at, sizeof w->updated_at);
  pthread_cond_broadcast(&s->webhook_cv);   /* the worker now has work to watch */
  return w;
}

/* sim_webhook_new_secret_locked: a fresh signing secret for `w` */
void sim_webhook_new_secret_locked(sim_state *s, sim_webhook *w) {
  memcpy(w->secret, "whsec_", 6);
  sim_random_hex_locked(s, w->secret + 6, 16);
}

/* webhook_free: release endpoint `w` */
static void webhook_free(sim_webhook *w) {
  free(w->owner);
  free(w->name);
  free(w->url);
  json_decref(w->event_types);
  free(w);
}

/* sim_webhook_remove_locked: delete endpoint `w`; its pending deliveries go too */
void sim_webhook_remove_locked(sim_state *s, sim_webhook *w) {
  size_t i;
  for (i = 0; i < s->nwebhooks; i++) {
    if (s->webhooks[i] != w) continue;
    memmove(s->webhooks + i, s->webhooks + i + 1, (s->nwebhooks - i - 1) * sizeof *s->webhooks);
    s->nwebhooks--;
    break;
  }
  for (i = 0; i < s->ndeliveries; i++) {
    sim_delivery *d = s->deliveries[i];
    if (strcmp(d->endpoint_id, w->id) == 0 && d->state == SIM_DELIVERY_PENDING) {
      d->state = SIM_DELIVERY_FAILED;
      free(d->error);
      d->error = strdup("the endpoint was deleted");
    }
  }
  webhook_free(w);
}

/* event_find_locked: the event `id`, or NULL */
static sim_event *event_find_locked(sim_state *s, const char *id) {
  size_t i;
  for (i = 0; i < s->nevents; i++)
    if (strcmp(s->events[i]->id, id) == 0) return s->events[i];
  return NULL;
}

/*
** queue_locked: a pending delivery of event `e` to endpoint `w`, attempt
** `attempt`, due `delay` seconds from now; NULL when out of memory.
*/
static sim_delivery *queue_locked(sim_state *s, const sim_webhook *w, const sim_event *e,
                                  int attempt, double delay) {
  sim_delivery *d = calloc(1, sizeof *d);
  void **v = (void **)s->deliveries;
  if (!d || push(&v, &s->ndeliveries, &s->cap_deliveries, d) != 0) {
    free(d);
    return NULL;
  }
  s->deliveries = (sim_delivery **)v;
  memcpy(d->id, "whdel_", 6);
  sim_random_hex_locked(s, d->id + 6, 12);
  snprintf(d->endpoint_id, sizeof d->endpoint_id, "%s", w->id);
  snprintf(d->event_id, sizeof d->event_id, "%s", e->id);
  snprintf(d->event_type, sizeof d->event_type, "%s", e->type);
  d->attempt = attempt;
  d->state = SIM_DELIVERY_PENDING;
  d->due = sim_mono_now() + delay;
  sim_iso_now(d->created_at);
  pthread_cond_broadcast(&s->webhook_cv);
  return d;
}

/*
** event_add_locked: a new event of `type` for `owner` with `data` (taken);
** NULL when out of memory.
*/
static sim_event *event_add_locked(sim_state *s, const char *owner, const char *type,
                                   json_t *data) {
  sim_event *e = calloc(1, sizeof *e);
  void **v = (void **)s->events;
  if (!e || !data || !(e->owner = strdup(owner)) ||
      push(&v, &s->nevents, &s->cap_events, e) != 0) {
    if (e) free(e->owner);
    free(e);
    json_decref(data);
    return NULL;
  }
  s->events = (sim_event **)v;
  memcpy(e->id, "evt_", 4);
  sim_random_hex_locked(s, e->id + 4, 12);
  snprintf(e->type, sizeof e->type, "%s", type);
  sim_iso_now(e->created_at);
  e->data = data;
  return e;
}

/*
** sim_webhook_task_final_locked: task `t` has just become final: record
** its event and queue a delivery to each active endpoint of its key that
** subscribes to the type.
*/
void sim_webhook_task_final_locked(sim_state *s, const sim_task *t) {
  const char *type = t->status == SIM_SUCCEEDED ? "generation.succeeded" : "generation.failed";
  sim_event *e;
  size_t i;
  if (s->nwebhooks == 0) return;
  e = event_add_locked(s, t->owner, type, sim_task_json_locked(s, t));
  if (!e) return;
  for (i = 0; i < s->nwebhooks; i++) {
    const sim_webhook *w = s->webhooks[i];
    size_t k;
    int wants = 0;
    if (w->disabled || strcmp(w->owner, t->owner) != 0) continue;
    for (k = 0; k < json_array_size(w->event_types); k++)
      if (strcmp(json_string_value(json_array_get(w->event_types, k)), type) == 0) wants = 1;
    if (wants) queue_locked(s, w, e, 1, 0);
  }
}

/*
** sim_webhook_test_locked: a webhook.test event for endpoint `w`, queued
** at once whatever its status; the pending delivery, or NULL.
*/
sim_delivery *sim_webhook_test_locked(sim_state *s, const sim_webhook *w) {
  sim_event *e = event_add_locked(s, w->owner, "webhook.test",
                                  json_pack("{s:s,s:s,s:s}", "object", "webhook_test",
                                            "endpoint_id", w->id, "message",
                                            "a test event from rivya-sim"));
  return e ? queue_locked(s, w, e, 1, 0) : NULL;
}

/* sim_webhook_types_ok: 1 when `v` is a non-empty array of known event types */
int sim_webhook_types_ok(const json_t *v) {
  size_t i, j;
  if (!json_is_array(v) || json_array_size(v) == 0) return 0;
  for (i = 0; i < json_array_size(v); i++) {
    const json_t *t = json_array_get(v, i);
    if (!json_is_string(t) || !sim_listed(event_types, json_string_value(t))) return 0;
    for (j = 0; j < i; j++)
      if (json_equal(json_array_get(v, j), (json_t *)t)) return 0;
  }
  return 1;
}

/* sim_webhook_events_json_locked: the events of `owner`, newest first */
json_t *sim_webhook_events_json_locked(sim_state *s, const char *owner) {
  json_t *data = json_array();
  size_t i;
  for (i = s->nevents; i-- > 0;) {
    const sim_event *e = s->events[i];
    json_t *o;
    if (strcmp(e->owner, owner) != 0) continue;
    o = sim_event_json(e);
    json_object_set_new(o, "object", json_string("event"));
    json_array_append_new(data, o);
  }
  return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

/* sim_webhook_deliveries_json_locked: the attempts for endpoint `id`, newest first */
json_t *sim_webhook_deliveries_json_locked(sim_state *s, const char *id) {
  json_t *data = json_array();
  size_t i;
  for (i = s->ndeliveries; i-- > 0;)
    if (strcmp(s->deliveries[i]->endpoint_id, id) == 0)
      json_array_append_new(data, sim_delivery_json(s->deliveries[i]));
  return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

/* delivery_free: release delivery `d` */
static void delivery_free(sim_delivery *d) {
  free(d->error);
  free(d);
}

/* event_free: release event `e` */
static void event_free(sim_event *e) {
  free(e->owner);
  json_decref(e->data);
  free(e);
}

/* sim_webhooks_clear_locked: no endpoints, events or deliveries (reset) */
void sim_webhooks_clear_locked(sim_state *s) {
  size_t i;
  for (i = 0; i < s->nwebhooks; i++) webhook_free(s->webhooks[i]);
  for (i = 0; i < s->nevents; i++) event_free(s->events[i]);
  for (i = 0; i < s->ndeliveries; i++) delivery_free(s->deliveries[i]);
  free(s->webhooks);
  free(s->events);
  free(s->deliveries);
  s->webhooks = NULL;
  s->events = NULL;
  s->deliveries = NULL;
  s->nwebhooks = s->cap_webhooks = s->nevents = s->cap_events = 0;
  s->ndeliveries = s->cap_deliveries = 0;
}

/* ---- the delivery worker ---------------------------------------------------- */

/* what one attempt needs outside the lock */
typedef struct attempt {
  sim_state *s;
  char id[40];
  char *url;
  char *body;
  int allow_loopback;
  long status;
  char error[256];
  long ms;
} attempt;

/* discard: libcurl write callback that throws the receiver's answer away */
static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

/*
** open_checked: libcurl's open-socket callback: the resolved address must
** pass the same rules as the URL (a name may resolve anywhere), else no
** socket, and the attempt fails.
*/
static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  attempt *at = ud;
  const char *why = NULL;
  (void)purpose;
  if (a->family == AF_INET)
    why = v4_refused(&((struct sockaddr_in *)(void *)&a->addr)->sin_addr, at->allow_loopback);
  else if (a->family == AF_INET6)
    why = v6_refused(&((struct sockaddr_in6 *)(void *)&a->addr)->sin6_addr, at->allow_loopback);
  else
    why = "an address of another family";
  if (why) {
    snprintf(at->error, sizeof at->error, "refused to connect: the host resolved to %s", why);
    return CURL_SOCKET_BAD;
  }
  return socket(a->family, a->socktype, a->protocol);
}

/* stop_check: libcurl progress callback: abort the attempt when the server stops */
static int stop_check(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  attempt *at = ud;
  int stop;
  (void)dt;
  (void)dn;
  (void)ut;
  (void)un;
  sim_lock(at->s);
  stop = at->s->stopping;
  sim_unlock(at->s);
  return stop;
}

/* perform: one POST of at->body to at->url; fills status, error, ms */
static void perform(attempt *at, double timeout) {
  CURL *h = curl_easy_init();
  struct curl_slist *hdrs = NULL;
  CURLcode rc;
  double t0 = sim_mono_now();
  if (!h) {
    snprintf(at->error, sizeof at->error, "out of memory");
    return;
  }
  hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(h, CURLOPT_URL, at->url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout * 1000));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "rivya-sim-webhooks/1");
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, at->body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(at->body));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, at);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, stop_check);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, at);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  rc = curl_easy_perform(h);
  at->ms = (long)((sim_mono_now() - t0) * 1000);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &at->status);
    if (at->status >= 300 && at->status < 400)
      snprintf(at->error, sizeof at->error, "answered %ld: redirects are not followed",
               at->status);
    else if (at->status < 200 || at->status >= 300)
      snprintf(at->error, sizeof at->error, "answered %ld", at->status);
  } else if (!at->error[0]) {
    snprintf(at->error, sizeof at->error, "%s", curl_easy_strerror(rc));
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
}

/* delivery_find_locked: the delivery `id`, or NULL */
static sim_delivery *delivery_find_locked(sim_state *s, const char *id) {
  size_t i;
  for (i = 0; i < s->ndeliveries; i++)
    if (strcmp(s->deliveries[i]->id, id) == 0) return s->deliveries[i];
  return NULL;
}

/*
** take_due_locked: the first pending delivery that is due, marked as
** sending, with its URL and body copied into `at`; 1, or 0 with *next set
** to the seconds until the next one is due (or -1: none pending).
*/
static int take_due_locked(sim_state *s, attempt *at, double *next) {
  double now = sim_mono_now();
  size_t i;
  *next = -1;
  for (i = 0; i < s->ndeliveries; i++) {
    sim_delivery *d = s->deliveries[i];
    const sim_webhook *w;
    const sim_event *e;
    json_t *body;
    if (d->state != SIM_DELIVERY_PENDING) continue;
    if (d->due > now) {
      if (*next < 0 || d->due - now < *next) *next = d->due - now;
      continue;
    }
    w = sim_webhook_find_locked(s, NULL, d->endpoint_id);
    e = event_find_locked(s, d->event_id);
    if (!w || !e) {
      d->state = SIM_DELIVERY_FAILED;
      continue;
    }
    body = sim_event_json(e);
    memset(at, 0, sizeof *at);
    at->s = s;
    snprintf(at->id, sizeof at->id, "%s", d->id);
    at->url = strdup(w->url);
    at->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    at->allow_loopback = s->opt->allow_loopback_webhooks;
    json_decref(body);
    if (!at->url || !at->body) {
      free(at->url);
      free(at->body);
      continue;
    }
    d->state = SIM_DELIVERY_SENDING;
    sim_iso_now(d->attempted_at);
    return 1;
  }
  return 0;
}

/* record_locked: the outcome of attempt `at`; a failure is retried with backoff */
static void record_locked(sim_state *s, const attempt *at) {
  sim_delivery *d = delivery_find_locked(s, at->id);
  sim_webhook *w;
  int ok = !at->error[0] && at->status >= 200 && at->status < 300;
  if (!d) return;   /* reset while sending */
  d->state = ok ? SIM_DELIVERY_SUCCEEDED : SIM_DELIVERY_FAILED;
  d->response_status = at->status;
  d->duration_ms = at->ms;
  if (!ok) d->error = strdup(at->error);
  s->webhook_attempts++;
  w = sim_webhook_find_locked(s, NULL, d->endpoint_id);
  if (!w) return;
  if (ok) {
    sim_iso_now(w->last_success_at);
    return;
  }
  sim_iso_now(w->last_failure_at);
  w->failure_count++;
  if (d->attempt < s->webhook_max_attempts) {
    const sim_event *e = event_find_locked(s, d->event_id);
    double delay = s->webhook_retry_seconds;
    int k;
    for (k = 1; k < d->attempt; k++) delay *= 2;
    if (e) queue_locked(s, w, e, d->attempt + 1, delay);
  }
}

/*
** worker: the delivery thread of state `cls`. While endpoints exist it
** advances tasks every 50 ms (final ones queue their events) and sends
** what is due, one attempt at a time, outside the lock.
*/
static void *worker(void *cls) {
  sim_state *s = cls;
  sim_lock(s);
  while (!s->stopping) {
    attempt at;
    double next;
    struct timespec until;
    if (s->nwebhooks > 0) sim_tasks_advance_all_locked(s);
    if (take_due_locked(s, &at, &next)) {
      double timeout = s->webhook_timeout;
      sim_unlock(s);
      perform(&at, timeout);
      sim_lock(s);
      record_locked(s, &at);
      free(at.url);
      free(at.body);
      continue;
    }
    if (s->nwebhooks == 0 && next < 0) {
      pthread_cond_wait(&s->webhook_cv, &s->mu);
      continue;
    }
    if (next < 0 || next > 0.05) next = 0.05;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(next * 1e9);
    while (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->webhook_cv, &s->mu, &until);
  }
  sim_unlock(s);
  return NULL;
}

/* sim_webhooks_start: start the delivery worker of `s`; 0 or -1 */
int sim_webhooks_start(sim_state *s) {
  if (pthread_create(&s->webhook_thread, NULL, worker, s) != 0) return -1;
  s->webhook_running = 1;
  return 0;
}

/* sim_webhooks_stop: stop and join the worker (s->stopping must be set) */
void sim_webhooks_stop(sim_state *s) {
  if (!s->webhook_running) return;
  sim_lock(s);
  pthread_cond_broadcast(&s->webhook_cv);
  sim_unlock(s);
  pthread_join(s->webhook_thread, NULL);
  s->webhook_running = 0;
}
