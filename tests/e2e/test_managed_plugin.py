"""ovsgre as a managed (v2) Docker plugin: built with
scripts/build-plugin.sh, created and enabled in a namespace host's dockerd,
then the core scenario through `-d ovsgre/ovsgre:latest`.

The host's OVS is the harness's own (private run dir); the plugin's
`ovs-rundir` mount is pointed at it with `docker plugin set`, as a user
would point it at a non-default OVS run directory."""

import json
import os
import sys

import pytest

from tests.harness import TestHost, import_busybox
from tests.harness import plugin_image
from tests.harness.plugin_image import PLUGIN, ManagedPlugin, ManagedSite

sys.path.insert(0, os.path.join(plugin_image.REPO, "plugin"))
from ovsgre import config as ovsgre_config  # noqa: E402
from tests.harness.sites import received, wait_for

DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}
SERVE_12MB = ("mkdir -p /srv && "
              "dd if=/dev/urandom of=/srv/f bs=1M count=12 2>/dev/null && "
              "md5sum /srv/f | cut -d' ' -f1 > /srv/sum && "
              "exec httpd -f -p 8080 -h /srv")


@pytest.fixture(scope="module")
def mp():
    """Namespace host (own OVS + dockerd 20.10) with the managed plugin
    built, created and enabled in its dockerd."""
    host = TestHost("mp", daemon_config=DAEMON_CONFIG)
    plugin = None
    try:
        host.start()
        import_busybox(host.docker)
        build = plugin_image.ensure_plugin_created(host.docker)
        plugin = ManagedPlugin(host)
        plugin.configure(OVSGRE_LOG_LEVEL="info")
        plugin.enable()
        site = ManagedSite(host, plugin)
        site.build = build
        yield site
    finally:
        try:
            if plugin is not None and host.docker.pid:
                ManagedSite(host, plugin).remove_all()
                plugin.remove()
        finally:
            host.stop()
            if plugin is not None:
                plugin.remove_cgroups()


@pytest.fixture
def network(mp):
    made = []

    def create(name, *args):
        mp.docker("network", "create", "-d", PLUGIN, *args, name)
        made.append(name)
        return name

    yield create
    mp.host.docker.remove_all_containers()
    for name in made:
        mp.docker("network", "rm", name, check=False)


def test_config_json_declares_every_setting():
    """Every OVSGRE_* setting of config.py is settable in config.json
    (`docker plugin set` refuses undeclared variables), with the plugin's
    defaults; only the socket, which Docker finds by interface.socket, is
    fixed."""
    with open(plugin_image.CONFIG_JSON) as f:
        cfg = json.load(f)
    env = {e["name"]: e for e in cfg["env"]}
    wanted = {o.env: o for o in ovsgre_config.OPTIONS}
    assert sorted(env) == sorted(wanted)
    sock = env["OVSGRE_SOCKET"]
    assert not sock.get("settable")
    assert sock["value"] == "/run/docker/plugins/" + \
        cfg["interface"]["socket"]
    for name, opt in wanted.items():
        if name == "OVSGRE_SOCKET":
            continue
        assert env[name].get("settable") == ["value"], name
        default = opt.default
        if isinstance(default, tuple):
            default = ",".join(default)
        expected = {"OVSGRE_DRIVER_NAME": PLUGIN}.get(name, str(default))
        assert env[name]["value"] == expected, name
        opt.parse(env[name]["value"])   # a value the plugin accepts
    assert cfg["interface"]["types"] == ["docker.networkdriver/1.0",
                                         "docker.ipamdriver/1.0"]
    assert cfg["network"]["type"] == "host"
    mounts = {m["name"]: m for m in cfg["mounts"]}
    assert mounts["ovs-rundir"]["destination"] == "/var/run/openvswitch"
    assert mounts["state"]["destination"] == env["OVSGRE_STATE_DIR"]["value"]
    for m in mounts.values():
        assert m["settable"] == ["source"], m["name"]


def test_config_json_asks_for_least_privilege():
    """Only what the plugin uses (docs/managed-plugin.md says why each):
    CAP_NET_ADMIN for links and CAP_NET_RAW for doctor's ping; no
    CAP_SYS_ADMIN, no host namespaces mount, nothing propagated back to
    the host, no devices, the host's PID namespace not shared."""
    with open(plugin_image.CONFIG_JSON) as f:
        cfg = json.load(f)
    assert sorted(cfg["linux"]["capabilities"]) == ["CAP_NET_ADMIN",
                                                    "CAP_NET_RAW"]
    assert not cfg["linux"].get("allowAllDevices")
    assert not cfg["linux"].get("devices")
    assert not cfg.get("pidhost") and not cfg.get("ipchost")
    assert not cfg.get("propagatedMount")
    assert sorted(m["name"] for m in cfg["mounts"]) == [
        "docker-sock", "ovs-rundir", "state"]
    for m in cfg["mounts"]:
        assert not {"rshared", "shared"} & set(m["options"]), m


CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_MODULE = 12, 21, 16


def _capabilities(pid):
    """The effective and bounding capability sets of a process."""
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":\t", 1) for line in fh if ":\t" in line)
    return int(fields["CapEff"], 16), int(fields["CapBnd"], 16)


def test_plugin_runs_without_cap_sys_admin(mp):
    """The running plugin cannot gain CAP_SYS_ADMIN or load modules (not
    even in its bounding set) and holds CAP_NET_ADMIN; the other tests of
    this file are the core scenario working with exactly that."""
    pids = mp.plugin.pids()
    assert pids
    for pid in pids:
        eff, bnd = _capabilities(pid)
        assert eff & (1 << CAP_NET_ADMIN), (pid, hex(eff))
        for cap in (CAP_SYS_ADMIN, CAP_SYS_MODULE):
            assert not bnd & (1 << cap), (pid, cap, hex(bnd))


def test_plugin_is_enabled_in_the_host_netns(mp):
    info = mp.plugin.inspect()
    assert info["Enabled"] is True
    assert info["Config"]["Interface"]["Types"] == [
        "docker.networkdriver/1.0", "docker.ipamdriver/1.0"]
    sources = {m["Name"]: m["Source"] for m in info["Settings"]["Mounts"]}
    assert sources["ovs-rundir"] == mp.host.ovs.rundir
    assert sources["state"] == mp.plugin.state_dir
    assert mp.plugin.capabilities() == {"Scope": "local",
                                        "ConnectivityScope": "global"}
    # network host: the plugin's processes live in the host's netns
    pids = mp.plugin.pids()
    assert pids and set(pids) <= set(mp.host.netns.pids()), pids
    log = "\n".join(mp.plugin.log_lines())
    assert "ready: bridge br-ovsgre" in log, log
    assert "Plugin.Activate" not in log     # v2 plugins are not activated
    mp.host.ovs.vsctl("br-exists", "br-ovsgre")  # made by the plugin


def test_image_has_what_doctor_runs(mp):
    """doctor inside the plugin pings peers and reads OVS (README)."""
    rootfs = os.path.join(mp.build["bundle"], "rootfs")
    dirs = ("usr/bin", "usr/local/bin", "usr/sbin", "opt/ovsgre/bin")
    for tool in ("ping", "ovs-ofctl", "ovsgre"):
        found = [_in_rootfs(rootfs, os.path.join(d, tool)) for d in dirs]
        assert any(p and os.access(p, os.X_OK) for p in found), \
            (tool, sorted(os.listdir(os.path.join(rootfs, "usr/bin")))[:50])


def _in_rootfs(rootfs, path, hops=8):
    """The file `path` names inside the rootfs, following its symlinks
    there (an absolute link points into the rootfs, not the host)."""
    for _ in range(hops):
        full = os.path.join(rootfs, path)
        if not os.path.islink(full):
            return full if os.path.exists(full) else None
        target = os.readlink(full)
        path = target.lstrip("/") if target.startswith("/") else \
            os.path.normpath(os.path.join(os.path.dirname(path), target))
    return None


def test_ping_by_name_and_tcp_transfer(mp, network):
    network("blue", "--subnet", "198.18.10.0/24")
    mp.docker("run", "-d", "--init", "--name", "web", "--network", "blue",
              "--entrypoint", "sh", mp.image, "-c", SERVE_12MB)
    mp.run_bg("client", "blue", "sleep", "600")
    wait_for(lambda: mp.docker("exec", "web", "cat", "/srv/sum",
                               check=False).returncode == 0,
             what="web to write its file")
    expected = mp.out("exec", "web", "cat", "/srv/sum")
    assert mp.ip("web", "blue").startswith("198.18.10.")
    assert mp.ip("client", "blue").startswith("198.18.10.")
    ping = mp.out("exec", "client", "ping", "-c", "3", "web")
    assert received(ping) == (3, 3)
    # 12 MB over TCP: a wrong MTU or checksum offload breaks it silently
    got = mp.out("exec", "client", "sh", "-c",
                 "timeout 60 wget -q -O - http://web:8080/f | md5sum")
    assert got.split()[0] == expected
    mtu = mp.out("exec", "client", "cat", "/sys/class/net/eth0/mtu")
    assert mtu == "1458"


def test_networks_are_isolated(mp, network):
    network("blue", "--subnet", "198.18.10.0/24")
    network("red", "--subnet", "198.18.20.0/24")
    mp.run_bg("bweb", "blue", "sleep", "600")
    target = mp.ip("bweb", "blue")
    spoof = (f"ip addr add 198.18.10.200/24 dev eth0 && "
             f"ping -c 3 -W 1 {target}")
    intruder = mp.run_rm("red", "sh", "-c", spoof,
                         extra=("--cap-add", "NET_ADMIN"), check=False)
    assert intruder.returncode != 0, intruder.stdout
    assert received(intruder.stdout)[1] == 0
    # control: the same trick inside blue works, so the check is real
    friend = mp.run_rm("blue", "sh", "-c", spoof.replace(".200/", ".201/"),
                       extra=("--cap-add", "NET_ADMIN"))
    assert received(friend.stdout) == (3, 3)


@pytest.mark.reliability("fault", "dockerd restarted (managed plugin)")
def test_state_survives_a_dockerd_restart(mp, network):
    """Docker never replays CreateNetwork: the network must come back from
    the plugin's state mount when dockerd restarts (and re-enables the
    plugin)."""
    network("keep", "--subnet", "198.18.40.0/24")
    mp.docker("run", "-d", "--init", "--restart", "always", "--name", "k1",
              "--network", "keep", mp.image, "sleep", "600")
    old = set(mp.plugin.pids())
    mp.host.docker.restart()
    mp.plugin.wait_ready()
    assert mp.plugin.enabled and not old & set(mp.plugin.pids())
    wait_for(lambda: mp.out("inspect", "-f", "{{.State.Running}}", "k1")
             == "true", what="k1 to come back")
    reply = mp.run_rm("keep", "ping", "-c", "2", "k1")
    assert received(reply.stdout) == (2, 2)


def test_rm_and_network_rm_leave_nothing_behind(mp, network):
    assert mp.wait_no_leftovers() == {"links": [], "ports": [],
                                      "records": []}
    network("blue", "--subnet", "198.18.10.0/24")
    network("red", "--subnet", "198.18.20.0/24")
    for i in range(3):
        mp.run_bg(f"c{i}", "blue" if i % 2 else "red", "sleep", "600")
    assert len(mp.leftovers()["ports"]) == 3
    for i in range(3):
        mp.docker("rm", "-f", f"c{i}")
    mp.docker("network", "rm", "blue", "red")
    assert mp.wait_no_leftovers() == {"links": [], "ports": [],
                                      "records": []}
    tags = mp.host.ovs.vsctl("--columns=tag", "--bare", "list", "Port")
    assert tags.split() == []


def test_disable_and_rm(mp):
    pids = mp.plugin.pids()
    assert pids
    sock = mp.plugin.socket
    mp.docker("plugin", "disable", PLUGIN)
    assert not mp.plugin.enabled
    wait_for(lambda: not mp.plugin.pids(), timeout=15,
             what="the plugin's processes to exit")
    assert not os.path.exists(sock)
    mp.docker("plugin", "rm", PLUGIN)
    assert mp.plugin.inspect() is None
    assert mp.out("plugin", "ls", "-q") == ""
    # what ovsgre made stays consistent: nothing (networks were removed)
    assert mp.leftovers() == {"links": [], "ports": [], "records": []}
