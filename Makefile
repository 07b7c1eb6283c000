# vic — build, demo and test entry points. See README.md.
SHELL := /bin/bash
BUILD := $(CURDIR)/build
BIN := $(BUILD)/bin
BOOT := $(BUILD)/bootstrap
STATIC_TARGET := x86_64-unknown-linux-gnu
TETHER := $(CURDIR)/target/static/$(STATIC_TARGET)/release/tether
# A test fixture: a PID 1 that breaks the tether protocol (crates/hostile-guest).
HOSTILE := $(CURDIR)/target/static/$(STATIC_TARGET)/release/hostile-guest
REG_DIR := $(BUILD)/registry
# vcsim and govc, built by scripts/vcsim.sh.
GOVMOMI := $(or $(VIC_CACHE),/var/cache/vic)/govmomi-0.24.2/bin
DOCKER ?= $(shell [ -x /usr/local/bin/docker ] && echo /usr/local/bin/docker || echo docker)

.PHONY: all deps vcsim browser build kernel initramfs binaries demo demo-clean test unit-test fuzz lint bench conformance registry clean

all: build

deps:
	@bash scripts/deps.sh

# vcsim and govc for the vSphere tests, and pyvmomi, their second client (not needed by the
# local target, so not by `make demo`).
vcsim:
	@bash scripts/vcsim.sh
	@bash scripts/pyvmomi.sh

# Headless Chromium and chromedriver for the admin pages' browser tests.
browser:
	@bash scripts/browser.sh

build: binaries kernel initramfs

binaries:
	cargo build --release -p vic-machine -p appliance
	@mkdir -p $(BIN)
	install -m 755 target/release/vic-machine target/release/vic-appliance target/release/vic-init $(BIN)/

kernel:
	bootstrap/build-kernel.sh $(BOOT)/vmlinux

# One cargo run builds both static guest binaries.
$(TETHER) $(HOSTILE) &: $(shell find crates/tether crates/tether-proto crates/hostile-guest -name '*.rs' -o -name Cargo.toml)
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p tether -p hostile-guest \
		--target $(STATIC_TARGET) --target-dir target/static

# The product's initramfs, and the hostile guest's for crates/e2e/tests/hostile_guest.rs.
initramfs: $(TETHER) $(HOSTILE)
	bootstrap/build-initramfs.sh $(BOOT)/initramfs.cpio $(TETHER)
	bootstrap/build-initramfs.sh $(BOOT)/hostile-initramfs.cpio $(HOSTILE)

registry:
	tests/fixtures/registry.sh start $(REG_DIR)

# Set-up plus the main job: build, create a local VCH, run a container VM in it.
demo: deps build registry
	@bash scripts/demo.sh "$(BIN)" "$$(cat $(REG_DIR)/registry.addr)" "$(DOCKER)"

demo-clean:
	-$(BIN)/vic-machine delete --target local --name demo --force
	-tests/fixtures/registry.sh stop $(REG_DIR)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit-test:
	cargo test --workspace

# The property tests (layer applier, digests, references, manifests, globs, auth headers) with
# 20,000 cases each instead of the few thousand `make test` runs (PROPTEST_CASES=N for more).
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-20000} cargo test --workspace --lib

# The whole suite: unit tests, then the tests that need real parts (QEMU VMs, the registry,
# the docker CLI), which are #[ignore]d in a plain `cargo test`.
test: deps vcsim browser build registry
	@bash scripts/test.sh "$(BUILD)" "$$(cat $(REG_DIR)/registry.addr)" "$(DOCKER)"

# docker-py's own integration suite against a VCH and against dockerd, side by side
# (long: not part of `make test`; .ci/run runs a representative part).
conformance: deps build registry
	@bash scripts/conformance.sh "$(BUILD)" "$$(cat $(REG_DIR)/registry.addr)" "$(DOCKER)"

bench: deps vcsim build registry
	cargo build --release -p bench
	target/release/vic-bench --bin-dir $(BIN) --registry "$$(cat $(REG_DIR)/registry.addr)" --docker $(DOCKER)
	target/release/vic-bench-pull --bin-dir $(BIN) --registry-dir $(BUILD)/registry-big --docker $(DOCKER)
	target/release/vic-bench-net --bin-dir $(BIN) --registry "$$(cat $(REG_DIR)/registry.addr)" --docker $(DOCKER)
	target/release/vic-bench-verbs --bin-dir $(BIN) --registry "$$(cat $(REG_DIR)/registry.addr)" --docker $(DOCKER)
	VIC_VCSIM=$(GOVMOMI)/vcsim VIC_GOVC=$(GOVMOMI)/govc VIC_BUILD_DIR=$(BUILD) \
	VIC_KERNEL=$(BOOT)/vmlinux VIC_INITRD=$(BOOT)/initramfs.cpio \
	target/release/vic-bench-vsphere --bin-dir $(BIN) --registry "$$(cat $(REG_DIR)/registry.addr)" --docker $(DOCKER)

clean:
	-tests/fixtures/registry.sh stop $(REG_DIR)
	rm -rf $(BUILD)
	cargo clean
