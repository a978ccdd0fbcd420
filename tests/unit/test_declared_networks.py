"""Declared networks: the CLI's records and the reconciler's Docker calls."""

import argparse
import sys
import threading
import time
import types

import docker
import pytest

from ovsgre import declared_networks
from ovsgre.commands import network as cmd
from ovsgre.cluster.records import parse_declared
from ovsgre.declared_networks import (LABEL, PREFIX, REV_LABEL,
                                       DeclaredNetworks, revision)
from ovsgre.errors import InvalidRequest


def args(**kw):
    base = dict(name="blue", subnet=["198.19.0.0/16"], ipv6=False,
                internal=False, opt=[])
    base.update(kw)
    return argparse.Namespace(**base)


def test_record_normalises_subnets_and_options():
    rec = cmd._record(args(subnet=["198.19.0.5/16"], opt=["a=b", "c=d=e"]))
    assert rec == {"name": "blue", "subnets": ["198.19.0.0/16"],
                   "ipv6": False, "internal": False,
                   "options": {"a": "b", "c": "d=e"}}


@pytest.mark.parametrize("kw", [
    {"name": "../x"}, {"name": "a b"}, {"name": ""},
    {"subnet": ["fd00::/64"]},          # IPv6 without --ipv6
    {"subnet": ["not-a-subnet"]}, {"opt": ["novalue"]}, {"opt": ["=v"]},
])
def test_record_refuses_bad_input(kw):
    with pytest.raises((ValueError, InvalidRequest)):
        cmd._record(args(**kw))


class FakeNetwork:
    def __init__(self, client, name, label, fail=False, rev=None,
                 containers=None, attrs=None):
        self.client, self.name, self.fail = client, name, fail
        labels = {LABEL: label}
        if rev is not None:
            labels[REV_LABEL] = rev
        self.attrs = dict(attrs or {}, Labels=labels)   # as listed
        self.containers = containers or {}

    def reload(self):      # inspect: the containers too
        self.attrs = dict(self.attrs, Containers=self.containers)

    def remove(self):
        if self.fail or self.containers:
            raise docker.errors.APIError("has active endpoints")
        self.client.removed.append(self.name)
        self.client.existing.remove(self)


class FakeClient:
    """existing: (name, fail) or (name, fail, rev) per labelled network."""

    def __init__(self, existing=(), fail_create=False):
        self.created, self.removed = [], []
        self.fail_create = fail_create
        self.networks = types.SimpleNamespace(list=self._list,
                                              create=self._create)
        self.existing = [FakeNetwork(self, e[0], e[0], *e[1:])
                         for e in existing]

    def _list(self, filters):
        assert filters == {"label": LABEL}
        return list(self.existing)

    def _create(self, name, **kw):
        if self.fail_create:
            raise docker.errors.APIError("plugin not found")
        self.created.append((name, kw))
        labels = kw["labels"]
        self.existing.append(FakeNetwork(self, name, labels[LABEL],
                                         rev=labels[REV_LABEL]))

    def close(self):
        pass


def _bare(client):
    rec = DeclaredNetworks.__new__(DeclaredNetworks)
    rec.docker_host, rec.driver_name = "unix:///x.sock", "ovsgre"
    return rec


RECORD = {"name": "decl", "subnets": ["198.19.210.0/24"], "ipv6": False,
          "internal": False, "options": {"k": "v"}}
WANTED = {"decl": parse_declared(PREFIX + "decl", RECORD, PREFIX)}


def test_creates_missing_network_with_ovsgre_drivers(monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is True
    (name, kw), = client.created
    assert name == "decl" and kw["driver"] == "ovsgre"
    assert kw["ipam"]["Driver"] == "ovsgre"
    assert kw["ipam"]["Options"] == {"ovsgre.network": "decl"}
    assert kw["ipam"]["Config"][0]["Subnet"] == "198.19.210.0/24"
    assert kw["options"] == {"k": "v", "ovsgre.network": "decl"}
    assert kw["labels"] == {LABEL: "decl", REV_LABEL:
                            revision(RECORD)}


def test_removes_labelled_network_no_longer_declared(monkeypatch):
    client = FakeClient(existing=[("old", False), ("decl", False,
                                  revision(RECORD))])
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is True
    assert client.removed == ["old"] and client.created == []


def test_changed_record_recreates_idle_network(monkeypatch):
    """rm + create with other subnets (or both merged into one watch
    update): the name is still there, its revision label is not."""
    client = FakeClient(existing=[("decl", False, "0123456789abcdef")])
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is True
    assert client.removed == ["decl"]
    (name, kw), = client.created
    assert kw["labels"][REV_LABEL] == \
        revision(RECORD)
    assert kw["ipam"]["Config"][0]["Subnet"] == "198.19.210.0/24"
    # converged: the next pass does nothing
    assert _bare(client)._apply(WANTED) is True
    assert client.removed == ["decl"] and len(client.created) == 1


def test_changed_record_waits_for_containers(monkeypatch, caplog):
    client = FakeClient(existing=[("decl", False, "0123456789abcdef",
                                   {"c0ffee" * 10: {"Name": "web1"}})])
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is False      # retried later
    assert client.removed == [] and client.created == []
    assert "decl changed in etcd" in caplog.text and "web1" in caplog.text
    client.existing[0].containers = {}                # they left
    assert _bare(client)._apply(WANTED) is True
    assert client.removed == ["decl"] and len(client.created) == 1


@pytest.mark.parametrize("subnet,recreated", [("198.19.210.0/24", False),
                                              ("198.19.99.0/24", True)])
def test_network_from_before_revision_labels(monkeypatch, subnet,
                                             recreated):
    attrs = {"IPAM": {"Config": [{"Subnet": subnet}]}, "Internal": False,
             "EnableIPv6": False,
             "Options": {"k": "v", "ovsgre.network": "decl"}}
    client = FakeClient(existing=[("decl", False, None, None, attrs)])
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is True
    assert bool(client.created) is recreated
    assert client.removed == (["decl"] if recreated else [])


class QuietKV:
    """Serves the declared records once; its watch stream stays silent."""

    def __init__(self, items):
        self.items = items
        self.closed = threading.Event()

    def list_with_revision(self, prefix):
        return dict(self.items), 1

    def watch_stream(self, prefix, revision):
        closed = self.closed
        return types.SimpleNamespace(
            iter_lines=lambda chunk_size=None: iter(
                () if closed.wait() else ()), close=lambda: None)


def wait_until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_resync_repairs_hand_removed_network(monkeypatch):
    """No etcd event: the periodic pass re-creates a network removed with
    `docker network rm`, and nothing calls Docker before the start delay."""
    monkeypatch.setattr(declared_networks, "START_DELAY", 0.3)
    monkeypatch.setattr(declared_networks, "RESYNC", 0.2)
    client, opened = FakeClient(), []
    monkeypatch.setattr(docker, "DockerClient",
                        lambda **kw: opened.append(time.monotonic())
                        or client)
    kv = QuietKV({PREFIX + "decl": RECORD})
    rec = DeclaredNetworks(kv, "unix:///x.sock", "ovsgre")
    start = time.monotonic()
    rec.begin()
    try:
        wait_until(lambda: len(client.created) == 1)
        assert opened[0] - start >= 0.3
        client.existing.clear()                 # docker network rm decl
        wait_until(lambda: len(client.created) == 2)
        assert client.created[1][0] == "decl"
    finally:
        rec.stop()
        kv.closed.set()


def test_stop_ends_the_watch_and_the_thread_and_a_start_not_yet_due(
        monkeypatch):
    """The plugin stops every background part on a clean exit: a stopped
    reconciler leaves no thread, no watch, and never calls Docker."""
    monkeypatch.setattr(declared_networks, "START_DELAY", 0.0)
    client = FakeClient()
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    kv = QuietKV({PREFIX + "decl": RECORD})
    rec = DeclaredNetworks(kv, "unix:///x.sock", "ovsgre")
    rec.begin()
    wait_until(lambda: len(client.created) == 1)
    rec.stop()
    kv.closed.set()         # the fake stream ends as a kicked one would
    rec.join(2)
    rec.watcher.join(2)
    assert not rec.is_alive() and not rec.watcher.is_alive()
    monkeypatch.setattr(declared_networks, "START_DELAY", 0.2)
    early = DeclaredNetworks(QuietKV({}), "unix:///x.sock",
                                      "ovsgre")
    early.begin()
    early.stop()            # before the delayed start
    time.sleep(0.4)
    assert not early.is_alive() and not early.watcher.is_alive()


@pytest.mark.parametrize("bad", [
    "text", [1], {"name": "other", "subnets": ["198.19.1.0/24"]},
    {"name": "bad", "subnets": "198.19.1.0/24"},
    {"name": "bad", "subnets": ["not a subnet"]},
    {"name": "bad", "subnets": ["198.19.1.0/24"], "ipv6": "yes"},
    {"name": "bad", "subnets": ["198.19.1.0/24"], "options": {"k": 7}},
    {"name": "bad", "subnets": ["198.19.1.0/24"], "options": ["k=v"]},
])
def test_a_malformed_declared_record_does_not_stop_the_others(
        monkeypatch, bad, caplog):
    """Another host wrote a broken record: it is skipped (logged once)
    and every other declared network is still created."""
    monkeypatch.setattr(declared_networks, "START_DELAY", 0.0)
    client = FakeClient()
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    kv = QuietKV({PREFIX + "decl": RECORD,
                  PREFIX + "bad": bad})
    rec = DeclaredNetworks(kv, "unix:///x.sock", "ovsgre")
    rec.begin()
    try:
        wait_until(lambda: len(client.created) == 1)
        assert client.created[0][0] == "decl"
        assert list(rec.malformed.current()) == [PREFIX + "bad"]
    finally:
        rec.stop()
        kv.closed.set()
    logged = [r.getMessage() for r in caplog.records
              if "malformed" in r.getMessage()]
    assert len(logged) == 1 and logged[0].isprintable()


def test_failures_are_reported_for_retry(monkeypatch):
    client = FakeClient(existing=[("old", True)], fail_create=True)
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is False
    assert client.removed == [] and client.created == []


def test_network_command_needs_etcd(capsys):
    from ovsgre import config
    rc = cmd.run(config.from_env({}), argparse.Namespace(action="ls"))
    assert rc == 2 and "needs etcd" in capsys.readouterr().err
    assert sys.modules["ovsgre.commands.network"] is cmd
