/*
** session.c — HTTP on libcurl: one multi handle per session, driven by
** non-blocking steps. The session owns an epoll descriptor standing for all
** of curl's sockets, so a foreign event loop can wait on one fd (pollfd)
** and a blocking caller sleeps in the kernel (step with a timeout).
*/
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

/* ---- options of session{} and session:start{} ------------------------------ */

/* A copy of the string field `name` of the table at `t` (NULL when absent); raises. */
char *rv_opt_dup(lua_State *L, int t, const char *name) {
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

lua_Number rv_opt_number(lua_State *L, int t, const char *name, lua_Number def) {
  lua_Number v = def;
  int type = lua_getfield(L, t, name);
  if (type == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (type != LUA_TNIL) luaL_error(L, "rivya: option '%s' must be a number", name);
  lua_pop(L, 1);
  return v;
}

int rv_opt_bool(lua_State *L, int t, const char *name) {
  int v;
  lua_getfield(L, t, name);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- curl's multi callbacks ------------------------------------------------- */

/*
** Socket callback: curl tells which socket wants which events; mirror it into
** the epoll set. `socketp` is non-NULL once the socket is in the set.
*/
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  rv_session *S = (rv_session *)userp;
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
  rv_session *S = (rv_session *)userp;
  (void)multi;
  S->timer_ms = timeout_ms < 0 ? -1 : rv_now_ms() + timeout_ms;
  return 0;
}

/* ---- steps ------------------------------------------------------------------- */

/* Queue a watched transfer's id for session:finished(). */
void rv_session_report(rv_transfer *T) {
  rv_session *S = T->session;
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
static void collect(rv_session *S) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(S->multi, &left)) != NULL) {
    rv_transfer *T = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&T);
    if (T == NULL) continue;
    T->result = msg->data.result;
    curl_easy_getinfo(T->easy, CURLINFO_RESPONSE_CODE, &T->status);
    if (!S->multiplexed) {
      long version = 0;
      curl_easy_getinfo(T->easy, CURLINFO_HTTP_VERSION, &version);
      if (version >= CURL_HTTP_VERSION_2_0) S->multiplexed = 1;
    }
    rv_transfer_detach(T);
    T->done = 1;
    if (T->out_path != NULL) rv_download_finish(T);
    curl_easy_getinfo(T->easy, CURLINFO_SIZE_DOWNLOAD_T, &T->got_bytes);
    curl_easy_getinfo(T->easy, CURLINFO_TOTAL_TIME, &T->seconds);
    rv_transfer_free_curl(T);
    rv_session_report(T);
  }
}

/*
** The stall detector. curl's low-speed check averages over seconds, so a
** burst followed by silence goes unnoticed for a long time; this one fails
** a transfer that moved no byte (in or out) for its stall time, exactly.
** A drip (a byte now and then) defeats that alone, so a transfer with a
** minimum rate also fails when a window of window_len ms moved fewer than
** rate_min bytes a second. S->stall_at is a lower bound of the next check:
** the list is walked only when it has passed.
*/
static void check_stalls(rv_session *S) {
  long long now, next = -1, at;
  rv_transfer *T;
  if (S->stall_at < 0 || (now = rv_now_ms()) < S->stall_at) return;
  for (T = S->transfers; T != NULL; T = T->next) {
    if (!T->added || T->done) continue;
    if (T->stall_ms > 0 && now - T->last_ms >= T->stall_ms) {
      snprintf(T->errbuf, sizeof T->errbuf, "no byte sent or received for %lld ms (stall_timeout)",
               T->stall_ms);
      rv_transfer_abort(T, CURLE_OPERATION_TIMEDOUT);
      continue;
    }
    if (T->rate_min > 0 && T->window_start > 0 && now - T->window_start >= T->window_len) {
      long long want = T->rate_min * T->window_len / 1000;
      if (T->moved - T->window_moved < want) {
        snprintf(T->errbuf, sizeof T->errbuf, "%lld bytes in %lld ms, under the minimum rate of "
                 "%lld bytes a second", (long long)(T->moved - T->window_moved),
                 now - T->window_start, T->rate_min);
        rv_transfer_abort(T, CURLE_OPERATION_TIMEDOUT);
        continue;
      }
      T->window_start = now;
      T->window_moved = T->moved;
    }
    at = rv_transfer_next_check(T);
    if (at >= 0 && (next < 0 || at < next)) next = at;
  }
  S->stall_at = next;
}

/*
** Run curl for what is ready now, waiting at most `wait_ms` (0: never block)
** for socket activity or curl's own timer. Returns the number of transfers
** still running.
*/
static int session_run(rv_session *S, long long wait_ms) {
  struct epoll_event events[RV_MAX_EVENTS];
  int n, i, still;
  long long now = rv_now_ms();
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
  n = epoll_wait(S->epfd, events, RV_MAX_EVENTS, (int)(wait_ms < 0 ? 0 : wait_ms));
  for (i = 0; i < n; i++) {
    int flags = 0;
    if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
    if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(S->multi, events[i].data.fd, flags, &still);
  }
  if (S->timer_ms >= 0 && rv_now_ms() >= S->timer_ms) {
    S->timer_ms = -1;
    curl_multi_socket_action(S->multi, CURL_SOCKET_TIMEOUT, 0, &still);
  }
  collect(S);
  check_stalls(S);
  return S->running;
}

/* ---- session methods ----------------------------------------------------------- */

rv_session *rv_check_session(lua_State *L, int i) {
  rv_session *S = (rv_session *)luaL_checkudata(L, i, RV_SESSION_MT);
  if (S->closed) luaL_error(L, "attempt to use a closed rivya client");
  return S;
}

/* session:step([seconds]) -> running: non-blocking by default */
static int session_step(lua_State *L) {
  rv_session *S = rv_check_session(L, 1);
  lua_Number wait = luaL_optnumber(L, 2, 0);
  long long ms = wait > 0 ? (long long)(wait * 1000.0 + 0.5) : 0;
  if (wait > 0 && ms == 0) ms = 1;
  lua_pushinteger(L, session_run(S, ms));
  return 1;
}

/* session:pollfd() -> the epoll fd standing for every curl socket */
static int session_pollfd(lua_State *L) {
  rv_session *S = rv_check_session(L, 1);
  lua_pushinteger(L, S->epfd);
  return 1;
}

static int session_events(lua_State *L) {
  rv_check_session(L, 1);
  lua_pushliteral(L, "r");
  return 1;
}

/* session:timeout() -> seconds until curl needs a step without I/O, or nil */
static int session_timeout(lua_State *L) {
  rv_session *S = rv_check_session(L, 1);
  long long at = S->timer_ms;
  if (S->stall_at >= 0 && (at < 0 || S->stall_at < at)) at = S->stall_at;
  if (at < 0) {
    lua_pushnil(L);
  } else {
    long long left = at - rv_now_ms();
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
  rv_session *S = (rv_session *)luaL_checkudata(L, 1, RV_SESSION_MT);
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

/*
** session:limit() -> how many transfers are worth handing to curl at once:
** max_connections while answers come over HTTP/1.x (one request per
** connection; more wait in curl's pending queue, where each is tried again
** at every completion), or nil once one came over HTTP/2 (streams multiplex).
*/
static int session_limit(lua_State *L) {
  rv_session *S = (rv_session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  if (S->multiplexed) lua_pushnil(L);
  else lua_pushinteger(L, S->max_host);
  return 1;
}

static int session_running(lua_State *L) {
  rv_session *S = rv_check_session(L, 1);
  lua_pushinteger(L, S->running);
  return 1;
}

/* Wipe and free a secret string. */
static void free_secret(char *s) {
  if (s != NULL) {
    rv_wipe(s, strlen(s));
    free(s);
  }
}

/* close and __close: one idempotent function */
static int session_close(lua_State *L) {
  rv_session *S = (rv_session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  if (S->closed) return 0;
  S->closed = 1;
  while (S->transfers != NULL) {   /* abort what is in flight */
    rv_transfer *T = S->transfers;
    rv_transfer_detach(T);
    if (!T->done) rv_transfer_abort(T, CURLE_ABORTED_BY_CALLBACK);
    rv_transfer_unlink(T);
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
  rv_session *S = (rv_session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  session_close(L);
  free(S->finished);
  S->finished = NULL;
  S->nfinished = S->capfinished = 0;
  return 0;
}

static int session_tostring(lua_State *L) {
  rv_session *S = (rv_session *)luaL_checkudata(L, 1, RV_SESSION_MT);
  lua_pushfstring(L, "rivya.Session (%s%s)", S->api_origin ? S->api_origin : "",
                  S->closed ? ", closed" : "");
  return 1;
}

/*
** core.session{api_key=, api_origin=, user_agent=, ca_file=, max_connections=}
** (and system_ca=, for tests: a file that stands for the system CA bundle)
** The key is copied into C memory and never returned to Lua.
*/
static int session_new(lua_State *L) {
  rv_session *S;
  lua_Number maxconn;
  luaL_checktype(L, 1, LUA_TTABLE);
  S = (rv_session *)lua_newuserdatauv(L, sizeof *S, 0);
  memset(S, 0, sizeof *S);
  S->epfd = -1;
  S->timer_ms = -1;
  S->stall_at = -1;
  luaL_setmetatable(L, RV_SESSION_MT);
  /* the other options first: a wrong one raises before the key is copied;
     a raise after that leaves a session whose __gc wipes the key */
  S->api_origin = rv_opt_dup(L, 1, "api_origin");
  S->user_agent = rv_opt_dup(L, 1, "user_agent");
  S->api_key = rv_opt_dup(L, 1, "api_key");
  rv_session_trust(L, S);
  S->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (S->epfd < 0) return luaL_error(L, "rivya: epoll_create1: %s", strerror(errno));
  S->multi = curl_multi_init();
  if (S->multi == NULL) return luaL_error(L, "rivya: curl_multi_init failed");
  curl_multi_setopt(S->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(S->multi, CURLMOPT_SOCKETDATA, S);
  curl_multi_setopt(S->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(S->multi, CURLMOPT_TIMERDATA, S);
  curl_multi_setopt(S->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  maxconn = rv_opt_number(L, 1, "max_connections", 16);
  S->max_host = (long)(maxconn > 0 ? maxconn : 16);
  curl_multi_setopt(S->multi, CURLMOPT_MAX_HOST_CONNECTIONS, S->max_host);
  curl_multi_setopt(S->multi, CURLMOPT_MAXCONNECTS, (long)(maxconn > 0 ? maxconn : 16) * 2);
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"start", rv_transfer_start},
  {"step", session_step},
  {"pollfd", session_pollfd},
  {"events", session_events},
  {"timeout", session_timeout},
  {"running", session_running},
  {"limit", session_limit},
  {"finished", session_finished},
  {"close", session_close},
  {NULL, NULL}
};

static const luaL_Reg session_meta[] = {
  {"__gc", session_gc},
  {"__close", session_close},
  {"__tostring", session_tostring},
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
  rv_newmetatable(L, RV_SESSION_MT, session_methods, session_meta);
  lua_pop(L, 1);
  rv_transfer_register(L);
  rv_upload_open(L);
  lua_pushcfunction(L, session_new);
  lua_setfield(L, -2, "session");
  rv_system_open(L);
  return 0;
}
