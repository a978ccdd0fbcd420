"""Docker's request bodies: all their validation, and their parsing into
the typed specs the driver and the IPAM take (see specs.py).

First field presence and JSON types (and MAC addresses, which the kernel
would refuse only after the store changed): validate(); then the values
(options, pools, addresses): parse().  Only what needs state (an address in
use, a repeated call asking for something else) is the driver's to check.

Docker sends `null` for absent optional objects (Options, IPv6Data), so a
null optional field counts as absent.  Unknown extra fields are ignored:
newer Docker releases add fields (e.g. com.docker.network.enable_ipv4).
"""

import ipaddress
import logging
import re

from . import specs
from .cluster.records import printable
from .config import PORT_TYPES
from .definitions import (KEY_RULE, MAC as MAC_ADDRESS, MTU_MAX, MTU_MIN,
                          NAME_RULE, valid_key, valid_name)
from .errors import InvalidRequest

LOG = logging.getLogger(__name__)

# -- options Docker passes through to ovsgre ------------------------------
GENERIC = "com.docker.network.generic"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_GWBRIDGE = "ovsgre.gwbridge"
OPT_NAME = "ovsgre.network"
OPT_KEY = "ovsgre.key"
OPT_PORT_TYPE = "ovsgre.port-type"
OPT_INTERNAL = "com.docker.network.internal"
OPT_IPV6 = "com.docker.network.enable_ipv6"
OWN_PREFIX = "ovsgre."
KNOWN_OWN_OPTIONS = (OPT_GWBRIDGE, OPT_NAME, OPT_KEY, OPT_PORT_TYPE)
# IPAM options
SPACE_OPT = "ovsgre.network"
DEFAULT_SPACE = "default"
GATEWAY_TYPE = "com.docker.network.gateway"

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


# -- parsing: clean bodies -> specs ----------------------------------------
def parse(call, clean):
    """The spec a handler passes on, from a body validate() returned; the
    body itself for calls that take none (their fields are plain IDs)."""
    parser = _PARSERS.get(call)
    return parser(clean) if parser else clean


def network_spec(body):
    """CreateNetwork.  The checks run in this order, so that a body with
    several faults always gets the same error."""
    options = body.get("Options", {})
    generic = _generic(options)
    mtu = _mtu_option(generic)
    _check_own_options(generic)
    gwbridge = _gateway_bridge(generic, options)
    return specs.NetworkSpec(
        network_id=body["NetworkID"], mtu=mtu, gwbridge=gwbridge,
        ipv4=tuple(_pool(d, 4) for d in body.get("IPv4Data", [])),
        ipv6=tuple(_pool(d, 6) for d in body.get("IPv6Data", [])),
        name=_cluster_name(generic), port_type=_port_type_option(generic),
        key=_key_option(generic))


def allocation_spec(body):
    """AllocateNetwork: the options arrive as the generic ones (what every
    node's CreateNetwork gets under com.docker.network.generic)."""
    options = dict(body.get("Options") or {})
    for k, v in options.items():
        if not isinstance(v, str):
            raise InvalidRequest(f"option {k} must be a string")
    name = _cluster_name(options) or body["NetworkID"][:64]
    key = _key_option(dict(options, **{OPT_NAME: name}))
    try:
        ipv4 = tuple(_pool(d, 4) for d in body.get("IPv4Data", []))
        ipv6 = tuple(_pool(d, 6) for d in body.get("IPv6Data", []))
        pools_error = ""
    except InvalidRequest as exc:
        ipv4, ipv6, pools_error = (), (), str(exc)
    return specs.AllocationSpec(
        network_id=body["NetworkID"], name=name, key=key, options=options,
        ipv4=ipv4, ipv6=ipv6, pools_error=pools_error)


def endpoint_spec(body):
    interface = body.get("Interface", {})
    _check_interface(interface)
    return specs.EndpointSpec(
        network_id=body["NetworkID"], endpoint_id=body["EndpointID"],
        address=interface.get("Address") or "",
        address6=interface.get("AddressIPv6") or "",
        mac=interface.get("MacAddress") or "")


def join_spec(body):
    return specs.JoinSpec(network_id=body["NetworkID"],
                          endpoint_id=body["EndpointID"],
                          sandbox_key=body["SandboxKey"])


def _generic(options):
    generic = (options or {}).get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise InvalidRequest(f"Options.{GENERIC} must be an object")
    return generic


def _mtu_option(generic):
    """The MTU asked for, or None for the host's default."""
    raw = generic.get(OPT_MTU)
    if raw in (None, ""):
        return None
    try:
        mtu = int(raw)
    except (TypeError, ValueError):
        mtu = -1
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise InvalidRequest(f"option {OPT_MTU}={raw!r}: must be an "
                             f"integer from {MTU_MIN} to {MTU_MAX}")
    return mtu


def _check_own_options(generic):
    """A misspelt ovsgre option would otherwise be ignored silently."""
    for key in generic:
        if key.startswith(OWN_PREFIX) and key not in KNOWN_OWN_OPTIONS:
            raise InvalidRequest(
                f"unknown option {key!r}; ovsgre knows "
                f"{', '.join(KNOWN_OWN_OPTIONS)}")


def _gateway_bridge(generic, options):
    """-o ovsgre.gwbridge=true, except on an --internal network."""
    raw = str(generic.get(OPT_GWBRIDGE, "false")).lower()
    if raw not in ("true", "false"):
        raise InvalidRequest(f"option {OPT_GWBRIDGE}={raw!r}: must be "
                             "true or false")
    internal = bool((options or {}).get(OPT_INTERNAL))
    return raw == "true" and not internal


def _pool(data, version):
    where = "IPv4Data" if version == 4 else "IPv6Data"
    try:
        pool = ipaddress.ip_network(data["Pool"], strict=False)
    except (KeyError, ValueError, TypeError):
        raise InvalidRequest(f"{where}.Pool {data.get('Pool')!r} is not a "
                             f"valid IPv{version} subnet")
    if pool.version != version:
        raise InvalidRequest(f"{where}.Pool {data['Pool']!r} is not IPv"
                             f"{version}")
    gateway = data.get("Gateway") or ""
    if gateway:
        try:
            ipaddress.ip_interface(gateway)
        except ValueError:
            raise InvalidRequest(f"{where}.Gateway {gateway!r} is not an "
                                 "address")
    return specs.PoolSpec(pool=str(pool), gateway=gateway, aux=tuple(
        _aux(data.get("AuxAddresses"), pool, where)))


def _aux(addresses, pool, where):
    """--aux-address NAME=IP: {NAME: "IP[/LEN]"} -> sorted addresses of the
    pool.  Docker checks them before (parsable, inside the pool); anything
    else cannot collide with a container's address and is left out."""
    if not addresses:
        return []
    if not isinstance(addresses, dict):
        raise InvalidRequest(f"{where}.AuxAddresses must be an object")
    found = set()
    for name, value in addresses.items():
        try:
            ip = ipaddress.ip_interface(value).ip
        except (ValueError, TypeError):
            ip = None
        if ip is None or ip not in pool:
            LOG.warning("%s.AuxAddresses: %s is not an address in %s, "
                        "left out", where, printable(f"{name}={value}"),
                        pool)
            continue
        found.add(ip)
    return [str(ip) for ip in sorted(found)]


def _check_interface(interface):
    mac = interface.get("MacAddress") or ""
    if mac and not MAC_ADDRESS.fullmatch(mac):
        raise InvalidRequest(f"Interface.MacAddress {mac!r} is not a MAC "
                             "address")
    for name, version in (("Address", 4), ("AddressIPv6", 6)):
        value = interface.get(name) or ""
        if not value:
            continue
        try:
            ok = ipaddress.ip_interface(value).version == version
        except ValueError:
            ok = False
        if not ok:
            raise InvalidRequest(f"Interface.{name} {value!r} is not an "
                                 f"IPv{version} address with prefix")


def _cluster_name(generic):
    name = generic.get(OPT_NAME)
    if name in (None, ""):
        return ""
    if not valid_name(name):
        raise InvalidRequest(f"option {OPT_NAME}={name!r}: {NAME_RULE}")
    return name


def _key_option(generic):
    raw = generic.get(OPT_KEY)
    if raw in (None, ""):
        return None
    try:
        key = int(raw)
    except (TypeError, ValueError):
        key = 0
    if not valid_key(key):
        raise InvalidRequest(f"option {OPT_KEY}={raw!r}: must be {KEY_RULE}")
    if not generic.get(OPT_NAME):
        raise InvalidRequest(f"option {OPT_KEY} needs {OPT_NAME}")
    return key


def _port_type_option(generic):
    """"" (the host's --port-type) or the network's own choice."""
    raw = generic.get(OPT_PORT_TYPE)
    if raw in (None, ""):
        return ""
    if raw not in PORT_TYPES:
        raise InvalidRequest(f"option {OPT_PORT_TYPE}={raw!r}: must be one "
                             f"of {', '.join(PORT_TYPES)}")
    return raw


# -- IPAM -------------------------------------------------------------------
def pool_request(body):
    """RequestPool: the checks in this order (see network_spec)."""
    pool, subpool = body.get("Pool", ""), body.get("SubPool", "")
    v6 = body.get("V6", False)
    if not pool:
        raise InvalidRequest("the ovsgre IPAM driver needs an explicit "
                             "subnet (--subnet)")
    net = _subnet(pool, "Pool")
    if net.version != (6 if v6 else 4):
        raise InvalidRequest(f"Pool {pool} is not IPv{6 if v6 else 4}")
    sub = _subnet(subpool, "SubPool") if subpool else None
    if sub is not None and (sub.version != net.version or
                            not sub.subnet_of(net)):
        raise InvalidRequest(f"SubPool {subpool} is not inside {pool}")
    space = (body.get("Options") or {}).get(SPACE_OPT) or DEFAULT_SPACE
    if not valid_name(space):
        raise InvalidRequest(f"option {SPACE_OPT}={space!r}: letters, "
                             "digits, '_', '.', '-' (at most 64)")
    return specs.PoolRequest(pool=str(net), subpool=str(sub) if sub else "",
                             space=space)


def address_request(body):
    options = body.get("Options") or {}
    return specs.AddressRequest(
        pool_id=body["PoolID"], address=body.get("Address", ""),
        gateway=options.get("RequestAddressType") == GATEWAY_TYPE)


def _subnet(text, field):
    try:
        return ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{field} {text!r} is not a subnet") from None


# NetworkDriver and IpamDriver calls: no name is in both
_PARSERS = {
    "CreateNetwork": network_spec,
    "AllocateNetwork": allocation_spec,
    "CreateEndpoint": endpoint_spec,
    "Join": join_spec,
    "RequestPool": pool_request,
    "RequestAddress": address_request,
}
