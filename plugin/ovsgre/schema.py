"""Validation of request bodies: field presence and JSON types (and MAC
addresses, which the kernel would refuse only after the store changed).

Docker sends `null` for absent optional objects (Options, IPv6Data), so a
null optional field counts as absent.  Unknown extra fields are ignored:
newer Docker releases add fields (e.g. com.docker.network.enable_ipv4).
"""

import re

from .definitions import MAC as MAC_ADDRESS
from .errors import InvalidRequest

# Docker sends one entry per exposed and per published port in
# CreateEndpoint, Join and ProgramExternalConnectivity: the whole port range
# for tcp, udp and sctp, published and exposed, is about 20 MB of JSON.
MAX_BODY = 32 << 20

_ID = re.compile(r"^[A-Za-z0-9]{1,128}$")

ID = "id"
STR = "string"
OBJ = "object"
LIST_OF_OBJ = "array of objects"
BOOL = "boolean"
INT = "integer"
ANY = "any"
MAC = "unicast MAC address like 02:42:ac:11:00:02"

NETWORK = {"NetworkID": (ID, True)}
ENDPOINT = {"NetworkID": (ID, True), "EndpointID": (ID, True)}
WITH_OPTIONS = dict(ENDPOINT, Options=(OBJ, False))

CALLS = {
    "CreateNetwork": dict(NETWORK, Options=(OBJ, False),
                          IPv4Data=(LIST_OF_OBJ, False),
                          IPv6Data=(LIST_OF_OBJ, False)),
    "AllocateNetwork": dict(NETWORK, Options=(OBJ, False),
                            IPv4Data=(LIST_OF_OBJ, False),
                            IPv6Data=(LIST_OF_OBJ, False)),
    "DeleteNetwork": NETWORK,
    "FreeNetwork": NETWORK,
    "CreateEndpoint": dict(WITH_OPTIONS, Interface=(OBJ, False)),
    "EndpointOperInfo": ENDPOINT,
    "DeleteEndpoint": ENDPOINT,
    "Join": dict(WITH_OPTIONS, SandboxKey=(STR, True)),
    "Leave": ENDPOINT,
    "ProgramExternalConnectivity": WITH_OPTIONS,
    "RevokeExternalConnectivity": WITH_OPTIONS,
    "DiscoverNew": {"DiscoveryType": (INT, True), "DiscoveryData": (ANY,
                                                                    False)},
    "DiscoverDelete": {"DiscoveryType": (INT, True),
                       "DiscoveryData": (ANY, False)},
}

IPAM_CALLS = {
    "GetCapabilities": {},
    "GetDefaultAddressSpaces": {},
    "RequestPool": {"AddressSpace": (STR, False), "Pool": (STR, False),
                    "SubPool": (STR, False), "Options": (OBJ, False),
                    "V6": (BOOL, False)},
    "ReleasePool": {"PoolID": (STR, True)},
    "RequestAddress": {"PoolID": (STR, True), "Address": (STR, False),
                       "Options": (OBJ, False)},
    "ReleaseAddress": {"PoolID": (STR, True), "Address": (STR, True)},
}

POOL = {"Pool": (STR, True), "Gateway": (STR, False),
        "AddressSpace": (STR, False), "AuxAddresses": (OBJ, False)}
INTERFACE = {"Address": (STR, False), "AddressIPv6": (STR, False),
             "MacAddress": (MAC, False)}


def first_required(call, calls=CALLS):
    """The call's first required field, or None if it has none."""
    return next((name for name, (_, required) in calls[call].items()
                 if required), None)


def validate(call, body, calls=CALLS):
    """Return a clean dict of the call's known fields or raise."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    clean = _fields(calls[call], body, "")
    for key in ("IPv4Data", "IPv6Data"):
        if key in clean:
            clean[key] = [_fields(POOL, item, f"{key}[{i}].")
                          for i, item in enumerate(clean[key])]
    if "Interface" in clean:
        clean["Interface"] = _fields(INTERFACE, clean["Interface"],
                                     "Interface.")
    return clean


def _fields(spec, body, where):
    clean = {}
    for name, (kind, required) in spec.items():
        value = body.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"missing field {where}{name}")
            continue
        _check(kind, value, where + name)
        clean[name] = value
    return clean


def _check(kind, value, field):
    ok = {
        ID: lambda v: isinstance(v, str) and _ID.fullmatch(v),
        STR: lambda v: isinstance(v, str) and len(v) <= 4096,
        OBJ: lambda v: isinstance(v, dict),
        LIST_OF_OBJ: lambda v: isinstance(v, list)
        and all(isinstance(i, dict) for i in v),
        BOOL: lambda v: isinstance(v, bool),
        INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        ANY: lambda v: True,
        MAC: _unicast_mac,
    }[kind](value)
    if not ok:
        expected = "an ID of 1-128 letters and digits" if kind == ID \
            else f"a {kind}" if kind != OBJ else "an object"
        raise InvalidRequest(f"field {field} must be {expected}, got "
                             f"{_short(value)}")


def _unicast_mac(value):
    """Empty (Docker's "none given") or an address a veth can have: the
    kernel refuses multicast (broadcast too) and all-zero ones."""
    if not isinstance(value, str):
        return False
    return not value or (bool(MAC_ADDRESS.fullmatch(value))
                         and not int(value[:2], 16) & 1
                         and int(value.replace(":", ""), 16) != 0)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
