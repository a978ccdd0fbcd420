"""Typed records of the local store: what the plugin writes reads back the
same, records of older versions still read, fields of newer versions are
kept, and a malformed record is refused with the reason."""

import pytest

from ovsgre.cluster.records import Malformed
from ovsgre.records import (ENDPOINTS, NETWORKS, Endpoint, HostRecords,
                            Network, Pool, from_json, problems, to_json)
from ovsgre.store import LocalStore

NET = Network(network_id="n" * 64, vlan=3, mtu=1450, key=4242, name="web",
              gwbridge=True, port_type="afxdp",
              ipv4=(Pool("198.18.4.0/24", "198.18.4.1",
                         ("198.18.4.9",)),),
              ipv6=(Pool("fd00::/64"),))
EP = Endpoint(network_id="n" * 64, endpoint_id="e" * 64,
              host_if="ovgh" + "e" * 11, peer_if="ovgc" + "e" * 11,
              mac="02:00:00:00:00:09", mtu=1450, state="joined",
              address="198.18.4.2/24", sandbox="/var/run/docker/netns/x",
              created_at=12.5)


@pytest.fixture
def records(tmp_path):
    store = LocalStore(str(tmp_path), validate=True)
    yield HostRecords(store)
    store.close()


def test_what_is_written_reads_back_the_same(records, tmp_path):
    records.put_network(NET)
    records.put_endpoint(EP)
    assert records.network(NET.network_id) == NET
    assert records.endpoint(EP.endpoint_id) == EP
    again = LocalStore(str(tmp_path), lock=False)   # from disk this time
    assert from_json(NETWORKS, again.get(NETWORKS, NET.network_id)) == NET
    assert from_json(ENDPOINTS, again.get(ENDPOINTS, EP.endpoint_id)) == EP


def test_the_json_form_is_what_earlier_versions_wrote():
    raw = to_json(NET)
    assert raw["ipv4"] == [{"pool": "198.18.4.0/24", "gateway": "198.18.4.1",
                            "aux": ["198.18.4.9"]}]
    assert raw["key"] == 4242 and raw["vlan"] == 3
    assert set(to_json(EP)) == {
        "network_id", "endpoint_id", "host_if", "peer_if", "mac", "mtu",
        "state", "port_type", "address", "address6", "sandbox",
        "created_at"}


def test_records_of_older_versions_read():
    old = {"network_id": "n1", "vlan": 1, "mtu": 1450,
           "ipv4": [{"pool": "198.18.0.0/24", "gateway": "198.18.0.1"}]}
    net = from_json(NETWORKS, old)
    assert net.port_type == "" and net.key is None and not net.gwbridge
    assert net.ipv4 == (Pool("198.18.0.0/24", "198.18.0.1", ()),)
    ep = from_json(ENDPOINTS, {k: v for k, v in to_json(EP).items()
                               if k not in ("port_type", "created_at")})
    assert ep.port_type == "" and ep.created_at == 0


def test_fields_a_newer_version_added_are_kept(records):
    raw = dict(to_json(EP), qos={"rate": 10})
    records.store.put(ENDPOINTS, EP.endpoint_id, raw)
    ep = records.endpoint(EP.endpoint_id)
    records.put_endpoint(ep.but(state="created"))
    assert records.store.get(ENDPOINTS, EP.endpoint_id)["qos"] == \
        {"rate": 10}
    assert records.endpoint(EP.endpoint_id).state == "created"


@pytest.mark.parametrize("kind,change,reason", [
    (NETWORKS, {"vlan": "3"}, 'vlan is "3"'),
    (NETWORKS, {"key": 0}, "key 0 is not"),
    (NETWORKS, {"ipv4": "198.18.0.0/24"}, "ipv4 is"),
    (NETWORKS, {"ipv6": [{"gateway": "fd00::1"}]}, "ipv6 is"),
    (ENDPOINTS, {"state": "lost"}, 'state is "lost"'),
    (ENDPOINTS, {"mtu": True}, "mtu is true"),
    (ENDPOINTS, {"host_if": ""}, 'host_if is ""'),
])
def test_a_malformed_record_is_refused_with_the_reason(kind, change,
                                                       reason):
    raw = dict(to_json(NET if kind == NETWORKS else EP), **change)
    assert any(reason in p for p in problems(kind, raw)), problems(kind, raw)
    with pytest.raises(Malformed, match=reason):
        from_json(kind, raw)


def test_a_missing_field_is_named():
    raw = to_json(EP)
    del raw["peer_if"]
    assert problems(ENDPOINTS, raw) == ["no peer_if"]


def test_a_malformed_record_in_a_listing_is_left_out(tmp_path, caplog):
    store = LocalStore(str(tmp_path))       # not validating: a test's store
    records = HostRecords(store)
    records.put_endpoint(EP)
    store.put(ENDPOINTS, "bad", {"state": "joined"})
    assert list(records.endpoints()) == [EP.endpoint_id]
    assert "endpoints/bad left out" in caplog.text
    store.close()
