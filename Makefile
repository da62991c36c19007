# The front door. `make test` builds what the tests need and runs them all.
CARGO ?= cargo
SO := dist/libonboarding.so
NODE := ha/node/target/release/onboarding-node
# Debian's libdqlite (libdqlite-dev): without it the node host is not built
# and the cluster tests skip, saying so.
HAVE_DQLITE := $(wildcard /usr/include/dqlite.h)

.PHONY: all loadable node cluster test litestream-kill schemathesis lint fmt bench bench-peers clean reference litestream

all: loadable

# The loadable extension, from its own cargo workspace (its rusqlite flavour
# cannot share a build with the server's bundled SQLite).
loadable: $(SO)

# cargo decides whether to rebuild. The copy in dist/ is replaced by a
# rename, and only when it changed, never rewritten in place: a process
# that has it loaded (a dqlite node, the read replica, a Python shell) maps
# the file, and rewriting it under that process crashes it.
$(SO): FORCE
	$(CARGO) build --release --manifest-path ext/loadable/Cargo.toml --target-dir ext/loadable/target
	mkdir -p dist
	cmp -s ext/loadable/target/release/libonboarding.so $(SO) || { \
	  cp ext/loadable/target/release/libonboarding.so $(SO).tmp && mv -f $(SO).tmp $(SO); }

FORCE:

# The dqlite node host (ha/node), from its own cargo workspace: it links
# the system SQLite that libdqlite uses, never the server's bundled one.
node:
ifneq ($(HAVE_DQLITE),)
	$(CARGO) build --release --manifest-path ha/node/Cargo.toml --target-dir ha/node/target
else
	@echo "*** libdqlite-dev is not installed: the dqlite node host is not built and the cluster tests skip (.ci/run installs it) ***"
endif

# Three local dqlite nodes (127.0.0.1:9001-9003, data in .cluster/) and
# onboarding-server on them (127.0.0.1:8787), until Ctrl-C.
cluster: loadable node
	scripts/cluster

# The tests run through scripts/run-tests: cargo's test binaries, several at
# a time (they mostly wait), each in its package's folder as `cargo test`
# runs it; a binary's output is printed whole when it ends. `cargo test`
# runs them one after the other.
test: loadable node
	scripts/litestream-venv
	CARGO=$(CARGO) scripts/run-tests
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path ext/loadable/Cargo.toml --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path ext/loadable/Cargo.toml -- -D warnings
ifneq ($(HAVE_DQLITE),)
	$(CARGO) fmt --manifest-path ha/node/Cargo.toml --check
	$(CARGO) clippy --manifest-path ha/node/Cargo.toml --target-dir ha/node/target -- -D warnings
endif
	$(MAKE) schemathesis

# Schemathesis with every check against the real server and its OpenAPI
# document (tests/schemathesis/run.sh): about a minute and a half, fails on any
# finding. The virtualenv is made once (.ci/run makes it too).
# The server is built with the workspace's features, as `cargo test
# --workspace` builds it: `-p onboarding-server` alone resolved fewer and
# rebuilt the dependencies (a minute of a fresh machine's `make test`).
schemathesis:
	$(CARGO) build --workspace --bins
	tests/schemathesis/venv.sh
	tests/schemathesis/run.sh

# The function reference, produced by running its examples.
reference: loadable
	/usr/bin/python3 docs/reference.py $(SO) > docs/reference.md

# The benchmarks (benches/README.md): embedded, growth, phone, search, recut,
# loadable, HTTP, then HTTP against the peers; about eight minutes of
# running after the build.
# Each prints a readable table and one JSON line of results. With
# libdqlite, the HTTP run ends on a three-node dqlite cluster, beside the
# single file.
bench: loadable node
	$(CARGO) build --release -p onboarding-server -p onboarding-benches --bins
	$(CARGO) bench -p onboarding-benches --bench embedded
	$(CARGO) bench -p onboarding-benches --bench growth
	$(CARGO) bench -p onboarding-benches --bench phone
	$(CARGO) bench -p onboarding-benches --bench search
	$(CARGO) bench -p onboarding-benches --bench recut
	$(CARGO) bench -p onboarding-benches --bench loadable
	$(CARGO) run --release -p onboarding-benches --bin loadgen -- \
	    $(if $(HAVE_DQLITE),--dqlite-node $(NODE) --extension $(SO))
	$(MAKE) bench-peers

# The HTTP benchmark against the peers (../shared/peers, issue 14): the
# canned-answer ceiling, this server (--synchronous full) and the Node peer
# in turn, five-call flows at concurrency 64, and the two ratios. Skips the
# Node peer, saying so, without node/npm. About a minute once built; the first build (LTO) takes three or four more.
bench-peers:
	CARGO=$(CARGO) scripts/bench-peers

# The server under Litestream (deploy/litestream.yml): restores ./onboarding.db
# from ./replica when it is missing, then replicates every commit. Server
# flags after ARGS=, e.g. make litestream ARGS="--listen 0.0.0.0:8787".
litestream:
	scripts/litestream-run $(ARGS)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path ext/loadable/Cargo.toml
	$(CARGO) fmt --manifest-path ha/node/Cargo.toml

clean:
	$(CARGO) clean
	$(CARGO) clean --manifest-path ext/loadable/Cargo.toml
	$(CARGO) clean --manifest-path ha/node/Cargo.toml --target-dir ha/node/target
	rm -rf dist .cluster

# The two Litestream kill tests (a server or a whole machine killed under
# load, then restored), RUNS times in a row (default 10), stopping at the
# first failure: the stress run behind the figures in README, "Backups and
# replicas". `make test` runs them once.
RUNS ?= 10
litestream-kill: loadable
	scripts/litestream-venv
	$(CARGO) test -p onboarding-server --test litestream --no-run
	for i in $$(seq 1 $(RUNS)); do \
	    echo "litestream-kill: run $$i of $(RUNS)"; \
	    $(CARGO) test -q -p onboarding-server --test litestream -- --nocapture \
	        a_killed_server a_lost_machine || exit 1; \
	done; echo "litestream-kill: $(RUNS) of $(RUNS) runs passed"
