/*
** cdn.c — the second listener, playing the CDN that serves results
** (videos, images, audio: result.c) and uploaded files. It needs no key; a request carrying Authorization is
** still answered, but counted (http.c) as the client bug it is.
*/
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
** serve_result: GET /videos/<id>.mp4, /images/<id>.png, /audio/<id>.mp3
** or .wav: the result of a succeeded task (`dir` is the folder asked).
*/
static void serve_result(sim_req *rq, const char *dir, const char *rest, sim_reply *r) {
  const char *dot = strrchr(rest, '.');
  char id[64];
  sim_task *t;
  int ok = 0, is_static = 0;
  unsigned char *data = NULL;
  size_t len = 0;
  const char *mime = NULL;
  if (dot && (size_t)(dot - rest) < sizeof id) {
    memcpy(id, rest, (size_t)(dot - rest));
    id[dot - rest] = '\0';
    sim_lock(rq->s);
    t = sim_task_find_locked(rq->s, id);
    if (t) sim_task_advance_locked(rq->s, t, 0);
    ok = t && t->status == SIM_SUCCEEDED && strcmp(t->ext, dot + 1) == 0 &&
         strcmp(sim_result_dir(t->ext), dir) == 0 &&
         sim_result_media(t, &data, &len, &is_static, &mime) == 0;
    sim_unlock(rq->s);
  }
  if (!ok) {
    sim_reply_error(rq, r, 404, "not_found", NULL, "no result at %s (the task is unknown or "
                   "has not succeeded)", rq->path);
    return;
  }
  r->status = 200;
  r->data = data;
  r->len = len;
  r->data_static = is_static;
  r->content_type = mime;
}

/*
** serve_file: GET /files/<id>/<name>, the uploaded bytes (copied: a reset
** may free the stored ones while the response is still going out).
*/
static void serve_file(sim_req *rq, const char *rest, sim_reply *r) {
  const char *slash = strchr(rest, '/');
  char id[64];
  sim_file *f;
  if (slash && (size_t)(slash - rest) < sizeof id) {
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    sim_lock(rq->s);
    f = sim_file_find_locked(rq->s, id);
    if (f && strcmp(f->name, slash + 1) == 0 && (r->data = malloc(f->size)) != NULL) {
      memcpy(r->data, f->data, f->size);
      r->len = f->size;
      r->status = 200;
      r->content_type = f->mime;   /* static string */
      sim_unlock(rq->s);
      return;
    }
    sim_unlock(rq->s);
  }
  sim_reply_error(rq, r, 404, "not_found", NULL, "no file at %s", rq->path);
}

/*
** sim_cdn: answer request `rq` of the CDN listener into `r`.
*/
void sim_cdn(sim_req *rq, struct MHD_Connection *c, sim_reply *r) {
  (void)c;
  if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
    sim_reply_error(rq, r, 405, "method_not_allowed", NULL, "the CDN only serves GET and HEAD");
    r->allow = "GET, HEAD";
    return;
  }
  if (strncmp(rq->path, "/videos/", 8) == 0) serve_result(rq, "videos", rq->path + 8, r);
  else if (strncmp(rq->path, "/images/", 8) == 0) serve_result(rq, "images", rq->path + 8, r);
  else if (strncmp(rq->path, "/audio/", 7) == 0) serve_result(rq, "audio", rq->path + 7, r);
  else if (strncmp(rq->path, "/files/", 7) == 0) serve_file(rq, rq->path + 7, r);
  else sim_reply_error(rq, r, 404, "not_found", NULL, "no such path on the CDN: %s", rq->path);
}
