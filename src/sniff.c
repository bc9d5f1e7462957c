/*
** sniff.c — a file's kind and MIME type from its first bytes, the way the
** Files API checks a file's real signature rather than its extension.
** The signatures are data: the first entry that matches wins.
*/
#include <string.h>

#include "rivya.h"

#define SNIFF_BYTES 64      /* the most of a file that is ever looked at */

/* bytes at `offset`, compared after AND-ing with `mask` (NULL: all bits) */
typedef struct pattern {
  size_t offset;
  const char *bytes;
  const char *mask;
  size_t len;
} pattern;

typedef struct signature {
  const char *kind;
  const char *mime;
  pattern first, second;    /* second.bytes NULL: only the first */
} signature;

#define P(off, s) {off, s, NULL, sizeof(s) - 1}
#define PM(off, s, m) {off, s, m, sizeof(s) - 1}
#define NONE {0, NULL, NULL, 0}

static const signature signatures[] = {
  {"image", "image/jpeg", P(0, "\xFF\xD8\xFF"), NONE},
  {"image", "image/png", P(0, "\x89PNG\r\n\x1A\n"), NONE},
  {"image", "image/webp", P(0, "RIFF"), P(8, "WEBP")},
  {"audio", "audio/wav", P(0, "RIFF"), P(8, "WAVE")},
  {"video", "video/quicktime", P(4, "ftyp"), P(8, "qt  ")},
  {"audio", "audio/mp4", P(4, "ftyp"), P(8, "M4A ")},
  {"audio", "audio/mp4", P(4, "ftyp"), P(8, "M4B ")},
  /* any other brand; the all-zero mask only asks that the brand is there */
  {"video", "video/mp4", P(4, "ftyp"), PM(8, "\0\0\0\0", "\0\0\0\0")},
  {"video", "video/webm", P(0, "\x1A\x45\xDF\xA3"), NONE},
  {"audio", "audio/mpeg", P(0, "ID3"), NONE},
  /* ADTS AAC before the MPEG frame sync, which would also match it */
  /* ADTS: sync FFF and layer bits 00 (FF F0, F1, F8, F9), as rivya-sim reads it */
  {"audio", "audio/aac", PM(0, "\xFF\xF0", "\xFF\xF6"), NONE},
  {"audio", "audio/mpeg", PM(0, "\xFF\xE0", "\xFF\xE0"), NONE},
  {"audio", "audio/ogg", P(0, "OggS"), NONE},
  {NULL, NULL, NONE, NONE}
};

/* does pattern `p` match `s` (`len` bytes)? */
static int matches(const pattern *p, const unsigned char *s, size_t len) {
  size_t i;
  if (p->offset + p->len > len) return 0;
  for (i = 0; i < p->len; i++) {
    unsigned char m = p->mask ? (unsigned char)p->mask[i] : 0xFF;
    if ((s[p->offset + i] & m) != (unsigned char)p->bytes[i]) return 0;
  }
  return 1;
}

/*
** rv_sniff_bytes: the kind ("image", "video", "audio") of the file whose
** first `len` bytes are at `s`, its MIME type in `*mime` (may be NULL), or
** NULL when no signature matches. Used by downloads, without Lua.
*/
const char *rv_sniff_bytes(const unsigned char *s, size_t len, const char **mime) {
  const signature *sig;
  if (len > SNIFF_BYTES) len = SNIFF_BYTES;
  for (sig = signatures; sig->kind != NULL; sig++) {
    if (matches(&sig->first, s, len) &&
        (sig->second.bytes == NULL || matches(&sig->second, s, len))) {
      if (mime != NULL) *mime = sig->mime;
      return sig->kind;
    }
  }
  return NULL;
}

/*
** core.sniff(bytes) -> kind, mime | nil: `bytes` is the start of a file
** (the first SNIFF_BYTES are looked at; fewer is fine). kind is "image",
** "video" or "audio".
*/
int rv_sniff(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  const char *mime = NULL;
  const char *kind = rv_sniff_bytes(s, len, &mime);
  if (kind == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, kind);
  lua_pushstring(L, mime);
  return 2;
}

/* ---- whole-file structure of a download ----------------------------------- */

/*
** A download that starts with a known signature is checked whole before it
** replaces anything: the lengths its own headers promise must add up to the
** bytes received. An error page after a valid first box, a body cut short
** (close-delimited, so libcurl cannot tell) or a partial answer fails here.
*/

#define WALK_MAX (1ul << 22)   /* chunks, boxes, pages or frames walked at most */

typedef struct media_in {
  rv_media_reader read;
  void *ctx;
  unsigned long long size;
} media_in;

/* exactly `n` bytes at `off` into `buf`: 1, or 0 when the file is shorter */
static int get(const media_in *in, unsigned long long off, unsigned char *buf, size_t n) {
  if (off > in->size || n > in->size - off) return 0;
  return in->read(in->ctx, off, buf, n) == n;
}

static unsigned long be32(const unsigned char *p) {
  return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

static unsigned long le32(const unsigned char *p) {
  return ((unsigned long)p[3] << 24) | ((unsigned long)p[2] << 16) | ((unsigned long)p[1] << 8) | p[0];
}

/* MP4, MOV, M4A: top-level boxes that tile the file, one of them moov */
static const char *verify_mp4(const media_in *in, int *exact) {
  unsigned long long off = 0;
  unsigned long n = 0;
  int moov = 0;
  unsigned char h[16];
  while (off < in->size) {
    unsigned long long box;
    if (++n > WALK_MAX) return "too many top-level boxes";
    if (!get(in, off, h, 8)) return "a top-level box header is cut short";
    box = be32(h);
    if (box == 1) {
      if (!get(in, off + 8, h + 8, 8)) return "a top-level box header is cut short";
      box = ((unsigned long long)be32(h + 8) << 32) | be32(h + 12);
      if (box < 16) return "a top-level box is shorter than its header";
    } else if (box == 0) {
      box = in->size - off;   /* to the end of the file: the last box */
      *exact = 0;
    } else if (box < 8) {
      return "a top-level box is shorter than its header";
    }
    if (memcmp(h + 4, "moov", 4) == 0) moov = 1;
    if (box > in->size - off) return "the top-level boxes promise more bytes than were received";
    off += box;
  }
  if (!moov) return "no moov box";
  return NULL;
}

/* PNG: chunks from the signature to IEND, which ends the file */
static const char *verify_png(const media_in *in) {
  unsigned long long off = 8;
  unsigned long n = 0;
  unsigned char h[8];
  for (;;) {
    unsigned long len;
    if (++n > WALK_MAX) return "too many chunks";
    if (!get(in, off, h, 8)) return "a chunk is cut short (no IEND)";
    len = be32(h);
    if (len > 0x7FFFFFFFul) return "a chunk length is out of range";
    if (12ull + len > in->size - off) return "a chunk is cut short (no IEND)";
    off += 12ull + len;
    if (memcmp(h + 4, "IEND", 4) == 0) break;
  }
  if (off != in->size) return "bytes follow the IEND chunk";
  return NULL;
}

/* RIFF (WAV, WebP): the RIFF size covers the file, its chunks tile it */
static const char *verify_riff(const media_in *in, int *exact) {
  unsigned char h[8];
  unsigned long long end, off = 12;
  unsigned long riff, n = 0;
  if (!get(in, 0, h, 8)) return "the RIFF header is cut short";
  riff = le32(h + 4);
  end = 8ull + riff;
  if (!(in->size == end || ((riff & 1) && in->size == end + 1)))
    return "the RIFF size does not match the bytes received";
  if (riff & 1) *exact = 0;
  while (off < end) {
    unsigned long long len;
    if (++n > WALK_MAX) return "too many chunks";
    if (end - off < 8 || !get(in, off, h, 8)) return "a chunk header is cut short";
    len = le32(h + 4);
    if (len > end - off - 8) return "a chunk promises more bytes than the RIFF size";
    if ((len & 1) && len < end - off - 8) len++;   /* the pad byte; the last may lack it */
    off += 8 + len;
  }
  return NULL;
}

/* an EBML variable-size integer at `off`: its length in *n, value in *v, *unknown when all ones */
static int ebml_vint(const media_in *in, unsigned long long off, int id,
                     unsigned *n, unsigned long long *v, int *unknown) {
  unsigned char b[8];
  unsigned len = 1, i;
  unsigned long long mask = 0x80;
  if (!get(in, off, b, 1) || b[0] == 0) return 0;
  while (!(b[0] & mask)) {
    mask >>= 1;
    len++;
  }
  if (!get(in, off, b, len)) return 0;
  *v = id ? b[0] : (b[0] & (mask - 1));
  *unknown = (b[0] & (mask - 1)) == mask - 1;
  for (i = 1; i < len; i++) {
    *v = (*v << 8) | b[i];
    if (b[i] != 0xFF) *unknown = 0;
  }
  *n = len;
  return 1;
}

/* WebM (Matroska): the EBML header, then one Segment of the size it declares */
static const char *verify_webm(const media_in *in, int *exact) {
  unsigned long long off = 0, id, size;
  unsigned n;
  int unknown;
  if (!ebml_vint(in, off, 1, &n, &id, &unknown) || id != 0x1A45DFA3ul)
    return "no EBML header";
  off += n;
  if (!ebml_vint(in, off, 0, &n, &size, &unknown) || unknown) return "the EBML header size is unreadable";
  off += n;
  if (size > in->size - off) return "the EBML header is cut short";
  off += size;
  if (!ebml_vint(in, off, 1, &n, &id, &unknown) || id != 0x18538067ul)
    return "no Segment after the EBML header";
  off += n;
  if (!ebml_vint(in, off, 0, &n, &size, &unknown)) return "the Segment size is unreadable";
  off += n;
  if (unknown) {   /* a live stream: its length is not promised */
    *exact = 0;
    return off < in->size ? NULL : "the Segment is empty";
  }
  if (size != in->size - off) return "the Segment size does not match the bytes received";
  return NULL;
}

/* Ogg: pages that tile the file, the last one flagged end of stream */
static const char *verify_ogg(const media_in *in) {
  unsigned long long off = 0;
  unsigned long n = 0;
  unsigned char h[27], seg[255];
  int eos = 0;
  while (off < in->size) {
    unsigned long long len;
    unsigned i;
    if (++n > WALK_MAX) return "too many pages";
    if (!get(in, off, h, 27) || memcmp(h, "OggS", 4) != 0 || h[4] != 0)
      return "a page is cut short or has no OggS capture pattern";
    if (!get(in, off + 27, seg, h[26])) return "a page's segment table is cut short";
    len = 27ull + h[26];
    for (i = 0; i < h[26]; i++) len += seg[i];
    if (len > in->size - off) return "a page promises more bytes than were received";
    eos = (h[5] & 4) != 0;
    off += len;
  }
  if (!eos) return "the last page does not end the stream";
  return NULL;
}

/* the length of the MPEG audio frame whose header is `h`, 0 when it is none */
static unsigned long mpeg_frame(const unsigned char *h) {
  static const unsigned short rates[2][3][16] = {
    {   /* MPEG-1: layer I, II, III */
      {0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448, 0},
      {0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 0},
      {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}},
    {   /* MPEG-2 and 2.5 */
      {0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 0},
      {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0},
      {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}}};
  static const unsigned short hz[3] = {44100, 48000, 32000};
  unsigned version = (h[1] >> 3) & 3, layer = (h[1] >> 1) & 3;
  unsigned bi = h[2] >> 4, si = (h[2] >> 2) & 3, pad = (h[2] >> 1) & 1;
  unsigned long kbps, rate;
  if (h[0] != 0xFF || (h[1] & 0xE0) != 0xE0 || version == 1 || layer == 0 || si == 3) return 0;
  kbps = rates[version == 3 ? 0 : 1][3 - layer][bi];
  if (kbps == 0) return 0;   /* free format or a bad index: no length promised */
  rate = hz[si] >> (version == 3 ? 0 : version == 2 ? 1 : 2);
  if (layer == 3) return (12ul * kbps * 1000 / rate + pad) * 4;
  if (layer == 1 && version != 3) return 72ul * kbps * 1000 / rate + pad;
  return 144ul * kbps * 1000 / rate + pad;
}

/*
** MP3 and ADTS AAC: an optional ID3v2 tag, then frames whose headers give
** their lengths, tiling the file up to an optional 128-byte ID3v1 tag.
*/
static const char *verify_frames(const media_in *in, int adts) {
  unsigned long long off = 0;
  unsigned long n = 0;
  unsigned char h[10];
  if (get(in, 0, h, 10) && memcmp(h, "ID3", 3) == 0) {
    if ((h[6] | h[7] | h[8] | h[9]) & 0x80) return "the ID3 tag size is malformed";
    off = 10ull + (((unsigned long)h[6] << 21) | ((unsigned long)h[7] << 14) |
                   ((unsigned long)h[8] << 7) | h[9]);
    if (h[5] & 0x10) off += 10;
    if (off >= in->size) return "no audio after the ID3 tag";
  }
  while (off < in->size) {
    unsigned long len;
    if (++n > WALK_MAX) return "too many frames";
    if (in->size - off == 128 && get(in, off, h, 3) && memcmp(h, "TAG", 3) == 0) break;
    if (!get(in, off, h, adts ? 7 : 4)) return "a frame header is cut short";
    if (adts) {
      if (h[0] != 0xFF || (h[1] & 0xF6) != 0xF0) return "an ADTS frame has no sync word";
      len = ((unsigned long)(h[3] & 3) << 11) | ((unsigned long)h[4] << 3) | (h[5] >> 5);
      if (len < 7) return "an ADTS frame is shorter than its header";
    } else if ((len = mpeg_frame(h)) == 0) {
      return "an MPEG audio frame header is invalid";
    }
    if (len > in->size - off) return "a frame promises more bytes than were received";
    off += len;
  }
  if (n == 0) return "no audio frames";
  return NULL;
}

/*
** rv_media_verify: check the structure of a whole file of `size` bytes,
** read through `read`. Returns NULL when it holds together, else what is
** wrong (a static string). *exact (may be NULL) is set to 1 when the format
** fixes the file's length, so one byte more or less could not pass.
*/
const char *rv_media_verify(rv_media_reader read, void *ctx, unsigned long long size,
                            int *exact) {
  unsigned char head[SNIFF_BYTES];
  const char *mime = NULL;
  int ex = 1;
  size_t hn;
  media_in in;
  const char *why;
  in.read = read;
  in.ctx = ctx;
  in.size = size;
  if (exact != NULL) *exact = 0;
  hn = size < SNIFF_BYTES ? (size_t)size : SNIFF_BYTES;
  if (!get(&in, 0, head, hn) || rv_sniff_bytes(head, hn, &mime) == NULL)
    return "no image, video or audio signature";
  if (strcmp(mime, "image/jpeg") == 0) {
    unsigned char t[2];
    ex = 0;
    why = size >= 4 && get(&in, size - 2, t, 2) && t[0] == 0xFF && t[1] == 0xD9
          ? NULL : "the JPEG does not end with its end-of-image marker";
  } else if (strcmp(mime, "image/png") == 0) {
    why = verify_png(&in);
  } else if (strcmp(mime, "image/webp") == 0 || strcmp(mime, "audio/wav") == 0) {
    why = verify_riff(&in, &ex);
  } else if (strcmp(mime, "video/webm") == 0) {
    why = verify_webm(&in, &ex);
  } else if (strcmp(mime, "audio/ogg") == 0) {
    why = verify_ogg(&in);
  } else if (strcmp(mime, "audio/mpeg") == 0 || strcmp(mime, "audio/aac") == 0) {
    why = verify_frames(&in, strcmp(mime, "audio/aac") == 0);
  } else {   /* video/mp4, video/quicktime, audio/mp4 */
    why = verify_mp4(&in, &ex);
  }
  if (why == NULL && exact != NULL) *exact = ex;
  return why;
}
