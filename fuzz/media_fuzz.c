/*
** media_fuzz.c — libFuzzer target for the checks a download passes before
** it replaces anything (src/sniff.c rv_media_verify, src/download.c): the
** whole-file structure of MP4/MOV, PNG, JPEG, WebM, WAV/WebP, Ogg, MP3 and
** ADTS, and the temporary file that is renamed into place only when they
** hold.
**
** Input: one byte of flags, then the file. Properties beyond "no crash, no
** sanitizer report, no hang":
** - the checker reads only inside the file (the reader aborts otherwise);
** - it answers the same twice, and accepts only what the sniffer knows;
** - where the format fixes the length (exact), one byte more or one byte
**   less is refused: a cut or padded body cannot pass;
** - flag bit 0: the bytes also go through the download path itself
**   (rv_download_open/write/finish as a 200 answer): the destination holds
**   exactly the bytes when the check accepts them, else is left as it was,
**   and no temporary file stays behind either way.
*/
#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#include "../src/http.h"
#include "fuzz.h"

typedef struct mem {
  const uint8_t *p;
  size_t n;
} mem;

static size_t read_mem(void *ctx, unsigned long long off, unsigned char *buf, size_t n) {
  const mem *m = (const mem *)ctx;
  FZ_CHECK(off <= m->n && n <= m->n - off, "read of %zu bytes at %llu in a file of %zu", n, off, m->n);
  memcpy(buf, m->p + off, n);
  return n;
}

static const char *verify(const uint8_t *p, size_t n, int *exact) {
  mem m;
  m.p = p;
  m.n = n;
  return rv_media_verify(read_mem, &m, n, exact);
}

static char dir[64];

static void setup(void) {
  snprintf(dir, sizeof dir, "/dev/shm/rivya-media-fuzz.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    snprintf(dir, sizeof dir, "/tmp/rivya-media-fuzz.XXXXXX");
    if (mkdtemp(dir) == NULL) abort();
  }
}

static void remove_scratch(void) __attribute__((destructor));
static void remove_scratch(void) {
  char path[96];
  if (!dir[0]) return;
  snprintf(path, sizeof path, "%s/out", dir);
  unlink(path);
  rmdir(dir);
}

/* the names in the scratch directory besides "out" */
static int litter(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (d == NULL) return 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, "out") != 0) n++;
  }
  closedir(d);
  return n;
}

/* the bytes through the download path as a 200 answer in `chunks` pieces */
static void through_download(const uint8_t *p, size_t n, int accepted) {
  static const char old[] = "the old file";
  char path[96];
  rv_transfer T;
  size_t off = 0, step = n / 3 + 1;
  FILE *f;
  char buf[64];
  snprintf(path, sizeof path, "%s/out", dir);
  f = fopen(path, "wb");
  FZ_CHECK(f != NULL, "cannot write %s", path);
  fwrite(old, 1, sizeof old - 1, f);
  fclose(f);
  memset(&T, 0, sizeof T);
  T.out_path = path;
  T.media = 1;
  FZ_CHECK(rv_download_open(&T) == 0, "rv_download_open: %s", strerror(errno));
  while (off < n && !T.not_media) {
    size_t len = n - off < step ? n - off : step;
    if (rv_download_write(&T, (const char *)p + off, len) != len) break;
    off += len;
  }
  T.status = 200;
  T.result = CURLE_OK;
  rv_download_finish(&T);
  T.out_path = NULL;   /* not ours to free */
  FZ_CHECK(T.tmp_path == NULL && T.out == NULL, "the download kept its temporary file open");
  FZ_CHECK(litter() == 0, "a temporary file stayed behind");
  f = fopen(path, "rb");
  FZ_CHECK(f != NULL, "the destination is gone");
  if (accepted) {
    size_t got = 0, r;
    FZ_CHECK(!T.not_media && !T.out_failed, "an accepted file was refused: %s",
             T.bad_media ? T.bad_media : "(no reason)");
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
      FZ_CHECK(got + r <= n && memcmp(buf, p + got, r) == 0, "the saved file differs at %zu", got);
      got += r;
    }
    FZ_CHECK(got == n, "the saved file has %zu of %zu bytes", got, n);
  } else {
    size_t r = fread(buf, 1, sizeof buf, f);
    FZ_CHECK(T.not_media, "a refused file was not marked");
    FZ_CHECK(r == sizeof old - 1 && memcmp(buf, old, r) == 0, "a refused download replaced the old file");
  }
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *p = data + (size > 0);
  size_t n = size > 0 ? size - 1 : 0;
  unsigned flags = size > 0 ? data[0] : 0;
  int exact = 0, again = 0;
  const char *why = verify(p, n, &exact);
  const char *why2 = verify(p, n, &again);
  if (!dir[0]) setup();
  FZ_CHECK((why == NULL) == (why2 == NULL) && exact == again, "two answers for one file");
  if (why == NULL) {
    FZ_CHECK(rv_sniff_bytes(p, n, NULL) != NULL, "accepted a file with no known signature");
    if (exact) {
      uint8_t *longer = (uint8_t *)malloc(n + 1);
      FZ_CHECK(longer != NULL, "out of memory");
      memcpy(longer, p, n);
      longer[n] = 0;
      FZ_CHECK(verify(longer, n + 1, NULL) != NULL, "accepted with a byte more (exact format)");
      free(longer);
      FZ_CHECK(verify(p, n - 1, NULL) != NULL, "accepted with a byte less (exact format)");
    }
  }
  if (flags & 1) through_download(p, n, why == NULL);
  return 0;
}
