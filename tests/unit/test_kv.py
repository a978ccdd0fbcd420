"""LocalKV: the cluster-store interface on one host (JSON files in state_dir).

The same guarantees as EtcdKV: atomic create-if-absent, compare-and-swap,
prefix listing; plus persistence across a restart of the plugin.
"""

import os
import threading

import pytest

from ovsgre.cluster.kv import LocalKV


@pytest.fixture
def kv(state_dir):
    k = LocalKV(state_dir)
    yield k
    k.close()


def test_get_missing_is_none(kv):
    assert kv.get("/ovsgre/nothing") is None


def test_put_get_overwrite(kv):
    kv.put("/ovsgre/a", {"x": 1})
    assert kv.get("/ovsgre/a") == {"x": 1}
    kv.put("/ovsgre/a", {"x": 2, "y": [1, "two"]})
    assert kv.get("/ovsgre/a") == {"x": 2, "y": [1, "two"]}


def test_list_by_prefix(kv):
    kv.put("/ovsgre/hosts/10.0.0.1", {"ip": "10.0.0.1"})
    kv.put("/ovsgre/hosts/10.0.0.2", {"ip": "10.0.0.2"})
    kv.put("/ovsgre/hostsx", {"not": "a host"})
    kv.put("/ovsgre/networks/blue", {"key": 1})
    assert kv.list("/ovsgre/hosts/") == {
        "/ovsgre/hosts/10.0.0.1": {"ip": "10.0.0.1"},
        "/ovsgre/hosts/10.0.0.2": {"ip": "10.0.0.2"}}
    assert set(kv.list("/ovsgre/")) == {
        "/ovsgre/hosts/10.0.0.1", "/ovsgre/hosts/10.0.0.2",
        "/ovsgre/hostsx", "/ovsgre/networks/blue"}
    assert kv.list("/ovsgre/none/") == {}


def test_list_returns_a_snapshot(kv):
    kv.put("/ovsgre/p/1", 1)
    snap = kv.list("/ovsgre/p/")
    kv.put("/ovsgre/p/2", 2)
    kv.delete("/ovsgre/p/1")
    assert snap == {"/ovsgre/p/1": 1}


def test_create_if_absent(kv):
    assert kv.create("/ovsgre/k", {"owner": "h1"}) is True
    assert kv.create("/ovsgre/k", {"owner": "h2"}) is False
    assert kv.get("/ovsgre/k") == {"owner": "h1"}


def test_create_after_delete(kv):
    assert kv.create("/ovsgre/k", 1)
    kv.delete("/ovsgre/k")
    assert kv.get("/ovsgre/k") is None
    assert kv.create("/ovsgre/k", 2) is True
    assert kv.get("/ovsgre/k") == 2


def test_replace_is_compare_and_swap(kv):
    kv.put("/ovsgre/k", {"v": 1})
    assert kv.replace("/ovsgre/k", {"v": 2}, {"v": 3}) is False
    assert kv.get("/ovsgre/k") == {"v": 1}
    assert kv.replace("/ovsgre/k", {"v": 1}, {"v": 3}) is True
    assert kv.get("/ovsgre/k") == {"v": 3}
    # the old value is compared whole, not by a subset of fields
    assert kv.replace("/ovsgre/k", {}, {"v": 4}) is False
    assert kv.get("/ovsgre/k") == {"v": 3}


def test_replace_missing_key(kv):
    assert kv.replace("/ovsgre/none", {"v": 1}, {"v": 2}) is False
    assert kv.get("/ovsgre/none") is None


def test_delete_missing_is_quiet(kv):
    kv.delete("/ovsgre/none")
    kv.put("/ovsgre/k", 1)
    kv.delete("/ovsgre/k")
    kv.delete("/ovsgre/k")
    assert kv.list("/ovsgre/") == {}


def test_persistence_across_reopen(state_dir, kv):
    kv.put("/ovsgre/a", {"x": 1})
    assert kv.create("/ovsgre/b", [1, 2])
    kv.put("/ovsgre/c", "gone")
    assert kv.replace("/ovsgre/a", {"x": 1}, {"x": 9})
    kv.delete("/ovsgre/c")
    again = LocalKV(state_dir)
    assert again.list("/ovsgre/") == {"/ovsgre/a": {"x": 9},
                                      "/ovsgre/b": [1, 2]}
    assert again.create("/ovsgre/b", "other") is False
    assert again.create("/ovsgre/c", "back") is True


def test_files_live_under_state_dir_kv(state_dir, kv):
    kv.put("/ovsgre/a/b", 1)
    files = os.listdir(os.path.join(state_dir, "kv"))
    assert len(files) == 1 and "/" not in files[0]
    assert not files[0].startswith(".tmp-")


ODD_KEYS = [
    "/ovsgre/ipam/addrs/default/10.1.0.0%2F24/10.1.0.7",
    "/ovsgre/ipam/addrs/red/fd00%3A198%3A18%3A30%3A%3A%2F64/fd00:198:18:30::5",
    "/ovsgre/with space/and%percent/and+plus",
    "/ovsgre/unicode/réseau-网络",
    "/ovsgre/dots/../x/./y",
    "/ovsgre/trailing/",
    "/ovsgre/q?a=b&c=d#frag",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_round_trip(state_dir, kv, key):
    kv.put(key, {"key": key})
    assert kv.get(key) == {"key": key}
    again = LocalKV(state_dir)
    assert again.get(key) == {"key": key}
    assert list(again.list("/ovsgre/")) == [key]
    again.delete(key)
    assert LocalKV(state_dir).list("/ovsgre/") == {}


def test_keys_that_differ_only_in_quoting_stay_apart(state_dir, kv):
    # "%2F" in a key must not collide with "/" once both are file names
    kv.put("/ovsgre/a/b", "slash")
    kv.put("/ovsgre/a%2Fb", "quoted")
    again = LocalKV(state_dir)
    assert again.get("/ovsgre/a/b") == "slash"
    assert again.get("/ovsgre/a%2Fb") == "quoted"


def test_leftover_temp_files_are_ignored(state_dir, kv):
    kv.put("/ovsgre/a", 1)
    root = os.path.join(state_dir, "kv")
    with open(os.path.join(root, ".tmp-%2Fovsgre%2Fb"), "w") as fh:
        fh.write('{"half": ')
    with open(os.path.join(root, "%2Fovsgre%2Fbroken"), "w") as fh:
        fh.write('{"half": ')
    again = LocalKV(state_dir)
    assert again.list("/ovsgre/") == {"/ovsgre/a": 1}
    assert not os.path.exists(os.path.join(root, ".tmp-%2Fovsgre%2Fb"))


def test_concurrent_create_one_winner(kv):
    barrier = threading.Barrier(20)
    results = []
    lock = threading.Lock()

    def worker(i):
        barrier.wait()
        won = kv.create("/ovsgre/ipam/addrs/default/x/10.0.0.2",
                        {"host": f"h{i}"})
        with lock:
            results.append((i, won))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 20
    winners = [i for i, won in results if won]
    assert len(winners) == 1
    assert kv.get("/ovsgre/ipam/addrs/default/x/10.0.0.2") == {
        "host": f"h{winners[0]}"}


def test_concurrent_replace_one_winner(kv):
    kv.put("/ovsgre/counter", {"n": 0})
    barrier = threading.Barrier(20)
    results = []

    def worker(i):
        barrier.wait()
        results.append(kv.replace("/ovsgre/counter", {"n": 0}, {"n": i}))

    threads = [threading.Thread(target=worker, args=(i,))
               for i in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False] * 19 + [True]
    assert kv.get("/ovsgre/counter")["n"] in range(1, 21)


def test_not_shared(kv):
    assert LocalKV.shared is False and kv.shared is False


def test_write_if_unchanged_sees_writes_under_the_prefix(kv):
    _, rev = kv.list_with_revision("/ovsgre/p/")
    assert kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/a", None, 1)
    assert not kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/b",
                                     None, 2)
    _, rev = kv.list_with_revision("/ovsgre/p/")
    kv.put("/ovsgre/q/x", 1)                       # another prefix
    assert not kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/a",
                                     None, 3)      # exists
    assert not kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/a", 9, 3)
    assert kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/a", 1, 3)
    assert kv.get("/ovsgre/p/a") == 3


def test_write_if_unchanged_remembers_only_keys_that_exist(kv):
    """Like etcd's range compare: a deletion is no reason to refuse, and
    what it remembers stays bounded by what is stored."""
    for i in range(100):
        kv.put(f"/ovsgre/p/{i}", i)
        kv.delete(f"/ovsgre/p/{i}")
    _, rev = kv.list_with_revision("/ovsgre/p/")
    kv.put("/ovsgre/p/x", 1)
    kv.delete("/ovsgre/p/x")
    assert kv.write_if_unchanged("/ovsgre/p/", rev, "/ovsgre/p/y", None, 1)
    assert len(kv._modified) == 1


def test_compare_and_swap_retries_lost_races_then_gives_up():
    from ovsgre.cluster.kv import RETRY, compare_and_swap
    from ovsgre.errors import Unavailable
    results = iter([RETRY, RETRY, "won"])
    assert compare_and_swap("pool x", lambda: next(results)) == "won"
    tries = []
    with pytest.raises(Unavailable, match="pool x: too much contention"):
        compare_and_swap("pool x", lambda: tries.append(1) or RETRY,
                         tries=5)
    assert len(tries) == 5
    assert compare_and_swap("pool x", lambda: None) is None
