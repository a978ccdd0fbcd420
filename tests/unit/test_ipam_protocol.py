"""IpamDriver calls over HTTP (Flask test client), with the bodies dockerd
20.10 really sent (tests/unit/dockerd_ipam_requests.json).

The reference PoolIDs belong to the plugin that recorded them; every test
here uses the PoolID from its own RequestPool reply.  IPAM errors are
{"Error": msg} (dockerd's IPAM client ignores "Err").
"""

import copy
import json
import os

import pytest

from ovsgre.cluster.kv import LocalKV
from ovsgre.errors import Unavailable
from ovsgre.ipam import Ipam
from ovsgre.protocol import create_app

from .conftest import HERE, Api, make_id, pool_base as base

pytestmark = pytest.mark.usefixtures("no_fsync")

GW = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture(scope="session")
def ipam_requests():
    with open(os.path.join(HERE, "dockerd_ipam_requests.json"),
              encoding="utf-8") as fh:
        data = json.load(fh)
    return {entry["path"]: entry for entry in data["calls"]}


def body_of(ipam_requests, call, **changes):
    body = copy.deepcopy(ipam_requests["/IpamDriver." + call]["request"])
    body.update(changes)
    return body


@pytest.fixture
def kv(tmp_path):
    return LocalKV(str(tmp_path / "cluster"))


@pytest.fixture
def ipam(kv):
    return Ipam(kv, "192.0.2.1")


@pytest.fixture
def iapi(driver, ipam):
    return Api(create_app(driver, ipam).test_client())


def ipam_call(api, call, body=None):
    return api.call("/IpamDriver." + call, body)


def ipam_ok(api, call, body=None):
    status, reply, resp = ipam_call(api, call, body)
    assert status == 200, (call, status, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json"
    assert "Error" not in reply and "Err" not in reply
    return reply


def assert_ipam_err(result, status, *fragments):
    code, reply, resp = result
    text = resp.get_data(as_text=True)
    assert code == status, text
    assert resp.mimetype == "application/json", text
    assert "<html" not in text.lower() and "traceback" not in text.lower()
    # "Error" for the IPAM client, "Err" for dockerd's plugin client,
    # which on a non-200 reply reads only that key
    assert sorted(reply) == ["Err", "Error"], reply
    assert reply["Err"] == reply["Error"]
    assert isinstance(reply["Error"], str) and reply["Error"]
    for fragment in fragments:
        assert fragment in reply["Error"], (fragment, reply["Error"])
    return reply["Error"]


def pool(api, cidr, sub="", options=None, v6=False):
    return ipam_ok(api, "RequestPool", {
        "AddressSpace": "ovsgre-local", "Pool": cidr, "SubPool": sub,
        "Options": options if options is not None else {},
        "V6": v6})["PoolID"]


# -- handshake ------------------------------------------------------------

def test_fixture_holds_the_ipam_calls(ipam_requests):
    assert {p.split(".", 1)[1] for p in ipam_requests
            if p.startswith("/IpamDriver.")} == {
        "GetCapabilities", "GetDefaultAddressSpaces", "RequestPool",
        "ReleasePool", "RequestAddress", "ReleaseAddress"}


def test_activate_lists_both_drivers(iapi, ipam_requests):
    resp = iapi.raw("/Plugin.Activate")
    assert resp.status_code == 200
    assert resp.get_json() == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert resp.get_json() == ipam_requests["/Plugin.Activate"]["response"]


def test_capabilities(iapi, ipam_requests):
    want = {"RequiresMACAddress": False, "RequiresRequestReplay": False}
    assert ipam_ok(iapi, "GetCapabilities") == want
    assert ipam_ok(iapi, "GetCapabilities",
                   body_of(ipam_requests, "GetCapabilities")) == want


def test_default_address_spaces(iapi, ipam_requests):
    reply = ipam_ok(iapi, "GetDefaultAddressSpaces",
                    body_of(ipam_requests, "GetDefaultAddressSpaces"))
    assert set(reply) == {"LocalDefaultAddressSpace",
                          "GlobalDefaultAddressSpace"}
    assert all(isinstance(v, str) and v for v in reply.values())


# -- the recorded bodies ------------------------------------------------------

def test_real_request_pool(iapi, ipam_requests):
    body = body_of(ipam_requests, "RequestPool")
    assert body["SubPool"] == "198.19.5.128/25"   # the recorded --ip-range
    reply = ipam_ok(iapi, "RequestPool", body)
    assert base(reply.pop("PoolID")) == \
        "default/198.19.5.0/24/198.19.5.128/25"
    assert reply == {"Pool": "198.19.5.0/24", "Data": {}}


def test_real_gateway_request(iapi, ipam_requests):
    pid = ipam_ok(iapi, "RequestPool",
                  body_of(ipam_requests, "RequestPool"))["PoolID"]
    body = body_of(ipam_requests, "RequestAddress", PoolID=pid)
    assert body["Options"] == GW and body["Address"] == "198.19.5.1"
    want = {"Address": "198.19.5.1/24", "Data": {}}
    assert ipam_ok(iapi, "RequestAddress", body) == want
    assert ipam_ok(iapi, "RequestAddress", body) == want     # idempotent
    # a container gets the first address of the --ip-range
    auto = body_of(ipam_requests, "RequestAddress", PoolID=pid, Address="",
                   Options=None)
    assert ipam_ok(iapi, "RequestAddress", auto) == {
        "Address": "198.19.5.128/24", "Data": {}}
    del auto["Options"]
    assert ipam_ok(iapi, "RequestAddress", auto)["Address"] == \
        "198.19.5.129/24"


def test_real_release_address_and_pool(iapi, ipam_requests, kv):
    rp = body_of(ipam_requests, "RequestPool", Pool="198.19.102.0/24",
                 SubPool="")
    pid = ipam_ok(iapi, "RequestPool", rp)["PoolID"]
    assert base(pid) == "default/198.19.102.0/24"
    ipam_ok(iapi, "RequestAddress", {"PoolID": pid, "Address": "",
                                     "Options": GW})
    assert ipam_ok(iapi, "RequestAddress", {"PoolID": pid, "Address": "",
                                            "Options": None}) == {
        "Address": "198.19.102.2/24", "Data": {}}
    release = body_of(ipam_requests, "ReleaseAddress", PoolID=pid)
    assert release["Address"] == "198.19.102.2"
    assert ipam_ok(iapi, "ReleaseAddress", release) == {}
    assert ipam_ok(iapi, "ReleaseAddress", release) == {}     # retry
    # in turn: the address just released is not the next one
    assert ipam_ok(iapi, "RequestAddress", {"PoolID": pid})["Address"] == \
        "198.19.102.3/24"
    assert ipam_ok(iapi, "ReleasePool", body_of(
        ipam_requests, "ReleasePool", PoolID=pid)) == {}
    assert kv.list("/ovsgre/ipam/") == {}


def test_docker_network_lifecycle(iapi):
    """create (pool + gateway), run two containers, rm, network rm."""
    pid = pool(iapi, "10.30.0.0/24")
    assert ipam_ok(iapi, "RequestAddress", {
        "PoolID": pid, "Address": "", "Options": GW})["Address"] == \
        "10.30.0.1/24"
    a = ipam_ok(iapi, "RequestAddress", {"PoolID": pid, "Address": "",
                                         "Options": None})["Address"]
    b = ipam_ok(iapi, "RequestAddress", {"PoolID": pid,
                                         "Address": "10.30.0.50",
                                         "Options": {}})["Address"]
    assert (a, b) == ("10.30.0.2/24", "10.30.0.50/24")
    for address in ("10.30.0.2", "10.30.0.50", "10.30.0.1"):
        ipam_ok(iapi, "ReleaseAddress", {"PoolID": pid, "Address": address})
    ipam_ok(iapi, "ReleasePool", {"PoolID": pid})
    # the subnet is free again (no overlap conflict)
    assert base(pool(iapi, "10.30.0.0/16")) == "default/10.30.0.0/16"


def test_named_space_and_ipv6(iapi):
    assert base(pool(iapi, "10.31.0.0/24")) == "default/10.31.0.0/24"
    assert base(pool(iapi, "10.31.0.0/24",
                     options={"ovsgre.network": "red"})) == "red/10.31.0.0/24"
    pid6 = pool(iapi, "fd00:198:18:30::/64", v6=True)
    assert base(pid6) == "default/fd00:198:18:30::/64"
    assert ipam_ok(iapi, "RequestAddress", {
        "PoolID": pid6, "Options": GW})["Address"] == "fd00:198:18:30::1/64"
    assert ipam_ok(iapi, "RequestAddress", {"PoolID": pid6})["Address"] \
        == "fd00:198:18:30::2/64"


# -- errors -------------------------------------------------------------------

def test_missing_pool_id(iapi):
    for call in ("RequestAddress", "ReleaseAddress", "ReleasePool"):
        assert_ipam_err(ipam_call(iapi, call, {"Address": "10.0.0.2"}), 400,
                        "PoolID")


def test_release_address_missing_address(iapi):
    pid = pool(iapi, "10.32.0.0/24")
    assert_ipam_err(ipam_call(iapi, "ReleaseAddress", {"PoolID": pid}),
                    400, "Address")


@pytest.mark.parametrize("address,fragment", [
    ("junk", "not an address"), ("10.99.0.5", "not in 10.32.0.0/24"),
    ("fd00::5", "not in")])
def test_bad_address(iapi, address, fragment):
    pid = pool(iapi, "10.32.0.0/24")
    assert_ipam_err(ipam_call(iapi, "RequestAddress", {
        "PoolID": pid, "Address": address}), 400, fragment)
    assert_ipam_err(ipam_call(iapi, "RequestAddress", {
        "PoolID": pid, "Address": address, "Options": GW}), 400, fragment)


@pytest.mark.parametrize("raw", [b"{nope", b'{"PoolID": ', b"\xff\xfe"])
def test_bad_json(iapi, raw):
    for call in ("RequestPool", "RequestAddress", "ReleasePool"):
        resp = iapi.raw("/IpamDriver." + call, data=raw)
        assert_ipam_err((resp.status_code, resp.get_json(silent=True), resp),
                        400, "JSON")


def test_non_object_body(iapi):
    assert_ipam_err(ipam_call(iapi, "RequestPool", ["10.0.0.0/24"]), 400,
                    "object")


@pytest.mark.parametrize("field,value", [("V6", "yes"), ("Pool", 24),
                                         ("Options", "x"),
                                         ("SubPool", ["a"])])
def test_wrong_field_types(iapi, field, value):
    body = {"Pool": "10.33.0.0/24", field: value}
    assert_ipam_err(ipam_call(iapi, "RequestPool", body), 400, field)


def test_request_pool_errors(iapi):
    assert_ipam_err(ipam_call(iapi, "RequestPool", {}), 400, "--subnet")
    assert_ipam_err(ipam_call(iapi, "RequestPool", {
        "Pool": "10.33.0.0/24", "V6": True}), 400, "IPv6")
    assert_ipam_err(ipam_call(iapi, "RequestPool", {
        "Pool": "10.33.0.0/24", "SubPool": "10.34.0.0/25"}), 400, "SubPool")
    assert_ipam_err(ipam_call(iapi, "RequestPool", {
        "Pool": "10.33.0.0/24", "Options": {"ovsgre.network": "a b"}}),
        400, "ovsgre.network")


def test_conflicts_are_409(iapi):
    pid = pool(iapi, "10.35.0.0/30")
    assert_ipam_err(ipam_call(iapi, "RequestPool", {"Pool": "10.35.0.0/16"}),
                    409, "--ipam-opt")
    ipam_ok(iapi, "RequestAddress", {"PoolID": pid, "Options": GW})
    assert_ipam_err(ipam_call(iapi, "RequestAddress", {
        "PoolID": pid, "Address": "10.35.0.1"}), 409, "10.35.0.1")
    ipam_ok(iapi, "RequestAddress", {"PoolID": pid})
    assert_ipam_err(ipam_call(iapi, "RequestAddress", {"PoolID": pid}),
                    409, "no free address")


@pytest.mark.parametrize("pool_id", ["nope", "labtest/labtest-local/"
                                     "198.19.5.0/24", "default/10.0.0.0"])
def test_unknown_pool_id_404(iapi, pool_id):
    for call, extra in (("RequestAddress", {}),
                        ("ReleaseAddress", {"Address": "10.0.0.2"}),
                        ("ReleasePool", {})):
        assert_ipam_err(ipam_call(iapi, call, dict(extra, PoolID=pool_id)),
                        404, "PoolID")


def test_unknown_ipam_call(iapi):
    assert_ipam_err(ipam_call(iapi, "Bogus", {}), 404, "IpamDriver.Bogus")


def test_unexpected_failure_is_500_error(iapi, ipam, monkeypatch):
    def boom(*args):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(ipam, "request_pool", boom)
    assert_ipam_err(ipam_call(iapi, "RequestPool", {"Pool": "10.0.0.0/24"}),
                    500, "RequestPool", "kaboom")


def test_store_unavailable_is_503_error(iapi, ipam, monkeypatch):
    def down(*args):
        raise Unavailable("etcd unreachable (create): a: refused")
    monkeypatch.setattr(ipam, "request_address", down)
    assert_ipam_err(ipam_call(iapi, "RequestAddress", {"PoolID": "x"}), 503,
                    "etcd unreachable")


def test_network_driver_keeps_err_key(iapi):
    status, reply, _ = iapi.call("CreateNetwork", {"Options": {}})
    assert status == 400 and list(reply) == ["Err"]
    assert "NetworkID" in reply["Err"]


def test_network_driver_still_works(iapi, store):
    nid = make_id("ipam-net")
    status, _, _ = iapi.create_network(nid)
    assert status == 200 and store.get("networks", nid) is not None


# -- without an IPAM driver ------------------------------------------------

def test_without_ipam_no_ipam_paths(api):
    assert api.raw("/Plugin.Activate").get_json() == {
        "Implements": ["NetworkDriver"]}
    for call in ("GetCapabilities", "RequestPool", "RequestAddress",
                 "Bogus"):
        status, _, _ = ipam_call(api, call, {"Pool": "10.0.0.0/24"})
        assert status == 404
