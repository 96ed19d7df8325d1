"""Records where the package was built from, so an installed copy can find the repository's
target/release/libsluice.so (see sluice/_ffi.py). Everything else is in pyproject.toml."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_source(build_py):
    def run(self):
        super().run()
        # Written into the build directory only: the source tree is not touched.
        target = os.path.join(self.build_lib, "sluice", "_build_info.py")
        with open(target, "w", encoding="utf-8") as f:
            f.write(
                '"""Written by setup.py when the package was built."""\n'
                "SOURCE_DIR = {!r}\n".format(HERE)
            )


setup(cmdclass={"build_py": build_py_with_source})
