/*
** term.c — what the CLI's live line needs to know about its terminal: is a
** descriptor one, and how wide is it now. Asked again at each redraw, so a
** resized window (SIGWINCH) is followed without a signal handler (no
** process-global state).
*/
#include <sys/ioctl.h>
#include <unistd.h>

#include "rivya.h"

/* core.isatty(fd) -> true when descriptor fd is a terminal */
static int core_isatty(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_pushboolean(L, isatty(fd) == 1);
  return 1;
}

/*
** core.term_size(fd) -> columns, rows of the terminal on descriptor fd
** (TIOCGWINSZ) | nil when fd is no terminal or the size is unknown (0).
*/
static int core_term_size(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, ws.ws_col);
  lua_pushinteger(L, ws.ws_row);
  return 2;
}

static const luaL_Reg term_funcs[] = {
  {"isatty", core_isatty},
  {"term_size", core_term_size},
  {NULL, NULL}
};

/* adds the terminal functions to the core table on the stack top */
int rv_term_open(lua_State *L) {
  luaL_setfuncs(L, term_funcs, 0);
  return 0;
}
