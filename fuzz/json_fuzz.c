/*
** json_fuzz.c — libFuzzer target for everything that handles an HTTP
** answer: libcurl's header and write callbacks (on_header, on_write:
** the header block, the body cap), transfer:result() (push_headers, the
** failure kinds), then the client's own Lua path — JSON decoding
** (rivya.json on lua-cjson), errors.from_response, Retry-After, and the
** checks each call makes of its answer (json_fuzz.lua).
**
** src/transfer.c is compiled into this file (#include below), so its static
** callbacks run unchanged and nothing in the library is exported for
** tests. A fake session hands the client a finished transfer built from
** the fuzzer's bytes instead of a network exchange; the client code above
** it is the real one, with max_retries = 0.
**
** Input (readable, so seeds are plain files):
**   <call> <status> <flags>\n        call: models credits get create upload download
**   <header block as curl delivers it, ending with an empty line>
**   <body>
** flags: bits 0-3 the curl result (0-8: CURLE_OK), bit 4 a 40-byte body
** cap, bit 5 a failed file write, bits 6-7 how the body is cut into
** write callbacks (whole, 1, 7 or 4096 bytes).
*/
#define _GNU_SOURCE
#include "../src/transfer.c"

#include "lualib.h"

#include "fuzz.h"

#ifndef RV_ROOT
#define RV_ROOT "."
#endif

int luaopen_rivya_core(lua_State *L);   /* core.c */

static lua_State *FL;
static const char *head_p, *body_p;
static size_t head_n, body_n;
static long status_in;
static unsigned flags_in;

static const CURLcode results[] = {
  CURLE_OPERATION_TIMEDOUT, CURLE_COULDNT_CONNECT, CURLE_SSL_CONNECT_ERROR,
  CURLE_PEER_FAILED_VERIFICATION, CURLE_RECV_ERROR, CURLE_GOT_NOTHING,
  CURLE_PARTIAL_FILE
};

/*
** fuzz_transfer(spec) -> a finished rivya.Transfer holding the answer of
** the current input, fed through the real callbacks as curl would.
*/
static int fuzz_transfer(lua_State *L) {
  rv_transfer *T;
  const char *p, *end;
  size_t chunk, off;
  unsigned rc = flags_in & 15;
  luaL_checktype(L, 1, LUA_TTABLE);
  T = (rv_transfer *)lua_newuserdatauv(L, sizeof *T, 1);
  memset(T, 0, sizeof *T);
  rv_buf_init(&T->head);
  rv_buf_init(&T->body);
  luaL_setmetatable(L, RV_TRANSFER_MT);
  T->max_body = (size_t)rv_opt_number(L, 1, "max_body", (lua_Number)RV_DEFAULT_MAX_BODY);
  if (flags_in & 16) T->max_body = 40;
  /* the header block, one line per callback */
  for (p = head_p, end = head_p + head_n; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t len = eol ? (size_t)(eol - p) + 1 : (size_t)(end - p);
    if (on_header((char *)p, 1, len, T) != len) {
      T->result = CURLE_WRITE_ERROR;
      break;
    }
    p += len;
  }
  /* the body, cut as the flags say; a short return aborts like curl */
  chunk = (flags_in >> 6) == 1 ? 1 : (flags_in >> 6) == 2 ? 7 : (flags_in >> 6) == 3 ? 4096 : body_n;
  for (off = 0; T->result == CURLE_OK && off < body_n; off += chunk) {
    size_t len = body_n - off < chunk ? body_n - off : chunk;
    if (on_write((char *)body_p + off, 1, len, T) != len) T->result = CURLE_WRITE_ERROR;
  }
  T->status = status_in;
  T->done = 1;
  if (T->result == CURLE_OK && rc > 8) T->result = results[rc - 9];
  if (T->result != CURLE_OK) snprintf(T->errbuf, sizeof T->errbuf, "fuzz: result %d", (int)T->result);
  T->out_path = rv_opt_dup(L, 1, "output");
  if (T->out_path != NULL && (flags_in & 32)) {
    T->out_failed = 1;
    T->out_error = ENOSPC;
  }
  T->got_bytes = (curl_off_t)body_n;
  return 1;
}

static void setup(void) {
  FL = luaL_newstate();
  luaL_openlibs(FL);
  luaL_getsubtable(FL, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(FL, luaopen_rivya_core);
  lua_setfield(FL, -2, "rivya.core");
  lua_pop(FL, 1);
  lua_getglobal(FL, "package");
  lua_pushliteral(FL, RV_ROOT "/lua/?.lua;" RV_ROOT "/lua/?/init.lua");
  lua_setfield(FL, -2, "path");
  lua_pop(FL, 1);
  lua_pushcfunction(FL, fuzz_transfer);
  lua_setglobal(FL, "fuzz_transfer");
  if (luaL_dofile(FL, RV_ROOT "/fuzz/json_fuzz.lua") != LUA_OK) {
    fprintf(stderr, "json_fuzz: %s\n", lua_tostring(FL, -1));
    abort();
  }
  lua_setglobal(FL, "fuzz_run");
}

/* split the input into the first line's fields, the header block and the body */
static void parse(const uint8_t *data, size_t size, char *call, size_t callsize) {
  const char *p = (const char *)data, *end = p + size, *nl, *sep;
  char line[64];
  size_t n;
  nl = memchr(p, '\n', size);
  n = nl ? (size_t)(nl - p) : size;
  if (n >= sizeof line) n = sizeof line - 1;
  memcpy(line, p, n);
  line[n] = '\0';
  call[0] = '\0';
  status_in = 200;
  flags_in = 0;
  {
    char *save = NULL, *tok = strtok_r(line, " ", &save);
    if (tok) snprintf(call, callsize, "%s", tok);
    if ((tok = strtok_r(NULL, " ", &save)) != NULL) status_in = strtol(tok, NULL, 10);
    if ((tok = strtok_r(NULL, " ", &save)) != NULL) flags_in = (unsigned)strtoul(tok, NULL, 10) & 255;
  }
  p = nl ? nl + 1 : end;
  head_p = p;
  /* the header block ends after the first empty line */
  sep = NULL;
  for (; p < end; p++) {
    if (*p == '\n' && p + 1 < end && p[1] == '\n') { sep = p + 2; break; }
    if (*p == '\n' && p + 2 < end && p[1] == '\r' && p[2] == '\n') { sep = p + 3; break; }
  }
  if (sep == NULL) sep = end;
  head_n = (size_t)(sep - head_p);
  body_p = sep;
  body_n = (size_t)(end - sep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char call[32];
  if (FL == NULL) setup();
  parse(data, size, call, sizeof call);
  lua_settop(FL, 0);
  lua_getglobal(FL, "fuzz_run");
  lua_pushstring(FL, call);
  if (lua_pcall(FL, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "json_fuzz: the client raised on an answer: %s\n", luaL_tolstring(FL, -1, NULL));
    abort();
  }
  /* every garbage freed before the run ends: libFuzzer counts mallocs
     against frees, and an imbalance costs a leak scan of the whole heap */
  lua_gc(FL, LUA_GCCOLLECT, 0);
  return 0;
}
