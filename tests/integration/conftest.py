"""Integration tier: the real plugin process against a real ovsdb-server and
ovs-vswitchd (userspace datapath) inside a network namespace of the test's
own.  Needs root."""

import pytest

from tests.harness import OvsInstance
from tests.harness.fixtures import scratch_netns
from tests.harness.plugin import PluginProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def ovs_ns():
    """(Netns, OvsInstance) with a private rundir; removed afterwards."""
    with scratch_netns("i") as (ns, base):
        ovs = OvsInstance(ns, base + "/ovs")
        try:
            ovs.start()
            yield ns, ovs, base
        finally:
            ovs.stop()


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
