/*
** main.c — rivya-sim's command line, the two listeners (API and CDN), the
** start-up line on stdout and a clean exit on SIGTERM / SIGINT or after
** --max-lifetime. Signals are blocked before MHD starts its threads (they
** inherit the mask), so only the main thread ever takes them, by sigwait.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "sim.h"

static const char usage[] =
  "usage: rivya-sim [options]\n"
  "A stateful local simulator of the Rivya Public API v1.\n"
  "\n"
  "  --host ADDR          address of both listeners (default 127.0.0.1)\n"
  "  --port N             API port (0, the default: a free port)\n"
  "  --cdn-port N         CDN port serving result videos and uploads (0: a free port)\n"
  "  --api-key K          an accepted key (repeatable; default rvya_sk_test)\n"
  "  --revoked-key K      a key answered with api_key_revoked (repeatable)\n"
  "  --expired-key K      a key answered with api_key_expired (repeatable)\n"
  "  --scoped-key K[:S,..] a key with only the scopes S (repeatable); without a\n"
  "                       list: the read scopes (models:read, generations:read,\n"
  "                       files:read, credits:read, chat:read)\n"
  "  --catalog FILE       serve and obey this model catalog (JSON, the shape of\n"
  "                       GET /api/v1/models) instead of the built-in one\n"
  "  --allow-loopback-webhooks  accept http://127.0.0.1 webhook endpoints\n"
  "  --credits N          starting balance (default 1000)\n"
  "  --task-seconds S     task lifetime: queued for S/3, then processing, final at S\n"
  "                       (default 6)\n"
  "  --task-polls N       also final on the Nth GET of a task, processing from the\n"
  "                       2nd (default 0: off)\n"
  "  --max-lifetime S     exit by itself after S seconds (default 0: never)\n"
  "  --tls-cert FILE      serve HTTPS on both listeners with this PEM certificate\n"
  "                       (chain); needs --tls-key. URLs the simulator hands out\n"
  "                       then use https://\n"
  "  --tls-key FILE       the PEM private key of --tls-cert\n"
  "  --quiet              no per-request log lines on stderr\n"
  "  --help               this text\n"
  "\n"
  "Once both listeners are up, one line goes to stdout:\n"
  "  {\"port\":P,\"cdn_port\":C,\"pid\":PID}   (with TLS: ,\"tls\":true before })\n"
  "Control API (no key) on the API listener: /__sim/ledger, /__sim/requests,\n"
  "/__sim/reset, /__sim/config, /__sim/faults.\n";

/* parse_ll: `s` as an integer in [min, max] into *out; 0 ok, -1 not */
static int parse_ll(const char *s, long long min, long long max, long long *out) {
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

/* parse_seconds: `s` as a number of seconds >= 0 into *out */
static int parse_seconds(const char *s, double *out) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0) || v > 1e9) return -1;
  *out = v;
  return 0;
}

/*
** parse_args: the command line `argc` / `argv` into `o` (key lists point
** into argv). 0 to run, 1 to exit 0 (--help), -1 to exit 2 (bad usage).
** Options take their value as the next argument or after '='.
*/
static int parse_args(int argc, char **argv, sim_options *o) {
  static const char *const need_value[] = {
    "--host", "--port", "--cdn-port", "--api-key", "--revoked-key", "--expired-key",
    "--scoped-key", "--credits", "--task-seconds", "--task-polls", "--max-lifetime",
    "--tls-cert", "--tls-key", "--catalog", NULL
  };
  int i;
  o->host = "127.0.0.1";
  o->credits = 1000;
  o->task_seconds = 6;
  o->api_keys.v = calloc((size_t)argc + 1, sizeof(char *));
  o->revoked_keys.v = calloc((size_t)argc + 1, sizeof(char *));
  o->expired_keys.v = calloc((size_t)argc + 1, sizeof(char *));
  o->scoped = calloc((size_t)argc + 1, sizeof *o->scoped);
  if (!o->api_keys.v || !o->revoked_keys.v || !o->expired_keys.v || !o->scoped) {
    fprintf(stderr, "rivya-sim: out of memory\n");
    return -1;
  }
  for (i = 1; i < argc; i++) {
    char name[32];
    const char *arg = argv[i], *val = NULL, *eq = strchr(arg, '=');
    const char *const *nv;
    long long n;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    int takes = 0;
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arg, len);
    name[len] = '\0';
    for (nv = need_value; *nv; nv++)
      if (strcmp(*nv, name) == 0) takes = 1;
    if (takes) {
      if (eq) val = eq + 1;
      else if (i + 1 < argc) val = argv[++i];
      else {
        fprintf(stderr, "rivya-sim: %s needs a value\n", name);
        return -1;
      }
    } else if (eq) {
      fprintf(stderr, "rivya-sim: %s takes no value\n", name);
      return -1;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
      fputs(usage, stdout);
      return 1;
    } else if (strcmp(name, "--quiet") == 0) {
      o->quiet = 1;
    } else if (strcmp(name, "--host") == 0) {
      o->host = val;
    } else if (strcmp(name, "--tls-cert") == 0) {
      o->tls_cert = val;
    } else if (strcmp(name, "--tls-key") == 0) {
      o->tls_key = val;
    } else if (strcmp(name, "--port") == 0 || strcmp(name, "--cdn-port") == 0) {
      if (parse_ll(val, 0, 65535, &n) != 0) {
        fprintf(stderr, "rivya-sim: %s: expected a port 0..65535; got \"%s\"\n", name, val);
        return -1;
      }
      if (name[2] == 'p') o->port = (int)n;
      else o->cdn_port = (int)n;
    } else if (strcmp(name, "--api-key") == 0) {
      o->api_keys.v[o->api_keys.n++] = val;
    } else if (strcmp(name, "--revoked-key") == 0) {
      o->revoked_keys.v[o->revoked_keys.n++] = val;
    } else if (strcmp(name, "--expired-key") == 0) {
      o->expired_keys.v[o->expired_keys.n++] = val;
    } else if (strcmp(name, "--scoped-key") == 0) {
      const char *colon = strchr(val, ':');
      sim_scoped_key *sk = &o->scoped[o->nscoped];
      size_t klen = colon ? (size_t)(colon - val) : strlen(val);
      sk->scopes = SIM_SCOPE_READ;
      if (colon && sim_scope_parse(colon + 1, &sk->scopes) != 0) {
        /* the message names the scopes, never the key */
        fprintf(stderr, "rivya-sim: --scoped-key: unknown scope in \"%s\"; known: models:read, "
                "generations:create, generations:read, files:create, files:read, "
                "credits:read, webhooks:manage, chat:create, chat:read\n", colon + 1);
        return -1;
      }
      if (klen == 0 || !(sk->key = malloc(klen + 1))) {
        fprintf(stderr, "rivya-sim: --scoped-key: expected KEY or KEY:scope,...\n");
        return -1;
      }
      memcpy(sk->key, val, klen);
      sk->key[klen] = '\0';
      o->nscoped++;
    } else if (strcmp(name, "--catalog") == 0) {
      o->catalog_path = val;
    } else if (strcmp(name, "--allow-loopback-webhooks") == 0) {
      o->allow_loopback_webhooks = 1;
    } else if (strcmp(name, "--credits") == 0) {
      if (parse_ll(val, 0, (long long)1 << 52, &o->credits) != 0) {
        fprintf(stderr, "rivya-sim: --credits: expected an integer >= 0; got \"%s\"\n", val);
        return -1;
      }
    } else if (strcmp(name, "--task-polls") == 0) {
      if (parse_ll(val, 0, 1000000000L, &n) != 0) {
        fprintf(stderr, "rivya-sim: --task-polls: expected an integer >= 0; got \"%s\"\n", val);
        return -1;
      }
      o->task_polls = (long)n;
    } else if (strcmp(name, "--task-seconds") == 0 || strcmp(name, "--max-lifetime") == 0) {
      double *dst = name[2] == 't' ? &o->task_seconds : &o->max_lifetime;
      if (parse_seconds(val, dst) != 0) {
        fprintf(stderr, "rivya-sim: %s: expected seconds >= 0; got \"%s\"\n", name, val);
        return -1;
      }
    } else {
      fprintf(stderr, "rivya-sim: unknown option %s (see --help)\n", name);
      return -1;
    }
  }
  if (!o->tls_cert != !o->tls_key) {
    fprintf(stderr, "rivya-sim: %s needs %s as well\n", o->tls_cert ? "--tls-cert" : "--tls-key",
            o->tls_cert ? "--tls-key" : "--tls-cert");
    return -1;
  }
  /* the key is a secret even here: the message names no key */
  if (o->api_keys.n == 0) o->api_keys.v[o->api_keys.n++] = "rvya_sk_test";
  return 0;
}

/*
** read_pem: the whole file `path` (the value of option `flag`) as a new
** NUL-terminated string into *out, checked to hold a PEM block whose label
** ends in `label` ("CERTIFICATE", "PRIVATE KEY"). 0 ok, -1 with a message.
*/
static int read_pem(const char *flag, const char *path, const char *label, char **out) {
  static const long max = 1024 * 1024;
  FILE *f = fopen(path, "rb");
  char *buf = NULL, end[64];
  size_t len = 0;
  long size;
  *out = NULL;
  if (!f) {
    fprintf(stderr, "rivya-sim: %s: cannot read %s: %s\n", flag, path, strerror(errno));
    return -1;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
      size > max) {
    fprintf(stderr, "rivya-sim: %s: %s is not a PEM file of at most %ld bytes\n", flag, path, max);
    fclose(f);
    return -1;
  }
  buf = malloc((size_t)size + 1);
  if (buf) len = fread(buf, 1, (size_t)size, f);
  fclose(f);
  if (!buf || len != (size_t)size) {
    fprintf(stderr, "rivya-sim: %s: cannot read %s\n", flag, path);
    free(buf);
    return -1;
  }
  buf[len] = '\0';
  snprintf(end, sizeof end, "%s-----", label);
  if (!strstr(buf, "-----BEGIN ") || !strstr(buf, end)) {
    fprintf(stderr, "rivya-sim: %s: %s holds no PEM %s\n", flag, path, label);
    free(buf);
    return -1;
  }
  *out = buf;
  return 0;
}

/* free_options: release the key lists of `o` (the keys are argv's) and the PEM buffers */
static void free_options(sim_options *o) {
  size_t i;
  free(o->tls_cert_pem);
  free(o->tls_key_pem);
  free(o->api_keys.v);
  free(o->revoked_keys.v);
  free(o->expired_keys.v);
  for (i = 0; i < o->nscoped; i++) free(o->scoped[i].key);
  free(o->scoped);
  sim_catalog_free(o->catalog);
}

typedef union bind_addr {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} bind_addr;

/*
** make_addr: `host` (IPv4, IPv6 or "localhost") and `port` into `a`;
** *ipv6 tells which. 0 ok, -1 when host is no address.
*/
static int make_addr(const char *host, int port, bind_addr *a, int *ipv6) {
  memset(a, 0, sizeof *a);
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (inet_pton(AF_INET, host, &a->v4.sin_addr) == 1) {
    a->v4.sin_family = AF_INET;
    a->v4.sin_port = htons((uint16_t)port);
    *ipv6 = 0;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a->v6.sin6_addr) == 1) {
    a->v6.sin6_family = AF_INET6;
    a->v6.sin6_port = htons((uint16_t)port);
    *ipv6 = 1;
    return 0;
  }
  return -1;
}

/*
** url_host: the host to put in URLs for listeners bound to `host`: a
** wildcard address becomes loopback, IPv6 gets brackets.
*/
static void url_host(const char *host, int ipv6, char *out, size_t size) {
  if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "localhost") == 0)
    snprintf(out, size, "127.0.0.1");
  else if (ipv6 && strcmp(host, "::") == 0)
    snprintf(out, size, "[::1]");
  else if (ipv6)
    snprintf(out, size, "[%s]", host);
  else
    snprintf(out, size, "%s", host);
}

/* start: one listener on host:port, its actual port into *bound */
static struct MHD_Daemon *start(sim_listener *l, const char *host, int port, int *bound) {
  bind_addr a;
  int ipv6;
  struct MHD_Daemon *d;
  const union MHD_DaemonInfo *info;
  if (make_addr(host, port, &a, &ipv6) != 0) return NULL;
  d = sim_http_start(l, &a.sa, ipv6);
  if (!d) return NULL;
  info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *bound = info ? (int)info->port : port;
  return d;
}

/*
** wait_for_exit: block until SIGTERM / SIGINT in `set`, or until
** `lifetime` seconds have passed (0: no limit). Returns what ended it.
*/
static const char *wait_for_exit(const sigset_t *set, double lifetime) {
  int sig = 0;
  if (lifetime <= 0) {
    while (sigwait(set, &sig) != 0) {
    }
    return sig == SIGINT ? "SIGINT" : "SIGTERM";
  }
  for (;;) {
    static const double step = 3600;
    double left = lifetime;
    struct timespec ts;
    double t0 = sim_mono_now();
    if (left > step) left = step;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    sig = sigtimedwait(set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) return sig == SIGINT ? "SIGINT" : "SIGTERM";
    lifetime -= sim_mono_now() - t0;
    if (lifetime <= 0) return "--max-lifetime";
  }
}

/*
** main: parse `argc` / `argv`, start the CDN then the API listener, print
** the start-up line, wait for a signal or the lifetime, stop and free.
** Exit status: 0 clean stop or --help, 1 cannot listen, 2 bad usage.
*/
int main(int argc, char **argv) {
  sim_options o;
  sim_state *s;
  sim_listener api_l, cdn_l;
  struct MHD_Daemon *api, *cdn;
  sigset_t set;
  struct sigaction ign;
  char host[80];
  bind_addr probe;
  int rc, ipv6 = 0, api_port = 0, cdn_port = 0;
  const char *why, *scheme;

  memset(&o, 0, sizeof o);
  rc = parse_args(argc, argv, &o);
  if (rc != 0) {
    free_options(&o);
    return rc > 0 ? 0 : 2;
  }
  if (make_addr(o.host, 0, &probe, &ipv6) != 0) {
    fprintf(stderr, "rivya-sim: --host: expected an IPv4 or IPv6 address; got \"%s\"\n",
            o.host);
    free_options(&o);
    return 2;
  }
  url_host(o.host, ipv6, host, sizeof host);
  if (o.tls_cert) {
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
      fprintf(stderr, "rivya-sim: --tls-cert: this libmicrohttpd was built without TLS "
              "(GnuTLS), so it cannot serve HTTPS\n");
      free_options(&o);
      return 1;
    }
    if (read_pem("--tls-cert", o.tls_cert, "CERTIFICATE", &o.tls_cert_pem) != 0 ||
        read_pem("--tls-key", o.tls_key, "PRIVATE KEY", &o.tls_key_pem) != 0) {
      free_options(&o);
      return 2;
    }
  }
  scheme = o.tls_cert_pem ? "https" : "http";
  if (o.catalog_path) {
    char err[512];
    if (!(o.catalog = sim_catalog_load(o.catalog_path, err, sizeof err))) {
      fprintf(stderr, "rivya-sim: --catalog: %s\n", err);
      free_options(&o);
      return 2;
    }
  }

  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, NULL);
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  curl_global_init(CURL_GLOBAL_DEFAULT);   /* before any thread: webhook deliveries */
  s = sim_state_new(&o);
  if (!s) {
    fprintf(stderr, "rivya-sim: out of memory\n");
    free_options(&o);
    return 1;
  }
  cdn_l.s = api_l.s = s;
  cdn_l.which = SIM_CDN;
  api_l.which = SIM_API;
  /* the CDN first: task and file URLs need its port */
  cdn = start(&cdn_l, o.host, o.cdn_port, &cdn_port);
  if (!cdn) {
    fprintf(stderr, "rivya-sim: cannot listen on %s port %d (CDN)%s\n", o.host, o.cdn_port,
            o.tls_cert_pem ? ", or the TLS certificate and key are not usable together" : "");
    sim_state_free(s);
    free_options(&o);
    return 1;
  }
  snprintf(s->cdn_base, sizeof s->cdn_base, "%s://%s:%d", scheme, host, cdn_port);
  api = start(&api_l, o.host, o.port, &api_port);
  if (!api) {
    fprintf(stderr, "rivya-sim: cannot listen on %s port %d (API)%s\n", o.host, o.port,
            o.tls_cert_pem ? ", or the TLS certificate and key are not usable together" : "");
    MHD_stop_daemon(cdn);
    sim_state_free(s);
    free_options(&o);
    return 1;
  }
  if (sim_webhooks_start(s) != 0) {
    fprintf(stderr, "rivya-sim: cannot start the webhook worker\n");
    MHD_stop_daemon(api);
    MHD_stop_daemon(cdn);
    sim_state_free(s);
    free_options(&o);
    return 1;
  }
  printf("{\"port\":%d,\"cdn_port\":%d,\"pid\":%ld%s}\n", api_port, cdn_port,
         (long)getpid(), o.tls_cert_pem ? ",\"tls\":true" : "");
  fflush(stdout);
  fprintf(stderr, "rivya-sim: API on %s://%s:%d, CDN on %s://%s:%d\n", scheme, host, api_port,
          scheme, host, cdn_port);

  why = wait_for_exit(&set, o.max_lifetime);
  fprintf(stderr, "rivya-sim: stopping (%s)\n", why);
  /* wake handlers sleeping in delays and stalls, or stopping would wait */
  sim_lock(s);
  s->stopping = 1;
  pthread_cond_broadcast(&s->wake);
  sim_unlock(s);
  sim_webhooks_stop(s);
  MHD_stop_daemon(api);
  MHD_stop_daemon(cdn);
  sim_state_free(s);
  free_options(&o);
  curl_global_cleanup();
  return 0;
}
