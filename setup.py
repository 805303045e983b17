"""Builds duet._core with CMake; metadata lives in pyproject.toml."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        native = os.environ.get("DUET_NATIVE", "0") not in ("", "0", "OFF", "off")
        config = [
            "cmake", str(ROOT), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('DUET_BUILD_TYPE', 'Release')}",
            f"-DDUET_PYTHON_OUTPUT_DIR={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DDUET_NATIVE={'ON' if native else 'OFF'}",
        ]
        ninja = shutil.which("ninja")
        if ninja:
            # pip builds in a throwaway environment: a cache left by an earlier
            # `pip install .` names a ninja that no longer exists.
            config.append(f"-DCMAKE_MAKE_PROGRAM={ninja}")
        subprocess.run(config, cwd=build_dir, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", ".", "--target", "_core", "-j", jobs], cwd=build_dir, check=True)


setup(ext_modules=[CMakeExtension("duet._core")], cmdclass={"build_ext": CMakeBuild})
