"""The tunnel sync thread (TunnelSync) and the peer sources, with fakes."""

import threading
import time
import types

import pytest

from ovsgre import tunnel_sync
from ovsgre.errors import DataplaneError
from ovsgre.peers import EtcdPeers, StaticPeers
from ovsgre.tunnel_sync import TunnelSync

from .fakes import FakePeers, FakeTunnels
from .conftest import eventually

WAIT = 5.0


class FakeStore:
    def __init__(self, networks=None):
        self.networks = dict(networks or {})

    def list(self, kind):
        assert kind == "networks"
        # what every stored record has besides what the tests vary
        return {k: {"network_id": k, "mtu": 1450, **v}
                for k, v in self.networks.items()}




@pytest.fixture(autouse=True)
def fast_retry(monkeypatch):
    """The thread sleeps 1 s after a failed sync; 10 ms is enough here."""
    real_sleep = time.sleep
    monkeypatch.setattr(tunnel_sync, "time", types.SimpleNamespace(
        monotonic=time.monotonic, sleep=lambda s: real_sleep(min(s, 0.01))))


@pytest.fixture
def store():
    return FakeStore({"n1": {"vlan": 1, "key": 100},
                      "n2": {"vlan": 2, "key": 7}})


@pytest.fixture
def tunnels():
    return FakeTunnels()


@pytest.fixture
def peers():
    return FakePeers()


@pytest.fixture
def topo(store, tunnels, peers):
    t = TunnelSync(store, tunnels, peers)
    t.begin()
    yield t
    t.stop()
    t.join(WAIT)


def test_nothing_before_peers_known(topo, tunnels):
    assert topo.peers is None
    start = time.monotonic()
    assert topo.request() is True
    assert topo.request(wait=WAIT) is True      # not possible yet: no wait
    assert time.monotonic() - start < 1.0
    time.sleep(0.1)
    assert tunnels.syncs == []


def test_sync_after_peers_known(topo, tunnels, peers):
    topo.request()
    peers.report({"192.0.2.2", "192.0.2.3"})
    assert eventually(lambda: len(tunnels.syncs) >= 1)
    assert tunnels.syncs[0] == ({"192.0.2.2", "192.0.2.3"},
                                {1: 100, 2: 7})
    assert topo.peers == {"192.0.2.2", "192.0.2.3"}


def test_empty_peer_set_is_known(topo, tunnels, peers):
    peers.report(set())
    assert eventually(lambda: len(tunnels.syncs) == 1)
    assert tunnels.syncs[0][0] == set()


def test_request_wait_returns_after_sync(topo, tunnels, peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT) is True
    before = len(tunnels.syncs)
    assert before >= 1
    assert topo.request(wait=WAIT) is True
    assert len(tunnels.syncs) > before     # a sync that began after asking


def test_sync_sees_current_networks(topo, tunnels, peers, store):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    store.networks["n3"] = {"vlan": 3, "key": 4242}
    assert topo.request(wait=WAIT)
    assert tunnels.syncs[-1][1] == {1: 100, 2: 7, 3: 4242}
    del store.networks["n1"]
    assert topo.request(wait=WAIT)
    assert tunnels.syncs[-1][1] == {2: 7, 3: 4242}


def test_networks_without_key_excluded(tunnels, peers):
    store = FakeStore({"a": {"vlan": 1, "key": 100},
                       "b": {"vlan": 2, "key": None},
                       "c": {"vlan": 3},
                       "d": {"vlan": 4, "key": 0}})
    t = TunnelSync(store, tunnels, peers)
    t.begin()
    try:
        peers.report({"192.0.2.2"})
        assert t.request(wait=WAIT)
        assert tunnels.syncs[-1][1] == {1: 100}
    finally:
        t.stop()
        t.join(WAIT)


def test_same_peers_do_not_resync(topo, tunnels, peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    count = len(tunnels.syncs)
    peers.report({"192.0.2.2"})
    time.sleep(0.1)
    assert len(tunnels.syncs) == count
    peers.report({"192.0.2.2", "192.0.2.9"})
    assert eventually(lambda: len(tunnels.syncs) == count + 1)
    assert tunnels.syncs[-1][0] == {"192.0.2.2", "192.0.2.9"}


def test_failed_sync_is_retried(topo, tunnels, peers):
    tunnels.failures = 3
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT) is True
    assert len(tunnels.syncs) >= 4
    assert topo.last_error is None


def test_last_error_while_failing(topo, tunnels, peers):
    tunnels.failures = 10 ** 9
    peers.report({"192.0.2.2"})
    assert topo.request(wait=0.2) is False
    assert "vswitchd" in (topo.last_error or "")
    assert len(tunnels.syncs) >= 2            # it keeps trying
    with tunnels.lock:
        tunnels.failures = 0
    assert topo.request(wait=WAIT) is True
    assert topo.last_error is None


def test_requests_coalesce(store, peers):
    gate = threading.Event()
    entered = threading.Event()

    class SlowTunnels(FakeTunnels):
        def sync(self, peers, networks, holders=None):
            entered.set()
            gate.wait(WAIT)
            return super().sync(peers, networks, holders)

    tunnels = SlowTunnels()
    t = TunnelSync(store, tunnels, peers)
    t.begin()
    try:
        peers.report({"192.0.2.2"})
        assert entered.wait(WAIT)
        for _ in range(10):
            t.request()
        gate.set()
        assert t.request(wait=WAIT)
        # the first sync, one for the ten requests (and maybe this one)
        assert 2 <= len(tunnels.syncs) <= 3
    finally:
        gate.set()
        t.stop()
        t.join(WAIT)


def test_stop_ends_thread(topo, peers, tunnels):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    topo.stop()
    topo.join(WAIT)
    assert not topo.is_alive()
    assert peers.stopped
    start = time.monotonic()
    topo.request(wait=WAIT)                   # does not hang after stop
    assert time.monotonic() - start < 1.0


def test_stop_before_peers_known(topo, peers):
    topo.stop()
    topo.join(WAIT)
    assert not topo.is_alive() and peers.stopped


def test_stop_while_failing(topo, tunnels, peers):
    tunnels.failures = 10 ** 9
    peers.report({"192.0.2.2"})
    assert eventually(lambda: len(tunnels.syncs) >= 1)
    topo.stop()
    topo.join(WAIT)
    assert not topo.is_alive()


# -- peer sources -------------------------------------------------------------

def test_static_peers_without_local_ip():
    got = []
    src = StaticPeers(["192.0.2.1", "192.0.2.2", "192.0.2.3"], "192.0.2.1")
    src.start(got.append)
    assert got == [{"192.0.2.2", "192.0.2.3"}]
    src.stop()


def test_tunnel_sync_with_static_peers(store, tunnels):
    t = TunnelSync(store, tunnels, StaticPeers(["192.0.2.1", "192.0.2.5"],
                                             "192.0.2.1"))
    t.begin()
    try:
        assert eventually(lambda: len(tunnels.syncs) >= 1)
        assert tunnels.syncs[0] == ({"192.0.2.5"}, {1: 100, 2: 7})
        assert t.request(wait=WAIT)
    finally:
        t.stop()
        t.join(WAIT)


def test_etcd_peers_report_others():
    src = EtcdPeers(object(), "192.0.2.1", ttl=10)   # threads not started
    got = []
    src._on_change = got.append
    src._changed({
        "/ovsgre/hosts/192.0.2.1": {"ip": "192.0.2.1"},
        "/ovsgre/hosts/192.0.2.2": {"ip": "192.0.2.2", "hostname": "b"},
        "/ovsgre/hosts/junk": "not a dict",
        "/ovsgre/hosts/noip": {"hostname": "c"},
    })
    assert got == [{"192.0.2.2"}]
    assert src.registration.key == "/ovsgre/hosts/192.0.2.1"
    assert src.registration.value["ip"] == "192.0.2.1"
    assert src.watcher.prefix == "/ovsgre/hosts/"


# -- announcements ------------------------------------------------------------

def test_announcement_is_repeated_on_schedule(topo, tunnels):
    """One lost copy (a tunnel still resolving its next hop drops it) must
    not leave peers sending the MAC to its old host."""
    start = time.monotonic()
    topo.announce("ovgh-a", "02:42:c6:13:c8:05")
    n = len(tunnel_sync.ANNOUNCE_AT)
    assert n >= 3
    assert eventually(lambda: len(tunnels.announced) == n, timeout=5)
    assert {(p, m) for _, p, m in tunnels.announced} == \
        {("ovgh-a", "02:42:c6:13:c8:05")}
    offsets = [t - start for t, _, _ in tunnels.announced]
    for got, planned in zip(offsets, tunnel_sync.ANNOUNCE_AT):
        assert planned - 0.01 <= got <= planned + 0.5
    time.sleep(0.3)
    assert len(tunnels.announced) == n        # no more than planned


def test_announcement_before_peers_known(topo, tunnels):
    topo.announce("ovgh-b", "02:00:00:00:00:01")
    assert eventually(lambda: len(tunnels.announced) >= 1, timeout=1)
    assert tunnels.syncs == []


def test_failed_announcement_does_not_stop_the_thread(topo, tunnels, peers):
    tunnels.announce_failures = 10 ** 9
    topo.announce("ovgh-c", "02:00:00:00:00:02")
    assert eventually(lambda: len(tunnels.announced) >= 2)
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    assert topo.is_alive()


def test_announcements_do_not_delay_syncs(topo, tunnels, peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    for i in range(20):
        topo.announce(f"ovgh-{i}", "02:00:00:00:00:03")
    start = time.monotonic()
    peers.report({"192.0.2.2", "192.0.2.3"})
    assert topo.request(wait=WAIT)
    assert time.monotonic() - start < 0.5


# -- vswitchd restarts ----------------------------------------------------------

@pytest.fixture
def fast_verify(monkeypatch):
    monkeypatch.setattr(tunnel_sync, "VERIFY_EVERY", 0.02)


def test_flows_not_read_while_vswitchd_stays(fast_verify, topo, tunnels,
                                             peers):
    """The sync that installed the table knows which vswitchd holds it:
    idle checks compare pids and never dump the table."""
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    time.sleep(0.3)                       # ~15 idle checks
    assert tunnels.flow_checks == 0


def test_vswitchd_restart_reinstalls_flows(fast_verify, topo, tunnels,
                                           peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    syncs = len(tunnels.syncs)
    tunnels.intact, tunnels.instance = False, "200"
    assert eventually(lambda: len(tunnels.syncs) > syncs)
    assert eventually(lambda: tunnels.flow_checks == 1)


# -- Join waits for the table of the running vswitchd ---------------------------

def test_wait_installed_returns_at_once_when_nothing_changed(topo, tunnels,
                                                             peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    checks, syncs = tunnels.flow_checks, len(tunnels.syncs)
    start = time.monotonic()
    topo.wait_installed(WAIT)
    assert time.monotonic() - start < 0.05
    assert (tunnels.flow_checks, len(tunnels.syncs)) == (checks, syncs)


def test_wait_installed_before_any_peer_is_known(topo):
    topo.wait_installed(0.01)             # etcd not reached yet: no wait


def test_wait_installed_after_a_restart_waits_for_the_new_table(topo, tunnels,
                                                                peers):
    """Without the idle check (every 2 s), the Join that first sees the new
    vswitchd has the table checked and reinstalled before it returns."""
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    syncs = len(tunnels.syncs)
    tunnels.intact, tunnels.instance = False, "200"
    start = time.monotonic()
    topo.wait_installed(WAIT)
    assert time.monotonic() - start < 1.0     # not the 2 s idle period
    assert len(tunnels.syncs) == syncs + 1
    assert tunnels.flow_checks == 1


def test_wait_installed_after_a_restart_that_kept_the_flows(topo, tunnels,
                                                            peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    syncs = len(tunnels.syncs)
    tunnels.instance = "200"              # flows still there: no resync
    topo.wait_installed(WAIT)
    assert len(tunnels.syncs) == syncs and tunnels.flow_checks == 1


def test_wait_installed_times_out_with_the_sync_error(topo, tunnels, peers):
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    tunnels.intact, tunnels.instance = False, "200"
    tunnels.failures = 10 ** 6            # every sync fails from now on
    with pytest.raises(DataplaneError) as err:
        topo.wait_installed(0.3)
    assert "pid 200" in str(err.value)
    assert "vswitchd is restarting" in str(err.value)


def test_without_a_pid_file_flows_are_read_every_time(fast_verify, topo,
                                                      tunnels, peers):
    tunnels.instance = None
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    assert eventually(lambda: tunnels.flow_checks >= 3)


def test_full_check_now_and_then(fast_verify, monkeypatch, topo, tunnels,
                                 peers):
    monkeypatch.setattr(tunnel_sync, "FULL_CHECK_EVERY", 0.1)
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    assert eventually(lambda: tunnels.flow_checks >= 3)


def test_full_check_also_primes_the_tunnels(fast_verify, monkeypatch, topo,
                                             tunnels, peers):
    monkeypatch.setattr(tunnel_sync, "FULL_CHECK_EVERY", 0.1)
    peers.report({"192.0.2.2"})
    assert topo.request(wait=WAIT)
    assert eventually(lambda: tunnels.primes >= 2)


# -- host records other hosts wrote --------------------------------------------

def _peers(items, max_peers=128, local="198.18.0.1"):
    from ovsgre.peers import EtcdPeers
    peers = EtcdPeers.__new__(EtcdPeers)
    peers.local_ip = local
    peers.max_peers = max_peers
    from ovsgre.cluster.records import MalformedLog
    import logging
    peers.malformed = MalformedLog(logging.getLogger("ovsgre.peers"),
                                   "host")
    peers._over_limit = None
    return peers


H = "/ovsgre/hosts/"


@pytest.mark.parametrize("bad", [
    "198.18.0.9,198.18.0.10", "198.18.0.9\nERROR forged", ["198.18.0.9"],
    3323068425, None, "peer-a", "-f", "224.0.0.1", "2001:db8::9",
    "198.18.0.10",     # not the address it is registered under
])
def test_a_malformed_host_record_is_skipped_and_the_others_kept(bad, caplog):
    items = {H + "198.18.0.1": {"ip": "198.18.0.1"},
             H + "198.18.0.2": {"ip": "198.18.0.2", "hostname": "b"},
             H + "198.18.0.9": {"ip": bad, "hostname": "evil"}}
    peers = _peers(items)
    with caplog.at_level("WARNING", logger="ovsgre.peers"):
        assert peers.peers_in(items) == {"198.18.0.2"}
        assert peers.peers_in(items) == {"198.18.0.2"}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and H + "198.18.0.9" in logged[0]
    assert "\n" not in logged[0] and logged[0].isprintable()


def test_host_records_that_are_not_objects_are_skipped():
    items = {H + "198.18.0.2": {"ip": "198.18.0.2"}, H + "x": "text",
             H + "198.18.0.3": [1], H + "198.18.0.4": 7}
    assert _peers(items).peers_in(items) == {"198.18.0.2"}


def test_peers_are_bounded_with_a_clear_log(caplog):
    items = {H + f"198.18.{i // 250}.{i % 250 + 2}":
             {"ip": f"198.18.{i // 250}.{i % 250 + 2}"} for i in range(1000)}
    peers = _peers(items, max_peers=16)
    with caplog.at_level("WARNING", logger="ovsgre.peers"):
        got = peers.peers_in(items)
        assert peers.peers_in(items) == got
    assert len(got) == 16
    assert "198.18.0.2" in got                    # lowest addresses kept
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "--max-peers 16" in logged[0]


# -- flooding only to the hosts that hold a network ------------------------------

def test_broadcasts_go_only_to_the_peers_holding_the_network():
    from ovsgre.dataplane.tunnels import build_flows
    tunnels = {"198.18.0.2": 2, "198.18.0.3": 3, "198.18.0.4": 4}
    networks = {10: 100, 11: 200, 12: 300}
    holders = {100: {"198.18.0.1", "198.18.0.2", "198.18.0.4"},
               200: {"198.18.0.1"}}
    flows = build_flows(1, tunnels, networks, holders)
    floods = {f.split("dl_vlan=")[1].split(",")[0]: f.split(",", 5)[-1]
              for f in flows if f.startswith("table=4,priority=1")}
    # 11 is held only here; 12 is not listed (yet): every peer
    assert floods == {"10": "output:2,output:4",
                      "12": "output:2,output:3,output:4"}
    # every network still accepts frames from every tunnel
    assert sum(f.startswith("table=3,priority=1") for f in flows) == 3
    # unknown holders (static peers): every peer
    flows = build_flows(1, tunnels, networks, None)
    assert sum("output:2,output:3,output:4" in f for f in flows) == 3


def test_etcd_network_records_give_the_holders():
    import logging
    from ovsgre.cluster.records import MalformedLog
    from ovsgre.peers import EtcdPeers
    peers = EtcdPeers.__new__(EtcdPeers)
    peers.bad_networks = MalformedLog(logging.getLogger("t"), "network")
    items = {"/ovsgre/networks/blue": {"name": "blue", "key": 7,
                                       "hosts": ["198.18.0.1", "198.18.0.2"]},
             "/ovsgre/networks/red": {"name": "red", "key": "8\n"},
             "/ovsgre/networks/x": "garbage"}
    assert peers.holders_in(items) == {7: {"198.18.0.1", "198.18.0.2"}}
    assert set(peers.bad_networks.current()) == {"/ovsgre/networks/red",
                                                 "/ovsgre/networks/x"}


def test_holders_reach_the_tunnels(topo, tunnels, peers):
    peers.report({"192.0.2.2"})
    assert eventually(lambda: len(tunnels.syncs) >= 1)
    assert tunnels.holders is None
    peers.report_holders({7: frozenset({"192.0.2.2"})})
    assert eventually(lambda: tunnels.holders == {7: {"192.0.2.2"}})
