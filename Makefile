# sluice - one top-level Makefile.  pkg-config for every dependency.
#
#   make            build every binary into bin/
#   make asan       the same with AddressSanitizer + UBSan into bin-asan/
#   make test       install missing deps, build, run unit + integration tests
#   make run        install missing deps, build, start sluiced in the foreground
#   make fuzz       build the libFuzzer targets and run each for a short while
#   make bench      throughput side by side with Postfix (never part of test)
#   make deps       apt-get install everything the above need
#   make install    binaries, /etc/sluice/sluice.conf, rules, man pages, systemd units
#                   (PREFIX=/usr/local, DESTDIR for packagers)

PKGS     := libevent libevent_openssl libevent_pthreads openssl libcares libpcre2-8 libpsl zlib jansson
BIN      ?= bin
OBJ      ?= build/obj
OPT      ?= -O2 -g
CC       ?= cc
CFLAGS_W := -Wall -Wextra -Werror
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 $(OPT) $(CFLAGS_W) -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS     = $(PKG_LIBS) -lresolv -lcrypt -lpthread -lm $(EXTRA_LDLIBS)

# Shared code: lib/ conf/ proto/ -> libsluice.a; mta/ minus main -> libmta.a
# lib/milterd.c (the milters' start-up and their sigwait() interposer) is
# linked into the milter daemons only: in libsluice.a its sigwait() would be
# pulled into every binary that calls sigwait().
LIB_SRCS  := $(filter-out lib/milterd.c,$(wildcard lib/*.c conf/*.c proto/*.c))
MTA_SRCS  := $(filter-out mta/main.c,$(wildcard mta/*.c))
TOOL_SRCS := $(wildcard tools/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
# Test drivers (tests/tools/*.c): small programs integration tests run, e.g.
# dmarc_eval (proto/dmarc over real DNS, for the Mail::DMARC differential).
TESTTOOL_SRCS := $(wildcard tests/tools/*.c)
TESTTOOL_BINS := $(patsubst tests/tools/%.c,$(BIN)/tests/tools/%,$(TESTTOOL_SRCS))

LIBSLUICE := $(OBJ)/libsluice.a
LIBMILTERD := $(OBJ)/libmilterd.a
LIBMTA    := $(OBJ)/libmta.a
UNIT_BINS := $(patsubst tests/unit/%.c,$(BIN)/tests/%,$(UNIT_SRCS))

# Daemons other than sluiced: each directory with a main.c is one binary,
# bin/sluice-<dir>. Its other .c files form $(OBJ)/libd-<dir>.a, which unit
# tests link too, so daemon logic is testable without sockets.
EXTRA_DAEMON_DIRS := $(patsubst %/main.c,%,$(wildcard policyd/*/main.c milters/*/main.c))
EXTRA_DAEMONS := $(foreach d,$(EXTRA_DAEMON_DIRS),$(BIN)/sluice-$(notdir $(d)))
DAEMON_LIBAS := $(foreach d,$(EXTRA_DAEMON_DIRS),$(OBJ)/libd-$(notdir $(d)).a)
# Extra link flags per daemon (DAEMON_LIBS_<dir>); unit tests get all of them.
DAEMON_LIBS_dkim := -lmilter $(shell pkg-config --libs opendkim 2>/dev/null || echo -lopendkim)
DAEMON_LIBS_dmarc := -lmilter $(shell pkg-config --libs opendkim 2>/dev/null || echo -lopendkim)
DAEMON_LIBS_spam := -lmilter -llmdb -lhiredis $(shell pkg-config --libs gmime-3.0 libxml-2.0 libhs libmaxminddb 2>/dev/null)
DAEMON_LIBS_ratelimit := -llmdb -lhiredis $(shell pkg-config --libs libmaxminddb 2>/dev/null)
# Compile flags for the sources of one daemon and its unit tests.
SPAM_CFLAGS = $(shell pkg-config --cflags gmime-3.0 libxml-2.0 libhs libmaxminddb 2>/dev/null)
$(OBJ)/milters/spam/%.o $(OBJ)/tests/unit/test_spam%.o $(OBJ)/tests/fuzz/fuzz_spam%.o: EXTRA_CFLAGS += $(SPAM_CFLAGS)
# Other daemons' libraries a daemon links (DAEMON_DEPS_<dir>): sluice-dmarc
# verifies DKIM with sluice-dkim's code.
DAEMON_DEPS_dmarc := $(OBJ)/libd-dkim.a $(LIBMILTERD)
DAEMON_DEPS_dkim := $(LIBMILTERD)
DAEMON_DEPS_spam := $(LIBMILTERD)
ALL_DAEMON_LIBS = $(foreach d,$(EXTRA_DAEMON_DIRS),$(DAEMON_LIBS_$(notdir $(d))))

BINARIES := $(BIN)/sluiced $(BIN)/sluice $(BIN)/sluice-sendmail $(EXTRA_DAEMONS) $(BIN)/tests/test-milter

.PHONY: all asan tsan test unit integration run fuzz bench deps deps-check clean install man
all: $(BINARIES) $(UNIT_BINS) $(TESTTOOL_BINS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBSLUICE): $(LIB_SRCS:%.c=$(OBJ)/%.o)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBMILTERD): $(OBJ)/lib/milterd.o
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBMTA): $(MTA_SRCS:%.c=$(OBJ)/%.o)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^ $(if $(MTA_SRCS),,&& true)

$(BIN)/sluiced: $(OBJ)/mta/main.o $(LIBMTA) $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
# sluice (tools/): libxml2 for DMARC aggregate report XML
TOOL_PKGS := libxml-2.0
$(OBJ)/tools/%.o $(OBJ)/tests/unit/test_report%.o $(OBJ)/tests/fuzz/fuzz_report%.o: EXTRA_CFLAGS += $(shell pkg-config --cflags $(TOOL_PKGS) 2>/dev/null)
$(BIN)/sluice: $(TOOL_SRCS:%.c=$(OBJ)/%.o) $(LIBMTA) $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs $(TOOL_PKGS) 2>/dev/null)

define daemon_rule
$(OBJ)/libd-$(notdir $(1)).a: $(patsubst %.c,$(OBJ)/%.o,$(filter-out $(1)/main.c,$(wildcard $(1)/*.c)))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
$(BIN)/sluice-$(notdir $(1)): $(OBJ)/$(1)/main.o $(OBJ)/libd-$(notdir $(1)).a $(DAEMON_DEPS_$(notdir $(1))) $(LIBSLUICE)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$^ $$(LDLIBS) $$(DAEMON_LIBS_$(notdir $(1)))
endef
$(foreach d,$(EXTRA_DAEMON_DIRS),$(eval $(call daemon_rule,$(d))))

$(BIN)/sluice-sendmail: $(OBJ)/tools/sendmail/main.o $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# A libmilter filter used by the milter-client integration tests.
$(BIN)/tests/test-milter: tests/milter/test_milter.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lmilter -lpthread

$(BIN)/tests/%: $(OBJ)/tests/unit/%.o $(DAEMON_LIBAS) $(LIBMILTERD) $(LIBMTA) $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -Wl,--start-group $(DAEMON_LIBAS) $(LIBMILTERD) $(LIBMTA) $(LIBSLUICE) -Wl,--end-group \
	  $(LDLIBS) $(ALL_DAEMON_LIBS) $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka) $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson)

$(BIN)/tests/tools/%: $(OBJ)/tests/tools/%.o $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

-include $(shell find build -name '*.d' 2>/dev/null)

asan:
	$(MAKE) BIN=bin-asan OBJ=build/asan \
	  OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

deps:
	sh tools/deps.sh
deps-check:
	@sh tools/deps.sh --check 2>/dev/null || sh tools/deps.sh

# Unit tests run both optimised and under ASan+UBSan; integration tests run
# against the ASan build (SLUICE_BIN) so memory errors fail the suite.
unit: all asan tsan
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done
	@set -e; for t in $(subst $(BIN)/,bin-asan/,$(UNIT_BINS)); do echo "== $$t"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done
	sh tests/tools/report_tsan.sh bin-tsan/sluice $(BIN)/sluice

# The threaded programs under ThreadSanitizer (sluice report --jobs).
tsan:
	$(MAKE) BIN=bin-tsan OBJ=build/tsan OPT="-O1 -g -fsanitize=thread" bin-tsan/sluice

# Two pytest workers (pytest-xdist), one test file per worker at a time
# (--dist loadfile keeps a module's shared servers in one process): most
# tests wait on servers and timeouts, so this halves the wall time on 2 cores.
PYTEST_WORKERS ?= 2
integration: all asan
	SLUICE_BIN=$(CURDIR)/bin-asan \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	    $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) \
	    --durations=15 tests/integration $(PYTEST_ARGS)

test: deps-check
	$(MAKE) unit
	$(MAKE) integration

run: deps-check all
	sh tools/run.sh

FUZZ_CC := clang
FUZZ_OBJ := build/fuzz
# every daemon's library: fuzz targets of daemon code (fuzz_spam_*, fuzz_ratelimit_*, ...) link them
FUZZ_DAEMON_LIBAS = $(foreach d,$(EXTRA_DAEMON_DIRS),$(FUZZ_OBJ)/libd-$(notdir $(d)).a)
fuzz:
	$(MAKE) CC=$(FUZZ_CC) OBJ=$(FUZZ_OBJ) BIN=bin-fuzz \
	  OPT="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
	  $(FUZZ_OBJ)/libmta.a $(FUZZ_OBJ)/libsluice.a $(FUZZ_OBJ)/libmilterd.a $(FUZZ_DAEMON_LIBAS)
	@mkdir -p bin-fuzz
	@set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  $(FUZZ_CC) -std=gnu11 -O1 -g -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(SPAM_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o bin-fuzz/$$n $$f \
	    -Wl,--start-group $(FUZZ_DAEMON_LIBAS) $(FUZZ_OBJ)/libmilterd.a $(FUZZ_OBJ)/libmta.a $(FUZZ_OBJ)/libsluice.a -Wl,--end-group \
	    $(LDLIBS) $(ALL_DAEMON_LIBS); \
	  mkdir -p build/fuzz-corpus/$$n; \
	  seeds=; [ -d tests/fuzz/corpus/$$n ] && seeds=tests/fuzz/corpus/$$n; \
	  echo "== fuzz $$n ($(FUZZ_SECONDS)s)"; \
	  bin-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz-corpus/$$n $$seeds; done
FUZZ_SECONDS ?= 30

# Each benchmark runs its peers side by side in one run (never part of `make test`).
BENCHES ?= smtp relay milter spf dkim dmarc ratelimit spam report
bench: deps-check all
	@set -e; for b in $(BENCHES); do \
	  if [ -f tests/bench/bench_$$b.py ]; then echo "== bench $$b"; /usr/bin/python3 tests/bench/bench_$$b.py; fi; done

# ---------------------------------------------------------------- install
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
SYSCONFDIR  ?= /etc/sluice
DATADIR     ?= $(PREFIX)/share/sluice
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CREATE_USER ?= yes
STATEDIR    ?= /var/lib/sluice
SPOOLDIR    ?= /var/spool/sluice
INSTALL_BINS := $(BIN)/sluiced $(BIN)/sluice $(BIN)/sluice-sendmail $(EXTRA_DAEMONS)
SUBST = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g'

# sluice.conf(5) is generated from the parameter tables, so it never drifts.
$(OBJ)/mkman: tools/mkman/main.c $(LIBSLUICE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
$(OBJ)/man/sluice.conf.5: $(OBJ)/mkman
	@mkdir -p $(dir $@)
	$(OBJ)/mkman > $@.tmp && mv $@.tmp $@
man: $(OBJ)/man/sluice.conf.5

install: $(INSTALL_BINS) $(OBJ)/man/sluice.conf.5
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(DATADIR)/rules \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 755 $(INSTALL_BINS) $(DESTDIR)$(SBINDIR)/
	@# the admin's configuration is never overwritten
	if [ -e $(DESTDIR)$(SYSCONFDIR)/sluice.conf ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/sluice.conf"; \
	else $(SUBST) conf/sluice.conf.dist > $(DESTDIR)$(SYSCONFDIR)/sluice.conf && \
	  chmod 644 $(DESTDIR)$(SYSCONFDIR)/sluice.conf; fi
	set -e; for f in milters/spam/rules/*.cf; do [ -e "$$f" ] || continue; \
	  install -m 644 "$$f" $(DESTDIR)$(DATADIR)/rules/; done
	install -m 644 docs/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(OBJ)/man/sluice.conf.5 $(DESTDIR)$(MANDIR)/man5/
	set -e; for u in conf/systemd/*.service; do \
	  $(SUBST) $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); chmod 644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	install -m 644 conf/systemd/sluice.sysusers $(DESTDIR)$(SYSUSERSDIR)/sluice.conf
	install -m 644 conf/systemd/sluice.tmpfiles $(DESTDIR)$(TMPFILESDIR)/sluice.conf
	@# the system user, on a real install only (packagers ship sysusers.d)
	if [ -z "$(DESTDIR)" ] && [ "$(CREATE_USER)" = yes ] && [ "$$(id -u)" = 0 ] && ! getent passwd sluice >/dev/null; then \
	  useradd --system --user-group --home-dir /var/lib/sluice --shell /usr/sbin/nologin \
	    --comment "sluice mail system" sluice; fi
	@# state (Bayes, rate limits, compiled rules) and the queue; tmpfiles.d makes them at boot too
	install -d -m 750 $(DESTDIR)$(STATEDIR) $(DESTDIR)$(SPOOLDIR)
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && getent passwd sluice >/dev/null; then \
	  chown sluice:sluice $(STATEDIR); fi

clean:
	rm -rf build bin bin-asan bin-fuzz bin-tsan
