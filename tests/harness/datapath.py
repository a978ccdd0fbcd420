"""Which OVS datapath this test run's plugins and bridges use.

OVSGRE_TEST_DATAPATH=netdev (the default: this machine has no openvswitch
module) or system (the kernel datapath: set inside the test VM, see
vm.py).  Every vswitchd the harness starts lives in its own network
namespace, and a kernel datapath is per namespace, so hosts never share
one.  Tests of behaviour that differs between the datapaths read KERNEL;
tests that run on the kernel datapath too carry
@pytest.mark.kernel_datapath (docs/datapaths.md lists them).
"""
import os

DATAPATHS = ("netdev", "system")
DATAPATH = os.environ.get("OVSGRE_TEST_DATAPATH", "netdev")
if DATAPATH not in DATAPATHS:
    raise ValueError(f"OVSGRE_TEST_DATAPATH={DATAPATH!r}: "
                     f"one of {', '.join(DATAPATHS)}")
KERNEL = DATAPATH == "system"
