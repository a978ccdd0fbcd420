"""Cluster network definitions (NetworkRegistry) and the driver options that
use them (-o ovsgre.network=NAME, -o ovsgre.key=N).

"Shared" stores are a LocalKV that claims to be shared, standing in for
etcd: several registries (hosts) on one store.  Static mode is plain
LocalKV, one store per host.
"""

import threading

import pytest

from ovsgre.cluster.kv import LocalKV
from ovsgre.cluster.networks import KEYS, NETS, NetworkRegistry
from ovsgre.definitions import KEY_MAX, KEY_MIN, derive_key
from ovsgre.driver import Driver
from ovsgre.errors import Conflict, Unavailable
from ovsgre.protocol import create_app
from ovsgre.store import LocalStore

from .conftest import DEFAULT_MTU, Api, make_id
from . import fakes
from .fakes import FakeDataplane, FakeRegistry, FakeTunnelSync

pytestmark = pytest.mark.usefixtures("no_fsync")

V4 = ["10.20.0.0/24"]


class SharedKV(LocalKV):
    shared = True   # what EtcdKV says: every host sees the same data


@pytest.fixture
def shared(state_dir):
    return SharedKV(state_dir)


@pytest.fixture
def r1(shared):
    return NetworkRegistry(shared, "192.0.2.1")


@pytest.fixture
def r2(shared):
    return NetworkRegistry(shared, "192.0.2.2")


# -- shared store (etcd) ------------------------------------------------------

def test_same_name_same_key_on_two_hosts(r1, r2):
    k1 = r1.define("blue", V4, [])
    k2 = r2.define("blue", V4, [])
    assert k1 == k2 == KEY_MIN
    assert r1.define("blue", V4, []) == k1          # dockerd retry
    assert r1.hosts_of("blue") == ["192.0.2.1", "192.0.2.2"]
    assert r2.kv.get(NETS + "blue") == {
        "name": "blue", "ipv4": V4, "ipv6": [], "key": k1,
        "hosts": ["192.0.2.1", "192.0.2.2"]}


def test_different_names_different_keys(r1, r2):
    keys = [(r1, r2)[i % 2].define(f"net{i}", [f"10.{i}.0.0/24"], [])
            for i in range(20)]
    assert len(set(keys)) == 20
    assert all(KEY_MIN <= k <= KEY_MAX for k in keys)
    assert r1.define("net7", ["10.7.0.0/24"], []) == keys[7]


def test_subnet_order_does_not_matter(r1, r2):
    k = r1.define("blue", ["10.1.0.0/24", "10.2.0.0/24"], ["fd00::/64"])
    assert r2.define("blue", ["10.2.0.0/24", "10.1.0.0/24"],
                     ["fd00::/64"]) == k


def test_same_name_other_subnets_conflict(r1, r2):
    r1.define("blue", ["10.20.0.0/24", "10.21.0.0/24"], [])
    with pytest.raises(Conflict) as exc:
        r2.define("blue", ["10.30.0.0/24"], [])
    msg = str(exc.value)
    assert "'blue'" in msg and "ipv4" in msg
    assert "10.20.0.0/24, 10.21.0.0/24" in msg      # what exists
    assert "10.30.0.0/24" in msg                    # what was asked
    assert r2.hosts_of("blue") == ["192.0.2.1"]     # no reference taken


def test_same_name_other_ipv6_conflict(r1, r2):
    r1.define("blue", V4, ["fd00:1::/64"])
    with pytest.raises(Conflict) as exc:
        r2.define("blue", V4, [])
    msg = str(exc.value)
    assert "ipv6" in msg and "fd00:1::/64" in msg and "none" in msg


def test_explicit_key_honoured(r1, r2):
    assert r1.define("blue", V4, [], key=4242) == 4242
    assert r2.define("blue", V4, []) == 4242
    assert r2.define("blue", V4, [], key=4242) == 4242
    with pytest.raises(Conflict, match="4242"):
        r2.define("blue", V4, [], key=4243)


def test_explicit_key_used_by_other_network(r1, r2):
    k = r1.define("blue", V4, [])
    with pytest.raises(Conflict) as exc:
        r2.define("red", ["10.21.0.0/24"], [], key=k)
    assert "'blue'" in str(exc.value) and str(k) in str(exc.value)
    assert "red" not in r1.list()
    r1.define("green", ["10.22.0.0/24"], [], key=77)
    with pytest.raises(Conflict, match="'green'"):
        r1.define("red", ["10.21.0.0/24"], [], key=77)


def test_allocation_skips_explicit_keys(r1, r2):
    r1.define("a", V4, [], key=KEY_MIN)
    r1.define("b", V4, [], key=KEY_MIN + 1)
    assert r2.define("c", V4, []) == KEY_MIN + 2


def test_release_keeps_definition_while_referenced(r1, r2, shared):
    k = r1.define("blue", V4, [])
    r2.define("blue", V4, [])
    r1.release("blue")
    assert r1.hosts_of("blue") == ["192.0.2.2"]
    assert r2.list()["blue"].key == k
    assert shared.get(f"{KEYS}{k}") == {"name": "blue"}
    # the other host's view is unchanged, and a re-define gets the key
    assert r1.define("blue", V4, []) == k


def test_last_release_deletes_definition_and_key(r1, r2, shared):
    assert r1.define("blue", V4, [], key=900) == 900
    r2.define("blue", V4, [])
    r1.release("blue")
    r2.release("blue")
    assert r1.list() == {} and r1.hosts_of("blue") == []
    assert shared.list("/ovsgre/") == {}
    # the name and the key are free again
    assert r2.define("red", ["10.99.0.0/24"], [], key=900) == 900
    assert r1.define("blue", ["10.50.0.0/24"], []) != 900


def test_released_key_is_reused(r1):
    k = r1.define("blue", V4, [])
    r1.release("blue")
    assert r1.define("red", V4, []) == k


def test_release_unknown_is_quiet(r1, shared):
    r1.release("nothing")
    r1.release("nothing")
    assert shared.list("/ovsgre/") == {}


def test_release_by_host_that_never_defined(r1, r2):
    r1.define("blue", V4, [])
    r2.release("blue")       # r2 had no reference: r1's one remains
    assert r1.list()["blue"].key == KEY_MIN


def test_concurrent_define_same_name(shared):
    regs = [NetworkRegistry(shared, f"192.0.2.{i}") for i in range(10)]
    keys, barrier = [], threading.Barrier(10)

    def worker(reg):
        barrier.wait()
        keys.append(reg.define("blue", V4, []))

    threads = [threading.Thread(target=worker, args=(r,)) for r in regs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 10 and len(set(keys)) == 1
    # no key leaked for the losers of the race
    assert list(shared.list(KEYS)) == [f"{KEYS}{keys[0]}"]
    assert len(regs[0].hosts_of("blue")) == 10


def test_concurrent_define_different_names(shared):
    regs = [NetworkRegistry(shared, f"192.0.2.{i}") for i in range(10)]
    keys, barrier = [], threading.Barrier(10)

    def worker(i, reg):
        barrier.wait()
        keys.append(reg.define(f"net{i}", V4, []))

    threads = [threading.Thread(target=worker, args=(i, r))
               for i, r in enumerate(regs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(keys) == list(range(KEY_MIN, KEY_MIN + 10))


# -- static mode (no etcd: separate stores) ---------------------------------

def test_derive_key_deterministic_and_in_range():
    for name in ("blue", "red", "a", "x" * 64, "net-2435"):
        k = derive_key(name)
        assert k == derive_key(name)
        assert KEY_MIN <= k <= KEY_MAX
    assert derive_key("blue") != derive_key("red")


def test_static_hosts_agree_on_key(tmp_path):
    a = NetworkRegistry(LocalKV(str(tmp_path / "a")), "192.0.2.1")
    b = NetworkRegistry(LocalKV(str(tmp_path / "b")), "192.0.2.2")
    assert a.kv.shared is False
    for name in ("blue", "red", "green"):
        assert a.define(name, V4, []) == b.define(name, V4, []) == \
            derive_key(name)
    assert len({derive_key(n) for n in ("blue", "red", "green")}) == 3


def test_static_explicit_key(tmp_path):
    a = NetworkRegistry(LocalKV(str(tmp_path / "a")), "192.0.2.1")
    b = NetworkRegistry(LocalKV(str(tmp_path / "b")), "192.0.2.2")
    assert a.define("blue", V4, [], key=31) == b.define("blue", V4, [],
                                                       key=31) == 31


def test_static_hash_collision_needs_explicit_key(state_dir):
    assert derive_key("net-2435") == derive_key("net-10161")
    reg = NetworkRegistry(LocalKV(state_dir), "192.0.2.1")
    k = reg.define("net-2435", V4, [])
    with pytest.raises(Conflict) as refused:
        reg.define("net-10161", ["10.21.0.0/24"], [])
    said = str(refused.value)
    assert "'net-10161' and 'net-2435'" in said and str(k) in said
    assert "-o ovsgre.key=N" in said
    assert reg.define("net-10161", ["10.21.0.0/24"], [], key=5) == 5
    assert reg.define("net-2435", V4, []) == k


def test_static_release(state_dir):
    kv = LocalKV(state_dir)
    reg = NetworkRegistry(kv, "192.0.2.1")
    reg.define("blue", V4, [])
    reg.release("blue")
    assert kv.list("/ovsgre/") == {}
    assert reg.define("blue", ["10.50.0.0/24"], []) == derive_key("blue")


def test_static_definition_persists(state_dir):
    NetworkRegistry(LocalKV(state_dir), "h").define("blue", V4, [], key=7)
    again = NetworkRegistry(LocalKV(state_dir), "h")
    assert again.list()["blue"].key == 7
    with pytest.raises(Conflict):
        again.define("blue", ["10.99.0.0/24"], [])
    assert again.kv.get(NETS + "blue")["ipv4"] == V4


# -- the driver's options, through the protocol ----------------------------

NET = make_id("mh-net")
NET2 = make_id("mh-net-2")


@pytest.fixture
def registry():
    return FakeRegistry()


@pytest.fixture
def tunnel_sync():
    return FakeTunnelSync()


@pytest.fixture
def mh_api(store, fake, registry, tunnel_sync):
    driver = Driver(store, fake, DEFAULT_MTU, registry, tunnel_sync)
    return Api(create_app(driver).test_client())


def err_of(status, reply, expected_status, *fragments):
    assert status == expected_status, reply
    assert list(reply) == ["Err"], reply
    for fragment in fragments:
        assert fragment in reply["Err"], (fragment, reply["Err"])


@pytest.mark.parametrize("name", ["../x", "a b", "-lead", ".hidden",
                                  "x" * 65, "a/b", "é"])
def test_bad_network_name(mh_api, store, registry, name):
    status, reply, _ = mh_api.create_network(NET, {"ovsgre.network": name})
    err_of(status, reply, 400, "ovsgre.network", repr(name))
    assert store.list("networks") == {} and registry.calls == []


@pytest.mark.parametrize("key", ["0", "16777216", "abc", "-1", "1.5",
                                 "99999999999"])
def test_bad_key(mh_api, store, registry, key):
    status, reply, _ = mh_api.create_network(
        NET, {"ovsgre.network": "blue", "ovsgre.key": key})
    err_of(status, reply, 400, "ovsgre.key", repr(key), "16777215")
    assert store.list("networks") == {} and registry.calls == []


def test_key_without_name(mh_api, store, registry):
    status, reply, _ = mh_api.create_network(NET, {"ovsgre.key": "42"})
    err_of(status, reply, 400, "ovsgre.key", "ovsgre.network")
    assert store.list("networks") == {} and registry.calls == []


@pytest.mark.parametrize("key", ["1", "16777215"])
def test_key_bounds_accepted(mh_api, store, registry, key):
    mh_api.ok("CreateNetwork", {
        "NetworkID": NET, "Options": {"com.docker.network.generic": {
            "ovsgre.network": "blue", "ovsgre.key": key}},
        "IPv4Data": [{"Pool": "10.10.0.0/24"}]})
    assert store.get("networks", NET)["key"] == int(key)


def test_named_network_defined_and_recorded(mh_api, store, registry,
                                            tunnel_sync):
    status, reply, _ = mh_api.create_network(
        NET, {"ovsgre.network": "blue", "ovsgre.key": "4242"},
        pool="10.10.0.0/24")
    assert status == 200 and reply == {}
    assert registry.calls == [("define", "blue", ["10.10.0.0/24"], [], 4242)]
    rec = store.get("networks", NET)
    assert rec["name"] == "blue" and rec["key"] == 4242
    assert tunnel_sync.requests and tunnel_sync.requests[-1] > 0   # waits


def test_named_network_key_from_registry(mh_api, store, registry):
    mh_api.create_network(NET, {"ovsgre.network": "blue"})
    assert registry.calls == [("define", "blue", ["10.10.0.0/24"], [],
                               None)]
    assert store.get("networks", NET)["key"] == 100


def test_ipv6_subnets_passed_to_registry(mh_api, store, registry):
    mh_api.ok("CreateNetwork", {
        "NetworkID": NET,
        "Options": {"com.docker.network.generic": {"ovsgre.network": "v6"},
                    "com.docker.network.enable_ipv6": True},
        "IPv4Data": [{"Pool": "10.10.0.0/24", "Gateway": "10.10.0.1/24"}],
        "IPv6Data": [{"Pool": "fd00:198:18:30::/64",
                      "Gateway": "fd00:198:18:30::1/64"}]})
    assert registry.calls == [("define", "v6", ["10.10.0.0/24"],
                               ["fd00:198:18:30::/64"], None)]


def test_unnamed_network_stays_local(mh_api, store, registry):
    mh_api.create_network(NET)
    assert registry.calls == []
    rec = store.get("networks", NET)
    assert rec["name"] == "" and rec["key"] is None
    mh_api.delete_network(NET)
    assert registry.calls == []


def test_create_replay_does_not_redefine(mh_api, store, registry):
    for _ in range(2):
        status, _, _ = mh_api.create_network(NET, {"ovsgre.network": "blue"})
        assert status == 200
    assert [c[0] for c in registry.calls] == ["define"]


def test_replay_with_other_name_conflicts(mh_api, store):
    mh_api.create_network(NET, {"ovsgre.network": "blue"})
    status, reply, _ = mh_api.create_network(NET, {"ovsgre.network": "red"})
    err_of(status, reply, 409)
    assert store.get("networks", NET)["name"] == "blue"


def test_delete_releases(mh_api, store, registry, tunnel_sync):
    mh_api.create_network(NET, {"ovsgre.network": "blue"})
    before = len(tunnel_sync.requests)
    status, reply, _ = mh_api.delete_network(NET)
    assert status == 200 and reply == {}
    assert registry.calls[-1] == ("release", "blue")
    assert store.get("networks", NET) is None
    assert len(tunnel_sync.requests) == before + 1
    # unknown network: nothing to release
    mh_api.delete_network(NET)
    assert [c[0] for c in registry.calls] == ["define", "release"]


def test_delete_with_registry_down_still_deletes(mh_api, store, registry):
    mh_api.create_network(NET, {"ovsgre.network": "blue"})
    mh_api.create_endpoint(NET, make_id("ep"))
    registry.fail("release", Unavailable("etcd unreachable"))
    status, reply, _ = mh_api.delete_network(NET)
    assert status == 200 and reply == {}
    assert store.get("networks", NET) is None
    assert store.list("endpoints") == {}


@pytest.mark.parametrize("exc,status", [
    (Conflict("network 'blue' exists in the cluster with ipv4 subnets x"),
     409),
    (Unavailable("etcd unreachable (get)"), 503)])
def test_define_failure_stores_nothing(mh_api, store, registry, exc, status):
    registry.fail("define", exc)
    code, reply, _ = mh_api.create_network(NET, {"ovsgre.network": "blue"})
    err_of(code, reply, status, str(exc))
    assert store.list("networks") == {}
    # dockerd's retry (or the user's) goes through once the cluster answers
    code, _, _ = mh_api.create_network(NET, {"ovsgre.network": "blue"})
    assert code == 200 and store.get("networks", NET)["key"] == 100


def test_two_hosts_real_registry(tmp_path, shared):
    """Two drivers (hosts) with their own local stores, one shared KV."""
    apis, stores = [], []
    for i in (1, 2):
        st = LocalStore(str(tmp_path / f"host{i}"))
        stores.append(st)
        reg = NetworkRegistry(shared, f"192.0.2.{i}")
        apis.append(Api(create_app(Driver(st, FakeDataplane(), DEFAULT_MTU,
                                          reg)).test_client()))
    try:
        for api in apis:
            status, _, _ = api.create_network(NET, {"ovsgre.network": "blue"})
            assert status == 200
        keys = [st.get("networks", NET)["key"] for st in stores]
        assert keys[0] == keys[1] == KEY_MIN
        status, reply, _ = apis[1].create_network(
            NET2, {"ovsgre.network": "red"}, pool="10.11.0.0/24")
        assert status == 200
        assert stores[1].get("networks", NET2)["key"] != keys[0]
        # same name, other subnet on a third network id: refused, named
        status, reply, _ = apis[0].create_network(
            make_id("x"), {"ovsgre.network": "red"}, pool="10.12.0.0/24")
        err_of(status, reply, 409, "10.11.0.0/24", "10.12.0.0/24")
        apis[0].delete_network(NET)
        assert "blue" in NetworkRegistry(shared, "z").list()
        apis[1].delete_network(NET)
        assert "blue" not in NetworkRegistry(shared, "z").list()
    finally:
        for st in stores:
            st.close()


# -- release racing a define on another host ---------------------------------

class InterleavingKV(fakes.InterleavingKV):
    shared = True   # as SharedKV: every host sees the same data


def test_release_racing_define_keeps_definition(state_dir):
    kv = InterleavingKV(state_dir)
    r1, r2 = NetworkRegistry(kv, "h1"), NetworkRegistry(kv, "h2")
    k = r1.define("blue", V4, [])
    got = []
    kv.hook_key = "/ovsgre/networks/blue"
    kv.hook = lambda: got.append(r2.define("blue", V4, []))
    r1.release("blue")
    assert got == [k]                          # h2 runs "blue" with key k
    assert r2.hosts_of("blue") == ["h2"]
    assert "blue" in r2.list()
    assert r2.define("red", ["10.21.0.0/24"], []) != k


# -- swarm: the manager reserves, it does not hold ---------------------------

SWARM_NET = "zkuszg5vijkgq1ybkkfojzpqw"   # swarm network IDs are 25 chars


def allocate(api, nid=SWARM_NET, options=None, pool="10.40.0.0/24"):
    return api.ok("AllocateNetwork", {
        "NetworkID": nid, "Options": options or {},
        "IPv4Data": [{"Pool": pool, "Gateway": "10.40.0.1/24"}],
        "IPv6Data": []})["Options"]


@pytest.fixture
def manager(store, shared):
    reg = NetworkRegistry(shared, "192.0.2.9")
    return Api(create_app(Driver(store, FakeDataplane(), DEFAULT_MTU,
                                 reg)).test_client())


def test_reserve_is_no_host_and_free_deletes(r1, r2, shared):
    k = r1.reserve("blue", V4, [], "swarm-1")
    assert r1.reserve("blue", V4, [], "swarm-1") == k     # re-allocation
    assert r1.hosts_of("blue") == []
    assert r1.list()["blue"].swarm == tuple(["swarm-1"])
    assert r2.define("blue", V4, []) == k                 # a node joins
    r2.release("blue")              # the last node leaves: reserved still
    assert r1.list()["blue"].key == k and r1.hosts_of("blue") == []
    assert r1.free("swarm-1") == ["blue"]
    assert shared.list("/ovsgre/") == {}
    assert r1.free("swarm-1") == []                       # repeated: quiet


def test_free_while_a_node_holds_keeps_it_until_release(r1, r2, shared):
    k = r1.reserve("blue", V4, [], "swarm-1")
    r2.define("blue", V4, [])
    r1.free("swarm-1")
    assert shared.get(NETS + "blue") == {"name": "blue", "ipv4": V4,
                                         "ipv6": [], "key": k,
                                         "hosts": ["192.0.2.2"]}
    r2.release("blue")
    assert shared.list("/ovsgre/") == {}


def test_reserve_checks_subnets_and_key(r1, r2):
    r2.define("blue", V4, [], key=55)
    with pytest.raises(Conflict, match="10.99.0.0/24"):
        r1.reserve("blue", ["10.99.0.0/24"], [], "swarm-1")
    with pytest.raises(Conflict, match="55"):
        r1.reserve("red", ["10.98.0.0/24"], [], "swarm-2", key=55)
    assert r1.reserve("blue", V4, [], "swarm-1", key=55) == 55
    assert "swarm" not in r1.list().get("red", {})


def test_swarm_manager_without_containers_leaves_nothing(manager, shared,
                                                         store):
    """AllocateNetwork then FreeNetwork on a manager that never ran a
    container: no host named, and the name and key are free again (the
    manager used to hold the definition forever)."""
    opts = allocate(manager, options={"ovsgre.network": "sw"})
    key = int(opts["ovsgre.key"])
    reg = NetworkRegistry(shared, "z")
    assert reg.hosts_of("sw") == [] and reg.list()["sw"].key == key
    # the manager's own re-allocation (restart, leader change) matches
    assert allocate(manager, options=opts) == opts
    assert manager.ok("FreeNetwork", {"NetworkID": SWARM_NET}) == {}
    assert shared.list("/ovsgre/") == {}
    # the name can be used again with other subnets
    other = allocate(manager, nid="b" * 25, pool="10.41.0.0/24",
                     options={"ovsgre.network": "sw"})
    assert other["ovsgre.network"] == "sw"


def test_swarm_reservation_outlives_the_nodes(manager, shared, tmp_path):
    """Nodes come and go with their tasks; the key stays reserved for the
    swarm network until FreeNetwork (explicit key in the nodes' options)."""
    opts = allocate(manager)
    node = Driver(LocalStore(str(tmp_path / "node")), FakeDataplane(),
                  DEFAULT_MTU, NetworkRegistry(shared, "192.0.2.7"))
    api = Api(create_app(node).test_client())
    try:
        api.ok("CreateNetwork", {
            "NetworkID": SWARM_NET,
            "Options": {"com.docker.network.generic": opts},
            "IPv4Data": [{"Pool": "10.40.0.0/24",
                          "Gateway": "10.40.0.1/24"}], "IPv6Data": []})
        reg = NetworkRegistry(shared, "z")
        assert reg.hosts_of(SWARM_NET) == ["192.0.2.7"]
        api.ok("DeleteNetwork", {"NetworkID": SWARM_NET})
        assert reg.list()[SWARM_NET].key == int(opts["ovsgre.key"])
        manager.ok("FreeNetwork", {"NetworkID": SWARM_NET})
        assert shared.list("/ovsgre/") == {}
    finally:
        node.store.close()


def test_allocate_with_etcd_down(manager, shared, monkeypatch):
    def down(*a, **kw):
        raise Unavailable("etcd unreachable (get)")
    monkeypatch.setattr(shared, "get", down)
    # no key yet: the manager must not make one up
    status, reply, _ = manager.call("AllocateNetwork", {
        "NetworkID": SWARM_NET, "Options": {},
        "IPv4Data": [{"Pool": "10.40.0.0/24"}], "IPv6Data": []})
    err_of(status, reply, 503, "etcd unreachable")
    # key fixed already (re-allocation): answered, the nodes record it
    opts = {"ovsgre.network": "sw", "ovsgre.key": "77"}
    assert allocate(manager, options=opts) == opts


def test_allocate_checks_pools_only_to_reserve_them(manager, api):
    """AllocateNetwork's pools matter only to the reservation in etcd:
    without etcd a pool that does not parse is not looked at."""
    body = {"NetworkID": SWARM_NET, "Options": {},
            "IPv4Data": [{"Pool": "not-a-subnet"}], "IPv6Data": []}
    status, reply, _ = manager.call("AllocateNetwork", body)
    err_of(status, reply, 400, "IPv4Data.Pool 'not-a-subnet' is not a "
           "valid IPv4 subnet")
    assert api.ok("AllocateNetwork", body)["Options"]["ovsgre.network"] \
        == SWARM_NET


# -- `ovsgre network ls`: holders cross-checked with live registrations ------

def test_network_ls_marks_hosts_whose_registration_expired(r1, r2, shared,
                                                           capsys):
    import argparse
    import json
    from ovsgre.commands import network as cmd
    from ovsgre.definitions import HOSTS_PREFIX as HOSTS
    r1.define("blue", V4, [])
    r2.define("blue", V4, [])
    r1.reserve("sw", ["10.41.0.0/24"], [], "swarm-1")
    shared.put(HOSTS + "192.0.2.1", {"ip": "192.0.2.1"})   # 192.0.2.2 died
    assert cmd._list(shared, argparse.Namespace(json=True)) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["blue"]["hosts"] == ["192.0.2.1"]
    assert rows["blue"]["down_hosts"] == ["192.0.2.2"]
    assert rows["sw"]["hosts"] == [] and rows["sw"]["swarm"] is True
    assert cmd._list(shared, argparse.Namespace(json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    blue = next(line for line in lines if line.startswith("blue "))
    assert blue.endswith("192.0.2.1, 192.0.2.2 (down)"), blue
    sw = next(line for line in lines if line.startswith("sw "))
    assert sw.endswith("(swarm)") and "192.0.2" not in sw, sw


# -- records other hosts wrote (issue: trust only what is checked) -------------

INJECTED = "7,actions=drop\ntable=0,priority=100,actions=output:1\n#"


@pytest.mark.parametrize("bad_key", [INJECTED, "7.5", 7.5, "7", True, 0,
                                     KEY_MAX + 1, None, [7], {"k": 7}])
def test_network_record_with_a_bad_key_is_refused_not_used(r1, shared,
                                                           bad_key):
    """Another host (or anyone, without etcd auth) wrote blue's record
    with a key that is not an integer in range: this host refuses the
    network with a printable message, and never returns the key."""
    shared.put(NETS + "blue", {"name": "blue", "ipv4": V4, "ipv6": [],
                               "key": bad_key, "hosts": ["192.0.2.9"]})
    with pytest.raises(Conflict) as err:
        r1.define("blue", V4, [])
    text = str(err.value)
    assert "malformed" in text and NETS + "blue" in text
    assert "\n" not in text and text.isprintable()
    assert r1.list() == {}
    assert list(r1.malformed.current()) == [NETS + "blue"]


def test_network_record_claiming_another_networks_key_is_refused(r1, r2,
                                                                 shared):
    """A record that reuses red's key would bridge blue and red across
    hosts: refused, naming the network the key is reserved for."""
    red_key = r1.define("red", ["10.30.0.0/24"], [])
    shared.put(NETS + "blue", {"name": "blue", "ipv4": V4, "ipv6": [],
                               "key": red_key, "hosts": ["192.0.2.9"]})
    with pytest.raises(Conflict) as err:
        r2.define("blue", V4, [])
    assert f"GRE key {red_key}" in str(err.value)
    assert "'red'" in str(err.value)
    assert r2.hosts_of("red") == ["192.0.2.1"]      # red untouched


def test_network_record_without_a_key_reservation_takes_it(r1, shared):
    """A record whose key nobody reserved (e.g. its reservation was lost):
    the key is reserved for it, then used."""
    shared.put(NETS + "blue", {"name": "blue", "ipv4": V4, "ipv6": [],
                               "key": 42, "hosts": []})
    assert r1.define("blue", V4, []) == 42
    assert shared.get(KEYS + "42") == {"name": "blue"}


@pytest.mark.parametrize("record", [
    "not an object", [1, 2], {"name": "other", "key": 5},
    {"name": "blue", "key": 5, "ipv4": "10.0.0.0/8"},
    {"name": "blue", "key": 5, "ipv4": ["10.0.0.300/24"]},
    {"name": "blue", "key": 5, "ipv6": ["10.0.0.0/24"]},
    {"name": "blue", "key": 5, "hosts": "192.0.2.1"},
    {"name": "blue", "key": 5, "hosts": [7]},
])
def test_list_skips_a_malformed_record_and_keeps_the_others(
        r1, shared, record, caplog):
    r1.define("red", ["10.30.0.0/24"], [])
    shared.put(NETS + "blue", record)
    with caplog.at_level("WARNING", logger="ovsgre.cluster.networks"):
        assert list(r1.list()) == ["red"]
        assert list(r1.list()) == ["red"]
    logged = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 1                       # once, not per read
    assert NETS + "blue" in logged[0].getMessage()
    shared.delete(NETS + "blue")
    r1.list()
    assert r1.malformed.current() == {}


def test_release_leaves_a_malformed_record_alone(r1, shared):
    shared.put(NETS + "blue", {"name": "blue", "key": "x",
                               "hosts": ["192.0.2.1"]})
    r1.release("blue")                               # no crash
    assert shared.get(NETS + "blue")["key"] == "x"   # for an operator


@pytest.mark.parametrize("owner", ["x", ["blue"], {"name": 7}, {}])
def test_a_malformed_key_reservation_is_refused_not_a_crash(r1, shared,
                                                            owner):
    """A key reservation record another host wrote that does not parse:
    the key is not taken over (a clear refusal), and nothing crashes."""
    shared.put(KEYS + "42", owner)
    with pytest.raises(Conflict, match="GRE key 42"):
        r1.define("blue", V4, [], 42)
    assert shared.get(KEYS + "42") == owner
    assert KEYS + "42" in r1.malformed.current()
