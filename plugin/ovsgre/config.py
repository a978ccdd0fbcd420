"""Settings: one table, read from flags and OVSGRE_* environment variables.

Every setting has a command-line flag and an environment variable named after
it (``--state-dir`` <-> ``OVSGRE_STATE_DIR``); a flag wins over the variable,
the variable over the default.  Every ``ovsgre`` subcommand shares them.
"""

import argparse
import dataclasses
import ipaddress
import os
import urllib.parse

from .cluster.records import Malformed, parse_peer_ip, shown_url
from .definitions import MTU_MAX, MTU_MIN

PORT_TYPES = ("system", "afxdp-nonpmd", "afxdp")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _mtu(text):
    value = int(text)
    if value != 0 and not MTU_MIN <= value <= MTU_MAX:
        raise ValueError(f"MTU must be 0 (auto) or between {MTU_MIN} and "
                         f"{MTU_MAX}")
    return value


def _choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text
    parse.__name__ = "one of " + "|".join(allowed)
    return parse


def _port_type(text):
    """auto chose afxdp-nonpmd before it cost too much memory per port;
    settings files that still say so get the default."""
    if text == "auto":
        return "system"
    return _choice(*PORT_TYPES)(text)


_port_type.__name__ = "one of " + "|".join(PORT_TYPES)


def _seconds(text):
    value = float(text)
    if not 0.1 <= value <= 300:
        raise ValueError("must be between 0.1 and 300 seconds")
    return value


def _ip_or_empty(text):
    text = text.strip()
    if text:
        ipaddress.IPv4Address(text)
    return text


def _ip_list(text):
    """Peers: unicast IPv4 addresses (the underlay's family)."""
    out = []
    for part in text.split(","):
        if part.strip():
            try:
                out.append(str(parse_peer_ip(part.strip())))
            except Malformed as exc:
                raise ValueError(str(exc)) from None
    return tuple(out)


def _url_list(text):
    urls = tuple(part.strip() for part in text.split(",") if part.strip())
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{shown_url(url)!r} is not "
                             "http(s)://HOST:PORT")
    return urls


def _listen_address(text):
    """--metrics-address: PORT or :PORT (loopback), IP:PORT or [IPv6]:PORT;
    "" serves nothing.  Returns "IP:PORT", "[IPv6]:PORT" or ""."""
    text = text.strip()
    if not text:
        return ""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be PORT, IP:PORT or [IPv6]:PORT")
    if not host:
        return f"127.0.0.1:{int(port)}"   # only a port: loopback
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(f"{host} is not an IP address") from None
    if ip.version == 6 and not bracketed:
        raise ValueError("write an IPv6 address in brackets: [IPv6]:PORT")
    return f"[{ip}]:{int(port)}" if ip.version == 6 else f"{ip}:{int(port)}"


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: object
    parse: object
    help: str

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")

    @property
    def env(self):
        return "OVSGRE_" + self.name.upper()


OPTIONS = (
    Option("socket", "/run/docker/plugins/ovsgre.sock", str,
           "unix socket the plugin listens on (dockerd discovers "
           "/run/docker/plugins/ovsgre.sock)"),
    Option("socket_group", "", str,
           "group owning the socket (mode 0660); empty keeps root's group"),
    Option("ovsdb", "unix:/var/run/openvswitch/db.sock", str,
           "OVSDB remote of the local ovsdb-server"),
    Option("bridge", "br-ovsgre", str, "integration bridge name"),
    Option("state_dir", "/var/lib/ovsgre", str,
           "directory of the local state store"),
    Option("datapath", "auto", _choice("auto", "system", "netdev"),
           "OVS datapath: auto picks system when the openvswitch kernel "
           "module is available, else netdev (userspace)"),
    Option("mtu", 0, _mtu,
           "MTU of container interfaces; 0 = underlay MTU minus 42 bytes "
           "of GRE overhead"),
    Option("log_level", "info",
           _choice("debug", "info", "warning", "error"), "log level"),
    Option("threads", 16, _positive_int,
           "request threads of the single gunicorn worker"),
    Option("ovsdb_timeout", 10, _positive_int,
           "seconds an OVSDB transaction may take before the call fails"),
    Option("ovs_rundir", "", str,
           "OVS run directory (bridge .mgmt sockets for OpenFlow); empty = "
           "the directory of the --ovsdb unix socket"),
    Option("ready_timeout", 10.0, _seconds,
           "seconds Join may wait for ovs-vswitchd to put a container's "
           "port in service (and, after a vswitchd restart, to hold the "
           "tunnel flows again) before the container start fails"),
    Option("scope", "local", _choice("local", "global"),
           "scope reported to Docker: local, or global for swarm-scope "
           "networks (managed plugin in a swarm)"),
    Option("docker_host", "unix:///var/run/docker.sock", str,
           "Docker API for the tools and the declared-network reconciler "
           "(never used while Docker waits for the plugin)"),
    Option("driver_name", "ovsgre", str,
           "name Docker knows this plugin by (ovsgre/ovsgre:latest for the "
           "managed plugin), used when creating declared networks"),
    Option("etcd", (), _url_list,
           "etcd endpoints for multi-host state, comma-separated "
           "(http://HOST:2379 or https://...); empty = no etcd"),
    Option("etcd_ca", "", str, "CA certificate to verify etcd (https)"),
    Option("etcd_cert", "", str, "client certificate for etcd"),
    Option("etcd_key", "", str, "client key for etcd"),
    Option("etcd_timeout", 2.0, _seconds,
           "seconds an etcd request may take before the call fails"),
    Option("lease_ttl", 10, _positive_int,
           "seconds after which a silent host leaves the cluster"),
    Option("peers", (), _ip_list,
           "static peer list without etcd, comma-separated underlay IPs"),
    Option("learned_macs", 8192, _positive_int,
           "most MAC addresses behind other hosts the tunnel bridge "
           "remembers; when full, the oldest of the network with the most "
           "are forgotten (flooded again until re-learned)"),
    Option("max_peers", 128, _positive_int,
           "most peers this host keeps a tunnel to; hosts registered in "
           "etcd beyond that are left out (logged)"),
    Option("local_ip", "", _ip_or_empty,
           "tunnel source address; empty = the source address of the "
           "route towards the etcd endpoints or the peers"),
    Option("stale_after", 60, _positive_int,
           "seconds after which an endpoint Docker does not know is removed "
           "(a restarted dockerd drops the endpoints of dead containers "
           "without telling the plugin; a call interrupted by a crash is "
           "re-sent without its body); checked in the background through "
           "the Docker API at --docker-host, and for joined endpoints whose "
           "veth is gone without it"),
    Option("port_type", "system", _port_type,
           "OVS port type of container ports under the userspace datapath "
           "(a network may choose its own with -o ovsgre.port-type): "
           "system (AF_PACKET: ~10 ms to add, no memory per port), "
           "afxdp-nonpmd (~1.5x the throughput, but ~77 MB of ovs-vswitchd "
           "memory and ~130 ms per port) or afxdp (also busy-polls a "
           "core); auto is the old name of system; the kernel datapath "
           "always uses system"),
    Option("metrics_address", "", _listen_address,
           "serve Prometheus metrics at http://ADDRESS/metrics: PORT "
           "(on loopback), HOST:PORT or [IPv6]:PORT; empty = no metrics "
           "(nothing listens)"),
)

# Each setting's default lives in its Option; Settings takes it from here.
DEFAULTS = {opt.name: opt.default for opt in OPTIONS}


@dataclasses.dataclass(frozen=True)
class Settings:
    socket: str
    socket_group: str
    ovsdb: str
    bridge: str
    state_dir: str
    datapath: str
    mtu: int
    log_level: str
    threads: int
    ovsdb_timeout: int
    ovs_rundir: str = DEFAULTS["ovs_rundir"]
    ready_timeout: float = DEFAULTS["ready_timeout"]
    scope: str = DEFAULTS["scope"]
    docker_host: str = DEFAULTS["docker_host"]
    driver_name: str = DEFAULTS["driver_name"]
    etcd: tuple = DEFAULTS["etcd"]
    etcd_ca: str = DEFAULTS["etcd_ca"]
    etcd_cert: str = DEFAULTS["etcd_cert"]
    etcd_key: str = DEFAULTS["etcd_key"]
    etcd_timeout: float = DEFAULTS["etcd_timeout"]
    lease_ttl: int = DEFAULTS["lease_ttl"]
    peers: tuple = DEFAULTS["peers"]
    learned_macs: int = DEFAULTS["learned_macs"]
    max_peers: int = DEFAULTS["max_peers"]
    local_ip: str = DEFAULTS["local_ip"]
    stale_after: int = DEFAULTS["stale_after"]
    port_type: str = DEFAULTS["port_type"]
    metrics_address: str = DEFAULTS["metrics_address"]

    @property
    def multi_host(self):
        return bool(self.etcd or self.peers)

    @property
    def rundir(self):
        if self.ovs_rundir:
            return self.ovs_rundir
        if self.ovsdb.startswith("unix:"):
            return os.path.dirname(self.ovsdb[len("unix:"):])
        return "/var/run/openvswitch"

    @property
    def tunnel_bridge(self):
        name = self.bridge + "-tun"
        return name if len(name) <= 15 else self.bridge[:11] + "-tun"

    def tunnel_targets(self):
        """Hosts whose route tells the tunnel source address."""
        hosts = [urllib.parse.urlsplit(url).hostname for url in self.etcd]
        return hosts + list(self.peers)


def add_arguments(parser, nested=False):
    """Add one flag per setting; defaults come from the environment.
    nested: the parser of an action under a subcommand (`network ls`),
    whose unset flags must not overwrite what was given before it."""
    group = parser.add_argument_group("settings (flag or OVSGRE_* variable)")
    for opt in OPTIONS:
        group.add_argument(
            opt.flag, dest=opt.name, metavar=opt.env,
            default=argparse.SUPPRESS if nested else None,
            help=f"{opt.help} [env {opt.env}, default {opt.default!r}]")


def resolve(namespace=None, environ=None):
    """Build Settings from parsed flags, then environment, then defaults."""
    environ = os.environ if environ is None else environ
    values = {}
    for opt in OPTIONS:
        raw = getattr(namespace, opt.name, None) if namespace else None
        source = opt.flag
        if raw is None and opt.env in environ:
            raw, source = environ[opt.env], opt.env
        if raw is None:
            values[opt.name] = opt.default
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except ValueError as exc:
            shown = repr(",".join(shown_url(u) for u in raw.split(","))
                         if opt.name == "etcd" else raw)
            raise SystemExit(f"ovsgre: invalid {source}={shown}: {exc}")
    return Settings(**values)


def from_env(environ=None):
    return resolve(None, environ)


def describe():
    """Rows of (flag, env, default, help) for docs and `ovsgre settings`."""
    return [(o.flag, o.env, o.default, o.help) for o in OPTIONS]

