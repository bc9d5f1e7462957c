/*
** http.c — HTTP on libcurl: one multi handle per session, driven by
** non-blocking steps. The session owns an epoll descriptor standing for all
** of curl's sockets, so a foreign event loop can wait on one fd (pollfd)
** and a blocking caller sleeps in the kernel (step with a timeout).
**
** No Lua error and no Lua call ever happens inside a libcurl callback: the
** callbacks only copy bytes and counters into C structures; Lua reads them
** between steps.
*/
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "rivya.h"

#define MAX_EVENTS 64
#define DEFAULT_MAX_BODY (8u * 1024u * 1024u)   /* bytes of a response kept in memory */
#define ERROR_BODY_CAP (64u * 1024u)            /* error bodies of a download */
#define MEDIA_HEAD 16u                          /* bytes sniffed of a media download */
#define OUT_BUFFER (1u << 20)                   /* stdio buffer of a download */

typedef struct Session Session;
typedef struct Transfer Transfer;

struct Session {
  CURLM *multi;
  int epfd;
  long long timer_ms;        /* monotonic deadline curl asked for; -1 none */
  char *api_key;             /* never handed back to Lua */
  char *api_origin;          /* "https://rivya.ai": the only place the key goes */
  char *user_agent;
  rv_buf ca_blob;             /* with ca_file: system bundle + ca_file (PEM), else empty */
  int running;
  Transfer *transfers;       /* every transfer not yet freed, to detach on close */
  int closed;
  long long stall_at;        /* earliest moment a transfer may stall; -1 none */
  /* ids of watched transfers done since the last session:finished(), so a
     scheduler wakes exactly their waiters instead of scanning them all */
  lua_Integer next_id;
  lua_Integer *finished;
  size_t nfinished, capfinished;
  int finished_lost;         /* a report was lost (out of memory): rescan */
};

struct Transfer {
  Session *session;          /* NULL once detached */
  Transfer *next, *prev;
  CURL *easy;
  struct curl_slist *headers;
  curl_mime *mime;
  rv_buf head;               /* raw header block of the last response */
  rv_buf body;
  size_t max_body;
  int too_large;
  int added;                 /* in the multi */
  int done;
  CURLcode result;
  long status;
  lua_Integer id;            /* unique within its session */
  int watched;               /* reported by session:finished() once done */
  /* kept when done, as the easy handle is then cleaned up at once: curl's
     buffers go back to the heap now, not at some later Lua GC cycle */
  curl_off_t got_bytes;
  double seconds;
  char errbuf[CURL_ERROR_SIZE];
  /* streaming to a file: written to tmp_path, renamed to out_path when whole */
  char *out_path;
  char *tmp_path;
  FILE *out;
  char *outbuf;              /* stdio buffer of `out`, freed after fclose */
  int out_failed;
  int out_error;             /* errno of a failed write/flush/rename */
  /* a media download: its first bytes must have an image/video/audio signature */
  int media;
  int not_media;
  unsigned char media_head[MEDIA_HEAD];
  size_t media_len;
  /* the stall detector: fail when no byte moved for stall_ms */
  long long stall_ms;        /* 0: off */
  long long last_ms;         /* monotonic time of the last byte in or out */
  /* progress, read by Lua between steps */
  curl_off_t ul_now, ul_total, dl_now, dl_total;
};

/* ---- time ---------------------------------------------------------------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- curl callbacks: bytes and counters only ------------------------------ */

/*
** Socket callback: curl tells which socket wants which events; mirror it into
** the epoll set. `socketp` is non-NULL once the socket is in the set.
*/
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  Session *S = (Session *)userp;
  struct epoll_event ev;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (socketp != NULL) {
      epoll_ctl(S->epfd, EPOLL_CTL_DEL, s, NULL);
      curl_multi_assign(S->multi, s, NULL);
    }
    return 0;
  }
  memset(&ev, 0, sizeof ev);
  ev.data.fd = s;
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (socketp == NULL) {
    if (epoll_ctl(S->epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
      epoll_ctl(S->epfd, EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(S->multi, s, S);
  } else if (epoll_ctl(S->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
    epoll_ctl(S->epfd, EPOLL_CTL_ADD, s, &ev);
  }
  return 0;
}

/* Timer callback: remember when curl wants to be called without socket activity. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  Session *S = (Session *)userp;
  (void)multi;
  S->timer_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  return 0;
}

/* Header callback: keep the header block of the final response only. */
static size_t on_header(char *data, size_t size, size_t n, void *userp) {
  Transfer *T = (Transfer *)userp;
  size_t len = size * n;
  T->last_ms = now_ms();
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) T->head.len = 0;  /* new response */
  if (T->head.len + len > 256u * 1024u) return 0;                  /* absurd headers */
  if (rv_buf_add(&T->head, data, len) != 0) return 0;
  return len;
}

/*
** Write callback: the body goes to memory (capped) or, for a download whose
** answer is 2xx, to the temporary file. Returning less than `len` aborts.
*/
static size_t on_write(char *data, size_t size, size_t n, void *userp) {
  Transfer *T = (Transfer *)userp;
  size_t len = size * n;
  long code = 0;
  T->last_ms = now_ms();
  if (T->out_path != NULL) {
    curl_easy_getinfo(T->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
      if (T->out == NULL) return 0;
      if (T->media && T->media_len < MEDIA_HEAD) {   /* an error page sent as 200 */
        size_t take = MEDIA_HEAD - T->media_len < len ? MEDIA_HEAD - T->media_len : len;
        memcpy(T->media_head + T->media_len, data, take);
        T->media_len += take;
        if (T->media_len == MEDIA_HEAD && rv_sniff_bytes(T->media_head, T->media_len, NULL) == NULL) {
          T->not_media = 1;
          return 0;
        }
      }
      if (fwrite(data, 1, len, T->out) != len) {
        T->out_failed = 1;
        T->out_error = errno;
        return 0;
      }
      return len;
    }
    if (T->body.len + len > ERROR_BODY_CAP) {  /* an error page: keep its start */
      size_t room = ERROR_BODY_CAP - T->body.len;
      if (room > 0) rv_buf_add(&T->body, data, room);
      return len;
    }
  }
  if (T->body.len + len > T->max_body) {
    T->too_large = 1;
    return 0;
  }
  if (rv_buf_add(&T->body, data, len) != 0) {
    T->too_large = 1;
    return 0;
  }
  return len;
}

static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  Transfer *T = (Transfer *)userp;
  if (dlnow != T->dl_now || ulnow != T->ul_now) T->last_ms = now_ms();
  T->dl_total = dltotal;
  T->dl_now = dlnow;
  T->ul_total = ultotal;
  T->ul_now = ulnow;
  return 0;
}

/* ---- transfers ------------------------------------------------------------- */

static void close_out(Transfer *T) {
  if (T->out != NULL) {
    fclose(T->out);
    T->out = NULL;
  }
  free(T->outbuf);
  T->outbuf = NULL;
}

static void remove_temp(Transfer *T) {
  close_out(T);
  if (T->tmp_path != NULL) {
    unlink(T->tmp_path);
    free(T->tmp_path);
    T->tmp_path = NULL;
  }
}

/* Take the easy handle out of the multi (the connection stays in its pool). */
static void detach(Transfer *T) {
  if (T->added && T->session != NULL && T->session->multi != NULL) {
    curl_multi_remove_handle(T->session->multi, T->easy);
    T->session->running--;
  }
  T->added = 0;
}

static void unlink_from_session(Transfer *T) {
  Session *S = T->session;
  if (S == NULL) return;
  if (T->prev != NULL) T->prev->next = T->next;
  else S->transfers = T->next;
  if (T->next != NULL) T->next->prev = T->prev;
  T->next = T->prev = NULL;
  T->session = NULL;
}

/* Free the curl handle and what it points at (headers, MIME); idempotent. */
static void free_curl(Transfer *T) {
  if (T->easy != NULL) {
    curl_easy_cleanup(T->easy);
    T->easy = NULL;
  }
  curl_slist_free_all(T->headers);
  T->headers = NULL;
  if (T->mime != NULL) {
    curl_mime_free(T->mime);
    T->mime = NULL;
  }
}

/* Release everything a transfer holds; idempotent (close, __gc, __close). */
static void transfer_release(Transfer *T) {
  detach(T);
  unlink_from_session(T);
  free_curl(T);
  remove_temp(T);
  free(T->out_path);
  T->out_path = NULL;
  rv_buf_free(&T->head);
  rv_buf_free(&T->body);
}

/*
** A finished download: flush, sync and rename the temporary file into place
** only when the answer is 2xx and curl saw every byte; else remove it.
*/
static void finish_output(Transfer *T) {
  int ok = T->result == CURLE_OK && T->status >= 200 && T->status < 300 &&
           T->out != NULL && !T->out_failed;
  if (ok && T->media && rv_sniff_bytes(T->media_head, T->media_len, NULL) == NULL) {
    T->not_media = 1;   /* shorter than MEDIA_HEAD, and no signature */
    ok = 0;
  }
  if (!ok) {
    remove_temp(T);
    return;
  }
  if (fflush(T->out) != 0 || fsync(fileno(T->out)) != 0) {
    T->out_failed = 1;
    T->out_error = errno;
    remove_temp(T);
    return;
  }
  close_out(T);
  if (rename(T->tmp_path, T->out_path) != 0) {
    T->out_failed = 1;
    T->out_error = errno;
    remove_temp(T);
    return;
  }
  free(T->tmp_path);
  T->tmp_path = NULL;
}

/* Queue a watched transfer's id for session:finished(). */
static void report_done(Transfer *T) {
  Session *S = T->session;
  if (S == NULL || !T->watched) return;
  if (S->nfinished == S->capfinished) {
    size_t cap = S->capfinished ? S->capfinished * 2 : 64;
    lua_Integer *v = (lua_Integer *)realloc(S->finished, cap * sizeof *v);
    if (v == NULL) {
      S->finished_lost = 1;
      return;
    }
    S->finished = v;
    S->capfinished = cap;
  }
  S->finished[S->nfinished++] = T->id;
}

/* Collect finished transfers from the multi handle. */
static void collect(Session *S) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(S->multi, &left)) != NULL) {
    Transfer *T = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&T);
    if (T == NULL) continue;
    T->result = msg->data.result;
    curl_easy_getinfo(T->easy, CURLINFO_RESPONSE_CODE, &T->status);
    detach(T);
    T->done = 1;
    if (T->out_path != NULL) finish_output(T);
    curl_easy_getinfo(T->easy, CURLINFO_SIZE_DOWNLOAD_T, &T->got_bytes);
    curl_easy_getinfo(T->easy, CURLINFO_TOTAL_TIME, &T->seconds);
    free_curl(T);
    report_done(T);
  }
}

/* ---- session: steps ------------------------------------------------------------ */

/*
** The stall detector. curl's low-speed check averages over seconds, so a
** burst followed by silence goes unnoticed for a long time; this one fails
** a transfer that moved no byte (in or out) for its stall time, exactly.
** S->stall_at is a lower bound of the next stall: the list is walked only
** when it has passed.
*/
static void check_stalls(Session *S) {
  long long now, next = -1;
  Transfer *T;
  if (S->stall_at < 0 || (now = now_ms()) < S->stall_at) return;
  for (T = S->transfers; T != NULL; T = T->next) {
    if (!T->added || T->done || T->stall_ms <= 0) continue;
    if (now - T->last_ms >= T->stall_ms) {
      detach(T);
      T->done = 1;
      T->result = CURLE_OPERATION_TIMEDOUT;
      snprintf(T->errbuf, sizeof T->errbuf, "no byte sent or received for %lld ms (stall_timeout)",
               T->stall_ms);
      remove_temp(T);
      report_done(T);
    } else if (next < 0 || T->last_ms + T->stall_ms < next) {
      next = T->last_ms + T->stall_ms;
    }
  }
  S->stall_at = next;
}

/*
** Run curl for what is ready now, waiting at most `wait_ms` (0: never block)
** for socket activity or curl's own timer. Returns the number of transfers
** still running.
*/
static int session_run(Session *S, long long wait_ms) {
  struct epoll_event events[MAX_EVENTS];
  int n, i, still;
  long long now = now_ms();
  if (S->timer_ms >= 0) {
    long long until = S->timer_ms - now;
    if (until < 0) until = 0;
    if (until < wait_ms) wait_ms = until;
  }
  if (S->stall_at >= 0 && S->stall_at - now < wait_ms)
    wait_ms = S->stall_at - now < 0 ? 0 : S->stall_at - now;
  if (wait_ms > 0x7fffffff) wait_ms = 0x7fffffff;
  if (S->running == 0 && S->timer_ms < 0 && wait_ms > 0) {
    /* nothing in flight: a plain sleep, still in the kernel */
    struct timespec ts;
    ts.tv_sec = (time_t)(wait_ms / 1000);
    ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    return 0;
  }
  n = epoll_wait(S->epfd, events, MAX_EVENTS, (int)(wait_ms < 0 ? 0 : wait_ms));
  for (i = 0; i < n; i++) {
    int flags = 0;
    if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
    if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(S->multi, events[i].data.fd, flags, &still);
  }
  if (S->timer_ms >= 0 && now_ms() >= S->timer_ms) {
    S->timer_ms = -1;
    curl_multi_socket_action(S->multi, CURL_SOCKET_TIMEOUT, 0, &still);
  }
  collect(S);
  check_stalls(S);
  return S->running;
}

static Session *check_session(lua_State *L, int i) {
  Session *S = (Session *)luaL_checkudata(L, i, RV_SESSION_MT);
  if (S->closed) luaL_error(L, "attempt to use a closed rivya client");
  return S;
}

/* session:step([seconds]) -> running: non-blocking by default */
static int session_step(lua_State *L) {
  Session *S = check_session(L, 1);
  lua_Number wait = luaL_optnumber(L, 2, 0);
  long long ms = wait > 0 ? (long long)(wait * 1000.0 + 0.5) : 0;
  if (wait > 0 && ms == 0) ms = 1;
  lua_pushinteger(L, session_run(S, ms));
  return 1;
}

/* session:pollfd() -> the epoll fd standing for every curl socket */
static int session_pollfd(lua_State *L) {
  Session *S = check_session(L, 1);
  lua_pushinteger(L, S->epfd);
  return 1;
}

static int session_events(lua_State *L) {
  check_session(L, 1);
  lua_pushliteral(L, "r");
  return 1;
}

/* session:timeout() -> seconds until curl needs a step without I/O, or nil */
static int session_timeout(lua_State *L) {
  Session *S = check_session(L, 1);
  long long at = S->timer_ms;
  if (S->stall_at >= 0 && (at < 0 || S->stall_at < at)) at = S->stall_at;
  if (at < 0) {
    lua_pushnil(L);
  } else {
    long long left = at - now_ms();
    lua_pushnumber(L, left > 0 ? (lua_Number)left / 1000.0 : 0.0);
  }
  return 1;
}

/*
** session:finished() -> ids, closed, lost: the ids of watched transfers done
** since the last call; `closed` when the session was closed (its transfers
** aborted); `lost` when a report could not be queued (check every transfer).
** Works on a closed session, so a scheduler learns of the aborts.
*/
static int session_finished(lua_State *L) {
  Session *S = (Session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  size_t i;
  lua_createtable(L, (int)S->nfinished, 0);
  for (i = 0; i < S->nfinished; i++) {
    lua_pushinteger(L, S->finished[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  S->nfinished = 0;
  lua_pushboolean(L, S->closed);
  lua_pushboolean(L, S->finished_lost);
  S->finished_lost = 0;
  return 3;
}

static int session_running(lua_State *L) {
  Session *S = check_session(L, 1);
  lua_pushinteger(L, S->running);
  return 1;
}

/* Wipe and free a secret string. */
static void free_secret(char *s) {
  if (s != NULL) {
    volatile char *p = s;
    while (*p) *p++ = 0;
    free(s);
  }
}

/* close, __gc and __close: one idempotent function */
static int session_close(lua_State *L) {
  Session *S = (Session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  if (S->closed) return 0;
  S->closed = 1;
  while (S->transfers != NULL) {   /* abort what is in flight */
    Transfer *T = S->transfers;
    detach(T);
    if (!T->done) {
      T->done = 1;
      T->result = CURLE_ABORTED_BY_CALLBACK;
      remove_temp(T);
      report_done(T);
    }
    unlink_from_session(T);
  }
  if (S->multi != NULL) curl_multi_cleanup(S->multi);
  S->multi = NULL;
  if (S->epfd >= 0) close(S->epfd);
  S->epfd = -1;
  free_secret(S->api_key);
  S->api_key = NULL;
  free(S->api_origin);
  free(S->user_agent);
  rv_buf_free(&S->ca_blob);
  S->api_origin = S->user_agent = NULL;
  return 0;
}

/* __gc: close, then free what finished() still needed after a close */
static int session_gc(lua_State *L) {
  Session *S = (Session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  session_close(L);
  free(S->finished);
  S->finished = NULL;
  S->nfinished = S->capfinished = 0;
  return 0;
}

static int session_tostring(lua_State *L) {
  Session *S = (Session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  lua_pushfstring(L, "rivya.Session (%s%s)", S->api_origin ? S->api_origin : "",
                  S->closed ? ", closed" : "");
  return 1;
}

/* ---- starting a transfer ------------------------------------------------------- */

static char *dup_field(lua_State *L, int t, const char *name) {
  char *copy = NULL;
  if (lua_getfield(L, t, name) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    copy = (char *)malloc(len + 1);
    if (copy == NULL) luaL_error(L, "out of memory");
    memcpy(copy, s, len + 1);
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "rivya: option '%s' must be a string", name);
  }
  lua_pop(L, 1);
  return copy;
}

static lua_Number opt_number(lua_State *L, int t, const char *name, lua_Number def) {
  lua_Number v = def;
  int type = lua_getfield(L, t, name);
  if (type == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (type != LUA_TNIL) luaL_error(L, "rivya: option '%s' must be a number", name);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *name) {
  int v;
  lua_getfield(L, t, name);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static long seconds_to_ms(lua_Number s) {
  if (!(s > 0)) return 0;
  if (s > 2000000.0) return 2000000000L;
  return (long)(s * 1000.0 + 0.5);
}

/*
** Add the multipart parts in the array at index `t`: each part is
** {name=, data=} or {name=, path=, filename=, type=}; files are streamed
** from disk by libcurl, never loaded here.
*/
static const char *build_mime(lua_State *L, Transfer *T, int t) {
  lua_Integer i, n = luaL_len(L, t);
  T->mime = curl_mime_init(T->easy);
  if (T->mime == NULL) return "out of memory";
  for (i = 1; i <= n; i++) {
    curl_mimepart *part = curl_mime_addpart(T->mime);
    size_t len;
    const char *s;
    if (part == NULL) return "out of memory";
    if (lua_rawgeti(L, t, i) != LUA_TTABLE) return "multipart part must be a table";
    if (lua_getfield(L, -1, "name") != LUA_TSTRING) return "multipart part needs a name";
    curl_mime_name(part, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "path") == LUA_TSTRING) {
      if (curl_mime_filedata(part, lua_tostring(L, -1)) != CURLE_OK)
        return "cannot read the file to upload";
    } else if (lua_getfield(L, -2, "data") == LUA_TSTRING) {
      s = lua_tolstring(L, -1, &len);
      curl_mime_data(part, s, len);
      lua_pop(L, 1);
    } else {
      return "multipart part needs data or path";
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "filename") == LUA_TSTRING)
      curl_mime_filename(part, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "type") == LUA_TSTRING)
      curl_mime_type(part, lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pop(L, 1);
  }
  curl_easy_setopt(T->easy, CURLOPT_MIMEPOST, T->mime);
  return NULL;
}

/* Create "<dir>/.<name>.rivya-XXXXXX" beside `path` and open it. */
static int open_temp(Transfer *T) {
  const char *slash = strrchr(T->out_path, '/');
  size_t dirlen = slash ? (size_t)(slash - T->out_path) + 1 : 0;
  const char *base = T->out_path + dirlen;
  size_t size = dirlen + strlen(base) + 16;
  int fd;
  T->tmp_path = (char *)malloc(size);
  if (T->tmp_path == NULL) return ENOMEM;
  memcpy(T->tmp_path, T->out_path, dirlen);
  snprintf(T->tmp_path + dirlen, size - dirlen, ".%s.rivya-XXXXXX", base);
  fd = mkstemp(T->tmp_path);
  if (fd < 0) {
    int e = errno;
    free(T->tmp_path);
    T->tmp_path = NULL;
    return e;
  }
  fchmod(fd, 0644);
  T->out = fdopen(fd, "wb");
  if (T->out == NULL) {
    int e = errno;
    close(fd);
    unlink(T->tmp_path);
    free(T->tmp_path);
    T->tmp_path = NULL;
    return e;
  }
  /* 1 MiB writes, not 4 KiB ones (glibc ignores the size without a buffer) */
  T->outbuf = (char *)malloc(OUT_BUFFER);
  if (T->outbuf != NULL) setvbuf(T->out, T->outbuf, _IOFBF, OUT_BUFFER);
  return 0;
}

/*
** session:start(spec) -> transfer | nil, err
** spec: method, url, headers (array of "Name: value"), body (string),
** multipart (array of parts), auth (bool: send the key — only to the API
** origin), timeout, connect_timeout, stall (seconds without a byte),
** max_body (bytes), follow (bool: follow redirects), output (path),
** media (bool: the output must start with an image/video/audio signature).
*/
static int session_start(lua_State *L) {
  Session *S = check_session(L, 1);
  Transfer *T;
  const char *method, *url, *err = NULL;
  size_t urllen;
  int auth, tidx;
  lua_Number maxb;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "url");
  url = luaL_checklstring(L, -1, &urllen);
  lua_getfield(L, 2, "method");
  method = luaL_optstring(L, -1, "GET");
  auth = opt_bool(L, 2, "auth");

  T = (Transfer *)lua_newuserdatauv(L, sizeof *T, 1);
  memset(T, 0, sizeof *T);
  rv_buf_init(&T->head);
  rv_buf_init(&T->body);
  luaL_setmetatable(L, RV_TRANSFER_MT);
  tidx = lua_gettop(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);   /* the transfer keeps its session alive */
  T->session = S;
  T->id = ++S->next_id;
  T->next = S->transfers;
  if (S->transfers != NULL) S->transfers->prev = T;
  S->transfers = T;

  T->easy = curl_easy_init();
  if (T->easy == NULL) return luaL_error(L, "rivya: out of memory");
  maxb = opt_number(L, 2, "max_body", (lua_Number)DEFAULT_MAX_BODY);
  T->max_body = maxb > 0 ? (size_t)maxb : DEFAULT_MAX_BODY;
  T->out_path = dup_field(L, 2, "output");

  curl_easy_setopt(T->easy, CURLOPT_URL, url);
  curl_easy_setopt(T->easy, CURLOPT_PRIVATE, (char *)T);
  curl_easy_setopt(T->easy, CURLOPT_ERRORBUFFER, T->errbuf);
  curl_easy_setopt(T->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(T->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(T->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(T->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(T->easy, CURLOPT_HEADERDATA, T);
  curl_easy_setopt(T->easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(T->easy, CURLOPT_WRITEDATA, T);
  curl_easy_setopt(T->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(T->easy, CURLOPT_XFERINFODATA, T);
  curl_easy_setopt(T->easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(T->easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(T->easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(T->easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(T->easy, CURLOPT_SSL_VERIFYHOST, 2L);
  if (S->user_agent) curl_easy_setopt(T->easy, CURLOPT_USERAGENT, S->user_agent);
  if (S->ca_blob.len > 0) {   /* read once per session; it outlives the transfers in the multi */
    struct curl_blob blob;
    blob.data = S->ca_blob.data;
    blob.len = S->ca_blob.len;
    blob.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(T->easy, CURLOPT_CAINFO_BLOB, &blob);
  }
  curl_easy_setopt(T->easy, CURLOPT_TIMEOUT_MS, seconds_to_ms(opt_number(L, 2, "timeout", 0)));
  curl_easy_setopt(T->easy, CURLOPT_CONNECTTIMEOUT_MS,
                   seconds_to_ms(opt_number(L, 2, "connect_timeout", 10)));
  T->stall_ms = seconds_to_ms(opt_number(L, 2, "stall", 0));
  T->last_ms = now_ms();
  T->media = opt_bool(L, 2, "media");
  if (opt_bool(L, 2, "follow")) {
    /* only transfers without the key may follow: the key never leaves the API */
    if (auth) return luaL_error(L, "rivya: an authenticated request cannot follow redirects");
    curl_easy_setopt(T->easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(T->easy, CURLOPT_MAXREDIRS, 5L);
  }
  if (auth && S->api_key != NULL) {
    size_t olen = S->api_origin ? strlen(S->api_origin) : 0;
    if (olen == 0 || urllen <= olen || strncmp(url, S->api_origin, olen) != 0 ||
        url[olen] != '/')
      return luaL_error(L, "rivya: refusing to send the API key outside the API origin");
    curl_easy_setopt(T->easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
    curl_easy_setopt(T->easy, CURLOPT_XOAUTH2_BEARER, S->api_key);
  }

  if (lua_getfield(L, 2, "headers") == LUA_TTABLE) {
    lua_Integer i, n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
      struct curl_slist *next;
      lua_rawgeti(L, -1, i);
      next = curl_slist_append(T->headers, luaL_checkstring(L, -1));
      if (next == NULL) return luaL_error(L, "rivya: out of memory");
      T->headers = next;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  {   /* no "Expect: 100-continue" round trip */
    struct curl_slist *next = curl_slist_append(T->headers, "Expect:");
    if (next == NULL) return luaL_error(L, "rivya: out of memory");
    T->headers = next;
  }
  curl_easy_setopt(T->easy, CURLOPT_HTTPHEADER, T->headers);

  if (lua_getfield(L, 2, "multipart") == LUA_TTABLE) {
    err = build_mime(L, T, lua_gettop(L));
  }
  lua_pop(L, 1);
  if (err != NULL) {
    transfer_release(T);
    return rv_error_return(L, "validation_failed", "file", "%s", err);
  }
  if (lua_getfield(L, 2, "body") == LUA_TSTRING) {
    size_t blen;
    const char *b = lua_tolstring(L, -1, &blen);
    curl_easy_setopt(T->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(T->easy, CURLOPT_COPYPOSTFIELDS, b);
  }
  lua_pop(L, 1);
  if (strcmp(method, "GET") == 0) {
    if (T->mime == NULL) curl_easy_setopt(T->easy, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "POST") != 0) {
    curl_easy_setopt(T->easy, CURLOPT_CUSTOMREQUEST, method);
  }
  if (T->out_path != NULL) {
    int e;
    /* bigger reads for files: fewer callbacks and writes per megabyte */
    curl_easy_setopt(T->easy, CURLOPT_BUFFERSIZE, 512L * 1024L);
    e = open_temp(T);
    if (e != 0) {
      lua_pushstring(L, T->out_path);
      transfer_release(T);
      return rv_error_return(L, "io", "path", "cannot create a file beside %s: %s",
                             lua_tostring(L, -1), strerror(e));
    }
  }
  if (curl_multi_add_handle(S->multi, T->easy) != CURLM_OK) {
    transfer_release(T);
    return luaL_error(L, "rivya: cannot start the transfer");
  }
  T->added = 1;
  S->running++;
  if (T->stall_ms > 0 && (S->stall_at < 0 || T->last_ms + T->stall_ms < S->stall_at))
    S->stall_at = T->last_ms + T->stall_ms;
  lua_pushvalue(L, tidx);
  return 1;
}

/* ---- transfer methods ------------------------------------------------------------ */

static Transfer *check_transfer(lua_State *L, int i) {
  return (Transfer *)luaL_checkudata(L, i, RV_TRANSFER_MT);
}

static int transfer_done(lua_State *L) {
  lua_pushboolean(L, check_transfer(L, 1)->done);
  return 1;
}

/* Parse the header block into a table of lower-case names. */
static void push_headers(lua_State *L, const rv_buf *head) {
  const char *p = head->data, *end;
  lua_newtable(L);
  if (p == NULL) return;      /* no header block: NULL + 0 would be undefined */
  end = p + head->len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon != NULL && colon > p) {
      const char *v = colon + 1, *ve = line_end;
      luaL_Buffer b;
      const char *k;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      luaL_buffinit(L, &b);
      for (k = p; k < colon; k++) {
        char c = *k;
        luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
      }
      luaL_pushresult(&b);
      lua_pushlstring(L, v, (size_t)(ve - v));
      lua_rawset(L, -3);
    }
    p = line_end + 1;
  }
}

/* A transport failure's kind: timeout, too_large, io, not_media, tls, aborted or network. */
static const char *failure_kind(const Transfer *T) {
  if (T->too_large) return "too_large";
  if (T->out_failed) return "io";
  if (T->not_media) return "not_media";
  switch (T->result) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_ABORTED_BY_CALLBACK: return "aborted";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER: return "tls";
    default: return "network";
  }
}

/*
** transfer:result() -> status, headers, body, info  when an HTTP answer came
**                   -> nil, kind, message              on a transport failure
** body is nil for a download written to its file.
*/
static int transfer_result(lua_State *L) {
  Transfer *T = check_transfer(L, 1);
  if (!T->done) return luaL_error(L, "rivya: transfer still running");
  if (T->result != CURLE_OK || T->too_large || T->out_failed || T->not_media) {
    const char *kind = failure_kind(T);
    lua_pushnil(L);
    lua_pushstring(L, kind);
    if (T->too_large)
      lua_pushfstring(L, "response body larger than %I bytes", (lua_Integer)T->max_body);
    else if (T->out_failed)
      lua_pushfstring(L, "cannot write the file: %s", strerror(T->out_error));
    else if (T->not_media)
      lua_pushliteral(L, "the answer is not an image, video or audio file (no known signature)");
    else
      lua_pushfstring(L, "%s%s%s", curl_easy_strerror(T->result),
                      T->errbuf[0] ? ": " : "", T->errbuf);
    lua_pushinteger(L, T->status);
    return 4;
  }
  lua_pushinteger(L, T->status);
  push_headers(L, &T->head);
  if (T->out_path != NULL && T->status >= 200 && T->status < 300) lua_pushnil(L);
  else lua_pushlstring(L, T->body.data ? T->body.data : "", T->body.len);
  lua_createtable(L, 0, 2);
  {
    lua_pushinteger(L, (lua_Integer)T->got_bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushnumber(L, T->seconds);
    lua_setfield(L, -2, "seconds");
  }
  return 4;
}

/* transfer:progress() -> sent, send_total, received, receive_total */
static int transfer_progress(lua_State *L) {
  Transfer *T = check_transfer(L, 1);
  lua_pushinteger(L, (lua_Integer)T->ul_now);
  lua_pushinteger(L, (lua_Integer)T->ul_total);
  lua_pushinteger(L, (lua_Integer)T->dl_now);
  lua_pushinteger(L, (lua_Integer)T->dl_total);
  return 4;
}

/* transfer:cancel(): abort if running; a partial download leaves no file */
static int transfer_cancel(lua_State *L) {
  Transfer *T = check_transfer(L, 1);
  if (!T->done) {
    detach(T);
    T->done = 1;
    T->result = CURLE_ABORTED_BY_CALLBACK;
    remove_temp(T);
    report_done(T);
  }
  return 0;
}

/*
** transfer:watch() -> id: have session:finished() report this transfer when
** it is done (a scheduler maps ids to its waiting coroutines).
*/
static int transfer_watch(lua_State *L) {
  Transfer *T = check_transfer(L, 1);
  T->watched = 1;
  lua_pushinteger(L, T->id);
  return 1;
}

static int transfer_gc(lua_State *L) {
  transfer_release(check_transfer(L, 1));
  return 0;
}

/* ---- clock, sleep and poll for the Lua scheduler ---------------------------------- */

/* core.now() -> seconds on a monotonic clock (for deadlines) */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.sleep(seconds): sleep in the kernel */
static int core_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  if (s > 0) {
    if (s > 1e6) s = 1e6;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
  return 0;
}

/*
** core.poll(fds, seconds) -> number of ready fds: wait until one of the
** descriptors in the array is readable or the time has passed.
*/
static int core_poll(lua_State *L) {
  struct pollfd pfds[64];
  lua_Integer i, n;
  lua_Number s = luaL_optnumber(L, 2, 0);
  int ms = s > 0 ? (s > 2000000.0 ? 2000000000 : (int)(s * 1000.0 + 0.5)) : 0;
  int r;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  luaL_argcheck(L, n <= 64, 1, "at most 64 descriptors");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    pfds[i].fd = (int)luaL_checkinteger(L, -1);
    pfds[i].events = POLLIN;
    pfds[i].revents = 0;
    lua_pop(L, 1);
  }
  r = poll(pfds, (nfds_t)n, ms);
  lua_pushinteger(L, r < 0 ? 0 : r);
  return 1;
}

/* core.random_hex(nbytes) -> 2*nbytes hex digits from /dev/urandom */
static int core_random_hex(lua_State *L) {
  unsigned char raw[64];
  char hex[129];
  lua_Integer n = luaL_optinteger(L, 1, 16);
  size_t got = 0, i;
  int fd;
  luaL_argcheck(L, n > 0 && n <= 64, 1, "1 to 64 bytes");
  fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return luaL_error(L, "rivya: cannot open /dev/urandom: %s", strerror(errno));
  while (got < (size_t)n) {
    ssize_t r = read(fd, raw + got, (size_t)n - got);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      close(fd);
      return luaL_error(L, "rivya: cannot read /dev/urandom");
    }
    got += (size_t)r;
  }
  close(fd);
  for (i = 0; i < got; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  lua_pushlstring(L, hex, 2 * got);
  return 1;
}

/* ---- constructor -------------------------------------------------------------------- */

/* Append the regular file at `path` to `b`: 0, or an errno (EINVAL: not a regular file). */
static int append_file(rv_buf *b, const char *path) {
  char chunk[16384];
  struct stat st;
  int e = 0, fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);   /* a FIFO cannot block */
  if (fd < 0) return errno;
  if (fstat(fd, &st) != 0) e = errno;
  else if (!S_ISREG(st.st_mode)) e = EINVAL;
  while (e == 0) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) e = errno;
    if (r <= 0) break;
    if (rv_buf_add(b, chunk, (size_t)r) != 0) e = ENOMEM;
  }
  close(fd);
  return e;
}

/*
** The trust anchors of a session, read once here, not per transfer. With
** ca_file, every transfer gets the system bundle (libcurl's default CA file,
** or system_ca) followed by ca_file as CURLOPT_CAINFO_BLOB: ca_file is an
** extra anchor, not a replacement. Without it curl's defaults stand. Raises
** when ca_file cannot be read or holds no PEM certificate.
*/
static void session_trust(lua_State *L, Session *S) {
  const char *ca_file, *system_ca;
  size_t start;
  int e;
  lua_getfield(L, 1, "ca_file");
  lua_getfield(L, 1, "system_ca");
  ca_file = lua_tostring(L, -2);
  system_ca = lua_tostring(L, -1);
  if (ca_file == NULL) {
    lua_pop(L, 2);
    return;
  }
  if (system_ca == NULL) {
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    system_ca = v->cainfo ? v->cainfo : "/etc/ssl/certs/ca-certificates.crt";
  }
  if (append_file(&S->ca_blob, system_ca) != 0 || rv_buf_add(&S->ca_blob, "\n", 1) != 0) {
    S->ca_blob.len = 0;   /* no system bundle here: ca_file alone */
    if (S->ca_blob.data != NULL) S->ca_blob.data[0] = '\0';
  }
  start = S->ca_blob.len;
  if ((e = append_file(&S->ca_blob, ca_file)) != 0) {
    rv_buf_free(&S->ca_blob);
    luaL_error(L, "rivya: ca_file: cannot read %s: %s", ca_file,
               e == EINVAL ? "not a regular file" : strerror(e));
  }
  if (S->ca_blob.data == NULL ||
      strstr(S->ca_blob.data + start, "-----BEGIN CERTIFICATE-----") == NULL) {
    rv_buf_free(&S->ca_blob);
    luaL_error(L, "rivya: ca_file: %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
               ca_file);
  }
  lua_pop(L, 2);
}

/*
** core.session{api_key=, api_origin=, user_agent=, ca_file=, max_connections=}
** (and system_ca=, for tests: a file that stands for the system CA bundle)
** The key is copied into C memory and never returned to Lua.
*/
static int session_new(lua_State *L) {
  Session *S;
  lua_Number maxconn;
  luaL_checktype(L, 1, LUA_TTABLE);
  S = (Session *)lua_newuserdatauv(L, sizeof *S, 0);
  memset(S, 0, sizeof *S);
  S->epfd = -1;
  S->timer_ms = -1;
  S->stall_at = -1;
  S->closed = 1;   /* until fully built, __gc has nothing to free */
  luaL_setmetatable(L, RV_SESSION_MT);
  S->api_key = dup_field(L, 1, "api_key");
  S->api_origin = dup_field(L, 1, "api_origin");
  S->user_agent = dup_field(L, 1, "user_agent");
  S->closed = 0;
  session_trust(L, S);
  S->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (S->epfd < 0) return luaL_error(L, "rivya: epoll_create1: %s", strerror(errno));
  S->multi = curl_multi_init();
  if (S->multi == NULL) return luaL_error(L, "rivya: curl_multi_init failed");
  curl_multi_setopt(S->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(S->multi, CURLMOPT_SOCKETDATA, S);
  curl_multi_setopt(S->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(S->multi, CURLMOPT_TIMERDATA, S);
  curl_multi_setopt(S->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  maxconn = opt_number(L, 1, "max_connections", 16);
  curl_multi_setopt(S->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)(maxconn > 0 ? maxconn : 16));
  curl_multi_setopt(S->multi, CURLMOPT_MAXCONNECTS, (long)(maxconn > 0 ? maxconn : 16) * 2);
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"start", session_start},
  {"step", session_step},
  {"pollfd", session_pollfd},
  {"events", session_events},
  {"timeout", session_timeout},
  {"running", session_running},
  {"finished", session_finished},
  {"close", session_close},
  {NULL, NULL}
};

static const luaL_Reg transfer_methods[] = {
  {"done", transfer_done},
  {"result", transfer_result},
  {"progress", transfer_progress},
  {"cancel", transfer_cancel},
  {"watch", transfer_watch},
  {NULL, NULL}
};

/* the one process-global step, done once even with many lua_States in threads */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result = CURLE_OK;

static void global_init(void) {
  global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int rv_http_open(lua_State *L) {
  pthread_once(&global_once, global_init);
  if (global_result != CURLE_OK) return luaL_error(L, "rivya: curl_global_init failed");
  if (luaL_newmetatable(L, RV_SESSION_MT)) {
    luaL_newlib(L, session_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, session_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, session_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, session_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, RV_TRANSFER_MT)) {
    luaL_newlib(L, transfer_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, transfer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, transfer_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, session_new);
  lua_setfield(L, -2, "session");
  lua_pushcfunction(L, core_now);
  lua_setfield(L, -2, "now");
  lua_pushcfunction(L, core_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, core_poll);
  lua_setfield(L, -2, "poll");
  lua_pushcfunction(L, core_random_hex);
  lua_setfield(L, -2, "random_hex");
  return 0;
}
