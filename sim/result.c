/*
** result.c — the media a succeeded task returns, chosen by its model's
** category: video the sample MP4 the repository ships (sample_mp4.c),
** image a PNG drawn here, audio an MP3 (silent MPEG-1 Layer III frames) or
** a WAV (a 440 Hz triangle tone) by the "format" param. Each is small,
** valid in full (PNG chunks with CRCs and zlib checksum, whole MP3 frames,
** RIFF sizes that add up) and the same for the same task.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
** sim_result_ext: the file extension of what a task of `m` with the
** normalized `params` returns: "png" for images, "mp3" or "wav" for
** audio (params.format, else the param's default, else mp3), else "mp4".
*/
const char *sim_result_ext(const sim_model *m, const json_t *params) {
  if (strcmp(m->category, "image") == 0) return "png";
  if (strcmp(m->category, "audio") == 0) {
    const json_t *f = json_object_get(params, "format");
    const json_t *p = sim_model_param(m, "format");
    if (!f && p) f = json_object_get(p, "default");
    return json_is_string(f) && strcmp(json_string_value(f), "wav") == 0 ? "wav" : "mp3";
  }
  return "mp4";
}

/* sim_result_dir: the CDN folder of results with extension `ext` */
const char *sim_result_dir(const char *ext) {
  if (strcmp(ext, "png") == 0) return "images";
  if (strcmp(ext, "mp3") == 0 || strcmp(ext, "wav") == 0) return "audio";
  return "videos";
}

/* put32be / put32le / put16le: integers into bytes */
static void put32be(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static void put32le(unsigned char *p, unsigned long v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void put16le(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

/* crc32: the CRC-32 (ISO-HDLC, PNG's) of the `n` bytes at `p` */
static unsigned long crc32(const unsigned char *p, size_t n) {
  unsigned long c = 0xFFFFFFFFUL;
  size_t i;
  int k;
  for (i = 0; i < n; i++) {
    c ^= p[i];
    for (k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320UL & (0UL - (c & 1)));
  }
  return (c ^ 0xFFFFFFFFUL) & 0xFFFFFFFFUL;
}

/* chunk: a PNG chunk of `type` with `len` data bytes at `out` (data in place at out+8) */
static size_t chunk(unsigned char *out, const char *type, size_t len) {
  put32be(out, (unsigned long)len);
  memcpy(out + 4, type, 4);
  put32be(out + 8 + len, crc32(out + 4, len + 4));
  return len + 12;
}

/* seed_of: a small hash of the task id, for colours */
static unsigned long seed_of(const char *id) {
  unsigned long h = 2166136261UL;
  for (; *id; id++) h = ((h ^ (unsigned char)*id) * 16777619UL) & 0xFFFFFFFFUL;
  return h;
}

/*
** make_png: a w x h RGB PNG (a gradient tinted by the task id), stored
** (uncompressed) deflate blocks in one IDAT; NULL when out of memory.
*/
static unsigned char *make_png(const char *id, unsigned w, unsigned h, size_t *len) {
  static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A };
  size_t row = 1 + 3 * (size_t)w, raw_len = row * h;
  size_t blocks = (raw_len + 65534) / 65535, idat = 2 + raw_len + 5 * blocks + 4;
  size_t total = 8 + 25 + (12 + idat) + 12, o, done = 0;
  unsigned long seed = seed_of(id), a = 1, b = 0;
  unsigned char *out = malloc(total), *raw, *d;
  unsigned x, y;
  if (!out) return NULL;
  memcpy(out, sig, 8);
  o = 8;
  put32be(out + o + 8, w);
  put32be(out + o + 12, h);
  out[o + 16] = 8;    /* bit depth */
  out[o + 17] = 2;    /* truecolour */
  out[o + 18] = out[o + 19] = out[o + 20] = 0;
  o += chunk(out + o, "IHDR", 13);
  /* the raw scanlines go where the deflate stream needs them: build then copy */
  raw = malloc(raw_len);
  if (!raw) {
    free(out);
    return NULL;
  }
  for (y = 0; y < h; y++) {
    unsigned char *r = raw + (size_t)y * row;
    r[0] = 0;   /* filter: none */
    for (x = 0; x < w; x++) {
      r[1 + 3 * x] = (unsigned char)((x * 255 / (w > 1 ? w - 1 : 1) + (seed & 0xFF)) & 0xFF);
      r[2 + 3 * x] = (unsigned char)((y * 255 / (h > 1 ? h - 1 : 1) + ((seed >> 8) & 0xFF)) & 0xFF);
      r[3 + 3 * x] = (unsigned char)((seed >> 16) & 0xFF);
    }
  }
  d = out + o + 8;
  d[0] = 0x78;   /* zlib: deflate, 32 KiB window */
  d[1] = 0x01;
  d += 2;
  while (done < raw_len) {
    size_t n = raw_len - done > 65535 ? 65535 : raw_len - done;
    d[0] = done + n == raw_len ? 1 : 0;   /* BFINAL, stored */
    put16le(d + 1, (unsigned)n);
    put16le(d + 3, (unsigned)(~n & 0xFFFF));
    memcpy(d + 5, raw + done, n);
    d += 5 + n;
    done += n;
  }
  for (done = 0; done < raw_len; done++) {
    a = (a + raw[done]) % 65521;
    b = (b + a) % 65521;
  }
  put32be(d, (b << 16) | a);
  free(raw);
  o += chunk(out + o, "IDAT", idat);
  o += chunk(out + o, "IEND", 0);
  *len = o;
  return out;
}

/* png_size: the preview size for params.size "WxH": a sixteenth each way */
static void png_size(const json_t *params, unsigned *w, unsigned *h) {
  const char *s = json_string_value(json_object_get(params, "size"));
  unsigned pw, ph;
  *w = *h = 64;
  if (s && sscanf(s, "%ux%u", &pw, &ph) == 2 && pw >= 16 && ph >= 16 && pw <= 8192 &&
      ph <= 8192) {
    *w = pw / 16;
    *h = ph / 16;
  }
}

/*
** make_mp3: `frames` silent MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz,
** mono (417 bytes each, side info and main data all zero), behind an
** ID3v2.4 header with no frames.
*/
static unsigned char *make_mp3(unsigned frames, size_t *len) {
  static const unsigned char id3[10] = { 'I', 'D', '3', 4, 0, 0, 0, 0, 0, 0 };
  static const unsigned char hdr[4] = { 0xFF, 0xFB, 0x90, 0xC4 };
  size_t total = sizeof id3 + (size_t)frames * 417, i;
  unsigned char *out = calloc(1, total);
  if (!out) return NULL;
  memcpy(out, id3, sizeof id3);
  for (i = 0; i < frames; i++) memcpy(out + sizeof id3 + i * 417, hdr, sizeof hdr);
  *len = total;
  return out;
}

/* make_wav: one second of a 440 Hz triangle tone, 8 kHz 16-bit mono PCM */
static unsigned char *make_wav(size_t *len) {
  enum { RATE = 8000, SAMPLES = 8000 };
  size_t total = 44 + 2 * SAMPLES, i;
  unsigned char *out = malloc(total);
  if (!out) return NULL;
  memcpy(out, "RIFF", 4);
  put32le(out + 4, (unsigned long)(total - 8));
  memcpy(out + 8, "WAVEfmt ", 8);
  put32le(out + 16, 16);
  put16le(out + 20, 1);           /* PCM */
  put16le(out + 22, 1);           /* mono */
  put32le(out + 24, RATE);
  put32le(out + 28, RATE * 2);    /* byte rate */
  put16le(out + 32, 2);           /* block align */
  put16le(out + 34, 16);          /* bits per sample */
  memcpy(out + 36, "data", 4);
  put32le(out + 40, 2 * SAMPLES);
  for (i = 0; i < SAMPLES; i++) {
    long phase = (long)((i * 1760UL) % 32000);   /* 440 Hz at 8 kHz: 0..31999 */
    long v = phase < 16000 ? phase - 8000 : 24000 - phase;       /* -8000..8000 */
    put16le(out + 44 + 2 * i, (unsigned)(v & 0xFFFF));
  }
  *len = total;
  return out;
}

/*
** sim_result_media: the bytes of the result of succeeded task `t` into
** *data / *len (*is_static: the shared sample, not to be freed) and its
** MIME type; 0, or -1 when out of memory.
*/
int sim_result_media(const sim_task *t, unsigned char **data, size_t *len, int *is_static,
                     const char **mime) {
  *is_static = 0;
  if (strcmp(t->ext, "png") == 0) {
    unsigned w, h;
    png_size(t->params, &w, &h);
    *mime = "image/png";
    *data = make_png(t->id, w, h, len);
  } else if (strcmp(t->ext, "mp3") == 0) {
    *mime = "audio/mpeg";
    *data = make_mp3(38, len);
  } else if (strcmp(t->ext, "wav") == 0) {
    *mime = "audio/wav";
    *data = make_wav(len);
  } else {
    *mime = "video/mp4";
    *data = (unsigned char *)sim_sample_mp4;
    *len = sim_sample_mp4_len;
    *is_static = 1;
  }
  return *data ? 0 : -1;
}
