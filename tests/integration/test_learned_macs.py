"""The tunnel bridge learns the MACs behind each peer (one flow per MAC);
a container can send frames from any number of source MACs, so the table
is bounded and full means eviction, against a real ovs-vswitchd."""

import random
import re
import time

import pytest

from tests.harness.plugin import PluginProcess
from tests.integration.test_dataplane import create_network

# Also run with the kernel datapath, in the test VM (tests/vm).
pytestmark = [pytest.mark.integration, pytest.mark.kernel_datapath]

TUN = "br-ovsgre-tun"
LIMIT = 100
PEER = "198.18.0.2"


def _learned(ovs):
    """Source MACs behind tunnels as the tunnel bridge learned them."""
    flows = ovs.ofctl("dump-flows", TUN, "table=2")
    return re.findall(r"dl_dst=([0-9a-f:]{17})", flows)


def _frames_from_peer(ovs, key, macs, in_port):
    """What arrives from the peer's tunnel: broadcasts from each MAC,
    put through the tunnel bridge's pipeline (learning included)."""
    for mac in macs:
        ovs.appctl("ovs-vswitchd", "ofproto/trace", TUN,
                   f"in_port={in_port},tun_id={key},dl_src={mac},"
                   "dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0806", "-generate")


def test_learned_macs_are_bounded_with_eviction(ovs_ns):
    ns, ovs, base = ovs_ns
    ns.run(["ip", "link", "add", "under0", "type", "veth", "peer", "name",
            "under1"])
    ns.run(["ip", "addr", "add", "198.18.0.1/24", "dev", "under0"])
    ns.run(["ip", "link", "set", "under0", "up"])
    plugin = PluginProcess(ns, base + "/plugin", ovs.db_remote, extra_env={
        "OVSGRE_PEERS": PEER, "OVSGRE_LOCAL_IP": "198.18.0.1",
        "OVSGRE_LEARNED_MACS": str(LIMIT), "OVSGRE_MTU": "1400"})
    plugin.start()
    try:
        create_network(plugin, opts={"ovsgre.network": "flood",
                                     "ovsgre.key": "77"})
        deadline = time.monotonic() + 20
        gre = ""
        while time.monotonic() < deadline and not gre:
            gre = ovs.vsctl("--bare", "--columns=ofport", "find",
                            "Interface", "type=gre").strip()
            if gre in ("", "-1"):
                gre = ""
                time.sleep(0.2)
        assert gre, "no tunnel port"
        limit = ovs.vsctl("--bare", "--columns=flow_limit,overflow_policy,"
                          "groups", "list", "Flow_Table").split()
        assert limit[:2] == [str(LIMIT), "evict"], limit
        rng = random.Random(7)
        flood = [f"02:{rng.randrange(256):02x}:" + ":".join(
            f"{rng.randrange(256):02x}" for _ in range(4))
            for _ in range(3 * LIMIT)]
        _frames_from_peer(ovs, 77, flood, gre)
        learned = _learned(ovs)
        assert 0 < len(learned) <= LIMIT, len(learned)
        # eviction, not refusal: the newest MACs are the ones remembered
        assert flood[-1] in learned and flood[0] not in learned
    finally:
        plugin.stop()
