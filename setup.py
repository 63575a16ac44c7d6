"""Builds regioncache: the Python package in django_backend/ and the native
module regioncache._native, which CMake builds (CMakeLists.txt is the one
description of the native build; this file only drives it).

    pip install .        # or: pip install -e .

Needs the Debian build packages listed in README.md (libmemcached-dev,
libzstd-dev, libxxhash-dev, cmake, g++).
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
    name="regioncache",
    version="0.1.0",
    description="Cache regions for Django on native stores (shared memory, files, memcached)",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md")).read()
    if os.path.exists(os.path.join(os.path.dirname(__file__), "README.md"))
    else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    package_dir={"": "django_backend"},
    packages=["regioncache"],
    install_requires=["Django>=4.2"],
    ext_modules=[CMakeExtension("regioncache._native")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
