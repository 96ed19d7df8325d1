"""A pytest plugin that runs `limits`' own moving-window tests against ``sluice://``.

Loaded with ``-p sluice_limits_plugin`` by ``run_limits_tests.sh``, from the root of the
`limits` sdist (pinned there), with ``--noconftest``: `limits`' conftest.py starts Docker
servers and imports their clients, which its memory and sluice cases never use.

Its tests take their storages from the parametrisation ``tests.utils.moving_window_storage``
(``uri, args, fixture``); this plugin adds ``sluice://`` to it, marked ``sluice``, before the
test modules import it, and the command line selects ``-m sluice``: the storages that need a
server are deselected, `limits`' own memory storage too (it is `limits`' business).

The tests that cannot pass against sluice are listed in ``CANNOT_PASS`` with why; they are
run as strict expected failures that must fail with the named exception, so a change in that
behaviour shows.
"""

import sys

import pytest

import sluice
import sluice.limits_storage  # noqa: F401  (registers sluice://)

#: test node id (within the sdist) -> (the exception it fails with, why)
CANNOT_PASS = {
    "tests/test_strategy.py::TestMovingWindow::test_moving_window_huge_cost[sluice]": (
        sluice.PolicyError,
        "a limit of 1,000,000 per 2 seconds: a sluice rule admits at most 65535 requests per "
        "window, so the storage cannot make the table and raises PolicyError",
    ),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "sluice: the sluice:// storage")
    sys.path.insert(0, str(config.rootpath))  # `tests` is the sdist's package
    import tests.utils as utils

    ours = pytest.param("sluice://", {}, None, marks=pytest.mark.sluice, id="sluice")
    argnames, params = utils.moving_window_storage.mark.args
    utils.moving_window_storage = pytest.mark.parametrize(argnames, [*params, ours])
    utils.ALL_STORAGES["sluice"] = ours


def pytest_collection_modifyitems(config, items):
    found = set()
    for item in items:
        cannot = CANNOT_PASS.get(item.nodeid)
        if cannot is not None:
            found.add(item.nodeid)
            raises, reason = cannot
            item.add_marker(pytest.mark.xfail(raises=raises, reason=reason, strict=True))
    missing = set(CANNOT_PASS) - found
    if missing and config.getoption("markexpr") == "sluice":
        raise pytest.UsageError(
            "sluice_limits_plugin: tests listed in CANNOT_PASS were not collected: "
            + ", ".join(sorted(missing))
        )


def pytest_report_header(config):
    import limits

    return "limits {} against sluice {} ({})".format(
        limits.__version__, sluice.library_version(), sluice.LIBRARY_PATH
    )
