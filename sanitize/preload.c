/*
** preload.c — a small library preloaded into each lua5.4 that runs under
** `make test-asan` (after the ASan runtime) and `make test-valgrind`
** (see sanitize/bin/lua5.4). It does two things:
**
** - dlclose keeps every library loaded. lua_close unloads C modules
**   (rivya/core.so, cjson.so) before the leak check runs at exit; their
**   frames would then read "<unknown module>", and memory that their
**   globals still reach (OpenSSL's tables from curl_global_init) would
**   look lost. Keeping them mapped costs nothing in a process about to exit.
** - LD_PRELOAD is dropped from the environment once the process has
**   started, so its children (sh, curl, mktemp, sleep) run as usual: the
**   ASan runtime preloaded into curl deadlocks in setlocale. A child
**   lua5.4 is found through PATH again and gets its own preload. Only
**   valgrind's launchers (its sh script, valgrind.bin) pass it on to the
**   program they start.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}

__attribute__((constructor)) static void forget_preload(void) {
  static const char *const launchers[] = {"sh", "dash", "bash", "valgrind", "valgrind.bin", NULL};
  int i;
  for (i = 0; launchers[i] != NULL; i++)
    if (strcmp(program_invocation_short_name, launchers[i]) == 0) return;
  unsetenv("LD_PRELOAD");
}
