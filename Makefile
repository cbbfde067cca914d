# Thin wrapper over CMake. `make run`: build and run the demo (agent -> local logagent-sink).
# `make test`: gcc build + every test; clang ASan+UBSan build + every test; clang TSan build + threaded tests.
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build run test test-release test-asan test-tsan bench clean

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j$(JOBS)

run: build
	packaging/run-local.sh build

test: test-release test-asan test-tsan
	@echo "ALL TEST SUITES PASSED"

test-release: build
	cd build && ctest --output-on-failure -j2

test-asan:
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LOGAGENT_SANITIZER=address \
	  ctest --output-on-failure -j2

test-tsan:
	CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSANITIZE=thread $(CMAKE_FLAGS) >/dev/null
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
	  LOGAGENT_SANITIZER=thread ctest --output-on-failure -j2 -L threads

bench: build
	/usr/bin/python3 tests/bench/e2e_bench.py --build build

clean:
	rm -rf build build-asan build-tsan
