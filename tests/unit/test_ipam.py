"""The IPAM driver over LocalKV.

Two ``Ipam`` objects on one store with different host ids stand for two
hosts sharing etcd; two on separate stores stand for static peers (each
host with its own --ip-range).
"""

import ipaddress
import threading

import pytest

from ovsgre.cluster.kv import LocalKV
from ovsgre.errors import Conflict, InvalidRequest, NotFound, OvsgreError
from ovsgre.ipam import ADDRS, Ipam

from .conftest import pool_base
from .conftest import pool_base as base
from .fakes import InterleavingKV
from .wire import request_address, request_pool

pytestmark = pytest.mark.usefixtures("no_fsync")

GW = {"RequestAddressType": "com.docker.network.gateway"}
RED = {"ovsgre.network": "red"}
POOL = "10.1.0.0/24"
PID = "default/10.1.0.0/24"
V6 = "fd00:198:18:30::/64"


@pytest.fixture
def kv(state_dir):
    return LocalKV(state_dir)


@pytest.fixture
def h1(kv):
    return Ipam(kv, "192.0.2.1")


@pytest.fixture
def h2(kv):
    return Ipam(kv, "192.0.2.2")


def addr(ipam, pool_id, address="", options=None):
    reply = request_address(ipam, pool_id, address, options)
    assert set(reply) == {"Address", "Data"}
    return reply["Address"]


def ip_of(address):
    return str(ipaddress.ip_interface(address).ip)


def network(ipam, pool=POOL, sub="", options=None, v6=False, gateway=True):
    """RequestPool and the gateway, as dockerd does on CreateNetwork."""
    pid = request_pool(ipam, pool, sub, options, v6)["PoolID"]
    if gateway:
        addr(ipam, pid, "", GW)
    return pid


# -- the handshake ----------------------------------------------------------

def test_capabilities_and_spaces(h1):
    assert h1.capabilities() == {"RequiresMACAddress": False,
                                 "RequiresRequestReplay": False}
    spaces = h1.default_spaces()
    assert set(spaces) == {"LocalDefaultAddressSpace",
                           "GlobalDefaultAddressSpace"}
    assert all(isinstance(v, str) and v for v in spaces.values())


# -- RequestPool validation -------------------------------------------------

@pytest.mark.parametrize("pool", ["", None])
def test_pool_required(h1, pool):
    with pytest.raises(InvalidRequest, match="--subnet"):
        request_pool(h1, pool, "", {}, False)


@pytest.mark.parametrize("pool", ["10.1.0.0/33", "banana", "10.1.0/24x"])
def test_pool_must_be_a_subnet(h1, pool):
    with pytest.raises(InvalidRequest, match="Pool"):
        request_pool(h1, pool, "", {}, False)


def test_v6_flag_must_match_pool(h1):
    with pytest.raises(InvalidRequest, match="not IPv6"):
        request_pool(h1, POOL, "", {}, True)
    with pytest.raises(InvalidRequest, match="not IPv4"):
        request_pool(h1, V6, "", {}, False)


@pytest.mark.parametrize("sub", ["10.2.0.0/25", "10.1.0.0/23", "10.0.0.0/8"])
def test_subpool_outside_pool(h1, sub):
    with pytest.raises(InvalidRequest, match="SubPool"):
        request_pool(h1, POOL, sub, {}, False)


def test_subpool_not_a_subnet(h1):
    with pytest.raises(InvalidRequest, match="SubPool"):
        request_pool(h1, POOL, "nope", {}, False)


def test_subpool_of_other_version_is_invalid(h1):
    with pytest.raises(InvalidRequest):
        request_pool(h1, POOL, "fd00::/64", {}, False)


@pytest.mark.parametrize("space", ["../x", "a b", "-lead", "x" * 65, 5,
                                   "a/b"])
def test_bad_space_option(h1, space):
    with pytest.raises(InvalidRequest, match="ovsgre.network"):
        request_pool(h1, POOL, "", {"ovsgre.network": space}, False)


def test_failed_request_pool_leaves_nothing(h1, kv):
    for args in (("", "", {}, False), (POOL, "", {}, True),
                 (POOL, "10.2.0.0/25", {}, False),
                 (POOL, "", {"ovsgre.network": "a b"}, False)):
        with pytest.raises(InvalidRequest):
            request_pool(h1, *args)
    assert kv.list("/ovsgre/") == {}


# -- PoolIDs and address spaces --------------------------------------------

def test_pool_id_format(h1):
    reply = request_pool(h1, POOL, "", {}, False)
    assert base(reply.pop("PoolID")) == "default/10.1.0.0/24"
    assert reply == {"Pool": "10.1.0.0/24", "Data": {}}
    reply = request_pool(h1, POOL, "10.1.0.128/25", None, False)
    assert base(reply["PoolID"]) == "default/10.1.0.0/24/10.1.0.128/25"
    assert reply["Pool"] == "10.1.0.0/24"
    reply = request_pool(h1, "10.7.0.0/16", "", RED, False)
    assert base(reply["PoolID"]) == "red/10.7.0.0/16"


def test_pool_is_normalised(h1):
    reply = request_pool(h1, "10.1.0.77/24", "", {}, False)
    assert base(reply["PoolID"]) == PID and reply["Pool"] == POOL


def test_empty_space_option_is_default(h1):
    assert base(request_pool(h1, POOL, "", {"ovsgre.network": ""},
                                False)["PoolID"]) == PID


def test_same_subnet_one_pool_a_holder_per_request(h1, h2, kv):
    """The same network on two hosts shares one pool (one address table);
    each RequestPool is a holder of its own."""
    replies = [request_pool(ipam, POOL, "", {}, False)
               for ipam in (h1, h2, h1)]
    assert {base(r["PoolID"]) for r in replies} == {PID}
    assert len({r["PoolID"] for r in replies}) == 3
    assert len(kv.list("/ovsgre/ipam/pools/")) == 1
    taken = {ip_of(addr(ipam, r["PoolID"]))
             for ipam, r in zip((h1, h2, h1), replies)}
    assert len(taken) == 3


def test_overlap_in_same_space_conflicts(h1, h2):
    request_pool(h1, POOL, "", {}, False)
    for other in ("10.1.0.0/16", "10.1.0.128/25"):
        with pytest.raises(Conflict) as exc:
            request_pool(h2, other, "", {}, False)
        assert "--ipam-opt" in str(exc.value)
        assert "ovsgre.network" in str(exc.value)
        assert POOL in str(exc.value)
    # the same host is refused too
    with pytest.raises(Conflict):
        request_pool(h1, "10.1.0.0/23", "", {}, False)


def test_overlap_in_named_space_conflicts(h1, h2):
    request_pool(h1, POOL, "", RED, False)
    with pytest.raises(Conflict, match="'red'"):
        request_pool(h2, "10.1.0.0/25", "", RED, False)


def test_overlap_in_other_space_allowed(h1, h2):
    a = network(h1, POOL)
    b = network(h2, POOL, options=RED)
    c = network(h2, "10.1.0.0/16", options={"ovsgre.network": "green"})
    assert base(a) == PID and base(b) == "red/10.1.0.0/24" and \
        base(c) == "green/10.1.0.0/16"
    # separate spaces have separate addresses
    assert addr(h1, a) == "10.1.0.2/24"
    assert addr(h2, b) == "10.1.0.2/24"
    assert addr(h2, c) == "10.1.0.2/16"


def test_disjoint_subnets_in_default_space(h1, h2):
    assert base(network(h1, "10.1.0.0/24")) == "default/10.1.0.0/24"
    assert base(network(h2, "10.1.1.0/24")) == "default/10.1.1.0/24"


def test_v4_and_v6_pools_do_not_overlap(h1):
    network(h1, POOL)
    assert base(network(h1, V6, v6=True)) == "default/" + V6


# -- gateway -----------------------------------------------------------------

def test_gateway_is_first_address_for_every_host(h1, h2):
    pid = request_pool(h1, POOL, "", {}, False)["PoolID"]
    request_pool(h2, POOL, "", {}, False)
    assert addr(h1, pid, "", GW) == "10.1.0.1/24"
    assert addr(h2, pid, "", GW) == "10.1.0.1/24"
    assert addr(h1, pid, "", GW) == "10.1.0.1/24"


def test_given_gateway_for_every_host(h1, h2):
    pid = request_pool(h1, POOL, "", {}, False)["PoolID"]
    assert addr(h1, pid, "10.1.0.254", GW) == "10.1.0.254/24"
    assert addr(h2, pid, "10.1.0.254/24", GW) == "10.1.0.254/24"
    # .1 is then an ordinary address
    assert addr(h2, pid) == "10.1.0.1/24"


def test_container_cannot_take_gateway(h1, h2):
    pid = network(h1)
    for ipam in (h1, h2):
        with pytest.raises(Conflict, match="10.1.0.1"):
            addr(ipam, pid, "10.1.0.1")
    assert addr(h1, pid, "", GW) == "10.1.0.1/24"


def test_gateway_cannot_take_container_address(h1, h2):
    pid = request_pool(h1, POOL, "", {}, False)["PoolID"]
    assert addr(h1, pid, "10.1.0.9") == "10.1.0.9/24"
    with pytest.raises(Conflict, match="container"):
        addr(h2, pid, "10.1.0.9", GW)


def test_gateway_outside_pool(h1):
    pid = request_pool(h1, POOL, "", {}, False)["PoolID"]
    with pytest.raises(InvalidRequest):
        addr(h1, pid, "10.2.0.1", GW)


# -- automatic allocation ---------------------------------------------------

def test_auto_skips_gateway_network_and_broadcast(h1):
    pid = network(h1, "10.1.0.0/29")
    got = [addr(h1, pid) for _ in range(5)]
    assert got == [f"10.1.0.{i}/29" for i in range(2, 7)]
    with pytest.raises(Conflict, match="no free address"):
        addr(h1, pid)


def test_auto_without_gateway_starts_at_first_host(h1):
    pid = network(h1, "10.1.0.0/30", gateway=False)
    assert [addr(h1, pid), addr(h1, pid)] == ["10.1.0.1/30", "10.1.0.2/30"]
    with pytest.raises(Conflict):
        addr(h1, pid)


def test_auto_alternating_hosts_no_duplicates(h1, h2):
    pids = network(h1), network(h2)
    assert base(pids[0]) == base(pids[1])
    got = [addr((h1, h2)[i % 2], pids[i % 2]) for i in range(200)]
    ips = [ip_of(a) for a in got]
    assert len(set(ips)) == 200
    assert {"10.1.0.0", "10.1.0.1", "10.1.0.255"}.isdisjoint(ips)
    assert all(a.endswith("/24") for a in got)


def test_auto_concurrent_two_hosts_no_duplicates(h1, h2):
    pid = network(h1)
    network(h2)
    got, errors = [], []
    barrier = threading.Barrier(10)

    def worker(ipam):
        barrier.wait()
        try:
            for _ in range(20):
                got.append(ip_of(addr(ipam, pid)))
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=((h1, h2)[i % 2],))
               for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(got) == 200 and len(set(got)) == 200
    assert "10.1.0.1" not in got


def test_pool_exhaustion_across_hosts(h1, h2):
    pid = network(h1, "10.1.0.0/28")      # 14 hosts, 13 after the gateway
    got = {ip_of(addr((h1, h2)[i % 2], pid)) for i in range(13)}
    assert len(got) == 13
    for ipam in (h1, h2):
        with pytest.raises(Conflict, match="no free address in 10.1.0.0/28"):
            addr(ipam, pid)


def test_allocations_survive_restart(state_dir, h1):
    pid = network(h1)
    first = [addr(h1, pid) for _ in range(3)]
    again = Ipam(LocalKV(state_dir), "192.0.2.1")
    assert addr(again, pid) == "10.1.0.5/24"
    assert "10.1.0.5/24" not in first


# -- specific addresses -----------------------------------------------------

def test_specific_address_honoured(h1, h2):
    pid = network(h1)
    assert addr(h1, pid, "10.1.0.77") == "10.1.0.77/24"
    assert addr(h1, pid, "10.1.0.78/24") == "10.1.0.78/24"
    for ipam in (h1, h2):
        with pytest.raises(Conflict, match="10.1.0.77"):
            addr(ipam, pid, "10.1.0.77")
    # auto allocation steps around it
    assert "10.1.0.77" not in {ip_of(addr(h2, pid)) for _ in range(100)}


@pytest.mark.parametrize("address", ["10.2.0.5", "junk", "fd00::5",
                                     "10.1.0.300"])
def test_specific_address_invalid(h1, address):
    pid = network(h1)
    with pytest.raises(InvalidRequest):
        addr(h1, pid, address)


@pytest.mark.parametrize("address", ["10.1.0.0", "10.1.0.255"])
def test_specific_network_or_broadcast_refused(h1, address):
    pid = network(h1)
    with pytest.raises((InvalidRequest, Conflict)):
        addr(h1, pid, address)


# -- SubPool (--ip-range) ---------------------------------------------------

def test_subpool_range_respected(h1):
    pid = network(h1, POOL, sub="10.1.0.128/26")
    assert base(pid) == "default/10.1.0.0/24/10.1.0.128/26"
    got = [ip_of(addr(h1, pid)) for _ in range(64)]
    assert got == [f"10.1.0.{i}" for i in range(128, 192)]
    with pytest.raises(Conflict, match="10.1.0.128/26"):
        addr(h1, pid)
    # a specific address outside the range but inside the pool is fine
    assert addr(h1, pid, "10.1.0.5") == "10.1.0.5/24"


def test_subpool_at_pool_start_skips_network_and_gateway(h1):
    pid = network(h1, POOL, sub="10.1.0.0/28")
    got = [ip_of(addr(h1, pid)) for _ in range(14)]
    assert got == [f"10.1.0.{i}" for i in range(2, 16)]


def test_subpool_at_pool_end_skips_broadcast(h1):
    pid = network(h1, POOL, sub="10.1.0.240/28")
    got = [ip_of(addr(h1, pid)) for _ in range(15)]
    assert got == [f"10.1.0.{i}" for i in range(240, 255)]
    with pytest.raises(Conflict):
        addr(h1, pid)


def test_per_host_ip_range_static_peers(tmp_path):
    # static mode: separate stores, each host its own half of the subnet
    a = Ipam(LocalKV(str(tmp_path / "a")), "192.0.2.1")
    b = Ipam(LocalKV(str(tmp_path / "b")), "192.0.2.2")
    pa = network(a, POOL, sub="10.1.0.0/25")
    pb = network(b, POOL, sub="10.1.0.128/25")
    assert addr(a, pa, "", GW) == addr(b, pb, "", GW) == "10.1.0.1/24"
    got_a = {ip_of(addr(a, pa)) for _ in range(50)}
    got_b = {ip_of(addr(b, pb)) for _ in range(50)}
    assert got_a.isdisjoint(got_b)
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(
        "10.1.0.0/25") for ip in got_a)
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(
        "10.1.0.128/25") for ip in got_b)


def test_per_host_ranges_on_shared_store(h1, h2):
    pa = network(h1, POOL, sub="10.1.0.0/25")
    pb = network(h2, POOL, sub="10.1.0.128/25")
    assert addr(h2, pb) == "10.1.0.128/24"
    assert addr(h1, pa) == "10.1.0.2/24"
    # one subnet, one address table: the ranges share the taken set
    with pytest.raises(Conflict):
        addr(h2, pb, "10.1.0.2")


# -- release ----------------------------------------------------------------

def test_release_address_for_reuse(h1, h2):
    pid = network(h1)
    a, b, c = (addr(h1, pid) for _ in range(3))
    assert (a, b, c) == ("10.1.0.2/24", "10.1.0.3/24", "10.1.0.4/24")
    h2.release_address(pid, "10.1.0.3")        # any host may release
    assert addr(h1, pid, "10.1.0.3") == "10.1.0.3/24"
    h1.release_address(pid, "10.1.0.2/24")     # with a prefix too
    assert addr(h2, pid, "10.1.0.2") == "10.1.0.2/24"


def test_addresses_are_given_in_turn_not_the_one_just_released(h1, h2):
    """Docker derives MACs from addresses: an address given again at once,
    to a container on another host, moves its MAC while peers still send
    to the old place.  The next address comes after the last one given,
    by any host, and the pool wraps around."""
    pid = network(h1, pool="10.1.0.0/29")     # .2 to .6 (gateway .1)
    a, b = addr(h1, pid), addr(h2, pid)
    assert (a, b) == ("10.1.0.2/29", "10.1.0.3/29")
    h1.release_address(pid, "10.1.0.2")
    assert addr(h2, pid) == "10.1.0.4/29"      # not .2 again
    assert addr(h1, pid) == "10.1.0.5/29"
    assert addr(h2, pid) == "10.1.0.6/29"
    assert addr(h1, pid) == "10.1.0.2/29"      # wrapped around
    with pytest.raises(Conflict):
        addr(h1, pid)
    h2.release_address(pid, "10.1.0.5")
    assert addr(h2, pid) == "10.1.0.5/29"      # the only one free


def test_a_torn_last_address_record_is_ignored(h1, kv):
    pid = network(h1)
    assert addr(h1, pid) == "10.1.0.2/24"
    last = [k for k in kv.list("/ovsgre/ipam/last/")]
    assert len(last) == 1
    for junk in ({"address": "10.9.9.9"}, {"address": ["x"]}, {},
                 {"address": "not an ip"}, "text"):
        kv.put(last[0], junk)
        got = addr(h1, pid)
        assert got not in ("10.1.0.2/24",) and got.startswith("10.1.0.")
        h1.release_address(pid, got)


def test_the_last_address_record_goes_with_the_pool(h1, kv):
    pid = network(h1)
    addr(h1, pid)
    assert kv.list("/ovsgre/ipam/last/")
    h1.release_pool(pid)
    assert kv.list("/ovsgre/ipam/") == {}


def test_candidates_of_a_huge_pool_start_at_once():
    """Skipping to the place after the last address costs nothing, also
    deep inside a /8 or an IPv6 /64."""
    import ipaddress
    import time
    from ovsgre.ipam import _candidates
    for cidr, after in (("10.0.0.0/8", "10.255.255.200"),
                        ("fd00::/64", "fd00::ffff:ffff:ffff:fff0")):
        net = ipaddress.ip_network(cidr)
        start = time.monotonic()
        first = next(_candidates(net, net, ipaddress.ip_address(after)))
        assert time.monotonic() - start < 0.01
        assert int(first) == int(ipaddress.ip_address(after)) + 1
    net = ipaddress.ip_network("10.0.0.0/30")
    assert [str(i) for i in _candidates(net, net)] == ["10.0.0.1",
                                                       "10.0.0.2"]
    assert [str(i) for i in _candidates(
        net, net, ipaddress.ip_address("10.0.0.1"))] == ["10.0.0.2",
                                                         "10.0.0.1"]


def test_release_unknown_address_is_quiet(h1, kv):
    pid = network(h1)
    before = kv.list(ADDRS)
    h1.release_address(pid, "10.1.0.99")
    h1.release_address(pid, "10.1.0.99")
    assert kv.list(ADDRS) == before


def test_release_address_outside_pool(h1):
    pid = network(h1)
    with pytest.raises(InvalidRequest):
        h1.release_address(pid, "10.9.9.9")


def test_release_address_keeps_gateway(h1, h2):
    pid = network(h1)
    h1.release_address(pid, "10.1.0.1")
    h2.release_address(pid, "10.1.0.1/24")
    assert addr(h1, pid) == "10.1.0.2/24"
    with pytest.raises(Conflict):
        addr(h2, pid, "10.1.0.1")
    assert addr(h2, pid, "", GW) == "10.1.0.1/24"


def test_release_pool_waits_for_last_host(h1, h2, kv):
    pid = network(h1)
    pid2 = network(h2)
    x = addr(h1, pid)
    y = addr(h2, pid2)
    h1.release_pool(pid)
    # h2 still uses the network: its addresses and the gateway stay
    for taken in (x, y, "10.1.0.1"):
        with pytest.raises(Conflict):
            addr(h2, pid, ip_of(taken))
    with pytest.raises(Conflict):          # pool record stays: no overlap
        request_pool(h1, "10.1.0.0/23", "", {}, False)
    h2.release_pool(pid2)
    assert kv.list("/ovsgre/ipam/") == {}
    # a fresh network on the subnet starts over
    pid = network(h1)
    assert addr(h1, pid) == "10.1.0.2/24"


def test_release_pool_twice_by_one_host(h1, h2, kv):
    pid = network(h1)
    pid2 = network(h2)
    addr(h1, pid)
    h1.release_pool(pid)
    h1.release_pool(pid)          # a repeat: h2's reference stays
    assert kv.list(ADDRS)
    h2.release_pool(pid2)
    assert kv.list("/ovsgre/ipam/") == {}


def test_release_pool_frees_subnet_for_overlap(h1):
    pid = network(h1)
    h1.release_pool(pid)
    assert base(network(h1, "10.1.0.0/16")) == "default/10.1.0.0/16"


def test_release_pool_leaves_other_pools(h1, kv):
    a = network(h1, POOL)
    b = network(h1, "10.1.1.0/24")
    c = network(h1, POOL, options=RED)
    for pid in (a, b, c):
        addr(h1, pid)
    h1.release_pool(a)
    keys = set(kv.list(ADDRS))
    assert not any("/default/10.1.0.0%2F24/" in k for k in keys)
    assert any("/default/10.1.1.0%2F24/" in k for k in keys)
    assert any("/red/10.1.0.0%2F24/" in k for k in keys)
    assert addr(h1, b) == "10.1.1.3/24"
    assert addr(h1, c) == "10.1.0.3/24"


def test_release_pool_with_subpool_id(h1, h2, kv):
    pa = network(h1, POOL, sub="10.1.0.0/25")
    pb = network(h2, POOL, sub="10.1.0.128/25")
    addr(h1, pa)
    addr(h2, pb)
    h1.release_pool(pa)
    # h2 still has the subnet: the gateway and both containers stay
    assert {ip_of(k.rsplit("/", 1)[1]) for k in kv.list(ADDRS)} == {
        "10.1.0.1", "10.1.0.2", "10.1.0.128"}
    h2.release_pool(pb)
    assert kv.list("/ovsgre/ipam/") == {}


# -- unknown PoolIDs ----------------------------------------------------------

BAD_POOL_IDS = ["", None, "nope", "default/10.1.0.0", "default",
                "10.1.0.0/24", "bad space/10.1.0.0/24",
                "default/10.1.0.0/24/10.1.0.0", "a/b/c/d/e/f"]


@pytest.mark.parametrize("pool_id", BAD_POOL_IDS)
def test_unknown_pool_id_not_found(h1, pool_id):
    with pytest.raises(NotFound):
        request_address(h1, pool_id, "", None)
    with pytest.raises(NotFound):
        request_address(h1, pool_id, "", GW)
    with pytest.raises(NotFound):
        h1.release_address(pool_id, "10.1.0.2")
    with pytest.raises(NotFound):
        h1.release_pool(pool_id)


@pytest.mark.parametrize("pool_id", ["default/banana/24",
                                     "default/10.1.0.0/99"])
def test_garbled_pool_id_is_a_client_error(h1, pool_id):
    with pytest.raises(OvsgreError) as exc:
        request_address(h1, pool_id, "", None)
    assert 400 <= exc.value.status < 500


def test_released_pool_id_not_found(h1, kv):
    pid = network(h1)
    h1.release_pool(pid)
    with pytest.raises(NotFound):
        request_address(h1, pid, "", None)


# -- IPv6 -------------------------------------------------------------------

def test_ipv6_pool(h1, h2):
    pid = request_pool(h1, V6, "", None, True)["PoolID"]
    assert base(pid) == "default/fd00:198:18:30::/64"
    pid2 = request_pool(h2, V6, "", {}, True)["PoolID"]
    assert base(pid2) == base(pid)
    assert addr(h1, pid, "", GW) == "fd00:198:18:30::1/64"
    assert addr(h2, pid, "", GW) == "fd00:198:18:30::1/64"
    got = [addr((h1, h2)[i % 2], pid) for i in range(10)]
    assert got == [f"fd00:198:18:30::{i:x}/64" for i in range(2, 12)]
    assert addr(h1, pid, "fd00:198:18:30::beef") == \
        "fd00:198:18:30::beef/64"
    with pytest.raises(Conflict):
        addr(h2, pid, "fd00:198:18:30::beef/64")
    with pytest.raises(InvalidRequest):
        addr(h1, pid, "fd00:198:18:31::1")
    h2.release_address(pid, "fd00:198:18:30::2")
    # in turn: after ::b, the last one handed out (::beef was asked for)
    assert addr(h1, pid) == "fd00:198:18:30::c/64"
    h1.release_pool(pid)
    h2.release_pool(pid2)
    assert h1.kv.list("/ovsgre/ipam/") == {}


def test_ipv6_subpool(h1):
    pid = request_pool(h1, V6, "fd00:198:18:30::100/120", {}, True)["PoolID"]
    assert base(pid) == \
        "default/fd00:198:18:30::/64/fd00:198:18:30::100/120"
    assert addr(h1, pid, "", GW) == "fd00:198:18:30::1/64"
    assert addr(h1, pid) == "fd00:198:18:30::100/64"


def test_ipv6_subnet_router_anycast_is_never_handed_out(h1):
    """fd00:198:18:30:: answers for every router of the link (RFC 4291):
    not asked for, not as the gateway, not from a range that starts there,
    not when the whole subnet has been handed out."""
    whole = request_pool(h1, "fd00:198:18:40::/126", "", {}, True)["PoolID"]
    for options in (None, GW):
        with pytest.raises(InvalidRequest, match="subnet-router anycast"):
            addr(h1, whole, "fd00:198:18:40::/126", options)
    got = {addr(h1, whole) for _ in range(3)}
    assert got == {f"fd00:198:18:40::{i}/126" for i in (1, 2, 3)}
    with pytest.raises(Conflict, match="no free address"):
        addr(h1, whole)
    pid = request_pool(h1, V6, "fd00:198:18:30::/120", {}, True)["PoolID"]
    assert addr(h1, pid) == "fd00:198:18:30::1/64"


def test_ipv4_network_and_broadcast_are_never_handed_out(h1):
    pid = request_pool(h1, "10.1.0.0/30", "", {}, False)["PoolID"]
    for ip in ("10.1.0.0", "10.1.0.3"):
        with pytest.raises(InvalidRequest, match="network or broadcast"):
            addr(h1, pid, ip)
    assert {addr(h1, pid) for _ in range(2)} == {"10.1.0.1/30",
                                                  "10.1.0.2/30"}


def test_ipv6_overlap_conflicts(h1, h2):
    network(h1, V6, v6=True)
    with pytest.raises(Conflict, match="--ipam-opt"):
        request_pool(h2, "fd00:198:18:30::/56", "", {}, True)


# -- overlapping RequestPools on two hosts at the same moment ----------------

class ListInterleavingKV(InterleavingKV):
    """Runs ``hook`` once, right after the pools of a space were read: the
    other host claims its pool between this host's check and its write."""

    def list(self, prefix):
        result = super().list(prefix)
        self._interleave(prefix)
        return result

    def list_with_revision(self, prefix):
        result = super().list_with_revision(prefix)
        self._interleave(prefix)
        return result

    def _interleave(self, prefix):
        if prefix.startswith("/ovsgre/ipam/pools/") and self.hook:
            hook, self.hook = self.hook, None
            hook()


@pytest.mark.parametrize("mine,theirs", [
    ("10.1.0.0/24", "10.1.0.0/16"), ("10.1.0.0/16", "10.1.0.128/25")])
def test_overlapping_pools_claimed_at_once_one_wins(state_dir, mine, theirs):
    kv = ListInterleavingKV(state_dir)
    a, b = Ipam(kv, "192.0.2.1"), Ipam(kv, "192.0.2.2")
    kv.hook = lambda: request_pool(b, theirs, "", {}, False)
    with pytest.raises(Conflict, match=f"overlaps {theirs}"):
        request_pool(a, mine, "", {}, False)
    pools = [v["pool"] for v in kv.list("/ovsgre/ipam/pools/").values()]
    assert pools == [theirs]


def test_the_same_pool_claimed_at_once_is_shared(state_dir):
    kv = ListInterleavingKV(state_dir)
    a, b = Ipam(kv, "192.0.2.1"), Ipam(kv, "192.0.2.2")
    theirs = []
    kv.hook = lambda: theirs.append(request_pool(b, POOL, "", {}, False))
    mine = request_pool(a, POOL, "", {}, False)
    (record,) = kv.list("/ovsgre/ipam/pools/").values()
    assert sorted(record["holders"].values()) == ["192.0.2.1", "192.0.2.2"]
    assert {pool_base(mine["PoolID"]), pool_base(theirs[0]["PoolID"])} == \
        {PID}


# -- ReleasePool racing RequestPool on another host --------------------------

def test_release_pool_racing_request_keeps_addresses(state_dir):
    kv = InterleavingKV(state_dir)
    a, b = Ipam(kv, "192.0.2.1"), Ipam(kv, "192.0.2.2")
    pid = network(a)
    got = []

    def other_host_starts_container():
        network(b)
        got.append(addr(b, pid))

    kv.hook_key = "/ovsgre/ipam/pools/default/10.1.0.0%2F24"
    kv.hook = other_host_starts_container
    a.release_pool(pid)
    assert got == ["10.1.0.2/24"]
    # b still uses the subnet: its container's address must stay taken
    again = [addr(b, pid) for _ in range(2)]
    assert got[0] not in again, again
    assert "10.1.0.1/24" not in again   # nor the gateway


# -- holders: one per RequestPool ------------------------------------------

def test_refused_network_release_keeps_the_other_networks_pool(h1, h2):
    """dockerd releases the pool of a network the driver refused (e.g. a
    second Docker network for one ovsgre.network on a host): that must not
    free the pool, or the addresses, of the network that uses it."""
    blue_h1 = network(h1)
    blue_h2 = network(h2)
    taken = {ip_of(addr(h1, blue_h1)), ip_of(addr(h2, blue_h2))}
    refused = network(h2)            # blue2 on h2: pool granted ...
    h2.release_pool(refused)         # ... CreateNetwork refused, released
    h1.release_pool(blue_h1)         # blue leaves h1; h2 still has it
    for ip in taken | {"10.1.0.1"}:
        with pytest.raises(Conflict):
            addr(h2, blue_h2, ip)
    assert ip_of(addr(h2, blue_h2)) not in taken


def test_legacy_pool_ids_without_token_release_by_host(h1, h2, kv):
    """Pools recorded before holder tokens: PoolIDs without a token, the
    record lists hosts.  They keep working and are released per host."""
    key = "/ovsgre/ipam/pools/default/10.1.0.0%2F24"
    assert kv.create(key, {"pool": POOL, "id": "0" * 32,
                           "hosts": ["192.0.2.1", "192.0.2.2"]})
    assert addr(h1, PID, "", GW) == "10.1.0.1/24"
    assert addr(h1, PID) == "10.1.0.2/24"
    newer = network(h1)              # a new holder joins the old record
    h1.release_pool(PID)
    h2.release_pool(PID)
    assert kv.get(key)["hosts"] == []
    assert addr(h1, newer) == "10.1.0.3/24"   # .1 and .2 stay taken
    h1.release_pool(newer)
    assert kv.list("/ovsgre/ipam/") == {}


@pytest.mark.parametrize("suffix", ["#", "#xyz", "#" + "0" * 11,
                                    "#" + "A" * 12, "#" + "0" * 13])
def test_bad_token_is_unknown_pool_id(h1, suffix):
    network(h1)
    with pytest.raises(NotFound):
        request_address(h1, PID + suffix, "", None)


# -- --aux-address -------------------------------------------------------------

SMALL = "10.1.0.0/28"      # 14 addresses: gateway .1, aux .9, 12 for containers


def create_with_aux(ipam, aux, pool=SMALL):
    """What dockerd does for `network create --aux-address`: the pool,
    the gateway, a plain RequestAddress per aux address; then the network
    driver's CreateNetwork tells the IPAM which addresses were aux."""
    pid = network(ipam, pool)
    for ip in aux:
        assert ip_of(addr(ipam, pid, ip)) == ip
    ipam.keep_aux(pool, aux)
    return pid


def drain(ipam, pid):
    """Every address the pool still gives."""
    given = []
    with pytest.raises(Conflict, match="no free address"):
        while True:
            given.append(ip_of(addr(ipam, pid)))
    return given


def test_aux_address_is_reserved_once_for_every_host(h1, h2, kv):
    p1 = create_with_aux(h1, ["10.1.0.9"])
    p2 = create_with_aux(h2, ["10.1.0.9"])     # was: "already in use"
    claims = [v for k, v in kv.list(ADDRS).items() if k.endswith("/10.1.0.9")]
    assert [v.get("aux") for v in claims] == [True]
    given = drain(h1, p1)
    assert len(given) == 12 and "10.1.0.9" not in given
    assert drain(h2, p2) == []


def test_aux_address_released_only_with_the_last_holder(h1, h2, kv):
    p1 = create_with_aux(h1, ["10.1.0.9"])
    p2 = create_with_aux(h2, ["10.1.0.9"])
    # network rm on h1: dockerd releases the aux address, then the pool
    h1.release_address(p1, "10.1.0.9")
    h1.release_pool(p1)
    assert "10.1.0.9" not in drain(h2, p2)
    h2.release_address(p2, "10.1.0.9")      # a container refused it, or rm
    assert "10.1.0.9" not in drain(h2, p2)
    h2.release_pool(p2)
    assert kv.list(ADDRS) == {}
    # the subnet is free again; 10.1.0.9 is an ordinary address now
    p3 = network(h1, SMALL)
    assert ip_of(addr(h1, p3, "10.1.0.9")) == "10.1.0.9"
    with pytest.raises(Conflict, match="already in use"):
        addr(h2, p3, "10.1.0.9")


def test_a_container_address_is_not_made_aux(h1, h2):
    """--ip of a container on one host stays that container's when another
    host creates the network asking the same address as aux."""
    p1 = network(h1, SMALL)
    addr(h1, p1, "10.1.0.9")
    p2 = network(h2, SMALL)
    with pytest.raises(Conflict, match="already in use"):
        addr(h2, p2, "10.1.0.9")
    h2.keep_aux(SMALL, ["10.1.0.9"])    # not h2's claim: left alone
    with pytest.raises(Conflict, match="already in use"):
        addr(h2, p2, "10.1.0.9")


def test_aux_marks_only_this_hosts_claims_in_pools_of_the_subnet(h1, kv):
    red = network(h1, SMALL, options=RED)
    addr(h1, red, "10.1.0.7")
    create_with_aux(h1, ["10.1.0.9"])
    marked = sorted(k.rsplit("/", 1)[1] for k, v in kv.list(ADDRS).items()
                    if v.get("aux"))
    assert marked == ["10.1.0.9"]


# -- records other hosts wrote: parsed before use ------------------------------

POOL_KEY = "/ovsgre/ipam/pools/default/10.1.0.0%2F24"
BAD_POOLS = [
    "garbage", ["10.9.0.0/24"], {"pool": "10.9.0.0/24"},        # no id
    {"pool": "10.9.0.0/33", "id": "0" * 32},
    {"pool": "10.9.0.0/24", "id": "0" * 32, "holders": ["x"]},
    {"pool": "10.9.0.0/24", "id": "../../x" + "0" * 25},
]


@pytest.mark.parametrize("bad", BAD_POOLS)
def test_a_malformed_pool_is_skipped_and_named(h1, h2, kv, bad):
    other = "/ovsgre/ipam/pools/default/10.9.0.0%2F24"
    kv.put(other, bad)
    pid = network(h1)                      # other subnets go on
    assert ip_of(addr(h1, pid)) == "10.1.0.2"
    assert other in h1.malformed.current()
    assert h2.forget_host() == (0, 0)      # skipped, not a crash
    h1.release_pool(pid)
    assert kv.get(other) == bad            # left as it was


@pytest.mark.parametrize("bad", BAD_POOLS)
def test_a_malformed_pool_in_use_is_an_error_naming_it(h1, kv, bad):
    pid = network(h1)
    kv.put(POOL_KEY, bad)
    for call in (lambda: request_pool(h1, POOL, "", {}, False),
                 lambda: request_address(h1, pid, "", None)):
        with pytest.raises(OvsgreError, match="malformed") as err:
            call()
        assert POOL_KEY in str(err.value)
    h1.release_pool(pid)                   # quiet, and leaves it alone
    h1.release_address(pid, "10.1.0.2")
    assert kv.get(POOL_KEY) == bad


@pytest.mark.parametrize("bad", ["x", {"host": ["h"]},
                                 {"host": "h", "aux": "yes"},
                                 {"host": "h", "gateway": 1}])
def test_a_malformed_address_claim_stays_taken(h1, h2, kv, bad):
    pid = network(h1, SMALL)
    network(h2, SMALL)
    (prefix,) = {k.rsplit("/", 1)[0] for k in kv.list(ADDRS)}
    key = prefix + "/10.1.0.5"
    kv.put(key, bad)
    with pytest.raises(Conflict, match="already in use"):
        addr(h1, pid, "10.1.0.5")
    h1.release_address(pid, "10.1.0.5")
    h1.keep_aux(SMALL, ["10.1.0.5"])
    h2.forget_host()                  # h1 still holds the pool
    assert kv.get(key) == bad
    assert "10.1.0.5" not in drain(h1, pid)
