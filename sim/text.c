/*
** text.c — text helpers of rivya-sim: UTF-8 checks and code point counts
** (prompt limits count code points), cleaning strings for JSON and logs,
** media type matching, and short descriptions of JSON values for messages.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

/*
** utf8_seq: the length of the valid UTF-8 sequence at `p` (at most `n`
** bytes left), 0 when the bytes there are not valid UTF-8 (overlong forms,
** surrogates and code points past U+10FFFF included).
*/
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t len, i;
  unsigned long cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (len > n) return 0;
  for (i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
    return 0;
  return len;
}

/*
** sim_utf8_count: the number of code points in the `n` bytes at `s`, or -1
** when they are not valid UTF-8. Prompt limits count code points, not bytes.
*/
long sim_utf8_count(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  long count = 0;
  while (n > 0) {
    size_t k = utf8_seq(p, n);
    if (k == 0) return -1;
    p += k;
    n -= k;
    count++;
  }
  return count;
}

/*
** sim_clean_dup: a copy of `s` (NULL stays NULL) safe for JSON and one-line
** logs: invalid UTF-8 bytes and control characters become '?'. Request
** paths arrive percent-decoded, so they can hold any byte.
*/
char *sim_clean_dup(const char *s) {
  size_t n, i = 0;
  char *out;
  if (!s) return NULL;
  n = strlen(s);
  out = malloc(n + 1);
  if (!out) return NULL;
  while (i < n) {
    size_t k = utf8_seq((const unsigned char *)s + i, n - i);
    if (k == 0 || (k == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7F))) {
      out[i++] = '?';
    } else {
      memcpy(out + i, s + i, k);
      i += k;
    }
  }
  out[n] = '\0';
  return out;
}

/*
** sim_media_type_is: 1 when the Content-Type `header` names media type
** `type` (case-insensitive, parameters such as charset ignored).
*/
int sim_media_type_is(const char *header, const char *type) {
  size_t n = strlen(type);
  if (!header) return 0;
  while (*header == ' ' || *header == '\t') header++;
  if (strncasecmp(header, type, n) != 0) return 0;
  header += n;
  return *header == '\0' || *header == ';' || *header == ' ' || *header == '\t';
}

/*
** sim_describe: a short description of the JSON value `v` for messages
** ("\"7\"", "number 5", "true", "an object", ...) into `buf` of `size`
** bytes; long strings are cut at a code point boundary.
*/
size_t sim_describe(const json_t *v, char *buf, size_t size) {
  int n = 0;
  if (!v) {
    n = snprintf(buf, size, "nothing");
  } else if (json_is_string(v)) {
    const char *str = json_string_value(v);
    size_t len = json_string_length(v), cut = 0, k;
    while (cut < len && cut < 60 && (k = utf8_seq((const unsigned char *)str + cut, len - cut)) > 0)
      cut += k;
    n = snprintf(buf, size, "\"%.*s%s\"", (int)cut, str, cut < len ? "..." : "");
  } else if (json_is_integer(v)) {
    n = snprintf(buf, size, "number %" JSON_INTEGER_FORMAT, json_integer_value(v));
  } else if (json_is_real(v)) {
    n = snprintf(buf, size, "number %g", json_real_value(v));
  } else if (json_is_true(v)) {
    n = snprintf(buf, size, "true");
  } else if (json_is_false(v)) {
    n = snprintf(buf, size, "false");
  } else if (json_is_null(v)) {
    n = snprintf(buf, size, "null");
  } else if (json_is_array(v)) {
    n = snprintf(buf, size, "an array");
  } else {
    n = snprintf(buf, size, "an object");
  }
  return n < 0 ? 0 : (size_t)n;
}

/*
** sim_idem_key_check: 0 when the Idempotency-Key header value `k` follows
** the contract's rule (docs/api-contract.md): 1 to SIM_IDEM_KEY_MAX
** printable ASCII characters, spaces allowed inside but not at either end
** (HTTP drops them in transit, so such a key is not the one the client
** holds). Else -1 with the reason in `why`.
*/
int sim_idem_key_check(const char *k, char *why, size_t size) {
  size_t i, n = strlen(k);
  if (n == 0 || n > SIM_IDEM_KEY_MAX) {
    snprintf(why, size, "Idempotency-Key: expected 1 to %d printable ASCII characters; got %zu "
             "bytes", SIM_IDEM_KEY_MAX, n);
    return -1;
  }
  for (i = 0; i < n; i++)
    if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7E) {
      snprintf(why, size, "Idempotency-Key: expected printable ASCII characters; got a control "
               "or non-ASCII byte at %zu", i);
      return -1;
    }
  if (k[0] == ' ' || k[n - 1] == ' ') {
    snprintf(why, size, "Idempotency-Key: a space at the start or end does not survive HTTP");
    return -1;
  }
  return 0;
}
