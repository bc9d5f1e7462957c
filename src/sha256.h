/*
** sha256.h — SHA-256 (FIPS 180-4) of a byte string. Plain C, no Lua: the
** C core (core.sha256) and rivya-sim both link src/sha256.c.
*/
#ifndef RV_SHA256_H
#define RV_SHA256_H

#include <stddef.h>

#define RV_SHA256_BYTES 32

/* the 32-byte digest of p[0..n) into out */
void rv_sha256(const void *p, size_t n, unsigned char out[RV_SHA256_BYTES]);
/* the digest as 64 lowercase hex digits and a NUL */
void rv_sha256_hex(const unsigned char *p, size_t n, char out[65]);

#endif
