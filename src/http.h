/*
** http.h — private to rivya's HTTP layer on libcurl: the session and
** transfer types, their limits, and what crosses the layer's files.
**
**   session.c   the multi handle, its epoll fd, steps, finished reports,
**               the session methods and their registration
**   transfer.c  one easy handle: the libcurl callbacks, start, result
**   download.c  streaming a body to a temporary file renamed when whole
**   trust.c     the trust anchors a session reads once (ca_file)
**   system.c    the monotonic clock, sleep, poll, random bytes
**
** No Lua error and no Lua call ever happens inside a libcurl callback: the
** callbacks only copy bytes and counters into C structures; Lua reads them
** between steps.
*/
#ifndef RIVYA_HTTP_H
#define RIVYA_HTTP_H

#include <stdio.h>

#include <curl/curl.h>

#include "rivya.h"

#define RV_MAX_EVENTS 64
#define RV_DEFAULT_MAX_BODY (8u * 1024u * 1024u)  /* bytes of a response kept in memory */
#define RV_ERROR_BODY_CAP (64u * 1024u)           /* error bodies of a download */
#define RV_MEDIA_HEAD 16u                         /* bytes sniffed of a media download */
#define RV_OUT_BUFFER (1u << 20)                  /* stdio buffer of a download */
#define RV_MAX_HEADER_BYTES (256u * 1024u)        /* header block of one response */

typedef struct rv_session rv_session;
typedef struct rv_transfer rv_transfer;

struct rv_session {
  CURLM *multi;
  int epfd;
  long long timer_ms;        /* monotonic deadline curl asked for; -1 none */
  char *api_key;             /* never handed back to Lua */
  char *api_origin;          /* "https://rivya.ai": the only place the key goes */
  char *user_agent;
  rv_buf ca_blob;            /* with ca_file: system bundle + ca_file (PEM), else empty */
  int running;
  rv_transfer *transfers;    /* every transfer not yet freed, to detach on close */
  int closed;
  long long stall_at;        /* earliest moment a transfer may stall; -1 none */
  /* ids of watched transfers done since the last session:finished(), so a
     scheduler wakes exactly their waiters instead of scanning them all */
  lua_Integer next_id;
  lua_Integer *finished;
  size_t nfinished, capfinished;
  int finished_lost;         /* a report was lost (out of memory): rescan */
  long max_host;             /* CURLMOPT_MAX_HOST_CONNECTIONS */
  int multiplexed;           /* an answer came over HTTP/2 or later */
};

struct rv_transfer {
  rv_session *session;       /* NULL once detached */
  rv_transfer *next, *prev;
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
  curl_off_t max_file;       /* bytes a download may have; 0: no limit */
  curl_off_t written;        /* bytes written to tmp_path */
  long bad_status;           /* a download answered 2xx but not 200 */
  /* a media download: its first bytes must have an image/video/audio
     signature, and the whole file the structure its headers promise */
  int media;
  int not_media;
  const char *bad_media;     /* why the structure check failed (static) */
  unsigned char media_head[RV_MEDIA_HEAD];
  size_t media_len;
  int head_too_large;        /* the header block passed RV_MAX_HEADER_BYTES */
  int https_only;            /* no plain http://, redirects included */
  /* an upload streamed from an open descriptor (upload.c) */
  int file_changed;          /* its size or mtime changed while it was sent */
  int file_error;            /* errno of a failed read */
  /* the stall detector: fail when no byte moved for stall_ms, or fewer
     than rate_min bytes a second over each window of window_len ms */
  long long stall_ms;        /* 0: off */
  long long last_ms;         /* monotonic time of the last byte in or out */
  long long rate_min;        /* bytes a second; 0: off */
  long long window_len;      /* ms */
  long long window_start;    /* monotonic ms the current window began; 0: no answer yet */
  curl_off_t moved;          /* bytes in and out so far */
  curl_off_t window_moved;   /* `moved` when the window began */
  /* progress, read by Lua between steps */
  curl_off_t ul_now, ul_total, dl_now, dl_total;
};

/* system.c */
long long rv_now_ms(void);                           /* monotonic milliseconds */
void rv_wipe(void *p, size_t n);                     /* zeros a secret before it is freed */
int rv_system_open(lua_State *L);                    /* core.now, sleep, poll, random_hex */

/* session.c */
rv_session *rv_check_session(lua_State *L, int i);   /* raises when closed */
void rv_session_report(rv_transfer *T);              /* queue a watched transfer as done */
char *rv_opt_dup(lua_State *L, int t, const char *name);
lua_Number rv_opt_number(lua_State *L, int t, const char *name, lua_Number def);
int rv_opt_bool(lua_State *L, int t, const char *name);

/* trust.c */
void rv_session_trust(lua_State *L, rv_session *S);  /* reads ca_file; raises */

/* transfer.c */
int rv_transfer_start(lua_State *L);                 /* session:start(spec) */
void rv_transfer_detach(rv_transfer *T);             /* out of the multi */
void rv_transfer_unlink(rv_transfer *T);             /* out of the session's list */
void rv_transfer_free_curl(rv_transfer *T);          /* the easy handle, headers, MIME */
void rv_transfer_abort(rv_transfer *T, CURLcode result);   /* done, temp file gone, reported */
void rv_transfer_register(lua_State *L);             /* the rivya.Transfer metatable */
long long rv_transfer_next_check(const rv_transfer *T);   /* stall or rate check due; -1 none */

/* upload.c */
int rv_upload_open(lua_State *L);                    /* core.open_upload, rivya.UploadFile */
const char *rv_upload_part(lua_State *L, int idx, rv_transfer *T, curl_mimepart *part);

/* download.c */
int rv_download_open(rv_transfer *T);                /* the temp file: 0 or an errno */
size_t rv_download_write(rv_transfer *T, const char *data, size_t len);   /* a 2xx body */
void rv_download_finish(rv_transfer *T);             /* rename into place, or remove */
void rv_download_remove(rv_transfer *T);             /* close and unlink the temp file */

#endif
