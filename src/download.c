/*
** download.c — a 2xx body streamed to "<dir>/.<name>.rivya-XXXXXX" beside
** its destination, flushed, synced and renamed into place only when whole:
** an interrupted or refused download never leaves a half file.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

/*
** The destination may be a regular file (replaced) or nothing: a device,
** FIFO, socket or directory there is never replaced by the rename. A
** symbolic link is judged by what it points at. 0, or an errno (EINVAL: not
** a regular file).
*/
static int check_destination(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT && lstat(path, &st) != 0) return 0;   /* nothing there */
    return errno == ENOENT ? EINVAL : errno;                  /* a dangling link */
  }
  return S_ISREG(st.st_mode) ? 0 : EINVAL;
}

/* Create the temporary file beside T->out_path and open it. */
int rv_download_open(rv_transfer *T) {
  const char *slash = strrchr(T->out_path, '/');
  size_t dirlen = slash ? (size_t)(slash - T->out_path) + 1 : 0;
  const char *base = T->out_path + dirlen;
  size_t size = dirlen + strlen(base) + 16;
  int fd, e = check_destination(T->out_path);
  if (e != 0) return e;
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
  T->outbuf = (char *)malloc(RV_OUT_BUFFER);
  if (T->outbuf != NULL) setvbuf(T->out, T->outbuf, _IOFBF, RV_OUT_BUFFER);
  return 0;
}

/*
** Write callback's share for a 2xx answer: the bytes go to the temporary
** file; a media download whose first bytes have no known signature (an
** error page sent as 200) is cut short. Returns less than `len` to abort.
*/
size_t rv_download_write(rv_transfer *T, const char *data, size_t len) {
  if (T->out == NULL) return 0;
  if (T->max_file > 0) {
    curl_off_t promised = -1;
    curl_easy_getinfo(T->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &promised);
    if (promised > T->max_file || (curl_off_t)len > T->max_file - T->written) {
      T->too_large = 1;
      return 0;
    }
  }
  T->written += (curl_off_t)len;
  if (T->media && T->media_len < RV_MEDIA_HEAD) {
    size_t take = RV_MEDIA_HEAD - T->media_len < len ? RV_MEDIA_HEAD - T->media_len : len;
    memcpy(T->media_head + T->media_len, data, take);
    T->media_len += take;
    if (T->media_len == RV_MEDIA_HEAD &&
        rv_sniff_bytes(T->media_head, T->media_len, NULL) == NULL) {
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

static void close_out(rv_transfer *T) {
  if (T->out != NULL) {
    fclose(T->out);
    T->out = NULL;
  }
  free(T->outbuf);
  T->outbuf = NULL;
}

void rv_download_remove(rv_transfer *T) {
  close_out(T);
  if (T->tmp_path != NULL) {
    unlink(T->tmp_path);
    free(T->tmp_path);
    T->tmp_path = NULL;
  }
}

/* rv_media_reader over the temporary file */
static size_t read_temp(void *ctx, unsigned long long off, unsigned char *buf, size_t n) {
  int fd = *(int *)ctx;
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  return got;
}

/*
** A finished download: flush, check, sync and rename the temporary file
** into place only when the answer is 200, curl saw every byte and (for
** media) the whole file holds together; else remove it.
*/
void rv_download_finish(rv_transfer *T) {
  int ok = T->result == CURLE_OK && T->status == 200 && T->out != NULL && !T->out_failed;
  if (T->result == CURLE_OK && T->status >= 200 && T->status < 300 && T->status != 200)
    T->bad_status = T->status;
  if (ok && T->media && rv_sniff_bytes(T->media_head, T->media_len, NULL) == NULL) {
    T->not_media = 1;   /* shorter than RV_MEDIA_HEAD, and no signature */
    ok = 0;
  }
  if (ok && fflush(T->out) != 0) {
    T->out_failed = 1;
    T->out_error = errno;
    ok = 0;
  }
  if (ok && T->media) {
    int fd = fileno(T->out);
    T->bad_media = rv_media_verify(read_temp, &fd, (unsigned long long)T->written, NULL);
    if (T->bad_media != NULL) {
      T->not_media = 1;
      ok = 0;
    }
  }
  if (ok && check_destination(T->out_path) != 0) {   /* swapped in during the transfer */
    T->out_failed = 1;
    T->out_error = EINVAL;
    ok = 0;
  }
  if (!ok) {
    rv_download_remove(T);
    return;
  }
  if (fsync(fileno(T->out)) != 0) {
    T->out_failed = 1;
    T->out_error = errno;
    rv_download_remove(T);
    return;
  }
  close_out(T);
  if (rename(T->tmp_path, T->out_path) != 0) {
    T->out_failed = 1;
    T->out_error = errno;
    rv_download_remove(T);
    return;
  }
  free(T->tmp_path);
  T->tmp_path = NULL;
}
