# rivya — Lua 5.4 module with a C core (libcurl) for the Rivya Public API v1.
# Every variable is overridable: make CFLAGS=-O0 PREFIX=/opt/rivya ...
SHELL := /bin/bash

LUA ?= lua5.4
LUA_PC ?= lua5.4
BUSTED ?= busted
LUACHECK ?= luacheck
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
LUADIR ?= $(PREFIX)/share/lua/5.4
LIBDIR ?= $(PREFIX)/lib/lua/5.4
BINDIR ?= $(PREFIX)/bin

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -std=c99 -Wall -Wextra -pedantic -Werror
DEFS := -D_POSIX_C_SOURCE=200809L
LUA_INCDIR ?= $(shell $(PKG_CONFIG) --cflags-only-I $(LUA_PC) 2>/dev/null | sed 's/^-I//;s/ .*//')
CURL_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS ?= $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null)
MHD_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags libmicrohttpd jansson 2>/dev/null)
MHD_LIBS ?= $(shell $(PKG_CONFIG) --libs libmicrohttpd jansson 2>/dev/null)
SANITIZE ?=

BUILD ?= build
CORE_SRC := $(wildcard src/*.c)
SIM_SRC := $(wildcard sim/*.c)
CORE_SO := $(BUILD)/rivya/core.so
SIM_BIN := $(BUILD)/rivya-sim

# Debian packages the project needs to build, test and demo (see README)
DEB_PACKAGES := gcc make pkg-config curl lua5.4 liblua5.4-dev libcurl4-openssl-dev \
  libmicrohttpd-dev libjansson-dev lua-cjson lua-busted lua-check luarocks \
  lua-argparse chromium openssl

# the concurrency specs drive rivya from two real event loops
DEB_PACKAGES += lua-cqueues lua-luv
# make bench only: hyperfine, GNU time, and Debian's lua-curl (built for Lua
# 5.1/5.2 only) as the Lua yardstick
BENCH_PACKAGES := hyperfine time lua5.1 lua-curl lua-cjson

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;
export RIVYA_SIM := $(CURDIR)/$(SIM_BIN)

.PHONY: all build setup test check lint spec rockspec-check demo install uninstall clean bench docs embed

all: build
build: $(CORE_SO) $(SIM_BIN)

$(CORE_SO): $(CORE_SRC) src/rivya.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) -fPIC -shared -I$(LUA_INCDIR) $(CURL_CFLAGS) \
	  -o $@ $(CORE_SRC) $(CURL_LIBS) -lpthread $(LDFLAGS)

# examples/embed: a C host embedding Lua 5.4 and rivya (run by spec/embed_spec.lua)
EMBED_BIN := $(BUILD)/rivya-embed
LUA_LIBS ?= $(shell $(PKG_CONFIG) --libs $(LUA_PC) 2>/dev/null)
embed: $(EMBED_BIN)
$(EMBED_BIN): examples/embed/host.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) -I$(LUA_INCDIR) -o $@ $< $(LUA_LIBS) -lpthread $(LDFLAGS)

$(SIM_BIN): $(SIM_SRC) $(wildcard sim/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(DEFS) $(CFLAGS) $(SANITIZE) $(MHD_CFLAGS) -o $@ $(SIM_SRC) \
	  $(MHD_LIBS) -lpthread $(LDFLAGS)

# regenerate the embedded sample video (needs xxd); the result is committed
sim/sample_mp4.c: sim/sample.mp4
	{ echo '/* sample.mp4 (2 s, 160x90, H.264) embedded: the video rivya-sim serves as results. Made by `make sim/sample_mp4.c`. */'; \
	  cd sim && xxd -i -n rv_sample_mp4 sample.mp4 | sed 's/^unsigned/const unsigned/'; } > $@

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

lint:
	$(LUACHECK) -q lua spec examples bin/rivya $(wildcard bench)

# busted's output and every simulator's stderr (kept in $(BUILD)/sim-logs by
# spec/helper.lua) are scanned for the specs' API keys: a leak is a failure.
spec: build
	@mkdir -p $(BUILD); rm -rf $(BUILD)/sim-logs; mkdir -p $(BUILD)/sim-logs
	@set -o pipefail; rc=0; \
	RIVYA_SIM_LOGS=$(CURDIR)/$(BUILD)/sim-logs \
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
rockspec-check: build
	@tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	luarocks --lua-version=5.4 --tree "$$tree" make --deps-mode=none rivya-scm-1.rockspec \
	  LUA_INCDIR=$(LUA_INCDIR) >$(BUILD)/luarocks.log 2>&1 || { cat $(BUILD)/luarocks.log; exit 1; }; \
	test -f "$$tree/lib/lua/5.4/rivya/core.so" && test -f "$$tree/share/lua/5.4/rivya/init.lua" && \
	test -x "$$tree/bin/rivya-sim" && test -x "$$tree/bin/rivya" || \
	  { echo "rockspec-check: incomplete install in $$tree"; exit 1; }; \
	export LUA_PATH="$$tree/share/lua/5.4/?.lua;$$tree/share/lua/5.4/?/init.lua;;" LUA_CPATH="$$tree/lib/lua/5.4/?.so;;"; \
	  $(LUA) -e 'local r = require "rivya"; assert(r.VERSION)' && "$$tree/bin/rivya" --version >/dev/null && \
	  echo "rockspec-check: ok"

# The whole suite: lint, the -Werror build, the rockspec install, busted (last line: N passed, M failed).
test: setup
	$(MAKE) --no-print-directory lint build embed rockspec-check
	$(MAKE) --no-print-directory spec

check: test

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
	@set -o pipefail; for b in bench/*.lua; do echo "== $$b"; $(LUA) $$b || exit 1; echo; done \
	  | tee bench/results.md

install: build
	install -d $(DESTDIR)$(LUADIR)/rivya $(DESTDIR)$(LIBDIR)/rivya $(DESTDIR)$(BINDIR)
	install -m 644 lua/rivya/*.lua $(DESTDIR)$(LUADIR)/rivya/
	install -m 755 $(CORE_SO) $(DESTDIR)$(LIBDIR)/rivya/core.so
	install -m 755 $(SIM_BIN) $(DESTDIR)$(BINDIR)/rivya-sim
	install -m 755 bin/rivya $(DESTDIR)$(BINDIR)/rivya

uninstall:
	rm -rf $(DESTDIR)$(LUADIR)/rivya $(DESTDIR)$(LIBDIR)/rivya $(DESTDIR)$(BINDIR)/rivya-sim $(DESTDIR)$(BINDIR)/rivya

clean:
	rm -rf $(BUILD)
