"""Two builds of one package (everything else is in pyproject.toml):

* From the source folder (``pip install ./bindings/python``): a pure-Python package that finds
  the repository's ``target/release`` library; the source directory is recorded in
  ``sluice/_build_info.py`` so that an installed copy can walk up from it (see sluice/_ffi.py).
* With ``sluice/libsluice.so`` present (``build_wheel.sh`` copies the release library into a
  staging copy of this folder): a platform wheel that carries the library. Nothing is recorded
  then, and the wheel is tagged ``py3-none-$SLUICE_WHEEL_PLATFORM`` (build_wheel.sh chooses
  the tag from the library's symbol versions), else the build machine's plain platform tag.
"""

import os
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = any(
    os.path.isfile(os.path.join(HERE, "sluice", name))
    for name in ("libsluice.so", "libsluice.dylib", "sluice.dll")
)


class build_py_with_source(build_py):
    def run(self):
        super().run()
        if BUNDLED:
            return  # the package carries its library: no path of the build machine
        # Written into the build directory only: the source tree is not touched.
        target = os.path.join(self.build_lib, "sluice", "_build_info.py")
        with open(target, "w", encoding="utf-8") as f:
            f.write(
                '"""Written by setup.py when the package was built."""\n'
                "SOURCE_DIR = {!r}\n".format(HERE)
            )


class bdist_wheel_platform(bdist_wheel):
    """A wheel with a bundled library is for one platform, but for any Python 3 (ctypes: no
    extension module, no ABI of CPython's)."""

    def get_tag(self):
        if not BUNDLED:
            return super().get_tag()
        platform = os.environ.get("SLUICE_WHEEL_PLATFORM") or sysconfig.get_platform()
        return ("py3", "none", platform.replace("-", "_").replace(".", "_"))


class PlatformDistribution(Distribution):
    """With a bundled library the wheel is not pure: its files go to the platform's library
    directory, at the wheel's root."""

    def has_ext_modules(self):
        return BUNDLED


setup(distclass=PlatformDistribution, cmdclass={"build_py": build_py_with_source, "bdist_wheel": bdist_wheel_platform})
