/*
** transfer.c — one HTTP exchange on a libcurl easy handle: the callbacks
** (bytes and counters only), session:start(spec), and the rivya.Transfer
** methods Lua reads the outcome with between steps.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* ---- curl callbacks: bytes and counters only ------------------------------ */

/* Header callback: keep the header block of the final response only. */
static size_t on_header(char *data, size_t size, size_t n, void *userp) {
  rv_transfer *T = (rv_transfer *)userp;
  size_t len = size * n;
  T->last_ms = rv_now_ms();
  if (T->rate_min > 0 && T->window_start == 0) {   /* the answer begins: so does the rate check */
    T->window_start = T->last_ms;
    T->window_moved = T->moved;
  }
  T->moved += (curl_off_t)len;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) T->head.len = 0;  /* new response */
  if (T->head.len + len > RV_MAX_HEADER_BYTES) {                   /* absurd headers */
    T->head_too_large = 1;
    return 0;
  }
  if (rv_buf_add(&T->head, data, len) != 0) return 0;
  return len;
}

/*
** Write callback: the body goes to memory (capped) or, for a download whose
** answer is 200, to the temporary file; another 2xx (206 Partial Content,
** 203) is never taken for the file. Returning less than `len` aborts.
*/
static size_t on_write(char *data, size_t size, size_t n, void *userp) {
  rv_transfer *T = (rv_transfer *)userp;
  size_t len = size * n;
  long code = 0;
  T->last_ms = rv_now_ms();
  T->moved += (curl_off_t)len;
  if (T->out_path != NULL) {
    curl_easy_getinfo(T->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code == 200) return rv_download_write(T, data, len);
    if (code > 200 && code < 300) {
      T->bad_status = code;
      return 0;
    }
    if (T->body.len + len > RV_ERROR_BODY_CAP) {  /* an error page: keep its start */
      size_t room = RV_ERROR_BODY_CAP - T->body.len;
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
  rv_transfer *T = (rv_transfer *)userp;
  if (dlnow != T->dl_now || ulnow != T->ul_now) T->last_ms = rv_now_ms();
  if (ulnow > T->ul_now) T->moved += ulnow - T->ul_now;
  T->dl_total = dltotal;
  T->dl_now = dlnow;
  T->ul_total = ultotal;
  T->ul_now = ulnow;
  return 0;
}

/* ---- life of a transfer ---------------------------------------------------- */

/* Take the easy handle out of the multi (the connection stays in its pool). */
void rv_transfer_detach(rv_transfer *T) {
  if (T->added && T->session != NULL && T->session->multi != NULL) {
    curl_multi_remove_handle(T->session->multi, T->easy);
    T->session->running--;
  }
  T->added = 0;
}

void rv_transfer_unlink(rv_transfer *T) {
  rv_session *S = T->session;
  if (S == NULL) return;
  if (T->prev != NULL) T->prev->next = T->next;
  else S->transfers = T->next;
  if (T->next != NULL) T->next->prev = T->prev;
  T->next = T->prev = NULL;
  T->session = NULL;
}

/* Free the curl handle and what it points at (headers, MIME); idempotent. */
void rv_transfer_free_curl(rv_transfer *T) {
  struct curl_slist *h;
  if (T->easy != NULL) {
    curl_easy_cleanup(T->easy);
    T->easy = NULL;
  }
  for (h = T->headers; h != NULL; h = h->next) {   /* the Authorization header we built */
    if (strncmp(h->data, "Authorization:", 14) == 0) rv_wipe(h->data, strlen(h->data));
  }
  curl_slist_free_all(T->headers);
  T->headers = NULL;
  if (T->mime != NULL) {
    curl_mime_free(T->mime);
    T->mime = NULL;
  }
}

/* End a running transfer with `result`: no temporary file stays behind. */
void rv_transfer_abort(rv_transfer *T, CURLcode result) {
  rv_transfer_detach(T);
  T->done = 1;
  T->result = result;
  rv_download_remove(T);
  rv_session_report(T);
}

/* Release everything a transfer holds; idempotent (close, __gc, __close). */
static void transfer_release(rv_transfer *T) {
  rv_transfer_detach(T);
  rv_transfer_unlink(T);
  rv_transfer_free_curl(T);
  rv_download_remove(T);
  free(T->out_path);
  T->out_path = NULL;
  rv_buf_free(&T->head);
  rv_buf_free(&T->body);
}

/* ---- starting a transfer ------------------------------------------------------- */

static long seconds_to_ms(lua_Number s) {
  if (!(s > 0)) return 0;
  if (s > 2000000.0) return 2000000000L;
  return (long)(s * 1000.0 + 0.5);
}

/*
** Add the multipart parts in the array at index `t`: each part is
** {name=, data=} or {name=, file=, filename=, type=} with `file` an open
** rivya.UploadFile (core.open_upload), streamed from its descriptor by
** every attempt, never loaded here and never opened again by path.
*/
static const char *build_mime(lua_State *L, rv_transfer *T, int t) {
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
    if (lua_getfield(L, -1, "file") != LUA_TNIL) {
      const char *err = rv_upload_part(L, lua_gettop(L), T, part);
      if (err != NULL) return err;
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
#ifdef CURLMIMEOPT_FORMESCAPE
  /* backslash-escape quotes and backslashes in names: a file name ending in
     a backslash must not swallow the closing quote */
  curl_easy_setopt(T->easy, CURLOPT_MIME_OPTIONS, (long)CURLMIMEOPT_FORMESCAPE);
#endif
  curl_easy_setopt(T->easy, CURLOPT_MIMEPOST, T->mime);
  return NULL;
}

/*
** The Authorization header, built here rather than by libcurl's Bearer
** option (which keeps its own copy of the key, freed unwiped): our buffer is
** wiped at once, the list's copy in rv_transfer_free_curl. 0 or -1.
*/
static int add_authorization(rv_transfer *T, const char *key) {
  static const char prefix[] = "Authorization: Bearer ";
  size_t klen = strlen(key), n = sizeof prefix + klen;
  char *h = (char *)malloc(n);
  struct curl_slist *next;
  if (h == NULL) return -1;
  memcpy(h, prefix, sizeof prefix - 1);
  memcpy(h + sizeof prefix - 1, key, klen + 1);
  next = curl_slist_append(T->headers, h);
  rv_wipe(h, n);
  free(h);
  if (next == NULL) return -1;
  T->headers = next;
  return 0;
}

/* when the stall or rate check of T is next due (monotonic ms), -1 never */
long long rv_transfer_next_check(const rv_transfer *T) {
  long long at = T->stall_ms > 0 ? T->last_ms + T->stall_ms : -1;
  if (T->rate_min > 0 && T->window_start > 0 && (at < 0 || T->window_start + T->window_len < at))
    at = T->window_start + T->window_len;
  return at;
}

/*
** session:start(spec) -> transfer | nil, err
** spec: method, url, headers (array of "Name: value"), body (string),
** multipart (array of parts), auth (bool: send the key — only to the API
** origin), timeout, connect_timeout, stall (seconds without a byte),
** max_body (bytes), follow (bool: follow redirects), output (path),
** media (bool: the output must be a whole image/video/audio file),
** max_file (bytes of output), min_rate (bytes a second over each
** rate_window seconds), https_only (bool: no http://, redirects included),
** close (bool: a fresh connection, not kept for another transfer).
*/
int rv_transfer_start(lua_State *L) {
  rv_session *S = rv_check_session(L, 1);
  rv_transfer *T;
  const char *method, *url, *err = NULL;
  size_t urllen;
  int auth, tidx;
  lua_Number maxb;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "url");
  url = luaL_checklstring(L, -1, &urllen);
  lua_getfield(L, 2, "method");
  method = luaL_optstring(L, -1, "GET");
  auth = rv_opt_bool(L, 2, "auth");

  T = (rv_transfer *)lua_newuserdatauv(L, sizeof *T, 1);
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
  maxb = rv_opt_number(L, 2, "max_body", (lua_Number)RV_DEFAULT_MAX_BODY);
  T->max_body = maxb > 0 ? (size_t)maxb : RV_DEFAULT_MAX_BODY;
  T->out_path = rv_opt_dup(L, 2, "output");

  curl_easy_setopt(T->easy, CURLOPT_URL, url);
  curl_easy_setopt(T->easy, CURLOPT_PRIVATE, (char *)T);
  curl_easy_setopt(T->easy, CURLOPT_ERRORBUFFER, T->errbuf);
  curl_easy_setopt(T->easy, CURLOPT_NOSIGNAL, 1L);
  T->https_only = rv_opt_bool(L, 2, "https_only");
  curl_easy_setopt(T->easy, CURLOPT_PROTOCOLS_STR, T->https_only ? "https" : "http,https");
  curl_easy_setopt(T->easy, CURLOPT_REDIR_PROTOCOLS_STR, T->https_only ? "https" : "http,https");
  curl_easy_setopt(T->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(T->easy, CURLOPT_HEADERDATA, T);
  curl_easy_setopt(T->easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(T->easy, CURLOPT_WRITEDATA, T);
  curl_easy_setopt(T->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(T->easy, CURLOPT_XFERINFODATA, T);
  curl_easy_setopt(T->easy, CURLOPT_NOPROGRESS, 0L);
  /* API answers may come compressed; a download never asks for it (a small
     gzip body could inflate past any size cap before it is counted) */
  if (T->out_path == NULL) curl_easy_setopt(T->easy, CURLOPT_ACCEPT_ENCODING, "");
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
  curl_easy_setopt(T->easy, CURLOPT_TIMEOUT_MS, seconds_to_ms(rv_opt_number(L, 2, "timeout", 0)));
  curl_easy_setopt(T->easy, CURLOPT_CONNECTTIMEOUT_MS,
                   seconds_to_ms(rv_opt_number(L, 2, "connect_timeout", 10)));
  T->stall_ms = seconds_to_ms(rv_opt_number(L, 2, "stall", 0));
  T->last_ms = rv_now_ms();
  T->rate_min = (long long)rv_opt_number(L, 2, "min_rate", 0);
  T->window_len = seconds_to_ms(rv_opt_number(L, 2, "rate_window", 0));
  if (T->rate_min <= 0 || T->window_len <= 0) T->rate_min = 0;
  T->window_start = 0;   /* from the first byte of the answer: connecting is not a drip */
  maxb = rv_opt_number(L, 2, "max_file", 0);
  T->max_file = maxb >= 1 ? (maxb < 9.2e18 ? (curl_off_t)maxb : (curl_off_t)9200000000000000000.0) : 0;
  T->media = rv_opt_bool(L, 2, "media");
  /* a connection of its own, closed after this transfer (the catalog fetch:
     it neither closes a warm connection nor leaves one for the next request) */
  if (rv_opt_bool(L, 2, "close")) {
    curl_easy_setopt(T->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(T->easy, CURLOPT_FORBID_REUSE, 1L);
  }
  if (rv_opt_bool(L, 2, "follow")) {
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
    if (add_authorization(T, S->api_key) != 0) return luaL_error(L, "rivya: out of memory");
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
    e = rv_download_open(T);
    if (e != 0) {
      lua_pushstring(L, T->out_path);
      transfer_release(T);
      if (e == EINVAL)
        return rv_error_return(L, "io", "path", "%s is not a regular file: a download only "
                               "replaces a regular file or creates one", lua_tostring(L, -1));
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
  {
    long long at = rv_transfer_next_check(T);
    if (at >= 0 && (S->stall_at < 0 || at < S->stall_at)) S->stall_at = at;
  }
  lua_pushvalue(L, tidx);
  return 1;
}

/* ---- transfer methods ------------------------------------------------------------ */

static rv_transfer *check_transfer(lua_State *L, int i) {
  return (rv_transfer *)luaL_checkudata(L, i, RV_TRANSFER_MT);
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

/*
** A transport failure's kind: timeout, too_large, io, not_media, changed,
** insecure, tls, aborted or network.
*/
/*
** Headers over our limit, or over libcurl's on one header line (100 KB): it
** fails that with CURLE_OUT_OF_MEMORY, before the header block is complete.
*/
static int huge_head(const rv_transfer *T) {
  const char *h = T->head.data;
  size_t n = T->head.len;
  int complete = n >= 2 && h[n - 1] == '\n' &&
                 (h[n - 2] == '\n' || (n >= 3 && h[n - 2] == '\r' && h[n - 3] == '\n'));
  return T->head_too_large || (T->result == CURLE_OUT_OF_MEMORY && !complete);
}

static const char *failure_kind(const rv_transfer *T) {
  if (T->too_large || huge_head(T)) return "too_large";
  if (T->out_failed || T->file_error) return "io";
  if (T->file_changed) return "changed";
  if (T->not_media || T->bad_status) return "not_media";
  if (T->https_only && T->result == CURLE_UNSUPPORTED_PROTOCOL) return "insecure";
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

/* push nil, kind, message, status for a transport failure */
static int push_failure(lua_State *L, const rv_transfer *T) {
  const char *kind = failure_kind(T);
  lua_pushnil(L);
  lua_pushstring(L, kind);
  if (huge_head(T))
    lua_pushfstring(L, "the response headers are too large (over %d KiB in all or 100 KiB in "
                    "one header)", (int)(RV_MAX_HEADER_BYTES / 1024));
  else if (T->too_large && T->out_path != NULL && T->max_file > 0 && T->status == 200)
    lua_pushfstring(L, "the download is larger than %I bytes (max_download_bytes)",
                    (lua_Integer)T->max_file);
  else if (T->too_large)
    lua_pushfstring(L, "response body larger than %I bytes", (lua_Integer)T->max_body);
  else if (T->out_failed && T->out_error == EINVAL)
    lua_pushfstring(L, "%s is no longer a regular file: it is not replaced", T->out_path);
  else if (T->out_failed)
    lua_pushfstring(L, "cannot write the file: %s", strerror(T->out_error));
  else if (T->file_error)
    lua_pushfstring(L, "cannot read the file to upload: %s", strerror(T->file_error));
  else if (T->file_changed)
    lua_pushliteral(L, "the file changed while uploading (its size or modification time)");
  else if (T->bad_status)
    lua_pushfstring(L, "the download answered %d, not 200: a partial or other answer is never "
                    "taken for the file", (int)T->bad_status);
  else if (T->not_media && T->bad_media != NULL)
    lua_pushfstring(L, "the answer is not a whole image, video or audio file: %s", T->bad_media);
  else if (T->not_media)
    lua_pushliteral(L, "the answer is not an image, video or audio file (no known signature)");
  else if (strcmp(kind, "insecure") == 0)
    lua_pushfstring(L, "refusing a plain http:// URL (downloads are https only): %s", T->errbuf);
  else if (T->errbuf[0] != '\0')   /* libcurl's detail ends with its general message */
    lua_pushstring(L, T->errbuf);
  else
    lua_pushstring(L, curl_easy_strerror(T->result));
  lua_pushinteger(L, T->status);
  return 4;
}

static int failed(const rv_transfer *T) {
  return T->result != CURLE_OK || T->too_large || T->head_too_large || T->out_failed ||
         T->not_media || T->bad_status || T->file_changed || T->file_error;
}

/*
** transfer:result() -> status, headers, body, info  when an HTTP answer came
**                   -> nil, kind, message              on a transport failure
** body is nil for a download written to its file.
*/
static int transfer_result(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  if (!T->done) return luaL_error(L, "rivya: transfer still running");
  if (failed(T)) return push_failure(L, T);
  lua_pushinteger(L, T->status);
  push_headers(L, &T->head);
  if (T->out_path != NULL && T->status == 200) lua_pushnil(L);
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

/*
** transfer:answer() -> status, body       when an HTTP answer came
**                   -> nil, kind, message  on a transport failure
** result() without the header table (transfer:headers() builds it when
** needed): the lean path of an API call, thousands a second.
*/
static int transfer_answer(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  if (!T->done) return luaL_error(L, "rivya: transfer still running");
  if (failed(T)) return push_failure(L, T);
  lua_pushinteger(L, T->status);
  if (T->out_path != NULL && T->status == 200) lua_pushnil(L);
  else lua_pushlstring(L, T->body.data ? T->body.data : "", T->body.len);
  return 2;
}

/* transfer:headers() -> the last answer's headers, names in lower case */
static int transfer_headers(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  push_headers(L, &T->head);
  return 1;
}

/* transfer:progress() -> sent, send_total, received, receive_total */
static int transfer_progress(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  lua_pushinteger(L, (lua_Integer)T->ul_now);
  lua_pushinteger(L, (lua_Integer)T->ul_total);
  lua_pushinteger(L, (lua_Integer)T->dl_now);
  lua_pushinteger(L, (lua_Integer)T->dl_total);
  return 4;
}

/* transfer:cancel(): abort if running; a partial download leaves no file */
static int transfer_cancel(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  if (!T->done) rv_transfer_abort(T, CURLE_ABORTED_BY_CALLBACK);
  return 0;
}

/*
** transfer:watch() -> id: have session:finished() report this transfer when
** it is done (a scheduler maps ids to its waiting coroutines).
*/
static int transfer_watch(lua_State *L) {
  rv_transfer *T = check_transfer(L, 1);
  T->watched = 1;
  lua_pushinteger(L, T->id);
  return 1;
}

/* __gc and __close: one idempotent function */
static int transfer_gc(lua_State *L) {
  transfer_release(check_transfer(L, 1));
  return 0;
}

static const luaL_Reg transfer_methods[] = {
  {"done", transfer_done},
  {"result", transfer_result},
  {"answer", transfer_answer},
  {"headers", transfer_headers},
  {"progress", transfer_progress},
  {"cancel", transfer_cancel},
  {"watch", transfer_watch},
  {NULL, NULL}
};

static const luaL_Reg transfer_meta[] = {
  {"__gc", transfer_gc},
  {"__close", transfer_gc},
  {NULL, NULL}
};

void rv_transfer_register(lua_State *L) {
  rv_newmetatable(L, RV_TRANSFER_MT, transfer_methods, transfer_meta);
  lua_pop(L, 1);
}
