"""Sites for tests, benchmarks and the demo: a namespace host running
dockerd + OVS + the ovsgre plugin, and helpers around it.  No pytest here:
scripts/demo.py and bench/ use it too."""

import json
import os
import re
import time

from .image import BUSYBOX_TAG, import_busybox
from .netns import link_json
from .plugin import PluginProcess, ovsgre_argv

IMAGE = BUSYBOX_TAG


class Site:
    """One namespace host running dockerd + OVS + the ovsgre plugin."""

    def __init__(self, host, plugin):
        self.host = host
        self.plugin = plugin

    def docker(self, *args, check=True, timeout=120):
        return self.host.docker.cli(*args, check=check, timeout=timeout)

    def out(self, *args, **kw):
        return self.docker(*args, **kw).stdout.strip()

    def run_bg(self, name, network, *cmd, extra=()):
        """Detached container; --init so `docker rm -f` is quick."""
        self.docker("run", "-d", "--init", "--name", name, "--network",
                    network, *extra, IMAGE, *cmd)

    def run_rm(self, network, *cmd, extra=(), check=True, timeout=120):
        return self.docker("run", "--rm", "--network", network, *extra,
                           IMAGE, *cmd, check=check, timeout=timeout)

    def ip(self, container, network, family=4):
        key = "IPAddress" if family == 4 else "GlobalIPv6Address"
        fmt = "{{json .NetworkSettings.Networks}}"
        nets = json.loads(self.out("inspect", "-f", fmt, container))
        return nets[network][key]

    def pid(self, container):
        return int(self.out("inspect", "-f", "{{.State.Pid}}", container))

    def leftovers(self):
        """Everything ovsgre made that still exists on this host."""
        links = [l["ifname"] for l in link_json(self.host.netns)
                 if l["ifname"].startswith("ovg")]
        ports = [p for p in self.host.ovs.vsctl(
            "list-ports", "br-ovsgre").split() if p]
        records = []
        for kind in ("networks", "endpoints"):
            folder = os.path.join(self.plugin.state_dir, kind)
            records += [f"{kind}/{n}" for n in os.listdir(folder)]
        return {"links": links, "ports": ports, "records": records}

    def wait_no_leftovers(self, timeout=10):
        return self.wait_leftovers({}, timeout)

    def wait_leftovers(self, expected, timeout=10):
        """leftovers() once they are what was expected ({}: nothing), or
        what they are after timeout seconds."""
        deadline = time.monotonic() + timeout
        want = {k: sorted(v) for k, v in expected.items() if v}
        while True:
            left = self.leftovers()
            if {k: sorted(v) for k, v in left.items() if v} == want or \
                    time.monotonic() > deadline:
                return left
            time.sleep(0.2)


def host_plugin(host, **extra_env):
    """ovsgre for host's dockerd (not started): listening where dockerd
    discovers it, /run/docker/plugins/ovsgre.sock as dockerd sees it (the
    host's plugins dir, bind-mounted there in dockerd's mount namespace),
    as the README runs it; no spec file.  The datapath is netdev unless
    extra_env says otherwise (PluginProcess)."""
    env = dict(extra_env)
    if host.docker:
        env.setdefault("OVSGRE_DOCKER_HOST", host.docker.base_url)
    sock = host.docker.plugin_socket("ovsgre") if host.docker else None
    return PluginProcess(host.netns, os.path.join(host.run_dir, "plugin"),
                         host.ovs.db_remote, extra_env=env, socket_path=sock)


def start_site(host):
    host.start()
    import_busybox(host.docker)
    plugin = host_plugin(host)
    plugin.start()
    return Site(host, plugin)


def start_plugin(cluster, host, **extra):
    plugin = host_plugin(host, **dict(cluster.plugin_env(host), **extra))
    plugin.start()
    return Site(host, plugin)


def ovsgre_cli(site, *args, check=True):
    """The `ovsgre` command on the site's host, with the plugin's settings."""
    return site.host.netns.run(ovsgre_argv() + list(args), check=check,
                               env=site.plugin.env, timeout=60)


def docker_networks(site):
    return site.out("network", "ls", "--format", "{{.Name}}").split()


def tunnels(site):
    """Peer IPs of the GRE ports on the host's tunnel bridge."""
    out = site.host.ovs.vsctl("--format=json", "--columns=name,options",
                              "find", "Interface", "type=gre")
    return sorted(dict(row[1][1])["remote_ip"]
                  for row in json.loads(out)["data"])


def remove_network(site, network, timeout=30):
    """`docker network rm`, waiting for Docker to finish removing `--rm`
    containers (`docker run --rm` returns a moment before their endpoints
    are gone).

    Docker 20.10 keeps a count of endpoints per network that drifts when
    many containers start and stop on one network at once (its own bridge
    driver too: moby/moby#42119; Docker 28.1 dropped the count), and then
    refuses `network rm` with "has active endpoints" for good; dockerd
    recounts when it starts.  When Docker refuses so while it lists no
    container on the network and the plugin holds no endpoint, that is the
    drift: dockerd is restarted, as a user would, and the network must go
    then.  Returns whether it had to be; any other refusal fails."""
    said = []

    def removed():
        rm = site.docker("network", "rm", network, check=False)
        said[:] = [rm.stderr.strip()]
        return rm.returncode == 0 or network not in docker_networks(site)
    try:
        wait_for(removed, timeout, f"network {network} to be removed")
        return False
    except AssertionError as exc:
        failure = exc
    inspect = site.docker("network", "inspect", "-f", "{{json .Containers}}",
                          network, check=False)
    endpoints = [r for r in site.leftovers()["records"]
                 if r.startswith("endpoints/")]
    if "has active endpoints" not in said[0] or \
            inspect.stdout.strip() != "{}" or endpoints:
        raise AssertionError(
            f"{failure}\ndocker network rm: {said}\ncontainers: "
            f"{inspect.stdout.strip()}\nplugin's endpoints: {endpoints}\n"
            f"plugin log:\n{site.plugin.log_tail(40)}")
    print(f"\n{site.host.hostname}: Docker's endpoint count of {network} "
          "drifted (no container, no endpoint): dockerd restarted")
    site.host.docker.restart()
    site.docker("network", "rm", network)
    return True


def wait_for(predicate, timeout=20, what="condition"):
    """Poll predicate until true; returns the monotonic time it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def received(ping_output):
    """(transmitted, received) from busybox ping's summary."""
    match = re.search(r"(\d+) packets transmitted, (\d+) packets received",
                      ping_output)
    assert match, ping_output
    return int(match.group(1)), int(match.group(2))


def stop_sites(cluster, sites):
    """Remove the containers, stop every plugin, stop the cluster.  Each
    step runs even if an earlier one failed (or was interrupted): the
    cluster is always stopped; the first error is raised afterwards."""
    errors = []
    try:
        for site in sites:
            if site.host.docker:
                try:
                    site.host.docker.remove_all_containers()
                except Exception as e:  # noqa: BLE001 - raised below
                    errors.append(e)
        for site in sites:
            try:
                site.plugin.stop()
            except Exception as e:  # noqa: BLE001 - raised below
                errors.append(e)
    finally:
        cluster.stop()
    if errors:
        raise errors[0]


BLUE = ("--ipam-driver", "ovsgre", "--subnet", "198.19.0.0/16",
        "-o", "ovsgre.network=blue")


def start_mesh(cluster, network=BLUE, name="blue"):
    """Start the cluster, ovsgre on every host, wait for the full mesh and
    create one network everywhere.  Returns the sites; on failure the
    caller's stop_sites(cluster, sites) still finds what was started."""
    sites = []
    cluster.mesh_sites = sites
    cluster.start()
    for host in cluster.hosts:
        import_busybox(host.docker)
        sites.append(start_plugin(cluster, host))
    peers = len(cluster.hosts) - 1
    for site in sites:
        wait_for(lambda: len(tunnels(site)) == peers, 10, "a full mesh")
        if network:
            site.docker("network", "create", "-d", "ovsgre", *network, name)
    return sites
