/*
** buf.c — a growable byte buffer, always NUL-terminated after `len`.
*/
#include <stdlib.h>
#include <string.h>

#include "rivya.h"

void rv_buf_init(rv_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

/* make room for `extra` more bytes plus the terminating NUL */
static int grow(rv_buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > (size_t)-1 - b->len - 1) return -1;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int rv_buf_add(rv_buf *b, const void *p, size_t n) {
  if (grow(b, n) != 0) return -1;
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void rv_buf_free(rv_buf *b) {
  free(b->data);
  rv_buf_init(b);
}
