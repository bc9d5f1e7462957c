/*
** cdn.c — the second listener, playing the CDN that serves result videos
** and uploaded files. It needs no key; a request carrying Authorization is
** still answered, but counted (http.c) as the client bug it is.
*/
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* serve_video: GET /videos/<task id>.mp4, the sample for a succeeded task */
static void serve_video(rv_req *rq, const char *rest, rv_reply *r) {
  size_t n = strlen(rest);
  char id[64];
  rv_task *t;
  int ok = 0;
  if (n > 4 && n - 4 < sizeof id && strcmp(rest + n - 4, ".mp4") == 0) {
    memcpy(id, rest, n - 4);
    id[n - 4] = '\0';
    rv_lock(rq->s);
    t = rv_task_find_locked(rq->s, id);
    if (t) rv_task_advance_locked(rq->s, t, 0);
    ok = t && t->status == RV_SUCCEEDED;
    rv_unlock(rq->s);
  }
  if (!ok) {
    rv_reply_error(rq, r, 404, "not_found", NULL, "no video at %s (the task is unknown or "
                   "has not succeeded)", rq->path);
    return;
  }
  r->status = 200;
  r->data = (unsigned char *)rv_sample_mp4;
  r->len = rv_sample_mp4_len;
  r->data_static = 1;
  r->content_type = "video/mp4";
}

/*
** serve_file: GET /files/<id>/<name>, the uploaded bytes (copied: a reset
** may free the stored ones while the response is still going out).
*/
static void serve_file(rv_req *rq, const char *rest, rv_reply *r) {
  const char *slash = strchr(rest, '/');
  char id[64];
  rv_file *f;
  if (slash && (size_t)(slash - rest) < sizeof id) {
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    rv_lock(rq->s);
    f = rv_file_find_locked(rq->s, id);
    if (f && strcmp(f->name, slash + 1) == 0 && (r->data = malloc(f->size)) != NULL) {
      memcpy(r->data, f->data, f->size);
      r->len = f->size;
      r->status = 200;
      r->content_type = f->mime;   /* static string */
      rv_unlock(rq->s);
      return;
    }
    rv_unlock(rq->s);
  }
  rv_reply_error(rq, r, 404, "not_found", NULL, "no file at %s", rq->path);
}

/*
** rv_cdn: answer request `rq` of the CDN listener into `r`.
*/
void rv_cdn(rv_req *rq, struct MHD_Connection *c, rv_reply *r) {
  (void)c;
  if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
    rv_reply_error(rq, r, 405, "method_not_allowed", NULL, "the CDN only serves GET and HEAD");
    r->allow = "GET, HEAD";
    return;
  }
  if (strncmp(rq->path, "/videos/", 8) == 0) serve_video(rq, rq->path + 8, r);
  else if (strncmp(rq->path, "/files/", 7) == 0) serve_file(rq, rq->path + 7, r);
  else rv_reply_error(rq, r, 404, "not_found", NULL, "no such path on the CDN: %s", rq->path);
}
