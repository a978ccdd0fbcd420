"""Settings: one table, read from flags and OVSGRE_* environment variables.

Every setting has a command-line flag and an environment variable named after
it (``--state-dir`` <-> ``OVSGRE_STATE_DIR``); a flag wins over the variable,
the variable over the default.  Every ``ovsgre`` subcommand shares them.
"""

import dataclasses
import os


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _mtu(text):
    value = int(text)
    if value != 0 and not 1280 <= value <= 65000:
        raise ValueError("MTU must be 0 (auto) or between 1280 and 65000")
    return value


def _choice(*allowed):
    def parse(text):
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text
    parse.__name__ = "one of " + "|".join(allowed)
    return parse


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
)


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


def add_arguments(parser):
    """Add one flag per setting; defaults come from the environment."""
    group = parser.add_argument_group("settings (flag or OVSGRE_* variable)")
    for opt in OPTIONS:
        group.add_argument(
            opt.flag, dest=opt.name, default=None, metavar=opt.env,
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
            raise SystemExit(f"ovsgre: invalid {source}={raw!r}: {exc}")
    return Settings(**values)


def from_env(environ=None):
    return resolve(None, environ)


def describe():
    """Rows of (flag, env, default, help) for docs and `ovsgre settings`."""
    return [(o.flag, o.env, o.default, o.help) for o in OPTIONS]

