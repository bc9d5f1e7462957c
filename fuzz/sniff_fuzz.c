/*
** sniff_fuzz.c — libFuzzer target for the file-signature sniffer and the
** upload checks made before a byte is sent: core.sniff (src/sniff.c),
** core.read_head and core.stat (src/file.c), core.check_upload
** (src/validate.c, on the catalog snapshot).
**
** The input is the start of a file. Properties checked beyond "no crash,
** no sanitizer report":
** - sniff never raises for a string and answers nil or a kind among
**   image/video/audio with a MIME type;
** - it looks at the first 64 bytes only: the same answer for the prefix;
** - every type it recognizes is one the Files API takes without a model
**   (check_upload(nil, kind, mime, 1) is true);
** - read_head of a file holding the bytes gives back exactly its first n
**   bytes, and stat its size.
*/
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "../src/rivya.h"
#include "fuzz.h"

#ifndef RV_ROOT
#define RV_ROOT "."
#endif

static lua_State *L;
static char path[64];

static void setup(void) {
  int fd;
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  rv_error_open(L);
  rv_file_open(L);
  lua_pushcfunction(L, rv_sniff);
  lua_setfield(L, -2, "sniff");
  rv_catalog_open(L);
  lua_setglobal(L, "core");
  /* check_upload is a method of a compiled catalog: the snapshot's */
  if (luaL_dostring(L,
      "local snap = dofile('" RV_ROOT "/lua/rivya/catalog_snapshot.lua')\n"
      "local cat = core.catalog(snap.models, snap.files_defaults)\n"
      "core.check_upload = function(...) return cat:check_upload(...) end\n") != LUA_OK) {
    fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* in memory when there is a /dev/shm: a file per run costs little there */
  snprintf(path, sizeof path, "/dev/shm/rivya-sniff-fuzz.XXXXXX");
  fd = mkstemp(path);
  if (fd < 0) {
    snprintf(path, sizeof path, "/tmp/rivya-sniff-fuzz.XXXXXX");
    fd = mkstemp(path);
  }
  if (fd < 0) abort();
  close(fd);
}

static void remove_scratch(void) __attribute__((destructor));
static void remove_scratch(void) {
  if (path[0]) unlink(path);
}

static int call(const char *fn, int nargs, int nresults) {
  lua_getglobal(L, "core");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 1));
  return lua_pcall(L, nargs, nresults, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *kind = NULL, *mime = NULL;
  size_t n;
  FILE *f;
  if (L == NULL) setup();
  lua_settop(L, 0);

  lua_pushlstring(L, (const char *)data, size);
  FZ_CHECK(call("sniff", 1, 2) == LUA_OK, "sniff raised: %s", lua_tostring(L, -1));
  if (!lua_isnil(L, 1)) {
    kind = lua_tostring(L, 1);
    mime = lua_tostring(L, 2);
    FZ_CHECK(kind != NULL && mime != NULL, "sniff: kind and mime are strings");
    FZ_CHECK(strcmp(kind, "image") == 0 || strcmp(kind, "video") == 0 ||
             strcmp(kind, "audio") == 0, "sniff: kind %s", kind);
    FZ_CHECK(strncmp(mime, kind, strlen(kind)) == 0 && mime[strlen(kind)] == '/',
             "sniff: %s is not a %s type", mime, kind);
  } else {
    FZ_CHECK(lua_isnil(L, 2), "sniff: nil, then nothing");
  }

  /* the first 64 bytes decide */
  lua_pushlstring(L, (const char *)data, size < 64 ? size : 64);
  FZ_CHECK(call("sniff", 1, 2) == LUA_OK, "sniff raised");
  FZ_CHECK(lua_rawequal(L, 1, 3) && lua_rawequal(L, 2, 4), "sniff: the prefix differs");

  /* every recognized type is one the Files API takes */
  if (kind != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, kind);
    lua_pushstring(L, mime);
    lua_pushinteger(L, 1);
    FZ_CHECK(call("check_upload", 4, 2) == LUA_OK, "check_upload raised");
    FZ_CHECK(lua_toboolean(L, -2), "%s (%s) is sniffed but refused: %s", mime, kind,
             luaL_tolstring(L, -1, NULL));
  }

  /* read_head and stat agree with the bytes of a file */
  f = fopen(path, "wb");
  FZ_CHECK(f != NULL, "cannot write %s", path);
  FZ_CHECK(fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write %s", path);
  n = size > 0 ? 1 + data[0] % 256 : 64;
  lua_settop(L, 0);
  lua_pushstring(L, path);
  lua_pushinteger(L, (lua_Integer)n);
  FZ_CHECK(call("read_head", 2, 2) == LUA_OK, "read_head raised");
  FZ_CHECK(lua_type(L, 1) == LUA_TSTRING, "read_head failed: %s", lua_tostring(L, 2));
  {
    size_t got;
    const char *head = lua_tolstring(L, 1, &got);
    FZ_CHECK(got == (size < n ? size : n) && memcmp(head, data, got) == 0,
             "read_head: %zu bytes, expected %zu", got, size < n ? size : n);
  }
  lua_settop(L, 0);
  lua_pushstring(L, path);
  FZ_CHECK(call("stat", 1, 2) == LUA_OK, "stat raised");
  lua_getfield(L, 1, "size");
  FZ_CHECK(lua_tointeger(L, -1) == (lua_Integer)size, "stat: size");
  lua_settop(L, 0);
  return 0;
}
