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
