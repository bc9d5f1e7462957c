/*
** media.c — what rivya-sim reads from uploaded bytes: the real type from
** the file signature (sim_sniff), an MP4/QuickTime duration from moov/mvhd
** and a WebM duration from Segment/Info. An independent implementation of
** the rules the client applies in src/sniff.c: the two are compared by
** the specs, never shared.
*/
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "sim.h"

/*
** sim_sniff: the MIME type of the `n` bytes at `p` from their signature,
** with *kind set to "image", "video" or "audio"; NULL when unrecognized.
*/
const char *sim_sniff(const unsigned char *p, size_t n, const char **kind) {
  static const unsigned char png[8] = { 0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A };
  *kind = "image";
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return "image/jpeg";
  if (n >= 8 && memcmp(p, png, 8) == 0) return "image/png";
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return "image/webp";
  *kind = "audio";
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WAVE", 4) == 0)
    return "audio/wav";
  /* MPEG-4 audio brands: M4A (music), M4B (audiobooks); .m4b is audio/mp4 */
  if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0 &&
      (memcmp(p + 8, "M4A ", 4) == 0 || memcmp(p + 8, "M4B ", 4) == 0))
    return "audio/mp4";
  if (n >= 4 && memcmp(p, "OggS", 4) == 0) return "audio/ogg";
  if (n >= 3 && memcmp(p, "ID3", 3) == 0) return "audio/mpeg";
  /* ADTS has layer bits 00 (FF F0/F1/F8/F9); MPEG audio frames do not */
  if (n >= 2 && p[0] == 0xFF && (p[1] & 0xF6) == 0xF0) return "audio/aac";
  if (n >= 2 && p[0] == 0xFF && (p[1] & 0xE0) == 0xE0) return "audio/mpeg";
  *kind = "video";
  if (n >= 12 && memcmp(p + 4, "ftyp", 4) == 0)
    return memcmp(p + 8, "qt  ", 4) == 0 ? "video/quicktime" : "video/mp4";
  if (n >= 4 && p[0] == 0x1A && p[1] == 0x45 && p[2] == 0xDF && p[3] == 0xA3)
    return "video/webm";
  *kind = NULL;
  return NULL;
}

/* be32, be64: big-endian integers at `p`, as ISO-BMFF stores them */
static uint64_t be32(const unsigned char *p) {
  return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
}

static uint64_t be64(const unsigned char *p) {
  return (be32(p) << 32) | be32(p + 4);
}

/*
** find_box: the payload of the first ISO-BMFF box of `type` among the
** boxes filling the `n` bytes at `p`: 0 with *payload / *plen set, or -1.
** Handles 64-bit sizes (size 1) and to-the-end boxes (size 0).
*/
static int find_box(const unsigned char *p, size_t n, const char *type,
                    const unsigned char **payload, size_t *plen) {
  size_t off = 0;
  while (n - off >= 8) {
    uint64_t size = be32(p + off);
    size_t header = 8;
    if (size == 1) {
      if (n - off < 16) return -1;
      size = be64(p + off + 8);
      header = 16;
    } else if (size == 0) {
      size = n - off;
    }
    if (size < header || size > n - off) return -1;
    if (memcmp(p + off + 4, type, 4) == 0) {
      *payload = p + off + header;
      *plen = (size_t)size - header;
      return 0;
    }
    off += (size_t)size;
  }
  return -1;
}

/*
** sim_mp4_duration: the duration in seconds from moov/mvhd of the MP4 or
** QuickTime file in the `n` bytes at `p`, or -1 when it cannot be read.
** Version 0 mvhd has 32-bit times, version 1 64-bit ones.
*/
double sim_mp4_duration(const unsigned char *p, size_t n) {
  const unsigned char *moov, *mvhd;
  size_t moov_len, mvhd_len;
  uint64_t timescale, duration;
  if (find_box(p, n, "moov", &moov, &moov_len) != 0) return -1;
  if (find_box(moov, moov_len, "mvhd", &mvhd, &mvhd_len) != 0) return -1;
  if (mvhd_len >= 1 && mvhd[0] == 1) {
    if (mvhd_len < 32) return -1;
    timescale = be32(mvhd + 20);
    duration = be64(mvhd + 24);
  } else {
    if (mvhd_len < 20) return -1;
    timescale = be32(mvhd + 12);
    duration = be32(mvhd + 16);
  }
  if (timescale == 0) return -1;
  return (double)duration / (double)timescale;
}

/*
** ebml_vint: the EBML variable-length integer at `p` (`n` bytes left): its
** length into *len and value into *val, the length marker kept for element
** ids (`id`) and dropped for sizes, where all-ones means "unknown size"
** (UINT64_MAX). 0 ok, -1 malformed.
*/
static int ebml_vint(const unsigned char *p, size_t n, int id, size_t *len, uint64_t *val) {
  unsigned mask = 0x80;
  size_t l = 1, i;
  uint64_t v, ones;
  if (n == 0) return -1;
  while (l <= 8 && !(p[0] & mask)) {
    mask >>= 1;
    l++;
  }
  if (l > 8 || l > n) return -1;
  v = id ? p[0] : (p[0] & (mask - 1));
  ones = mask - 1;
  for (i = 1; i < l; i++) {
    v = (v << 8) | p[i];
    ones = (ones << 8) | 0xFF;
  }
  *len = l;
  *val = (!id && v == ones) ? UINT64_MAX : v;
  return 0;
}

/*
** sim_webm_duration: the duration in seconds of the WebM (Matroska) file in
** the `n` bytes at `p`, from Segment/Info: Duration (a float in units of
** TimecodeScale nanoseconds, 1 ms by default); -1 when it cannot be read.
*/
double sim_webm_duration(const unsigned char *p, size_t n) {
  size_t off = 0, end = n, l1, l2;
  uint64_t id, size, scale = 1000000;
  double duration = -1;
  int in_segment = 0, in_info = 0;
  while (off < end) {
    if (ebml_vint(p + off, end - off, 1, &l1, &id) != 0) return -1;
    if (ebml_vint(p + off + l1, end - off - l1, 0, &l2, &size) != 0) return -1;
    off += l1 + l2;
    if (size == UINT64_MAX) size = end - off;   /* unknown size: to the end */
    if (size > end - off) return -1;
    if (!in_segment && id == 0x18538067) {        /* Segment: go inside */
      in_segment = 1;
      end = off + (size_t)size;
      continue;
    }
    if (in_segment && !in_info && id == 0x1549A966) {   /* Info: go inside */
      in_info = 1;
      end = off + (size_t)size;
      continue;
    }
    if (in_info && id == 0x2AD7B1) {              /* TimecodeScale */
      size_t i;
      scale = 0;
      for (i = 0; i < size && i < 8; i++) scale = (scale << 8) | p[off + i];
    } else if (in_info && id == 0x4489 && (size == 4 || size == 8)) {   /* Duration */
      uint64_t bits = size == 4 ? be32(p + off) : be64(p + off);
      if (size == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, sizeof f);
        duration = f;
      } else {
        double d;
        memcpy(&d, &bits, sizeof d);
        duration = d;
      }
    }
    off += (size_t)size;
  }
  /* a NaN or infinite Duration (any float bits can come) is no duration */
  if (!(duration >= 0) || scale == 0) return -1;
  duration = duration * (double)scale / 1e9;
  return duration <= DBL_MAX ? duration : -1;
}
