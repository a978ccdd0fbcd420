"""Fixtures of the unit tier: a real LocalStore in tmp_path, a FakeDataplane,
the Driver over both, and a Flask test client over the protocol layer.

Nothing here needs root, OVS or netlink.
"""

import hashlib
import json
import os
import time

import pytest

from ovsgre.driver import Driver
from ovsgre.protocol import create_app
from ovsgre.store import LocalStore

from .fakes import FakeDataplane

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MTU = 1450


def eventually(predicate, timeout=5.0):
    """Poll predicate (a background thread's work) until true or timeout;
    its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def make_id(label):
    """A Docker-like 64-hex-digit ID, stable per label."""
    return hashlib.sha256(label.encode()).hexdigest()


@pytest.fixture(scope="session")
def dockerd_requests():
    """{call path: entry}: real dockerd 20.10 bodies (a copy kept here)."""
    with open(os.path.join(HERE, "dockerd_requests.json"),
              encoding="utf-8") as fh:
        data = json.load(fh)
    return {entry["path"]: entry for entry in data["calls"]}


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


@pytest.fixture
def store(state_dir):
    s = LocalStore(state_dir)
    yield s
    s.close()


@pytest.fixture
def fake():
    return FakeDataplane()


@pytest.fixture
def driver(store, fake):
    return Driver(store, fake, DEFAULT_MTU)


@pytest.fixture
def app(driver):
    return create_app(driver)


class Api:
    """Thin helper: POST a body the way dockerd does (no Content-Type)."""

    def __init__(self, client):
        self.client = client

    def raw(self, path, data=b"", **kwargs):
        return self.client.post(path, data=data, **kwargs)

    def call(self, name, body=None):
        path = name if name.startswith("/") else "/NetworkDriver." + name
        data = b"" if body is None else json.dumps(body).encode()
        resp = self.client.post(
            path, data=data,
            headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
        return resp.status_code, resp.get_json(silent=True), resp

    def ok(self, name, body=None):
        status, reply, resp = self.call(name, body)
        assert status == 200, (name, status, resp.get_data(as_text=True))
        return reply

    # Convenience wrappers used by many tests.
    def create_network(self, nid, generic=None, options=None, pool=None):
        opts = dict(options or {})
        if generic is not None:
            opts["com.docker.network.generic"] = generic
        body = {"NetworkID": nid, "Options": opts,
                "IPv4Data": [{"AddressSpace": "LocalDefault",
                              "Pool": pool or "10.10.0.0/24",
                              "Gateway": "10.10.0.1/24"}],
                "IPv6Data": []}
        return self.call("CreateNetwork", body)

    def create_endpoint(self, nid, eid, address="10.10.0.2/24", mac=""):
        body = {"NetworkID": nid, "EndpointID": eid,
                "Interface": {"Address": address, "AddressIPv6": "",
                              "MacAddress": mac},
                "Options": {}}
        return self.call("CreateEndpoint", body)

    def join(self, nid, eid, sandbox="/var/run/docker/netns/0123456789ab"):
        return self.call("Join", {"NetworkID": nid, "EndpointID": eid,
                                  "SandboxKey": sandbox, "Options": {}})

    def leave(self, nid, eid):
        return self.call("Leave", {"NetworkID": nid, "EndpointID": eid})

    def delete_endpoint(self, nid, eid):
        return self.call("DeleteEndpoint", {"NetworkID": nid,
                                            "EndpointID": eid})

    def delete_network(self, nid):
        return self.call("DeleteNetwork", {"NetworkID": nid})


@pytest.fixture
def api(app):
    return Api(app.test_client())


def pool_base(pool_id):
    """An IPAM PoolID without its holder token (SPACE/SUBNET[/RANGE])."""
    text, sep, token = pool_id.partition("#")
    assert sep and len(token) == 12, pool_id
    return text


def store_files(state_dir):
    """Every file under the store's record folders (the lock file aside)."""
    out = []
    for kind in ("networks", "endpoints"):
        folder = os.path.join(state_dir, kind)
        out += [f"{kind}/{n}" for n in os.listdir(folder)]
    return sorted(out)


@pytest.fixture
def no_fsync(monkeypatch):
    """Opt-in: os.fsync becomes a no-op, for tests that write the stores
    hundreds of times and assert on logic, not on durability (a reopened
    store still reads what was written: the data reaches the page cache)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
