"""Declared networks: the CLI's records and the reconciler's Docker calls."""

import argparse
import sys
import types

import docker
import pytest

from ovsgre import declared
from ovsgre.commands import network as cmd
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
    def __init__(self, client, name, label, fail=False):
        self.client, self.name, self.fail = client, name, fail
        self.attrs = {"Labels": {declared.LABEL: label}}

    def remove(self):
        if self.fail:
            raise docker.errors.APIError("has active endpoints")
        self.client.removed.append(self.name)


class FakeClient:
    def __init__(self, existing=(), fail_create=False):
        self.created, self.removed = [], []
        self.fail_create = fail_create
        self.networks = types.SimpleNamespace(list=self._list,
                                              create=self._create)
        self.existing = [FakeNetwork(self, n, n, fail) for n, fail in
                         existing]

    def _list(self, filters):
        assert filters == {"label": declared.LABEL}
        return self.existing

    def _create(self, name, **kw):
        if self.fail_create:
            raise docker.errors.APIError("plugin not found")
        self.created.append((name, kw))

    def close(self):
        pass


def _bare(client):
    rec = declared.DeclaredNetworks.__new__(declared.DeclaredNetworks)
    rec.docker_host, rec.driver_name = "unix:///x.sock", "ovsgre"
    return rec


WANTED = {"decl": {"name": "decl", "subnets": ["198.19.210.0/24"],
                   "ipv6": False, "internal": False, "options": {"k": "v"}}}


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
    assert kw["labels"] == {declared.LABEL: "decl"}


def test_removes_labelled_network_no_longer_declared(monkeypatch):
    client = FakeClient(existing=[("old", False), ("decl", False)])
    monkeypatch.setattr(docker, "DockerClient", lambda **kw: client)
    assert _bare(client)._apply(WANTED) is True
    assert client.removed == ["old"] and client.created == []


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
