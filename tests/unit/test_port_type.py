"""Which OVS port type container ports get: the host's --port-type
(system by default: no memory per port in ovs-vswitchd), or a network's own
-o ovsgre.port-type, checked on the host before the network is made."""

import pytest

from ovsgre.dataplane import (AFXDP_MAX_MTU, PROBE_HOST, Dataplane,
                              VLAN_PROBE)
from ovsgre.config import from_env
from ovsgre.driver import Driver
from ovsgre.protocol import create_app
from ovsgre.records import Endpoint
from ovsgre.errors import InvalidRequest, Unavailable

from .conftest import DEFAULT_MTU, Api, make_id


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

    def wait_interface(self, name, timeout):
        return self.interface(name)

    def del_port(self, port, bridge=None, wait=False):
        self.deleted.append((port, bridge))


class ProbeLinks:
    def __init__(self):
        self.created, self.deleted = [], []

    def create_veth(self, host, peer, mtu, mac, peer_tx_checksum=True):
        self.created.append(host)

    def delete(self, name):
        self.deleted.append(name)


def dataplane(datapath, wanted, ovsdb=None):
    dp = Dataplane.__new__(Dataplane)   # no OVSDB connection
    dp.bridge, dp.datapath, dp.wanted_port_type = "br-t", datapath, wanted
    dp.ovsdb, dp.links = ovsdb or ProbeOvsdb(), ProbeLinks()
    dp.port_type = "system"
    dp._usable = {}
    return dp


def ep(port_type="", mtu=1458):
    return Endpoint(network_id="n", endpoint_id="e", host_if="ovghx",
                    peer_if="ovgcx", mac="02:00:00:00:00:01", mtu=mtu,
                    state="created", port_type=port_type)


def test_the_default_is_system_ports():
    assert from_env({}).port_type == "system"
    # settings files written when auto chose afxdp-nonpmd get the default
    assert from_env({"OVSGRE_PORT_TYPE": "auto"}).port_type == "system"
    dp = dataplane("netdev", "system")
    assert dp._host_port_type() == "system"
    assert dp._ovs_type(ep()) == ""
    assert dp.ovsdb.added == []          # no probe, nothing added


def test_kernel_datapath_always_uses_system_ports():
    dp = dataplane("system", "system")
    assert dp._host_port_type() == "system"
    dp.port_type = "system"
    assert dp._ovs_type(ep("afxdp-nonpmd")) == ""
    assert dp.ovsdb.added == [] and dp.links.created == []


@pytest.mark.parametrize("wanted", ["afxdp-nonpmd", "afxdp"])
def test_afxdp_on_the_kernel_datapath_is_a_clear_error(wanted):
    with pytest.raises(Unavailable, match="userspace datapath"):
        dataplane("system", wanted)._host_port_type()


@pytest.mark.parametrize("wanted", ["system", "afxdp-nonpmd", "afxdp"])
def test_host_choice_is_used_without_probing(wanted):
    dp = dataplane("netdev", wanted)
    assert dp._host_port_type() == wanted
    assert dp.ovsdb.added == []


def test_network_choice_beats_the_host_choice():
    dp = dataplane("netdev", "system")
    assert dp._ovs_type(ep("afxdp-nonpmd")) == "afxdp-nonpmd"
    assert dp._ovs_type(ep("system")) == ""
    dp.port_type = "afxdp-nonpmd"
    assert dp._ovs_type(ep()) == "afxdp-nonpmd"
    assert dp._ovs_type(ep("system")) == ""
    # native XDP on a veth cannot take frames beyond a page
    assert dp._ovs_type(ep("afxdp-nonpmd", AFXDP_MAX_MTU + 1)) == ""


def test_check_port_type_probes_once_and_leaves_nothing():
    dp = dataplane("netdev", "system")
    dp.check_port_type("afxdp-nonpmd", 1458)
    dp.check_port_type("afxdp-nonpmd", 1458)
    assert dp.ovsdb.added == [("br-t", PROBE_HOST, VLAN_PROBE,
                               "afxdp-nonpmd")]
    assert dp.ovsdb.deleted == [(PROBE_HOST, "br-t")]
    assert PROBE_HOST in dp.links.deleted


@pytest.mark.parametrize("ovsdb,reason", [
    (ProbeOvsdb(types=("", "gre")), "built without it"),
    (ProbeOvsdb(ofport=-1, error="could not open network device"),
     "could not open network device"),
    (ProbeOvsdb(ofport=None, error="XDP load failed"), "XDP load failed"),
    (ProbeOvsdb(ofport=None), "did not take the port in time"),
])
def test_check_port_type_refuses_what_vswitchd_cannot_do(ovsdb, reason):
    dp = dataplane("netdev", "system", ovsdb)
    with pytest.raises(Unavailable) as err:
        dp.check_port_type("afxdp-nonpmd", 1458)
    assert reason in str(err.value) and "afxdp-nonpmd" in str(err.value)


def test_check_port_type_refuses_an_mtu_xdp_cannot_take():
    dp = dataplane("netdev", "system")
    with pytest.raises(InvalidRequest, match=str(AFXDP_MAX_MTU)):
        dp.check_port_type("afxdp-nonpmd", AFXDP_MAX_MTU + 1)
    assert dp.ovsdb.added == []


@pytest.mark.parametrize("datapath,port_type", [
    ("netdev", "system"), ("netdev", ""), ("system", "afxdp-nonpmd"),
    ("system", "afxdp")])
def test_check_port_type_accepts_without_probing(datapath, port_type):
    """System ports always work; the kernel datapath has no port type to
    choose, and a network spans hosts of both kinds."""
    dp = dataplane(datapath, "system")
    dp.check_port_type(port_type, 9000)
    assert dp.ovsdb.added == []


def test_afxdp_falls_back_to_system_ports_when_memory_runs_low(monkeypatch):
    import ovsgre.dataplane as dpmod
    dp = dataplane("netdev", "afxdp-nonpmd")
    dp.port_type = "afxdp-nonpmd"
    monkeypatch.setattr(dpmod, "mem_available",
                        lambda: dpmod.AFXDP_MIN_AVAILABLE - 1)
    assert dp._ovs_type(ep()) == ""
    assert dp._ovs_type(ep("afxdp")) == ""
    monkeypatch.setattr(dpmod, "mem_available",
                        lambda: dpmod.AFXDP_MIN_AVAILABLE)
    assert dp._ovs_type(ep()) == "afxdp-nonpmd"


def test_mem_available_reads_meminfo():
    from ovsgre.dataplane import mem_available
    assert 0 < mem_available() < 1 << 62


# -- the network option, through the protocol ----------------------------------

NET = make_id("pt-net")
EP = make_id("pt-ep")


@pytest.fixture
def pt_api(store, fake):
    return Api(create_app(Driver(store, fake, DEFAULT_MTU)).test_client())


def test_network_port_type_reaches_the_endpoint(pt_api, store, fake):
    status, _, _ = pt_api.create_network(
        NET, {"ovsgre.port-type": "afxdp-nonpmd"})
    assert status == 200
    assert ("check_port_type", "afxdp-nonpmd", DEFAULT_MTU) in fake.calls
    assert store.get("networks", NET)["port_type"] == "afxdp-nonpmd"
    assert pt_api.create_endpoint(NET, EP)[0] == 200
    assert store.get("endpoints", EP)["port_type"] == "afxdp-nonpmd"


def test_network_without_port_type_takes_the_hosts(pt_api, store):
    assert pt_api.create_network(NET)[0] == 200
    assert store.get("networks", NET)["port_type"] == ""
    pt_api.create_endpoint(NET, EP)
    assert store.get("endpoints", EP)["port_type"] == ""


@pytest.mark.parametrize("value", ["xdp", "auto", "AFXDP", "system;id", 3,
                                   ["system"]])
def test_bad_network_port_type(pt_api, store, fake, value):
    status, reply, _ = pt_api.create_network(
        NET, {"ovsgre.port-type": value})
    assert status == 400
    assert "ovsgre.port-type" in reply["Err"] and \
        "system, afxdp-nonpmd, afxdp" in reply["Err"]
    assert store.list("networks") == {} and fake.count("check_port_type") \
        == 0


def test_port_type_the_host_cannot_give_is_refused(pt_api, store, fake):
    fake.fail("check_port_type", Unavailable(
        "port type afxdp does not work on this host: XDP load failed"))
    status, reply, _ = pt_api.create_network(NET, {"ovsgre.port-type":
                                                   "afxdp"})
    assert status == 503 and "XDP load failed" in reply["Err"]
    assert store.list("networks") == {}


def test_replay_with_another_port_type_conflicts(pt_api, store):
    assert pt_api.create_network(NET)[0] == 200
    assert pt_api.create_network(NET)[0] == 200      # same: idempotent
    status, _, _ = pt_api.create_network(
        NET, {"ovsgre.port-type": "afxdp-nonpmd"})
    assert status == 409
    assert store.get("networks", NET)["port_type"] == ""


def test_old_network_records_without_port_type_replay_cleanly(pt_api,
                                                              store):
    assert pt_api.create_network(NET)[0] == 200
    record = store.get("networks", NET)
    del record["port_type"]                  # written by an older ovsgre
    store.put("networks", NET, record)
    assert pt_api.create_network(NET)[0] == 200
