"""Builds the native module regioncache._native with CMake (CMakeLists.txt is
the one description of the native build; this file only drives it). The
package's metadata is in pyproject.toml.

    pip install .                    # a normal install (builds the module)
    pip install -e .                 # a developer's editable install
    tools/build-wheels python3.12    # a wheel with its libraries inside

Needs the Debian build packages listed in README.md (libmemcached-dev,
libzstd-dev, libxxhash-dev, zlib1g-dev, cmake, g++); a wheel from tools/build-wheels
needs none of them.
"""

import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        os.makedirs(build_dir, exist_ok=True)
        src = os.path.dirname(os.path.abspath(__file__))
        config = os.environ.get("REGIONCACHE_BUILD_TYPE", "Release")
        args = [
            "cmake",
            "-S", src,
            "-B", build_dir,
            f"-DCMAKE_BUILD_TYPE={config}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DREGIONCACHE_NATIVE_OUTPUT_DIR={out_dir}",
            "-DREGIONCACHE_TESTS=OFF",
            "-DREGIONCACHE_GUI=OFF",
        ]
        if os.environ.get("REGIONCACHE_WERROR"):
            args.append("-DREGIONCACHE_WERROR=ON")
        subprocess.check_call(args)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "_native", "-j", jobs])


setup(
    ext_modules=[CMakeExtension("regioncache._native")],
    cmdclass={"build_ext": CMakeBuild},
)
