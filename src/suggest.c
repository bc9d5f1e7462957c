/*
** suggest.c — "did you mean": the closest known name to a misspelt one.
** One engine for the whole module: the validator's field and model names
** (rv_suggest) and Lua's option names (core.suggest).
*/
#include <string.h>

#include "rivya.h"

/*
** Fold `s` (`len` bytes) for comparing names: lower case, without '_' and
** '-', so "aspectRatio" and "aspect-ratio" meet "aspect_ratio". Returns the
** folded length, or -1 when longer than RV_NAME_MAX_LEN.
*/
static int fold(const char *s, size_t len, char *out) {
  size_t i;
  int n = 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (c == '_' || c == '-') continue;
    if (n == RV_NAME_MAX_LEN) return -1;
    out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  return n;
}

/*
** Damerau-Levenshtein distance (optimal string alignment) between `a`
** (`n` chars) and `b` (`m` chars), both at most RV_NAME_MAX_LEN.
*/
static int distance(const char *a, int n, const char *b, int m) {
  int rows[3][RV_NAME_MAX_LEN + 1];
  int *prev2 = rows[0], *prev = rows[1], *cur = rows[2], *t;
  int i, j;
  for (j = 0; j <= m; j++) prev[j] = j;
  for (i = 1; i <= n; i++) {
    cur[0] = i;
    for (j = 1; j <= m; j++) {
      int cost = a[i - 1] != b[j - 1];
      int d = prev[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      if (prev[j - 1] + cost < d) d = prev[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          prev2[j - 2] + 1 < d)
        d = prev2[j - 2] + 1;
      cur[j] = d;
    }
    t = prev2; prev2 = prev; prev = cur; cur = t;
  }
  return prev[m];
}

/*
** The name closest to `s` (`len` bytes) among the names `at(list, 0)`,
** `at(list, 1)`, ... (NULL ends them), or NULL when none is within `limit`
** edits (and fewer edits than `s` has characters, so "id" does not become
** "seed"). Case, '_' and '-' do not count.
*/
const char *rv_suggest(const char *s, size_t len, rv_name_at at,
                       const void *list, int limit) {
  char a[RV_NAME_MAX_LEN], b[RV_NAME_MAX_LEN];
  const char *best = NULL, *name;
  int la, lb, d, bestd = limit + 1;
  size_t i;
  if ((la = fold(s, len, a)) <= 0) return NULL;
  for (i = 0; (name = at(list, i)) != NULL; i++) {
    if ((lb = fold(name, strlen(name), b)) < 0) continue;
    if (la - lb > limit || lb - la > limit) continue;
    d = distance(a, la, b, lb);
    if (d < bestd && d < la) {
      bestd = d;
      best = name;
    }
  }
  return best;
}

/* names from a Lua array on the stack: list points at its index */
typedef struct lua_names {
  lua_State *L;
  int idx;
} lua_names;

static const char *lua_name_at(const void *list, size_t i) {
  const lua_names *n = (const lua_names *)list;
  const char *s;
  if (lua_rawgeti(n->L, n->idx, (lua_Integer)i + 1) != LUA_TSTRING) {
    lua_pop(n->L, 1);
    return NULL;
  }
  s = lua_tostring(n->L, -1);       /* still anchored by the array */
  lua_pop(n->L, 1);
  return s;
}

/*
** core.suggest(word, names [, limit]) -> the name of the array `names`
** closest to `word`, or nil (limit: largest edit distance, default 3).
** The array ends at its first non-string.
*/
int rv_suggest_lua(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len), *best;
  lua_names n;
  int limit = (int)luaL_optinteger(L, 3, RV_SUGGEST_MAX);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_argcheck(L, limit >= 0 && limit <= RV_NAME_MAX_LEN, 3, "limit out of range");
  n.L = L;
  n.idx = 2;
  best = rv_suggest(s, len, lua_name_at, &n, limit);
  if (best == NULL) lua_pushnil(L);
  else lua_pushstring(L, best);
  return 1;
}
