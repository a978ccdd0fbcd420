"""LocalStore: one JSON file per record, crash-safe writes, one owner."""

import json
import os
import threading
import time

import pytest

from ovsgre.errors import Unavailable
from ovsgre.store import KINDS, LocalStore


def _files(root, kind):
    return sorted(os.listdir(os.path.join(root, kind)))


def test_creates_layout(state_dir, store):
    for kind in KINDS:
        assert os.path.isdir(os.path.join(state_dir, kind))
    assert os.path.exists(os.path.join(state_dir, "lock"))


def test_put_get_list_delete(store, state_dir):
    rec = {"vlan": 3, "ipv4": [{"pool": "10.0.0.0/24"}], "mtu": 1450}
    assert store.get("networks", "n1") is None
    assert store.list("networks") == {}
    store.put("networks", "n1", rec)
    store.put("networks", "n2", {"vlan": 4})
    store.put("endpoints", "e1", {"state": "created"})
    assert store.get("networks", "n1") == rec
    assert store.list("networks") == {"n1": rec, "n2": {"vlan": 4}}
    assert store.list("endpoints") == {"e1": {"state": "created"}}
    assert _files(state_dir, "networks") == ["n1.json", "n2.json"]
    with open(os.path.join(state_dir, "networks", "n1.json")) as fh:
        assert json.load(fh) == rec

    store.put("networks", "n1", {"vlan": 5})      # overwrite
    assert store.get("networks", "n1") == {"vlan": 5}
    assert _files(state_dir, "networks") == ["n1.json", "n2.json"]

    store.delete("networks", "n1")
    store.delete("networks", "n1")                # idempotent
    store.delete("networks", "never")
    assert store.get("networks", "n1") is None
    assert list(store.list("networks")) == ["n2"]
    assert _files(state_dir, "networks") == ["n2.json"]


def test_returned_records_are_copies(store):
    store.put("networks", "n1", {"vlan": 1})
    got = store.get("networks", "n1")
    got["vlan"] = 99
    store.list("networks")["n1"]["vlan"] = 98
    assert store.get("networks", "n1") == {"vlan": 1}
    rec = {"vlan": 2}
    store.put("networks", "n2", rec)
    rec["vlan"] = 97
    assert store.get("networks", "n2") == {"vlan": 2}


def test_survives_reopen(state_dir):
    s = LocalStore(state_dir)
    s.put("networks", "n1", {"vlan": 7, "gwbridge": False})
    s.put("endpoints", "e1", {"state": "joined", "mtu": 1400})
    s.put("endpoints", "gone", {"state": "created"})
    s.delete("endpoints", "gone")
    s.close()
    s2 = LocalStore(state_dir)
    try:
        assert s2.list("networks") == {"n1": {"vlan": 7, "gwbridge": False}}
        assert s2.list("endpoints") == {"e1": {"state": "joined",
                                               "mtu": 1400}}
    finally:
        s2.close()


def test_no_temporary_files_left_after_writes(store, state_dir):
    for i in range(5):
        store.put("endpoints", f"e{i}", {"i": i})
        store.put("endpoints", f"e{i}", {"i": i + 1})
    assert _files(state_dir, "endpoints") == [f"e{i}.json" for i in range(5)]


def test_leftover_tmp_file_removed_and_ignored(state_dir):
    s = LocalStore(state_dir)
    s.put("networks", "n1", {"vlan": 1})
    s.close()
    folder = os.path.join(state_dir, "networks")
    # A crash between write and rename leaves ".tmp-<id>.json".
    with open(os.path.join(folder, ".tmp-n1.json"), "w") as fh:
        fh.write('{"vlan": 2}')
    with open(os.path.join(folder, ".tmp-n9.json"), "w") as fh:
        fh.write('{"vl')
    s2 = LocalStore(state_dir)
    try:
        assert s2.list("networks") == {"n1": {"vlan": 1}}
        assert _files(state_dir, "networks") == ["n1.json"]
    finally:
        s2.close()


@pytest.mark.parametrize("content", [b"{\"vlan\": ", b"", b"\xff\xfe\x00\x01",
                                     b"not json at all"])
def test_unreadable_record_is_skipped(state_dir, content):
    s = LocalStore(state_dir)
    s.put("networks", "good", {"vlan": 1})
    s.close()
    with open(os.path.join(state_dir, "networks", "bad.json"), "wb") as fh:
        fh.write(content)
    s2 = LocalStore(state_dir)
    try:
        assert s2.list("networks") == {"good": {"vlan": 1}}
        assert s2.get("networks", "bad") is None
        # Still usable: writing the same key replaces the broken file.
        s2.put("networks", "bad", {"vlan": 2})
        assert s2.get("networks", "bad") == {"vlan": 2}
    finally:
        s2.close()


@pytest.mark.parametrize("content", [b"null", b"[1, 2]", b"\"text\"", b"42"])
def test_record_that_is_not_an_object_is_skipped(state_dir, content):
    """Otherwise list() would crash in dict(v) on every call."""
    s = LocalStore(state_dir)
    s.put("networks", "good", {"vlan": 1})
    s.close()
    with open(os.path.join(state_dir, "networks", "bad.json"), "wb") as fh:
        fh.write(content)
    s2 = LocalStore(state_dir)
    try:
        assert s2.list("networks") == {"good": {"vlan": 1}}
    finally:
        s2.close()


def test_unrelated_files_are_ignored(state_dir):
    os.makedirs(os.path.join(state_dir, "networks"))
    with open(os.path.join(state_dir, "networks", "README"), "w") as fh:
        fh.write("hello")
    s = LocalStore(state_dir)
    try:
        assert s.list("networks") == {}
    finally:
        s.close()


def test_second_store_on_same_dir_is_unavailable(state_dir, store):
    with pytest.raises(Unavailable, match="in use"):
        LocalStore(state_dir, lock_wait=0)
    # The first one keeps working.
    store.put("networks", "n1", {"vlan": 1})
    assert store.get("networks", "n1") == {"vlan": 1}


def test_second_store_gives_up_after_lock_wait(state_dir, store):
    start = time.monotonic()
    with pytest.raises(Unavailable, match="in use"):
        LocalStore(state_dir, lock_wait=0.3)
    assert 0.25 <= time.monotonic() - start < 3


def test_second_store_gets_the_lock_when_the_first_goes_away(state_dir):
    """A dying predecessor's lock is waited for, not fought."""
    first = LocalStore(state_dir)
    first.put("networks", "n1", {"vlan": 1})
    timer = threading.Timer(0.2, first.close)
    timer.start()
    try:
        second = LocalStore(state_dir, lock_wait=5)
    finally:
        timer.join()
    try:
        assert second.get("networks", "n1") == {"vlan": 1}
        with pytest.raises(Unavailable):
            LocalStore(state_dir, lock_wait=0)
    finally:
        second.close()


def test_lock_released_on_close(state_dir):
    s = LocalStore(state_dir)
    s.close()
    s.close()                      # idempotent
    s2 = LocalStore(state_dir, lock_wait=0)
    s2.close()


def test_lock_false_does_not_take_the_lock(state_dir, store):
    reader = LocalStore(state_dir, lock=False)
    reader.close()


BAD_KEYS = ["", ".", "..", ".hidden", ".tmp-x", "../x", "a/b", "/etc/passwd",
            "a b", "a;b", "$(id)", "a\x00b", "x" * 129, "\u00e9"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_rejected(store, state_dir, key):
    with pytest.raises(ValueError, match="bad store key"):
        store.put("networks", key, {"vlan": 1})
    with pytest.raises(ValueError):
        store.delete("networks", key)
    assert _files(state_dir, "networks") == []
    assert not os.path.exists(os.path.join(os.path.dirname(state_dir), "x"))


def test_key_with_trailing_newline_rejected(store, state_dir):
    """Regression: '$' in a regex also matches before a final newline."""
    with pytest.raises(ValueError):
        store.put("networks", "abc\n", {"vlan": 1})
    assert _files(state_dir, "networks") == []


@pytest.mark.parametrize("kind", ["", "network", "../networks", "lock"])
def test_bad_kinds_rejected(store, kind):
    with pytest.raises(ValueError):
        store.put(kind, "n1", {})


@pytest.mark.parametrize("key", ["a", "A-b_c.d", "x" * 128,
                                 "83ef046151a4d4baaab90f03464401df2100a648"])
def test_good_keys_accepted(store, key):
    store.put("endpoints", key, {"k": key})
    assert store.get("endpoints", key) == {"k": key}


def test_put_not_durable_skips_fsync_but_replaces_atomically(tmp_path,
                                                            monkeypatch):
    store = LocalStore(str(tmp_path))
    store.put("endpoints", "e1", {"state": "created"})
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    store.put("endpoints", "e1", {"state": "joined"}, durable=False)
    assert synced == []
    store.put("endpoints", "e1", {"state": "created"})
    assert len(synced) == 2            # file and directory
    store.put("endpoints", "e1", {"state": "joined"}, durable=False)
    store.close()
    again = LocalStore(str(tmp_path))
    assert again.get("endpoints", "e1") == {"state": "joined"}
    assert not [n for n in os.listdir(tmp_path / "endpoints")
                if n.startswith(".tmp-")]
