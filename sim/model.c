/*
** model.c — the models rivya-sim knows, as data. The validator (validate.c)
** and the Files API (upload.c) interpret these tables; adding a model is
** adding a table here. Values follow /work/shared/seed/wan-2-7-video.txt.
*/
#include <string.h>

#include "sim.h"

static const char *const resolutions[] = { "720p", "1080p", NULL };
static const char *const durations[] = { "5", "10", "15", NULL };
static const char *const aspect_ratios[] = {
  "16:9", "9:16", "1:1", "4:3", "3:4", NULL
};
static const char *const true_false[] = { "true", "false", NULL };
static const char *const false_true[] = { "false", "true", NULL };
static const char *const audio_settings[] = { "auto", "origin", NULL };

static const rv_param wan_params[] = {
  { "resolution", RV_PARAM_SELECT, resolutions, 0, 0 },
  { "duration", RV_PARAM_SELECT, durations, 0, 0 },
  { "aspect_ratio", RV_PARAM_SELECT, aspect_ratios, 0, 0 },
  { "negative_prompt", RV_PARAM_TEXT, NULL, 0, 0 },
  { "prompt_extend", RV_PARAM_SELECT, true_false, 0, 0 },
  { "watermark", RV_PARAM_SELECT, false_true, 0, 0 },
  { "audio_setting", RV_PARAM_SELECT, audio_settings, 0, 0 },
  { "seed", RV_PARAM_INTEGER, NULL, 0, 2147483647LL },
  { "referenceMediaItems", RV_PARAM_REFERENCES, NULL, 0, 0 },
  { NULL, RV_PARAM_TEXT, NULL, 0, 0 }
};

static const char *const image_mimes[] = {
  "image/jpeg", "image/png", "image/webp", NULL
};
static const char *const video_mimes_default[] = {
  "video/mp4", "video/quicktime", "video/webm", NULL
};
static const char *const video_mimes_wan[] = {
  "video/mp4", "video/quicktime", NULL
};
static const char *const audio_mimes[] = {
  "audio/mpeg", "audio/mp4", "audio/wav", "audio/x-wav", "audio/aac",
  "audio/ogg", NULL
};

static const rv_upload_rule default_uploads[] = {
  { "image", 10 * RV_MB, image_mimes },
  { "video", 50 * RV_MB, video_mimes_default },
  { "audio", 10 * RV_MB, audio_mimes },
  { NULL, 0, NULL }
};

/* wan-2-7-video takes no audio: the kind is simply absent */
static const rv_upload_rule wan_uploads[] = {
  { "image", 20 * RV_MB, image_mimes },
  { "video", 95 * RV_MB, video_mimes_wan },
  { NULL, 0, NULL }
};

static const rv_model models[] = {
  { "wan-2-7-video", "Wan 2.7 Video", "video", 80, 5000, wan_params,
    2, 2, 1, "10", wan_uploads },
};

/*
** rv_model_find: the model whose id is `id`, or NULL.
*/
const rv_model *rv_model_find(const char *id) {
  size_t i;
  for (i = 0; i < sizeof models / sizeof models[0]; i++)
    if (strcmp(models[i].id, id) == 0) return &models[i];
  return NULL;
}

/*
** rv_model_at: the i-th model (0-based) for listings, NULL past the end.
*/
const rv_model *rv_model_at(size_t i) {
  return i < sizeof models / sizeof models[0] ? &models[i] : NULL;
}

/*
** rv_default_uploads: the Files API rules when the upload names no model.
*/
const rv_upload_rule *rv_default_uploads(void) {
  return default_uploads;
}

/*
** rv_upload_rule_for: the rule for `kind` in `rules`, NULL when that kind is
** not accepted there.
*/
const rv_upload_rule *rv_upload_rule_for(const rv_upload_rule *rules,
                                         const char *kind) {
  for (; rules->kind; rules++)
    if (strcmp(rules->kind, kind) == 0) return rules;
  return NULL;
}

/*
** rv_listed: 1 when `s` is in the NULL-terminated string list `list`
** (option lists, MIME lists, allowed keys).
*/
int rv_listed(const char *const *list, const char *s) {
  for (; *list; list++)
    if (strcmp(*list, s) == 0) return 1;
  return 0;
}
