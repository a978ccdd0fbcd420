"""Driver semantics, through the protocol layer, over a FakeDataplane.

Every call must be idempotent (dockerd re-sends calls), leave no duplicate
or stale links/ports, and persist what it must survive a restart with.
"""

import re
import threading

import pytest

from ovsgre import names
from ovsgre.driver import Driver
from ovsgre.errors import Conflict, DataplaneError
from ovsgre.protocol import create_app
from ovsgre.reconcile import reconcile
from ovsgre.store import LocalStore

from .conftest import DEFAULT_MTU, Api, make_id, store_files
from .fakes import FakeDataplane
from .wire import create_network

NET = make_id("net")
EP = make_id("ep")
MTU_KEY = "com.docker.network.driver.mtu"


def _setup(api, nid=NET, eid=EP, **kw):
    assert api.create_network(nid, **kw)[0] == 200
    assert api.create_endpoint(nid, eid)[0] == 200


def _one_pair(fake, store, eid=EP):
    ep = store.get("endpoints", eid)
    assert set(fake.links) == {ep["host_if"], ep["peer_if"]}
    assert set(fake.ports) == {ep["host_if"]}
    return ep


# -- idempotency ----------------------------------------------------------

def test_create_network_twice_keeps_one_record_and_tag(api, store):
    assert api.create_network(NET)[:2] == (200, {})
    vlan = store.get("networks", NET)["vlan"]
    assert api.create_network(NET)[:2] == (200, {})
    assert list(store.list("networks")) == [NET]
    assert store.get("networks", NET)["vlan"] == vlan


def test_create_endpoint_repeated_is_idempotent(api, store, fake):
    api.create_network(NET)
    replies = [api.create_endpoint(NET, EP)[:2] for _ in range(3)]
    assert replies == [(200, {"Interface": {
        "MacAddress": names.mac_for(EP)}})] * 3
    ep = _one_pair(fake, store)
    assert list(store.list("endpoints")) == [EP]
    assert fake.ports[ep["host_if"]]["tag"] == store.get("networks",
                                                         NET)["vlan"]


def test_create_endpoint_retry_replugs_a_vanished_pair(api, store, fake):
    _setup(api)
    ep = store.get("endpoints", EP)
    fake.remove_link(ep["host_if"])
    fake.remove_port(ep["host_if"])
    assert api.create_endpoint(NET, EP)[0] == 200
    _one_pair(fake, store)


def test_create_endpoint_repeated_after_join_keeps_the_container_end(
        api, store, fake):
    """Once Docker moved the container end into the sandbox, a repeated
    CreateEndpoint must not re-create the pair (that would cut the
    container off); it only makes sure of the OVS port."""
    _setup(api)
    _, reply, _ = api.join(NET, EP)
    peer = reply["InterfaceName"]["SrcName"]
    fake.move_to_sandbox(peer)
    ep = store.get("endpoints", EP)
    fake.remove_port(ep["host_if"])
    assert api.create_endpoint(NET, EP)[0] == 200
    assert peer in fake.sandboxed and peer not in fake.links
    assert set(fake.links) == {ep["host_if"]}
    assert fake.count("plug") == 1
    assert fake.ports[ep["host_if"]]["tag"] == store.get("networks",
                                                         NET)["vlan"]
    assert store.get("endpoints", EP)["state"] == "joined"


def test_create_endpoint_same_id_other_network_is_409(api, store):
    other = make_id("other")
    _setup(api)
    api.create_network(other, pool="10.20.0.0/24")
    status, reply, _ = api.create_endpoint(other, EP)
    assert status == 409 and NET in reply["Err"]
    assert store.get("endpoints", EP)["network_id"] == NET


@pytest.mark.parametrize("change, named", [
    ({"address": "10.10.0.3/24"}, "Address 10.10.0.2/24, not 10.10.0.3/24"),
    ({"address": ""}, "Address 10.10.0.2/24, not (none)"),
    ({"mac": "02:00:00:00:00:09"}, "not 02:00:00:00:00:09"),
])
def test_create_endpoint_repeated_with_other_values_is_refused(
        api, store, fake, change, named):
    """A repeat that asks for other values must not answer 200 with the
    old ones: Docker would believe the container has what it asked for."""
    _setup(api)
    before = store.get("endpoints", EP)
    status, reply, _ = api.create_endpoint(NET, EP, **change)
    assert status == 409 and named in reply["Err"], reply
    assert store.get("endpoints", EP) == before
    _one_pair(fake, store)


def test_create_endpoint_repeated_with_the_same_values_in_another_spelling(
        api, store):
    _setup(api)
    mac = store.get("endpoints", EP)["mac"]
    assert api.create_endpoint(NET, EP, mac=mac.upper())[0] == 200


def test_join_repeated_is_idempotent(api, store, fake):
    _setup(api)
    first = api.join(NET, EP)[:2]
    second = api.join(NET, EP)[:2]
    assert first == second and first[0] == 200
    ep = _one_pair(fake, store)
    assert ep["state"] == "joined"
    assert fake.count("plug") == 1   # the pair existed: not re-created


def test_join_after_docker_moved_the_peer(api, store, fake):
    """A repeated Join after Docker moved SrcName into the sandbox."""
    _setup(api)
    _, reply, _ = api.join(NET, EP)
    fake.move_to_sandbox(reply["InterfaceName"]["SrcName"])
    assert api.join(NET, EP)[:2] == (200, reply)
    assert fake.count("plug") == 1


def test_join_replugs_when_the_pair_vanished(api, store, fake):
    _setup(api)
    ep = store.get("endpoints", EP)
    fake.kill_sandbox(ep["peer_if"])
    assert fake.links == {}
    assert api.join(NET, EP)[0] == 200
    _one_pair(fake, store)


def test_leave_repeated_is_idempotent(api, store, fake):
    _setup(api)
    api.join(NET, EP)
    for _ in range(3):
        assert api.leave(NET, EP)[:2] == (200, {})
    ep = _one_pair(fake, store)
    assert ep["state"] == "created" and ep["sandbox"] == ""


def test_leave_of_a_not_joined_endpoint_changes_nothing(api, store):
    _setup(api)
    before = store.get("endpoints", EP)
    assert api.leave(NET, EP)[:2] == (200, {})
    assert store.get("endpoints", EP) == before


def test_delete_endpoint_repeated_is_idempotent(api, store, fake, state_dir):
    _setup(api)
    for _ in range(3):
        assert api.delete_endpoint(NET, EP)[:2] == (200, {})
    assert fake.links == {} and fake.ports == {}
    assert store.list("endpoints") == {}
    assert store_files(state_dir) == [f"networks/{NET}.json"]


def test_delete_network_repeated_is_idempotent(api, store, state_dir):
    api.create_network(NET)
    for _ in range(3):
        assert api.delete_network(NET)[:2] == (200, {})
    assert store_files(state_dir) == []


def test_join_leave_join_again(api, store, fake):
    _setup(api)
    for _ in range(3):
        status, reply, _ = api.join(NET, EP)
        assert status == 200
        fake.move_to_sandbox(reply["InterfaceName"]["SrcName"])
        assert api.leave(NET, EP)[0] == 200
        fake.move_to_host(reply["InterfaceName"]["SrcName"])
    _one_pair(fake, store)


# -- VLAN tags ------------------------------------------------------------

def test_vlan_tags_unique_per_network(api, store, fake):
    nets = [make_id(f"n{i}") for i in range(6)]
    for i, nid in enumerate(nets):
        assert api.create_network(nid, pool=f"10.{i}.0.0/24")[0] == 200
    tags = [store.get("networks", n)["vlan"] for n in nets]
    assert len(set(tags)) == len(tags)
    assert all(1 <= t <= 4094 for t in tags)
    # Ports carry their network's tag.
    for i, nid in enumerate(nets):
        eid = make_id(f"e{i}")
        api.create_endpoint(nid, eid, address=f"10.{i}.0.2/24")
        host = store.get("endpoints", eid)["host_if"]
        assert fake.ports[host]["tag"] == store.get("networks", nid)["vlan"]


def test_vlan_tag_reused_after_delete(api, store):
    nets = [make_id(f"n{i}") for i in range(3)]
    for nid in nets:
        api.create_network(nid)
    freed = store.get("networks", nets[1])["vlan"]
    kept = {store.get("networks", n)["vlan"] for n in (nets[0], nets[2])}
    api.delete_network(nets[1])
    new = make_id("new")
    api.create_network(new)
    assert store.get("networks", new)["vlan"] == freed
    assert freed not in kept


def test_vlan_tags_persist_across_restart(state_dir, fake):
    store = LocalStore(state_dir)
    api = Api(create_app(Driver(store, fake, DEFAULT_MTU)).test_client())
    nets = [make_id(f"n{i}") for i in range(3)]
    for nid in nets:
        api.create_network(nid)
    api.delete_network(nets[0])
    tags = {n: store.get("networks", n)["vlan"] for n in nets[1:]}
    store.close()

    store2 = LocalStore(state_dir)
    try:
        api2 = Api(create_app(Driver(store2, FakeDataplane(),
                                     DEFAULT_MTU)).test_client())
        assert {n: store2.get("networks", n)["vlan"]
                for n in nets[1:]} == tags
        # Same config after the restart: accepted, same tag.
        for nid in nets[1:]:
            assert api2.create_network(nid)[:2] == (200, {})
            assert store2.get("networks", nid)["vlan"] == tags[nid]
        # A new network never takes a tag in use.
        new = make_id("new")
        api2.create_network(new)
        assert store2.get("networks", new)["vlan"] not in tags.values()
    finally:
        store2.close()


def test_vlan_exhaustion_is_409(driver, store):
    for vlan in range(1, 4095):
        store._cache["networks"][f"n{vlan}"] = {
            "network_id": f"n{vlan}", "vlan": vlan, "mtu": 1450}
    with pytest.raises(Conflict, match="4094"):
        create_network(driver, NET, {}, [], [])


def test_concurrent_create_network_gets_unique_tags(driver, store):
    nets = [make_id(f"c{i}") for i in range(24)]
    errors = []

    def work(nid):
        try:
            create_network(driver, nid, {}, [], [])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in nets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tags = [store.get("networks", n)["vlan"] for n in nets]
    assert sorted(tags) == list(range(1, 25))


# -- network configuration ------------------------------------------------

@pytest.mark.parametrize("change", [
    {"generic": {MTU_KEY: "1400"}},
    {"generic": {"ovsgre.gwbridge": "true"}},
    {"pool": "10.99.0.0/24"},
])
def test_create_network_same_id_different_config_is_409(api, store, change):
    api.create_network(NET)
    before = store.get("networks", NET)
    status, reply, _ = api.create_network(NET, **change)
    assert status == 409 and "different" in reply["Err"]
    assert store.get("networks", NET) == before


def test_create_network_same_config_ignores_unrelated_options(api, store):
    api.create_network(NET, generic={"labtest.vni": "42"})
    assert api.create_network(NET, generic={"other": "x"})[:2] == (200, {})


@pytest.mark.parametrize("raw,mtu", [("1400", 1400), (1400, 1400),
                                     ("1280", 1280), ("65000", 65000),
                                     ("", DEFAULT_MTU), (None, DEFAULT_MTU)])
def test_mtu_option_valid(api, store, fake, raw, mtu):
    generic = {} if raw is None else {MTU_KEY: raw}
    assert api.create_network(NET, generic=generic)[0] == 200
    assert store.get("networks", NET)["mtu"] == mtu
    api.create_endpoint(NET, EP)
    ep = store.get("endpoints", EP)
    assert ep["mtu"] == mtu
    assert fake.links[ep["host_if"]]["mtu"] == mtu
    assert fake.links[ep["peer_if"]]["mtu"] == mtu


@pytest.mark.parametrize("raw", ["abc", "100", "99999", "1400;rm -rf /",
                                 "1279", "65001", "-1", "0", "0x578",
                                 "1400 1500", [1400], {"v": 1}, True])
def test_mtu_option_invalid(api, store, raw):
    status, reply, _ = api.create_network(NET, generic={MTU_KEY: raw})
    assert status == 400
    assert MTU_KEY in reply["Err"]
    assert store.list("networks") == {}


def test_generic_options_not_an_object(api, store):
    status, reply, _ = api.create_network(NET, generic="mtu=1400")
    assert status == 400 and "com.docker.network.generic" in reply["Err"]
    assert store.list("networks") == {}


@pytest.mark.parametrize("key", ["ovsgre.vni", "ovsgre.gw_bridge",
                                 "ovsgre.", "ovsgre.gwbridge.x"])
def test_unknown_ovsgre_option_names_the_key(api, store, key):
    status, reply, _ = api.create_network(NET, generic={key: "1"})
    assert status == 400
    assert repr(key) in reply["Err"] or key in reply["Err"]
    assert store.list("networks") == {}


def test_foreign_generic_options_are_ignored(api, store):
    assert api.create_network(NET, generic={"labtest.vni": "42",
                                            "foo": "bar"})[0] == 200


@pytest.mark.parametrize("value", ["yes", "1", "", "truee"])
def test_gwbridge_invalid_value(api, store, value):
    status, reply, _ = api.create_network(
        NET, generic={"ovsgre.gwbridge": value})
    assert status == 400 and "ovsgre.gwbridge" in reply["Err"]


@pytest.mark.parametrize("generic,options,disabled", [
    ({}, {}, True),
    ({"ovsgre.gwbridge": "false"}, {}, True),
    ({"ovsgre.gwbridge": "true"}, {}, False),
    ({"ovsgre.gwbridge": "TRUE"}, {}, False),
    ({"ovsgre.gwbridge": True}, {}, False),
    ({"ovsgre.gwbridge": "true"}, {"com.docker.network.internal": True},
     True),
    ({}, {"com.docker.network.internal": True}, True),
])
def test_gateway_service(api, generic, options, disabled):
    api.create_network(NET, generic=generic, options=options)
    api.create_endpoint(NET, EP)
    status, reply, _ = api.join(NET, EP)
    assert status == 200
    if disabled:
        assert reply["DisableGatewayService"] is True
    else:
        assert "DisableGatewayService" not in reply
    assert set(reply) - {"DisableGatewayService"} == {"InterfaceName"}


@pytest.mark.parametrize("ipv4,err", [
    ([{"Pool": "not-a-subnet"}], "IPv4Data.Pool"),
    ([{"Pool": "fd00::/64"}], "not IPv4"),
    ([{"Pool": "10.0.0.0/24", "Gateway": "10.0.0.x"}], "IPv4Data.Gateway"),
])
def test_invalid_pools(api, store, ipv4, err):
    status, reply, _ = api.call("CreateNetwork", {"NetworkID": NET,
                                                  "IPv4Data": ipv4})
    assert status == 400 and err in reply["Err"]
    assert store.list("networks") == {}


def test_ipv6_pool(api, store):
    assert api.ok("CreateNetwork", {
        "NetworkID": NET, "IPv4Data": [],
        "IPv6Data": [{"Pool": "fd00:1::/64", "Gateway": "fd00:1::1/64"}]}) \
        == {}
    assert store.get("networks", NET)["ipv6"] == [
        {"pool": "fd00:1::/64", "gateway": "fd00:1::1/64", "aux": []}]
    status, reply, _ = api.call("CreateNetwork", {
        "NetworkID": make_id("x"), "IPv6Data": [{"Pool": "10.0.0.0/8"}]})
    assert status == 400 and "not IPv6" in reply["Err"]


# -- interface names and MACs ---------------------------------------------

_IFNAME = re.compile(r"^[a-z0-9]{1,15}$")


def test_interface_names_derived_from_endpoint_id(api, store):
    _setup(api)
    ep = store.get("endpoints", EP)
    assert ep["host_if"] == "ovgh" + EP[:11]
    assert ep["peer_if"] == "ovgc" + EP[:11]
    for name in (ep["host_if"], ep["peer_if"]):
        assert len(name) <= 15 and _IFNAME.match(name)
        assert names.is_ours(name)
    _, reply, _ = api.join(NET, EP)
    assert reply["InterfaceName"]["SrcName"] == ep["peer_if"]


@pytest.mark.parametrize("shared", [11, 12, 40, 63])
def test_ids_sharing_a_prefix_get_different_names(api, store, fake, shared):
    base = make_id("prefix")
    ids = [base[:shared] + f"{i:x}".rjust(64 - shared, "f")
           for i in range(10)]
    assert len(set(ids)) == 10
    api.create_network(NET)
    for i, eid in enumerate(ids):
        assert api.create_endpoint(NET, eid, f"10.10.0.{i + 2}/24")[0] == 200
    eps = [store.get("endpoints", e) for e in ids]
    all_names = [e["host_if"] for e in eps] + [e["peer_if"] for e in eps]
    assert len(set(all_names)) == 20
    assert all(len(n) <= 15 and _IFNAME.match(n) for n in all_names)
    assert len(fake.links) == 20 and len(fake.ports) == 10
    # The first one keeps the readable, ID-derived name.
    assert eps[0]["host_if"] == "ovgh" + ids[0][:11]
    # Names are stable across a retried CreateEndpoint.
    for i, eid in enumerate(ids):
        api.create_endpoint(NET, eid, f"10.10.0.{i + 2}/24")
    assert [store.get("endpoints", e) for e in ids] == eps
    assert len(fake.links) == 20


@pytest.mark.parametrize("eid", ["a", "abc123", "A" * 10])
def test_short_endpoint_ids_get_full_length_names_and_are_cleaned_up(
        api, store, fake, eid):
    """Names of every length-valid ID are recognised as ovsgre's, so the
    reconciler can remove them when they are orphans."""
    _setup(api, eid=eid)
    ep = store.get("endpoints", eid)
    for name in (ep["host_if"], ep["peer_if"]):
        assert len(name) == 15 and _IFNAME.match(name)
        assert names.is_ours(name)
    store.delete("endpoints", eid)             # the record is lost
    reconcile(store, fake)
    assert fake.links == {} and fake.ports == {}


def test_ids_differing_only_in_case_get_different_names(api, store):
    lower, upper = "abcdefghijk" + "1" * 20, "ABCDEFGHIJK" + "2" * 20
    api.create_network(NET)
    api.create_endpoint(NET, lower)
    api.create_endpoint(NET, upper, "10.10.0.3/24")
    assert store.get("endpoints", lower)["host_if"] != \
        store.get("endpoints", upper)["host_if"]
    assert all(_IFNAME.match(e["host_if"])
               for e in store.list("endpoints").values())


@pytest.mark.parametrize("mac", ["02:42:c6:13:01:32", "02:42:AC:11:00:02",
                                 "de:ad:be:ef:00:01"])
def test_given_mac_used_verbatim(api, store, fake, mac):
    api.create_network(NET)
    assert api.create_endpoint(NET, EP, mac=mac)[:2] == (200, {})
    ep = store.get("endpoints", EP)
    assert ep["mac"] == mac
    assert fake.links[ep["peer_if"]]["address"] == mac


def test_generated_mac_is_deterministic_local_unicast(api, store, fake):
    api.create_network(NET)
    _, reply, _ = api.create_endpoint(NET, EP)
    mac = reply["Interface"]["MacAddress"]
    assert re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", mac)
    first = int(mac.split(":")[0], 16)
    assert first & 0x02, "locally administered bit"
    assert not first & 0x01, "must be unicast"
    assert mac == names.mac_for(EP)
    ep = store.get("endpoints", EP)
    assert ep["mac"] == mac and fake.links[ep["peer_if"]]["address"] == mac
    # Deterministic: same ID -> same MAC after delete/re-create,
    # another ID -> another MAC.
    api.delete_endpoint(NET, EP)
    assert api.create_endpoint(NET, EP)[1]["Interface"]["MacAddress"] == mac
    other = api.create_endpoint(NET, make_id("o"), "10.10.0.3/24")[1]
    assert other["Interface"]["MacAddress"] != mac


@pytest.mark.parametrize("mac", ["02:42:ac:11:00", "zz:42:ac:11:00:02",
                                 "02-42-ac-11-00-02", "0242ac110002",
                                 "02:42:ac:11:00:02; rm -rf /",
                                 " 02:42:ac:11:00:02", "02:42"])
def test_invalid_mac_is_400(api, store, fake, mac):
    api.create_network(NET)
    status, reply, _ = api.create_endpoint(NET, EP, mac=mac)
    assert status == 400 and "Interface.MacAddress" in reply["Err"]
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


def test_mac_with_trailing_newline_is_400(api, store, fake):
    """Regression: '$' in a regex also matches before a final newline."""
    api.create_network(NET)
    status, _, _ = api.create_endpoint(NET, EP, mac="02:42:ac:11:00:02\n")
    assert status == 400
    assert store.list("endpoints") == {}


@pytest.mark.parametrize("field,value", [
    ("Address", "10.0.0.300/24"), ("Address", "abc"),
    ("Address", "fd00::2/64"), ("Address", "10.0.0.2/33"),
    ("Address", "10.0.0.2/24; reboot"),
    ("AddressIPv6", "10.0.0.2/24"), ("AddressIPv6", "fd00::zz/64"),
])
def test_invalid_address_is_400(api, store, fake, field, value):
    api.create_network(NET)
    body = {"NetworkID": NET, "EndpointID": EP,
            "Interface": {field: value}}
    status, reply, _ = api.call("CreateEndpoint", body)
    assert status == 400 and f"Interface.{field}" in reply["Err"]
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


def test_ipv6_address_accepted(api, store):
    api.create_network(NET)
    api.ok("CreateEndpoint", {"NetworkID": NET, "EndpointID": EP,
                              "Interface": {"Address": "10.10.0.2/24",
                                            "AddressIPv6": "fd00::2/64"}})
    assert store.get("endpoints", EP)["address6"] == "fd00::2/64"


# -- teardown -------------------------------------------------------------

def test_delete_network_removes_leftover_endpoints(api, store, fake,
                                                   state_dir):
    other = make_id("other")
    api.create_network(NET)
    api.create_network(other, pool="10.20.0.0/24")
    eids = [make_id(f"left{i}") for i in range(3)]
    for i, eid in enumerate(eids):
        api.create_endpoint(NET, eid, f"10.10.0.{i + 2}/24")
    api.join(NET, eids[0])
    keep = make_id("keep")
    api.create_endpoint(other, keep, "10.20.0.2/24")

    assert api.delete_network(NET)[:2] == (200, {})
    assert list(store.list("endpoints")) == [keep]
    assert list(store.list("networks")) == [other]
    _one_pair(fake, store, keep)
    assert store_files(state_dir) == sorted(
        [f"networks/{other}.json", f"endpoints/{keep}.json"])


def test_create_endpoint_after_delete_network_is_404(api):
    api.create_network(NET)
    api.delete_network(NET)
    assert api.create_endpoint(NET, EP)[0] == 404


def test_full_lifecycle_leaves_nothing(api, store, fake, state_dir):
    nets = [make_id("a"), make_id("b")]
    for i, nid in enumerate(nets):
        api.create_network(nid, pool=f"10.{i}.0.0/24",
                           generic={MTU_KEY: "1400"} if i else {})
    eids = {}
    for i, nid in enumerate(nets):
        for j in range(3):
            eid = make_id(f"{i}-{j}")
            eids[eid] = nid
            assert api.create_endpoint(nid, eid, f"10.{i}.0.{j + 2}/24",
                                       mac="" if j else
                                       f"02:42:0a:0{i}:00:0{j}")[0] == 200
    assert len(fake.links) == 12 and len(fake.ports) == 6
    for eid, nid in eids.items():
        _, reply, _ = api.join(nid, eid)
        fake.move_to_sandbox(reply["InterfaceName"]["SrcName"])
    for eid, nid in eids.items():
        assert api.leave(nid, eid)[0] == 200
        fake.move_to_host(store.get("endpoints", eid)["peer_if"])
        assert api.delete_endpoint(nid, eid)[0] == 200
    for nid in nets:
        assert api.delete_network(nid)[0] == 200
    assert fake.all_links() == set() and fake.ports == {}
    assert store.list("networks") == {} and store.list("endpoints") == {}
    assert store_files(state_dir) == []


def test_container_killed_then_endpoint_deleted(api, store, fake, state_dir):
    """Sandbox died with the peer inside: the pair is gone already."""
    _setup(api)
    _, reply, _ = api.join(NET, EP)
    fake.move_to_sandbox(reply["InterfaceName"]["SrcName"])
    fake.kill_sandbox(reply["InterfaceName"]["SrcName"])
    assert api.leave(NET, EP)[0] == 200
    assert api.delete_endpoint(NET, EP)[0] == 200
    assert api.delete_network(NET)[0] == 200
    assert fake.all_links() == set() and fake.ports == {}
    assert store_files(state_dir) == []


def test_failed_plug_is_undone(api, store, fake):
    api.create_network(NET)
    fake.fail("plug", RuntimeError("half way"))
    assert api.create_endpoint(NET, EP)[0] == 500
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


def test_recreate_after_failed_delete_reuses_names_and_leaks_nothing(
        api, store, fake):
    _setup(api)
    fake.fail("unplug", RuntimeError("netlink hiccup"))
    assert api.delete_endpoint(NET, EP)[0] == 500
    assert store.get("endpoints", EP)["state"] == "deleting"
    assert api.create_endpoint(NET, EP)[0] == 200
    ep = store.get("endpoints", EP)
    assert ep["host_if"] == "ovgh" + EP[:11]
    _one_pair(fake, store)


def test_failed_delete_network_still_releases_the_network(api, store, fake):
    _setup(api)
    fake.fail("unplug", DataplaneError("OVSDB did not answer"))
    api.delete_network(NET)          # error or not: Docker forgets it
    assert store.get("networks", NET) is None
    # What is left is marked for the reconciler, which finishes it.
    assert all(e["state"] == "deleting"
               for e in store.list("endpoints").values())
    reconcile(store, fake)
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


def test_second_local_network_with_the_same_cluster_name_is_refused(api,
                                                                    store):
    from .conftest import make_id
    first, second = make_id("blue-1"), make_id("blue-2")
    assert api.create_network(first, {"ovsgre.network": "blue"})[0] == 200
    status, reply, _ = api.create_network(second, {"ovsgre.network": "blue"})
    assert status == 409 and "already used by network" in reply["Err"]
    assert store.get("networks", second) is None
    # the same network again (Docker's retry) is fine
    assert api.create_network(first, {"ovsgre.network": "blue"})[0] == 200


def test_network_refused_for_want_of_a_vlan_is_not_recorded_in_the_cluster(
        state_dir, store, fake, monkeypatch):
    from ovsgre import driver as driver_module
    from ovsgre.cluster.kv import LocalKV
    from ovsgre.cluster.networks import NetworkRegistry

    monkeypatch.setattr(driver_module, "VLAN_MAX", driver_module.VLAN_MIN)
    registry = NetworkRegistry(LocalKV(state_dir), "192.0.2.1")
    api = Api(create_app(Driver(store, fake, DEFAULT_MTU,
                                registry)).test_client())
    assert api.create_network(NET, {"ovsgre.network": "blue"})[0] == 200
    other = make_id("other")
    status, reply, _ = api.create_network(other, {"ovsgre.network": "red"},
                                          pool="10.20.0.0/24")
    assert status == 409 and "VLAN" in reply["Err"]
    assert set(registry.list()) == {"blue"}


# -- --aux-address -----------------------------------------------------------

def _two_hosts_with_ovsgre_ipam(state_dir, tmp_path):
    """Two hosts' drivers and IPAMs over one cluster store (as with etcd)."""
    from ovsgre.cluster.kv import LocalKV
    from ovsgre.ipam import Ipam
    kv = LocalKV(state_dir)
    hosts = []
    for i in (1, 2):
        store = LocalStore(str(tmp_path / f"h{i}"))
        ipam = Ipam(kv, f"192.0.2.{i}")
        driver = Driver(store, FakeDataplane(), DEFAULT_MTU, ipam=ipam)
        hosts.append((Api(create_app(driver, ipam).test_client()), store))
    return hosts


def _network_create_with_aux(api, nid, aux):
    """dockerd's calls for `network create --ipam-driver ovsgre
    --subnet 10.10.0.0/24 --aux-address router=AUX`."""
    ipam = "/IpamDriver."
    code, pool, _ = api.call(ipam + "RequestPool", {
        "AddressSpace": "ovsgre-local", "Pool": "10.10.0.0/24",
        "SubPool": "", "Options": {}, "V6": False})
    assert code == 200 and not pool.get("Error"), pool
    for address, options in (("", {"RequestAddressType":
                                    "com.docker.network.gateway"}),
                             (aux, None)):
        code, reply, _ = api.call(ipam + "RequestAddress", {
            "PoolID": pool["PoolID"], "Address": address,
            "Options": options})
        if code != 200 or reply.get("Error"):
            return code, reply
    return api.call("CreateNetwork", {
        "NetworkID": nid, "Options": {},
        "IPv4Data": [{"AddressSpace": "ovsgre-local",
                      "Pool": "10.10.0.0/24", "Gateway": "10.10.0.1/24",
                      "AuxAddresses": {"router": f"{aux}/24"}}],
        "IPv6Data": []})[:2]


def test_aux_address_on_every_host_and_never_a_containers(state_dir,
                                                           tmp_path):
    (a1, s1), (a2, s2) = _two_hosts_with_ovsgre_ipam(state_dir, tmp_path)
    assert _network_create_with_aux(a1, NET, "10.10.0.9") == (200, {})
    assert _network_create_with_aux(a2, NET, "10.10.0.9") == (200, {})
    assert s2.get("networks", NET)["ipv4"][0]["aux"] == ["10.10.0.9"]
    # docker run --ip 10.10.0.9: the IPAM cannot tell it from an aux
    # request, the driver refuses it
    code, reply, _ = a2.create_endpoint(NET, EP, "10.10.0.9/24")
    assert code == 409 and "reserved" in reply["Err"] and \
        "--aux-address" in reply["Err"], reply
    assert s2.get("endpoints", EP) is None
    assert a1.create_endpoint(NET, EP, "10.10.0.10/24")[0] == 200


def test_aux_addresses_outside_the_pool_or_malformed_are_left_out(api,
                                                                 store):
    """Docker checks them first; what is not an address of the pool cannot
    be a container's address either."""
    assert api.call("CreateNetwork", {
        "NetworkID": NET, "Options": {},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.10.0.0/24",
                      "AuxAddresses": {"a": "10.99.0.9/24", "b": "x",
                                       "c": ["10.10.0.8"],
                                       "d": "10.10.0.9"}}],
        "IPv6Data": []})[:2] == (200, {})
    assert store.get("networks", NET)["ipv4"][0]["aux"] == ["10.10.0.9"]


def test_aux_addresses_not_an_object_are_400(api):
    code, reply, _ = api.call("CreateNetwork", {
        "NetworkID": NET, "Options": {},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.10.0.0/24",
                      "AuxAddresses": ["10.10.0.9"]}], "IPv6Data": []})
    assert code == 400 and "AuxAddresses" in reply["Err"], reply


def test_network_record_without_aux_is_the_same_network(api, store):
    """A record written before aux addresses were kept equals a repeated
    CreateNetwork without them."""
    assert api.create_network(NET)[0] == 200
    record = store.get("networks", NET)
    for pool in record["ipv4"]:
        del pool["aux"]
    store.put("networks", NET, record)
    assert api.create_network(NET)[:2] == (200, {})


def test_aux_addresses_not_shared_when_etcd_fails_still_create(store, fake):
    """Sharing the aux reservation needs etcd; when that fails the network
    is created anyway (logged): other hosts' creates fail until retried."""
    from ovsgre.errors import Unavailable

    class DownIpam:
        def keep_aux(self, pool, addresses):
            raise Unavailable("etcd unreachable (get): refused")

    api = Api(create_app(Driver(store, fake, DEFAULT_MTU, ipam=DownIpam()))
              .test_client())
    assert api.call("CreateNetwork", {
        "NetworkID": NET, "Options": {},
        "IPv4Data": [{"AddressSpace": "ovsgre-local", "Pool": "10.10.0.0/24",
                      "AuxAddresses": {"r": "10.10.0.9/24"}}],
        "IPv6Data": []})[:2] == (200, {})
    assert store.get("networks", NET)["ipv4"][0]["aux"] == ["10.10.0.9"]
