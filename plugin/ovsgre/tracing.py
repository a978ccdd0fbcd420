"""`ovsgre trace`: what ovs-vswitchd would do with a container's packet,
in one sentence.

This module is pure: it builds the OpenFlow flow of the packet, parses
the text of `ovs-appctl ofproto/trace` and turns it, with what the
plugin's records and OVSDB say, into a Verdict.  commands/trace.py reads
the host (Docker, the store, OVSDB, ovs-vswitchd) and prints the result.
"""

import re
from dataclasses import dataclass, field
from typing import List, Optional

from .definitions import GRE_OVERHEAD, PATCH_TUN, PEER_KEY

PROTOCOLS = ("icmp", "tcp", "udp")
BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_IP = 14 + 20    # Ethernet and IPv4 headers in a traced packet's size


@dataclass(frozen=True)
class Packet:
    """What the container would send: addresses, protocol, port, size (the
    IP packet's bytes, as `ping -s` + 28 or a TCP segment + 40)."""
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    proto: str = "icmp"
    port: int = 0
    size: int = 84

    @property
    def arp(self):
        """An ARP request: what the container sends first when it has no
        ARP entry for the destination."""
        return self.proto == "arp"

    def flow(self, in_port, extra=""):
        """The flow ofproto/trace takes (in_port by name)."""
        if self.arp:
            return ",".join([f"in_port={in_port}"] + ([extra] if extra
                                                      else []) + [
                "arp", f"dl_src={self.src_mac}", f"dl_dst={BROADCAST}",
                "arp_op=1", f"arp_spa={self.src_ip}",
                f"arp_tpa={self.dst_ip}", f"arp_sha={self.src_mac}"])
        parts = [f"in_port={in_port}"] + ([extra] if extra else []) + [
            self.proto, f"dl_src={self.src_mac}", f"dl_dst={self.dst_mac}",
            f"nw_src={self.src_ip}", f"nw_dst={self.dst_ip}", "nw_ttl=64"]
        if self.proto == "icmp":
            parts.append("icmp_type=8")
        elif self.port:
            parts.append(f"tp_dst={self.port}")
        return ",".join(parts)


@dataclass
class Step:
    """One OpenFlow table visited: the bridge, table, what matched, the
    actions and what ovs-vswitchd noted ("-> ..." and ">> ...")."""
    bridge: str
    table: int
    match: str
    actions: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Where the packet goes, or where and why it is dropped."""
    outcome: str               # delivered, tunnel, flooded, dropped
    line: str                  # the one-line answer
    cause: str = ""            # for dropped/flooded: what is wrong
    peers: List[str] = field(default_factory=list)   # tunnels it takes
    key: Optional[int] = None  # GRE key on the wire
    next_hop: List[str] = field(default_factory=list)  # commands to run
    steps: List[Step] = field(default_factory=list)


_BRIDGE = re.compile(r'^bridge\("([^"]+)"\)')
_TABLE = re.compile(r"^\s*(\d+)\.\s+(.*?)(?:, priority \d+)?(?:, cookie \S+)?$")


def parse_trace(text):
    """(steps, datapath actions) from `ofproto/trace` output."""
    steps, bridge, datapath = [], "", ""
    for line in text.splitlines():
        found = _BRIDGE.match(line)
        if found:
            bridge = found.group(1)
            continue
        if line.startswith("Datapath actions:"):
            datapath = line.split(":", 1)[1].strip()
            continue
        if not bridge or not line.strip() or line.startswith("-"):
            continue
        if line.startswith(("Final flow:", "Megaflow:", "Flow:")):
            bridge = ""
            continue
        _add_line(steps, bridge, line)
    return steps, datapath


def _add_line(steps, bridge, line):
    text = line.strip()
    found = _TABLE.match(line)
    if found and line.startswith(" ") and not text.startswith(("->", ">>")) \
            and len(line) - len(line.lstrip()) <= 3:
        steps.append(Step(bridge, int(found.group(1)), found.group(2)))
    elif steps and steps[-1].bridge == bridge:
        target = steps[-1].notes if text.startswith(("->", ">>")) \
            else steps[-1].actions
        target.append(text.lstrip("->> ").strip())


def outputs(steps, bridge):
    """OpenFlow port numbers a bridge's steps output to, in order."""
    found = []
    for step in steps:
        if step.bridge == bridge:
            found += [int(a.split(":", 1)[1]) for a in step.actions
                      if re.fullmatch(r"output:\d+", a)]
    return found


def tunnel_key(steps, bridge):
    """The GRE key the tunnel bridge sets, or None."""
    for step in steps:
        if step.bridge != bridge:
            continue
        for action in step.actions:
            found = re.match(r"(?:set_field|load):(0x[0-9a-f]+|\d+)->"
                             r"(?:tun_id|NXM_NX_TUN_ID\[\])", action)
            if found:
                return int(found.group(1), 0)
    return None


def notes(steps, bridge=None):
    return [n for s in steps if bridge in (None, s.bridge) for n in s.notes]


@dataclass(frozen=True)
class Host:
    """What the verdict needs to know of this host: bridges, OpenFlow port
    numbers by name per bridge, ports (OVSDB snapshot) and the underlay's
    MTU (0: unknown)."""
    bridge: str
    tun_bridge: str
    ofports: dict              # {bridge: {ofport: port name}}
    ports: dict                # snapshot interfaces {name: {...}}
    underlay_mtu: int = 0


def port_problem(host, name):
    """Why the port `name` does not forward ("" when it does)."""
    iface = host.ports.get(name)
    if iface is None:
        return f"port {name} is not in OVSDB"
    if iface.get("error"):
        return f"port {name}: {iface['error']}"
    if not iface.get("ofport") or iface["ofport"] < 0:
        return f"port {name} has no OpenFlow port number (not in service)"
    if iface.get("link_state") == "down":
        return f"port {name} is down (its link is down, or its veth is gone)"
    return ""


def mtu_problem(host, packet, remote):
    """A packet that fits the container but not the underlay once wrapped
    in GRE ("" when it fits or the underlay MTU is unknown)."""
    if not remote or not host.underlay_mtu:
        return ""
    wrapped = packet.size + GRE_OVERHEAD
    if wrapped <= host.underlay_mtu:
        return ""
    return (f"a {packet.size}-byte packet is {wrapped} bytes in GRE, more "
            f"than the underlay's MTU {host.underlay_mtu}: dropped on the "
            "way (lower the network's MTU, -o com.docker.network.driver.mtu,"
            f" to {host.underlay_mtu - GRE_OVERHEAD} or raise the "
            "underlay's)")


def tunnel_ports(host, ofports):
    """{ofport: peer address} of the tunnel bridge's GRE ports among
    ofports; a number without a port maps to None."""
    names = host.ofports.get(host.tun_bridge, {})
    out = {}
    for number in ofports:
        name = names.get(number)
        iface = host.ports.get(name) if name else None
        out[number] = (iface or {}).get("external_ids", {}).get(PEER_KEY) \
            if name else None
    return out


def int_bridge_port(host, steps, fdb_port, broadcast=False):
    """Where the integration bridge sends the frame: ("flood", None),
    ("port", name) or ("drop", note)."""
    seen = notes(steps, host.bridge)
    if broadcast or any("no learned MAC" in n for n in seen):
        return "flood", None
    if any("forwarding to learned port" in n for n in seen):
        name = host.ofports.get(host.bridge, {}).get(fdb_port)
        return ("port", name) if name else ("flood", None)
    dropped = [n for n in seen if "drop" in n.lower()]
    return "drop", (dropped[0] if dropped else "; ".join(seen))


def goes_to_tunnels(steps, host, name):
    return name == PATCH_TUN or any(s.bridge == host.tun_bridge
                                    for s in steps)


@dataclass(frozen=True)
class Local:
    """This host's side of a traced packet: the container names of the
    endpoint ports ({port: name}) and how many other container ports the
    network has here (where a flood also goes)."""
    names: dict
    others_in_network: int = 0
    owner: str = ""            # the port of the container with dst's IP


def from_container(packet, host, steps, fdb_port, local):
    """The verdict for a packet a local container sends."""
    kind, where = int_bridge_port(host, steps, fdb_port, packet.arp)
    if kind == "drop":
        return Verdict("dropped", f"dropped on {host.bridge}: {where}",
                       cause=where, steps=steps)
    if kind == "port" and where != PATCH_TUN:
        return delivered(host, where, local, steps)
    return through_tunnels(packet, host, steps, kind == "flood", local)


def unknown_text(packet, arriving=False):
    """Why a frame is flooded, said for the verdict."""
    if packet.arp and arriving:
        return f"the ARP request for {packet.dst_ip} (a broadcast) is"
    if packet.arp:
        return (f"the container has no ARP entry for {packet.dst_ip}: its "
                "ARP request (a broadcast) is")
    return f"MAC {packet.dst_mac} is unknown on this host:"


def delivered(host, port, local, steps):
    who = local.names.get(port, port)
    problem = port_problem(host, port)
    if problem:
        return Verdict("dropped", f"dropped: {problem} (container {who})",
                       cause="port down", steps=steps)
    return Verdict("delivered", f"delivered on this host to container "
                   f"{who} (port {port})", steps=steps)


def through_tunnels(packet, host, steps, flooded, local):
    """The tunnel bridge's part: which peers, which key, or why none."""
    outs = outputs(steps, host.tun_bridge)
    peers = tunnel_ports(host, outs)
    key = tunnel_key(steps, host.tun_bridge)
    unknown = unknown_text(packet) if flooded else ""
    missing = [n for n, peer in peers.items() if peer is None]
    if missing:
        return Verdict(
            "dropped", f"dropped: no tunnel: the flow table sends to "
            f"OpenFlow port {missing[0]} of {host.tun_bridge}, which is no "
            "GRE port (removed?); `ovsgre doctor` names what is missing",
            cause="no tunnel to the peer", steps=steps)
    if not peers:
        return _no_peer(host, steps, flooded, unknown, local)
    failed = [n for n in notes(steps, host.tun_bridge)
              if "routing failed" in n]
    if failed:
        return Verdict(
            "dropped", f"dropped: no route over the underlay to "
            f"{', '.join(sorted(peers.values()))} ({failed[0]})",
            cause="no route to the peer", steps=steps)
    problem = mtu_problem(host, packet, remote=True)
    if problem:
        return Verdict("dropped", f"dropped: {problem}", cause="MTU",
                       steps=steps)
    return _sent(packet, steps, sorted(set(peers.values())), key, unknown,
                 local)


def _no_peer(host, steps, flooded, unknown, local):
    """Nothing leaves the host: the network has no tunnel flow."""
    if flooded and local.others_in_network:
        line = (f"{unknown} flooded to {local.others_in_network} other "
                "container port(s) here, and to no other host: the network"
                " has no tunnel flow (no other host holds it, or the tunnel"
                " sync has not run; see `ovsgre doctor`)")
        return Verdict("flooded", line, cause="no tunnel for the network",
                       steps=steps)
    line = ("dropped: " + (unknown + " flooded, but " if unknown else "") +
            "the network has no tunnel flow to any other host (no other "
            "host holds it, or the tunnel sync has not run; see "
            "`ovsgre doctor`)")
    return Verdict("dropped", line, cause="no tunnel for the network",
                   steps=steps)


def _sent(packet, steps, peers, key, unknown, local):
    via = f"GRE key {key}" if key is not None else "GRE"
    if unknown:
        line = (f"{unknown} flooded to {', '.join(peers)} with {via}"
                + (f" and to {local.others_in_network} container port(s) "
                   "here" if local.others_in_network else ""))
        outcome, cause = "flooded", "" if packet.arp else "MAC unknown"
    else:
        line = f"sent to peer {peers[0]} with {via}"
        outcome, cause = "tunnel", ""
    return Verdict(outcome, line, cause=cause, peers=peers, key=key,
                   steps=steps)


def from_tunnel(packet, host, steps, fdb_port, local, key, peer):
    """The verdict for a packet arriving from `peer` with `key`."""
    taken = [s for s in steps if s.bridge == host.tun_bridge and
             s.table == 3]
    if not taken or any(a == "drop" for s in taken for a in s.actions):
        return Verdict(
            "dropped", f"dropped: no network with GRE key {key} on this "
            "host (it holds no container of that network, or the tunnel "
            "sync has not run)", cause="wrong network", key=key,
            steps=steps)
    kind, where = int_bridge_port(host, steps, fdb_port, packet.arp)
    if kind == "port":
        return delivered(host, where, local, steps)
    cause = "" if packet.arp else "MAC unknown"
    if kind == "flood" and local.others_in_network:
        owner = local.names.get(local.owner, "")
        return Verdict(
            "flooded", f"{unknown_text(packet, True)} flooded to the "
            "network's "
            f"{local.others_in_network} container port(s) here" +
            (f"; container {owner} has {packet.dst_ip}" if owner else
             f"; no container here has {packet.dst_ip}" if packet.arp
             else ""),
            cause=cause, key=key, steps=steps)
    return Verdict(
        "dropped", f"dropped: {unknown_text(packet, True)} flooded, but "
        "the network has no container here", cause="MAC unknown", key=key,
        steps=steps)
