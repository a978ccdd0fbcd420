"""Interface names and MAC addresses derived from endpoint IDs.

Names must fit IFNAMSIZ (15 characters).  The first choice carries the
endpoint ID's first 11 characters so an operator can match `ip link` output to
`docker network inspect`; when that name is already taken by another endpoint
(two IDs sharing a prefix) the caller asks for the next attempt, which is a
hash of the whole ID, so names never collide on one host.  IDs shorter
than 11 characters (never Docker's) get the hash at once: every name has
the full length, by which the reconciler recognises ovsgre's links.
"""

import hashlib

HOST_PREFIX = "ovgh"   # end that stays on the host and joins the OVS bridge
PEER_PREFIX = "ovgc"   # end Docker moves into the container
SUFFIX_LEN = 11        # 4 + 11 = 15 = IFNAMSIZ - 1
MAX_ATTEMPTS = 8


def suffix(endpoint_id, attempt=0):
    if attempt == 0 and len(endpoint_id) >= SUFFIX_LEN:
        return endpoint_id[:SUFFIX_LEN].lower()
    digest = hashlib.sha256(f"{endpoint_id}/{attempt}".encode()).hexdigest()
    return digest[:SUFFIX_LEN]


def veth_names(endpoint_id, attempt=0):
    """(host end, container end) for this endpoint and attempt."""
    tail = suffix(endpoint_id, attempt)
    return HOST_PREFIX + tail, PEER_PREFIX + tail


def is_ours(ifname):
    return ifname.startswith((HOST_PREFIX, PEER_PREFIX)) and \
        len(ifname) == len(HOST_PREFIX) + SUFFIX_LEN


def mac_for(endpoint_id):
    """Deterministic, locally administered unicast MAC for an endpoint."""
    digest = hashlib.sha256(endpoint_id.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02,) + tuple(digest[:5]))
