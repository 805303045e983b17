# The README's two commands, and a development build.
PYTHON ?= python3
PROMPT ?= Write a Python function that returns the n-th Fibonacci number.

.PHONY: install run test test-fast dev cpp-test sanitize arm-test fuzz bench

install:
	$(PYTHON) -m pip install .

# Installs everything and runs the main job on the default model pair.
run: install
	$(PYTHON) -m duet models pull
	$(PYTHON) -m duet run --chat -p "$(PROMPT)" -n 128 -c 1024 --budget 1GiB

# Installs the test dependencies and runs every test, the real-model ones included.
test:
	$(PYTHON) -m pip install ".[test]"
	cmake -S . -B build-tests -G Ninja -DDUET_BUILD_PYTHON=OFF -DDUET_BUILD_TESTS=ON
	cmake --build build-tests
	$(PYTHON) -m duet models pull
	$(PYTHON) -m pytest -q

# Only the tests that need no model download.
test-fast:
	$(PYTHON) -m pytest -q -m "not real"

# In-tree build for development: python/duet/_core*.so and build/duet_kernel_tests.
# Use it with PYTHONPATH=python.
dev:
	cmake -S . -B build -G Ninja -DDUET_BUILD_TESTS=ON -Dpybind11_DIR=$$($(PYTHON) -m pybind11 --cmakedir)
	cmake --build build

cpp-test: dev
	./build/duet_kernel_tests

# The C++ kernel tests built with AddressSanitizer and UBSan.
sanitize:
	cmake -S . -B build-sanitize -G Ninja -DDUET_BUILD_PYTHON=OFF -DDUET_BUILD_TESTS=ON -DDUET_SANITIZE=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-sanitize
	./build-sanitize/duet_kernel_tests

# The C++ kernel tests cross-compiled for AArch64 and run under qemu-user: NEON and
# dotprod against scalar. Needs Debian's g++-aarch64-linux-gnu and qemu-user.
arm-test:
	cmake -S . -B build-arm -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
		-DDUET_BUILD_PYTHON=OFF -DDUET_BUILD_TESTS=ON
	cmake --build build-arm
	@command -v qemu-aarch64 >/dev/null || { echo "arm-test: qemu-aarch64 not found (apt-get install qemu-user)"; exit 1; }
	$(PYTHON) -m pytest -q tests/test_kernels_cpp.py -k aarch64

# Coverage-guided fuzzing of the GGUF reading paths (atheris), for FUZZ_SECONDS; a
# finding is written to build-fuzz/ (replay: python fuzz/fuzz_gguf.py FILE) and fails.
FUZZ_SECONDS ?= 60
fuzz:
	mkdir -p build-fuzz
	$(PYTHON) fuzz/fuzz_gguf.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build-fuzz/ </dev/null

bench:
	$(PYTHON) bench/bench_matmul.py
	$(PYTHON) bench/bench_decode.py
