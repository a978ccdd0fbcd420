"""Stage 2 of the test guest (see vm.py), run as PID 1 by /usr/bin/python3
after switch_root: mount what a Debian host has, load the modules the
tests use, wait out OVS 3.1.0's first 10 s, run the job from
OUT/job.json with its output in OUT/output.log and its exit status in
OUT/rc, reap every orphan meanwhile (daemons the tests stop are
reparented here; unreaped they would look alive), then power off.

Standard library only: it runs before any virtualenv is usable.
"""
import json
import os
import subprocess
import sys
import time

MOUNTS = (
    ("proc", "/proc", "proc", ""),
    ("sysfs", "/sys", "sysfs", ""),
    ("devtmpfs", "/dev", "devtmpfs", ""),
    ("devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666"),
    ("tmpfs", "/dev/shm", "tmpfs", ""),
    ("tmpfs", "/run", "tmpfs", "mode=755"),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2", ""),
    # The test harness's daemons keep their files here; dockerd's overlay2
    # does not work on the overlay-over-9p root, on tmpfs it does.
    ("tmpfs", "/tmp/ovgt", "tmpfs", ""),
    ("tmpfs", "/var/lib/docker", "tmpfs", ""),
)
MODULES = ("openvswitch", "vport-gre", "ip_gre", "veth", "tun", "bridge",
           "vxlan", "br_netfilter", "nf_conntrack", "sch_netem")
# ovs-vswitchd 3.1.0 started before the kernel has been up 10 s runs no
# upcall handlers with the kernel datapath and loses every upcall.
SETTLE = 11.0


def sh(*argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def setup(log):
    for source, target, fstype, options in MOUNTS:
        os.makedirs(target, exist_ok=True)
        cp = sh("mount", "-t", fstype, *(["-o", options] if options else []),
                source, target)
        if cp.returncode:
            log.write(f"vm_init: mount {target}: {cp.stdout}")
    for module in MODULES:
        cp = sh("modprobe", module)
        if cp.returncode:
            log.write(f"vm_init: modprobe {module}: {cp.stdout}")
    sh("ip", "link", "set", "lo", "up")
    sh("hostname", "ovsgre-guest")
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    if uptime < SETTLE:
        time.sleep(SETTLE - uptime)


def run_job(out, log):
    with open(os.path.join(out, "job.json")) as fh:
        job = json.load(fh)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                   "/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1",   # output.log shows progress
           **job["env"]}
    child = subprocess.Popen(job["argv"], cwd=job["cwd"], env=env,
                             stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "output.log"), "w", buffering=1) as log:
        try:
            setup(log)
            rc = run_job(out, log)
        except Exception as exc:   # the host must get an answer, not a hang
            log.write(f"vm_init: {exc!r}\n")
            rc = 125
        log.flush()
        os.fsync(log.fileno())
    with open(os.path.join(out, "rc"), "w") as fh:
        fh.write(f"{rc}\n")
    os.sync()
    with open("/proc/sysrq-trigger", "w") as fh:
        fh.write("o")
    time.sleep(60)


if __name__ == "__main__":
    main()
