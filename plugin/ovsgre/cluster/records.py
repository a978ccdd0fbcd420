"""Records other hosts write to etcd, parsed into typed values before use.

Any host of the cluster (or anyone, where etcd runs without TLS and auth)
can write under /ovsgre/.  Nothing read from there reaches OVS, a log line
or a terminal as it came: each record is parsed here into a frozen value
(integers in range, ``ipaddress`` objects, names matching definitions.NAME) or refused
with Malformed, which says what is wrong in printable text.  Callers skip
a malformed record (MalformedLog logs it once) and go on with the others.
"""

import ipaddress
import re
import threading
import urllib.parse
from dataclasses import dataclass

from ..definitions import KEY_RULE, valid_key, valid_name

HOSTNAME_MAX = 253
SHOWN_MAX = 80     # characters of a bad value quoted back


class Malformed(ValueError):
    """A record that does not parse; str() is printable text."""


def printable(value, limit=SHOWN_MAX):
    """value as text safe for a log line or a terminal: no control or
    escape characters, no newlines, bounded length."""
    text = value if isinstance(value, str) else repr(value)
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}"
                  if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
    return out if len(out) <= limit else out[:limit] + "…"


def _shown(value):
    if isinstance(value, str):
        return '"' + printable(value) + '"'
    return printable(value)


def parse_key(value):
    """A network's GRE key (definitions.valid_key)."""
    if not valid_key(value):
        raise Malformed(f"key {_shown(value)} is not {KEY_RULE}")
    return value


def parse_name(value, what="name"):
    if not valid_name(value):
        raise Malformed(f"{what} {_shown(value)} is not 1-64 letters, "
                        "digits, '_', '.', '-'")
    return value


def parse_peer_ip(value, version=4):
    """A peer's underlay address: unicast, of the underlay's IP version
    (GRE tunnels here run over IPv4)."""
    if not isinstance(value, str):
        raise Malformed(f"ip {_shown(value)} is not an address")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise Malformed(f"ip {_shown(value)} is not an address") from None
    if ip.version != version:
        raise Malformed(f"ip {ip} is not IPv{version} (the underlay's)")
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or \
            ip.is_link_local or (version == 4 and
                                 ip == ipaddress.IPv4Address(
                                     "255.255.255.255")):
        raise Malformed(f"ip {ip} is not a unicast host address")
    return ip


@dataclass(frozen=True)
class Host:
    ip: ipaddress.IPv4Address
    hostname: str          # printable
    version: str           # printable


def parse_host(path, value, prefix):
    """A host registration at prefix + IP: {"ip": IP, "hostname", ...}; the
    key and the ip field must name the same address."""
    if not isinstance(value, dict):
        raise Malformed(f"{printable(path)}: not a JSON object")
    ip = parse_peer_ip(value.get("ip"))
    if path != prefix + str(ip):
        raise Malformed(f"{printable(path)}: ip {ip} does not match the "
                        "key it is registered under")
    hostname = value.get("hostname", "")
    if not isinstance(hostname, str):
        hostname = ""
    version = value.get("version", "")
    return Host(ip=ip, hostname=printable(hostname, HOSTNAME_MAX),
                version=printable(version if isinstance(version, str)
                                  else "", 40))


@dataclass(frozen=True)
class Network:
    name: str
    key: int
    ipv4: tuple            # of IPv4Network
    ipv6: tuple            # of IPv6Network
    hosts: tuple           # host IDs holding it (their underlay IPs)
    swarm: tuple           # swarm network IDs reserving it

    def subnets(self, family):
        """Sorted text form, as records store them."""
        return sorted(str(n) for n in getattr(self, family))


def _subnets(value, family, version):
    if not isinstance(value, list):
        raise Malformed(f"{family} {_shown(value)} is not a list")
    out = []
    for item in value:
        try:
            net = ipaddress.ip_network(item) if isinstance(item, str) \
                else None
        except ValueError:
            net = None
        if net is None or net.version != version:
            raise Malformed(f"{family} subnet {_shown(item)} is not an "
                            f"IPv{version} network")
        out.append(net)
    return tuple(out)


def _strings(value, field):
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v.isprintable() and 0 < len(v) <= 128
            for v in value):
        raise Malformed(f"{field} {_shown(value)} is not a list of IDs")
    return tuple(value)


def _named(path, value, prefix):
    """The name of a record stored at prefix + NAME, checked."""
    if not isinstance(value, dict):
        raise Malformed(f"{printable(path)}: not a JSON object")
    name = parse_name(value.get("name"))
    if path != prefix + name:
        raise Malformed(f"{printable(path)}: name {name} does not match "
                        "the key it is stored under")
    return name


def parse_network(path, value, prefix):
    """A cluster network definition at prefix + NAME."""
    name = _named(path, value, prefix)
    return Network(name=name, key=parse_key(value.get("key")),
                   ipv4=_subnets(value.get("ipv4", []), "ipv4", 4),
                   ipv6=_subnets(value.get("ipv6", []), "ipv6", 6),
                   hosts=_strings(value.get("hosts", []), "hosts"),
                   swarm=_strings(value.get("swarm", []), "swarm"))


def parse_key_owner(value):
    """The record reserving a GRE key: {"name": NAME}; returns the name."""
    if not isinstance(value, dict):
        raise Malformed("key reservation is not a JSON object")
    return parse_name(value.get("name"), "reserved for")


@dataclass(frozen=True)
class Pool:
    """An IPAM pool held in an address space (see ipam.py)."""
    space: str
    net: object            # IPv4Network or IPv6Network
    id: str                # incarnation: 32 hex digits
    holders: tuple         # ((token, host id), ...) of RequestPool calls
    hosts: tuple           # host ids of holds written before tokens
    record: dict           # as stored, for compare-and-swap


POOL_ID = re.compile(r"[0-9a-f]{32}")
TOKEN_LEN = 12     # a RequestPool's holder token (the end of a uuid4 hex)
TOKEN = re.compile(r"[0-9a-f]{%d}" % TOKEN_LEN)


def parse_pool(path, value, prefix):
    """A pool at prefix + SPACE/QUOTED-SUBNET: the key, the subnet it
    names and the record's own must agree."""
    space, _, quoted = path[len(prefix):].partition("/") \
        if path.startswith(prefix) else ("", "", "")
    parse_name(space, "address space")
    if not isinstance(value, dict):
        raise Malformed(f"{printable(path)}: not a JSON object")
    net = _subnet(value.get("pool"), "pool")
    if urllib.parse.unquote(quoted) != str(net):
        raise Malformed(f"{printable(path)}: pool {net} does not match the "
                        "key it is stored under")
    if not isinstance(value.get("id"), str) or \
            not POOL_ID.fullmatch(value["id"]):
        raise Malformed(f"id {_shown(value.get('id'))} is not 32 hex digits")
    holders = value.get("holders") or {}
    if not isinstance(holders, dict) or not all(
            isinstance(t, str) and TOKEN.fullmatch(t) for t in holders):
        raise Malformed(f"holders {_shown(holders)} are not TOKEN: HOST")
    _strings(list(holders.values()), "holders")
    return Pool(space=space, net=net, id=value["id"],
                holders=tuple(sorted(holders.items())),
                hosts=_strings(value.get("hosts") or [], "hosts"),
                record=value)


def _subnet(value, field):
    try:
        if isinstance(value, str):
            return ipaddress.ip_network(value)
    except ValueError:
        pass
    raise Malformed(f"{field} {_shown(value)} is not a subnet")


@dataclass(frozen=True)
class Claim:
    """Who holds an address of a pool."""
    host: str
    gateway: bool          # the network's gateway: one for every host
    aux: bool              # --aux-address: shared, goes with the pool


def parse_claim(path, value):
    if not isinstance(value, dict):
        raise Malformed(f"{printable(path)}: not a JSON object")
    host = value.get("host")
    if not isinstance(host, str) or not host.isprintable() or \
            not 0 < len(host) <= 128:
        raise Malformed(f"host {_shown(host)} is not a host id")
    flags = {}
    for flag in ("gateway", "aux"):
        flags[flag] = value.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise Malformed(f"{flag} {_shown(flags[flag])} is not true or "
                            "false")
    return Claim(host=host, **flags)


class MalformedLog:
    """Logs each malformed record once (again only if it changes), and
    keeps the current ones for `status`."""

    def __init__(self, logger, what):
        self._log = logger
        self._what = what
        self._lock = threading.Lock()
        self._seen = {}          # path -> problem

    def skip(self, path, problem):
        text = str(problem)
        with self._lock:
            if self._seen.get(path) == text:
                return
            self._seen[path] = text
        self._log.warning("ignoring malformed %s record %s: %s", self._what,
                          printable(path), text)

    def keep_only(self, paths):
        """Forget records that are gone or parse now."""
        with self._lock:
            for path in set(self._seen) - set(paths):
                del self._seen[path]

    def current(self):
        with self._lock:
            return dict(self._seen)




@dataclass(frozen=True)
class Declared:
    """A network declared once for the cluster (`ovsgre network create`)."""
    name: str
    subnets: tuple         # text, as given
    ipv6: bool
    internal: bool
    options: tuple         # ((key, value), ...) sorted
    record: dict           # as stored: its hash labels the Docker network


OPTION_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")


def parse_declared(path, value, prefix):
    name = _named(path, value, prefix)
    subnets = value.get("subnets")
    if not isinstance(subnets, list) or not subnets:
        raise Malformed(f"subnets {_shown(subnets)} is not a list of "
                        "networks")
    for item in subnets:
        try:
            ipaddress.ip_network(item)
        except (TypeError, ValueError):
            raise Malformed(f"subnet {_shown(item)} is not a network") \
                from None
    for flag in ("ipv6", "internal"):
        if not isinstance(value.get(flag, False), bool):
            raise Malformed(f"{flag} {_shown(value[flag])} is not true or "
                            "false")
    options = value.get("options") or {}
    if not isinstance(options, dict) or not all(
            isinstance(k, str) and OPTION_KEY.fullmatch(k) and
            isinstance(v, str) and v.isprintable() and len(v) <= 256
            for k, v in options.items()):
        raise Malformed(f"options {_shown(options)} are not KEY=VALUE text")
    return Declared(name=name, subnets=tuple(subnets),
                    ipv6=value.get("ipv6", False),
                    internal=value.get("internal", False),
                    options=tuple(sorted(options.items())), record=value)


def shown_url(url):
    """url as it may be printed: without a user or password (etcd
    endpoints may carry them), in printable text."""
    try:
        parts = urllib.parse.urlsplit(url)
        secret = parts.username is not None or parts.password is not None
    except ValueError:
        return "<unparsable URL>"
    if not secret:
        return printable(url, 200)
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1]
    return printable(urllib.parse.urlunsplit(parts._replace(netloc=netloc)),
                     200)
