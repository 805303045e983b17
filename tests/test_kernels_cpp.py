"""Runs the C++ kernel test executable (tests/cpp) if the build made it."""
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CANDIDATES = sorted(ROOT.glob("build*/duet_kernel_tests"))


@pytest.mark.skipif(not CANDIDATES, reason="duet_kernel_tests not built (configure with -DDUET_BUILD_TESTS=ON)")
def test_cpp_kernel_tests_pass():
    result = subprocess.run([str(CANDIDATES[0])], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
