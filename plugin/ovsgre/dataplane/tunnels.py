"""GRE tunnels: a tunnel bridge beside the integration bridge.

    containers ── br-ovsgre (NORMAL, one local VLAN per network)
                      │ patch (trunk)
                  br-ovsgre-tun (our OpenFlow table, fail_mode=secure)
                      │ one GRE port per peer, key=flow
                   underlay

The integration bridge switches locally with VLAN tags.  The tunnel bridge
maps local VLAN <-> GRE key (one key per network, flow-based, so tunnel
ports grow with peers, not peers x networks) and enforces split horizon:
what arrives from a tunnel goes only to the integration bridge, never to
another tunnel, so a full mesh of any size is loop-free and one broadcast
reaches each other host exactly once.  Unicast destinations are learned per
(VLAN, MAC) from tunnel traffic; unknown ones are flooded like broadcasts.

The table is computed whole (`build_flows`) and installed in one atomic
step with `ovs-ofctl --bundle replace-flows`.
"""

import logging
import os
import subprocess
import time

from ..config import DEFAULTS
from ..definitions import (OWNER, OWNER_KEY, PATCH_INT, PATCH_TUN, PEER_KEY,
                           ROLE_KEY, ROLE_PATCH, ROLE_TUNNEL,
                           tunnel_port_name, valid_key)
from ..errors import DataplaneError

LOG = logging.getLogger(__name__)

LOCAL_KEY = "ovsgre_local_ip"
LEARN = ("learn(table=2,hard_timeout=300,priority=1,"
         "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
         "load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],"
         "output:OXM_OF_IN_PORT[])")
LEARNED_TABLE = 2           # where LEARN puts the MACs behind tunnels
LEARN_GROUP = "NXM_OF_VLAN_TCI[0..11]"   # eviction groups: one per network
LEARNED_MACS = DEFAULTS["learned_macs"]
UNICAST = "00:00:00:00:00:00/01:00:00:00:00:00"
MULTICAST = "01:00:00:00:00:00/01:00:00:00:00:00"
OFCTL_TIMEOUT = 10
COOKIE = "0x6f7667"         # "ovg": marks the flows ovsgre installs
PRIME_KEY = 0               # below every network's key (KEY_MIN)
# broadcast, from a locally administered MAC, IEEE local experimental type
PRIME_FRAME = ("ff" * 6 + "02" + "6f7667" + "0000" + "88b5").ljust(120, "0")


def _is_int(value, low, high):
    if isinstance(value, int) and not isinstance(value, bool) and \
            low <= value <= high:
        return True
    LOG.error("left out of the tunnel table: %r is not an integer in "
              "%d..%d", value, low, high)
    return False


def build_flows(patch, tunnels, networks, holders=None):
    """The tunnel bridge's whole table.

    patch: ofport of the patch port; tunnels: {peer ip: ofport};
    networks: {local vlan: gre key}; holders: {gre key: peer ips holding
    that network}, or None when unknown (static peers, or etcd not read
    yet): broadcast and unknown-unicast frames of a network go only to
    the peers that hold it, or to every peer when unknown (also for a
    network holders does not list yet).  Only integers
    in range reach the table's text: a pair that is not is left out (and
    logged), never turned into a flow.
    """
    tunnels = {ip: p for ip, p in tunnels.items() if _is_int(p, 1, 0xfeff)}
    networks = {v: k for v, k in networks.items()
                if _is_int(v, 1, 4094) and valid_key(k)}
    outs = ",".join(f"output:{p}" for p in sorted(tunnels.values()))
    flows = [f"table=0,priority=1,in_port={patch},actions=goto_table:1"]
    flows += [f"table=0,priority=1,in_port={p},actions=goto_table:3"
              for p in sorted(tunnels.values())]
    flows += [
        "table=0,priority=0,actions=drop",
        f"table=1,priority=1,dl_dst={UNICAST},actions=goto_table:2",
        f"table=1,priority=1,dl_dst={MULTICAST},actions=goto_table:4",
        "table=1,priority=0,actions=drop",
        "table=2,priority=0,actions=goto_table:4",
        "table=3,priority=0,actions=drop",
        "table=4,priority=0,actions=drop",
    ]
    for vlan, key in sorted(networks.items()):
        flows.append(f"table=3,priority=1,tun_id={key},"
                     f"actions=mod_vlan_vid:{vlan},{LEARN},output:{patch}")
        targets = outs
        if holders is not None and key in holders:
            targets = ",".join(f"output:{p}" for ip, p in
                               sorted(tunnels.items(), key=lambda i: i[1])
                               if ip in holders[key])
        if targets:
            flows.append(f"table=4,priority=1,dl_vlan={vlan},"
                         f"actions=strip_vlan,set_field:{key}->tun_id,"
                         f"{targets}")
    return flows


class Tunnels:
    def __init__(self, ovsdb, int_bridge, tun_bridge, datapath, local_ip,
                 rundir, learned_macs=LEARNED_MACS):
        self.ovsdb = ovsdb
        self.int_bridge = int_bridge
        self.tun_bridge = tun_bridge
        self.datapath = datapath
        self.local_ip = local_ip
        self.rundir = rundir
        self.learned_macs = learned_macs
        self._installed = None
        self._tunnel_ofports = []

    def ensure_bridges(self):
        self.ovsdb.ensure_tunnel_bridge(self.tun_bridge, self.datapath)
        self.ovsdb.ensure_patch(self.int_bridge, PATCH_TUN, PATCH_INT,
                                _ids(ROLE_PATCH))
        self.ovsdb.ensure_patch(self.tun_bridge, PATCH_INT, PATCH_TUN,
                                _ids(ROLE_PATCH))
        # A container can send frames from any number of source MACs, and
        # every peer learns each one here: bounded, per network first.
        self.ovsdb.ensure_flow_limit(self.tun_bridge, LEARNED_TABLE,
                                     self.learned_macs, [LEARN_GROUP])

    def sync(self, peers, networks, holders=None):
        """Make tunnel ports match peers and the table match networks
        (flooding as holders says, see build_flows)."""
        self.ensure_bridges()
        wanted = {tunnel_port_name(ip): ip for ip in peers}
        current = self.ovsdb.ports_with(self.tun_bridge, ROLE_KEY, ROLE_TUNNEL)
        for name in set(current) - set(wanted):
            self.ovsdb.del_port(name, self.tun_bridge)
        for name, ip in wanted.items():
            ids = dict(_ids(ROLE_TUNNEL), **{PEER_KEY: ip,
                                          LOCAL_KEY: self.local_ip or ""})
            have = current.get(name, {}).get("external_ids", {})
            # re-set when the peer or this host's --local-ip changed
            if any(have.get(k) != ids[k] for k in (PEER_KEY, LOCAL_KEY)):
                self.ovsdb.add_tunnel(self.tun_bridge, name, ip,
                                      self.local_ip, ids)
        ofports = self._wait_ofports([PATCH_INT] + list(wanted))
        flows = build_flows(ofports[PATCH_INT],
                            {ip: ofports[name] for name, ip in wanted.items()},
                            networks, holders)
        if flows != self._installed:
            self._replace_flows(flows)
            self._installed = flows
            self._tunnel_ofports = [ofports[name] for name in wanted]
            self.prime()
        return len(wanted)

    def prime(self):
        """Userspace datapath: ovs-vswitchd learns a peer's underlay MAC
        only when a packet needs it, and drops that packet (the kernel
        queues it instead).  One throwaway frame down every tunnel, under
        a key no network has (peers drop it), makes sure no container's
        first packet is the one dropped: after tunnels change, after a
        vswitchd restart (it forgets the cache) and now and then (an
        entry not used for 15 minutes expires)."""
        if self.datapath != "netdev" or not self._tunnel_ofports:
            return
        outputs = ",".join(f"output:{p}" for p in self._tunnel_ofports)
        self._ofctl(["packet-out", self._target(self.tun_bridge),
                     "CONTROLLER", f"load:{PRIME_KEY}->NXM_NX_TUN_ID[],"
                     f"{outputs}", PRIME_FRAME])

    def announce(self, port, mac):
        """Send an announcement from an endpoint's port through NORMAL.

        Docker derives MACs from IPs, so an address released on one host
        and reused on another comes back with the same MAC; without this,
        peers would keep sending it to the old host until their learned
        flow expires."""
        ofport = (self.ovsdb.port(port) or {}).get("ofport")
        if not ofport or ofport < 1:
            # Not taken by ovs-vswitchd yet, or gone already: never wait
            # here, this thread also keeps the tunnels; a later copy of the
            # announcement goes out instead.
            return False
        self._ofctl(["packet-out", self._target(self.int_bridge),
                     str(ofport), "NORMAL", announce_frame(mac)])
        return True

    def forget_flows(self):
        """Force the next sync to reinstall the table (vswitchd restarted)."""
        self._installed = None

    def _wait_ofports(self, names, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            ports = {n: (self.ovsdb.port(n) or {}).get("ofport")
                     for n in names}
            if all(p and p > 0 for p in ports.values()):
                return ports
            if time.monotonic() > deadline:
                missing = [n for n, p in ports.items() if not p or p < 1]
                raise DataplaneError("ovs-vswitchd did not take ports "
                                     f"{', '.join(missing)}")
            time.sleep(0.02)

    def _replace_flows(self, flows):
        table = "".join(f"cookie={COOKIE},{flow}\n" for flow in flows)
        self._ofctl(["-O", "OpenFlow14", "--bundle", "replace-flows",
                     self._target(self.tun_bridge), "-"], table)
        LOG.info("installed %d flows on %s", len(flows), self.tun_bridge)

    def _target(self, bridge):
        return f"unix:{os.path.join(self.rundir, bridge)}.mgmt"

    def vswitchd_instance(self):
        """Which ovs-vswitchd runs (its pid file's content), or None if
        that cannot be told; it changes when vswitchd restarts."""
        try:
            with open(os.path.join(self.rundir, "ovs-vswitchd.pid"),
                      encoding="ascii") as fh:
                return fh.read().strip() or None
        except OSError:
            return None

    def flows_intact(self):
        """Are our flows still installed?  ovs-vswitchd forgets every flow
        when it restarts; learned flows (cookie 0) are not counted."""
        if self._installed is None:
            return False
        out = self._ofctl(["-O", "OpenFlow13", "--no-stats", "dump-flows",
                           self._target(self.tun_bridge),
                           f"cookie={COOKIE}/-1"])
        return sum("actions=" in line for line in out.splitlines()) == \
            len(self._installed)

    @staticmethod
    def _ofctl(args, stdin=None):
        """ovs-ofctl with an argv list (never a shell) and a time bound."""
        try:
            proc = subprocess.run(["ovs-ofctl"] + args, input=stdin,
                                  capture_output=True, text=True,
                                  timeout=OFCTL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataplaneError(f"ovs-ofctl {args[0]}: {exc}") from exc
        if proc.returncode != 0:
            raise DataplaneError(f"ovs-ofctl {' '.join(args[:-1])} failed: "
                                 f"{proc.stderr.strip()}")
        return proc.stdout


def announce_frame(mac):
    """A RARP broadcast from `mac` (what hypervisors send after a VM moves):
    every host's tunnel bridge learns where the MAC lives now; receivers
    ignore RARP itself."""
    hw = bytes.fromhex(mac.replace(":", ""))
    payload = (bytes.fromhex("0001" "0800" "06" "04" "0003") + hw +
               bytes(4) + hw + bytes(4))
    frame = b"\xff" * 6 + hw + bytes.fromhex("8035") + payload
    return (frame + bytes(60 - len(frame))).hex()


def _ids(role):
    return {OWNER_KEY: OWNER, ROLE_KEY: role}
