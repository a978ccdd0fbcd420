"""`ovsgre host forget IP`: what a host gone for good still holds."""

import pytest

from ovsgre.cluster.kv import LocalKV
from ovsgre.cluster.networks import NetworkRegistry
from ovsgre.commands.host import forget
from ovsgre.ipam import ADDRS, Ipam
from ovsgre.definitions import HOSTS_PREFIX as HOSTS

from .conftest import pool_base
from .wire import request_address, request_pool

pytestmark = pytest.mark.usefixtures("no_fsync")

DEAD, LIVE = "192.0.2.1", "192.0.2.2"
GW = {"RequestAddressType": "com.docker.network.gateway"}


class SharedKV(LocalKV):
    shared = True


@pytest.fixture
def kv(state_dir):
    return SharedKV(state_dir)


def _host(kv, ip, name, subnet):
    """What a host's dockerd and plugin leave in etcd for one network with
    one container."""
    NetworkRegistry(kv, ip).define(name, [subnet], [])
    ipam = Ipam(kv, ip)
    pool_id = request_pool(ipam, subnet, "", {}, False)["PoolID"]
    request_address(ipam, pool_id, "", GW)
    address = request_address(ipam, pool_id, "", {})["Address"]
    return pool_id, address.split("/")[0]


def test_forget_releases_shared_holds_and_frees_the_dead_hosts_addresses(
        kv):
    _, dead_ip = _host(kv, DEAD, "blue", "10.1.0.0/24")
    live_pool, live_ip = _host(kv, LIVE, "blue", "10.1.0.0/24")
    _host(kv, DEAD, "solo", "10.2.0.0/24")
    counts = forget(kv, DEAD)
    assert counts == {"networks": 2, "pools": 2, "addresses": 1}
    registry = NetworkRegistry(kv, LIVE)
    assert registry.list()["blue"].hosts == tuple([LIVE])
    assert "solo" not in registry.list()            # its key goes too
    assert not any("10.2.0.0" in k for k in kv.list("/ovsgre/"))
    taken = {k.rsplit("/", 1)[1] for k in kv.list(ADDRS)}
    assert taken == {"10.1.0.1", live_ip}          # gateway and the live one
    assert dead_ip not in taken
    # the dead host's address can be handed out again
    ipam = Ipam(kv, LIVE)
    assert request_address(ipam, live_pool, dead_ip, {})["Address"] == \
        dead_ip + "/24"
    assert pool_base(live_pool) == "default/10.1.0.0/24"


def test_forget_refuses_a_registered_host_unless_forced(kv):
    _host(kv, DEAD, "blue", "10.1.0.0/24")
    kv.put(HOSTS + DEAD, {"ip": DEAD})
    before = kv.list("/ovsgre/")
    with pytest.raises(ValueError, match="registered"):
        forget(kv, DEAD)
    assert kv.list("/ovsgre/") == before
    assert forget(kv, DEAD, force=True)["networks"] == 1


def test_forget_twice_and_unknown_host_change_nothing(kv):
    _host(kv, LIVE, "blue", "10.1.0.0/24")
    before = kv.list("/ovsgre/")
    assert forget(kv, DEAD) == {"networks": 0, "pools": 0, "addresses": 0}
    assert kv.list("/ovsgre/") == before
    with pytest.raises(ValueError):
        forget(kv, "not-an-ip")
