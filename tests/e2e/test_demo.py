"""scripts/demo.py: the three-host demo runs, and tears down everything
also when interrupted (Ctrl-C or the terminal hanging up, sent to the whole
process group as a terminal does, and a second Ctrl-C during teardown)."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "scripts", "demo.py")


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def processes(tag, session):
    """Live processes the demo started: in its session (the docker, ip ...
    commands it runs), or naming its prefix in their command line,
    environment (the plugin) or cgroup (containers; dockerd runs them
    under --cgroup-parent /<prefix>-hN)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            same_session = os.getsid(pid) == session
        except OSError:
            continue
        stat = _read(f"/proc/{pid}/stat").rsplit(b")", 1)[-1].split()
        if stat and stat[0] == b"Z":
            continue          # a zombie: already dead
        if same_session or any(tag.encode() in _read(f"/proc/{pid}/{name}")
                               for name in ("cmdline", "environ",
                                            "cgroup")):
            found[pid] = _read(f"/proc/{pid}/cmdline").replace(
                b"\0", b" ").decode(errors="replace")[:100]
    return found


def leftovers(out, session, img_dirs_before):
    """Namespaces, directories and processes of the demo still there."""
    prefix = re.search(r"network namespaces (ovgt-[0-9a-f]+)-\*", out)
    assert prefix, out
    tag = prefix.group(1) + "-"
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    dirs = os.listdir("/tmp/ovgt") if os.path.isdir("/tmp/ovgt") else []
    left = [n for n in names + dirs if n.startswith(tag)]
    # the busybox image cache (tempfile.mkdtemp in /tmp)
    left += sorted(set(glob.glob("/tmp/ovgt-img-*")) - img_dirs_before)
    left += [f"{pid}: {cmd}" for pid, cmd in processes(tag, session).items()]
    return left


def start_demo():
    """The demo in a session (and process group) of its own, like a shell
    runs a foreground job: a signal to the group reaches it and whatever
    it runs at that moment."""
    before = set(glob.glob("/tmp/ovgt-img-*"))
    proc = subprocess.Popen([sys.executable, DEMO], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, before


def test_demo_runs_end_to_end():
    proc, img_dirs = start_demo()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert out.count("0% packet loss") == 3, out
    assert "Gbit/s" in out and "demo                 yes" in out, out
    assert "nothing left behind" in out
    assert leftovers(out, proc.pid, img_dirs) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP],
                         ids=["ctrl-c", "hangup"])
def test_demo_interrupted_leaves_nothing_behind(sig):
    proc, img_dirs = start_demo()
    lines = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:          # interrupt while containers run
        lines.append(line)
        if "ping across hosts" in line or time.monotonic() > deadline:
            break
    # To the process group, as the terminal does (Ctrl-C, or SIGHUP when it
    # closes): the demo and the command it runs right now both get it.
    # Our own child's group: its pgid is its pid (start_new_session).
    os.killpg(proc.pid, sig)
    for line in proc.stdout:          # a second Ctrl-C during teardown
        lines.append(line)
        if "tearing down" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 128 + sig, out
    assert f"interrupted ({sig.name})" in out, out
    assert "nothing left behind" in out, out
    assert leftovers(out, proc.pid, img_dirs) == []
