"""The examples of the README and of the package docstring run and say what they claim."""

import doctest
import re

import pytest

import sluice
from support import BINDINGS_DIR

README = BINDINGS_DIR / "README.md"


def test_package_docstring_example():
    failures, tried = doctest.testmod(sluice, verbose=False)
    assert tried > 0 and failures == 0


@pytest.mark.skipif(not README.is_file(), reason="README.md not beside the tests")
def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
