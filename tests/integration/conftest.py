"""Integration tier: the real plugin process against a real ovsdb-server and
ovs-vswitchd (userspace datapath) inside a network namespace of the test's
own.  Needs root."""

import os
import shutil

import pytest

from tests.harness import Netns, OvsInstance, unique_prefix
from tests.harness.plugin import PluginProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def ovs_ns():
    """(Netns, OvsInstance) with a private rundir; removed afterwards."""
    prefix = unique_prefix()
    base = f"/tmp/ovgt/{prefix}"
    os.makedirs(base)
    ns = Netns(prefix + "-i").create()
    ovs = OvsInstance(ns, base + "/ovs")
    try:
        ovs.start()
        yield ns, ovs, base
    finally:
        ovs.stop()
        ns.delete()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def plugin(ovs_ns):
    ns, ovs, base = ovs_ns
    proc = PluginProcess(ns, base + "/plugin", ovs.db_remote,
                         extra_env={"OVSGRE_MTU": "1400"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
