/*
** file.c — what an upload needs to know about a local file before a byte
** is sent: its type and size (without opening FIFOs or devices), and its
** first bytes for the signature sniffer.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rivya.h"

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISCHR(m) || S_ISBLK(m)) return "device";
  if (S_ISSOCK(m)) return "socket";
  return "other";
}

/*
** Open `path` for reading without blocking (a FIFO swapped in cannot hang
** the caller) and keep it only when it is a regular file: the descriptor,
** with *st filled by fstat; else -1 with nil, message pushed.
*/
int rv_open_regular(lua_State *L, const char *path, struct stat *st) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 || fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    int e = fd < 0 ? errno : EINVAL;
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    lua_pushstring(L, e == EINVAL ? "not a regular file" : strerror(e));
    return -1;
  }
  return fd;
}

/*
** core.stat(path) -> {type=, size=, mtime=, readable=} | nil, message
** Follows symlinks, as opening the file would.
*/
static int file_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_createtable(L, 0, 4);
  lua_pushstring(L, type_name(st.st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtime);
  lua_setfield(L, -2, "mtime");
  lua_pushboolean(L, access(path, R_OK) == 0);
  lua_setfield(L, -2, "readable");
  return 1;
}

/*
** core.read_head(path, n) -> first n bytes | nil, message
** Opens with O_NONBLOCK and refuses anything but a regular file, so a FIFO
** swapped in after stat cannot block the caller.
*/
static int file_read_head(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 64);
  char buf[256];
  struct stat st;
  ssize_t got = 0;
  int fd;
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 2, "1 to 256 bytes");
  fd = rv_open_regular(L, path, &st);
  if (fd < 0) return 2;
  while (got < (ssize_t)n) {
    ssize_t r = read(fd, buf + got, (size_t)n - (size_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
  }
  close(fd);
  lua_pushlstring(L, buf, (size_t)got);
  return 1;
}

int rv_file_open(lua_State *L) {
  lua_pushcfunction(L, file_stat);
  lua_setfield(L, -2, "stat");
  lua_pushcfunction(L, file_read_head);
  lua_setfield(L, -2, "read_head");
  return 0;
}
