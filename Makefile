# rivya — Lua module with a C core (libcurl) for the Rivya Public API v1,
# for LuaJIT 2.1 and Lua 5.1, 5.2, 5.3 and 5.4 (the default).
# Every variable is overridable: make CFLAGS=-O0 PREFIX=/opt/rivya ...
SHELL := /bin/bash

# The interpreter picks the headers, the build folder and the install layout:
#   make LUA=luajit | lua5.1 | lua5.2 | lua5.3 | lua5.4 (default)
# builds into build/jit, build/5.1, build/5.2, build/5.3 and build/ (5.4).
# LUA may also be a path (LuaRocks passes /usr/bin/lua5.1); LUA_VERSION,
# LUA_PC (pkg-config name) and BUILD can be given when the name says nothing.
LUA ?= lua5.4
LUA_NAME := $(notdir $(LUA))
ifneq ($(filter luajit%,$(LUA_NAME)),)
  LUA_VERSION ?= 5.1
  LUA_PC ?= luajit
  LUA_TAG := jit
else ifneq ($(filter lua5.%,$(LUA_NAME)),)
  LUA_VERSION ?= $(patsubst lua%,%,$(LUA_NAME))
  LUA_PC ?= $(LUA_NAME)
  LUA_TAG := $(LUA_VERSION)
else
  LUA_VERSION ?= $(shell $(LUA) -e 'io.write((_VERSION:gsub("^Lua ", "")))' 2>/dev/null || echo 5.4)
  LUA_PC ?= lua$(LUA_VERSION)
  LUA_TAG := $(LUA_VERSION)
endif
# every interpreter make test-all runs the suite under (lua5.4 last), each
# run stopped after TEST_ALL_TIMEOUT seconds (a hang must not eat CI's hour)
LUA_ALL ?= luajit lua5.1 lua5.2 lua5.3 lua5.4
TEST_ALL_TIMEOUT ?= 1200
BUSTED ?= busted
LUACHECK ?= luacheck
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
LUADIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
BINDIR ?= $(PREFIX)/bin

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -std=c99 -Wall -Wextra -pedantic -Werror
DEFS := -D_POSIX_C_SOURCE=200809L
LUA_INCDIR ?= $(shell $(PKG_CONFIG) --cflags-only-I $(LUA_PC) 2>/dev/null | sed 's/^-I//;s/ .*//')
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null)
SQLITE_LIBS ?= $(shell $(PKG_CONFIG) --libs sqlite3 2>/dev/null || echo -lsqlite3)
MHD_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libmicrohttpd jansson zlib 2>/dev/null)
MHD_LIBS ?= $(shell $(PKG_CONFIG) --libs libmicrohttpd jansson zlib 2>/dev/null)
SANITIZE ?=

ifeq ($(LUA_TAG),5.4)
  BUILD ?= build
else
  BUILD ?= build/$(LUA_TAG)
endif
CORE_SRC := $(wildcard src/*.c)
SIM_SRC := $(wildcard sim/*.c)
# C shared by the core and rivya-sim (plain C, no Lua)
SIM_SHARED := src/sha256.c
CORE_SO := $(BUILD)/rivya/core.so
SIM_BIN := $(BUILD)/rivya-sim

# Debian packages the project needs to build, test and demo (see README)
DEB_PACKAGES := gcc make pkg-config curl lua5.4 liblua5.4-dev libcurl4-openssl-dev \
  libmicrohttpd-dev libjansson-dev lua-cjson lua-busted lua-check luarocks \
  lua-argparse chromium openssl
# make test-all: every other interpreter and its headers (Debian's lua-cjson,
# lua-busted, lua-cqueues, lua-luv and lua-argparse carry builds for each)
DEB_PACKAGES += luajit libluajit-5.1-dev lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev \
  lua5.3 liblua5.3-dev

# the ledger (src/db.c) links Debian's SQLite; the specs read ledgers with its CLI
DEB_PACKAGES += libsqlite3-dev sqlite3
# the concurrency specs drive rivya from two real event loops
DEB_PACKAGES += lua-cqueues lua-luv
# spec/sim_spec.lua receives rivya-sim's webhook deliveries on a lua-socket server,
# spec/rawserver.lua (transfer_spec's scripted server) is one, and spec/faults_spec.lua
# holds a lua-socket listener that never answers;
# rivya-sim's gzip fault compresses with zlib
DEB_PACKAGES += lua-socket zlib1g-dev
# make bench only: hyperfine, GNU time, and Debian's lua-curl (built for Lua
# 5.1/5.2 only) as the Lua yardstick
BENCH_PACKAGES := hyperfine time lua5.1 lua-curl lua-cjson

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
export RIVYA_SIM := $(CURDIR)/$(SIM_BIN)
# the build the specs load (.busted's cpath) and whose C host they run
export RIVYA_BUILD := $(CURDIR)/$(BUILD)
export RIVYA_EMBED := $(CURDIR)/$(BUILD)/rivya-embed
# the interpreter the specs run their subprocesses with (bin/rivya, examples)
export RIVYA_LUA := $(LUA)

.PHONY: all build setup env test test-all check lint spec rockspec-check demo install uninstall clean bench docs embed \
  setup-dev test-asan test-valgrind fuzz fuzz-smoke fuzz-build fuzz-merge

all: build
build: $(CORE_SO) $(SIM_BIN)

$(CORE_SO): $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) -fPIC -shared -I$(LUA_INCDIR) $(CURL_CFLAGS) \
	  -o $@ $(CORE_SRC) $(CURL_LIBS) $(SQLITE_LIBS) -lpthread $(LDFLAGS)

# examples/embed: a C host embedding Lua (any of them) and rivya (run by spec/embed_spec.lua)
EMBED_BIN := $(BUILD)/rivya-embed
LUA_LIBS ?= $(shell $(PKG_CONFIG) --libs $(LUA_PC) 2>/dev/null)
embed: $(EMBED_BIN)
$(EMBED_BIN): examples/embed/host.c src/compat.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) -I$(LUA_INCDIR) -Isrc -o $@ $< $(LUA_LIBS) -lpthread $(LDFLAGS)

$(SIM_BIN): $(SIM_SRC) $(SIM_SHARED) $(wildcard sim/*.h) src/sha256.h $(BUILD)/sim_catalog.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) $(MHD_CFLAGS) $(CURL_CFLAGS) -o $@ $(SIM_SRC) \
	  $(SIM_SHARED) $(BUILD)/sim_catalog.c $(MHD_LIBS) $(CURL_LIBS) -lpthread $(LDFLAGS)

# sim/catalog.json built into rivya-sim as bytes (od: no tool beyond coreutils)
%/sim_catalog.c: sim/catalog.json
	@mkdir -p $(dir $@)
	{ echo '/* sim/catalog.json, generated by the Makefile: the built-in model catalog */'; \
	  echo 'const unsigned char sim_catalog_json[] = {'; \
	  od -An -v -tx1 $< | sed -E 's/ ([0-9a-f]{2})/0x\1,/g'; \
	  echo '0x00};'; \
	  echo "const unsigned int sim_catalog_json_len = $$(wc -c < $<);"; } > $@

# regenerate the embedded sample video (needs xxd); the result is committed
sim/sample_mp4.c: sim/sample.mp4
	{ echo '/* sample.mp4 (2 s, 160x90, H.264) embedded: the video rivya-sim serves as results. Made by `make sim/sample_mp4.c`. */'; \
	  cd sim && xxd -i -n sim_sample_mp4 sample.mp4 | sed 's/^unsigned/const unsigned/'; } > $@

# Install missing Debian packages (idempotent, silent when all are present).
setup:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

PARSE_CHECK := local bad = 0 for f in io.lines() do local ok, e = loadfile(f) if not ok then bad = bad + 1 \
  io.stderr:write(e, "\n") end end if bad > 0 then io.stderr:write(_VERSION, ": files that do not parse\n") os.exit(1) end
# luacheck parses 5.4; every other interpreter installed must parse each file
# too (no goto, //, bit operators, <close> or \u{...} where it has none)
lint:
	$(LUACHECK) -q lua spec examples bin/rivya $(wildcard bench) $(wildcard fuzz/*.lua)
	@for l in $(filter-out lua5.4,$(LUA_ALL)); do command -v $$l >/dev/null || continue; \
	  { find lua spec examples bench -name '*.lua'; ls fuzz/*.lua bin/rivya; } | $$l -e '$(PARSE_CHECK)' || exit 1; done
	@! grep -rnP '(?<!\\)\\x[0-9A-Fa-f]{2}' --include='*.lua' lua spec examples bench bin \
	  || { echo "lint: \\x escapes above: PUC Lua 5.1 reads \\xe9 as the letters xe9 (write \\233)"; exit 1; }

# busted's output and every simulator's stderr (kept in $(BUILD)/sim-logs by
# spec/helper.lua) are scanned for the specs' API keys: a leak is a failure.
spec: build
	@mkdir -p $(BUILD); rm -rf $(BUILD)/sim-logs; mkdir -p $(BUILD)/sim-logs
	@set -o pipefail; rc=0; \
	RIVYA_SIM_LOGS=$(CURDIR)/$(BUILD)/sim-logs XDG_STATE_HOME=$(CURDIR)/$(BUILD)/state \
	  $(BUSTED) --lua=$(LUA) $(BUSTED_ARGS) 2>&1 | tee $(BUILD)/busted.log || rc=$$?; \
	line=$$(grep -aE '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' $(BUILD)/busted.log | tail -1); \
	ok=$$(echo "$$line" | sed -E 's/.*\b([0-9]+) success.*/\1/'); \
	fl=$$(echo "$$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/'); \
	er=$$(echo "$$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/'); \
	if [ -z "$$line" ]; then echo "0 passed, 1 failed"; exit 1; fi; \
	keys=$$($(LUA) -e 'local h = require "helper"; print(h.KEY); print(h.REVOKED_KEY); print(h.EXPIRED_KEY); print(h.SCOPED_KEY)'); \
	leaks=$$(grep -rlaF -- "$$keys" $(BUILD)/busted.log $(BUILD)/sim-logs); \
	if [ -z "$$keys" ] || [ -n "$$leaks" ]; then \
	  echo "key scan: an API key appears in: $${leaks:-(no keys to scan for)}"; fl=$$((fl + 1)); rc=1; \
	else echo "key scan: no API key in busted's output or $$(ls $(BUILD)/sim-logs | wc -l) simulator logs"; fi; \
	echo "$$ok passed, $$((fl + er)) failed"; exit $$rc

# The rockspec must build and install offline into a scratch tree.
# (LuaJIT: a LuaRocks configuration naming it, as Debian's is for lua5.1)
rockspec-check: build
	@tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	if [ "$(LUA_TAG)" = jit ]; then \
	  printf 'lua_interpreter = "%s"\nvariables = { LUA_BINDIR = "%s", LUA_INCDIR = "%s" }\n' \
	    "$(notdir $(REAL_LUA))" "$(patsubst %/,%,$(dir $(REAL_LUA)))" "$(LUA_INCDIR)" >"$$tree/luarocks.cfg"; \
	  export LUAROCKS_CONFIG="$$tree/luarocks.cfg"; fi; \
	luarocks --lua-version=$(LUA_VERSION) --tree "$$tree" make --deps-mode=none rivya-scm-1.rockspec \
	  LUA=$(REAL_LUA) LUA_INCDIR=$(LUA_INCDIR) >$(BUILD)/luarocks.log 2>&1 || { cat $(BUILD)/luarocks.log; exit 1; }; \
	test -f "$$tree/lib/lua/$(LUA_VERSION)/rivya/core.so" && test -f "$$tree/share/lua/$(LUA_VERSION)/rivya/init.lua" && \
	test -f "$$tree/share/lua/$(LUA_VERSION)/rivya/cli/init.lua" && \
	test -f "$$tree/share/lua/$(LUA_VERSION)/rivya/cli/cmd/generate.lua" && \
	test -x "$$tree/bin/rivya-sim" && test -x "$$tree/bin/rivya" || \
	  { echo "rockspec-check: incomplete install in $$tree"; exit 1; }; \
	export LUA_PATH="$$tree/share/lua/$(LUA_VERSION)/?.lua;$$tree/share/lua/$(LUA_VERSION)/?/init.lua;;" \
	  LUA_CPATH="$$tree/lib/lua/$(LUA_VERSION)/?.so;;"; \
	  $(LUA) -e 'local r = require "rivya"; assert(r.VERSION)' && "$$tree/bin/rivya" --version >/dev/null && \
	  echo "rockspec-check: ok"

# The paths to run bin/rivya and Lua scripts from this checkout: eval "$(make -s env)"
env:
	@echo "export LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;'"
	@echo "export LUA_CPATH='$(CURDIR)/$(BUILD)/?.so;;'"

# The whole suite: lint, the -Werror build, the rockspec install, busted (last line: N passed, M failed).
test: setup
	$(MAKE) --no-print-directory lint build embed rockspec-check
	$(MAKE) --no-print-directory spec

check: test

# The whole busted suite under every interpreter of LUA_ALL, each against its
# own build (build/jit, build/5.1, ...) and rivya-sim; one summary line per
# interpreter, then the total `N passed, M failed`.
# bin/rivya runs under lua5.4 (its #! line) in every run, so the CLI specs need
# the 5.4 build beside the interpreter under test: it is built first.
test-all: setup
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory build
	@set -o pipefail; rc=0; sum=""; tp=0; tf=0; mkdir -p build; for l in $(LUA_ALL); do \
	  echo "== test-all: $$l"; log=build/test-all-$$l.log; \
	  if ! $(MAKE) --no-print-directory LUA=$$l build embed rockspec-check >$$log 2>&1; then \
	    cat $$log; rc=1; tf=$$((tf + 1)); sum="$$sum$$l: build FAILED (see $$log)\n"; continue; fi; \
	  timeout $(TEST_ALL_TIMEOUT) $(MAKE) --no-print-directory LUA=$$l spec 2>&1 | tee -a $$log || rc=1; \
	  line=$$(grep -aE '^[0-9]+ passed, [0-9]+ failed$$' $$log | tail -1); \
	  p=$${line%% passed, *}; f=$${line##*, }; f=$${f%% failed}; \
	  case "$$p$$f" in ''|*[!0-9]*) p=0; f=1; rc=1;; esac; \
	  tp=$$((tp + p)); tf=$$((tf + f)); sum="$$sum$$l: $$p passed, $$f failed\n"; \
	done; printf "test-all:\n$$sum"; echo "$$tp passed, $$tf failed"; exit $$rc

# A video generated through the module against a fresh rivya-sim, saved to out/demo.mp4.
demo: setup build
	@mkdir -p out
	@RIVYA_SIM=$(CURDIR)/$(SIM_BIN) RIVYA_SIM_ARGS="--task-seconds 4" RIVYA_POLL_INTERVAL=1 \
	  examples/with-sim.sh $(LUA) examples/text_to_video.lua out/demo.mp4

# The API reference, generated from the sources' comments (LDoc) into build/docs/.
docs:
	@command -v ldoc >/dev/null || $(MAKE) --no-print-directory setup DEB_PACKAGES=lua-ldoc
	ldoc -q .
	@echo "docs: $(CURDIR)/build/docs/index.html"

# Benchmarks (not part of test): each prints a markdown table with date and machine.
bench: setup build
	@$(MAKE) --no-print-directory setup DEB_PACKAGES="$(BENCH_PACKAGES)"
	@for l in $(LUA_ALL); do $(MAKE) --no-print-directory LUA=$$l build >/dev/null || exit 1; done
	@set -o pipefail; for b in bench/*.lua; do echo "== $$b"; $(LUA) $$b || exit 1; echo; done \
	  | tee bench/results.md

# ---- memory safety and fuzzing (README: "Memory safety and fuzzing") ---------
# Tools only these targets need: make setup-dev, which they depend on.
DEV_PACKAGES := clang libclang-rt-14-dev valgrind
ASAN_BUILD ?= build-asan
VALGRIND_BUILD ?= build-valgrind
FUZZ_BUILD ?= build-fuzz
ASAN_CC ?= gcc
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
REAL_LUA = $(shell command -v $(LUA) 2>/dev/null || echo /usr/bin/$(LUA))
CHECK_LOGS = $(CURDIR)/$(1)/check-logs
# busted's interpreter and every lua5.4 the specs start come through sanitize/bin
CHECK_ENV = PATH="$(CURDIR)/sanitize/bin:$$PATH" RIVYA_REAL_LUA=$(REAL_LUA) \
  RIVYA_PRELOAD=$(CURDIR)/$(1)/preload.so RIVYA_CHECK_LOGS=$(call CHECK_LOGS,$(1)) \
  RIVYA_EMBED_BIN=$(CURDIR)/$(1)/rivya-embed
ASAN_ENV = RIVYA_CHECK=asan RIVYA_LIBASAN=$$($(ASAN_CC) -print-file-name=libasan.so) \
  ASAN_OPTIONS=detect_leaks=1:log_path=$(call CHECK_LOGS,$(ASAN_BUILD))/asan:log_exe_name=1 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/sanitize/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(call CHECK_LOGS,$(ASAN_BUILD))/ubsan
VALGRIND_OPTS := --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --num-callers=40 --child-silent-after-fork=yes --suppressions=$(CURDIR)/sanitize/valgrind.supp

setup-dev: setup
	@$(MAKE) --no-print-directory setup DEB_PACKAGES="$(DEV_PACKAGES)"

%/preload.so: sanitize/preload.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -Werror -O2 -fPIC -shared -o $@ $<

# The whole busted suite against the C core and rivya-sim built with ASan + UBSan
# (gcc); the lua5.4 interpreters get the ASan runtime preloaded.
test-asan: setup-dev
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=$(ASAN_CC) CFLAGS="-O1 -g" \
	  SANITIZE="$(ASAN_FLAGS)" build embed $(ASAN_BUILD)/preload.so
	@rm -rf $(call CHECK_LOGS,$(ASAN_BUILD)); mkdir -p $(call CHECK_LOGS,$(ASAN_BUILD))
	@rc=0; $(call CHECK_ENV,$(ASAN_BUILD)) $(ASAN_ENV) $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
	  CC=$(ASAN_CC) CFLAGS="-O1 -g" SANITIZE="$(ASAN_FLAGS)" RIVYA_EMBED=$(CURDIR)/sanitize/checked-embed \
	  spec || rc=1; \
	sanitize/check-logs asan $(call CHECK_LOGS,$(ASAN_BUILD)) || rc=1; exit $$rc

# The whole busted suite under valgrind memcheck: every lua5.4 and every
# rivya-sim, one log each; 0 errors and 0 bytes definitely lost. Specs that
# need the interpreter at full speed are left out (VALGRIND_SKIP, Lua
# patterns of test names): 2,000 coroutines under memcheck only add minutes,
# and the parked-waits measure needs its 300 waits between their 2nd and 3rd
# polls (0.3 s apart) when it looks.
VALGRIND_SKIP ?= wakes%s2,000%ssleeping%sfunctions parked%swaits%shold
test-valgrind: setup-dev
	@$(MAKE) --no-print-directory BUILD=$(VALGRIND_BUILD) CFLAGS="-O1 -g" build embed \
	  $(VALGRIND_BUILD)/preload.so
	@rm -rf $(call CHECK_LOGS,$(VALGRIND_BUILD)); mkdir -p $(call CHECK_LOGS,$(VALGRIND_BUILD))
	@rc=0; $(call CHECK_ENV,$(VALGRIND_BUILD)) RIVYA_CHECK=valgrind RIVYA_VALGRIND_OPTS="$(VALGRIND_OPTS)" \
	  RIVYA_SIM_BIN=$(CURDIR)/$(VALGRIND_BUILD)/rivya-sim \
	  $(MAKE) --no-print-directory BUILD=$(VALGRIND_BUILD) CFLAGS="-O1 -g" \
	  RIVYA_SIM=$(CURDIR)/sanitize/valgrind-sim RIVYA_EMBED=$(CURDIR)/sanitize/checked-embed \
	  BUSTED_ARGS="$(BUSTED_ARGS) $(VALGRIND_SKIP:%=--filter-out=%)" spec || rc=1; \
	sanitize/check-logs valgrind $(call CHECK_LOGS,$(VALGRIND_BUILD)) || rc=1; exit $$rc

# libFuzzer targets (fuzz/*_fuzz.c, clang): each runs FUZZ_SECONDS from its
# committed corpus fuzz/corpus/<target>, new inputs going to $(FUZZ_BUILD)/corpus.
FUZZ_CC ?= clang
FUZZ_FLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS := validate json sniff sim media
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%_fuzz)
FUZZ_CFLAGS := -std=c99 -Wall -Wextra -Werror $(DEFS) -I$(LUA_INCDIR)
FUZZ_DEPS := fuzz/fuzz.h $(wildcard src/*.h)

$(FUZZ_BUILD)/validate_fuzz: fuzz/validate_fuzz.c $(CORE_SRC) $(FUZZ_DEPS) lua/rivya/catalog_snapshot.lua
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -DRV_ROOT='"$(CURDIR)"' -o $@ $< src/validate.c src/text.c src/suggest.c src/catalog.c src/sniff.c \
	  src/error.c src/buf.c $(LUA_LIBS) -lm

$(FUZZ_BUILD)/sniff_fuzz: fuzz/sniff_fuzz.c $(CORE_SRC) $(FUZZ_DEPS) lua/rivya/catalog_snapshot.lua
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -DRV_ROOT='"$(CURDIR)"' -o $@ $< src/validate.c src/text.c src/suggest.c src/catalog.c src/sniff.c \
	  src/error.c src/buf.c src/file.c $(LUA_LIBS) -lm

# json_fuzz.c includes src/transfer.c itself, for its static callbacks
$(FUZZ_BUILD)/json_fuzz: fuzz/json_fuzz.c fuzz/json_fuzz.lua $(CORE_SRC) $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) -DRV_ROOT='"$(CURDIR)"' $(CURL_CFLAGS) -o $@ $< \
	  $(filter-out src/transfer.c,$(CORE_SRC)) $(LUA_LIBS) $(CURL_LIBS) $(SQLITE_LIBS) -lpthread -lm

# the download checks: whole-file structure (sniff.c) and the temp file (download.c)
$(FUZZ_BUILD)/media_fuzz: fuzz/media_fuzz.c src/sniff.c src/download.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) $(CURL_CFLAGS) -o $@ $< src/sniff.c src/download.c \
	  $(LUA_LIBS) $(CURL_LIBS) -lm

$(FUZZ_BUILD)/sim_fuzz: fuzz/sim_fuzz.c fuzz/fuzz.h $(SIM_SRC) $(SIM_SHARED) $(wildcard sim/*.h) $(FUZZ_BUILD)/sim_catalog.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) $(MHD_CFLAGS) -o $@ $< \
	  $(filter-out sim/main.c,$(SIM_SRC)) $(SIM_SHARED) $(FUZZ_BUILD)/sim_catalog.c $(MHD_LIBS) $(CURL_LIBS) \
	  -lpthread -lm

fuzz-build: setup-dev
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

# run each target for $(1) seconds; a crash stops with its input in $(FUZZ_BUILD)/artifacts
define run-fuzzers
	@mkdir -p $(FUZZ_BUILD)/artifacts; rc=0; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  $(FUZZ_BUILD)/$${t}_fuzz -max_total_time=$(1) -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
	    -print_final_stats=1 -artifact_prefix=$(CURDIR)/$(FUZZ_BUILD)/artifacts/$$t- \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t >$(FUZZ_BUILD)/$$t.log 2>&1; r=$$?; \
	  runs=$$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' $(FUZZ_BUILD)/$$t.log | grep -oE '[0-9]+$$'); \
	  secs=$$(grep -aoE 'Done [0-9]+ runs in [0-9]+ second' $(FUZZ_BUILD)/$$t.log | grep -oE '[0-9]+ second' | grep -oE '[0-9]+'); \
	  cov=$$(grep -aoE 'cov: [0-9]+' $(FUZZ_BUILD)/$$t.log | tail -1); \
	  if [ $$r -ne 0 ]; then rc=1; echo "fuzz $$t: FAILED after $${runs:-?} runs (log: $(FUZZ_BUILD)/$$t.log)"; \
	    grep -aE -A12 'ERROR: |property failed|raised on' $(FUZZ_BUILD)/$$t.log | head -40; \
	  else echo "fuzz $$t: $${runs:-?} runs in $${secs:-?} s ($$(( $${runs:-0} / ($${secs:-1} > 0 ? $${secs:-1} : 1) )) exec/s), $$cov, no crash"; fi; \
	done; exit $$rc
endef

fuzz: fuzz-build
	$(call run-fuzzers,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call run-fuzzers,$(FUZZ_SMOKE_SECONDS))

# fold what the fuzzers found into the committed corpora, keeping only inputs
# that add coverage (then review and commit fuzz/corpus)
fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  $(FUZZ_BUILD)/$${t}_fuzz -merge=1 -max_len=65536 fuzz/corpus/$$t $(FUZZ_BUILD)/corpus/$$t \
	    >$(FUZZ_BUILD)/$$t-merge.log 2>&1 || exit 1; echo "fuzz-merge $$t: $$(ls fuzz/corpus/$$t | wc -l) inputs"; done

install: build
	install -d $(DESTDIR)$(LUADIR)/rivya/cli/cmd $(DESTDIR)$(LIBDIR)/rivya $(DESTDIR)$(BINDIR)
	install -m 644 lua/rivya/*.lua $(DESTDIR)$(LUADIR)/rivya/
	install -m 644 lua/rivya/cli/*.lua $(DESTDIR)$(LUADIR)/rivya/cli/
	install -m 644 lua/rivya/cli/cmd/*.lua $(DESTDIR)$(LUADIR)/rivya/cli/cmd/
	install -m 755 $(CORE_SO) $(DESTDIR)$(LIBDIR)/rivya/core.so
	install -m 755 $(SIM_BIN) $(DESTDIR)$(BINDIR)/rivya-sim
	sed '1s|^#!.*|#!$(REAL_LUA)|' bin/rivya > $(DESTDIR)$(BINDIR)/rivya.tmp
	chmod 755 $(DESTDIR)$(BINDIR)/rivya.tmp && mv $(DESTDIR)$(BINDIR)/rivya.tmp $(DESTDIR)$(BINDIR)/rivya

uninstall:
	rm -rf $(DESTDIR)$(LUADIR)/rivya $(DESTDIR)$(LIBDIR)/rivya $(DESTDIR)$(BINDIR)/rivya-sim $(DESTDIR)$(BINDIR)/rivya

clean:
	rm -rf $(BUILD)
