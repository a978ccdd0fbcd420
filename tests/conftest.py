"""Shared pytest configuration.

Integration and end-to-end tests need root (they create network
namespaces).  Run without root they are skipped locally; in CI (CI=true) a
missing prerequisite is a failure, never a silent skip.
"""

import os

import pytest

NEEDS_ROOT = ("integration", "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        for tier in NEEDS_ROOT:
            if f"/tests/{tier}/" in path:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_runtest_setup(item):
    tiers = [m.name for m in item.iter_markers() if m.name in NEEDS_ROOT]
    if tiers and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("integration/e2e tests must run as root in CI")
        pytest.skip("needs root: run sudo ./scripts/test.sh")
