"""Runs the C++ kernel test executable (tests/cpp) where a build made it: the host
build in build/, and an AArch64 cross-build in build-arm/ under qemu-aarch64
(cmake -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
-DDUET_BUILD_PYTHON=OFF -DDUET_BUILD_TESTS=ON)."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# make test builds them in build-tests/, make dev in build/.
HOST_TESTS = next((p for p in (ROOT / "build-tests" / "duet_kernel_tests", ROOT / "build" / "duet_kernel_tests")
                   if p.exists()), ROOT / "build-tests" / "duet_kernel_tests")
ARM_TESTS = ROOT / "build-arm" / "duet_kernel_tests"
QEMU = shutil.which("qemu-aarch64")


def run_and_check(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout


@pytest.mark.skipif(not HOST_TESTS.exists(), reason="duet_kernel_tests not built (make test or make dev)")
def test_cpp_kernel_tests_pass():
    run_and_check([str(HOST_TESTS)])


@pytest.mark.skipif(not (ARM_TESTS.exists() and QEMU), reason="no AArch64 cross-build or no qemu-aarch64")
def test_cpp_kernel_tests_pass_on_aarch64_under_qemu():
    run_and_check([QEMU, "-cpu", "max", "-L", "/usr/aarch64-linux-gnu", str(ARM_TESTS)])
