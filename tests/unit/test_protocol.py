"""The HTTP/JSON protocol layer, driven through Flask's test client.

Bodies are the real ones dockerd 20.10 sent (tests/unit/dockerd_requests.json),
posted the way dockerd posts them: no Content-Type header.
"""

import copy
import json
import logging
import re

import pytest

from ovsgre import names
from ovsgre.errors import DataplaneError, Unavailable
from ovsgre.schema import MAX_BODY

from .conftest import make_id, store_files

NET = make_id("net")
EP = make_id("ep")

# Calls whose body has required fields, and the first required field.
REQUIRED = {
    "CreateNetwork": "NetworkID",
    "AllocateNetwork": "NetworkID",
    "DeleteNetwork": "NetworkID",
    "FreeNetwork": "NetworkID",
    "CreateEndpoint": "NetworkID",
    "EndpointOperInfo": "NetworkID",
    "DeleteEndpoint": "NetworkID",
    "Join": "NetworkID",
    "Leave": "NetworkID",
    "ProgramExternalConnectivity": "NetworkID",
    "RevokeExternalConnectivity": "NetworkID",
    "DiscoverNew": "DiscoveryType",
    "DiscoverDelete": "DiscoveryType",
}


def assert_err(resp, status, *fragments):
    """A JSON {"Err": msg} reply with this status, never an HTML page."""
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert resp.mimetype == "application/json", text
    assert "<html" not in text.lower() and "traceback" not in text.lower()
    body = json.loads(text)
    assert list(body) == ["Err"], body
    assert isinstance(body["Err"], str) and body["Err"]
    for fragment in fragments:
        assert fragment in body["Err"], (fragment, body["Err"])
    return body["Err"]


# -- handshake ------------------------------------------------------------

def test_activate_implements_network_driver(api):
    resp = api.raw("/Plugin.Activate")
    assert resp.status_code == 200
    assert resp.get_json() == {"Implements": ["NetworkDriver"]}
    assert resp.mimetype == "application/json"


def test_activate_with_json_body(api):
    resp = api.raw("/Plugin.Activate", b"{}")
    assert resp.status_code == 200
    assert resp.get_json() == {"Implements": ["NetworkDriver"]}


@pytest.mark.parametrize("data", [b"", b"{}"])
def test_get_capabilities_without_content_type(api, data):
    resp = api.raw("/NetworkDriver.GetCapabilities", data)
    # The test really sent what dockerd sends: no Content-Type at all.
    assert not resp.request.environ.get("CONTENT_TYPE")
    assert resp.status_code == 200
    assert resp.get_json() == {"Scope": "local",
                               "ConnectivityScope": "global"}


def test_json_content_type_is_accepted_too(api):
    resp = api.client.post("/NetworkDriver.CreateNetwork",
                           json={"NetworkID": NET})
    assert resp.status_code == 200
    assert resp.get_json() == {}


def test_odd_content_type_is_ignored(api):
    resp = api.client.post("/NetworkDriver.CreateNetwork",
                           data=json.dumps({"NetworkID": NET}),
                           content_type="text/plain")
    assert resp.status_code == 200


# -- every call with dockerd's real bodies --------------------------------

def _prepare(api, call, body):
    """Create what a real daemon would have created before this call."""
    nid, eid = body.get("NetworkID"), body.get("EndpointID")
    if call in ("CreateEndpoint", "EndpointOperInfo", "DeleteEndpoint",
                "Join", "Leave", "ProgramExternalConnectivity",
                "RevokeExternalConnectivity"):
        api.create_network(nid, pool="198.19.1.0/24")
    if call in ("EndpointOperInfo", "DeleteEndpoint", "Join", "Leave",
                "ProgramExternalConnectivity", "RevokeExternalConnectivity"):
        status, _, _ = api.create_endpoint(nid, eid, "198.19.1.2/24")
        assert status == 200
    if call == "Leave":
        assert api.join(nid, eid)[0] == 200


REAL_CALLS = ["CreateNetwork", "DeleteNetwork", "AllocateNetwork",
              "FreeNetwork", "CreateEndpoint", "EndpointOperInfo",
              "DeleteEndpoint", "Join", "Leave",
              "ProgramExternalConnectivity", "RevokeExternalConnectivity",
              "DiscoverNew", "GetCapabilities"]


def test_fixture_covers_every_recorded_call(dockerd_requests):
    recorded = {p.split(".", 1)[1] for p in dockerd_requests
                if p.startswith("/NetworkDriver.")}
    assert recorded == set(REAL_CALLS)
    assert "/Plugin.Activate" in dockerd_requests


@pytest.mark.parametrize("call", REAL_CALLS)
def test_real_dockerd_body(api, store, fake, dockerd_requests, call):
    body = copy.deepcopy(dockerd_requests["/NetworkDriver." + call]
                         ["request"])
    _prepare(api, call, body)
    resp = api.raw("/NetworkDriver." + call, json.dumps(body).encode())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    reply = resp.get_json()
    nid, eid = body.get("NetworkID"), body.get("EndpointID")

    if call == "CreateNetwork":
        assert reply == {}
        net = store.get("networks", nid)
        assert net["ipv4"] == [{"pool": "198.19.10.0/24",
                                "gateway": "198.19.10.128/24", "aux": []}]
        assert net["ipv6"] == [] and net["mtu"] == 1450
        assert 1 <= net["vlan"] <= 4094
    elif call == "AllocateNetwork":
        # Swarm: these options are what every node's CreateNetwork gets:
        # the user's, plus the name and key fixed once by the manager.
        from ovsgre.definitions import derive_key
        name = body["NetworkID"]
        assert reply == {"Options": {"k": "v", "ovsgre.network": name,
                                     "ovsgre.key": str(derive_key(name))}}
    elif call == "CreateEndpoint":
        assert reply == {}            # MAC given: nothing to fill
        ep = store.get("endpoints", eid)
        assert ep["mac"] == "02:42:c6:13:01:32"
        assert ep["address"] == "198.19.1.50/24"
        assert set(fake.ports) == {ep["host_if"]}
        assert set(fake.links) == {ep["host_if"], ep["peer_if"]}
    elif call == "Join":
        ep = store.get("endpoints", eid)
        assert reply == {"InterfaceName": {"SrcName": ep["peer_if"],
                                           "DstPrefix": "eth"},
                         "DisableGatewayService": True}
        assert ep["state"] == "joined"
        assert ep["sandbox"] == "/var/run/docker/netns/a8257965cbb0"
    elif call == "EndpointOperInfo":
        assert list(reply) == ["Value"]
        assert isinstance(reply["Value"], dict)
        assert reply["Value"]["state"] == "created"
    elif call == "DeleteEndpoint":
        assert reply == {}
        assert store.get("endpoints", eid) is None
        assert fake.links == {} and fake.ports == {}
    elif call == "Leave":
        assert reply == {}
        assert store.get("endpoints", eid)["state"] == "created"
    elif call == "GetCapabilities":
        assert reply == {"Scope": "local", "ConnectivityScope": "global"}
    else:
        assert reply == {}


def test_discover_delete(api):
    assert api.ok("DiscoverDelete", {"DiscoveryType": 1,
                                     "DiscoveryData": {"Self": True}}) == {}


def test_allocate_network_with_no_options_names_the_network(api):
    reply = api.ok("AllocateNetwork", {"NetworkID": "abc", "Options": None})
    assert reply["Options"]["ovsgre.network"] == "abc"
    assert 1 <= int(reply["Options"]["ovsgre.key"]) <= 16777215


def test_allocate_network_keeps_user_name_and_key(api):
    reply = api.ok("AllocateNetwork", {"NetworkID": "abc", "Options": {
        "ovsgre.network": "blue", "ovsgre.key": "77", "x": "y"}})
    assert reply == {"Options": {"ovsgre.network": "blue",
                                 "ovsgre.key": "77", "x": "y"}}


def test_allocate_network_refuses_bad_key(api):
    status, body, _ = api.call("AllocateNetwork", {"NetworkID": "abc",
                            "Options": {"ovsgre.key": "0"}})
    assert status == 400 and "ovsgre.key" in body["Err"]


def test_docker_run_rm_sequence(api, store, fake, state_dir,
                                dockerd_requests):
    """The calls of `docker run --rm` in order, real bodies, one ID set."""
    def body(call):
        b = copy.deepcopy(dockerd_requests["/NetworkDriver." + call]
                          ["request"])
        for key in ("NetworkID", "EndpointID"):
            if key in b:
                b[key] = NET if key == "NetworkID" else EP
        return b

    assert api.ok("CreateNetwork", body("CreateNetwork")) == {}
    assert api.ok("CreateEndpoint", body("CreateEndpoint")) == {}
    join = api.ok("Join", body("Join"))
    fake.move_to_sandbox(join["InterfaceName"]["SrcName"])
    assert api.ok("ProgramExternalConnectivity",
                  body("ProgramExternalConnectivity")) == {}
    for _ in range(2):
        assert "Value" in api.ok("EndpointOperInfo", body("EndpointOperInfo"))
    assert api.ok("RevokeExternalConnectivity",
                  body("RevokeExternalConnectivity")) == {}
    assert api.ok("Leave", body("Leave")) == {}
    fake.move_to_host(join["InterfaceName"]["SrcName"])
    assert api.ok("DeleteEndpoint", body("DeleteEndpoint")) == {}
    assert api.ok("DeleteNetwork", body("DeleteNetwork")) == {}
    assert fake.all_links() == set() and fake.ports == {}
    assert store_files(state_dir) == []


# -- exact reply fields ---------------------------------------------------

def test_create_endpoint_without_mac_fills_only_mac(api, store):
    api.create_network(NET)
    status, reply, _ = api.create_endpoint(NET, EP, mac="")
    assert status == 200
    assert reply == {"Interface": {"MacAddress": names.mac_for(EP)}}
    assert store.get("endpoints", EP)["mac"] == names.mac_for(EP)


@pytest.mark.parametrize("interface", [None, {}, {"Address": "10.10.0.3/24"},
                                       {"MacAddress": None}])
def test_create_endpoint_mac_absent_in_any_form(api, interface):
    api.create_network(NET)
    body = {"NetworkID": NET, "EndpointID": EP}
    if interface is not None:
        body["Interface"] = interface
    reply = api.ok("CreateEndpoint", body)
    assert reply == {"Interface": {"MacAddress": names.mac_for(EP)}}


def test_create_endpoint_with_mac_has_no_interface_key(api):
    api.create_network(NET)
    status, reply, _ = api.create_endpoint(NET, EP, mac="02:42:0a:0a:00:02")
    assert status == 200
    assert reply == {}
    assert "Interface" not in reply


def test_join_reply_field_names(api, store):
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    status, reply, _ = api.join(NET, EP)
    assert status == 200
    assert set(reply) == {"InterfaceName", "DisableGatewayService"}
    assert reply["InterfaceName"] == {
        "SrcName": store.get("endpoints", EP)["peer_if"], "DstPrefix": "eth"}
    assert reply["DisableGatewayService"] is True


def test_endpoint_oper_info_value(api, store):
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    reply = api.ok("EndpointOperInfo", {"NetworkID": NET, "EndpointID": EP})
    ep = store.get("endpoints", EP)
    net = store.get("networks", NET)
    assert reply == {"Value": {"host_if": ep["host_if"],
                               "peer_if": ep["peer_if"], "mac": ep["mac"],
                               "vlan": net["vlan"], "mtu": 1450,
                               "state": "created"}}


# -- bad input ------------------------------------------------------------

@pytest.mark.parametrize("data", [b"{not json", b"{\"NetworkID\": ",
                                  b"\xff\xfe\x00", b"NetworkID=abc"])
def test_non_json_body(api, store, data):
    err = assert_err(api.raw("/NetworkDriver.CreateNetwork", data), 400)
    assert "JSON" in err
    assert store.list("networks") == {}


@pytest.mark.parametrize("data", [b"[]", b"\"NetworkID\"", b"42", b"null",
                                  b"true"])
def test_json_that_is_not_an_object(api, data):
    assert_err(api.raw("/NetworkDriver.CreateNetwork", data), 400)


@pytest.mark.parametrize("data", [
    b"[" * 100000,
    b'{"NetworkID": "abc", "Foo": ' + b"[" * 100000 + b"]" * 100000 + b"}",
], ids=["top-level", "in-a-field"])
def test_deeply_nested_json_is_400(api, store, data):
    assert len(data) < MAX_BODY
    assert_err(api.raw("/NetworkDriver.CreateNetwork", data), 400)
    assert store.list("networks") == {}


@pytest.mark.parametrize("call,field", sorted(REQUIRED.items()))
@pytest.mark.parametrize("data", [b"", b"  \n", b"{}"])
def test_empty_body_names_missing_field(api, call, field, data):
    assert_err(api.raw("/NetworkDriver." + call, data), 400,
               "missing", field)


@pytest.mark.parametrize("call,body,field", [
    ("CreateEndpoint", {"NetworkID": NET}, "EndpointID"),
    ("Join", {"NetworkID": NET, "EndpointID": EP}, "SandboxKey"),
    ("Leave", {"EndpointID": EP}, "NetworkID"),
    ("CreateNetwork", {"NetworkID": NET, "IPv4Data": [{"Gateway": "1.1.1.1"}]},
     "IPv4Data[0].Pool"),
    ("CreateNetwork", {"NetworkID": NET, "IPv6Data": [{}]},
     "IPv6Data[0].Pool"),
    ("Join", {"NetworkID": NET, "EndpointID": EP, "SandboxKey": None},
     "SandboxKey"),
])
def test_missing_field_is_named(api, call, body, field):
    assert_err(api.call(call, body)[2], 400, "missing field " + field)


@pytest.mark.parametrize("call,body,field", [
    ("CreateNetwork", {"NetworkID": 123}, "NetworkID"),
    ("CreateNetwork", {"NetworkID": ["a"]}, "NetworkID"),
    ("CreateNetwork", {"NetworkID": NET, "Options": "x"}, "Options"),
    ("CreateNetwork", {"NetworkID": NET, "Options": []}, "Options"),
    ("CreateNetwork", {"NetworkID": NET, "IPv4Data": {}}, "IPv4Data"),
    ("CreateNetwork", {"NetworkID": NET, "IPv4Data": ["10.0.0.0/8"]},
     "IPv4Data"),
    ("CreateNetwork", {"NetworkID": NET, "IPv4Data": [{"Pool": 10}]},
     "IPv4Data[0].Pool"),
    ("CreateEndpoint", {"NetworkID": NET, "EndpointID": EP, "Interface": "x"},
     "Interface"),
    ("CreateEndpoint", {"NetworkID": NET, "EndpointID": EP,
                        "Interface": {"MacAddress": 5}},
     "Interface.MacAddress"),
    ("CreateEndpoint", {"NetworkID": NET, "EndpointID": EP,
                        "Interface": {"Address": ["10.0.0.2/24"]}},
     "Interface.Address"),
    ("Join", {"NetworkID": NET, "EndpointID": EP, "SandboxKey": 1},
     "SandboxKey"),
    ("Join", {"NetworkID": NET, "EndpointID": EP, "SandboxKey": "x" * 5000},
     "SandboxKey"),
    ("DiscoverNew", {"DiscoveryType": "1"}, "DiscoveryType"),
    ("DiscoverNew", {"DiscoveryType": True}, "DiscoveryType"),
    ("DiscoverNew", {"DiscoveryType": 1.5}, "DiscoveryType"),
])
def test_wrong_type_is_named(api, call, body, field):
    err = assert_err(api.call(call, body)[2], 400)
    assert f"field {field} must be" in err


BAD_IDS = ["../../etc/passwd", "..", "a/b", "abc;rm -rf /", "$(reboot)",
           "`id`", "a b", "a|b", "a&b", "abc'", "a\"b", "a\\b", "",
           "a" * 129, "abc-def", "abc.json", "abc\x00", "\u00e9t\u00e9"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_network_id_rejected_before_anything_happens(api, fake, state_dir,
                                                         bad):
    err = assert_err(api.call("CreateNetwork", {"NetworkID": bad})[2], 400)
    assert "NetworkID" in err
    assert store_files(state_dir) == []
    assert fake.calls == []


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_endpoint_id_rejected(api, fake, store, bad):
    api.create_network(NET)
    status, reply, resp = api.create_endpoint(NET, bad)
    assert "EndpointID" in assert_err(resp, 400)
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


@pytest.mark.parametrize("call", ["CreateNetwork", "CreateEndpoint"])
def test_id_with_trailing_newline_rejected(api, store, fake, call):
    """Regression: '$' in a regex also matches before a final newline."""
    api.create_network(NET)
    if call == "CreateNetwork":
        status, _, _ = api.call(call, {"NetworkID": "abc\n"})
    else:
        status, _, _ = api.create_endpoint(NET, "abcdef\n")
    assert status == 400
    assert len(store.list("networks")) == 1
    assert all("\n" not in name for name in fake.links)


def test_max_length_id_accepted(api):
    assert api.call("CreateNetwork", {"NetworkID": "A" * 128})[0] == 200


def test_unknown_fields_are_accepted_and_ignored(api, store):
    body = {"NetworkID": NET, "Foo": 1, "Bar": {"x": [1, 2]},
            "Options": {"com.docker.network.enable_ipv4": True,
                        "com.docker.network.enable_ipv6": False,
                        "com.docker.network.generic": {"labtest.vni": "42"}},
            "IPv4Data": [{"AddressSpace": "LocalDefault",
                          "Pool": "10.1.0.0/16", "Gateway": "10.1.0.1/16",
                          "Extra": "x"}],
            "IPv6Data": None}
    assert api.ok("CreateNetwork", body) == {}
    rec = store.get("networks", NET)
    assert "Foo" not in json.dumps(rec) and "Extra" not in json.dumps(rec)
    body = {"NetworkID": NET, "EndpointID": EP, "Foo": 1,
            "Interface": {"Address": "10.1.0.2/16", "Extra": True},
            "Options": {"com.docker.network.endpoint.ifname": "x"}}
    assert api.ok("CreateEndpoint", body) == {
        "Interface": {"MacAddress": names.mac_for(EP)}}
    assert api.ok("Join", {"NetworkID": NET, "EndpointID": EP,
                           "SandboxKey": "/x", "Foo": None,
                           "Options": {"new.option": 1}})


@pytest.mark.parametrize("path", ["/NetworkDriver.Frobnicate",
                                  "/NetworkDriver.createnetwork",
                                  "/NetworkDriver.__class__",
                                  "/Plugin.Deactivate", "/", "/foo"])
def test_unknown_call_is_json_404(api, path):
    assert_err(api.raw(path, b"{}"), 404)


@pytest.mark.parametrize("path", ["/IpamDriver.RequestPool",
                                  "/IpamDriver.GetCapabilities"])
def test_ipam_calls_without_ipam_are_404_with_ipam_error_key(api, path):
    resp = api.raw(path, b"{}")
    assert resp.status_code == 404
    reply = resp.get_json()
    assert sorted(reply) == ["Err", "Error"] and reply["Err"] == \
        reply["Error"]


def test_unknown_network_driver_call_names_the_call(api):
    assert_err(api.raw("/NetworkDriver.Frobnicate", b"{}"), 404,
               "NetworkDriver.Frobnicate")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
@pytest.mark.parametrize("path", ["/Plugin.Activate",
                                  "/NetworkDriver.GetCapabilities",
                                  "/NetworkDriver.CreateNetwork"])
def test_wrong_method_is_json_405(api, method, path):
    assert_err(getattr(api.client, method)(path), 405)


def test_oversized_body_is_json_413(api, store):
    body = json.dumps({"NetworkID": NET,
                       "Foo": "x" * MAX_BODY}).encode()
    assert len(body) > MAX_BODY
    assert_err(api.raw("/NetworkDriver.CreateNetwork", body), 413)
    assert store.list("networks") == {}


def test_body_just_under_limit_accepted(api):
    pad = MAX_BODY - 200
    body = json.dumps({"NetworkID": NET, "Foo": "x" * pad}).encode()
    assert len(body) < MAX_BODY
    assert api.raw("/NetworkDriver.CreateNetwork", body).status_code == 200


# -- driver failures ------------------------------------------------------

def test_unexpected_exception_is_json_500(api, fake, store):
    api.create_network(NET)
    fake.fail("plug", RuntimeError("boom"))
    err = assert_err(api.create_endpoint(NET, EP)[2], 500, "boom",
                     "CreateEndpoint")
    assert "RuntimeError" in err
    # The half-made endpoint was undone.
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}
    # And the plugin still works afterwards.
    assert api.create_endpoint(NET, EP)[0] == 200


def test_dataplane_error_is_json_500(api, fake):
    api.create_network(NET)
    fake.fail("plug", DataplaneError("OVSDB did not answer within 10s"))
    assert_err(api.create_endpoint(NET, EP)[2], 500, "OVSDB did not answer")


def test_unavailable_is_json_503(api, fake):
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    fake.fail("has_host_link", Unavailable("store gone"))
    assert_err(api.join(NET, EP)[2], 503, "store gone")


def test_exception_in_delete_is_json_500_and_leaves_a_deleting_record(
        api, fake, store):
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    fake.fail("unplug", RuntimeError("netlink hiccup"))
    assert_err(api.delete_endpoint(NET, EP)[2], 500, "netlink hiccup")
    # Marked for the reconciler, and no longer visible to Docker.
    assert store.get("endpoints", EP)["state"] == "deleting"
    assert_err(api.join(NET, EP)[2], 404)
    # A retry finishes the job.
    assert api.delete_endpoint(NET, EP)[:2] == (200, {})
    assert store.list("endpoints") == {} and fake.links == {}


# -- unknown objects ------------------------------------------------------

def test_create_endpoint_on_unknown_network_is_404(api, fake, store):
    assert_err(api.create_endpoint(NET, EP)[2], 404, NET)
    assert store.list("endpoints") == {} and fake.calls == []


def test_join_unknown_endpoint_is_404(api):
    api.create_network(NET)
    assert_err(api.join(NET, EP)[2], 404, EP)


def test_join_unknown_network_is_404(api):
    assert_err(api.join(NET, EP)[2], 404)


def test_join_endpoint_on_other_network_is_404(api):
    other = make_id("other")
    api.create_network(NET)
    api.create_network(other, pool="10.20.0.0/24")
    api.create_endpoint(NET, EP)
    assert_err(api.join(other, EP)[2], 404)


def test_oper_info_unknown_endpoint_is_404(api):
    api.create_network(NET)
    assert_err(api.call("EndpointOperInfo", {"NetworkID": NET,
                                             "EndpointID": EP})[2], 404)


@pytest.mark.parametrize("call", ["Leave", "DeleteEndpoint"])
def test_unknown_endpoint_teardown_is_ok(api, fake, call):
    for nid in (NET, make_id("nowhere")):
        if nid == NET:
            api.create_network(NET)
        status, reply, _ = api.call(call, {"NetworkID": nid,
                                           "EndpointID": EP})
        assert (status, reply) == (200, {})
    assert fake.count("unplug") == 0


def test_unknown_network_delete_is_ok(api, fake):
    assert api.delete_network(NET)[:2] == (200, {})
    assert fake.calls == []


def test_delete_endpoint_with_wrong_network_leaves_it_alone(api, store,
                                                            fake):
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    assert api.delete_endpoint(make_id("x"), EP)[:2] == (200, {})
    assert store.get("endpoints", EP) is not None
    assert len(fake.links) == 2


def test_empty_body_names_dockerds_resend_without_body(api, fake, store):
    """dockerd re-sends a call whose connection dropped without its body;
    the user must learn why, not just 'missing field NetworkID'."""
    api.create_network(NET)
    before = store_files(store.root)
    for call in ("CreateEndpoint", "Join", "Leave", "DeleteEndpoint",
                 "CreateNetwork"):
        resp = api.raw("/NetworkDriver." + call, b"")
        assert_err(resp, 400, "empty request body", "run the command again")
    assert store_files(store.root) == before
    # an empty object is not the resend: it gets the field message
    assert_err(api.raw("/NetworkDriver.Join", b"{}"), 400,
               "missing field NetworkID")


# -- one log line per call ---------------------------------------------------

LOG_NET, LOG_EP = "a1" * 32, "b2" * 32
LINE = re.compile(r"^(\w+)((?: \w+=\S+)*) (ok|failed|rejected) in "
                  r"(\d+\.\d) ms(?:: (.+))?$")


def _lines(caplog):
    return [LINE.match(r.getMessage()) for r in caplog.records
            if r.name == "ovsgre.calls"]


def test_each_call_logs_call_ids_and_duration(api, caplog):
    caplog.set_level(logging.INFO, logger="ovsgre.calls")
    api.create_network(LOG_NET)
    api.create_endpoint(LOG_NET, LOG_EP)
    (net_line, ep_line) = _lines(caplog)
    assert net_line and ep_line, [r.getMessage() for r in caplog.records]
    assert net_line.group(1, 3) == ("CreateNetwork", "ok")
    assert net_line.group(2) == f" network={LOG_NET[:12]}"
    assert ep_line.group(1, 3) == ("CreateEndpoint", "ok")
    assert ep_line.group(2) == (f" network={LOG_NET[:12]} "
                                f"endpoint={LOG_EP[:12]}")
    assert float(ep_line.group(4)) >= 0


def test_failed_call_logs_the_reason(api, caplog):
    caplog.set_level(logging.INFO, logger="ovsgre.calls")
    api.create_endpoint(LOG_NET, LOG_EP)           # no such network
    (line,) = _lines(caplog)
    assert line.group(1, 3) == ("CreateEndpoint", "failed")
    assert f"endpoint={LOG_EP[:12]}" in line.group(2)
    assert "not found" in line.group(5)
    assert caplog.records[-1].levelno == logging.WARNING


def test_rejected_call_logs_ids_duration_and_reason(api, caplog):
    caplog.set_level(logging.INFO, logger="ovsgre.calls")
    api.call("Join", {"NetworkID": LOG_NET, "EndpointID": LOG_EP})
    api.raw("/NetworkDriver.Leave", data=b"{not json")
    api.call("Leave", {"NetworkID": "bad\nid", "EndpointID": 7})
    join, leave, hostile = _lines(caplog)
    assert join.group(1, 3) == ("Join", "rejected")
    assert join.group(2) == (f" network={LOG_NET[:12]} "
                             f"endpoint={LOG_EP[:12]}")
    assert "SandboxKey" in join.group(5)
    assert leave.group(1, 3) == ("Leave", "rejected")
    assert "not valid JSON" in leave.group(5)
    # no newline (log injection) nor non-text makes it into the line
    assert hostile and hostile.group(2) == ""
