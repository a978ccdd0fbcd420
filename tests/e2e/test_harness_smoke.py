"""Smoke test of the e2e harness: one simulated host, busybox, clean teardown."""
import os
import subprocess
import time

import pytest

from tests.harness import BUSYBOX_TAG, import_busybox
from tests.harness._proc import pid_alive, pids_in_cgroup
from tests.harness.fixtures import make_host  # noqa: F401

pytestmark = pytest.mark.e2e


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4].startswith(path)]


def _netns_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_single_host_busybox(make_host):
    t0 = time.monotonic()
    host = make_host("h1")
    t_start = time.monotonic() - t0
    docker_host = host.docker

    assert host.netns.exists()
    assert host.ovs.vswitchd_pid and host.ovs.ovsdb_pid
    assert "ovs_version" in host.ovs.vsctl("list", "Open_vSwitch")
    assert docker_host.storage_driver in ("overlay2", "vfs")

    t1 = time.monotonic()
    assert import_busybox(docker_host) == BUSYBOX_TAG
    t_import = time.monotonic() - t1

    cp = docker_host.cli("run", "--rm", "--network", "none", BUSYBOX_TAG,
                         "true")
    assert cp.returncode == 0

    client = docker_host.client()
    try:
        out = client.containers.run(BUSYBOX_TAG, ["echo", "hi"],
                                    network_mode="none", remove=True)
        assert out == b"hi\n"
        # Docker really runs inside the host's netns: the container sees its
        # own netns, dockerd sees only the namespaced interfaces.
        info = client.info()
        assert info["Driver"] == docker_host.storage_driver
    finally:
        client.close()

    # Leave a running container behind so stop() has to clean it up.
    docker_host.cli("run", "-d", "--network", "none", "--name", "sleeper",
                    BUSYBOX_TAG, "sleep", "600")

    dockerd_pid = docker_host.pid
    ovs_pids = [host.ovs.vswitchd_pid, host.ovs.ovsdb_pid]
    prefix = host.prefix
    basedir = host.basedir
    cgroup = docker_host.cgroup_parent
    assert pid_alive(dockerd_pid)
    assert pids_in_cgroup(cgroup), "container process not in cgroup parent"

    t2 = time.monotonic()
    host.stop()
    t_stop = time.monotonic() - t2
    host.stop()  # idempotent

    print(f"\nTIMING start={t_start:.2f}s ({host.timings}) "
          f"import={t_import:.2f}s stop={t_stop:.2f}s")

    assert not [n for n in _netns_names() if n.startswith(prefix)]
    assert not pid_alive(dockerd_pid)
    assert not [p for p in ovs_pids if pid_alive(p)]
    assert not pids_in_cgroup(cgroup)
    assert not _mounts_under(basedir)
    assert not os.path.exists(basedir)
    assert not any(os.path.isdir(os.path.join("/sys/fs/cgroup", h, cgroup))
                   for h in os.listdir("/sys/fs/cgroup"))
