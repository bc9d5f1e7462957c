/*
** upload.c — POST /api/v1/files: the multipart body streamed through MHD's
** post processor, the real file type sniffed from its first bytes, the
** size rules of model.c, the MP4 duration from moov/mvhd, and the stored
** file with its duration token and SHA-256.
**
** The file part arrives in pieces of any size. It is kept in memory only up
** to the largest limit still possible given the fields seen so far; past
** it the bytes are counted and dropped, so a huge upload costs no memory.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "sim.h"

static const char *const upload_kinds[] = { "image", "video", "audio", NULL };

#define HEAD_MAX 64   /* bytes kept for sniffing even when the rest is dropped */

/* one text field of the form */
typedef struct form_field {
  char v[SIM_FIELD_MAX + 1];
  size_t len;
  int seen, too_long;
} form_field;

struct sim_upload {
  sim_req *rq;
  struct MHD_PostProcessor *pp;
  int pp_failed;
  /* the first problem met while streaming */
  int has_err;
  char err_field[64];
  char err[512];
  /* the file part */
  int file_started;
  char *filename;
  unsigned char *data;
  size_t len, cap;
  unsigned long long size;      /* bytes seen, kept or not */
  int dropped;                  /* past the provisional limit: data freed */
  unsigned char head[HEAD_MAX];
  size_t head_len;
  form_field kind, model, client_request_id;
  char *idem;                   /* the Idempotency-Key header, or NULL */
};

/* note: keep the first streaming error of `up` */
static void note(struct sim_upload *up, const char *field, const char *msg) {
  if (up->has_err) return;
  up->has_err = 1;
  snprintf(up->err_field, sizeof up->err_field, "%s", field);
  snprintf(up->err, sizeof up->err, "%s", msg);
}

/*
** provisional_limit: the most bytes the file may still turn out to be
** allowed, from the kind and model fields seen so far (they may come
** after the file).
*/
static long long provisional_limit(const struct sim_upload *up) {
  const sim_catalog *c = up->rq->s->catalog;
  const char *kind = up->kind.seen ? up->kind.v : NULL;
  const sim_model *m = up->model.seen ? sim_model_find(c, up->model.v) : NULL;
  if (up->model.seen && !m) return sim_upload_max(c, NULL, kind);   /* refused later */
  return sim_upload_max(c, m, kind);
}

/* take_file_bytes: append `size` bytes of the file part, or just count them */
static void take_file_bytes(struct sim_upload *up, const char *data, size_t size) {
  if (up->head_len < HEAD_MAX) {
    size_t n = HEAD_MAX - up->head_len < size ? HEAD_MAX - up->head_len : size;
    memcpy(up->head + up->head_len, data, n);
    up->head_len += n;
  }
  up->size += size;
  if (up->dropped) return;
  if ((long long)up->size > provisional_limit(up)) {
    free(up->data);
    up->data = NULL;
    up->len = up->cap = 0;
    up->dropped = 1;
    return;
  }
  if (up->len + size > up->cap) {
    size_t ncap = up->cap ? up->cap : 64 * 1024;
    unsigned char *nd;
    while (ncap < up->len + size) ncap *= 2;
    nd = realloc(up->data, ncap);
    if (!nd) {
      free(up->data);
      up->data = NULL;
      up->len = up->cap = 0;
      up->dropped = 1;
      note(up, "file", "file: the simulator ran out of memory storing it");
      return;
    }
    up->data = nd;
    up->cap = ncap;
  }
  memcpy(up->data + up->len, data, size);
  up->len += size;
}

/* take_field_bytes: append to a text field, remembering when it overflows */
static void take_field_bytes(form_field *f, const char *data, size_t size) {
  f->seen = 1;
  if (f->len + size > SIM_FIELD_MAX) {
    f->too_long = 1;
    return;
  }
  memcpy(f->v + f->len, data, size);
  f->len += size;
  f->v[f->len] = '\0';
}

/*
** on_part: MHD's post-data iterator, called for each piece of each part.
** Problems are noted rather than returned: MHD_NO would stop the parse
** and the client would get no useful answer.
*/
static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size) {
  struct sim_upload *up = cls;
  (void)kind;
  (void)content_type;
  (void)transfer_encoding;
  if (!key) return MHD_YES;
  if (strcmp(key, "file") == 0) {
    if (!filename || !filename[0]) {
      note(up, "file", "file: expected a file part with a filename "
           "(Content-Disposition: form-data; name=\"file\"; filename=\"...\")");
      return MHD_YES;
    }
    if (off == 0 && up->file_started && up->size > 0) {
      note(up, "file", "file: given more than once; upload one file per request");
      return MHD_YES;
    }
    if (!up->file_started) {
      up->file_started = 1;
      up->filename = sim_clean_dup(filename);
    }
    if (size > 0) take_file_bytes(up, data, size);
    return MHD_YES;
  }
  if (strcmp(key, "kind") == 0) take_field_bytes(&up->kind, data, size);
  else if (strcmp(key, "model") == 0) take_field_bytes(&up->model, data, size);
  else if (strcmp(key, "client_request_id") == 0)
    take_field_bytes(&up->client_request_id, data, size);
  else {
    char msg[256];
    char *clean = sim_clean_dup(key);
    snprintf(msg, sizeof msg, "%s: unknown form field; allowed: file, kind, model, "
             "client_request_id", clean ? clean : "?");
    note(up, clean ? clean : "?", msg);
    free(clean);
  }
  return MHD_YES;
}

/*
** sim_upload_new: the upload state of request `rq` on `c`. A body that is
** not multipart/form-data is noted as an error and drained.
*/
struct sim_upload *sim_upload_new(sim_req *rq, struct MHD_Connection *c) {
  struct sim_upload *up = calloc(1, sizeof *up);
  const char *ct = sim_header(c, "Content-Type");
  const char *idem = sim_header(c, "Idempotency-Key");
  if (!up) return NULL;
  up->rq = rq;
  if (idem) {   /* the rule of creates */
    char why[160];
    if (sim_idem_key_check(idem, why, sizeof why) != 0) note(up, "Idempotency-Key", why);
    else if (!(up->idem = strdup(idem))) note(up, "Idempotency-Key", "Idempotency-Key: out of memory");
  }
  if (!sim_media_type_is(ct, "multipart/form-data")) {
    char msg[320];
    char *clean = sim_clean_dup(ct);
    snprintf(msg, sizeof msg, "Content-Type: expected multipart/form-data; got %s%s%s",
             clean ? "\"" : "", clean ? clean : "none", clean ? "\"" : "");
    free(clean);
    note(up, "Content-Type", msg);
    return up;
  }
  up->pp = MHD_create_post_processor(c, 64 * 1024, on_part, up);
  if (!up->pp) note(up, "Content-Type", "Content-Type: multipart/form-data needs a boundary");
  return up;
}

/* sim_upload_feed: `size` more body bytes at `data` */
void sim_upload_feed(struct sim_upload *up, const char *data, size_t size) {
  if (!up->pp || up->pp_failed) return;
  if (MHD_post_process(up->pp, data, size) != MHD_YES) up->pp_failed = 1;
}

/* sim_upload_free: release upload `up` (NULL is fine) and its buffers */
void sim_upload_free(struct sim_upload *up) {
  if (!up) return;
  if (up->pp) MHD_destroy_post_processor(up->pp);
  free(up->idem);
  free(up->filename);
  free(up->data);
  free(up);
}

/*
** url_encode: `name` percent-encoded (all but RFC 3986 unreserved), a new
** string or NULL when out of memory.
*/
static char *url_encode(const char *name) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  char *out = malloc(3 * strlen(name) + 1);
  if (!out) return NULL;
  for (; *name; name++) {
    unsigned char ch = (unsigned char)*name;
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out[o++] = (char)ch;
    } else {
      out[o++] = '%';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    }
  }
  out[o] = '\0';
  return out;
}

/*
** check_form: the rules on the form `up` once complete: the fields, the
** sniffed type against kind, the model's MIME list and size limit. 0 with
** *rule_out / *mime_out / *model_out set, or -1 with the error in `r`.
*/
static int check_form(sim_req *rq, struct sim_upload *up, sim_reply *r, const char **mime_out,
                      const sim_model **model_out) {
  sim_upload_rule rule;
  const sim_model *m = NULL;
  char ids[512];
  const char *mime, *sniffed;
  char list[256];
  size_t used = 0;
  if (up->has_err) {
    sim_reply_error(rq, r, 400, "validation_failed", up->err_field, "%s", up->err);
    return -1;
  }
  if (up->pp_failed) {
    sim_reply_error(rq, r, 400, "validation_failed", "body",
                   "body: malformed multipart/form-data");
    return -1;
  }
  if (!up->kind.seen || up->kind.too_long || !sim_listed(upload_kinds, up->kind.v)) {
    char *clean = sim_clean_dup(up->kind.v);
    sim_reply_error(rq, r, 400, "validation_failed", "kind",
                   "kind: required, one of \"image\", \"video\", \"audio\"; got %s%s%s",
                   up->kind.seen ? "\"" : "", up->kind.seen && clean ? clean : "nothing",
                   up->kind.seen ? "\"" : "");
    free(clean);
    return -1;
  }
  if (up->model.seen) {
    m = up->model.too_long ? NULL : sim_model_find(rq->s->catalog, up->model.v);
    if (!m) {
      char *clean = sim_clean_dup(up->model.v);
      sim_reply_error(rq, r, 400, "validation_failed", "model",
                     "model: unknown model \"%s\"; known: %s", clean ? clean : "?",
                     sim_model_ids(rq->s->catalog, 0, ids, sizeof ids));
      free(clean);
      return -1;
    }
  }
  if (up->client_request_id.seen) {
    long n = sim_utf8_count(up->client_request_id.v, up->client_request_id.len);
    if (up->client_request_id.too_long || n < 0 || n > SIM_CLIENT_ID_MAX) {
      sim_reply_error(rq, r, 400, "validation_failed", "client_request_id",
                     "client_request_id: at most %d characters", SIM_CLIENT_ID_MAX);
      return -1;
    }
  }
  if (!up->file_started) {
    sim_reply_error(rq, r, 400, "validation_failed", "file",
                   "file: required, a file part with a filename (curl -F file=@path)");
    return -1;
  }
  if (up->size == 0) {
    sim_reply_error(rq, r, 400, "validation_failed", "file", "file: the file is empty (0 bytes)");
    return -1;
  }
  mime = sim_sniff(up->head, up->head_len, &sniffed);
  if (!mime) {
    sim_reply_error(rq, r, 400, "validation_failed", "file",
                   "file: unrecognized file type: the first bytes match none of JPEG, PNG, "
                   "WebP, MP4, QuickTime, WebM, MP3, WAV, OGG, AAC, M4A");
    return -1;
  }
  if (strcmp(sniffed, up->kind.v) != 0) {
    sim_reply_error(rq, r, 400, "validation_failed", "kind",
                   "kind: the file is %s %s (%s by its signature) but kind is \"%s\"",
                   sniffed[0] == 'i' || sniffed[0] == 'a' ? "an" : "a", sniffed, mime,
                   up->kind.v);
    return -1;
  }
  if (sim_upload_rule_get(m, up->kind.v, &rule) != 0) {
    sim_reply_error(rq, r, 400, "validation_failed", "kind",
                   "kind: %s files are not accepted for model %s", up->kind.v,
                   m ? m->id : "(none)");
    return -1;
  }
  if (!sim_mime_listed(&rule, mime)) {
    size_t i;
    list[0] = '\0';
    for (i = 0; i < rule.nmimes && used < sizeof list; i++) {
      int k = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", rule.mimes[i]);
      if (k < 0) break;
      used += (size_t)k;
    }
    sim_reply_error(rq, r, 400, "validation_failed", "file",
                   "file: %s is not accepted for %s uploads%s%s (accepted: %s)", mime,
                   up->kind.v, m ? " to " : "", m ? m->id : "", list);
    return -1;
  }
  if ((long long)up->size > rule.max_bytes) {
    sim_reply_error(rq, r, 400, "validation_failed", "file",
                   "file: %llu bytes is over the %lld MB (%lld bytes) limit for %s uploads%s%s",
                   up->size, rule.max_bytes / SIM_MB, rule.max_bytes, up->kind.v,
                   m ? " to " : "", m ? m->id : "");
    return -1;
  }
  if (up->dropped || !up->data) {
    sim_reply_error(rq, r, 500, "internal_error", "file", "file: could not be stored");
    return -1;
  }
  *mime_out = mime;
  *model_out = m;
  return 0;
}

/* find_idem_file_locked: the file uploaded by `owner` with Idempotency-Key `k` */
static sim_file *find_idem_file_locked(sim_state *s, const char *owner, const char *k) {
  size_t i;
  for (i = 0; i < s->nfiles; i++) {
    sim_file *f = s->files[i];
    if (f->idem_key && strcmp(f->idem_key, k) == 0 && strcmp(f->owner, owner) == 0) return f;
  }
  return NULL;
}

/*
** sim_upload_finish: the whole body of upload `up` (request `rq`) has
** arrived: check it, store the file and answer 201 with its object in `r`.
*/
void sim_upload_finish(sim_req *rq, struct sim_upload *up, sim_reply *r) {
  const char *mime;
  const sim_model *m;
  double duration = -1;
  char sha[65], *enc, *url;
  size_t url_len;
  sim_state *s = rq->s;
  sim_file *f;
  if (up->pp) {
    if (MHD_destroy_post_processor(up->pp) != MHD_YES) up->pp_failed = 1;
    up->pp = NULL;
  }
  if (check_form(rq, up, r, &mime, &m) != 0) return;
  if (strcmp(up->kind.v, "video") == 0) {
    int webm = strcmp(mime, "video/webm") == 0;
    duration = webm ? sim_webm_duration(up->data, up->len) : sim_mp4_duration(up->data, up->len);
    if (duration < 0) {
      sim_reply_error(rq, r, 400, "validation_failed", "file",
                     "file: cannot read the video's duration (%s)",
                     webm ? "no Segment/Info/Duration element" : "no readable moov/mvhd box");
      return;
    }
  }
  rv_sha256_hex(up->data, up->len, sha);
  sim_lock(s);
  /* an upload retried with its Idempotency-Key stores nothing twice */
  if (up->idem && (f = find_idem_file_locked(s, rq->caller.key, up->idem)) != NULL) {
    if (strcmp(f->sha256, sha) == 0 && strcmp(f->kind, up->kind.v) == 0) {
      s->idempotent_replays++;
      sim_reply_json(r, 201, sim_file_json(f));
      r->replayed = 1;
    } else {
      sim_reply_error(rq, r, 409, "idempotency_conflict", "Idempotency-Key",
                     "Idempotency-Key \"%s\" was already used for another upload (file %s); "
                     "use a new key for a new upload", up->idem, f->id);
    }
    sim_unlock(s);
    return;
  }
  f = sim_file_add_locked(s);
  if (!f || !(f->owner = strdup(rq->caller.key))) {
    if (f) s->nfiles--, free(f);
    sim_unlock(s);
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    return;
  }
  f->name = up->filename ? up->filename : strdup("file");
  up->filename = NULL;
  enc = f->name ? url_encode(f->name) : NULL;
  url_len = strlen(s->cdn_base) + strlen(f->id) + (enc ? strlen(enc) : 0) + 16;
  url = malloc(url_len);
  if (url) snprintf(url, url_len, "%s/files/%s/%s", s->cdn_base, f->id, enc ? enc : "");
  free(enc);
  f->url = url;
  if (!f->name || !f->url) {
    s->nfiles--;
    free(f->name);
    free(f->url);
    free(f->owner);
    free(f);
    sim_unlock(s);
    sim_reply_error(rq, r, 500, "internal_error", NULL, "out of memory");
    return;
  }
  memcpy(f->kind, up->kind.v, strlen(up->kind.v) + 1);   /* checked: a listed kind */
  f->mime = mime;
  f->data = up->data;
  f->size = up->len;
  up->data = NULL;
  f->duration = duration;
  if (duration >= 0) {
    memcpy(f->token, "dt_", 3);
    sim_random_hex_locked(s, f->token + 3, 16);
  }
  memcpy(f->sha256, sha, sizeof f->sha256);
  f->idem_key = up->idem;
  up->idem = NULL;
  (void)m;
  sim_reply_json(r, 201, sim_file_json(f));
  sim_unlock(s);
}
