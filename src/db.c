/*
** db.c — durable local state: a small SQLite binding for the ledger
** (lua/rivya/ledger.lua) and an advisory folder lock for batch runs.
**
** core.db_open(path) -> db | nil, err
**   db:exec(sql) -> true | nil, err           (one or more statements)
**   db:prepare(sql) -> stmt | nil, err
**   db:changes() -> n      db:last_rowid() -> n
**   db:close()                                (idempotent; also __gc, __close)
**   stmt:bind(...) -> stmt                    (positional; nil is NULL)
**   stmt:step() -> row | false | nil, err     (row: column name -> value)
**   stmt:reset()    stmt:finalize()           (finalize idempotent; also __gc)
** core.lock(path) -> lock | nil, err, holder_pid
**   lock:unlock()                             (idempotent; also __gc, __close)
** core.sha256_file(path) -> hex | nil, message  (a saved result, for the ledger)
** core.sqlite_memory() -> bytes in use, high-water mark (benchmarks)
**
** Values are bound and read with their types: Lua integers stay 64-bit
** integers, floats doubles, strings text (blobs come back as strings),
** booleans 1/0. Nothing is ever spliced into SQL text, so no escaping.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "rivya.h"
#include "sha256.h"

#define RV_DB_MT   "rivya.Db"
#define RV_STMT_MT "rivya.Stmt"
#define RV_LOCK_MT "rivya.Lock"

/* how long a writer waits for another process's transaction, ms */
#define RV_DB_BUSY_MS 15000

typedef struct rv_db {
  sqlite3 *db;                       /* NULL once closed */
} rv_db;

typedef struct rv_stmt {
  sqlite3_stmt *st;                  /* NULL once finalized */
  rv_db *owner;                      /* kept alive by owner_ref */
  int owner_ref;                     /* registry ref to the db userdata */
} rv_stmt;

typedef struct rv_lock {
  int fd;                            /* -1 once released */
} rv_lock;

/* nil + an io error naming what failed and SQLite's message */
static int db_fail(lua_State *L, sqlite3 *db, const char *what) {
  return rv_error_return(L, "io", NULL, "ledger: %s: %s", what,
                         db ? sqlite3_errmsg(db) : "out of memory");
}

/*
** Create the missing folders of `path`'s parent, each 0700 (the ledger
** holds prompts and task ids: nobody else's business). Existing folders
** are left as they are. Returns 0, or -1 with errno set.
*/
static int make_parents(const char *path) {
  char dir[PATH_MAX];
  size_t n = strlen(path), i;
  struct stat st;
  if (n >= sizeof dir) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(dir, path, n + 1);
  while (n > 0 && dir[n - 1] != '/') n--;      /* cut the file name */
  if (n <= 1) return 0;                        /* "" or "/" */
  dir[n - 1] = '\0';
  for (i = 1; i <= n - 1; i++) {
    if (dir[i] != '/' && dir[i] != '\0') continue;
    {
      char keep = dir[i];
      dir[i] = '\0';
      if (stat(dir, &st) != 0) {
        if (errno != ENOENT || (mkdir(dir, 0700) != 0 && errno != EEXIST)) return -1;
      } else if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
      }
      dir[i] = keep;
    }
  }
  return 0;
}

/*
** core.db_open(path) -> db | nil, err
** The file is created 0600 (its folders 0700) before SQLite opens it, so
** SQLite's WAL and shared-memory files, which copy its mode, are 0600 too.
** A path that exists but is not a regular file is refused.
*/
static int db_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  rv_db *d;
  sqlite3 *db = NULL;
  struct stat st;
  int fd, rc;
  if (make_parents(path) != 0)
    return rv_error_return(L, "io", NULL, "ledger: cannot create the folder of %s: %s",
                           path, strerror(errno));
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0)
    return rv_error_return(L, "io", NULL, "ledger: cannot open %s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return rv_error_return(L, "io", NULL, "ledger: %s is not a regular file", path);
  }
  close(fd);
  d = (rv_db *)lua_newuserdata(L, sizeof *d);
  d->db = NULL;
  luaL_setmetatable(L, RV_DB_MT);
  rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    lua_pop(L, 1);
    rc = db_fail(L, db, path);
    sqlite3_close_v2(db);
    return rc;
  }
  d->db = db;
  sqlite3_busy_timeout(db, RV_DB_BUSY_MS);
  sqlite3_extended_result_codes(db, 1);
  if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
    rc = db_fail(L, db, path);
    sqlite3_close_v2(db);
    d->db = NULL;
    return rc;
  }
  return 1;
}

static rv_db *check_db(lua_State *L) {
  rv_db *d = (rv_db *)luaL_checkudata(L, 1, RV_DB_MT);
  if (d->db == NULL) luaL_error(L, "rivya: attempt to use a closed ledger");
  return d;
}

/* db:exec(sql) -> true | nil, err */
static int db_exec(lua_State *L) {
  rv_db *d = check_db(L);
  const char *sql = luaL_checkstring(L, 2);
  if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_fail(L, d->db, "exec");
  lua_pushboolean(L, 1);
  return 1;
}

/* db:prepare(sql) -> stmt | nil, err; the statement keeps the db alive */
static int db_prepare(lua_State *L) {
  rv_db *d = check_db(L);
  size_t len;
  const char *sql = luaL_checklstring(L, 2, &len);
  sqlite3_stmt *st = NULL;
  rv_stmt *s = (rv_stmt *)lua_newuserdata(L, sizeof *s);
  s->st = NULL;
  s->owner = d;
  s->owner_ref = LUA_NOREF;
  luaL_setmetatable(L, RV_STMT_MT);
  if (sqlite3_prepare_v2(d->db, sql, (int)len, &st, NULL) != SQLITE_OK) return db_fail(L, d->db, "prepare");
  if (st == NULL) return rv_error_return(L, "io", NULL, "ledger: prepare: no statement in the SQL");
  s->st = st;
  lua_pushvalue(L, 1);
  s->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int db_changes(lua_State *L) {
  rv_db *d = check_db(L);
  lua_pushinteger(L, (lua_Integer)sqlite3_changes(d->db));
  return 1;
}

static int db_last_rowid(lua_State *L) {
  rv_db *d = check_db(L);
  lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(d->db));
  return 1;
}

/*
** db:close(): close_v2 defers the real close until the last statement is
** finalized, so a statement collected later never touches freed memory.
*/
static int db_close(lua_State *L) {
  rv_db *d = (rv_db *)luaL_checkudata(L, 1, RV_DB_MT);
  if (d->db != NULL) {
    sqlite3_close_v2(d->db);
    d->db = NULL;
  }
  return 0;
}

static int db_tostring(lua_State *L) {
  rv_db *d = (rv_db *)luaL_checkudata(L, 1, RV_DB_MT);
  const char *file = d->db ? sqlite3_db_filename(d->db, "main") : NULL;
  lua_pushfstring(L, "rivya.Db(%s)", d->db ? (file ? file : "?") : "closed");
  return 1;
}

static rv_stmt *check_stmt(lua_State *L) {
  rv_stmt *s = (rv_stmt *)luaL_checkudata(L, 1, RV_STMT_MT);
  if (s->st == NULL) luaL_error(L, "rivya: attempt to use a finalized statement");
  if (s->owner->db == NULL) luaL_error(L, "rivya: attempt to use a statement of a closed ledger");
  return s;
}

/* stmt:bind(...) -> stmt: resets the statement, binds every argument */
static int stmt_bind(lua_State *L) {
  rv_stmt *s = check_stmt(L);
  int n = lua_gettop(L) - 1, i, rc = SQLITE_OK;
  sqlite3_reset(s->st);
  sqlite3_clear_bindings(s->st);
  if (n > sqlite3_bind_parameter_count(s->st))
    return luaL_error(L, "rivya: %d values bound, the statement takes %d", n,
                      sqlite3_bind_parameter_count(s->st));
  for (i = 1; i <= n && rc == SQLITE_OK; i++) {
    int a = i + 1;
    switch (lua_type(L, a)) {
      case LUA_TNIL: rc = sqlite3_bind_null(s->st, i); break;
      case LUA_TBOOLEAN: rc = sqlite3_bind_int(s->st, i, lua_toboolean(L, a)); break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, a))
          rc = sqlite3_bind_int64(s->st, i, (sqlite3_int64)lua_tointeger(L, a));
        else
          rc = sqlite3_bind_double(s->st, i, (double)lua_tonumber(L, a));
        break;
      case LUA_TSTRING: {
        size_t len;
        const char *v = lua_tolstring(L, a, &len);
        rc = sqlite3_bind_text64(s->st, i, v, (sqlite3_uint64)len, SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
      }
      default:
        return luaL_argerror(L, a, lua_pushfstring(L, "cannot store a %s", luaL_typename(L, a)));
    }
  }
  if (rc != SQLITE_OK) return luaL_error(L, "rivya: bind: %s", sqlite3_errmsg(s->owner->db));
  lua_settop(L, 1);
  return 1;
}

/* push column i of the current row */
static void push_column(lua_State *L, sqlite3_stmt *st, int i) {
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, i)); break;
    case SQLITE_FLOAT: lua_pushnumber(L, (lua_Number)sqlite3_column_double(st, i)); break;
    case SQLITE_NULL: lua_pushnil(L); break;
    default: {
      const void *p = sqlite3_column_blob(st, i);
      lua_pushlstring(L, p ? (const char *)p : "", (size_t)sqlite3_column_bytes(st, i));
    }
  }
}

/*
** stmt:step() -> row | false | nil, err
** A row is a table of column name -> value (NULL columns absent); false
** when the statement is done. An error resets the statement.
*/
static int stmt_step(lua_State *L) {
  rv_stmt *s = check_stmt(L);
  int rc = sqlite3_step(s->st), i, n;
  if (rc == SQLITE_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc != SQLITE_ROW) {
    int r = db_fail(L, s->owner->db, "step");
    sqlite3_reset(s->st);
    return r;
  }
  n = sqlite3_column_count(s->st);
  lua_createtable(L, 0, n);
  for (i = 0; i < n; i++) {
    push_column(L, s->st, i);
    lua_setfield(L, -2, sqlite3_column_name(s->st, i));
  }
  return 1;
}

static int stmt_reset(lua_State *L) {
  rv_stmt *s = check_stmt(L);
  sqlite3_reset(s->st);
  return 0;
}

static int stmt_finalize(lua_State *L) {
  rv_stmt *s = (rv_stmt *)luaL_checkudata(L, 1, RV_STMT_MT);
  if (s->st != NULL) {
    sqlite3_finalize(s->st);
    s->st = NULL;
  }
  if (s->owner_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->owner_ref);
    s->owner_ref = LUA_NOREF;
  }
  return 0;
}

/*
** core.lock(path) -> lock | nil, err, holder_pid
** An exclusive POSIX record lock on `path` (created 0600), taken without
** waiting. The kernel drops it when the process ends, however it ends, so
** a kill -9 never leaves a folder locked. When another process holds it,
** returns nil, err and that process's pid.
*/
static int lock_take(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct flock fl;
  rv_lock *k;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return rv_error_return(L, "io", NULL, "cannot open the lock %s: %s", path, strerror(errno));
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int e = errno;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if ((e == EACCES || e == EAGAIN) && fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
      close(fd);
      rv_error_return(L, "busy", NULL, "%s is locked by process %ld", path, (long)fl.l_pid);
      lua_pushinteger(L, (lua_Integer)fl.l_pid);
      return 3;
    }
    close(fd);
    return rv_error_return(L, "io", NULL, "cannot lock %s: %s", path, strerror(e));
  }
  k = (rv_lock *)lua_newuserdata(L, sizeof *k);
  k->fd = fd;
  luaL_setmetatable(L, RV_LOCK_MT);
  return 1;
}

static int lock_unlock(lua_State *L) {
  rv_lock *k = (rv_lock *)luaL_checkudata(L, 1, RV_LOCK_MT);
  if (k->fd >= 0) {
    close(k->fd);                    /* closing drops the record lock */
    k->fd = -1;
  }
  return 0;
}

/* core.sqlite_memory() -> bytes SQLite holds now, its high-water mark */
static int db_memory(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sqlite3_memory_used());
  lua_pushinteger(L, (lua_Integer)sqlite3_memory_highwater(0));
  return 2;
}

/*
** core.sha256_file(path) -> 64 hex digits | nil, message
** The file is mapped, not read into Lua: a saved video may be large.
*/
static int file_sha256(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  char hex[65];
  void *p;
  int fd = rv_open_regular(L, path, &st);
  if (fd < 0) return 2;
  if (st.st_size == 0) {
    close(fd);
    rv_sha256_hex((const unsigned char *)"", 0, hex);
    lua_pushlstring(L, hex, 64);
    return 1;
  }
  p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  rv_sha256_hex((const unsigned char *)p, (size_t)st.st_size, hex);
  munmap(p, (size_t)st.st_size);
  lua_pushlstring(L, hex, 64);
  return 1;
}

static const luaL_Reg db_methods[] = {
  {"exec", db_exec},
  {"prepare", db_prepare},
  {"changes", db_changes},
  {"last_rowid", db_last_rowid},
  {"close", db_close},
  {NULL, NULL}
};

static const luaL_Reg stmt_methods[] = {
  {"bind", stmt_bind},
  {"step", stmt_step},
  {"reset", stmt_reset},
  {"finalize", stmt_finalize},
  {NULL, NULL}
};

static const luaL_Reg lock_methods[] = {
  {"unlock", lock_unlock},
  {NULL, NULL}
};

/* a metatable with `methods` as __index and `gc` as __gc and __close */
static void new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

int rv_db_open(lua_State *L) {
  new_type(L, RV_DB_MT, db_methods, db_close);
  luaL_getmetatable(L, RV_DB_MT);
  lua_pushcfunction(L, db_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  new_type(L, RV_STMT_MT, stmt_methods, stmt_finalize);
  new_type(L, RV_LOCK_MT, lock_methods, lock_unlock);
  lua_pushcfunction(L, db_open);
  lua_setfield(L, -2, "db_open");
  lua_pushcfunction(L, lock_take);
  lua_setfield(L, -2, "lock");
  lua_pushcfunction(L, file_sha256);
  lua_setfield(L, -2, "sha256_file");
  lua_pushcfunction(L, db_memory);
  lua_setfield(L, -2, "sqlite_memory");
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "sqlite_version");
  return 0;
}
