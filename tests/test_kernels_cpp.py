"""Runs the C++ kernel test executable (tests/cpp) where a build made it: the host
build in build/, and an AArch64 cross-build in build-arm/ under qemu-aarch64
(cmake -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
-DDUET_BUILD_PYTHON=OFF -DDUET_BUILD_TESTS=ON; `make arm-test`). The executable
tests every SIMD path the CPU runs against the scalar path and names each path it ran."""
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# make test builds them in build-tests/, make dev in build/.
HOST_TESTS = next((p for p in (ROOT / "build-tests" / "duet_kernel_tests", ROOT / "build" / "duet_kernel_tests")
                   if p.exists()), ROOT / "build-tests" / "duet_kernel_tests")
ARM_TESTS = ROOT / "build-arm" / "duet_kernel_tests"
QEMU = shutil.which("qemu-aarch64")
ARM_SYSROOT = "/usr/aarch64-linux-gnu"


def run_and_check(command) -> set[str]:
    """Runs the kernel tests; returns the ISA paths they ran, each with its checks."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    return {name for name, checks in re.findall(r"^isa (\w+): (\d+) checks$", result.stdout, re.M) if int(checks)}


@pytest.mark.skipif(not HOST_TESTS.exists(), reason="duet_kernel_tests not built (make test or make dev)")
def test_cpp_kernel_tests_pass():
    assert "scalar" in run_and_check([str(HOST_TESTS)])


needs_arm = pytest.mark.skipif(not (ARM_TESTS.exists() and QEMU), reason="no AArch64 cross-build or no qemu-aarch64")


@needs_arm
def test_cpp_kernel_tests_pass_on_aarch64_under_qemu():
    # qemu's "max" CPU has the dot-product extension: NEON and dotprod both run against scalar.
    ran = run_and_check([QEMU, "-cpu", "max", "-L", ARM_SYSROOT, str(ARM_TESTS)])
    assert ran == {"scalar", "neon", "dotprod"}


@needs_arm
def test_cpp_kernel_tests_on_aarch64_skip_dotprod_on_a_cpu_without_it():
    # A Cortex-A53 has NEON but no dot product: run-time detection must not pick dotprod.
    ran = run_and_check([QEMU, "-cpu", "cortex-a53", "-L", ARM_SYSROOT, str(ARM_TESTS)])
    assert ran == {"scalar", "neon"}
