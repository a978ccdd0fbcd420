"""Settings: flag beats OVSGRE_* variable beats default, for every setting."""

import argparse
import dataclasses
import importlib
import json
import os

import pytest

from ovsgre import cli, config

# One valid raw value per setting and what it parses to.  A setting added to
# config.OPTIONS without an entry here fails test_examples_cover_all_options.
EXAMPLES = {
    "socket": ("/tmp/t/ovsgre.sock", "/tmp/t/ovsgre.sock"),
    "socket_group": ("docker", "docker"),
    "ovsdb": ("tcp:127.0.0.1:6640", "tcp:127.0.0.1:6640"),
    "bridge": ("br-test", "br-test"),
    "state_dir": ("/tmp/t/state", "/tmp/t/state"),
    "datapath": ("netdev", "netdev"),
    "mtu": ("1400", 1400),
    "log_level": ("debug", "debug"),
    "threads": ("4", 4),
    "ovsdb_timeout": ("3", 3),
    "ovs_rundir": ("/tmp/t/run", "/tmp/t/run"),
    "ready_timeout": ("2.5", 2.5),
    "scope": ("global", "global"),
    "docker_host": ("unix:///tmp/t/d.sock", "unix:///tmp/t/d.sock"),
    "driver_name": ("ovsgre/ovsgre:latest", "ovsgre/ovsgre:latest"),
    "etcd": ("http://198.18.0.254:2379", ("http://198.18.0.254:2379",)),
    "etcd_ca": ("/tmp/t/ca.pem", "/tmp/t/ca.pem"),
    "etcd_cert": ("/tmp/t/c.pem", "/tmp/t/c.pem"),
    "etcd_key": ("/tmp/t/k.pem", "/tmp/t/k.pem"),
    "etcd_timeout": ("1.5", 1.5),
    "lease_ttl": ("3", 3),
    "peers": ("198.18.0.2,198.18.0.3", ("198.18.0.2", "198.18.0.3")),
    "learned_macs": ("100", 100),
    "max_peers": ("8", 8),
    "local_ip": ("198.18.0.1", "198.18.0.1"),
    "stale_after": ("5", 5),
    "port_type": ("afxdp-nonpmd", "afxdp-nonpmd"),
    "metrics_address": ("9490", "127.0.0.1:9490"),
}
OTHER = {
    "socket": ("/tmp/u.sock", "/tmp/u.sock"),
    "socket_group": ("wheel", "wheel"),
    "ovsdb": ("unix:/tmp/db.sock", "unix:/tmp/db.sock"),
    "bridge": ("br-x", "br-x"),
    "state_dir": ("/tmp/u", "/tmp/u"),
    "datapath": ("system", "system"),
    "mtu": ("0", 0),
    "log_level": ("error", "error"),
    "threads": ("32", 32),
    "ovsdb_timeout": ("30", 30),
    "ovs_rundir": ("/tmp/u/run", "/tmp/u/run"),
    "ready_timeout": ("30", 30.0),
    "scope": ("local", "local"),
    "docker_host": ("unix:///tmp/u/d.sock", "unix:///tmp/u/d.sock"),
    "driver_name": ("x", "x"),
    "etcd": ("https://a:1, https://b:2", ("https://a:1", "https://b:2")),
    "etcd_ca": ("/tmp/u/ca.pem", "/tmp/u/ca.pem"),
    "etcd_cert": ("/tmp/u/c.pem", "/tmp/u/c.pem"),
    "etcd_key": ("/tmp/u/k.pem", "/tmp/u/k.pem"),
    "etcd_timeout": ("5", 5.0),
    "lease_ttl": ("30", 30),
    "peers": ("198.18.0.9", ("198.18.0.9",)),
    "learned_macs": ("20000", 20000),
    "max_peers": ("500", 500),
    "local_ip": ("198.18.0.9", "198.18.0.9"),
    "stale_after": ("600", 600),
    "port_type": ("system", "system"),
    "metrics_address": ("198.18.0.9:9100", "198.18.0.9:9100"),
}
INVALID = [
    ("peers", "198.18.0.2,peer-a"), ("peers", "224.0.0.1"),
    ("peers", "127.0.0.1"), ("peers", "2001:db8::1"),
    ("max_peers", "0"), ("max_peers", "x"),
    ("datapath", "kernel"), ("datapath", ""), ("datapath", "NETDEV"),
    ("mtu", "abc"), ("mtu", "100"), ("mtu", "1279"), ("mtu", "65001"),
    ("mtu", "-1"), ("mtu", "1400;rm -rf /"), ("mtu", ""),
    ("log_level", "verbose"), ("log_level", "INFO"),
    ("threads", "0"), ("threads", "-3"), ("threads", "many"),
    ("threads", "1.5"),
    ("ovsdb_timeout", "0"), ("ovsdb_timeout", "ten"),
    ("scope", "swarm"), ("etcd", "198.18.0.254:2379"), ("etcd", "ftp://x:1"),
    ("etcd_timeout", "0"), ("etcd_timeout", "x"), ("lease_ttl", "0"),
    ("peers", "198.18.0"), ("peers", "a;b"), ("local_ip", "::1"),
    ("local_ip", "$(id)"), ("port_type", "xdp"), ("port_type", ""),
    ("port_type", "afxdp-nonpmd;id"), ("port_type", "AUTO"),
    ("ready_timeout", "0"), ("ready_timeout", "soon"),
    ("ready_timeout", "1000"), ("stale_after", "0"),
    ("stale_after", "soon"), ("metrics_address", "x"),
    ("metrics_address", "web:80"), ("metrics_address", "0"),
]
NAMES = [o.name for o in config.OPTIONS]


def _parse(argv):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(argv)


def _resolve(argv=(), environ=None):
    return config.resolve(_parse(list(argv)), environ or {})


def _flag(name):
    return "--" + name.replace("_", "-")


def _env(name):
    return "OVSGRE_" + name.upper()


def test_examples_cover_all_options():
    assert set(EXAMPLES) == set(NAMES) == set(OTHER)
    assert [f.name for f in dataclasses.fields(config.Settings)] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_naming_convention(name):
    opt = next(o for o in config.OPTIONS if o.name == name)
    assert opt.flag == _flag(name)
    assert opt.env == _env(name)
    assert opt.help


def test_defaults():
    settings = _resolve()
    assert settings == config.Settings(
        **{o.name: o.default for o in config.OPTIONS})
    assert settings.socket == "/run/docker/plugins/ovsgre.sock"
    assert settings.mtu == 0 and settings.datapath == "auto"
    assert config.from_env({}) == settings


@pytest.mark.parametrize("name", NAMES)
def test_flag_sets_value(name):
    raw, parsed = EXAMPLES[name]
    settings = _resolve([_flag(name), raw])
    assert getattr(settings, name) == parsed
    # Only that setting changed.
    for other in NAMES:
        if other != name:
            assert getattr(settings, other) == getattr(_resolve(), other)


@pytest.mark.parametrize("name", NAMES)
def test_flag_with_equals_sign(name):
    raw, parsed = EXAMPLES[name]
    assert getattr(_resolve([f"{_flag(name)}={raw}"]), name) == parsed


@pytest.mark.parametrize("name", NAMES)
def test_env_sets_value(name):
    raw, parsed = EXAMPLES[name]
    assert getattr(_resolve([], {_env(name): raw}), name) == parsed
    assert getattr(config.from_env({_env(name): raw}), name) == parsed


@pytest.mark.parametrize("name", NAMES)
def test_flag_beats_env(name):
    flag_raw, flag_val = EXAMPLES[name]
    env_raw, env_val = OTHER[name]
    assert flag_val != env_val
    settings = _resolve([_flag(name), flag_raw], {_env(name): env_raw})
    assert getattr(settings, name) == flag_val


def test_flag_beats_an_invalid_env():
    settings = _resolve(["--mtu", "1400"], {"OVSGRE_MTU": "junk"})
    assert settings.mtu == 1400


def test_unrelated_env_ignored():
    settings = _resolve([], {"OVSGRE_NOPE": "1", "MTU": "1400",
                             "ovsgre_mtu": "1400"})
    assert settings == _resolve()


@pytest.mark.parametrize("name,raw", INVALID)
def test_invalid_flag_exits_naming_the_flag(name, raw):
    with pytest.raises(SystemExit) as info:
        _resolve([f"{_flag(name)}={raw}"])
    message = str(info.value.code)
    assert _flag(name) in message and repr(raw) in message


@pytest.mark.parametrize("name,raw", INVALID)
def test_invalid_env_exits_naming_the_variable(name, raw):
    with pytest.raises(SystemExit) as info:
        _resolve([], {_env(name): raw})
    message = str(info.value.code)
    assert _env(name) in message and repr(raw) in message


@pytest.mark.parametrize("mtu", ["0", "1280", "65000"])
def test_mtu_bounds(mtu):
    assert _resolve(["--mtu", mtu]).mtu == int(mtu)


def test_describe_lists_every_setting():
    rows = config.describe()
    assert [r[0] for r in rows] == [_flag(n) for n in NAMES]
    assert [r[1] for r in rows] == [_env(n) for n in NAMES]
    assert [r[2] for r in rows] == [o.default for o in config.OPTIONS]


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("OVSGRE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_cli_settings_prints_effective_settings(clean_env, capsys):
    clean_env.setenv("OVSGRE_BRIDGE", "br-env")
    clean_env.setenv("OVSGRE_THREADS", "8")
    assert cli.main(["settings", "--threads", "2", "--mtu", "1400"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bridge"] == "br-env"
    assert out["threads"] == 2 and out["mtu"] == 1400
    assert out["state_dir"] == "/var/lib/ovsgre"
    assert set(out) == set(NAMES)


def test_cli_invalid_setting_exits_with_message(clean_env):
    clean_env.setenv("OVSGRE_DATAPATH", "kernel")
    with pytest.raises(SystemExit) as info:
        cli.main(["settings"])
    assert "OVSGRE_DATAPATH" in str(info.value.code)


def test_cli_help_mentions_every_flag_and_variable(capsys):
    with pytest.raises(SystemExit):
        cli.main(["settings", "--help"])
    out = capsys.readouterr().out
    for name in NAMES:
        assert _flag(name) in out and _env(name) in out


@pytest.mark.parametrize("argv", [
    ["network", "ls", "--etcd", "http://198.18.0.1:2379", "--mtu", "1400"],
    ["network", "--etcd", "http://198.18.0.1:2379", "ls", "--mtu", "1400"],
    ["network", "--etcd", "http://198.18.0.1:2379", "--mtu", "1400", "ls"],
    ["host", "forget", "198.18.0.9", "--etcd", "http://198.18.0.1:2379",
     "--mtu", "1400"],
])
def test_settings_before_or_after_a_subcommand_action(clean_env, monkeypatch,
                                                      argv):
    """Every subcommand takes every setting, also after its action
    (`ovsgre network ls --etcd URL`), and a flag given before the action
    is not reset by it."""
    seen = {}
    for name in ("network", "host"):
        module = importlib.import_module(f"ovsgre.commands.{name}")
        monkeypatch.setattr(module, "run",
                            lambda settings, args: seen.update(
                                settings=settings, args=args) or 0)
    assert cli.main(argv) == 0
    assert seen["settings"].etcd == ("http://198.18.0.1:2379",)
    assert seen["settings"].mtu == 1400
    assert seen["settings"].bridge == "br-ovsgre"     # untouched default


SECRET_URL = "https://user:s3cret@198.18.0.254:2379"


def test_etcd_credentials_are_never_printed(capsys):
    """An etcd URL with a user and password: not in `settings`, not in
    the error for a bad one, not in the observation status prints."""
    import json
    from ovsgre.cluster.records import shown_url
    from ovsgre.commands import settings as settings_cmd
    assert shown_url(SECRET_URL) == "https://***@198.18.0.254:2379"
    s = config.from_env({"OVSGRE_ETCD": SECRET_URL})
    assert s.etcd == (SECRET_URL,)            # used as given
    settings_cmd.run(s, None)
    out = capsys.readouterr().out
    assert "s3cret" not in out and "user:" not in out
    assert json.loads(out)["etcd"] == ["https://***@198.18.0.254:2379"]
    with pytest.raises(SystemExit) as err:
        config.from_env({"OVSGRE_ETCD": "ftp://user:s3cret@h:1"})
    assert "s3cret" not in str(err.value) and "***@" in str(err.value)


def test_etcd_errors_leave_credentials_out(monkeypatch):
    from ovsgre.cluster import etcd
    from ovsgre.errors import Unavailable
    kv = etcd.EtcdKV([SECRET_URL], timeout=0.2)

    def refused(_client):
        raise OSError(f"connection to {SECRET_URL} refused")
    with pytest.raises(Unavailable) as err:
        kv.call("list", refused)
    assert "s3cret" not in str(err.value) and "***@" in str(err.value)
    kv.close()
