# parley: the two commands of the README, plus helpers.
#   make run    install what is missing, build, run parleyd on configs/parley.ini
#   make test   install what is missing, build, run every test suite (unit + integration,
#               normal, address+undefined-sanitizer and thread-sanitizer builds)
# Other targets: build, unit, integration, test-asan, test-tsan, fuzz, bench, clean.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
JOBS ?= $(shell nproc)
BUILD ?= build
CONFIG ?= configs/parley.ini
CMAKE_FLAGS ?=
# libwebsockets calls mktime(), whose lazy tzset() TSan reports as a race inside glibc
# when TZ is unset; a fixed TZ also keeps log timestamps comparable.
export TZ ?= UTC
ifeq ($(CI),true)
  CMAKE_FLAGS += -DPL_WERROR=ON
endif

.PHONY: all deps deps-run build run test unit integration test-asan test-tsan fuzz fuzz-short bench clean

all: build

deps:
	@scripts/install-deps

deps-run:
	@scripts/install-deps --run

# configure + build one tree: $(1) = build dir, $(2) = extra cmake flags
define build_tree
	@cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) $(2) >/dev/null
	@cmake --build $(1) -j $(JOBS) -- --no-print-directory
endef

build: deps-run
	$(call build_tree,$(BUILD),)

run: build
	@scripts/dev-cert var/dev-cert
	@[ -s var/turn-secret ] || { umask 077; openssl rand -hex 32 > var/turn-secret; }
	PARLEY_TURN_AUTH_SECRET=$${PARLEY_TURN_AUTH_SECRET:-$$(cat var/turn-secret)} \
	  exec $(BUILD)/app/parleyd --config $(CONFIG)

unit: deps
	$(call build_tree,$(BUILD),)
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) --timeout 300

integration: deps
	$(call build_tree,$(BUILD),)
	PARLEYD=$(abspath $(BUILD))/app/parleyd node --test --test-concurrency=1 tests/integration/

# Browser tests (tests/browser/): parleyd and headless Chromium (/usr/bin/chromium,
# npm playwright-core) inside a loopback-only network namespace (unshare, as root).
.PHONY: browser
browser: deps
	$(call build_tree,$(BUILD),)
	unshare --net -- bash -c 'ip link set lo up && exec env PARLEYD=$(abspath $(BUILD))/app/parleyd node --test --test-concurrency=1 tests/browser/'

test-asan: deps
	$(call build_tree,$(BUILD)-asan,-DPL_SANITIZE=address)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD)-asan --output-on-failure -j $(JOBS) --timeout 300 -LE slow
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PARLEYD=$(abspath $(BUILD))-asan/app/parleyd node --test --test-concurrency=1 tests/integration/

test-tsan: deps
	$(call build_tree,$(BUILD)-tsan,-DPL_SANITIZE=thread)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(BUILD)-tsan --output-on-failure -j $(JOBS) --timeout 300 -LE slow
	TSAN_OPTIONS=halt_on_error=1 \
	  PARLEYD=$(abspath $(BUILD))-tsan/app/parleyd node --test --test-concurrency=1 tests/integration/

test: deps
	@echo "== unit tests (ctest) =="
	@$(MAKE) --no-print-directory unit
	@echo "== integration tests (node --test) =="
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory browser
	@echo "== address+undefined sanitizer build: unit + integration =="
	@$(MAKE) --no-print-directory test-asan
	@echo "== thread sanitizer build: unit + integration =="
	@$(MAKE) --no-print-directory test-tsan
	@echo "== fuzz targets, a short run each (clang libFuzzer) =="
	@$(MAKE) --no-print-directory fuzz-short

fuzz:
	@cmake -S . -B $(BUILD)-fuzz -DPL_FUZZ=ON -DCMAKE_C_COMPILER=clang $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_all -- --no-print-directory

# Every libFuzzer target for ~20 s (ctest label "fuzz"); longer runs by hand, see
# tests/fuzz/CMakeLists.txt.
fuzz-short: fuzz
	ctest --test-dir $(BUILD)-fuzz --output-on-failure -j $(JOBS) -L fuzz

bench: build
	@ls bench/*/run 2>/dev/null | while read -r b; do echo "== $$b"; done

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz
