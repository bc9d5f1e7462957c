/*
** trust.c — the trust anchors of a session, read once when it is made,
** not per transfer.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

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
** With ca_file (the session options table at index 1), every transfer gets
** the system bundle (libcurl's default CA file, or system_ca) followed by
** ca_file as CURLOPT_CAINFO_BLOB: ca_file is an extra anchor, not a
** replacement. Without it curl's defaults stand. Raises when ca_file cannot
** be read or holds no PEM certificate.
*/
void rv_session_trust(lua_State *L, rv_session *S) {
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
