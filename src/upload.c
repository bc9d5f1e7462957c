/*
** upload.c — a file to upload, opened once: rivya.UploadFile holds the
** descriptor and what fstat said of it when opened, and every attempt of
** the upload streams from that descriptor (pread from offset 0), never from
** the path again. A file swapped for a symlink or a FIFO during a retry's
** backoff is therefore never read; a file whose size or modification time
** changes while it is sent fails the attempt instead of sending a body that
** differs from its declared length.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

#define RV_UPLOAD_MT "rivya.UploadFile"

typedef struct rv_upload_file {
  int fd;                    /* -1 once closed */
  curl_off_t size;
  struct timespec mtime;
} rv_upload_file;

/* one attempt's reading state, owned by its MIME part (freed by curl) */
typedef struct part_source {
  int fd;                    /* a dup of the file's descriptor */
  curl_off_t size, off;
  struct timespec mtime;
  rv_transfer *T;
} part_source;

static int same_time(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
** core.open_upload(path) -> file | nil, message
** Opens without blocking (a FIFO swapped in cannot hang the caller) and
** keeps the descriptor only for a regular file.
*/
static int upload_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  rv_upload_file *F = (rv_upload_file *)lua_newuserdatauv(L, sizeof *F, 0);
  struct stat st;
  int fd;
  F->fd = -1;
  luaL_setmetatable(L, RV_UPLOAD_MT);
  fd = rv_open_regular(L, path, &st);
  if (fd < 0) return 2;
  F->fd = fd;
  F->size = (curl_off_t)st.st_size;
  F->mtime = st.st_mtim;
  return 1;
}

static rv_upload_file *check_file(lua_State *L, int i) {
  rv_upload_file *F = (rv_upload_file *)luaL_checkudata(L, i, RV_UPLOAD_MT);
  if (F->fd < 0) luaL_error(L, "rivya: attempt to use a closed upload file");
  return F;
}

/* file:size() -> bytes, as fstat said when the file was opened */
static int file_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_file(L, 1)->size);
  return 1;
}

/* file:head(n) -> the first n bytes (at most 256), read from the descriptor */
static int file_head(lua_State *L) {
  rv_upload_file *F = check_file(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 64);
  char buf[256];
  size_t got = 0;
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 2, "1 to 256 bytes");
  while (got < (size_t)n) {
    ssize_t r = pread(F->fd, buf + got, (size_t)n - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  lua_pushlstring(L, buf, got);
  return 1;
}

/* file:changed() -> false | what changed since the file was opened */
static int file_changed(lua_State *L) {
  rv_upload_file *F = check_file(L, 1);
  struct stat st;
  if (fstat(F->fd, &st) != 0) lua_pushstring(L, strerror(errno));
  else if ((curl_off_t)st.st_size != F->size) lua_pushliteral(L, "its size changed");
  else if (!same_time(&st.st_mtim, &F->mtime)) lua_pushliteral(L, "its modification time changed");
  else lua_pushboolean(L, 0);
  return 1;
}

/* close, __gc and __close: one idempotent function */
static int file_close(lua_State *L) {
  rv_upload_file *F = (rv_upload_file *)luaL_checkudata(L, 1, RV_UPLOAD_MT);
  if (F->fd >= 0) close(F->fd);
  F->fd = -1;
  return 0;
}

/* ---- one attempt's part: libcurl's read, seek and free callbacks ------------- */

/*
** Read callback: the next bytes of the declared length. The read that
** completes the body checks the file first: a changed size or mtime aborts,
** so the server never gets a whole body that is not the file declared.
*/
static size_t part_read(char *buf, size_t size, size_t nitems, void *arg) {
  part_source *P = (part_source *)arg;
  size_t want = size * nitems;
  ssize_t r;
  if ((curl_off_t)want > P->size - P->off) want = (size_t)(P->size - P->off);
  if (want == 0) return 0;
  do r = pread(P->fd, buf, want, (off_t)P->off); while (r < 0 && errno == EINTR);
  if (r < 0) {
    P->T->file_error = errno;
    return CURL_READFUNC_ABORT;
  }
  if (r == 0) {   /* shorter than when it was opened */
    P->T->file_changed = 1;
    return CURL_READFUNC_ABORT;
  }
  P->off += r;
  if (P->off == P->size) {
    struct stat st;
    if (fstat(P->fd, &st) != 0 || (curl_off_t)st.st_size != P->size ||
        !same_time(&st.st_mtim, &P->mtime)) {
      P->T->file_changed = 1;
      return CURL_READFUNC_ABORT;
    }
  }
  return (size_t)r;
}

/* Seek callback: libcurl rewinds a part to resend it (auth, redirects, retries). */
static int part_seek(void *arg, curl_off_t offset, int origin) {
  part_source *P = (part_source *)arg;
  if (origin != SEEK_SET || offset < 0 || offset > P->size) return CURL_SEEKFUNC_FAIL;
  P->off = offset;
  return CURL_SEEKFUNC_OK;
}

static void part_free(void *arg) {
  part_source *P = (part_source *)arg;
  close(P->fd);
  free(P);
}

/*
** Make MIME part `part` of transfer T stream the rivya.UploadFile at stack
** index `idx` from its start. NULL, or what is wrong.
*/
const char *rv_upload_part(lua_State *L, int idx, rv_transfer *T, curl_mimepart *part) {
  rv_upload_file *F = NULL;
  part_source *P;
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {   /* luaL_testudata, 5.1 too */
    luaL_getmetatable(L, RV_UPLOAD_MT);
    if (lua_rawequal(L, -1, -2)) F = (rv_upload_file *)lua_touserdata(L, idx);
    lua_pop(L, 2);
  }
  if (F == NULL) return "multipart file must be a file from core.open_upload";
  if (F->fd < 0) return "the file to upload was closed";
  P = (part_source *)malloc(sizeof *P);
  if (P == NULL) return "out of memory";
  P->fd = fcntl(F->fd, F_DUPFD_CLOEXEC, 0);
  if (P->fd < 0) {
    free(P);
    return "cannot read the file to upload";
  }
  P->size = F->size;
  P->off = 0;
  P->mtime = F->mtime;
  P->T = T;
  if (curl_mime_data_cb(part, P->size, part_read, part_seek, part_free, P) != CURLE_OK) {
    part_free(P);
    return "out of memory";
  }
  return NULL;
}

static const luaL_Reg file_methods[] = {
  {"size", file_size},
  {"head", file_head},
  {"changed", file_changed},
  {"close", file_close},
  {NULL, NULL}
};

static const luaL_Reg file_meta[] = {
  {"__gc", file_close},
  {"__close", file_close},
  {NULL, NULL}
};

int rv_upload_open(lua_State *L) {
  rv_newmetatable(L, RV_UPLOAD_MT, file_methods, file_meta);
  lua_pop(L, 1);
  lua_pushcfunction(L, upload_open);
  lua_setfield(L, -2, "open_upload");
  return 0;
}
