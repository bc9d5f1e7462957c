/*
** system.c — what the Lua scheduler needs from the kernel: a monotonic
** clock, sleeping, waiting on descriptors, and random bytes for keys.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

long long rv_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Overwrite `n` bytes at `p` with zeros, in a way the compiler keeps. */
void rv_wipe(void *p, size_t n) {
  volatile unsigned char *v = (volatile unsigned char *)p;
  while (n-- > 0) *v++ = 0;
}

/* core.now() -> seconds on a monotonic clock (for deadlines) */
static int core_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/*
** core.sleep(seconds) -> true, or false when a signal cut the sleep short.
** It is never restarted here: lua.c's SIGINT handler (and trap_terminate's)
** sets a hook that raises at the next Lua instruction, which comes as soon
** as this returns; a caller that wants the rest of the time sleeps again.
*/
static int core_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts;
  if (s > 0) {
    if (s > 1e6) s = 1e6;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    if (nanosleep(&ts, NULL) != 0 && errno == EINTR) {
      lua_pushboolean(L, 0);
      return 1;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
** SIGTERM as lua.c treats SIGINT: the handler only sets a hook (lua_sethook
** is safe in a signal handler) that raises "terminated!" at the next Lua
** instruction, so the stack unwinds through every __close and __gc (a
** download's temporary file goes) before the process exits. A second
** SIGTERM kills at once. The one process-global besides curl's init: a
** signal handler can reach nothing else.
*/
static lua_State *volatile term_state;

static void term_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "terminated!");
}

static void on_term(int sig) {
  signal(sig, SIG_DFL);
  if (term_state != NULL)
    lua_sethook(term_state, term_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* core.trap_terminate(): SIGTERM raises "terminated!" in this (the main) Lua thread */
static int core_trap_terminate(lua_State *L) {
  struct sigaction sa;
  term_state = L;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;   /* no SA_RESTART: a wait in the kernel ends at once */
  if (sigaction(SIGTERM, &sa, NULL) != 0) return luaL_error(L, "rivya: sigaction: %s", strerror(errno));
  return 0;
}

/*
** core.poll(fds, seconds) -> number of ready fds: wait until one of the
** descriptors in the array is readable or the time has passed.
*/
static int core_poll(lua_State *L) {
  struct pollfd pfds[64];
  lua_Integer i, n;
  lua_Number s = luaL_optnumber(L, 2, 0);
  int ms = s > 0 ? (s > 2000000.0 ? 2000000000 : (int)(s * 1000.0 + 0.5)) : 0;
  int r;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  luaL_argcheck(L, n <= 64, 1, "at most 64 descriptors");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    pfds[i].fd = (int)luaL_checkinteger(L, -1);
    pfds[i].events = POLLIN;
    pfds[i].revents = 0;
    lua_pop(L, 1);
  }
  r = poll(pfds, (nfds_t)n, ms);
  lua_pushinteger(L, r < 0 ? 0 : r);
  return 1;
}

/* core.random_hex(nbytes) -> 2*nbytes hex digits from /dev/urandom */
static int core_random_hex(lua_State *L) {
  unsigned char raw[64];
  char hex[129];
  lua_Integer n = luaL_optinteger(L, 1, 16);
  size_t got = 0, i;
  int fd;
  luaL_argcheck(L, n > 0 && n <= 64, 1, "1 to 64 bytes");
  fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return luaL_error(L, "rivya: cannot open /dev/urandom: %s", strerror(errno));
  while (got < (size_t)n) {
    ssize_t r = read(fd, raw + got, (size_t)n - got);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      close(fd);
      return luaL_error(L, "rivya: cannot read /dev/urandom");
    }
    got += (size_t)r;
  }
  close(fd);
  for (i = 0; i < got; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  lua_pushlstring(L, hex, 2 * got);
  return 1;
}

static const luaL_Reg system_funcs[] = {
  {"now", core_now},
  {"sleep", core_sleep},
  {"poll", core_poll},
  {"random_hex", core_random_hex},
  {"trap_terminate", core_trap_terminate},
  {NULL, NULL}
};

int rv_system_open(lua_State *L) {
  luaL_setfuncs(L, system_funcs, 0);
  return 0;
}
