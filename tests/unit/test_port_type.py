"""Which OVS port type container ports get (Dataplane._choose_port_type)."""

import pytest

from ovsgre.dataplane import (AFXDP_MAX_MTU, PROBE_HOST, Dataplane,
                              VLAN_PROBE)
from ovsgre.errors import Unavailable


class ProbeOvsdb:
    """OVSDB stand-in: supported types, and what vswitchd says of a port."""

    def __init__(self, types=("", "afxdp-nonpmd", "afxdp"), ofport=5,
                 error=""):
        self.types = set(types)
        self.ofport, self.error = ofport, error
        self.added, self.deleted = [], []

    def iface_types(self):
        return self.types

    def add_port(self, bridge, port, tag, ids, port_type="", wait=False):
        self.added.append((bridge, port, tag, port_type))

    def interface(self, name):
        return {"type": "afxdp-nonpmd", "ofport": self.ofport,
                "error": self.error}

    def del_port(self, port, bridge=None, wait=False):
        self.deleted.append((port, bridge))


class ProbeLinks:
    def __init__(self):
        self.created, self.deleted = [], []

    def create_veth(self, host, peer, mtu, mac):
        self.created.append(host)

    def delete(self, name):
        self.deleted.append(name)


def dataplane(datapath, wanted, ovsdb=None):
    dp = Dataplane.__new__(Dataplane)   # no OVSDB connection
    dp.bridge, dp.datapath, dp.wanted_port_type = "br-t", datapath, wanted
    dp.ovsdb, dp.links = ovsdb or ProbeOvsdb(), ProbeLinks()
    dp.port_type = "system"
    return dp


def test_auto_picks_afxdp_nonpmd_when_vswitchd_takes_the_probe():
    dp = dataplane("netdev", "auto")
    assert dp._choose_port_type() == "afxdp-nonpmd"
    assert dp.ovsdb.added == [("br-t", PROBE_HOST, VLAN_PROBE,
                               "afxdp-nonpmd")]
    # the probe leaves nothing behind
    assert dp.ovsdb.deleted == [(PROBE_HOST, "br-t")]
    assert PROBE_HOST in dp.links.deleted


@pytest.mark.parametrize("ovsdb", [
    ProbeOvsdb(types=("", "gre")),                        # not compiled in
    ProbeOvsdb(ofport=-1, error="could not open network device"),
    ProbeOvsdb(ofport=None, error="XDP load failed"),
])
def test_auto_falls_back_to_system(ovsdb):
    dp = dataplane("netdev", "auto", ovsdb)
    assert dp._choose_port_type() == "system"
    assert dp.ovsdb.deleted == ([] if not ovsdb.added else
                                [(PROBE_HOST, "br-t")])


def test_kernel_datapath_always_uses_system_ports():
    dp = dataplane("system", "auto")
    assert dp._choose_port_type() == "system"
    assert dp.ovsdb.added == [] and dp.links.created == []


@pytest.mark.parametrize("wanted", ["afxdp-nonpmd", "afxdp"])
def test_afxdp_on_the_kernel_datapath_is_a_clear_error(wanted):
    with pytest.raises(Unavailable, match="userspace datapath"):
        dataplane("system", wanted)._choose_port_type()


@pytest.mark.parametrize("wanted", ["system", "afxdp-nonpmd", "afxdp"])
def test_explicit_choice_is_used_without_probing(wanted):
    dp = dataplane("netdev", wanted)
    assert dp._choose_port_type() == wanted
    assert dp.ovsdb.added == []


def test_ovs_type_of_a_port():
    dp = dataplane("netdev", "auto")
    dp.port_type = "afxdp-nonpmd"
    assert dp._ovs_type(1458) == "afxdp-nonpmd"
    # native XDP on a veth cannot take frames beyond a page
    assert dp._ovs_type(AFXDP_MAX_MTU + 1) == ""
    dp.port_type = "system"
    assert dp._ovs_type(1458) == ""


def test_auto_uses_system_ports_when_memory_runs_low(monkeypatch):
    import ovsgre.dataplane as dpmod
    dp = dataplane("netdev", "auto")
    dp.port_type = "afxdp-nonpmd"
    monkeypatch.setattr(dpmod, "mem_available",
                        lambda: dpmod.AFXDP_MIN_AVAILABLE - 1)
    assert dp._ovs_type(1458) == ""
    monkeypatch.setattr(dpmod, "mem_available",
                        lambda: dpmod.AFXDP_MIN_AVAILABLE)
    assert dp._ovs_type(1458) == "afxdp-nonpmd"


def test_explicit_afxdp_is_obeyed_whatever_the_memory(monkeypatch):
    import ovsgre.dataplane as dpmod
    dp = dataplane("netdev", "afxdp-nonpmd")
    dp.port_type = "afxdp-nonpmd"
    monkeypatch.setattr(dpmod, "mem_available", lambda: 0)
    assert dp._ovs_type(1458) == "afxdp-nonpmd"


def test_mem_available_reads_meminfo():
    from ovsgre.dataplane import mem_available
    assert 0 < mem_available() < 1 << 62
