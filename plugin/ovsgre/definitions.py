"""What every part of ovsgre must agree on, defined once.

Names OVS and etcd records carry, ranges, states and the rules derived
from them.  Standard library only, so that the plugin, `status`, `doctor`
and the tests can all import it without pulling in ovsdbapp or pyroute2.
"""

import ipaddress
import re
import zlib

OWNER = "ovsgre"

# -- OVSDB external_ids of what ovsgre creates ------------------------------
OWNER_KEY = "owner"                 # = OWNER on every bridge/port it made
ROLE_KEY = "ovsgre_role"            # endpoint (default), patch or tunnel
ROLE_PATCH, ROLE_TUNNEL = "patch", "tunnel"   # ROLE_KEY's values
NETWORK_KEY = "ovsgre_network"
ENDPOINT_KEY = "ovsgre_endpoint"
PEER_KEY = "ovsgre_peer"            # a tunnel port's peer address

# -- ports of the tunnel bridge ---------------------------------------------
PATCH_INT = "ovgp-int"     # on the tunnel bridge, towards the integration one
PATCH_TUN = "ovgp-tun"     # on the integration bridge, towards the tunnels


def tunnel_port_name(peer_ip):
    """gre-<peer IPv4 in hex>: 12 characters, unique per peer."""
    return "gre-" + ipaddress.IPv4Address(peer_ip).packed.hex()


# -- sizes and ranges ---------------------------------------------------------
GRE_OVERHEAD = 42   # outer IPv4 20 + GRE with key 8 + inner Ethernet 14
MTU_MIN, MTU_MAX = 1280, 65000      # container MTU (IPv6 needs 1280)

# -- GRE keys: one per network, the same on every host ----------------------
KEY_MIN, KEY_MAX = 1, (1 << 24) - 1  # 24 bits
KEY_RULE = f"an integer from {KEY_MIN} to {KEY_MAX}"


def valid_key(value):
    """An integer (not a bool, a float or text) in KEY_MIN..KEY_MAX."""
    return isinstance(value, int) and not isinstance(value, bool) and \
        KEY_MIN <= value <= KEY_MAX


def derive_key(name):
    """The key a network named `name` gets unless it asks for one: every
    host computes the same, so it needs no coordination."""
    return zlib.crc32(name.encode()) % KEY_MAX + 1


# -- names users give: cluster network names, IPAM address spaces -------------
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = ("1-64 letters, digits, '_', '.', '-', starting with a letter "
             "or digit")


MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")   # fullmatch it


def valid_name(value):
    return isinstance(value, str) and NAME.fullmatch(value) is not None


# -- endpoint records ------------------------------------------------------
# created: CreateEndpoint done; joined: in a container; deleting: the
# dataplane refused a delete, the reconciler retries it.
CREATED, JOINED, DELETING = "created", "joined", "deleting"
ENDPOINT_STATES = (CREATED, JOINED, DELETING)

# -- etcd ------------------------------------------------------------------
HOSTS_PREFIX = "/ovsgre/hosts/"     # one leased record per live host
