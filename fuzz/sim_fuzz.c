/*
** sim_fuzz.c — libFuzzer target for rivya-sim's request parsing: the whole
** HTTP path of the API listener (gate, JSON bodies, the multipart upload
** through MHD's post processor, the sniffer, the MP4 and WebM duration
** readers), plus fast direct modes for the pure parsers.
**
** The simulator runs in this process exactly as rivya-sim builds it
** (sim_state_new, sim_http_start on 127.0.0.1, port 0: every sim file but
** main.c is linked unchanged); each input is written to a fresh TCP
** connection and the answer read to the end. The state is cleared after
** each input, so inputs do not depend on each other.
**
** Input, by its first bytes:
**   "J" + JSON           the body of POST /api/v1/generations, straight
**                        into sim_validate_generation_locked
**   "M" + bytes          the start of an uploaded file: sim_sniff,
**                        sim_mp4_duration, sim_webm_duration
**   "C" + HTTP request   sent to the CDN listener
**   anything else        raw bytes sent to the API listener
** Inputs that reach the control API (/__sim/...) are skipped: it injects
** delays and faults by design, which would only measure sleeping.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "../sim/sim.h"
#include "fuzz.h"

#define KEY "rvya_sk_test_0123456789abcdef"

/* newer parsers may not be there in every version of upload.c */
double sim_webm_duration(const unsigned char *p, size_t n) __attribute__((weak));

static sim_options opt;
static sim_state *state;
static sim_listener api_l, cdn_l;
static int api_port, cdn_port, verbose;
static const char *keys[] = {KEY};
static char scoped_key[] = "rvya_sk_scoped_0000";
static sim_scoped_key scoped[] = {{scoped_key, SIM_SCOPE_READ}};
static const char *revoked[] = {"rvya_sk_revoked_0000"};
static const char *expired[] = {"rvya_sk_expired_0000"};

static int start(sim_listener *l) {
  struct sockaddr_in a;
  struct MHD_Daemon *d;
  const union MHD_DaemonInfo *info;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  d = sim_http_start(l, (const struct sockaddr *)&a, 0);
  if (d == NULL) abort();
  info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  if (info == NULL) abort();
  return (int)info->port;
}

static void setup(void) {
  signal(SIGPIPE, SIG_IGN);
  verbose = getenv("SIM_FUZZ_VERBOSE") != NULL;
  opt.host = "127.0.0.1";
  opt.api_keys.v = keys;
  opt.api_keys.n = 1;
  opt.scoped = scoped;
  opt.nscoped = 1;
  opt.revoked_keys.v = revoked;
  opt.revoked_keys.n = 1;
  opt.expired_keys.v = expired;
  opt.expired_keys.n = 1;
  opt.credits = 1000;
  opt.task_seconds = 0;
  opt.quiet = 1;
  state = sim_state_new(&opt);
  if (state == NULL) abort();
  api_l.s = cdn_l.s = state;
  api_l.which = SIM_API;
  cdn_l.which = SIM_CDN;
  cdn_port = start(&cdn_l);
  snprintf(state->cdn_base, sizeof state->cdn_base, "http://127.0.0.1:%d", cdn_port);
  api_port = start(&api_l);
}

/* does the input, percent-decoded, mention the control API? */
static int mentions_control(const uint8_t *p, size_t n) {
  static const char needle[] = "__sim";
  size_t i, k = 0;
  for (i = 0; i < n; i++) {
    unsigned c = p[i];
    if (c == '%' && i + 2 < n) {
      char hex[3] = {(char)p[i + 1], (char)p[i + 2], 0};
      char *end;
      unsigned long v = strtoul(hex, &end, 16);
      if (end == hex + 2) {
        c = (unsigned)v;
        i += 2;
      }
    }
    k = (c == (unsigned char)needle[k]) ? k + 1 : (c == '_' ? 1 : 0);
    if (k == sizeof needle - 1) return 1;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
** Wait until `fd` has something to read, at most `seconds`; 0 when it has.
** libFuzzer's SIGALRM (its -timeout watchdog) interrupts poll and connect:
** EINTR is not a timeout.
*/
static int wait_readable(int fd, double seconds) {
  double deadline = now_s() + seconds;
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    double left = deadline - now_s();
    int r;
    if (left <= 0) return -1;
    r = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/*
** exchange: send the `n` bytes at `p` to the listener on `port` as one
** connection's bytes, half-close, and read the answer to its end.
*/
static void exchange(int port, const uint8_t *p, size_t n) {
  struct sockaddr_in a;
  char buf[65536];
  size_t off = 0;
  sigset_t alarm, old;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;
  if (fd < 0) abort();
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sigemptyset(&alarm);                 /* a connect cut by EINTR goes on alone */
  sigaddset(&alarm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alarm, &old);
  rc = connect(fd, (struct sockaddr *)&a, sizeof a);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  FZ_CHECK(rc == 0, "connect: %s", strerror(errno));
  while (off < n) {
    ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;          /* the server closed early: read what it said */
    off += (size_t)w;
  }
  shutdown(fd, SHUT_WR);
  for (;;) {
    ssize_t r;
    /* 10 s without a byte is a hang: abort, so libFuzzer keeps the input */
    FZ_CHECK(wait_readable(fd, 10) == 0, "the simulator did not answer or close in 10 s");
    r = recv(fd, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (verbose) fwrite(buf, 1, (size_t)r, stderr);   /* SIM_FUZZ_VERBOSE=1: show answers */
  }
  close(fd);
}

static void json_mode(const uint8_t *p, size_t n) {
  json_error_t jerr;
  json_t *body = json_loadb((const char *)p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
  sim_gen gen;
  sim_verr verr;
  if (body == NULL) return;
  memset(&gen, 0, sizeof gen);
  sim_lock(state);
  if (sim_validate_generation_locked(state, body, &gen, &verr) == 0) {
    json_decref(gen.params);
    json_decref(gen.warnings);
  } else {
    FZ_CHECK(memchr(verr.field, 0, sizeof verr.field) && memchr(verr.msg, 0, sizeof verr.msg),
             "the error is not NUL-terminated");
  }
  sim_unlock(state);
  json_decref(body);
}

static void media_mode(const uint8_t *p, size_t n) {
  const char *kind = NULL, *mime = sim_sniff(p, n, &kind);
  double d;
  FZ_CHECK((mime == NULL) == (kind == NULL), "sniff: a MIME type without a kind");
  d = sim_mp4_duration(p, n);
  FZ_CHECK(d == -1 || (d >= 0 && d <= 1e300), "mp4 duration %g", d);
  if (sim_webm_duration != NULL) {
    d = sim_webm_duration(p, n);
    FZ_CHECK(d == -1 || (d >= 0 && d <= 1e300), "webm duration %g", d);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (state == NULL) setup();
  if (size > 0 && data[0] == 'J') {
    json_mode(data + 1, size - 1);
    return 0;
  }
  if (size > 0 && data[0] == 'M') {
    media_mode(data + 1, size - 1);
    return 0;
  }
  if (mentions_control(data, size)) return 0;
  if (size > 0 && data[0] == 'C') exchange(cdn_port, data + 1, size - 1);
  else exchange(api_port, data, size);
  sim_lock(state);
  sim_state_clear_locked(state);
  sim_unlock(state);
  return 0;
}
