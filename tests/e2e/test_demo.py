"""scripts/demo.py: the three-host demo runs, and tears down everything
also when interrupted."""

import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "scripts", "demo.py")


def namespaces():
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") \
        else set()


def start_demo():
    return subprocess.Popen([sys.executable, DEMO], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def test_demo_runs_end_to_end():
    before = namespaces()
    proc = start_demo()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert out.count("0% packet loss") == 3, out
    assert "Gbit/s" in out and "demo                 yes" in out, out
    assert "nothing left behind" in out
    assert namespaces() - before == set()


def test_demo_interrupted_leaves_nothing_behind():
    before = namespaces()
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
    assert namespaces() - before == set()
