# The front door. `make test` builds what the tests need and runs them all.
CARGO ?= cargo
SO := dist/libonboarding.so

.PHONY: all loadable test schemathesis lint fmt bench server clean reference

all: loadable

# The loadable extension, from its own cargo workspace (its rusqlite flavour
# cannot share a build with the server's bundled SQLite).
loadable: $(SO)

$(SO): FORCE
	$(CARGO) build --release --manifest-path ext/loadable/Cargo.toml --target-dir ext/loadable/target
	mkdir -p dist
	cp ext/loadable/target/release/libonboarding.so $(SO)

FORCE:

test: loadable
	$(CARGO) test --workspace
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path ext/loadable/Cargo.toml -- -D warnings
	$(MAKE) schemathesis

# Schemathesis with every check against the real server and its OpenAPI
# document (tests/schemathesis/run.sh): about a minute and a half, fails on any
# finding. The virtualenv is made once (.ci/run makes it too).
schemathesis:
	$(CARGO) build -p onboarding-server
	tests/schemathesis/venv.sh
	tests/schemathesis/run.sh

# The function reference, produced by running its examples.
reference: loadable
	/usr/bin/python3 docs/reference.py $(SO) > docs/reference.md

# The benchmarks (benches/README.md): embedded, growth, then HTTP; about
# five minutes of running after the build. Each prints a readable table and
# one JSON line of results.
bench:
	$(CARGO) build --release -p onboarding-server -p onboarding-benches --bins
	$(CARGO) bench -p onboarding-benches --bench embedded
	$(CARGO) bench -p onboarding-benches --bench growth
	$(CARGO) run --release -p onboarding-benches --bin loadgen

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path ext/loadable/Cargo.toml

clean:
	$(CARGO) clean
	$(CARGO) clean --manifest-path ext/loadable/Cargo.toml
	rm -rf dist
