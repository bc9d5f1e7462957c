/*
** fault.c — scripted faults: a fault object posted to /__sim/faults is
** checked and parsed once into a sim_fault (its kind an enum); a request
** that matches one takes a copy, and http.c asks here for the response it
** shapes. The kinds:
**
**   respond             answer status/headers/body as given (default 500)
**   redirect            answer 302 (or status) with Location
**   drop                close the connection without an answer
**   drop_after_commit   process the request (a create commits), then close
**   delay               wait delay_ms, then answer normally
**   stall               send half the body, go silent delay_ms, close
**   truncate            send half the body, close
**   invalid_json        a cut JSON body as application/json
**   wrong_content_type  the real body as text/html
**   oversized           a 200 body of size bytes (64 MB) of JSON-like filler,
**                       or body/body_base64 (a media header) then filler
**   drip                the real body one byte every delay_ms (1000)
**   huge_header         the real answer with one header of size bytes (200 KB)
**   gzip                Content-Encoding: gzip: the real body compressed, or
**                       with size, that many zero bytes compressed (a bomb)
**   partial             206 with Content-Range: the first size bytes of the
**                       real body (default a hundredth), the range of the whole
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>
#include <zlib.h>

#include "sim.h"

static const char *const kind_names[] = {
  "respond", "drop", "drop_after_commit", "delay", "stall", "truncate", "invalid_json",
  "wrong_content_type", "oversized", "redirect", "drip", "huge_header", "gzip", "partial", NULL
};

static const char *const fault_keys[] = {
  "listener", "method", "path", "times", "action", "status", "headers", "body", "body_base64",
  "content_type", "delay_ms", "size", "location", NULL
};

/* sim_fault_kind_name: the wire name of `k` */
const char *sim_fault_kind_name(sim_fault_kind k) {
  return kind_names[k];
}

/* no_crlf: 1 when `s` holds no CR or LF (it goes into a header) */
static int no_crlf(const char *s) {
  return !strchr(s, '\r') && !strchr(s, '\n');
}

/*
** base64_decode: the bytes of base64 text `s` into a new buffer (*len
** bytes), or NULL when `s` is not base64 or out of memory.
*/
static unsigned char *base64_decode(const char *s, size_t *len) {
  static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = strlen(s), o = 0, i;
  unsigned long acc = 0;
  int bits = 0;
  unsigned char *out = malloc(n / 4 * 3 + 3);
  if (!out) return NULL;
  for (i = 0; i < n; i++) {
    const char *p;
    if (s[i] == '=') break;
    if (!(p = strchr(alphabet, s[i])) || !s[i]) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (unsigned long)(p - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)((acc >> bits) & 0xFF);
    }
  }
  for (; i < n; i++)
    if (s[i] != '=') {
      free(out);
      return NULL;
    }
  *len = o;
  return out;
}

/* sim_fault_free: release `f` (NULL is fine) */
void sim_fault_free(sim_fault *f) {
  if (!f) return;
  free(f->method);
  free(f->path);
  free(f->body);
  free(f->content_type);
  free(f->location);
  json_decref(f->headers);
  json_decref(f->json);
  free(f);
}

/*
** bad: a parse error: the field into `field`, the message into `msg`;
** frees `f` and returns NULL.
*/
static sim_fault *bad(sim_fault *f, char *field, size_t fsize, const char *k, char *msg,
                      size_t msize, const char *text) {
  snprintf(field, fsize, "%s", k);
  snprintf(msg, msize, "%s", text);
  sim_fault_free(f);
  return NULL;
}

/*
** sim_fault_parse: the fault object `o` checked and parsed, with defaults
** (listener "api", times 1); NULL with the offending key in `field` and a
** message in `msg` when it is not a valid fault.
*/
sim_fault *sim_fault_parse(const json_t *o, char *field, size_t fsize, char *msg, size_t msize) {
  sim_fault *f;
  const char *k, *str;
  json_t *v;
  char got[128], text[400];
  if (!json_is_object(o)) {
    sim_describe(o, got, sizeof got);
    snprintf(text, sizeof text, "fault: expected an object; got %s", got);
    return bad(NULL, field, fsize, "fault", msg, msize, text);
  }
  if (!(f = calloc(1, sizeof *f)))
    return bad(NULL, field, fsize, "fault", msg, msize, "out of memory");
  f->listener = SIM_API;
  f->times = 1;
  f->delay_ms = -1;
  f->size = -1;
  json_object_foreach((json_t *)o, k, v) {
    int ok = 1;
    json_int_t n = json_integer_value(v);
    if (!sim_listed(fault_keys, k)) {
      snprintf(text, sizeof text, "%s: unknown fault key; allowed: listener, method, path, "
               "times, action, status, headers, body, body_base64, content_type, delay_ms, "
               "size, location", k);
      return bad(f, field, fsize, k, msg, msize, text);
    }
    str = json_string_value(v);
    if (strcmp(k, "listener") == 0) {
      ok = str && (strcmp(str, "api") == 0 || strcmp(str, "cdn") == 0);
      if (ok) f->listener = strcmp(str, "cdn") == 0 ? SIM_CDN : SIM_API;
    } else if (strcmp(k, "path") == 0) {
      ok = str && str[0] == '/' && (f->path = strdup(str)) != NULL;
    } else if (strcmp(k, "action") == 0) {
      size_t i;
      ok = 0;
      for (i = 0; str && kind_names[i]; i++)
        if (strcmp(kind_names[i], str) == 0) {
          f->kind = (sim_fault_kind)i;
          ok = 1;
        }
    } else if (strcmp(k, "method") == 0) {
      ok = str && str[0] && (f->method = strdup(str)) != NULL;
    } else if (strcmp(k, "times") == 0) {
      ok = json_is_integer(v) && n >= 1 && n <= 1000000;
      f->times = (long)n;
    } else if (strcmp(k, "status") == 0) {
      ok = json_is_integer(v) && n >= 100 && n <= 599;
      f->status = (unsigned)n;
    } else if (strcmp(k, "delay_ms") == 0) {
      ok = json_is_integer(v) && n >= 0 && n <= 600000;
      f->delay_ms = (long)n;
    } else if (strcmp(k, "size") == 0) {
      ok = json_is_integer(v) && n >= 0 && n <= 1000000000000LL;
      f->size = (long long)n;
    } else if (strcmp(k, "body") == 0) {
      ok = str && !f->has_body && (f->body = (unsigned char *)strdup(str)) != NULL;
      f->body_len = str ? json_string_length(v) : 0;
      f->has_body = 1;
    } else if (strcmp(k, "body_base64") == 0) {
      ok = str && !f->has_body && (f->body = base64_decode(str, &f->body_len)) != NULL;
      f->has_body = 1;
    } else if (strcmp(k, "content_type") == 0) {
      ok = str && no_crlf(str) && (f->content_type = strdup(str)) != NULL;
    } else if (strcmp(k, "location") == 0) {
      ok = str && no_crlf(str) && (f->location = strdup(str)) != NULL;
    } else if (strcmp(k, "headers") == 0) {
      const char *hk;
      json_t *hv;
      ok = json_is_object(v);
      json_object_foreach(v, hk, hv) {
        if (!json_is_string(hv) || !no_crlf(hk) || !no_crlf(json_string_value(hv)) ||
            !hk[0] || strchr(hk, ':') || strchr(hk, ' '))
          ok = 0;
      }
      if (ok) f->headers = json_incref(v);
    }
    if (!ok) {
      sim_describe(v, got, sizeof got);
      snprintf(text, sizeof text, "%s: invalid value %s; see the fault kinds in the "
               "simulator's documentation%s", k, got,
               strcmp(k, "body") == 0 || strcmp(k, "body_base64") == 0
               ? " (give body or body_base64, not both)" : "");
      return bad(f, field, fsize, k, msg, msize, text);
    }
  }
  if (!f->path || !json_object_get(o, "action")) {
    const char *missing = f->path ? "action" : "path";
    snprintf(text, sizeof text, "%s: required in a fault", missing);
    return bad(f, field, fsize, missing, msg, msize, text);
  }
  if (f->kind == SIM_FAULT_REDIRECT && !f->location)
    return bad(f, field, fsize, "location", msg, msize, "location: required for a redirect fault");
  f->json = json_deep_copy(o);
  if (!f->json) return bad(f, field, fsize, "fault", msg, msize, "out of memory");
  if (!json_object_get(f->json, "listener")) json_object_set_new(f->json, "listener", json_string("api"));
  json_object_set_new(f->json, "times", json_integer(f->times));
  return f;
}

/* sim_fault_copy: a new fault equal to `f` (parsed again from its JSON) */
static sim_fault *sim_fault_copy(const sim_fault *f) {
  char field[64], msg[400];
  return sim_fault_parse(f->json, field, sizeof field, msg, sizeof msg);
}

/*
** sim_fault_take_locked: the first pending fault of `s` matching listener
** `which`, `method` and `path` (prefix), as an own copy; the pending one
** loses one of its `times` and goes when none are left. NULL: no match.
*/
sim_fault *sim_fault_take_locked(sim_state *s, int which, const char *method, const char *path) {
  size_t i;
  for (i = 0; i < s->nfaults; i++) {
    sim_fault *f = s->faults[i];
    if (f->listener != which) continue;
    if (f->method && strcasecmp(f->method, method) != 0) continue;
    if (strncmp(path, f->path, strlen(f->path)) != 0) continue;
    if (f->times <= 1) {
      memmove(s->faults + i, s->faults + i + 1, (s->nfaults - i - 1) * sizeof *s->faults);
      s->nfaults--;
      return f;
    }
    f->times--;
    json_object_set_new(f->json, "times", json_integer(f->times));
    return sim_fault_copy(f);
  }
  return NULL;
}

/* sim_faults_clear_locked: drop every pending fault of `s` */
void sim_faults_clear_locked(sim_state *s) {
  size_t i;
  for (i = 0; i < s->nfaults; i++) sim_fault_free(s->faults[i]);
  s->nfaults = 0;
}

/* sim_faults_add_locked: append `f` (taken); -1 when out of memory (f freed) */
int sim_faults_add_locked(sim_state *s, sim_fault *f) {
  if (s->nfaults == s->cap_faults) {
    size_t ncap = s->cap_faults ? s->cap_faults * 2 : 16;
    sim_fault **nv = realloc(s->faults, ncap * sizeof *nv);
    if (!nv) {
      sim_fault_free(f);
      return -1;
    }
    s->faults = nv;
    s->cap_faults = ncap;
  }
  s->faults[s->nfaults++] = f;
  return 0;
}

/* sim_faults_json_locked: the pending faults as GET /__sim/faults lists them */
json_t *sim_faults_json_locked(sim_state *s) {
  json_t *data = json_array();
  size_t i;
  for (i = 0; i < s->nfaults; i++) json_array_append(data, s->faults[i]->json);
  return data;
}

/* sim_fault_header: the fault's header `name` (case-insensitive), or NULL */
const char *sim_fault_header(const sim_fault *f, const char *name) {
  const char *k;
  json_t *v;
  if (!f) return NULL;
  json_object_foreach(f->headers, k, v) {
    if (strcasecmp(k, name) == 0) return json_string_value(v);
  }
  return NULL;
}

/* ---- shaped bodies ---------------------------------------------------------- */

typedef enum stream_mode { MODE_SLICE, MODE_FILLER, MODE_DRIP, MODE_ZEROS_GZIP } stream_mode;

/* a body served from a callback */
typedef struct stream {
  sim_state *s;
  stream_mode mode;
  unsigned char *data;  /* SLICE, DRIP: the body; NULL for the others */
  int data_static;
  uint64_t len, cut;    /* bytes declared; SLICE: bytes sent before giving up */
  long delay_ms;        /* SLICE: silence before giving up; DRIP: between bytes */
  z_stream z;           /* ZEROS_GZIP */
  uint64_t fed;         /* ZEROS_GZIP: zero bytes fed so far */
  size_t prefix_len;    /* FILLER: bytes of data before the filler */
  int z_open, z_done;
} stream;

/*
** filler: the oversized body, bytes at `pos`: {"data":"xxxx...x"} of `len`
** bytes, or the fault's body (an MP4 box, say) followed by x's to `len`.
*/
static void filler(const stream *st, uint64_t pos, char *buf, size_t n) {
  static const char head[] = "{\"data\":\"";
  static const char tail[] = "\"}";
  size_t i;
  memset(buf, 'x', n);
  if (st->data) {
    for (i = 0; i < n && pos + i < st->prefix_len; i++) buf[i] = (char)st->data[pos + i];
    return;
  }
  if (st->len < sizeof head - 1 + sizeof tail - 1) return;
  for (i = 0; i < n; i++) {
    uint64_t at = pos + i;
    if (at < sizeof head - 1) buf[i] = head[at];
    else if (at >= st->len - (sizeof tail - 1)) buf[i] = tail[at - (st->len - (sizeof tail - 1))];
  }
}

/* zeros_gzip: the next compressed bytes of `st->len` zeros into buf (max) */
static ssize_t zeros_gzip(stream *st, char *buf, size_t max) {
  static const unsigned char zeros[65536];
  if (st->z_done) return MHD_CONTENT_READER_END_OF_STREAM;
  st->z.next_out = (unsigned char *)buf;
  st->z.avail_out = (uInt)(max > 1048576 ? 1048576 : max);
  while (st->z.avail_out > 0) {
    int rc, flush = Z_NO_FLUSH;
    if (st->z.avail_in == 0 && st->fed < st->len) {
      uint64_t n = st->len - st->fed < sizeof zeros ? st->len - st->fed : sizeof zeros;
      st->z.next_in = (unsigned char *)zeros;
      st->z.avail_in = (uInt)n;
      st->fed += n;
    }
    if (st->fed >= st->len && st->z.avail_in == 0) flush = Z_FINISH;
    rc = deflate(&st->z, flush);
    if (rc == Z_STREAM_END) {
      st->z_done = 1;
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  return (ssize_t)(st->z.next_out - (unsigned char *)buf);
}

/*
** stream_read: MHD content reader over a stream `cls`: bytes from `pos`
** into `buf` (at most `max`).
*/
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  stream *st = cls;
  size_t n;
  switch (st->mode) {
    case MODE_ZEROS_GZIP:
      return zeros_gzip(st, buf, max);
    case MODE_DRIP:
      if (pos >= st->len) return MHD_CONTENT_READER_END_OF_STREAM;
      if (pos > 0) {
        sim_sleep_ms(st->s, st->delay_ms);
        if (sim_stopping(st->s)) return MHD_CONTENT_READER_END_WITH_ERROR;
      }
      buf[0] = (char)st->data[pos];
      return 1;
    case MODE_FILLER:
    case MODE_SLICE:
      break;
  }
  /* at the cut: wait delay_ms once and end with an error, so the client sees
     a body shorter than declared */
  if (pos >= st->cut) {
    if (st->delay_ms > 0) {
      sim_sleep_ms(st->s, st->delay_ms);
      st->delay_ms = 0;
    }
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  n = (size_t)(st->cut - pos < max ? st->cut - pos : max);
  if (st->mode == MODE_FILLER) filler(st, pos, buf, n);
  else memcpy(buf, st->data + pos, n);
  return (ssize_t)n;
}

/* stream_free: MHD's free callback for the stream `cls` */
static void stream_free(void *cls) {
  stream *st = cls;
  if (st->data && !st->data_static) free(st->data);
  if (st->z_open) deflateEnd(&st->z);
  free(st);
}

/* stream_new: a stream over `data` (taken), or NULL (data freed) */
static stream *stream_new(sim_state *s, stream_mode mode, unsigned char *data, int data_static) {
  stream *st = calloc(1, sizeof *st);
  if (!st) {
    if (data && !data_static) free(data);
    return NULL;
  }
  st->s = s;
  st->mode = mode;
  st->data = data;
  st->data_static = data_static;
  return st;
}

/* from_stream: the MHD response reading `st` (MHD_SIZE_UNKNOWN: chunked) */
static struct MHD_Response *from_stream(stream *st, uint64_t declared) {
  struct MHD_Response *resp;
  if (!st) return NULL;
  resp = MHD_create_response_from_callback(declared, 64 * 1024, stream_read, st, stream_free);
  if (!resp) stream_free(st);
  return resp;
}

/*
** gzip_buffer: the `len` bytes at `p` as a gzip member in a new buffer
** (*out_len bytes), or NULL.
*/
static unsigned char *gzip_buffer(const unsigned char *p, size_t len, size_t *out_len) {
  z_stream z;
  unsigned char *out;
  size_t cap;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  cap = deflateBound(&z, (uLong)len) + 32;
  out = malloc(cap);
  if (!out) {
    deflateEnd(&z);
    return NULL;
  }
  z.next_in = (unsigned char *)p;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
    deflateEnd(&z);
    free(out);
    return NULL;
  }
  *out_len = cap - z.avail_out;
  deflateEnd(&z);
  return out;
}

/*
** sim_fault_response: the MHD response for the body `body` (`len` bytes;
** taken unless `body_static`) of a request that matched fault `f` (NULL:
** none), shaping it by the fault's kind; *status and *ct may be changed,
** *range gets a Content-Range value for partial (else ""), *gzip is set
** when the body is gzip-encoded. NULL when out of memory.
*/
struct MHD_Response *sim_fault_response(sim_state *s, const sim_fault *f, unsigned char *body,
                                        size_t len, int body_static, unsigned *status,
                                        const char **ct, char *range, size_t range_size,
                                        int *gzip) {
  stream *st;
  range[0] = '\0';
  *gzip = 0;
  switch (f ? (int)f->kind : -1) {
    case SIM_FAULT_INVALID_JSON:
      if (!body_static) free(body);
      body = (unsigned char *)"{\"id\": \"task_";
      body_static = 1;
      len = strlen((const char *)body);
      *ct = "application/json";
      break;
    case SIM_FAULT_WRONG_CONTENT_TYPE:
      *ct = "text/html";
      break;
    case SIM_FAULT_OVERSIZED: {
      uint64_t size = f->size >= 0 ? (uint64_t)f->size : 64000000ULL;
      if (!body_static) free(body);
      *status = 200;
      *ct = "application/json";
      st = stream_new(s, MODE_FILLER, NULL, 1);
      if (st && f->has_body) {
        /* the request's fault is freed before MHD is done: the stream keeps its own copy */
        st->data = malloc(f->body_len ? f->body_len : 1);
        st->data_static = 0;
        if (!st->data) {
          stream_free(st);
          return NULL;
        }
        memcpy(st->data, f->body, f->body_len);
        st->prefix_len = f->body_len;
      }
      if (st) st->len = st->cut = size;
      return from_stream(st, size);
    }
    case SIM_FAULT_STALL:
    case SIM_FAULT_TRUNCATE:
      st = stream_new(s, MODE_SLICE, body, body_static);
      if (st) {
        st->len = len;
        st->cut = len / 2;
        st->delay_ms = f->kind == SIM_FAULT_STALL ? (f->delay_ms >= 0 ? f->delay_ms : 1000) : 0;
      }
      return from_stream(st, len);
    case SIM_FAULT_DRIP:
      st = stream_new(s, MODE_DRIP, body, body_static);
      if (st) {
        st->len = len;
        st->delay_ms = f->delay_ms >= 0 ? f->delay_ms : 1000;
      }
      return from_stream(st, len);
    case SIM_FAULT_PARTIAL: {
      size_t part = f->size >= 0 ? (size_t)f->size : len / 100;
      if (part == 0 && len > 0) part = 1;
      if (part > len) part = len;
      if (len > 0) snprintf(range, range_size, "bytes 0-%zu/%zu", part - 1, len);
      else snprintf(range, range_size, "bytes */0");
      *status = f->status ? f->status : 206;
      len = part;
      break;
    }
    case SIM_FAULT_GZIP:
      *gzip = 1;
      if (f->size >= 0) {
        if (!body_static) free(body);
        st = stream_new(s, MODE_ZEROS_GZIP, NULL, 1);
        if (st) {
          st->len = (uint64_t)f->size;
          if (deflateInit2(&st->z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9,
                           Z_DEFAULT_STRATEGY) != Z_OK) {
            stream_free(st);
            return NULL;
          }
          st->z_open = 1;
        }
        return from_stream(st, MHD_SIZE_UNKNOWN);
      } else {
        size_t zlen;
        unsigned char *z = gzip_buffer(body, len, &zlen);
        if (!body_static) free(body);
        if (!z) return NULL;
        body = z;
        len = zlen;
        body_static = 0;
      }
      break;
    default:
      break;
  }
  {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
      len, body, body_static ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_FREE);
    if (!resp && !body_static) free(body);
    return resp;
  }
}

/*
** sim_fault_pad_header: a huge_header fault's padding into `resp`: one
** header X-Rivya-Sim-Pad of `size` bytes (200,000 by default); 0 or -1.
*/
int sim_fault_pad_header(const sim_fault *f, struct MHD_Response *resp) {
  size_t n = f->size >= 0 ? (size_t)f->size : 200000;
  char *pad;
  int rc;
  if (n > SIM_PAD_MAX) n = SIM_PAD_MAX;
  if (!(pad = malloc(n + 1))) return -1;
  memset(pad, 'p', n);
  pad[n] = '\0';
  rc = MHD_add_response_header(resp, "X-Rivya-Sim-Pad", pad) == MHD_YES ? 0 : -1;
  free(pad);
  return rc;
}
