"""Constants shared by the tests.

There is no ``__init__.py`` in this folder on purpose: pytest then puts only this folder on
``sys.path``, never ``bindings/python``, so ``import sluice`` is the installed package when the
tests run from outside the source tree (``run_tests.sh``).
"""

from pathlib import Path

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

TESTS_DIR = Path(__file__).resolve().parent
BINDINGS_DIR = TESTS_DIR.parent
REPO = BINDINGS_DIR.parent.parent
HEADER = REPO / "include" / "sluice.h"

DEFAULT_POLICY = """\
global     300/1m
media       60/1m
analytics  120/1m
write       30/1m
write      500/1h
auth        10/1m
auth       lockout 5/15m for 15m..24h
capacity   65536
"""
