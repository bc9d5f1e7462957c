/*
** preload.c — a small library preloaded into the lua5.4 that runs the
** specs under `make test-asan` (after the ASan runtime) and
** `make test-valgrind`. It does two things:
**
** - dlclose keeps every library loaded. lua_close unloads C modules
**   (rivya/core.so, cjson.so) before the leak check runs at exit; their
**   frames would then read "<unknown module>", and memory that their
**   globals still reach (OpenSSL's tables) would look leaked.
** - LD_PRELOAD is dropped from the environment once this process has
**   started, so the specs' children (sh, curl, mktemp, sleep) run as
**   usual: the ASan runtime preloaded into curl deadlocks in setlocale.
*/
#define _GNU_SOURCE
#include <stdlib.h>

int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}

__attribute__((constructor)) static void forget_preload(void) {
  unsetenv("LD_PRELOAD");
}
