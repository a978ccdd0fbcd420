"""Facts derived from an observation: ovsgre's tunnel and endpoint ports,
one port's state, the peers expected and the flow table expected."""

from .. import OWNER
from ..definitions import (OWNER_KEY, PATCH_INT, PEER_KEY, ROLE_KEY,
                           ROLE_TUNNEL)


def tunnel_ports(obs):
    """{port name: {peer, ofport, error}} of GRE ports ovsgre made on the
    tunnel bridge (role=tunnel)."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb:
        return {}
    bridge = ovsdb["bridges"].get(obs["tunnel_bridge"])
    if not bridge:
        return {}
    out = {}
    for name in bridge["ports"]:
        port = ovsdb["ports"].get(name) or {}
        if port.get("external_ids", {}).get(ROLE_KEY) != ROLE_TUNNEL:
            continue
        iface = ovsdb["interfaces"].get(name) or {}
        peer = port["external_ids"].get(PEER_KEY) or \
            iface.get("options", {}).get("remote_ip")
        out[name] = {"peer": peer, "ofport": iface.get("ofport"),
                     "remote_ip": iface.get("options", {}).get("remote_ip"),
                     "error": iface.get("error")}
    return out


def port_of(obs, name):
    """{bridge, tag, ofport, external_ids} of an OVS port, or None."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb or name not in ovsdb["ports"]:
        return None
    port = ovsdb["ports"][name]
    iface = ovsdb["interfaces"].get(name) or {}
    return {"bridge": port["bridge"], "tag": port["tag"],
            "ofport": iface.get("ofport"), "error": iface.get("error"),
            "external_ids": port["external_ids"]}


def expected_flows(obs):
    """What build_flows computes from the tunnel ports present and the
    networks in the store; None when it cannot be computed."""
    from ..dataplane.tunnels import build_flows
    patch = port_of(obs, PATCH_INT)
    store = obs.get("store")
    if not patch or not patch["ofport"] or patch["ofport"] < 1 or not store:
        return None
    tunnels = {p["peer"]: p["ofport"] for p in tunnel_ports(obs).values()
               if p["peer"] and p["ofport"] and p["ofport"] > 0}
    networks = {n["vlan"]: n["key"] for n in store["networks"].values()
                if n.get("key") and n.get("vlan")}
    return build_flows(patch["ofport"], tunnels, networks)


def expected_peers(obs):
    """Peers this host should have tunnels to: the registry's, or (etcd
    unknown) the ones it has ports for, like the plugin keeps them."""
    if obs["peers"] is not None:
        return set(obs["peers"])
    return {p["peer"] for p in tunnel_ports(obs).values() if p["peer"]}


def owned_endpoint_ports(obs):
    """{name: port} of ports with owner=ovsgre and the endpoint role."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb:
        return {}
    return {name: port for name, port in ovsdb["ports"].items()
            if port["external_ids"].get(OWNER_KEY) == OWNER and
            port["external_ids"].get(ROLE_KEY, "endpoint") == "endpoint"}

