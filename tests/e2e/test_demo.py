"""scripts/demo.py: the three-host demo runs, and tears down everything
also when interrupted."""

import os
import re
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "scripts", "demo.py")


def leftovers(out):
    """Namespaces and directories of the demo's own prefix still there."""
    prefix = re.search(r"network namespaces (ovgt-[0-9a-f]+)-\*", out)
    assert prefix, out
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    dirs = os.listdir("/tmp/ovgt") if os.path.isdir("/tmp/ovgt") else []
    return [n for n in names + dirs if n.startswith(prefix.group(1) + "-")]


def start_demo():
    return subprocess.Popen([sys.executable, DEMO], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def test_demo_runs_end_to_end():
    proc = start_demo()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert out.count("0% packet loss") == 3, out
    assert "Gbit/s" in out and "demo                 yes" in out, out
    assert "nothing left behind" in out
    assert leftovers(out) == []


def test_demo_interrupted_leaves_nothing_behind():
    proc = start_demo()
    lines = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:          # interrupt while containers run
        lines.append(line)
        if "ping across hosts" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)   # our own child, by PID
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted" in out and "nothing left behind" in out, out
    assert leftovers(out) == []
