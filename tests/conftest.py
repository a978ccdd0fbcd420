"""Shared pytest configuration.

Integration and end-to-end tests need root (they create network
namespaces).  Run without root they are skipped locally; in CI (CI=true) a
missing prerequisite is a failure, never a silent skip.
"""

import os

import pytest

from tests.harness.datapath import KERNEL

NEEDS_ROOT = ("integration", "e2e", "vm")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        for tier in NEEDS_ROOT:
            if f"/tests/{tier}/" in path:
                item.add_marker(getattr(pytest.mark, tier))
    if KERNEL:
        # With the kernel datapath only the tests that say they hold for it
        # run (@pytest.mark.kernel_datapath); the others state userspace
        # behaviour (br-phy, offload, port types) or were not chosen for
        # the guest (docs/datapaths.md).
        keep = [item for item in items
                if item.get_closest_marker("kernel_datapath")
                or not any(item.get_closest_marker(tier)
                           for tier in NEEDS_ROOT)]
        config.hook.pytest_deselected(
            items=[item for item in items if item not in keep])
        items[:] = keep


def pytest_runtest_setup(item):
    tiers = [m.name for m in item.iter_markers() if m.name in NEEDS_ROOT]
    if tiers and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("integration/e2e tests must run as root in CI")
        pytest.skip("needs root: run sudo ./scripts/test.sh")


# -- the Reliability table ------------------------------------------------------
# Tests of faults, load, hostile input and security carry
# @pytest.mark.reliability(kind, case).  At the end of a run their outcomes
# are written as the markdown table the README's Reliability section shows,
# to $OVSGRE_RELIABILITY_REPORT (default: reliability-report.md in the
# current directory).

KINDS = ("fault", "load", "hostile input", "security")
_outcomes = {}


def pytest_runtest_logreport(report):
    marks = getattr(report, "reliability", None)
    if not marks:
        return
    key = report.nodeid
    if report.when == "call" or report.outcome != "passed":
        prev = _outcomes.get(key, ("passed", 0.0))
        outcome = report.outcome if prev[0] == "passed" else prev[0]
        _outcomes[key] = (outcome, prev[1] + report.duration, marks)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    mark = item.get_closest_marker("reliability")
    if mark:
        kind, case = mark.args[:2]
        param = getattr(getattr(item, "callspec", None), "id", "")
        report.reliability = (kind, case + (f" [{param}]" if param else ""))


def pytest_sessionfinish(session, exitstatus):
    if not _outcomes:
        return
    path = os.environ.get("OVSGRE_RELIABILITY_REPORT",
                          "reliability-report.md")
    rows = sorted(((marks[0], marks[1], outcome, duration, nodeid)
                   for nodeid, (outcome, duration, marks)
                   in _outcomes.items()),
                  key=lambda r: (KINDS.index(r[0]) if r[0] in KINDS
                                 else len(KINDS), r[1]))
    lines = ["| class | case | result | seconds | test |",
             "|---|---|---|---|---|"]
    for kind, case, outcome, duration, nodeid in rows:
        lines.append(f"| {kind} | {case} | {outcome} | {duration:.1f} | "
                     f"`{nodeid.split('[')[0]}` |")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
