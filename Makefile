# Thin wrapper over CMake. `make run`: build and run the demo (agent -> local logagent-sink).
# `make test`: gcc build + every test; clang ASan+UBSan build + every test; clang TSan build + threaded tests;
# the libFuzzer targets, 30 s each (`make fuzz` for long runs: docs/development.md, Fuzzing).
JOBS ?= $(shell nproc)
FUZZ_SEED ?= 1
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 30

.PHONY: all build run test test-release test-asan test-tsan test-fuzz fuzz bench clean

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j$(JOBS)

run: build
	packaging/run-local.sh build

test: test-release test-asan test-tsan test-fuzz
	@echo "ALL TEST SUITES PASSED"

test-release: build
	cd build && ctest --output-on-failure -j2

test-asan:
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1:abort_on_error=0 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LOGAGENT_SANITIZER=address \
	  ctest --output-on-failure -j2

test-tsan:
	CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=thread $(CMAKE_FLAGS) >/dev/null
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
	  LOGAGENT_SANITIZER=thread ctest --output-on-failure -j2 -L threads

# clang libFuzzer+ASan+UBSan build of tests/fuzz only (build-fuzz/): every target replays its seeds and regression
# inputs, then fuzzes FUZZ_SECONDS over a scratch copy of its seeds (two targets at a time).
test-fuzz:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOGAGENT_FUZZ=ON \
	  -DLOGAGENT_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS) >/dev/null
	cmake --build build-fuzz --target fuzz_all -j$(JOBS)
	cd build-fuzz && LOGAGENT_FUZZ_SEED=$(FUZZ_SEED) ctest --output-on-failure -j2 -L fuzz

# Long runs: 600 s per target unless FUZZ_SECONDS is given on the command line (make fuzz FUZZ_SECONDS=3600), with
# a random seed each run (`make test` fuzzes with FUZZ_SEED=1: the same inputs every run, so a red run is about the
# change and is reproducible; long runs explore).
fuzz:
	$(MAKE) test-fuzz FUZZ_SEED= FUZZ_SECONDS=$(if $(filter command line,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),600)

bench: build
	/usr/bin/python3 tests/bench/e2e_bench.py --build build

clean:
	rm -rf build build-asan build-tsan build-fuzz
