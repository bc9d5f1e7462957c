/*
** fuzz.h — what the libFuzzer targets in fuzz/ share: a reader that
** consumes the fuzzer's bytes as a stream of small decisions, and a check
** that stops the run loudly when a property fails.
**
** A read past the end yields zeros, so every input decodes to something and
** short inputs decode to the simplest values.
*/
#ifndef RV_FUZZ_H
#define RV_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz_reader {
  const uint8_t *p;
  size_t n;
} fz_reader;

static inline unsigned fz_byte(fz_reader *r) {
  if (r->n == 0) return 0;
  r->n--;
  return *r->p++;
}

/* up to `want` bytes: *out points at them; returns how many there were */
static inline size_t fz_take(fz_reader *r, size_t want, const uint8_t **out) {
  size_t n = want < r->n ? want : r->n;
  *out = r->p;
  r->p += n;
  r->n -= n;
  return n;
}

static inline uint64_t fz_u64(fz_reader *r) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = (v << 8) | fz_byte(r);
  return v;
}

/* a failed property: print what and where, then abort so libFuzzer keeps the input */
#define FZ_CHECK(cond, ...)                                               \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
      abort();                                                            \
    }                                                                     \
  } while (0)

/* is the `len` bytes at `s` valid UTF-8 (no overlongs, surrogates, > U+10FFFF)? */
static inline int fz_utf8_ok(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    size_t n, k;
    unsigned long cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (len - i < n) return 0;
    for (k = 1; k < n; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return 0;
    i += n;
  }
  return 1;
}

#endif
