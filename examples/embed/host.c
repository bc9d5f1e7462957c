/*
** host.c — a C program embedding Lua (5.4; LuaJIT and 5.1-5.3 through
** src/compat.h) and rivya: it runs a render
** (create, wait, download) in a coroutine while its own loop keeps ticking.
**
** The Lua side never blocks: the client's `waiter` yields the client's
** pollable wait to this host as two values, a descriptor (client:pollfd(),
** or -1 for a plain sleep) and a timeout in seconds (-1 for none). The host
** polls that descriptor together with its own tick timer, counts its ticks,
** and resumes the coroutine. No yield crosses a C call: the coroutine yields
** from Lua code only, and this host is what resumes it (lua_resume).
**
** With --threads N, N threads each run their own lua_State at once: rivya
** keeps no global mutable state besides libcurl's once-only init.
**
**   rivya-embed [--threads N] [--tick-ms MS] SCRIPT OUTPUT_DIR
** SCRIPT returns function(output_path, label) -> summary (see render.lua);
** RIVYA_BASE_URL and RIVYA_API_KEY are read as by any rivya program.
** Prints one line per render and exits 0 when every render succeeded.
*/
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "compat.h"     /* lua_resume(L, from, nargs, &nres) on every version */

#define MAX_THREADS 16

typedef struct Render {
  int index;            /* 1-based, names the output file */
  const char *script;
  const char *outdir;
  long tick_ms;         /* period of the host's own timer */
  long ticks;           /* how often it fired while the render ran */
  long waits;           /* how often the render handed its wait to the host */
  int ok;
  char line[1024];      /* the render's summary, or its error */
} Render;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
** wait_for: the host's side of one yield. Poll `fd` (if >= 0) until it is
** readable, `timeout` seconds have passed (< 0: no limit) or the next tick
** is due; fire the ticks that are due on the way.
*/
static void wait_for(Render *R, int fd, double timeout, long long *next_tick) {
  /* rounded up: waking before the deadline would only spin back here */
  long long deadline = timeout < 0 ? -1 : now_ms() + (long long)(timeout * 1000.0 + 0.999);
  for (;;) {
    long long t = now_ms(), wait = *next_tick - t;
    struct pollfd p;
    int n;
    if (deadline >= 0 && deadline - t < wait) wait = deadline - t;
    if (wait < 0) wait = 0;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    n = poll(&p, fd >= 0 ? 1 : 0, (int)wait);
    t = now_ms();
    while (t >= *next_tick) {   /* the host's own work: here, a counter */
      R->ticks++;
      *next_tick += R->tick_ms;
    }
    if (n > 0 || (n < 0 && errno != EINTR)) return;
    if (deadline >= 0 && t >= deadline) return;
  }
}

/* run_render: one lua_State, one render, driven to its end by this loop. */
static void *run_render(void *arg) {
  Render *R = (Render *)arg;
  lua_State *L = luaL_newstate();
  lua_State *co;
  long long next_tick;
  int status, nres;
  char path[512];
  if (L == NULL) {
    snprintf(R->line, sizeof R->line, "cannot create a lua_State");
    return NULL;
  }
  luaL_openlibs(L);
  if (luaL_dofile(L, R->script) != LUA_OK || !lua_isfunction(L, -1)) {
    snprintf(R->line, sizeof R->line, "%s: %s", R->script,
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "does not return a function");
    lua_close(L);
    return NULL;
  }
  co = lua_newthread(L);         /* the render runs in this coroutine */
  lua_pushvalue(L, -2);
  lua_xmove(L, co, 1);
  snprintf(path, sizeof path, "%s/render-%d.mp4", R->outdir, R->index);
  lua_pushstring(co, path);
  lua_pushfstring(co, "render %d", R->index);
  next_tick = now_ms() + R->tick_ms;
  status = lua_resume(co, L, 2, &nres);
  while (status == LUA_YIELD) {
    int fd = (int)luaL_optinteger(co, -2, -1);
    double timeout = (double)luaL_optnumber(co, -1, -1);
    lua_pop(co, nres);
    R->waits++;
    wait_for(R, fd, timeout, &next_tick);
    status = lua_resume(co, L, 0, &nres);
  }
  if (status == LUA_OK && nres >= 1 && lua_toboolean(co, -nres)) {
    R->ok = 1;
    snprintf(R->line, sizeof R->line, "%s", luaL_tolstring(co, -nres, NULL));
  } else {
    const char *msg = nres >= 2 ? luaL_tolstring(co, -nres + 1, NULL)
                                : lua_gettop(co) > 0 ? luaL_tolstring(co, -1, NULL) : "no result";
    snprintf(R->line, sizeof R->line, "failed: %s", msg);
  }
  lua_close(L);
  return NULL;
}

static int usage(void) {
  fprintf(stderr, "usage: rivya-embed [--threads N] [--tick-ms MS] SCRIPT OUTPUT_DIR\n");
  return 2;
}

int main(int argc, char **argv) {
  Render renders[MAX_THREADS];
  pthread_t threads[MAX_THREADS];
  int nthreads = 1, i, argi = 1, failed = 0;
  long tick_ms = 20;
  while (argi < argc && strncmp(argv[argi], "--", 2) == 0) {
    if (strcmp(argv[argi], "--threads") == 0 && argi + 1 < argc) {
      nthreads = atoi(argv[argi + 1]);
    } else if (strcmp(argv[argi], "--tick-ms") == 0 && argi + 1 < argc) {
      tick_ms = atol(argv[argi + 1]);
    } else {
      return usage();
    }
    argi += 2;
  }
  if (argc - argi != 2 || nthreads < 1 || nthreads > MAX_THREADS || tick_ms < 1) return usage();
  memset(renders, 0, sizeof renders);
  for (i = 0; i < nthreads; i++) {
    renders[i].index = i + 1;
    renders[i].script = argv[argi];
    renders[i].outdir = argv[argi + 1];
    renders[i].tick_ms = tick_ms;
  }
  if (nthreads == 1) {
    run_render(&renders[0]);
  } else {
    for (i = 0; i < nthreads; i++) {
      int e = pthread_create(&threads[i], NULL, run_render, &renders[i]);
      if (e != 0) {
        fprintf(stderr, "rivya-embed: pthread_create: %s\n", strerror(e));
        return 1;
      }
    }
    for (i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
  }
  for (i = 0; i < nthreads; i++) {
    printf("[%d] %s; host ticks %ld, waits %ld\n", renders[i].index, renders[i].line,
           renders[i].ticks, renders[i].waits);
    if (!renders[i].ok) failed = 1;
  }
  return failed;
}
